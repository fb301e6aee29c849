//! Smoke test: a StatefulSet of three real `flavio serve` nodes on the real
//! control plane, created in order by the real StatefulSet controller as the
//! stand-in makes each Ready, pinged through their pod IPs, then scaled to one.
//!
//! Needs the `flavio` binary (`cargo build -p flavio-node --bin flavio`); the
//! image `flaviodb/flavio:dev` maps to `<target>/debug/flavio` (or `$FLAVIO_BIN`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flavio_testenv::harness::{
    TestEnv, built_flavio_bin, container_pid, flavio_bin, pid_alive, pod_ready, wait_for,
    wait_pod_gone,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const COOKIE: &str = "smokeTestCookie0123456789abcdefX";

fn statefulset(replicas: i32) -> Result<StatefulSet, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "flavio"},
        "spec": {
            "serviceName": "flavio",
            "replicas": replicas,
            "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "flavio"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "flavio"}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "flavio",
                        "image": "flaviodb/flavio:dev",
                        "command": ["flavio"],
                        "args": ["serve", "--name", "$(POD_NAME)", "--listen", "$(POD_IP):10017",
                                 "--data-dir", "/var/lib/flavio", "--ring-size", "16"],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {"name": "FLAVIO_NODE", "value": "$(POD_IP):10017"},
                            {"name": "FLAVIO_COOKIE", "valueFrom": {"secretKeyRef": {"name": "flavio-cookie", "key": "cookie"}}},
                        ],
                        "ports": [{"name": "grpc", "containerPort": 10017}],
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/flavio"}],
                        // As with a real kubelet, $(VAR) is not expanded from
                        // valueFrom env in exec probes: `flavio health` reads FLAVIO_NODE.
                        "readinessProbe": {"exec": {"command": ["flavio", "health"]},
                                           "periodSeconds": 1, "timeoutSeconds": 2},
                    }],
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }],
        }
    }))
}

fn ping(ip: &str) -> Result<String, Box<dyn std::error::Error>> {
    let out = std::process::Command::new(flavio_bin())
        .args(["ping", "--node", &format!("{ip}:10017")])
        .env("FLAVIO_COOKIE", COOKIE)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !stdout.starts_with("pong ") {
        return Err(format!(
            "ping {ip}: {} {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(stdout.trim().to_string())
}

#[tokio::test]
async fn statefulset_of_three_flavio_nodes_comes_up_in_order_and_scales_down() -> TestResult {
    if built_flavio_bin()?.is_none() {
        return Ok(());
    }
    let Some(env) = TestEnv::get().await? else {
        return Ok(());
    };
    let ns = env.namespace("smoke").await?;
    let pods: Api<Pod> = ns.api();
    let sts: Api<StatefulSet> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let services: Api<Service> = ns.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "flavio-cookie"},
                "stringData": {"cookie": COOKIE}
            }))?,
        )
        .await?;
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "flavio"},
                "spec": {"clusterIP": "None", "selector": {"app.kubernetes.io/name": "flavio"},
                         "ports": [{"name": "grpc", "port": 10017}]}
            }))?,
        )
        .await?;

    let t0 = Instant::now();
    sts.create(&PostParams::default(), &statefulset(3)?).await?;

    // Watch (by polling) the controller create pods one by one: at no point may
    // pod N exist while pod N-1 is not Ready.
    let mut first_seen: BTreeMap<String, Duration> = BTreeMap::new();
    let mut ready_seen: BTreeMap<String, Duration> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = pods.list(&ListParams::default()).await?.items;
        let by_name: BTreeMap<String, &Pod> = list.iter().map(|p| (p.name_any(), p)).collect();
        for (name, p) in &by_name {
            first_seen.entry(name.clone()).or_insert(t0.elapsed());
            if pod_ready(p) {
                ready_seen.entry(name.clone()).or_insert(t0.elapsed());
            }
        }
        for i in 1..3 {
            if by_name.contains_key(&format!("flavio-{i}")) {
                let prev = format!("flavio-{}", i - 1);
                assert!(
                    ready_seen.contains_key(&prev),
                    "flavio-{i} exists before {prev} was Ready (seen {first_seen:?}, ready {ready_seen:?})"
                );
            }
        }
        if ready_seen.len() == 3 {
            break;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = (0..3)
                .map(|i| {
                    format!(
                        "--- flavio-{i}:\n{}",
                        env.pod_logs(&ns.name, &format!("flavio-{i}"), "flavio")
                    )
                })
                .collect();
            return Err(format!(
                "StatefulSet not Ready in time: seen {first_seen:?}, ready {ready_seen:?}; logs:\n{}",
                logs.join("\n")
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("created {first_seen:?}\nready   {ready_seen:?}");
    for i in 1..3 {
        assert!(first_seen[&format!("flavio-{i}")] >= ready_seen[&format!("flavio-{}", i - 1)]);
    }

    // Each node answers on its own loopback address.
    let mut pids = BTreeMap::new();
    for i in 0..3 {
        let name = format!("flavio-{i}");
        let pod = pods.get(&name).await?;
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .ok_or("no podIP")?;
        let pong = ping(&ip)?;
        eprintln!("{name} at {ip}: {pong}");
        pids.insert(name.clone(), container_pid(&pod, "flavio").ok_or("no pid")?);
        assert!(env.pvc_dir(&ns.name, &format!("data-{name}")).is_dir());
    }
    let ips: std::collections::BTreeSet<String> = pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
        .collect();
    assert_eq!(ips.len(), 3, "pods must have distinct IPs: {ips:?}");

    // Scale to one: the controller removes flavio-2, then flavio-1; their processes stop.
    sts.patch(
        "flavio",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await?;
    wait_pod_gone(&pods, "flavio-2", Duration::from_secs(60)).await?;
    wait_pod_gone(&pods, "flavio-1", Duration::from_secs(60)).await?;
    for name in ["flavio-1", "flavio-2"] {
        let pid = pids[name];
        wait_for(
            &format!("{name}'s process {pid} to stop"),
            Duration::from_secs(10),
            || async move { Ok((!pid_alive(pid)).then_some(())) },
        )
        .await?;
    }
    assert!(pid_alive(pids["flavio-0"]), "flavio-0 must keep running");
    let pod0 = pods.get("flavio-0").await?;
    assert!(pod_ready(&pod0));
    let ip0 = pod0
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or("no podIP")?;
    ping(&ip0)?;
    ns.cleanup().await?;
    assert!(
        !pid_alive(pids["flavio-0"]),
        "cleanup left flavio-0 running"
    );
    Ok(())
}
