//! Table tests of the decision function: one row per rule of the module docs.

use super::*;
use crate::crd::{FlavioClusterSpec, FlavioClusterStatus, Intent, PlanStatus, Progress, Retention};

fn naming() -> Naming {
    Naming {
        cluster: "demo".into(),
        namespace: "ns".into(),
    }
}

fn n(o: i32) -> String {
    naming().node(o)
}

fn member(o: i32, state: State) -> Member {
    Member {
        name: n(o),
        state,
        ring_pct: 0.0,
        pending_pct: None,
        location: None,
        incarnation: None,
    }
}

fn ring(members: &[(i32, State)]) -> RingView {
    RingView {
        members: members.iter().map(|(o, s)| member(*o, *s)).collect(),
        ring_ready: true,
        claimant: n(0),
        claimant_up: true,
        version: 7,
        pending: vec![],
        unreachable: vec![],
        items_sent: 0,
        hinted: vec![],
        cluster_id: "c".into(),
        owners: vec![],
        short_location_preflists: 0,
        n_val: 3,
    }
}

fn valid(count: i32) -> Vec<(i32, State)> {
    (0..count).map(|o| (o, State::Valid)).collect()
}

fn transfer(p: &str, from: i32, to: i32) -> Transfer {
    Transfer {
        partition: p.into(),
        owner: n(from),
        next_owner: n(to),
        complete: false,
    }
}

/// One row's inputs, with defaults a test overrides.
#[derive(Clone)]
struct Fx {
    replicas: i32,
    auto_commit: bool,
    when_scaled: Retention,
    ring_size: u32,
    status: FlavioClusterStatus,
    approved: Option<&'static str>,
    sts: Option<i32>,
    ready: Vec<i32>,
    unready: Vec<i32>,
    pvcs: Vec<i32>,
    ring: Option<RingView>,
    lost: Vec<i32>,
    zones: Vec<(i32, String)>,
    now: i64,
}

fn fx(replicas: i32, sts: i32, ring_: Option<RingView>) -> Fx {
    Fx {
        replicas,
        auto_commit: true,
        when_scaled: Retention::Retain,
        ring_size: 64,
        status: FlavioClusterStatus {
            ring_size: Some(64),
            ..Default::default()
        },
        approved: None,
        sts: Some(sts),
        ready: (0..sts).collect(),
        unready: vec![],
        pvcs: (0..sts).collect(),
        ring: ring_,
        lost: vec![],
        zones: vec![],
        now: 1_000,
    }
}

fn run(f: &Fx) -> Decision {
    let mut spec: FlavioClusterSpec =
        serde_json::from_value(serde_json::json!({"replicas": f.replicas})).expect("spec");
    spec.membership.auto_commit = f.auto_commit;
    spec.storage.when_scaled = f.when_scaled;
    spec.ring_size = f.ring_size;
    let pods: Vec<PodView> = f
        .ready
        .iter()
        .map(|o| PodView {
            ordinal: *o,
            ready: true,
            revision: None,
            problem: None,
        })
        .chain(f.unready.iter().map(|o| PodView {
            ordinal: *o,
            ready: false,
            revision: None,
            problem: None,
        }))
        .collect();
    let naming = naming();
    let recorded = crate::crd::Recorded {
        ring_size: f.status.ring_size,
        storage: None,
    };
    decide(&Input {
        naming: &naming,
        spec: &spec,
        status: &f.status,
        approved: f.approved,
        sts_replicas: f.sts,
        recorded: &recorded,
        pods: &pods,
        pvcs: &f.pvcs,
        ring: f.ring.as_ref(),
        lost: &f.lost,
        rollout: None,
        zones: &f.zones,
        now: f.now,
    })
}

fn change(joins: &[i32], leaves: &[i32], commit: bool) -> Action {
    Action::Change {
        joins: joins.iter().map(|o| n(*o)).collect(),
        staged_joins: vec![],
        leaves: leaves.iter().map(|o| n(*o)).collect(),
        locations: vec![],
        commit,
    }
}

fn change_with_locations(locations: &[(i32, &str)]) -> Action {
    Action::Change {
        joins: vec![],
        staged_joins: vec![],
        leaves: vec![],
        locations: locations
            .iter()
            .map(|(o, z)| (n(*o), z.to_string()))
            .collect(),
        commit: true,
    }
}

fn plan(id: &str, joins: &[i32], leaves: &[i32]) -> PlanStatus {
    let j: Vec<String> = joins.iter().map(|o| n(*o)).collect();
    let l: Vec<String> = leaves.iter().map(|o| n(*o)).collect();
    PlanStatus {
        id: id.into(),
        changes: change_lines(&j, &l, &[]),
        transfers: 10,
        warnings: vec![],
    }
}

/// Expected: StatefulSet size, action, phase, Progressing reason.
struct Row {
    name: &'static str,
    fx: Fx,
    sts: Option<i32>,
    action: Action,
    phase: &'static str,
    progressing: &'static str,
}

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut row = |name, fx, sts, action, phase, progressing| {
        rows.push(Row {
            name,
            fx,
            sts,
            action,
            phase,
            progressing,
        })
    };

    // --- creation and forming
    let mut f = fx(3, 0, None);
    f.sts = None;
    f.ready = vec![];
    f.pvcs = vec![];
    row(
        "create: no StatefulSet yet, no ring",
        f,
        Some(3),
        Action::Nothing,
        "Creating",
        "WaitingForPods",
    );

    let mut f = fx(3, 3, Some(ring(&valid(1))));
    f.ready = vec![0, 2];
    f.unready = vec![1];
    row(
        "form: wait until every wanted pod is Ready",
        f,
        Some(3),
        Action::Nothing,
        "Creating",
        "WaitingForPods",
    );

    row(
        "form: pod 0 is a one-member ring, the others join it in one commit",
        fx(3, 3, Some(ring(&valid(1)))),
        Some(3),
        change(&[1, 2], &[], true),
        "Creating",
        "Committing",
    );

    let mut r = ring(&valid(1));
    r.ring_ready = false;
    row(
        "never plan before the ring is ready",
        fx(3, 3, Some(r)),
        Some(3),
        Action::Nothing,
        "Creating",
        "RingNotReady",
    );

    let mut r = ring(&valid(1));
    r.claimant_up = false;
    row(
        "never plan while the claimant is down",
        fx(3, 3, Some(r)),
        Some(3),
        Action::Nothing,
        "Creating",
        "ClaimantDown",
    );

    let mut r = ring(&valid(2));
    r.unreachable = vec![n(1)];
    row(
        "never plan while a member is unreachable",
        fx(3, 3, Some(r)),
        Some(3),
        Action::Nothing,
        "ScalingUp",
        "MembersUnreachable",
    );

    let mut r = ring(&valid(3));
    r.pending = vec![transfer("0", 0, 2)];
    row(
        "formed, transfers still draining",
        fx(3, 3, Some(r)),
        Some(3),
        Action::Nothing,
        "ScalingUp",
        "TransfersPending",
    );

    let mut f = fx(3, 3, Some(ring(&valid(3))));
    f.status.intent.progress = Some(Progress {
        fingerprint: "old".into(),
        since: 1,
    });
    row(
        "steady: Available, nothing to do",
        f,
        Some(3),
        Action::Nothing,
        "Available",
        "Stable",
    );

    // --- scale up
    let mut f = fx(5, 3, Some(ring(&valid(3))));
    f.ready = vec![0, 1, 2];
    row(
        "scale up: grow the StatefulSet first, wait for the pods",
        f,
        Some(5),
        Action::Nothing,
        "ScalingUp",
        "WaitingForPods",
    );

    let mut f = fx(5, 5, Some(ring(&valid(3))));
    f.ready = vec![0, 1, 2, 3];
    f.unready = vec![4];
    row(
        "scale up: one pod not Ready yet, no partial commit",
        f,
        Some(5),
        Action::Nothing,
        "ScalingUp",
        "WaitingForPods",
    );

    row(
        "scale up: both new pods joined with one commit",
        fx(5, 5, Some(ring(&valid(3)))),
        Some(5),
        change(&[3, 4], &[], true),
        "ScalingUp",
        "Committing",
    );

    let mut r = ring(&valid(5));
    r.members[3].state = State::Joining;
    r.pending = vec![transfer("5", 0, 3)];
    let mut f = fx(6, 6, Some(r));
    f.ready = (0..6).collect();
    row(
        "next scale step waits for pending transfers to drain",
        f,
        Some(6),
        Action::Nothing,
        "ScalingUp",
        "TransfersPending",
    );

    // --- manual approval
    let mut f = fx(5, 5, Some(ring(&valid(3))));
    f.auto_commit = false;
    row(
        "autoCommit false: stage and plan, do not commit",
        f,
        Some(5),
        change(&[3, 4], &[], false),
        "ScalingUp",
        "Planning",
    );

    let mut f = fx(5, 5, Some(ring(&valid(3))));
    f.auto_commit = false;
    f.status.plan = Some(plan("p1", &[3, 4], &[]));
    row(
        "autoCommit false: published plan waits for approval",
        f,
        Some(5),
        Action::Nothing,
        "AwaitingApproval",
        "AwaitingApproval",
    );

    let mut f = fx(5, 5, Some(ring(&valid(3))));
    f.auto_commit = false;
    f.status.plan = Some(plan("p1", &[3, 4], &[]));
    f.approved = Some("p0");
    row(
        "approval naming another plan is ignored",
        f,
        Some(5),
        Action::Nothing,
        "AwaitingApproval",
        "AwaitingApproval",
    );

    let mut f = fx(5, 5, Some(ring(&valid(3))));
    f.auto_commit = false;
    f.status.plan = Some(plan("p1", &[3, 4], &[]));
    f.approved = Some("p1");
    row(
        "approval naming the plan commits it",
        f,
        Some(5),
        Action::CommitPlan { id: "p1".into() },
        "ScalingUp",
        "PlanApproved",
    );

    let mut r = ring(&valid(3));
    r.members.push(member(3, State::Joining));
    r.members.push(member(4, State::Joining));
    let mut f = fx(5, 5, Some(r));
    f.auto_commit = false;
    f.status.plan = Some(plan("p1", &[3, 4], &[]));
    f.approved = Some("p1");
    row(
        "staged joiners are in the ring as joining: the plan still matches",
        f,
        Some(5),
        Action::CommitPlan { id: "p1".into() },
        "ScalingUp",
        "PlanApproved",
    );

    let mut r = ring(&valid(3));
    r.members.push(member(3, State::Joining));
    let f = fx(4, 4, Some(r));
    row(
        "a join staged before a restart is planned with the rest, not staged again",
        f,
        Some(4),
        Action::Change {
            joins: vec![],
            staged_joins: vec![n(3)],
            leaves: vec![],
            locations: vec![],
            commit: true,
        },
        "ScalingUp",
        "Committing",
    );

    let mut f = fx(4, 5, Some(ring(&valid(3))));
    f.auto_commit = false;
    f.status.plan = Some(plan("p1", &[3, 4], &[]));
    row(
        "published plan outdated by a spec change is cleared",
        f,
        Some(4),
        Action::ClearPlan,
        "ScalingUp",
        "PlanOutdated",
    );

    // --- scale down
    row(
        "scale down: leaves for the highest ordinals, StatefulSet kept",
        fx(2, 5, Some(ring(&valid(5)))),
        Some(5),
        change(&[], &[4, 3, 2], true),
        "ScalingDown",
        "Committing",
    );

    let mut r = ring(&valid(5));
    for m in &mut r.members[2..] {
        m.state = State::Leaving;
    }
    r.pending = vec![transfer("0", 2, 0), transfer("9", 4, 1)];
    let mut f = fx(2, 5, Some(r));
    f.status.intent.leaving = vec![n(2), n(3), n(4)];
    row(
        "never shrink while leavers own partitions",
        f,
        Some(5),
        Action::Nothing,
        "ScalingDown",
        "TransfersPending",
    );

    let mut r = ring(&valid(2));
    r.members.push(member(2, State::Removed));
    r.members.push(member(3, State::Removed));
    r.members.push(member(4, State::Exiting));
    let mut f = fx(2, 5, Some(r));
    f.status.intent.leaving = vec![n(2), n(3), n(4)];
    row(
        "shrink only past the last member still exiting",
        f,
        Some(5),
        Action::Nothing,
        "ScalingDown",
        "WaitingForLeavers",
    );

    let mut r = ring(&valid(2));
    r.members.push(member(4, State::Removed));
    let mut f = fx(2, 5, Some(r));
    f.status.intent.leaving = vec![n(2), n(3), n(4)];
    row(
        "after they left: shrink (leavers absent or removed)",
        f,
        Some(2),
        Action::Nothing,
        "ScalingDown",
        "ScalingStatefulSet",
    );

    let mut r = ring(&valid(2));
    r.pending = vec![transfer("3", 1, 4)];
    let f = fx(2, 5, Some(r));
    row(
        "a pod named by a pending transfer is kept",
        f,
        Some(5),
        Action::Nothing,
        "ScalingDown",
        "TransfersPending",
    );

    let mut r = ring(&valid(5));
    r.members[4].state = State::Leaving;
    r.pending = vec![transfer("1", 4, 0)];
    let mut f = fx(4, 5, Some(r));
    f.status.intent.leaving = vec![n(4)];
    row(
        "restart mid-leave: intent kept, nothing restaged",
        f,
        Some(5),
        Action::Nothing,
        "ScalingDown",
        "TransfersPending",
    );

    let mut f = fx(2, 5, Some(ring(&valid(5))));
    f.status.intent.leaving = vec![n(2), n(3), n(4)];
    row(
        "leave recorded but never committed (crash): staged again",
        f,
        Some(5),
        change(&[], &[4, 3, 2], true),
        "ScalingDown",
        "Committing",
    );

    // --- change of direction
    let mut r = ring(&valid(5));
    for m in &mut r.members[2..] {
        m.state = State::Leaving;
    }
    r.pending = vec![transfer("0", 2, 0)];
    let mut f = fx(4, 5, Some(r));
    f.status.intent.leaving = vec![n(2), n(3), n(4)];
    row(
        "down then up mid-leave: the committed leave finishes first",
        f,
        Some(5),
        Action::Nothing,
        "ScalingDown",
        "TransfersPending",
    );

    let mut r = ring(&valid(2));
    for o in 2..5 {
        r.members.push(member(o, State::Removed));
    }
    let mut f = fx(4, 5, Some(r));
    f.status.intent.leaving = vec![n(2), n(3), n(4)];
    row(
        "down then up, leave done: keep wanted pods, drop the rest, rejoin them",
        f,
        Some(4),
        change(&[2, 3], &[], true),
        "ScalingUp",
        "Committing",
    );

    let mut f = fx(2, 5, Some(ring(&valid(3))));
    f.unready = vec![3, 4];
    f.ready = vec![0, 1, 2];
    row(
        "up then down before the joins: unjoined pods dropped, member 2 leaves",
        f,
        Some(3),
        change(&[], &[2], true),
        "ScalingDown",
        "Committing",
    );

    // --- invalid spec
    let mut f = fx(3, 3, Some(ring(&valid(3))));
    f.replicas = 0;
    row(
        "replicas 0 refused, nothing touched",
        f,
        None,
        Action::Nothing,
        "Degraded",
        "InvalidReplicas",
    );

    let mut f = fx(3, 3, Some(ring(&valid(3))));
    f.ring_size = 128;
    row(
        "ring size change refused",
        f,
        None,
        Action::Nothing,
        "Degraded",
        "RingSizeImmutable",
    );

    let mut f = fx(3, 3, Some(ring(&valid(3))));
    f.ring_size = 102;
    f.status.ring_size = None;
    row(
        "ring size not a multiple of 4 refused",
        f,
        None,
        Action::Nothing,
        "Degraded",
        "InvalidRingSize",
    );

    // --- zones
    let zone = |o: i32| (o, format!("zone-{}", o % 3));
    let mut f = fx(4, 4, Some(ring(&valid(3))));
    f.zones = (0..4).map(zone).collect();
    row(
        "zones: a joiner's zone is staged with its join, members' with it",
        f,
        Some(4),
        Action::Change {
            joins: vec![n(3)],
            staged_joins: vec![],
            leaves: vec![],
            locations: (0..4).map(|o| (n(o), format!("zone-{}", o % 3))).collect(),
            commit: true,
        },
        "ScalingUp",
        "Committing",
    );
    let mut r = ring(&valid(3));
    for m in &mut r.members {
        let o = naming().ordinal(&m.name).unwrap_or(0);
        m.location = Some(format!("zone-{}", o % 3));
    }
    let mut f = fx(3, 3, Some(r.clone()));
    f.zones = (0..3).map(zone).collect();
    row(
        "zones: locations as the zones say: nothing to do",
        f,
        Some(3),
        Action::Nothing,
        "Available",
        "Stable",
    );
    let mut f = fx(3, 3, Some(r.clone()));
    f.zones = vec![
        (0, "zone-0".into()),
        (1, "zone-2".into()),
        (2, "zone-2".into()),
    ];
    row(
        "zones: a member whose zone changed gets its new location",
        f,
        Some(3),
        change_with_locations(&[(1, "zone-2")]),
        "ScalingUp",
        "Committing",
    );
    let mut f = fx(3, 3, Some(r.clone()));
    f.zones = vec![(0, "zone-0".into()), (1, "zone-2".into())];
    if let Some(r) = f.ring.as_mut() {
        r.pending.push(transfer("0", 0, 1));
    }
    row(
        "zones: a location waits for pending transfers like any change",
        f,
        Some(3),
        Action::Nothing,
        "ScalingUp",
        "TransfersPending",
    );

    // --- no ring view
    let mut f = fx(2, 5, None);
    f.status.members = vec![crate::crd::MemberStatus {
        name: n(0),
        state: "valid".into(),
        ring_pct: 100.0,
        pending_pct: None,
    }];
    row(
        "no ring view: never shrink",
        f,
        Some(5),
        Action::Nothing,
        "Progressing",
        "WaitingForPods",
    );

    rows
}

#[test]
fn table() {
    let mut failures = Vec::new();
    for r in rows() {
        let d = run(&r.fx);
        let got = (
            d.sts_replicas,
            d.action.clone(),
            d.phase,
            d.progressing.reason.as_str(),
        );
        let want = (r.sts, r.action.clone(), r.phase, r.progressing);
        if got != want {
            failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", r.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn stuck_progress_sets_degraded_naming_transfers() {
    let mut r = ring(&valid(3));
    r.members[2].state = State::Leaving;
    r.pending = vec![transfer("42", 2, 0)];
    let mut f = fx(2, 3, Some(r));
    f.status.intent.leaving = vec![n(2)];
    // First sighting records the fingerprint.
    let d = run(&f);
    let p = d.intent.progress.clone().expect("progress recorded");
    assert_eq!(p.since, 1_000);
    assert!(!d.degraded.status);
    // Same fingerprint past the limit (300 s): Degraded, transfer named.
    f.status.intent = d.intent;
    f.now = 1_000 + 301;
    let d = run(&f);
    assert!(d.degraded.status, "{d:?}");
    assert_eq!(d.degraded.reason, "TransfersStuck");
    assert!(
        d.degraded
            .message
            .contains(&format!("42 {} -> {}", n(2), n(0))),
        "{}",
        d.degraded.message
    );
    assert_eq!(d.phase, "Degraded");
    // Progress resets the clock.
    if let Some(r) = f.ring.as_mut() {
        r.items_sent = 10;
    }
    let d = run(&f);
    assert!(!d.degraded.status);
    assert_eq!(d.intent.progress.map(|p| p.since), Some(1_301));
}

#[test]
fn leaves_are_recorded_before_the_commit_and_removals_reported() {
    let d = run(&fx(2, 4, Some(ring(&valid(4)))));
    assert_eq!(d.intent.leaving, vec![n(2), n(3)]);
    let mut r = ring(&valid(2));
    r.members.push(member(3, State::Exiting));
    let mut f = fx(2, 4, Some(r));
    f.status.intent = Intent {
        leaving: vec![n(2), n(3)],
        progress: None,
        rolling: None,
    };
    let d = run(&f);
    assert_eq!(d.removed, vec![n(2)]);
    assert_eq!(d.intent.leaving, vec![n(3)]);
    assert_eq!(d.sts_replicas, Some(4));
}

#[test]
fn pvcs_deleted_only_when_policy_says_and_member_gone() {
    let mut f = fx(2, 2, Some(ring(&valid(2))));
    f.pvcs = vec![0, 1, 2, 3];
    f.ready = vec![0, 1];
    assert!(run(&f).delete_pvcs.is_empty(), "Retain keeps them");
    f.when_scaled = Retention::Delete;
    assert_eq!(run(&f).delete_pvcs, vec![2, 3]);
    // Pod 3 still terminating: its PVC waits.
    f.unready = vec![3];
    assert_eq!(run(&f).delete_pvcs, vec![2]);
    // A member still in the ring keeps its PVC whatever the policy.
    let mut r = ring(&valid(2));
    r.members.push(member(2, State::Exiting));
    f.ring = Some(r);
    f.unready = vec![];
    assert_eq!(run(&f).delete_pvcs, vec![3]);
}

#[test]
fn naming_round_trips() {
    let nm = naming();
    assert_eq!(nm.node(3), "flavio@demo-3.demo-headless.ns.svc");
    assert_eq!(nm.ordinal(&nm.node(3)), Some(3));
    assert_eq!(nm.ordinal("flavio@other-3.demo-headless.ns.svc"), None);
    assert_eq!(nm.ordinal("flavio@demo-x.demo-headless.ns.svc"), None);
}

#[test]
fn a_member_back_on_an_empty_volume_is_replaced() {
    // demo-2 answers for a cluster of its own: force-remove it, naming the
    // partitions it owned.
    let mut r = ring(&valid(4));
    r.owners = (0..8).map(|p| (format!("p{p}"), n(p % 4))).collect();
    let mut f = fx(4, 4, Some(r.clone()));
    f.lost = vec![2];
    let d = run(&f);
    assert_eq!(
        d.action,
        Action::ReplaceLost {
            node: n(2),
            down_first: false,
            partitions: vec!["p2".into(), "p6".into()],
        }
    );
    assert_eq!(d.progressing.reason, "ReplacingLostMember");
    assert_eq!(d.sts_replicas, Some(4));
    // The claimant (demo-0 here) is marked down first, from another member.
    let mut f = fx(4, 4, Some(r.clone()));
    f.lost = vec![0];
    let d = run(&f);
    assert!(matches!(
        d.action,
        Action::ReplaceLost {
            down_first: true,
            ..
        }
    ));
    // Once removed, it is an ordinary join of a Ready pod.
    let mut removed = ring(&valid(4));
    removed.members[2].state = State::Removed;
    let mut f = fx(4, 4, Some(removed));
    f.lost = vec![2];
    let d = run(&f);
    assert_eq!(d.action, change(&[2], &[], true));
}
