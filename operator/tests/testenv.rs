//! Integration tests on the real Kubernetes 1.20 control plane of
//! `deploy/testenv` (real apiserver, StatefulSet controller and garbage
//! collector; pods run as real `flavio` processes on loopback addresses).
//!
//! The operator runs in this test process, limited to the test's namespace.
//! Pods advertise their pod IP (`addressMode: podIP`): the test environment
//! has no cluster DNS. Skips when the environment can't be had, fails with
//! `FLAVIO_TESTENV=required` (CI). Needs `cargo build -p flavio-node --bin flavio`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flavio_operator::controller::{self, Context};
use flavio_operator::crd::FlavioCluster;
use flavio_operator::metrics::Metrics;
use flavio_testenv::harness::{TestEnv, required, target_dir};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn flavio_bin() -> PathBuf {
    std::env::var_os("FLAVIO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/flavio"))
}

/// Installs (server-side applies) the CRD and waits until it is Established.
async fn install_crd(client: &Client) -> TestResult {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = FlavioCluster::crd();
    let name = "flavioclusters.flaviodb.io";
    crds.patch(
        name,
        &PatchParams::apply("flavio-operator-test").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    poll("CRD Established", Duration::from_secs(30), || async {
        let c = crds.get(name).await?;
        Ok(c.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(()))
    })
    .await
}

async fn poll<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, Box<dyn std::error::Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, Box<dyn std::error::Error>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what} (last error: {last})"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn condition(fc: &FlavioCluster, type_: &str) -> Option<(String, String, String)> {
    fc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn three_replicas_become_available_then_delete_keeps_pvcs() -> TestResult {
    if !flavio_bin().exists() {
        let msg = format!(
            "{} missing: cargo build -p flavio-node --bin flavio",
            flavio_bin().display()
        );
        if required() {
            return Err(msg.into());
        }
        eprintln!("SKIPPING: {msg}");
        return Ok(());
    }
    let Some(env) = TestEnv::get().await? else {
        return Ok(());
    };
    let client = env.client().await?;
    install_crd(&client).await?;
    let ns = env.namespace("op-form").await?;
    let pdb_v1 = controller::has_policy_v1(&client).await;
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::new()),
        pdb_v1,
    ));
    let operator = tokio::spawn(controller::run(ctx, Some(ns.name.clone())));

    let fcs: Api<FlavioCluster> = ns.api();
    let fc: FlavioCluster = serde_json::from_value(json!({
        "apiVersion": "flaviodb.io/v1alpha1", "kind": "FlavioCluster",
        "metadata": {"name": "demo"},
        "spec": {"replicas": 3, "addressMode": "podIP"}
    }))?;
    let t0 = Instant::now();
    fcs.create(&PostParams::default(), &fc).await?;

    let res = poll(
        "Available with 3 valid members",
        Duration::from_secs(120),
        || async {
            let fc = fcs.get("demo").await?;
            let Some(s) = fc.status.as_ref() else {
                return Ok(None);
            };
            let avail = condition(&fc, "Available").is_some_and(|(st, _, _)| st == "True");
            let valid = s.members.iter().filter(|m| m.state == "valid").count();
            Ok((avail && valid == 3 && s.pending_transfers == 0).then(|| fc.clone()))
        },
    )
    .await;
    let fc = match res {
        Ok(fc) => fc,
        Err(e) => {
            let now = fcs.get("demo").await.ok().and_then(|f| f.status);
            let logs: Vec<String> = (0..3)
                .map(|i| {
                    format!(
                        "--- demo-{i}:\n{}",
                        env.pod_logs(&ns.name, &format!("demo-{i}"), "flavio")
                    )
                })
                .collect();
            return Err(format!("{e}\nstatus: {now:#?}\n{}", logs.join("\n")).into());
        }
    };
    eprintln!("Available after {:?}", t0.elapsed());
    let s = fc.status.as_ref().ok_or("status")?;
    assert_eq!(s.member_count, 3);
    assert_eq!(s.phase.as_deref(), Some("Available"));
    assert_eq!(s.ready_replicas, 3);
    assert_eq!(s.ring_size, Some(64));
    for m in &s.members {
        assert!(
            (30.0..=37.0).contains(&m.ring_pct),
            "{m:?} should own about a third"
        );
        assert!(
            m.name.starts_with("flavio@demo-")
                && m.name.ends_with(&format!(".demo-headless.{}.svc", ns.name))
        );
    }

    // `kubectl get fc` shows the printer columns.
    let out = std::process::Command::new("kubectl")
        .args(["get", "fc", "-n", &ns.name])
        .env("KUBECONFIG", env.kubeconfig())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REPLICAS",
            "READY",
            "MEMBERS",
            "PHASE",
            "TRANSFERS",
            "AGE"
        ]
    );
    assert!(text.contains("Available"), "{text}");

    // The children exist with their owner; the cookie Secret was made once.
    let svcs: Api<Service> = ns.api();
    svcs.get("demo").await?;
    svcs.get("demo-headless").await?;
    let secrets: Api<Secret> = ns.api();
    let cookie = secrets.get("demo-cookie").await?;
    assert!(
        cookie
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key("cookie"))
    );

    // Deleting the cluster: the finalizer runs, the garbage collector removes
    // the children, the PVCs stay (default retention).
    fcs.delete("demo", &DeleteParams::default()).await?;
    let sts: Api<StatefulSet> = ns.api();
    poll(
        "cluster and StatefulSet gone",
        Duration::from_secs(60),
        || async {
            let fc_gone = fcs.get_opt("demo").await?.is_none();
            let sts_gone = sts.get_opt("demo").await?.is_none();
            Ok((fc_gone && sts_gone).then_some(()))
        },
    )
    .await?;
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    let left = pvcs.list(&ListParams::default()).await?.items.len();
    assert_eq!(left, 3, "PVCs are kept by default");

    operator.abort();
    ns.cleanup().await?;
    Ok(())
}
