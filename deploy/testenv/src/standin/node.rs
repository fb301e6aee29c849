//! The Node object: registration and a periodic status heartbeat.
//!
//! The node reports itself Ready with loopback addresses and generous capacity.
//! No lease is kept: the node lifecycle controller is not run in the test
//! environment, so nothing marks the node NotReady or evicts its pods.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::Config;
use crate::Result;

/// RFC 3339 "now", second precision, as Kubernetes writes it.
pub(crate) fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn node_status(name: &str, kubelet_port: u16) -> Value {
    let now = now_rfc3339();
    let cond = |t: &str, s: &str, reason: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": reason,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let capacity =
        json!({"cpu": "2", "memory": "24Gi", "pods": "250", "ephemeral-storage": "100Gi"});
    json!({
        "status": {
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                cond("Ready", "True", "KubeletReady"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "capacity": capacity,
            "allocatable": capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {
                "machineID": "flavio-testenv", "systemUUID": "flavio-testenv",
                "bootID": "flavio-testenv", "kernelVersion": "host",
                "osImage": "host processes (flavio-testenv)",
                "containerRuntimeVersion": "flavio-testenv://0.1",
                "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
            }
        }
    })
}

/// Creates (or adopts) the Node `name`, labelled with `zone` if any, and
/// marks it Ready.
pub(crate) async fn register(
    client: &Client,
    cfg: &Config,
    name: &str,
    zone: Option<&str>,
) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "testenv.flaviodb.io/stand-in": "true",
    });
    if let Some(z) = zone {
        labels[super::ZONE_LABEL] = json!(z);
    }
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": labels }
    }))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(node_status(
            name,
            cfg.logs_endpoint.as_ref().map_or(0, |l| l.addr.port()),
        )),
    )
    .await?;
    Ok(())
}

/// Refreshes the node's status every 10 s, forever.
pub(crate) async fn heartbeat(client: Client, name: String, kubelet_port: u16) {
    let api: Api<Node> = Api::all(client);
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if let Err(e) = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(node_status(&name, kubelet_port)),
            )
            .await
        {
            tracing::warn!("node heartbeat: {e}");
        }
    }
}
