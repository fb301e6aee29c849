//! Requests that span vnodes: riak_core's "op FSM" (a quorum request to the N
//! vnodes of a preference list, done after W replies) and "coverage FSM" (one
//! request to every vnode, results merged).
//!
//! Each has a pure state machine ([`quorum::Quorum`], [`coverage::Coverage`])
//! that decides when the request is done, tested without a runtime, and a thin
//! async driver that sends the messages and feeds replies and the timeout in.
//! Which vnodes a request reaches (primaries, or fallbacks for down owners)
//! is the [`Dispatch`]er's business: it knows the ring and which nodes are
//! up. Left out: read repair, and coverage plans that pick among replicas.

pub mod coverage;
pub mod dispatch;
pub mod quorum;

pub use dispatch::{Answers, CoverageSink, Dispatch};
