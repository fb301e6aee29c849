//! The sending side of a handoff: one task per pending transfer this node is
//! the `from` of, retrying until the transfer is done or no longer pending,
//! each attempt driven by the pure state machine in [`super::fsm`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::Kind;
use super::forward::{ArcForwarder, SessionForwarder};
use super::fsm::{Action, Event, Phase, SenderFsm, VnodeMode};
use super::redirect::redirector;
use super::{Host, Progress, RETRY_AFTER, RETRY_MAX, UNKNOWN, lock};
use crate::cluster::state::Transfer;
use crate::cluster::transport::{HandoffAck, HandoffMessage, HandoffStart};
use crate::ring::PartitionId;
use crate::vnode::{Forwarder, Mode, Vnode};
use crate::{Error, Result};

/// Starts sending `t` (this node is its `from`), retrying until it is done or
/// no longer pending.
pub fn spawn_sender<H: Host>(c: H, t: Transfer) {
    let p = t.partition;
    let progress = Arc::new(Progress::new(t.to.clone(), 0, false));
    {
        let mut out = lock(&c.handoffs().outbound);
        if out.contains_key(&p.0) {
            return;
        }
        out.insert(p.0, Arc::clone(&progress));
    }
    let cluster = c.clone();
    cluster.spawn_task(async move {
        let mut pause = RETRY_AFTER;
        loop {
            let still = c.ring().ring.pending.contains(&t);
            if !still {
                break;
            }
            let permit = match Arc::clone(&c.handoffs().out_slots).acquire_owned().await {
                Ok(p) => p,
                Err(_) => break,
            };
            match send_once(&c, &t, &progress).await {
                Ok(held) => {
                    c.handoffs().totals.done(
                        Kind::Ownership,
                        progress.items.load(Ordering::Relaxed),
                        progress.bytes.load(Ordering::Relaxed),
                    );
                    tracing::info!(
                        partition = %p,
                        to = %t.to,
                        elapsed_ms = progress.started.elapsed().as_millis() as u64,
                        held_us = held.as_micros() as u64,
                        "handoff complete"
                    );
                    drop(permit);
                    break;
                }
                Err(Error::Busy(why)) => {
                    // The receiver is at its inbound limit: nothing failed,
                    // ask again shortly (jittered, so senders take turns).
                    drop(permit);
                    tracing::debug!(partition = %p, to = %t.to, %why, "receiver busy");
                    let ms = c.random(20..80);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Err(Error::Moved(why)) => {
                    // The receiver's ring does not list the transfer yet:
                    // bring it ours, then ask again.
                    drop(permit);
                    tracing::debug!(partition = %p, to = %t.to, %why, "receiver's ring is behind");
                    if let Some(addr) = c.ring().addr(&t.to).map(str::to_string) {
                        c.gossip_now(t.to.clone(), addr).await;
                    }
                    let ms = c.random(20..80);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Err(e) => {
                    drop(permit);
                    c.handoffs().totals.failed(Kind::Ownership);
                    tracing::info!(partition = %p, to = %t.to, error = %e, "handoff failed; will retry");
                    progress.items.store(0, Ordering::Relaxed);
                    progress.bytes.store(0, Ordering::Relaxed);
                    progress.total.store(UNKNOWN, Ordering::Relaxed);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
        lock(&c.handoffs().outbound).remove(&p.0);
        // Reconciles skip a vnode while it is handed off; now that nothing
        // holds it, one must look at it again (its transfer cancelled with
        // ownership gone elsewhere leaves a copy nobody owns).
        c.recheck();
        // The ring may have replaced this transfer by another of the same
        // partition (its receiver was removed, say) while this task held
        // the partition's place: that one was not started then, and no
        // later ring change need come to start it (found by the
        // simulator, seed 1269).
        let next = c
            .ring()
            .ring
            .pending
            .iter()
            .find(|x| x.partition == p && x.from == c.me() && **x != t)
            .cloned();
        if let Some(next) = next {
            spawn_sender(c, next);
        }
    });
}

/// Carries out what the state machine decided, on the vnode of `p`.
/// Returns the vnode's items when the actions included sending them.
async fn exec<H: Host>(
    c: &H,
    p: PartitionId,
    actions: Vec<Action>,
    fwd: &Arc<SessionForwarder>,
) -> Result<Option<Vec<Vec<u8>>>> {
    let mut items = None;
    for a in actions {
        match a {
            // Forwarding starts in the same step as the snapshot (SendItems):
            // every command is either in the items or forwarded, never both.
            Action::SetMode(VnodeMode::Forwarding) => {}
            Action::SendItems => {
                let forwarder: Arc<dyn Forwarder> = Arc::new(ArcForwarder(Arc::clone(fwd)));
                let got = c
                    .master()
                    .control(p, move |v, _, mode| {
                        *mode = Mode::Forwarding(forwarder);
                        v.handoff_items()
                    })
                    .await??;
                items = Some(got);
            }
            Action::SetMode(VnodeMode::Normal) => {
                c.master()
                    .control(p, |_, _, mode| *mode = Mode::Normal)
                    .await?;
            }
            Action::SetMode(VnodeMode::Holding) => {
                c.master()
                    .control(p, |_, _, mode| *mode = Mode::Holding(Vec::new()))
                    .await?;
            }
            Action::SetMode(VnodeMode::Redirect) => {
                // Marked first, so that a ring change that gives the
                // partition back to this node (a leaver reset to a cluster of
                // its own by the very flip it asked for) switches it to
                // normal in the reconcile that follows, as for any
                // redirected vnode; and the switch itself checks the ring as
                // it is then, in case that reconcile already ran.
                c.handoffs().mark_redirected(p);
                let redirect = redirector(c);
                let cl = c.clone();
                let me = c.me().to_string();
                // Redirect either way: the requests held during the flip
                // belong to the cluster that now owns the partition, and
                // replayed here they are refused ("moving back; retry")
                // rather than applied to a copy about to be deleted.
                let kept = c
                    .master()
                    .control(p, move |_, _, mode| {
                        *mode = Mode::Redirect(redirect);
                        *cl.ring().ring.owner(p) == me
                    })
                    .await?;
                if kept {
                    c.master()
                        .control(p, |_, _, mode| *mode = Mode::Normal)
                        .await?;
                    c.handoffs().unmark_redirected(p);
                }
            }
            Action::DeleteLocal => {
                c.master().with_vnode(p, |v, ctx| v.delete(ctx)).await??;
            }
            Action::AwaitForwards | Action::RequestFlip | Action::RetryLater => {}
        }
    }
    Ok(items)
}

type AckStream = BoxStream<'static, Result<HandoffAck>>;

/// A receiver's refusal or a broken stream, naming the receiver; "busy" stays
/// apart from failures.
fn refused(to: &str, e: Error) -> Error {
    match e {
        Error::Busy(why) => Error::Busy(format!("{to}: {why}")),
        Error::Moved(why) => Error::Moved(format!("{to}: {why}")),
        e => Error::Rpc(format!("{to}: {e}")),
    }
}

/// The next acknowledgement, or why there is none.
async fn next_ack(to: &str, acks: &mut AckStream) -> Result<HandoffAck> {
    match acks.next().await {
        Some(Ok(a)) => Ok(a),
        Some(Err(e)) => Err(refused(to, e)),
        None => Err(Error::Rpc(format!("handoff stream to {to} closed"))),
    }
}

/// Opens the handoff stream and has the receiver start a clean copy.
async fn start<H: Host>(
    c: &H,
    t: &Transfer,
    session: u64,
) -> Result<(mpsc::Sender<HandoffMessage>, AckStream)> {
    let snap = c.ring();
    let addr = snap
        .addr(&t.to)
        .ok_or_else(|| Error::Rpc(format!("no address for {}", t.to)))?
        .to_string();
    let start = HandoffStart {
        partition: t.partition,
        from: c.me().to_string(),
        to: t.to.clone(),
        session,
        ring_size: snap.ring.size().get(),
    };
    let mut link = c
        .transport()
        .handoff(&addr, start)
        .await
        .map_err(|e| refused(&t.to, e))?;
    match next_ack(&t.to, &mut link.acks).await? {
        HandoffAck::Started => Ok((link.tx, link.acks)),
        other => Err(Error::Rpc(format!("unexpected handoff ack {other:?}"))),
    }
}

/// One attempt at a transfer. Returns how long the vnode held requests
/// (from the end of the stream to the confirmed flip): the pause clients
/// of that partition see.
async fn send_once<H: Host>(c: &H, t: &Transfer, progress: &Progress) -> Result<Duration> {
    let p = t.partition;
    let session = c.random(1..u64::MAX);
    let mut fsm = SenderFsm::new();
    let fwd = Arc::new(SessionForwarder {
        transport: Arc::clone(c.transport()),
        addr: c.ring().addr(&t.to).unwrap_or_default().to_string(),
        session,
        outstanding: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        idle: Notify::new(),
    });
    c.master().ensure_started(p)?;
    let (tx, mut acks) = match start(c, t, session).await {
        Ok(s) => s,
        Err(e) => {
            exec(c, p, fsm.on(Event::Failed), &fwd).await?;
            return Err(e);
        }
    };
    let items = exec(c, p, fsm.on(Event::StartAcked), &fwd)
        .await?
        .unwrap_or_default();
    progress.total.store(items.len() as u64, Ordering::Relaxed);
    // The fold ran on the vnode's task after every merge it could see, and
    // no hint is merged into `p` while it is handed off: these are exactly
    // the merges in the items.
    let streamed = async {
        c.master().barrier(p).await?;
        let merged = super::hinted::merged_hints(c.store(), p)?;
        stream_items(t, &tx, &mut acks, items, merged, progress).await
    }
    .await;
    drop(tx);
    if let Err(e) = streamed {
        exec(c, p, fsm.on(Event::Failed), &fwd).await?;
        return Err(e);
    }
    let held_from = Instant::now();
    exec(c, p, fsm.on(Event::Finished), &fwd).await?;
    let ok = fwd.drained().await;
    exec(c, p, fsm.on(Event::Drained { ok }), &fwd).await?;
    if fsm.phase() == Phase::Aborted {
        return Err(Error::Rpc(format!(
            "a command forwarded to {} during handoff was not acknowledged",
            t.to
        )));
    }
    loop {
        let (event, why) = flip(c, t).await;
        exec(c, p, fsm.on(event), &fwd).await?;
        match fsm.phase() {
            Phase::Done => return Ok(held_from.elapsed()),
            Phase::Aborted => return Err(why.unwrap_or_else(|| Error::Rpc("flip refused".into()))),
            _ => {
                if let Some(e) = why {
                    tracing::debug!(error = %e, "flip not confirmed yet; retrying");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn stream_items(
    t: &Transfer,
    tx: &mpsc::Sender<HandoffMessage>,
    acks: &mut AckStream,
    items: Vec<Vec<u8>>,
    merged_hints: Vec<u64>,
    progress: &Progress,
) -> Result<()> {
    let closed = || Error::Rpc(format!("handoff stream to {} closed", t.to));
    let n = items.len() as u64;
    for item in items {
        let len = item.len() as u64;
        tx.send(HandoffMessage::Item(item))
            .await
            .map_err(|_| closed())?;
        progress.items.fetch_add(1, Ordering::Relaxed);
        progress.bytes.fetch_add(len, Ordering::Relaxed);
    }
    tx.send(HandoffMessage::Finish {
        items: n,
        merged_hints,
    })
    .await
    .map_err(|_| closed())?;
    match next_ack(&t.to, acks).await? {
        HandoffAck::Finished(k) if k == n => Ok(()),
        other => Err(Error::Rpc(format!("unexpected handoff ack {other:?}"))),
    }
}

/// Asks the claimant to flip ownership once; says what came of it.
async fn flip<H: Host>(c: &H, t: &Transfer) -> (Event, Option<Error>) {
    let snap = c.ring();
    if snap.ring.owner(t.partition) == t.to {
        return (Event::FlipConfirmed, None);
    }
    // Removed from the cluster while asking: a leaver is removed only once it
    // owns nothing, so this flip happened (its answer was lost on the way).
    // The copy here must go like any handed-off copy, or the node keeps a
    // second copy of data its old cluster now counts elsewhere (found by the
    // simulator, seed 39).
    if snap.left {
        return (Event::FlipConfirmed, None);
    }
    if !snap.ring.pending.iter().any(|x| x == t) {
        // Gone from the pending list, and the partition no longer ours:
        // the flip happened (its answer was lost) and ownership has moved on
        // since, or a forced reassignment took it; either way this copy is
        // no longer the partition's, so it goes like a handed-off one. Kept
        // as normal here, it would count a second time (found by the
        // simulator, seed 4655).
        if snap.ring.owner(t.partition) != c.me() {
            return (Event::FlipConfirmed, None);
        }
        return (
            Event::FlipRefused,
            Some(Error::FailedPrecondition(
                "the transfer is no longer pending".into(),
            )),
        );
    }
    let attempt = if c.is_claimant() {
        c.flip_here(t).await.map(|_| ())
    } else {
        remote_flip(c, t).await
    };
    match attempt {
        Ok(()) => {
            // Our view has the flip now. Tell the receiver before any
            // command is redirected to it, so it does not bounce them
            // back while its own view lags.
            if let Some(addr) = c.ring().addr(&t.to).map(str::to_string) {
                c.gossip_now(t.to.clone(), addr).await;
            }
            (Event::FlipConfirmed, None)
        }
        Err(Error::FailedPrecondition(m)) => {
            (Event::FlipRefused, Some(Error::FailedPrecondition(m)))
        }
        Err(e) => (Event::FlipUnknown, Some(e)),
    }
}

async fn remote_flip<H: Host>(c: &H, t: &Transfer) -> Result<()> {
    let addr = c.claimant_addr()?;
    let ring = c.transport().complete_transfer(&addr, t.clone()).await?;
    if let Some(ring) = ring {
        c.adopt_ring(ring).await?;
    }
    Ok(())
}
