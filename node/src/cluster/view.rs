//! The node's current ring, shared by the request path and the cluster's
//! tasks. Readers take a cheap snapshot (an `Arc`); writers swap it whole.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::state::RingState;
use crate::ring::PartitionId;

/// One version of the ring with what routing needs precomputed.
#[derive(Debug)]
pub struct Snapshot {
    /// The ring.
    pub ring: RingState,
    /// This node was removed from its cluster and started over alone: it
    /// serves no client requests (riak shuts such a node down) until it
    /// joins a cluster or is restarted, so that clients still pointing at it
    /// get an error instead of acknowledgements the cluster never sees.
    pub left: bool,
    addrs: HashMap<String, String>,
}

impl Snapshot {
    fn new(ring: RingState, left: bool) -> Snapshot {
        let addrs = ring
            .members
            .iter()
            .map(|(n, m)| (n.clone(), m.addr.clone()))
            .collect();
        Snapshot { ring, left, addrs }
    }

    /// Owner of `p` (a shared name: cloning it is cheap).
    pub fn owner(&self, p: PartitionId) -> Arc<str> {
        Arc::clone(self.ring.owners.owner_shared(p))
    }

    /// Address of member `node`.
    pub fn addr(&self, node: &str) -> Option<&str> {
        self.addrs.get(node).map(String::as_str)
    }
}

/// The shared current ring.
#[derive(Clone, Debug)]
pub struct View(Arc<RwLock<Arc<Snapshot>>>);

impl View {
    /// A view starting at `ring`.
    pub fn new(ring: RingState) -> View {
        View(Arc::new(RwLock::new(Arc::new(Snapshot::new(ring, false)))))
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        match self.0.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the ring. A node that had left stays so while the ring is
    /// still its own one-member cluster's; joining another cluster ends it.
    pub fn set(&self, ring: RingState) {
        let cur = self.current();
        let left = cur.left
            && cur.ring.cluster_id == ring.cluster_id
            && ring.active_members().count() <= 1;
        self.replace(Snapshot::new(ring, left));
    }

    /// Replaces the ring with the one-member ring of a node that was just
    /// removed from its cluster (see [`Snapshot::left`]).
    pub fn set_left(&self, ring: RingState) {
        self.replace(Snapshot::new(ring, true));
    }

    fn replace(&self, snap: Snapshot) {
        let snap = Arc::new(snap);
        match self.0.write() {
            Ok(mut g) => *g = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
    }
}
