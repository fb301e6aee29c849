//! Consistent hashing over the SHA-1 keyspace, as riak_core's `chash`.
//!
//! Keys hash to 160-bit integers ([`KeyHash`]). A ring of [`RingSize`]
//! partitions cuts the keyspace `0 .. 2^160` into equal arcs; partition `p`
//! is named by its index `p * 2^160 / size` ([`RingIndex`]), printed in decimal
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

/// The number of partitions of a ring: a power of two from 8 to 1024.
///
/// Fixed when a cluster is created; every node of a cluster must agree on it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RingSize(u32);

impl RingSize {
    /// The default ring size, 64, as in riak_core.
    pub const DEFAULT: RingSize = RingSize(64);
    /// The smallest ring size accepted.
    pub const MIN: u32 = 8;
    /// The largest ring size accepted.
    pub const MAX: u32 = 1024;

    /// Validates a ring size: a power of two from 8 to 1024.
    pub fn new(size: u64) -> Result<RingSize> {
        if size.is_power_of_two() && (Self::MIN as u64..=Self::MAX as u64).contains(&size) {
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

    /// log2 of the size: how many leading bits of a hash pick its partition.
    fn bits(self) -> u32 {
        self.0.trailing_zeros()
    }

    /// Every partition, in ring order from partition 0.
    pub fn partitions(self) -> impl Iterator<Item = PartitionId> {
        (0..self.0).map(PartitionId)
    }

    /// The partition a hash belongs to: the first one whose index is strictly
    /// greater than the hash, wrapping to partition 0.
    pub fn partition_of(self, hash: &KeyHash) -> PartitionId {
        // The leading `bits` bits name the partition whose arc starts at or
        // before the hash; the strict "greater than" makes it the next one.
        let below = u32::from(leading_u16(&hash.0) >> (16 - self.bits()));
        PartitionId((below + 1) % self.0)
    }

    /// The index of partition `p`: `p * 2^160 / size`.
    ///
    /// `p` is taken modulo the ring size, so any `PartitionId` has an index.
    pub fn index(self, p: PartitionId) -> RingIndex {
        debug_assert!(p.0 < self.0, "partition {p} outside a ring of {self}");
        let top = ((p.0 % self.0) as u16) << (16 - self.bits());
        let mut bytes = [0u8; BYTES];
        bytes[..2].copy_from_slice(&top.to_be_bytes());
        RingIndex(bytes)
    }

    /// The partition whose index prints as `decimal`: the inverse of
    /// `index(p).to_string()`.
    pub fn parse_partition(self, decimal: &str) -> Result<PartitionId> {
        let invalid = || Error::InvalidPartition(decimal.to_string());
        let index: RingIndex = decimal.parse().map_err(|_| invalid())?;
        // An index has only its leading `bits` bits set.
        let low_mask = u16::MAX >> self.bits();
        if leading_u16(&index.0) & low_mask != 0 || index.0[2..].iter().any(|b| *b != 0) {
            return Err(invalid());
        }
        Ok(PartitionId(u32::from(
            leading_u16(&index.0) >> (16 - self.bits()),
        )))
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

fn leading_u16(bytes: &[u8; BYTES]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
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
        for n in [8u64, 16, 32, 64, 128, 256, 512, 1024] {
            assert_eq!(size(n).get() as u64, n);
        }
        for n in [0u64, 1, 2, 4, 7, 12, 63, 65, 1000, 2048, 4096, u64::MAX] {
            let err = RingSize::new(n).expect_err("must be refused");
            assert_eq!(
                err.to_string(),
                format!("invalid ring size {n}: it must be a power of two from 8 to 1024")
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
    fn edge_hashes() {
        for ring in [8u64, 64, 1024].map(size) {
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
