//! The flavio application from the riak_core tutorial, written only against
//! the framework's public surface ([`crate::vnode`], [`crate::request`],
//! [`crate::ring`]):
//!
//! - `ping` hashes the current time and asks that one vnode for its partition;
//! - `add A B` is a quorum request to the N primaries of hash(("add", A, B)):
//!   each vnode replies with the sum and its partition, and counts the
//!   operation in its persisted `ops_count`;
//! - `stats` is a coverage request for every vnode's `ops_count`: the
//!   primaries', and the fallbacks' for partitions whose owner is down.
//!
//! What it leaves out: the app keeps no data besides the counters, so its
//! handoff moves one number per vnode.

mod vnode;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use vnode::{Command, CoverageReply, CoverageRequest, FlavioVnode, Reply};

use crate::request::{Dispatch, coverage, quorum};
use crate::ring::{self, KeyHash, PartitionId, Role, hash_key};
use crate::{Error, Result};

/// Per-node defaults for requests that do not say otherwise.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// Replicas of an `add` (N).
    pub n_val: usize,
    /// Replies an `add` waits for (W).
    pub w_val: usize,
    /// How long an `add` waits for W replies.
    pub add_timeout: Duration,
    /// How long `stats` waits for every vnode.
    pub stats_timeout: Duration,
    /// Whether an `add` uses fallbacks for down primaries (a sloppy
    /// quorum, riak's default) or only the primaries.
    pub sloppy: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            n_val: 3,
            w_val: 3,
            add_timeout: Duration::from_secs(5),
            stats_timeout: Duration::from_secs(5),
            sloppy: true,
        }
    }
}

/// Per-call overrides of [`Defaults`] for `add`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddOptions {
    /// N, or the default.
    pub n: Option<usize>,
    /// W, or the default.
    pub w: Option<usize>,
    /// Timeout, or the default.
    pub timeout: Option<Duration>,
    /// Sloppy quorum, or the default.
    pub sloppy: Option<bool>,
}

/// A vnode's answer to `ping`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    /// Decimal ring index of the vnode.
    pub partition: Arc<str>,
    /// Node that hosts it.
    pub node: Arc<str>,
}

/// One replica's answer to `add`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The sum that replica computed.
    pub sum: i64,
    /// Decimal ring index of the replica's vnode.
    pub partition: Arc<str>,
    /// Node that hosts it.
    pub node: Arc<str>,
    /// Whether it was one of the key's primaries or a fallback for one.
    pub role: Role,
}

/// The result of `add`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddResult {
    /// `a + b`.
    pub sum: i64,
    /// Every reply received, in arrival order.
    pub replicas: Vec<Replica>,
}

/// One vnode's line of `stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VnodeStats {
    /// Decimal ring index of the vnode.
    pub partition: Arc<str>,
    /// Node that hosts it.
    pub node: Arc<str>,
    /// Whether it is the partition's primary or a fallback for its down owner.
    pub role: Role,
    /// Operations the vnode has counted.
    pub ops_count: u64,
}

/// The result of `stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Every vnode that answered, in ring order (a partition's fallbacks
    /// together, when its owner is down).
    pub vnodes: Vec<VnodeStats>,
    /// Sum of their counts.
    pub total_ops: u64,
    /// True when some vnode did not answer.
    pub partial: bool,
    /// The partitions no vnode answered for, with why.
    pub missing: Vec<(Arc<str>, String)>,
}

/// The flavio application on one node.
#[derive(Clone)]
pub struct Flavio {
    dispatch: Arc<dyn Dispatch<FlavioVnode>>,
    defaults: Defaults,
}

/// The key `add` hashes: the command name and both operands, so the same
/// `a b` always lands on the same partitions.
pub fn add_key(a: i64, b: i64) -> KeyHash {
    let mut key = [0u8; 19];
    key[..3].copy_from_slice(b"add");
    key[3..11].copy_from_slice(&a.to_be_bytes());
    key[11..].copy_from_slice(&b.to_be_bytes());
    hash_key(&key)
}

fn ping_key(now: SystemTime) -> KeyHash {
    let nanos = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut key = [0u8; 20];
    key[..4].copy_from_slice(b"ping");
    key[4..].copy_from_slice(&nanos.to_be_bytes());
    hash_key(&key)
}

impl Flavio {
    /// The app over the vnodes that `dispatch` reaches.
    pub fn new(dispatch: Arc<dyn Dispatch<FlavioVnode>>, defaults: Defaults) -> Self {
        Flavio { dispatch, defaults }
    }

    /// The annotated preference list of `hash`: the replicas of its
    /// partition and the `n - 1` after it, with fallbacks for down owners
    /// when `sloppy`.
    pub fn preflist(&self, hash: &KeyHash, n: usize, sloppy: bool) -> Result<Vec<ring::Replica>> {
        let size = self.dispatch.ring_size();
        self.dispatch.preflist(size.partition_of(hash), n, sloppy)
    }

    /// Pings the vnode that the current time hashes to.
    pub async fn ping(&self) -> Result<Pong> {
        let to = self
            .preflist(&ping_key(SystemTime::now()), 1, true)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Rpc("no node up serves the ping's partition".into()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.dispatch.command(
            &to,
            Command::Ping,
            Box::new(move |_, r| {
                let _ = tx.send(r);
            }),
        );
        match rx.await.map_err(|_| Error::ShuttingDown)?? {
            Reply::Pong => Ok(Pong {
                partition: self.dispatch.partition_name(to.partition),
                node: to.node,
            }),
            other => Err(Error::Rpc(format!("unexpected reply to ping: {other:?}"))),
        }
    }

    /// Adds `a + b` on N replicas and waits for W of them.
    pub async fn add(&self, a: i64, b: i64, opts: AddOptions) -> Result<AddResult> {
        let sum = a.checked_add(b).ok_or(Error::Overflow { a, b })?;
        let n = opts.n.unwrap_or(self.defaults.n_val);
        let w = opts.w.unwrap_or(self.defaults.w_val);
        let timeout = opts.timeout.unwrap_or(self.defaults.add_timeout);
        let sloppy = opts.sloppy.unwrap_or(self.defaults.sloppy);
        let preflist = self.preflist(&add_key(a, b), n, sloppy)?;
        let replies = quorum::run(self.dispatch.as_ref(), &preflist, w, timeout, |_| {
            Command::Add { a, b }
        })
        .await?;
        let mut replicas = Vec::with_capacity(replies.len());
        for (to, r) in replies {
            match r {
                Reply::Sum(s) => replicas.push(Replica {
                    sum: s,
                    partition: self.dispatch.partition_name(to.partition),
                    node: to.node,
                    role: to.role,
                }),
                other => return Err(Error::Rpc(format!("unexpected reply to add: {other:?}"))),
            }
        }
        Ok(AddResult { sum, replicas })
    }

    /// Asks every vnode for its operation count.
    pub async fn stats(&self, timeout: Option<Duration>) -> Stats {
        let timeout = timeout.unwrap_or(self.defaults.stats_timeout);
        let partitions: Vec<PartitionId> = self.dispatch.ring_size().partitions().collect();
        let cov = coverage::run(
            self.dispatch.as_ref(),
            partitions,
            CoverageRequest::Stats,
            timeout,
        )
        .await;
        let partial = cov.partial();
        let mut missing: Vec<(PartitionId, String)> = cov
            .errors
            .iter()
            .map(|(p, e)| (*p, e.to_string()))
            .chain(
                cov.missing
                    .iter()
                    .map(|p| (*p, "no answer in time".to_string())),
            )
            .collect();
        missing.sort_by_key(|(p, _)| *p);
        let missing = missing
            .into_iter()
            .map(|(p, why)| (self.dispatch.partition_name(p), why))
            .collect();
        let vnodes: Vec<VnodeStats> = cov
            .replies
            .into_iter()
            .flat_map(|(_, answers)| answers)
            .map(|(who, CoverageReply::OpsCount(ops_count))| VnodeStats {
                partition: self.dispatch.partition_name(who.partition),
                node: who.node,
                role: who.role,
                ops_count,
            })
            .collect();
        let total_ops = vnodes.iter().map(|v| v.ops_count).sum();
        Stats {
            vnodes,
            total_ops,
            partial,
            missing,
        }
    }
}
