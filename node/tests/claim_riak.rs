//! Claim against riak_core 2.0's own plans: every change measured in
//! `tests/golden/claim/riak-claim-2.0.0.txt` (rings 8 and 64: joins one by
//! one and at once, leaves, a force-remove, a replace) is replayed from the
//! same starting ring, and our result must be at least as good as riak's:
//! no more preference lists of 3 off distinct nodes, and, when that count
//! is the same, no more moves. Where riak leaves more such lists, we move
//! what spreading the replicas takes (spread before movement; see
//! `ring::claim`'s docs).
//!
//! The comparison is also written out as `tests/golden/claim/ours.txt`, so a
//! change of claim shows as a diff. `UPDATE_GOLDENFILES=1 cargo test -p
//! flavio-node --test claim_riak` rewrites it; review the diff.

use std::fmt::Write as _;
use std::path::PathBuf;

use flavio_node::ring::claim;
use flavio_node::ring::claim::{fewest_short_windows, is_balanced, short_windows};

const T: usize = 4;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/claim")
}

/// One measured riak case.
#[derive(Debug)]
struct RiakCase {
    size: usize,
    name: String,
    owners: Vec<u8>,
    moves: usize,
    violations: usize,
}

fn parse(text: &str) -> Vec<RiakCase> {
    let mut cases = Vec::new();
    let mut size = 0;
    let mut current: Option<RiakCase> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("=== ring size ") {
            size = rest.trim().parse().expect("ring size");
        } else if let Some(rest) = line.strip_prefix("  owners ") {
            let c = current.as_mut().expect("owners inside a case");
            c.owners = rest.trim().bytes().map(|b| b - b'0').collect();
        } else if let Some(rest) = line.strip_prefix("  moves per transition ") {
            // Every `},N}` closes a {from, to} pair with its count.
            let c = current.as_mut().expect("moves inside a case");
            c.moves = rest
                .split("},")
                .skip(1)
                .filter_map(|part| {
                    let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse::<usize>().ok()
                })
                .sum();
        } else if let Some(rest) = line.strip_prefix("  check_ring(n=3) violations=") {
            let c = current.as_mut().expect("violations inside a case");
            c.violations = rest.trim().parse().expect("violations");
        } else if !line.starts_with(' ') && !line.starts_with('#') && line.contains(": ") {
            cases.extend(current.take());
            let name = line.split(": ").next().unwrap_or_default().to_string();
            current = Some(RiakCase {
                size,
                name,
                owners: Vec::new(),
                moves: 0,
                violations: 0,
            });
        }
    }
    cases.extend(current);
    cases
}

/// riak's `check_ring(n=3)`: preference lists of 3 not on 3 distinct nodes
/// (with fewer than 3 members, every list).
fn check_ring(owners: &[u8]) -> usize {
    let s = owners.len();
    (0..s)
        .filter(|&i| {
            let (a, b, c) = (owners[i], owners[(i + 1) % s], owners[(i + 2) % s]);
            a == b || b == c || a == c
        })
        .count()
}

/// The starting ring and members of a case, as riak started it.
fn setup(case: &RiakCase, cases: &[RiakCase]) -> (Vec<u8>, Vec<u8>) {
    let s = case.size;
    let same_ring = |name: &str| {
        cases
            .iter()
            .find(|c| c.size == s && c.name == name)
            .unwrap_or_else(|| panic!("case {name} at ring {s}"))
    };
    let name = case.name.as_str();
    if let Some(rest) = name.strip_prefix("1 -> ") {
        let k: u8 = rest
            .split(' ')
            .next()
            .and_then(|k| k.parse().ok())
            .expect("k");
        return (vec![1; s], (1..=k).collect());
    }
    if name == "base4" {
        return (vec![1; s], (1..=4).collect());
    }
    if let Some(rest) = name.strip_prefix("seq join flavio") {
        let k: u8 = rest.parse().expect("k");
        let before = if k == 2 {
            vec![1; s]
        } else {
            same_ring(&format!("seq join flavio{}", k - 1))
                .owners
                .clone()
        };
        return (before, (1..=k).collect());
    }
    let base = same_ring("base4").owners.clone();
    if let Some(rest) = name.strip_prefix("4 nodes, flavio") {
        let gone: u8 = rest[..1].parse().expect("node");
        return (base, (1..=4).filter(|m| *m != gone).collect());
    }
    if name == "4 nodes, replace flavio4 with flavio5" {
        // A replace hands the old member's partitions to the new one; claim
        // then runs on that ring (as our claimant does).
        return (base, vec![1, 2, 3, 5]);
    }
    panic!("unknown riak case {name}");
}

#[test]
fn at_least_as_good_as_riak_core_2_0() {
    let text =
        std::fs::read_to_string(golden_dir().join("riak-claim-2.0.0.txt")).expect("riak reference");
    let cases = parse(&text);
    assert_eq!(cases.len(), 32, "every measured case is parsed");
    let mut report = String::from(
        "# claim vs riak_core 2.0 (tests/claim_riak.rs): moves and check_ring(n=3) violations\n\
         # size  case                                    riak moves/viol   ours moves/viol  owners\n",
    );
    let mut failures = Vec::new();
    for case in &cases {
        let (before, members) = setup(case, &cases);
        let target: Vec<u8> = if case.name.contains("replace") {
            before
                .iter()
                .map(|o| if *o == 4 { 5 } else { *o })
                .collect()
        } else {
            before.clone()
        };
        let ours = claim(&target, &members, T).expect("claim").owners;
        let moves = before.iter().zip(&ours).filter(|(a, b)| a != b).count();
        let violations = check_ring(&ours);
        let shown: String = ours.iter().map(|o| char::from(b'0' + o)).collect();
        let _ = writeln!(
            report,
            "{:>5}  {:<40}{:>5} / {:<9}{:>5} / {:<5}  {shown}",
            case.size, case.name, case.moves, case.violations, moves, violations
        );
        let s = case.size;
        if !is_balanced(&ours, &members) {
            failures.push(format!("{s} {}: unbalanced", case.name));
        }
        if short_windows(&ours, 3) > fewest_short_windows(s, members.len(), 3) {
            failures.push(format!("{s} {}: more short lists than needed", case.name));
        }
        let worse =
            violations > case.violations || (violations == case.violations && moves > case.moves);
        if worse {
            failures.push(format!(
                "{s} {}: riak {} moves / {} violations, ours {moves} / {violations}",
                case.name, case.moves, case.violations
            ));
        }
    }
    let path = golden_dir().join("ours.txt");
    if std::env::var_os("UPDATE_GOLDENFILES").is_some() {
        std::fs::write(&path, &report).expect("write golden file");
    } else {
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; UPDATE_GOLDENFILES=1 creates it", path.display()));
        assert_eq!(
            expected,
            report,
            "claim's results changed; UPDATE_GOLDENFILES=1 rewrites {}",
            path.display()
        );
    }
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
}

/// The case by name: a 4-node ring of 64 and one leave.
#[test]
fn four_to_three_at_64_keeps_replicas_apart() {
    let four: Vec<u8> = vec![1, 2, 3, 4];
    let base = claim(&[1u8; 64], &four, T).expect("claim").owners;
    let c = claim(&base, &[1, 2, 3], T).expect("claim");
    let moves = base.iter().zip(&c.owners).filter(|(a, b)| a != b).count();
    assert!(moves <= 46, "{moves} moves: {base:?} -> {:?}", c.owners);
    assert!(short_windows(&c.owners, 3) <= 2);
    assert!(is_balanced(&c.owners, &[1, 2, 3]));
}
