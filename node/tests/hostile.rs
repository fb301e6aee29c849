//! A node under hostile or broken clients keeps serving the others: 5,000
//! open streams, a 100 MB message, garbage bytes on the port and a client
//! that never reads its replies, all at once, while a normal client adds.
//! The normal client's adds all succeed, the node's memory stays bounded
//! (under 200 MB resident), and the node is alive afterwards. The normal
//! client's rate before and during the attack is printed (not asserted:
//! speed is for benchmarks).

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{COOKIE, NodeProc};
use flavio_node::rpc::client::{Credentials, channel};
use flavio_node::rpc::{Client, Cookie};
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

/// Adds in a loop until `stop`; counts successes and failures.
async fn normal_client(
    addr: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> Vec<String> {
    let client = Client::connect(&addr, credentials())
        .await
        .expect("connect");
    let mut errors = Vec::new();
    // Bounded: stops on the flag or after 200k adds.
    for _ in 0..200_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match client
            .add(pb::AddRequest {
                a: 1,
                b: 1,
                ..Default::default()
            })
            .await
        {
            Ok(_) => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(s) => {
                failed.fetch_add(1, Ordering::Relaxed);
                errors.push(s.to_string());
            }
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_take_the_node_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(&dir.path().join("data"), dir.path(), &[]);
    let addr = node.addr.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let normal = tokio::spawn(normal_client(
        addr.clone(),
        Arc::clone(&stop),
        Arc::clone(&ok),
        Arc::clone(&failed),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = ok.load(Ordering::Relaxed) as f64 / 2.0;
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

    assert_eq!(garbage.await.expect("garbage task"), 20);
    // Let the attack sit while the normal client runs.
    let t_mid = Instant::now();
    let ok_mid = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = (ok.load(Ordering::Relaxed) - ok_mid) as f64 / t_mid.elapsed().as_secs_f64();
    let rss_during = rss(node.pid());

    stop.store(true, Ordering::Relaxed);
    let errors = normal.await.expect("normal client");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "the normal client's adds failed: {:?}",
        &errors[..errors.len().min(5)]
    );
    eprintln!(
        "normal client: {before:.0} adds/s before, {during:.0} adds/s during the attack ({:.0}%); \
         node RSS {} MB before, {} MB during (attack set up in {:?})",
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
