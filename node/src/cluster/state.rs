//! The ring state a cluster agrees on: members and their states, the owner of
//! every partition, the pending ownership transfers, the claimant, and a
//! version that every change bumps. Riak calls this "the ring".
//!
//! Ownership itself is a [`Ring`] (the ring layer's one representation of
//! who owns what); this adds what the cluster needs around it.
//!
//! It is plain data: the claimant computes new states
//! ([`super::claimant`]), gossip spreads them, and every node [`join`]s what
//! it hears with what it holds.
//!
//! # Why rings cannot diverge
//!
//! One claimant writes at a time, but "one" is a hope under partitions: a
//! claimant cut off (not dead) may still write for a moment on its side
//! while the other side elects another one. A single version counter
//! cannot order such rings: both sides count up from the same base, and
//! after healing each keeps its own. So a ring carries [`Stamps`]:
//!
//! - an *epoch*, the claimant's term: every change of claimant starts a
//!   higher one, and of two rings the claimant of the higher epoch wins
//!   (the lower name on a tie, which only a race can produce);
//! - a *generation* per member entry and per partition entry (its owner
//!   together with its pending transfer), bumped by every write that
//!   changes that entry ([`RingState::stamp`]).
//!
//! [`join`] takes, entry by entry, the higher generation; on a tie (both
//! sides changed the entry since they split) a fixed order of the entries
//! decides: for members the state further along (removed, down, exiting,
//! leaving, valid, joining), for partitions the entry without a pending
//! transfer, that is the completed flip. That makes `join` commutative,
//! associative and idempotent (a join-semilattice, tested by property
//! tests), so every node ends on the same ring whatever order gossip
//! brings the rings in, without an operator. A completed flip is never
//! undone: the side that flipped bumped that partition's generation, and
//! the other side could only have a higher one by a later change of the
//! same partition, which it can make only as the claimant of a majority
//! ([`super::claimant`]'s rules) after seeing the flip, or a tie, which
//! the flip wins.
//!
//! We chose per-entry generations over riak's vector clock per writer: a
//! vector clock says *that* two rings are concurrent, and riak then still
//! needs per-member clocks and ad-hoc rules to merge them; generations
//! answer the question merging asks, entry by entry, and stay the size
//! of the ring. What a merge can still produce that no single writer
//! would (an owner that was removed on the other side, a transfer whose
//! giver no longer owns the partition) the claimant repairs with an
//! ordinary write (`claimant::repair`).
//!
//! Left out: per-node metadata beyond a name, an address and a location.

use std::collections::BTreeMap;

use crate::ring::{PartitionId, Ring, RingSize};

/// A member's state, as riak names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberState {
    /// Staged to join; owns nothing until a commit.
    Joining,
    /// A full member.
    Valid,
    /// Handing its partitions off before going away.
    Leaving,
    /// Owns nothing any more; about to be removed.
    Exiting,
    /// Marked unreachable by an operator.
    Down,
    /// No longer part of the cluster.
    Removed,
}

impl MemberState {
    /// Every state, in the order riak lists them.
    pub const ALL: [MemberState; 6] = [
        MemberState::Joining,
        MemberState::Valid,
        MemberState::Leaving,
        MemberState::Exiting,
        MemberState::Down,
        MemberState::Removed,
    ];

    /// The lower-case name riak prints.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Valid => "valid",
            MemberState::Leaving => "leaving",
            MemberState::Exiting => "exiting",
            MemberState::Down => "down",
            MemberState::Removed => "removed",
        }
    }

    /// Members whose view of the ring counts for readiness.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            MemberState::Joining | MemberState::Valid | MemberState::Leaving | MemberState::Exiting
        )
    }
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// gRPC address (`host:port`).
    pub addr: String,
    /// Its state.
    pub state: MemberState,
    /// Where it runs (a rack, a zone), set by `cluster location`: claim
    /// places the replicas of a preference list on distinct locations.
    /// `None` until set; a member without one counts as a location of its
    /// own.
    pub location: Option<String>,
    /// The incarnation id of the data directory it joined with (made when
    /// the directory was first opened): a node answering under this name
    /// with another one is not this member (its volume was lost or
    /// swapped). `None` for members of rings made before it was recorded.
    pub incarnation: Option<String>,
}

/// One pending ownership change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Transfer {
    /// The partition that moves.
    pub partition: PartitionId,
    /// Its current owner.
    pub from: String,
    /// Its next owner.
    pub to: String,
}

/// The causal order of a ring's entries; see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stamps {
    /// The claimant's term: bumped whenever the claimant changes.
    pub epoch: u64,
    /// Generation of each member's entry (state and address); absent is 0.
    pub members: BTreeMap<String, u64>,
    /// Generation of each partition's entry (owner and pending transfer),
    /// by ordinal; missing entries are 0.
    pub partitions: Vec<u64>,
}

impl Stamps {
    fn member(&self, n: &str) -> u64 {
        self.members.get(n).copied().unwrap_or(0)
    }

    fn partition(&self, p: PartitionId) -> u64 {
        self.partitions.get(p.0 as usize).copied().unwrap_or(0)
    }

    /// Stamps of a ring persisted before stamps existed (version `v`):
    /// every entry and the epoch at `v`, so that of two such rings the
    /// newer one's entries win everywhere, as its version did.
    pub fn legacy(v: u64, members: &BTreeMap<String, Member>, size: RingSize) -> Stamps {
        Stamps {
            epoch: v,
            members: members.keys().map(|n| (n.clone(), v)).collect(),
            partitions: vec![v; size.len()],
        }
    }
}

/// The cluster's shared state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingState {
    /// Random id fixed when the cluster was created.
    pub cluster_id: String,
    /// A counter every write bumps, shown to people; rings are ordered by
    /// [`Stamps`], not by this.
    pub version: u64,
    /// The causal order of the entries below.
    pub stamps: Stamps,
    /// The member that stages, plans and commits changes.
    pub claimant: String,
    /// Every member by name, including removed ones (so they learn it).
    pub members: BTreeMap<String, Member>,
    /// The owner of each partition (and so the ring's size).
    pub owners: Ring,
    /// Pending ownership transfers, sorted.
    pub pending: Vec<Transfer>,
}

impl RingState {
    /// This ring with `node`'s incarnation id recorded (a one-member ring
    /// made by the node itself, before anyone else saw it: not a write).
    pub fn with_incarnation(mut self, node: &str, incarnation: &str) -> RingState {
        if let Some(m) = self.members.get_mut(node) {
            m.incarnation = Some(incarnation.to_string());
        }
        self
    }

    /// A new one-member cluster: `node` owns every partition.
    pub fn singleton(cluster_id: String, size: RingSize, node: &str, addr: &str) -> RingState {
        let mut members = BTreeMap::new();
        members.insert(
            node.to_string(),
            Member {
                addr: addr.to_string(),
                state: MemberState::Valid,
                location: None,
                incarnation: None,
            },
        );
        RingState {
            cluster_id,
            version: 1,
            stamps: Stamps::default(),
            claimant: node.to_string(),
            members,
            owners: Ring::new(size, node),
            pending: Vec::new(),
        }
        .normalized()
    }

    /// Partitions of the ring.
    pub fn size(&self) -> RingSize {
        self.owners.size()
    }

    /// The owner of `p`.
    pub fn owner(&self, p: PartitionId) -> &str {
        self.owners.owner(p)
    }

    /// The state of `node`, if it is in the member list.
    pub fn state_of(&self, node: &str) -> Option<MemberState> {
        self.members.get(node).map(|m| m.state)
    }

    /// The address of `node`.
    pub fn addr_of(&self, node: &str) -> Option<&str> {
        self.members.get(node).map(|m| m.addr.as_str())
    }

    /// Members that are not removed.
    pub fn active_members(&self) -> impl Iterator<Item = (&String, &Member)> {
        self.members.iter().filter(|(_, m)| m.state.is_active())
    }

    /// Names of the members in `state`.
    pub fn members_in(&self, state: MemberState) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| m.state == state)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Partitions `node` owns now.
    pub fn owned_by(&self, node: &str) -> Vec<PartitionId> {
        self.owners.owned_by(node)
    }

    /// Owners once every pending transfer completes.
    pub fn future_owners(&self) -> Ring {
        let mut owners = self.owners.clone();
        for t in &self.pending {
            owners.set_owner(t.partition, &t.to);
        }
        owners
    }

    /// The pending transfer of `p`, if any.
    pub fn pending_of(&self, p: PartitionId) -> Option<&Transfer> {
        self.pending.iter().find(|t| t.partition == p)
    }
}

/// What a node does with a ring it hears about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Nothing new, or of another cluster: keep ours.
    Ignore,
    /// Take this ring: the join of ours and theirs.
    Adopt(RingState),
    /// The join no longer lists us as a member: we were removed, so start
    /// over as a one-member cluster.
    Reset,
}

/// Decides what node `me`, holding `mine`, does with `theirs`.
pub fn merge(mine: &RingState, theirs: &RingState, me: &str) -> Merge {
    if theirs.cluster_id != mine.cluster_id || theirs.size() != mine.size() {
        return Merge::Ignore;
    }
    let joined = join(mine, theirs);
    if joined == *mine {
        return Merge::Ignore;
    }
    match joined.state_of(me) {
        None | Some(MemberState::Removed) => Merge::Reset,
        Some(_) => Merge::Adopt(joined),
    }
}

/// The order of member states on a generation tie: the one further along
/// wins (a removal or a down outlives the valid entry it raced with).
fn state_rank(s: MemberState) -> u8 {
    match s {
        MemberState::Joining => 0,
        MemberState::Valid => 1,
        MemberState::Leaving => 2,
        MemberState::Exiting => 3,
        MemberState::Down => 4,
        MemberState::Removed => 5,
    }
}

/// The join of two rings of one cluster and size: entry by entry the higher
/// generation, ties by a fixed order (see the module docs). Commutative,
/// associative and idempotent on contents; the version is the higher one,
/// plus one when the join differs from both.
pub fn join(a: &RingState, b: &RingState) -> RingState {
    if a.same_content(b) {
        return if a.version >= b.version { a } else { b }.clone();
    }
    let mut out = a.clone();
    // The claimant of the higher epoch; the lower name on a tie.
    if (b.stamps.epoch, std::cmp::Reverse(&b.claimant))
        > (a.stamps.epoch, std::cmp::Reverse(&a.claimant))
    {
        out.claimant = b.claimant.clone();
        out.stamps.epoch = b.stamps.epoch;
    }
    for (n, mb) in &b.members {
        let gb = b.stamps.member(n);
        let take = match a.members.get(n) {
            None => true,
            Some(ma) => {
                let ga = a.stamps.member(n);
                (
                    gb,
                    state_rank(mb.state),
                    &mb.addr,
                    &mb.location,
                    &mb.incarnation,
                ) > (
                    ga,
                    state_rank(ma.state),
                    &ma.addr,
                    &ma.location,
                    &ma.incarnation,
                )
            }
        };
        if take {
            out.members.insert(n.clone(), mb.clone());
            out.stamps.members.insert(n.clone(), gb);
        }
    }
    let len = a.size().len();
    out.stamps.partitions.resize(len, 0);
    let mut pending: Vec<Transfer> = Vec::new();
    let (pa, pb) = (a.pending_by_partition(), b.pending_by_partition());
    for p in a.size().partitions() {
        let i = p.0 as usize;
        fn key<'a>(
            r: &'a RingState,
            p: PartitionId,
            t: Option<&'a Transfer>,
        ) -> (u64, bool, &'a str, Option<(&'a str, &'a str)>) {
            (
                r.stamps.partition(p),
                t.is_none(),
                r.owner(p),
                t.map(|t| (t.from.as_str(), t.to.as_str())),
            )
        }
        let (winner, t) = if key(b, p, pb[i]) > key(a, p, pa[i]) {
            (b, pb[i])
        } else {
            (a, pa[i])
        };
        out.owners.set_owner(p, winner.owner(p));
        out.stamps.partitions[i] = winner.stamps.partition(p);
        pending.extend(t.cloned());
    }
    pending.sort();
    out.pending = pending;
    let mut out = out.normalized();
    out.version = a.version.max(b.version);
    if !out.same_content(a) && !out.same_content(b) {
        out.version += 1;
    }
    out
}

impl RingState {
    /// The pending transfer of each partition, by ordinal (one pass over
    /// the list, where `pending_of` for each would be quadratic on big
    /// rings).
    pub fn pending_by_partition(&self) -> Vec<Option<&Transfer>> {
        let mut out = vec![None; self.size().len()];
        for t in &self.pending {
            if let Some(slot) = out.get_mut(t.partition.0 as usize)
                && slot.is_none()
            {
                *slot = Some(t);
            }
        }
        out
    }

    /// Every member with a generation (0 when never written) and every
    /// partition too, so that equal rings have equal stamps.
    pub fn normalized(mut self) -> RingState {
        let members = &self.members;
        self.stamps.members.retain(|n, _| members.contains_key(n));
        for n in members.keys() {
            self.stamps.members.entry(n.clone()).or_insert(0);
        }
        self.stamps.partitions.resize(self.size().len(), 0);
        self
    }

    /// Equal but for the version counter.
    pub fn same_content(&self, other: &RingState) -> bool {
        self.cluster_id == other.cluster_id
            && self.stamps == other.stamps
            && self.claimant == other.claimant
            && self.members == other.members
            && self.owners == other.owners
            && self.pending == other.pending
    }

    /// Whether this ring includes everything `other` says: joining `other`
    /// into it changes nothing. A peer whose ring covers ours has seen ours.
    pub fn covers(&self, other: &RingState) -> bool {
        self.cluster_id == other.cluster_id
            && self.size() == other.size()
            && join(self, other).same_content(self)
    }

    /// This ring as the next write after `prev`: the version counts on, and
    /// every entry that differs from `prev` gets the next generation (the
    /// epoch, when the claimant changed). Every writer calls this once per
    /// write, so the stamps cannot be forgotten by one of them.
    pub fn stamp(mut self, prev: &RingState) -> RingState {
        self.version = prev.version + 1;
        let mut stamps = prev.stamps.clone();
        if self.claimant != prev.claimant {
            stamps.epoch += 1;
        }
        for (n, m) in &self.members {
            if prev.members.get(n) != Some(m) {
                stamps.members.insert(n.clone(), prev.stamps.member(n) + 1);
            }
        }
        stamps.partitions.resize(self.size().len(), 0);
        let (now, before) = (self.pending_by_partition(), prev.pending_by_partition());
        for p in self.size().partitions() {
            let i = p.0 as usize;
            if self.owner(p) != prev.owner(p) || now[i] != before[i] {
                stamps.partitions[i] = prev.stamps.partition(p) + 1;
            }
        }
        self.stamps = stamps;
        self.normalized()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn members(n: usize) -> RingState {
        let size = RingSize::new(8).expect("size");
        let mut r = RingState::singleton("c1".into(), size, "a", "127.0.0.1:1");
        let mut next = r.clone();
        for i in 1..n {
            let name = ((b'a' + i as u8) as char).to_string();
            next.members.insert(
                name,
                Member {
                    addr: format!("127.0.0.1:{}", i + 1),
                    state: MemberState::Valid,
                    location: None,
                    incarnation: None,
                },
            );
        }
        r = next.stamp(&r);
        r
    }

    /// A write: `f` applied to a copy, stamped as the next ring.
    fn write(r: &RingState, f: impl FnOnce(&mut RingState)) -> RingState {
        let mut next = r.clone();
        f(&mut next);
        next.stamp(r)
    }

    fn set_state(r: &mut RingState, n: &str, s: MemberState) {
        if let Some(m) = r.members.get_mut(n) {
            m.state = s;
        }
    }

    #[test]
    fn merge_takes_newer_rings_of_the_same_cluster_only() {
        let mine = members(2);
        let newer = write(&mine, |r| r.owners.set_owner(PartitionId(0), "b"));
        assert_eq!(merge(&mine, &newer, "a"), Merge::Adopt(newer.clone()));
        assert_eq!(merge(&newer, &mine, "a"), Merge::Ignore, "older");
        assert_eq!(merge(&mine, &mine.clone(), "a"), Merge::Ignore, "same");
        let mut foreign = newer.clone();
        foreign.cluster_id = "c2".into();
        assert_eq!(
            merge(&mine, &foreign, "a"),
            Merge::Ignore,
            "another cluster"
        );
        let mut bigger = newer.clone();
        bigger.owners = Ring::new(RingSize::new(16).expect("size"), "a");
        assert_eq!(merge(&mine, &bigger, "a"), Merge::Ignore, "another size");
    }

    #[test]
    fn merge_resets_a_node_the_cluster_removed() {
        let mine = members(2);
        let removed = write(&mine, |r| set_state(r, "b", MemberState::Removed));
        assert_eq!(merge(&mine, &removed, "b"), Merge::Reset);
        assert_eq!(merge(&mine, &removed, "a"), Merge::Adopt(removed.clone()));
    }

    /// The divergence the old single version allowed: the claimant `a` is
    /// cut off and flips a partition on its side, while the other side
    /// marks it down and `c` claims in a new epoch and moves another
    /// partition. Both sides wrote one ring of the same version; the join
    /// keeps both changes and the majority's claimant, on both sides.
    #[test]
    fn split_claimants_join_to_one_ring_keeping_both_sides_changes() {
        let base = write(&members(5), |r| {
            r.pending.push(Transfer {
                partition: PartitionId(1),
                from: "a".into(),
                to: "b".into(),
            })
        });
        // Minority side: the flip of partition 1 completes.
        let minority = write(&base, |r| {
            r.pending.clear();
            r.owners.set_owner(PartitionId(1), "b");
        });
        // Majority side: `a` down, `c` claimant, partition 5 force-moved.
        let majority = write(&base, |r| {
            set_state(r, "a", MemberState::Down);
            r.claimant = "c".into();
        });
        let majority = write(&majority, |r| r.owners.set_owner(PartitionId(5), "d"));
        assert_eq!(minority.version, base.version + 1);
        let one = join(&minority, &majority);
        let other = join(&majority, &minority);
        assert!(one.same_content(&other), "same ring on both sides");
        assert_eq!(one.version, other.version);
        assert_eq!(one.claimant, "c", "the newer epoch's claimant");
        assert_eq!(one.state_of("a"), Some(MemberState::Down));
        assert_eq!(one.owner(PartitionId(1)), "b", "the flip is kept");
        assert!(one.pending.is_empty());
        assert_eq!(one.owner(PartitionId(5)), "d", "the majority's change too");
        assert!(one.covers(&minority) && one.covers(&majority));
        assert!(!minority.covers(&majority));
    }

    /// Random histories of writes on a few replicas that also join each
    /// other's rings at random; a seeded property test of the join laws.
    #[test]
    fn join_is_a_semilattice_and_writes_only_grow() {
        for seed in 0..80u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let base = members(4);
            let names = ["a", "b", "c", "d"];
            let mut reps = vec![base.clone(); 3];
            let mut all = vec![base];
            for _ in 0..12 {
                let i = rng.random_range(0..reps.len());
                let r = if rng.random_bool(0.3) {
                    let j = rng.random_range(0..reps.len());
                    join(&reps[i], &reps[j])
                } else {
                    let p = PartitionId(rng.random_range(0..8));
                    let n = names[rng.random_range(0..names.len())];
                    match rng.random_range(0..4) {
                        0 => write(&reps[i], |r| r.owners.set_owner(p, n)),
                        1 => write(&reps[i], |r| {
                            let from = r.owner(p).to_string();
                            r.pending.retain(|t| t.partition != p);
                            if from != n {
                                r.pending.push(Transfer {
                                    partition: p,
                                    from,
                                    to: n.into(),
                                });
                                r.pending.sort();
                            }
                        }),
                        2 => write(&reps[i], |r| {
                            let s = [MemberState::Valid, MemberState::Down, MemberState::Leaving]
                                [rng.random_range(0..3)];
                            set_state(r, n, s)
                        }),
                        _ => write(&reps[i], |r| r.claimant = n.into()),
                    }
                };
                assert!(
                    r.covers(&reps[i]),
                    "seed {seed}: a write or join loses nothing"
                );
                reps[i] = r.clone();
                all.push(r);
            }
            for a in &all {
                assert!(join(a, a).same_content(a), "seed {seed}: idempotent");
                for b in &all {
                    let ab = join(a, b);
                    assert!(ab.same_content(&join(b, a)), "seed {seed}: commutative");
                    assert!(ab.covers(a) && ab.covers(b), "seed {seed}: an upper bound");
                    for c in all.iter().step_by(4) {
                        assert!(
                            join(&ab, c).same_content(&join(a, &join(b, c))),
                            "seed {seed}: associative"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_completed_flip_wins_a_tie_with_the_transfer_it_completed() {
        let base = members(2);
        let pending = write(&base, |r| {
            r.pending.push(Transfer {
                partition: PartitionId(2),
                from: "a".into(),
                to: "b".into(),
            })
        });
        let flipped = write(&pending, |r| {
            r.pending.clear();
            r.owners.set_owner(PartitionId(2), "b");
        });
        // Another write of the same generation that still has it pending
        // (a race): the flip wins.
        let mut racing = pending.clone();
        racing.stamps.partitions[2] += 1;
        let j = join(&racing, &flipped);
        assert_eq!(j.owner(PartitionId(2)), "b");
        assert!(j.pending.is_empty());
    }
}
