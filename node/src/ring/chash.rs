//! TEMPORARY minimal chash for main while the ring branch is written; replaced on merge.
#![allow(missing_docs)]
use sha1::{Digest, Sha1};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingSize(u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId(pub u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 20]);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingIndex([u8; 20]);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl fmt::Display for RingSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

pub fn hash_key(bytes: &[u8]) -> KeyHash {
    KeyHash(Sha1::digest(bytes).into())
}

impl RingSize {
    pub const DEFAULT: RingSize = RingSize(64);
    pub fn new(size: u64) -> crate::Result<RingSize> {
        if (8..=1024).contains(&size) && size.is_power_of_two() {
            Ok(RingSize(size as u32))
        } else {
            Err(crate::Error::InvalidRingSize(size))
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
    pub fn partitions(self) -> impl Iterator<Item = PartitionId> {
        (0..self.0).map(PartitionId)
    }
    pub fn partition_of(self, hash: &KeyHash) -> PartitionId {
        let bits = self.0.trailing_zeros();
        let top = u32::from(u16::from_be_bytes([hash.0[0], hash.0[1]])) >> (16 - bits);
        PartitionId((top + 1) % self.0)
    }
    pub fn index(self, p: PartitionId) -> RingIndex {
        let bits = self.0.trailing_zeros();
        let v = (p.0 << (16 - bits)) as u16;
        let mut b = [0u8; 20];
        b[0..2].copy_from_slice(&v.to_be_bytes());
        RingIndex(b)
    }
    pub fn parse_partition(self, decimal: &str) -> crate::Result<PartitionId> {
        self.partitions()
            .find(|p| self.index(*p).to_string() == decimal)
            .ok_or_else(|| crate::Error::InvalidPartition(decimal.to_string()))
    }
    pub fn successor(self, p: PartitionId) -> PartitionId {
        PartitionId((p.0 + 1) % self.0)
    }
}

impl fmt::Display for RingIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut limbs = [0u32; 5];
        for (i, l) in limbs.iter_mut().enumerate() {
            *l = u32::from_be_bytes([
                self.0[i * 4],
                self.0[i * 4 + 1],
                self.0[i * 4 + 2],
                self.0[i * 4 + 3],
            ]);
        }
        if limbs.iter().all(|l| *l == 0) {
            return f.write_str("0");
        }
        let mut digits = Vec::new();
        while limbs.iter().any(|l| *l != 0) {
            let mut rem: u64 = 0;
            for l in limbs.iter_mut() {
                let cur = (rem << 32) | u64::from(*l);
                *l = (cur / 10) as u32;
                rem = cur % 10;
            }
            digits.push(b'0' + rem as u8);
        }
        digits.reverse();
        f.write_str(&String::from_utf8_lossy(&digits))
    }
}
