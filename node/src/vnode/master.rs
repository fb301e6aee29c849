//! The vnode master: starts one actor per partition and routes by partition.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::actor::{self, Mode, Msg};
use super::{Replier, Store, Vnode, VnodeCtx, Wire};

use crate::ring::{PartitionId, RingSize};
use crate::{Error, Result};

/// A replier that encodes the answer for `reply`.
fn encoding<T: Wire + 'static>(reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>) -> Replier<T> {
    Box::new(move |_, r| {
        reply(r.map(|v| {
            let mut buf = Vec::new();
            v.encode(&mut buf);
            buf
        }))
    })
}

/// Routes messages to the vnodes of one node. Cheap to clone.
pub struct VnodeMaster<V: Vnode> {
    inner: Arc<Inner<V>>,
}

impl<V: Vnode> Clone for VnodeMaster<V> {
    fn clone(&self) -> Self {
        VnodeMaster {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<V: Vnode> {
    node: Arc<str>,
    ring_size: RingSize,
    store: Store,
    /// Decimal ring index of every partition, computed once.
    indexes: Vec<Arc<str>>,
    /// Mailbox of each running vnode, by partition ordinal.
    mailboxes: std::sync::RwLock<Vec<Option<mpsc::UnboundedSender<Msg<V>>>>>,
    tasks: std::sync::Mutex<JoinSet<()>>,
}

impl<V: Vnode> VnodeMaster<V> {
    /// Creates the master of node `node` and starts the vnodes of `partitions`
    /// from their persisted state. Must be called inside a tokio runtime.
    pub fn start(
        node: &str,
        ring_size: RingSize,
        store: Store,
        partitions: impl IntoIterator<Item = PartitionId>,
    ) -> Result<Self> {
        let indexes = ring_size
            .partitions()
            .map(|p| Arc::from(ring_size.index(p).to_string()))
            .collect();
        let master = VnodeMaster {
            inner: Arc::new(Inner {
                node: Arc::from(node),
                ring_size,
                store,
                indexes,
                mailboxes: std::sync::RwLock::new(vec![None; ring_size.get() as usize]),
                tasks: std::sync::Mutex::new(JoinSet::new()),
            }),
        };
        for p in partitions {
            master.ensure_started(p)?;
        }
        Ok(master)
    }

    /// The node's name.
    pub fn node(&self) -> &Arc<str> {
        &self.inner.node
    }

    /// The ring size this master serves.
    pub fn ring_size(&self) -> RingSize {
        self.inner.ring_size
    }

    /// The decimal ring index of `p`.
    pub fn partition_name(&self, p: PartitionId) -> &Arc<str> {
        // Partitions come from this ring, so the ordinal is in range.
        &self.inner.indexes[p.0 as usize % self.inner.indexes.len()]
    }

    /// Starts the vnode of `p` if it is not running (riak_core's
    /// `get_vnode_pid`: vnodes start on demand).
    pub fn ensure_started(&self, p: PartitionId) -> Result<()> {
        let slot = p.0 as usize;
        if slot >= self.inner.indexes.len() {
            return Err(Error::InvalidPartition(p.to_string()));
        }
        // Fast path under the read lock: every ring change asks this for
        // every owned partition, and the write lock would stall requests.
        if self.is_running(p) {
            return Ok(());
        }
        let mut mailboxes = self
            .inner
            .mailboxes
            .write()
            .map_err(|_| Error::ShuttingDown)?;
        if mailboxes[slot].is_some() {
            return Ok(());
        }
        let ctx = VnodeCtx::new(
            p,
            Arc::clone(self.partition_name(p)),
            Arc::clone(&self.inner.node),
        );
        let stored = self.inner.store.load(p)?;
        tracing::debug!(node = %self.inner.node, partition = %p, items = stored.len(), "vnode starts");
        let vnode = V::init(&ctx, stored)?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .tasks
            .lock()
            .map_err(|_| Error::ShuttingDown)?
            .spawn(actor::run(vnode, ctx, rx, self.inner.store.clone()));
        mailboxes[slot] = Some(tx);
        Ok(())
    }

    fn send(&self, p: PartitionId, msg: Msg<V>) -> std::result::Result<(), Msg<V>> {
        let mailboxes = match self.inner.mailboxes.read() {
            Ok(m) => m,
            Err(_) => return Err(msg),
        };
        match mailboxes.get(p.0 as usize).and_then(Option::as_ref) {
            Some(tx) => tx.send(msg).map_err(|e| e.0),
            None => Err(msg),
        }
    }

    /// Sends `cmd` to the vnode of `p`; `reply` gets its answer (or the reason
    /// there is none: an unknown partition or a stopping node).
    pub fn command(&self, p: PartitionId, cmd: V::Command, reply: Replier<V::Reply>) {
        if let Err(Msg::Command { reply, .. }) = self.send(p, Msg::Command { cmd, reply }) {
            reply(p, Err(self.not_running(p)));
        }
    }

    /// Sends `cmd` to the vnode of `p` and waits for its reply.
    pub async fn sync_command(&self, p: PartitionId, cmd: V::Command) -> Result<V::Reply> {
        let (tx, rx) = oneshot::channel();
        self.command(
            p,
            cmd,
            Box::new(move |_, r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Runs an encoded command (as it arrives from another node) and encodes
    /// the reply. A command the application does not know is an error reply.
    pub async fn encoded_command(&self, p: PartitionId, cmd: &[u8]) -> Result<Vec<u8>> {
        let cmd = V::Command::decode(cmd)?;
        let reply = self.sync_command(p, cmd).await?;
        let mut buf = Vec::new();
        reply.encode(&mut buf);
        Ok(buf)
    }

    /// Sends a coverage request to the vnode of `p`.
    pub fn coverage(
        &self,
        p: PartitionId,
        req: Arc<V::CoverageRequest>,
        reply: Replier<V::CoverageReply>,
    ) {
        if let Err(Msg::Coverage { reply, .. }) = self.send(p, Msg::Coverage { req, reply }) {
            reply(p, Err(self.not_running(p)));
        }
    }

    /// Runs an encoded command and hands the encoded reply to `reply`; for
    /// commands arriving from other nodes.
    pub fn command_encoded(
        &self,
        p: PartitionId,
        cmd: &[u8],
        reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>,
    ) {
        match V::Command::decode(cmd) {
            Ok(cmd) => self.command(p, cmd, encoding(reply)),
            Err(e) => reply(Err(e)),
        }
    }

    /// Runs an encoded coverage request and hands the encoded answer to `reply`.
    pub fn coverage_encoded(
        &self,
        p: PartitionId,
        req: &[u8],
        reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>,
    ) {
        match V::CoverageRequest::decode(req) {
            Ok(req) => self.coverage(p, Arc::new(req), encoding(reply)),
            Err(e) => reply(Err(e)),
        }
    }

    /// Runs `f` on the vnode of `p`, in order with its commands, and returns
    /// what it returns. For framework work (handoff folds, mode changes).
    pub async fn control<T: Send + 'static>(
        &self,
        p: PartitionId,
        f: impl FnOnce(&mut V, &mut VnodeCtx, &mut Mode<V>) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let msg = Msg::Control(Box::new(move |v, ctx, mode| {
            let _ = tx.send(f(v, ctx, mode));
        }));
        if self.send(p, msg).is_err() {
            return Err(self.not_running(p));
        }
        rx.await.map_err(|_| Error::ShuttingDown)
    }

    /// Runs `f` on the vnode of `p`, in order with its commands.
    pub async fn with_vnode<T: Send + 'static>(
        &self,
        p: PartitionId,
        f: impl FnOnce(&mut V, &mut VnodeCtx) -> T + Send + 'static,
    ) -> Result<T> {
        self.control(p, move |v, ctx, _| f(v, ctx)).await
    }

    /// Waits until every write the vnode of `p` staged so far is durable.
    pub async fn barrier(&self, p: PartitionId) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.send(p, Msg::Barrier(tx)).is_err() {
            return Err(self.not_running(p));
        }
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Starts the vnode of `p` if needed, then empties it (state and stored
    /// items) and puts it back in normal mode; durable when this returns.
    /// Used before receiving a handoff, so a retried transfer starts clean.
    pub async fn reset(&self, p: PartitionId) -> Result<()> {
        self.ensure_started(p)?;
        self.control(p, |v, ctx, mode| {
            *mode = Mode::Normal;
            v.delete(ctx)
        })
        .await??;
        self.barrier(p).await
    }

    /// Whether the vnode of `p` runs here.
    pub fn is_running(&self, p: PartitionId) -> bool {
        self.inner
            .mailboxes
            .read()
            .ok()
            .and_then(|m| m.get(p.0 as usize).map(Option::is_some))
            .unwrap_or(false)
    }

    fn not_running(&self, p: PartitionId) -> Error {
        if p.0 as usize >= self.inner.indexes.len() {
            Error::InvalidPartition(p.to_string())
        } else {
            Error::Rpc(format!(
                "vnode {} is not running on node {}",
                self.partition_name(p),
                self.inner.node
            ))
        }
    }

    /// Stops every vnode after it has handled what is already in its mailbox,
    /// waits for their pending writes, then syncs the store.
    pub async fn shutdown(&self) -> Result<()> {
        if let Ok(mut m) = self.inner.mailboxes.write() {
            m.iter_mut().for_each(|slot| *slot = None);
        }
        let mut tasks = match self.inner.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return Err(Error::ShuttingDown),
        };
        while tasks.join_next().await.is_some() {}
        // A barrier: the writer handles jobs in order, so once this empty job
        // is done every write queued by the vnodes is committed.
        let (tx, rx) = oneshot::channel();
        self.inner.store.write(
            PartitionId(0),
            Vec::new(),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.map_err(|_| Error::ShuttingDown)??;
        self.inner.store.sync()
    }

    /// Stops every vnode at once, as a crash would: mailboxes are dropped
    /// unhandled and running vnodes are aborted. Whatever they had not
    /// committed is lost; callers waiting on them get an error. The
    /// simulated cluster's crashes use it, with [`Store::close`](super::Store::close).
    pub fn abort(&self) {
        if let Ok(mut m) = self.inner.mailboxes.write() {
            m.iter_mut().for_each(|slot| *slot = None);
        }
        if let Ok(mut t) = self.inner.tasks.lock() {
            t.abort_all();
        }
    }
}
