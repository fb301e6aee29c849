//! TEMPORARY minimal apl; replaced on merge.
#![allow(missing_docs)]
use super::chash::{PartitionId, RingSize};
pub fn primaries(size: RingSize, first: PartitionId, n: usize) -> crate::Result<Vec<PartitionId>> {
    if n == 0 || n > size.get() as usize {
        return Err(crate::Error::InvalidArgument(format!(
            "n_val {n} must be between 1 and the ring size {size}"
        )));
    }
    let mut out = Vec::with_capacity(n);
    let mut p = first;
    for _ in 0..n {
        out.push(p);
        p = size.successor(p);
    }
    Ok(out)
}
