//! The transport seam: everything the cluster layer asks of another node goes
//! through [`Transport`], in domain types, and everything a node answers is a
//! method of [`Cluster`](super::Cluster) taking the same types (`serve_peer`,
//! `handle_gossip`, `handle_join`, `complete_transfer`, `handoff::receive`).
//!
//! The gRPC implementation (`rpc::peer::Peers`) maps these to the
//! `flavio.v1.Cluster` service; a test can implement it in process and run
//! whole nodes without sockets. The cluster layer never names a wire type.
//!
//! What a transport promises: a call either reaches the node at `addr` and
//! returns its answer, or fails with an [`Error`](crate::Error) that says so
//! (typed: `Moved`, `Busy`, `FailedPrecondition`, `PermissionDenied`, and
//! `Rpc` for an unreachable peer or a cut stream). Commands on the peer stream
//! may be answered in any order. Left out: ordering between different calls,
//! retries (the callers decide), and authentication (the gRPC transport checks
//! the cookie; an in-process one has nothing to check).
//!
//! [`RingCodec`] is the persisted form of the ring, kept beside the transport
//! because the gRPC build persists the ring as its wire message.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use super::state::{RingState, Transfer};
use crate::Result;
use crate::ring::PartitionId;

/// A request on the long-lived peer stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerCall {
    /// An encoded command for the vnode of `partition`.
    Command {
        /// The vnode's partition.
        partition: PartitionId,
        /// The encoded command.
        cmd: Vec<u8>,
        /// Times the request was forwarded already.
        hops: u32,
        /// The sender's cluster; empty from senders that do not say.
        cluster_id: String,
        /// Non-zero for a copy forwarded by a handing-off vnode: only the
        /// receiving copy of that handoff session may apply it.
        session: u64,
        /// For the receiving node's fallback vnode of `partition`, standing
        /// in for a down owner (never forwarded).
        fallback: bool,
    },
    /// An encoded coverage request for each of `partitions`.
    Coverage {
        /// The partitions asked.
        partitions: Vec<PartitionId>,
        /// The encoded request.
        req: Vec<u8>,
        /// Times the request was forwarded already.
        hops: u32,
        /// The sender's cluster; empty from senders that do not say.
        cluster_id: String,
        /// For the receiving node's fallback vnodes of `partitions` (never
        /// forwarded): it answers for those it holds, and only those.
        fallback: bool,
    },
    /// The failure detector's heartbeat (see `cluster::watcher`): the
    /// answer proves the peer is reachable; `stopping` says the sender is
    /// shutting down and should count as down from now on.
    Heartbeat {
        /// The sending node.
        from: String,
        /// The sender is stopping cleanly.
        stopping: bool,
        /// The sender's cluster; a node of another cluster refuses it.
        cluster_id: String,
    },
}

/// A peer's answer to a [`PeerCall`].
#[derive(Debug)]
pub enum PeerAnswer {
    /// The encoded reply to a command.
    Reply(Vec<u8>),
    /// One answer per partition of a coverage request, in any order.
    Coverage(Vec<(PartitionId, Result<Vec<u8>>)>),
    /// The answer to a heartbeat: whether the answering node is stopping.
    Heartbeat {
        /// The answering node is stopping cleanly.
        stopping: bool,
    },
}

/// Receives a peer's answer (or why there is none).
pub type PeerCallback = Box<dyn FnOnce(Result<PeerAnswer>) + Send>;

/// A gossip push: the sender's ring.
#[derive(Clone, Debug)]
pub struct Gossip {
    /// The sending node.
    pub from: String,
    /// Its ring.
    pub ring: RingState,
}

/// The answer to a [`Gossip`].
#[derive(Clone, Debug)]
pub struct GossipReply {
    /// The answering node's cluster; empty from nodes that do not say.
    pub cluster_id: String,
    /// The version of its ring (after adopting the pushed one, if it did).
    pub version: u64,
    /// Its ring (the join of the pushed one and its own), when that differs
    /// from the pushed one and is of the same cluster.
    pub ring: Option<RingState>,
}

/// What a node says of its cluster when asked (`Transport::members`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberView {
    /// The members it knows of (not removed), by name.
    pub members: Vec<String>,
    /// The active members its failure detector sees as down.
    pub unreachable: Vec<String>,
}

/// A node asking to join the cluster of the member it asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    /// The joining node's name.
    pub node: String,
    /// Its address.
    pub addr: String,
    /// Its ring size (must be the cluster's).
    pub ring_size: u32,
    /// Its data directory's incarnation id.
    pub incarnation: String,
}

/// Opens a handoff stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffStart {
    /// The partition handed off.
    pub partition: PartitionId,
    /// The sending node.
    pub from: String,
    /// The receiving node.
    pub to: String,
    /// This attempt's session (forwarded copies carry it).
    pub session: u64,
    /// The sender's ring size.
    pub ring_size: u32,
}

/// A hinted handoff: data a fallback vnode took for a down owner, sealed
/// under an id, for the partition's owner to merge exactly once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// The partition.
    pub partition: PartitionId,
    /// The hint's id: the receiver merges each id once.
    pub id: u64,
    /// The fallback's node.
    pub from: String,
    /// The sender's cluster.
    pub cluster_id: String,
    /// The sender's ring size.
    pub ring_size: u32,
    /// The vnode's items, as its handoff fold made them.
    pub items: Vec<Vec<u8>>,
}

/// What flows from the sender of a handoff to its receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandoffMessage {
    /// First, and only first.
    Start(HandoffStart),
    /// One item of the vnode's state.
    Item(Vec<u8>),
    /// Last: how many items were sent.
    Finish {
        /// Items sent.
        items: u64,
        /// Ids of the hints merged into the sent copy (see
        /// `handoff::hinted`): merged, for the receiver, from then on.
        merged_hints: Vec<u64>,
    },
}

/// What the receiver of a handoff answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffAck {
    /// The receiving copy is empty and ready.
    Started,
    /// This many items are durable.
    Finished(u64),
}

/// The sender's end of an open handoff stream ([`HandoffMessage::Start`]
/// already sent).
pub struct HandoffLink {
    /// Items and the finish go here.
    pub tx: mpsc::Sender<HandoffMessage>,
    /// The receiver's acknowledgements, or why the stream broke.
    pub acks: BoxStream<'static, Result<HandoffAck>>,
}

/// The receiver's view of a handoff stream: messages, or why the stream broke.
pub type HandoffInbound = BoxStream<'static, Result<HandoffMessage>>;

/// How the cluster layer reaches other nodes. See the module docs.
pub trait Transport: Send + Sync + 'static {
    /// Sends `call` on the multiplexed stream to the node at `addr`; `reply`
    /// gets its answer. Returns at once.
    fn send(&self, addr: &str, call: PeerCall, reply: PeerCallback);

    /// Pushes this node's ring to the node at `addr`.
    fn gossip(&self, addr: &str, msg: Gossip) -> BoxFuture<'static, Result<GossipReply>>;

    /// Asks the member at `addr` to let a node join; returns the ring with the
    /// node joining.
    fn join(&self, addr: &str, req: JoinRequest) -> BoxFuture<'static, Result<RingState>>;

    /// Asks the claimant at `addr` to flip ownership for the completed
    /// transfer `t`; returns its ring afterwards, when it sends one.
    fn complete_transfer(
        &self,
        addr: &str,
        t: Transfer,
    ) -> BoxFuture<'static, Result<Option<RingState>>>;

    /// The members the node at `addr` knows of, and which of them its
    /// failure detector sees as down.
    fn members(&self, addr: &str) -> BoxFuture<'static, Result<MemberView>>;

    /// Opens a handoff stream to the node at `addr`, sending `start` first.
    fn handoff(&self, addr: &str, start: HandoffStart) -> BoxFuture<'static, Result<HandoffLink>>;

    /// Delivers a hinted handoff to the owner at `addr`; `Ok` once it is
    /// merged (now or before) and durable there.
    fn hint(&self, addr: &str, hint: Hint) -> BoxFuture<'static, Result<()>>;
}

/// The persisted form of a ring.
pub trait RingCodec: Send + Sync + 'static {
    /// Bytes to persist.
    fn encode(&self, ring: &RingState) -> Vec<u8>;
    /// The ring `bytes` hold; an error names what is corrupt.
    fn decode(&self, bytes: &[u8]) -> Result<RingState>;
}
