//! The orchestration core: a pure function from what the operator sees
//! (spec, recorded status, the StatefulSet's size, the pods, the ring as the
//! Admin API reports it, the clock) to the next step. No I/O happens here, so
//! every rule below is a table test.
//!
//! The rules, learned from the riak operators users trust and from their bugs:
//! - **Form.** Pod 0 is the seed: a fresh node is a one-member ring, and the
//!   others join it. (Ordinal 0 rather than "whichever is Ready first" keeps
//!   the seed stable across restarts; scale-down never removes it.)
//! - **Scale up.** The StatefulSet grows at once (new pods are not members, so
//!   that is safe). Once every wanted pod is Ready, all their joins are staged
//!   together and committed with one plan: one commit per scale step.
//! - **Scale down.** Leaves are staged for the highest ordinals and committed;
//!   the StatefulSet keeps every pod whose node is still in the ring (any state
//!   but removed), named by a pending transfer, or recorded as leaving. So it
//!   shrinks only after the leavers handed everything off and were removed.
//! - **Gates.** Nothing is staged while the ring is not ready (not converged),
//!   the claimant is down, a member is unreachable, transfers are pending (the
//!   claimant refuses to plan then anyway), or a committed leave is running.
//! - **Manual approval.** With `autoCommit: false` the plan is published in
//!   status and committed only when the approval annotation names its id; a
//!   published plan that no longer matches the wanted change is cleared.
//! - **Change of direction.** A committed leave always completes (riak has no
//!   "unleave"). Scale down then up before it finished: the leavers finish
//!   leaving; pods still wanted are then kept (not recreated), come back as
//!   fresh one-member rings (a removed node resets itself) and join again in the
//!   next step. Scale up then down before the joins were committed: pods that
//!   never joined are dropped at once, and leaves are staged for members above
//!   the new size.
//! - **Stuck.** While transfers are pending, a fingerprint of their progress is
//!   kept in status with the time it last changed; no change for
//!   `stuckAfterSeconds` sets Degraded naming the stuck transfers.
//!
//! - **Lost volume.** A Ready pod whose node answers for another cluster
//!   than the ring's while the ring counts it as a member came back on an
//!   empty data directory: it is force-removed (riak's force-remove; marked
//!   down first when it is the claimant, so another member takes the role),
//!   an event names the partitions whose counts were on it, and its pod then
//!   joins again like any new pod. Pod 0 is no exception: the operator
//!   follows the ring of the cluster id recorded in status, never the
//!   one-member ring a fresh pod 0 has.
//!
//! - **Zones.** Each member's location is the `topology.kubernetes.io/zone`
//!   of its pod's Kubernetes node, staged with `cluster location` in the
//!   same plan as its join (or alone, for members placed before), so claim
//!   puts the replicas of a preference list in distinct zones as far as the
//!   zone and ring counts allow; status warns when they do not.
//!
//!   A member answering with another data-directory incarnation than the
//!   ring recorded at its join (a swapped volume) is replaced the same way.
//!
//! What it leaves out: members of rings made before incarnations were
//! recorded have none, and only the cluster id catches their lost volumes.

use crate::crd::{
    FlavioClusterSpec, FlavioClusterStatus, Intent, PlanStatus, Progress, Retention, validate,
};

/// How nodes are named: a pure function of the cluster's name, namespace and
/// a pod's ordinal, so names survive pod restarts and operator restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    /// The FlavioCluster's name (also the StatefulSet's).
    pub cluster: String,
    /// Its namespace.
    pub namespace: String,
}

impl Naming {
    /// The headless Service's name.
    pub fn headless(&self) -> String {
        format!("{}-headless", self.cluster)
    }

    /// Pod `ordinal`'s name.
    pub fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }

    /// Pod `ordinal`'s stable DNS name.
    pub fn host(&self, ordinal: i32) -> String {
        format!(
            "{}.{}.{}.svc",
            self.pod(ordinal),
            self.headless(),
            self.namespace
        )
    }

    /// Pod `ordinal`'s node name, riak style.
    pub fn node(&self, ordinal: i32) -> String {
        format!("flavio@{}", self.host(ordinal))
    }

    /// The ordinal of a node name made by [`Naming::node`].
    pub fn ordinal(&self, node: &str) -> Option<i32> {
        let rest = node.strip_prefix("flavio@")?.strip_prefix(&self.cluster)?;
        let rest = rest.strip_prefix('-')?;
        let suffix = format!(".{}.{}.svc", self.headless(), self.namespace);
        rest.strip_suffix(&suffix)?.parse().ok().filter(|o| *o >= 0)
    }
}

/// A member's state, as the Admin API reports it: the node's own type, so
/// that the operator and the ring agree on what each state means.
pub use flavio_node::cluster::MemberState as State;

/// A ring member.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// State.
    pub state: State,
    /// Percent owned now.
    pub ring_pct: f64,
    /// Percent owned after pending transfers.
    pub pending_pct: Option<f64>,
    /// Its location in the ring (`cluster location`), if set.
    pub location: Option<String>,
    /// The data-directory incarnation id the ring records for it, if any.
    pub incarnation: Option<String>,
}

/// A pending ownership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Partition index.
    pub partition: String,
    /// Current owner.
    pub owner: String,
    /// Next owner.
    pub next_owner: String,
    /// Data moved, only the claimant's flip missing.
    pub complete: bool,
}

/// The ring as one member reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct RingView {
    /// Members, removed ones possibly included.
    pub members: Vec<Member>,
    /// Every member has seen the current ring version.
    pub ring_ready: bool,
    /// The claimant's node name.
    pub claimant: String,
    /// Whether the claimant answered gossip recently.
    pub claimant_up: bool,
    /// Ring version.
    pub version: u64,
    /// Pending ownership changes.
    pub pending: Vec<Transfer>,
    /// Members the answering node cannot reach.
    pub unreachable: Vec<String>,
    /// Items sent by running transfers (progress inside one transfer).
    pub items_sent: u64,
    /// Hinted handoff not done: nodes holding fallback data to hand back,
    /// and running hinted transfers.
    pub hinted: Vec<String>,
    /// The ring's cluster id.
    pub cluster_id: String,
    /// Every partition (decimal ring index) and its owner.
    pub owners: Vec<(String, String)>,
    /// Preference lists of `n_val` not on `n_val` distinct locations (0
    /// when no member has a location).
    pub short_location_preflists: u32,
    /// The node's n_val and how many preference lists the ring has.
    pub n_val: u32,
}

impl RingView {
    /// The member called `name` unless it was removed.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.name == name && m.state != State::Removed)
    }
}

/// A pod of the StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// Ordinal.
    pub ordinal: i32,
    /// Ready (and not being deleted).
    pub ready: bool,
    /// Its `controller-revision-hash` label: the StatefulSet revision it runs.
    pub revision: Option<String>,
    /// Why its container cannot run (`ErrImagePull: ...`,
    /// `CrashLoopBackOff: ...`), if it says.
    pub problem: Option<String>,
}

/// Everything the decision looks at.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// Node naming.
    pub naming: &'a Naming,
    /// The spec.
    pub spec: &'a FlavioClusterSpec,
    /// The status as last written (intent, published plan, ring size).
    pub status: &'a FlavioClusterStatus,
    /// The value of the approval annotation, if any.
    pub approved: Option<&'a str>,
    /// The StatefulSet's `spec.replicas`, `None` if it does not exist.
    pub sts_replicas: Option<i32>,
    /// What the cluster has that its spec cannot change (ring size from
    /// status, storage from the StatefulSet).
    pub recorded: &'a crate::crd::Recorded,
    /// The pods that exist.
    pub pods: &'a [PodView],
    /// Ordinals of the data PVCs that exist.
    pub pvcs: &'a [i32],
    /// The ring, `None` when no member could be asked.
    pub ring: Option<&'a RingView>,
    /// Ordinals of Ready pods whose node answers for another cluster than
    /// the ring's while the ring counts it as a member: it came back on a
    /// new, empty data directory (its volume was lost).
    pub lost: &'a [i32],
    /// The StatefulSet's revisions, `None` before it exists.
    pub rollout: Option<&'a crate::rollout::Rollout>,
    /// The zone (`topology.kubernetes.io/zone` of its Kubernetes node) of
    /// each scheduled pod, by ordinal; pods on unlabelled nodes are absent.
    pub zones: &'a [(i32, String)],
    /// Unix seconds.
    pub now: i64,
}

/// The membership action to take this pass (at most one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do on the ring.
    Nothing,
    /// Stage these joins and leaves, plan, check that the plan holds exactly
    /// them and `staged_joins`, then commit (or publish the plan when
    /// `commit` is false).
    Change {
        /// Node names to join (run on each joiner, targeting a member).
        joins: Vec<String>,
        /// Nodes already joining (staged earlier, not committed).
        staged_joins: Vec<String>,
        /// Node names to leave.
        leaves: Vec<String>,
        /// Locations to set (`cluster location`): node and zone.
        locations: Vec<(String, String)>,
        /// Commit right away (autoCommit).
        commit: bool,
    },
    /// Commit the approved plan.
    CommitPlan {
        /// The plan id.
        id: String,
    },
    /// Drop the staged changes and the published plan.
    ClearPlan,
    /// Replace a member whose volume was lost (riak's force-remove, then
    /// the usual join brings its pod back): mark it down first when it is
    /// the claimant (another member takes the role), else force-remove it.
    ReplaceLost {
        /// The member's node name.
        node: String,
        /// It is the claimant: mark it down (from another member) first.
        down_first: bool,
        /// The partitions it owned: their counts were on the lost volume.
        partitions: Vec<String>,
    },
}

/// A condition's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// True or false.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human message.
    pub message: String,
}

impl Cond {
    /// A condition value.
    pub(crate) fn new(status: bool, reason: &str, message: impl Into<String>) -> Cond {
        Cond {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// How soon to look again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Something is moving: poll the ring soon.
    Soon,
    /// Steady state.
    Idle,
}

/// The decision: what to do and what to report.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The StatefulSet size to apply; `None` means touch no child (invalid spec).
    pub sts_replicas: Option<i32>,
    /// The rolling restart's step: the partition to apply, the Upgrading
    /// condition, events.
    pub roll: crate::rollout::Roll,
    /// The ring action.
    pub action: Action,
    /// PVC ordinals to delete (scale-down retention policy `Delete`).
    pub delete_pvcs: Vec<i32>,
    /// The phase for status.
    pub phase: &'static str,
    /// Available condition.
    pub available: Cond,
    /// Progressing condition.
    pub progressing: Cond,
    /// Degraded condition (`status` false when healthy).
    pub degraded: Cond,
    /// The intent to record.
    pub intent: Intent,
    /// The plan to publish (kept, new ones come from the adapter).
    pub plan: Option<PlanStatus>,
    /// Leavers seen removed this pass (one event each).
    pub removed: Vec<String>,
    /// When to look again.
    pub requeue: Requeue,
}

/// The staged changes of a join/leave/location set, as the plan and status
/// spell them.
pub fn change_lines(
    joins: &[String],
    leaves: &[String],
    locations: &[(String, String)],
) -> Vec<String> {
    let mut v: Vec<String> = joins
        .iter()
        .map(|n| format!("join {n}"))
        .chain(leaves.iter().map(|n| format!("leave {n}")))
        .chain(
            locations
                .iter()
                .map(|(n, l)| format!("set-location {n} {l}")),
        )
        .collect();
    v.sort();
    v
}

/// The next step. See the module docs for the rules, and
/// [`crate::rollout`] for the rolling restart's.
pub fn decide(inp: &Input<'_>) -> Decision {
    let mut d = membership(inp);
    let Some(sts) = d.sts_replicas else {
        return d;
    };
    let node = |o: i32| inp.naming.node(o);
    let pod = |o: i32| inp.naming.pod(o);
    let roll = crate::rollout::roll(&crate::rollout::RollInput {
        rollout: inp.rollout,
        sts,
        pods: inp.pods,
        ring: inp.ring,
        node: &node,
        pod: &pod,
        rolling: inp.status.intent.rolling.as_ref(),
        busy: d.action != Action::Nothing,
        timeout_s: inp.spec.upgrade.pod_timeout_seconds,
        now: inp.now,
    });
    d.intent.rolling = roll.rolling.clone();
    if roll.upgrading.status && matches!(d.phase, "Available" | "ScalingUp") {
        d.phase = "Upgrading";
        d.requeue = Requeue::Soon;
    }
    if let Some(deg) = &roll.degraded
        && !d.degraded.status
    {
        d.degraded = deg.clone();
    }
    d.roll = roll;
    finish(d)
}

/// The membership part of the step.
fn membership(inp: &Input<'_>) -> Decision {
    let spec = inp.spec;
    let status = inp.status;
    if let Err(inv) = validate(spec, inp.recorded) {
        return Decision {
            sts_replicas: None,
            roll: crate::rollout::Roll::idle(),
            action: Action::Nothing,
            delete_pvcs: vec![],
            phase: "Degraded",
            available: Cond::new(
                false,
                inv.reason,
                "the spec is refused; nothing was changed",
            ),
            progressing: Cond::new(
                false,
                inv.reason,
                "the spec is refused; nothing was changed",
            ),
            degraded: Cond::new(true, inv.reason, inv.message),
            intent: status.intent.clone(),
            plan: status.plan.clone(),
            removed: vec![],
            requeue: Requeue::Idle,
        };
    }
    let desired = spec.replicas;
    let current = inp.sts_replicas.unwrap_or(0);
    let Some(ring) = inp.ring else {
        // No member answered. Growing is still safe (new pods are not members);
        // shrinking is not, since nothing tells us who still owns data.
        let sts = desired.max(current);
        return Decision {
            sts_replicas: Some(sts),
            roll: crate::rollout::Roll::idle(),
            action: Action::Nothing,
            delete_pvcs: vec![],
            phase: if status.members.is_empty() {
                "Creating"
            } else {
                "Progressing"
            },
            available: Cond::new(false, "RingUnknown", "no member answered yet"),
            progressing: Cond::new(true, "WaitingForPods", "waiting for a Ready member to ask"),
            degraded: Cond::new(false, "AsExpected", ""),
            intent: status.intent.clone(),
            plan: status.plan.clone(),
            removed: vec![],
            requeue: Requeue::Soon,
        };
    };
    let naming = inp.naming;
    let ord = |n: &str| naming.ordinal(n);

    // A member whose pod came back without its data must not stay a member
    // under its old self: replace it before anything else (nothing else
    // can go on while it counts as unreachable anyway).
    if let Some(&o) = inp.lost.first() {
        let node = naming.node(o);
        if ring.member(&node).is_some() {
            let partitions: Vec<String> = ring
                .owners
                .iter()
                .filter(|(_, n)| *n == node)
                .map(|(p, _)| p.clone())
                .collect();
            let down_first = ring.claimant == node;
            let msg = format!(
                "{} came back with an empty data directory (its volume was lost): {}",
                naming.pod(o),
                if down_first {
                    "marking it down so that another member takes over as claimant"
                } else {
                    "force-removing it; its pod then joins again as a new member"
                }
            );
            return finish(Decision {
                sts_replicas: Some(current.max(desired)),
                roll: crate::rollout::Roll::idle(),
                action: Action::ReplaceLost {
                    node,
                    down_first,
                    partitions,
                },
                delete_pvcs: vec![],
                phase: "Progressing",
                available: Cond::new(false, "VolumeLost", msg.clone()),
                progressing: Cond::new(true, "ReplacingLostMember", msg),
                degraded: Cond::new(false, "AsExpected", ""),
                intent: status.intent.clone(),
                plan: status.plan.clone(),
                removed: vec![],
                requeue: Requeue::Soon,
            });
        }
    }

    // Intent bookkeeping: leavers seen removed are done.
    let (still_leaving, removed): (Vec<String>, Vec<String>) = status
        .intent
        .leaving
        .iter()
        .cloned()
        .partition(|n| ring.member(n).is_some());

    // The floor: every pod whose node is still in the ring, takes part in a
    // transfer, or is recorded as leaving must stay.
    let live: Vec<&Member> = ring
        .members
        .iter()
        .filter(|m| m.state != State::Removed)
        .collect();
    let floor = live
        .iter()
        .map(|m| m.name.as_str())
        .chain(
            ring.pending
                .iter()
                .flat_map(|t| [t.owner.as_str(), t.next_owner.as_str()]),
        )
        .chain(still_leaving.iter().map(String::as_str))
        .filter_map(ord)
        .map(|o| o + 1)
        .max()
        .unwrap_or(0);
    let sts = desired.max(floor);

    // Progress fingerprint while transfers are pending.
    let progress = if ring.pending.is_empty() {
        None
    } else {
        let done = ring.pending.iter().filter(|t| t.complete).count();
        let fp = format!(
            "v{}:p{}:c{}:i{}",
            ring.version,
            ring.pending.len(),
            done,
            ring.items_sent
        );
        Some(match &status.intent.progress {
            Some(p) if p.fingerprint == fp => p.clone(),
            _ => Progress {
                fingerprint: fp,
                since: inp.now,
            },
        })
    };
    let stuck_for = progress.as_ref().map(|p| inp.now - p.since).unwrap_or(0);
    let stuck = progress.is_some()
        && stuck_for >= i64::try_from(spec.membership.stuck_after_seconds).unwrap_or(i64::MAX);
    let degraded = if stuck {
        let named: Vec<String> = ring
            .pending
            .iter()
            .filter(|t| !t.complete)
            .take(5)
            .map(|t| format!("{} {} -> {}", t.partition, t.owner, t.next_owner))
            .collect();
        Cond::new(
            true,
            "TransfersStuck",
            format!(
                "no transfer advanced for {stuck_for}s ({} pending): {}",
                ring.pending.len(),
                named.join(", ")
            ),
        )
    } else {
        Cond::new(false, "AsExpected", "")
    };

    // The wanted membership: nodes of ordinals 0..desired.
    let wanted: Vec<(i32, String)> = (0..desired).map(|o| (o, naming.node(o))).collect();
    let joins: Vec<String> = wanted
        .iter()
        .filter(|(_, n)| ring.member(n).is_none())
        .map(|(_, n)| n.clone())
        .collect();
    // A staged join puts the node in the ring as `joining` (riak's join) and
    // it can't be staged again: such nodes are part of the next plan as they are.
    let staged_joins: Vec<String> = wanted
        .iter()
        .filter(|(_, n)| ring.member(n).is_some_and(|m| m.state == State::Joining))
        .map(|(_, n)| n.clone())
        .collect();
    // Only valid members can leave (the claimant refuses a joining one).
    let mut leaves: Vec<String> = live
        .iter()
        .filter(|m| m.state == State::Valid)
        .filter(|m| ord(&m.name).is_some_and(|o| o >= desired))
        .map(|m| m.name.clone())
        .collect();
    leaves.sort_by_key(|n| std::cmp::Reverse(ord(n)));
    // Zones: every wanted member (or joiner) on a zone-labelled Kubernetes
    // node carries that zone as its location, so claim spreads preference
    // lists across zones. A pod keeps its zone across restarts (its volume
    // is zonal), so this changes only when a member is new or was placed
    // before locations were set.
    let mut locations: Vec<(String, String)> = inp
        .zones
        .iter()
        .filter(|(o, _)| *o < desired)
        .map(|(o, z)| (naming.node(*o), z.clone()))
        .filter(|(n, z)| {
            joins.contains(n)
                || ring.member(n).is_some_and(|m| {
                    matches!(m.state, State::Valid | State::Joining)
                        && m.location.as_deref() != Some(z.as_str())
                })
        })
        .collect();
    locations.sort();
    let leave_running = live
        .iter()
        .any(|m| matches!(m.state, State::Leaving | State::Exiting));

    let mut intent = Intent {
        leaving: still_leaving.clone(),
        progress,
        rolling: status.intent.rolling.clone(),
    };

    // PVCs of ordinals the StatefulSet no longer covers, whose pods are gone
    // and whose nodes are out of the ring, when the policy says Delete.
    let delete_pvcs: Vec<i32> = if spec.storage.when_scaled == Retention::Delete {
        inp.pvcs
            .iter()
            .copied()
            .filter(|o| *o >= sts && *o >= floor)
            .filter(|o| !inp.pods.iter().any(|p| p.ordinal == *o))
            .collect()
    } else {
        vec![]
    };

    let ready = |o: i32| inp.pods.iter().any(|p| p.ordinal == o && p.ready);
    let all_wanted_ready = wanted.iter().all(|(o, _)| ready(*o));
    let available_now = all_wanted_ready
        && locations.is_empty()
        && joins.is_empty()
        && staged_joins.is_empty()
        && live.len() == wanted.len()
        && live.iter().all(|m| m.state == State::Valid)
        && ring.pending.is_empty()
        && ring.ring_ready;
    let available = if available_now {
        Cond::new(
            true,
            "AllMembersValid",
            format!("{desired} valid members, no pending transfers"),
        )
    } else {
        Cond::new(
            false,
            "MembershipChanging",
            format!(
                "{} of {desired} wanted members valid, {} transfers pending",
                wanted
                    .iter()
                    .filter(|(_, n)| ring.member(n).is_some_and(|m| m.state == State::Valid))
                    .count(),
                ring.pending.len()
            ),
        )
    };
    let scaling_down = !leaves.is_empty()
        || leave_running
        || !still_leaving.is_empty()
        || floor > desired
        || (sts < current && joins.is_empty());
    let direction = if scaling_down {
        "ScalingDown"
    } else if live.len() <= 1 && desired > 1 {
        "Creating"
    } else {
        "ScalingUp"
    };

    let mut d = Decision {
        sts_replicas: Some(sts),
        roll: crate::rollout::Roll::idle(),
        action: Action::Nothing,
        delete_pvcs,
        phase: direction,
        available,
        progressing: Cond::new(false, "Stable", ""),
        degraded,
        intent: intent.clone(),
        plan: status.plan.clone(),
        removed,
        requeue: Requeue::Soon,
    };
    let wait = |d: &mut Decision, reason: &str, msg: String| {
        d.progressing = Cond::new(true, reason, msg);
    };

    // A published plan: commit on approval, clear when outdated, else wait.
    if let Some(plan) = &status.plan {
        let expected = change_lines(&union(&joins, &staged_joins), &leaves, &locations);
        let mut have = plan.changes.clone();
        have.sort();
        if have != expected {
            d.action = Action::ClearPlan;
            d.plan = None;
            wait(
                &mut d,
                "PlanOutdated",
                format!("plan {} no longer matches the spec; clearing it", plan.id),
            );
        } else if inp.approved == Some(plan.id.as_str()) {
            d.action = Action::CommitPlan {
                id: plan.id.clone(),
            };
            d.plan = None;
            intent.leaving = union(&still_leaving, &leaves);
            d.intent = intent;
            wait(
                &mut d,
                "PlanApproved",
                format!("committing plan {}", plan.id),
            );
        } else {
            d.phase = "AwaitingApproval";
            wait(
                &mut d,
                "AwaitingApproval",
                format!(
                    "approve with: kubectl annotate fc {} {}={}",
                    naming.cluster,
                    crate::crd::APPROVE_ANNOTATION,
                    plan.id
                ),
            );
        }
        return finish(d);
    }

    if joins.is_empty() && staged_joins.is_empty() && leaves.is_empty() && locations.is_empty() {
        if !ring.pending.is_empty() {
            wait(
                &mut d,
                "TransfersPending",
                format!("{} transfers pending", ring.pending.len()),
            );
        } else if leave_running || !still_leaving.is_empty() {
            wait(
                &mut d,
                "WaitingForLeavers",
                format!("leaving: {}", still_leaving.join(", ")),
            );
        } else if sts != current {
            wait(
                &mut d,
                "ScalingStatefulSet",
                format!("StatefulSet {current} -> {sts}"),
            );
        } else if !available_now {
            wait(
                &mut d,
                "WaitingForPods",
                "waiting for pods and ring to settle".into(),
            );
        } else {
            d.phase = "Available";
            d.requeue = Requeue::Idle;
        }
        return finish(d);
    }

    // Something to stage: every gate must be open.
    let gate = if !ring.ring_ready {
        Some((
            "RingNotReady",
            "waiting for the ring to converge".to_string(),
        ))
    } else if !ring.claimant_up {
        Some((
            "ClaimantDown",
            format!("claimant {} is not up", ring.claimant),
        ))
    } else if !ring.unreachable.is_empty() {
        Some((
            "MembersUnreachable",
            format!("unreachable: {}", ring.unreachable.join(", ")),
        ))
    } else if !ring.pending.is_empty() {
        Some((
            "TransfersPending",
            format!("{} transfers pending", ring.pending.len()),
        ))
    } else if leave_running {
        Some((
            "WaitingForLeavers",
            "a committed leave is still running".into(),
        ))
    } else if let Some((o, _)) = wanted.iter().find(|(o, n)| joins.contains(n) && !ready(*o)) {
        Some((
            "WaitingForPods",
            format!("pod {} is not Ready", naming.pod(*o)),
        ))
    } else {
        None
    };
    if let Some((reason, msg)) = gate {
        wait(&mut d, reason, msg);
        return finish(d);
    }
    let commit = spec.membership.auto_commit;
    if !leaves.is_empty() && commit {
        // Record before acting: a restart after the commit still knows why
        // these members are leaving.
        intent.leaving = union(&still_leaving, &leaves);
        d.intent = intent;
    }
    let lines = change_lines(&union(&joins, &staged_joins), &leaves, &locations);
    wait(
        &mut d,
        if commit { "Committing" } else { "Planning" },
        lines.join(", "),
    );
    d.action = Action::Change {
        joins,
        staged_joins,
        leaves,
        locations,
        commit,
    };
    finish(d)
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut v: Vec<String> = a.iter().chain(b).cloned().collect();
    v.sort();
    v.dedup();
    v
}

/// Degraded wins the phase.
fn finish(mut d: Decision) -> Decision {
    if d.degraded.status {
        d.phase = "Degraded";
    }
    d
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
