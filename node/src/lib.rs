//! FlavioDB node: a riak_core-style framework and the flavio application on top.
//!
//! The framework (what riak_core gives) and the application (what flavio adds)
//! stay apart so a reader can tell them apart:
//!
//! - [`ring`]: the consistent-hash ring: SHA-1 keyspace, partitions, claim,
//!   preference lists. Pure and synchronous.
//! - [`vnode`]: the [`vnode::Vnode`] trait, one actor per partition, the vnode
//!   master that routes to them, and the storage that persists their state.
//! - [`request`]: quorum ("op FSM") and coverage requests over vnodes.
//! - [`app`]: the flavio commands (`ping`, `add`, `stats`), written only against
//!   the framework's public surface.
//! - [`rpc`]: the tonic services and the client, the cookie interceptor.
//! - [`cli`]: the `flavio` command line.
//!
//! Clustering (membership, gossip, handoff) is not here yet: a node owns every
//! partition of its ring.

pub mod app;
pub mod cli;
pub mod cluster;
pub mod error;
pub mod fuzz;
pub mod metrics;
pub mod request;
pub mod ring;
pub mod rpc;
pub mod sync;
pub mod vnode;

pub use error::{Error, Result};
