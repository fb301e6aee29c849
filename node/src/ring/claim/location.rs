//! Location-aware claim: riak_core 3.x's location awareness (`cluster
//! location`), placing the replicas of every preference list on distinct
//! locations (racks, zones) as well as on distinct nodes.
//!
//! [`claim_located`] first claims as [`claim()`](super::claim) does (node
//! spread, balance, least movement), then, when some member has a location,
//! changes that ring with swaps of two owners and moves between members that
//! keep balance, each of which lowers the short windows counted as
//! `(node windows, location windows)`: node spread first, so a location never
//! costs a node spread the plain claim reached. A member without a location
//! is a location of its own (a rack of one), so with no location set the
//! result is exactly the plain claim's.
//!
//! Least movement comes from where the search starts: the plain claim's ring,
//! which moved only what balance needs. When that ring cannot be improved to
//! the fewest location-short windows the location counts allow
//! ([`fewest_short_windows`] over locations), the search also starts from an
//! interleaved template (members round robin across locations, rotated to
//! keep the most owners) and the better result wins: fewer node-short
//! windows, then fewer location-short windows, then fewer moves.
//!
//! When distinct locations are impossible. With `l` locations and window `n`
//! (`n <= l`), every window distinct forces `location(i) = location(i + l)`
//! when `l == n`, so the ring size must be a multiple of `l`: three zones on a
//! ring whose size is a power of two (riak's sizes, and our default 64)
//! always leave at least two preference lists of three on two zones (as three
//! members leave two windows short, see the claim module docs). The plan then
//! warns, as riak's does, and names the ring size that would allow none
//! ([`ring_size_for_locations`]: 72, or 48 and 96 among round sizes, for three
//! zones); the ring size is chosen when a cluster is created.
//!
//! What this leaves out: riak's claim v4 search over whole ring layouts (we
//! improve from the plain claim's result instead), and weighting locations
//! by capacity.

use std::collections::BTreeMap;

use super::{Claim, ClaimPath, claim, fewest_short_windows};
use crate::Result;

/// riak_core's default `target_location_n_val`: preference lists of 3
/// partitions should name 3 distinct locations.
pub const DEFAULT_TARGET_LOCATION_N_VAL: usize = 3;

/// How many preference lists of `n` partitions (one starting at each
/// partition, wrapping) are not on `n` distinct locations, a member without
/// a location counting as a location of its own: what riak's plan warns of.
/// With fewer than `n` locations that is every list.
pub fn location_short_windows<N: Ord>(
    owners: &[N],
    location_of: impl Fn(&N) -> Option<String>,
    n: usize,
) -> usize {
    let keys: Vec<LocKey<'_, N>> = owners
        .iter()
        .map(|o| match location_of(o) {
            Some(l) => LocKey::At(l),
            None => LocKey::Alone(o),
        })
        .collect();
    let s = keys.len();
    let n = n.min(s);
    if n <= 1 {
        return 0;
    }
    (0..s)
        .filter(|i| {
            let mut w: Vec<&LocKey<'_, N>> = (0..n).map(|k| &keys[(i + k) % s]).collect();
            w.sort();
            w.dedup();
            w.len() < n
        })
        .count()
}

/// The fewest preference lists of `n` not on `n` distinct locations that a
/// ring of `size` allows with `locations` locations of about equal share:
/// every list when there are fewer locations than `n`, else what
/// [`claim_located`] aims at.
pub fn fewest_location_short_windows(size: usize, locations: usize, n: usize) -> usize {
    if n.min(size) <= 1 {
        0
    } else if locations < n.min(size) {
        size
    } else {
        fewest_short_windows(size, locations, n)
    }
}

/// The smallest ring size from `size` up (a multiple of 4, at most 1024) on
/// which claim puts every preference list of `n` on distinct locations,
/// given how many members each location has; `None` when `size` already
/// allows it, or when no size is known to: claim reaches it (see the
/// `located_claim` property test) when every location has the same number of
/// members, there are at least `n` locations, and the size is a multiple of
/// both the location count and the member count.
pub fn ring_size_for_locations(size: usize, per_location: &[usize], n: usize) -> Option<usize> {
    let l = per_location.len();
    let m: usize = per_location.iter().sum();
    let even = per_location.windows(2).all(|w| w[0] == w[1]);
    if !even || m == 0 || l < n || fewest_location_short_windows(size, l, n) == 0 {
        return None;
    }
    (size.next_multiple_of(4)..=1024)
        .step_by(4)
        .find(|s| s % l == 0 && s % m == 0)
}

/// A location, or a member standing for itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LocKey<'a, N> {
    At(String),
    Alone(&'a N),
}

/// [`claim()`] with locations: see the module docs. `location_of` gives a
/// member's location, `None` when it has none.
pub fn claim_located<N: Clone + Ord>(
    current: &[N],
    members: &[N],
    location_of: impl Fn(&N) -> Option<String>,
    target_n_val: usize,
    target_location_n_val: usize,
) -> Result<Claim<N>> {
    let plain = claim(current, members, target_n_val)?;
    let mut sorted: Vec<&N> = members.iter().collect();
    sorted.sort();
    sorted.dedup();
    let located: Vec<Option<String>> = sorted.iter().map(|m| location_of(m)).collect();
    if located.iter().all(Option::is_none) || target_location_n_val <= 1 {
        return Ok(plain);
    }
    // Location ids per member rank; a member without one gets its own.
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    let mut loc = Vec::with_capacity(sorted.len());
    let mut next_id = 0;
    for l in &located {
        let id = match l {
            Some(l) => *ids.entry(l.as_str()).or_insert_with(|| {
                next_id += 1;
                next_id - 1
            }),
            None => {
                next_id += 1;
                next_id - 1
            }
        };
        loc.push(id);
    }
    let rank = |o: &N| sorted.binary_search(&o).ok();
    let Some(start) = plain
        .owners
        .iter()
        .map(rank)
        .collect::<Option<Vec<usize>>>()
    else {
        return Ok(plain);
    };
    let before: Vec<Option<usize>> = current.iter().map(rank).collect();
    let s = start.len();
    let m = sorted.len();
    let search = Search::new(&loc, m, s, target_n_val, target_location_n_val);
    // The search's location windows ask for min(n, locations) distinct, so
    // with fewer locations than n its floor is that of every location once.
    let floor = fewest_short_windows(s, next_id, target_location_n_val);
    let moves = |o: &[usize]| {
        before
            .iter()
            .zip(o)
            .filter(|(b, o)| **b != Some(**o))
            .count()
    };
    let rank_of = |o: &[usize]| (search.score(o), moves(o));
    // Mending a ring far from spread across locations (a stripe made
    // without them) costs a step per window and ends worse than the
    // template; a ring near it (a join's) keeps least movement by mending.
    // (Up to 256 partitions mending is cheap enough to try anyway, and
    // sometimes beats the templates.)
    let far = s > 256 && search.score(&start).1 * 8 > s;
    let mut best = if far {
        start.clone()
    } else {
        search.improve(start.clone())
    };
    if far || search.score(&best).1 > floor {
        for template in [interleaved(&loc, &before, s), zoned(&loc, &before, s)] {
            let template = search.improve(template);
            if search.balanced(&template) && rank_of(&template) < rank_of(&best) {
                best = template;
            }
        }
    }
    if best == start {
        return Ok(plain);
    }
    let path = if moves(&best) == moves(&start) && plain.path != ClaimPath::Unchanged {
        plain.path
    } else {
        ClaimPath::Repaired
    };
    Ok(Claim {
        owners: best.into_iter().map(|i| sorted[i].clone()).collect(),
        path,
    })
}

/// Members round robin across locations (largest locations first), repeated
/// around the ring and rotated to keep the most of `before`'s owners.
fn interleaved(loc: &[usize], before: &[Option<usize>], s: usize) -> Vec<usize> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (member, l) in loc.iter().enumerate() {
        groups.entry(*l).or_default().push(member);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let mut seq = Vec::with_capacity(loc.len());
    for round in 0.. {
        let before = seq.len();
        for g in &groups {
            if let Some(m) = g.get(round) {
                seq.push(*m);
            }
        }
        if seq.len() == before {
            break;
        }
    }
    let m = seq.len();
    let kept = |rot: usize| {
        (0..s)
            .filter(|p| before[*p] == Some(seq[(p + rot) % m]))
            .count()
    };
    let rot = (0..m)
        .max_by_key(|r| (kept(*r), std::cmp::Reverse(*r)))
        .unwrap_or(0);
    (0..s).map(|p| seq[(p + rot) % m]).collect()
}

/// Locations first: a ring of locations round robin (largest first), its
/// one partial round at the end, then each location's positions dealt to
/// its members round robin; rotated to keep the most of `before`'s owners.
/// Fewer location defects than [`interleaved`] when the ring size is not a
/// multiple of the member count, but not always balanced (callers check).
fn zoned(loc: &[usize], before: &[Option<usize>], s: usize) -> Vec<usize> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (member, l) in loc.iter().enumerate() {
        groups.entry(*l).or_default().push(member);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let l = groups.len();
    let mut dealt = vec![0usize; l];
    let base: Vec<usize> = (0..s)
        .map(|p| {
            let g = p % l;
            let m = groups[g][dealt[g] % groups[g].len()];
            dealt[g] += 1;
            m
        })
        .collect();
    let kept = |rot: usize| {
        (0..s)
            .filter(|p| before[*p] == Some(base[(p + rot) % s]))
            .count()
    };
    let rot = (0..s)
        .max_by_key(|r| (kept(*r), std::cmp::Reverse(*r)))
        .unwrap_or(0);
    (0..s).map(|p| base[(p + rot) % s]).collect()
}

/// How many short windows one step of the search tries to mend.
const STEP_WINDOWS: usize = 4;

/// The local search over member ranks.
struct Search<'a> {
    loc: &'a [usize],
    m: usize,
    /// Node window and how many distinct owners a window needs.
    tn: usize,
    want_n: usize,
    /// Location window and how many distinct locations a window needs.
    tl: usize,
    want_l: usize,
    lo: usize,
}

impl<'a> Search<'a> {
    fn new(loc: &'a [usize], m: usize, s: usize, tnv: usize, tlnv: usize) -> Search<'a> {
        let locations = {
            let mut l = loc.to_vec();
            l.sort_unstable();
            l.dedup();
            l.len()
        };
        let tn = tnv.min(s);
        let tl = tlnv.min(s);
        Search {
            loc,
            m,
            tn,
            want_n: tn.min(m),
            tl,
            want_l: tl.min(locations),
            lo: s / m,
        }
    }

    /// Whether the window of `len` starting at `i` has fewer than `want`
    /// distinct values of `f`.
    fn short(
        owners: &[usize],
        i: usize,
        len: usize,
        want: usize,
        f: impl Fn(usize) -> usize,
    ) -> bool {
        if want <= 1 {
            return false;
        }
        let s = owners.len();
        let mut seen: [usize; 16] = [usize::MAX; 16];
        let mut big: Vec<usize> = Vec::new();
        let mut distinct = 0;
        for k in 0..len {
            let v = f(owners[(i + k) % s]);
            let new = if len <= 16 {
                if seen[..distinct].contains(&v) {
                    false
                } else {
                    seen[distinct] = v;
                    true
                }
            } else if big.contains(&v) {
                false
            } else {
                big.push(v);
                true
            };
            if new {
                distinct += 1;
            }
        }
        distinct < want
    }

    /// Whether every member owns `lo` or `lo + 1` partitions.
    fn balanced(&self, owners: &[usize]) -> bool {
        let mut counts = vec![0usize; self.m];
        for o in owners {
            counts[*o] += 1;
        }
        counts.iter().all(|c| *c == self.lo || *c == self.lo + 1)
    }

    /// (node-short windows, location-short windows) of the whole ring.
    fn score(&self, owners: &[usize]) -> (usize, usize) {
        let s = owners.len();
        (0..s).fold((0, 0), |(a, b), i| {
            let (x, y) = self.window(owners, i);
            (a + usize::from(x), b + usize::from(y))
        })
    }

    fn window(&self, owners: &[usize], i: usize) -> (bool, bool) {
        (
            Self::short(owners, i, self.tn, self.want_n, |o| o),
            Self::short(owners, i, self.tl, self.want_l, |o| self.loc[o]),
        )
    }

    /// The score of the windows that hold `p` or `q`.
    fn local(&self, owners: &[usize], p: usize, q: usize) -> (usize, usize) {
        let s = owners.len();
        let w = self.tn.max(self.tl).min(s);
        let mut score = (0, 0);
        let mut add = |i: usize| {
            let (x, y) = self.window(owners, i);
            score.0 += usize::from(x);
            score.1 += usize::from(y);
        };
        for k in 0..w {
            add((p + s - k) % s);
        }
        for k in 0..w {
            let i = (q + s - k) % s;
            // Windows starting at i hold p too when p is within w after i.
            if (p + s - i) % s >= w {
                add(i);
            }
        }
        score
    }

    /// Improves `owners` by balance-keeping swaps and moves until no single
    /// one lowers the score, or a budget of steps is spent.
    fn improve(&self, mut owners: Vec<usize>) -> Vec<usize> {
        let s = owners.len();
        let mut counts = vec![0usize; self.m];
        for o in &owners {
            counts[*o] += 1;
        }
        for _ in 0..2 * s {
            let bad: Vec<usize> = (0..s)
                .filter(|i| {
                    let (x, y) = self.window(&owners, *i);
                    x || y
                })
                .collect();
            if bad.is_empty() || !self.step(&mut owners, &mut counts, &bad) {
                break;
            }
        }
        owners
    }

    /// One change that lowers the score around a short window, trying the
    /// first few short windows in ring order; false when none does. (Trying
    /// every window of a ring far from spread costs more than it finds.)
    fn step(&self, owners: &mut [usize], counts: &mut [usize], bad: &[usize]) -> bool {
        let s = owners.len();
        for &w in bad.iter().take(STEP_WINDOWS) {
            let len = self.tn.max(self.tl);
            for k in 0..len {
                let p = (w + k) % s;
                let a = owners[p];
                // A move of p to a member below its share, when a has spare.
                if counts[a] > self.lo {
                    for b in 0..self.m {
                        if b == a || counts[b] != self.lo {
                            continue;
                        }
                        let before = self.local(owners, p, p);
                        owners[p] = b;
                        if self.local(owners, p, p) < before {
                            counts[a] -= 1;
                            counts[b] += 1;
                            return true;
                        }
                        owners[p] = a;
                    }
                }
                // A swap with a partition of another member.
                for q in 0..s {
                    let b = owners[q];
                    if b == a {
                        continue;
                    }
                    let before = self.local(owners, p, q);
                    owners[p] = b;
                    owners[q] = a;
                    if self.local(owners, p, q) < before {
                        return true;
                    }
                    owners[p] = a;
                    owners[q] = b;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::claim::{is_balanced, short_windows};

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("n{i:02}")).collect()
    }

    /// Member i in zone i % zones.
    fn zone_of(zones: usize) -> impl Fn(&String) -> Option<String> {
        move |n: &String| {
            let i: usize = n[1..].parse().unwrap_or(0);
            Some(format!("z{}", i % zones))
        }
    }

    /// The fewest distinct zones any list of `n` names.
    fn fewest_zones(
        owners: &[String],
        zone: impl Fn(&String) -> Option<String>,
        n: usize,
    ) -> usize {
        let s = owners.len();
        (0..s)
            .map(|i| {
                let mut z: Vec<Option<String>> =
                    (0..n).map(|k| zone(&owners[(i + k) % s])).collect();
                z.sort();
                z.dedup();
                z.len()
            })
            .min()
            .unwrap_or(0)
    }

    #[test]
    fn no_location_is_the_plain_claim() {
        let members = names(6);
        let start = vec![members[0].clone(); 64];
        let plain = claim(&start, &members, 4).expect("claim");
        let located = claim_located(&start, &members, |_| None, 4, 3).expect("claim");
        assert_eq!(plain, located);
    }

    #[test]
    fn four_zones_of_two_spread_every_list() {
        let members = names(8);
        let start = vec![members[0].clone(); 64];
        let c = claim_located(&start, &members, zone_of(4), 4, 3).expect("claim");
        assert!(is_balanced(&c.owners, &members));
        assert_eq!(short_windows(&c.owners, 4), 0);
        assert_eq!(location_short_windows(&c.owners, zone_of(4), 3), 0);
    }

    #[test]
    fn three_zones_on_a_power_of_two_ring_leave_the_fewest() {
        // The fewest lists of three not on three zones while every list of
        // four is on four nodes, found by exhaustive search (a dynamic
        // program over the last three owners, balance left free): at 32
        // partitions each zone's 11 positions form an odd cycle of gaps of
        // 3, which two nodes cannot alternate on, so 4; at 64, 2 (the floor
        // of three members, see the claim module docs).
        let members = names(6);
        for (size, fewest) in [(32, 4), (64, 2)] {
            let start = vec![members[0].clone(); size];
            let c = claim_located(&start, &members, zone_of(3), 4, 3).expect("claim");
            assert!(is_balanced(&c.owners, &members));
            assert_eq!(short_windows(&c.owners, 4), 0);
            assert_eq!(
                location_short_windows(&c.owners, zone_of(3), 3),
                fewest,
                "ring {size}"
            );
            // And every list names at least two zones.
            assert_eq!(fewest_zones(&c.owners, zone_of(3), 3), 2);
        }
        assert_eq!(fewest_location_short_windows(64, 3, 3), 2);
    }

    #[test]
    fn three_zones_on_a_multiple_of_three_spread_every_list() {
        // The acceptance case: 3 zones of 2 members; also from a ring that
        // grew one member at a time, as the operator grows a cluster.
        let members = names(6);
        for size in [24, 48, 96, 192] {
            let start = vec![members[0].clone(); size];
            let c = claim_located(&start, &members, zone_of(3), 4, 3).expect("claim");
            assert!(is_balanced(&c.owners, &members));
            assert_eq!(short_windows(&c.owners, 4), 0, "ring {size}");
            assert_eq!(location_short_windows(&c.owners, zone_of(3), 3), 0);
            let mut owners = start;
            for k in 1..=6 {
                owners = claim_located(&owners, &members[..k], zone_of(3), 4, 3)
                    .expect("claim")
                    .owners;
            }
            assert_eq!(short_windows(&owners, 4), 0, "grown ring {size}");
            assert_eq!(location_short_windows(&owners, zone_of(3), 3), 0);
        }
        assert_eq!(ring_size_for_locations(64, &[2, 2, 2], 3), Some(72));
        assert_eq!(ring_size_for_locations(64, &[3, 3, 3], 3), Some(72));
        assert_eq!(ring_size_for_locations(64, &[1, 1, 1], 3), Some(72));
        assert_eq!(ring_size_for_locations(96, &[2, 2, 2], 3), None);
        assert_eq!(ring_size_for_locations(64, &[2, 2, 2, 2], 3), None);
        assert_eq!(ring_size_for_locations(64, &[2, 2], 3), None);
        // Uneven zones: no size is known to do it, so none is named.
        assert_eq!(ring_size_for_locations(64, &[2, 2, 1], 3), None);
        for size in [72, 96] {
            let members = names(6);
            let c = claim_located(&vec![members[0].clone(); size], &members, zone_of(3), 4, 3)
                .expect("claim");
            assert_eq!(location_short_windows(&c.owners, zone_of(3), 3), 0);
        }
    }

    #[test]
    fn two_zones_cannot_spread_three() {
        let members = names(6);
        let start = vec![members[0].clone(); 32];
        let c = claim_located(&start, &members, zone_of(2), 4, 3).expect("claim");
        assert!(is_balanced(&c.owners, &members));
        assert_eq!(short_windows(&c.owners, 4), 0);
        // No list of three is on three zones, but every one names both.
        assert_eq!(location_short_windows(&c.owners, zone_of(2), 3), 32);
        assert_eq!(fewest_zones(&c.owners, zone_of(2), 3), 2);
    }
}
