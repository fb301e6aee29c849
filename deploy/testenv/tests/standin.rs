//! Acceptance tests of the kubelet stand-in against the real 1.20 control plane.
//!
//! Each test skips when the environment can't be had, and fails instead with
//! `FLAVIO_TESTENV=required`. Containers are `/bin/sh` (image `testenv/shell`).

use std::time::{Duration, Instant};

use flavio_testenv::harness::{
    TestEnv, container_pid, kill_pod_process, pid_alive, restart_count, wait_for, wait_pod_gone,
    wait_pod_ready,
};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A pod running `script` in `sh -c`, with `OUT` pointing at a hostPath dir.
fn shell_pod(
    name: &str,
    script: &str,
    out_dir: &str,
    grace: i64,
) -> Result<Pod, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "containers": [{
                "name": "main", "image": "testenv/shell",
                "command": ["sh", "-c", script],
                "env": [{"name": "OUT", "value": "/out"}],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                "readinessProbe": {"exec": {"command": ["sh", "-c", "test -f $OUT/started"]}, "periodSeconds": 1},
            }],
            "volumes": [{"name": "out", "hostPath": {"path": out_dir}}],
        }
    }))
}

#[tokio::test]
async fn deletion_sends_sigterm_first_then_sigkill_after_grace() -> TestResult {
    let Some(env) = TestEnv::get().await? else {
        return Ok(());
    };
    let ns = env.namespace("sigterm").await?;
    let pods: Api<Pod> = ns.api();
    let out = tempfile::tempdir()?;
    let out_dir = out.path().display().to_string();

    // A process that handles SIGTERM: it records it and exits well within the grace.
    let graceful = "trap 'echo TERM > $OUT/term; exit 0' TERM; touch $OUT/started; while true; do sleep 0.1; done";
    pods.create(
        &PostParams::default(),
        &shell_pod("graceful", graceful, &out_dir, 30)?,
    )
    .await?;
    wait_pod_ready(&pods, "graceful", Duration::from_secs(30)).await?;
    let t0 = Instant::now();
    pods.delete("graceful", &DeleteParams::default()).await?;
    wait_pod_gone(&pods, "graceful", Duration::from_secs(30)).await?;
    let took = t0.elapsed();
    assert_eq!(
        std::fs::read_to_string(out.path().join("term"))?.trim(),
        "TERM"
    );
    assert!(
        took < Duration::from_secs(10),
        "graceful exit took {took:?}"
    );

    // A process that ignores SIGTERM is SIGKILLed once the 2 s grace is over.
    std::fs::remove_file(out.path().join("started"))?;
    let stubborn = "trap 'echo TERM >> $OUT/stubborn' TERM; touch $OUT/started; while true; do sleep 0.1; done";
    pods.create(
        &PostParams::default(),
        &shell_pod("stubborn", stubborn, &out_dir, 2)?,
    )
    .await?;
    let pod = wait_pod_ready(&pods, "stubborn", Duration::from_secs(30)).await?;
    let pid = container_pid(&pod, "main").ok_or("no pid in containerID")?;
    let t0 = Instant::now();
    pods.delete("stubborn", &DeleteParams::default()).await?;
    wait_pod_gone(&pods, "stubborn", Duration::from_secs(30)).await?;
    let took = t0.elapsed();
    assert!(std::fs::read_to_string(out.path().join("stubborn"))?.contains("TERM"));
    assert!(
        took >= Duration::from_secs(2),
        "killed before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "kill took {took:?}");
    assert!(!pid_alive(pid), "process {pid} still alive");
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn killed_process_is_restarted_and_counted() -> TestResult {
    let Some(env) = TestEnv::get().await? else {
        return Ok(());
    };
    let ns = env.namespace("restart").await?;
    let pods: Api<Pod> = ns.api();
    let out = tempfile::tempdir()?;
    let script = "echo run; touch $OUT/started; exec sleep 3600";
    pods.create(
        &PostParams::default(),
        &shell_pod("victim", script, &out.path().display().to_string(), 5)?,
    )
    .await?;
    let pod = wait_pod_ready(&pods, "victim", Duration::from_secs(30)).await?;
    let first = container_pid(&pod, "main").ok_or("no pid")?;
    assert_eq!(restart_count(&pod, "main"), 0);

    kill_pod_process(&pods, "victim").await?;
    let pods2 = pods.clone();
    let pod = wait_for(
        "restartCount 1 and Ready again",
        Duration::from_secs(30),
        || {
            let pods = pods2.clone();
            async move {
                Ok(pods.get_opt("victim").await?.filter(|p| {
                    restart_count(p, "main") == 1
                        && flavio_testenv::harness::pod_ready(p)
                        && container_pid(p, "main").is_some_and(|pid| pid != first)
                }))
            }
        },
    )
    .await?;
    let second = container_pid(&pod, "main").ok_or("no pid")?;
    assert!(!pid_alive(first), "killed process {first} still alive");
    assert!(pid_alive(second));
    let last = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code);
    assert_eq!(last, Some(137), "lastState should record the SIGKILL");
    assert_eq!(
        env.pod_logs(&ns.name, "victim", "main"),
        "run\nrun\n",
        "logs of both runs"
    );
    // The same through the API server (`kubectl logs`), proxied to the stand-in.
    let via_api = pods
        .logs("victim", &kube::api::LogParams::default())
        .await?;
    assert_eq!(via_api, "run\nrun\n");
    ns.cleanup().await?;
    assert!(!pid_alive(second), "cleanup left process {second} running");
    Ok(())
}

#[tokio::test]
async fn pvc_directory_survives_pod_and_is_remounted() -> TestResult {
    let Some(env) = TestEnv::get().await? else {
        return Ok(());
    };
    let ns = env.namespace("pvc").await?;
    let pods: Api<Pod> = ns.api();
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    pvcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }))?,
    )
    .await?;
    let pod = |name: &str, script: &str| -> Result<Pod, serde_json::Error> {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{
                    "name": "main", "image": "testenv/shell",
                    "command": ["sh", "-c", script],
                    "env": [{"name": "D", "value": "/var/lib/data"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/data"}],
                    "readinessProbe": {"exec": {"command": ["sh", "-c", "test -f $D/ready-$HOSTNAME"]}, "periodSeconds": 1},
                }],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            }
        }))
    };
    pods.create(
        &PostParams::default(),
        &pod(
            "first",
            "echo one >> $D/marks; touch $D/ready-$HOSTNAME; exec sleep 3600",
        )?,
    )
    .await?;
    wait_pod_ready(&pods, "first", Duration::from_secs(30)).await?;
    pods.delete("first", &DeleteParams::default()).await?;
    wait_pod_gone(&pods, "first", Duration::from_secs(30)).await?;
    let phase = pvcs.get("data").await?.status.and_then(|s| s.phase);
    assert_eq!(
        phase.as_deref(),
        Some("Bound"),
        "the stand-in binds claims it mounts"
    );
    let dir = env.pvc_dir(&ns.name, "data");
    assert_eq!(
        std::fs::read_to_string(dir.join("marks"))?,
        "one\n",
        "data lost with the pod"
    );

    pods.create(
        &PostParams::default(),
        &pod(
            "second",
            "cp $D/marks $D/seen; echo two >> $D/marks; touch $D/ready-$HOSTNAME; exec sleep 3600",
        )?,
    )
    .await?;
    wait_pod_ready(&pods, "second", Duration::from_secs(30)).await?;
    assert_eq!(std::fs::read_to_string(dir.join("seen"))?, "one\n");
    assert_eq!(std::fs::read_to_string(dir.join("marks"))?, "one\ntwo\n");
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn environment_is_resolved_like_the_kubelet() -> TestResult {
    let Some(env) = TestEnv::get().await? else {
        return Ok(());
    };
    let ns = env.namespace("env").await?;
    let pods: Api<Pod> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let cms: Api<ConfigMap> = ns.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "stringData": {"cookie": "sekrit"}
            }))?,
        )
        .await?;
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"color": "blue", "file.txt": "from-configmap"}
        }))?,
    )
    .await?;
    let out = tempfile::tempdir()?;
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "envy", "labels": {"tier": "gold"}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main", "image": "testenv/shell",
                "command": ["sh", "-c"],
                "args": ["echo \"$(POD_NAME) $(POD_NS) $(POD_IP) $(COOKIE) $(COLOR) $(TIER) $(ADDR)\" '$$(LITERAL)' > $OUT/env; cat $CONF/file.txt > $OUT/conf; touch $OUT/started; exec sleep 3600"],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                    {"name": "COOKIE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "cookie"}}},
                    {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "color"}}},
                    {"name": "ADDR", "value": "$(POD_IP):10017"},
                    {"name": "OUT", "value": "/out"},
                    {"name": "CONF", "value": "/etc/conf"},
                ],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}, {"name": "conf", "mountPath": "/etc/conf"}],
                "readinessProbe": {"exec": {"command": ["sh", "-c", "test -f $OUT/started"]}, "periodSeconds": 1},
            }],
            "volumes": [
                {"name": "out", "hostPath": {"path": out.path().display().to_string()}},
                {"name": "conf", "configMap": {"name": "c"}},
            ],
        }
    }))?;
    pods.create(&PostParams::default(), &p).await?;
    let pod = wait_pod_ready(&pods, "envy", Duration::from_secs(30)).await?;
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or("no podIP")?;
    assert!(ip.starts_with("127."), "podIP {ip} is not loopback");
    let got = std::fs::read_to_string(out.path().join("env"))?;
    assert_eq!(
        got.trim(),
        format!(
            "envy {} {ip} sekrit blue gold {ip}:10017 $(LITERAL)",
            ns.name
        )
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("conf"))?,
        "from-configmap"
    );
    ns.cleanup().await?;
    Ok(())
}
