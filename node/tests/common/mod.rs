//! Helpers for tests that run the real `flavio` binary: a node process that
//! is killed when dropped (so a failing test leaves nothing running), and a
//! way to run CLI commands against it.

#![allow(dead_code)] // each test binary uses a different subset

pub mod cluster;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const COOKIE: &str = "test-cookie-8f3a";

/// The certificates every node and client of this test process uses when
/// `FLAVIO_TEST_TLS` is set (e.g. `FLAVIO_TEST_TLS=1 cargo test --test
/// cluster`): one CA, one certificate for 127.0.0.1 and localhost that
/// nodes serve and clients present.
pub struct TestTls {
    pub files: flavio_node::rpc::pki::TlsFiles,
}

pub fn test_tls() -> Option<&'static TestTls> {
    static TLS: std::sync::OnceLock<Option<TestTls>> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        std::env::var_os("FLAVIO_TEST_TLS")
            .filter(|v| !v.is_empty() && v != "0")
            .map(|_| {
                let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("test-tls-{}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("tls dir");
                TestTls {
                    files: make_certs(&dir, "node", &["127.0.0.1", "localhost"]),
                }
            })
    })
    .as_ref()
}

/// A CA and one certificate for `names` under `dir` (`ca.crt`,
/// `NAME.crt`, `NAME.key`).
pub fn make_certs(dir: &Path, name: &str, names: &[&str]) -> flavio_node::rpc::pki::TlsFiles {
    use flavio_node::rpc::pki::{Authority, TlsFiles};
    let day = Duration::from_secs(86400);
    let ca = Authority::new("test CA", day).expect("ca");
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let issued = ca.issue(&names, day).expect("issue");
    let files = TlsFiles::in_dir(dir, name);
    files.write(&issued, ca.ca()).expect("write certificates");
    std::fs::write(dir.join("ca.key"), &ca.ca().key_pem).expect("write ca key");
    files
}

/// What a test's own gRPC clients use: the cookie, and TLS when on.
pub fn credentials() -> flavio_node::rpc::Credentials {
    let cookie = flavio_node::rpc::Cookie::new(COOKIE).expect("cookie");
    let tls = test_tls().map(|t| {
        flavio_node::rpc::tls::ClientTls::from_files(
            &t.files.ca,
            Some((&t.files.cert, &t.files.key)),
        )
        .expect("client TLS")
    });
    flavio_node::rpc::Credentials::new(cookie, tls)
}

pub fn flavio_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flavio"))
}

/// A free loopback port. Another process could take it before the node
/// binds; the node start is retried on a new port if that happens.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A base port whose four devrel ports (base, +10, +20, +30) are free now.
pub fn free_base() -> u16 {
    for _ in 0..50 {
        let base = free_port();
        if base > 65_000 {
            continue;
        }
        if (0..4).all(|i| TcpListener::bind(("127.0.0.1", base + 10 * i)).is_ok()) {
            return base;
        }
    }
    panic!("no free base port");
}

/// A `flavio` command with the test cookie and a private HOME.
pub fn flavio(home: &Path) -> Command {
    let mut c = Command::new(flavio_bin());
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("FLAVIO_COOKIE", COOKIE)
        // Metrics at port + 1 could collide with another test node's free
        // port; tests that read /metrics pass --metrics-listen.
        .env("FLAVIO_METRICS_LISTEN", "off")
        // FLAVIO_TEST_LOG=info shows the nodes' logs when a test needs reading.
        .env(
            "RUST_LOG",
            std::env::var("FLAVIO_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    if let Some(t) = test_tls() {
        c.env("FLAVIO_TLS_CA", &t.files.ca)
            .env("FLAVIO_TLS_CERT", &t.files.cert)
            .env("FLAVIO_TLS_KEY", &t.files.key);
    }
    c
}

pub struct NodeProc {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    pub home: PathBuf,
    /// Arguments every CLI call against it gets (e.g. `--tls-ca FILE`).
    pub client_args: Vec<String>,
}

impl NodeProc {
    /// Starts `flavio serve` on `data_dir` with extra args and waits until it
    /// answers health checks.
    pub fn start(data_dir: &Path, home: &Path, extra: &[&str]) -> NodeProc {
        NodeProc::start_named("flavio1@127.0.0.1", None, data_dir, home, extra)
    }

    /// Starts a node with a name, on `port` (a free one when `None`).
    pub fn start_named(
        name: &str,
        port: Option<u16>,
        data_dir: &Path,
        home: &Path,
        extra: &[&str],
    ) -> NodeProc {
        NodeProc::start_with(name, port, data_dir, home, extra, &[])
    }

    /// Starts a node; `client_args` go with every CLI call against it
    /// (health checks included).
    pub fn start_with(
        name: &str,
        port: Option<u16>,
        data_dir: &Path,
        home: &Path,
        extra: &[&str],
        client_args: &[&str],
    ) -> NodeProc {
        let mut last_err = String::new();
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", port.unwrap_or_else(free_port));
            let child = flavio(home)
                .args(["serve", "--name", name, "--listen", &addr])
                .arg("--data-dir")
                .arg(data_dir)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn flavio serve");
            let mut node = NodeProc {
                child,
                addr,
                data_dir: data_dir.to_path_buf(),
                home: home.to_path_buf(),
                client_args: client_args.iter().map(|a| a.to_string()).collect(),
            };
            match node.wait_healthy(Duration::from_secs(20)) {
                Ok(()) => return node,
                Err(e) => last_err = e,
            }
        }
        panic!("node did not become healthy: {last_err}");
    }

    fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("node exited early with {status}"));
            }
            let out = self.cli(&["health"]);
            if out.status.success() {
                return Ok(());
            }
            if t0.elapsed() > limit {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `flavio ARGS --node ADDR`.
    pub fn cli(&self, args: &[&str]) -> Output {
        flavio(&self.home)
            .args(args)
            .args(["--node", &self.addr])
            .args(&self.client_args)
            .output()
            .expect("run flavio")
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "flavio {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs a CLI command with `--output json` and parses it.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("valid JSON")
    }

    /// The port of its address (to start it again where peers know it).
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                panic!("node did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        // Only our own child, by its handle: a failing test leaves no node behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command that should be refused at once (a bad flag, a bad
/// size): its output, or, when it is still running after 30 s (it was not
/// refused and is serving), SIGTERM (a devrel stops its nodes on it), then
/// SIGKILL, and a panic, so that such a test fails instead of hanging.
#[allow(dead_code)]
pub fn refused_output(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run flavio");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.expect("flavio output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if rx.recv_timeout(Duration::from_secs(20)).is_err() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            panic!("{cmd:?} was not refused: still running after 30 s");
        }
    }
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `GET /metrics` from `addr`.
pub fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.0\r\n\r\n").expect("send");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of the series `series` (name and labels, as printed).
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}
