//! The vnode framework and the gRPC session in-process: commands handled in
//! order, unknown commands answered with an error, state reloaded from the
//! store, and many requests in flight on one session stream.

use std::time::Duration;

use flavio_node::app::{AddOptions, Command, Defaults, Flavio, FlavioVnode, Reply};
use flavio_node::ring::{PartitionId, RingSize};
use flavio_node::rpc::server::{Node, ServeConfig};
use flavio_node::rpc::{Client, Cookie};
use flavio_node::vnode::{Durability, MAX_HELD, Mode, Store, VnodeMaster, Wire};
use flavio_proto::v1 as pb;
use tokio_stream::StreamExt;

fn master(dir: &std::path::Path) -> VnodeMaster<FlavioVnode> {
    let size = RingSize::new(8).expect("size");
    let store = Store::open(dir, size, Durability::Process).expect("store");
    VnodeMaster::start("n1", size, store, size.partitions()).expect("master")
}

#[tokio::test]
async fn commands_to_one_vnode_are_handled_in_order_and_persisted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = master(dir.path());
    let p = PartitionId(3);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..500i64 {
        let tx = tx.clone();
        m.command(
            p,
            Command::Add { a: i, b: 0 },
            Box::new(move |_, r| {
                let _ = tx.send(r);
            }),
        );
    }
    drop(tx);
    let mut got = Vec::new();
    while let Some(r) = rx.recv().await {
        match r.expect("reply") {
            Reply::Sum(s) => got.push(s),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        got,
        (0..500).collect::<Vec<_>>(),
        "replies in command order"
    );
    let count = m
        .with_vnode(p, |v, _| v.ops_count())
        .await
        .expect("vnode running");
    assert_eq!(count, 500);
    m.shutdown().await.expect("shutdown");
    drop(m);

    // A new master on the same directory sees the persisted counts.
    let m = master(dir.path());
    assert_eq!(
        m.with_vnode(p, |v, _| v.ops_count())
            .await
            .expect("running"),
        500
    );
    assert_eq!(
        m.with_vnode(PartitionId(4), |v, _| v.ops_count())
            .await
            .expect("running"),
        0
    );
    m.shutdown().await.expect("shutdown");
}

/// A vnode that holds requests (the moment of an ownership flip) keeps at
/// most MAX_HELD of them: later ones are refused at once as Busy, with
/// nothing applied, and the held ones run in order once it is released.
#[tokio::test]
async fn holding_is_bounded_and_releases_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = master(dir.path());
    let p = PartitionId(2);
    m.control(p, |_, _, mode| *mode = Mode::Holding(Vec::new()))
        .await
        .expect("hold");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sent = MAX_HELD as i64 + 5;
    for i in 0..sent {
        let tx = tx.clone();
        m.command(
            p,
            Command::Add { a: i, b: 0 },
            Box::new(move |_, r| {
                let _ = tx.send((i, r));
            }),
        );
    }
    for expect in MAX_HELD as i64..sent {
        let (i, r) = rx.recv().await.expect("a refusal");
        assert_eq!(i, expect, "only those beyond the bound are answered");
        let e = r.expect_err("refused");
        assert!(matches!(e, flavio_node::Error::Busy(_)), "{e}");
    }
    let held = m
        .with_vnode(p, |v, _| v.ops_count())
        .await
        .expect("running");
    assert_eq!(held, 0, "nothing applied while holding");
    m.control(p, |_, _, mode| *mode = Mode::Normal)
        .await
        .expect("release");
    for expect in 0..MAX_HELD as i64 {
        let (i, r) = rx.recv().await.expect("a reply");
        assert_eq!(i, expect, "held requests run in order");
        assert!(matches!(r, Ok(Reply::Sum(s)) if s == i));
    }
    let count = m
        .with_vnode(p, |v, _| v.ops_count())
        .await
        .expect("running");
    assert_eq!(count, MAX_HELD as u64, "every held one applied once");
    m.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn unknown_commands_get_an_error_reply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = master(dir.path());
    let err = m
        .encoded_command(PartitionId(0), &[0xff, 1, 2])
        .await
        .expect_err("unknown command");
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");
    // A known encoded command works and its reply decodes.
    let mut buf = Vec::new();
    Command::Add { a: 40, b: 2 }.encode(&mut buf);
    let reply = m
        .encoded_command(PartitionId(0), &buf)
        .await
        .expect("reply");
    assert_eq!(Reply::decode(&reply).expect("decodes"), Reply::Sum(42));
    // A partition outside the ring is an error too, not silence.
    let err = m
        .sync_command(PartitionId(8), Command::Ping)
        .await
        .expect_err("no such vnode");
    assert!(err.to_string().contains('8'), "{err}");
    m.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn add_quorum_and_stats_coverage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = master(dir.path());
    let app = Flavio::new(std::sync::Arc::new(m.clone()), Defaults::default());
    let r = app.add(2, 5, AddOptions::default()).await.expect("add");
    assert_eq!(r.sum, 7);
    assert_eq!(r.replicas.len(), 3);
    let r = app
        .add(
            1,
            1,
            AddOptions {
                n: Some(5),
                w: Some(1),
                timeout: Some(Duration::from_secs(1)),
                sloppy: None,
            },
        )
        .await
        .expect("add");
    assert!(!r.replicas.is_empty());
    let err = app
        .add(i64::MIN, -1, AddOptions::default())
        .await
        .expect_err("overflow");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = app
        .add(
            1,
            1,
            AddOptions {
                n: Some(9),
                ..AddOptions::default()
            },
        )
        .await
        .expect_err("n beyond ring");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // Let the W=1 add's other replies land before counting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = app.stats(None).await;
    assert!(!s.partial);
    assert_eq!(s.vnodes.len(), 8);
    assert_eq!(s.total_ops, 3 + 5);
    m.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn session_answers_many_requests_in_flight_by_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cookie = Cookie::new("session-test").expect("cookie");
    let node = Node::start(ServeConfig {
        name: "n1".into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        ring_size: RingSize::DEFAULT,
        defaults: Defaults::default(),
        durability: Durability::Process,
        cookie: cookie.clone().into(),
        advertise: None,
        handoff_concurrency: 2,
        detect_after: std::time::Duration::from_secs(1),
        metrics_listen: None,
        tls: None,
        limits: flavio_node::rpc::server::Limits::default(),
    })
    .await
    .expect("node");
    let addr = node.local_addr().expect("addr").to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(node.serve(async {
        let _ = stop_rx.await;
    }));

    let client = Client::connect(&addr, cookie).await.expect("connect");
    let n = 2000u64;
    let reqs = (0..n).map(|id| {
        use pb::session_request::Op;
        let op = match id % 4 {
            0 => Op::Ping(pb::PingRequest {}),
            3 if id % 100 == 3 => Op::Stats(pb::StatsRequest { timeout_ms: None }),
            _ => Op::Add(pb::AddRequest {
                a: id as i64,
                b: if id == 1 { i64::MAX } else { 1 },
                ..Default::default()
            }),
        };
        pb::SessionRequest { id, op: Some(op) }
    });
    let mut replies = client
        .raw()
        .session(tokio_stream::iter(reqs))
        .await
        .expect("session")
        .into_inner();
    let mut seen = vec![false; n as usize];
    let mut adds = 0u64;
    while let Some(r) = replies.next().await {
        let r = r.expect("reply");
        assert!(!seen[r.id as usize], "duplicate id {}", r.id);
        seen[r.id as usize] = true;
        use pb::session_reply::Result as R;
        match r.result.expect("result") {
            R::Ping(p) => assert!(!p.partition.is_empty()),
            R::Add(a) => {
                assert_eq!(a.sum, r.id as i64 + 1);
                assert_eq!(a.replicas.len(), 3);
                adds += 1;
            }
            R::Stats(s) => assert_eq!(s.vnodes.len(), 64),
            R::Error(e) => {
                assert_eq!(r.id, 1, "only the overflowing add fails: {e:?}");
                assert_eq!(e.code, tonic::Code::InvalidArgument as i32);
            }
        }
        if seen.iter().all(|s| *s) {
            break;
        }
    }
    assert!(seen.iter().all(|s| *s), "every request answered");
    let stats = client
        .stats(pb::StatsRequest { timeout_ms: None })
        .await
        .expect("stats");
    assert_eq!(stats.total_ops, 3 * adds);

    // Without the cookie the same node refuses.
    let intruder = Client::connect(&addr, Cookie::new("nope").expect("cookie"))
        .await
        .expect("connect");
    let err = intruder.ping().await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("stops")
        .expect("joins")
        .expect("clean stop");
}
