//! Preference lists ("apl", active preference list, in riak_core).
//!
//! The preference list of a key is the partition its hash belongs to and the
//! partitions after it, in ring order; the first `n` are the key's
//! *primaries*. When some owners are down, [`annotated`] shapes the list as
//! `riak_core_apl:get_apl_ann` does: the primaries whose owner is up, then, for
//! each primary whose owner is down, a *fallback*: the primary's partition
//! served by the owner of the next partition after the primaries whose owner
//! is up (each later partition is used at most once).
//!
//! A [`Replica`] is the identity requests use for one vnode they ask: a
//! partition *and* the node that serves it, primary or fallback, so
//! "partition P on node Y, standing in for P's owner" can be said.
//!
//! What this leaves out: deciding who is up (the cluster layer passes a
//! predicate), and forwarding or hinted handoff once the owner returns.

use std::sync::Arc;

use super::chash::{PartitionId, RingSize};
use super::state::Ring;
use crate::{Error, Result};

/// The first `n` partitions of a preference list starting at `first`.
///
/// Errors if `n` is 0 or larger than the ring.
pub fn primaries(size: RingSize, first: PartitionId, n: usize) -> Result<Vec<PartitionId>> {
    check_n(size, n)?;
    Ok((0..n).map(|k| size.advance(first, k)).collect())
}

/// The primaries of a preference list with their owners.
pub fn primaries_owned(
    ring: &Ring,
    first: PartitionId,
    n: usize,
) -> Result<Vec<(PartitionId, &str)>> {
    Ok(primaries(ring.size(), first, n)?
        .into_iter()
        .map(|p| (p, ring.owner(p)))
        .collect())
}

fn check_n(size: RingSize, n: usize) -> Result<()> {
    if n == 0 || n > size.len() {
        return Err(Error::InvalidArgument(format!(
            "n must be from 1 to the ring size {size}, got {n}"
        )));
    }
    Ok(())
}

/// Whether a replica is one of the key's primaries or stands in for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The owner of one of the first `n` partitions.
    Primary,
    /// An up node serving a primary's partition while its owner is down.
    Fallback,
}

/// One entry of an annotated preference list: which vnode a request asks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    /// The partition (for a fallback, the down primary's partition).
    pub partition: PartitionId,
    /// The node that serves it (shared with the ring: cheap to clone).
    pub node: Arc<str>,
    /// Primary or fallback.
    pub role: Role,
}

impl Replica {
    /// The primary of `partition`, owned by `node`.
    pub fn primary(partition: PartitionId, node: Arc<str>) -> Replica {
        Replica {
            partition,
            node,
            role: Role::Primary,
        }
    }
}

impl std::fmt::Display for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match self.role {
            Role::Primary => "primary",
            Role::Fallback => "fallback",
        };
        write!(f, "partition {} on {} ({role})", self.partition, self.node)
    }
}

/// The annotated preference list of `n` replicas starting at `first`: the
/// up primaries, then fallbacks for the down ones (see the module docs). It
/// has fewer than `n` entries when too few nodes are up.
pub fn annotated(
    ring: &Ring,
    first: PartitionId,
    n: usize,
    is_up: impl Fn(&str) -> bool,
) -> Result<Vec<Replica>> {
    let size = ring.size();
    check_n(size, n)?;
    let mut out = Vec::with_capacity(n);
    let mut down = Vec::new();
    for p in primaries(size, first, n)? {
        let node = ring.owner_shared(p);
        if is_up(node) {
            out.push(Replica::primary(p, Arc::clone(node)));
        } else {
            down.push(p);
        }
    }
    let mut later = (n..size.len()).map(|k| ring.owner_shared(size.advance(first, k)));
    for partition in down {
        // Skip later partitions whose owner is down; each serves one primary.
        let Some(node) = later.by_ref().find(|o| is_up(o)) else {
            break;
        };
        out.push(Replica {
            partition,
            node: Arc::clone(node),
            role: Role::Fallback,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Ring {
        let names = ["a", "b", "c", "d", "e"];
        let owners: Vec<&str> = (0..8).map(|i| names[i % 5]).collect();
        Ring::from_owners(RingSize::new(8).expect("size"), &owners).expect("ring")
    }

    #[test]
    fn primaries_wrap_and_check_n() {
        let size = RingSize::new(8).expect("size");
        let ps = primaries(size, PartitionId(6), 3).expect("apl");
        assert_eq!(ps, vec![PartitionId(6), PartitionId(7), PartitionId(0)]);
        assert!(primaries(size, PartitionId(0), 0).is_err());
        assert!(primaries(size, PartitionId(0), 9).is_err());
        assert_eq!(
            primaries(size, PartitionId(0), 8).map(|v| v.len()).ok(),
            Some(8)
        );
    }

    #[test]
    fn annotated_all_up_is_primaries() {
        let r = ring();
        let apl = annotated(&r, PartitionId(1), 3, |_| true).expect("apl");
        let nodes: Vec<_> = apl
            .iter()
            .map(|x| (x.partition.0, &*x.node, x.role))
            .collect();
        assert_eq!(
            nodes,
            vec![
                (1, "b", Role::Primary),
                (2, "c", Role::Primary),
                (3, "d", Role::Primary)
            ]
        );
    }

    #[test]
    fn annotated_with_down_nodes() {
        // Owners: 0a 1b 2c 3d 4e 5a 6b 7c. Primaries of 1 with n=3: b c d.
        let r = ring();
        let apl = annotated(&r, PartitionId(1), 3, |n| n != "c" && n != "e").expect("apl");
        let got: Vec<_> = apl
            .iter()
            .map(|x| (x.partition.0, &*x.node, x.role))
            .collect();
        // c is down: partition 2 falls back to the next up owner after the
        // primaries, skipping e (4, down): a (5).
        assert_eq!(
            got,
            vec![
                (1, "b", Role::Primary),
                (3, "d", Role::Primary),
                (2, "a", Role::Fallback)
            ]
        );
        let apl = annotated(&r, PartitionId(1), 3, |n| n == "b").expect("apl");
        let got: Vec<_> = apl
            .iter()
            .map(|x| (x.partition.0, &*x.node, x.role))
            .collect();
        // Only b is up: partitions 2 and 3 fall back to 6 (b); then none left.
        assert_eq!(got, vec![(1, "b", Role::Primary), (2, "b", Role::Fallback)]);
        assert!(
            annotated(&r, PartitionId(1), 3, |_| false)
                .expect("apl")
                .is_empty()
        );
    }

    #[test]
    fn every_primary_down_takes_fallbacks_in_ring_order_reusing_nodes() {
        // Owners: 0a 1b 2c 3d 4e 5a 6b 7c. Primaries of 1: b c d, all down.
        // Later partitions 4 5 6 7 0 are owned by e a b c a: the up ones
        // serve in order, a twice (riak's get_apl_ann does the same).
        let r = ring();
        let apl = annotated(&r, PartitionId(1), 3, |n| n == "a" || n == "e").expect("apl");
        let got: Vec<_> = apl
            .iter()
            .map(|x| (x.partition.0, &*x.node, x.role))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "e", Role::Fallback),
                (2, "a", Role::Fallback),
                (3, "a", Role::Fallback)
            ]
        );
    }
}
