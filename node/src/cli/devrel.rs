//! `flavio devrel`: a local cluster of real node processes, riak's
//! `make devrel` and `for d in dev/dev*; do $d/bin/flavio start; done` in
//! one command.
//!
//! Node i (1-based) is `flavio{i}@127.0.0.1`, listens on
//! `127.0.0.1:(base + 10*(i-1))` (10017, 10027, ... as in the tutorial), keeps
//! its data in `DIR/dev{i}` and logs to `DIR/dev{i}/node.log`. All share one
//! cookie. After the nodes answer health checks, nodes 2..N stage joins to
//! node 1, node 1 plans and commits, and devrel waits until the ring is ready
//! with nothing pending, prints member-status, and keeps the nodes running
//! until Ctrl-C or SIGTERM. It stops every node it started on the way out,
//! also when a step fails (the process guard's `Drop`).
//!
//! With `--spread-hosts`, node i listens on its own loopback address,
//! `127.0.0.{i+1}` (same ports), is named `flavio{i}@127.0.0.{i+1}`, and its
//! connections to peers leave from that address: that is what lets
//! `deploy/faults` cut links between nodes with iptables rules.
//!
//! Restarting devrel on an existing DIR restarts the same nodes with their
//! persisted rings; members already in node 1's cluster are not joined again.
//!
//! With `--tls`, devrel makes a CA and a certificate per node (and one for
//! clients) under `DIR/tls` on the first run, and every node serves TLS
//! with them (mutual TLS between nodes); it prints the `FLAVIO_TLS_*`
//! exports the CLI then needs.
//!
//! Left out: changing N of a running devrel (use `flavio admin cluster ...`
//! against its nodes), and cleaning up after a SIGKILL of devrel itself (the
//! nodes are then left running; stop them by pid).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use flavio_proto::v1 as pb;

use super::admin_format as fmt;
use super::{Failure, serve};
use crate::rpc::Cookie;
use crate::rpc::client::{self, Admin, Credentials};
use crate::rpc::pki::{Authority, TlsFiles};
use crate::rpc::server::shutdown_signal;
use crate::rpc::tls::ClientTls;

/// Most nodes a devrel starts: enough to exercise claim, few enough for a laptop.
pub const MAX_NODES: u32 = 16;
/// Port distance between consecutive nodes, as riak's devrel.
pub const PORT_STEP: u32 = 10;
/// How long a node may take to answer health checks after it is spawned.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long staged joins may take to show up in a plan node 1 accepts.
const PLAN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// Arguments of `flavio devrel`.
#[derive(Args, Debug)]
pub struct DevrelArgs {
    /// Number of nodes, 1 to 16.
    #[arg(long, default_value_t = 4)]
    nodes: u32,
    /// Directory for the nodes' data, logs and the generated cookie.
    #[arg(long, default_value = "./dev")]
    dir: PathBuf,
    /// Port of node 1; node i listens on base + 10*(i-1).
    #[arg(long, default_value_t = 10017)]
    base_port: u16,
    /// Partitions in the ring: a multiple of 4 from 8 to 1024 (riak uses powers of two).
    #[arg(long, default_value_t = 64)]
    ring_size: u64,
    /// Cookie file for every node (else FLAVIO_COOKIE, else DIR/cookie, created if missing).
    #[arg(long, env = "FLAVIO_COOKIE_FILE")]
    cookie_file: Option<PathBuf>,
    /// Seconds to wait for the ring to be ready with no pending transfers after the commit.
    #[arg(long, default_value_t = 120)]
    settle_timeout: u64,
    /// Give node i its own loopback address, 127.0.0.{i+1}, so that links
    /// between nodes can be cut by address (deploy/faults).
    #[arg(long)]
    spread_hosts: bool,
    /// Serve TLS: a CA and node certificates are made under DIR/tls on the
    /// first run (kept after), and nodes require each other's certificates.
    #[arg(long)]
    tls: bool,
    /// With --tls: every client must present a certificate too
    /// (`flavio serve --tls-client-auth require`).
    #[arg(long, requires = "tls")]
    tls_require_client_cert: bool,
}

/// The files of a devrel with `--tls`: `DIR/tls/ca.crt`, `dev{i}.crt`/`.key`
/// per node, `client.crt`/`.key` for the CLI.
#[derive(Clone, Debug)]
pub struct DevTls {
    /// One per node, in node order.
    pub nodes: Vec<TlsFiles>,
    /// For clients.
    pub client: TlsFiles,
}

/// How long devrel's certificates are valid.
const DEVREL_CERT_VALIDITY: Duration = Duration::from_secs(365 * 86400);

/// Makes (or finds, from an earlier run) the CA and certificates of `nodes`
/// under `dir/tls`. Any file missing makes all of them again, with a new CA.
pub fn devrel_tls(dir: &Path, nodes: &[DevNode]) -> crate::Result<DevTls> {
    let tls_dir = dir.join("tls");
    let files = DevTls {
        nodes: (1..=nodes.len())
            .map(|i| TlsFiles::in_dir(&tls_dir, &format!("dev{i}")))
            .collect(),
        client: TlsFiles::in_dir(&tls_dir, "client"),
    };
    let all_there = files
        .nodes
        .iter()
        .chain([&files.client])
        .all(|f| f.cert.exists() && f.key.exists() && f.ca.exists());
    if all_there {
        return Ok(files);
    }
    std::fs::create_dir_all(&tls_dir).map_err(|source| crate::Error::Io {
        context: format!("creating {}", tls_dir.display()),
        source,
    })?;
    let ca = Authority::new("flavio devrel CA", DEVREL_CERT_VALIDITY)?;
    crate::rpc::pki::write_atomic(&tls_dir.join("ca.key"), ca.ca().key_pem.as_bytes(), true)?;
    for (n, f) in nodes.iter().zip(&files.nodes) {
        let host = n.addr.rsplit_once(':').map_or(n.addr.as_str(), |(h, _)| h);
        let issued = ca.issue(
            &[host.to_string(), "localhost".into()],
            DEVREL_CERT_VALIDITY,
        )?;
        f.write(&issued, ca.ca())?;
    }
    let client = ca.issue(&["flavio-client".into()], DEVREL_CERT_VALIDITY)?;
    files.client.write(&client, ca.ca())?;
    Ok(files)
}

/// Where one devrel node lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevNode {
    /// riak-style name, `flavio{i}@127.0.0.1`.
    pub name: String,
    /// gRPC address, `127.0.0.1:port`.
    pub addr: String,
    /// `DIR/dev{i}`.
    pub data_dir: PathBuf,
    /// `DIR/dev{i}/node.log`.
    pub log: PathBuf,
}

/// The nodes of a devrel of `nodes` nodes from `base_port` under `dir`;
/// refuses counts outside 1..=16 and ports past 65535.
pub fn layout(
    nodes: u32,
    base_port: u16,
    dir: &Path,
    spread_hosts: bool,
) -> Result<Vec<DevNode>, String> {
    if !(1..=MAX_NODES).contains(&nodes) {
        return Err(format!("--nodes must be 1 to {MAX_NODES}, got {nodes}"));
    }
    if base_port == 0 {
        return Err("--base-port must be 1 to 65535".into());
    }
    let last = u32::from(base_port) + PORT_STEP * (nodes - 1);
    if last > u32::from(u16::MAX) {
        return Err(format!(
            "--base-port {base_port} with {nodes} nodes needs ports up to {last}, past 65535"
        ));
    }
    Ok((1..=nodes)
        .map(|i| {
            let port = u32::from(base_port) + PORT_STEP * (i - 1);
            let data_dir = dir.join(format!("dev{i}"));
            let host = if spread_hosts {
                format!("127.0.0.{}", i + 1)
            } else {
                "127.0.0.1".to_string()
            };
            DevNode {
                name: format!("flavio{i}@{host}"),
                addr: format!("{host}:{port}"),
                log: data_dir.join("node.log"),
                data_dir,
            }
        })
        .collect())
}

/// The cluster cookie and the file every node reads it from: `--cookie-file`
/// as given; else `FLAVIO_COOKIE`, which the nodes inherit (no file); else
/// `DIR/cookie`, created with a random value on the first run and reused
/// after, so a restarted devrel keeps its secret.
fn cluster_cookie(
    file: Option<&Path>,
    env: Option<&str>,
    dir: &Path,
) -> crate::Result<(Cookie, Option<PathBuf>)> {
    if let Some(f) = file {
        return Ok((Cookie::from_file(f)?, Some(f.to_path_buf())));
    }
    if let Some(v) = env {
        return Ok((Cookie::new(v)?, None));
    }
    let path = dir.join("cookie");
    if path.exists() {
        return Ok((Cookie::from_file(&path)?, Some(path)));
    }
    let cookie = Cookie::random();
    serve::write_private(&path, cookie.as_str())?;
    Ok((cookie, Some(path)))
}

fn failure(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

/// The last lines of a node's log, for an error about that node.
fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last lines of {}:\n{}", log.display(), tail.join("\n"))
    }
}

/// One process this devrel started.
struct Proc {
    name: String,
    child: Child,
}

/// The processes this devrel started. Dropping it stops them all, so an
/// error anywhere (or a panic) leaves no node behind.
#[derive(Default)]
struct Procs(Vec<Proc>);

impl Procs {
    fn push(&mut self, name: &str, child: Child) {
        self.0.push(Proc {
            name: name.to_string(),
            child,
        });
    }

    /// The first node that has exited, with its status.
    fn exited(&mut self) -> Option<(String, std::process::ExitStatus)> {
        self.0.iter_mut().find_map(|p| match p.child.try_wait() {
            Ok(Some(status)) => Some((p.name.clone(), status)),
            _ => None,
        })
    }

    /// Sends SIGTERM to every node still running and hands them over for
    /// reaping; `self` is empty afterwards, so stopping twice is harmless.
    fn signal_all(&mut self) -> Vec<Proc> {
        let mut running = Vec::new();
        for mut p in self.0.drain(..) {
            if let Ok(None) = p.child.try_wait() {
                terminate(&p.child);
                running.push(p);
            }
        }
        running
    }

    /// Stops every node: SIGTERM, then SIGKILL to those still running after
    /// the grace period; reaps them all.
    ///
    /// Async on purpose: a node finishes its graceful shutdown only when its
    /// clients close their connections, and ours (the admin client's) are
    /// closed by tasks on this same runtime, which must keep running.
    async fn stop(&mut self, grace: Duration) {
        let mut running = self.signal_all();
        let t0 = Instant::now();
        while !reap(&mut running, t0, grace) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reaps the nodes that have exited; past the grace period kills the rest.
/// True once none is left.
fn reap(running: &mut Vec<Proc>, t0: Instant, grace: Duration) -> bool {
    running.retain_mut(|p| match p.child.try_wait() {
        Ok(None) => true,
        _ => {
            eprintln!("stopped {}", p.name);
            false
        }
    });
    if !running.is_empty() && t0.elapsed() >= grace {
        for p in running.iter_mut() {
            eprintln!("{} ignored SIGTERM for {grace:?}; killing it", p.name);
            // Only our own child, by its handle.
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        running.clear();
    }
    running.is_empty()
}

impl Drop for Procs {
    /// The last resort (a panic, or an early return that skipped `stop`):
    /// blocking, so a node may sit out the grace period, but none survives.
    fn drop(&mut self) {
        let mut running = self.signal_all();
        let t0 = Instant::now();
        while !reap(&mut running, t0, STOP_GRACE) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Asks a child to shut down cleanly (a node flushes its store on SIGTERM).
#[cfg(unix)]
fn terminate(child: &Child) {
    use rustix::process::{Pid, Signal, kill_process};
    let _ = kill_process(Pid::from_child(child), Signal::TERM);
}

/// Without SIGTERM the only way to stop a child is to kill it; `stop` does
/// that after the grace period.
#[cfg(not(unix))]
fn terminate(_child: &Child) {}

/// Starts `flavio serve` for one node, its output appended to its log.
fn spawn(
    exe: &Path,
    node: &DevNode,
    ring_size: u64,
    cookie_file: Option<&Path>,
    tls: Option<(&TlsFiles, bool)>,
) -> Result<Child, Failure> {
    let io = |what: &str, e: std::io::Error| failure(format!("{what}: {e}"));
    std::fs::create_dir_all(&node.data_dir)
        .map_err(|e| io(&format!("creating {}", node.data_dir.display()), e))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .map_err(|e| io(&format!("opening {}", node.log.display()), e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| io(&format!("opening {}", node.log.display()), e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .args(["--name", &node.name, "--listen", &node.addr])
        .args(["--ring-size", &ring_size.to_string()])
        .arg("--data-dir")
        .arg(&node.data_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    if let Some(f) = cookie_file {
        cmd.arg("--cookie-file").arg(f);
    }
    // The node's TLS comes from its arguments only: a FLAVIO_TLS_* in
    // devrel's own environment (a client's) must not leak into it.
    for v in [
        "FLAVIO_TLS_CA",
        "FLAVIO_TLS_CERT",
        "FLAVIO_TLS_KEY",
        "FLAVIO_TLS_CLIENT_AUTH",
    ] {
        cmd.env_remove(v);
    }
    if let Some((f, require)) = tls {
        cmd.arg("--tls-cert")
            .arg(&f.cert)
            .arg("--tls-key")
            .arg(&f.key)
            .arg("--tls-ca")
            .arg(&f.ca)
            .arg("--require-tls");
        if require {
            cmd.args(["--tls-client-auth", "require"]);
        }
    }
    cmd.spawn()
        .map_err(|e| io(&format!("starting {} ({})", node.name, exe.display()), e))
}

/// Waits until the node answers health checks as SERVING, failing early if
/// its process exits (a port in use, a bad data directory, ...).
async fn wait_healthy(
    procs: &mut Procs,
    node: &DevNode,
    tls: Option<&ClientTls>,
) -> Result<(), Failure> {
    let t0 = Instant::now();
    loop {
        if let Some((name, status)) = procs.exited() {
            return Err(failure(format!(
                "{name} exited with {status}{}",
                log_tail(&node.log, 10)
            )));
        }
        match client::is_serving(&node.addr, tls).await {
            Ok(true) => return Ok(()),
            Ok(false) | Err(_) if t0.elapsed() < HEALTH_TIMEOUT => {}
            Ok(false) => return Err(failure(format!("{} is not serving", node.name))),
            Err(e) => {
                return Err(failure(format!(
                    "{} did not answer health checks within {HEALTH_TIMEOUT:?}: {e}{}",
                    node.name,
                    log_tail(&node.log, 10)
                )));
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Refuses to start a node on a port something already answers on: the
/// health check would otherwise pass against that stranger (a devrel left
/// running, most likely) while our node fails to bind.
fn port_free(node: &DevNode) -> Result<(), Failure> {
    let taken = node
        .addr
        .parse()
        .ok()
        .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).ok())
        .is_some();
    if taken {
        return Err(failure(format!(
            "{} is already in use (another devrel still running?); pick another --base-port",
            node.addr
        )));
    }
    Ok(())
}

/// Stages, plans and commits the joins of `joiners` to node 1. A fresh join
/// reaches the claimant by gossip, so until it does node 1 may refuse to plan
/// (ring not ready) or show fewer changes: retry for a while.
async fn join_all(
    first: &DevNode,
    joiners: &[&DevNode],
    credentials: &Credentials,
) -> Result<(), Failure> {
    for n in joiners {
        let mut admin = client::admin(&n.addr, credentials.clone()).await?;
        let r = admin
            .stage_join(pb::StageJoinRequest {
                target: first.addr.clone(),
            })
            .await
            .map_err(|s| failure(format!("{}: {}", n.name, super::status_line(&s))))?
            .into_inner();
        println!("{}", r.message);
    }
    let mut admin = client::admin(&first.addr, credentials.clone()).await?;
    let t0 = Instant::now();
    let mut last = String::from("no plan yet");
    while t0.elapsed() < PLAN_TIMEOUT {
        match admin.plan(pb::PlanRequest {}).await {
            Ok(plan) => {
                let plan = plan.into_inner();
                let staged = plan.changes.iter().filter(|c| c.action == "join").count();
                if staged >= joiners.len() {
                    let commit = admin
                        .commit(pb::CommitRequest {
                            plan_id: plan.plan_id.clone(),
                        })
                        .await;
                    match commit {
                        Ok(r) => {
                            println!();
                            print!("{}", fmt::plan(&plan));
                            println!("{}", r.into_inner().message);
                            return Ok(());
                        }
                        // The ring moved between plan and commit: plan again.
                        Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                            last = super::status_line(&s);
                        }
                        Err(s) => return Err(s.into()),
                    }
                } else {
                    last = format!("{staged} of {} joins staged", joiners.len());
                }
            }
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                last = super::status_line(&s);
            }
            Err(s) => return Err(s.into()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(failure(format!(
        "node 1 would not plan and commit the joins within {PLAN_TIMEOUT:?}: {last}"
    )))
}

/// What keeps a cluster from being settled, or `None` once every expected
/// member is valid, the ring is ready and no transfer is pending.
fn unsettled(
    expected: &[DevNode],
    members: &pb::MemberStatusReply,
    ring: &pb::RingStatusReply,
) -> Option<String> {
    let mut why = Vec::new();
    let not_valid = expected
        .iter()
        .filter(|n| {
            !members
                .members
                .iter()
                .any(|m| m.name == n.name && m.state() == pb::MemberState::Valid)
        })
        .count();
    if not_valid > 0 {
        why.push(format!("{not_valid} members not valid yet"));
    }
    if !ring.ring_ready {
        why.push("ring not ready".to_string());
    }
    if !ring.pending.is_empty() {
        why.push(format!("{} ownership changes pending", ring.pending.len()));
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// Polls node 1 until the cluster has settled; reports progress every few
/// seconds so a slow handoff does not look like a hang.
async fn wait_settled(
    admin: &mut Admin,
    expected: &[DevNode],
    limit: Duration,
) -> Result<pb::MemberStatusReply, Failure> {
    let t0 = Instant::now();
    let mut reported = Instant::now();
    loop {
        let members = admin
            .member_status(pb::MemberStatusRequest {})
            .await?
            .into_inner();
        let ring = admin
            .ring_status(pb::RingStatusRequest {})
            .await?
            .into_inner();
        let Some(why) = unsettled(expected, &members, &ring) else {
            return Ok(members);
        };
        if t0.elapsed() >= limit {
            return Err(failure(format!(
                "the cluster did not settle within {limit:?}: {why}; see the nodes' node.log"
            )));
        }
        if reported.elapsed() >= Duration::from_secs(5) {
            eprintln!("waiting for the cluster to settle: {why}");
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether `dir` is one of the directories of PATH.
fn on_path(dir: &Path) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|x| x == dir))
}

/// How to talk to the running devrel.
fn usage(
    nodes: &[DevNode],
    dir: &Path,
    cookie_file: Option<&Path>,
    tls: Option<&DevTls>,
    bin_dir: Option<&Path>,
) -> String {
    let mut s = format!(
        "\n{} running; data and logs in {}/dev*/.\n\n",
        if nodes.len() == 1 {
            "1 node".to_string()
        } else {
            format!("A cluster of {} nodes", nodes.len())
        },
        dir.display()
    );
    // After `cargo run` the binary is not on PATH; say where it is.
    if let Some(d) = bin_dir {
        s.push_str(&format!("  export PATH={}:$PATH\n", d.display()));
    }
    match cookie_file {
        Some(f) => s.push_str(&format!("  export FLAVIO_COOKIE_FILE={}\n", f.display())),
        None => s.push_str("  # the nodes use FLAVIO_COOKIE from this environment\n"),
    }
    if let Some(t) = tls {
        s.push_str(&format!(
            "  export FLAVIO_TLS_CA={} FLAVIO_TLS_CERT={} FLAVIO_TLS_KEY={}\n",
            t.client.ca.display(),
            t.client.cert.display(),
            t.client.key.display()
        ));
    }
    let addr = |i: usize| nodes[i.min(nodes.len() - 1)].addr.as_str();
    s.push_str(&format!("  flavio ping --node {}\n", addr(0)));
    s.push_str(&format!("  flavio add 2 5 --node {}\n", addr(1)));
    s.push_str(&format!("  flavio stats --node {}\n", addr(2)));
    s.push_str(&format!(
        "  flavio admin member-status --node {}\n",
        addr(0)
    ));
    s.push_str("\nPress Ctrl-C to stop the nodes.\n");
    s
}

/// Runs `flavio devrel`.
pub(super) async fn run(args: DevrelArgs) -> Result<(), Failure> {
    // Absolute, so the printed paths work from any directory.
    let dir = std::path::absolute(&args.dir)
        .map_err(|e| Failure::usage(format!("--dir {}: {e}", args.dir.display())))?;
    let nodes =
        layout(args.nodes, args.base_port, &dir, args.spread_hosts).map_err(Failure::usage)?;
    crate::ring::RingSize::new(args.ring_size)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| failure(format!("creating {}: {e}", dir.display())))?;
    let env = std::env::var("FLAVIO_COOKIE").ok();
    let cookie_file = match &args.cookie_file {
        Some(f) => Some(
            std::path::absolute(f)
                .map_err(|e| Failure::usage(format!("--cookie-file {}: {e}", f.display())))?,
        ),
        None => None,
    };
    let (cookie, cookie_file) = cluster_cookie(cookie_file.as_deref(), env.as_deref(), &dir)?;
    let tls = if args.tls {
        Some(devrel_tls(&dir, &nodes)?)
    } else {
        None
    };
    let client_tls = match &tls {
        Some(t) => Some(ClientTls::from_files(
            &t.client.ca,
            Some((&t.client.cert, &t.client.key)),
        )?),
        None => None,
    };
    let setup = Setup {
        credentials: Credentials::new(cookie, client_tls),
        cookie_file,
        tls,
    };
    let exe = std::env::current_exe()
        .map_err(|e| failure(format!("cannot find the flavio executable: {e}")))?;

    let mut procs = Procs::default();
    let result = supervise(&mut procs, &exe, &nodes, &args, &dir, &setup).await;
    // Stop on every path, success or not, while the runtime still runs.
    let count = procs.0.len();
    if count > 0 {
        eprintln!("stopping {count} nodes");
    }
    procs.stop(STOP_GRACE).await;
    result
}

/// What every node of a devrel shares: how to reach them, the cookie file,
/// the certificates.
struct Setup {
    credentials: Credentials,
    cookie_file: Option<PathBuf>,
    tls: Option<DevTls>,
}

/// Starts the cluster and keeps it running until Ctrl-C or SIGTERM.
async fn supervise(
    procs: &mut Procs,
    exe: &Path,
    nodes: &[DevNode],
    args: &DevrelArgs,
    dir: &Path,
    setup: &Setup,
) -> Result<(), Failure> {
    // One signal watcher for the whole run: Ctrl-C during start-up aborts it.
    let mut stop = shutdown_signal();
    tokio::select! {
        r = start(procs, exe, nodes, args, setup) => r?,
        _ = &mut stop => return Err(failure("interrupted during start-up")),
    }
    let exe = std::env::current_exe().ok();
    let bin_dir = exe
        .as_deref()
        .and_then(Path::parent)
        .filter(|d| !on_path(d));
    print!(
        "{}",
        usage(
            nodes,
            dir,
            setup.cookie_file.as_deref(),
            setup.tls.as_ref(),
            bin_dir
        )
    );

    // Run until told to stop; say so if a node dies meanwhile, but keep the
    // others up: the user may be testing exactly that.
    let mut reported_dead = std::collections::BTreeSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                for p in &mut procs.0 {
                    if let Ok(Some(status)) = p.child.try_wait()
                        && reported_dead.insert(p.name.clone())
                    {
                        eprintln!("warning: {} exited with {status}", p.name);
                    }
                }
            }
        }
    }
}

/// Everything up to a settled cluster: spawn, health, join, plan, commit, wait.
async fn start(
    procs: &mut Procs,
    exe: &Path,
    nodes: &[DevNode],
    args: &DevrelArgs,
    setup: &Setup,
) -> Result<(), Failure> {
    for n in nodes {
        port_free(n)?;
    }
    for (i, n) in nodes.iter().enumerate() {
        let tls = setup
            .tls
            .as_ref()
            .and_then(|t| t.nodes.get(i))
            .map(|f| (f, args.tls_require_client_cert));
        let child = spawn(exe, n, args.ring_size, setup.cookie_file.as_deref(), tls)?;
        procs.push(&n.name, child);
        eprintln!(
            "started {} on {} (log: {})",
            n.name,
            n.addr,
            n.log.display()
        );
    }
    let credentials = &setup.credentials;
    for n in nodes {
        wait_healthy(procs, n, credentials.tls.as_ref()).await?;
    }
    let (first, rest) = nodes
        .split_first()
        .ok_or_else(|| failure("no nodes to start"))?;
    let mut admin = client::admin(&first.addr, credentials.clone()).await?;
    if rest.is_empty() {
        // One node is a cluster by itself: nothing to join or wait for, so
        // member-status is only shown when the node can give it.
        if let Ok(r) = admin.member_status(pb::MemberStatusRequest {}).await {
            println!();
            print!("{}", fmt::member_status(&r.into_inner()));
        }
        return Ok(());
    }
    // A restarted devrel: members of node 1's cluster stay; join the rest.
    let members = admin
        .member_status(pb::MemberStatusRequest {})
        .await?
        .into_inner();
    let joiners: Vec<&DevNode> = rest
        .iter()
        .filter(|n| !members.members.iter().any(|m| m.name == n.name))
        .collect();
    if !joiners.is_empty() {
        join_all(first, &joiners, credentials).await?;
    }
    let limit = Duration::from_secs(args.settle_timeout);
    let members = wait_settled(&mut admin, nodes, limit).await?;
    println!();
    print!("{}", fmt::member_status(&members));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_the_tutorial_ports_and_names() {
        let nodes = layout(4, 10017, Path::new("/tmp/dev"), false).expect("valid");
        let addrs: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
        assert_eq!(
            addrs,
            [
                "127.0.0.1:10017",
                "127.0.0.1:10027",
                "127.0.0.1:10037",
                "127.0.0.1:10047"
            ]
        );
        assert_eq!(nodes[3].name, "flavio4@127.0.0.1");
        let spread = layout(3, 10017, Path::new("/tmp/dev"), true).expect("valid");
        let addrs: Vec<&str> = spread.iter().map(|n| n.addr.as_str()).collect();
        assert_eq!(
            addrs,
            ["127.0.0.2:10017", "127.0.0.3:10027", "127.0.0.4:10037"]
        );
        assert_eq!(spread[2].name, "flavio3@127.0.0.4");
        assert_eq!(nodes[3].data_dir, Path::new("/tmp/dev/dev4"));
        assert_eq!(nodes[3].log, Path::new("/tmp/dev/dev4/node.log"));
    }

    #[test]
    fn layout_refuses_bad_counts_and_port_overflow() {
        let d = Path::new("dev");
        assert!(layout(0, 10017, d, false).is_err());
        assert!(layout(17, 10017, d, false).is_err());
        assert_eq!(layout(16, 10017, d, false).map(|n| n.len()), Ok(16));
        assert!(layout(1, 0, d, false).is_err());
        assert_eq!(layout(1, 65535, d, false).map(|n| n.len()), Ok(1));
        assert!(layout(2, 65535, d, false).is_err());
        // 65500 + 10*3 = 65530 fits; a fifth node would need 65540.
        assert!(layout(4, 65500, d, false).is_ok());
        let e = layout(5, 65500, d, false).expect_err("overflow");
        assert!(e.contains("65540"), "{e}");
    }

    #[test]
    fn cookie_is_created_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c1, f1) = cluster_cookie(None, None, dir.path()).expect("created");
        assert_eq!(f1.as_deref(), Some(dir.path().join("cookie").as_path()));
        let (c2, _) = cluster_cookie(None, None, dir.path()).expect("reused");
        assert_eq!(c1.as_str(), c2.as_str());
        // FLAVIO_COOKIE wins over DIR/cookie and needs no file.
        let (c3, f3) = cluster_cookie(None, Some("from-env"), dir.path()).expect("env");
        assert_eq!((c3.as_str(), f3), ("from-env", None));
        // An explicit file wins over both.
        let own = dir.path().join("own");
        std::fs::write(&own, "mine\n").expect("write");
        let (c4, f4) = cluster_cookie(Some(&own), Some("from-env"), dir.path()).expect("file");
        assert_eq!((c4.as_str(), f4), ("mine", Some(own)));
    }

    fn member(name: &str, state: pb::MemberState) -> pb::MemberInfo {
        pb::MemberInfo {
            name: name.into(),
            addr: String::new(),
            state: state as i32,
            ring_pct: 50.0,
            pending_pct: None,
            location: String::new(),
            incarnation: String::new(),
        }
    }

    #[test]
    fn settled_needs_valid_members_a_ready_ring_and_no_pending() {
        let nodes = layout(2, 10017, Path::new("dev"), false).expect("valid");
        let mut members = pb::MemberStatusReply {
            members: vec![
                member("flavio1@127.0.0.1", pb::MemberState::Valid),
                member("flavio2@127.0.0.1", pb::MemberState::Joining),
            ],
            ..Default::default()
        };
        let mut ring = pb::RingStatusReply {
            ring_ready: false,
            pending: vec![pb::PendingTransfer::default()],
            ..Default::default()
        };
        assert_eq!(
            unsettled(&nodes, &members, &ring).as_deref(),
            Some("1 members not valid yet, ring not ready, 1 ownership changes pending")
        );
        members.members[1].state = pb::MemberState::Valid as i32;
        ring.ring_ready = true;
        assert!(unsettled(&nodes, &members, &ring).is_some());
        ring.pending.clear();
        assert_eq!(unsettled(&nodes, &members, &ring), None);
    }

    #[cfg(unix)]
    #[test]
    fn stop_terminates_and_reaps_children() {
        let mut procs = Procs::default();
        let child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        procs.push("sleeper", child);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let t0 = Instant::now();
        rt.block_on(procs.stop(Duration::from_secs(5)));
        // SIGTERM ends `sleep` at once; the grace period is not waited out.
        assert!(t0.elapsed() < Duration::from_secs(4));
        assert!(procs.0.is_empty());
        rt.block_on(procs.stop(Duration::from_secs(5)));
    }

    #[test]
    fn usage_names_the_cookie_and_the_nodes() {
        let nodes = layout(1, 10017, Path::new("/d"), false).expect("valid");
        let u = usage(
            &nodes,
            Path::new("/d"),
            Some(Path::new("/d/cookie")),
            None,
            None,
        );
        assert!(u.contains("export FLAVIO_COOKIE_FILE=/d/cookie"), "{u}");
        assert!(u.contains("flavio stats --node 127.0.0.1:10017"), "{u}");
    }
}
