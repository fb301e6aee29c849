//! The cluster: staged membership, ring agreement, routing between nodes and
//! ownership handoff, as riak_core does them.
//!
//! - [`state`]: the versioned ring state the nodes agree on.
//! - [`claimant`]: staging, plan and commit, and the ring's own next steps;
//!   pure functions of a ring state.

pub mod claimant;
pub mod state;

pub use claimant::{Change, Plan, Staging};
pub use state::{Member, MemberState, RingState, Transfer};
