//! The receiving side of a handoff: a clean copy filled from the stream,
//! made durable and marked before the sender may ask for the flip; and the
//! commands a handing-off sender forwards to that copy meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Host, Progress, delete_marker, lock, put_marker};
use crate::cluster::transport::{HandoffAck, HandoffInbound, HandoffMessage};
use crate::ring::PartitionId;
use crate::vnode::Vnode;
use crate::{Error, Result};

/// The receiving side of one handoff stream: `inbound` brings the sender's
/// messages, `out` takes the acknowledgements, or the error that ended it.
pub async fn receive<H: Host>(
    c: H,
    mut inbound: HandoffInbound,
    out: mpsc::Sender<Result<HandoffAck>>,
) {
    let result = receive_inner(&c, &mut inbound, &out).await;
    if let Err(e) = result {
        tracing::info!(error = %e, "inbound handoff failed");
        let _ = out.send(Err(e)).await;
    }
}

async fn receive_inner<H: Host>(
    c: &H,
    inbound: &mut HandoffInbound,
    out: &mpsc::Sender<Result<HandoffAck>>,
) -> Result<()> {
    let next = |m: Option<Result<HandoffMessage>>| match m {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(Error::Rpc(format!("handoff stream: {e}"))),
        None => Err(Error::Rpc("handoff stream ended early".into())),
    };
    let HandoffMessage::Start(start) = next(inbound.next().await)? else {
        return Err(Error::InvalidArgument("a handoff starts with Start".into()));
    };
    let p = start.partition;
    let snap = c.ring();
    if start.ring_size != snap.ring.size().get() || p.0 >= snap.ring.size().get() {
        return Err(Error::InvalidArgument(
            "handoff for another ring size".into(),
        ));
    }
    if start.to != c.me() {
        return Err(Error::InvalidArgument(format!(
            "handoff meant for {}, not {}",
            start.to,
            c.me()
        )));
    }
    let listed = snap
        .ring
        .pending_of(p)
        .is_some_and(|t| t.from == start.from && t.to == c.me());
    if !listed {
        if snap.ring.owner(p) == c.me() && snap.ring.pending_of(p).is_none() {
            return Err(Error::FailedPrecondition(format!(
                "{} already owns partition {p}",
                c.me()
            )));
        }
        // Only a transfer this node's own ring lists: that is what lets a
        // later ring without it mean "flipped or cancelled" (see
        // `cluster::local`). A receiver behind the sender learns the ring
        // by the sender's next gossip; the sender asks again.
        return Err(Error::Moved(format!(
            "the ring of {} (v{}) does not list the transfer of partition {p} from {}; retry once the rings agree",
            c.me(),
            snap.ring.version,
            start.from
        )));
    }
    let _permit = Arc::clone(&c.handoffs().in_slots)
        .try_acquire_owned()
        .map_err(|_| {
            Error::Busy(format!(
                "{} is receiving as many transfers as it may",
                c.me()
            ))
        })?;
    // Known as incoming before the copy is emptied, so that no ring change
    // in between takes the vnode for a leftover and releases it.
    let progress = Arc::new(Progress::new(start.from.clone(), start.session, true));
    lock(&c.handoffs().inbound).insert(p.0, Arc::clone(&progress));
    let _streaming = StreamOpen(Arc::clone(&progress));
    // A fallback of `p` here gives its data to a hint first: the copy
    // must start empty, and the hint reaches the owner after the flip.
    super::hinted::seal_for_incoming(c, p).await?;
    // From scratch: whatever an earlier attempt left is gone first. The
    // reset also ends a redirect left from an earlier release of `p`.
    delete_marker(c.store(), p)?;
    c.master().reset(p).await?;
    c.handoffs().unmark_redirected(p);
    let gone = || Error::Rpc("sender went away".into());
    out.send(Ok(HandoffAck::Started))
        .await
        .map_err(|_| gone())?;
    loop {
        match next(inbound.next().await)? {
            HandoffMessage::Item(item) => {
                progress.items.fetch_add(1, Ordering::Relaxed);
                progress
                    .bytes
                    .fetch_add(item.len() as u64, Ordering::Relaxed);
                c.master()
                    .with_vnode(p, move |v, ctx| v.handle_handoff_data(&item, ctx))
                    .await??;
            }
            HandoffMessage::Finish {
                items,
                merged_hints,
            } => {
                let got = progress.items.load(Ordering::Relaxed);
                if items != got {
                    return Err(Error::Rpc(format!(
                        "handoff of {p} sent {items} items, received {got}"
                    )));
                }
                c.master().barrier(p).await?;
                // Before the ack: once the sender may flip, a hint merged
                // into these items must count as merged here.
                super::hinted::record_merged(c.store(), p, &merged_hints)?;
                put_marker(c.store(), p, start.session)?;
                out.send(Ok(HandoffAck::Finished(got)))
                    .await
                    .map_err(|_| gone())?;
                return Ok(());
            }
            HandoffMessage::Start(_) => {
                return Err(Error::InvalidArgument("second Start".into()));
            }
        }
    }
}

/// Marks the incoming copy's stream ended when the receive ends, however it
/// ends.
struct StreamOpen(Arc<Progress>);

impl Drop for StreamOpen {
    fn drop(&mut self) {
        self.0.receiving.store(false, Ordering::SeqCst);
    }
}

/// A command forwarded by a handing-off sender: applied to the receiving
/// copy of its session only.
pub fn forwarded_command<H: Host>(
    c: &H,
    p: PartitionId,
    session: u64,
    cmd: &[u8],
    reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>,
) {
    // Only the copy of this very session: a late copy from an abandoned
    // attempt was part of the snapshot of the attempt that replaced it.
    if c.handoffs().inbound_session(p) == Some(session) {
        c.master().command_encoded(p, cmd, reply);
    } else {
        reply(Err(Error::FailedPrecondition(format!(
            "no handoff session {session} for partition {p} here"
        ))));
    }
}
