//! One vnode's task: takes messages from its mailbox in order and runs the
//! application's callbacks on them.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Replier, Store, Vnode, VnodeCtx, Write};

/// Framework work run on a vnode's task, in order with its commands.
pub(crate) type WithFn<V> = Box<dyn FnOnce(&mut V, &mut VnodeCtx) + Send>;

/// A message to a vnode.
pub(crate) enum Msg<V: Vnode> {
    Command {
        cmd: V::Command,
        reply: Replier<V::Reply>,
    },
    Coverage {
        req: Arc<V::CoverageRequest>,
        reply: Replier<V::CoverageReply>,
    },
    /// Runs `f` with the vnode, for framework work such as handoff folds.
    With(WithFn<V>),
}

/// How many queued messages one wake-up handles; their writes share one
/// store job, which is where per-vnode grouping comes from.
const DRAIN: usize = 64;

pub(crate) async fn run<V: Vnode>(
    mut vnode: V,
    mut ctx: VnodeCtx,
    mut rx: mpsc::UnboundedReceiver<Msg<V>>,
    store: Store,
) {
    let partition = ctx.partition();
    let mut msgs = Vec::with_capacity(DRAIN);
    let mut pending: Vec<Box<dyn FnOnce(crate::Result<()>) + Send>> = Vec::new();
    loop {
        if rx.recv_many(&mut msgs, DRAIN).await == 0 {
            break;
        }
        for msg in msgs.drain(..) {
            match msg {
                Msg::Command { cmd, reply } => {
                    let result = vnode.handle_command(cmd, &mut ctx);
                    if ctx.writes.is_empty() {
                        reply(partition, result);
                    } else {
                        // The reply waits for its writes: see storage's grouping.
                        pending.push(Box::new(move |stored| {
                            reply(partition, stored.and(result));
                        }));
                    }
                }
                Msg::Coverage { req, reply } => {
                    reply(partition, vnode.handle_coverage(&req, &ctx));
                }
                Msg::With(f) => f(&mut vnode, &mut ctx),
            }
        }
        let writes: Vec<Write> = ctx.take_writes();
        if !writes.is_empty() {
            let released = std::mem::take(&mut pending);
            store.write(
                partition,
                writes,
                Box::new(move |stored: crate::Result<()>| {
                    for release in released {
                        release(clone_result(&stored));
                    }
                }),
            );
        } else {
            // Writes staged through `With` without a command still need no reply.
            debug_assert!(pending.is_empty());
        }
    }
    tracing::trace!(%partition, "vnode stopped");
}

fn clone_result(r: &crate::Result<()>) -> crate::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(crate::Error::PersistFailed(e.to_string())),
    }
}
