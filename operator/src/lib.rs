//! The FlavioDB operator: a `FlavioCluster` custom resource drives a
//! StatefulSet and the ring's membership, doing what a riak operator did by
//! hand (grow, join, plan, commit; or leave, wait for every handoff, shrink).
//!
//! The crate is split the way the design asks: [`crd`] holds the resource's
//! types and their validation, [`decide`] is the pure orchestration core (no
//! I/O, table-tested) with [`rollout`] (the gated rolling restart) and [`cookie`]
//! (cookie rotation), [`children`] builds the owned objects, [`ring`] reads
//! the cluster through the Admin gRPC API, and [`controller`] is the thin
//! kube-rs shell around them. [`metrics`] and [`leader`] are operability, and [`uninstall`] is
//! what the chart's pre-delete hook runs.

pub mod children;
pub mod controller;
pub mod cookie;
pub mod crd;
pub mod decide;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod ring;
pub mod rollout;
pub mod uninstall;

pub use error::{Error, Result};

/// The field manager of every server-side apply and the controller's name in
/// events and the Lease.
pub const MANAGER: &str = "flavio-operator";
