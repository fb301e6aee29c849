//! The cluster: staged membership, ring agreement, routing between nodes and
//! ownership handoff, as riak_core does them.
//!
//! - [`state`]: the versioned ring state the nodes agree on.
//! - [`claimant`]: staging, plan and commit, and the ring's own next steps;
//!   pure functions of a ring state.
//! - [`manager`]: the node's part: ring persistence, gossip, join, the
//!   claimant's operations, and keeping local vnodes in step with ownership.
//! - [`router`]: sends vnode traffic to owners, here or over the peer stream.
//! - [`transport`]: the seam to other nodes: what the cluster asks of a peer
//!   and what it answers, in domain types (gRPC lives in `rpc`).
//! - [`handoff`]: moves a vnode to its next owner without losing a command
//!   (`sender`, `receiver`, `redirect`, and the pure state machine `fsm`).
//! - [`local`]: which vnodes a node keeps and why (primary, incoming,
//!   handing off); the pure rule both startup and every ring change apply.
//! - [`view`]: the current ring, shared cheaply.
//! - [`watcher`]: the failure detector: which peers answer heartbeats.

pub mod claimant;
pub mod handoff;
pub mod local;
pub mod majority;
pub mod manager;
pub mod router;
pub mod state;
pub mod transport;
pub mod view;
pub mod watcher;

pub use manager::{Cluster, ClusterConfig};

pub use claimant::{Change, Plan, Staging};
pub use state::{Member, MemberState, RingState, Transfer};
