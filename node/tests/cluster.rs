//! Real multi-process clusters over loopback: the tutorial's walkthrough
//! (3 staged joins, plan, commit, convergence), and no acknowledged add lost
//! while the cluster grows and shrinks under load.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::NodeProc;
use common::cluster::{Admin, Devrel, admin, commit_plan, golden, join_first, name, wait_settled};
use flavio_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_walkthrough_four_nodes() {
    let dev = Devrel::start(4);
    let mut a1 = admin(&dev.nodes[0].addr).await;
    let ms = a1
        .member_status(pb::MemberStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(ms.members.len(), 1, "alone before joins");
    // Nothing staged is no failure: riak prints this and exits 0.
    assert_eq!(
        dev.nodes[0].ok(&["admin", "cluster", "plan"]),
        golden("plan_empty.txt")
    );

    for (i, node) in dev.nodes.iter().enumerate().skip(1) {
        let out = node.ok(&["admin", "cluster", "join", &dev.nodes[0].addr]);
        assert_eq!(
            out,
            format!(
                "Success: staged join request for '{}' to '{}'\n",
                name(i + 1),
                name(1)
            )
        );
    }
    // The tutorial's outputs, through the CLI, checked by golden files.
    let n1 = &dev.nodes[0];
    assert_eq!(
        n1.ok(&["admin", "member-status"]),
        golden("member_status_joining.txt")
    );
    let t0 = Instant::now();
    let plan = loop {
        let out = n1.cli(&["admin", "cluster", "plan"]);
        if out.status.success() {
            break String::from_utf8(out.stdout).expect("utf-8");
        }
        // Not converged yet: riak asks to try again, so do we.
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{}",
            common::stderr(&out)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(plan, golden("plan_join.txt"));
    assert_eq!(
        n1.ok(&["admin", "cluster", "commit"]),
        "Cluster changes committed\n"
    );
    let ms = wait_settled(&mut a1, 4, Duration::from_secs(60)).await;
    eprintln!(
        "1 -> 4 converged with all transfers done in {:?}",
        t0.elapsed()
    );
    for m in &ms.members {
        assert_eq!(m.ring_pct, 25.0, "{m:?}");
        assert_eq!(m.pending_pct, None);
    }
    assert_eq!(
        n1.ok(&["admin", "member-status"]),
        golden("member_status_valid4.txt")
    );
    // Every node agrees, and requests work from any node.
    for node in &dev.nodes {
        let mut a = admin(&node.addr).await;
        let ms = wait_settled(&mut a, 4, Duration::from_secs(10)).await;
        assert_eq!(ms.members.len(), 4);
        let add = node.json(&["add", "2", "5"]);
        let nodes: BTreeSet<&str> = add["replicas"]
            .as_array()
            .expect("replicas")
            .iter()
            .map(|r| r["node"].as_str().expect("node"))
            .collect();
        assert_eq!(nodes.len(), 3, "three replicas on three nodes: {add}");
    }
    let stats = dev.nodes[2].json(&["stats"]);
    assert_eq!(stats["total_ops"], 12);
    assert_eq!(stats["partial"], false);

    // SIGTERM stops a clustered node promptly and cleanly, although its
    // peers keep streams to it open.
    let mut dev = dev;
    let node4 = dev.nodes.pop().expect("node 4");
    let t0 = Instant::now();
    let status = node4.terminate();
    assert!(status.success(), "SIGTERM exit: {status}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "stopped in {:?}",
        t0.elapsed()
    );
}

/// Runs quorum adds from `clients` threads until `stop`; returns
/// (acknowledged, attempted).
fn load(
    addrs: Vec<String>,
    clients: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64, Vec<String>)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for c in 0..clients {
                let addr = addrs[c % addrs.len()].clone();
                let stop = std::sync::Arc::clone(&stop);
                tasks.push(tokio::spawn(async move {
                    let client = flavio_node::rpc::Client::connect(&addr, common::credentials())
                        .await
                        .expect("connect");
                    let (mut ok, mut tried, mut errors) = (0u64, 0u64, Vec::new());
                    let mut i = 0i64;
                    // Bounded: stops on the flag or after 100k adds.
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 100_000 {
                        tried += 1;
                        match client
                            .add(pb::AddRequest {
                                a: c as i64,
                                b: i,
                                ..Default::default()
                            })
                            .await
                        {
                            Ok(_) => ok += 1,
                            Err(s) => {
                                if errors.len() < 5 {
                                    errors.push(s.to_string());
                                }
                            }
                        }
                        i += 1;
                    }
                    (ok, tried, errors)
                }));
            }
            let mut total = (0, 0, Vec::new());
            for t in tasks {
                let (ok, tried, mut e) = t.await.expect("client task");
                total.0 += ok;
                total.1 += tried;
                total.2.append(&mut e);
            }
            total
        })
    })
}

async fn total_ops(addr: &str) -> (u64, BTreeMap<String, u64>) {
    let client = flavio_node::rpc::Client::connect(addr, common::credentials())
        .await
        .expect("connect");
    let s = client
        .stats(pb::StatsRequest { timeout_ms: None })
        .await
        .expect("stats");
    assert!(!s.partial, "stats partial");
    let mut by_node = BTreeMap::new();
    for v in &s.vnodes {
        *by_node.entry(v.node.clone()).or_default() += v.ops_count;
    }
    (s.total_ops, by_node)
}

/// A settled 2-node cluster with 4 clients adding against both nodes.
struct Loaded {
    dev: Devrel,
    a1: Admin,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    loader: std::thread::JoinHandle<(u64, u64, Vec<String>)>,
}

/// Waits until all 64 vnodes answer a stats call on `node` (none missing,
/// none redirecting elsewhere); returns that stats document.
async fn every_vnode_answers(node: &NodeProc) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let s = node.json(&["stats", "--all"]);
        if s["partial"] == false && s["vnodes"].as_array().map_or(0, Vec::len) == 64 {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "stats: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A few adds through `node`, each answered with its sum.
fn adds_work(node: &NodeProc) {
    for i in 0..10 {
        let sum = node.json(&["add", &i.to_string(), "3"]);
        assert_eq!(sum["sum"], i + 3);
    }
}

async fn two_nodes_under_load() -> Loaded {
    let dev = Devrel::start(2);
    let mut a1 = admin(&dev.nodes[0].addr).await;
    join_first(&dev, 1).await;
    commit_plan(&mut a1).await;
    wait_settled(&mut a1, 2, Duration::from_secs(30)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addrs: Vec<String> = dev.nodes.iter().map(|n| n.addr.clone()).collect();
    let loader = load(addrs, 4, std::sync::Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(500)).await;
    Loaded {
        dev,
        a1,
        stop,
        loader,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_add_is_lost_while_growing_and_shrinking() {
    let Loaded {
        mut dev,
        mut a1,
        stop,
        loader,
    } = two_nodes_under_load().await;

    // Grow 2 -> 5 under load.
    for i in 3..=5 {
        dev.add_node(i);
        join_first(&dev, i - 1).await;
    }
    commit_plan(&mut a1).await;
    wait_settled(&mut a1, 5, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Shrink 5 -> 3 under load: nodes 4 and 5 leave.
    for i in [4, 5] {
        a1.stage_leave(pb::StageLeaveRequest { node: name(i) })
            .await
            .expect("leave");
    }
    commit_plan(&mut a1).await;
    wait_settled(&mut a1, 3, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, tried, errors) = loader.join().expect("loader");
    assert!(errors.is_empty(), "adds failed: {errors:?}");
    assert!(ok > 100, "load ran: {ok} of {tried}");
    let (total, by_node) = total_ops(&dev.nodes[0].addr).await;
    assert_eq!(total, 3 * ok, "stats {total} vs 3 x {ok} acknowledged adds");
    let members: BTreeSet<String> = (1..=3).map(name).collect();
    for n in by_node.keys() {
        assert!(
            members.contains(n),
            "vnode owned by {n}, not a valid member"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_killed_mid_transfer_loses_nothing_acknowledged() {
    let Loaded {
        mut dev,
        mut a1,
        stop,
        loader,
    } = two_nodes_under_load().await;

    dev.add_node(3);
    let port = dev.nodes[2].port();
    join_first(&dev, 2).await;
    commit_plan(&mut a1).await;
    // Let some transfers to node 3 start, then kill it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let node3 = dev.nodes.pop().expect("node 3");
    let data3 = node3.data_dir.clone();
    let home = node3.home.clone();
    node3.kill9();
    tokio::time::sleep(Duration::from_millis(700)).await;
    dev.nodes.push(NodeProc::start_named(
        &name(3),
        Some(port),
        &data3,
        &home,
        &[],
    ));
    wait_settled(&mut a1, 3, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, tried, _errors) = loader.join().expect("loader");
    assert!(ok > 100, "load ran: {ok} of {tried}");
    let (total, by_node) = total_ops(&dev.nodes[0].addr).await;
    assert!(
        total >= 3 * ok && total <= 3 * tried,
        "total {total} outside [3 x {ok} acknowledged, 3 x {tried} attempted]"
    );
    assert_eq!(by_node.len(), 3, "every member owns vnodes: {by_node:?}");
}

/// `cluster clear` undoes a staged join as riak's does: the joining node is
/// removed, starts over as a one-member cluster, and can join again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_removes_a_staged_join_which_can_be_made_again() {
    let dev = Devrel::start(2);
    let mut a1 = admin(&dev.nodes[0].addr).await;
    let mut a2 = admin(&dev.nodes[1].addr).await;
    join_first(&dev, 1).await;
    let out = dev.nodes[0].ok(&["admin", "cluster", "clear"]);
    assert_eq!(out, "Cleared staged cluster changes\n");
    // Node 2 hears of its removal and is alone again, owning everything.
    let ms = wait_settled(&mut a2, 1, Duration::from_secs(20)).await;
    assert_eq!(ms.members[0].name, name(2));
    assert_eq!(
        dev.nodes[0].ok(&["admin", "cluster", "plan"]),
        golden("plan_empty.txt"),
        "nothing left staged"
    );
    let ms = wait_settled(&mut a1, 1, Duration::from_secs(10)).await;
    assert_eq!(ms.members[0].name, name(1));
    // It may join again, and the join commits as any other.
    join_first(&dev, 1).await;
    commit_plan(&mut a1).await;
    wait_settled(&mut a1, 2, Duration::from_secs(30)).await;
}

/// A node that leaves hands everything off, then serves no client requests
/// (riak shuts it down): clients still pointing at it get an error, not
/// acknowledgements its old cluster never sees. Admin commands still work,
/// and once it joins again it serves, every vnode of it answering (none left
/// redirecting to where it used to send them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_left_serves_nothing_until_it_joins_again() {
    let dev = Devrel::start(3);
    let mut a1 = admin(&dev.nodes[0].addr).await;
    join_first(&dev, 1).await;
    join_first(&dev, 2).await;
    commit_plan(&mut a1).await;
    wait_settled(&mut a1, 3, Duration::from_secs(30)).await;
    for i in 0..30 {
        dev.nodes[i % 3].ok(&["add", &i.to_string(), "1"]);
    }
    dev.nodes[0].ok(&["admin", "cluster", "leave", &name(3)]);
    commit_plan(&mut a1).await;
    wait_settled(&mut a1, 2, Duration::from_secs(30)).await;
    let (total, _) = total_ops(&dev.nodes[0].addr).await;
    assert_eq!(total, 90, "every count stayed with the cluster");

    let mut a3 = admin(&dev.nodes[2].addr).await;
    wait_settled(&mut a3, 1, Duration::from_secs(20)).await;
    let left = format!(
        "flavio: error: unavailable: '{}' has left its cluster and serves no requests",
        name(3)
    );
    for args in [&["add", "1", "2"][..], &["ping"], &["stats"]] {
        let out = dev.nodes[2].cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            common::stderr(&out).starts_with(&left),
            "{}",
            common::stderr(&out)
        );
    }
    // Health stays SERVING: probes must not restart it (that would end the
    // refusal), and the operator joins it again once Ready.
    assert!(dev.nodes[2].cli(&["health"]).status.success());
    // riak's refusal, refused by the cluster's state: exit 1, one line.
    let out = dev.nodes[2].cli(&["admin", "cluster", "leave"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        common::stderr(&out).trim_end(),
        format!(
            "flavio: error: refused: Failed: '{}' is the only member",
            name(3)
        )
    );

    // Joined again, it serves, and every vnode answers.
    join_first(&dev, 2).await;
    commit_plan(&mut a1).await;
    wait_settled(&mut a1, 3, Duration::from_secs(30)).await;
    let s = every_vnode_answers(&dev.nodes[2]).await;
    assert_eq!(s["total_ops"], 90, "{s}");
    adds_work(&dev.nodes[2]);
}

/// riak's `down`: the claimant's node dies for good; another member marks
/// it down, takes over as claimant, and the dead node is force-removed, after
/// which the cluster serves every partition again. A live node cannot be
/// marked down, and nothing is planned while a down member stays in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_claimant_is_marked_down_and_force_removed() {
    let mut dev = Devrel::start(3);
    let mut a1 = admin(&dev.nodes[0].addr).await;
    join_first(&dev, 1).await;
    join_first(&dev, 2).await;
    commit_plan(&mut a1).await;
    wait_settled(&mut a1, 3, Duration::from_secs(30)).await;
    for i in 0..30 {
        dev.nodes[i % 3].ok(&["add", &i.to_string(), "1"]);
    }
    let out = dev.nodes[1].cli(&["admin", "down", &name(3)]);
    assert_eq!(out.status.code(), Some(1), "node 3 is up");
    assert!(
        common::stderr(&out).contains("is up"),
        "{}",
        common::stderr(&out)
    );

    // flavio1, the claimant, dies with its disk; a fresh flavio1 comes up
    // on the same address: a cluster of its own, gone for this one.
    let n1 = dev.nodes.remove(0);
    let port = n1.port();
    let home = n1.home.clone();
    n1.kill9();
    let fresh = dev._dir.path().join("dev1-fresh");
    dev.nodes.push(NodeProc::start_named(
        &name(1),
        Some(port),
        &fresh,
        &home,
        &[],
    ));
    let n2 = &dev.nodes[0];
    assert_eq!(
        n2.ok(&["admin", "down", &name(1)]),
        format!("Success: '{}' marked as down\n", name(1))
    );
    let rs = n2.json(&["admin", "ring-status"]);
    assert_eq!(rs["claimant"], name(2), "{rs}");
    // A plan that keeps the down member is refused; removing it is not.
    n2.ok(&["admin", "cluster", "leave", &name(3)]);
    let out = n2.cli(&["admin", "cluster", "plan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("is down"),
        "{}",
        common::stderr(&out)
    );
    n2.ok(&["admin", "cluster", "clear"]);
    n2.ok(&["admin", "cluster", "force-remove", &name(1)]);
    let mut a2 = admin(&n2.addr).await;
    commit_plan(&mut a2).await;
    wait_settled(&mut a2, 2, Duration::from_secs(30)).await;
    every_vnode_answers(n2).await;
    adds_work(&dev.nodes[1]);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// The ring records the data directory each member joined with (its
/// incarnation id, in member-status), and a node started on another
/// member's directory (a copied or swapped volume) refuses to serve as
/// itself, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_refuses_another_members_data_directory() {
    let mut dev = Devrel::start(2);
    let mut a1 = admin(&dev.nodes[0].addr).await;
    join_first(&dev, 1).await;
    commit_plan(&mut a1).await;
    let ms = wait_settled(&mut a1, 2, Duration::from_secs(30)).await;
    let incarnations: BTreeSet<&str> = ms.members.iter().map(|m| m.incarnation.as_str()).collect();
    assert_eq!(incarnations.len(), 2, "{:?}", ms.members);
    assert!(!incarnations.contains(""), "{:?}", ms.members);
    let json = dev.nodes[1].json(&["admin", "member-status"]);
    assert!(json["members"][0]["incarnation"].is_string(), "{json}");

    let (n2, n1) = (dev.nodes.remove(1), dev.nodes.remove(0));
    assert!(n2.terminate().success());
    assert!(n1.terminate().success());
    let copy = dev._dir.path().join("copy-of-dev1");
    copy_dir(&dev._dir.path().join("dev1"), &copy);
    let mut child = common::flavio(dev._dir.path())
        .args(["serve", "--name", &name(2), "--listen"])
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--data-dir")
        .arg(&copy)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node served on another member's directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(!status.success());
    assert!(err.contains("belongs to another member"), "{err}");
}
