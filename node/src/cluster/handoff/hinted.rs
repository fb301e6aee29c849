//! Fallback vnodes and hinted handoff, as riak_core does them.
//!
//! A *fallback* vnode of partition P runs on a node that does not own P,
//! standing in for P's owner while the owner is down (the annotated
//! preference list names it, see `ring::apl`). It takes the commands meant
//! for the owner, its data is persisted like any vnode's, and a marker in
//! the node's metadata (`fallback/P`) says why the node keeps it, so it
//! survives a restart of its node (see `cluster::local`).
//!
//! When the owner answers heartbeats again, the fallback hands its data
//! over in *hints*:
//! 1. **seal**: in one step on the vnode's task, the vnode's items are
//!    taken, its data deleted and the items written as a hint record
//!    `hint/P/ID` under a fresh random id, in one atomic store batch: the
//!    data is in the vnode or in the hint, never both, never neither. The
//!    vnode goes on serving; what it takes later makes a new hint;
//! 2. **deliver**: the hint goes to P's owner *now* (which may have changed
//!    since the fallback started: a join, a leave, a force-replace), which
//!    merges the items with the vnode's handoff merge and records ID in one
//!    atomic batch, unless ID is recorded already, and answers once that is
//!    durable;
//! 3. **forget**: on the answer the sender deletes the record. A crash of
//!    either side at any point, or a cut connection, leaves the record to be
//!    delivered again, and the receiver's record of ID makes a second
//!    delivery a no-op: the data is added exactly once. The record goes
//!    with the data: an ownership handoff of P carries the ids merged into
//!    the copy it sends ([`merged_hints`], in the handoff's finish) and the
//!    receiver records them before it acknowledges, so a hint whose answer
//!    was lost is not merged a second time by P's next owner (the simulator
//!    found that: a merge, its answer lost, a join moving P, the hint again);
//! 4. **retire**: an empty fallback with no hint left, whose owner is up, is
//!    switched to redirect in one step on its task (no command slips in
//!    between) and its marker removed.
//!
//! Every node runs a round of this every [`HINT_INTERVAL`], one hint at a
//! time, each holding one of the node's outbound handoff slots, so the
//! handoff concurrency limit covers hinted and ownership transfers alike.
//!
//! A node that receives an ownership transfer of P while it holds a fallback
//! of P seals the fallback first: the incoming copy starts empty as
//! ownership handoff requires, and the hint reaches whoever owns P after the
//! flip (this node itself, then, merging it locally).
//!
//! Left out: streaming large hints (a hint is one message; a flavio vnode's
//! state is one counter); pruning the receiver's records of merged ids (a
//! few bytes per delivered hint); and the hints of a node removed from the
//! cluster that no owner takes in the one round it runs before it wipes its
//! data: they go with the rest.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Host, Progress, lock, redirector};
use crate::cluster::router::{EncodedReply, FallbackDone};
use crate::cluster::transport::Hint;
use crate::ring::PartitionId;
use crate::vnode::{Mode, Store, Vnode, Write};
use crate::{Error, Result};

/// How often a node seals, delivers and retires.
pub const HINT_INTERVAL: Duration = Duration::from_millis(500);
/// How long one delivery may take before it is tried again later.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

const FALLBACK_PREFIX: &str = "fallback/";
const HINT_PREFIX: &str = "hint/";

fn fallback_key(p: PartitionId) -> String {
    format!("{FALLBACK_PREFIX}{}", p.0)
}

fn hint_key(p: PartitionId, id: u64) -> String {
    format!("{HINT_PREFIX}{}/{id:016x}", p.0)
}

const MERGED_PREFIX: &str = "hint-merged/";

fn merged_key(p: PartitionId, id: u64) -> String {
    format!("{MERGED_PREFIX}{}/{id:016x}", p.0)
}

/// The ids of the hints merged into this node's copy of `p`. An ownership
/// handoff carries them with the data (see [`record_merged`]): the record
/// of a merge belongs to the copy that holds its items, or a hint whose
/// acknowledgement was lost would be merged again by the next owner.
pub fn merged_hints(store: &Store, p: PartitionId) -> Result<Vec<u64>> {
    let prefix = format!("{MERGED_PREFIX}{}/", p.0);
    store
        .meta_with_prefix(&prefix)?
        .into_iter()
        .map(|(k, _)| {
            k.strip_prefix(&prefix)
                .and_then(|id| u64::from_str_radix(id, 16).ok())
                .ok_or_else(|| Error::Corrupt {
                    what: format!("merged-hint record {k:?}"),
                    message: "the key does not end in a hint id".into(),
                })
        })
        .collect()
}

/// Records the hints merged into the copy of `p` this node received.
pub fn record_merged(store: &Store, p: PartitionId, ids: &[u64]) -> Result<()> {
    for id in ids {
        store.put_meta(&merged_key(p, *id), b"")?;
    }
    Ok(())
}

/// A hint's items as one record: a count, then each item with its length.
pub fn encode_items(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + items.iter().map(|i| 4 + i.len()).sum::<usize>());
    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
    for i in items {
        out.extend_from_slice(&(i.len() as u32).to_be_bytes());
        out.extend_from_slice(i);
    }
    out
}

/// The items of a record made by [`encode_items`]; an error says what is
/// corrupt.
pub fn decode_items(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let corrupt = |message: &str| Error::Corrupt {
        what: "hint record".into(),
        message: message.into(),
    };
    let mut at = 0usize;
    let u32_at = |at: &mut usize| -> Result<usize> {
        let b = bytes
            .get(*at..*at + 4)
            .ok_or_else(|| corrupt("truncated length"))?;
        *at += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let n = u32_at(&mut at)?;
    let mut items = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let len = u32_at(&mut at)?;
        let item = bytes
            .get(at..at + len)
            .ok_or_else(|| corrupt("truncated item"))?;
        items.push(item.to_vec());
        at += len;
    }
    if at != bytes.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(items)
}

/// The partitions whose fallback marker `store` holds.
pub fn stored_fallbacks(store: &Store) -> Result<Vec<PartitionId>> {
    let mut out = Vec::new();
    for (k, _) in store.meta_with_prefix(FALLBACK_PREFIX)? {
        if let Some(p) = k.strip_prefix(FALLBACK_PREFIX).and_then(|s| s.parse().ok()) {
            out.push(PartitionId(p));
        }
    }
    Ok(out)
}

/// Removes the fallback marker of `p`, durably, and forgets it in memory.
pub fn forget_fallback<H: Host>(c: &H, p: PartitionId) -> Result<()> {
    c.store().delete_meta(&fallback_key(p))?;
    lock(&c.handoffs().fallbacks).remove(&p.0);
    Ok(())
}

/// Deletes every sealed hint (a node removed from its cluster).
pub fn drop_hints(store: &Store) -> Result<()> {
    for (k, _) in store.meta_with_prefix(HINT_PREFIX)? {
        tracing::warn!(key = %k, "dropping a hint: this node left its cluster");
        store.delete_meta(&k)?;
    }
    Ok(())
}

/// A sealed hint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHint {
    /// The partition.
    pub partition: PartitionId,
    /// Its id.
    pub id: u64,
    /// The items.
    pub items: Vec<Vec<u8>>,
}

/// Every sealed hint `store` holds, by partition then id.
pub fn stored_hints(store: &Store) -> Result<Vec<StoredHint>> {
    let mut out = Vec::new();
    for (k, v) in store.meta_with_prefix(HINT_PREFIX)? {
        let parsed = k.strip_prefix(HINT_PREFIX).and_then(|rest| {
            let (p, id) = rest.split_once('/')?;
            Some((p.parse().ok()?, u64::from_str_radix(id, 16).ok()?))
        });
        let Some((p, id)) = parsed else {
            tracing::warn!(key = %k, "ignoring a hint record with a malformed key");
            continue;
        };
        out.push(StoredHint {
            partition: PartitionId(p),
            id,
            items: decode_items(&v)?,
        });
    }
    Ok(out)
}

/// Runs an encoded command on this node's fallback vnode of `p`, starting
/// it (marker first) if needed. Owned here after all (the ring moved since
/// the preference list was made), the primary takes it.
pub fn fallback_command<H: Host>(c: &H, p: PartitionId, cmd: Vec<u8>, reply: EncodedReply) {
    let h = c.handoffs();
    let owned = c.ring().ring.owner(p) == c.me();
    if owned || (h.is_fallback(p) && c.master().is_running(p)) {
        return c.master().command_encoded(p, &cmd, reply);
    }
    let c2 = c.clone();
    c.spawn_task(async move {
        match become_fallback(&c2, p).await {
            Ok(()) => c2.master().command_encoded(p, &cmd, reply),
            Err(e) => reply(Err(e)),
        }
    });
}

/// Runs an encoded coverage request on this node's fallback vnodes of
/// those of `partitions` it holds one of; `done` gets their answers (none
/// when it holds none).
pub fn fallback_coverage<H: Host>(
    c: &H,
    partitions: Vec<PartitionId>,
    req: Vec<u8>,
    done: FallbackDone,
) {
    let h = c.handoffs();
    let mine: Vec<PartitionId> = partitions
        .into_iter()
        .filter(|p| h.is_fallback(*p) && c.master().is_running(*p))
        .collect();
    if mine.is_empty() {
        return done(Vec::new());
    }
    let want = mine.len();
    let acc = Arc::new(std::sync::Mutex::new((
        Vec::with_capacity(want),
        Some(done),
    )));
    for p in mine {
        let acc = Arc::clone(&acc);
        c.master().coverage_encoded(
            p,
            &req,
            Box::new(move |r| {
                let mut a = lock(&acc);
                a.0.push((p, r));
                if a.0.len() == want
                    && let Some(done) = a.1.take()
                {
                    let answers = std::mem::take(&mut a.0);
                    drop(a);
                    done(answers);
                }
            }),
        );
    }
}

/// Makes this node's vnode of `p` a fallback: durable marker, running,
/// serving. Refused while an ownership handoff of `p` involves this node.
async fn become_fallback<H: Host>(c: &H, p: PartitionId) -> Result<()> {
    let h = c.handoffs();
    let _g = h.fallback_lock.lock().await;
    if c.ring().ring.owner(p) == c.me() || (h.is_fallback(p) && c.master().is_running(p)) {
        return Ok(());
    }
    if h.outbound_active(p) || h.incoming(p).is_some() {
        return Err(Error::Busy(format!(
            "partition {p} is in an ownership handoff on {}; it cannot stand in for its owner now",
            c.me()
        )));
    }
    c.store().put_meta(&fallback_key(p), b"")?;
    let serving = async {
        c.master().ensure_started(p)?;
        if h.unmark_redirected(p) {
            c.master()
                .control(p, |_, _, mode| *mode = Mode::Normal)
                .await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    // Listed after the switch to normal (and listed even when it failed, as
    // the marker is): `fallback_command` sends straight to a running vnode
    // listed here, without this lock. Listed before the switch, a vnode
    // still redirecting (the copy a join released, or a retired fallback)
    // could take a command ahead of the switch and send it on to the owner,
    // who is down: the add would fail for no reason.
    lock(&h.fallbacks).insert(p.0);
    serving?;
    tracing::info!(partition = %p, owner = %c.ring().ring.owner(p), "fallback vnode started");
    Ok(())
}

/// Seals the data of the vnode of `p` into a hint (see the module docs);
/// the hint's id, or `None` when there was nothing to seal.
async fn seal<H: Host>(c: &H, p: PartitionId) -> Result<Option<u64>> {
    let id = c.random(1..u64::MAX);
    let key = hint_key(p, id);
    let sealed = c
        .master()
        .control(p, move |v, ctx, mode| -> Result<bool> {
            if !matches!(mode, Mode::Normal) {
                return Ok(false);
            }
            let items = v.handoff_items()?;
            if items.is_empty() {
                return Ok(false);
            }
            // Deleted first, then the record: the store commits a
            // delete-all and the writes after it as one batch.
            v.delete(ctx)?;
            ctx.stage(Write::PutMeta(key, encode_items(&items)));
            Ok(true)
        })
        .await??;
    if !sealed {
        return Ok(None);
    }
    c.master().barrier(p).await?;
    Ok(Some(id))
}

/// Before an incoming ownership copy of `p` starts on this node: a fallback
/// of `p` here is sealed and forgotten (see the module docs).
pub async fn seal_for_incoming<H: Host>(c: &H, p: PartitionId) -> Result<()> {
    let h = c.handoffs();
    let _g = h.fallback_lock.lock().await;
    if !h.is_fallback(p) {
        return Ok(());
    }
    if c.master().is_running(p)
        && let Some(id) = seal(c, p).await?
    {
        tracing::info!(partition = %p, hint = %format!("{id:016x}"), "sealed a fallback before receiving the partition");
    }
    forget_fallback(c, p)
}

/// Merges hint `id` of `p` into this node's vnode of `p`, unless it was
/// merged before; returns once the merge (this one or the earlier) is
/// durable. Refused (`Busy`) while this node hands `p` off.
async fn merge<H: Host>(c: &H, p: PartitionId, id: u64, items: Vec<Vec<u8>>) -> Result<()> {
    if c.handoffs().handing_off(p) {
        return Err(Error::Busy(format!(
            "{} is handing partition {p} off; deliver the hint later",
            c.me()
        )));
    }
    c.master().ensure_started(p)?;
    let store = c.store().clone();
    let merged = Arc::clone(&c.handoffs().merged);
    let key = merged_key(p, id);
    let me = c.me().to_string();
    c.master()
        .control(p, move |v, ctx, mode| -> Result<()> {
            if !matches!(mode, Mode::Normal) {
                return Err(Error::Busy(format!(
                    "partition {p} is in an ownership handoff on {me}; deliver the hint later"
                )));
            }
            // The memory set covers a second delivery handled before the
            // first one's record is durable (same task, same batch); the
            // store has it from then on.
            if lock(&merged).contains(&id) || store.get_meta(&key)?.is_some() {
                return Ok(());
            }
            for item in &items {
                v.handle_handoff_data(item, ctx)?;
            }
            ctx.stage(Write::PutMeta(key, Vec::new()));
            lock(&merged).insert(id);
            Ok(())
        })
        .await??;
    c.master().barrier(p).await?;
    lock(&c.handoffs().merged).remove(&id);
    Ok(())
}

/// Serves a hint delivered by a fallback's node: merged when this node owns
/// the partition and is not handing it off; else refused with a typed error
/// the sender retries on (`Moved`: ask the owner; `Busy`: later).
pub async fn receive_hint<H: Host>(c: &H, hint: Hint) -> Result<()> {
    let snap = c.ring();
    let p = hint.partition;
    if !hint.cluster_id.is_empty() && hint.cluster_id != snap.ring.cluster_id {
        return Err(Error::Moved(format!(
            "{} is not a member of that cluster",
            c.me()
        )));
    }
    if hint.ring_size != snap.ring.size().get() || p.0 >= snap.ring.size().get() {
        return Err(Error::InvalidArgument("hint for another ring size".into()));
    }
    let owner = snap.ring.owner(p);
    if owner != c.me() {
        return Err(Error::Moved(format!(
            "partition {p} is owned by {owner}, not {}",
            c.me()
        )));
    }
    merge(c, p, hint.id, hint.items).await?;
    tracing::info!(partition = %p, from = %hint.from, hint = %format!("{:016x}", hint.id), "hint merged");
    Ok(())
}

/// One round of hinted handoff: seal the fallbacks whose owner is up,
/// deliver every hint whose partition's owner is up (or merge it here,
/// when this node owns it now), retire what is empty.
pub async fn hint_round<H: Host>(c: &H) {
    let snap = c.ring();
    if snap.left {
        return;
    }
    let me = c.me();
    let h = c.handoffs();
    let owner_up = |p: PartitionId| {
        let o = snap.ring.owner(p);
        o != me && c.is_up(o)
    };
    for p in h.fallback_partitions() {
        if owner_up(p) && c.master().is_running(p) {
            match seal(c, p).await {
                Ok(Some(id)) => {
                    tracing::info!(partition = %p, hint = %format!("{id:016x}"), "fallback data sealed for its owner")
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(partition = %p, error = %e, "could not seal fallback data")
                }
            }
        }
    }
    let hints = match stored_hints(c.store()) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot read hints");
            return;
        }
    };
    let mut left: BTreeSet<u32> = BTreeSet::new();
    for hint in hints {
        let p = hint.partition;
        if deliver(c, &snap, hint).await {
            continue;
        }
        left.insert(p.0);
    }
    let _g = h.fallback_lock.lock().await;
    for p in h.fallback_partitions() {
        if left.contains(&p.0) {
            continue;
        }
        if snap.ring.owner(p) == me {
            // Owned here now (a forced reassignment): the data is the
            // primary's; reconcile forgets the marker.
            continue;
        }
        if !owner_up(p) {
            continue;
        }
        let redirect = redirector(c);
        let retired = c
            .master()
            .control(p, move |v, _, mode| {
                let idle = matches!(mode, Mode::Normal) && v.is_empty();
                if idle {
                    *mode = Mode::Redirect(redirect);
                }
                idle
            })
            .await;
        let forget = match retired {
            Ok(true) => {
                h.mark_redirected(p);
                true
            }
            Ok(false) => false,
            // Not running: nothing to switch, only the marker to remove.
            Err(_) => true,
        };
        if forget {
            match forget_fallback(c, p) {
                Ok(()) => tracing::info!(partition = %p, "fallback vnode retired"),
                Err(e) => tracing::warn!(partition = %p, error = %e, "could not retire fallback"),
            }
        }
    }
}

/// Delivers one hint (or merges it here); true when it is done and its
/// record deleted.
async fn deliver<H: Host>(c: &H, snap: &crate::cluster::view::Snapshot, hint: StoredHint) -> bool {
    let p = hint.partition;
    let owner = snap.ring.owner(p).to_string();
    let key = hint_key(p, hint.id);
    let result = if owner == c.me() {
        merge(c, p, hint.id, hint.items).await
    } else {
        if !c.is_up(&owner) {
            return false;
        }
        let Some(addr) = snap.addr(&owner).map(str::to_string) else {
            return false;
        };
        let Ok(_slot) = Arc::clone(&c.handoffs().out_slots).try_acquire_owned() else {
            return false;
        };
        let progress = Arc::new(Progress::new(owner.clone(), hint.id, false));
        progress
            .total
            .store(hint.items.len() as u64, Ordering::Relaxed);
        lock(&c.handoffs().hinting).insert(p.0, Arc::clone(&progress));
        let bytes: u64 = hint.items.iter().map(|i| i.len() as u64).sum();
        let items = hint.items.len() as u64;
        let msg = Hint {
            partition: p,
            id: hint.id,
            from: c.me().to_string(),
            cluster_id: snap.ring.cluster_id.clone(),
            ring_size: snap.ring.size().get(),
            items: hint.items,
        };
        let r = tokio::time::timeout(DELIVERY_TIMEOUT, c.transport().hint(&addr, msg))
            .await
            .unwrap_or_else(|_| Err(Error::Rpc(format!("hint to {owner} timed out"))));
        if r.is_ok() {
            progress.items.store(items, Ordering::Relaxed);
            progress.bytes.store(bytes, Ordering::Relaxed);
            c.handoffs().totals.done(super::Kind::Hinted, items, bytes);
        } else {
            c.handoffs().totals.failed(super::Kind::Hinted);
        }
        lock(&c.handoffs().hinting).remove(&p.0);
        r
    };
    match result {
        Ok(()) => match c.store().delete_meta(&key) {
            Ok(()) => {
                tracing::info!(partition = %p, to = %owner, hint = %format!("{:016x}", hint.id), "hinted handoff done");
                true
            }
            Err(e) => {
                tracing::warn!(partition = %p, error = %e, "could not delete a delivered hint");
                false
            }
        },
        Err(e) => {
            tracing::debug!(partition = %p, to = %owner, error = %e, "hinted handoff failed; will retry");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_records_round_trip_and_refuse_corruption() {
        for items in [vec![], vec![vec![]], vec![vec![1, 2, 3], vec![9; 300]]] {
            assert_eq!(decode_items(&encode_items(&items)).expect("decodes"), items);
        }
        let good = encode_items(&[vec![1, 2, 3]]);
        assert!(decode_items(&good[..good.len() - 1]).is_err());
        let mut long = good.clone();
        long.push(0);
        assert!(decode_items(&long).is_err());
        assert!(decode_items(&[0, 0]).is_err());
    }

    #[test]
    fn keys_sort_by_partition_and_parse_back() {
        let k = hint_key(PartitionId(12), 0xabc);
        assert_eq!(k, "hint/12/0000000000000abc");
        assert_eq!(fallback_key(PartitionId(3)), "fallback/3");
        assert_eq!(
            merged_key(PartitionId(3), 1),
            "hint-merged/3/0000000000000001"
        );
    }
}
