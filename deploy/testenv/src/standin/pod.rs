//! One pod's worker: its processes, probes, status and termination.
//!
//! The worker polls its processes every 200 ms (and reacts at once to pod
//! updates), so exits, restarts and probe results reach the pod status within a
//! fraction of a second. Init containers run one after another before the main
//! containers start. Restart delays double per crash from the configured base up
//! to the configured maximum and reset after ten seconds of running.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::env::{
    REFRESH_EVERY, container_env, container_mounts, expand_args, expand_probe,
    in_cluster_kubeconfig, prepare_volume, refreshable, resolve_program, rewrite_env,
};
use super::node::now_rfc3339;
use super::process::{Proc, Spawn};
use super::{CONTAINER_ID_SCHEME, KILL_ANNOTATION, PodMsg, Shared};
use crate::images::ImageMap;
use crate::paths::{Mount, rewrite_path};
use crate::{Error, Result};

const TICK: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
struct ProbeState {
    next: Option<Instant>,
    successes: i32,
    failures: i32,
}

#[derive(Debug)]
struct Ctr {
    spec: Container,
    init: bool,
    proc: Option<Proc>,
    env: Vec<(String, String)>,
    mounts: Vec<Mount>,
    cwd: PathBuf,
    restart_count: i32,
    started_once: bool,
    state: Value,
    last_state: Value,
    started_at: String,
    run_started: Option<Instant>,
    next_start: Option<Instant>,
    backoff: Duration,
    done: bool,
    exit_ok: bool,
    ready: bool,
    readiness: ProbeState,
    liveness: ProbeState,
    last_container_id: Option<String>,
}

impl Ctr {
    fn new(spec: Container, init: bool, backoff: Duration) -> Self {
        Ctr {
            spec,
            init,
            proc: None,
            env: Vec::new(),
            mounts: Vec::new(),
            cwd: PathBuf::from("/"),
            restart_count: 0,
            started_once: false,
            state: json!({"waiting": {"reason": "ContainerCreating"}}),
            last_state: json!({}),
            started_at: String::new(),
            run_started: None,
            next_start: None,
            backoff,
            done: false,
            exit_ok: false,
            ready: false,
            readiness: ProbeState::default(),
            liveness: ProbeState::default(),
            last_container_id: None,
        }
    }

    fn running(&self) -> bool {
        self.proc.is_some()
    }

    fn status(&self) -> Value {
        let mut s = json!({
            "name": self.spec.name,
            "image": self.spec.image.clone().unwrap_or_default(),
            "imageID": format!("{CONTAINER_ID_SCHEME}{}", self.spec.image.clone().unwrap_or_default()),
            "ready": self.ready,
            "started": self.running(),
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        });
        if let Some(id) = &self.last_container_id {
            s["containerID"] = json!(id);
        }
        s
    }
}

struct PodRun {
    shared: Arc<Shared>,
    pod: Pod,
    ns: String,
    name: String,
    uid: String,
    ip: Option<Ipv4Addr>,
    host_network: bool,
    pod_dir: PathBuf,
    log_dir: PathBuf,
    volumes: Option<BTreeMap<String, PathBuf>>,
    prepare_error: Option<(String, String)>,
    next_prepare: Instant,
    /// When Secret, ConfigMap and projected volumes are written again.
    next_refresh: Instant,
    ctrs: Vec<Ctr>,
    start_time: String,
    cond_times: HashMap<&'static str, (bool, String)>,
    last_reported: Option<Value>,
    kill_token: Option<String>,
}

fn probe_times(p: &Probe) -> (Duration, Duration, Duration, i32, i32) {
    let secs = |v: Option<i32>, d: i32| {
        Duration::from_secs(u64::try_from(v.unwrap_or(d).max(0)).unwrap_or(0))
    };
    (
        secs(p.initial_delay_seconds, 0),
        secs(p.period_seconds, 10).max(Duration::from_millis(100)),
        secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        p.success_threshold.unwrap_or(1).max(1),
        p.failure_threshold.unwrap_or(3).max(1),
    )
}

fn terminated(code: i32, started_at: &str, id: Option<&String>) -> Value {
    let mut t = json!({
        "exitCode": code,
        "reason": if code == 0 { "Completed" } else { "Error" },
        "startedAt": started_at,
        "finishedAt": now_rfc3339(),
    });
    if let Some(id) = id {
        t["containerID"] = json!(id);
    }
    json!({ "terminated": t })
}

impl PodRun {
    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.shared.client.clone(), &self.ns)
    }

    async fn prepare(&mut self) -> Result<()> {
        let ip = self.ip.map(|i| i.to_string()).unwrap_or_default();
        std::fs::create_dir_all(self.pod_dir.join("root"))
            .map_err(|e| Error::io(&self.pod_dir, e))?;
        let mut vols = BTreeMap::new();
        let specs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for v in &specs {
            let dir = prepare_volume(
                &self.shared.client,
                &self.shared.cfg,
                &self.pod,
                &ip,
                &self.pod_dir,
                v,
            )
            .await?;
            vols.insert(v.name.clone(), dir);
        }
        self.volumes = Some(vols);
        Ok(())
    }

    /// Writes Secret, ConfigMap and projected volumes again, every
    /// [`REFRESH_EVERY`], once they were first laid out.
    async fn refresh_volumes(&mut self) {
        if self.volumes.is_none() || Instant::now() < self.next_refresh {
            return;
        }
        self.next_refresh = Instant::now() + REFRESH_EVERY;
        let ip = self.ip.map(|i| i.to_string()).unwrap_or_default();
        let specs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for v in specs.iter().filter(|v| refreshable(v)) {
            // A Secret gone or unreadable for now: the files stay as they
            // were, as the kubelet keeps them.
            if let Err(e) = prepare_volume(
                &self.shared.client,
                &self.shared.cfg,
                &self.pod,
                &ip,
                &self.pod_dir,
                v,
            )
            .await
            {
                tracing::debug!(pod = %self.name, volume = %v.name, error = %e, "volume not refreshed");
            }
        }
    }

    async fn start(&self, c: &mut Ctr) -> Result<Proc> {
        let cfg = &self.shared.cfg;
        let images = if cfg.image_map.exists() {
            ImageMap::load(&cfg.image_map)?
        } else {
            ImageMap::default()
        };
        let image = c.spec.image.clone().unwrap_or_default();
        let entry = images.entrypoint(&image).cloned().ok_or_else(|| {
            Error::container(
                "ErrImagePull",
                format!(
                    "image {image:?} is not in the test environment's image map {}",
                    cfg.image_map.display()
                ),
            )
        })?;
        let mapped = entry.binary.clone();
        let ip = self.ip.map(|i| i.to_string()).unwrap_or_default();
        let mut vars = container_env(
            &self.shared.client,
            cfg,
            &self.pod,
            &c.spec,
            &ip,
            mapped.parent(),
        )
        .await?;
        let volumes = self.volumes.clone().unwrap_or_default();
        let mounts = container_mounts(&c.spec, &volumes)?;
        rewrite_env(&mut vars, &mounts);
        in_cluster_kubeconfig(
            cfg,
            &self.pod,
            &self.pod_dir,
            &c.spec.name,
            &mut vars,
            &mounts,
        )?;
        let root = self.pod_dir.join("root");
        if !vars.iter().any(|(k, _)| k == "HOME") {
            vars.push(("HOME".into(), root.display().to_string()));
        }
        let command = expand_args(
            c.spec.command.as_deref().unwrap_or_default(),
            &vars,
            &mounts,
        );
        let mut args = expand_args(c.spec.args.as_deref().unwrap_or_default(), &vars, &mounts);
        // In a pod, a wildcard listen address covers only the pod's own network
        // namespace; here that is the pod's loopback address, so a host process
        // neither listens beyond loopback nor collides with another pod's port.
        if !self.host_network && !ip.is_empty() {
            for a in args.iter_mut() {
                *a = a.replace("0.0.0.0:", &format!("{ip}:"));
            }
        }
        let prog = resolve_program(command.first().map(String::as_str), Some(&mapped), &vars)?;
        let mut argv = vec![prog.display().to_string()];
        if command.is_empty() {
            // No command: the image's entrypoint runs, its own arguments first.
            argv.extend(entry.args.iter().cloned());
        }
        argv.extend(command.iter().skip(1).cloned());
        argv.extend(args);
        let cwd = match c.spec.working_dir.as_deref().filter(|w| !w.is_empty()) {
            Some(w) => PathBuf::from(rewrite_path(w, &mounts).unwrap_or_else(|| w.to_string())),
            None => root,
        };
        let log = self.log_dir.join(format!(
            "{}_{}_{}_{}.log",
            self.ns,
            self.name,
            self.uid.get(..8).unwrap_or(&self.uid),
            c.spec.name
        ));
        tracing::info!(pod = %format!("{}/{}", self.ns, self.name), container = %c.spec.name, ?argv, "starting");
        let p = Proc::spawn(Spawn {
            argv: &argv,
            env: &vars,
            cwd: &cwd,
            log: &log,
            pid_dir: &cfg.pid_dir(),
        })?;
        // The record `testenv exec` (and the harness) run commands from: the
        // stand-in has no streaming exec. A failure costs exec, not the pod.
        let record = crate::exec::ExecSpec {
            image_binary: mapped.clone(),
            env: vars.clone(),
            cwd: cwd.clone(),
            mounts: mounts
                .iter()
                .map(|m| (m.container.clone(), m.host.clone()))
                .collect(),
        };
        if let Err(e) = crate::exec::write_spec(&self.pod_dir, &c.spec.name, &record) {
            tracing::warn!(pod = %format!("{}/{}", self.ns, self.name), error = %e, "exec record not written");
        }
        c.env = vars;
        c.mounts = mounts;
        c.cwd = cwd;
        Ok(p)
    }

    /// Starts, reaps and restarts one container. Returns true when it is done.
    async fn drive(&self, c: &mut Ctr, now: Instant) {
        let policy = self.restart_policy();
        if let Some(p) = c.proc.as_mut() {
            let Some(code) = p.try_exit() else { return };
            c.proc = None;
            c.ready = false;
            c.readiness = ProbeState::default();
            c.liveness = ProbeState::default();
            let term = terminated(code, &c.started_at, c.last_container_id.as_ref());
            let restart = if c.init {
                code != 0 && policy != "Never"
            } else {
                match policy.as_str() {
                    "Never" => false,
                    "OnFailure" => code != 0,
                    _ => true,
                }
            };
            tracing::info!(pod = %format!("{}/{}", self.ns, self.name), container = %c.spec.name, code, restart, "exited");
            if restart {
                if c.run_started
                    .is_some_and(|t| t.elapsed() > Duration::from_secs(10))
                {
                    c.backoff = self.shared.cfg.restart_backoff;
                }
                c.last_state = term;
                c.state = json!({"waiting": {"reason": "CrashLoopBackOff",
                    "message": format!("back-off {}ms restarting failed container", c.backoff.as_millis())}});
                c.next_start = Some(now + c.backoff);
                c.backoff = (c.backoff * 2).min(self.shared.cfg.restart_backoff_max);
            } else {
                c.state = term;
                c.done = true;
                c.exit_ok = code == 0;
            }
            return;
        }
        if c.done || c.next_start.is_some_and(|t| now < t) {
            return;
        }
        match self.start(c).await {
            Ok(p) => {
                if c.started_once {
                    c.restart_count += 1;
                }
                c.started_once = true;
                c.started_at = now_rfc3339();
                c.run_started = Some(now);
                c.last_container_id = Some(format!("{CONTAINER_ID_SCHEME}{}", p.pid));
                c.state = json!({"running": {"startedAt": c.started_at}});
                c.proc = Some(p);
                c.next_start = None;
            }
            Err(e) => {
                let (reason, message) = match e {
                    Error::Container { reason, message } => (reason, message),
                    other => ("RunContainerError".to_string(), other.to_string()),
                };
                tracing::warn!(pod = %format!("{}/{}", self.ns, self.name), container = %c.spec.name, %reason, %message, "cannot start");
                c.state = json!({"waiting": {"reason": reason, "message": message}});
                c.next_start = Some(now + Duration::from_secs(2));
            }
        }
    }

    async fn probe_once(&self, c: &Ctr, p: &Probe, timeout: Duration) -> bool {
        let ip = self.ip.unwrap_or(Ipv4Addr::LOCALHOST);
        if let Some(exec) = &p.exec {
            let cmd = expand_probe(
                exec.command.as_deref().unwrap_or_default(),
                &c.spec,
                &c.mounts,
            );
            let images = ImageMap::load(&self.shared.cfg.image_map).unwrap_or_default();
            let mapped = c.spec.image.as_deref().and_then(|i| images.lookup(i));
            let Ok(prog) = resolve_program(cmd.first().map(String::as_str), mapped, &c.env) else {
                return false;
            };
            let mut command = tokio::process::Command::new(prog);
            command
                .args(cmd.iter().skip(1))
                .env_clear()
                .envs(c.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .current_dir(&c.cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            let r = tokio::time::timeout(timeout, command.status()).await;
            return matches!(r, Ok(Ok(s)) if s.success());
        }
        let port = p
            .tcp_socket
            .as_ref()
            .map(|t| &t.port)
            .or_else(|| p.http_get.as_ref().map(|h| &h.port));
        if let Some(port) = port {
            use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
            let num = match port {
                IntOrString::Int(n) => u16::try_from(*n).ok(),
                IntOrString::String(name) => c
                    .spec
                    .ports
                    .iter()
                    .flatten()
                    .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                    .and_then(|cp| u16::try_from(cp.container_port).ok()),
            };
            let Some(num) = num else { return false };
            let addr = SocketAddr::from((ip, num));
            return matches!(
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
                Ok(Ok(_))
            );
        }
        true
    }

    async fn run_probes(&self, c: &mut Ctr, now: Instant) {
        if !c.running() || c.init {
            return;
        }
        let since = c.run_started.unwrap_or(now);
        // Readiness.
        match c.spec.readiness_probe.clone() {
            None => c.ready = true,
            Some(p) => {
                let (delay, period, timeout, succ, fail) = probe_times(&p);
                let due = c.readiness.next.unwrap_or(since + delay);
                if now >= due {
                    let ok = self.probe_once(c, &p, timeout).await;
                    if ok {
                        c.readiness.successes += 1;
                        c.readiness.failures = 0;
                        if c.readiness.successes >= succ {
                            c.ready = true;
                        }
                    } else {
                        c.readiness.failures += 1;
                        c.readiness.successes = 0;
                        if c.readiness.failures >= fail {
                            c.ready = false;
                        }
                    }
                    c.readiness.next = Some(Instant::now() + period);
                }
            }
        }
        // Liveness: a failing container is killed and then restarted.
        if let Some(p) = c.spec.liveness_probe.clone() {
            let (delay, period, timeout, _, fail) = probe_times(&p);
            let due = c.liveness.next.unwrap_or(since + delay);
            if now >= due {
                if self.probe_once(c, &p, timeout).await {
                    c.liveness.failures = 0;
                } else {
                    c.liveness.failures += 1;
                    if c.liveness.failures >= fail
                        && let Some(proc) = &c.proc
                    {
                        tracing::info!(pod = %format!("{}/{}", self.ns, self.name), container = %c.spec.name, "liveness failed: killing");
                        proc.signal(Signal::SIGKILL);
                    }
                }
                c.liveness.next = Some(Instant::now() + period);
            }
        }
    }

    async fn step(&mut self) {
        let now = Instant::now();
        if self.volumes.is_none() {
            if now < self.next_prepare {
                return;
            }
            match self.prepare().await {
                Ok(()) => self.prepare_error = None,
                Err(e) => {
                    let (reason, message) = match e {
                        Error::Container { reason, message } => (reason, message),
                        other => ("ContainerCreating".to_string(), other.to_string()),
                    };
                    tracing::warn!(pod = %format!("{}/{}", self.ns, self.name), %reason, %message, "volumes not ready");
                    self.prepare_error = Some((reason, message));
                    self.next_prepare = now + Duration::from_secs(2);
                    return;
                }
            }
        }
        let mut ctrs = std::mem::take(&mut self.ctrs);
        // Init containers, one at a time.
        let mut init_pending = false;
        for c in ctrs.iter_mut().filter(|c| c.init) {
            if c.done && c.exit_ok {
                continue;
            }
            if !c.done {
                self.drive(c, now).await;
            }
            init_pending = true;
            break;
        }
        if !init_pending {
            for c in ctrs.iter_mut().filter(|c| !c.init) {
                self.drive(c, now).await;
                self.run_probes(c, now).await;
            }
        }
        self.ctrs = ctrs;
    }

    fn check_kill(&mut self) {
        let token = self.pod.annotations().get(KILL_ANNOTATION).cloned();
        if token != self.kill_token {
            if token.is_some() {
                tracing::info!(pod = %format!("{}/{}", self.ns, self.name), "fault injection: killing processes");
                for c in &self.ctrs {
                    if let Some(p) = &c.proc {
                        p.signal(Signal::SIGKILL);
                    }
                }
            }
            self.kill_token = token;
        }
    }

    fn condition(&mut self, kind: &'static str, ok: bool) -> Value {
        let now = now_rfc3339();
        let entry = self.cond_times.entry(kind).or_insert((ok, now.clone()));
        if entry.0 != ok {
            *entry = (ok, now);
        }
        json!({"type": kind, "status": if ok { "True" } else { "False" },
               "lastTransitionTime": entry.1, "lastProbeTime": null})
    }

    async fn report(&mut self) {
        let inits_done = self
            .ctrs
            .iter()
            .filter(|c| c.init)
            .all(|c| c.done && c.exit_ok);
        let init_failed = self.ctrs.iter().any(|c| c.init && c.done && !c.exit_ok);
        let mains: Vec<&Ctr> = self.ctrs.iter().filter(|c| !c.init).collect();
        let all_done = !mains.is_empty() && mains.iter().all(|c| c.done);
        let phase = if init_failed {
            "Failed"
        } else if !inits_done {
            "Pending"
        } else if all_done {
            if mains.iter().all(|c| c.exit_ok) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if mains.iter().any(|c| c.started_once) {
            "Running"
        } else {
            "Pending"
        };
        let all_ready = !mains.is_empty() && mains.iter().all(|c| c.ready) && phase == "Running";
        let main_status: Vec<Value> = mains.iter().map(|c| c.status()).collect();
        let init_status: Vec<Value> = self
            .ctrs
            .iter()
            .filter(|c| c.init)
            .map(Ctr::status)
            .collect();
        let conditions = vec![
            self.condition("Initialized", inits_done),
            self.condition("Ready", all_ready),
            self.condition("ContainersReady", all_ready),
            self.condition("PodScheduled", true),
        ];
        let ip = self.ip.map(|i| i.to_string()).unwrap_or_default();
        let mut status = json!({
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": self.start_time,
            "conditions": conditions,
            "containerStatuses": main_status,
            "initContainerStatuses": init_status,
            "qosClass": "BestEffort",
        });
        if let Some((reason, message)) = &self.prepare_error {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        // Compare without timestamps of conditions (they only change on transitions).
        if self.last_reported.as_ref() == Some(&status) {
            return;
        }
        let patch = json!({ "status": status });
        match self
            .api()
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.last_reported = Some(status),
            Err(e) => {
                tracing::warn!(pod = %format!("{}/{}", self.ns, self.name), "status update failed: {e}")
            }
        }
    }

    /// SIGTERM every process, wait up to `grace`, then SIGKILL.
    async fn terminate(&mut self, grace: Duration) {
        let running: Vec<i32> = self
            .ctrs
            .iter()
            .filter_map(|c| c.proc.as_ref().map(|p| p.pid))
            .collect();
        if !running.is_empty() {
            tracing::info!(pod = %format!("{}/{}", self.ns, self.name), ?running, grace_secs = grace.as_secs(), "terminating");
        }
        for c in &self.ctrs {
            if let Some(p) = &c.proc {
                p.signal(Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        let mut killed = false;
        loop {
            let mut alive = false;
            for c in self.ctrs.iter_mut() {
                if let Some(p) = c.proc.as_mut() {
                    if let Some(code) = p.try_exit() {
                        c.state = terminated(code, &c.started_at, c.last_container_id.as_ref());
                        c.proc = None;
                        c.ready = false;
                        c.done = true;
                        c.exit_ok = code == 0;
                    } else {
                        alive = true;
                    }
                }
            }
            if !alive {
                break;
            }
            if !killed && Instant::now() >= deadline {
                for c in &self.ctrs {
                    if let Some(p) = &c.proc {
                        p.signal(Signal::SIGKILL);
                    }
                }
                killed = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for c in self.ctrs.iter_mut() {
            c.done = true;
            c.next_start = None;
        }
    }

    fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.pod_dir);
        if let Some(ip) = self.ip.filter(|_| !self.host_network) {
            self.shared.free_ip(ip);
        }
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs.max(0)).unwrap_or(0))
    }

    async fn delete_from_api(&self) {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api().delete(&self.name, &dp).await {
            Ok(_) => tracing::info!(pod = %format!("{}/{}", self.ns, self.name), "removed"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{}/{}", self.ns, self.name), "delete failed: {e}")
            }
        }
    }
}

/// Runs one pod until it is deleted or the stand-in shuts down.
pub(crate) async fn run_pod(shared: Arc<Shared>, pod: Pod, mut rx: watch::Receiver<PodMsg>) {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let backoff = shared.cfg.restart_backoff;
    let host_network = spec.host_network == Some(true);
    let mut ctrs: Vec<Ctr> = spec
        .init_containers
        .unwrap_or_default()
        .into_iter()
        .map(|c| Ctr::new(c, true, backoff))
        .collect();
    ctrs.extend(
        spec.containers
            .into_iter()
            .map(|c| Ctr::new(c, false, backoff)),
    );
    // hostNetwork pods share the node's address, as they would on a real node.
    let ip = if host_network {
        Some(Ipv4Addr::LOCALHOST)
    } else {
        shared.alloc_ip(&format!("{ns}/{name}"))
    };
    let pod_dir = shared
        .cfg
        .state_dir
        .join("pods")
        .join(&ns)
        .join(format!("{name}_{uid}"));
    let log_dir = shared.cfg.state_dir.join("logs");
    let _ = std::fs::create_dir_all(&log_dir);
    let kill_token = pod.annotations().get(KILL_ANNOTATION).cloned();
    let mut run = PodRun {
        shared,
        pod,
        ns,
        name,
        uid,
        ip,
        host_network,
        pod_dir,
        log_dir,
        volumes: None,
        prepare_error: None,
        next_prepare: Instant::now(),
        next_refresh: Instant::now() + REFRESH_EVERY,
        ctrs,
        start_time: now_rfc3339(),
        cond_times: HashMap::new(),
        last_reported: None,
        kill_token,
    };
    if run.ip.is_none() {
        run.prepare_error = Some(("NoAddress".into(), "loopback address pool exhausted".into()));
    }
    tracing::info!(pod = %format!("{}/{}", run.ns, run.name), ip = ?run.ip, "pod worker started");
    loop {
        // Always read the latest message: `changed()` below marks it as seen.
        {
            let msg = rx.borrow_and_update().clone();
            match msg {
                PodMsg::Update(p) => run.pod = *p,
                PodMsg::Gone => {
                    run.terminate(Duration::from_secs(2)).await;
                    run.cleanup();
                    return;
                }
                PodMsg::Shutdown => {
                    run.terminate(Duration::from_secs(5)).await;
                    run.cleanup();
                    return;
                }
            }
        }
        if run.pod.metadata.deletion_timestamp.is_some() {
            let grace = run.grace();
            run.terminate(grace).await;
            run.report().await;
            // Free the address before the pod leaves the API: its
            // replacement under the same name (a StatefulSet's) is created
            // only after that, and must find its address free.
            run.cleanup();
            run.delete_from_api().await;
            return;
        }
        run.check_kill();
        if run.ip.is_some() {
            run.step().await;
            run.refresh_volumes().await;
        }
        run.report().await;
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            r = rx.changed() => if r.is_err() {
                run.terminate(Duration::from_secs(2)).await;
                run.cleanup();
                return;
            }
        }
    }
}
