//! The `flavio.v1.Cluster` service: what nodes ask of each other. A thin
//! adapter: every call is converted to the cluster layer's transport types
//! (`cluster::transport`) and served by the cluster.

use flavio_proto::v1 as pb;
use flavio_proto::v1::cluster_server::Cluster as ClusterApi;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::cluster::state::Transfer;
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

fn handle<V: Vnode>(cluster: &Cluster<V>, tx: &Tx, req: pb::PeerRequest) {
    let id = req.id;
    let tx = tx.clone();
    let reply = Box::new(move |r| {
        let _ = tx.send(Ok(convert::peer_reply_to_pb(id, r)));
    });
    match convert::peer_call(req) {
        Ok(call) => cluster.serve_peer(call, reply),
        Err(e) => reply(Err(e)),
    }
}

#[tonic::async_trait]
impl<V: Vnode> ClusterApi for ClusterService<V> {
    async fn gossip(
        &self,
        req: Request<pb::GossipRequest>,
    ) -> Result<Response<pb::GossipReply>, Status> {
        let msg = convert::gossip(req.into_inner())?;
        let reply = self.cluster.handle_gossip(msg).await?;
        Ok(Response::new(pb::GossipReply::from(&reply)))
    }

    async fn join(&self, req: Request<pb::JoinRequest>) -> Result<Response<pb::JoinReply>, Status> {
        let ring = self.cluster.handle_join(req.into_inner().into()).await?;
        Ok(Response::new(pb::JoinReply {
            ring: Some(pb::RingState::from(&ring)),
        }))
    }

    async fn handoff_complete(
        &self,
        req: Request<pb::HandoffCompleteRequest>,
    ) -> Result<Response<pb::HandoffCompleteReply>, Status> {
        let r = req.into_inner();
        let t = Transfer {
            partition: PartitionId(r.partition),
            from: r.from,
            to: r.to,
        };
        let ring = self.cluster.complete_transfer(&t).await?;
        Ok(Response::new(pb::HandoffCompleteReply {
            version: ring.version,
            ring: Some(pb::RingState::from(&ring)),
        }))
    }

    async fn hint(&self, req: Request<pb::HintRequest>) -> Result<Response<pb::HintReply>, Status> {
        handoff::receive_hint(&self.cluster, req.into_inner().into()).await?;
        Ok(Response::new(pb::HintReply {}))
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

    type HandoffStream = futures::stream::BoxStream<'static, Result<pb::HandoffAck, Status>>;

    async fn handoff(
        &self,
        req: Request<Streaming<pb::HandoffMessage>>,
    ) -> Result<Response<Self::HandoffStream>, Status> {
        let inbound = req
            .into_inner()
            .map(|m| match m {
                Ok(m) => convert::handoff_message(m),
                Err(s) => Err(crate::Error::Rpc(s.message().to_string())),
            })
            .boxed();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(handoff::receive(self.cluster.clone(), inbound, tx));
        let acks = ReceiverStream::new(rx)
            .map(|a| a.map(pb::HandoffAck::from).map_err(Status::from))
            .boxed();
        Ok(Response::new(acks))
    }
}
