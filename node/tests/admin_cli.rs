//! The real `flavio admin` binary against a stand-in Admin service: the
//! arguments reach the RPC as intended, the cookie is sent, replies print as
//! text and JSON, and refusals print one line and exit non-zero. The node's
//! own Admin service is tested on its side; this tests the CLI's half.

mod common;

use std::sync::Mutex;

use common::{COOKIE, flavio, stderr};
use flavio_node::rpc::Cookie;
use flavio_proto::v1 as pb;
use flavio_proto::v1::admin_server::{Admin, AdminServer};
use tonic::{Request, Response, Status};

fn n(i: u32) -> String {
    format!("flavio{i}@127.0.0.1")
}

fn member(i: u32, state: pb::MemberState, ring: f64) -> pb::MemberInfo {
    pb::MemberInfo {
        name: n(i),
        addr: String::new(),
        state: state as i32,
        ring_pct: ring,
        pending_pct: None,
        location: String::new(),
        incarnation: String::new(),
    }
}

/// Answers like a one-node cluster with three joins staged, and records the
/// last stage request so the test can see what the CLI sent.
#[derive(Default)]
struct Fake {
    last: Mutex<String>,
}

impl Fake {
    fn staged(&self, what: String) -> Result<Response<pb::StageReply>, Status> {
        let message = format!("Success: staged {what}");
        if let Ok(mut last) = self.last.lock() {
            last.clone_from(&message);
        }
        Ok(Response::new(pb::StageReply { message }))
    }
}

#[tonic::async_trait]
impl Admin for Fake {
    async fn member_status(
        &self,
        _: Request<pb::MemberStatusRequest>,
    ) -> Result<Response<pb::MemberStatusReply>, Status> {
        use pb::MemberState::{Joining, Valid};
        Ok(Response::new(pb::MemberStatusReply {
            cluster_id: String::new(),
            incarnation: String::new(),
            cookie_digest: String::new(),

            members: vec![
                member(2, Joining, 0.0),
                member(3, Joining, 0.0),
                member(4, Joining, 0.0),
                member(1, Valid, 100.0),
            ],
            ring_version: 3,
            claimant: n(1),
            node: n(1),
            unreachable: vec![],
            majority: true,
            majority_advice: String::new(),
        }))
    }

    async fn ring_status(
        &self,
        _: Request<pb::RingStatusRequest>,
    ) -> Result<Response<pb::RingStatusReply>, Status> {
        Ok(Response::new(pb::RingStatusReply {
            owners: vec![],
            cluster_id: String::new(),

            claimant: n(1),
            claimant_up: true,
            ring_ready: true,
            ..Default::default()
        }))
    }

    async fn transfers(
        &self,
        req: Request<pb::TransfersRequest>,
    ) -> Result<Response<pb::TransfersReply>, Status> {
        if req.get_ref().local_only {
            return Err(Status::invalid_argument("the CLI asks for every node"));
        }
        Ok(Response::new(pb::TransfersReply::default()))
    }

    async fn stage_join(
        &self,
        req: Request<pb::StageJoinRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        self.staged(format!("join request to {}", req.get_ref().target))
    }

    async fn stage_leave(
        &self,
        req: Request<pb::StageLeaveRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        self.staged(format!("leave request for {:?}", req.get_ref().node))
    }

    async fn down(
        &self,
        req: Request<pb::DownRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        self.staged(format!("down {}", req.get_ref().node))
    }

    async fn stage_remove(
        &self,
        req: Request<pb::StageRemoveRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        if req.get_ref().node == n(1) {
            return Err(Status::failed_precondition(
                "the claimant cannot be removed",
            ));
        }
        self.staged(format!("remove request for {}", req.get_ref().node))
    }

    async fn stage_location(
        &self,
        req: Request<pb::StageLocationRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        let r = req.get_ref();
        self.staged(format!("location of {} to {}", r.node, r.location))
    }

    async fn stage_replace(
        &self,
        req: Request<pb::StageReplaceRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        let r = req.get_ref();
        self.staged(format!(
            "replace {} with {} force={}",
            r.old_node, r.new_node, r.force
        ))
    }

    async fn plan(&self, _: Request<pb::PlanRequest>) -> Result<Response<pb::PlanReply>, Status> {
        Ok(Response::new(pb::PlanReply {
            changes: vec![pb::StagedChange {
                action: "join".into(),
                node: n(2),
                new_node: String::new(),
                location: String::new(),
            }],
            transitions: vec![pb::Transition {
                members: vec![member(1, pb::MemberState::Valid, 100.0)],
                ..Default::default()
            }],
            plan_id: "p1".into(),
            ..Default::default()
        }))
    }

    async fn commit(
        &self,
        req: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitReply>, Status> {
        if req.get_ref().plan_id == "stale" {
            return Err(Status::failed_precondition(
                "the plan changed since it was shown; run `flavio admin cluster plan` again",
            ));
        }
        Ok(Response::new(pb::CommitReply {
            message: "Cluster changes committed".into(),
            ring_version: 4,
        }))
    }

    async fn clear(
        &self,
        _: Request<pb::ClearRequest>,
    ) -> Result<Response<pb::ClearReply>, Status> {
        Ok(Response::new(pb::ClearReply {
            message: "Cleared staged cluster changes".into(),
        }))
    }
}

/// Serves the fake on a free loopback port with the test cookie.
fn start_fake(rt: &tokio::runtime::Runtime) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let cookie: std::sync::Arc<flavio_node::rpc::auth::Cookies> =
        Cookie::new(COOKIE).expect("cookie").into();
    let svc = AdminServer::with_interceptor(Fake::default(), move |req| cookie.check(req));
    rt.spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
    });
    addr
}

#[test]
fn admin_commands_against_a_stand_in_admin_service() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let addr = start_fake(&rt);
    let home = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        flavio(home.path())
            .arg("admin")
            .args(args)
            .args(["--node", &addr])
            .output()
            .expect("run flavio")
    };
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).expect("utf-8")
    };

    // The tutorial's member-status after the joins, byte for byte.
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/admin/member_status_joining.txt"
    );
    let expected = std::fs::read_to_string(golden).expect("golden file");
    assert_eq!(ok(&["member-status"]), expected);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["member-status", "--output", "json"])).expect("json");
    assert_eq!(json["members"][0]["state"], "joining");
    assert_eq!(json["members"][0]["pending_pct"], serde_json::Value::Null);
    assert_eq!(json["claimant"], n(1));

    assert!(ok(&["ring-status"]).contains("Ring Ready: true"));
    assert_eq!(ok(&["transfers"]), "No transfers active\n");

    // Stage commands print the node's message; arguments arrive as given.
    assert_eq!(
        ok(&["cluster", "join", "127.0.0.1:10017"]),
        "Success: staged join request to 127.0.0.1:10017\n"
    );
    assert_eq!(
        ok(&["cluster", "leave"]),
        "Success: staged leave request for \"\"\n"
    );
    assert_eq!(
        ok(&["cluster", "leave", &n(4)]),
        format!("Success: staged leave request for \"{}\"\n", n(4))
    );
    assert_eq!(
        ok(&["cluster", "force-replace", &n(4), &n(5)]),
        format!(
            "Success: staged replace {} with {} force=true\n",
            n(4),
            n(5)
        )
    );
    let replace: serde_json::Value = serde_json::from_str(&ok(&[
        "cluster",
        "replace",
        &n(4),
        &n(5),
        "--output",
        "json",
    ]))
    .expect("json");
    assert_eq!(
        replace["message"],
        format!("Success: staged replace {} with {} force=false", n(4), n(5))
    );

    let plan = ok(&["cluster", "plan"]);
    assert!(
        plan.contains("join           'flavio2@127.0.0.1'"),
        "{plan}"
    );
    assert!(plan.contains("After cluster transition 1/1"), "{plan}");
    let plan: serde_json::Value =
        serde_json::from_str(&ok(&["cluster", "plan", "--output", "json"])).expect("json");
    assert_eq!(plan["plan_id"], "p1");
    assert_eq!(ok(&["cluster", "commit"]), "Cluster changes committed\n");
    assert_eq!(
        ok(&["cluster", "clear"]),
        "Cleared staged cluster changes\n"
    );
    // `admin down NODE` reaches the node with NODE.
    assert_eq!(
        ok(&["down", &n(3)]),
        format!("Success: staged down {}\n", n(3))
    );

    // Refusals: one line on stderr, exit 1.
    let out = run(&["cluster", "commit", "--plan-id", "stale"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "flavio: error: refused: the plan changed since it was shown; run `flavio admin cluster plan` again\n"
    );
    let out = run(&["cluster", "force-remove", &n(1)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "flavio: error: refused: the claimant cannot be removed\n"
    );

    // A wrong cookie is refused by the node.
    let out = flavio(home.path())
        .env("FLAVIO_COOKIE", "not-the-cookie")
        .args(["admin", "member-status", "--node", &addr])
        .output()
        .expect("run flavio");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2_without_contacting_a_node() {
    let home = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = flavio(home.path())
            .args(args)
            // Nothing listens here: a usage error must come first.
            .args(["--node", "127.0.0.1:1"])
            .output()
            .expect("run flavio");
        (out.status.code(), stderr(&out))
    };
    let (code, err) = run(&["admin", "cluster", "join", "flavio1@127.0.0.1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("host:port"), "{err}");
    let (code, err) = run(&["admin", "cluster", "replace", "only-one"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["admin", "cluster", "force-remove", ""]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, err) = run(&["admin", "member-status"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot reach node 127.0.0.1:1"), "{err}");
}

#[test]
fn devrel_refuses_bad_sizes_before_starting_anything() {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join("dev");
    for args in [
        vec!["--nodes", "0"],
        vec!["--nodes", "17"],
        vec!["--nodes", "5", "--base-port", "65500"],
        vec!["--nodes", "2", "--ring-size", "50"],
    ] {
        let out = common::refused_output(
            flavio(home.path())
                .arg("devrel")
                .args(&args)
                .arg("--dir")
                .arg(&dir),
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    assert!(
        !dir.exists(),
        "a refused devrel must not create its directory"
    );
}
