//! The ring as the operator sees it, through the Admin gRPC API: reading a
//! [`RingView`] from one member, and carrying out the decision's membership
//! [`Action`]s (stage, plan, check, commit; commit an approved plan; clear).
//!
//! The operator always calls nodes at `<pod IP>:10017`, whatever they
//! advertise, so it needs no cluster DNS; with TLS it checks certificates
//! against the cluster's one server name. What it leaves out: retries (the
//! controller requeues).

use flavio_node::ring::claim::ring_size_for_locations;
use flavio_node::rpc::Credentials;
use flavio_node::rpc::client::{Admin, admin};
use flavio_proto::v1 as pb;

use crate::crd::{MemberStatus, PlanStatus};
use crate::decide::{Member, RingView, State, Transfer, change_lines};
use crate::{Error, Result};

/// What one member reported: the decision's view plus status details.
#[derive(Clone, Debug)]
pub struct Observed {
    /// For the decision.
    pub view: RingView,
    /// For status.
    pub members: Vec<MemberStatus>,
    /// What status warns of about this ring's placement (replicas sharing
    /// a zone).
    pub warnings: Vec<String>,
}

fn admin_err(node: &str, s: impl std::fmt::Display) -> Error {
    Error::Admin {
        node: node.to_string(),
        message: s.to_string(),
    }
}

async fn connect(addr: &str, cookie: &Credentials) -> Result<Admin> {
    admin(addr, cookie.clone())
        .await
        .map_err(|e| admin_err(addr, e))
}

fn state(s: i32) -> State {
    // An unknown or unspecified state is treated as down, which blocks
    // nothing unsafe (a down member is neither counted ready nor removed).
    flavio_node::rpc::convert::member_state_from_pb(s).unwrap_or(State::Down)
}

/// Reads the ring from the member at `addr`.
pub async fn observe(addr: &str, cookie: &Credentials) -> Result<Observed> {
    let mut c = connect(addr, cookie).await?;
    let ms = c
        .member_status(pb::MemberStatusRequest {})
        .await
        .map_err(|s| admin_err(addr, s.message()))?
        .into_inner();
    let rs = c
        .ring_status(pb::RingStatusRequest {})
        .await
        .map_err(|s| admin_err(addr, s.message()))?
        .into_inner();
    // Transfer progress is optional: a failure here only weakens the
    // stuck-progress fingerprint.
    // Hinted handoff is a gate of the rolling restart: when it cannot be
    // read, it counts as not done.
    let (items_sent, hinted) = match c
        .transfers(pb::TransfersRequest { local_only: false })
        .await
    {
        Ok(t) => {
            let t = t.into_inner();
            let hinted = t
                .waiting
                .iter()
                .map(|w| {
                    format!(
                        "{} holds {} partitions of fallback data",
                        w.node, w.partitions
                    )
                })
                .chain(
                    t.active
                        .iter()
                        .filter(|a| a.r#type == "hinted")
                        .map(|a| format!("{} -> {} (partition {})", a.from, a.to, a.partition)),
                )
                .chain(
                    t.unreachable
                        .iter()
                        .map(|n| format!("{n}'s transfers cannot be listed")),
                )
                .collect();
            (t.active.iter().map(|a| a.items_sent).sum(), hinted)
        }
        Err(s) => (
            0,
            vec![format!("transfers cannot be listed: {}", s.message())],
        ),
    };
    let members: Vec<Member> = ms
        .members
        .iter()
        .map(|m| Member {
            name: m.name.clone(),
            state: state(m.state),
            ring_pct: m.ring_pct,
            pending_pct: m.pending_pct,
            location: Some(m.location.clone()).filter(|l| !l.is_empty()),
            incarnation: Some(m.incarnation.clone()).filter(|i| !i.is_empty()),
        })
        .collect();
    let status_members = members
        .iter()
        .map(|m| MemberStatus {
            name: m.name.clone(),
            state: m.state.as_str().into(),
            ring_pct: (m.ring_pct * 10.0).round() / 10.0,
            pending_pct: m.pending_pct.map(|p| (p * 10.0).round() / 10.0),
        })
        .collect();
    let located = rs.owners.iter().any(|o| !o.location.is_empty());
    let warnings = if located && rs.short_location_preflists > 0 {
        let n = rs.n_val as usize;
        // Members per zone, zone by zone.
        let mut per_zone: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
            Default::default();
        for o in &rs.owners {
            per_zone
                .entry(o.location.as_str())
                .or_default()
                .insert(o.node.as_str());
        }
        let per_zone: Vec<usize> = per_zone.values().map(|m| m.len()).collect();
        // Three zones on a power-of-two ring: the counts forbid it, and the
        // ring size can only be chosen for a new cluster; say which would do.
        let hint = ring_size_for_locations(rs.owners.len(), &per_zone, n)
            .map(|size| {
                format!("; a ringSize of {size} would allow it (set when a cluster is created)")
            })
            .unwrap_or_default();
        vec![format!(
            "Not all replicas are on distinct locations: {} of {} preference lists of {n} partitions are not on {n} distinct zones (members are in {} zones){hint}",
            rs.short_location_preflists,
            rs.owners.len(),
            per_zone.len(),
        )]
    } else {
        Vec::new()
    };
    Ok(Observed {
        warnings,
        view: RingView {
            members,
            ring_ready: rs.ring_ready,
            claimant: rs.claimant,
            claimant_up: rs.claimant_up,
            version: rs.ring_version.max(ms.ring_version),
            pending: rs
                .pending
                .into_iter()
                .map(|p| Transfer {
                    partition: p.partition,
                    owner: p.owner,
                    next_owner: p.next_owner,
                    complete: p.complete,
                })
                .collect(),
            unreachable: rs.unreachable,
            items_sent,
            hinted,
            cluster_id: ms.cluster_id.clone(),
            owners: rs
                .owners
                .into_iter()
                .map(|o| (o.partition, o.node))
                .collect(),
            short_location_preflists: rs.short_location_preflists,
            n_val: rs.n_val,
        },
        members: status_members,
    })
}

/// The cluster id and data-directory incarnation the node at `addr`
/// answers with.
pub async fn identity(addr: &str, cookie: &Credentials) -> Result<(String, String)> {
    let mut c = connect(addr, cookie).await?;
    let ms = c
        .member_status(pb::MemberStatusRequest {})
        .await
        .map_err(|s| admin_err(addr, s.message()))?
        .into_inner();
    Ok((ms.cluster_id, ms.incarnation))
}

/// The digest of the cookies the node at `addr` holds now.
pub async fn cookie_digest(addr: &str, cookie: &Credentials) -> Result<String> {
    let mut c = connect(addr, cookie).await?;
    let ms = c
        .member_status(pb::MemberStatusRequest {})
        .await
        .map_err(|s| admin_err(addr, s.message()))?
        .into_inner();
    Ok(ms.cookie_digest)
}

/// Marks `node` down from the member at `at` (which becomes the claimant
/// when `node` was it). A majority must see `node` unreachable.
pub async fn down(at: &str, cookie: &Credentials, node: &str) -> Result<()> {
    let mut c = connect(at, cookie).await?;
    c.down(pb::DownRequest {
        node: node.to_string(),
        without_majority: false,
    })
    .await
    .map_err(|s| admin_err(at, s.message()))?;
    Ok(())
}

/// Force-removes `node` on the claimant: stage, plan (which must hold just
/// that), commit. Returns the new ring version.
pub async fn force_remove(claimant: &str, cookie: &Credentials, node: &str) -> Result<u64> {
    let mut c = connect(claimant, cookie).await?;
    match c
        .stage_remove(pb::StageRemoveRequest {
            node: node.to_string(),
        })
        .await
    {
        Ok(_) => {}
        Err(s) if s.message().contains("already has a staged change") => {}
        Err(s) => return Err(admin_err(claimant, s.message())),
    }
    let plan = plan_exactly(&mut c, claimant, vec![format!("force-remove {node}")]).await?;
    commit(claimant, cookie, &plan.id).await
}

/// Stages `joins` (each on its own node, at `join_addrs`, targeting the member
/// at `claimant`) and `leaves` (on the claimant), plans, and checks that the
/// plan holds exactly those changes plus `staged_joins` (joins staged by an
/// earlier pass: a joining node can't stage its join twice). A leave already
/// staged by an interrupted pass is accepted as it is; anything else the
/// plan holds makes it refuse (and clear): never commit what we did not ask
/// for. Returns the plan.
pub async fn stage_and_plan(
    claimant: &str,
    cookie: &Credentials,
    joins: &[(String, String)],
    staged_joins: &[String],
    leaves: &[String],
    locations: &[(String, String)],
) -> Result<PlanStatus> {
    let mut c = connect(claimant, cookie).await?;
    for (_, addr) in joins {
        let mut j = connect(addr, cookie).await?;
        j.stage_join(pb::StageJoinRequest {
            target: claimant.to_string(),
        })
        .await
        .map_err(|s| admin_err(addr, s.message()))?;
    }
    for node in leaves {
        match c
            .stage_leave(pb::StageLeaveRequest { node: node.clone() })
            .await
        {
            Ok(_) => {}
            Err(s) if s.message().contains("already has a staged change") => {}
            Err(s) => return Err(admin_err(claimant, s.message())),
        }
    }
    // A location is staged after its node's join: the claimant needs the
    // node in the ring (as joining) to place it. Restaging replaces.
    for (node, location) in locations {
        c.stage_location(pb::StageLocationRequest {
            node: node.clone(),
            location: location.clone(),
        })
        .await
        .map_err(|s| admin_err(claimant, s.message()))?;
    }
    let mut join_names: Vec<String> = joins.iter().map(|(n, _)| n.clone()).collect();
    join_names.extend(staged_joins.iter().cloned());
    plan_exactly(
        &mut c,
        claimant,
        change_lines(&join_names, leaves, locations),
    )
    .await
}

/// Plans on the claimant and checks that the plan holds exactly `want`
/// (sorted `action node` lines); anything else makes it clear the staged
/// changes and refuse: never commit what we did not ask for.
async fn plan_exactly(c: &mut Admin, claimant: &str, want: Vec<String>) -> Result<PlanStatus> {
    let plan = c
        .plan(pb::PlanRequest {})
        .await
        .map_err(|s| admin_err(claimant, s.message()))?
        .into_inner();
    let mut got: Vec<String> = plan
        .changes
        .iter()
        .map(|ch| match ch.location.as_str() {
            "" => format!("{} {}", ch.action, ch.node),
            l => format!("{} {} {l}", ch.action, ch.node),
        })
        .collect();
    got.sort();
    if got != want {
        let _ = c.clear(pb::ClearRequest {}).await;
        return Err(Error::UnexpectedPlan(format!(
            "staged {want:?}, the claimant plans {got:?}"
        )));
    }
    Ok(PlanStatus {
        id: plan.plan_id,
        changes: got,
        transfers: plan.transitions.iter().map(|t| t.total_transfers).sum(),
        warnings: plan
            .warnings
            .iter()
            .chain(plan.transitions.iter().flat_map(|t| &t.warnings))
            .cloned()
            .collect::<std::collections::BTreeSet<String>>()
            .into_iter()
            .collect(),
    })
}

/// Commits plan `id` on the claimant. Returns the new ring version.
pub async fn commit(claimant: &str, cookie: &Credentials, id: &str) -> Result<u64> {
    let mut c = connect(claimant, cookie).await?;
    let r = c
        .commit(pb::CommitRequest {
            plan_id: id.to_string(),
        })
        .await
        .map_err(|s| admin_err(claimant, s.message()))?;
    Ok(r.into_inner().ring_version)
}

/// Drops staged changes on the claimant.
pub async fn clear(claimant: &str, cookie: &Credentials) -> Result<()> {
    let mut c = connect(claimant, cookie).await?;
    c.clear(pb::ClearRequest {})
        .await
        .map_err(|s| admin_err(claimant, s.message()))?;
    Ok(())
}
