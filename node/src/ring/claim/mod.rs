//! Claim: which member owns each partition.
//!
//! [`claim()`] takes the current owner of every partition and the members that
//! should own the ring, and returns new owners that hold, in this order of
//! importance:
//!
//! 1. validity: every partition has exactly one owner, a member;
//! 2. spread: the fewest *short windows* the member count allows. A window is
//!    `d = min(target_n_val, members)` consecutive partitions (wrapping from
//!    the last to the first), one per partition; it is short when its owners
//!    are not all distinct ([`short_windows`]). With no short window every
//!    preference list of up to `target_n_val` partitions names
//!    `min(n, members)` distinct machines: all distinct while members suffice,
//!    otherwise every member once. When none is possible (see below) claim
//!    reaches the fewest it knows how to reach, [`fewest_short_windows`];
//! 3. balance: every member owns `floor` or `ceil` of `size / members`;
//! 4. least movement: a single join or leave on a balanced, spread ring moves
//!    only what balance needs (to the newcomer; from the leaver) whenever the
//!    spread can be kept that way; otherwise as few as reach the spread.
//!
//! Spread comes before balance in importance, but the two never conflict in
//! what claim returns: every result is balanced, and the fewest short windows
//! are counted among balanced rings.
//!
//! It is deterministic: the same owners and members (in any order) give the
//! same result.
//!
//! How. Partitions of members that left are *vacated*; members below their
//! fair share are *receivers*. First the vacated partitions are matched to
//! members (`matching`: bipartite, with per-member bounds) so that each goes
//! to a member absent from the `d - 1` partitions on either side: on a spread
//! ring the partitions of one leaver are that far apart, so these choices
//! never interfere and the matching is exact. Then each receiver takes
//! positions at least `d` apart from members above their share (`spaced`):
//! such a newcomer adds at most one copy of itself to any window and removes
//! nothing else, so the spread survives, and the search only picks *which*
//! positions so that each giver gives up its fair share.
//!
//! When that cannot keep the spread, claim falls back. A ring far from spread
//! (one member owning everything, a ring that had fewer members) is
//! re-striped at once (`stripe`: a spread template, rotated, reflected and
//! relabelled to keep as many owners as it can; from one owner that is still
//! the least movement). Otherwise the balanced moves are made anyway, spacing
//! is repaired with moves and swaps that keep balance, and the result with
//! fewer short windows, then fewer moves, of that and a re-stripe wins.
//! [`Claim::path`] says whether the result moved the least any balanced ring
//! could ([`ClaimPath::Minimal`]) or more.
//!
//! When short windows cannot be avoided. With `m` members and ring size `s`:
//! - `m >= target_n_val`: zero is possible exactly when a member owning
//!   `ceil(s / m)` partitions finds room for them `d` apart
//!   ([`spacing_required`]). For the default `target_n_val` of 4 and the
//!   ring sizes [`RingSize`](super::RingSize) accepts (multiples of 4), that
//!   is always: `ceil(s / m) <= s / 4` when 4 divides `s` and `m >= 4`.
//! - `m < target_n_val` (so `d = m`): every window holds every member once,
//!   so owner `i` equals owner `i + m` all the way round: zero needs `m` to
//!   divide `s`. With 2 members and an even ring: alternate. With 3 members
//!   and a ring size not a multiple of 3 (every power of two): at least 2
//!   windows are short. (If only window
//!   `j` were short, the `s - 2` relations `owner(i) = owner(i + 3)` that the
//!   good windows around it give would, since 3 and `s` are coprime, split
//!   the ring into at most 2 classes of equal owners: too few for a good
//!   window of 3.) The template `0 1 2 0 1 2 ... 0 (1)` has exactly 2, the
//!   fewest; riak_core 2.0 reaches the same 2 for a 4 -> 3 leave at ring 64.
//!
//! What a re-stripe moves. A re-stripe tries every rotation and reflection of
//! the template and relabels it to keep the most current owners: exactly for
//! up to [`EXACT_RELABEL_MAX`] members, greedily (at least half the best) for
//! more. Averaged over rotations, a fixed relabelling keeps
//! `sum(c_x * n_l(x)) / s >= (s - v) * floor(s / m) / s` partitions, where
//! `c_x` are the current counts of the members that stay, `v` the vacated
//! partitions and `n_l` the template's label counts; the best rotation keeps at
//! least that. So any claim moves at most `s - ceil((s - v) * floor(s / m) /
//! s)` partitions with up to [`EXACT_RELABEL_MAX`] members, and at most
//! `s - ceil((s - v) * floor(s / m) / (2 s))` with more ([`move_bound`]),
//! and exactly the least balance needs on its minimal path.
//!
//! Caveats. A leave that ends with exactly `target_n_val` members (or fewer)
//! must reach a stripe of that period, which can move most of the ring (as in
//! riak_core). Leaving a perfectly striped ring (what a first claim makes)
//! often cannot be minimal either: every partition of the leaver has the same
//! neighbours, who then cannot take it; repair then moves a few more. The join
//! search is bounded and has no completeness proof; the property tests check
//! that it never misses on a spread ring. Several changes at once are done as
//! one claim but with no promise of least movement beyond [`move_bound`].
//! With fewer members than `target_n_val` other than 2 or 3 (a larger
//! `target_n_val`), the fewest short windows is the better of two templates,
//! not a proven minimum.
//!
//! What this leaves out: membership states (joining, leaving), the transfers
//! that carry data to new owners, and versions. Those live in the cluster
//! layer; here a claim is a pure function of two lists.

mod location;
mod matching;
mod spaced;
mod stripe;

use std::cmp::Reverse;

use crate::{Error, Result};
use matching::Matching;
use spaced::pick_spaced;
use stripe::restripe;

pub use location::{
    DEFAULT_TARGET_LOCATION_N_VAL, claim_located, fewest_location_short_windows,
    location_short_windows, ring_size_for_locations,
};

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

/// How much [`claim()`] moved, and when more than the minimum, how it got
/// spacing back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClaimPath {
    /// The ring already held every property; nothing moved.
    Unchanged,
    /// Only what balance needs moved: partitions of members that left, and
    /// the fair share of members below it (the fewest moves any balanced
    /// result could make). Spacing holds if it is required.
    Minimal,
    /// More moved: balanced moves broke spacing, and swaps that keep balance
    /// restored it.
    Repaired,
    /// More moved: the ring was re-striped from a spaced template, keeping as
    /// many partitions in place as the template allows.
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

/// How many of the ring's preference lists of `n` partitions (one starting
/// at each partition, wrapping) are held by fewer than `min(n, owners)`
/// distinct owners, `owners` being how many distinct owners the ring has:
/// riak's `check_ring` violations, where a list may name every owner once
/// when there are fewer than `n`. Zero for an empty ring or `n` of 0 or 1.
pub fn short_windows<N: Ord>(owners: &[N], n: usize) -> usize {
    let s = owners.len();
    let mut ranks: Vec<&N> = owners.iter().collect();
    ranks.sort();
    ranks.dedup();
    let n = n.min(s);
    let want = n.min(ranks.len());
    if want <= 1 {
        return 0;
    }
    let rank: Vec<usize> = owners
        .iter()
        .map(|o| ranks.binary_search(&o).unwrap_or_default())
        .collect();
    // A sliding window of n partitions, counting its distinct owners.
    let mut in_window = vec![0usize; ranks.len()];
    let mut distinct = 0;
    for r in &rank[..n] {
        if in_window[*r] == 0 {
            distinct += 1;
        }
        in_window[*r] += 1;
    }
    let mut short = 0;
    for i in 0..s {
        if distinct < want {
            short += 1;
        }
        let (out, inc) = (rank[i], rank[(i + n) % s]);
        in_window[out] -= 1;
        if in_window[out] == 0 {
            distinct -= 1;
        }
        if in_window[inc] == 0 {
            distinct += 1;
        }
        in_window[inc] += 1;
    }
    short
}

/// The fewest short windows ([`short_windows`] with
/// `min(target_n_val, members)`) that [`claim()`] promises for `members` on a
/// ring of `size`: 0 whenever [`spacing_required`] (with `target_n_val` capped
/// at the member count), else what its templates reach (proven the minimum
/// for 2 and 3 members: see the module docs).
pub fn fewest_short_windows(size: usize, members: usize, target_n_val: usize) -> usize {
    if size == 0 || members == 0 {
        return 0;
    }
    let d = target_n_val.min(size).min(members);
    if d <= 1 || spacing_required(size, members, d) {
        return 0;
    }
    stripe::templates(size, members, d)
        .iter()
        .map(|t| short_windows(t, d))
        .min()
        .unwrap_or_default()
}

/// Up to this many members a re-stripe relabels its template exactly (every
/// permutation); above, greedily.
pub const EXACT_RELABEL_MAX: usize = 5;

/// The most partitions [`claim()`] moves from `current` for `members` (see
/// the module docs): the re-stripe's bound, which every path of claim stays
/// within.
pub fn move_bound<N: Ord>(current: &[N], members: &[N]) -> usize {
    let s = current.len();
    let mut sorted: Vec<&N> = members.iter().collect();
    sorted.sort();
    sorted.dedup();
    let m = sorted.len();
    if s == 0 || m == 0 {
        return 0;
    }
    let staying = current
        .iter()
        .filter(|o| sorted.binary_search(o).is_ok())
        .count();
    let per = if m <= EXACT_RELABEL_MAX { s } else { 2 * s };
    s - (staying * (s / m)).div_ceil(per)
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
    /// Window (spacing distance): `target_n_val`, capped at the ring size and
    /// the member count.
    t: usize,
    /// Whether no window needs to be short.
    spaced: bool,
    /// The fewest short windows claim promises ([`fewest_short_windows`]).
    floor: usize,
    /// `floor(size / members)`: every member ends with `lo` or `lo + 1`.
    lo: usize,
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
        let t = target_n_val.min(s).min(members);
        Work {
            counts,
            t,
            spaced: spacing_required(s, members, t),
            floor: fewest_short_windows(s, members, target_n_val),
            lo: s / members,
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

    /// Short windows of `owners` beyond the floor (none is better than
    /// reaching it).
    fn excess(&self, owners: &[Slot]) -> usize {
        if self.t <= 1 {
            return 0;
        }
        let s = owners.len();
        // Windows of t with a repeated owner: a member's partitions closer
        // than t. (VACANT counts as one owner; callers ask only on full rings.)
        let short = (0..s)
            .filter(|&i| {
                (0..self.t)
                    .any(|a| (a + 1..self.t).any(|b| owners[(i + a) % s] == owners[(i + b) % s]))
            })
            .count();
        short.saturating_sub(self.floor)
    }

    fn run(mut self) -> (Vec<Slot>, ClaimPath) {
        if self.balanced() && self.excess(&self.owners) == 0 {
            return (self.owners, ClaimPath::Unchanged);
        }
        let before = self.owners.clone();
        let least = self.least_moves();
        let moves = |owners: &[Slot]| before.iter().zip(owners).filter(|(a, b)| a != b).count();
        let label = |moved: usize, otherwise: ClaimPath| match moved {
            0 => ClaimPath::Unchanged,
            m if m == least => ClaimPath::Minimal,
            _ => otherwise,
        };
        if self.far_from_spaced() {
            // Moving a few partitions cannot spread this ring (typically one
            // member owning everything): go straight to the template.
            let striped = restripe(&before, self.m(), self.t);
            let path = label(moves(&striped), ClaimPath::Restriped);
            return (striped, path);
        }
        self.fill_vacated();
        self.feed_receivers();
        debug_assert!(self.balanced(), "balanced moves left the ring unbalanced");
        if self.excess(&self.owners) > 0 {
            // Repair when it is cheaper than a re-stripe; a ring far from
            // spread (say, one that had fewer members) is often better
            // re-striped. Without a spaced target there is nothing to repair
            // towards: the template's spread is the goal.
            if self.spaced {
                self.repair();
            }
            let striped = restripe(&before, self.m(), self.t);
            let ours = (self.excess(&self.owners), moves(&self.owners));
            if (self.excess(&striped), moves(&striped)) < ours {
                let path = label(moves(&striped), ClaimPath::Restriped);
                return (striped, path);
            }
        }
        let path = label(moves(&self.owners), ClaimPath::Repaired);
        (self.owners, path)
    }

    /// Whether the partitions that stay with members already break spacing
    /// in more than an eighth of the ring.
    fn far_from_spaced(&self) -> bool {
        let s = self.s();
        let bad = (0..s)
            .filter(|&i| {
                let o = self.owners[i];
                o != VACANT && (1..self.t).any(|k| self.owners[(i + k) % s] == o)
            })
            .count();
        bad * 8 > s
    }

    /// The fewest partitions any balanced result can move: what members
    /// below their share must gain, when the `r` members owning most keep
    /// `lo + 1`.
    fn least_moves(&self) -> usize {
        let r = self.s() - self.lo * self.m();
        let mut by_count: Vec<usize> = (0..self.m()).collect();
        by_count.sort_by_key(|i| (Reverse(self.counts[*i]), *i));
        by_count
            .iter()
            .enumerate()
            .map(|(rank, i)| (self.lo + usize::from(rank < r)).saturating_sub(self.counts[*i]))
            .sum()
    }

    /// Gives every vacated partition to a member, keeping each member at or
    /// below `lo + 1` and meeting `lo` for members that own partitions, where
    /// possible without breaking spacing.
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
        // Newcomers can be fed spaced positions later; members that already
        // own some must reach lo here, or someone else would move for them.
        let lower_owning: Vec<usize> = lower
            .iter()
            .zip(&self.counts)
            .map(|(l, c)| if *c > 0 { *l } else { 0 })
            .collect();
        let upper: Vec<usize> = self
            .counts
            .iter()
            .map(|c| (self.lo + 1).saturating_sub(*c))
            .collect();
        let assigned = {
            let mut matching = Matching::new(self, &vacated);
            // Lower bounds first: augmenting paths never lower a member's
            // load, so later passes up to the upper bounds keep them. Spacing
            // is kept where possible; where not, repair sorts it out.
            matching.run(&lower, true);
            matching.run(&lower_owning, false);
            matching.run(&upper, true);
            matching.run(&upper, false);
            matching.assigned
        };
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

    /// `n` positions for member `j`, spaced if possible (else as spread as
    /// possible), honouring the givers' bounds.
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
                return picks;
            }
        }
        // The greedy found nothing even unspaced: take the first positions of
        // givers that must give, then of those that may.
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

    /// Restores spacing by moves and swaps that keep balance, until the ring
    /// is spaced or no such change helps.
    fn repair(&mut self) {
        let budget = 2 * self.s();
        for _ in 0..budget {
            let Some(x) = self.first_violation() else {
                return;
            };
            if !self.improve_at(x) {
                return;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i:02}")).collect()
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
