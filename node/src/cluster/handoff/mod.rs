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
//! The module family: [`fsm`] is the sender's pure state machine,
//! [`sender`] runs it, [`receiver`] takes a stream in, [`redirect`] sends a
//! released partition's traffic on to its owner. [`Handoffs`] owns their
//! state (running transfers, slots, the redirected partitions); [`Host`] is
//! all they ask of the node, so the membership manager implements it and
//! handoff never names the manager.
//!
//! [`hinted`] is the other kind of handoff: a fallback vnode's data going
//! back to the partition's owner.
//!
//! Left out: resuming a transfer half-way.

mod forward;
pub mod fsm;
pub mod hinted;
pub mod receiver;
pub mod redirect;
pub mod sender;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::router::Router;
use super::state::{RingState, Transfer};
use super::transport::Transport;
use super::view::Snapshot;
use crate::Result;
use crate::ring::PartitionId;
use crate::sync::lock;
use crate::vnode::{Store, Vnode, VnodeMaster};

pub use hinted::{fallback_command, fallback_coverage, hint_round, receive_hint};
pub use receiver::{forwarded_command, receive};
pub use redirect::redirector;
pub use sender::spawn_sender;

/// Metadata key marking a completed inbound handoff of `p` awaiting its flip;
/// its value is the handoff's session.
fn marker_key(p: PartitionId) -> String {
    format!("handoff-in/{}", p.0)
}

/// The session of the complete inbound copy of `p` marked in `store`, if any.
pub fn marker(store: &Store, p: PartitionId) -> Result<Option<u64>> {
    let Some(bytes) = store.get_meta(&marker_key(p))? else {
        return Ok(None);
    };
    // Markers written before the session was recorded hold nothing useful:
    // any session will do, the copy is complete all the same.
    Ok(Some(
        bytes
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes),
    ))
}

/// Marks the copy of `p` received in `session` complete and durable.
fn put_marker(store: &Store, p: PartitionId, session: u64) -> Result<()> {
    store.put_meta(&marker_key(p), &session.to_be_bytes())
}

/// Removes the marker of `p`, if any.
pub fn delete_marker(store: &Store, p: PartitionId) -> Result<()> {
    store.delete_meta(&marker_key(p))
}

/// What handoff needs of its node: the ring, the vnodes and store, the way to
/// peers, the claimant's flip, and a place for background tasks. The
/// cluster's manager implements it.
pub trait Host: Clone + Send + Sync + 'static {
    /// The node's vnode type.
    type V: Vnode;
    /// This node's name.
    fn me(&self) -> &str;
    /// The current ring.
    fn ring(&self) -> Arc<Snapshot>;
    /// The local vnodes.
    fn master(&self) -> &VnodeMaster<Self::V>;
    /// The node's store (for handoff markers).
    fn store(&self) -> &Store;
    /// How peers are reached.
    fn transport(&self) -> &Arc<dyn Transport>;
    /// Routing by ownership.
    fn router(&self) -> Arc<Router<Self::V>>;
    /// The node's handoff state.
    fn handoffs(&self) -> &Handoffs;
    /// Runs `task` as one of the node's background tasks.
    fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static);
    /// A random number from the node's RNG.
    fn random(&self, range: Range<u64>) -> u64;
    /// Whether this node is the claimant.
    fn is_claimant(&self) -> bool;
    /// The claimant's address.
    fn claimant_addr(&self) -> Result<String>;
    /// Flips `t` on this node, the claimant.
    fn flip_here(&self, t: &Transfer) -> impl Future<Output = Result<RingState>> + Send;
    /// Adopts `ring` if newer.
    fn adopt_ring(&self, ring: RingState) -> impl Future<Output = Result<bool>> + Send;
    /// Exchanges rings with `node` at `addr` now.
    fn gossip_now(&self, node: String, addr: String) -> impl Future<Output = ()> + Send;
    /// Has the node decide again which vnodes it keeps, as after a ring
    /// change: a vnode no transfer holds any more may need releasing.
    fn recheck(&self);
    /// Whether the failure detector sees `node` up (this node always is).
    fn is_up(&self, node: &str) -> bool;
}

/// Pause before retrying a failed transfer; it doubles with each failure in
/// a row, up to [`RETRY_MAX`], so a receiver that is down for long is not
/// hammered (nor the log flooded).
pub(super) const RETRY_AFTER: Duration = Duration::from_millis(500);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(8);

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
    pub(super) session: u64,
    /// Inbound only: the stream is still open.
    pub(super) receiving: AtomicBool,
}

impl Progress {
    pub(super) fn new(peer: String, session: u64, receiving: bool) -> Progress {
        Progress {
            peer,
            started: Instant::now(),
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            total: AtomicU64::new(UNKNOWN),
            session,
            receiving: AtomicBool::new(receiving),
        }
    }
}

/// [`Progress::total`] before it is known.
pub const UNKNOWN: u64 = u64::MAX;

/// What this node's finished outbound transfers added up to since it
/// started, by [`Kind`] (index 0 ownership, 1 hinted): for `/metrics`.
#[derive(Debug, Default)]
pub struct Totals {
    /// Transfers completed.
    pub done: [AtomicU64; 2],
    /// Attempts that failed (each is retried).
    pub failed: [AtomicU64; 2],
    /// Items of completed transfers.
    pub items: [AtomicU64; 2],
    /// Bytes of completed transfers.
    pub bytes: [AtomicU64; 2],
}

impl Totals {
    /// Counts a completed transfer of `items` items and `bytes` bytes.
    pub fn done(&self, kind: Kind, items: u64, bytes: u64) {
        let k = kind as usize;
        self.done[k].fetch_add(1, Ordering::Relaxed);
        self.items[k].fetch_add(items, Ordering::Relaxed);
        self.bytes[k].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a failed attempt.
    pub fn failed(&self, kind: Kind) {
        self.failed[kind as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The node's handoff state: the transfers running, the slots that bound
/// them, and the partitions whose vnode redirects after losing ownership.
#[derive(Debug)]
pub struct Handoffs {
    /// Finished transfers, for metrics.
    pub totals: Totals,
    outbound: Mutex<HashMap<u32, Arc<Progress>>>,
    inbound: Mutex<HashMap<u32, Arc<Progress>>>,
    out_slots: Arc<Semaphore>,
    in_slots: Arc<Semaphore>,
    redirected: Mutex<HashSet<u32>>,
    /// Partitions whose vnode here is a fallback (see [`hinted`]).
    fallbacks: Mutex<HashSet<u32>>,
    /// Ids of hints being merged here, until their record is durable (the
    /// store has them after; this covers deliveries racing in one batch).
    merged: Arc<Mutex<HashSet<u64>>>,
    /// Serializes changes of a vnode's fallback kind with the decisions
    /// that depend on it.
    fallback_lock: tokio::sync::Mutex<()>,
    /// Hints being delivered now, by partition.
    hinting: Mutex<HashMap<u32, Arc<Progress>>>,
}

/// Which kind of handoff a transfer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A vnode moving to its partition's next owner.
    Ownership = 0,
    /// A fallback vnode's data going back to the partition's owner.
    Hinted = 1,
}

impl Kind {
    /// The name `admin transfers` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ownership => "ownership",
            Kind::Hinted => "hinted",
        }
    }
}

/// One active outbound transfer, for `flavio admin transfers`.
#[derive(Debug, Clone)]
pub struct ActiveTransfer {
    /// Ownership or hinted.
    pub kind: Kind,
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
    /// No transfers yet; at most `concurrency` at once per direction.
    pub fn new(concurrency: usize) -> Handoffs {
        let conc = concurrency.max(1);
        Handoffs {
            totals: Totals::default(),
            outbound: Mutex::new(HashMap::new()),
            inbound: Mutex::new(HashMap::new()),
            out_slots: Arc::new(Semaphore::new(conc)),
            in_slots: Arc::new(Semaphore::new(conc)),
            redirected: Mutex::new(HashSet::new()),
            fallbacks: Mutex::new(HashSet::new()),
            merged: Arc::new(Mutex::new(HashSet::new())),
            fallback_lock: tokio::sync::Mutex::new(()),
            hinting: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the vnode of `p` here is a fallback.
    pub fn is_fallback(&self, p: PartitionId) -> bool {
        lock(&self.fallbacks).contains(&p.0)
    }

    /// The partitions whose vnode here is a fallback, in ring order.
    pub fn fallback_partitions(&self) -> Vec<PartitionId> {
        let mut v: Vec<PartitionId> = lock(&self.fallbacks)
            .iter()
            .map(|p| PartitionId(*p))
            .collect();
        v.sort();
        v
    }

    /// Records the fallback of `p` that a restarted node finds marked.
    pub fn restore_fallback(&self, p: PartitionId) {
        lock(&self.fallbacks).insert(p.0);
    }

    /// Held while a decision depends on which vnodes are fallbacks (the
    /// ring's reconcile), so none becomes or stops being one meanwhile.
    pub async fn fallback_guard(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.fallback_lock.lock().await
    }

    /// Notes that the vnode of `p` sends everything to the partition's owner;
    /// the next reconcile that finds `p` owned here switches it back.
    pub fn mark_redirected(&self, p: PartitionId) {
        lock(&self.redirected).insert(p.0);
    }

    /// Undoes [`Handoffs::mark_redirected`]; returns whether it was marked.
    pub fn unmark_redirected(&self, p: PartitionId) -> bool {
        lock(&self.redirected).remove(&p.0)
    }

    /// Whether the vnode of `p` was switched to redirect.
    pub fn is_redirected(&self, p: PartitionId) -> bool {
        lock(&self.redirected).contains(&p.0)
    }

    /// Whether this node is sending `p`.
    pub fn outbound_active(&self, p: PartitionId) -> bool {
        lock(&self.outbound).contains_key(&p.0)
    }

    /// Whether the vnode of `p` is handoff's business: being sent, or
    /// released and redirecting.
    pub fn handing_off(&self, p: PartitionId) -> bool {
        self.outbound_active(p) || self.is_redirected(p)
    }

    /// Whether this node holds an incoming copy of `p`, and if so whether
    /// its stream is still open.
    pub fn incoming(&self, p: PartitionId) -> Option<bool> {
        lock(&self.inbound)
            .get(&p.0)
            .map(|x| x.receiving.load(Ordering::SeqCst))
    }

    /// Records the complete incoming copy of `p` that a restarted node finds
    /// marked on disk, received from `peer` in `session`: forwarded copies
    /// of that session are still its to apply.
    pub fn restore_incoming(&self, p: PartitionId, peer: &str, session: u64) {
        lock(&self.inbound).insert(p.0, Arc::new(Progress::new(peer.into(), session, false)));
    }

    /// Forgets the incoming copy of `p` (it is now owned, or dropped);
    /// returns whether there was one.
    pub fn clear_inbound(&self, p: PartitionId) -> bool {
        lock(&self.inbound).remove(&p.0).is_some()
    }

    pub(super) fn inbound_session(&self, p: PartitionId) -> Option<u64> {
        lock(&self.inbound).get(&p.0).map(|x| x.session)
    }

    /// Transfers this node is sending now.
    pub fn active(&self) -> Vec<ActiveTransfer> {
        let row = |kind: Kind, p: &u32, x: &Arc<Progress>| ActiveTransfer {
            kind,
            partition: PartitionId(*p),
            to: x.peer.clone(),
            items: x.items.load(Ordering::Relaxed),
            bytes: x.bytes.load(Ordering::Relaxed),
            total: Some(x.total.load(Ordering::Relaxed)).filter(|t| *t != UNKNOWN),
            elapsed: x.started.elapsed(),
        };
        let mut v: Vec<ActiveTransfer> = lock(&self.outbound)
            .iter()
            .map(|(p, x)| row(Kind::Ownership, p, x))
            .collect();
        v.extend(
            lock(&self.hinting)
                .iter()
                .map(|(p, x)| row(Kind::Hinted, p, x)),
        );
        v.sort_by_key(|t| (t.partition, t.kind.as_str()));
        v
    }
}
