//! Rotating the cluster cookie of real processes under load: each node's
//! cookie file goes from `old` to `old, new` (accept the new one), to `new,
//! old` (send it), to `new`; the nodes read their files again without a
//! restart, and no add fails on the way.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{admin, commit_plan, name, wait_settled};
use common::{COOKIE, NodeProc, scrape, value};
use flavio_node::rpc::Credentials;
use flavio_node::rpc::auth::Cookies;
use flavio_node::rpc::pki::write_atomic;
use flavio_proto::v1 as pb;

const NEW: &str = "the-new-cookie-5e1d";

/// Waits until the node whose metrics are at `metrics` took `n` versions of
/// its cookie file.
async fn wait_reloads(metrics: &str, n: u64) {
    let t0 = Instant::now();
    loop {
        let got = value(
            &scrape(metrics),
            "flavio_secret_reloads_total{file=\"cookie\"}",
        );
        if got as u64 >= n {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{metrics}: {got} cookie reloads, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn set(files: &[PathBuf], text: &str) {
    for f in files {
        write_atomic(f, text.as_bytes(), true).expect("cookie file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_rotates_under_load_with_no_failed_add() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (files, metrics): (Vec<PathBuf>, Vec<String>) = (1..=3)
        .map(|i| {
            let f = dir.path().join(format!("cookie{i}"));
            std::fs::write(&f, COOKIE).expect("cookie");
            (f, format!("127.0.0.1:{}", common::free_port()))
        })
        .unzip();
    let nodes: Vec<NodeProc> = (0..3)
        .map(|i| {
            let file = files[i].display().to_string();
            NodeProc::start_named(
                &name(i + 1),
                None,
                &dir.path().join(format!("dev{}", i + 1)),
                dir.path(),
                &["--cookie-file", &file, "--metrics-listen", &metrics[i]],
            )
        })
        .collect();
    for n in &nodes[1..] {
        admin(&n.addr)
            .await
            .stage_join(pb::StageJoinRequest {
                target: nodes[0].addr.clone(),
            })
            .await
            .expect("join");
    }
    let mut a1 = admin(&nodes[0].addr).await;
    commit_plan(&mut a1).await;
    wait_settled(&mut a1, 3, Duration::from_secs(60)).await;

    // The clients read their own cookie file, as the CLI in a pod would.
    let client_file = dir.path().join("client-cookie");
    std::fs::write(&client_file, COOKIE).expect("cookie");
    let client_cookies = Arc::new(Cookies::from_file(&client_file).expect("cookies"));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for c in 0..4usize {
        let addr = nodes[c % nodes.len()].addr.clone();
        let (stop, ok, failed, errors) = (
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&errors),
        );
        let credentials = Credentials::new(Arc::clone(&client_cookies), None);
        load.push(tokio::spawn(async move {
            let client = flavio_node::rpc::Client::connect(&addr, credentials)
                .await
                .expect("connect");
            // Bounded: stops on the flag or after 50k adds.
            for _ in 0..50_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = client
                    .add(pb::AddRequest {
                        a: 1,
                        b: 1,
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(s) => {
                        if let Ok(mut e) = errors.lock() {
                            e.push(s.to_string());
                        }
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Each step reaches every node before the next begins.
    set(&files, &format!("{COOKIE}\n{NEW}\n"));
    for m in &metrics {
        wait_reloads(m, 1).await;
    }
    set(&files, &format!("{NEW}\n{COOKIE}\n"));
    for m in &metrics {
        wait_reloads(m, 2).await;
    }
    std::fs::write(&client_file, NEW).expect("cookie");
    assert!(client_cookies.reload().expect("client cookie"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    set(&files, NEW);
    for m in &metrics {
        wait_reloads(m, 3).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed,
        0,
        "{ok} ok; errors: {:?}",
        errors.lock().map(|e| e.clone()).unwrap_or_default()
    );
    assert!(ok > 0);

    // The old cookie is refused now; the new one counts every add 3 times.
    let old = flavio_node::rpc::Client::connect(
        &nodes[0].addr,
        flavio_node::rpc::Cookie::new(COOKIE).expect("cookie"),
    )
    .await
    .expect("connect")
    .ping()
    .await
    .expect_err("the old cookie is no longer accepted");
    assert_eq!(old.code(), tonic::Code::PermissionDenied);
    let stats = flavio_node::rpc::Client::connect(
        &nodes[1].addr,
        flavio_node::rpc::Cookie::new(NEW).expect("cookie"),
    )
    .await
    .expect("connect")
    .stats(pb::StatsRequest { timeout_ms: None })
    .await
    .expect("stats");
    assert_eq!(stats.total_ops, 3 * ok);
}
