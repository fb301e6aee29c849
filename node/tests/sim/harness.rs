//! The simulated cluster's nodes: each a whole node (ring, claimant, gossip,
//! vnodes with their real store in a temporary directory, routing, handoff)
//! on the in-process network, that can crash and restart from what it
//! persisted. Shared by the seeded runs and the scenario scripts.
//!
//! A crash stops everything of the node at once (its background tasks, its
//! vnodes without handling their mailboxes, its store handle, its messages);
//! a restart opens a new handle on the same store, which holds every write
//! committed before the crash, as a restarted process would find on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flavio_node::app::{AddOptions, Defaults, Flavio, FlavioVnode};
use flavio_node::cluster::state::RingState;
use flavio_node::cluster::{Change, Cluster, ClusterConfig, MemberState};
use flavio_node::ring::{PartitionId, RingSize};
use flavio_node::rpc::convert::ProtoRingCodec;
use flavio_node::vnode::storage::decode_u64;
use flavio_node::vnode::{Durability, Store, VnodeMaster};

use crate::net::Net;

/// A running incarnation of a node.
pub struct Up {
    pub cluster: Cluster<FlavioVnode>,
    pub app: Flavio,
}

/// One node of the simulation, running or crashed.
pub struct SimNode {
    pub name: String,
    pub addr: String,
    /// The node's store as the disk holds it: never closed, never written
    /// through; each incarnation writes through its own handle.
    pub disk: Store,
    pub up: Option<Up>,
    /// Incarnations started so far (the RNG seed of each differs).
    starts: u64,
}

/// How the simulation's clients add: with a timeout that ends every add
/// well before a run settles and checks its counts.
pub fn add_options() -> AddOptions {
    AddOptions {
        timeout: Some(Duration::from_secs(5)),
        ..AddOptions::default()
    }
}

pub fn name(i: usize) -> String {
    format!("sim{i}@sim")
}

pub fn addr(i: usize) -> String {
    format!("10.0.0.{i}:10017")
}

/// The nodes of one simulation.
pub struct Harness {
    pub net: Arc<Net>,
    pub nodes: Vec<SimNode>,
    pub ring_size: RingSize,
    seed: u64,
    /// The id of the cluster node 0 founded.
    main: String,
}

impl Harness {
    /// Opens the stores of `n` nodes under `dir` and starts them, each a
    /// cluster of its own.
    pub async fn new(
        net: Arc<Net>,
        dir: &Path,
        n: usize,
        ring: u64,
        seed: u64,
    ) -> Result<Harness, String> {
        let ring_size = RingSize::new(ring).map_err(|e| e.to_string())?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let path: PathBuf = dir.join(format!("n{i}"));
            let disk = Store::open_inline(&path, ring_size, Durability::Process)
                .map_err(|e| e.to_string())?;
            nodes.push(SimNode {
                name: name(i),
                addr: addr(i),
                disk,
                up: None,
                starts: 0,
            });
        }
        let mut h = Harness {
            net,
            nodes,
            ring_size,
            seed,
            main: String::new(),
        };
        for i in 0..n {
            h.start(i).await?;
        }
        h.main = h
            .cluster(0)
            .map(|c| c.ring().ring.cluster_id.clone())
            .unwrap_or_default();
        Ok(h)
    }

    /// Starts a new incarnation of node `i` from what its store holds.
    pub async fn start(&mut self, i: usize) -> Result<(), String> {
        self.sync();
        if self.nodes[i].up.is_some() {
            return Err(format!("node {i} is running"));
        }
        let node = &mut self.nodes[i];
        node.starts += 1;
        let store = node.disk.reopen();
        let master: VnodeMaster<FlavioVnode> =
            VnodeMaster::start(&node.name, self.ring_size, store.clone(), [])
                .map_err(|e| e.to_string())?;
        let seed = self
            .seed
            .wrapping_mul(31)
            .wrapping_add(i as u64)
            .wrapping_add(node.starts.wrapping_mul(1_000_003));
        let cluster = Cluster::open(
            ClusterConfig {
                name: node.name.clone(),
                addr: node.addr.clone(),
                handoff_concurrency: 2,
                seed: Some(seed),
                detect_after: flavio_node::cluster::watcher::DEFAULT_TIMEOUT,
            },
            store.clone(),
            master.clone(),
            self.net.transport(&node.addr),
            Arc::new(ProtoRingCodec),
        )
        .await
        .map_err(|e| e.to_string())?;
        let (c, m, s) = (cluster.clone(), master, store);
        self.net.attach(
            &node.addr,
            cluster.clone(),
            Box::new(move || {
                c.stop();
                m.abort();
                s.close();
            }),
        );
        cluster.start().await;
        let app = Flavio::new(cluster.router(), Defaults::default());
        node.up = Some(Up { cluster, app });
        Ok(())
    }

    /// Crashes node `i`.
    pub fn crash(&mut self, i: usize) {
        self.net.crash(&self.nodes[i].addr);
        self.nodes[i].up = None;
    }

    /// Notes the crashes the network's hooks caused.
    pub fn sync(&mut self) {
        for n in &mut self.nodes {
            if n.up.is_some() && !self.net.is_up(&n.addr) {
                n.up = None;
            }
        }
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].up.is_some() && self.net.is_up(&self.nodes[i].addr)
    }

    pub fn cluster(&self, i: usize) -> Option<&Cluster<FlavioVnode>> {
        self.is_up(i)
            .then(|| self.nodes[i].up.as_ref().map(|u| &u.cluster))
            .flatten()
    }

    pub fn app(&self, i: usize) -> Option<&Flavio> {
        self.is_up(i)
            .then(|| self.nodes[i].up.as_ref().map(|u| &u.app))
            .flatten()
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The running node with the newest ring of the cluster node 0 founded
    /// (the one every run and script builds): whose view the harness takes
    /// for "the cluster". Removed nodes start clusters of their own; those
    /// are never it, however many nodes join them.
    pub fn observer(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|i| self.cluster(i).map(|c| (i, c.ring().ring.clone())))
            .filter(|(_, r)| r.cluster_id == self.main)
            .max_by_key(|(i, r)| (r.version, usize::MAX - i))
            .map(|(i, _)| i)
    }

    /// The observer's ring.
    pub fn ring(&self) -> Option<RingState> {
        let o = self.observer()?;
        self.cluster(o).map(|c| c.ring().ring.clone())
    }

    /// Nodes that are active members in the observer's ring (running or not).
    pub fn members(&self) -> Vec<usize> {
        let Some(ring) = self.ring() else {
            return Vec::new();
        };
        (0..self.nodes.len())
            .filter(|i| {
                ring.state_of(&self.nodes[*i].name)
                    .is_some_and(|s| s.is_active())
            })
            .collect()
    }

    /// Members that are running and know they are: clients go to these.
    /// (A node whose join went through but whose answer was lost is listed
    /// as joining while it still serves a cluster of its own: what it
    /// acknowledges there is not this cluster's.)
    pub fn running_members(&self) -> Vec<usize> {
        self.members()
            .into_iter()
            .filter(|i| {
                self.cluster(*i)
                    .is_some_and(|c| c.ring().ring.cluster_id == self.main)
            })
            .collect()
    }

    /// The claimant in the observer's ring, if it runs.
    pub fn claimant(&self) -> Option<usize> {
        let ring = self.ring()?;
        let c = self.index(&ring.claimant)?;
        self.is_up(c).then_some(c)
    }

    /// Stages `change` on the claimant.
    pub async fn stage(&self, change: Change) -> Result<String, String> {
        let c = self.claimant().ok_or("the claimant is not running")?;
        self.stage_on(c, change).await
    }

    /// Stages `change` on node `i` (refused unless it is the claimant).
    pub async fn stage_on(&self, i: usize, change: Change) -> Result<String, String> {
        self.cluster(i)
            .ok_or(format!("node {i} is not running"))?
            .stage(change)
            .await
            .map_err(|e| e.to_string())
    }

    /// Plans and commits what is staged on the claimant. `Ok(None)` when
    /// nothing is staged, else the committed ring's version.
    pub async fn commit(&self) -> Result<Option<u64>, String> {
        let c = self.claimant().ok_or("the claimant is not running")?;
        self.commit_on(c).await
    }

    /// Plans and commits what is staged on node `i`.
    pub async fn commit_on(&self, i: usize) -> Result<Option<u64>, String> {
        let cluster = self.cluster(i).ok_or(format!("node {i} is not running"))?;
        match cluster.plan().await.map_err(|e| e.to_string())? {
            (Some(_), _) => cluster
                .commit(None)
                .await
                .map(|r| Some(r.version))
                .map_err(|e| e.to_string()),
            (None, _) => Ok(None),
        }
    }

    /// Whether every member runs and agrees on one ring with nothing
    /// pending and no transfer running.
    pub fn settled(&self) -> bool {
        let Some(ring) = self.ring() else {
            return false;
        };
        ring.pending.is_empty()
            && self.members().iter().all(|i| {
                self.cluster(*i).is_some_and(|c| {
                    c.ring().ring == ring
                        && c.inner_handoffs_active().is_empty()
                        && c.fallbacks().is_empty()
                        && c.pending_hints().is_ok_and(|h| h.is_empty())
                })
            })
            && ring
                .members
                .values()
                .all(|m| matches!(m.state, MemberState::Valid | MemberState::Removed))
    }

    /// Waits (simulated time) until [`Harness::settled`], committing what
    /// is staged meanwhile; the error says what is still unsettled.
    pub async fn settle(&self, within: Duration) -> Result<Duration, String> {
        let start = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // As an operator would: a join staged on a claimant that
            // crashed since is staged again (staging lives in the
            // claimant's memory only, as in riak).
            if let Some(ring) = self.ring() {
                for n in ring.members_in(MemberState::Joining) {
                    let _ = self.stage(Change::Join(n)).await;
                }
            }
            let _ = self.commit().await;
            if self.settled() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                let ring = self.ring();
                return Err(match ring {
                    Some(r) => format!(
                        "did not settle within {} s: ring v{} pending {:?}\n  {}",
                        within.as_secs(),
                        r.version,
                        r.pending,
                        self.views().join("\n  ")
                    ),
                    None => "no node runs".into(),
                });
            }
        }
    }

    /// How each node sees its cluster, a line each.
    pub fn views(&self) -> Vec<String> {
        (0..self.nodes.len())
            .map(|i| match self.cluster(i) {
                Some(c) => {
                    let r = c.ring().ring.clone();
                    let members: Vec<String> = r
                        .members
                        .iter()
                        .map(|(n, m)| format!("{n}={:?}", m.state))
                        .collect();
                    format!(
                        "node {i}: cluster {} v{} claimant {} left {}: {}",
                        r.cluster_id,
                        r.version,
                        r.claimant,
                        c.ring().left,
                        members.join(" ")
                    )
                }
                None => format!("node {i}: not running"),
            })
            .collect()
    }

    /// The operation count node `i`'s store holds for partition `p`.
    pub fn stored_count(&self, i: usize, p: PartitionId) -> u64 {
        self.nodes[i]
            .disk
            .load(p)
            .ok()
            .and_then(|items| {
                items
                    .iter()
                    .find(|(k, _)| k.as_slice() == b"ops_count")
                    .and_then(|(_, v)| decode_u64(v, "ops_count").ok())
            })
            .unwrap_or(0)
    }

    /// The counts node `i` holds: of every partition it keeps a copy of
    /// (owned, or a fallback) and in the hints it has not delivered. What a
    /// force-remove or force-replace of it may lose: at most this (a removed
    /// node still running delivers what it can in one last round, and a copy
    /// it was handing off may have reached its receiver).
    pub fn held_counts(&self, i: usize) -> u64 {
        let disk = &self.nodes[i].disk;
        let copies: u64 = (0..self.ring_size.get())
            .map(|p| self.stored_count(i, PartitionId(p)))
            .sum();
        let hints: u64 = flavio_node::cluster::handoff::hinted::stored_hints(disk)
            .unwrap_or_default()
            .iter()
            .flat_map(|h| h.items.iter())
            .filter_map(|item| decode_u64(item, "hint item").ok())
            .sum();
        copies + hints
    }

    /// The settled cluster's structural invariants: every member holds the
    /// observer's ring; every partition has one owner, a valid member; no
    /// node holds data of a partition it does not own (`stale` nodes, cut
    /// off by a force-remove, may keep theirs: it is no longer the
    /// cluster's).
    pub fn check_structure(&self, stale: &[usize]) -> Result<(), String> {
        let ring = self.ring().ok_or("no node runs")?;
        let members = self.members();
        for i in &members {
            let other = self
                .cluster(*i)
                .ok_or_else(|| format!("member {i} is not running"))?
                .ring()
                .ring
                .clone();
            if other != ring {
                return Err(format!(
                    "node {i} holds ring v{} and the observer v{}",
                    other.version, ring.version
                ));
            }
        }
        for (p, owner) in ring.owners.owners() {
            if ring.state_of(owner) != Some(MemberState::Valid) {
                return Err(format!(
                    "partition {p} is owned by {owner}, not a valid member"
                ));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if stale.contains(&i) {
                continue;
            }
            let in_cluster = members.contains(&i);
            for p in 0..self.ring_size.get() {
                let owns = in_cluster && ring.owner(PartitionId(p)) == node.name;
                if !owns && node.disk.has_data(PartitionId(p)) {
                    let own = self.cluster(i).map(|c| {
                        let r = c.ring().ring.clone();
                        format!(
                            "its own ring v{} of cluster {} with members {:?}",
                            r.version,
                            r.cluster_id,
                            r.members.keys().collect::<Vec<_>>()
                        )
                    });
                    return Err(format!(
                        "node {i} holds data of partition {p} (count {}), owned by {}; {}",
                        self.stored_count(i, PartitionId(p)),
                        ring.owner(PartitionId(p)),
                        own.unwrap_or_else(|| "it does not run".into())
                    ));
                }
            }
        }
        Ok(())
    }

    /// Stops every node (the end of a run).
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.is_up(i) {
                self.crash(i);
            }
        }
    }
}
