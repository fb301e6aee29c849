//! TLS on real processes: a devrel with `--tls` serves clients that have its
//! CA and refuses the others with a clear error; nothing on the wire is in
//! clear (checked on the bytes a relay between client and node saw, against
//! the same relay in front of a plain node); certificates rotate under load
//! with no failed add.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{COOKIE, NodeProc, flavio, stderr};
use flavio_node::rpc::pki::{Authority, Issued, TlsFiles};
use flavio_node::rpc::tls::ClientTls;
use flavio_node::rpc::{Cookie, Credentials};
use flavio_proto::v1 as pb;

/// `flavio devrel`, stopped (SIGTERM, so it stops its nodes) when dropped.
struct DevrelProc(Child);

impl Drop for DevrelProc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Runs `flavio ARGS --node NODE` with these TLS files (any may be absent).
fn cli(home: &Path, node: &str, tls: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut c = flavio(home);
    for (var, path) in tls {
        c.env(var, path);
    }
    c.args(args)
        .args(["--node", node])
        .output()
        .expect("run flavio")
}

fn client_env(f: &TlsFiles) -> [(&'static str, &Path); 3] {
    [
        ("FLAVIO_TLS_CA", f.ca.as_path()),
        ("FLAVIO_TLS_CERT", f.cert.as_path()),
        ("FLAVIO_TLS_KEY", f.key.as_path()),
    ]
}

#[test]
fn a_tls_devrel_serves_clients_with_its_ca_and_refuses_the_others() {
    let home = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (home.path().join("out"), home.path().join("err"));
    let base = common::free_base();
    let _devrel = DevrelProc(
        flavio(home.path())
            .args(["devrel", "--tls", "--nodes", "4"])
            .args(["--base-port", &base.to_string()])
            .arg("--dir")
            .arg(home.path().join("dev"))
            .stdout(Stdio::from(std::fs::File::create(&out_path).expect("out")))
            .stderr(Stdio::from(std::fs::File::create(&err_path).expect("err")))
            .spawn()
            .expect("spawn devrel"),
    );
    let t0 = Instant::now();
    while !read(&out_path).contains("Press Ctrl-C") {
        assert!(
            t0.elapsed() < Duration::from_secs(150),
            "devrel did not settle: {}",
            read(&err_path)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let tls_dir = home.path().join("dev/tls");
    let client = TlsFiles::in_dir(&tls_dir, "client");
    let out = read(&out_path);
    assert!(
        out.contains(&format!("export FLAVIO_TLS_CA={}", client.ca.display())),
        "{out}"
    );
    let node = format!("127.0.0.1:{base}");
    let good = client_env(&client);

    // With the CA and the client certificate: the whole tutorial works.
    let ms = cli(home.path(), &node, &good, &["admin", "member-status"]);
    assert!(ms.status.success(), "{}", stderr(&ms));
    assert_eq!(
        String::from_utf8_lossy(&ms.stdout).matches("valid").count(),
        4
    );
    for i in 0..20 {
        let o = cli(home.path(), &node, &good, &["add", &i.to_string(), "1"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let stats = cli(home.path(), &node, &good, &["stats", "--output", "json"]);
    assert!(stats.status.success(), "{}", stderr(&stats));
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("json");
    assert_eq!(v["total_ops"], 60, "{v}");
    // The CA alone is enough for a client: nodes ask only each other for
    // certificates (devrel's default).
    let ca_only = cli(
        home.path(),
        &node,
        &[("FLAVIO_TLS_CA", client.ca.as_path())],
        &["ping"],
    );
    assert!(ca_only.status.success(), "{}", stderr(&ca_only));

    // Without TLS: refused, and the error says what to do.
    let plain = cli(home.path(), &node, &[], &["ping"]);
    assert_eq!(plain.status.code(), Some(1));
    let e = stderr(&plain);
    assert!(e.contains("FLAVIO_TLS_CA"), "{e}");

    // A CA that did not sign the nodes' certificates.
    let other_dir = home.path().join("other");
    std::fs::create_dir(&other_dir).expect("dir");
    let other = common::make_certs(&other_dir, "client", &["flavio-client"]);
    let wrong_ca = cli(
        home.path(),
        &node,
        &[("FLAVIO_TLS_CA", other.ca.as_path())],
        &["ping"],
    );
    assert_eq!(wrong_ca.status.code(), Some(1));
    let e = stderr(&wrong_ca);
    assert!(e.contains("not signed by the CA"), "{e}");

    // A client certificate of another CA, and an expired one of the right
    // CA: the node refuses both.
    let foreign = cli(
        home.path(),
        &node,
        &[
            ("FLAVIO_TLS_CA", client.ca.as_path()),
            ("FLAVIO_TLS_CERT", other.cert.as_path()),
            ("FLAVIO_TLS_KEY", other.key.as_path()),
        ],
        &["ping"],
    );
    assert_eq!(foreign.status.code(), Some(1), "{}", stderr(&foreign));
    let e = stderr(&foreign);
    assert!(e.contains("refused this client's certificate"), "{e}");
    let ca = Authority::load(
        "flavio devrel CA",
        Issued {
            cert_pem: read(&client.ca),
            key_pem: read(&tls_dir.join("ca.key")),
        },
    )
    .expect("devrel CA");
    let day = Duration::from_secs(86400);
    let now = std::time::SystemTime::now();
    let expired = ca
        .issue_between(&["flavio-client".into()], now - 3 * day, now - day)
        .expect("issue");
    let expired_files = TlsFiles::in_dir(&other_dir, "expired");
    expired_files.write(&expired, ca.ca()).expect("write");
    let old = cli(
        home.path(),
        &node,
        &[
            ("FLAVIO_TLS_CA", client.ca.as_path()),
            ("FLAVIO_TLS_CERT", expired_files.cert.as_path()),
            ("FLAVIO_TLS_KEY", expired_files.key.as_path()),
        ],
        &["ping"],
    );
    assert_eq!(old.status.code(), Some(1), "{}", stderr(&old));
    let e = stderr(&old);
    assert!(e.contains("expired"), "{e}");

    // The cookie is not enough to act as a node: the Cluster service wants
    // a certificate of the cluster's CA.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let code = rt.block_on(async {
        let tls = ClientTls::from_files(&client.ca, None).expect("client tls");
        let channel = flavio_node::rpc::client::channel(&node, Some(&tls))
            .await
            .expect("connect");
        let mut c = pb::cluster_client::ClusterClient::with_interceptor(
            channel,
            flavio_node::rpc::client::CookieLayer::new(Cookie::new(COOKIE).expect("cookie")),
        );
        c.gossip(pb::GossipRequest::default())
            .await
            .expect_err("a client without a certificate is no node")
            .code()
    });
    assert_eq!(code, tonic::Code::PermissionDenied);
}

/// A TCP relay that records what passes each way.
struct Relay {
    addr: String,
    to_node: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, log: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut l) = log.lock() {
                    l.extend_from_slice(&buf[..n]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

impl Relay {
    /// Relays every connection to `target` until the test process ends
    /// (threads blocked in accept cost nothing).
    fn to(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (to_node, to_client) = (Arc::default(), Arc::default());
        let (a, b) = (Arc::clone(&to_node), Arc::clone(&to_client));
        let target = target.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(16) {
                let Ok(client) = conn else { break };
                let Ok(node) = TcpStream::connect(&target) else {
                    break;
                };
                let (c2, n2) = (
                    client.try_clone().expect("clone"),
                    node.try_clone().expect("clone"),
                );
                let (a, b) = (Arc::clone(&a), Arc::clone(&b));
                std::thread::spawn(move || pump(client, node, a));
                std::thread::spawn(move || pump(n2, c2, b));
            }
        });
        Relay {
            addr,
            to_node,
            to_client,
        }
    }

    fn bytes(&self) -> (Vec<u8>, Vec<u8>) {
        let a = self.to_node.lock().map(|v| v.clone()).unwrap_or_default();
        let b = self.to_client.lock().map(|v| v.clone()).unwrap_or_default();
        (a, b)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether `bytes` is a whole sequence of TLS records (handshake, change
/// cipher spec, alert, application data) and carries application data.
fn all_tls_records(bytes: &[u8]) -> bool {
    let (mut at, mut app_data) = (0, false);
    while at < bytes.len() {
        let Some(h) = bytes.get(at..at + 5) else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        if !(20..=23).contains(&h[0]) || h[1] != 3 || len > 18432 {
            return false;
        }
        app_data |= h[0] == 23;
        at += 5 + len;
    }
    at == bytes.len() && app_data
}

#[test]
fn nothing_crosses_the_wire_in_clear_with_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = common::make_certs(dir.path(), "node", &["127.0.0.1"]);
    let args: Vec<String> = [
        ("--tls-cert", &files.cert),
        ("--tls-key", &files.key),
        ("--tls-ca", &files.ca),
    ]
    .iter()
    .flat_map(|(k, v)| [k.to_string(), v.display().to_string()])
    .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tls_node = NodeProc::start_with(
        "flavio1@127.0.0.1",
        None,
        &dir.path().join("tls-node"),
        dir.path(),
        &args,
        &args,
    );
    let plain_node = NodeProc::start(&dir.path().join("plain-node"), dir.path(), &[]);
    // Operands whose protobuf encoding is easy to spot.
    let (a, b) = (0x0123_4567_89ab_i64, 0x0fed_cba9_8765_i64);
    let payload = prost::Message::encode_to_vec(&pb::AddRequest {
        a,
        b,
        ..Default::default()
    });
    let add = |node: &NodeProc, relay: &Relay| {
        let o = flavio(dir.path())
            .args(["add", &a.to_string(), &b.to_string(), "--n", "1"])
            .args(["--w", "1", "--node", &relay.addr])
            .args(&node.client_args)
            .output()
            .expect("run flavio");
        assert!(o.status.success(), "{}", stderr(&o));
    };

    // The control: through the same relay, a plain node's traffic shows the
    // request's protobuf bytes, and is no TLS.
    let plain = Relay::to(&plain_node.addr);
    add(&plain_node, &plain);
    let (up, _) = plain.bytes();
    assert!(contains(&up, &payload), "the control must see the request");
    assert!(!all_tls_records(&up));

    let tls = Relay::to(&tls_node.addr);
    add(&tls_node, &tls);
    let (up, down) = tls.bytes();
    assert!(all_tls_records(&up), "client to node: not all TLS records");
    assert!(
        all_tls_records(&down),
        "node to client: not all TLS records"
    );
    for (what, bytes) in [("client to node", &up), ("node to client", &down)] {
        assert!(!contains(bytes, COOKIE.as_bytes()), "{what}: the cookie");
        assert!(!contains(bytes, &payload), "{what}: the request");
        assert!(!contains(bytes, b"flavio.v1"), "{what}: a gRPC path");
    }
}

/// A three-node cluster whose nodes use the files in `dirs[i]`; the admin
/// client uses `client`.
async fn tls_cluster(home: &Path, files: &[TlsFiles], client: &Credentials) -> Vec<NodeProc> {
    let nodes: Vec<NodeProc> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let args: Vec<String> = [
                "--tls-cert".to_string(),
                f.cert.display().to_string(),
                "--tls-key".into(),
                f.key.display().to_string(),
                "--tls-ca".into(),
                f.ca.display().to_string(),
            ]
            .to_vec();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            NodeProc::start_with(
                &common::cluster::name(i + 1),
                None,
                &home.join(format!("dev{}", i + 1)),
                home,
                &args,
                &args,
            )
        })
        .collect();
    for n in &nodes[1..] {
        flavio_node::rpc::client::admin(&n.addr, client.clone())
            .await
            .expect("admin")
            .stage_join(pb::StageJoinRequest {
                target: nodes[0].addr.clone(),
            })
            .await
            .expect("join");
    }
    let mut a1 = flavio_node::rpc::client::admin(&nodes[0].addr, client.clone())
        .await
        .expect("admin");
    common::cluster::commit_plan(&mut a1).await;
    common::cluster::wait_settled(&mut a1, nodes.len(), Duration::from_secs(60)).await;
    nodes
}

fn bundle(dir: &Path, cas: &[&Authority]) -> PathBuf {
    let path = dir.join("bundle.crt");
    let text: String = cas.iter().map(|c| c.ca().cert_pem.clone()).collect();
    std::fs::write(&path, text).expect("bundle");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_with_no_failed_add() {
    let home = tempfile::tempdir().expect("tempdir");
    let day = Duration::from_secs(86400);
    let (old_ca, new_ca) = (
        Authority::new("old CA", day).expect("ca"),
        Authority::new("new CA", day).expect("ca"),
    );
    let names = ["127.0.0.1".to_string()];
    let files: Vec<TlsFiles> = (1..=3)
        .map(|i| {
            let d = home.path().join(format!("tls{i}"));
            std::fs::create_dir(&d).expect("dir");
            let f = TlsFiles::in_dir(&d, "node");
            f.write(&old_ca.issue(&names, day).expect("issue"), old_ca.ca())
                .expect("write");
            f
        })
        .collect();
    // Clients trust both CAs from the start, as a rotation plan has them.
    let both = bundle(home.path(), &[&old_ca, &new_ca]);
    let client = Credentials::new(
        Cookie::new(COOKIE).expect("cookie"),
        Some(ClientTls::from_files(&both, None).expect("tls")),
    );
    let nodes = tls_cluster(home.path(), &files, &client).await;
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for c in 0..4usize {
        let (addr, stop, ok, failed, errors, client) = (
            addrs[c % addrs.len()].clone(),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&errors),
            client.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut conn = None;
            let mut i = 0u64;
            // Bounded: stops on the flag or after 50k adds. Clients 2 and 3
            // connect again every 50 adds, so handshakes run all along.
            while !stop.load(Ordering::Relaxed) && i < 50_000 {
                if conn.is_none() || (c >= 2 && i.is_multiple_of(50)) {
                    match flavio_node::rpc::Client::connect(&addr, client.clone()).await {
                        Ok(cl) => conn = Some(cl),
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut v) = errors.lock() {
                                v.push(format!("connect: {e}"));
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                }
                let Some(cl) = conn.as_ref() else { continue };
                match cl
                    .add(pb::AddRequest {
                        a: 1,
                        b: 2,
                        ..Default::default()
                    })
                    .await
                {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(s) => {
                        if let Ok(mut v) = errors.lock() {
                            v.push(s.to_string());
                        }
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Step 1: every node trusts both CAs. Step 2: every node gets a
    // certificate of the new CA. Each file is replaced by a rename, as a
    // Secret update does.
    for f in &files {
        flavio_node::rpc::pki::write_atomic(
            &f.ca,
            std::fs::read(&both).expect("bundle").as_slice(),
            false,
        )
        .expect("ca");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for f in &files {
        let issued = new_ca.issue(&names, day).expect("issue");
        flavio_node::rpc::pki::write_atomic(&f.key, issued.key_pem.as_bytes(), true).expect("key");
        flavio_node::rpc::pki::write_atomic(&f.cert, issued.cert_pem.as_bytes(), false)
            .expect("cert");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed,
        0,
        "{failed} failed adds ({ok} ok): {:?}",
        errors.lock().map(|v| v.clone()).unwrap_or_default()
    );
    assert!(ok > 0);

    // The nodes serve the new certificate: a client trusting only the new
    // CA gets in, one trusting only the old is refused.
    let only = |ca: &Authority, name: &str| {
        let path = home.path().join(name);
        std::fs::write(&path, &ca.ca().cert_pem).expect("ca");
        Credentials::new(
            Cookie::new(COOKIE).expect("cookie"),
            Some(ClientTls::from_files(&path, None).expect("tls")),
        )
    };
    for addr in &addrs {
        flavio_node::rpc::Client::connect(addr, only(&new_ca, "new.crt"))
            .await
            .expect("connect")
            .ping()
            .await
            .expect("the new certificate is served");
        let old = match flavio_node::rpc::Client::connect(addr, only(&old_ca, "old.crt")).await {
            Ok(c) => c.ping().await.map(|_| ()).map_err(|s| s.to_string()),
            Err(e) => Err(e.to_string()),
        };
        assert!(old.is_err(), "{addr} still serves the old certificate");
    }
    // Every acknowledged add is counted three times.
    let stats = flavio_node::rpc::Client::connect(&addrs[0], client.clone())
        .await
        .expect("connect")
        .stats(pb::StatsRequest { timeout_ms: None })
        .await
        .expect("stats");
    assert_eq!(stats.total_ops, 3 * ok, "3 x {ok} acknowledged adds");
    drop(nodes);
}
