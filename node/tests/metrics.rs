//! `/metrics` of real node processes: the names a dashboard relies on are
//! pinned by a golden file, and during a join the handoff metrics move.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{admin, commit_plan, name, wait_settled};
use common::{NodeProc, scrape, value};
use flavio_proto::v1 as pb;

fn start(i: usize, dir: &std::path::Path, metrics: &str) -> NodeProc {
    NodeProc::start_named(
        &name(i),
        None,
        &dir.join(format!("dev{i}")),
        dir,
        &["--metrics-listen", metrics, "--handoff-concurrency", "1"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_names_are_pinned_and_handoffs_show_during_a_join() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m1 = format!("127.0.0.1:{}", common::free_port());
    let m2 = format!("127.0.0.1:{}", common::free_port());
    let n1 = start(1, dir.path(), &m1);

    // Names and types, pinned: dashboards and alerts are written against them.
    let text = scrape(&m1);
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    let got = names.join("\n") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.txt");
    if std::env::var_os("UPDATE_GOLDENFILES").is_some() {
        std::fs::write(&path, &got).expect("write golden");
    }
    assert_eq!(
        got,
        std::fs::read_to_string(&path).expect("golden file"),
        "metric names changed (UPDATE_GOLDENFILES=1 rewrites tests/golden/metrics.txt)"
    );
    assert_eq!(value(&text, "flavio_vnodes{kind=\"primary\"}"), 64.0);
    assert_eq!(value(&text, "flavio_members{state=\"valid\"}"), 1.0);

    // Some data, so that transfers carry items.
    let out = n1.cli(&[
        "bench",
        "--op",
        "add",
        "--duration",
        "2s",
        "--n",
        "1",
        "--w",
        "1",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = scrape(&m1);
    assert!(
        value(
            &text,
            "flavio_requests_total{command=\"add\",result=\"ok\"}"
        ) > 0.0
    );

    let n2 = start(2, dir.path(), &m2);
    admin(&n2.addr)
        .await
        .stage_join(pb::StageJoinRequest {
            target: n1.addr.clone(),
        })
        .await
        .expect("join");
    let mut a1 = admin(&n1.addr).await;
    commit_plan(&mut a1).await;
    // Scrape all along the join: the sender's active gauge rises while it
    // hands partitions to the joiner.
    let t0 = Instant::now();
    let mut max_active = 0.0f64;
    let mut samples = 0;
    loop {
        let text = scrape(&m1);
        samples += 1;
        max_active = max_active.max(value(&text, "flavio_handoffs_active{kind=\"ownership\"}"));
        let done = value(&text, "flavio_handoffs_done_total{kind=\"ownership\"}");
        if done >= 32.0 || t0.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_settled(&mut a1, 2, Duration::from_secs(60)).await;
    let text = scrape(&m1);
    let done = value(&text, "flavio_handoffs_done_total{kind=\"ownership\"}");
    let items = value(&text, "flavio_handoff_items_total{kind=\"ownership\"}");
    let bytes = value(&text, "flavio_handoff_bytes_total{kind=\"ownership\"}");
    println!(
        "join: {samples} scrapes, at most {max_active} transfers active at once, {done} done, {items} items, {bytes} bytes"
    );
    assert_eq!(done, 32.0, "half of the 64 partitions moved to the joiner");
    assert!(items > 0.0 && bytes > 0.0, "{text}");
    assert!(max_active >= 1.0, "no scrape saw a transfer running");
    assert_eq!(value(&text, "flavio_vnodes{kind=\"primary\"}"), 32.0);
    assert_eq!(value(&text, "flavio_members{state=\"valid\"}"), 2.0);
    assert_eq!(value(&text, "flavio_peers{state=\"up\"}"), 1.0);
    assert_eq!(value(&scrape(&m2), "flavio_vnodes{kind=\"primary\"}"), 32.0);
}
