//! Re-striping: a spread, balanced template ring, rotated, reflected and
//! relabelled to keep as many current owners as it can.
//!
//! Leaves out finding the best relabelling exactly beyond
//! [`EXACT_RELABEL_MAX`] members: there it is greedy by overlap (at least half
//! the best).

use std::cmp::Reverse;

use super::{EXACT_RELABEL_MAX, Slot, VACANT, short_windows};

/// A balanced ring for `m` members with the fewest short windows of `d` the
/// template knows (none when the counts allow), that keeps as many of
/// `before`'s owners as a rotation, reflection and relabelling of the
/// template allows.
pub(super) fn restripe(before: &[Slot], m: usize, d: usize) -> Vec<Slot> {
    let s = before.len();
    let mut best: Option<(usize, Vec<Slot>)> = None;
    let mut weights = vec![0usize; m * m];
    for template in templates(s, m, d) {
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
                let (kept, map) = relabel(&weights, m);
                if best.as_ref().is_some_and(|(k, _)| *k >= kept) {
                    continue;
                }
                let owners = (0..s).map(|p| map[label(p)] as Slot).collect();
                best = Some((kept, owners));
            }
        }
    }
    best.map(|(_, o)| o)
        .expect("a ring has at least one rotation")
}

/// The member each template label becomes, and how many partitions that
/// keeps: `weights[l * m + o]` is how many positions labelled `l` member `o`
/// owns now.
fn relabel(weights: &[usize], m: usize) -> (usize, Vec<usize>) {
    if m <= EXACT_RELABEL_MAX {
        let mut perm: Vec<usize> = (0..m).collect();
        let mut best = (0, perm.clone());
        let mut first = true;
        permutations(&mut perm, 0, &mut |p| {
            let kept = (0..m).map(|l| weights[l * m + p[l]]).sum();
            if first || kept > best.0 {
                best = (kept, p.to_vec());
                first = false;
            }
        });
        return best;
    }
    // Greedy by overlap: heaviest label/member pairs first.
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
    let mut free = (0..m).filter(|o| !used[*o]);
    let map = map
        .into_iter()
        .map(|l| l.or_else(|| free.next()).unwrap_or_default())
        .collect();
    (kept, map)
}

/// Calls `f` on every permutation of `p[k..]` (with `p[..k]` fixed), in a
/// fixed order.
fn permutations(p: &mut [usize], k: usize, f: &mut dyn FnMut(&[usize])) {
    if k == p.len() {
        f(p);
        return;
    }
    for i in k..p.len() {
        p.swap(k, i);
        permutations(p, k + 1, f);
        p.swap(k, i);
    }
}

/// The templates with the fewest short windows of `d`, of the two below:
/// the rounds (spread whenever the counts allow) or, when `d` is every
/// member, the plain period `0 1 .. m-1` with the first `s mod m` labels once
/// more. Both when they tie: they place their short windows differently, so
/// either may keep more owners.
pub(super) fn templates(s: usize, m: usize, d: usize) -> Vec<Vec<Slot>> {
    let rounds = rounds(s, m);
    if d < m || s.is_multiple_of(m) {
        return vec![rounds];
    }
    let periodic: Vec<Slot> = (0..s).map(|p| (p % m) as Slot).collect();
    let (a, b) = (short_windows(&periodic, d), short_windows(&rounds, d));
    match a.cmp(&b) {
        std::cmp::Ordering::Less => vec![periodic],
        std::cmp::Ordering::Equal => vec![periodic, rounds],
        std::cmp::Ordering::Greater => vec![rounds],
    }
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
fn rounds(s: usize, m: usize) -> Vec<Slot> {
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
                    let t = rounds(s, m);
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
