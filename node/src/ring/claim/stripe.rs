//! Re-striping: a spaced, balanced template ring, rotated and relabelled to
//! keep as many current owners as it can.
//!
//! Leaves out finding the best relabelling exactly: it is greedy by overlap.

use std::cmp::Reverse;

use super::{Slot, VACANT};

/// A balanced ring for `m` members, spaced when the counts allow, that keeps as many
/// of `before`'s owners as a rotation and relabelling of the template allows.
pub(super) fn restripe(before: &[Slot], m: usize) -> Vec<Slot> {
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
    use crate::ring::claim::{spacing_required, spacing_violations};

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
}
