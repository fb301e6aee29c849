//! Conversions between generated `flavio.v1` messages and domain types, in
//! one place.

use std::time::Duration;

use flavio_proto::v1 as pb;

use crate::app::{AddOptions, AddResult, Pong, Stats};
use crate::{Error, Result};

impl From<Pong> for pb::PingReply {
    fn from(p: Pong) -> Self {
        pb::PingReply {
            partition: p.partition.to_string(),
            node: p.node.to_string(),
        }
    }
}

impl From<AddResult> for pb::AddReply {
    fn from(r: AddResult) -> Self {
        pb::AddReply {
            sum: r.sum,
            replicas: r
                .replicas
                .into_iter()
                .map(|x| pb::AddReplica {
                    sum: x.sum,
                    partition: x.partition.to_string(),
                    node: x.node.to_string(),
                })
                .collect(),
        }
    }
}

impl From<Stats> for pb::StatsReply {
    fn from(s: Stats) -> Self {
        pb::StatsReply {
            vnodes: s
                .vnodes
                .into_iter()
                .map(|v| pb::VnodeStats {
                    partition: v.partition.to_string(),
                    node: v.node.to_string(),
                    ops_count: v.ops_count,
                })
                .collect(),
            total_ops: s.total_ops,
            partial: s.partial,
        }
    }
}

fn positive(what: &str, v: Option<u32>) -> Result<Option<u32>> {
    match v {
        Some(0) => Err(Error::InvalidArgument(format!("{what} must be at least 1"))),
        v => Ok(v),
    }
}

/// The per-call options of an `AddRequest`.
pub(crate) fn add_options(r: &pb::AddRequest) -> Result<AddOptions> {
    Ok(AddOptions {
        n: positive("n", r.n)?.map(|v| v as usize),
        w: positive("w", r.w)?.map(|v| v as usize),
        timeout: positive("timeout_ms", r.timeout_ms)?
            .map(|ms| Duration::from_millis(u64::from(ms))),
    })
}

/// The timeout of a `StatsRequest`.
pub(crate) fn stats_timeout(r: &pb::StatsRequest) -> Result<Option<Duration>> {
    Ok(positive("timeout_ms", r.timeout_ms)?.map(|ms| Duration::from_millis(u64::from(ms))))
}
