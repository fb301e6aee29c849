//! FlavioDB's Kubernetes test environment, seen from Rust.
//!
//! The environment is a real Kubernetes 1.20 control plane (etcd, `kube-apiserver`,
//! `kube-controller-manager`, built from Debian's source package by `build.sh` and
//! started by the `testenv` script) plus a *kubelet stand-in*: the binary
//! `flavio-kubelet` from this crate, which registers one Node and runs every Pod
//! bound to it as plain host processes on its own loopback address.
//!
//! This crate holds:
//! - [`standin`]: the kubelet stand-in (node registration, binding, pod workers);
//! - [`harness`]: helpers for integration tests (start or attach to the environment,
//!   hand out a [`kube::Client`] and throw-away namespaces, fault injection);
//! - [`exec`]: running a command "in" a pod's container, with its environment;
//! - small pure pieces the stand-in is built from: [`expand`] (the kubelet's
//!   `$(VAR)` expansion), [`paths`] (mount-path rewriting), [`images`] (the
//!   image-to-host-binary map).
//!
//! What it leaves out: containers, images, networking beyond loopback addresses,
//! resource limits, the kubelet's streaming API (`kubectl exec`/`attach`; see
//! [`exec`] instead), and
//! scheduling decisions (there is one node; every matching pod is bound to it).

pub mod error;
pub mod exec;
pub mod expand;
pub mod harness;
pub mod images;
pub mod paths;
pub mod proxy;
pub mod standin;

pub use error::{Error, Result};
