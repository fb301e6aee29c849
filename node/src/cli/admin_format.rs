//! How `flavio admin` shows the Admin service's replies: riak's console
//! tables as text, and stable JSON documents.
//!
//! The text mirrors `riak-admin`'s layout byte for byte where riak has one
//! (the 79-column `=== Membership ===` banners, the
//! `Status     Ring    Pending    Node` table, the plan's `####` transition
//! banners, the `Transfers resulting from cluster changes` lines), so riak
//! users read it at a glance and scripts written against riak's output keep
//! working. Node names are quoted the way Erlang's `~p` prints an atom.
//!
//! Everything here is a pure function from a reply to a `String` or a
//! `serde_json::Value`; printing is the caller's job, which keeps these
//! functions testable against golden files.
//!
//! Left out: riak's per-transfer progress bars in `transfers` (we print one
//! table row per transfer instead), `riak-admin down` (we have no such
//! command, so the unreachable-nodes advice names `force-remove` only), and
//! vnode types other than flavio's one (`Waiting on: [flavio_vnode]`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use flavio_proto::v1 as pb;
use serde_json::{Value, json};

/// riak's console width: banners and rules are this many characters.
pub const WIDTH: usize = 79;

/// What riak's ring-status says a pending vnode waits on: its vnode module.
const VNODE_TYPE: &str = "flavio_vnode";

/// `title` centred in a 79-column line of `fill`, with one space either side
/// (`=== Membership ===`); the odd column goes to the right, as in riak.
pub fn banner(title: &str, fill: char) -> String {
    let inner = format!(" {title} ");
    let pad = WIDTH.saturating_sub(inner.chars().count());
    let left = pad / 2;
    let mut s = String::with_capacity(WIDTH);
    s.extend(std::iter::repeat_n(fill, left));
    s.push_str(&inner);
    s.extend(std::iter::repeat_n(fill, pad - left));
    s
}

/// A full-width line of one character (riak's `-----` and `#####` rules).
pub fn rule(fill: char) -> String {
    std::iter::repeat_n(fill, WIDTH).collect()
}

/// `text` centred in 79 columns without trailing spaces (the plan's
/// `After cluster transition 1/1` line as the tutorial shows it).
pub fn centred(text: &str) -> String {
    let pad = WIDTH.saturating_sub(text.chars().count());
    format!("{}{text}", " ".repeat(pad / 2))
}

/// A node name as Erlang's `~p` prints the atom: `'flavio1@127.0.0.1'`.
pub fn quoted(name: &str) -> String {
    format!("'{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A list of node names as Erlang prints a list of atoms: `['a','b']`.
fn quoted_list(names: &[String]) -> String {
    let inner: Vec<String> = names.iter().map(|n| quoted(n)).collect();
    format!("[{}]", inner.join(","))
}

/// The lower-case state name riak prints (`valid`, `joining`, ...).
pub fn state_name(state: pb::MemberState) -> &'static str {
    match state {
        pb::MemberState::Joining => "joining",
        pb::MemberState::Valid => "valid",
        pb::MemberState::Leaving => "leaving",
        pb::MemberState::Exiting => "exiting",
        pb::MemberState::Down => "down",
        pb::MemberState::Removed => "removed",
        pb::MemberState::Unspecified => "unknown",
    }
}

/// One warning line; the server may send the text with or without riak's
/// `WARNING: ` prefix, and either way it is printed once.
fn warning_line(text: &str) -> String {
    if text.starts_with("WARNING:") {
        text.to_string()
    } else {
        format!("WARNING: {text}")
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ---------------------------------------------------------------------------
// Text

/// The `=== Membership ===` block: banner, header, one row per member in the
/// order given (the server sorts them as riak does), and the state counts.
pub fn membership(members: &[pb::MemberInfo]) -> String {
    let mut out = String::new();
    let dashes = rule('-');
    let _ = writeln!(out, "{}", banner("Membership", '='));
    let _ = writeln!(out, "Status     Ring    Pending    Node");
    let _ = writeln!(out, "{dashes}");
    for m in members {
        // riak: "~-8s ~5.1f%    ~5.1f%    ~p" with a 6-wide ring column;
        // both pending forms take the same 14 columns, so names line up.
        let pending = match m.pending_pct {
            Some(p) => format!("{p:>9.1}%    "),
            None => "      --      ".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<8} {:>6.1}%{pending}{}",
            state_name(m.state()),
            m.ring_pct,
            quoted(&m.name)
        );
    }
    let _ = writeln!(out, "{dashes}");
    let count = |s: pb::MemberState| members.iter().filter(|m| m.state() == s).count();
    let _ = writeln!(
        out,
        "Valid:{} / Leaving:{} / Exiting:{} / Joining:{} / Down:{}",
        count(pb::MemberState::Valid),
        count(pb::MemberState::Leaving),
        count(pb::MemberState::Exiting),
        count(pb::MemberState::Joining),
        count(pb::MemberState::Down),
    );
    out
}

/// `flavio admin member-status`.
pub fn member_status(reply: &pb::MemberStatusReply) -> String {
    let mut out = membership(&reply.members);
    if !reply.unreachable.is_empty() {
        let _ = writeln!(
            out,
            "Unreachable from {}: {}",
            quoted(&reply.node),
            quoted_list(&reply.unreachable)
        );
    }
    // Only the warning: where a majority is reached, nothing changes for
    // the person reading (and riak's layout stays as it was).
    if !reply.majority && !reply.majority_advice.is_empty() {
        let _ = writeln!(out, "{}", reply.majority_advice);
    }
    out
}

/// `flavio admin ring-status`: claimant, pending ownership handoffs grouped
/// by (owner, next owner), and unreachable members.
pub fn ring_status(reply: &pb::RingStatusReply) -> String {
    let mut out = String::new();
    let dashes = rule('-');
    let _ = writeln!(out, "{}", banner("Claimant", '='));
    let claimant = if reply.claimant.is_empty() {
        "undefined".to_string()
    } else {
        quoted(&reply.claimant)
    };
    let _ = writeln!(out, "Claimant:  {claimant}");
    let up = if reply.claimant_up { "up" } else { "down" };
    let _ = writeln!(out, "Status:     {up}");
    let _ = writeln!(out, "Ring Ready: {}", reply.ring_ready);
    let _ = writeln!(out);

    let _ = writeln!(out, "{}", banner("Ownership Handoff", '='));
    if reply.pending.is_empty() {
        let _ = writeln!(out, "No pending changes.");
        let _ = writeln!(out);
    } else {
        // Grouped as riak groups them; within a group the server's (ring) order.
        let mut groups: BTreeMap<(&str, &str), Vec<&pb::PendingTransfer>> = BTreeMap::new();
        for p in &reply.pending {
            groups
                .entry((p.owner.as_str(), p.next_owner.as_str()))
                .or_default()
                .push(p);
        }
        for ((owner, next), pending) in groups {
            let _ = writeln!(out, "Owner:      {owner}");
            let _ = writeln!(out, "Next Owner: {next}");
            let _ = writeln!(out);
            for p in pending {
                let _ = writeln!(out, "Index: {}", p.partition);
                if p.complete {
                    let _ = writeln!(
                        out,
                        "  All transfers complete. Waiting for claimant to change ownership."
                    );
                } else {
                    let _ = writeln!(out, "  Waiting on: [{VNODE_TYPE}]");
                }
                let _ = writeln!(out);
            }
            let _ = writeln!(out, "{dashes}");
            let _ = writeln!(out);
        }
    }

    // Not in riak's layout: how many preference lists hold two replicas on
    // one node (riak only warns at plan time). Older nodes send no n_val.
    if reply.n_val > 0 {
        let _ = writeln!(out, "{}", banner("Replica Spread", '='));
        let n = reply.n_val;
        if reply.short_preflists == 0 {
            let _ = writeln!(
                out,
                "All {} preference lists of {n} are on distinct nodes",
                reply.preflists
            );
        } else {
            let _ = writeln!(
                out,
                "{} of {} preference lists of {n} are not on distinct nodes",
                reply.short_preflists, reply.preflists
            );
        }
        // Only with locations set (`cluster location`).
        let located = reply.owners.iter().any(|o| !o.location.is_empty());
        if located && reply.short_location_preflists == 0 {
            let _ = writeln!(out, "All of them are on distinct locations");
        } else if located {
            let _ = writeln!(
                out,
                "{} of {} preference lists of {n} are not on distinct locations",
                reply.short_location_preflists, reply.preflists
            );
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "{}", banner("Unreachable Nodes", '='));
    if reply.unreachable.is_empty() {
        let _ = writeln!(out, "All nodes are up and reachable");
    } else {
        let _ = writeln!(
            out,
            "The following nodes are unreachable: {}",
            quoted_list(&reply.unreachable)
        );
        let _ = writeln!(out);
        out.push_str(
            "WARNING: The cluster state will not converge until all nodes\n\
             are up. Once the above nodes come back online, convergence\n\
             will continue. If the outages are long-term or permanent, you\n\
             can forcibly remove the nodes from the cluster (flavio admin\n\
             cluster force-remove NODE) to allow the remaining nodes to settle.\n",
        );
    }
    out
}

/// How far a transfer is, as riak's progress percentage: items sent of the
/// total, `--` while the total is not known yet (the fold is running).
fn done(t: &pb::ActiveTransfer) -> String {
    match t.items_total {
        Some(0) => "100%".into(),
        Some(total) => format!("{}%", (t.items_sent.min(total) * 100) / total),
        None => "--".into(),
    }
}

/// `flavio admin transfers`: one row per running transfer, then a summary;
/// `No transfers active` when none runs, as riak says.
pub fn transfers(reply: &pb::TransfersReply) -> String {
    let mut out = String::new();
    // As riak says it, for the hinted handoffs still to come.
    for w in &reply.waiting {
        let _ = writeln!(
            out,
            "{} waiting to hand off {} (hinted)",
            quoted(&w.node),
            plural(u64::from(w.partitions), "partition", "partitions")
        );
    }
    if !reply.waiting.is_empty() {
        let _ = writeln!(out);
    }
    let pending = u64::from(reply.pending);
    let waiting = plural(
        pending,
        "ownership change pending",
        "ownership changes pending",
    );
    if reply.active.is_empty() {
        if pending == 0 {
            let _ = writeln!(out, "No transfers active");
        } else {
            let _ = writeln!(out, "No transfers active; {waiting}");
        }
    } else {
        let rows: Vec<[String; 8]> = reply
            .active
            .iter()
            .map(|t| {
                [
                    if t.r#type.is_empty() {
                        "ownership".to_string()
                    } else {
                        t.r#type.clone()
                    },
                    t.partition.clone(),
                    quoted(&t.from),
                    quoted(&t.to),
                    t.items_sent.to_string(),
                    done(t),
                    t.bytes_sent.to_string(),
                    format!("{:.1}s", t.elapsed_s),
                ]
            })
            .collect();
        let header = [
            "Type",
            "Partition",
            "From",
            "To",
            "Items",
            "Done",
            "Bytes",
            "Elapsed",
        ];
        let mut w = header.map(str::len);
        for r in &rows {
            for (wi, cell) in w.iter_mut().zip(r) {
                *wi = (*wi).max(cell.len());
            }
        }
        // Names and partitions read left to right, numbers line up on the right.
        let line = |c: [&str; 8]| {
            c.iter()
                .zip(w)
                .enumerate()
                .map(|(i, (cell, wi))| {
                    if i < 4 {
                        format!("{cell:<wi$}")
                    } else {
                        format!("{cell:>wi$}")
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let _ = writeln!(out, "Active Transfers:");
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", line(header));
        for r in &rows {
            let _ = writeln!(out, "{}", line(r.each_ref().map(String::as_str)));
        }
        let _ = writeln!(out);
        let active = plural(
            reply.active.len() as u64,
            "transfer active",
            "transfers active",
        );
        let _ = writeln!(out, "{active}; {waiting}");
    }
    if !reply.unreachable.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "WARNING: the transfers of these nodes could not be listed: {}",
            quoted_list(&reply.unreachable)
        );
    }
    out
}

fn change_line(c: &pb::StagedChange) -> String {
    let details = if !c.location.is_empty() {
        format!("{} to {}", quoted(&c.node), c.location)
    } else if c.new_node.is_empty() {
        quoted(&c.node)
    } else {
        format!("{} with {}", quoted(&c.node), quoted(&c.new_node))
    };
    format!("{:<15}{details}", c.action)
}

fn counts(out: &mut String, heading: &str, total: u32, verb: &str, counts: &[pb::TransferCount]) {
    if total == 0 && counts.is_empty() {
        return;
    }
    let _ = writeln!(out, "{heading}: {total}");
    for c in counts {
        let _ = writeln!(
            out,
            "  {} {verb} from {} to {}",
            c.count,
            quoted(&c.from),
            quoted(&c.to)
        );
    }
    let _ = writeln!(out);
}

/// `flavio admin cluster plan`: the staged changes, then for each transition
/// the membership after it, its warnings, reassignments and transfers.
pub fn plan(reply: &pb::PlanReply) -> String {
    let mut out = String::new();
    if reply.changes.is_empty() {
        let _ = writeln!(out, "There are no staged changes");
        return out;
    }
    let dashes = rule('-');
    let _ = writeln!(out, "{}", banner("Staged Changes", '='));
    let _ = writeln!(out, "Action         Details(s)");
    let _ = writeln!(out, "{dashes}");
    for c in &reply.changes {
        let _ = writeln!(out, "{}", change_line(c));
    }
    let _ = writeln!(out, "{dashes}");
    let _ = writeln!(out);
    for w in &reply.warnings {
        let _ = writeln!(out, "{}", warning_line(w));
    }
    let _ = writeln!(out);

    let total = reply.transitions.len();
    let _ = writeln!(
        out,
        "NOTE: Applying these changes will result in {}",
        plural(total as u64, "cluster transition", "cluster transitions")
    );
    let _ = writeln!(out);
    let hashes = rule('#');
    for (i, t) in reply.transitions.iter().enumerate() {
        let _ = writeln!(out, "{hashes}");
        let _ = writeln!(
            out,
            "{}",
            centred(&format!("After cluster transition {}/{total}", i + 1))
        );
        let _ = writeln!(out, "{hashes}");
        let _ = writeln!(out);
        out.push_str(&membership(&t.members));
        let _ = writeln!(out);
        for w in &t.warnings {
            let _ = writeln!(out, "{}", warning_line(w));
            let _ = writeln!(out);
        }
        counts(
            &mut out,
            "Partitions reassigned from cluster changes",
            t.total_reassigned,
            "reassigned",
            &t.reassigned,
        );
        counts(
            &mut out,
            "Transfers resulting from cluster changes",
            t.total_transfers,
            "transfers",
            &t.transfers,
        );
    }
    out
}

// ---------------------------------------------------------------------------
// JSON: the field names below are documented in the README ("Cluster
// administration"); partitions stay decimal strings (they exceed 2^64).

fn opt_str(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

/// A member: `name`, `addr`, `state`, `ring_pct`, `pending_pct` (null when
/// nothing is pending).
pub fn member_json(m: &pb::MemberInfo) -> Value {
    json!({
        "name": m.name,
        "addr": m.addr,
        "state": state_name(m.state()),
        "ring_pct": m.ring_pct,
        "pending_pct": m.pending_pct,
        "location": opt_str(&m.location),
        "incarnation": opt_str(&m.incarnation),
    })
}

fn members_json(members: &[pb::MemberInfo]) -> Value {
    Value::Array(members.iter().map(member_json).collect())
}

fn counts_json(counts: &[pb::TransferCount]) -> Value {
    counts
        .iter()
        .map(|c| json!({"from": c.from, "to": c.to, "count": c.count}))
        .collect()
}

/// `member-status --output json`.
pub fn member_status_json(r: &pb::MemberStatusReply) -> Value {
    json!({
        "node": r.node,
        "claimant": opt_str(&r.claimant),
        "ring_version": r.ring_version,
        "members": members_json(&r.members),
        "unreachable": r.unreachable,
        "majority": r.majority,
        "majority_advice": r.majority_advice,
    })
}

/// `ring-status --output json`.
pub fn ring_status_json(r: &pb::RingStatusReply) -> Value {
    json!({
        "node": r.node,
        "claimant": opt_str(&r.claimant),
        "claimant_up": r.claimant_up,
        "ring_ready": r.ring_ready,
        "ring_version": r.ring_version,
        "pending": r.pending.iter().map(|p| json!({
            "partition": p.partition,
            "owner": p.owner,
            "next_owner": p.next_owner,
            "complete": p.complete,
        })).collect::<Vec<_>>(),
        "unreachable": r.unreachable,
        "n_val": r.n_val,
        "preflists": r.preflists,
        "short_preflists": r.short_preflists,
        "short_location_preflists": r.short_location_preflists,
        "owners": r.owners.iter().map(|o| json!({
            "partition": o.partition,
            "node": o.node,
            "location": opt_str(&o.location),
        })).collect::<Vec<_>>(),
    })
}

/// `transfers --output json`.
pub fn transfers_json(r: &pb::TransfersReply) -> Value {
    json!({
        "active": r.active.iter().map(|t| json!({
            "partition": t.partition,
            "from": t.from,
            "to": t.to,
            "items_sent": t.items_sent,
            "bytes_sent": t.bytes_sent,
            "items_total": t.items_total,
            "elapsed_s": t.elapsed_s,
            "type": t.r#type,
        })).collect::<Vec<_>>(),
        "pending": r.pending,
        "unreachable": r.unreachable,
        "waiting": r.waiting.iter().map(|w| json!({
            "node": w.node, "partitions": w.partitions, "hints": w.hints,
        })).collect::<Vec<_>>(),
    })
}

/// `cluster plan --output json`.
pub fn plan_json(r: &pb::PlanReply) -> Value {
    json!({
        // Nothing staged: no plan, so no id and no ring it was made from.
        "plan_id": opt_str(&r.plan_id),
        "ring_version": (!r.changes.is_empty()).then_some(r.ring_version),
        "changes": r.changes.iter().map(|c| json!({
            "action": c.action,
            "node": c.node,
            "new_node": opt_str(&c.new_node),
            "location": opt_str(&c.location),
        })).collect::<Vec<_>>(),
        "warnings": r.warnings,
        "transitions": r.transitions.iter().map(|t| json!({
            "members": members_json(&t.members),
            "total_transfers": t.total_transfers,
            "transfers": counts_json(&t.transfers),
            "total_reassigned": t.total_reassigned,
            "reassigned": counts_json(&t.reassigned),
            "warnings": t.warnings,
        })).collect::<Vec<_>>(),
    })
}

/// The stage commands' `--output json`: `{"message": ...}`.
pub fn stage_json(r: &pb::StageReply) -> Value {
    json!({"message": r.message})
}

/// `cluster commit --output json`.
pub fn commit_json(r: &pb::CommitReply) -> Value {
    json!({"message": r.message, "ring_version": r.ring_version})
}

/// `cluster clear --output json`.
pub fn clear_json(r: &pb::ClearReply) -> Value {
    json!({"message": r.message})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners_are_79_wide_with_the_odd_column_on_the_right() {
        for t in [
            "Membership",
            "Staged Changes",
            "Claimant",
            "Ownership Handoff",
        ] {
            assert_eq!(banner(t, '=').len(), WIDTH, "{t}");
        }
        assert_eq!(
            banner("Membership", '='),
            "================================= Membership =================================="
        );
        assert_eq!(
            banner("Claimant", '='),
            "================================== Claimant ==================================="
        );
        assert_eq!(
            centred("After cluster transition 1/1"),
            format!("{}After cluster transition 1/1", " ".repeat(25))
        );
    }

    #[test]
    fn member_rows_keep_riak_columns() {
        let row = |state, ring, pending| {
            let m = pb::MemberInfo {
                name: "flavio1@127.0.0.1".into(),
                addr: String::new(),
                state: state as i32,
                ring_pct: ring,
                pending_pct: pending,
                location: String::new(),
                incarnation: String::new(),
            };
            membership(&[m]).lines().nth(3).map(str::to_string)
        };
        let valid = pb::MemberState::Valid;
        assert_eq!(
            row(valid, 100.0, Some(25.0)).as_deref(),
            Some("valid     100.0%     25.0%    'flavio1@127.0.0.1'")
        );
        assert_eq!(
            row(pb::MemberState::Joining, 0.0, None).as_deref(),
            Some("joining     0.0%      --      'flavio1@127.0.0.1'")
        );
        assert_eq!(
            row(pb::MemberState::Leaving, 25.0, Some(0.0)).as_deref(),
            Some("leaving    25.0%      0.0%    'flavio1@127.0.0.1'")
        );
        // 22/64 and 21/64 of the ring round like riak's ~.1f.
        assert_eq!(
            row(valid, 34.375, None).as_deref(),
            Some("valid      34.4%      --      'flavio1@127.0.0.1'")
        );
        assert_eq!(
            row(valid, 32.8125, None).as_deref(),
            Some("valid      32.8%      --      'flavio1@127.0.0.1'")
        );
    }

    #[test]
    fn warnings_are_prefixed_once() {
        assert_eq!(warning_line("x"), "WARNING: x");
        assert_eq!(warning_line("WARNING: x"), "WARNING: x");
    }

    #[test]
    fn quoting_follows_erlang_atoms() {
        assert_eq!(quoted("a@b"), "'a@b'");
        assert_eq!(quoted("it's"), "'it\\'s'");
        assert_eq!(quoted_list(&["a".into(), "b".into()]), "['a','b']");
    }
}
