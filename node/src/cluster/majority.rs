//! Majority for membership: the rule that keeps a minority side of a
//! partition from changing the ring.
//!
//! `plan`, `commit`, `down` and `force-remove` (and `force-replace`, which
//! drops a member the same way) are done only by a node that reaches a
//! majority of the ring's *voters*: its valid and leaving members (joining
//! members own nothing yet; down and removed ones are out of the count,
//! so a cluster that lost members can still be repaired by the ones left).
//! Taking a member out without its consent (`down`, `force-remove`)
//! additionally needs a majority of voters that see it unreachable, by
//! their failure detectors. Two disjoint sides cannot both reach a majority
//! of one ring, so a minority side can neither elect a claimant nor commit
//! a plan; what it still writes in the moment before its failure detector
//! notices is merged by the ring's join (`super::state`).
//!
//! Pure: the manager gathers what each member said and asks [`check`].
//! Left out: the gathering itself (the manager asks every voter at once,
//! with a short timeout).

use std::collections::BTreeMap;

use super::state::{MemberState, RingState};
use crate::{Error, Result};

/// What a member said when asked: the members its failure detector sees
/// unreachable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerView {
    /// Active members it sees as down.
    pub unreachable: Vec<String>,
}

/// What needs a majority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Computing a plan.
    Plan,
    /// Committing one.
    Commit,
    /// Marking a member down.
    Down(&'a str),
    /// Dropping a member without handoff (force-remove, force-replace).
    ForceRemove(&'a str),
}

impl Action<'_> {
    fn verb(&self) -> String {
        match self {
            Action::Plan => "plan".into(),
            Action::Commit => "commit".into(),
            Action::Down(n) => format!("mark '{n}' down"),
            Action::ForceRemove(n) => format!("force-remove '{n}'"),
        }
    }

    fn target(&self) -> Option<&str> {
        match self {
            Action::Down(n) | Action::ForceRemove(n) => Some(n),
            Action::Plan | Action::Commit => None,
        }
    }
}

/// The members whose say counts: valid and leaving ones, sorted.
pub fn voters(ring: &RingState) -> Vec<String> {
    ring.members
        .iter()
        .filter(|(_, m)| matches!(m.state, MemberState::Valid | MemberState::Leaving))
        .map(|(n, _)| n.clone())
        .collect()
}

/// The smallest majority of `n` voters.
pub fn needed(n: usize) -> usize {
    n / 2 + 1
}

fn names(v: &[&String]) -> String {
    v.iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether node `me` may do `action` on `ring`, given what each voter it
/// asked said (`None`: not reached). `me`'s own view is among the answers
/// when it is a voter. The error names the members that could not be
/// reached, or that still reach the member to be taken out.
pub fn check(
    ring: &RingState,
    me: &str,
    action: Action<'_>,
    answers: &BTreeMap<String, Option<PeerView>>,
) -> Result<()> {
    let voters = voters(ring);
    let need = needed(voters.len());
    let reached: Vec<&String> = voters
        .iter()
        .filter(|v| *v == me || answers.get(*v).is_some_and(Option::is_some))
        .collect();
    if reached.len() < need {
        let missing: Vec<&String> = voters.iter().filter(|v| !reached.contains(v)).collect();
        return Err(Error::FailedPrecondition(format!(
            "Failed: cannot {} from '{me}': it reaches {} of the {} valid members, a majority ({need}) is needed; not reached: {}",
            action.verb(),
            reached.len(),
            voters.len(),
            names(&missing)
        )));
    }
    if let Some(target) = action.target() {
        let sees_down = |v: &String| {
            answers
                .get(v)
                .and_then(Option::as_ref)
                .is_some_and(|view| view.unreachable.iter().any(|u| u == target))
        };
        let agree: Vec<&String> = reached
            .iter()
            .copied()
            .filter(|v| *v != target && sees_down(v))
            .collect();
        if agree.len() < need {
            let still: Vec<&String> = reached
                .iter()
                .copied()
                .filter(|v| *v != target && !sees_down(v))
                .collect();
            return Err(Error::FailedPrecondition(format!(
                "Failed: cannot {}: {} of the {} valid members see it unreachable, a majority ({need}) must; still reaching it: {}",
                action.verb(),
                agree.len(),
                voters.len(),
                if still.is_empty() {
                    "none answered".to_string()
                } else {
                    names(&still)
                }
            )));
        }
    }
    Ok(())
}

/// The voters `me` sees up by its own failure detector (`unreachable`), of
/// how many.
fn seen_up(ring: &RingState, me: &str, unreachable: &[String]) -> (usize, usize) {
    let voters = voters(ring);
    let up = voters
        .iter()
        .filter(|v| *v == me || !unreachable.contains(v))
        .count();
    (up, voters.len())
}

/// Whether `me`'s own failure detector (`unreachable`) sees a majority of
/// the voters up (trivially, when there are none): what the claimant's
/// writes need, without asking anyone.
pub fn sees(ring: &RingState, me: &str, unreachable: &[String]) -> bool {
    let (up, total) = seen_up(ring, me, unreachable);
    total == 0 || up >= needed(total)
}

/// `member-status`'s advice: whether membership changes can be made from
/// `me`, judged by its own failure detector (`unreachable`).
pub fn advice(ring: &RingState, me: &str, unreachable: &[String]) -> String {
    let (up, total) = seen_up(ring, me, unreachable);
    let need = needed(total);
    if sees(ring, me, unreachable) {
        format!(
            "Majority: '{me}' reaches {up} of {total} valid members ({need} needed): plan, commit, down and force-remove can be run here"
        )
    } else {
        format!(
            "Majority: '{me}' reaches only {up} of {total} valid members ({need} needed): plan, commit, down and force-remove are refused here until the partition heals"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::Member;
    use crate::ring::RingSize;

    fn five() -> RingState {
        let size = RingSize::new(16).expect("size");
        let mut r = RingState::singleton("c".into(), size, "n0", "a0");
        for i in 1..5 {
            r.members.insert(
                format!("n{i}"),
                Member {
                    addr: format!("a{i}"),
                    state: MemberState::Valid,
                    location: None,
                    incarnation: None,
                },
            );
        }
        r
    }

    fn answers(reached: &[&str], unreachable: &[&str]) -> BTreeMap<String, Option<PeerView>> {
        (0..5)
            .map(|i| format!("n{i}"))
            .map(|n| {
                let view = reached.contains(&n.as_str()).then(|| PeerView {
                    unreachable: unreachable.iter().map(|s| s.to_string()).collect(),
                });
                (n, view)
            })
            .collect()
    }

    #[test]
    fn a_minority_cannot_commit_and_is_told_who_is_missing() {
        let r = five();
        let a = answers(&["n0", "n1"], &["n2", "n3", "n4"]);
        let e = check(&r, "n0", Action::Commit, &a).expect_err("minority");
        let msg = e.to_string();
        assert!(msg.contains("2 of the 5"), "{msg}");
        assert!(msg.contains("'n2', 'n3', 'n4'"), "{msg}");
        let a = answers(&["n2", "n3", "n4"], &["n0", "n1"]);
        assert!(check(&r, "n2", Action::Commit, &a).is_ok());
        assert!(check(&r, "n2", Action::Plan, &a).is_ok());
    }

    #[test]
    fn down_needs_a_majority_that_sees_the_node_unreachable() {
        let r = five();
        // Three reached, but one of them still reaches n0.
        let mut a = answers(&["n2", "n3", "n4"], &["n0", "n1"]);
        a.insert(
            "n4".into(),
            Some(PeerView {
                unreachable: vec!["n1".into()],
            }),
        );
        let e = check(&r, "n2", Action::Down("n0"), &a).expect_err("n4 reaches n0");
        assert!(e.to_string().contains("still reaching it: 'n4'"), "{e}");
        let a = answers(&["n2", "n3", "n4"], &["n0", "n1"]);
        assert!(check(&r, "n2", Action::Down("n0"), &a).is_ok());
        assert!(check(&r, "n2", Action::ForceRemove("n1"), &a).is_ok());
        // From the minority side, never.
        let a = answers(&["n0", "n1"], &["n2", "n3", "n4"]);
        assert!(check(&r, "n0", Action::Down("n2"), &a).is_err());
    }

    #[test]
    fn down_members_leave_the_count() {
        let mut r = five();
        for n in ["n0", "n1"] {
            if let Some(m) = r.members.get_mut(n) {
                m.state = MemberState::Down;
            }
        }
        // Three voters left: two of them are a majority.
        let a = answers(&["n2", "n3"], &["n4"]);
        assert!(check(&r, "n2", Action::Commit, &a).is_ok());
        assert!(check(&r, "n2", Action::Down("n4"), &a).is_ok());
        assert!(advice(&r, "n2", &["n4".into()]).contains("can be run here"));
        assert!(sees(&r, "n2", &["n4".into()]));
        assert!(!sees(&r, "n2", &["n3".into(), "n4".into()]));
        assert!(advice(&r, "n2", &["n3".into(), "n4".into()]).contains("refused"));
    }
}
