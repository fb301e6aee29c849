//! The failure detector (riak_core's node watcher): which peers this node
//! can reach now.
//!
//! Every node sends a heartbeat to every member at [`heartbeat_interval`] on
//! the peer stream, the same path its commands take; a peer is *up* while
//! one of its answers arrived within the detection timeout (one second by
//! default), *down* after that much silence, and up again with its next
//! answer. A node that stops cleanly says so first (a heartbeat marked
//! stopping, and its answers say it too until it is gone), so its peers mark
//! it down at once instead of waiting out the timeout; a restarted node's
//! first answer, no longer stopping, brings it back.
//!
//! Why a plain deadline and not phi-accrual: the nodes talk over a data
//! centre or pod network (or loopback), where a heartbeat's delay is small
//! and steady; a fixed deadline makes the detection window a number a user
//! can read and configure (the availability promise is "adds fail for at
//! most the detection window"), and makes this module exact under a paused
//! clock. Phi-accrual earns its keep on jittery wide-area links, which a
//! ring of vnodes does not span.
//!
//! Only answers to this node's own heartbeats count: a heartbeat received
//! from a peer proves the peer reaches us, not that we reach it (a one-way
//! partition). A peer never heard yet counts as up for one timeout after it
//! is first watched, so a node that just started does not treat every member
//! as down.
//!
//! This view is local and separate from the membership state `down`, which
//! only an administrator sets. Left out: sharing views between nodes (each
//! node judges for itself, as riak's node watcher does for its own node).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

/// The default detection timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often heartbeats go out for a detection `timeout`: five per timeout,
/// so one or two lost heartbeats do not mark a peer down.
pub fn heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / 5).max(Duration::from_millis(10))
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    /// When this node began watching the peer.
    since: Instant,
    /// The last answer to one of this node's heartbeats.
    heard: Option<Instant>,
    /// The peer said it is stopping.
    stopping: bool,
}

/// The pure detector: what was heard from whom and when. Time is passed in.
#[derive(Clone, Debug)]
pub struct Watcher {
    timeout: Duration,
    peers: HashMap<String, Peer>,
}

impl Watcher {
    /// Watches nobody yet; peers are down after `timeout` of silence.
    pub fn new(timeout: Duration) -> Watcher {
        Watcher {
            timeout,
            peers: HashMap::new(),
        }
    }

    /// The detection timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Watches exactly `nodes` from now on: new ones start with a grace of
    /// one timeout, ones no longer listed are forgotten.
    pub fn watch<'a>(&mut self, nodes: impl IntoIterator<Item = &'a str>, now: Instant) {
        let keep: Vec<&str> = nodes.into_iter().collect();
        self.peers.retain(|n, _| keep.contains(&n.as_str()));
        for n in keep {
            self.peers.entry(n.to_string()).or_insert(Peer {
                since: now,
                heard: None,
                stopping: false,
            });
        }
    }

    /// `node` answered a heartbeat at `now`, saying whether it is stopping.
    pub fn heard(&mut self, node: &str, now: Instant, stopping: bool) {
        if let Some(p) = self.peers.get_mut(node) {
            p.heard = Some(now);
            p.stopping = stopping;
        }
    }

    /// `node` said it is stopping: down at once, until it answers again
    /// without saying so.
    pub fn goodbye(&mut self, node: &str) {
        if let Some(p) = self.peers.get_mut(node) {
            p.stopping = true;
        }
    }

    /// Whether `node` is up at `now`. A node not watched is not up: it is
    /// no member this node heartbeats (the node itself is the caller's to
    /// count).
    pub fn is_up(&self, node: &str, now: Instant) -> bool {
        self.peers.get(node).is_some_and(|p| {
            let last = p.heard.map_or(p.since, |h| h.max(p.since));
            !p.stopping && now.saturating_duration_since(last) <= self.timeout
        })
    }

    /// The watched nodes that are down at `now`, sorted.
    pub fn down(&self, now: Instant) -> Vec<String> {
        let mut out: Vec<String> = self
            .peers
            .keys()
            .filter(|n| !self.is_up(n, now))
            .cloned()
            .collect();
        out.sort();
        out
    }
}

/// A [`Watcher`] shared by a node's tasks, reading tokio's clock (so a
/// paused runtime controls it).
///
/// Requests ask [`Liveness::is_up`] for every replica, so it reads a
/// snapshot of the down set under a read lock; the snapshot is taken again
/// on every heartbeat tick ([`Liveness::refresh`]) and at once when a peer
/// says goodbye or answers again, so a silence is noticed at most one
/// heartbeat interval after the timeout.
#[derive(Debug)]
pub struct Liveness {
    me: String,
    inner: Mutex<Watcher>,
    down: RwLock<Arc<BTreeSet<String>>>,
}

impl Liveness {
    /// The detector of node `me`.
    pub fn new(me: &str, timeout: Duration) -> Liveness {
        Liveness {
            me: me.to_string(),
            inner: Mutex::new(Watcher::new(timeout)),
            down: RwLock::new(Arc::new(BTreeSet::new())),
        }
    }

    /// Takes the snapshot of the down set again; returns it.
    pub fn refresh(&self) -> Arc<BTreeSet<String>> {
        let down: Arc<BTreeSet<String>> =
            Arc::new(self.lock().down(Instant::now()).into_iter().collect());
        *self
            .down
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&down);
        down
    }

    /// The watched nodes down, as of the last snapshot (for a caller that
    /// asks about many nodes at once).
    pub fn down_set(&self) -> Arc<BTreeSet<String>> {
        Arc::clone(
            &self
                .down
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watcher> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The detection timeout.
    pub fn timeout(&self) -> Duration {
        self.lock().timeout()
    }

    /// See [`Watcher::watch`]; this node itself is never watched.
    pub fn watch<'a>(&self, nodes: impl IntoIterator<Item = &'a str>) {
        let me = self.me.as_str();
        self.lock()
            .watch(nodes.into_iter().filter(|n| *n != me), Instant::now());
    }

    /// See [`Watcher::heard`].
    pub fn heard(&self, node: &str, stopping: bool) {
        self.lock().heard(node, Instant::now(), stopping);
        // Back (or stopping): requests should know now, not next tick.
        if self.down_set().contains(node) != stopping {
            self.refresh();
        }
    }

    /// See [`Watcher::goodbye`].
    pub fn goodbye(&self, node: &str) {
        self.lock().goodbye(node);
        self.refresh();
    }

    /// Whether `node` is up, as of the last snapshot; this node always is.
    pub fn is_up(&self, node: &str) -> bool {
        node == self.me || !self.down_set().contains(node)
    }

    /// The watched nodes down, as of the last snapshot, sorted.
    pub fn down(&self) -> Vec<String> {
        self.down_set().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(1000);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_peer_is_down_after_one_timeout_of_silence_and_up_with_its_next_answer() {
        let t0 = Instant::now();
        let mut w = Watcher::new(T);
        w.watch(["b"], t0);
        // Never heard: up for one timeout (a node just started), then down.
        assert!(w.is_up("b", t0 + ms(1000)));
        assert!(!w.is_up("b", t0 + ms(1001)));
        w.heard("b", t0 + ms(1500), false);
        assert!(w.is_up("b", t0 + ms(2500)));
        assert!(!w.is_up("b", t0 + ms(2501)));
        assert_eq!(w.down(t0 + ms(2501)), vec!["b".to_string()]);
        w.heard("b", t0 + ms(3000), false);
        assert!(w.is_up("b", t0 + ms(3000)));
        assert!(w.down(t0 + ms(3000)).is_empty());
    }

    #[test]
    fn a_goodbye_is_down_at_once_until_an_answer_says_it_is_serving_again() {
        let t0 = Instant::now();
        let mut w = Watcher::new(T);
        w.watch(["b"], t0);
        w.heard("b", t0, false);
        w.goodbye("b");
        assert!(!w.is_up("b", t0 + ms(1)));
        // The stopping node still answers, saying it is stopping.
        w.heard("b", t0 + ms(200), true);
        assert!(!w.is_up("b", t0 + ms(201)));
        // Restarted: its first answer brings it back.
        w.heard("b", t0 + ms(5000), false);
        assert!(w.is_up("b", t0 + ms(5001)));
    }

    #[test]
    fn only_watched_nodes_are_up_and_unlisted_ones_are_forgotten() {
        let t0 = Instant::now();
        let mut w = Watcher::new(T);
        w.watch(["b", "c"], t0);
        w.heard("x", t0, false);
        assert!(!w.is_up("x", t0));
        w.watch(["c"], t0 + ms(10));
        assert!(!w.is_up("b", t0 + ms(10)));
        assert!(w.is_up("c", t0 + ms(10)));
        // Watching again starts a new grace period, not the old silence.
        w.watch(["b", "c"], t0 + ms(5000));
        assert!(w.is_up("b", t0 + ms(5500)));
        assert_eq!(w.down(t0 + ms(5500)), vec!["c".to_string()]);
    }

    #[test]
    fn heartbeats_go_five_times_per_timeout() {
        assert_eq!(heartbeat_interval(T), ms(200));
        assert_eq!(heartbeat_interval(ms(20)), ms(10));
    }

    #[test]
    fn liveness_counts_the_node_itself_up() {
        let l = Liveness::new("a", T);
        l.watch(["a", "b"]);
        assert!(l.is_up("a"));
        assert!(l.is_up("b"));
        assert!(l.down().is_empty());
        l.goodbye("b");
        assert!(!l.is_up("b"), "a goodbye counts at once");
        l.heard("b", false);
        assert!(l.is_up("b"), "and so does an answer");
        l.goodbye("a");
        assert!(l.is_up("a"));
    }
}
