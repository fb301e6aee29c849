//! The vnodes a node keeps, and why.
//!
//! A node may run a vnode of partition P for one of these reasons, its
//! *kind*:
//! - **primary**: it owns P in its ring, and the vnode serves P's requests;
//! - **incoming**: P is moving to it, and the vnode is the copy being handed
//!   over (still receiving, or complete, durable and marked, waiting for the
//!   claimant's flip). Only commands forwarded in that handoff's session
//!   reach it;
//! - **handing off**: it is sending P away, or has released P and redirects
//!   what still arrives to P's owner. The handoff module runs these;
//! - **fallback**: it stands in for P's owner while the owner is down (the
//!   annotated preference list named it), until hinted handoff has given
//!   its data back (`handoff::hinted`), which also retires it.
//!
//! Anything else a node holds is a leftover and goes: a vnode whose
//! partition changed owner without this node sending it (a join that
//! discards local data, a force-remove, a flip learnt by gossip) is
//! released; an incoming copy whose transfer is no longer pending (the
//! transfer was cancelled or replaced) is emptied.
//!
//! [`decide`] is that whole rule, pure: the node applies it on every ring
//! change from what it knows in memory, and at startup from what its disk
//! says (the ring, and the marker of a complete incoming copy).
//!
//! A fallback whose partition becomes owned here (a forced reassignment)
//! is simply the primary: its data counts once, where it is.

use super::state::RingState;
use crate::ring::PartitionId;

/// What this node knows of its own vnode of a partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Local {
    /// The vnode runs (or, at startup, its data is on disk).
    pub present: bool,
    /// The handoff module sends it away or redirects it.
    pub handing_off: bool,
    /// It is (or was) an incoming copy: `Some(true)` while its handoff
    /// stream is open, `Some(false)` once the stream ended.
    pub incoming: Option<bool>,
    /// It is marked a fallback.
    pub fallback: bool,
}

/// What the node does with its vnode of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Owned here: run it as the partition's primary (and forget any
    /// incoming state: the copy became the primary at the flip).
    Primary,
    /// An incoming copy with a reason to exist: keep it as it is.
    Incoming,
    /// A fallback: keep it running; hinted handoff decides its end.
    Fallback,
    /// The handoff module's business: leave it alone.
    HandingOff,
    /// Not owned, not handed off, not incoming: release it, redirecting
    /// what still arrives to the owner.
    Release,
    /// An incoming copy whose transfer is gone: empty it and forget it.
    DropIncoming,
    /// Nothing here and nothing to do.
    Nothing,
}

/// The rule of the module docs: what node `me`, whose ring is `ring`, does
/// with its vnode of `p`.
///
/// An incoming copy is kept while its stream is open, or while the ring
/// still lists a transfer of `p` to `me`. A receiver accepts a handoff only
/// when its own ring lists the transfer (see the receiver), so a later ring
/// that no longer lists it either made `me` the owner (the flip) or
/// cancelled the transfer.
pub fn decide(ring: &RingState, me: &str, p: PartitionId, local: Local) -> Verdict {
    if ring.owner(p) == me {
        return Verdict::Primary;
    }
    if local.handing_off {
        return Verdict::HandingOff;
    }
    if let Some(receiving) = local.incoming {
        let pending_here = ring.pending_of(p).is_some_and(|t| t.to == me);
        return if receiving || pending_here {
            Verdict::Incoming
        } else {
            Verdict::DropIncoming
        };
    }
    if local.fallback {
        return Verdict::Fallback;
    }
    if local.present {
        Verdict::Release
    } else {
        Verdict::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::{Member, MemberState, Transfer};
    use crate::ring::RingSize;

    /// "a" owns everything; "b" is a member; partition 1 moves from a to b.
    fn ring(pending: bool) -> RingState {
        let size = RingSize::new(8).expect("size");
        let mut r = RingState::singleton("c".into(), size, "a", "a:1");
        r.members.insert(
            "b".into(),
            Member {
                addr: "b:1".into(),
                state: MemberState::Valid,
                location: None,
                incarnation: None,
            },
        );
        if pending {
            r.pending.push(Transfer {
                partition: PartitionId(1),
                from: "a".into(),
                to: "b".into(),
            });
        }
        r
    }

    fn local(present: bool, handing_off: bool, incoming: Option<bool>) -> Local {
        Local {
            present,
            handing_off,
            incoming,
            fallback: false,
        }
    }

    #[test]
    fn a_fallback_is_kept_until_its_partition_is_owned_here() {
        let r = ring(true);
        let p = PartitionId(3);
        let fb = Local {
            fallback: true,
            ..local(true, false, None)
        };
        assert_eq!(decide(&r, "b", p, fb), Verdict::Fallback);
        // Even with no data yet (started, nothing written).
        let empty = Local {
            present: false,
            ..fb
        };
        assert_eq!(decide(&r, "b", p, empty), Verdict::Fallback);
        // Owned here: the primary, whatever the marker says.
        assert_eq!(decide(&r, "a", p, fb), Verdict::Primary);
        // Retired (redirecting): handoff's business.
        let redirecting = Local {
            handing_off: true,
            ..fb
        };
        assert_eq!(decide(&r, "b", p, redirecting), Verdict::HandingOff);
    }

    #[test]
    fn owned_partitions_are_primaries_whatever_else_is_known() {
        let r = ring(true);
        for l in [
            Local::default(),
            local(true, true, None),
            local(true, false, Some(false)),
        ] {
            assert_eq!(decide(&r, "a", PartitionId(1), l), Verdict::Primary);
        }
    }

    #[test]
    fn an_incoming_copy_lives_while_its_stream_is_open_or_its_transfer_pending() {
        let p = PartitionId(1);
        let pending = ring(true);
        let done = ring(false);
        // Receiving: kept even if this ring does not list the transfer yet.
        assert_eq!(
            decide(&done, "b", p, local(true, false, Some(true))),
            Verdict::Incoming
        );
        // Complete (or failed) and still pending: kept for the flip.
        assert_eq!(
            decide(&pending, "b", p, local(true, false, Some(false))),
            Verdict::Incoming
        );
        // No longer pending and not owned: the transfer was cancelled.
        assert_eq!(
            decide(&done, "b", p, local(true, false, Some(false))),
            Verdict::DropIncoming
        );
        // A transfer of another partition to b does not keep this copy.
        assert_eq!(
            decide(
                &pending,
                "b",
                PartitionId(2),
                local(true, false, Some(false))
            ),
            Verdict::DropIncoming
        );
    }

    #[test]
    fn leftovers_are_released_and_handoffs_left_alone() {
        let r = ring(true);
        let p = PartitionId(3);
        assert_eq!(
            decide(&r, "b", p, local(true, false, None)),
            Verdict::Release
        );
        assert_eq!(
            decide(&r, "b", p, local(true, true, None)),
            Verdict::HandingOff
        );
        assert_eq!(decide(&r, "b", p, Local::default()), Verdict::Nothing);
    }
}
