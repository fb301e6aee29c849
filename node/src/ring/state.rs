//! Ring state: the owner of every partition of a ring.
//!
//! A [`Ring`] is what riak_core's `riak_core_ring` holds about ownership: the
//! size and, for each partition, the member that owns it. Members are names
//! (a node's name, as the cluster layer spells it). Changing owners goes
//! through [`Ring::claim`], which keeps the claim invariants.
//!
//! This is the one place ownership is stored: the cluster's ring state
//! (`cluster::state::RingState`) holds a `Ring`, and the node's routing
//! snapshot reads owners from it (names are shared `Arc<str>`, so a reply
//! naming an owner clones a pointer, not a string).
//!
//! What this leaves out: membership states, pending transfers (`next`),
//! versions and vector clocks, and persistence. The cluster layer wraps a
//! `Ring` with those.

use std::sync::Arc;

use super::chash::{KeyHash, PartitionId, RingSize};
use super::claim::{self, Claim, ClaimPath};
use crate::{Error, Result};

/// The owner of every partition of a ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    size: RingSize,
    owners: Vec<Arc<str>>,
}

impl Ring {
    /// A ring where `first_member` owns every partition, as a new cluster's
    /// first node does.
    pub fn new(size: RingSize, first_member: &str) -> Ring {
        let name: Arc<str> = Arc::from(first_member);
        Ring {
            size,
            owners: vec![name; size.len()],
        }
    }

    /// A ring from the owner of each partition, in partition order.
    pub fn from_owners<S: AsRef<str>>(size: RingSize, owners: &[S]) -> Result<Ring> {
        if owners.len() != size.len() {
            return Err(Error::InvalidArgument(format!(
                "a ring of {size} partitions needs {size} owners, got {}",
                owners.len()
            )));
        }
        if owners.iter().any(|o| o.as_ref().is_empty()) {
            return Err(Error::InvalidArgument("an owner name is empty".into()));
        }
        // Share one allocation per distinct name.
        let mut names: Vec<Arc<str>> = Vec::new();
        let owners = owners
            .iter()
            .map(|o| shared(&mut names, o.as_ref()))
            .collect();
        Ok(Ring { size, owners })
    }

    /// The number of partitions, as a `usize`.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Always false: a ring has at least 8 partitions.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// The owner of every partition as a slice, in partition order: what the
    /// pure claim functions take.
    pub fn as_slice(&self) -> &[Arc<str>] {
        &self.owners
    }

    /// The owner of partition `p`, shared.
    pub fn owner_shared(&self, p: PartitionId) -> &Arc<str> {
        &self.owners[p.0 as usize % self.size.len()]
    }

    /// Makes `to` the owner of `p` (an ownership flip, or a reassignment
    /// without handoff).
    pub fn set_owner(&mut self, p: PartitionId, to: &str) {
        let i = p.0 as usize % self.size.len();
        if &*self.owners[i] == to {
            return;
        }
        let name = match self.owners.iter().find(|o| &***o == to) {
            Some(n) => Arc::clone(n),
            None => Arc::from(to),
        };
        self.owners[i] = name;
    }

    /// Every partition of `from` given to `to`.
    pub fn replace_member(&mut self, from: &str, to: &str) {
        for p in self.owned_by(from) {
            self.set_owner(p, to);
        }
    }

    /// The percentage of the ring `node` owns.
    pub fn pct(&self, node: &str) -> f64 {
        let n = self.owners.iter().filter(|o| &***o == node).count();
        100.0 * n as f64 / self.owners.len() as f64
    }

    /// Whether `node` owns at least one partition.
    pub fn owns_any(&self, node: &str) -> bool {
        self.owners.iter().any(|o| &**o == node)
    }

    /// The number of partitions.
    pub fn size(&self) -> RingSize {
        self.size
    }

    /// The owner of partition `p`.
    pub fn owner(&self, p: PartitionId) -> &str {
        &self.owners[p.0 as usize % self.size.len()]
    }

    /// The owner of every partition, in partition order.
    pub fn owners(&self) -> impl Iterator<Item = (PartitionId, &str)> {
        self.size.partitions().zip(self.owners.iter().map(|o| &**o))
    }

    /// The partitions `node` owns, in ring order.
    pub fn owned_by(&self, node: &str) -> Vec<PartitionId> {
        self.owners()
            .filter(|(_, o)| *o == node)
            .map(|(p, _)| p)
            .collect()
    }

    /// The members that own at least one partition, sorted.
    pub fn members(&self) -> Vec<&str> {
        let mut m: Vec<&str> = self.owners.iter().map(|o| &**o).collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    /// The partition a key hash belongs to.
    pub fn partition_of(&self, hash: &KeyHash) -> PartitionId {
        self.size.partition_of(hash)
    }

    /// The ring `members` should own, by [`claim::claim`] from this one.
    /// Returns the new ring and how the claim got there.
    pub fn claim<S: AsRef<str>>(
        &self,
        members: &[S],
        target_n_val: usize,
    ) -> Result<(Ring, ClaimPath)> {
        // Without locations the located claim is exactly the plain one.
        self.claim_located(members, &|_| None, target_n_val, 0)
    }

    /// [`Ring::claim`] with members' locations ([`claim::claim_located`]):
    /// `location_of` gives a member's location, `None` when it has none.
    pub fn claim_located<S: AsRef<str>>(
        &self,
        members: &[S],
        location_of: &dyn Fn(&str) -> Option<String>,
        target_n_val: usize,
        target_location_n_val: usize,
    ) -> Result<(Ring, ClaimPath)> {
        let mut names: Vec<Arc<str>> = self.owners.clone();
        names.sort_unstable();
        names.dedup();
        let members: Vec<Arc<str>> = members
            .iter()
            .map(|m| shared(&mut names, m.as_ref()))
            .collect();
        if members.iter().any(|m| m.is_empty()) {
            return Err(Error::InvalidArgument("a member name is empty".into()));
        }
        let Claim { owners, path } = claim::claim_located(
            &self.owners,
            &members,
            |m: &Arc<str>| location_of(m),
            target_n_val,
            target_location_n_val,
        )?;
        Ok((
            Ring {
                size: self.size,
                owners,
            },
            path,
        ))
    }

    /// The partitions whose owner differs between `self` and `next`, with the
    /// old and new owner: the transfers a claim implies.
    pub fn transfers<'a>(&'a self, next: &'a Ring) -> Vec<(PartitionId, &'a str, &'a str)> {
        self.owners()
            .zip(next.owners.iter())
            .filter(|((_, a), b)| *a != &***b)
            .map(|((p, a), b)| (p, a, &**b))
            .collect()
    }
}

/// The `Arc` for `name` among `names`, added when new: one allocation per
/// distinct name.
fn shared(names: &mut Vec<Arc<str>>, name: &str) -> Arc<str> {
    match names.iter().find(|n| &***n == name) {
        Some(n) => Arc::clone(n),
        None => {
            let n: Arc<str> = Arc::from(name);
            names.push(Arc::clone(&n));
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ring_and_claim() {
        let ring = Ring::new(RingSize::DEFAULT, "a");
        assert_eq!(ring.owned_by("a").len(), 64);
        assert_eq!(ring.members(), vec!["a"]);
        let (next, _) = ring.claim(&["a", "b", "c", "d"], 4).expect("claim");
        assert_eq!(next.members(), vec!["a", "b", "c", "d"]);
        assert_eq!(ring.transfers(&next).len(), 48);
        for m in ["a", "b", "c", "d"] {
            assert_eq!(next.owned_by(m).len(), 16);
        }
        let owners: Vec<String> = next.owners().map(|(_, o)| o.to_string()).collect();
        assert_eq!(
            Ring::from_owners(RingSize::DEFAULT, &owners).ok(),
            Some(next)
        );
        assert!(Ring::from_owners(RingSize::DEFAULT, &owners[1..]).is_err());
    }
}
