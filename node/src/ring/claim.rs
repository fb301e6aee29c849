//! Claim: which member owns each partition.
//!
//! [`claim`] takes the current owner of every partition and the members that
//! should own the ring, and returns new owners that hold, in this order of
//! importance:
//!
//! 1. every partition has exactly one owner, a member;
//! 2. balance: every member owns `floor` or `ceil` of `size / members`;
//! 3. spacing: when [`spacing_required`], any `target_n_val` consecutive
//!    partitions (wrapping from the last to the first) have distinct owners, so
//!    a preference list of up to `target_n_val` names distinct machines;
//! 4. least movement: a partition changes hands only when balance needs it.
//!
//! It is deterministic: the same owners and members (in any order) give the
//! same result.
//!
//! How. Partitions of members that left are *vacated*; members below their
//! fair share are *receivers*. First the vacated partitions are matched to
//! members (a bipartite matching with per-member bounds) so that each goes to a
//! member absent from the `target_n_val - 1` partitions on either side: on a
//! spaced ring the partitions of one leaver are that far apart, so these
//! choices never interfere and the matching is exact. Then each receiver takes
//! positions at least `target_n_val` apart from members above their share: such
//! a newcomer adds at most one copy of itself to any window and removes nothing
//! else, so spacing survives, and the search only has to pick *which* spaced
//! positions so that each giver gives up its fair share.
//!
//! When that cannot keep spacing (a leaver whose neighbours already cover
//! every other member, a ring that was never spaced because it had fewer than
//! `target_n_val` members, several changes at once), claim falls back: it
//! does the balanced moves anyway, repairs spacing with swaps that keep
//! balance, and if that fails re-stripes the ring from a spaced template,
//! rotated and relabelled to keep as many partitions in place as it can.
//! [`Claim::path`] says which of these happened.
//!
//! What this leaves out: membership states (joining, leaving), the transfers
//! that carry data to new owners, and versions. Those live in the cluster
//! layer; here a claim is a pure function of two lists.

use std::cmp::Reverse;

use crate::{Error, Result};

/// The default `target_n_val` of riak_core: spacing aims at 4 distinct owners
/// in any 4 consecutive partitions.
pub const DEFAULT_TARGET_N_VAL: usize = 4;

/// The result of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim<N> {
    /// The new owner of every partition, in ring order.
    pub owners: Vec<N>,
    /// How the result was reached.
    pub path: ClaimPath,
}

/// How [`claim`] reached its result, from least to most movement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClaimPath {
    /// The ring already held every property; nothing moved.
    Unchanged,
    /// Only the partitions that balance needs moved: vacated partitions and
    /// the fair share of receivers. Spacing holds if it is required.
    Minimal,
    /// Balanced moves broke spacing, and swaps that keep balance restored it;
    /// a few partitions beyond the minimum moved.
    Repaired,
    /// The ring was re-striped from a spaced template, keeping as many
    /// partitions in place as the template allows.
    Restriped,
}

/// Whether spacing can and must hold: at least `target_n_val` members, and
/// counts that fit (a member owning `ceil(size / members)` partitions needs
/// `target_n_val` positions for each).
pub fn spacing_required(size: usize, members: usize, target_n_val: usize) -> bool {
    target_n_val >= 2
        && members >= target_n_val
        && target_n_val <= size
        && size.div_ceil(members) * target_n_val <= size
}

/// How many pairs of partitions less than `target_n_val` apart (wrapping) share
/// an owner. Zero means the ring is spaced.
pub fn spacing_violations<N: PartialEq>(owners: &[N], target_n_val: usize) -> usize {
    let s = owners.len();
    let w = target_n_val.min(s);
    (0..s)
        .map(|i| (1..w).filter(|k| owners[(i + k) % s] == owners[i]).count())
        .sum()
}

/// Whether every owner is a member and every member owns `floor` or `ceil`
/// of `size / members` partitions.
pub fn is_balanced<N: Ord>(owners: &[N], members: &[N]) -> bool {
    let mut members: Vec<&N> = members.iter().collect();
    members.sort();
    members.dedup();
    if members.is_empty() {
        return false;
    }
    let mut counts = vec![0usize; members.len()];
    for o in owners {
        match members.binary_search(&o) {
            Ok(i) => counts[i] += 1,
            Err(_) => return false,
        }
    }
    let lo = owners.len() / members.len();
    counts.iter().all(|c| *c == lo || *c == lo + 1)
}

/// Assigns partitions to `members`, starting from `current` (one owner per
/// partition, in ring order; owners that are not members give their
/// partitions up). See the module docs for the guarantees.
///
/// Errors if `members` is empty, `current` is empty or `target_n_val` is 0.
pub fn claim<N: Clone + Ord>(
    current: &[N],
    members: &[N],
    target_n_val: usize,
) -> Result<Claim<N>> {
    let mut sorted: Vec<&N> = members.iter().collect();
    sorted.sort();
    sorted.dedup();
    if sorted.is_empty() {
        return Err(Error::NoMembers);
    }
    if current.is_empty() {
        return Err(Error::InvalidArgument("a ring needs partitions".into()));
    }
    if target_n_val == 0 {
        return Err(Error::InvalidArgument(
            "target_n_val must be at least 1".into(),
        ));
    }
    if sorted.len() > usize::from(u16::MAX) {
        return Err(Error::InvalidArgument("too many members".into()));
    }
    let owners: Vec<Slot> = current
        .iter()
        .map(|o| match sorted.binary_search(&o) {
            Ok(i) => i as Slot,
            Err(_) => VACANT,
        })
        .collect();
    let (new, path) = Work::new(owners, sorted.len(), target_n_val).run();
    Ok(Claim {
        owners: new
            .into_iter()
            .map(|i| sorted[i as usize].clone())
            .collect(),
        path,
    })
}

/// A member, by its rank among the sorted members.
type Slot = u16;
/// A partition whose owner is leaving.
const VACANT: Slot = Slot::MAX;

/// Cyclic distance between two positions of a ring of `s` partitions.
fn dist(a: usize, b: usize, s: usize) -> usize {
    let d = a.abs_diff(b);
    d.min(s - d)
}

/// The claim in progress, over member ranks.
struct Work {
    owners: Vec<Slot>,
    counts: Vec<usize>,
    /// Spacing distance: `target_n_val`, capped at the ring size.
    t: usize,
    spaced: bool,
    /// `floor(size / members)`: every member ends with `lo` or `lo + 1`.
    lo: usize,
    /// Set when a step could not keep spacing by minimal moves.
    degraded: bool,
}

impl Work {
    fn new(owners: Vec<Slot>, members: usize, target_n_val: usize) -> Work {
        let s = owners.len();
        let mut counts = vec![0; members];
        for o in &owners {
            if *o != VACANT {
                counts[*o as usize] += 1;
            }
        }
        Work {
            counts,
            t: target_n_val.min(s),
            spaced: spacing_required(s, members, target_n_val),
            lo: s / members,
            degraded: false,
            owners,
        }
    }

    fn m(&self) -> usize {
        self.counts.len()
    }

    fn s(&self) -> usize {
        self.owners.len()
    }

    fn balanced(&self) -> bool {
        !self.owners.contains(&VACANT)
            && self
                .counts
                .iter()
                .all(|c| *c == self.lo || *c == self.lo + 1)
    }

    fn spacing_ok(&self) -> bool {
        !self.spaced || spacing_violations(&self.owners, self.t) == 0
    }

    fn run(mut self) -> (Vec<Slot>, ClaimPath) {
        if self.balanced() && self.spacing_ok() {
            return (self.owners, ClaimPath::Unchanged);
        }
        let before = self.owners.clone();
        self.fill_vacated();
        self.feed_receivers();
        debug_assert!(self.balanced(), "balanced moves left the ring unbalanced");
        if self.spacing_ok() {
            let path = if self.degraded {
                ClaimPath::Repaired
            } else {
                ClaimPath::Minimal
            };
            return (self.owners, path);
        }
        if self.repair() {
            return (self.owners, ClaimPath::Repaired);
        }
        (restripe(&before, self.m()), ClaimPath::Restriped)
    }

    /// Gives every vacated partition to a member, keeping each member at or
    /// below `lo + 1` and, where the matching allows, meeting `lo`.
    fn fill_vacated(&mut self) {
        let vacated: Vec<usize> = (0..self.s())
            .filter(|p| self.owners[*p] == VACANT)
            .collect();
        if vacated.is_empty() {
            return;
        }
        let lower: Vec<usize> = self
            .counts
            .iter()
            .map(|c| self.lo.saturating_sub(*c))
            .collect();
        let upper: Vec<usize> = self
            .counts
            .iter()
            .map(|c| (self.lo + 1).saturating_sub(*c))
            .collect();
        let (assigned, unspaced) = {
            let mut matching = Matching::new(self, &vacated);
            // Lower bounds first: augmenting paths never lower a member's
            // load, so a second pass up to the upper bounds keeps them.
            matching.run(&lower, true);
            matching.run(&upper, true);
            let unspaced = matching.unassigned() > 0;
            if unspaced {
                // Some vacated partition has no member that keeps spacing:
                // give it to anyone with room, and let repair sort it out.
                matching.run(&upper, false);
            }
            (matching.assigned, unspaced)
        };
        self.degraded |= unspaced && self.spaced;
        for (p, m) in vacated.iter().zip(assigned) {
            let m = m.expect("upper bounds leave room for every vacated partition");
            self.owners[*p] = m;
            self.counts[m as usize] += 1;
        }
    }

    /// Moves partitions from members above their share to those below it.
    fn feed_receivers(&mut self) {
        let m = self.m();
        let lo = self.lo;
        let r = self.s() - lo * m;
        // Members above lo keep lo + 1 if they can; when fewer than r are, the
        // members closest to lo + 1 get the extra ones, receivers first (they
        // take partitions anyway).
        let keepers = self.counts.iter().filter(|c| **c > lo).count();
        let mut targets: Vec<usize> = self.counts.iter().map(|c| (*c).clamp(lo, lo + 1)).collect();
        if keepers < r {
            let mut extra: Vec<usize> = (0..m).filter(|i| self.counts[*i] <= lo).collect();
            extra.sort_by_key(|i| (self.counts[*i] == lo, Reverse(self.counts[*i]), *i));
            for i in extra.into_iter().take(r - keepers) {
                targets[i] = lo + 1;
            }
        }
        let receivers: Vec<usize> = (0..m).filter(|i| self.counts[*i] < targets[*i]).collect();
        if receivers.is_empty() {
            return;
        }
        // Givers are the members above lo. Each may give down to lo and must
        // give down to lo + 1; `slack` counts the partitions receivers may
        // take beyond the musts (which givers then end at lo).
        let mut may: Vec<usize> = self.counts.iter().map(|c| c.saturating_sub(lo)).collect();
        let mut must: Vec<usize> = self
            .counts
            .iter()
            .map(|c| c.saturating_sub(lo + 1))
            .collect();
        let needs: usize = receivers
            .iter()
            .map(|j| targets[*j] - self.counts[*j])
            .sum();
        let mut slack = needs - must.iter().sum::<usize>().min(needs);
        for &j in &receivers {
            let n = targets[j] - self.counts[j];
            let picks = self.take_for(j as Slot, n, &may, &must, slack);
            for p in picks {
                let g = self.owners[p] as usize;
                may[g] -= 1;
                if must[g] > 0 {
                    must[g] -= 1;
                } else {
                    slack -= 1;
                }
                self.set(p, j as Slot);
            }
        }
    }

    /// `n` positions for member `j`, spaced if possible, honouring the
    /// givers' bounds; when spacing is required and cannot be had, marks the
    /// claim degraded and relaxes it.
    fn take_for(
        &mut self,
        j: Slot,
        n: usize,
        may: &[usize],
        must: &[usize],
        slack: usize,
    ) -> Vec<usize> {
        for d in (1..=self.t).rev() {
            if let Some(picks) = pick_spaced(&self.owners, j, n, may, must, slack, d) {
                if d < self.t {
                    self.degraded |= self.spaced;
                }
                return picks;
            }
        }
        // The greedy found nothing even unspaced: take the first positions of
        // givers that must give, then of those that may.
        self.degraded |= self.spaced;
        let mut may = may.to_vec();
        let mut must = must.to_vec();
        let mut slack = slack;
        let mut picks = Vec::with_capacity(n);
        for pass_must in [true, false] {
            for p in 0..self.s() {
                let g = self.owners[p] as usize;
                if picks.len() == n || self.owners[p] == j || picks.contains(&p) || may[g] == 0 {
                    continue;
                }
                if must[g] > 0 {
                    must[g] -= 1;
                } else if pass_must || slack == 0 {
                    continue;
                } else {
                    slack -= 1;
                }
                may[g] -= 1;
                picks.push(p);
            }
        }
        picks
    }

    /// Restores spacing by moves and swaps that keep balance. Returns whether
    /// the ring ended up spaced.
    fn repair(&mut self) -> bool {
        self.degraded = true;
        let s = self.s();
        let budget = 8 * s;
        for _ in 0..budget {
            let Some(x) = self.first_violation() else {
                return true;
            };
            if !self.improve_at(x) {
                return false;
            }
        }
        self.spacing_ok()
    }

    /// A position that shares its owner with a later one closer than `t`.
    fn first_violation(&self) -> Option<usize> {
        let s = self.s();
        (0..s).find(|&i| (1..self.t).any(|k| self.owners[(i + k) % s] == self.owners[i]))
    }

    /// Violations involving position `p`.
    fn local_violations(&self, p: usize) -> usize {
        let s = self.s();
        let o = self.owners[p];
        (1..self.t)
            .filter(|k| self.owners[(p + k) % s] == o || self.owners[(p + s - k) % s] == o)
            .count()
    }

    fn set(&mut self, p: usize, m: Slot) {
        self.counts[self.owners[p] as usize] -= 1;
        self.counts[m as usize] += 1;
        self.owners[p] = m;
    }

    /// Tries one balance-keeping change that lowers the violations around `x`
    /// or around the partition sharing its owner.
    fn improve_at(&mut self, x: usize) -> bool {
        let s = self.s();
        let a = self.owners[x];
        let mut spots = vec![x];
        spots.extend(
            (1..self.t)
                .map(|k| (x + k) % s)
                .filter(|p| self.owners[*p] == a),
        );
        for &p in &spots {
            for b in 0..self.m() as Slot {
                if b == a {
                    continue;
                }
                let before = self.local_violations(p);
                // A plain move when balance allows it.
                if self.counts[a as usize] > self.lo && self.counts[b as usize] == self.lo {
                    self.set(p, b);
                    if self.local_violations(p) < before {
                        return true;
                    }
                    self.set(p, a);
                }
                // Otherwise a swap with some partition of b.
                for y in 0..s {
                    if self.owners[y] != b || dist(p, y, s) < self.t {
                        continue;
                    }
                    let before = before + self.local_violations(y);
                    self.set(p, b);
                    self.set(y, a);
                    if self.local_violations(p) + self.local_violations(y) < before {
                        return true;
                    }
                    self.set(y, b);
                    self.set(p, a);
                }
            }
        }
        false
    }
}

/// Bipartite matching of vacated partitions to members with capacities.
struct Matching<'a> {
    work: &'a Work,
    vacated: &'a [usize],
    assigned: Vec<Option<Slot>>,
    load: Vec<usize>,
}

impl<'a> Matching<'a> {
    fn new(work: &'a Work, vacated: &'a [usize]) -> Matching<'a> {
        Matching {
            work,
            vacated,
            assigned: vec![None; vacated.len()],
            load: vec![0; work.m()],
        }
    }

    fn unassigned(&self) -> usize {
        self.assigned.iter().filter(|a| a.is_none()).count()
    }

    /// Whether member `m` may take vacated partition `p` without sharing a
    /// window with another of its partitions.
    fn fits(&self, p: usize, m: Slot, strict: bool) -> bool {
        if !strict {
            return true;
        }
        let s = self.work.s();
        (1..self.work.t)
            .all(|k| self.work.owners[(p + k) % s] != m && self.work.owners[(p + s - k) % s] != m)
    }

    /// Members in the order a vacated partition tries them: most room first.
    fn order(&self) -> Vec<Slot> {
        let mut order: Vec<Slot> = (0..self.work.m() as Slot).collect();
        order.sort_by_key(|m| (self.work.counts[*m as usize] + self.load[*m as usize], *m));
        order
    }

    fn run(&mut self, cap: &[usize], strict: bool) {
        for i in 0..self.vacated.len() {
            if self.assigned[i].is_none() {
                let mut seen = vec![false; self.work.m()];
                self.augment(i, cap, strict, &mut seen);
            }
        }
    }

    fn augment(&mut self, i: usize, cap: &[usize], strict: bool, seen: &mut [bool]) -> bool {
        let p = self.vacated[i];
        for m in self.order() {
            let mu = m as usize;
            if seen[mu] || !self.fits(p, m, strict) {
                continue;
            }
            seen[mu] = true;
            if self.load[mu] < cap[mu] {
                self.assigned[i] = Some(m);
                self.load[mu] += 1;
                return true;
            }
            let holders: Vec<usize> = (0..self.vacated.len())
                .filter(|k| self.assigned[*k] == Some(m))
                .collect();
            for k in holders {
                if self.augment(k, cap, strict, seen) {
                    // k moved to another member, so m keeps its load and i
                    // takes k's place.
                    self.load[mu] -= 1;
                    self.assigned[i] = Some(m);
                    self.load[mu] += 1;
                    return true;
                }
            }
        }
        false
    }
}

/// Chooses `n` positions for member `j`, pairwise at least `d` apart
/// (wrapping) and at least `d` from `j`'s own partitions, taking at most
/// `may[g]` and at least `must[g]` from each member `g`.
///
/// Greedy around the ring from each possible first pick, pacing picks evenly
/// and preferring the givers that most need to give; the first start that
/// succeeds wins, so the result is deterministic.
fn pick_spaced(
    owners: &[Slot],
    j: Slot,
    n: usize,
    may: &[usize],
    must: &[usize],
    slack: usize,
    d: usize,
) -> Option<Vec<usize>> {
    let s = owners.len();
    if n == 0 {
        return Some(Vec::new());
    }
    if n * d > s || may.iter().sum::<usize>() < n {
        return None;
    }
    let mut blocked = vec![false; s];
    for (p, o) in owners.iter().enumerate() {
        if *o == j {
            for k in 0..d {
                blocked[(p + k) % s] = true;
                blocked[(p + s - k) % s] = true;
            }
        }
    }
    let usable = |p: usize| !blocked[p] && owners[p] != VACANT && may[owners[p] as usize] > 0;
    let mut total = vec![0usize; may.len()];
    for p in (0..s).filter(|p| usable(*p)) {
        total[owners[p] as usize] += 1;
    }
    'start: for start in 0..s {
        if !usable(start) {
            continue;
        }
        let mut may_left = may.to_vec();
        let mut must_left = must.to_vec();
        let mut slack_left = slack;
        let mut ahead = total.clone();
        let mut picks = Vec::with_capacity(n);
        // Offsets from `start` below `passed` can no longer be picked.
        let mut passed = 0usize;
        let mut last: Option<usize> = None;
        for k in 0..n {
            let remaining = n - k;
            let (earliest, latest) = match last {
                None => (0, 0),
                Some(o) => (o + d, (s - d * remaining).min(s - 1)),
            };
            if earliest > latest {
                continue 'start;
            }
            let eligible = |o: usize, may_left: &[usize], must_left: &[usize]| {
                let p = (start + o) % s;
                if !usable(p) {
                    return None;
                }
                let g = owners[p] as usize;
                if may_left[g] == 0 || (must_left[g] == 0 && slack_left == 0) {
                    return None;
                }
                Some(g)
            };
            let ideal = (k * s / n).clamp(earliest, latest);
            let window_end = (ideal + d - 1).min(latest);
            let score = |o: usize, g: usize| {
                let need = must_left[g] * 1024 / ahead[g].max(1);
                let want = may_left[g] * 1024 / ahead[g].max(1);
                (must_left[g] > 0, need, want, Reverse(o))
            };
            let best = |range: std::ops::RangeInclusive<usize>| {
                range
                    .filter_map(|o| eligible(o, &may_left, &must_left).map(|g| (o, g)))
                    .max_by_key(|(o, g)| score(*o, *g))
            };
            let choice = best(ideal..=window_end).or_else(|| best(earliest..=latest));
            let Some((o, g)) = choice else {
                continue 'start;
            };
            picks.push((start + o) % s);
            may_left[g] -= 1;
            if must_left[g] > 0 {
                must_left[g] -= 1;
            } else {
                slack_left -= 1;
            }
            let until = (o + d).min(s);
            for off in passed..until {
                let p = (start + off) % s;
                if usable(p) {
                    ahead[owners[p] as usize] -= 1;
                }
            }
            passed = passed.max(until);
            last = Some(o);
        }
        return Some(picks);
    }
    None
}

/// A balanced ring for `m` members, spaced when the counts allow, that keeps as many
/// of `before`'s owners as a rotation and relabelling of the template allows.
fn restripe(before: &[Slot], m: usize) -> Vec<Slot> {
    let s = before.len();
    let template = template(s, m);
    let mut best: Option<(usize, Vec<Slot>)> = None;
    let mut weights = vec![0usize; m * m];
    for reflect in [false, true] {
        for rot in 0..s {
            weights.iter_mut().for_each(|w| *w = 0);
            let label = |p: usize| {
                let q = (p + rot) % s;
                template[if reflect { s - 1 - q } else { q }] as usize
            };
            for (p, o) in before.iter().enumerate() {
                if *o != VACANT {
                    weights[label(p) * m + *o as usize] += 1;
                }
            }
            // Greedy relabelling by overlap: heaviest label/member pairs first.
            let mut pairs: Vec<(usize, usize, usize)> = (0..m * m)
                .filter(|i| weights[*i] > 0)
                .map(|i| (weights[i], i / m, i % m))
                .collect();
            pairs.sort_by_key(|(w, l, o)| (Reverse(*w), *l, *o));
            let mut map = vec![None; m];
            let mut used = vec![false; m];
            let mut kept = 0;
            for (w, l, o) in pairs {
                if map[l].is_none() && !used[o] {
                    map[l] = Some(o);
                    used[o] = true;
                    kept += w;
                }
            }
            if best.as_ref().is_some_and(|(k, _)| *k >= kept) {
                continue;
            }
            let mut free = (0..m).filter(|o| !used[*o]);
            for l in map.iter_mut() {
                if l.is_none() {
                    *l = free.next();
                }
            }
            let owners = (0..s)
                .map(|p| map[label(p)].expect("every label is mapped to a member") as Slot)
                .collect();
            best = Some((kept, owners));
        }
    }
    best.map(|(_, o)| o)
        .expect("a ring has at least one rotation")
}

/// A balanced labelling of `s` positions with `m` labels, spaced as far as
/// the counts allow.
///
/// With `c = s / m` and `r = s % m`, labels `0..r` ("heavy") appear `c + 1`
/// times and the others ("light") `c` times. The ring is cut into `c + 1`
/// rounds; each round is every heavy label in order, then the next chunk of
/// an endless cyclic reading of the light labels, chunks as even as possible.
/// So two copies of a heavy label are one round apart, and a round is at least
/// `floor(s / (c + 1))` long; two copies of a light label are `m - r` light
/// positions apart plus at least one heavy block of `r`, so at least `m`.
/// Hence any `d` consecutive positions differ when `m >= d` and
/// `(c + 1) * d <= s` (for `r > 0`), which is [`spacing_required`]'s test.
fn template(s: usize, m: usize) -> Vec<Slot> {
    let c = s / m;
    let r = s - c * m;
    let light = m - r;
    let rounds = if r == 0 { c } else { c + 1 };
    let reading = c * light;
    let mut out: Vec<Slot> = Vec::with_capacity(s);
    let mut next_light = 0;
    for i in 0..rounds {
        out.extend((0..r).map(|h| h as Slot));
        let chunk = (i + 1) * reading / rounds - i * reading / rounds;
        for _ in 0..chunk {
            out.push((r + next_light % light) as Slot);
            next_light += 1;
        }
    }
    debug_assert_eq!(out.len(), s, "rounds cover the ring");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i:02}")).collect()
    }

    #[test]
    fn template_is_spaced_whenever_possible() {
        for s in [8usize, 16, 32, 64, 128, 256, 512, 1024] {
            for m in 1..=70 {
                for d in [2usize, 3, 4, 5, 8] {
                    let t = template(s, m);
                    let counts = (0..m).map(|l| t.iter().filter(|x| **x as usize == l).count());
                    assert!(counts.into_iter().all(|c| c == s / m || c == s / m + 1));
                    if spacing_required(s, m, d) {
                        assert_eq!(spacing_violations(&t, d), 0, "s={s} m={m} d={d}");
                    }
                }
            }
        }
    }

    #[test]
    fn one_to_four_moves_48() {
        let members = names(4);
        let start = vec![members[0].clone(); 64];
        let c = claim(&start, &members, 4).expect("claim");
        let moved = start.iter().zip(&c.owners).filter(|(a, b)| a != b).count();
        assert_eq!(moved, 48);
        for m in &members {
            assert_eq!(c.owners.iter().filter(|o| *o == m).count(), 16);
        }
        assert_eq!(spacing_violations(&c.owners, 4), 0);
    }

    #[test]
    fn fifth_member_takes_twelve() {
        let members = names(4);
        let start = claim(&vec![members[0].clone(); 64], &members, 4)
            .expect("claim")
            .owners;
        let five = names(5);
        let c = claim(&start, &five, 4).expect("claim");
        assert_eq!(c.path, ClaimPath::Minimal);
        let moved: Vec<_> = start
            .iter()
            .zip(&c.owners)
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(moved.len(), 12);
        assert!(moved.iter().all(|(_, b)| **b == five[4]));
        assert!(is_balanced(&c.owners, &five));
        assert_eq!(spacing_violations(&c.owners, 4), 0);
    }

    #[test]
    fn claim_is_idempotent_and_order_free() {
        let members = names(7);
        let start = vec![members[0].clone(); 256];
        let a = claim(&start, &members, 4).expect("claim");
        let mut shuffled = members.clone();
        shuffled.reverse();
        let b = claim(&start, &shuffled, 4).expect("claim");
        assert_eq!(a, b);
        let again = claim(&a.owners, &members, 4).expect("claim");
        assert_eq!(again.path, ClaimPath::Unchanged);
        assert_eq!(again.owners, a.owners);
    }

    #[test]
    fn errors() {
        let none: Vec<String> = Vec::new();
        assert!(matches!(claim(&names(1), &none, 4), Err(Error::NoMembers)));
        assert!(claim(&none, &names(1), 4).is_err());
        assert!(claim(&names(1), &names(1), 0).is_err());
    }
}
