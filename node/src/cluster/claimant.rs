//! The claimant: the one member that stages membership changes, shows the
//! plan they lead to, and commits exactly that plan, as riak_core's
//! `riak_core_claimant` does. Also the ring's self-driving steps after a
//! commit: flipping ownership when a transfer completes, moving leavers to
//! `exiting` and then `removed`, and electing a new claimant when needed.
//!
//! Everything here is a pure function of a [`RingState`] (and what the node
//! has observed: who has seen which ring); the cluster manager calls it,
//! after checking that this node may write at all (a majority, see
//! [`super::majority`]), and gossips the result. Every write returns its ring
//! through [`RingState::stamp`], which orders it after the ring it came
//! from; [`repair`] mends what a join of concurrent rings can leave.
//!
//! Our choices where riak leaves room: a plan is refused while ownership
//! transfers are still pending (finish one transition before starting the
//! next: a plan then always starts from a settled ring, which keeps its
//! transfer list exact), and a node may have one staged change at a time.

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};

use super::state::{Member, MemberState, RingState, Transfer};
use crate::ring::claim::{
    DEFAULT_TARGET_LOCATION_N_VAL, DEFAULT_TARGET_N_VAL, fewest_location_short_windows,
    location_short_windows, ring_size_for_locations, short_windows,
};
use crate::ring::{PartitionId, Ring};
use crate::{Error, Result};

/// A staged membership change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// A joining node becomes valid and takes its share.
    Join(String),
    /// A member hands everything off, then leaves.
    Leave(String),
    /// A member is dropped at once; its partitions are reassigned, its data lost.
    ForceRemove(String),
    /// `new` (joining) takes over exactly `old`'s partitions by handoff.
    Replace {
        /// The member that goes.
        old: String,
        /// The joining node that takes its place.
        new: String,
    },
    /// Like `Replace`, but without handoff: `old`'s data is lost.
    ForceReplace {
        /// The member that goes.
        old: String,
        /// The joining node that takes its place.
        new: String,
    },
    /// riak_core 3.x's `cluster location`: `node` runs at `location`, and
    /// claim spreads preference lists across locations. Staged beside the
    /// node's other change (a join, typically), not instead of it.
    Location {
        /// The member (or joining node).
        node: String,
        /// Its location (a rack, a zone).
        location: String,
    },
}

impl Change {
    /// riak's action name.
    pub fn action(&self) -> &'static str {
        match self {
            Change::Join(_) => "join",
            Change::Leave(_) => "leave",
            Change::ForceRemove(_) => "force-remove",
            Change::Replace { .. } => "replace",
            Change::ForceReplace { .. } => "force-replace",
            Change::Location { .. } => "set-location",
        }
    }

    /// The node the change is about.
    pub fn node(&self) -> &str {
        match self {
            Change::Join(n) | Change::Leave(n) | Change::ForceRemove(n) => n,
            Change::Replace { old, .. } | Change::ForceReplace { old, .. } => old,
            Change::Location { node, .. } => node,
        }
    }

    /// The location, for `set-location`.
    pub fn location(&self) -> Option<&str> {
        match self {
            Change::Location { location, .. } => Some(location),
            _ => None,
        }
    }

    /// The replacement node, for replaces.
    pub fn new_node(&self) -> Option<&str> {
        match self {
            Change::Replace { new, .. } | Change::ForceReplace { new, .. } => Some(new),
            _ => None,
        }
    }
}

/// How many partitions move between one pair of members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairCount {
    /// Giving member.
    pub from: String,
    /// Receiving member.
    pub to: String,
    /// Partitions.
    pub count: u32,
}

/// One member's line in a transition's membership table.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberLine {
    /// Member name.
    pub name: String,
    /// Its state after the transition.
    pub state: MemberState,
    /// Ring share now, in percent.
    pub ring_pct: f64,
    /// Ring share once this transition's transfers are done; `None` when
    /// nothing is pending.
    pub pending_pct: Option<f64>,
    /// Its location, when set.
    pub location: Option<String>,
    /// Its data directory's incarnation id, when the ring records it.
    pub incarnation: Option<String>,
}

/// What the cluster looks like after one transition of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Membership, sorted as riak prints it.
    pub members: Vec<MemberLine>,
    /// Partitions moved by handoff.
    pub transfers: Vec<PairCount>,
    /// Partitions reassigned without handoff.
    pub reassigned: Vec<PairCount>,
    /// Warnings about the resulting ring.
    pub warnings: Vec<String>,
}

/// A computed plan: what `commit` will apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Identifies the plan; changes when the ring or the staged changes do.
    pub id: String,
    /// The ring version the plan was computed from.
    pub base_version: u64,
    /// The ring the plan was computed from: commit applies the plan only to
    /// this ring (equal versions do not make equal rings, see
    /// [`RingState::stamp`]).
    pub base: RingState,
    /// The staged changes, in staging order.
    pub changes: Vec<Change>,
    /// Transitions, as riak shows them.
    pub transitions: Vec<Transition>,
    /// Warnings about the changes (data that will be lost).
    pub warnings: Vec<String>,
    /// The ring after commit.
    pub result: RingState,
}

/// The claimant's staging area. Lives in the claimant's memory only, as in
/// riak: a claimant restart drops staged changes.
#[derive(Clone, Debug, Default)]
pub struct Staging {
    changes: Vec<Change>,
    plan: Option<Plan>,
}

fn quoted(n: &str) -> String {
    format!("'{n}'")
}

/// Adds a joining node to the ring (riak's join: the node appears as
/// `joining` before any plan), with its data directory's incarnation id when
/// known. Returns the new ring.
pub fn add_joining(
    ring: &RingState,
    node: &str,
    addr: &str,
    incarnation: Option<&str>,
) -> Result<RingState> {
    if let Some(m) = ring.members.get(node) {
        if m.state.is_active() {
            return Err(Error::FailedPrecondition(format!(
                "Failed: {} is already a member of the cluster",
                quoted(node)
            )));
        }
        if m.state == MemberState::Down {
            // It still owns its partitions, on a disk that may be gone.
            return Err(Error::FailedPrecondition(format!(
                "Failed: {} is down in this cluster: force-remove it (or force-replace it by a node of another name) first",
                quoted(node)
            )));
        }
    }
    let mut next = ring.clone();
    next.members.insert(
        node.to_string(),
        Member {
            addr: addr.to_string(),
            state: MemberState::Joining,
            location: None,
            incarnation: incarnation.map(str::to_string),
        },
    );
    Ok(next.stamp(ring))
}

/// What `cluster clear` does to the ring, as riak's claimant does: a join is
/// ring state (the member is `joining`), not only a staged change, so the
/// only way to clear it is to remove the joining members. They learn of it,
/// start over as one-member clusters, and may join again. `None` when no
/// member is joining.
pub fn remove_joining(ring: &RingState) -> Option<RingState> {
    let joining: Vec<String> = ring
        .members
        .iter()
        .filter(|(_, m)| m.state == MemberState::Joining)
        .map(|(n, _)| n.clone())
        .collect();
    if joining.is_empty() {
        return None;
    }
    let mut next = ring.clone();
    for n in &joining {
        if let Some(m) = next.members.get_mut(n) {
            m.state = MemberState::Removed;
        }
    }
    Some(next.stamp(ring))
}

/// `node` marked down by member `by`, as riak's `down`: it no longer holds
/// the ring back from converging and, if it was the claimant, `by` takes the
/// role in a new epoch (the first valid member by name when `by` is not
/// valid), so that a dead or cut-off claimant can be force-removed or
/// replaced. Its partitions stay its own until then. `by` has checked that
/// it reaches a majority that sees `node` unreachable (the manager's
/// `down`), so the other side of a partition cannot do the same.
pub fn mark_down(ring: &RingState, node: &str, by: &str) -> Result<RingState> {
    let mut state = ring.state_of(node).filter(|s| s.is_active());
    if state.is_none() && ring.claimant == node && ring.state_of(node) == Some(MemberState::Down) {
        // A down claimant (a merge of concurrent rings can leave one): only
        // the role moves.
        state = Some(MemberState::Down);
    }
    match state {
        None => {
            return Err(Error::FailedPrecondition(format!(
                "Failed: {} is not a member of the cluster",
                quoted(node)
            )));
        }
        Some(MemberState::Joining) => {
            return Err(Error::FailedPrecondition(format!(
                "Failed: {} is joining; 'cluster clear' removes it",
                quoted(node)
            )));
        }
        Some(_) => {}
    }
    let mut next = ring.clone();
    if let Some(m) = next.members.get_mut(node) {
        m.state = MemberState::Down;
    }
    if next.claimant == node {
        let by_valid = by != node && next.state_of(by) == Some(MemberState::Valid);
        next.claimant = by_valid
            .then(|| by.to_string())
            .or_else(|| {
                next.members
                    .iter()
                    .find(|(n, m)| *n != node && m.state == MemberState::Valid)
                    .map(|(n, _)| n.clone())
            })
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "Failed: no valid member could take over from {} as claimant",
                    quoted(node)
                ))
            })?;
    }
    Ok(next.stamp(ring))
}

/// A down member that is heard from again becomes valid, as in riak.
pub fn mark_up(ring: &RingState, node: &str) -> Option<RingState> {
    if ring.state_of(node) != Some(MemberState::Down) {
        return None;
    }
    let mut next = ring.clone();
    if let Some(m) = next.members.get_mut(node) {
        m.state = MemberState::Valid;
    }
    Some(next.stamp(ring))
}

impl Staging {
    /// The staged changes.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The last plan shown, if still current.
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// Drops every staged change.
    pub fn clear(&mut self) {
        self.changes.clear();
        self.plan = None;
    }

    /// Stages `change` after checking it against `ring` and what is already
    /// staged. Returns riak's confirmation line.
    pub fn stage(&mut self, ring: &RingState, change: Change) -> Result<String> {
        // riak's refusals: the request is well formed, the cluster's state
        // says no ("Failed: ..."), as for a stale plan.
        let refuse = |why: String| Err(Error::FailedPrecondition(format!("Failed: {why}")));
        // Down members are still members: they can be removed or replaced.
        let state = |n: &str| {
            ring.state_of(n)
                .filter(|s| s.is_active() || *s == MemberState::Down)
        };
        let node = change.node().to_string();
        if let Change::Location { node, location } = &change {
            return self.stage_location(ring, node, location);
        }
        let folded_join =
            |c: &Change| matches!(c, Change::Join(j) if change.new_node() == Some(j.as_str()));
        let membership = |c: &&Change| !matches!(c, Change::Location { .. });
        if self
            .changes
            .iter()
            .filter(membership)
            .filter(|c| !folded_join(c))
            .any(|c| {
                c.node() == node
                    || c.new_node() == Some(node.as_str())
                    || change
                        .new_node()
                        .is_some_and(|n| c.node() == n || c.new_node() == Some(n))
            })
        {
            return refuse(format!(
                "{} already has a staged change; run 'cluster clear' to start over",
                quoted(&node)
            ));
        }
        let valid_count = ring.members_in(MemberState::Valid).len();
        match &change {
            // Staged above.
            Change::Location { .. } => {}
            Change::Join(n) => {
                if state(n) != Some(MemberState::Joining) {
                    return refuse(format!("{} is not joining this cluster", quoted(n)));
                }
            }
            Change::Leave(n) => match state(n) {
                None => return refuse(format!("{} is not a member of the cluster", quoted(n))),
                Some(MemberState::Leaving) | Some(MemberState::Exiting) => {
                    return refuse(format!(
                        "{} is already in the process of leaving the cluster",
                        quoted(n)
                    ));
                }
                Some(MemberState::Joining) => {
                    return refuse(format!(
                        "{} is still joining; it owns nothing to leave with",
                        quoted(n)
                    ));
                }
                Some(_) if valid_count <= 1 => {
                    return refuse(format!("{} is the only member", quoted(n)));
                }
                Some(_) => {}
            },
            Change::ForceRemove(n) => {
                if state(n).is_none() {
                    return refuse(format!("{} is not a member of the cluster", quoted(n)));
                }
                if *n == ring.claimant {
                    return refuse(format!(
                        "{} is the claimant and cannot be removed; make it leave instead",
                        quoted(n)
                    ));
                }
                if valid_count <= 1 && state(n) == Some(MemberState::Valid) {
                    return refuse(format!("{} is the only member", quoted(n)));
                }
            }
            Change::Replace { old, new } | Change::ForceReplace { old, new } => {
                match state(old) {
                    None => {
                        return refuse(format!("{} is not a member of the cluster", quoted(old)));
                    }
                    Some(MemberState::Leaving) | Some(MemberState::Exiting) => {
                        return refuse(format!(
                            "{} is already in the process of leaving the cluster",
                            quoted(old)
                        ));
                    }
                    Some(MemberState::Joining) => {
                        return refuse(format!("{} is still joining", quoted(old)));
                    }
                    Some(_) => {}
                }
                if state(new) != Some(MemberState::Joining) {
                    return refuse(format!(
                        "{} is not joining: join it to the cluster first",
                        quoted(new)
                    ));
                }
                if matches!(change, Change::ForceReplace { .. }) && *old == ring.claimant {
                    return refuse(format!(
                        "{} is the claimant and cannot be force-replaced",
                        quoted(old)
                    ));
                }
            }
        }
        // A staged replace also stages the replacement's join, as riak does.
        let message = match &change {
            Change::Join(n) => format!("Success: staged join request for {}", quoted(n)),
            Change::Leave(n) => format!("Success: staged leave request for {}", quoted(n)),
            Change::ForceRemove(n) => format!("Success: staged remove request for {}", quoted(n)),
            Change::Replace { old, new } => format!(
                "Success: staged replacement of {} with {}",
                quoted(old),
                quoted(new)
            ),
            Change::ForceReplace { old, new } => format!(
                "Success: staged forced replacement of {} with {}",
                quoted(old),
                quoted(new)
            ),
            Change::Location { .. } => String::new(),
        };
        // A join staged for a node that a replace names is folded into the replace.
        if let Some(new) = change.new_node() {
            self.changes.retain(|c| *c != Change::Join(new.to_string()));
        }
        self.changes.push(change);
        self.plan = None;
        Ok(message)
    }

    /// Stages `node`'s location: one per node, a later one replacing it.
    fn stage_location(&mut self, ring: &RingState, node: &str, location: &str) -> Result<String> {
        check_location(location)?;
        let state = ring.state_of(node);
        if !state.is_some_and(|s| s.is_active() || s == MemberState::Down) {
            return Err(Error::FailedPrecondition(format!(
                "Failed: {} is not a member of the cluster",
                quoted(node)
            )));
        }
        self.changes
            .retain(|c| !matches!(c, Change::Location { node: n, .. } if n == node));
        let unchanged = ring
            .members
            .get(node)
            .is_some_and(|m| m.location.as_deref() == Some(location));
        if !unchanged {
            self.changes.push(Change::Location {
                node: node.to_string(),
                location: location.to_string(),
            });
        }
        self.plan = None;
        Ok(if unchanged {
            format!(
                "Success: {} is already at location {location}",
                quoted(node)
            )
        } else {
            format!(
                "Success: staged changing location of {} to {location}",
                quoted(node)
            )
        })
    }

    /// Computes the plan for the staged changes on `ring`. `ready` says
    /// whether every member has seen `ring`'s version.
    pub fn make_plan(&mut self, ring: &RingState, ready: bool) -> Result<&Plan> {
        if self.changes.is_empty() {
            return Err(Error::FailedPrecondition(
                "There are no staged changes".into(),
            ));
        }
        check_settled(ring, ready)?;
        // A join staged while a clear ran may name a node that is no longer
        // joining (removed and started over elsewhere).
        if let Some(n) = self.changes.iter().find_map(|c| match c {
            Change::Join(n) if ring.state_of(n) != Some(MemberState::Joining) => Some(n),
            _ => None,
        }) {
            return Err(Error::FailedPrecondition(format!(
                "Failed: {} is no longer joining; run 'cluster clear' and stage again",
                quoted(n)
            )));
        }
        // A down member can hand nothing off: the plan must take it out
        // without handoff, or wait until it is back.
        for (n, _) in ring
            .members
            .iter()
            .filter(|(_, m)| m.state == MemberState::Down)
        {
            let out = self.changes.iter().any(|c| {
                matches!(c, Change::ForceRemove(x) | Change::ForceReplace { old: x, .. } if x == n)
            });
            if !out {
                return Err(Error::FailedPrecondition(format!(
                    "Failed: {} is down: stage 'cluster force-remove' or 'cluster force-replace' of it with these changes, or bring it back",
                    quoted(n)
                )));
            }
        }
        let plan = compute_plan(ring, &self.changes)?;
        self.plan = Some(plan);
        self.plan
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition("no plan".into()))
    }

    /// Applies the last plan shown, if `ring` is still the ring it was made
    /// from. Returns the committed ring (version bumped).
    pub fn commit(
        &mut self,
        ring: &RingState,
        ready: bool,
        plan_id: Option<&str>,
    ) -> Result<RingState> {
        let Some(plan) = &self.plan else {
            return Err(Error::FailedPrecondition(if self.changes.is_empty() {
                "There are no staged changes to commit".into()
            } else {
                "You must verify the plan with 'flavio admin cluster plan' before committing".into()
            }));
        };
        if let Some(id) = plan_id.filter(|id| !id.is_empty())
            && id != plan.id
        {
            return Err(Error::FailedPrecondition(format!(
                "plan {id} is not the current plan {}; run 'cluster plan' again",
                plan.id
            )));
        }
        if !ring.same_content(&plan.base) {
            return Err(Error::FailedPrecondition(format!(
                "the ring changed since the plan was made (version {} then, {} now); run 'cluster plan' again",
                plan.base_version, ring.version
            )));
        }
        check_settled(ring, ready)?;
        let next = plan.result.clone().stamp(ring);
        self.clear();
        Ok(advance_states(&next).unwrap_or(next))
    }
}

/// A location is a short printable name: what a zone or rack label holds.
pub fn check_location(location: &str) -> Result<()> {
    let ok = !location.is_empty()
        && location.len() <= 253
        && location
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid location {location:?}: use 1 to 253 of letters, digits and - _ . / :"
        )))
    }
}

fn check_settled(ring: &RingState, ready: bool) -> Result<()> {
    if !ready {
        return Err(Error::FailedPrecondition(
            "the ring is not ready: not every member has seen the current ring yet (cluster not converged); try again shortly".into(),
        ));
    }
    // Transfers to or from a down member cannot finish: they do not hold
    // back the plan that force-removes or force-replaces it (which replaces
    // every pending transfer).
    let down = |n: &str| ring.state_of(n) == Some(MemberState::Down);
    let waiting = ring
        .pending
        .iter()
        .filter(|t| !down(&t.from) && !down(&t.to))
        .count();
    if waiting > 0 {
        return Err(Error::FailedPrecondition(format!(
            "{waiting} ownership transfers are still pending; wait until 'flavio admin transfers' shows none"
        )));
    }
    Ok(())
}

fn pair_counts(pairs: impl Iterator<Item = (String, String)>) -> Vec<PairCount> {
    let mut counts: BTreeMap<(String, String), u32> = BTreeMap::new();
    for p in pairs {
        *counts.entry(p).or_default() += 1;
    }
    let mut out: Vec<PairCount> = counts
        .into_iter()
        .map(|((from, to), count)| PairCount { from, to, count })
        .collect();
    // As riak lists them: by giver, newest receiver first.
    out.sort_by(|a, b| a.from.cmp(&b.from).then(b.to.cmp(&a.to)));
    out
}

/// riak's member order: joining, leaving, exiting, valid, down; then by name.
fn sort_key(state: MemberState) -> u8 {
    match state {
        MemberState::Joining => 0,
        MemberState::Leaving => 1,
        MemberState::Exiting => 2,
        MemberState::Valid => 3,
        MemberState::Down => 4,
        MemberState::Removed => 5,
    }
}

/// The membership table of `ring`: ring share now and once `pending_owners`
/// (if any) takes effect.
pub fn member_lines(ring: &RingState, pending_owners: Option<&Ring>) -> Vec<MemberLine> {
    let mut lines: Vec<MemberLine> = ring
        .active_members()
        .chain(
            ring.members
                .iter()
                .filter(|(_, m)| m.state == MemberState::Down),
        )
        .map(|(name, m)| MemberLine {
            name: name.clone(),
            state: m.state,
            ring_pct: ring.owners.pct(name),
            pending_pct: pending_owners.map(|o| o.pct(name)),
            location: m.location.clone(),
            incarnation: m.incarnation.clone(),
        })
        .collect();
    lines.sort_by(|a, b| {
        sort_key(a.state)
            .cmp(&sort_key(b.state))
            .then(a.name.cmp(&b.name))
    });
    lines
}

/// riak's warning when some preference list of `target_n_val` (capped at the
/// valid members) would hold two replicas on one node, followed by how many
/// lists fall short, which riak leaves out.
fn spread_warning(owners: &Ring, valid: usize) -> Vec<String> {
    let window = DEFAULT_TARGET_N_VAL.min(valid);
    let short = short_windows(owners.as_slice(), window);
    if short == 0 {
        return Vec::new();
    }
    vec![
        "Not all replicas will be on distinct nodes".into(),
        format!(
            "{short} of {} preference lists of {window} partitions will not be on {window} distinct nodes",
            owners.len()
        ),
    ]
}

/// riak's warning when locations are in use and some preference list of
/// [`DEFAULT_TARGET_LOCATION_N_VAL`] partitions would hold two replicas in
/// one location, followed by how many lists fall short and how few the
/// counts allow.
pub fn location_warning(
    owners: &Ring,
    location_of: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let members = owners.members();
    let locations: Vec<Option<String>> = members.iter().map(|m| location_of(m)).collect();
    if locations.iter().all(Option::is_none) {
        return Vec::new();
    }
    let n = DEFAULT_TARGET_LOCATION_N_VAL;
    let short = location_short_windows(owners.as_slice(), |o| location_of(o), n);
    if short == 0 {
        return Vec::new();
    }
    // Members per location, a member without a location counting as one
    // of its own.
    let mut per_location: BTreeMap<String, usize> = BTreeMap::new();
    for (m, l) in members.iter().zip(&locations) {
        let key = l.as_ref().map_or_else(|| format!("\0{m}"), |l| l.clone());
        *per_location.entry(key).or_default() += 1;
    }
    let per_location: Vec<usize> = per_location.into_values().collect();
    let distinct = per_location.len();
    let mut warnings = vec![
        "Not all replicas will be on distinct locations".into(),
        format!(
            "{short} of {} preference lists of {n} partitions will not be on {n} distinct locations ({distinct} locations; the fewest possible is {})",
            owners.len(),
            fewest_location_short_windows(owners.len(), distinct, n)
        ),
    ];
    // The counts forbid it on this ring size; say which size would not, since
    // it can only be chosen for a new cluster.
    if let Some(size) = ring_size_for_locations(owners.len(), &per_location, n) {
        warnings.push(format!(
            "A ring of {size} partitions would allow it: the ring size is chosen when a cluster is created (--ring-size)"
        ));
    }
    warnings
}

fn compute_plan(ring: &RingState, changes: &[Change]) -> Result<Plan> {
    let mut next = ring.clone();
    let mut warnings = Vec::new();
    // Owners once data-less reassignments are applied, and the handoffs that
    // a replace asks for directly.
    let mut owners = ring.owners.clone();
    let mut reassigned: Vec<(String, String)> = Vec::new();
    let set_state = |next: &mut RingState, n: &str, s: MemberState| {
        if let Some(m) = next.members.get_mut(n) {
            m.state = s;
        }
    };
    let mut removed = Vec::new();
    for c in changes {
        match c {
            Change::Join(n) => set_state(&mut next, n, MemberState::Valid),
            Change::Leave(n) => set_state(&mut next, n, MemberState::Leaving),
            Change::ForceRemove(n) => {
                set_state(&mut next, n, MemberState::Removed);
                warnings.push(format!("All of {} replicas will be lost", quoted(n)));
                removed.push(n.clone());
            }
            Change::Replace { old, new } => {
                set_state(&mut next, old, MemberState::Leaving);
                set_state(&mut next, new, MemberState::Valid);
            }
            Change::ForceReplace { old, new } => {
                set_state(&mut next, old, MemberState::Removed);
                set_state(&mut next, new, MemberState::Valid);
                warnings.push(format!("All of {} replicas will be lost", quoted(old)));
                for _ in owners.owned_by(old) {
                    reassigned.push((old.clone(), new.clone()));
                }
                owners.replace_member(old, new);
            }
            Change::Location { node, location } => {
                if let Some(m) = next.members.get_mut(node) {
                    m.location = Some(location.clone());
                }
            }
        }
    }
    let valid: Vec<String> = next.members_in(MemberState::Valid);
    if valid.is_empty() {
        return Err(Error::FailedPrecondition(
            "these changes would leave no valid member".into(),
        ));
    }
    // A replacement takes exactly the old member's partitions; everything
    // else is claim's business.
    let mut target = owners.clone();
    for c in changes {
        if let Change::Replace { old, new } = c {
            target.replace_member(old, new);
        }
    }
    let location_of = |n: &str| next.members.get(n).and_then(|m| m.location.clone());
    let (claimed, _) = target.claim_located(
        &valid,
        &location_of,
        DEFAULT_TARGET_N_VAL,
        DEFAULT_TARGET_LOCATION_N_VAL,
    )?;
    let spread = |owners: &Ring| {
        let mut w = spread_warning(owners, valid.len());
        w.extend(location_warning(owners, &location_of));
        w
    };
    // Partitions of force-removed members change owner at commit, without
    // handoff: there is nobody to hand off from.
    for (_, from, to) in owners.transfers(&claimed) {
        if removed.iter().any(|r| r == from) {
            reassigned.push((from.to_string(), to.to_string()));
        }
    }
    for r in &removed {
        for p in owners.owned_by(r) {
            owners.set_owner(p, claimed.owner(p));
        }
    }
    let pending: Vec<Transfer> = owners
        .transfers(&claimed)
        .into_iter()
        .map(|(partition, from, to)| Transfer {
            partition,
            from: from.to_string(),
            to: to.to_string(),
        })
        .collect();
    next.owners = owners;
    next.pending = pending;
    let claimant_valid = next
        .members
        .get(&next.claimant)
        .is_some_and(|m| m.state == MemberState::Valid);
    if !claimant_valid && let Some(first) = valid.first() {
        next.claimant = first.clone();
    }
    let first = Transition {
        members: member_lines(&next, Some(&claimed)),
        transfers: pair_counts(next.pending.iter().map(|t| (t.from.clone(), t.to.clone()))),
        reassigned: pair_counts(reassigned.into_iter()),
        warnings: spread(&claimed),
    };
    let mut transitions = vec![first];
    // Leavers go away once their handoffs are done: riak shows that as a
    // second transition.
    if next
        .members
        .values()
        .any(|m| m.state == MemberState::Leaving)
    {
        let mut after = next.clone();
        after.owners = claimed.clone();
        after.pending.clear();
        for m in after.members.values_mut() {
            if m.state == MemberState::Leaving {
                m.state = MemberState::Removed;
            }
        }
        transitions.push(Transition {
            members: member_lines(&after, None),
            transfers: Vec::new(),
            reassigned: Vec::new(),
            warnings: spread(&claimed),
        });
    }
    let mut h = Sha1::new();
    h.update(ring.version.to_be_bytes());
    // Any encoding that names every field will do: the id only has to
    // change when the ring does.
    h.update(format!("{ring:?}").as_bytes());
    for c in changes {
        h.update(format!("{c:?}").as_bytes());
    }
    let digest = h.finalize();
    let id: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Plan {
        id,
        base_version: ring.version,
        base: ring.clone(),
        changes: changes.to_vec(),
        transitions,
        warnings,
        result: next,
    })
}

/// Records that `p` moved from `from` to `to`: the ownership flip. Returns
/// the new ring, or `None` when there is nothing to do (already flipped).
pub fn complete_transfer(
    ring: &RingState,
    p: PartitionId,
    from: &str,
    to: &str,
) -> Result<Option<RingState>> {
    let Some(pos) = ring
        .pending
        .iter()
        .position(|t| t.partition == p && t.from == from && t.to == to)
    else {
        if ring.owner(p) == to {
            return Ok(None);
        }
        return Err(Error::FailedPrecondition(format!(
            "no pending transfer of partition {p} from {from} to {to}"
        )));
    };
    let mut next = ring.clone();
    next.pending.remove(pos);
    next.owners.set_owner(p, to);
    let next = next.stamp(ring);
    Ok(Some(advance_states(&next).unwrap_or(next)))
}

/// The ring's own next step, if any: leavers that own nothing become
/// `exiting`; exiting members that `has_seen_exit` become `removed`; a
/// claimant that is no longer valid hands the role to the first valid
/// member by name; and what a merge of concurrent rings left inconsistent
/// is [`repair`]ed. Returns the new ring (version bumped) or `None`.
pub fn advance(ring: &RingState, has_seen_exit: &dyn Fn(&str) -> bool) -> Option<RingState> {
    advance_with(ring, has_seen_exit, true)
}

/// [`advance`] without the repair: what a flip or a commit, written by this
/// claimant from a ring it holds, is followed by (the claimant's next step
/// repairs, if anything needs it; skipping it keeps a flip cheap on big
/// rings).
fn advance_states(ring: &RingState) -> Option<RingState> {
    advance_with(ring, &|_| false, false)
}

fn advance_with(
    ring: &RingState,
    has_seen_exit: &dyn Fn(&str) -> bool,
    with_repair: bool,
) -> Option<RingState> {
    let orig = ring;
    let mut next = ring.clone();
    let mut changed = with_repair && repair(&mut next);
    let repaired;
    let ring = if changed {
        repaired = next.clone();
        &repaired
    } else {
        orig
    };
    let busy =
        |n: &str| ring.owners.owns_any(n) || ring.pending.iter().any(|t| t.from == n || t.to == n);
    for (name, m) in next.members.iter_mut() {
        match m.state {
            MemberState::Leaving if !busy(name) => {
                m.state = MemberState::Exiting;
                changed = true;
            }
            // Only after the exiting node has seen that it is exiting (and
            // only members that were exiting before this step): it must
            // learn it before it disappears from the member list.
            MemberState::Exiting
                if has_seen_exit(name)
                    && ring.members.get(name).map(|x| x.state) == Some(MemberState::Exiting) =>
            {
                m.state = MemberState::Removed;
                changed = true;
            }
            _ => {}
        }
    }
    let claimant_ok = next
        .members
        .get(&next.claimant)
        .is_some_and(|m| m.state == MemberState::Valid);
    if !claimant_ok
        && let Some((first, _)) = next
            .members
            .iter()
            .find(|(_, m)| m.state == MemberState::Valid)
    {
        next.claimant = first.clone();
        changed = true;
    }
    if changed {
        Some(next.stamp(orig))
    } else {
        None
    }
}

/// Mends what only a join of concurrent rings can produce (see
/// [`super::state`]): a partition owned by a member that cannot own (removed
/// or joining on the other side) goes to the member claim picks, without
/// handoff, as a force-remove's would; a pending transfer whose giver no
/// longer owns the partition, or whose receiver is no longer a valid (or
/// down) member, is dropped; an exiting member that owns partitions again is
/// leaving again; and a leaving member's partitions without a pending
/// transfer get one, so its leave can finish. Returns whether it changed
/// anything. A ring written by one claimant never needs it.
pub fn repair(ring: &mut RingState) -> bool {
    let can_own = |r: &RingState, n: &str| {
        matches!(
            r.state_of(n),
            Some(
                MemberState::Valid
                    | MemberState::Leaving
                    | MemberState::Exiting
                    | MemberState::Down
            )
        )
    };
    let can_receive = |r: &RingState, n: &str| {
        matches!(r.state_of(n), Some(MemberState::Valid | MemberState::Down))
    };
    // Checked before anything is copied: this runs on every claimant step
    // and every flip, and almost never finds anything.
    let bad_transfer = |r: &RingState, t: &Transfer| {
        r.owner(t.partition) != t.from || !can_own(r, &t.from) || !can_receive(r, &t.to)
    };
    let mut changed = false;
    if ring.pending.iter().any(|t| bad_transfer(ring, t)) {
        let keep: Vec<Transfer> = ring
            .pending
            .iter()
            .filter(|t| !bad_transfer(ring, t))
            .cloned()
            .collect();
        ring.pending = keep;
        changed = true;
    }
    let valid = ring.members_in(MemberState::Valid);
    if valid.is_empty() {
        return changed;
    }
    let exiting_owners: Vec<String> = ring
        .members
        .iter()
        .filter(|(n, m)| m.state == MemberState::Exiting && ring.owners.owns_any(n))
        .map(|(n, _)| n.clone())
        .collect();
    for n in exiting_owners {
        if let Some(m) = ring.members.get_mut(&n) {
            m.state = MemberState::Leaving;
            changed = true;
        }
    }
    let has_pending: Vec<bool> = ring
        .pending_by_partition()
        .iter()
        .map(Option::is_some)
        .collect();
    let orphan = |r: &RingState, p: PartitionId| !can_own(r, r.owner(p));
    let stuck = |r: &RingState, p: PartitionId| {
        !has_pending[p.0 as usize] && r.state_of(r.owner(p)) == Some(MemberState::Leaving)
    };
    let size = ring.size();
    let broken: Vec<PartitionId> = size
        .partitions()
        .filter(|p| orphan(ring, *p) || stuck(ring, *p))
        .collect();
    if broken.is_empty() {
        return changed;
    }
    let Ok((claimed, _)) = ring.owners.claim(&valid, DEFAULT_TARGET_N_VAL) else {
        return changed;
    };
    for p in broken {
        if orphan(ring, p) {
            ring.pending.retain(|t| t.partition != p);
            ring.owners.set_owner(p, claimed.owner(p));
        } else {
            ring.pending.push(Transfer {
                partition: p,
                from: ring.owner(p).to_string(),
                to: claimed.owner(p).to_string(),
            });
        }
    }
    ring.pending.sort();
    true
}

#[cfg(test)]
#[path = "claimant_tests.rs"]
mod tests;
