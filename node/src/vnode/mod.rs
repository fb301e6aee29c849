//! Virtual nodes: the unit of work, ownership and handoff, as in riak_core.
//!
//! A *vnode* owns one partition of the ring. The framework runs each vnode as
//! one actor (a tokio task with a mailbox), so commands to a vnode are handled
//! one at a time, in arrival order, with no locks in application code. The
//! [`VnodeMaster`] starts the actors and routes messages to them by partition.
//!
//! The [`Vnode`] trait is the boundary between framework and application,
//! shaped after riak_core's `riak_core_vnode` behaviour:
//!
//! | riak_core callback                  | here                              |
//! |-------------------------------------|-----------------------------------|
//! | `init/1`                            | [`Vnode::init`]                   |
//! | `handle_command/3`                  | [`Vnode::handle_command`]         |
//! | `handle_coverage/4`                 | [`Vnode::handle_coverage`]        |
//! | `handle_handoff_command` + fold     | [`Vnode::handoff_items`]          |
//! | `encode_handoff_item/2`             | (items are already bytes)         |
//! | `handle_handoff_data/2`             | [`Vnode::handle_handoff_data`]    |
//! | `is_empty/1`                        | [`Vnode::is_empty`]               |
//! | `delete/1`                          | [`Vnode::delete`]                 |
//!
//! State is persisted through the [`VnodeCtx`] a callback receives: writes it
//! stages there are made durable by the [`storage::Store`] before the reply to
//! that command is released, so an acknowledged command survives a crash.
//!
//! Left out here: who owns which partition (the ring's claim and, later, the
//! cluster layer) and moving vnodes between nodes (handoff drives the
//! callbacks above but lives in its own module).

mod actor;
mod master;
pub mod storage;

use std::sync::Arc;

pub use actor::{Forwarder, MAX_HELD, Mode, Redirector};
pub use master::VnodeMaster;
pub use storage::{Durability, Store, Write};

use crate::Result;
use crate::ring::PartitionId;

/// Where a reply goes. It runs on the vnode's task (or the store's writer
/// thread, for commands that wrote), so it must be quick and never block:
/// send on a channel and return.
pub type Replier<T> = Box<dyn FnOnce(PartitionId, Result<T>) + Send>;

/// Encoding of an application's messages for travel between nodes.
///
/// Decoding something the application does not know must fail with
/// [`crate::Error::UnknownCommand`] (for commands), never be ignored.
pub trait Wire: Sized {
    /// Appends the encoding of `self` to `buf`.
    fn encode(&self, buf: &mut Vec<u8>);
    /// Decodes one value.
    fn decode(bytes: &[u8]) -> Result<Self>;
}

/// What a vnode callback may see and do besides its own state.
#[derive(Debug)]
pub struct VnodeCtx {
    partition: PartitionId,
    index: Arc<str>,
    node: Arc<str>,
    writes: Vec<Write>,
}

impl VnodeCtx {
    pub(crate) fn new(partition: PartitionId, index: Arc<str>, node: Arc<str>) -> Self {
        VnodeCtx {
            partition,
            index,
            node,
            writes: Vec::new(),
        }
    }

    /// This vnode's partition (its ordinal on the ring).
    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    /// This vnode's ring index as a decimal string, the name users see.
    pub fn index(&self) -> &Arc<str> {
        &self.index
    }

    /// The name of the node this vnode runs on.
    pub fn node(&self) -> &Arc<str> {
        &self.node
    }

    /// Stages `key = value` in this vnode's persisted items.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        // Commands handled in one wake-up share a store job; a key they all
        // overwrite (a counter) needs only its last value written.
        if let Some(Write::Put(k, v)) = self.writes.last_mut()
            && *k == key
        {
            *v = value;
            return;
        }
        self.writes.push(Write::Put(key, value));
    }

    /// Stages the removal of `key`.
    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.writes.push(Write::Delete(key.into()));
    }

    /// Stages the removal of every item of this vnode.
    pub fn remove_all(&mut self) {
        self.writes.push(Write::DeleteAll);
    }

    /// Stages a framework write (a metadata record that must change in the
    /// same atomic batch as this vnode's data).
    pub(crate) fn stage(&mut self, w: Write) {
        self.writes.push(w);
    }

    pub(crate) fn take_writes(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.writes)
    }
}

/// The behaviour an application implements to run on the ring.
pub trait Vnode: Send + Sized + 'static {
    /// A command addressed to one vnode.
    type Command: Wire + Send + std::fmt::Debug + 'static;
    /// The answer to a command.
    type Reply: Wire + Send + 'static;
    /// A request sent to every vnode (a coverage query).
    type CoverageRequest: Wire + Send + Sync + std::fmt::Debug + 'static;
    /// One vnode's answer to a coverage request.
    type CoverageReply: Wire + Send + 'static;

    /// Builds the vnode of `ctx.partition()` from the items it persisted before
    /// (empty for a new vnode).
    fn init(ctx: &VnodeCtx, stored: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self>;

    /// Handles one command. Writes staged in `ctx` are durable before the
    /// reply reaches the caller.
    fn handle_command(&mut self, cmd: Self::Command, ctx: &mut VnodeCtx) -> Result<Self::Reply>;

    /// Answers a coverage request.
    fn handle_coverage(
        &mut self,
        req: &Self::CoverageRequest,
        ctx: &VnodeCtx,
    ) -> Result<Self::CoverageReply>;

    /// The vnode's whole state as a sequence of self-contained items, for
    /// handoff to another owner (riak_core's fold + `encode_handoff_item`).
    fn handoff_items(&self) -> Result<Vec<Vec<u8>>>;

    /// Applies one item received by handoff, staging its persistence in `ctx`.
    fn handle_handoff_data(&mut self, item: &[u8], ctx: &mut VnodeCtx) -> Result<()>;

    /// True when there is nothing to hand off.
    fn is_empty(&self) -> bool;

    /// Drops all state, after a completed handoff; stage the removal in `ctx`.
    fn delete(&mut self, ctx: &mut VnodeCtx) -> Result<()>;
}
