//! Integration tests on the real Kubernetes 1.20 control plane of
//! `deploy/testenv` (real apiserver, StatefulSet controller and garbage
//! collector; pods run as real `flavio` processes on loopback addresses).
//!
//! The operator runs in this test process, limited to the test's namespace.
//! Pods advertise their pod IP (`addressMode: podIP`): the test environment
//! has no cluster DNS. Skips when the environment can't be had, fails with
//! `FLAVIO_TESTENV=required` (CI). Needs `cargo build -p flavio-node --bin flavio`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flavio_operator::controller::{self, Context};
use flavio_operator::crd::FlavioCluster;
use flavio_operator::metrics::Metrics;
use flavio_operator::uninstall::{Deleted, delete_and_wait};
use flavio_testenv::harness::{TestEnv, built_flavio_bin, exec_in_pod};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One scenario at a time: each runs a cluster of real node processes and an
/// operator, and their timings assume the 2 cores are not shared with another.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// The environment, a namespace, and an operator running in it.
struct Setup {
    env: TestEnv,
    ns: flavio_testenv::harness::TestNamespace,
    metrics: Arc<Metrics>,
    operator: tokio::task::JoinHandle<()>,
    fcs: Api<FlavioCluster>,
}

async fn setup(prefix: &str) -> Result<Option<Setup>, Box<dyn std::error::Error>> {
    // The operator's own log, with RUST_LOG=flavio_operator=debug.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    if built_flavio_bin()?.is_none() {
        return Ok(None);
    }
    let Some(env) = TestEnv::get().await? else {
        return Ok(None);
    };
    let client = env.client().await?;
    install_crd(&client).await?;
    let ns = env.namespace(prefix).await?;
    let metrics = Arc::new(Metrics::new());
    let operator = start_operator(&client, &metrics, &ns.name).await;
    let fcs = ns.api();
    Ok(Some(Setup {
        env,
        ns,
        metrics,
        operator,
        fcs,
    }))
}

async fn start_operator(
    client: &Client,
    metrics: &Arc<Metrics>,
    ns: &str,
) -> tokio::task::JoinHandle<()> {
    let pdb_v1 = controller::has_policy_v1(client).await;
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), pdb_v1));
    tokio::spawn(controller::run(ctx, Some(ns.to_string())))
}

impl Setup {
    /// Deletes the cluster while the operator still runs (its finalizer must
    /// run), then stops the operator and removes the namespace.
    async fn finish(self) -> TestResult {
        delete_and_wait(&self.fcs, "demo", Duration::from_secs(60)).await?;
        self.operator.abort();
        self.ns.cleanup().await?;
        Ok(())
    }

    fn commits(&self) -> u64 {
        count(
            &self.metrics.render(),
            "flavio_operator_actions_total{action=\"commit\"}",
        )
    }

    async fn create(&self, spec: serde_json::Value) -> TestResult {
        let fc: FlavioCluster = serde_json::from_value(json!({
            "apiVersion": "flaviodb.io/v1alpha1", "kind": "FlavioCluster",
            "metadata": {"name": "demo"}, "spec": spec
        }))?;
        self.fcs.create(&PostParams::default(), &fc).await?;
        Ok(())
    }

    async fn wait_available(
        &self,
        members: usize,
        timeout: Duration,
    ) -> Result<FlavioCluster, Box<dyn std::error::Error>> {
        let res = poll(
            &format!("Available with {members} valid members"),
            timeout,
            || async {
                let fc = self.fcs.get("demo").await?;
                let Some(s) = fc.status.as_ref() else {
                    return Ok(None);
                };
                let avail = condition(&fc, "Available").is_some_and(|(st, _, _)| st == "True");
                let valid = s.members.iter().filter(|m| m.state == "valid").count();
                let live = s.members.iter().filter(|m| m.state != "removed").count();
                Ok(
                    (avail && valid == members && live == members && s.pending_transfers == 0)
                        .then(|| fc.clone()),
                )
            },
        )
        .await;
        res.map_err(|e| {
            let logs: Vec<String> = (0..5)
                .map(|i| {
                    format!(
                        "--- demo-{i}:\n{}",
                        self.env
                            .pod_logs(&self.ns.name, &format!("demo-{i}"), "flavio")
                    )
                })
                .collect();
            format!("{e}\n{}", logs.join("\n")).into()
        })
    }

    async fn scale(&self, replicas: i32) -> TestResult {
        self.fcs
            .patch(
                "demo",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await?;
        Ok(())
    }

    /// The environment a `flavio` command run by the test needs (files
    /// written to `dir`): the cookie, and the CA and server name with TLS.
    async fn client_env(
        &self,
        dir: &std::path::Path,
    ) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
        let secrets: Api<Secret> = self.ns.api();
        let mut env = Vec::new();
        let data = |s: Secret, key: &str| {
            s.data
                .and_then(|d| d.get(key).cloned())
                .map(|b| b.0)
                .ok_or_else(|| format!("no {key}"))
        };
        let cookie_file = dir.join("cookie");
        std::fs::write(
            &cookie_file,
            data(secrets.get("demo-cookie").await?, "cookie")?,
        )?;
        env.push((
            "FLAVIO_COOKIE_FILE".into(),
            cookie_file.display().to_string(),
        ));
        if let Some(t) = secrets.get_opt("demo-tls").await? {
            let ca = dir.join("ca.crt");
            std::fs::write(&ca, data(t, "ca.crt")?)?;
            env.push(("FLAVIO_TLS_CA".into(), ca.display().to_string()));
            env.push((
                "FLAVIO_TLS_SERVER_NAME".into(),
                format!("demo.{}.svc", self.ns.name),
            ));
        }
        Ok(env)
    }

    /// How the test reaches the nodes: the cookie from its Secret, and TLS
    /// (the operator's default) with the CA from the nodes' certificate
    /// Secret, checked against the cluster's server name.
    async fn cookie(&self) -> Result<flavio_node::rpc::Credentials, Box<dyn std::error::Error>> {
        let secrets: Api<Secret> = self.ns.api();
        let s = secrets.get("demo-cookie").await?;
        let b = s
            .data
            .and_then(|d| d.get("cookie").cloned())
            .ok_or("no cookie")?;
        let cookie = flavio_node::rpc::Cookie::new(&String::from_utf8_lossy(&b.0))?;
        let tls = match secrets.get_opt("demo-tls").await? {
            Some(t) => {
                let ca = t
                    .data
                    .and_then(|d| d.get("ca.crt").cloned())
                    .ok_or("no ca.crt in demo-tls")?;
                Some(
                    flavio_node::rpc::tls::ClientTls::from_ca_pem(&ca.0)?
                        .expecting(Some(format!("demo.{}.svc", self.ns.name))),
                )
            }
            None => None,
        };
        Ok(flavio_node::rpc::Credentials::new(cookie, tls))
    }

    async fn pod_addr(&self, ordinal: i32) -> Result<String, Box<dyn std::error::Error>> {
        let pods: Api<Pod> = self.ns.api();
        let p = pods.get(&format!("demo-{ordinal}")).await?;
        let ip = p.status.and_then(|s| s.pod_ip).ok_or("no pod IP")?;
        Ok(format!("{ip}:10017"))
    }
}

fn count(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
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
    let _serial = SERIAL.lock().await;
    if built_flavio_bin()?.is_none() {
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

/// Acceptance 2: while a client runs quorum adds, scale 3 -> 5 -> 2: one
/// commit per step, the StatefulSet shrinks only after the leavers are gone,
/// and no acknowledged add is lost.
#[tokio::test]
async fn scale_up_and_down_under_load_without_loss() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(s) = setup("op-scale").await? else {
        return Ok(());
    };
    s.create(json!({"replicas": 3, "addressMode": "podIP", "ringSize": 32}))
        .await?;
    s.wait_available(3, Duration::from_secs(120)).await?;
    assert_eq!(s.commits(), 1, "forming is one commit");
    let cookie = s.cookie().await?;
    // The client talks to pods 0 and 1, which every step keeps.
    let addrs = [s.pod_addr(0).await?, s.pod_addr(1).await?];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let cookie = cookie.clone();
        tokio::spawn(async move {
            let (mut acked, mut failed) = (0u64, 0u64);
            let clients = [
                flavio_node::rpc::client::Client::connect(&addrs[0], cookie.clone()).await,
                flavio_node::rpc::client::Client::connect(&addrs[1], cookie.clone()).await,
            ];
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let Ok(c) = &clients[i % 2] else {
                    failed += 1;
                    continue;
                };
                let r = c
                    .add(flavio_proto::v1::AddRequest {
                        a: i as i64,
                        b: 1,
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(_) => acked += 1,
                    Err(_) => failed += 1,
                }
            }
            (acked, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t = Instant::now();
    s.scale(5).await?;
    s.wait_available(5, Duration::from_secs(120)).await?;
    eprintln!(
        "3 -> 5 Available with all transfers done after {:?}",
        t.elapsed()
    );
    assert_eq!(s.commits(), 2, "scale up 3 -> 5 is one commit");

    let t = Instant::now();
    s.scale(2).await?;
    let sts: Api<StatefulSet> = s.ns.api();
    let seed = s.pod_addr(0).await?;
    let naming = flavio_operator::decide::Naming {
        cluster: "demo".into(),
        namespace: s.ns.name.clone(),
    };
    // Watch the StatefulSet: whenever it is smaller than 5, no node of a
    // removed ordinal may still be in the ring.
    poll(
        "shrunk to 2 and Available",
        Duration::from_secs(120),
        || async {
            let r = sts
                .get("demo")
                .await?
                .spec
                .and_then(|x| x.replicas)
                .unwrap_or(0);
            if r < 5 {
                let o = flavio_operator::ring::observe(&seed, &cookie).await?;
                for m in &o.view.members {
                    if m.state != flavio_operator::decide::State::Removed {
                        let ord = naming.ordinal(&m.name).ok_or("foreign member")?;
                        assert!(
                            ord < r,
                            "StatefulSet at {r} while {} is still {:?}",
                            m.name,
                            m.state
                        );
                    }
                }
            }
            let fc = s.fcs.get("demo").await?;
            let avail = condition(&fc, "Available").is_some_and(|(st, _, _)| st == "True");
            Ok((r == 2 && avail).then_some(()))
        },
    )
    .await?;
    s.wait_available(2, Duration::from_secs(60)).await?;
    eprintln!("5 -> 2 Available after {:?}", t.elapsed());
    assert_eq!(s.commits(), 3, "scale down 5 -> 2 is one commit");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = load.await?;
    let c = flavio_node::rpc::client::Client::connect(&seed, cookie.clone()).await?;
    let stats = c.stats(flavio_proto::v1::StatsRequest::default()).await?;
    eprintln!(
        "acked {acked}, failed {failed}, total_ops {}",
        stats.total_ops
    );
    assert!(!stats.partial);
    assert!(acked > 0);
    // A failed add may have reached some replicas; an acknowledged one reached all three.
    assert!(
        stats.total_ops >= 3 * acked && stats.total_ops <= 3 * (acked + failed),
        "{acked} {failed} {}",
        stats.total_ops
    );
    if failed == 0 {
        assert_eq!(stats.total_ops, 3 * acked);
    }
    s.finish().await
}

/// Acceptance 4: with autoCommit false the plan appears in status and nothing
/// changes until the approval annotation names it.
#[tokio::test]
async fn manual_approval_commits_only_the_named_plan() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(s) = setup("op-approve").await? else {
        return Ok(());
    };
    s.create(json!({"replicas": 2, "addressMode": "podIP", "ringSize": 16, "membership": {"autoCommit": false}})).await?;
    let plan = poll("a published plan", Duration::from_secs(120), || async {
        let fc = s.fcs.get("demo").await?;
        Ok(fc.status.and_then(|st| st.plan))
    })
    .await?;
    assert_eq!(plan.changes.len(), 1, "{plan:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fc = s.fcs.get("demo").await?;
    let st = fc.status.ok_or("status")?;
    assert_eq!(st.phase.as_deref(), Some("AwaitingApproval"));
    assert_eq!(
        st.plan.as_ref().map(|p| p.id.clone()),
        Some(plan.id.clone()),
        "plan stays the same"
    );
    // As in riak, a staged join shows the node as `joining`; it becomes
    // valid only at the commit.
    let states: Vec<&str> = st.members.iter().map(|m| m.state.as_str()).collect();
    assert_eq!(states, ["joining", "valid"], "nothing committed yet");
    assert_eq!(s.commits(), 0);
    s.fcs
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"flaviodb.io/approve-plan": plan.id}}}),
            ),
        )
        .await?;
    s.wait_available(2, Duration::from_secs(60)).await?;
    assert_eq!(s.commits(), 1);
    s.finish().await
}

/// Acceptance 5: an invalid spec and a ring-size change are refused with
/// Degraded and an event, and nothing is created or changed.
#[tokio::test]
async fn invalid_spec_and_ring_size_change_are_refused() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(s) = setup("op-invalid").await? else {
        return Ok(());
    };
    // What the schema can say, the API server refuses at once.
    let err = s
        .create(json!({"replicas": 1, "addressMode": "podIP", "ringSize": 50}))
        .await
        .expect_err("the API server refuses ringSize 50 (the CRD's multipleOf)");
    assert!(
        err.to_string().contains("ringSize") && err.to_string().contains("multiple of 4"),
        "{err}"
    );
    // What it cannot (a rule between two fields, and 1.20 has no CEL), the
    // operator refuses: Degraded, an event, nothing created.
    s.create(
        json!({"replicas": 1, "addressMode": "podIP", "ringSize": 16,
        "nVal": 1, "writeQuorum": 2}),
    )
    .await?;
    let reason = poll("Degraded", Duration::from_secs(30), || async {
        let fc = s.fcs.get("demo").await?;
        Ok(condition(&fc, "Degraded")
            .filter(|(st, _, _)| st == "True")
            .map(|(_, r, _)| r))
    })
    .await?;
    assert_eq!(reason, "InvalidWriteQuorum");
    let sts: Api<StatefulSet> = s.ns.api();
    assert!(
        sts.get_opt("demo").await?.is_none(),
        "nothing created for an invalid spec"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = s.ns.api();
    poll(
        "an InvalidWriteQuorum event",
        Duration::from_secs(10),
        || async {
            let l = events.list(&ListParams::default()).await?.items;
            Ok(l.iter()
                .any(|e| e.reason.as_deref() == Some("InvalidWriteQuorum"))
                .then_some(()))
        },
    )
    .await?;

    // Fix it, let it come up, then try to change the ring size.
    s.fcs
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"writeQuorum": 1}})),
        )
        .await?;
    s.wait_available(1, Duration::from_secs(60)).await?;
    s.fcs
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ringSize": 32, "replicas": 2}})),
        )
        .await?;
    let reason = poll("Degraded", Duration::from_secs(30), || async {
        let fc = s.fcs.get("demo").await?;
        Ok(condition(&fc, "Degraded")
            .filter(|(st, _, _)| st == "True")
            .map(|(_, r, _)| r))
    })
    .await?;
    assert_eq!(reason, "RingSizeImmutable");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = sts.get("demo").await?.spec.and_then(|x| x.replicas);
    assert_eq!(r, Some(1), "no action while the spec is refused");
    s.finish().await
}

/// The chart's pre-delete hook (`flavio-operator delete-cluster`): the wait
/// ends once the cluster is gone, finalizers included, and fails naming the
/// finalizer that nobody removes.
#[tokio::test]
async fn delete_cluster_waits_for_every_finalizer() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(s) = setup("op-delete").await? else {
        return Ok(());
    };
    let wait = |t| delete_and_wait(&s.fcs, "demo", Duration::from_secs(t));
    assert_eq!(wait(5).await?, Deleted::Absent);

    // A refused spec (no pods to wait for) and a finalizer of someone else's.
    let fc: FlavioCluster = serde_json::from_value(json!({
        "apiVersion": "flaviodb.io/v1alpha1", "kind": "FlavioCluster",
        "metadata": {"name": "demo", "finalizers": ["example.com/hold"]},
        "spec": {"replicas": 1, "addressMode": "podIP", "nVal": 1, "writeQuorum": 2}
    }))?;
    s.fcs.create(&PostParams::default(), &fc).await?;
    poll(
        "the operator's finalizer",
        Duration::from_secs(30),
        || async {
            let fc = s.fcs.get("demo").await?;
            Ok(fc
                .metadata
                .finalizers
                .unwrap_or_default()
                .iter()
                .any(|f| f == flavio_operator::crd::FINALIZER)
                .then_some(()))
        },
    )
    .await?;
    let err = wait(3).await.expect_err("the hold keeps it");
    assert!(
        matches!(&err, flavio_operator::Error::StillPresent { finalizers, .. }
            if finalizers.contains("example.com/hold")),
        "{err}"
    );
    // The operator ran its part while we waited.
    let left = s.fcs.get("demo").await?.metadata.finalizers;
    assert_eq!(left, Some(vec!["example.com/hold".to_string()]));

    // Released while a second wait runs: that wait sees it go.
    let waiter = {
        let fcs = s.fcs.clone();
        tokio::spawn(async move { delete_and_wait(&fcs, "demo", Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.fcs
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    assert_eq!(waiter.await??, Deleted::Gone);
    assert!(s.fcs.get_opt("demo").await?.is_none());
    s.finish().await
}

/// Acceptance 3: the operator is stopped in the middle of a scale-down and
/// started again: it resumes from the intent in status and finishes, with one
/// commit for the step and no acknowledged add lost.
#[tokio::test]
async fn operator_restart_mid_scale_down_resumes() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(mut s) = setup("op-restart").await? else {
        return Ok(());
    };
    s.create(json!({"replicas": 4, "addressMode": "podIP", "ringSize": 64}))
        .await?;
    s.wait_available(4, Duration::from_secs(120)).await?;
    let cookie = s.cookie().await?;
    let seed = s.pod_addr(0).await?;
    let c = flavio_node::rpc::client::Client::connect(&seed, cookie.clone()).await?;
    let mut acked = 0u64;
    for i in 0..300 {
        c.add(flavio_proto::v1::AddRequest {
            a: i,
            b: 1,
            ..Default::default()
        })
        .await?;
        acked += 1;
    }
    s.scale(2).await?;
    // Stop the operator as soon as the leave is recorded.
    poll("leave recorded", Duration::from_secs(60), || async {
        let fc = s.fcs.get("demo").await?;
        Ok(fc
            .status
            .filter(|st| !st.intent.leaving.is_empty())
            .map(|_| ()))
    })
    .await?;
    s.operator.abort();
    let _ = (&mut s.operator).await;
    let commits_before = s.commits();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = s.env.client().await?;
    s.operator = start_operator(&client, &s.metrics, &s.ns.name).await;
    s.wait_available(2, Duration::from_secs(120)).await?;
    let sts: Api<StatefulSet> = s.ns.api();
    poll("StatefulSet at 2", Duration::from_secs(30), || async {
        Ok((sts.get("demo").await?.spec.and_then(|x| x.replicas) == Some(2)).then_some(()))
    })
    .await?;
    assert_eq!(commits_before, 2, "form + the one leave commit");
    assert_eq!(
        s.commits(),
        2,
        "the restarted operator did not commit again"
    );
    let stats = c.stats(flavio_proto::v1::StatsRequest::default()).await?;
    assert!(!stats.partial);
    assert_eq!(stats.total_ops, 3 * acked);
    s.finish().await
}

/// `GET /metrics` from a pod's metrics port.
fn scrape(addr: &str) -> Result<String, Box<dyn std::error::Error>> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr)?;
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

/// TLS by default (issue 16): the operator makes a CA and the nodes'
/// certificate, the pods serve TLS only, the operator and clients reach them
/// with the CA; a renewed certificate reaches the running pods through
/// their Secret volume and is taken without a restart.
#[tokio::test]
async fn tls_by_default_and_renewed_certificates_need_no_restart() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(s) = setup("op-tls").await? else {
        return Ok(());
    };
    s.create(json!({"replicas": 2, "addressMode": "podIP", "ringSize": 16}))
        .await?;
    s.wait_available(2, Duration::from_secs(120)).await?;
    let secrets: Api<Secret> = s.ns.api();
    let tls = secrets.get("demo-tls").await?;
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    assert!(secrets.get_opt("demo-tls-ca").await?.is_some());
    let cert_of = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get("tls.crt"))
            .map(|b| b.0.clone())
            .unwrap_or_default()
    };
    let first_cert = cert_of(&tls);

    // Plain TCP with the right cookie is refused, and says why.
    let addr = s.pod_addr(0).await?;
    let credentials = s.cookie().await?;
    let plain =
        flavio_node::rpc::Credentials::new(std::sync::Arc::clone(&credentials.cookie), None);
    let refused = flavio_node::rpc::Client::connect(&addr, plain)
        .await?
        .ping()
        .await
        .expect_err("a plain client is refused");
    assert!(refused.message().contains("TLS"), "{refused:?}");
    // With the cluster's CA it works (the operator itself got this far).
    flavio_node::rpc::Client::connect(&addr, credentials.clone())
        .await?
        .ping()
        .await?;

    // Renewal: the certificate is due (its annotation says it expired);
    // any change of the FlavioCluster makes the operator look.
    let pods: Api<Pod> = s.ns.api();
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|st| st.container_statuses.as_ref())
            .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum::<i32>())
    };
    let before: Vec<i32> = [pods.get("demo-0").await?, pods.get("demo-1").await?]
        .iter()
        .map(restarts)
        .collect();
    secrets
        .patch(
            "demo-tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"flaviodb.io/not-after": "0"}}})),
        )
        .await?;
    s.fcs
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test.flaviodb.io/poke": "1"}}})),
        )
        .await?;
    poll("a renewed certificate", Duration::from_secs(60), || async {
        let now = secrets.get("demo-tls").await?;
        Ok((cert_of(&now) != first_cert).then_some(()))
    })
    .await?;
    for i in 0..2 {
        let metrics = format!(
            "{}:10018",
            s.pod_addr(i).await?.rsplit_once(':').map_or("", |(h, _)| h)
        );
        poll(
            &format!("demo-{i} takes the new certificate"),
            Duration::from_secs(60),
            || {
                let metrics = metrics.clone();
                async move {
                    let text = scrape(&metrics)?;
                    let n = text
                        .lines()
                        .find_map(|l| l.strip_prefix("flavio_secret_reloads_total{file=\"tls\"} "))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .unwrap_or(0.0);
                    Ok((n >= 1.0).then_some(()))
                }
            },
        )
        .await?;
    }
    let after: Vec<i32> = [pods.get("demo-0").await?, pods.get("demo-1").await?]
        .iter()
        .map(restarts)
        .collect();
    assert_eq!(before, after, "no pod restarted for the new certificate");
    // New connections meet the new certificate and the cluster still serves.
    flavio_node::rpc::Client::connect(&addr, s.cookie().await?)
        .await?
        .add(flavio_proto::v1::AddRequest {
            a: 1,
            b: 2,
            ..Default::default()
        })
        .await?;
    s.finish().await
}

/// Issue 16, `tls.mode: certManager`: the operator creates a cert-manager
/// Certificate from `issuerRef` and waits (event `TlsNotReady`) until the
/// Secret exists; here the test plays cert-manager (with a bare Certificate
/// CRD installed), and the cluster comes up on that certificate.
#[tokio::test]
async fn cert_manager_mode_creates_a_certificate_and_uses_its_secret() -> TestResult {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let _serial = SERIAL.lock().await;
    let Some(s) = setup("op-certmgr").await? else {
        return Ok(());
    };
    let client = s.env.client().await?;
    // cert-manager's Certificate kind, without cert-manager: a CRD that keeps
    // whatever it is given.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "certificates.cert-manager.io"},
        "spec": {
            "group": "cert-manager.io",
            "scope": "Namespaced",
            "names": {"plural": "certificates", "singular": "certificate", "kind": "Certificate"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))?;
    crds.patch(
        "certificates.cert-manager.io",
        &PatchParams::apply("flavio-operator-test").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "certificates");
    let certs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &s.ns.name, &ar);
    poll(
        "the Certificate kind is served",
        Duration::from_secs(30),
        || async { Ok(certs.list(&ListParams::default()).await.ok().map(|_| ())) },
    )
    .await?;

    s.create(
        json!({"replicas": 2, "addressMode": "podIP", "ringSize": 16,
        "tls": {"mode": "certManager", "issuerRef": {"name": "test-ca"}, "certificateDays": 30}}),
    )
    .await?;
    let cert = poll(
        "the operator's Certificate",
        Duration::from_secs(60),
        || async { Ok(certs.get_opt("demo-tls").await?) },
    )
    .await?;
    let spec = &cert.data["spec"];
    assert_eq!(spec["secretName"], "demo-tls");
    assert_eq!(spec["issuerRef"]["name"], "test-ca");
    assert_eq!(spec["issuerRef"]["kind"], "Issuer");
    assert_eq!(spec["duration"], "720h");
    let server_name = format!("demo.{}.svc", s.ns.name);
    let names: Vec<String> = spec["dnsNames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert!(names.contains(&server_name), "{names:?}");
    for usage in ["server auth", "client auth"] {
        assert!(
            spec["usages"]
                .as_array()
                .is_some_and(|u| u.iter().any(|x| x == usage)),
            "{spec}"
        );
    }
    poll("a TlsNotReady event", Duration::from_secs(30), || async {
        Ok(s.event_reasons()
            .await?
            .iter()
            .any(|r| r == "TlsNotReady")
            .then_some(()))
    })
    .await?;

    // cert-manager's part: the Secret, with ca.crt.
    let ca = flavio_node::rpc::pki::Authority::new("test-ca", Duration::from_secs(86_400))?;
    let issued = ca.issue(&names, Duration::from_secs(86_400))?;
    let secrets: Api<Secret> = s.ns.api();
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "demo-tls"},
        "stringData": {"tls.crt": issued.cert_pem, "tls.key": issued.key_pem, "ca.crt": ca.ca().cert_pem},
    }))?;
    secrets.create(&PostParams::default(), &secret).await?;
    s.wait_available(2, Duration::from_secs(120)).await?;
    let addr = s.pod_addr(1).await?;
    flavio_node::rpc::Client::connect(&addr, s.cookie().await?)
        .await?
        .ping()
        .await?;
    s.finish().await
}

/// `kubectl exec <pod> -- flavio ...` with no flags (issue 4, item 6): the
/// pod's own environment (`FLAVIO_NODE`, `FLAVIO_COOKIE_FILE` on the cookie
/// volume) is all the CLI needs. The stand-in has no streaming exec, so the
/// commands run through `exec_in_pod`, with the environment and mounts the
/// stand-in started the container with.
#[tokio::test]
async fn cli_in_a_node_pod_needs_no_flags() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(s) = setup("op-exec").await? else {
        return Ok(());
    };
    s.create(json!({"replicas": 3, "addressMode": "podIP"}))
        .await?;
    s.wait_available(3, Duration::from_secs(120)).await?;
    let pods: Api<Pod> = s.ns.api();
    let run = |pod: String, argv: &'static [&'static str]| {
        let pods = pods.clone();
        async move {
            let out = exec_in_pod(&pods, &pod, None, argv, Duration::from_secs(30)).await?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                return Err(format!(
                    "{argv:?} in {pod}: {}\nstdout: {stdout}\nstderr: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
            Ok::<_, Box<dyn std::error::Error>>(stdout)
        }
    };

    for i in 0..3 {
        let pod = format!("demo-{i}");
        // The node address comes from the pod's env, resolved as the kubelet does.
        let node = run(pod.clone(), &["sh", "-c", "echo $FLAVIO_NODE"]).await?;
        assert_eq!(node.trim(), s.pod_addr(i).await?, "{pod}");
        let pong = run(pod.clone(), &["flavio", "ping"]).await?;
        assert!(pong.starts_with("pong "), "{pod}: {pong}");
    }
    let add = run("demo-1".into(), &["flavio", "add", "2", "5"]).await?;
    let mut lines = add.lines();
    assert_eq!(lines.next(), Some("7"), "{add}");
    assert_eq!(lines.count(), 3, "one line per replica (n=3): {add}");

    let stats = run("demo-2".into(), &["flavio", "stats"]).await?;
    let total: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("Total: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no total in {stats}"))?;
    assert!(
        total >= 3,
        "the add's three replica ops are counted: {stats}"
    );

    let members = run("demo-0".into(), &["flavio", "admin", "member-status"]).await?;
    for i in 0..3 {
        let name = format!("flavio@demo-{i}.demo-headless.{}.svc", s.ns.name);
        assert!(members.contains(&name), "{name} missing:\n{members}");
    }
    assert!(members.contains("valid"), "{members}");
    s.finish().await
}

/// `flavio bench --op add` (the cluster's N=3, W=3) through `node`, in
/// back-to-back runs of a few seconds until stopped; sums what they saw.
struct BenchLoop {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<(u64, u64), String>>,
}

impl BenchLoop {
    fn start(bin: std::path::PathBuf, node: String, env: Vec<(String, String)>) -> BenchLoop {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut ok, mut errors) = (0u64, 0u64);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                // Two sessions through the Service, 16 adds in flight.
                let out = std::process::Command::new(&bin)
                    .args(["bench", "--op", "add", "--concurrency", "16"])
                    .args(["--duration", "5s", "--output", "json"])
                    .args(["--node", &node, "--also-node", &node])
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "bench failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                let r: serde_json::Value =
                    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
                ok += r["ok"].as_u64().unwrap_or(0);
                let e = r["errors"].as_u64().unwrap_or(0);
                if e > 0 {
                    eprintln!("bench: {e} errors, first: {}", r["first_error"]);
                }
                errors += e;
            }
            Ok((ok, errors))
        });
        BenchLoop { stop, thread }
    }

    /// Stops after the current run; (acknowledged, failed).
    fn stop(self) -> Result<(u64, u64), Box<dyn std::error::Error>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(self.thread.join().map_err(|_| "bench thread panicked")??)
    }
}

impl Setup {
    async fn set_image(&self, image: &str) -> TestResult {
        self.fcs
            .patch(
                "demo",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"image": image}})),
            )
            .await?;
        Ok(())
    }

    /// The total of `stats` through pod 0, once every partition answers.
    async fn total_ops(&self) -> Result<u64, Box<dyn std::error::Error>> {
        let cookie = self.cookie().await?;
        let addr = self.pod_addr(0).await?;
        poll("a complete stats", Duration::from_secs(30), || async {
            let c = flavio_node::rpc::client::Client::connect(&addr, cookie.clone()).await?;
            let s = c.stats(flavio_proto::v1::StatsRequest::default()).await?;
            Ok((!s.partial).then_some(s.total_ops))
        })
        .await
    }

    /// Reasons of the cluster's events, oldest first.
    async fn event_reasons(&self) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let events: Api<k8s_openapi::api::core::v1::Event> = self.ns.api();
        let mut list = events
            .list(&ListParams::default().fields("involvedObject.name=demo"))
            .await?
            .items;
        list.sort_by_key(|e| e.metadata.creation_timestamp.clone());
        Ok(list.into_iter().filter_map(|e| e.reason).collect())
    }
}

/// Waits until the roll is over: every pod on the update revision, the
/// cluster Available, not Upgrading, not Degraded. Meanwhile checks that at
/// most one pod is down at a time, and returns the order pods restarted in.
async fn watch_roll(s: &Setup, timeout: Duration) -> Result<Vec<i32>, Box<dyn std::error::Error>> {
    let pods: Api<Pod> = s.ns.api();
    let mut uids: Vec<Option<String>> = Vec::new();
    for o in 0..4 {
        uids.push(
            pods.get_opt(&format!("demo-{o}"))
                .await?
                .and_then(|p| p.metadata.uid),
        );
    }
    let mut order: Vec<i32> = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let mut down = Vec::new();
        for o in 0..4 {
            let p = pods.get_opt(&format!("demo-{o}")).await?;
            let uid = p.as_ref().and_then(|p| p.metadata.uid.clone());
            if uid != uids[o as usize] {
                if !order.contains(&o) {
                    order.push(o);
                }
                if uid.is_some() {
                    uids[o as usize] = uid;
                }
            }
            if !p.as_ref().is_some_and(flavio_testenv::harness::pod_ready) {
                down.push(o);
            }
        }
        assert!(down.len() <= 1, "more than one pod down at once: {down:?}");
        let fc = s.fcs.get("demo").await?;
        let st = fc.status.clone().unwrap_or_default();
        let is = |t: &str, v: &str| condition(&fc, t).is_some_and(|(x, _, _)| x == v);
        // The status must be of the spec that asked for the roll.
        if st.observed_generation == fc.metadata.generation
            && st.updated_replicas == 4
            && is("Available", "True")
            && is("Upgrading", "False")
            && is("Degraded", "False")
            && down.is_empty()
        {
            return Ok(order);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "roll not done after {timeout:?}: restarted {order:?}, status {:?}",
                fc.status
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Issue 16, cookie rotation: under `flavio bench` through the Service, a
/// new value in the cookie Secret reaches the pods in three steps (accept,
/// send, drop the old) with no failed add; the old cookie is refused after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_rotates_under_load_with_no_failed_add() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(bin) = built_flavio_bin()? else {
        return Ok(());
    };
    let Some(s) = setup("op-cookie").await? else {
        return Ok(());
    };
    s.create(json!({"replicas": 3, "addressMode": "podIP", "ringSize": 16}))
        .await?;
    s.wait_available(3, Duration::from_secs(120)).await?;
    let old = s.cookie().await?;
    let dir = tempfile::tempdir()?;
    let client_env = s.client_env(dir.path()).await?;
    let proxy = flavio_testenv::proxy::ServiceProxy::start(s.ns.api(), s.ns.api(), "demo").await?;
    poll("3 ready endpoints", Duration::from_secs(30), || async {
        Ok((proxy.endpoints().len() == 3).then_some(()))
    })
    .await?;
    let load = BenchLoop::start(bin, proxy.addr(), client_env);
    tokio::time::sleep(Duration::from_secs(3)).await;

    const NEW: &str = "rotated-cookie-4f2a9c";
    let secrets: Api<Secret> = s.ns.api();
    secrets
        .patch(
            "demo-cookie",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"cookie": NEW}})),
        )
        .await?;
    // Any change of the FlavioCluster makes the operator look (it does not
    // watch Secrets; otherwise within its one-minute resync).
    s.fcs
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"test.flaviodb.io/poke": "cookie"}}}),
            ),
        )
        .await?;
    let live = || async {
        let sec = secrets.get("demo-cookie-live").await?;
        let text = sec
            .data
            .and_then(|d| d.get("cookie").cloned())
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default();
        Ok::<_, Box<dyn std::error::Error>>(text.lines().map(str::to_string).collect::<Vec<_>>())
    };
    // Clients move to the new cookie once every node accepts it: when the
    // operator has written step 2.
    poll(
        "step 2 of the rotation",
        Duration::from_secs(120),
        || async { Ok((live().await?.first().map(String::as_str) == Some(NEW)).then_some(())) },
    )
    .await?;
    std::fs::write(dir.path().join("cookie"), NEW)?;
    poll(
        "step 3 of the rotation",
        Duration::from_secs(120),
        || async { Ok((live().await? == [NEW.to_string()]).then_some(())) },
    )
    .await?;
    // Every pod drops the old cookie (read from its volume within seconds).
    let addr = s.pod_addr(0).await?;
    for i in 0..3 {
        let addr = s.pod_addr(i).await?;
        poll(
            &format!("demo-{i} refuses the old cookie"),
            Duration::from_secs(60),
            || async {
                let r = flavio_node::rpc::Client::connect(&addr, old.clone())
                    .await?
                    .ping()
                    .await;
                Ok(
                    matches!(r, Err(st) if st.code() == tonic::Code::PermissionDenied)
                        .then_some(()),
                )
            },
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (acked, failed) = load.stop()?;
    let total = s.total_ops().await?;
    eprintln!(
        "cookie rotated: {acked} adds acknowledged, {failed} failed; stats total {total} (via {addr})"
    );
    assert!(acked > 0);
    assert_eq!(failed, 0, "no add fails during the rotation");
    assert_eq!(
        total,
        3 * acked,
        "every acknowledged add counted three times"
    );
    // One event per step (repeats of a reason are folded into one event).
    let reasons = s.event_reasons().await?;
    assert!(
        reasons.iter().any(|r| r == "CookieRotation"),
        "no CookieRotation event: {reasons:?}"
    );
    s.finish().await
}

/// Issue 15, acceptance 1 and 2: under `flavio bench` through the Service, a
/// new `spec.image` rolls the four pods one by one, highest first, with no
/// failed add and exact counts; then an image that cannot start stops the
/// roll at demo-3 (Degraded names it) while the cluster serves, and
/// reverting the image completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_under_load_fails_no_add() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(bin) = built_flavio_bin()? else {
        return Ok(());
    };
    let Some(s) = setup("op-roll").await? else {
        return Ok(());
    };
    s.create(
        json!({"replicas": 4, "addressMode": "podIP", "ringSize": 32,
        "upgrade": {"podTimeoutSeconds": 120}}),
    )
    .await?;
    s.wait_available(4, Duration::from_secs(180)).await?;
    let dir = tempfile::tempdir()?;
    let client_env = s.client_env(dir.path()).await?;
    let proxy = flavio_testenv::proxy::ServiceProxy::start(s.ns.api(), s.ns.api(), "demo").await?;
    poll("4 ready endpoints", Duration::from_secs(30), || async {
        Ok((proxy.endpoints().len() == 4).then_some(()))
    })
    .await?;

    // 1. A new image, rolled under load.
    let load = BenchLoop::start(bin.clone(), proxy.addr(), client_env.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = Instant::now();
    s.set_image("flaviodb/flavio:rolled").await?;
    let order = watch_roll(&s, Duration::from_secs(480)).await?;
    let took = t.elapsed();
    let (acked, failed) = load.stop()?;
    let total = s.total_ops().await?;
    eprintln!(
        "roll of 4 pods took {took:?} (order {order:?}); {acked} adds acknowledged, {failed} failed; stats total {total}"
    );
    assert_eq!(order, vec![3, 2, 1, 0], "highest ordinal first, each once");
    assert!(acked > 0);
    assert_eq!(failed, 0, "no add fails during the roll");
    assert_eq!(
        total,
        3 * acked,
        "every acknowledged add counted three times, once"
    );
    let reasons = s.event_reasons().await?;
    for r in [
        "UpgradeStarted",
        "RollingPod",
        "PodUpgraded",
        "UpgradeCompleted",
    ] {
        assert!(reasons.iter().any(|x| x == r), "no {r} event: {reasons:?}");
    }

    // 2. An image that cannot start: the roll stops at demo-3.
    let load = BenchLoop::start(bin.clone(), proxy.addr(), client_env.clone());
    s.set_image("flaviodb/flavio-missing:1").await?;
    let msg = poll(
        "Degraded naming demo-3",
        Duration::from_secs(120),
        || async {
            let fc = s.fcs.get("demo").await?;
            Ok(condition(&fc, "Degraded")
                .filter(|(st, reason, _)| st == "True" && reason == "UpgradeStuck")
                .map(|(_, _, m)| m))
        },
    )
    .await?;
    assert!(msg.contains("demo-3"), "{msg}");
    // It stays stopped there: the other three keep the old revision and serve.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let pods: Api<Pod> = s.ns.api();
    let sts: Api<StatefulSet> = s.ns.api();
    let update = sts
        .get("demo")
        .await?
        .status
        .and_then(|x| x.update_revision)
        .ok_or("no update revision")?;
    for o in 0..3 {
        let p = pods.get(&format!("demo-{o}")).await?;
        assert!(
            flavio_testenv::harness::pod_ready(&p),
            "demo-{o} must stay Ready"
        );
        assert_ne!(
            p.metadata
                .labels
                .unwrap_or_default()
                .get("controller-revision-hash"),
            Some(&update),
            "demo-{o} must not be rolled past the stuck demo-3"
        );
    }
    let fc = s.fcs.get("demo").await?;
    assert!(
        condition(&fc, "Degraded").is_some_and(|(st, _, m)| st == "True" && m.contains("demo-3")),
        "{:?}",
        fc.status
    );
    // Reverting resumes and completes.
    s.set_image("flaviodb/flavio:rolled").await?;
    watch_roll(&s, Duration::from_secs(300)).await?;
    let (acked2, failed2) = load.stop()?;
    let total = s.total_ops().await?;
    eprintln!(
        "stuck roll and revert: {acked2} adds acknowledged, {failed2} failed; stats total {total}"
    );
    assert_eq!(
        failed2, 0,
        "no add fails while the roll is stuck or reverted"
    );
    assert_eq!(total, 3 * (acked + acked2));
    drop(proxy);
    s.finish().await
}

/// Issue 15, acceptance 3: a member's pod comes back on an empty volume
/// (its volume's directory wiped under the frozen node, as a lost disk would
/// leave it, and the pod deleted; the stand-in keys a PVC's directory by the
/// claim's name, so deleting the claim object alone loses nothing here): the
/// operator sees its node answer for a cluster of its own, force-removes the
/// member (marking it down first when it is the claimant), names the lost
/// partitions in an event, and the pod joins again. The same for pod 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_volume_is_replaced_automatically() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(s) = setup("op-lost").await? else {
        return Ok(());
    };
    s.create(json!({"replicas": 4, "addressMode": "podIP", "ringSize": 32}))
        .await?;
    s.wait_available(4, Duration::from_secs(180)).await?;
    let pods: Api<Pod> = s.ns.api();
    let cookie = s.cookie().await?;
    for victim in [2, 0] {
        let pod = format!("demo-{victim}");
        let node = format!("flavio@demo-{victim}.demo-headless.{}.svc", s.ns.name);
        let p = pods.get(&pod).await?;
        let pid = flavio_testenv::harness::container_pid(&p, "flavio").ok_or("no pid")?;
        let t = Instant::now();
        // The disk is gone: freeze the node (so it writes nothing more), empty
        // its volume's directory, then delete the pod at once. The
        // StatefulSet's new pod starts on the empty directory.
        let signal = |sig: &str| {
            std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
        };
        assert!(signal("-STOP")?.success());
        let dir = s.env.pvc_dir(&s.ns.name, &format!("data-{pod}"));
        std::fs::remove_dir_all(&dir)?;
        std::fs::create_dir_all(&dir)?;
        pods.delete(&pod, &DeleteParams::default().grace_period(0))
            .await?;
        let _ = signal("-KILL");
        let note = poll(
            &format!("a VolumeLost event naming the partitions of {node}"),
            Duration::from_secs(120),
            || async {
                let events: Api<k8s_openapi::api::core::v1::Event> = s.ns.api();
                let l = events
                    .list(&ListParams::default().fields("involvedObject.name=demo"))
                    .await?
                    .items;
                Ok(l.into_iter()
                    .filter(|e| e.reason.as_deref() == Some("VolumeLost"))
                    .filter_map(|e| e.message)
                    .find(|m| m.contains(&node) && m.contains("partitions it owned")))
            },
        )
        .await?;
        s.wait_available(4, Duration::from_secs(180)).await?;
        eprintln!(
            "{pod}: replaced and Available after {:?}; event: {note}",
            t.elapsed()
        );
        // Every partition is owned by a valid member, the victim one again.
        let seed = s.pod_addr(if victim == 0 { 1 } else { 0 }).await?;
        let o = flavio_operator::ring::observe(&seed, &cookie).await?;
        let valid: Vec<&str> = o
            .view
            .members
            .iter()
            .filter(|m| m.state == flavio_operator::decide::State::Valid)
            .map(|m| m.name.as_str())
            .collect();
        assert!(
            valid.contains(&node.as_str()),
            "{node} is a member again: {valid:?}"
        );
        assert_eq!(o.view.owners.len(), 32);
        for (p, owner) in &o.view.owners {
            assert!(
                valid.contains(&owner.as_str()),
                "partition {p} owned by {owner}, not valid"
            );
        }
        let fc = s.fcs.get("demo").await?;
        assert_eq!(
            fc.status.as_ref().and_then(|x| x.cluster_id.clone()),
            Some(o.view.cluster_id.clone()),
            "the operator still follows the cluster's ring"
        );
    }
    s.finish().await
}

/// A cluster of `replicas` pods in a namespace whose pods the stand-in
/// spreads over its first `zones` zone nodes. Returns the setup, the
/// Available FlavioCluster and the ring as `admin ring-status --output json`
/// prints it inside pod 0.
async fn zoned_cluster(
    prefix: &str,
    zones: usize,
    replicas: usize,
    ring_size: u32,
) -> Result<Option<(Setup, FlavioCluster, serde_json::Value)>, Box<dyn std::error::Error>> {
    let Some(s) = setup(prefix).await? else {
        return Ok(None);
    };
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(s.ns.client());
    namespaces
        .patch(
            &s.ns.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                flavio_testenv::standin::ZONES_LABEL: zones.to_string()
            }}})),
        )
        .await?;
    s.create(json!({"replicas": replicas, "addressMode": "podIP", "ringSize": ring_size}))
        .await?;
    let fc = s.wait_available(replicas, Duration::from_secs(300)).await?;
    let pods: Api<Pod> = s.ns.api();
    let out = exec_in_pod(
        &pods,
        "demo-0",
        None,
        &["flavio", "admin", "ring-status", "--output", "json"],
        Duration::from_secs(30),
    )
    .await?;
    if !out.status.success() {
        return Err(format!("ring-status: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let ring: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    // Every member's location is its pod's node's zone.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(s.ns.client());
    let owners = ring["owners"].as_array().ok_or("no owners")?;
    for o in 0..replicas {
        let p = pods.get(&format!("demo-{o}")).await?;
        let node = p.spec.and_then(|s| s.node_name).ok_or("unscheduled")?;
        let zone = nodes
            .get(&node)
            .await?
            .metadata
            .labels
            .and_then(|l| l.get(flavio_testenv::standin::ZONE_LABEL).cloned())
            .ok_or("a node without a zone")?;
        let name = format!("flavio@demo-{o}.demo-headless.{}.svc", s.ns.name);
        for owner in owners.iter().filter(|x| x["node"] == name.as_str()) {
            assert_eq!(owner["location"], zone.as_str(), "{name} on {node}");
        }
    }
    Ok(Some((s, fc, ring)))
}

/// Per preference list of 3 (one starting at each partition): distinct
/// nodes and distinct zones.
fn lists_of_three(ring: &serde_json::Value) -> Vec<(usize, usize)> {
    let owners = ring["owners"].as_array().cloned().unwrap_or_default();
    let s = owners.len();
    (0..s)
        .map(|i| {
            let distinct = |key: &str| {
                let mut v: Vec<String> = (0..3)
                    .map(|k| owners[(i + k) % s][key].to_string())
                    .collect();
                v.sort();
                v.dedup();
                v.len()
            };
            (distinct("node"), distinct("location"))
        })
        .collect()
}

#[tokio::test]
async fn zones_spread_every_preference_list() -> TestResult {
    let _serial = SERIAL.lock().await;
    // Three zones, six pods, ring 48: every list of three on three zones and
    // on three nodes, no warning. (On a ring whose size is not a multiple of
    // 3, such as the default 64, the counts force 2 lists onto two zones:
    // see ring::claim::location and the claimant's tests.)
    let three = async {
        let Some((s, fc, ring)) = zoned_cluster("op-zones3", 3, 6, 48).await? else {
            return Ok::<_, Box<dyn std::error::Error>>(None);
        };
        let lists = lists_of_three(&ring);
        assert_eq!(lists.len(), 48);
        assert!(lists.iter().all(|(n, _)| *n == 3), "a list on two nodes");
        let short = lists.iter().filter(|(_, z)| *z < 3).count();
        eprintln!("3 zones, 6 pods, ring 48: {short} of 48 lists of 3 on two zones");
        assert!(lists.iter().all(|(_, z)| *z == 3), "{lists:?}");
        assert_eq!(ring["short_location_preflists"], 0);
        let warnings = fc.status.map(|st| st.warnings).unwrap_or_default();
        assert!(warnings.is_empty(), "{warnings:?}");
        Ok(Some(s))
    };
    // Two zones: no list of three can be on three zones; the plan warns and
    // the cluster's status says so.
    let two = async {
        let Some((s, fc, ring)) = zoned_cluster("op-zones2", 2, 4, 32).await? else {
            return Ok::<_, Box<dyn std::error::Error>>(None);
        };
        let lists = lists_of_three(&ring);
        assert!(lists.iter().all(|(n, z)| *n == 3 && *z == 2), "{lists:?}");
        assert_eq!(ring["short_location_preflists"], 32);
        let warnings = fc.status.map(|st| st.warnings).unwrap_or_default();
        eprintln!("2 zones: status warnings {warnings:?}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("32 of 32 preference lists") && w.contains("2 zones")),
            "{warnings:?}"
        );
        let events: Api<k8s_openapi::api::core::v1::Event> = s.ns.api();
        let committed: Vec<String> = events
            .list(&ListParams::default().fields("involvedObject.name=demo"))
            .await?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("PlanCommitted"))
            .filter_map(|e| e.message)
            .collect();
        assert!(
            committed
                .iter()
                .any(|m| m.contains("Not all replicas will be on distinct locations")),
            "{committed:?}"
        );
        Ok(Some(s))
    };
    // Four zones of two pods on a ring of 64 (a multiple of 4): every list of
    // three on three zones, and no warning.
    let four = async {
        let Some((s, fc, ring)) = zoned_cluster("op-zones4", 4, 8, 64).await? else {
            return Ok::<_, Box<dyn std::error::Error>>(None);
        };
        let lists = lists_of_three(&ring);
        assert_eq!(lists.len(), 64);
        assert!(lists.iter().all(|(n, z)| *n == 3 && *z == 3), "{lists:?}");
        assert_eq!(ring["short_location_preflists"], 0);
        let warnings = fc.status.map(|st| st.warnings).unwrap_or_default();
        assert!(warnings.is_empty(), "{warnings:?}");
        eprintln!("4 zones, 8 pods, ring 64: every list of 3 on 3 zones");
        Ok(Some(s))
    };
    let (three, two, four) = tokio::join!(three, two, four);
    for s in [three?, two?, four?].into_iter().flatten() {
        s.finish().await?;
    }
    Ok(())
}
