//! Choosing spaced positions for a member that receives partitions.
//!
//! A bounded depth-first search; it leaves out any proof that it finds a
//! choice whenever one exists (the property tests measure that instead).

use std::cmp::Reverse;

use super::{Slot, VACANT};

/// Chooses `n` positions for member `j`, pairwise at least `d` apart
/// (wrapping) and at least `d` from `j`'s own partitions, taking at most
/// `may[g]` from each member `g`, and from members whose `must[g]` is spent at
/// most `slack` in all.
///
/// A depth-first search around the ring from each possible first pick, with
/// picks paced evenly and the givers that most need to give tried first. It
/// stops at the first success, so the result is deterministic, or after a
/// fixed budget of steps (growing with the ring: at 1024 partitions and 16
/// members a join needed more than a flat budget gave).
pub(super) fn pick_spaced(
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
    let usable: Vec<bool> = (0..s)
        .map(|p| !blocked[p] && owners[p] != VACANT && may[owners[p] as usize] > 0)
        .collect();
    let mut search = Search {
        owners,
        usable,
        s,
        n,
        d,
        start: 0,
        may_left: Vec::new(),
        must_left: Vec::new(),
        slack_left: 0,
        ahead: Vec::new(),
        passed: 0,
        picks: Vec::with_capacity(n),
        budget: 4 * n + 2_000 + 16 * s,
    };
    for start in 0..s {
        if !search.usable[start] {
            continue;
        }
        search.start = start;
        search.may_left = may.to_vec();
        search.must_left = must.to_vec();
        search.slack_left = slack;
        search.picks.clear();
        search.passed = 0;
        // Usable positions of each giver that a later pick could take.
        search.ahead = vec![0; may.len()];
        for off in 0..=s - d {
            let p = (start + off) % s;
            if search.usable[p] {
                search.ahead[owners[p] as usize] += 1;
            }
        }
        if search.dfs() {
            return Some(search.picks.iter().map(|o| (start + o) % s).collect());
        }
        if search.budget == 0 {
            break;
        }
    }
    None
}

/// The state of [`pick_spaced`]'s search from one first pick. Offsets are
/// relative to `start`, the first pick.
struct Search<'a> {
    owners: &'a [Slot],
    usable: Vec<bool>,
    s: usize,
    n: usize,
    d: usize,
    start: usize,
    may_left: Vec<usize>,
    must_left: Vec<usize>,
    slack_left: usize,
    /// Usable positions per giver at offsets from `passed` to `s - d`.
    ahead: Vec<usize>,
    /// Offsets below this can no longer be picked.
    passed: usize,
    picks: Vec<usize>,
    budget: usize,
}

impl Search<'_> {
    fn owner_at(&self, off: usize) -> usize {
        self.owners[(self.start + off) % self.s] as usize
    }

    /// Offsets in `range` that the next pick may take, with their owners.
    fn candidates(&self, range: std::ops::RangeInclusive<usize>) -> Vec<(usize, usize)> {
        range
            .filter(|o| self.usable[(self.start + o) % self.s])
            .map(|o| (o, self.owner_at(o)))
            .filter(|(_, g)| {
                self.may_left[*g] > 0 && (self.must_left[*g] > 0 || self.slack_left > 0)
            })
            .collect()
    }

    fn dfs(&mut self) -> bool {
        let k = self.picks.len();
        if k == self.n {
            return true;
        }
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        let remaining = self.n - k;
        // The remaining picks must fit before the wrap back to the first.
        let (earliest, latest) = match self.picks.last() {
            None => (0, 0),
            Some(o) => (o + self.d, self.s - self.d * remaining),
        };
        if earliest > latest {
            return false;
        }
        let ideal = (k * self.s / self.n).clamp(earliest, latest);
        // Look near the paced position first; the whole range only if that
        // offers nothing.
        let near_end = (ideal + 2 * self.d).min(latest);
        let mut candidates = self.candidates(earliest..=near_end);
        if candidates.is_empty() && near_end < latest {
            candidates = self.candidates(near_end + 1..=latest);
        }
        // Givers that must give, most urgent first, then the closest to the
        // ideal position. Only the best few are tried: the budget is better
        // spent on other first picks than deep in one.
        candidates.sort_by_key(|(o, g)| {
            let urgency = self.must_left[*g] * 1024 / self.ahead[*g].max(1);
            (
                Reverse(self.must_left[*g] > 0),
                Reverse(urgency),
                o.abs_diff(ideal),
                *o,
            )
        });
        candidates.truncate(3);
        for (o, g) in candidates {
            let passed = self.passed;
            let until = (o + self.d).min(self.s - self.d + 1).max(passed);
            for off in passed..until {
                if self.usable[(self.start + off) % self.s] {
                    let h = self.owner_at(off);
                    self.ahead[h] -= 1;
                }
            }
            self.passed = until;
            let from_must = self.must_left[g] > 0;
            self.may_left[g] -= 1;
            if from_must {
                self.must_left[g] -= 1;
            } else {
                self.slack_left -= 1;
            }
            self.picks.push(o);
            // Prune: a giver must still have room for what it must give.
            let hopeless = (0..self.must_left.len()).any(|h| self.must_left[h] > self.ahead[h]);
            if !hopeless && self.dfs() {
                return true;
            }
            self.picks.pop();
            self.may_left[g] += 1;
            if from_must {
                self.must_left[g] += 1;
            } else {
                self.slack_left += 1;
            }
            for off in passed..until {
                if self.usable[(self.start + off) % self.s] {
                    let h = self.owner_at(off);
                    self.ahead[h] += 1;
                }
            }
            self.passed = passed;
            if self.budget == 0 {
                return false;
            }
        }
        false
    }
}
