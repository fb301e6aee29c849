//! Connections to other nodes: the gRPC [`Transport`] of the cluster layer.
//!
//! Vnode traffic between two nodes rides one long-lived `Cluster.Channel`
//! stream per peer (like Erlang's distribution channel): requests carry ids,
//! replies come back tagged with them, in any order. One task per peer owns
//! the stream; callers hand it a request and a callback and return at once.
//! When the stream breaks, every request in flight fails and the next one
//! reconnects. Unary calls (gossip, join, handoff completion) and handoff
//! streams use a lazily connected channel per peer, which tonic reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flavio_proto::v1 as pb;
use flavio_proto::v1::admin_client::AdminClient;
use flavio_proto::v1::cluster_client::ClusterClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use futures::StreamExt;
use futures::future::BoxFuture;

use super::auth::Cookies;
use super::client::{CookieLayer, Credentials, endpoint, source_chain};
use super::convert;
use super::net;
use super::tls::ClientTls;
use crate::cluster::state::{RingState, Transfer};
use crate::cluster::transport::{
    Gossip, GossipReply, HandoffLink, HandoffMessage, HandoffStart, Hint, JoinRequest, MemberView,
    PeerCall, Transport,
};
use crate::{Error, Result};

/// What a peer answered to one request on the stream, in wire form.
type PeerResult = Result<pb::peer_reply::Result>;
/// Receives a peer's answer in wire form.
type PeerCallback = Box<dyn FnOnce(PeerResult) + Send>;

/// A cluster client with the cookie attached.
pub type ClusterRpc = ClusterClient<InterceptedService<Channel, CookieLayer>>;
/// An admin client with the cookie attached.
pub type AdminRpc = AdminClient<InterceptedService<Channel, CookieLayer>>;

struct Outgoing {
    req: pb::PeerRequest,
    cb: PeerCallback,
}

struct Link {
    tx: mpsc::UnboundedSender<Outgoing>,
    channel: Channel,
}

/// Every peer this node talks to, by address.
pub struct Peers {
    cookie: Arc<Cookies>,
    tls: Option<ClientTls>,
    links: Mutex<HashMap<String, Arc<Link>>>,
    /// The address connections to peers leave from, when the node listens
    /// on one address: peers (and firewall rules) then see each node by
    /// its own address, also when several nodes share a host's loopback
    /// (127.0.0.2, 127.0.0.3, ...; see `deploy/faults`).
    local: Option<std::net::IpAddr>,
}

/// How long after a failed connection new requests fail at once, instead of
/// each waiting for its own connect timeout.
const FAIL_FAST: Duration = Duration::from_millis(300);

impl Peers {
    /// No connections yet; they open on first use.
    pub fn new(credentials: impl Into<Credentials>) -> Peers {
        let Credentials { cookie, tls } = credentials.into();
        Peers {
            cookie,
            tls,
            links: Mutex::new(HashMap::new()),
            local: None,
        }
    }

    /// Connections leave from `ip` (ignored when unspecified, `0.0.0.0`).
    pub fn leaving_from(mut self, ip: std::net::IpAddr) -> Peers {
        self.local = (!ip.is_unspecified()).then_some(ip);
        self
    }

    fn link(&self, addr: &str) -> Result<Arc<Link>> {
        let mut links = self
            .links
            .lock()
            .map_err(|_| Error::Rpc("peer table poisoned".into()))?;
        if let Some(l) = links.get(addr) {
            return Ok(Arc::clone(l));
        }
        let channel = net::lazy(
            endpoint(addr)?.timeout(Duration::from_secs(10)),
            self.tls.as_ref(),
            self.local,
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            tx,
            channel: channel.clone(),
        });
        tokio::spawn(run_link(
            addr.to_string(),
            ClusterClient::with_interceptor(channel, CookieLayer::new(Arc::clone(&self.cookie))),
            rx,
        ));
        links.insert(addr.to_string(), Arc::clone(&link));
        Ok(link)
    }

    /// Sends one request on the peer's multiplexed stream.
    fn send_pb(&self, addr: &str, req: pb::PeerRequest, cb: PeerCallback) {
        match self.link(addr) {
            Ok(link) => {
                if let Err(mpsc::error::SendError(out)) = link.tx.send(Outgoing { req, cb }) {
                    (out.cb)(Err(Error::ShuttingDown));
                }
            }
            Err(e) => cb(Err(e)),
        }
    }

    /// A client for the peer's Cluster service (unary calls, handoff streams).
    pub fn cluster(&self, addr: &str) -> Result<ClusterRpc> {
        let link = self.link(addr)?;
        Ok(ClusterClient::with_interceptor(
            link.channel.clone(),
            CookieLayer::new(Arc::clone(&self.cookie)),
        ))
    }

    /// A client for the peer's Admin service.
    pub fn admin(&self, addr: &str) -> Result<AdminRpc> {
        let link = self.link(addr)?;
        Ok(AdminClient::with_interceptor(
            link.channel.clone(),
            CookieLayer::new(Arc::clone(&self.cookie)),
        ))
    }
}

/// A failed call, as the cluster layer's error: conditions it branches on
/// keep their variant ([`Error::from_status`]); a peer that cannot be reached
/// says why, down to the transport's cause.
fn call_failed(s: &tonic::Status) -> Error {
    match s.code() {
        tonic::Code::Unavailable
        | tonic::Code::Unknown
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Cancelled => Error::Rpc(match std::error::Error::source(s) {
            Some(cause) => format!("{}: {}", s.message(), source_chain(cause)),
            None => s.message().to_string(),
        }),
        _ => Error::from_status(s),
    }
}

impl Transport for Peers {
    fn send(&self, addr: &str, call: PeerCall, reply: crate::cluster::transport::PeerCallback) {
        self.send_pb(
            addr,
            pb::PeerRequest::from(call),
            Box::new(move |r| reply(r.and_then(convert::peer_answer))),
        );
    }

    fn gossip(&self, addr: &str, msg: Gossip) -> BoxFuture<'static, Result<GossipReply>> {
        let client = self.cluster(addr);
        Box::pin(async move {
            let reply = client?
                .gossip(pb::GossipRequest::from(&msg))
                .await
                .map_err(|s| call_failed(&s))?;
            convert::gossip_reply(reply.into_inner())
        })
    }

    fn join(&self, addr: &str, req: JoinRequest) -> BoxFuture<'static, Result<RingState>> {
        let client = self.cluster(addr);
        Box::pin(async move {
            let reply = client?
                .join(pb::JoinRequest::from(req))
                .await
                .map_err(|s| call_failed(&s))?;
            convert::join_reply(reply.into_inner())
        })
    }

    fn complete_transfer(
        &self,
        addr: &str,
        t: Transfer,
    ) -> BoxFuture<'static, Result<Option<RingState>>> {
        let client = self.cluster(addr);
        Box::pin(async move {
            let reply = client?
                .handoff_complete(pb::HandoffCompleteRequest {
                    partition: t.partition.0,
                    from: t.from,
                    to: t.to,
                })
                .await
                .map_err(|s| call_failed(&s))?;
            reply.into_inner().ring.map(RingState::try_from).transpose()
        })
    }

    fn members(&self, addr: &str) -> BoxFuture<'static, Result<MemberView>> {
        let client = self.admin(addr);
        Box::pin(async move {
            let reply = client?
                .member_status(pb::MemberStatusRequest {})
                .await
                .map_err(|s| call_failed(&s))?
                .into_inner();
            Ok(MemberView {
                members: reply.members.into_iter().map(|m| m.name).collect(),
                unreachable: reply.unreachable,
            })
        })
    }

    fn handoff(&self, addr: &str, start: HandoffStart) -> BoxFuture<'static, Result<HandoffLink>> {
        let client = self.cluster(addr);
        Box::pin(async move {
            let mut client = client?;
            let (tx, rx) = mpsc::channel::<HandoffMessage>(64);
            tx.send(HandoffMessage::Start(start))
                .await
                .map_err(|_| Error::Rpc("handoff stream closed".into()))?;
            let outbound = ReceiverStream::new(rx).map(pb::HandoffMessage::from);
            let acks = client
                .handoff(outbound)
                .await
                .map_err(|s| call_failed(&s))?
                .into_inner();
            let acks = acks
                .map(|a| match a {
                    Ok(a) => convert::handoff_ack(a),
                    Err(s) => Err(call_failed(&s)),
                })
                .boxed();
            Ok(HandoffLink { tx, acks })
        })
    }

    fn hint(&self, addr: &str, hint: Hint) -> BoxFuture<'static, Result<()>> {
        let client = self.cluster(addr);
        Box::pin(async move {
            client?
                .hint(pb::HintRequest::from(hint))
                .await
                .map_err(|s| call_failed(&s))?;
            Ok(())
        })
    }
}

fn lost(addr: &str, why: &str) -> Error {
    Error::Rpc(format!("connection to {addr} lost: {why}"))
}

/// Owns the multiplexed stream to one peer for the life of the node.
async fn run_link(addr: String, mut client: ClusterRpc, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut failed_at: Option<Instant> = None;
    // Wait for traffic before connecting: idle peers cost nothing.
    while let Some(first) = rx.recv().await {
        if failed_at.is_some_and(|t| t.elapsed() < FAIL_FAST) {
            (first.cb)(Err(lost(&addr, "recently unreachable")));
            continue;
        }
        let (stream_tx, stream_rx) = mpsc::channel::<pb::PeerRequest>(4096);
        let mut pending: HashMap<u64, PeerCallback> = HashMap::new();
        let mut next_id: u64 = 1;
        let mut queue = vec![first];
        // Send the first request before awaiting the response headers: the
        // server answers headers only once the stream carries something.
        for out in queue.drain(..) {
            let id = next_id;
            next_id += 1;
            let mut req = out.req;
            req.id = id;
            pending.insert(id, out.cb);
            let _ = stream_tx.try_send(req);
        }
        let mut replies = match client.channel(ReceiverStream::new(stream_rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let why = source_chain(&status);
                tracing::debug!(%addr, %why, "peer stream failed to open");
                failed_at = Some(Instant::now());
                for (_, cb) in pending.drain() {
                    cb(Err(lost(&addr, &why)));
                }
                continue;
            }
        };
        let why = loop {
            tokio::select! {
                out = rx.recv() => {
                    let Some(out) = out else { break "node stopping".to_string() };
                    let id = next_id;
                    next_id += 1;
                    let mut req = out.req;
                    req.id = id;
                    pending.insert(id, out.cb);
                    if stream_tx.send(req).await.is_err() {
                        break "stream closed".to_string();
                    }
                }
                reply = replies.message() => match reply {
                    Ok(Some(r)) => {
                        if let Some(cb) = pending.remove(&r.id) {
                            cb(r.result.ok_or_else(|| Error::Rpc(format!("empty reply from {addr}"))));
                        }
                    }
                    Ok(None) => break "peer closed the stream".to_string(),
                    Err(status) => break source_chain(&status),
                },
            }
        };
        tracing::debug!(%addr, %why, in_flight = pending.len(), "peer stream ended");
        failed_at = Some(Instant::now());
        for (_, cb) in pending.drain() {
            cb(Err(lost(&addr, &why)));
        }
    }
}
