//! The kubelet stand-in: Nodes whose pods are host processes.
//!
//! It registers a Node, binds every unscheduled pod that matches its label
//! selector to that node (there is no scheduler in the test environment), and runs
//! one worker per pod bound to it. It also registers one Node per zone of
//! [`Config::zones`], labelled `topology.kubernetes.io/zone`: pods of a
//! namespace labelled [`ZONES_LABEL`]` = N` are bound to the first N of them,
//! each to the zone with the fewest of the namespace's pods (a scheduler's
//! zone spread), and a pod recreated under its name to its zone again (as a
//! zonal volume would pin it). A worker gives the pod a loopback IP, lays out
//! its volumes as host directories, starts each container's command as a host
//! process with the environment the kubelet would build, restarts crashed
//! processes, runs exec probes, reports status, and on deletion sends SIGTERM,
//! waits out the grace period, sends SIGKILL and removes the pod object.
//!
//! Left out: images (see [`crate::images`]), networking beyond loopback addresses,
//! resource limits, security contexts, lifecycle hooks, startup probes, HTTP/TCP
//! probes (only exec probes run; other probes count as succeeding), ephemeral
//! containers, the kubelet API (`logs`, `exec`), node leases and evictions.
//! Container output goes to files under the state directory instead.

mod env;
mod logs;
mod node;
mod pod;
mod process;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Result;

pub(crate) use env::resolve_program;
pub use logs::container_log_files;
pub use process::{PidRecord, is_alive, read_pidfiles};

/// Pod annotation for fault injection: when its value changes, the stand-in
/// SIGKILLs the pod's running container processes (as if they crashed).
pub const KILL_ANNOTATION: &str = "testenv.flaviodb.io/kill";

/// The Kubernetes node label naming a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Namespace label asking for zones: its value N binds the namespace's pods
/// to the stand-in's first N zone nodes.
pub const ZONES_LABEL: &str = "testenv.flaviodb.io/zones";

/// The scheme of the `containerID`s the stand-in reports: `testenv://<pid>`.
pub const CONTAINER_ID_SCHEME: &str = "testenv://";

/// How the stand-in runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Node name to register and bind pods to.
    pub node_name: String,
    /// Where pod directories, PVC directories, logs and pid files live.
    pub state_dir: PathBuf,
    /// The image map file (see [`crate::images`]).
    pub image_map: PathBuf,
    /// Label selector (`k=v,k2`, equality and existence only) for pods to bind;
    /// `None` binds every unscheduled pod.
    pub selector: Option<String>,
    /// First loopback address handed to pods.
    pub ip_first: Ipv4Addr,
    /// Last loopback address handed to pods.
    pub ip_last: Ipv4Addr,
    /// First delay before restarting a crashed container; doubles per crash.
    pub restart_backoff: Duration,
    /// Longest restart delay.
    pub restart_backoff_max: Duration,
    /// The API server as pods should see it (`KUBERNETES_SERVICE_HOST`/`PORT`).
    pub apiserver: Option<(String, u16)>,
    /// Where to serve `kubectl logs` (see the `logs` module), if anywhere.
    pub logs_endpoint: Option<LogsEndpoint>,
    /// Zones: one more Node each, named `<node_name>-<zone>`.
    pub zones: Vec<String>,
}

/// TLS endpoint for the API server's `kubectl logs` proxying.
#[derive(Clone, Debug)]
pub struct LogsEndpoint {
    /// Listen address; its port is published as the node's kubelet port.
    pub addr: std::net::SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Config {
    /// A config with the defaults for `state_dir`.
    pub fn new(state_dir: PathBuf) -> Self {
        Config {
            node_name: "flavio-testenv".into(),
            image_map: state_dir.join("images.map"),
            state_dir,
            selector: None,
            ip_first: Ipv4Addr::new(127, 0, 0, 10),
            ip_last: Ipv4Addr::new(127, 0, 0, 250),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(16),
            apiserver: None,
            logs_endpoint: None,
            zones: ["zone-a", "zone-b", "zone-c", "zone-d"]
                .map(String::from)
                .to_vec(),
        }
    }

    /// The Node of zone `zone`.
    pub fn zone_node(&self, zone: &str) -> String {
        format!("{}-{zone}", self.node_name)
    }

    /// Every Node this stand-in runs pods for.
    pub fn node_names(&self) -> Vec<String> {
        std::iter::once(self.node_name.clone())
            .chain(self.zones.iter().map(|z| self.zone_node(z)))
            .collect()
    }

    /// The host directory of a PersistentVolumeClaim; it outlives pods.
    pub fn pvc_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.state_dir.join("pvc").join(namespace).join(claim)
    }

    /// Directory for pid files of running container processes.
    pub fn pid_dir(&self) -> PathBuf {
        self.state_dir.join("pids")
    }
}

/// Round-robin loopback address pool. A pod recreated under a name that had
/// an address before gets that address back when it is free: the stand-in for
/// the stable DNS name a real cluster gives a StatefulSet's pod (tests run
/// without cluster DNS and advertise pod IPs instead).
#[derive(Debug)]
struct IpPool {
    first: u32,
    last: u32,
    next: u32,
    used: HashSet<u32>,
    sticky: std::collections::HashMap<String, u32>,
}

impl IpPool {
    fn new(first: Ipv4Addr, last: Ipv4Addr) -> Self {
        let (first, last) = (u32::from(first), u32::from(last));
        IpPool {
            first,
            last: last.max(first),
            next: first,
            used: HashSet::new(),
            sticky: std::collections::HashMap::new(),
        }
    }

    /// An address for the pod `key` (namespace/name): its previous one if free.
    fn alloc_for(&mut self, key: &str) -> Option<Ipv4Addr> {
        if let Some(&ip) = self.sticky.get(key)
            && self.used.insert(ip)
        {
            return Some(Ipv4Addr::from(ip));
        }
        let ip = self.alloc()?;
        self.sticky.insert(key.to_string(), u32::from(ip));
        Some(ip)
    }

    fn alloc(&mut self) -> Option<Ipv4Addr> {
        let span = self.last - self.first + 1;
        for _ in 0..span {
            let candidate = self.next;
            self.next = if self.next >= self.last {
                self.first
            } else {
                self.next + 1
            };
            if self.used.insert(candidate) {
                return Some(Ipv4Addr::from(candidate));
            }
        }
        None
    }

    fn free(&mut self, ip: Ipv4Addr) {
        self.used.remove(&u32::from(ip));
    }
}

/// What a pod worker hears from the watch loop.
#[derive(Clone, Debug)]
enum PodMsg {
    /// The pod object changed.
    Update(Box<Pod>),
    /// The pod object is gone from the API.
    Gone,
    /// The stand-in is shutting down: stop processes, leave the API alone.
    Shutdown,
}

/// Shared state of the stand-in.
struct Shared {
    client: Client,
    cfg: Config,
    ips: Mutex<IpPool>,
    /// The zone (index into `cfg.zones`) each pod was bound to, by
    /// `namespace/name`: a pod recreated under its name goes there again.
    zone_of: Mutex<HashMap<String, usize>>,
}

impl Shared {
    fn alloc_ip(&self, pod: &str) -> Option<Ipv4Addr> {
        self.ips.lock().ok()?.alloc_for(pod)
    }

    fn free_ip(&self, ip: Ipv4Addr) {
        if let Ok(mut pool) = self.ips.lock() {
            pool.free(ip);
        }
    }
}

struct Worker {
    tx: watch::Sender<PodMsg>,
    handle: JoinHandle<()>,
}

/// Does `labels` satisfy a simple selector (`k=v`, `k==v`, `k!=v`, `k`, `!k`)?
pub fn selector_matches(
    selector: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels.get(k.trim()).map(String::as_str) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once('=') {
                let v = v.trim_start_matches('=');
                labels.get(k.trim()).map(String::as_str) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                !labels.contains_key(k.trim())
            } else {
                labels.contains_key(term)
            }
        })
}

/// Runs the stand-in until `shutdown` resolves; then stops every pod process.
pub async fn run(
    client: Client,
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    for dir in [
        cfg.state_dir.clone(),
        cfg.pid_dir(),
        cfg.state_dir.join("pods"),
    ] {
        std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io(&dir, e))?;
    }
    // Processes a previous, crashed instance left behind would hold the pods'
    // addresses; this instance starts every pod afresh.
    for rec in read_pidfiles(&cfg.pid_dir()) {
        if is_alive(&rec) {
            tracing::warn!(
                pid = rec.pid,
                "killing a process left by a previous stand-in"
            );
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(rec.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_file(cfg.pid_dir().join(rec.pid.to_string()));
    }
    node::register(&client, &cfg, &cfg.node_name, None).await?;
    for z in &cfg.zones {
        node::register(&client, &cfg, &cfg.zone_node(z), Some(z)).await?;
    }
    let kubelet_port = cfg.logs_endpoint.as_ref().map_or(0, |l| l.addr.port());
    let heartbeats: Vec<JoinHandle<()>> = cfg
        .node_names()
        .into_iter()
        .map(|n| tokio::spawn(node::heartbeat(client.clone(), n, kubelet_port)))
        .collect();
    let log_server = cfg.logs_endpoint.clone().map(|l| {
        let dir = cfg.state_dir.join("logs");
        tokio::spawn(async move {
            if let Err(e) = logs::serve(l.addr, &l.cert, &l.key, dir).await {
                tracing::error!("log endpoint: {e}");
            }
        })
    });
    let shared = Arc::new(Shared {
        ips: Mutex::new(IpPool::new(cfg.ip_first, cfg.ip_last)),
        zone_of: Mutex::new(HashMap::new()),
        client: client.clone(),
        cfg,
    });
    let pods: Api<Pod> = Api::all(client.clone());
    let mut events = watcher::watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut seen_in_init: HashSet<String> = HashSet::new();
    let mut binding: HashSet<String> = HashSet::new();
    tokio::pin!(shutdown);
    tracing::info!(node = %shared.cfg.node_name, "stand-in running");
    loop {
        let event = tokio::select! {
            () = &mut shutdown => break,
            ev = events.try_next() => ev,
        };
        match event {
            Ok(Some(Event::Init)) => seen_in_init.clear(),
            Ok(Some(Event::InitApply(pod))) => {
                seen_in_init.insert(pod.uid().unwrap_or_default());
                on_pod(&shared, &mut workers, &mut binding, pod);
            }
            Ok(Some(Event::InitDone)) => {
                for (uid, w) in &workers {
                    if !seen_in_init.contains(uid) {
                        let _ = w.tx.send(PodMsg::Gone);
                    }
                }
            }
            Ok(Some(Event::Apply(pod))) => on_pod(&shared, &mut workers, &mut binding, pod),
            Ok(Some(Event::Delete(pod))) => {
                let uid = pod.uid().unwrap_or_default();
                binding.remove(&uid);
                if let Some(w) = workers.get(&uid) {
                    let _ = w.tx.send(PodMsg::Gone);
                }
            }
            Ok(None) => break,
            Err(e) => tracing::warn!("pod watch: {e}"),
        }
        workers.retain(|_, w| !w.handle.is_finished());
    }
    tracing::info!("stand-in stopping: terminating {} pod(s)", workers.len());
    for h in heartbeats {
        h.abort();
    }
    if let Some(h) = log_server {
        h.abort();
    }
    for w in workers.values() {
        let _ = w.tx.send(PodMsg::Shutdown);
    }
    for (_, w) in workers {
        let _ = w.handle.await;
    }
    Ok(())
}

fn on_pod(
    shared: &Arc<Shared>,
    workers: &mut HashMap<String, Worker>,
    binding: &mut HashSet<String>,
    pod: Pod,
) {
    let uid = pod.uid().unwrap_or_default();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    match node {
        None => {
            let selected = shared
                .cfg
                .selector
                .as_deref()
                .is_none_or(|sel| selector_matches(sel, pod.labels()));
            if selected && pod.metadata.deletion_timestamp.is_none() && binding.insert(uid) {
                let shared = Arc::clone(shared);
                tokio::spawn(async move { bind(&shared, &pod).await });
            }
        }
        Some(n) if shared.cfg.node_names().contains(&n) => {
            if let Some(w) = workers.get(&uid) {
                let _ = w.tx.send(PodMsg::Update(Box::new(pod)));
                return;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            let terminal = matches!(phase.as_deref(), Some("Succeeded" | "Failed"));
            if terminal && pod.metadata.deletion_timestamp.is_none() {
                return;
            }
            let (tx, rx) = watch::channel(PodMsg::Update(Box::new(pod.clone())));
            let shared2 = Arc::clone(shared);
            let handle = tokio::spawn(async move { pod::run_pod(shared2, pod, rx).await });
            workers.insert(uid, Worker { tx, handle });
        }
        Some(_) => {}
    }
}

/// The Node for a pod: a zone node when its namespace asks for zones (see
/// the module docs), else the stand-in's own.
async fn node_for(shared: &Shared, ns: &str, name: &str) -> String {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(shared.client.clone());
    let zones = match namespaces.get_opt(ns).await {
        Ok(Some(n)) => n
            .labels()
            .get(ZONES_LABEL)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            .min(shared.cfg.zones.len()),
        Ok(None) => 0,
        Err(e) => {
            tracing::warn!(%ns, "cannot read the namespace for its zones: {e}");
            0
        }
    };
    if zones == 0 {
        return shared.cfg.node_name.clone();
    }
    let key = format!("{ns}/{name}");
    let Ok(mut zone_of) = shared.zone_of.lock() else {
        return shared.cfg.node_name.clone();
    };
    let z = match zone_of.get(&key) {
        Some(z) if *z < zones => *z,
        _ => {
            let prefix = format!("{ns}/");
            let mut count = vec![0usize; zones];
            for (k, z) in zone_of.iter() {
                if k.starts_with(&prefix) && *z < zones && *k != key {
                    count[*z] += 1;
                }
            }
            let z = (0..zones).min_by_key(|z| (count[*z], *z)).unwrap_or(0);
            zone_of.insert(key, z);
            z
        }
    };
    shared.cfg.zone_node(&shared.cfg.zones[z])
}

async fn bind(shared: &Shared, pod: &Pod) {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let name = pod.name_any();
    let node = node_for(shared, &ns, &name).await;
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": name, "namespace": ns },
        "target": { "apiVersion": "v1", "kind": "Node", "name": node },
    });
    match api
        .create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &body)
        .await
    {
        Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), %node, "bound"),
        Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), "bind failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn selector_terms() {
        let mut l = BTreeMap::new();
        l.insert("app".to_string(), "flavio".to_string());
        assert!(selector_matches("app=flavio", &l));
        assert!(selector_matches("app==flavio,app", &l));
        assert!(!selector_matches("app=x", &l));
        assert!(selector_matches("app!=x,!other", &l));
        assert!(!selector_matches("other", &l));
        assert!(selector_matches("", &l));
    }

    #[test]
    fn ip_pool_round_robin_and_exhaustion() {
        let mut p = IpPool::new(Ipv4Addr::new(127, 0, 0, 10), Ipv4Addr::new(127, 0, 0, 11));
        let a = p.alloc();
        let b = p.alloc();
        assert_eq!(a, Some(Ipv4Addr::new(127, 0, 0, 10)));
        assert_eq!(b, Some(Ipv4Addr::new(127, 0, 0, 11)));
        assert_eq!(p.alloc(), None);
        p.free(Ipv4Addr::new(127, 0, 0, 10));
        // A pod recreated under its name gets its address back when free.
        let mut q = IpPool::new(Ipv4Addr::new(127, 0, 0, 10), Ipv4Addr::new(127, 0, 0, 20));
        let a = q.alloc_for("ns/demo-0");
        let b = q.alloc_for("ns/demo-1");
        assert_ne!(a, b);
        if let Some(ip) = a {
            q.free(ip);
        }
        assert_ne!(q.alloc_for("ns/other"), a, "round robin moves on");
        assert_eq!(q.alloc_for("ns/demo-0"), a, "its address again");
        assert_eq!(p.alloc(), Some(Ipv4Addr::new(127, 0, 0, 10)));
    }
}
