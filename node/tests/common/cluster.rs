//! A real multi-process cluster for tests: nodes on loopback, the admin
//! client, and waiting for the ring to settle.

use std::time::{Duration, Instant};

use flavio_node::rpc::client::CookieLayer;
use flavio_proto::v1 as pb;
use flavio_proto::v1::admin_client::AdminClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::NodeProc;

pub type Admin = AdminClient<InterceptedService<Channel, CookieLayer>>;

pub async fn admin(addr: &str) -> Admin {
    flavio_node::rpc::client::admin(addr, super::credentials())
        .await
        .expect("connect")
}

pub fn golden(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/admin")
        .join(file);
    std::fs::read_to_string(path).expect("golden file")
}

pub fn name(i: usize) -> String {
    format!("flavio{i}@127.0.0.1")
}

pub struct Devrel {
    pub nodes: Vec<NodeProc>,
    pub _dir: tempfile::TempDir,
}

impl Devrel {
    pub fn start(n: usize) -> Devrel {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = (1..=n)
            .map(|i| {
                NodeProc::start_named(
                    &name(i),
                    None,
                    &dir.path().join(format!("dev{i}")),
                    dir.path(),
                    &[],
                )
            })
            .collect();
        Devrel { nodes, _dir: dir }
    }

    pub fn add_node(&mut self, i: usize) {
        let node = NodeProc::start_named(
            &name(i),
            None,
            &self._dir.path().join(format!("dev{i}")),
            self._dir.path(),
            &[],
        );
        self.nodes.push(node);
    }
}

pub async fn wait_settled(a: &mut Admin, members: usize, limit: Duration) -> pb::MemberStatusReply {
    let t0 = Instant::now();
    loop {
        let rs = a
            .ring_status(pb::RingStatusRequest {})
            .await
            .expect("ring status")
            .into_inner();
        let ms = a
            .member_status(pb::MemberStatusRequest {})
            .await
            .expect("member status")
            .into_inner();
        let valid = ms
            .members
            .iter()
            .filter(|m| m.state == pb::MemberState::Valid as i32)
            .count();
        if rs.ring_ready && rs.pending.is_empty() && valid == members && ms.members.len() == members
        {
            return ms;
        }
        assert!(
            t0.elapsed() < limit,
            "not settled after {limit:?}: ready={} pending={} members={:?}",
            rs.ring_ready,
            rs.pending.len(),
            ms.members
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn commit_plan(a: &mut Admin) -> pb::PlanReply {
    let t0 = Instant::now();
    loop {
        match a.plan(pb::PlanRequest {}).await {
            Ok(plan) => {
                let plan = plan.into_inner();
                a.commit(pb::CommitRequest {
                    plan_id: plan.plan_id.clone(),
                })
                .await
                .expect("commit");
                return plan;
            }
            Err(s)
                if s.code() == tonic::Code::FailedPrecondition
                    && t0.elapsed() < Duration::from_secs(20) =>
            {
                // Not converged yet: riak asks to try again, so do we.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("plan failed: {s}"),
        }
    }
}

/// Stages the join of the node at index `i` to the first node's cluster.
pub async fn join_first(dev: &Devrel, i: usize) {
    admin(&dev.nodes[i].addr)
        .await
        .stage_join(pb::StageJoinRequest {
            target: dev.nodes[0].addr.clone(),
        })
        .await
        .expect("join");
}
