//! Consistent hashing over the SHA-1 keyspace, as riak_core's `chash`.
//!
//! Keys hash to 160-bit integers ([`KeyHash`]). A ring of [`RingSize`]
//! partitions cuts the keyspace `0 .. 2^160` into equal arcs; partition `p`
//! is named by its index `p * floor(2^160 / size)` ([`RingIndex`]), in decimal
//! as riak does (`1210306043414653979137426502093171875652569137152` is
//! partition 53 of a 64 ring). A hash belongs to the first partition whose index
//! is *strictly greater* than the hash, wrapping to partition 0; so a hash equal
//! to an index belongs to the next partition, and hash 0 to partition 1.
//!
//! What this leaves out: who owns a partition (see [`mod@super::claim`] and
//! [`super::state`]) and how keys are encoded before hashing (the caller's
//! business; riak hashes `term_to_binary({Bucket, Key})`, we hash bytes).

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

use crate::{Error, Result};

/// Number of bytes in a 160-bit integer.
const BYTES: usize = 20;

/// The number of partitions of a ring: a multiple of 4 from 8 to 1024.
///
/// Fixed when a cluster is created; every node of a cluster must agree on it.
/// riak_core asks for a power of two, whose arcs are exactly equal. Other
/// sizes work the same way here, as riak_core's `chash` arithmetic does: each
/// arc is `floor(2^160 / size)` long and the last one also takes the
/// `2^160 mod size` points (fewer than the size) left over. Why allow them: a
/// size that is a multiple of the number of locations is what lets every
/// preference list span distinct locations (three zones want 48, 96, 192...;
/// see [`claim_located`](super::claim::claim_located)). Why a multiple of 4: claim's spread
/// keeps each member's partitions `target_n_val` (4) apart, which balanced
/// counts allow for any member count of 4 or more exactly when 4 divides the
/// size.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RingSize(u32);

impl RingSize {
    /// The default ring size, 64, as in riak_core.
    pub const DEFAULT: RingSize = RingSize(64);
    /// The smallest ring size accepted.
    pub const MIN: u32 = 8;
    /// The largest ring size accepted.
    pub const MAX: u32 = 1024;

    /// Validates a ring size: a multiple of 4 from 8 to 1024.
    pub fn new(size: u64) -> Result<RingSize> {
        if size.is_multiple_of(4) && (Self::MIN as u64..=Self::MAX as u64).contains(&size) {
            Ok(RingSize(size as u32))
        } else {
            Err(Error::InvalidRingSize(size))
        }
    }

    /// The number of partitions.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The number of partitions, as a `usize` for indexing.
    pub fn len(self) -> usize {
        self.0 as usize
    }

    /// Always false: a ring has at least 8 partitions. (Here for clippy's
    /// `len_without_is_empty`.)
    pub fn is_empty(self) -> bool {
        false
    }

    /// Every partition, in ring order from partition 0.
    pub fn partitions(self) -> impl Iterator<Item = PartitionId> {
        (0..self.0).map(PartitionId)
    }

    /// riak's `ring_increment`: the length of an arc, `floor(2^160 / size)`.
    fn increment(self) -> Limbs {
        // Long division of 2^160 (a 1 above five zero limbs) by the size.
        let d = u64::from(self.0);
        let mut rem = 1u64;
        let mut q = [0u32; LIMBS];
        for limb in q.iter_mut() {
            let cur = rem << 32;
            *limb = (cur / d) as u32;
            rem = cur % d;
        }
        q
    }

    /// `k` arcs from index 0: `k * increment`, for `k <= size` (below 2^160).
    fn arcs(self, k: u32) -> Limbs {
        let (high, product) = mul_small(self.increment(), k);
        debug_assert_eq!(high, 0, "{k} arcs of a ring of {self}");
        product
    }

    /// The last partition whose index is at or below `point`:
    /// `floor(point / increment)`, at most `size - 1` (past the last index
    /// lies only the last arc, and the sliver that equal arcs leave over).
    fn arcs_below(self, point: Limbs) -> u32 {
        // floor(point * size / 2^160) is at most one short of the answer,
        // because the increment is at most 2^160 / size.
        let (mut q, _) = mul_small(point, self.0);
        while q + 1 < self.0 && self.arcs(q + 1) <= point {
            q += 1;
        }
        q
    }

    /// The partition a hash belongs to: the first one whose index is strictly
    /// greater than the hash, wrapping to partition 0.
    pub fn partition_of(self, hash: &KeyHash) -> PartitionId {
        // The strict "greater than" makes it the one after the last partition
        // whose index is at or below the hash.
        let below = self.arcs_below(to_limbs(&hash.0));
        PartitionId((below + 1) % self.0)
    }

    /// The index of partition `p`: `p * floor(2^160 / size)`, as riak_core's
    /// `chash` (exactly `p * 2^160 / size` when the size is a power of two).
    ///
    /// `p` is taken modulo the ring size, so any `PartitionId` has an index.
    pub fn index(self, p: PartitionId) -> RingIndex {
        debug_assert!(p.0 < self.0, "partition {p} outside a ring of {self}");
        RingIndex(from_limbs(self.arcs(p.0 % self.0)))
    }

    /// The partition whose index prints as `decimal`: the inverse of
    /// `index(p).to_string()`.
    pub fn parse_partition(self, decimal: &str) -> Result<PartitionId> {
        let invalid = || Error::InvalidPartition(decimal.to_string());
        let index: RingIndex = decimal.parse().map_err(|_| invalid())?;
        let point = to_limbs(&index.0);
        let p = self.arcs_below(point);
        if self.arcs(p) == point {
            Ok(PartitionId(p))
        } else {
            Err(invalid())
        }
    }

    /// The partition after `p`, wrapping from the last to partition 0.
    pub fn successor(self, p: PartitionId) -> PartitionId {
        PartitionId((p.0 + 1) % self.0)
    }

    /// The partition `k` steps after `p`, wrapping.
    pub fn advance(self, p: PartitionId, k: usize) -> PartitionId {
        PartitionId(((p.0 as usize + k) % self.len()) as u32)
    }
}

impl Default for RingSize {
    fn default() -> Self {
        RingSize::DEFAULT
    }
}

impl fmt::Display for RingSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A 160-bit integer as 32-bit limbs, most significant first (so arrays
/// compare as the integers do).
type Limbs = [u32; LIMBS];

/// 32-bit limbs in 160 bits.
const LIMBS: usize = BYTES / 4;

fn to_limbs(bytes: &[u8; BYTES]) -> Limbs {
    let mut limbs = [0u32; LIMBS];
    for (limb, b) in limbs.iter_mut().zip(bytes.chunks_exact(4)) {
        *limb = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    }
    limbs
}

fn from_limbs(limbs: Limbs) -> [u8; BYTES] {
    let mut bytes = [0u8; BYTES];
    for (b, limb) in bytes.chunks_exact_mut(4).zip(limbs) {
        b.copy_from_slice(&limb.to_be_bytes());
    }
    bytes
}

/// `x * m` as the limb above 160 bits and the low 160 bits.
fn mul_small(x: Limbs, m: u32) -> (u32, Limbs) {
    let mut out = [0u32; LIMBS];
    let mut carry = 0u64;
    for (o, limb) in out.iter_mut().zip(x).rev() {
        let cur = u64::from(limb) * u64::from(m) + carry;
        *o = cur as u32;
        carry = cur >> 32;
    }
    (carry as u32, out)
}

/// A partition's ordinal, `0 .. size`, in ring order.
///
/// Displayed as the ordinal; use [`RingSize::index`] for riak's decimal name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PartitionId(pub u32);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The SHA-1 hash of a key: a big-endian 160-bit integer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct KeyHash(pub [u8; 20]);

impl KeyHash {
    /// The hash as a point of the keyspace, to print or compare with indices.
    pub fn to_index(self) -> RingIndex {
        RingIndex(self.0)
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_index().fmt(f)
    }
}

/// SHA-1 of `bytes`, the position of a key on the ring.
pub fn hash_key(bytes: &[u8]) -> KeyHash {
    KeyHash(Sha1::digest(bytes).into())
}

/// A point of the 160-bit keyspace, such as a partition's index.
///
/// Displays as a decimal integer and parses back from one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct RingIndex([u8; 20]);

impl RingIndex {
    /// The largest point, `2^160 - 1`.
    pub const MAX: RingIndex = RingIndex([0xff; BYTES]);

    /// The point with these big-endian bytes.
    pub fn from_bytes(bytes: [u8; 20]) -> RingIndex {
        RingIndex(bytes)
    }

    /// The big-endian bytes of the point.
    pub fn to_bytes(self) -> [u8; 20] {
        self.0
    }
}

impl fmt::Display for RingIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Long division by 10^9 over 32-bit limbs, most significant first.
        let mut limbs = [0u32; BYTES / 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let b = &self.0[i * 4..i * 4 + 4];
            *limb = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        }
        let mut chunks = Vec::with_capacity(6);
        while limbs.iter().any(|l| *l != 0) {
            let mut rem = 0u64;
            for limb in limbs.iter_mut() {
                let cur = (rem << 32) | u64::from(*limb);
                *limb = (cur / 1_000_000_000) as u32;
                rem = cur % 1_000_000_000;
            }
            chunks.push(rem as u32);
        }
        let mut out = String::with_capacity(49);
        match chunks.split_last() {
            None => out.push('0'),
            Some((first, rest)) => {
                out.push_str(&first.to_string());
                for chunk in rest.iter().rev() {
                    out.push_str(&format!("{chunk:09}"));
                }
            }
        }
        f.pad(&out)
    }
}

impl FromStr for RingIndex {
    type Err = Error;

    /// Parses a decimal integer below 2^160 (digits only, no sign).
    fn from_str(s: &str) -> Result<RingIndex> {
        let invalid = || Error::InvalidPartition(s.to_string());
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        // Multiply-add over 32-bit limbs, least significant first.
        let mut limbs = [0u32; BYTES / 4];
        for digit in s.bytes().map(|b| u64::from(b - b'0')) {
            let mut carry = digit;
            for limb in limbs.iter_mut() {
                let cur = u64::from(*limb) * 10 + carry;
                *limb = cur as u32;
                carry = cur >> 32;
            }
            if carry != 0 {
                return Err(invalid());
            }
        }
        let mut bytes = [0u8; BYTES];
        for (i, limb) in limbs.iter().rev().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&limb.to_be_bytes());
        }
        Ok(RingIndex(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(n: u64) -> RingSize {
        RingSize::new(n).expect("valid size")
    }

    #[test]
    fn valid_and_invalid_sizes() {
        for n in [8u64, 12, 16, 32, 48, 60, 64, 96, 128, 256, 512, 1000, 1024] {
            assert_eq!(size(n).get() as u64, n);
        }
        for n in [
            0u64,
            1,
            2,
            4,
            7,
            9,
            10,
            63,
            65,
            1025,
            1028,
            2048,
            4096,
            u64::MAX,
        ] {
            let err = RingSize::new(n).expect_err("must be refused");
            assert_eq!(
                err.to_string(),
                format!("invalid ring size {n}: it must be a multiple of 4 from 8 to 1024")
            );
        }
        assert_eq!(RingSize::default(), size(64));
    }

    #[test]
    fn tutorial_partition_53() {
        let ring = size(64);
        let idx = ring.index(PartitionId(53));
        assert_eq!(
            idx.to_string(),
            "1210306043414653979137426502093171875652569137152"
        );
        assert_eq!(
            ring.parse_partition(&idx.to_string()).ok(),
            Some(PartitionId(53))
        );
    }

    #[test]
    fn sizes_that_do_not_divide_the_keyspace() {
        // floor(2^160 / 48), riak's ring_increment, is partition 1's index;
        // partition 16's is 16 times it, 5 short of floor(2^160 / 3).
        let ring = size(48);
        assert_eq!(
            ring.index(PartitionId(1)).to_string(),
            "30447950777727144129243434014922562909498594645"
        );
        assert_eq!(
            ring.index(PartitionId(16)).to_string(),
            "487167212443634306067894944238761006551977514320"
        );
        // The highest hash is in the last arc, so it belongs to partition 0;
        // the highest hash of partition 47's arc is the index of 47 minus one.
        assert_eq!(ring.partition_of(&KeyHash([0xff; 20])), PartitionId(0));
        let i47 = ring.index(PartitionId(47));
        assert_eq!(ring.partition_of(&KeyHash(i47.0)), PartitionId(0));
        let mut below = i47.0;
        let mut i = BYTES;
        while i > 0 {
            i -= 1;
            let (v, borrow) = below[i].overflowing_sub(1);
            below[i] = v;
            if !borrow {
                break;
            }
        }
        assert_eq!(ring.partition_of(&KeyHash(below)), PartitionId(47));
        // An index of a 64 ring that is not one of a 48 ring.
        let odd = size(64).index(PartitionId(1)).to_string();
        assert!(ring.parse_partition(&odd).is_err());
    }

    #[test]
    fn edge_hashes() {
        for ring in [8u64, 12, 24, 64, 100, 1020, 1024].map(size) {
            let last = PartitionId(ring.get() - 1);
            assert_eq!(ring.partition_of(&KeyHash([0; 20])), PartitionId(1));
            assert_eq!(ring.partition_of(&KeyHash([0xff; 20])), PartitionId(0));
            // A hash equal to an index belongs to the next partition.
            assert_eq!(
                ring.partition_of(&KeyHash(ring.index(last).0)),
                PartitionId(0)
            );
            assert_eq!(
                ring.partition_of(&KeyHash(ring.index(PartitionId(3)).0)),
                PartitionId(4)
            );
        }
    }

    #[test]
    fn decimal_edges() {
        assert_eq!(RingIndex::default().to_string(), "0");
        assert_eq!(
            RingIndex::MAX.to_string(),
            "1461501637330902918203684832716283019655932542975"
        );
        assert_eq!(
            "1461501637330902918203684832716283019655932542975"
                .parse::<RingIndex>()
                .ok(),
            Some(RingIndex::MAX)
        );
        assert!(
            "1461501637330902918203684832716283019655932542976"
                .parse::<RingIndex>()
                .is_err()
        );
        for bad in ["", "-1", "1e3", " 1", "0x10", "١"] {
            assert!(bad.parse::<RingIndex>().is_err(), "{bad:?}");
        }
        let ring = size(64);
        assert_eq!(ring.parse_partition("0").ok(), Some(PartitionId(0)));
        let err = ring.parse_partition("1").expect_err("not an index");
        assert_eq!(
            err.to_string(),
            "\"1\" is not a partition index of this ring"
        );
        // An index of a 128 ring that is not one of a 64 ring.
        let odd = size(128).index(PartitionId(1)).to_string();
        assert!(ring.parse_partition(&odd).is_err());
    }

    #[test]
    fn sha1_known_vector() {
        // SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d
        let h = hash_key(b"abc");
        assert_eq!(&h.0[..4], &[0xa9, 0x99, 0x3e, 0x36]);
        // 0xa9 = 169 → partition 169 >> 2 = 42 of a 64 ring, then the next.
        assert_eq!(size(64).partition_of(&h), PartitionId(43));
    }
}
