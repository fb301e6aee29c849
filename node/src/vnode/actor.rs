//! One vnode's task: takes messages from its mailbox in order and runs the
//! application's callbacks on them, in the vnode's current [`Mode`].

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Replier, Store, Vnode, VnodeCtx, Wire, Write};
use crate::ring::PartitionId;
use crate::{Error, Result};

/// Where a handing-off vnode sends a copy of each command it applied.
pub trait Forwarder: Send + Sync {
    /// Sends the encoded command to the receiving copy; fire and forget (the
    /// forwarder tracks failures itself).
    fn forward(&self, p: PartitionId, cmd: Vec<u8>);
}

/// Where a vnode that no longer owns its partition sends everything.
pub trait Redirector: Send + Sync {
    /// Runs an encoded command at the new owner; `reply` gets the encoded reply.
    fn command(&self, p: PartitionId, cmd: Vec<u8>, reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>);
    /// Runs an encoded coverage request at the new owner.
    fn coverage(
        &self,
        p: PartitionId,
        req: Vec<u8>,
        reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>,
    );
}

/// How a vnode treats the messages it gets.
pub enum Mode<V: Vnode> {
    /// Handles everything itself.
    Normal,
    /// Handles everything itself and forwards a copy of each command that
    /// succeeded (ownership handoff in progress).
    Forwarding(Arc<dyn Forwarder>),
    /// Keeps messages unanswered until the next mode decides (the moment of
    /// an ownership flip).
    Holding(Vec<Msg<V>>),
    /// Sends everything to the partition's new owner.
    Redirect(Arc<dyn Redirector>),
}

/// Framework work run on a vnode's task, in order with its commands.
pub type ControlFn<V> = Box<dyn FnOnce(&mut V, &mut VnodeCtx, &mut Mode<V>) + Send>;

/// A message to a vnode.
pub enum Msg<V: Vnode> {
    /// An application command.
    Command {
        /// The command.
        cmd: V::Command,
        /// Where its reply goes.
        reply: Replier<V::Reply>,
    },
    /// A coverage request.
    Coverage {
        /// The request.
        req: Arc<V::CoverageRequest>,
        /// Where the answer goes.
        reply: Replier<V::CoverageReply>,
    },
    /// Framework work: handoff folds, mode changes, deletes.
    Control(ControlFn<V>),
    /// Completes once every write staged before it is durable.
    Barrier(oneshot::Sender<Result<()>>),
}

/// At most this many requests wait on one vnode while it holds (the moment
/// of an ownership flip); later ones are refused with [`Error::Busy`], not
/// applied, so a flip the claimant cannot confirm for long holds a bounded
/// amount of memory and callers learn early that they may retry.
pub const MAX_HELD: usize = 10_000;

/// How many queued messages one wake-up handles; their writes share one
/// store job, which is where per-vnode grouping comes from.
const DRAIN: usize = 64;

type Release = Box<dyn FnOnce(Result<()>) + Send>;

struct Actor<V: Vnode> {
    vnode: V,
    ctx: VnodeCtx,
    mode: Mode<V>,
    /// Replies waiting for this wake-up's writes.
    pending: Vec<Release>,
    barriers: Vec<oneshot::Sender<Result<()>>>,
}

fn decoded<T: Wire>(r: Result<Vec<u8>>) -> Result<T> {
    r.and_then(|b| T::decode(&b))
}

impl<V: Vnode> Actor<V> {
    fn dispatch(&mut self, msg: Msg<V>) {
        let p = self.ctx.partition();
        match msg {
            Msg::Command { cmd, reply } => match &self.mode {
                Mode::Normal => self.apply(cmd, reply, None),
                Mode::Forwarding(f) => {
                    let f = Arc::clone(f);
                    self.apply(cmd, reply, Some(f));
                }
                Mode::Holding(_) => self.hold(Msg::Command { cmd, reply }),
                Mode::Redirect(r) => {
                    let mut buf = Vec::new();
                    cmd.encode(&mut buf);
                    r.command(p, buf, Box::new(move |res| reply(p, decoded(res))));
                }
            },
            Msg::Coverage { req, reply } => match &self.mode {
                Mode::Normal | Mode::Forwarding(_) => {
                    reply(p, self.vnode.handle_coverage(&req, &self.ctx));
                }
                Mode::Holding(_) => self.hold(Msg::Coverage { req, reply }),
                Mode::Redirect(r) => {
                    let mut buf = Vec::new();
                    req.encode(&mut buf);
                    r.coverage(p, buf, Box::new(move |res| reply(p, decoded(res))));
                }
            },
            Msg::Control(f) => f(&mut self.vnode, &mut self.ctx, &mut self.mode),
            Msg::Barrier(tx) => self.barriers.push(tx),
        }
    }

    fn apply(
        &mut self,
        cmd: V::Command,
        reply: Replier<V::Reply>,
        fwd: Option<Arc<dyn Forwarder>>,
    ) {
        let p = self.ctx.partition();
        let encoded = fwd.as_ref().map(|_| {
            let mut b = Vec::new();
            cmd.encode(&mut b);
            b
        });
        let result = self.vnode.handle_command(cmd, &mut self.ctx);
        if let (Some(f), Some(b), Ok(_)) = (fwd, encoded, &result) {
            f.forward(p, b);
        }
        if self.ctx.writes.is_empty() && self.pending.is_empty() {
            reply(p, result);
        } else {
            // The reply waits for its writes (and, to keep replies in
            // order, for earlier writes of this wake-up): see storage.
            self.pending
                .push(Box::new(move |stored| reply(p, stored.and(result))));
        }
    }

    /// Submits this wake-up's writes and barriers to the store.
    fn flush(&mut self, store: &Store) {
        let p = self.ctx.partition();
        let writes: Vec<Write> = self.ctx.take_writes();
        let released = std::mem::take(&mut self.pending);
        if !writes.is_empty() || !released.is_empty() {
            store.write(
                p,
                writes,
                Box::new(move |stored: Result<()>| {
                    for release in released {
                        release(clone_result(&stored));
                    }
                }),
            );
        }
        for tx in self.barriers.drain(..) {
            // The writer handles jobs in order: an empty job completes after
            // every earlier one is durable.
            store.write(
                p,
                Vec::new(),
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
        }
    }

    /// Queues a request while Holding, or refuses it when [`MAX_HELD`] wait.
    fn hold(&mut self, msg: Msg<V>) {
        let p = self.ctx.partition();
        let Mode::Holding(q) = &mut self.mode else {
            return;
        };
        if q.len() < MAX_HELD {
            q.push(msg);
            return;
        }
        let busy = || {
            Error::Busy(format!(
                "partition {p} is changing owner and {MAX_HELD} requests already wait: retry"
            ))
        };
        match msg {
            Msg::Command { reply, .. } => reply(p, Err(busy())),
            Msg::Coverage { reply, .. } => reply(p, Err(busy())),
            // Only requests are held; anything else would not be here.
            other => q.push(other),
        }
    }

    /// Replays held messages once the mode is no longer Holding.
    fn replay_held(&mut self, held: Vec<Msg<V>>) {
        for m in held {
            self.dispatch(m);
        }
    }
}

pub(crate) async fn run<V: Vnode>(
    vnode: V,
    ctx: VnodeCtx,
    mut rx: mpsc::UnboundedReceiver<Msg<V>>,
    store: Store,
) {
    let partition = ctx.partition();
    let mut actor = Actor {
        vnode,
        ctx,
        mode: Mode::Normal,
        pending: Vec::new(),
        barriers: Vec::new(),
    };
    let mut msgs = Vec::with_capacity(DRAIN);
    loop {
        if rx.recv_many(&mut msgs, DRAIN).await == 0 {
            break;
        }
        for msg in msgs.drain(..) {
            let was_holding = matches!(actor.mode, Mode::Holding(_));
            let is_control = matches!(msg, Msg::Control(_));
            if was_holding && is_control {
                // Take the held messages out before the control runs, then
                // give them to whatever mode it leaves behind.
                let held = match std::mem::replace(&mut actor.mode, Mode::Holding(Vec::new())) {
                    Mode::Holding(q) => q,
                    _ => Vec::new(),
                };
                actor.dispatch(msg);
                if let Mode::Holding(q) = &mut actor.mode {
                    let mut all = held;
                    all.append(q);
                    *q = all;
                } else {
                    actor.replay_held(held);
                }
            } else {
                actor.dispatch(msg);
            }
        }
        actor.flush(&store);
    }
    // Mailbox closed: whatever is still held can no longer be answered here.
    if let Mode::Holding(q) = std::mem::replace(&mut actor.mode, Mode::Normal) {
        for m in q {
            fail(m, partition);
        }
    }
    actor.flush(&store);
    tracing::trace!(%partition, "vnode stopped");
}

fn fail<V: Vnode>(m: Msg<V>, p: PartitionId) {
    let gone = || crate::Error::ShuttingDown;
    match m {
        Msg::Command { reply, .. } => reply(p, Err(gone())),
        Msg::Coverage { reply, .. } => reply(p, Err(gone())),
        Msg::Control(_) => {}
        Msg::Barrier(tx) => {
            let _ = tx.send(Err(gone()));
        }
    }
}

fn clone_result(r: &Result<()>) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(crate::Error::PersistFailed(e.to_string())),
    }
}
