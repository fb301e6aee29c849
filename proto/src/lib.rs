//! FlavioDB's wire contract: the `flavio.v1` protobuf package and the tonic
//! client and server code generated from it.
//!
//! The `.proto` files under `proto/flavio/v1/` are the source of truth; this
//! crate only compiles them. Domain types live in `flavio-node`, which converts
//! at its `rpc` edge, so generated types never leak into the ring or vnode code.

#![allow(missing_docs)] // generated code carries the .proto comments, not rustdoc for every item

/// Package `flavio.v1`.
pub mod v1 {
    tonic::include_proto!("flavio.v1");
}
