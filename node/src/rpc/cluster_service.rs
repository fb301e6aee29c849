//! The `flavio.v1.Cluster` service: what nodes ask of each other.

use std::sync::{Arc, Mutex};

use flavio_proto::v1 as pb;
use flavio_proto::v1::cluster_server::Cluster as ClusterApi;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::router::error_to_pb;
use crate::cluster::{Cluster, handoff};
use crate::ring::PartitionId;
use crate::vnode::Vnode;

/// Serves other nodes of the cluster.
pub struct ClusterService<V: Vnode> {
    cluster: Cluster<V>,
}

impl<V: Vnode> ClusterService<V> {
    /// The service over `cluster`.
    pub fn new(cluster: Cluster<V>) -> Self {
        ClusterService { cluster }
    }
}

type Tx = mpsc::UnboundedSender<Result<pb::PeerReply, Status>>;

fn answer(tx: &Tx, id: u64, r: crate::Result<Vec<u8>>) {
    let result = match r {
        Ok(b) => pb::peer_reply::Result::Reply(b),
        Err(e) => pb::peer_reply::Result::Error(error_to_pb(&e)),
    };
    let _ = tx.send(Ok(pb::PeerReply {
        id,
        result: Some(result),
    }));
}

fn handle<V: Vnode>(cluster: &Cluster<V>, tx: &Tx, req: pb::PeerRequest) {
    let id = req.id;
    let snap = cluster.ring();
    let size = snap.ring.size.get();
    if !req.cluster_id.is_empty() && req.cluster_id != snap.ring.cluster_id {
        // A node that left (or never joined) must not serve a cluster's
        // partitions: the sender's ring is stale and it will look again.
        let e = crate::Error::Moved(format!("{} is not a member of that cluster", cluster.me()));
        return match req.kind {
            Some(pb::peer_request::Kind::Coverage(_)) => {
                let items = req
                    .partitions
                    .iter()
                    .map(|p| pb::CoverageItem {
                        partition: *p,
                        result: Some(pb::coverage_item::Result::Error(error_to_pb(&e))),
                    })
                    .collect();
                let _ = tx.send(Ok(pb::PeerReply {
                    id,
                    result: Some(pb::peer_reply::Result::Coverage(pb::CoverageReplies {
                        items,
                    })),
                }));
            }
            _ => answer(tx, id, Err(e)),
        };
    }
    match req.kind {
        Some(pb::peer_request::Kind::Command(cmd)) => {
            if req.partition >= size {
                let e = crate::Error::InvalidPartition(req.partition.to_string());
                return answer(tx, id, Err(e));
            }
            let p = PartitionId(req.partition);
            let tx = tx.clone();
            let reply = Box::new(move |r| answer(&tx, id, r));
            if req.handoff_session != 0 {
                handoff::forwarded_command(cluster, p, req.handoff_session, &cmd, reply);
            } else {
                cluster.router().command_encoded(p, cmd, req.hops, reply);
            }
        }
        Some(pb::peer_request::Kind::Coverage(cov)) => {
            let parts: Vec<PartitionId> = req
                .partitions
                .iter()
                .filter(|p| **p < size)
                .map(|p| PartitionId(*p))
                .collect();
            if parts.is_empty() {
                let _ = tx.send(Ok(pb::PeerReply {
                    id,
                    result: Some(pb::peer_reply::Result::Coverage(pb::CoverageReplies {
                        items: Vec::new(),
                    })),
                }));
                return;
            }
            let want = parts.len();
            let acc: Arc<Mutex<Vec<pb::CoverageItem>>> =
                Arc::new(Mutex::new(Vec::with_capacity(want)));
            let tx = tx.clone();
            cluster.router().coverage_encoded(
                parts,
                cov,
                req.hops,
                Arc::new(move |p, r| {
                    let item = pb::CoverageItem {
                        partition: p.0,
                        result: Some(match r {
                            Ok(b) => pb::coverage_item::Result::Reply(b),
                            Err(e) => pb::coverage_item::Result::Error(error_to_pb(&e)),
                        }),
                    };
                    let mut items = acc
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    items.push(item);
                    if items.len() == want {
                        let items = std::mem::take(&mut *items);
                        let _ = tx.send(Ok(pb::PeerReply {
                            id,
                            result: Some(pb::peer_reply::Result::Coverage(pb::CoverageReplies {
                                items,
                            })),
                        }));
                    }
                }),
            );
        }
        None => answer(
            tx,
            id,
            Err(crate::Error::InvalidArgument(
                "peer request without a kind".into(),
            )),
        ),
    }
}

#[tonic::async_trait]
impl<V: Vnode> ClusterApi for ClusterService<V> {
    async fn gossip(
        &self,
        req: Request<pb::GossipRequest>,
    ) -> Result<Response<pb::GossipReply>, Status> {
        Ok(Response::new(
            self.cluster.handle_gossip(req.into_inner()).await?,
        ))
    }

    async fn join(&self, req: Request<pb::JoinRequest>) -> Result<Response<pb::JoinReply>, Status> {
        let ring = self.cluster.handle_join(req.into_inner()).await?;
        Ok(Response::new(pb::JoinReply {
            ring: Some(pb::RingState::from(&ring)),
        }))
    }

    async fn handoff_complete(
        &self,
        req: Request<pb::HandoffCompleteRequest>,
    ) -> Result<Response<pb::HandoffCompleteReply>, Status> {
        let r = req.into_inner();
        if r.partition >= self.cluster.ring().ring.size.get() {
            return Err(Status::invalid_argument("partition beyond the ring"));
        }
        let version = self
            .cluster
            .complete_transfer(PartitionId(r.partition), &r.from, &r.to)
            .await?;
        let ring = self.cluster.ring();
        Ok(Response::new(pb::HandoffCompleteReply {
            version,
            ring: Some(pb::RingState::from(&ring.ring)),
        }))
    }

    type ChannelStream = UnboundedReceiverStream<Result<pb::PeerReply, Status>>;

    async fn channel(
        &self,
        req: Request<Streaming<pb::PeerRequest>>,
    ) -> Result<Response<Self::ChannelStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(r)) => handle(&cluster, &tx, r),
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "peer stream ended with an error");
                        break;
                    }
                }
            }
        });
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    type HandoffStream = ReceiverStream<Result<pb::HandoffAck, Status>>;

    async fn handoff(
        &self,
        req: Request<Streaming<pb::HandoffMessage>>,
    ) -> Result<Response<Self::HandoffStream>, Status> {
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(handoff::receive(self.cluster.clone(), inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
