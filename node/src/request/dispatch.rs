//! Where requests go: the [`Dispatch`] trait names the replicas of a
//! preference list and sends a command to one of them, or a coverage request
//! to the vnode of each partition, wherever they live. A node alone
//! dispatches to its own [`VnodeMaster`]; in a cluster the router sends
//! to the owner's node.
//!
//! A command names its vnode as a [`Replica`] (partition, node, primary or
//! fallback), not as a bare partition, so a request can ask for a partition
//! on a node that does not own it.

use std::sync::Arc;

use crate::ring::{PartitionId, Replica, RingSize, apl};
use crate::vnode::{Replier, Vnode, VnodeMaster};
use crate::{Error, Result};

/// Receives the answers of a coverage request, one call per partition.
pub type CoverageSink<T> = Arc<dyn Fn(PartitionId, Result<T>) + Send + Sync>;

/// What answered for one partition of a coverage request: its primary, or
/// the fallbacks standing in for its down owner (several, when several
/// nodes took commands for it), each with its answer.
pub type Answers<T> = Vec<(Replica, T)>;

/// Sends vnode messages to wherever their partition lives.
pub trait Dispatch<V: Vnode>: Send + Sync + 'static {
    /// Partitions of the ring.
    fn ring_size(&self) -> RingSize;
    /// The decimal ring index of `p`.
    fn partition_name(&self, p: PartitionId) -> Arc<str>;
    /// The node that owns `p` now.
    fn owner(&self, p: PartitionId) -> Arc<str>;
    /// The annotated preference list of `n` replicas starting at partition
    /// `first` ([`apl::annotated`]), as this dispatcher sees the ring and
    /// which nodes are up; with `sloppy` false, the `n` primaries whether
    /// their owners are up or not (a strict quorum).
    fn preflist(&self, first: PartitionId, n: usize, sloppy: bool) -> Result<Vec<Replica>>;
    /// Sends `cmd` to the vnode `to` names. A primary is reached wherever
    /// its partition is owned when the command arrives (ownership may have
    /// moved since the preference list was made).
    fn command(&self, to: &Replica, cmd: V::Command, reply: Replier<V::Reply>);
    /// Sends `req` to the vnode of each of `partitions`: the primary where
    /// its owner is up, else every fallback of it on an up node.
    fn coverage(
        &self,
        partitions: Vec<PartitionId>,
        req: Arc<V::CoverageRequest>,
        sink: CoverageSink<Answers<V::CoverageReply>>,
    );
}

impl<V: Vnode> Dispatch<V> for VnodeMaster<V> {
    fn ring_size(&self) -> RingSize {
        VnodeMaster::ring_size(self)
    }

    fn partition_name(&self, p: PartitionId) -> Arc<str> {
        Arc::clone(VnodeMaster::partition_name(self, p))
    }

    fn owner(&self, _p: PartitionId) -> Arc<str> {
        Arc::clone(self.node())
    }

    fn preflist(&self, first: PartitionId, n: usize, _sloppy: bool) -> Result<Vec<Replica>> {
        // A node alone owns every partition and is always up.
        Ok(apl::primaries(self.ring_size(), first, n)?
            .into_iter()
            .map(|p| Replica::primary(p, Arc::clone(self.node())))
            .collect())
    }

    fn command(&self, to: &Replica, cmd: V::Command, reply: Replier<V::Reply>) {
        if to.node != *self.node() {
            return reply(
                to.partition,
                Err(Error::FailedPrecondition(format!(
                    "{to} asked of {}, a node alone",
                    self.node()
                ))),
            );
        }
        VnodeMaster::command(self, to.partition, cmd, reply);
    }

    fn coverage(
        &self,
        partitions: Vec<PartitionId>,
        req: Arc<V::CoverageRequest>,
        sink: CoverageSink<Answers<V::CoverageReply>>,
    ) {
        for p in partitions {
            let sink = Arc::clone(&sink);
            let me = Replica::primary(p, Arc::clone(self.node()));
            VnodeMaster::coverage(
                self,
                p,
                Arc::clone(&req),
                Box::new(move |p, r| sink(p, r.map(|t| vec![(me, t)]))),
            );
        }
    }
}
