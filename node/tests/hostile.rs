//! A node under hostile or broken clients keeps serving the others: 5,000
//! open streams, a 100 MB message, garbage bytes on the port and a client
//! that never reads its replies, all at once, while a normal `flavio bench`
//! adds. The bench's adds all succeed, the node's memory stays bounded
//! (under 200 MB resident), and the node is alive afterwards. The bench's
//! rate alone and under attack is printed (not asserted: speed is for
//! benchmarks; the issue asks for 80%).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{COOKIE, NodeProc};
use flavio_node::rpc::Cookie;
use flavio_node::rpc::client::{Credentials, channel};
use flavio_proto::v1 as pb;

/// Resident memory of process `pid`, in bytes (Linux).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn credentials() -> Credentials {
    Cookie::new(COOKIE).expect("cookie").into()
}

/// `flavio bench` adds (16 in flight, 3 s) against `node`: (ok, errors,
/// adds per second, first error).
fn bench(home: &std::path::Path, node: &str) -> (u64, u64, f64, String) {
    let out = common::flavio(home)
        .args([
            "bench",
            "--op",
            "add",
            "--concurrency",
            "16",
            "--duration",
            "3s",
        ])
        .args(["--output", "json", "--node", node])
        .output()
        .expect("run flavio bench");
    assert!(out.status.success(), "bench: {}", common::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench JSON");
    (
        v["ok"].as_u64().unwrap_or(0),
        v["errors"].as_u64().unwrap_or(0),
        v["ops_per_sec"].as_f64().unwrap_or(0.0),
        v["first_error"].to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_take_the_node_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(&dir.path().join("data"), dir.path(), &[]);
    let addr = node.addr.clone();
    let home = dir.path().to_path_buf();
    let (ok0, errors0, before, _) = {
        let (home, addr) = (home.clone(), addr.clone());
        tokio::task::spawn_blocking(move || bench(&home, &addr))
            .await
            .expect("bench")
    };
    assert!(ok0 > 0 && errors0 == 0, "the baseline bench failed");
    let rss_before = rss(node.pid());

    // 1. 5,000 sessions that never send anything, on 5 connections.
    let t_attack = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..5 {
        let ch = channel(&addr, None).await.expect("connect");
        let mut raw = pb::flavio_client::FlavioClient::with_interceptor(
            ch,
            flavio_node::rpc::client::CookieLayer::new(Cookie::new(COOKIE).expect("cookie")),
        );
        for _ in 0..1000 {
            let r = raw
                .session(futures::stream::pending::<pb::SessionRequest>())
                .await
                .expect("an idle session is accepted");
            idle.push(r.into_inner());
        }
    }

    // 2. A 100 MB message: refused by its length, before it is buffered.
    let mut admin = flavio_node::rpc::client::admin(&addr, credentials())
        .await
        .expect("admin");
    let big = admin
        .stage_join(pb::StageJoinRequest {
            target: "x".repeat(100 << 20),
        })
        .await
        .expect_err("a 100 MB message is refused");
    assert!(
        matches!(
            big.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{big:?}"
    );

    // 3. Garbage on the port, from 20 connections: each is closed.
    let garbage_addr = addr.clone();
    let garbage = tokio::task::spawn_blocking(move || {
        let mut closed = 0;
        for i in 0..20u8 {
            let Ok(mut s) = std::net::TcpStream::connect(&garbage_addr) else {
                continue;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let junk: Vec<u8> = (0..65_536u32)
                .map(|j| (j.wrapping_mul(2_654_435_761) >> 13) as u8 ^ i)
                .collect();
            let _ = s.write_all(&junk);
            let mut buf = [0u8; 4096];
            // The node answers (a GOAWAY) and closes: read until EOF.
            loop {
                match std::io::Read::read(&mut s, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            closed += 1;
        }
        closed
    });

    // 4. A client that sends 200,000 pings and never reads a reply.
    let deaf = {
        let ch = channel(&addr, None).await.expect("connect");
        let mut raw = pb::flavio_client::FlavioClient::with_interceptor(
            ch,
            flavio_node::rpc::client::CookieLayer::new(Cookie::new(COOKIE).expect("cookie")),
        );
        let pings = futures::stream::iter((0..200_000u64).map(|id| pb::SessionRequest {
            id,
            op: Some(pb::session_request::Op::Ping(pb::PingRequest {})),
        }));
        raw.session(pings).await.expect("session").into_inner()
    };

    // A normal bench while all of it holds (the garbage still arriving).
    let (ok1, errors1, during, first_error) = {
        let (home, addr) = (home.clone(), addr.clone());
        tokio::task::spawn_blocking(move || bench(&home, &addr))
            .await
            .expect("bench")
    };
    let rss_during = rss(node.pid());
    assert_eq!(garbage.await.expect("garbage task"), 20);
    assert_eq!(errors1, 0, "the normal bench failed: {first_error}");
    assert!(ok1 > 0);
    eprintln!(
        "flavio bench (add, 16 in flight, 3 s): {before:.0} adds/s alone, {during:.0} adds/s under \
         attack ({:.0}%); node RSS {} MB before, {} MB during (attack set up in {:?})",
        100.0 * during / before.max(1.0),
        rss_before >> 20,
        rss_during >> 20,
        t_attack.elapsed()
    );
    assert!(
        rss_during < 200 << 20,
        "node RSS {} MB under attack",
        rss_during >> 20
    );
    drop(idle);
    drop(deaf);
    // Alive and serving.
    let out = node.ok(&["ping"]);
    assert!(out.starts_with("pong"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_closed_and_its_slot_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(
        &dir.path().join("data"),
        dir.path(),
        &["--session-idle-secs", "1", "--max-sessions", "1"],
    );
    let ch = channel(&node.addr, None).await.expect("connect");
    let mut raw = pb::flavio_client::FlavioClient::with_interceptor(
        ch,
        flavio_node::rpc::client::CookieLayer::new(Cookie::new(COOKIE).expect("cookie")),
    );
    let mut idle = raw
        .session(futures::stream::pending::<pb::SessionRequest>())
        .await
        .expect("session")
        .into_inner();
    // The only slot is taken: a second session is refused, saying why.
    let refused = raw
        .session(futures::stream::pending::<pb::SessionRequest>())
        .await
        .expect_err("over --max-sessions");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("--max-sessions"), "{refused:?}");
    let end = tokio::time::timeout(Duration::from_secs(30), idle.message())
        .await
        .expect("closed within the idle timeout")
        .expect_err("ends with a status");
    assert_eq!(end.code(), tonic::Code::DeadlineExceeded, "{end:?}");
    // Its slot is free again.
    let t0 = Instant::now();
    loop {
        match raw
            .session(futures::stream::pending::<pb::SessionRequest>())
            .await
        {
            Ok(_) => break,
            Err(s) if t0.elapsed() < Duration::from_secs(10) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("the slot was not freed: {s:?}"),
        }
    }
}
