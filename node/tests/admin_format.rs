//! Golden files for `flavio admin`'s output: hand-built Admin replies
//! rendered as text and JSON and compared with `tests/golden/admin/*`.
//!
//! `UPDATE_GOLDENFILES=1 cargo test -p flavio-node --test admin_format`
//! rewrites the files; review the diff. The tutorial's own outputs are also
//! checked against its literal text, so a golden rewrite cannot drift from
//! what riak users know.

use std::path::PathBuf;

use flavio_node::cli::admin_format as fmt;
use flavio_proto::v1 as pb;
use pb::MemberState::{Joining, Leaving, Valid};

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/admin")
        .join(name);
    if std::env::var_os("UPDATE_GOLDENFILES").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create golden dir");
        }
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDENFILES=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}; \
             UPDATE_GOLDENFILES=1 rewrites it\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}

fn golden_json(name: &str, v: &serde_json::Value) {
    let text = serde_json::to_string_pretty(v).expect("json") + "\n";
    golden(name, &text);
}

fn n(i: u32) -> String {
    format!("flavio{i}@127.0.0.1")
}

fn m(i: u32, state: pb::MemberState, ring: f64, pending: Option<f64>) -> pb::MemberInfo {
    pb::MemberInfo {
        name: n(i),
        addr: format!("127.0.0.1:{}", 10017 + 10 * (i - 1)),
        state: state as i32,
        ring_pct: ring,
        pending_pct: pending,
        location: String::new(),
        incarnation: String::new(),
    }
}

fn change(action: &str, node: u32, new_node: Option<u32>) -> pb::StagedChange {
    pb::StagedChange {
        action: action.into(),
        node: n(node),
        new_node: new_node.map(n).unwrap_or_default(),
        location: String::new(),
    }
}

fn count(from: u32, to: u32, c: u32) -> pb::TransferCount {
    pb::TransferCount {
        from: n(from),
        to: n(to),
        count: c,
    }
}

fn transition(
    members: Vec<pb::MemberInfo>,
    transfers: Vec<pb::TransferCount>,
    reassigned: Vec<pb::TransferCount>,
    warnings: &[&str],
) -> pb::Transition {
    pb::Transition {
        members,
        total_transfers: transfers.iter().map(|c| c.count).sum(),
        transfers,
        total_reassigned: reassigned.iter().map(|c| c.count).sum(),
        reassigned,
        warnings: warnings.iter().map(|w| w.to_string()).collect(),
    }
}

fn status(members: Vec<pb::MemberInfo>) -> pb::MemberStatusReply {
    pb::MemberStatusReply {
        cluster_id: String::new(),
        incarnation: String::new(),
        cookie_digest: String::new(),

        members,
        ring_version: 7,
        claimant: n(1),
        node: n(1),
        unreachable: vec![],
        majority: true,
        majority_advice: String::new(),
    }
}

fn joining() -> pb::MemberStatusReply {
    status(vec![
        m(2, Joining, 0.0, None),
        m(3, Joining, 0.0, None),
        m(4, Joining, 0.0, None),
        m(1, Valid, 100.0, None),
    ])
}

fn four_valid() -> pb::MemberStatusReply {
    status((1..=4).map(|i| m(i, Valid, 25.0, None)).collect())
}

/// The tutorial's plan: three joins, one transition, 16 transfers to each.
fn join_plan() -> pb::PlanReply {
    pb::PlanReply {
        changes: (2..=4).map(|i| change("join", i, None)).collect(),
        transitions: vec![transition(
            vec![
                m(1, Valid, 100.0, Some(25.0)),
                m(2, Valid, 0.0, Some(25.0)),
                m(3, Valid, 0.0, Some(25.0)),
                m(4, Valid, 0.0, Some(25.0)),
            ],
            vec![count(1, 4, 16), count(1, 3, 16), count(1, 2, 16)],
            vec![],
            &[],
        )],
        warnings: vec![],
        plan_id: "3f2a9c1e".into(),
        ring_version: 7,
    }
}

/// flavio4 leaves a 4-node cluster: it hands off 16 partitions, then goes.
fn leave_plan() -> pb::PlanReply {
    let distinct = "Not all replicas will be on distinct nodes";
    pb::PlanReply {
        changes: vec![change("leave", 4, None)],
        transitions: vec![
            transition(
                vec![
                    m(4, Leaving, 25.0, Some(0.0)),
                    m(1, Valid, 25.0, Some(34.375)),
                    m(2, Valid, 25.0, Some(32.8125)),
                    m(3, Valid, 25.0, Some(32.8125)),
                ],
                vec![count(4, 1, 6), count(4, 2, 5), count(4, 3, 5)],
                vec![],
                &[distinct],
            ),
            transition(
                vec![
                    m(1, Valid, 34.375, None),
                    m(2, Valid, 32.8125, None),
                    m(3, Valid, 32.8125, None),
                ],
                vec![],
                vec![],
                &[distinct],
            ),
        ],
        warnings: vec![],
        plan_id: "9b07d415".into(),
        ring_version: 12,
    }
}

/// flavio4 is force-removed: its 16 partitions are reassigned, not handed off.
fn force_remove_plan() -> pb::PlanReply {
    pb::PlanReply {
        changes: vec![change("force-remove", 4, None)],
        transitions: vec![transition(
            vec![
                m(1, Valid, 34.375, Some(34.375)),
                m(2, Valid, 32.8125, Some(32.8125)),
                m(3, Valid, 32.8125, Some(32.8125)),
            ],
            vec![],
            vec![count(4, 3, 5), count(4, 2, 5), count(4, 1, 6)],
            &["WARNING: Not all replicas will be on distinct nodes"],
        )],
        warnings: vec![format!("All of '{}' replicas will be lost", n(4))],
        plan_id: "51c3e0aa".into(),
        ring_version: 12,
    }
}

/// flavio5 replaces flavio4: a replace and a join, two transitions.
fn replace_plan() -> pb::PlanReply {
    pb::PlanReply {
        changes: vec![change("replace", 4, Some(5)), change("join", 5, None)],
        transitions: vec![
            transition(
                vec![
                    m(4, Leaving, 25.0, Some(0.0)),
                    m(1, Valid, 25.0, Some(25.0)),
                    m(2, Valid, 25.0, Some(25.0)),
                    m(3, Valid, 25.0, Some(25.0)),
                    m(5, Valid, 0.0, Some(25.0)),
                ],
                vec![count(4, 5, 16)],
                vec![],
                &[],
            ),
            transition(
                [1, 2, 3, 5]
                    .into_iter()
                    .map(|i| m(i, Valid, 25.0, None))
                    .collect(),
                vec![],
                vec![],
                &[],
            ),
        ],
        warnings: vec![],
        plan_id: "c0ffee00".into(),
        ring_version: 20,
    }
}

/// Partition `i` of a 64-partition ring, as a decimal index.
fn index(i: u32) -> String {
    // 2^160 / 64 = 2^154 does not fit in a u128, so it is split in decimal:
    // 2^154 = 22835963083295358096932575511191922 * 10^12 + 182123945984.
    let high: u128 = 22_835_963_083_295_358_096_932_575_511_191_922 * u128::from(i);
    let low = 182_123_945_984u128 * u128::from(i);
    let value = (high + low / 1_000_000_000_000, low % 1_000_000_000_000);
    match value {
        (0, low) => low.to_string(),
        (high, low) => format!("{high}{low:012}"),
    }
}

fn pending(i: u32, owner: u32, next: u32, complete: bool) -> pb::PendingTransfer {
    pb::PendingTransfer {
        partition: index(i),
        owner: n(owner),
        next_owner: n(next),
        complete,
    }
}

#[test]
fn partition_indexes_are_ring_positions() {
    assert_eq!(index(0), "0");
    // riak's ring-status sample: partition 8 of 64.
    assert_eq!(index(8), "182687704666362864775460604089535377456991567872");
    assert_eq!(
        index(24),
        "548063113999088594326381812268606132370974703616"
    );
}

#[test]
fn member_status() {
    golden(
        "member_status_single.txt",
        &fmt::member_status(&status(vec![m(1, Valid, 100.0, None)])),
    );
    golden("member_status_joining.txt", &fmt::member_status(&joining()));
    golden(
        "member_status_valid4.txt",
        &fmt::member_status(&four_valid()),
    );
    golden(
        "member_status_pending.txt",
        &fmt::member_status(&status(vec![
            m(1, Valid, 100.0, Some(50.0)),
            m(2, Valid, 0.0, Some(50.0)),
        ])),
    );
    golden_json(
        "member_status_joining.json",
        &fmt::member_status_json(&joining()),
    );
    let mut down = four_valid();
    down.unreachable = vec![n(3)];
    golden("member_status_unreachable.txt", &fmt::member_status(&down));
    golden_json(
        "member_status_unreachable.json",
        &fmt::member_status_json(&down),
    );
    // The minority side of a partition is told what it cannot do.
    let mut minority = four_valid();
    minority.unreachable = vec![n(2), n(3), n(4)];
    minority.majority = false;
    minority.majority_advice = format!(
        "Majority: '{}' reaches only 1 of 4 valid members (3 needed): plan, commit, down and force-remove are refused here until the partition heals",
        n(1)
    );
    golden("member_status_minority.txt", &fmt::member_status(&minority));
    golden_json(
        "member_status_minority.json",
        &fmt::member_status_json(&minority),
    );
}

#[test]
fn plans() {
    golden("plan_join.txt", &fmt::plan(&join_plan()));
    golden("plan_leave.txt", &fmt::plan(&leave_plan()));
    golden("plan_force_remove.txt", &fmt::plan(&force_remove_plan()));
    golden("plan_replace.txt", &fmt::plan(&replace_plan()));
    golden("plan_empty.txt", &fmt::plan(&pb::PlanReply::default()));
    golden_json("plan_join.json", &fmt::plan_json(&join_plan()));
    golden_json(
        "plan_force_remove.json",
        &fmt::plan_json(&force_remove_plan()),
    );
}

fn ring(pending: Vec<pb::PendingTransfer>, unreachable: &[u32]) -> pb::RingStatusReply {
    pb::RingStatusReply {
        owners: vec![],
        cluster_id: String::new(),
        short_location_preflists: 0,
        claimant: n(1),
        claimant_up: true,
        ring_ready: true,
        ring_version: 9,
        pending,
        unreachable: unreachable.iter().map(|&i| n(i)).collect(),
        node: n(1),
        n_val: 3,
        preflists: 64,
        short_preflists: 0,
    }
}

#[test]
fn ring_status() {
    let handoffs = ring(
        vec![
            pending(8, 1, 2, true),
            pending(24, 1, 2, false),
            pending(40, 1, 2, false),
            pending(56, 1, 2, false),
            pending(9, 1, 3, false),
        ],
        &[],
    );
    golden("ring_status_pending.txt", &fmt::ring_status(&handoffs));
    golden_json(
        "ring_status_pending.json",
        &fmt::ring_status_json(&handoffs),
    );
    golden(
        "ring_status_settled.txt",
        &fmt::ring_status(&ring(vec![], &[])),
    );
    let mut down = ring(vec![], &[3]);
    down.ring_ready = false;
    golden("ring_status_unreachable.txt", &fmt::ring_status(&down));
    let mut lost = ring(vec![], &[1, 3]);
    lost.claimant_up = false;
    lost.ring_ready = false;
    lost.node = n(2);
    golden("ring_status_claimant_down.txt", &fmt::ring_status(&lost));
    let mut three = ring(vec![], &[]);
    three.short_preflists = 2;
    golden("ring_status_short_preflists.txt", &fmt::ring_status(&three));
    golden_json(
        "ring_status_short_preflists.json",
        &fmt::ring_status_json(&three),
    );
    // A node older than the spread fields: no section.
    let mut old = ring(vec![], &[]);
    old.n_val = 0;
    assert!(!fmt::ring_status(&old).contains("Replica Spread"));
}

#[test]
fn transfers() {
    let active = pb::TransfersReply {
        active: vec![
            pb::ActiveTransfer {
                partition: index(8),
                from: n(1),
                to: n(2),
                items_sent: 1024,
                bytes_sent: 65_536,
                elapsed_s: 3.25,
                items_total: Some(4096),
                r#type: "ownership".into(),
            },
            pb::ActiveTransfer {
                partition: index(0),
                from: n(1),
                to: n(4),
                items_sent: 7,
                bytes_sent: 448,
                elapsed_s: 0.04,
                items_total: None,
                r#type: "hinted".into(),
            },
        ],
        pending: 46,
        unreachable: vec![],
        waiting: vec![],
    };
    golden("transfers_active.txt", &fmt::transfers(&active));
    golden_json("transfers_active.json", &fmt::transfers_json(&active));
    golden(
        "transfers_none.txt",
        &fmt::transfers(&pb::TransfersReply::default()),
    );
    let waiting = pb::TransfersReply {
        active: vec![],
        pending: 1,
        unreachable: vec![n(3)],
        waiting: vec![pb::WaitingHandoff {
            node: n(2),
            partitions: 3,
            hints: 1,
        }],
    };
    golden("transfers_waiting.txt", &fmt::transfers(&waiting));
}

#[test]
fn small_replies_as_json() {
    let stage = pb::StageReply {
        message: format!("Success: staged join request for '{}' to '{}'", n(2), n(1)),
    };
    assert_eq!(
        fmt::stage_json(&stage).to_string(),
        r#"{"message":"Success: staged join request for 'flavio2@127.0.0.1' to 'flavio1@127.0.0.1'"}"#
    );
    let commit = pb::CommitReply {
        message: "Cluster changes committed".into(),
        ring_version: 8,
    };
    assert_eq!(
        fmt::commit_json(&commit).to_string(),
        r#"{"message":"Cluster changes committed","ring_version":8}"#
    );
    let clear = pb::ClearReply {
        message: "Cleared staged cluster changes".into(),
    };
    assert_eq!(
        fmt::clear_json(&clear).to_string(),
        r#"{"message":"Cleared staged cluster changes"}"#
    );
}

// The tutorial's text ("creating a local cluster"), indentation removed; its
// joining member-status lost a newline to a copy-paste slip, restored here.

const TUTORIAL_SINGLE: &str = "\
================================= Membership ==================================
Status     Ring    Pending    Node
-------------------------------------------------------------------------------
valid     100.0%      --      'flavio1@127.0.0.1'
-------------------------------------------------------------------------------
Valid:1 / Leaving:0 / Exiting:0 / Joining:0 / Down:0";

const TUTORIAL_JOINING: &str = "\
================================= Membership ==================================
Status     Ring    Pending    Node
-------------------------------------------------------------------------------
joining     0.0%      --      'flavio2@127.0.0.1'
joining     0.0%      --      'flavio3@127.0.0.1'
joining     0.0%      --      'flavio4@127.0.0.1'
valid     100.0%      --      'flavio1@127.0.0.1'
-------------------------------------------------------------------------------
Valid:1 / Leaving:0 / Exiting:0 / Joining:3 / Down:0";

const TUTORIAL_PLAN: &str = "\
=============================== Staged Changes ================================
Action         Details(s)
-------------------------------------------------------------------------------
join           'flavio2@127.0.0.1'
join           'flavio3@127.0.0.1'
join           'flavio4@127.0.0.1'
-------------------------------------------------------------------------------


NOTE: Applying these changes will result in 1 cluster transition

###############################################################################
                         After cluster transition 1/1
###############################################################################

================================= Membership ==================================
Status     Ring    Pending    Node
-------------------------------------------------------------------------------
valid     100.0%     25.0%    'flavio1@127.0.0.1'
valid       0.0%     25.0%    'flavio2@127.0.0.1'
valid       0.0%     25.0%    'flavio3@127.0.0.1'
valid       0.0%     25.0%    'flavio4@127.0.0.1'
-------------------------------------------------------------------------------
Valid:4 / Leaving:0 / Exiting:0 / Joining:0 / Down:0

Transfers resulting from cluster changes: 48
  16 transfers from 'flavio1@127.0.0.1' to 'flavio4@127.0.0.1'
  16 transfers from 'flavio1@127.0.0.1' to 'flavio3@127.0.0.1'
  16 transfers from 'flavio1@127.0.0.1' to 'flavio2@127.0.0.1'";

const TUTORIAL_VALID4: &str = "\
================================= Membership ==================================
Status     Ring    Pending    Node
-------------------------------------------------------------------------------
valid      25.0%      --      'flavio1@127.0.0.1'
valid      25.0%      --      'flavio2@127.0.0.1'
valid      25.0%      --      'flavio3@127.0.0.1'
valid      25.0%      --      'flavio4@127.0.0.1'
-------------------------------------------------------------------------------
Valid:4 / Leaving:0 / Exiting:0 / Joining:0 / Down:0";

#[test]
fn tutorial_outputs_are_reproduced_exactly() {
    // The tutorial cannot show trailing blank lines; everything else must match.
    let single = fmt::member_status(&status(vec![m(1, Valid, 100.0, None)]));
    assert_eq!(single.trim_end(), TUTORIAL_SINGLE);
    assert_eq!(fmt::member_status(&joining()).trim_end(), TUTORIAL_JOINING);
    assert_eq!(fmt::plan(&join_plan()).trim_end(), TUTORIAL_PLAN);
    assert_eq!(
        fmt::member_status(&four_valid()).trim_end(),
        TUTORIAL_VALID4
    );
}
