//! The `flavio.v1.Admin` service: membership, ring status, transfers, and
//! staged changes. Staging, plan, commit and clear live on the claimant; any
//! other node passes those calls on to it, so the CLI can talk to any node.

use std::sync::Arc;
use std::time::Duration;

use flavio_proto::v1 as pb;
use flavio_proto::v1::admin_server::Admin as AdminApi;
use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::cluster::claimant::{Change, MemberLine, PairCount, Plan, check_location, member_lines};
use crate::ring::claim::{location_short_windows, short_windows};
use crate::rpc::convert::member_state_to_pb;
use crate::rpc::peer::{AdminRpc, Peers};
use crate::vnode::Vnode;

/// Serves operators and `flavio admin`.
pub struct AdminService<V: Vnode> {
    cluster: Cluster<V>,
    /// Admin calls passed on to the claimant, and transfers asked of peers.
    peers: Arc<Peers>,
    /// The node's default N: `ring-status` counts preference lists of it.
    n_val: usize,
    /// The node's cookies, for member-status's digest.
    cookies: Option<Arc<crate::rpc::auth::Cookies>>,
}

impl<V: Vnode> AdminService<V> {
    /// The service over `cluster`, for an application whose default N is
    /// `n_val`.
    pub fn new(cluster: Cluster<V>, peers: Arc<Peers>, n_val: usize) -> Self {
        AdminService {
            cluster,
            peers,
            n_val,
            cookies: None,
        }
    }

    /// Reports a digest of `cookies` in member-status.
    pub fn with_cookies(mut self, cookies: Arc<crate::rpc::auth::Cookies>) -> Self {
        self.cookies = Some(cookies);
        self
    }

    fn claimant(&self) -> Result<Option<AdminRpc>, Status> {
        if self.cluster.is_claimant() {
            return Ok(None);
        }
        let addr = self.cluster.claimant_addr()?;
        Ok(Some(self.peers.admin(&addr)?))
    }
}

fn member_info(l: &MemberLine, addr: &str) -> pb::MemberInfo {
    pb::MemberInfo {
        name: l.name.clone(),
        addr: addr.to_string(),
        state: member_state_to_pb(l.state),
        ring_pct: l.ring_pct,
        pending_pct: l.pending_pct,
        location: l.location.clone().unwrap_or_default(),
        incarnation: l.incarnation.clone().unwrap_or_default(),
    }
}

fn counts(v: &[PairCount]) -> Vec<pb::TransferCount> {
    v.iter()
        .map(|c| pb::TransferCount {
            from: c.from.clone(),
            to: c.to.clone(),
            count: c.count,
        })
        .collect()
}

fn plan_reply(plan: &Plan, addr_of: &dyn Fn(&str) -> String) -> pb::PlanReply {
    pb::PlanReply {
        changes: plan
            .changes
            .iter()
            .map(|c| pb::StagedChange {
                action: c.action().to_string(),
                node: c.node().to_string(),
                new_node: c.new_node().unwrap_or_default().to_string(),
                location: c.location().unwrap_or_default().to_string(),
            })
            .collect(),
        transitions: plan
            .transitions
            .iter()
            .map(|t| pb::Transition {
                members: t
                    .members
                    .iter()
                    .map(|l| member_info(l, &addr_of(&l.name)))
                    .collect(),
                total_transfers: t.transfers.iter().map(|c| c.count).sum(),
                transfers: counts(&t.transfers),
                total_reassigned: t.reassigned.iter().map(|c| c.count).sum(),
                reassigned: counts(&t.reassigned),
                warnings: t.warnings.clone(),
            })
            .collect(),
        warnings: plan.warnings.clone(),
        plan_id: plan.id.clone(),
        ring_version: plan.base_version,
    }
}

fn stage_reply(message: String) -> Response<pb::StageReply> {
    Response::new(pb::StageReply { message })
}

#[tonic::async_trait]
impl<V: Vnode> AdminApi for AdminService<V> {
    async fn member_status(
        &self,
        _req: Request<pb::MemberStatusRequest>,
    ) -> Result<Response<pb::MemberStatusReply>, Status> {
        let snap = self.cluster.ring();
        let ring = &snap.ring;
        let future = (!ring.pending.is_empty()).then(|| ring.future_owners());
        let lines = member_lines(ring, future.as_ref());
        Ok(Response::new(pb::MemberStatusReply {
            members: lines
                .iter()
                .map(|l| member_info(l, ring.addr_of(&l.name).unwrap_or_default()))
                .collect(),
            ring_version: ring.version,
            claimant: ring.claimant.clone(),
            node: self.cluster.me().to_string(),
            unreachable: self.cluster.unreachable(),
            majority: self.cluster.sees_majority(),
            majority_advice: self.cluster.majority_advice(),
            cluster_id: ring.cluster_id.clone(),
            incarnation: self.cluster.incarnation().to_string(),
            cookie_digest: self
                .cookies
                .as_ref()
                .map(|c| c.now().digest())
                .unwrap_or_default(),
        }))
    }

    async fn ring_status(
        &self,
        _req: Request<pb::RingStatusRequest>,
    ) -> Result<Response<pb::RingStatusReply>, Status> {
        let snap = self.cluster.ring();
        let ring = &snap.ring;
        let location_of = |n: &str| ring.members.get(n).and_then(|m| m.location.clone());
        let located = ring.members.values().any(|m| m.location.is_some());
        let unreachable = self.cluster.unreachable();
        let claimant_up =
            ring.claimant == self.cluster.me() || !unreachable.contains(&ring.claimant);
        // Readiness is the claimant's to judge: it is the one that hears from
        // every member.
        let ring_ready = match self.claimant()? {
            None => self.cluster.ring_ready(),
            Some(mut c) => match tokio::time::timeout(
                Duration::from_secs(2),
                c.ring_status(pb::RingStatusRequest {}),
            )
            .await
            {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    r.ring_ready && r.ring_version == ring.version
                }
                _ => false,
            },
        };
        let master = self.cluster.master();
        Ok(Response::new(pb::RingStatusReply {
            claimant: ring.claimant.clone(),
            claimant_up,
            ring_ready,
            ring_version: ring.version,
            pending: ring
                .pending
                .iter()
                .map(|t| pb::PendingTransfer {
                    partition: master.partition_name(t.partition).to_string(),
                    owner: t.from.clone(),
                    next_owner: t.to.clone(),
                    complete: false,
                })
                .collect(),
            unreachable,
            node: self.cluster.me().to_string(),
            n_val: u32::try_from(self.n_val).unwrap_or(u32::MAX),
            preflists: u32::try_from(ring.owners.len()).unwrap_or(u32::MAX),
            owners: ring
                .owners
                .owners()
                .map(|(p, n)| pb::PartitionOwner {
                    partition: master.partition_name(p).to_string(),
                    node: n.to_string(),
                    location: location_of(n).unwrap_or_default(),
                })
                .collect(),
            short_location_preflists: if located {
                u32::try_from(location_short_windows(
                    ring.owners.as_slice(),
                    |o| location_of(o),
                    self.n_val,
                ))
                .unwrap_or(u32::MAX)
            } else {
                0
            },
            cluster_id: ring.cluster_id.clone(),
            short_preflists: u32::try_from(short_windows(ring.owners.as_slice(), self.n_val))
                .unwrap_or(u32::MAX),
        }))
    }

    async fn transfers(
        &self,
        req: Request<pb::TransfersRequest>,
    ) -> Result<Response<pb::TransfersReply>, Status> {
        let master = self.cluster.master();
        let me = self.cluster.me().to_string();
        let mut active: Vec<pb::ActiveTransfer> = self
            .cluster
            .inner_handoffs_active()
            .into_iter()
            .map(|t| pb::ActiveTransfer {
                partition: master.partition_name(t.partition).to_string(),
                from: me.clone(),
                to: t.to,
                items_sent: t.items,
                bytes_sent: t.bytes,
                elapsed_s: t.elapsed.as_secs_f64(),
                items_total: t.total,
                r#type: t.kind.as_str().to_string(),
            })
            .collect();
        let snap = self.cluster.ring();
        let mut unreachable = Vec::new();
        let hinted = self.cluster.pending_hints()?;
        let hints = hinted.len() as u32;
        let mut parts: std::collections::BTreeSet<_> = hinted.into_iter().collect();
        parts.extend(self.cluster.fallbacks());
        let mut waiting: Vec<pb::WaitingHandoff> = Vec::new();
        if !parts.is_empty() {
            waiting.push(pb::WaitingHandoff {
                node: me.clone(),
                partitions: parts.len() as u32,
                hints,
            });
        }
        if !req.get_ref().local_only {
            let others = self.cluster.other_members();
            let asks = others.iter().map(|(n, a)| {
                let peers = &self.peers;
                async move {
                    let r = match peers.admin(a) {
                        Ok(mut c) => tokio::time::timeout(
                            Duration::from_secs(2),
                            c.transfers(pb::TransfersRequest { local_only: true }),
                        )
                        .await
                        .ok()
                        .and_then(Result::ok),
                        Err(_) => None,
                    };
                    (n.clone(), r)
                }
            });
            for (n, r) in futures::future::join_all(asks).await {
                match r {
                    Some(r) => {
                        let r = r.into_inner();
                        active.extend(r.active);
                        waiting.extend(r.waiting);
                    }
                    None => unreachable.push(n),
                }
            }
        }
        Ok(Response::new(pb::TransfersReply {
            active,
            pending: snap.ring.pending.len() as u32,
            unreachable,
            waiting,
        }))
    }

    async fn stage_join(
        &self,
        req: Request<pb::StageJoinRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        let target = req.into_inner().target;
        if target.is_empty() {
            return Err(Status::invalid_argument(
                "join needs the address of a member",
            ));
        }
        Ok(stage_reply(self.cluster.join(&target).await?))
    }

    async fn stage_leave(
        &self,
        req: Request<pb::StageLeaveRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        let mut r = req.into_inner();
        if r.node.is_empty() {
            r.node = self.cluster.me().to_string();
        }
        match self.claimant()? {
            None => Ok(stage_reply(
                self.cluster.stage(Change::Leave(r.node)).await?,
            )),
            Some(mut c) => c.stage_leave(r).await,
        }
    }

    async fn stage_remove(
        &self,
        req: Request<pb::StageRemoveRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        let r = req.into_inner();
        if r.node.is_empty() {
            return Err(Status::invalid_argument("force-remove needs a node name"));
        }
        match self.claimant()? {
            None => Ok(stage_reply(
                self.cluster.stage(Change::ForceRemove(r.node)).await?,
            )),
            Some(mut c) => c.stage_remove(r).await,
        }
    }

    async fn stage_location(
        &self,
        req: Request<pb::StageLocationRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        let mut r = req.into_inner();
        if r.node.is_empty() {
            r.node = self.cluster.me().to_string();
        }
        check_location(&r.location)?;
        match self.claimant()? {
            None => Ok(stage_reply(
                self.cluster
                    .stage(Change::Location {
                        node: r.node,
                        location: r.location,
                    })
                    .await?,
            )),
            Some(mut c) => c.stage_location(r).await,
        }
    }

    async fn down(
        &self,
        req: Request<pb::DownRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        let r = req.into_inner();
        if r.node.is_empty() {
            return Err(Status::invalid_argument("down needs a node name"));
        }
        // The claimant itself being down is the case this exists for: then
        // any member marks it, and the role moves on.
        let claimant_down = self.cluster.ring().ring.claimant == r.node;
        match self.claimant()? {
            Some(mut c) if !claimant_down => c.down(r).await,
            _ => Ok(stage_reply(
                self.cluster.down(&r.node, r.without_majority).await?,
            )),
        }
    }

    async fn stage_replace(
        &self,
        req: Request<pb::StageReplaceRequest>,
    ) -> Result<Response<pb::StageReply>, Status> {
        let r = req.into_inner();
        if r.old_node.is_empty() || r.new_node.is_empty() {
            return Err(Status::invalid_argument(
                "replace needs the old and the new node",
            ));
        }
        match self.claimant()? {
            None => {
                let change = if r.force {
                    Change::ForceReplace {
                        old: r.old_node,
                        new: r.new_node,
                    }
                } else {
                    Change::Replace {
                        old: r.old_node,
                        new: r.new_node,
                    }
                };
                Ok(stage_reply(self.cluster.stage(change).await?))
            }
            Some(mut c) => c.stage_replace(r).await,
        }
    }

    async fn plan(&self, req: Request<pb::PlanRequest>) -> Result<Response<pb::PlanReply>, Status> {
        match self.claimant()? {
            None => {
                let (plan, ring) = self.cluster.plan().await?;
                let addr_of = |n: &str| ring.addr_of(n).unwrap_or_default().to_string();
                // Nothing staged: an empty reply, printed as riak does.
                let reply = plan.map(|p| plan_reply(&p, &addr_of)).unwrap_or_default();
                Ok(Response::new(reply))
            }
            Some(mut c) => c.plan(req.into_inner()).await,
        }
    }

    async fn commit(
        &self,
        req: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitReply>, Status> {
        match self.claimant()? {
            None => {
                let id = req.into_inner().plan_id;
                let ring = self.cluster.commit(Some(&id)).await?;
                Ok(Response::new(pb::CommitReply {
                    message: "Cluster changes committed".into(),
                    ring_version: ring.version,
                }))
            }
            Some(mut c) => c.commit(req.into_inner()).await,
        }
    }

    async fn clear(
        &self,
        req: Request<pb::ClearRequest>,
    ) -> Result<Response<pb::ClearReply>, Status> {
        match self.claimant()? {
            None => {
                self.cluster.clear().await?;
                Ok(Response::new(pb::ClearReply {
                    message: "Cleared staged cluster changes".into(),
                }))
            }
            Some(mut c) => c.clear(req.into_inner()).await,
        }
    }
}
