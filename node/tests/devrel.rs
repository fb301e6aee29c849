//! `flavio devrel` end to end: four real nodes join, plan, commit and settle,
//! the printed plan and member-status match the tutorial's golden files, and
//! SIGTERM stops every node devrel started.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::flavio;

/// The devrel process; on drop it gets SIGTERM (so it stops its nodes) and
/// is killed only if it does not exit.
struct Devrel(Child);

impl Devrel {
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Devrel {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.terminate();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn golden(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/admin")
        .join(name);
    std::fs::read_to_string(path).expect("golden file")
}

#[test]
fn devrel_of_four_reproduces_the_tutorial_and_stops_its_nodes() {
    let home = tempfile::tempdir().expect("tempdir");
    let out_path = home.path().join("devrel.out");
    let err_path = home.path().join("devrel.err");
    let base = common::free_base();
    let mut devrel = Devrel(
        flavio(home.path())
            .args(["devrel", "--nodes", "4", "--base-port", &base.to_string()])
            .arg("--dir")
            .arg(home.path().join("dev"))
            .stdout(Stdio::from(
                std::fs::File::create(&out_path).expect("stdout file"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(&err_path).expect("stderr file"),
            ))
            .spawn()
            .expect("spawn devrel"),
    );
    let t0 = Instant::now();
    while !read(&out_path).contains("Press Ctrl-C") {
        if let Ok(Some(s)) = devrel.0.try_wait() {
            panic!("devrel exited with {s}: {}", read(&err_path));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(150),
            "devrel did not settle: {}",
            read(&err_path)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = read(&out_path);
    for i in 2..=4 {
        let staged = format!(
            "Success: staged join request for 'flavio{i}@127.0.0.1' to 'flavio1@127.0.0.1'\n"
        );
        assert!(out.contains(&staged), "{out}");
    }
    // The tutorial's plan (3 joins, 1 transition, 48 transfers, 16 to each)
    // and its final member-status, byte for byte.
    assert!(out.contains(&golden("plan_join.txt")), "{out}");
    assert!(out.contains("Cluster changes committed\n"), "{out}");
    let valid4 = golden("member_status_valid4.txt");
    assert!(out.contains(&valid4), "{out}");

    let node = format!("127.0.0.1:{base}");
    let admin = |args: &[&str]| {
        let o = flavio(home.path())
            .arg("admin")
            .args(args)
            .args(["--node", &node])
            .output()
            .expect("run flavio");
        assert!(o.status.success(), "{}", common::stderr(&o));
        String::from_utf8(o.stdout).expect("utf-8")
    };
    assert_eq!(admin(&["member-status"]), valid4);
    let ring = admin(&["ring-status"]);
    assert!(ring.contains("Ring Ready: true\n"), "{ring}");
    assert!(ring.contains("No pending changes.\n"), "{ring}");
    assert!(ring.contains("All nodes are up and reachable\n"), "{ring}");
    assert_eq!(admin(&["transfers"]), "No transfers active\n");

    let status = devrel.terminate().expect("devrel exits on SIGTERM");
    assert!(status.success(), "{status}: {}", read(&err_path));
    let err = read(&err_path);
    for i in 1..=4 {
        assert!(
            err.contains(&format!("stopped flavio{i}@127.0.0.1")),
            "{err}"
        );
        let addr = format!("127.0.0.1:{}", base + 10 * (i - 1));
        let addr = addr.parse().expect("addr");
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
            "node {i} still listens"
        );
    }
}
