//! Ring micro-benchmarks: key → partition (with SHA-1), preference lists, and
//! claim (one member joining a balanced ring, one leaving it, and a claim from
//! a ring owned by one member) at ring sizes 64, 256 and 1024 with 4, 16 and
//! 64 members, a leave down to 3 members (the re-stripe), and the claimant's
//! whole plan (claim plus membership and transfer lists) for one join and one
//! leave on a settled ring of 1024 partitions and 64 members.
//!
//! Run with `cargo bench -p flavio-node --bench ring -- --quick`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flavio_node::cluster::claimant::{add_joining, complete_transfer};
use flavio_node::cluster::{Change, RingState, Staging};
use flavio_node::ring::{PartitionId, Ring, RingSize, apl, claim, hash_key};

const T: usize = 4;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("flavio{i}@10.0.0.{i}")).collect()
}

fn chash(c: &mut Criterion) {
    let size = RingSize::DEFAULT;
    let key = b"add/1234567/7654321";
    c.bench_function("chash/hash_key+partition_of", |b| {
        b.iter(|| size.partition_of(&hash_key(black_box(key))))
    });
    let index = size.index(PartitionId(53)).to_string();
    c.bench_function("chash/index_to_string", |b| {
        b.iter(|| size.index(black_box(PartitionId(53))).to_string())
    });
    c.bench_function("chash/parse_partition", |b| {
        b.iter(|| size.parse_partition(black_box(&index)))
    });
}

fn preflists(c: &mut Criterion) {
    let members = names(8);
    let (ring, _) = Ring::new(RingSize::DEFAULT, &members[0])
        .claim(&members, T)
        .expect("claim");
    let first = ring.partition_of(&hash_key(b"some key"));
    c.bench_function("apl/primaries_n3", |b| {
        b.iter(|| apl::primaries_owned(&ring, black_box(first), 3))
    });
    let down = ring.owner(first).to_string();
    c.bench_function("apl/annotated_n3_one_down", |b| {
        b.iter(|| apl::annotated(&ring, black_box(first), 3, |n| n != down))
    });
}

fn claims(c: &mut Criterion) {
    let mut group = c.benchmark_group("claim");
    group.sample_size(10);
    for size in [64usize, 256, 1024] {
        for m in [4usize, 16, 64] {
            let members = names(m + 1);
            let (old, new) = (&members[..m], &members);
            let scratch = vec![old[0].clone(); size];
            let id = format!("{size}/{m}");
            group.bench_with_input(BenchmarkId::new("from_scratch", &id), &scratch, |b, s| {
                b.iter(|| claim(s, old, T).expect("claim"))
            });
            let balanced = claim(&scratch, old, T).expect("claim").owners;
            group.bench_with_input(BenchmarkId::new("join_one", &id), &balanced, |b, r| {
                b.iter(|| claim(r, new, T).expect("claim"))
            });
            group.bench_with_input(BenchmarkId::new("leave_one", &id), &balanced, |b, r| {
                b.iter(|| claim(r, &old[1..], T).expect("claim"))
            });
        }
    }
    for size in [64usize, 1024] {
        let four = names(4);
        let base = claim(&vec![four[0].clone(); size], &four, T)
            .expect("claim")
            .owners;
        group.bench_with_input(
            BenchmarkId::new("leave_to_three", format!("{size}/4")),
            &base,
            |b, r| b.iter(|| claim(r, &four[..3], T).expect("claim")),
        );
    }
    group.finish();
}

/// A settled ring of `size` partitions owned by `m` members, made through the
/// claimant as a cluster makes it.
fn settled_ring(size: u64, m: usize) -> RingState {
    let members = names(m);
    let addr = |i: usize| format!("10.0.0.{i}:10017");
    let size = RingSize::new(size).expect("ring size");
    let mut ring = RingState::singleton("bench".into(), size, &members[0], &addr(0));
    let mut staging = Staging::default();
    for (i, name) in members.iter().enumerate().skip(1) {
        ring = add_joining(&ring, name, &addr(i), None).expect("joining");
        staging
            .stage(&ring, Change::Join(name.clone()))
            .expect("staged");
    }
    staging.make_plan(&ring, true).expect("plan");
    ring = staging.commit(&ring, true, None).expect("commit");
    while let Some(t) = ring.pending.first().cloned() {
        ring = complete_transfer(&ring, t.partition, &t.from, &t.to)
            .expect("flip")
            .expect("changed");
    }
    ring
}

fn plans(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    let ring = settled_ring(1024, 64);
    let joiner = "flavio64@10.0.0.64";
    let joining = add_joining(&ring, joiner, "10.0.0.64:10017", None).expect("joining");
    group.bench_function("join_one/1024/64", |b| {
        b.iter(|| {
            let mut s = Staging::default();
            s.stage(&joining, Change::Join(joiner.into()))
                .expect("staged");
            s.make_plan(&joining, true).expect("plan").transitions.len()
        })
    });
    let leaver = names(64)[7].clone();
    group.bench_function("leave_one/1024/64", |b| {
        b.iter(|| {
            let mut s = Staging::default();
            s.stage(&ring, Change::Leave(leaver.clone()))
                .expect("staged");
            s.make_plan(&ring, true).expect("plan").transitions.len()
        })
    });
    group.finish();
}

criterion_group!(benches, chash, preflists, claims, plans);
criterion_main!(benches);
