//! The gRPC edge: tonic services, the client, the cookie check, the
//! conversions between generated `flavio.v1` types and domain types, and the
//! gRPC implementation of the cluster's transport ([`peer::Peers`]).
//!
//! Generated types stay here; the ring, the cluster, vnodes and app never see
//! them.
//! The health service (`grpc.health.v1`) is served without a cookie so
//! probes need no secret; it reveals nothing but liveness.

pub mod admin_service;
pub mod auth;
pub mod client;
pub mod cluster_service;
pub mod convert;
pub mod net;
pub mod peer;
pub mod pki;
pub mod server;
pub mod tls;
pub mod watch;

pub use auth::Cookie;
pub use client::{Client, Credentials};
