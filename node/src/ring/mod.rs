//! The consistent-hash ring, as riak_core's `chash`, `claim` and `apl` define it.
//!
//! The keyspace is the 2^160 integers of SHA-1. A ring of `size` partitions (a
//! multiple of 4; riak's are powers of two) cuts it into equal arcs (the last
//! also takes the fewer than `size` points left over); partition `p` starts
//! at index `p * floor(2^160 / size)`. A key belongs to the first partition
//! whose index is strictly greater than its hash. Claim decides which member owns each
//! partition; a preference list is a partition and its successors.
//!
//! - [`chash`]: ring sizes, key hashes, partition indices and their decimal form.
//! - [`mod@claim`]: spread (replicas on distinct nodes), balanced, least-movement
//!   assignment of partitions.
//! - [`state`]: [`Ring`], the owner of every partition.
//! - [`apl`]: preference lists, plain and annotated with fallbacks for down nodes.
//!
//! Everything here is pure and synchronous: no I/O, no clocks, no tokio.
//! Membership states, versions and gossip belong to the cluster layer.

pub mod apl;
pub mod chash;
pub mod claim;
pub mod state;

pub use apl::{Replica, Role};
pub use chash::{KeyHash, PartitionId, RingIndex, RingSize, hash_key};
pub use claim::{Claim, ClaimPath, DEFAULT_TARGET_N_VAL, claim};
pub use state::Ring;
