//! Ownership handoff: moving a vnode's state to its next owner without
//! losing an acknowledged command, as riak_core's `handoff_sender` and
//! `handoff_receiver` do.
//!
//! The sender, for a pending transfer of partition `p` to node `R`:
//! 1. opens a handoff stream to `R` and sends `Start`; `R` empties its copy of
//!    `p` (so a retried transfer starts from scratch) and acknowledges;
//! 2. in one step on the vnode's task, takes the vnode's items and switches it
//!    to *forwarding*: from then on each command is applied locally *and* a
//!    copy goes to `R`'s copy, tagged with the session;
//! 3. streams the items, sends `Finish`; `R` answers once all of it is durable;
//! 4. switches the vnode to *holding* (new commands wait), waits until every
//!    forwarded copy is acknowledged by `R`, and asks the claimant to flip
//!    ownership;
//! 5. on the flip, deletes its copy and switches to *redirect*: held and later
//!    commands go to `R`.
//!
//! Any failure before the flip (stream cut, `R` killed, a forwarded copy
//! refused) puts the vnode back to normal (held commands are applied locally,
//! nothing was acknowledged elsewhere) and the transfer is retried later from
//! step 1. So the data never counts in two owners: until the flip only the
//! sender's copy is asked; after it, only the receiver's.
//!
//! At most `handoff_concurrency` transfers run per node and direction; a
//! receiver that is full answers RESOURCE_EXHAUSTED and the sender retries.
//! Left out: hinted handoff (no fallback vnodes yet) and resuming a transfer
//! half-way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{Notify, mpsc};

use super::handoff_fsm::{Action, Event, Phase, SenderFsm, VnodeMode};
use super::manager::{Cluster, marker_key};
use super::router::Router;
use super::state::Transfer;
use super::transport::{
    HandoffAck, HandoffInbound, HandoffMessage, HandoffStart, PeerAnswer, PeerCall, Transport,
};
use crate::ring::PartitionId;
use crate::vnode::{Forwarder, Mode, Redirector, Vnode};
use crate::{Error, Result};

/// Pause before retrying a failed transfer; it doubles with each failure in
/// a row, up to [`RETRY_MAX`], so a receiver that is down for long is not
/// hammered (nor the log flooded).
const RETRY_AFTER: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(8);

/// Progress of one running transfer.
#[derive(Debug)]
pub struct Progress {
    /// The other end.
    pub peer: String,
    /// When it started.
    pub started: Instant,
    /// Items sent or received.
    pub items: AtomicU64,
    /// Bytes of items sent or received.
    pub bytes: AtomicU64,
    /// Items to send in all ([`UNKNOWN`] until the fold is done; outbound only).
    pub total: AtomicU64,
    session: u64,
}

/// [`Progress::total`] before it is known.
pub const UNKNOWN: u64 = u64::MAX;

/// The transfers running on this node.
#[derive(Debug, Default)]
pub struct Handoffs {
    outbound: Mutex<HashMap<u32, Arc<Progress>>>,
    inbound: Mutex<HashMap<u32, Arc<Progress>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One active outbound transfer, for `flavio admin transfers`.
#[derive(Debug, Clone)]
pub struct ActiveTransfer {
    /// Partition.
    pub partition: PartitionId,
    /// Receiving node.
    pub to: String,
    /// Items sent.
    pub items: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Items to send in all, once known.
    pub total: Option<u64>,
    /// Time since it started.
    pub elapsed: Duration,
}

impl Handoffs {
    /// Whether this node is sending `p`.
    pub fn outbound_active(&self, p: PartitionId) -> bool {
        lock(&self.outbound).contains_key(&p.0)
    }

    /// Whether this node holds a receiving copy of `p`.
    pub fn inbound_active(&self, p: PartitionId) -> bool {
        lock(&self.inbound).contains_key(&p.0)
    }

    /// Forgets the receiving copy of `p` (it is now owned); returns whether
    /// there was one.
    pub fn clear_inbound(&self, p: PartitionId) -> bool {
        lock(&self.inbound).remove(&p.0).is_some()
    }

    fn inbound_session(&self, p: PartitionId) -> Option<u64> {
        lock(&self.inbound).get(&p.0).map(|x| x.session)
    }

    /// Transfers this node is sending now.
    pub fn active(&self) -> Vec<ActiveTransfer> {
        let mut v: Vec<ActiveTransfer> = lock(&self.outbound)
            .iter()
            .map(|(p, x)| ActiveTransfer {
                partition: PartitionId(*p),
                to: x.peer.clone(),
                items: x.items.load(Ordering::Relaxed),
                bytes: x.bytes.load(Ordering::Relaxed),
                total: Some(x.total.load(Ordering::Relaxed)).filter(|t| *t != UNKNOWN),
                elapsed: x.started.elapsed(),
            })
            .collect();
        v.sort_by_key(|t| t.partition);
        v
    }
}

/// Sends the copies a forwarding vnode makes to the receiver's copy, and
/// keeps count of those not yet acknowledged.
struct SessionForwarder {
    transport: Arc<dyn Transport>,
    addr: String,
    session: u64,
    outstanding: AtomicUsize,
    failed: AtomicBool,
    idle: Notify,
}

impl SessionForwarder {
    fn done(&self, ok: bool) {
        if !ok {
            self.failed.store(true, Ordering::SeqCst);
        }
        if self.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    async fn drained(&self) -> bool {
        loop {
            let notified = self.idle.notified();
            if self.outstanding.load(Ordering::SeqCst) == 0 {
                return !self.failed.load(Ordering::SeqCst);
            }
            if tokio::time::timeout(Duration::from_secs(10), notified)
                .await
                .is_err()
            {
                return false;
            }
        }
    }
}

struct ArcForwarder(Arc<SessionForwarder>);

impl Forwarder for ArcForwarder {
    fn forward(&self, p: PartitionId, cmd: Vec<u8>) {
        let f = Arc::clone(&self.0);
        f.outstanding.fetch_add(1, Ordering::SeqCst);
        let back = Arc::clone(&f);
        f.transport.send(
            &f.addr,
            PeerCall::Command {
                partition: p,
                cmd,
                hops: 0,
                cluster_id: String::new(),
                session: f.session,
            },
            Box::new(move |r| {
                back.done(matches!(r, Ok(PeerAnswer::Reply(_))));
            }),
        );
    }
}

/// Sends everything for a partition this node no longer owns to its owner.
struct RouterRedirect<V: Vnode>(Arc<Router<V>>, String);

impl<V: Vnode> Redirector for RouterRedirect<V> {
    fn command(
        &self,
        p: PartitionId,
        cmd: Vec<u8>,
        reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>,
    ) {
        use crate::request::Dispatch;
        if *self.0.owner(p) == *self.1 {
            // Ownership came back before this vnode was switched to normal:
            // nothing was applied, and the router retries once it is.
            reply(Err(Error::Moved(format!(
                "partition {p} is moving back; retry"
            ))));
            return;
        }
        self.0.command_encoded(p, cmd, 1, reply);
    }

    fn coverage(
        &self,
        p: PartitionId,
        req: Vec<u8>,
        reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>,
    ) {
        use crate::request::Dispatch;
        if *self.0.owner(p) == *self.1 {
            reply(Err(Error::Moved(format!(
                "partition {p} is moving back; retry"
            ))));
            return;
        }
        let once = Mutex::new(Some(reply));
        self.0.coverage_encoded(
            vec![p],
            req,
            1,
            Arc::new(move |_, r| {
                if let Some(reply) = lock(&once).take() {
                    reply(r);
                }
            }),
        );
    }
}

/// A redirector to whoever owns a partition now.
pub(super) fn redirector<V: Vnode>(c: &Cluster<V>) -> Arc<dyn Redirector> {
    Arc::new(RouterRedirect(c.router(), c.me().to_string()))
}

/// Starts sending `t` (this node is its `from`), retrying until it is done or
/// no longer pending.
pub(super) fn spawn_sender<V: Vnode>(c: Cluster<V>, t: Transfer) {
    let p = t.partition;
    let progress = Arc::new(Progress {
        peer: t.to.clone(),
        started: Instant::now(),
        items: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        total: AtomicU64::new(UNKNOWN),
        session: 0,
    });
    {
        let mut out = lock(&c.inner.handoffs.outbound);
        if out.contains_key(&p.0) {
            return;
        }
        out.insert(p.0, Arc::clone(&progress));
    }
    let cluster = c.clone();
    cluster.spawn(async move {
        let mut pause = RETRY_AFTER;
        loop {
            let still = c.ring().ring.pending.contains(&t);
            if !still {
                break;
            }
            let permit = match Arc::clone(&c.inner.out_slots).acquire_owned().await {
                Ok(p) => p,
                Err(_) => break,
            };
            match send_once(&c, &t, &progress).await {
                Ok(held) => {
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
                Err(e) => {
                    drop(permit);
                    tracing::info!(partition = %p, to = %t.to, error = %e, "handoff failed; will retry");
                    progress.items.store(0, Ordering::Relaxed);
                    progress.bytes.store(0, Ordering::Relaxed);
                    progress.total.store(UNKNOWN, Ordering::Relaxed);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
        lock(&c.inner.handoffs.outbound).remove(&p.0);
    });
}

/// Carries out what the state machine decided, on the vnode of `p`.
/// Returns the vnode's items when the actions included sending them.
async fn exec<V: Vnode>(
    c: &Cluster<V>,
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
                c.mark_redirected(p);
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
                    c.unmark_redirected(p);
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
async fn start<V: Vnode>(
    c: &Cluster<V>,
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
        ring_size: snap.ring.size.get(),
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
async fn send_once<V: Vnode>(
    c: &Cluster<V>,
    t: &Transfer,
    progress: &Progress,
) -> Result<Duration> {
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
    let streamed = stream_items(t, &tx, &mut acks, items, progress).await;
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
    tx.send(HandoffMessage::Finish { items: n })
        .await
        .map_err(|_| closed())?;
    match next_ack(&t.to, acks).await? {
        HandoffAck::Finished(k) if k == n => Ok(()),
        other => Err(Error::Rpc(format!("unexpected handoff ack {other:?}"))),
    }
}

/// Asks the claimant to flip ownership once; says what came of it.
async fn flip<V: Vnode>(c: &Cluster<V>, t: &Transfer) -> (Event, Option<Error>) {
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
        return (
            Event::FlipRefused,
            Some(Error::FailedPrecondition(
                "the transfer is no longer pending".into(),
            )),
        );
    }
    let attempt = if c.is_claimant() {
        c.complete_transfer(t).await.map(|_| ())
    } else {
        remote_flip(c, t).await
    };
    match attempt {
        Ok(()) => {
            // Our view has the flip now. Tell the receiver before any
            // command is redirected to it, so it does not bounce them
            // back while its own view lags.
            if let Some(addr) = c.ring().addr(&t.to).map(str::to_string) {
                c.gossip_to(t.to.clone(), addr).await;
            }
            (Event::FlipConfirmed, None)
        }
        Err(Error::FailedPrecondition(m)) => {
            (Event::FlipRefused, Some(Error::FailedPrecondition(m)))
        }
        Err(e) => (Event::FlipUnknown, Some(e)),
    }
}

async fn remote_flip<V: Vnode>(c: &Cluster<V>, t: &Transfer) -> Result<()> {
    let addr = c.claimant_addr()?;
    let ring = c.transport().complete_transfer(&addr, t.clone()).await?;
    if let Some(ring) = ring {
        c.adopt(ring).await?;
    }
    Ok(())
}

/// The receiving side of one handoff stream: `inbound` brings the sender's
/// messages, `out` takes the acknowledgements, or the error that ended it.
pub async fn receive<V: Vnode>(
    c: Cluster<V>,
    mut inbound: HandoffInbound,
    out: mpsc::Sender<Result<HandoffAck>>,
) {
    let result = receive_inner(&c, &mut inbound, &out).await;
    if let Err(e) = result {
        tracing::info!(error = %e, "inbound handoff failed");
        let _ = out.send(Err(e)).await;
    }
}

async fn receive_inner<V: Vnode>(
    c: &Cluster<V>,
    inbound: &mut HandoffInbound,
    out: &mpsc::Sender<Result<HandoffAck>>,
) -> Result<()> {
    let next = |m: Option<Result<HandoffMessage>>| match m {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(Error::Rpc(format!("handoff stream: {e}"))),
        None => Err(Error::Rpc("handoff stream ended early".into())),
    };
    let HandoffMessage::Start(start) = next(inbound.next().await)? else {
        return Err(Error::InvalidArgument("a handoff starts with Start".into()));
    };
    let p = start.partition;
    let snap = c.ring();
    if start.ring_size != snap.ring.size.get() || p.0 >= snap.ring.size.get() {
        return Err(Error::InvalidArgument(
            "handoff for another ring size".into(),
        ));
    }
    if start.to != c.me() {
        return Err(Error::InvalidArgument(format!(
            "handoff meant for {}, not {}",
            start.to,
            c.me()
        )));
    }
    if snap.ring.owner(p) == c.me() && snap.ring.pending_of(p).is_none() {
        return Err(Error::FailedPrecondition(format!(
            "{} already owns partition {p}",
            c.me()
        )));
    }
    let _permit = Arc::clone(&c.inner.in_slots)
        .try_acquire_owned()
        .map_err(|_| {
            Error::Busy(format!(
                "{} is receiving as many transfers as it may",
                c.me()
            ))
        })?;
    // From scratch: whatever an earlier attempt left is gone first.
    c.inner.store.delete_meta(&marker_key(p))?;
    c.master().reset(p).await?;
    let progress = Arc::new(Progress {
        peer: start.from.clone(),
        started: Instant::now(),
        items: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        total: AtomicU64::new(UNKNOWN),
        session: start.session,
    });
    lock(&c.inner.handoffs.inbound).insert(p.0, Arc::clone(&progress));
    let gone = || Error::Rpc("sender went away".into());
    out.send(Ok(HandoffAck::Started))
        .await
        .map_err(|_| gone())?;
    loop {
        match next(inbound.next().await)? {
            HandoffMessage::Item(item) => {
                progress.items.fetch_add(1, Ordering::Relaxed);
                progress
                    .bytes
                    .fetch_add(item.len() as u64, Ordering::Relaxed);
                c.master()
                    .with_vnode(p, move |v, ctx| v.handle_handoff_data(&item, ctx))
                    .await??;
            }
            HandoffMessage::Finish { items } => {
                let got = progress.items.load(Ordering::Relaxed);
                if items != got {
                    return Err(Error::Rpc(format!(
                        "handoff of {p} sent {items} items, received {got}"
                    )));
                }
                c.master().barrier(p).await?;
                c.inner
                    .store
                    .put_meta(&marker_key(p), &start.session.to_be_bytes())?;
                out.send(Ok(HandoffAck::Finished(got)))
                    .await
                    .map_err(|_| gone())?;
                return Ok(());
            }
            HandoffMessage::Start(_) => {
                return Err(Error::InvalidArgument("second Start".into()));
            }
        }
    }
}

/// A command forwarded by a handing-off sender: applied to the receiving
/// copy of its session only.
pub fn forwarded_command<V: Vnode>(
    c: &Cluster<V>,
    p: PartitionId,
    session: u64,
    cmd: &[u8],
    reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>,
) {
    // Only the copy of this very session: a late copy from an abandoned
    // attempt was part of the snapshot of the attempt that replaced it.
    if c.inner.handoffs.inbound_session(p) == Some(session) {
        c.master().command_encoded(p, cmd, reply);
    } else {
        reply(Err(Error::FailedPrecondition(format!(
            "no handoff session {session} for partition {p} here"
        ))));
    }
}
