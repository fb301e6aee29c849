//! The cluster manager: one per node. It holds the node's ring, persists it,
//! gossips it, lets nodes join, runs the claimant's operations when this node
//! is the claimant, and keeps the local vnodes in step with ownership (start
//! what is owned, redirect what moved away, hand off what is pending).
//!
//! Gossip: every change is pushed to every member at once, and every
//! [`GOSSIP_INTERVAL`] the node exchanges rings with one random member. A
//! node joins every ring of its cluster it hears into its own
//! ([`super::state::join`]), and answers with the result when it differs
//! from what it was sent. Each exchange also tells the node which ring the
//! peer holds; the ring is *ready* when every member's ring covers it.
//!
//! Majority: the claimant's writes need its failure detector to see a
//! majority of the voters up, and `plan`, `commit`, `down` and the forced
//! removals ask every voter at that moment ([`super::majority`]).
//!
//! Time and chance are the node's own: every deadline and pause reads tokio's
//! clock (so a test on a paused runtime controls it), and every random choice
//! (cluster ids, handoff sessions, gossip partners, retry jitter) draws from
//! the node's RNG, seeded by [`ClusterConfig::seed`] when a test wants it
//! replayable. Every background task (gossip, the change loop, handoff
//! senders) belongs to the node and ends with [`Cluster::stop`].
//!
//! Left out: joining a node that is itself a member of a multi-node cluster
//! (refused).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::claimant::{self, Change, Plan, Staging};
use super::handoff::{self, Handoffs, Host};
use super::local::{self, Local, Verdict};
use super::majority::{self, Action, PeerView};
use super::router::{LocalFallback, Router};
use super::state::{MemberState, Merge, RingState, Transfer};
use super::transport::{
    Gossip, GossipReply, JoinRequest, PeerAnswer, PeerCall, PeerCallback, RingCodec, Transport,
};
use super::view::{Snapshot, View};
use super::watcher::{self, Liveness};
use crate::ring::PartitionId;
use crate::sync::lock;
use crate::vnode::{Mode, Store, Vnode, VnodeMaster};
use crate::{Error, Result};

/// How often a node exchanges rings with a random peer.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(1000);
const RING_KEY: &str = "ring";
/// How long plan and commit wait for the ring to become ready.
const READY_WAIT: Duration = Duration::from_secs(3);

/// Settings of the cluster layer.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's name.
    pub name: String,
    /// The address other nodes reach this node at.
    pub addr: String,
    /// Transfers per node and direction at once.
    pub handoff_concurrency: usize,
    /// Seeds the node's random choices; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Silence after which a peer counts as down (see [`watcher`]).
    pub detect_after: Duration,
}

pub(super) struct Inner<V: Vnode> {
    pub(super) me: String,
    /// This data directory's incarnation id.
    pub(super) incarnation: String,
    /// When this node last warned that another cluster counts it as a
    /// member (it lost its data directory), to warn once a minute.
    pub(super) foreign_warned: Mutex<Option<std::time::Instant>>,
    pub(super) addr: String,
    pub(super) store: Store,
    pub(super) master: VnodeMaster<V>,
    pub(super) view: View,
    pub(super) transport: Arc<dyn Transport>,
    codec: Arc<dyn RingCodec>,
    pub(super) router: Arc<Router<V>>,
    /// Serializes ring changes and their persistence.
    write: tokio::sync::Mutex<()>,
    /// The newest ring each peer is known to hold (joined, so it only
    /// grows): a peer has seen our ring when its ring covers ours.
    seen: Mutex<HashMap<String, RingState>>,
    /// Which peers answer heartbeats.
    liveness: Arc<Liveness>,
    /// This node is stopping cleanly: heartbeats and their answers say so.
    stopping: AtomicBool,
    staging: Mutex<Staging>,
    pub(super) handoffs: Handoffs,
    changed: watch::Sender<u64>,
    /// The node's random choices.
    rng: Mutex<StdRng>,
    /// Background tasks, ended by [`Cluster::stop`]; `None` once stopped.
    tasks: Mutex<Option<Vec<AbortHandle>>>,
}

/// The node's view of and part in the cluster. Cheap to clone.
pub struct Cluster<V: Vnode> {
    pub(super) inner: Arc<Inner<V>>,
}

impl<V: Vnode> Clone for Cluster<V> {
    fn clone(&self) -> Self {
        Cluster {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// The store key of the data directory's incarnation id.
const INCARNATION_KEY: &str = "incarnation";

fn new_cluster_id(rng: &mut StdRng) -> String {
    format!("{:016x}", rng.random::<u64>())
}

impl<V: Vnode> Cluster<V> {
    /// Loads the persisted ring (or makes a one-member ring), cleans up data
    /// of partitions this node does not own, and starts the owned vnodes.
    /// Other nodes are reached through `transport`; the ring is persisted
    /// in `store` in `codec`'s form.
    pub async fn open(
        config: ClusterConfig,
        store: Store,
        master: VnodeMaster<V>,
        transport: Arc<dyn Transport>,
        codec: Arc<dyn RingCodec>,
    ) -> Result<Cluster<V>> {
        let size = master.ring_size();
        let mut rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        // Made once per data directory: a member that comes back with a
        // new one lost its volume (and its counts).
        let incarnation = match store.get_meta(INCARNATION_KEY)? {
            Some(b) => String::from_utf8_lossy(&b).into_owned(),
            None => {
                // Not from `rng`: a simulated run's seeded stream must not
                // change with it (nothing depends on the value but equality).
                let id = format!("{:016x}", rand::rng().random::<u64>());
                store.put_meta(INCARNATION_KEY, id.as_bytes())?;
                id
            }
        };
        let ring = match store.get_meta(RING_KEY)? {
            Some(bytes) => {
                let ring = codec.decode(&bytes)?;
                if ring.size() != size {
                    return Err(Error::RingSizeMismatch {
                        dir: store.dir().to_path_buf(),
                        stored: u64::from(ring.size().get()),
                        requested: u64::from(size.get()),
                    });
                }
                ring
            }
            None => {
                let ring = RingState::singleton(
                    new_cluster_id(&mut rng),
                    size,
                    &config.name,
                    &config.addr,
                )
                .with_incarnation(&config.name, &incarnation);
                store.put_meta(RING_KEY, &codec.encode(&ring))?;
                ring
            }
        };
        if !ring.members.contains_key(&config.name) {
            return Err(Error::FailedPrecondition(format!(
                "the ring in {} belongs to other nodes ({}); start this node with its own name or another data directory",
                store.dir().display(),
                ring.members.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        // A directory made for another member (copied from its volume) must
        // not serve as this one: the ring records who joined with it.
        if let Some(recorded) = ring
            .members
            .get(&config.name)
            .and_then(|m| m.incarnation.as_deref())
            .filter(|r| *r != incarnation)
        {
            return Err(Error::FailedPrecondition(format!(
                "the data directory {} has incarnation {incarnation}, but the ring records {} as joined with incarnation {recorded}: it belongs to another member; start this node on its own data directory (or an empty one, to be replaced)",
                store.dir().display(),
                config.name
            )));
        }
        let view = View::new(ring.clone());
        let liveness = Arc::new(Liveness::new(&config.name, config.detect_after));
        liveness.watch(ring.members.keys().map(String::as_str));
        let router = Router::new(
            &config.name,
            view.clone(),
            master.clone(),
            Arc::clone(&transport),
            Arc::clone(&liveness),
        );
        let (changed, _) = watch::channel(ring.version);
        let conc = config.handoff_concurrency.max(1);
        let cluster = Cluster {
            inner: Arc::new(Inner {
                me: config.name,
                incarnation,
                foreign_warned: Mutex::new(None),
                addr: config.addr,
                store,
                master,
                view,
                transport,
                codec,
                router,
                write: tokio::sync::Mutex::new(()),
                seen: Mutex::new(HashMap::new()),
                liveness,
                stopping: AtomicBool::new(false),
                staging: Mutex::new(Staging::default()),
                handoffs: Handoffs::new(conc),
                changed,
                rng: Mutex::new(rng),
                tasks: Mutex::new(Some(Vec::new())),
            }),
        };
        let (w1, w2) = (
            Arc::downgrade(&cluster.inner),
            Arc::downgrade(&cluster.inner),
        );
        cluster.inner.router.set_local_fallback(LocalFallback {
            command: Box::new(move |p, cmd, reply| match w1.upgrade() {
                Some(inner) => handoff::fallback_command(&Cluster { inner }, p, cmd, reply),
                None => reply(Err(Error::ShuttingDown)),
            }),
            coverage: Box::new(move |ps, req, done| match w2.upgrade() {
                Some(inner) => handoff::fallback_coverage(&Cluster { inner }, ps, req, done),
                None => done(Vec::new()),
            }),
        });
        cluster.startup_cleanup(&ring).await?;
        Ok(cluster)
    }

    /// Applies [`local::decide`] to what the disk holds: owned partitions
    /// start as primaries; a complete incoming copy (marked) whose transfer
    /// the ring still lists starts as incoming again, with its session; any
    /// other data is a leftover (a handoff cut short, or sent away before a
    /// crash) and is dropped, so it can never be counted again.
    async fn startup_cleanup(&self, ring: &RingState) -> Result<()> {
        let me = self.inner.me.as_str();
        let store = &self.inner.store;
        let fallbacks = handoff::hinted::stored_fallbacks(store)?;
        for p in ring.size().partitions() {
            let marker = handoff::marker(store, p)?;
            let fallback = fallbacks.contains(&p);
            let here = Local {
                present: store.has_data(p),
                handing_off: false,
                incoming: marker.map(|_| false),
                fallback,
            };
            match local::decide(ring, me, p, here) {
                Verdict::Primary => {
                    self.inner.master.ensure_started(p)?;
                    if marker.is_some() {
                        handoff::delete_marker(store, p)?;
                    }
                    if fallback {
                        handoff::hinted::forget_fallback(self, p)?;
                    }
                }
                Verdict::Fallback => {
                    self.inner.master.ensure_started(p)?;
                    self.inner.handoffs.restore_fallback(p);
                }
                Verdict::Incoming => {
                    self.inner.master.ensure_started(p)?;
                    let from = ring.pending_of(p).map_or("", |t| t.from.as_str());
                    self.inner
                        .handoffs
                        .restore_incoming(p, from, marker.unwrap_or(0));
                }
                Verdict::Release | Verdict::DropIncoming => {
                    if here.present {
                        self.inner.master.reset(p).await?;
                        tracing::info!(partition = %p, "dropped data of a partition this node does not own");
                    }
                    if marker.is_some() {
                        handoff::delete_marker(store, p)?;
                    }
                    if fallback {
                        handoff::hinted::forget_fallback(self, p)?;
                    }
                }
                Verdict::HandingOff | Verdict::Nothing => {}
            }
        }
        Ok(())
    }

    /// Starts gossip, the claimant's loop and ownership reconciliation, after
    /// one quick exchange with the other members so a restarted node does
    /// not act on a stale ring.
    pub async fn start(&self) {
        let others = self.other_members();
        let pulls = others
            .iter()
            .map(|(n, a)| self.gossip_to(n.clone(), a.clone()));
        let _ =
            tokio::time::timeout(Duration::from_secs(3), futures::future::join_all(pulls)).await;
        self.reconcile().await;
        let c = self.clone();
        self.spawn(async move { c.gossip_loop().await });
        let c = self.clone();
        self.spawn(async move { c.change_loop().await });
        let c = self.clone();
        self.spawn(async move { c.heartbeat_loop().await });
        let c = self.clone();
        self.spawn(async move {
            loop {
                tokio::time::sleep(handoff::hinted::HINT_INTERVAL).await;
                handoff::hint_round(&c).await;
            }
        });
    }

    /// Runs `task` as one of the node's background tasks: it ends with
    /// [`Cluster::stop`] (or never starts, after it).
    pub(super) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.inner.tasks);
        let Some(tasks) = tasks.as_mut() else {
            return;
        };
        tasks.retain(|t| !t.is_finished());
        tasks.push(tokio::spawn(task).abort_handle());
    }

    /// Ends every background task of the node (gossip, the change loop,
    /// handoff senders, gossip pushes) and starts no more. Requests already
    /// running finish; the vnodes and the store are the caller's to stop.
    pub fn stop(&self) {
        let tasks = lock(&self.inner.tasks).take();
        for t in tasks.into_iter().flatten() {
            t.abort();
        }
    }

    /// A random number from the node's RNG, in `range`.
    pub(super) fn random(&self, range: std::ops::Range<u64>) -> u64 {
        lock(&self.inner.rng).random_range(range)
    }

    /// Name and address of every active member but this node.
    pub fn other_members(&self) -> Vec<(String, String)> {
        self.ring()
            .ring
            .active_members()
            .filter(|(n, _)| **n != self.inner.me)
            .map(|(n, m)| (n.clone(), m.addr.clone()))
            .collect()
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.inner.me
    }

    /// This node's data directory's incarnation id (made when it was first
    /// opened).
    pub fn incarnation(&self) -> &str {
        &self.inner.incarnation
    }

    /// The current ring.
    pub fn ring(&self) -> Arc<Snapshot> {
        self.inner.view.current()
    }

    /// The router over this cluster.
    pub fn router(&self) -> Arc<Router<V>> {
        Arc::clone(&self.inner.router)
    }

    /// The local vnode master.
    pub fn master(&self) -> &VnodeMaster<V> {
        &self.inner.master
    }

    /// How this node reaches the others.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// Transfers this node is sending now.
    pub fn inner_handoffs_active(&self) -> Vec<handoff::ActiveTransfer> {
        self.inner.handoffs.active()
    }

    /// What this node's finished transfers added up to.
    pub fn handoff_totals(&self) -> &handoff::Totals {
        &self.inner.handoffs.totals
    }

    /// Partitions whose vnode here is a fallback for a down owner.
    pub fn fallbacks(&self) -> Vec<PartitionId> {
        self.inner.handoffs.fallback_partitions()
    }

    /// Hints sealed here and not yet delivered, by partition.
    pub fn pending_hints(&self) -> Result<Vec<PartitionId>> {
        Ok(handoff::hinted::stored_hints(&self.inner.store)?
            .into_iter()
            .map(|h| h.partition)
            .collect())
    }

    /// Whether this node is the claimant.
    pub fn is_claimant(&self) -> bool {
        self.ring().ring.claimant == self.inner.me
    }

    /// Address of the claimant.
    pub fn claimant_addr(&self) -> Result<String> {
        let snap = self.ring();
        snap.addr(&snap.ring.claimant)
            .map(str::to_string)
            .ok_or_else(|| Error::Rpc("the claimant has no address".into()))
    }

    /// Active members this node's failure detector sees as down, sorted.
    pub fn unreachable(&self) -> Vec<String> {
        let snap = self.ring();
        self.inner
            .liveness
            .down()
            .into_iter()
            .filter(|n| snap.ring.state_of(n).is_some_and(|s| s.is_active()))
            .collect()
    }

    /// Whether this node is stopping cleanly.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Tells every member this node is stopping, so they count it down at
    /// once and send its partitions' requests to fallbacks; waits for their
    /// answers for at most one detection timeout. Its heartbeat answers say
    /// it too from now on.
    pub async fn say_goodbye(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let snap = self.ring();
        let mut answers = Vec::new();
        for (_, addr) in self.other_members() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.inner.transport.send(
                &addr,
                self.heartbeat(&snap),
                Box::new(move |r| {
                    let _ = tx.send(r.is_ok());
                }),
            );
            answers.push(rx);
        }
        let told = tokio::time::timeout(
            self.inner.liveness.timeout(),
            futures::future::join_all(answers),
        )
        .await
        .map(|r| r.into_iter().filter(|a| matches!(a, Ok(true))).count())
        .unwrap_or(0);
        tracing::info!(told, "told peers this node is stopping");
    }

    /// This node's heartbeat, saying whether it is stopping.
    fn heartbeat(&self, snap: &Snapshot) -> PeerCall {
        PeerCall::Heartbeat {
            from: self.inner.me.clone(),
            stopping: self.is_stopping(),
            cluster_id: snap.ring.cluster_id.clone(),
        }
    }

    /// Heartbeats every member each interval (see [`watcher`]), and wakes
    /// the change loop when a peer goes down or comes back.
    async fn heartbeat_loop(&self) {
        let every = watcher::heartbeat_interval(self.inner.liveness.timeout());
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut down = self.inner.liveness.down();
        loop {
            tick.tick().await;
            let snap = self.ring();
            let liveness = &self.inner.liveness;
            liveness.watch(snap.ring.members.keys().map(String::as_str));
            liveness.refresh();
            for (node, m) in snap.ring.members.iter() {
                if *node == self.inner.me {
                    continue;
                }
                let l = Arc::clone(liveness);
                let n = node.clone();
                self.inner.transport.send(
                    &m.addr,
                    self.heartbeat(&snap),
                    Box::new(move |r| {
                        if let Ok(PeerAnswer::Heartbeat { stopping }) = r {
                            l.heard(&n, stopping);
                        }
                    }),
                );
            }
            let now_down = liveness.down();
            if now_down != down {
                for n in now_down.iter().filter(|n| !down.contains(n)) {
                    tracing::warn!(node = %n, "peer is down (no heartbeat answer)");
                }
                for n in down.iter().filter(|n| !now_down.contains(n)) {
                    tracing::info!(node = %n, "peer is up again");
                }
                down = now_down;
                self.inner.changed.send_modify(|_| {});
            }
        }
    }

    /// Every active member has seen the current ring.
    pub fn ring_ready(&self) -> bool {
        self.ready_among(&[])
    }

    /// Every active member but those in `skip` has seen the current ring.
    fn ready_among(&self, skip: &[String]) -> bool {
        let snap = self.ring();
        let seen = lock(&self.inner.seen);
        snap.ring.active_members().all(|(n, _)| {
            *n == self.inner.me
                || skip.contains(n)
                || seen.get(n).is_some_and(|r| r.covers(&snap.ring))
        })
    }

    /// Notes that `node` holds `ring` (or a newer one).
    fn note_seen(&self, node: &str, ring: &RingState) {
        let mut seen = lock(&self.inner.seen);
        let e = seen.entry(node.to_string()).or_insert_with(|| ring.clone());
        if e.cluster_id != ring.cluster_id || e.size() != ring.size() {
            *e = ring.clone();
        } else if !e.covers(ring) {
            *e = super::state::join(e, ring);
        }
    }

    async fn install(&self, ring: RingState) -> Result<()> {
        self.install_as(ring, false).await
    }

    /// Persists and shows `ring`; `left` marks the one-member ring of a node
    /// just removed from its cluster.
    async fn install_as(&self, ring: RingState, left: bool) -> Result<()> {
        self.inner
            .store
            .put_meta(RING_KEY, &self.inner.codec.encode(&ring))?;
        let version = ring.version;
        if left {
            self.inner.view.set_left(ring);
        } else {
            self.inner.view.set(ring);
        }
        self.inner.changed.send_replace(version);
        Ok(())
    }

    /// Adopts `ring` if it is of this cluster and newer. Returns whether it was.
    pub async fn adopt(&self, ring: RingState) -> Result<bool> {
        let _w = self.inner.write.lock().await;
        let cur = self.ring();
        match super::state::merge(&cur.ring, &ring, &self.inner.me) {
            Merge::Ignore => Ok(false),
            Merge::Adopt(joined) => {
                if !joined.same_content(&ring) && !joined.same_content(&cur.ring) {
                    tracing::info!(
                        version = joined.version,
                        "joined a concurrent ring into this node's own"
                    );
                }
                self.install(joined).await?;
                Ok(true)
            }
            Merge::Reset => {
                // Removed from the cluster: start over alone, as riak does.
                tracing::warn!(
                    node = %self.inner.me,
                    ring_version = ring.version,
                    "removed from the cluster; now a one-member cluster serving no client \
                     requests until it joins a cluster or restarts"
                );
                let id = new_cluster_id(&mut lock(&self.inner.rng));
                let fresh = RingState::singleton(id, ring.size(), &self.inner.me, &self.inner.addr)
                    .with_incarnation(&self.inner.me, &self.inner.incarnation);
                lock(&self.inner.seen).clear();
                // Whatever this node still holds is no longer the cluster's:
                // after a leave every partition was handed off (a copy left
                // here was sent before a crash kept it from being deleted),
                // after a force-remove it was given up. Wiped before the
                // one-member ring is persisted, so a crash in between wipes
                // again on restart (the old ring loads, the removal is
                // learnt anew); and again after, for any command that was
                // still running. Fallback data is the cluster's, though:
                // one round of hinted handoff first, to the owners this
                // node knows (what no owner takes now goes with the rest).
                handoff::hint_round(self).await;
                self.wipe().await?;
                self.install_as(fresh, true).await?;
                self.wipe().await?;
                Ok(true)
            }
        }
    }

    /// Drops every vnode's data and every handoff marker of this node.
    async fn wipe(&self) -> Result<()> {
        for p in self.ring().ring.size().partitions() {
            if self.inner.store.has_data(p) || self.inner.master.is_running(p) {
                self.inner.master.reset(p).await?;
            }
            self.inner.handoffs.clear_inbound(p);
            handoff::delete_marker(&self.inner.store, p)?;
            handoff::hinted::forget_fallback(self, p)?;
        }
        handoff::hinted::drop_hints(&self.inner.store)?;
        Ok(())
    }

    /// Applies a claimant change: `f` returns the new ring or `None`.
    /// Refused (`Busy`, so a handoff asks again later) while this node's
    /// failure detector does not see a majority of the voters up: a
    /// claimant cut off on a minority side stops writing once it notices
    /// (see [`majority`]).
    async fn mutate(
        &self,
        f: impl FnOnce(&RingState) -> Result<Option<RingState>>,
    ) -> Result<Option<RingState>> {
        if !self.sees_majority() {
            return Err(Error::Busy(format!(
                "'{}' does not reach a majority of the cluster's valid members; the ring is not changed from here",
                self.inner.me
            )));
        }
        self.write_ring(f).await
    }

    /// [`Self::mutate`] without the majority check: only for a `down` that
    /// a person asked to make without one.
    async fn write_ring(
        &self,
        f: impl FnOnce(&RingState) -> Result<Option<RingState>>,
    ) -> Result<Option<RingState>> {
        let _w = self.inner.write.lock().await;
        let cur = self.ring();
        let Some(next) = f(&cur.ring)? else {
            return Ok(None);
        };
        self.install(next.clone()).await?;
        drop(_w);
        self.push_all();
        Ok(Some(next))
    }

    fn push_all(&self) {
        let snap = self.ring();
        // Removed members get the push too: that is how they learn of it.
        for (n, m) in snap
            .ring
            .members
            .iter()
            .filter(|(n, _)| **n != self.inner.me)
        {
            let c = self.clone();
            let (n, a) = (n.clone(), m.addr.clone());
            self.spawn(async move { c.gossip_to(n, a).await });
        }
    }

    /// Whether this node's failure detector sees a majority of the voters
    /// (itself included) up.
    pub fn sees_majority(&self) -> bool {
        majority::sees(&self.ring().ring, &self.inner.me, &self.unreachable())
    }

    /// `member-status`'s advice on where membership changes can be made.
    pub fn majority_advice(&self) -> String {
        majority::advice(&self.ring().ring, &self.inner.me, &self.unreachable())
    }

    /// [`Self::require_majority`], asked again for up to twice the
    /// detection timeout while it refuses: a `down` right after a node died
    /// should not fail only because the failure detectors have not had the
    /// time to notice yet.
    async fn require_majority_soon(&self, action: Action<'_>) -> Result<()> {
        let deadline = Instant::now() + 2 * self.inner.liveness.timeout();
        loop {
            match self.require_majority(action).await {
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "no majority yet; asking again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                r => return r,
            }
        }
    }

    /// Asks every voter at once (2 s at most) what its failure detector
    /// sees, and refuses `action` unless [`majority::check`] allows it.
    async fn require_majority(&self, action: Action<'_>) -> Result<()> {
        self.require_majority_for(&[action]).await
    }

    /// [`Self::require_majority`] for several actions, on one round of
    /// answers.
    async fn require_majority_for(&self, actions: &[Action<'_>]) -> Result<()> {
        let snap = self.ring();
        let voters = majority::voters(&snap.ring);
        let asks = voters.iter().filter(|v| **v != self.inner.me).map(|v| {
            let addr = snap.addr(v).map(str::to_string);
            let transport = Arc::clone(&self.inner.transport);
            let me = self.inner.me.clone();
            let v = v.clone();
            async move {
                let view = match addr {
                    Some(addr) => {
                        match tokio::time::timeout(Duration::from_secs(2), transport.members(&addr))
                            .await
                        {
                            // Only a member of this cluster (it lists us)
                            // has a say.
                            Ok(Ok(view)) if view.members.contains(&me) => Some(PeerView {
                                unreachable: view.unreachable,
                            }),
                            _ => None,
                        }
                    }
                    None => None,
                };
                (v, view)
            }
        });
        let mut answers: std::collections::BTreeMap<String, Option<PeerView>> =
            futures::future::join_all(asks).await.into_iter().collect();
        answers.insert(
            self.inner.me.clone(),
            Some(PeerView {
                unreachable: self.unreachable(),
            }),
        );
        for action in actions {
            majority::check(&snap.ring, &self.inner.me, *action, &answers)?;
        }
        Ok(())
    }

    pub(super) async fn gossip_to(&self, node: String, addr: String) {
        let ring = self.ring();
        let msg = Gossip {
            from: self.inner.me.clone(),
            ring: ring.ring.clone(),
        };
        match self.inner.transport.gossip(&addr, msg).await {
            // An empty id is a node from before the field: same cluster.
            Ok(reply)
                if !reply.cluster_id.is_empty() && reply.cluster_id != ring.ring.cluster_id =>
            {
                // Another cluster under that name and address (a member
                // restarted on an empty data directory): for this cluster it
                // is as good as unreachable. A joining node has not adopted
                // our ring yet; it is just not heard from.
                // The failure detector counts it down: it refuses our
                // heartbeats for the same reason.
                tracing::debug!(%node, "answered for another cluster");
            }
            Ok(reply) => {
                // No ring back: theirs, after taking ours, is ours.
                self.note_seen(&node, reply.ring.as_ref().unwrap_or(&ring.ring));
                self.heard_from(&node).await;
                if let Some(theirs) = reply.ring
                    && let Err(e) = self.adopt(theirs).await
                {
                    tracing::warn!(%node, error = %e, "could not adopt gossiped ring");
                }
            }
            Err(e) => {
                tracing::debug!(%node, error = %e, "gossip failed");
            }
        }
    }

    /// Handles a gossip push: adopt if newer, and answer with ours if ours is.
    pub async fn handle_gossip(&self, msg: Gossip) -> Result<GossipReply> {
        let theirs = msg.ring;
        if theirs.cluster_id != self.ring().ring.cluster_id && self.missed_own_join(&theirs) {
            // This node's join went through but its answer was lost: take
            // the cluster's ring now, as the join would have.
            tracing::info!(from = %msg.from, "joined a cluster whose answer to the join was lost");
            let _w = self.inner.write.lock().await;
            lock(&self.inner.seen).clear();
            self.install(theirs.clone()).await?;
        }
        let same_cluster = theirs.cluster_id == self.ring().ring.cluster_id;
        if !same_cluster
            && theirs
                .members
                .get(&self.inner.me)
                .is_some_and(|m| m.state.is_active() && m.state != MemberState::Joining)
        {
            // A cluster counts this node as its member, but this data
            // directory never was (the member's volume was lost): acting as
            // that member would serve its partitions with none of its data.
            let mut last = lock(&self.inner.foreign_warned);
            if last.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                *last = Some(std::time::Instant::now());
                tracing::warn!(
                    from = %msg.from,
                    cluster = %theirs.cluster_id,
                    incarnation = %self.inner.incarnation,
                    "a cluster counts this node as a member, but its data directory is new (the member's volume was lost): it will not act as that member; replace it (force-remove it from a member, then join this node again; the operator does this itself)"
                );
            }
        }
        if same_cluster {
            self.note_seen(&msg.from, &theirs);
            self.adopt(theirs.clone()).await?;
            self.heard_from(&msg.from).await;
        }
        let mine = self.ring();
        // Ours is theirs joined with whatever we had: send it back unless
        // it is exactly what they sent.
        let differs = !mine.ring.same_content(&theirs) || mine.ring.version != theirs.version;
        Ok(GossipReply {
            cluster_id: mine.ring.cluster_id.clone(),
            version: mine.ring.version,
            ring: (same_cluster && differs).then(|| mine.ring.clone()),
        })
    }

    /// Whether `theirs` is the ring of a cluster this node asked to join: it
    /// lists this node, at this address, as joining, while this node is still
    /// alone in a cluster of its own. Without this, a join whose reply was
    /// lost left the node `joining` in the cluster's ring but unaware of it,
    /// and the cluster never ready again (found by the simulator, seed 30).
    fn missed_own_join(&self, theirs: &RingState) -> bool {
        let alone = self.other_members().is_empty();
        let listed = theirs
            .members
            .get(&self.inner.me)
            .is_some_and(|m| m.state == MemberState::Joining && m.addr == self.inner.addr);
        alone && listed && theirs.size() == self.ring().ring.size()
    }

    /// Serves one call of a peer's stream: a command or coverage request for
    /// local partitions (forwarded on if they moved), or a copy forwarded by
    /// a handing-off peer.
    pub fn serve_peer(&self, call: PeerCall, reply: PeerCallback) {
        let snap = self.ring();
        let size = snap.ring.size().get();
        let cluster_id = match &call {
            PeerCall::Command { cluster_id, .. }
            | PeerCall::Coverage { cluster_id, .. }
            | PeerCall::Heartbeat { cluster_id, .. } => cluster_id,
        };
        if !cluster_id.is_empty() && *cluster_id != snap.ring.cluster_id {
            // A node that left (or never joined) must not serve a cluster's
            // partitions: the sender's ring is stale and it will look again.
            let e = || Error::Moved(format!("{} is not a member of that cluster", self.inner.me));
            return match call {
                PeerCall::Coverage { partitions, .. } => reply(Ok(PeerAnswer::Coverage(
                    partitions.into_iter().map(|p| (p, Err(e()))).collect(),
                ))),
                PeerCall::Command { .. } | PeerCall::Heartbeat { .. } => reply(Err(e())),
            };
        }
        match call {
            PeerCall::Heartbeat { from, stopping, .. } => {
                if stopping {
                    tracing::info!(node = %from, "peer is stopping");
                    self.inner.liveness.goodbye(&from);
                    self.inner.changed.send_modify(|_| {});
                }
                reply(Ok(PeerAnswer::Heartbeat {
                    stopping: self.is_stopping(),
                }));
            }
            PeerCall::Command {
                partition,
                cmd,
                hops,
                session,
                fallback,
                ..
            } => {
                if partition.0 >= size {
                    return reply(Err(Error::InvalidPartition(partition.0.to_string())));
                }
                let reply = Box::new(move |r: Result<Vec<u8>>| reply(r.map(PeerAnswer::Reply)));
                if fallback {
                    handoff::fallback_command(self, partition, cmd, reply);
                } else if session != 0 {
                    handoff::forwarded_command(self, partition, session, &cmd, reply);
                } else {
                    self.inner
                        .router
                        .command_encoded(partition, cmd, hops, reply);
                }
            }
            PeerCall::Coverage {
                partitions,
                req,
                fallback: true,
                ..
            } => {
                let parts: Vec<PartitionId> =
                    partitions.into_iter().filter(|p| p.0 < size).collect();
                handoff::fallback_coverage(
                    self,
                    parts,
                    req,
                    Box::new(move |answers| reply(Ok(PeerAnswer::Coverage(answers)))),
                );
            }
            PeerCall::Coverage {
                partitions,
                req,
                hops,
                ..
            } => {
                let parts: Vec<PartitionId> =
                    partitions.into_iter().filter(|p| p.0 < size).collect();
                if parts.is_empty() {
                    return reply(Ok(PeerAnswer::Coverage(Vec::new())));
                }
                let want = parts.len();
                let acc = Arc::new(Mutex::new((Vec::with_capacity(want), Some(reply))));
                self.inner.router.coverage_encoded(
                    parts,
                    req,
                    hops,
                    Arc::new(move |p, r| {
                        let mut acc = lock(&acc);
                        acc.0.push((p, r));
                        if acc.0.len() == want
                            && let Some(reply) = acc.1.take()
                        {
                            reply(Ok(PeerAnswer::Coverage(std::mem::take(&mut acc.0))));
                        }
                    }),
                );
            }
        }
    }

    async fn gossip_loop(&self) {
        let mut tick = tokio::time::interval(GOSSIP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let others = self.other_members();
            let pick = others.choose(&mut *lock(&self.inner.rng)).cloned();
            if let Some((n, a)) = pick {
                self.gossip_to(n, a).await;
            }
            if self.is_claimant() {
                self.claimant_step().await;
            }
        }
    }

    /// Reacts to every ring change: vnodes, handoffs, and the claimant's step.
    async fn change_loop(&self) {
        let mut rx = self.inner.changed.subscribe();
        loop {
            self.reconcile().await;
            if self.is_claimant() {
                self.claimant_step().await;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    async fn claimant_step(&self) {
        let seen = lock(&self.inner.seen).clone();
        let unreachable: HashSet<String> = self.unreachable().into_iter().collect();
        let r = self
            .mutate(|ring| {
                Ok(claimant::advance(ring, &|n| {
                    seen.get(n).is_some_and(|r| r.covers(ring)) || unreachable.contains(n)
                }))
            })
            .await;
        match r {
            // No majority seen: the step waits until there is one.
            Ok(_) | Err(Error::Busy(_)) => {}
            Err(e) => tracing::warn!(error = %e, "claimant step failed"),
        }
    }

    /// Keeps local vnodes in step with the ring: [`local::decide`] for each
    /// partition, from what this node knows in memory.
    async fn reconcile(&self) {
        let snap = self.ring();
        let me = self.inner.me.as_str();
        let master = &self.inner.master;
        let handoffs = &self.inner.handoffs;
        // No vnode becomes or stops being a fallback while its fate is
        // decided from that.
        let _fallbacks = handoffs.fallback_guard().await;
        for p in snap.ring.size().partitions() {
            let here = Local {
                present: master.is_running(p),
                handing_off: handoffs.handing_off(p),
                incoming: handoffs.incoming(p),
                fallback: handoffs.is_fallback(p),
            };
            match local::decide(&snap.ring, me, p, here) {
                Verdict::Fallback => {
                    if let Err(e) = master.ensure_started(p) {
                        tracing::error!(partition = %p, error = %e, "cannot start fallback vnode");
                    }
                }
                Verdict::Primary => {
                    if let Err(e) = master.ensure_started(p) {
                        tracing::error!(partition = %p, error = %e, "cannot start vnode");
                        continue;
                    }
                    if here.fallback
                        && let Err(e) = handoff::hinted::forget_fallback(self, p)
                    {
                        tracing::warn!(partition = %p, error = %e, "could not forget fallback marker");
                    }
                    if handoffs.unmark_redirected(p) {
                        let _ = master.control(p, |_, _, mode| *mode = Mode::Normal).await;
                    }
                    // The flip made the incoming copy the primary.
                    if handoffs.clear_inbound(p) {
                        let _ = handoff::delete_marker(&self.inner.store, p);
                    }
                }
                Verdict::Incoming | Verdict::HandingOff | Verdict::Nothing => {}
                Verdict::Release | Verdict::DropIncoming => {
                    // Ownership moved away without this node sending it (a
                    // join discarding local data, a forced reassignment, a
                    // flip learnt by gossip), or an incoming copy's transfer
                    // was cancelled (nobody will flip it here; a new transfer
                    // starts clean): drop the local copy, send strays to the
                    // owner.
                    handoffs.clear_inbound(p);
                    let _ = handoff::delete_marker(&self.inner.store, p);
                    let redirect = handoff::redirector(self);
                    let r = master
                        .control(p, move |v, ctx, mode| {
                            *mode = Mode::Redirect(redirect);
                            v.delete(ctx)
                        })
                        .await;
                    match r {
                        Ok(Ok(())) => handoffs.mark_redirected(p),
                        Ok(Err(e)) | Err(e) => {
                            tracing::warn!(partition = %p, error = %e, "could not release vnode")
                        }
                    }
                }
            }
        }
        for t in &snap.ring.pending {
            if t.from == me && !self.inner.handoffs.outbound_active(t.partition) {
                handoff::spawn_sender(self.clone(), t.clone());
            }
        }
    }

    // ----- joining -------------------------------------------------------

    /// On the joining node: asks the member at `target` to add this node.
    pub async fn join(&self, target: &str) -> Result<String> {
        let snap = self.ring();
        let others = snap
            .ring
            .active_members()
            .filter(|(n, _)| **n != self.inner.me)
            .count();
        if others > 0 {
            return Err(Error::FailedPrecondition(format!(
                "Failed: '{}' is already a member of a cluster",
                self.inner.me
            )));
        }
        if target == self.inner.addr {
            return Err(Error::FailedPrecondition(
                "Failed: a node cannot join itself".into(),
            ));
        }
        let req = JoinRequest {
            node: self.inner.me.clone(),
            addr: self.inner.addr.clone(),
            ring_size: snap.ring.size().get(),
            incarnation: self.inner.incarnation.clone(),
        };
        let ring = self
            .inner
            .transport
            .join(target, req)
            .await
            .map_err(|e| match e {
                Error::PermissionDenied(_) => Error::FailedPrecondition(format!(
                    "Failed: {target} refused this node's cluster cookie; nodes of a cluster must share one cookie"
                )),
                Error::Rpc(why) => Error::Rpc(format!("Failed: {target} is not reachable: {why}")),
                e => Error::FailedPrecondition(e.to_string()),
            })?;
        let target_name = ring
            .members
            .iter()
            .find(|(_, m)| m.addr == target)
            .map_or_else(|| ring.claimant.clone(), |(n, _)| n.clone());
        {
            let _w = self.inner.write.lock().await;
            lock(&self.inner.seen).clear();
            self.install(ring).await?;
        }
        self.push_all();
        Ok(format!(
            "Success: staged join request for '{}' to '{}'",
            self.inner.me, target_name
        ))
    }

    /// On a member: lets `req.node` join (forwarded to the claimant).
    pub async fn handle_join(&self, req: JoinRequest) -> Result<RingState> {
        if !self.is_claimant() {
            let addr = self.claimant_addr()?;
            return self
                .inner
                .transport
                .join(&addr, req)
                .await
                .map_err(|e| Error::FailedPrecondition(e.to_string()));
        }
        let size = self.ring().ring.size();
        if req.ring_size != size.get() {
            return Err(Error::FailedPrecondition(format!(
                "Failed: '{}' has a ring of size {}, this cluster {size}; nodes of a cluster need the same ring size",
                req.node, req.ring_size
            )));
        }
        if req.node == self.inner.me {
            return Err(Error::FailedPrecondition(format!(
                "Failed: '{}' is this node's own name",
                req.node
            )));
        }
        if req.node.is_empty() || req.addr.is_empty() {
            return Err(Error::InvalidArgument(
                "join needs a node name and address".into(),
            ));
        }
        let node = req.node.clone();
        let ring = self
            .mutate(|ring| {
                let incarnation = Some(req.incarnation.as_str()).filter(|i| !i.is_empty());
                claimant::add_joining(ring, &req.node, &req.addr, incarnation).map(Some)
            })
            .await?
            .ok_or_else(|| Error::Rpc("join produced no ring".into()))?;
        lock(&self.inner.staging).stage(&ring, Change::Join(node))?;
        Ok(ring)
    }

    // ----- the claimant's operations -------------------------------------

    fn require_claimant(&self) -> Result<()> {
        if self.is_claimant() {
            Ok(())
        } else {
            Err(Error::FailedPrecondition(format!(
                "this node is not the claimant ({} is)",
                self.ring().ring.claimant
            )))
        }
    }

    /// Stages a change (claimant only). Dropping a member without handoff
    /// needs a majority that sees it unreachable, as `down` does.
    pub async fn stage(&self, change: Change) -> Result<String> {
        self.require_claimant()?;
        // A member already marked down had its majority then.
        if let Change::ForceRemove(n) | Change::ForceReplace { old: n, .. } = &change
            && self.ring().ring.state_of(n) != Some(MemberState::Down)
        {
            self.require_majority_soon(Action::ForceRemove(n)).await?;
        }
        let ring = self.ring();
        lock(&self.inner.staging).stage(&ring.ring, change)
    }

    /// Waits a little for every member to have seen the current ring: a
    /// plan right after a join would otherwise be refused for a gossip round
    /// that is already on its way.
    ///
    /// Members this node's failure detector sees as down do not hold a plan
    /// back (riak would wait for them to be marked down): the caller has
    /// checked that a majority is reached, so the other side can write
    /// nothing, and what they hold joins the new ring when they are back.
    /// Joining members are the exception: one that has not seen the ring
    /// that lists it (its join's answer lost, and it answers as a cluster
    /// of its own) must not be made a member that cannot learn it is one
    /// (the simulator, seeds 34 and 83).
    async fn settle_ready(&self) -> bool {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            let snap = self.ring();
            let skip: Vec<String> = self
                .unreachable()
                .into_iter()
                .filter(|n| snap.ring.state_of(n) != Some(MemberState::Joining))
                .collect();
            if self.ready_among(&skip) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.push_all();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Computes the plan of the staged changes (claimant only); `None` when
    /// nothing is staged, which riak reports ("There are no staged changes")
    /// without failing.
    pub async fn plan(&self) -> Result<(Option<Plan>, RingState)> {
        self.require_claimant()?;
        if lock(&self.inner.staging).changes().is_empty() {
            return Ok((None, self.ring().ring.clone()));
        }
        self.require_majority(Action::Plan).await?;
        let ready = self.settle_ready().await;
        let ring = self.ring();
        let plan = lock(&self.inner.staging)
            .make_plan(&ring.ring, ready)?
            .clone();
        Ok((Some(plan), ring.ring.clone()))
    }

    /// Commits the last plan shown (claimant only).
    pub async fn commit(&self, plan_id: Option<&str>) -> Result<RingState> {
        self.require_claimant()?;
        // The commit, and each member it drops that is not down yet (a down
        // one had its majority then), on one round of answers.
        let ring = self.ring();
        let dropped: Vec<String> = lock(&self.inner.staging)
            .changes()
            .iter()
            .filter_map(|c| match c {
                Change::ForceRemove(n) | Change::ForceReplace { old: n, .. }
                    if ring.ring.state_of(n) != Some(MemberState::Down) =>
                {
                    Some(n.clone())
                }
                _ => None,
            })
            .collect();
        let mut actions = vec![Action::Commit];
        actions.extend(dropped.iter().map(|n| Action::ForceRemove(n)));
        self.require_majority_for(&actions).await?;
        let ready = self.settle_ready().await;
        let staging = &self.inner.staging;
        self.mutate(|ring| lock(staging).commit(ring, ready, plan_id).map(Some))
            .await?
            .ok_or_else(|| Error::Rpc("commit produced no ring".into()))
    }

    /// Marks the unreachable member `node` down (riak's `down`); see
    /// [`claimant::mark_down`]. Run by the claimant, or by any member when
    /// `node` is the claimant itself. Needs a majority that sees `node`
    /// unreachable, unless `without_majority` (the person vouches that it is
    /// dead: a cluster of two that lost one has no majority left to ask).
    pub async fn down(&self, node: &str, without_majority: bool) -> Result<String> {
        let up = || {
            Error::FailedPrecondition(format!(
                "Failed: '{node}' is up; only an unreachable node can be marked down"
            ))
        };
        if node == self.inner.me {
            return Err(up());
        }
        let addr = self.ring().addr(node).map(str::to_string).ok_or_else(|| {
            Error::FailedPrecondition(format!("Failed: '{node}' is not a member of the cluster"))
        })?;
        if self.answers(&addr).await {
            return Err(up());
        }
        let me = self.inner.me.clone();
        let f = |ring: &RingState| claimant::mark_down(ring, node, &me).map(Some);
        if without_majority {
            tracing::warn!(%node, "marking down without a majority, as asked");
            self.write_ring(f).await?;
        } else {
            self.require_majority_soon(Action::Down(node)).await?;
            self.mutate(f).await?;
        }
        tracing::warn!(%node, "marked down");
        Ok(format!("Success: '{node}' marked as down"))
    }

    /// Whether the node at `addr` answers, within 2 s, as a member of this
    /// node's cluster. A node restarted on an empty data directory answers
    /// too, but as a cluster of its own: for this cluster it is gone.
    async fn answers(&self, addr: &str) -> bool {
        let call = self.inner.transport.members(addr);
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(view)) => view.members.iter().any(|m| *m == self.inner.me),
            _ => false,
        }
    }

    /// The claimant marks a down member up again once it is heard from.
    async fn heard_from(&self, node: &str) {
        if !self.is_claimant() || self.ring().ring.state_of(node) != Some(MemberState::Down) {
            return;
        }
        match self.mutate(|ring| Ok(claimant::mark_up(ring, node))).await {
            Ok(Some(_)) => tracing::info!(%node, "down member is back; marked up"),
            Ok(None) => {}
            Err(e) => tracing::warn!(%node, error = %e, "could not mark up"),
        }
    }

    /// Drops the staged changes and removes the joining members, as riak's
    /// `cluster clear` does (claimant only); see [`claimant::remove_joining`].
    pub async fn clear(&self) -> Result<()> {
        self.require_claimant()?;
        lock(&self.inner.staging).clear();
        self.mutate(|ring| Ok(claimant::remove_joining(ring)))
            .await?;
        Ok(())
    }

    /// Flips `t` once its handoff is complete (claimant only). Returns the
    /// ring afterwards.
    pub async fn complete_transfer(&self, t: &Transfer) -> Result<RingState> {
        self.require_claimant()?;
        if t.partition.0 >= self.ring().ring.size().get() {
            return Err(Error::InvalidPartition(t.partition.0.to_string()));
        }
        self.mutate(|ring| claimant::complete_transfer(ring, t.partition, &t.from, &t.to))
            .await?;
        Ok(self.ring().ring.clone())
    }
}

impl<V: Vnode> Host for Cluster<V> {
    type V = V;

    fn me(&self) -> &str {
        &self.inner.me
    }

    fn ring(&self) -> Arc<Snapshot> {
        self.inner.view.current()
    }

    fn master(&self) -> &VnodeMaster<V> {
        &self.inner.master
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    fn router(&self) -> Arc<Router<V>> {
        Arc::clone(&self.inner.router)
    }

    fn handoffs(&self) -> &Handoffs {
        &self.inner.handoffs
    }

    fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn(task);
    }

    fn random(&self, range: std::ops::Range<u64>) -> u64 {
        Cluster::random(self, range)
    }

    fn is_claimant(&self) -> bool {
        Cluster::is_claimant(self)
    }

    fn claimant_addr(&self) -> Result<String> {
        Cluster::claimant_addr(self)
    }

    fn flip_here(&self, t: &Transfer) -> impl Future<Output = Result<RingState>> + Send {
        let (c, t) = (self.clone(), t.clone());
        async move { c.complete_transfer(&t).await }
    }

    fn adopt_ring(&self, ring: RingState) -> impl Future<Output = Result<bool>> + Send {
        let c = self.clone();
        async move { c.adopt(ring).await }
    }

    fn gossip_now(&self, node: String, addr: String) -> impl Future<Output = ()> + Send {
        let c = self.clone();
        async move { c.gossip_to(node, addr).await }
    }

    fn is_up(&self, node: &str) -> bool {
        self.inner.liveness.is_up(node)
    }

    fn recheck(&self) {
        // The change loop reconciles on every send, even of the same version.
        self.inner.changed.send_modify(|_| {});
    }
}
