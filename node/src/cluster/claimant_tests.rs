//! Deterministic tests of staging, plan and commit: the tutorial's
//! walkthrough and riak's refusals.

use super::*;
use crate::ring::RingSize;
use crate::ring::claim::{location_short_windows, short_windows};

fn n(i: u32) -> String {
    format!("flavio{i}@127.0.0.1")
}

fn addr(i: u32) -> String {
    format!("127.0.0.1:{}", 10007 + 10 * i)
}

fn singleton(size: u64) -> RingState {
    RingState::singleton(
        "c".into(),
        RingSize::new(size).expect("size"),
        &n(1),
        &addr(1),
    )
}

/// Joins nodes 2..=k to a singleton ring, plans, commits, completes every
/// transfer. Returns the settled ring.
fn grow(mut ring: RingState, from: u32, to: u32) -> RingState {
    let mut s = Staging::default();
    for i in from..=to {
        ring = add_joining(&ring, &n(i), &addr(i), None).expect("joining");
        s.stage(&ring, Change::Join(n(i))).expect("staged");
    }
    s.make_plan(&ring, true).expect("plan");
    ring = s.commit(&ring, true, None).expect("commit");
    settle(ring)
}

fn settle(mut ring: RingState) -> RingState {
    while let Some(t) = ring.pending.first().cloned() {
        ring = complete_transfer(&ring, t.partition, &t.from, &t.to)
            .expect("flip")
            .expect("changed");
    }
    ring
}

#[test]
fn tutorial_join_of_three_nodes() {
    let mut ring = singleton(64);
    let mut s = Staging::default();
    for i in 2..=4 {
        ring = add_joining(&ring, &n(i), &addr(i), None).expect("joining");
        let msg = s.stage(&ring, Change::Join(n(i))).expect("staged");
        assert_eq!(msg, format!("Success: staged join request for '{}'", n(i)));
    }
    assert_eq!(ring.version, 4, "each join is a ring change");
    let lines = member_lines(&ring, None);
    assert_eq!(lines[0].state, MemberState::Joining);
    assert_eq!(lines[0].ring_pct, 0.0);
    assert_eq!(lines[3].name, n(1));

    let plan = s.make_plan(&ring, true).expect("plan").clone();
    assert_eq!(plan.changes.len(), 3);
    assert_eq!(plan.transitions.len(), 1);
    let t = &plan.transitions[0];
    let total: u32 = t.transfers.iter().map(|c| c.count).sum();
    assert_eq!(total, 48);
    assert_eq!(
        t.transfers,
        vec![
            PairCount {
                from: n(1),
                to: n(4),
                count: 16
            },
            PairCount {
                from: n(1),
                to: n(3),
                count: 16
            },
            PairCount {
                from: n(1),
                to: n(2),
                count: 16
            },
        ]
    );
    assert!(t.reassigned.is_empty());
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_eq!(t.members[0].name, n(1));
    assert_eq!(t.members[0].ring_pct, 100.0);
    assert_eq!(t.members[0].pending_pct, Some(25.0));
    assert_eq!(t.members[3].ring_pct, 0.0);
    assert_eq!(t.members[3].pending_pct, Some(25.0));

    let committed = s.commit(&ring, true, Some(&plan.id)).expect("commit");
    assert_eq!(committed.version, ring.version + 1);
    assert_eq!(committed.pending.len(), 48);
    assert!(s.changes().is_empty());
    let done = settle(committed);
    for i in 1..=4 {
        assert_eq!(done.owners.pct(&n(i)), 25.0);
        assert_eq!(done.state_of(&n(i)), Some(MemberState::Valid));
    }
    assert!(done.pending.is_empty());
}

/// The case: 4 -> 3 at ring 64 re-stripes the ring in one plan, as
/// riak_core 2.0 does (46 transfers), leaving the 2 preference lists of 3
/// that 64 partitions on 3 nodes force, and says so.
#[test]
fn leave_to_three_restripes_then_exits() {
    let ring = grow(singleton(64), 2, 4);
    let mut s = Staging::default();
    s.stage(&ring, Change::Leave(n(4))).expect("staged");
    let plan = s.make_plan(&ring, true).expect("plan").clone();
    assert_eq!(plan.transitions.len(), 2, "a leave takes two transitions");
    let t = &plan.transitions[0];
    let transfers: u32 = t.transfers.iter().map(|c| c.count).sum();
    assert!(transfers <= 46, "{transfers} transfers: {:?}", t.transfers);
    assert_eq!(
        t.transfers
            .iter()
            .filter(|c| c.from == n(4))
            .map(|c| c.count)
            .sum::<u32>(),
        16,
        "every partition of the leaver moves"
    );
    assert_eq!(
        t.warnings,
        vec![
            "Not all replicas will be on distinct nodes".to_string(),
            "2 of 64 preference lists of 3 partitions will not be on 3 distinct nodes".into()
        ]
    );
    assert_eq!(t.members[0].state, MemberState::Leaving);
    assert_eq!(t.members[0].pending_pct, Some(0.0));
    assert!(!plan.transitions[1].members.iter().any(|m| m.name == n(4)));

    let mut ring = s.commit(&ring, true, None).expect("commit");
    assert_eq!(ring.state_of(&n(4)), Some(MemberState::Leaving));
    ring = settle(ring);
    assert_eq!(ring.state_of(&n(4)), Some(MemberState::Exiting));
    assert!(ring.owned_by(&n(4)).is_empty());
    assert_eq!(short_windows(ring.owners.as_slice(), 3), 2);
    // Not removed until it has seen that it is exiting.
    assert!(advance(&ring, &|_| false).is_none());
    let removed = advance(&ring, &|_| true).expect("removed");
    assert_eq!(removed.state_of(&n(4)), Some(MemberState::Removed));
    assert_eq!(removed.version, ring.version + 1);
}

#[test]
fn claimant_leaving_hands_over_the_role() {
    let ring = grow(singleton(64), 2, 3);
    let mut s = Staging::default();
    s.stage(&ring, Change::Leave(n(1))).expect("staged");
    s.make_plan(&ring, true).expect("plan");
    let ring = s.commit(&ring, true, None).expect("commit");
    assert_eq!(ring.claimant, n(2), "first valid member by name");
}

#[test]
fn force_remove_reassigns_without_handoff() {
    let ring = grow(singleton(64), 2, 4);
    let mut s = Staging::default();
    s.stage(&ring, Change::ForceRemove(n(4))).expect("staged");
    let plan = s.make_plan(&ring, true).expect("plan").clone();
    assert_eq!(
        plan.warnings,
        vec![format!("All of '{}' replicas will be lost", n(4))]
    );
    let t = &plan.transitions[0];
    assert_eq!(t.reassigned.iter().map(|c| c.count).sum::<u32>(), 16);
    assert!(t.reassigned.iter().all(|c| c.from == n(4)));
    let ring = s.commit(&ring, true, None).expect("commit");
    assert_eq!(ring.state_of(&n(4)), Some(MemberState::Removed));
    assert!(ring.owned_by(&n(4)).is_empty());
    assert!(ring.pending.iter().all(|p| p.from != n(4)));
}

#[test]
fn replace_hands_exactly_the_old_partitions_to_the_new_node() {
    let mut ring = grow(singleton(64), 2, 4);
    ring = add_joining(&ring, &n(5), &addr(5), None).expect("joining");
    let mut s = Staging::default();
    s.stage(&ring, Change::Join(n(5))).expect("join staged");
    let msg = s
        .stage(
            &ring,
            Change::Replace {
                old: n(4),
                new: n(5),
            },
        )
        .expect("replace staged");
    assert!(msg.contains("replacement"), "{msg}");
    assert_eq!(s.changes().len(), 1, "the join is folded into the replace");
    let plan = s.make_plan(&ring, true).expect("plan").clone();
    assert_eq!(
        plan.transitions[0].transfers,
        vec![PairCount {
            from: n(4),
            to: n(5),
            count: 16
        }]
    );
    let ring = settle(s.commit(&ring, true, None).expect("commit"));
    assert_eq!(ring.owned_by(&n(5)).len(), 16);
    assert_eq!(ring.state_of(&n(4)), Some(MemberState::Exiting));
}

#[test]
fn refusals_carry_riaks_reasons() {
    let one = singleton(64);
    let mut s = Staging::default();
    let err = |r: Result<String>| r.expect_err("refused").to_string();
    assert!(err(s.stage(&one, Change::Leave(n(1)))).contains("is the only member"));
    assert!(err(s.stage(&one, Change::Leave(n(9)))).contains("is not a member of the cluster"));
    assert!(err(s.stage(&one, Change::ForceRemove(n(1)))).contains("is the claimant"));
    assert!(err(s.stage(&one, Change::Join(n(2)))).contains("is not joining"));

    let ring = grow(singleton(64), 2, 3);
    assert!(
        err(s.stage(
            &ring,
            Change::Replace {
                old: n(2),
                new: n(3)
            }
        ))
        .contains("is not joining")
    );
    s.stage(&ring, Change::Leave(n(3))).expect("staged");
    assert!(err(s.stage(&ring, Change::Leave(n(3)))).contains("already has a staged change"));
    s.make_plan(&ring, true).expect("plan");
    let leaving = s.commit(&ring, true, None).expect("commit");
    let mut s = Staging::default();
    assert!(
        err(s.stage(&leaving, Change::Leave(n(3)))).contains("already in the process of leaving")
    );
    assert!(
        add_joining(&ring, &n(2), &addr(2), None).is_err(),
        "already a member"
    );
}

#[test]
fn commit_applies_only_the_plan_shown() {
    let mut ring = singleton(64);
    ring = add_joining(&ring, &n(2), &addr(2), None).expect("joining");
    let mut s = Staging::default();
    s.stage(&ring, Change::Join(n(2))).expect("staged");
    let e = s.commit(&ring, true, None).expect_err("no plan yet");
    assert!(e.to_string().contains("verify the plan"), "{e}");
    assert!(s.make_plan(&ring, false).is_err(), "not converged");
    let plan = s.make_plan(&ring, true).expect("plan").clone();
    assert!(
        s.commit(&ring, true, Some("000000")).is_err(),
        "another plan id"
    );
    // The ring moves on (a third node joins): the plan is stale.
    let moved = add_joining(&ring, &n(3), &addr(3), None).expect("joining");
    let e = s.commit(&moved, true, Some(&plan.id)).expect_err("stale");
    assert!(
        e.to_string().contains("the ring changed since the plan"),
        "{e}"
    );
    assert!(matches!(e, Error::FailedPrecondition(_)), "{e:?}");
    let e = s.commit(&ring, false, None).expect_err("not ready");
    assert!(e.to_string().contains("not ready"), "{e}");
    let committed = s.commit(&ring, true, None).expect("commit");
    // While transfers are pending, no new plan.
    let mut s2 = Staging::default();
    let with3 = add_joining(&committed, &n(3), &addr(3), None).expect("joining");
    s2.stage(&with3, Change::Join(n(3))).expect("staged");
    let e = s2.make_plan(&with3, true).expect_err("pending");
    assert!(e.to_string().contains("still pending"), "{e}");
    s2.clear();
    assert!(s2.make_plan(&with3, true).is_err(), "nothing staged");
}

#[test]
fn completing_a_transfer_twice_is_harmless() {
    let mut ring = singleton(16);
    ring = add_joining(&ring, &n(2), &addr(2), None).expect("joining");
    let mut s = Staging::default();
    s.stage(&ring, Change::Join(n(2))).expect("staged");
    s.make_plan(&ring, true).expect("plan");
    let ring = s.commit(&ring, true, None).expect("commit");
    let t = ring.pending[0].clone();
    let flipped = complete_transfer(&ring, t.partition, &t.from, &t.to)
        .expect("ok")
        .expect("changed");
    assert_eq!(flipped.owner(t.partition), t.to);
    assert!(
        complete_transfer(&flipped, t.partition, &t.from, &t.to)
            .expect("ok")
            .is_none()
    );
    assert!(complete_transfer(&flipped, t.partition, &t.to, &t.from).is_err());
}

#[test]
fn clear_removes_joining_members_who_may_then_join_again() {
    let ring = grow(singleton(16), 2, 2);
    let mut s = Staging::default();
    let with3 = add_joining(&ring, &n(3), &addr(3), None).expect("joining");
    s.stage(&with3, Change::Join(n(3))).expect("staged");
    s.clear();
    let cleared = remove_joining(&with3).expect("a joining member to remove");
    assert_eq!(cleared.state_of(&n(3)), Some(MemberState::Removed));
    assert_eq!(
        cleared.state_of(&n(2)),
        Some(MemberState::Valid),
        "valid stay"
    );
    assert_eq!(cleared.version, with3.version + 1);
    assert_eq!(cleared.owners, with3.owners, "nothing moves");
    assert!(remove_joining(&cleared).is_none(), "nothing left to clear");
    // The removed node may join again, and then commit as any join.
    let again = add_joining(&cleared, &n(3), &addr(3), None).expect("joins again");
    s.stage(&again, Change::Join(n(3))).expect("staged again");
    s.make_plan(&again, true).expect("plan");
    let done = settle(s.commit(&again, true, None).expect("commit"));
    assert_eq!(done.state_of(&n(3)), Some(MemberState::Valid));
}

#[test]
fn a_down_claimant_hands_the_role_to_the_member_that_marked_it() {
    let ring = grow(singleton(16), 2, 3);
    assert_eq!(ring.claimant, n(1));
    let by_first = mark_down(&ring, &n(1), &n(1)).expect("down");
    assert_eq!(
        by_first.claimant,
        n(2),
        "first valid member when not by a valid one"
    );
    let down = mark_down(&ring, &n(1), &n(3)).expect("down");
    assert_eq!(down.state_of(&n(1)), Some(MemberState::Down));
    assert_eq!(
        down.claimant,
        n(3),
        "the member that marked it, in a new epoch"
    );
    assert_eq!(down.stamps.epoch, ring.stamps.epoch + 1);
    assert_eq!(down.owners, ring.owners, "nothing moves yet");
    assert!(mark_down(&down, &n(1), &n(3)).is_err(), "already down");
    assert!(mark_down(&down, &n(9), &n(3)).is_err(), "not a member");
    // Nothing is planned while it stays in; force-removing it plans.
    let mut s = Staging::default();
    s.stage(&down, Change::Leave(n(3))).expect("staged");
    let e = s.make_plan(&down, true).expect_err("down member kept");
    assert!(e.to_string().contains("is down"), "{e}");
    s.clear();
    s.stage(&down, Change::ForceRemove(n(1))).expect("staged");
    let plan = s.make_plan(&down, true).expect("plan").clone();
    assert!(!plan.result.owners.owns_any(&n(1)));
    // Back before that: marked up, claimant stays where it went.
    let up = mark_up(&down, &n(1)).expect("up");
    assert_eq!(up.state_of(&n(1)), Some(MemberState::Valid));
    assert_eq!(up.claimant, n(3));
    assert!(mark_up(&up, &n(1)).is_none());
}

#[test]
fn a_member_down_mid_rebalance_can_still_be_force_removed() {
    let ring = grow(singleton(16), 2, 2);
    let mut s = Staging::default();
    let with3 = add_joining(&ring, &n(3), &addr(3), None).expect("joining");
    s.stage(&with3, Change::Join(n(3))).expect("staged");
    s.make_plan(&with3, true).expect("plan");
    let moving = s.commit(&with3, true, None).expect("commit");
    assert!(
        moving.pending.iter().any(|t| t.to == n(3)),
        "transfers to n3"
    );
    // n3 dies before receiving anything: its transfers can never finish.
    // (Those between n1 and n2, re-striping for three members, do.)
    let mut down = mark_down(&moving, &n(3), &n(1)).expect("down");
    while let Some(t) = down
        .pending
        .iter()
        .find(|t| t.to != n(3) && t.from != n(3))
        .cloned()
    {
        down = complete_transfer(&down, t.partition, &t.from, &t.to)
            .expect("flip")
            .expect("changed");
    }
    assert!(!down.pending.is_empty(), "n3's transfers are left");
    let again = add_joining(&down, &n(3), &addr(3), None).expect_err("a down member cannot rejoin");
    assert!(again.to_string().contains("is down"), "{again}");
    s.stage(&down, Change::ForceRemove(n(3))).expect("staged");
    let plan = s
        .make_plan(&down, true)
        .expect("not held back by n3's transfers")
        .clone();
    assert!(
        plan.result
            .pending
            .iter()
            .all(|t| t.to != n(3) && t.from != n(3))
    );
    assert!(!plan.result.owners.owns_any(&n(3)));
}

/// Seeded random sequences of membership changes through the claimant (joins
/// of one or two nodes, leaves, force-removes, replaces and force-replaces,
/// sometimes several at once), on every ring size: after each commit has
/// settled, the valid members own the ring balanced, with no more preference
/// lists off distinct nodes than the member count forces (claim's window and
/// N = 3), within claim's move bound; and the plan's warning says how many
/// lists fall short.
#[test]
fn random_membership_changes_keep_replicas_apart() {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use crate::ring::claim::{fewest_short_windows, is_balanced, move_bound};

    let seeds: u64 = std::env::var("CLAIMANT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let size = 8u64 << rng.random_range(0..=7u32);
        let mut ring = singleton(size);
        let mut next = 2u32;
        for step in 0..12 {
            let valid = ring.members_in(MemberState::Valid);
            let mut s = Staging::default();
            let mut staged = Vec::new();
            let joiner = |ring: &mut RingState, next: &mut u32| {
                let j = *next;
                *next += 1;
                *ring = add_joining(ring, &n(j), &addr(j), None).expect("joining");
                n(j)
            };
            let changes = rng.random_range(1..=2);
            for _ in 0..changes {
                let others: Vec<&String> = valid
                    .iter()
                    .filter(|v| {
                        **v != ring.claimant
                            && !staged.iter().any(|c: &Change| c.node() == v.as_str())
                    })
                    .collect();
                let kind = if valid.len() >= 16 || (valid.len() > 1 && rng.random_bool(0.45)) {
                    rng.random_range(1..=4)
                } else {
                    0
                };
                let change = match (kind, others.is_empty()) {
                    (0, _) | (_, true) if valid.len() < 16 => {
                        Change::Join(joiner(&mut ring, &mut next))
                    }
                    (_, true) => break,
                    (1, _) => Change::Leave(others[rng.random_range(0..others.len())].clone()),
                    (2, _) => {
                        Change::ForceRemove(others[rng.random_range(0..others.len())].clone())
                    }
                    (k, _) => {
                        let old = others[rng.random_range(0..others.len())].clone();
                        let new = joiner(&mut ring, &mut next);
                        s.stage(&ring, Change::Join(new.clone()))
                            .expect("join staged");
                        if k == 3 {
                            Change::Replace { old, new }
                        } else {
                            Change::ForceReplace { old, new }
                        }
                    }
                };
                let ctx = format!("seed {seed} ring {size} step {step}: {change:?}");
                s.stage(&ring, change.clone())
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                staged.push(change);
            }
            if staged.is_empty() {
                continue;
            }
            let ctx = format!("seed {seed} ring {size} step {step}: {staged:?}");
            let plan = s
                .make_plan(&ring, true)
                .unwrap_or_else(|e| panic!("{ctx}: {e}"))
                .clone();
            // What claim started from: replacements already made.
            let mut target = names(&ring.owners);
            for c in &staged {
                if let Change::Replace { old, new } | Change::ForceReplace { old, new } = c {
                    target
                        .iter_mut()
                        .filter(|o| *o == old)
                        .for_each(|o| *o = new.clone());
                }
            }
            ring = s
                .commit(&ring, true, None)
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            ring = settle(ring);
            ring = advance(&ring, &|_| true).unwrap_or(ring);
            let valid = ring.members_in(MemberState::Valid);
            let owners = names(&ring.owners);
            let (sz, m) = (owners.len(), valid.len());
            assert!(is_balanced(&owners, &valid), "{ctx}: balance");
            let window = DEFAULT_TARGET_N_VAL.min(m);
            let short = short_windows(&owners, window);
            assert!(
                short <= fewest_short_windows(sz, m, DEFAULT_TARGET_N_VAL),
                "{ctx}: {short} short windows of {window}"
            );
            let n3 = if m == 3 { 2 } else { 0 };
            assert!(short_windows(&owners, 3) <= n3, "{ctx}: lists of 3");
            let moved = target.iter().zip(&owners).filter(|(a, b)| a != b).count();
            assert!(moved <= move_bound(&target, &valid), "{ctx}: {moved} moves");
            let counted = format!("{short} of {sz} preference lists of {window} partitions");
            let warned = plan.transitions[0]
                .warnings
                .iter()
                .any(|w| w.starts_with(&counted));
            assert_eq!(
                warned,
                short > 0,
                "{ctx}: {:?}",
                plan.transitions[0].warnings
            );
        }
    }
}

/// The owner of each partition, as plain names for the pure claim checks.
fn names(owners: &crate::ring::Ring) -> Vec<String> {
    owners.owners().map(|(_, o)| o.to_string()).collect()
}

/// Joins nodes 2..=6 with node `i` at `zone{i % zones}` (node 1 too, staged
/// with them), on a ring of `size`. Returns the plan.
fn located_plan(size: u64, zones: u32) -> (RingState, Staging, Plan) {
    let mut ring = singleton(size);
    let mut s = Staging::default();
    for i in 2..=6 {
        ring = add_joining(&ring, &n(i), &addr(i), None).expect("joining");
        s.stage(&ring, Change::Join(n(i))).expect("staged");
    }
    for i in 1..=6 {
        let msg = s
            .stage(
                &ring,
                Change::Location {
                    node: n(i),
                    location: format!("zone{}", i % zones),
                },
            )
            .expect("location staged beside the join");
        assert_eq!(
            msg,
            format!(
                "Success: staged changing location of '{}' to zone{}",
                n(i),
                i % zones
            )
        );
    }
    let plan = s.make_plan(&ring, true).expect("plan").clone();
    (ring, s, plan)
}

#[test]
fn locations_spread_preference_lists_and_the_plan_says_when_they_cannot() {
    let location_of = |r: &RingState| {
        let members = r.members.clone();
        move |n: &String| members.get(n).and_then(|m| m.location.clone())
    };
    // Four zones on a ring of 64: every list of 3 on 3 zones.
    let mut ring = singleton(64);
    let mut s = Staging::default();
    for i in 2..=8 {
        ring = add_joining(&ring, &n(i), &addr(i), None).expect("joining");
        s.stage(&ring, Change::Join(n(i))).expect("staged");
    }
    for i in 1..=8 {
        let location = format!("zone{}", i % 4);
        s.stage(
            &ring,
            Change::Location {
                node: n(i),
                location,
            },
        )
        .expect("staged");
    }
    let plan = s.make_plan(&ring, true).expect("plan").clone();
    assert!(
        plan.transitions[0].warnings.is_empty(),
        "{:?}",
        plan.transitions[0].warnings
    );
    let ring = settle(s.commit(&ring, true, None).expect("commit"));
    let owners: Vec<String> = ring.owners.owners().map(|(_, o)| o.to_string()).collect();
    assert_eq!(location_short_windows(&owners, location_of(&ring), 3), 0);
    assert_eq!(short_windows(&owners, 4), 0);

    // Three zones on 64: the fewest lists short that the counts allow (2),
    // and the plan says so, as riak's does.
    let (_, _, plan) = located_plan(64, 3);
    let w = &plan.transitions[0].warnings;
    assert_eq!(w[0], "Not all replicas will be on distinct locations");
    assert!(
        w[1].starts_with("2 of 64 preference lists of 3 partitions"),
        "{w:?}"
    );
    assert_eq!(
        w[2],
        "A ring of 72 partitions would allow it: the ring size is chosen when a cluster is created (--ring-size)"
    );
    // On a ring of 48 (a multiple of 3) every list is on 3 zones, no warning.
    let (ring, mut staged, plan) = located_plan(48, 3);
    assert!(plan.transitions[0].warnings.is_empty(), "{plan:?}");
    let ring = settle(staged.commit(&ring, true, None).expect("commit"));
    let owners: Vec<String> = ring.owners.owners().map(|(_, o)| o.to_string()).collect();
    assert_eq!(location_short_windows(&owners, location_of(&ring), 3), 0);
    assert_eq!(
        plan.changes
            .iter()
            .filter(|c| c.action() == "set-location")
            .count(),
        6
    );

    // Two zones: no list of 3 on 3 zones.
    let (_, _, plan) = located_plan(64, 2);
    let w = &plan.transitions[0].warnings;
    assert!(w[1].starts_with("64 of 64 preference lists"), "{w:?}");
}

#[test]
fn location_staging_refusals_and_replacement() {
    let ring = grow(singleton(16), 2, 4);
    let mut s = Staging::default();
    let loc = |node: String, location: &str| Change::Location {
        node,
        location: location.into(),
    };
    assert!(s.stage(&ring, loc(n(9), "zone-a")).is_err(), "not a member");
    assert!(s.stage(&ring, loc(n(2), "")).is_err(), "empty");
    assert!(s.stage(&ring, loc(n(2), "zone a")).is_err(), "space");
    s.stage(&ring, loc(n(2), "zone-a")).expect("staged");
    s.stage(&ring, loc(n(2), "zone-b")).expect("restaged");
    assert_eq!(s.changes(), &[loc(n(2), "zone-b")]);
    // A member's other change can be staged beside its location.
    s.stage(&ring, Change::Leave(n(2)))
        .expect("leave beside location");
    let plan = s.make_plan(&ring, true).expect("plan").clone();
    let ring = s.commit(&ring, true, None).expect("commit");
    assert_eq!(
        ring.members.get(&n(2)).and_then(|m| m.location.as_deref()),
        Some("zone-b")
    );
    assert!(!plan.transitions.is_empty());
    // Staging the location a member already has changes nothing.
    let mut s = Staging::default();
    let msg = s.stage(&ring, loc(n(2), "zone-b")).expect("same");
    assert!(msg.contains("already at location"), "{msg}");
    assert!(s.changes().is_empty());
}
