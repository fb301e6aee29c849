//! The ring state a cluster agrees on: members and their states, the owner of
//! every partition, the pending ownership transfers, the claimant, and a
//! version that every change bumps. Riak calls this "the ring".
//!
//! Ownership itself is a [`Ring`] (the ring layer's one representation of
//! who owns what); this adds what the cluster needs around it.
//!
//! It is plain data: the claimant computes new states
//! ([`super::claimant`]), gossip spreads them and nodes adopt the highest
//! version. Left out: vector clocks (only the claimant writes, so a version
//! number orders states), and per-node metadata beyond a name and address.

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

/// The cluster's shared state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingState {
    /// Random id fixed when the cluster was created.
    pub cluster_id: String,
    /// Bumped by every change.
    pub version: u64,
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
    /// A new one-member cluster: `node` owns every partition.
    pub fn singleton(cluster_id: String, size: RingSize, node: &str, addr: &str) -> RingState {
        let mut members = BTreeMap::new();
        members.insert(
            node.to_string(),
            Member {
                addr: addr.to_string(),
                state: MemberState::Valid,
            },
        );
        RingState {
            cluster_id,
            version: 1,
            claimant: node.to_string(),
            members,
            owners: Ring::new(size, node),
            pending: Vec::new(),
        }
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Older, equal, or of another cluster: keep ours.
    Ignore,
    /// Newer, of our cluster: take it.
    Adopt,
    /// Newer, and it no longer lists us as a member: we were removed, so
    /// start over as a one-member cluster.
    Reset,
}

/// Decides what node `me`, holding `mine`, does with `theirs`.
pub fn merge(mine: &RingState, theirs: &RingState, me: &str) -> Merge {
    if theirs.cluster_id != mine.cluster_id
        || theirs.size() != mine.size()
        || theirs.version <= mine.version
    {
        return Merge::Ignore;
    }
    match theirs.state_of(me) {
        None | Some(MemberState::Removed) => Merge::Reset,
        Some(_) => Merge::Adopt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_members() -> RingState {
        let size = RingSize::new(8).expect("size");
        let mut r = RingState::singleton("c1".into(), size, "a", "127.0.0.1:1");
        r.members.insert(
            "b".into(),
            Member {
                addr: "127.0.0.1:2".into(),
                state: MemberState::Valid,
            },
        );
        r
    }

    #[test]
    fn merge_takes_only_newer_rings_of_the_same_cluster() {
        let mine = two_members();
        let mut newer = mine.clone();
        newer.version += 1;
        newer.owners.set_owner(PartitionId(0), "b");
        assert_eq!(merge(&mine, &newer, "a"), Merge::Adopt);
        assert_eq!(merge(&newer, &mine, "a"), Merge::Ignore, "older");
        assert_eq!(
            merge(&mine, &mine.clone(), "a"),
            Merge::Ignore,
            "same version"
        );
        let mut foreign = newer.clone();
        foreign.cluster_id = "c2".into();
        assert_eq!(
            merge(&mine, &foreign, "a"),
            Merge::Ignore,
            "another cluster"
        );
        let mut bigger = newer.clone();
        bigger.owners = Ring::new(RingSize::new(16).expect("size"), "a");
        assert_eq!(
            merge(&mine, &bigger, "a"),
            Merge::Ignore,
            "another ring size"
        );
    }

    #[test]
    fn merge_resets_a_node_the_cluster_removed() {
        let mine = two_members();
        let mut removed = mine.clone();
        removed.version += 1;
        if let Some(m) = removed.members.get_mut("b") {
            m.state = MemberState::Removed;
        }
        assert_eq!(merge(&mine, &removed, "b"), Merge::Reset);
        assert_eq!(merge(&mine, &removed, "a"), Merge::Adopt);
        let mut forgotten = removed.clone();
        forgotten.members.remove("b");
        assert_eq!(merge(&mine, &forgotten, "b"), Merge::Reset);
    }
}
