//! Where requests go: the [`Dispatch`] trait sends a command or a coverage
//! request to the vnode of a partition, wherever it lives. A node alone
//! dispatches to its own [`VnodeMaster`]; in a cluster the router sends
//! to the owner's node.

use std::sync::Arc;

use crate::Result;
use crate::ring::{PartitionId, RingSize};
use crate::vnode::{Replier, Vnode, VnodeMaster};

/// Receives the answers of a coverage request, one call per partition.
pub type CoverageSink<T> = Arc<dyn Fn(PartitionId, Result<T>) + Send + Sync>;

/// Sends vnode messages to wherever their partition lives.
pub trait Dispatch<V: Vnode>: Send + Sync + 'static {
    /// Partitions of the ring.
    fn ring_size(&self) -> RingSize;
    /// The decimal ring index of `p`.
    fn partition_name(&self, p: PartitionId) -> Arc<str>;
    /// The node that owns `p` now.
    fn owner(&self, p: PartitionId) -> Arc<str>;
    /// Sends `cmd` to the vnode of `p`.
    fn command(&self, p: PartitionId, cmd: V::Command, reply: Replier<V::Reply>);
    /// Sends `req` to the vnode of each of `partitions`.
    fn coverage(
        &self,
        partitions: Vec<PartitionId>,
        req: Arc<V::CoverageRequest>,
        sink: CoverageSink<V::CoverageReply>,
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

    fn command(&self, p: PartitionId, cmd: V::Command, reply: Replier<V::Reply>) {
        VnodeMaster::command(self, p, cmd, reply);
    }

    fn coverage(
        &self,
        partitions: Vec<PartitionId>,
        req: Arc<V::CoverageRequest>,
        sink: CoverageSink<V::CoverageReply>,
    ) {
        for p in partitions {
            let sink = Arc::clone(&sink);
            VnodeMaster::coverage(self, p, Arc::clone(&req), Box::new(move |p, r| sink(p, r)));
        }
    }
}
