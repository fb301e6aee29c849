//! Matching vacated partitions to members: bipartite, with a lower and an
//! upper bound on what each member takes, optionally keeping spacing.
//!
//! Augmenting paths (Kuhn's algorithm with capacities). Leaves out costs:
//! among valid matchings it takes the first it finds.

use super::{Slot, Work};

/// Bipartite matching of vacated partitions to members with capacities.
pub(super) struct Matching<'a> {
    work: &'a Work,
    vacated: &'a [usize],
    pub(super) assigned: Vec<Option<Slot>>,
    load: Vec<usize>,
}

impl<'a> Matching<'a> {
    pub(super) fn new(work: &'a Work, vacated: &'a [usize]) -> Matching<'a> {
        Matching {
            work,
            vacated,
            assigned: vec![None; vacated.len()],
            load: vec![0; work.m()],
        }
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

    pub(super) fn run(&mut self, cap: &[usize], strict: bool) {
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
