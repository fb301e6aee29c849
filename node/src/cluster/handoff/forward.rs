//! The copies a forwarding vnode makes during a handoff, sent to the
//! receiving copy of its session and counted until acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::cluster::transport::{PeerAnswer, PeerCall, Transport};
use crate::ring::PartitionId;
use crate::vnode::Forwarder;

/// Sends the copies a forwarding vnode makes to the receiver's copy, and
/// keeps count of those not yet acknowledged.
pub(super) struct SessionForwarder {
    pub(super) transport: Arc<dyn Transport>,
    pub(super) addr: String,
    pub(super) session: u64,
    pub(super) outstanding: AtomicUsize,
    pub(super) failed: AtomicBool,
    pub(super) idle: Notify,
}

impl SessionForwarder {
    fn done(&self, ok: bool) {
        if !ok {
            self.failed.store(true, Ordering::SeqCst);
        }
        if self.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub(super) async fn drained(&self) -> bool {
        loop {
            let notified = self.idle.notified();
            if self.outstanding.load(Ordering::SeqCst) == 0 {
                return !self.failed.load(Ordering::SeqCst);
            }
            if tokio::time::timeout(Duration::from_secs(10), notified)
                .await
                .is_err()
            {
                return false;
            }
        }
    }
}

pub(super) struct ArcForwarder(pub(super) Arc<SessionForwarder>);

impl Forwarder for ArcForwarder {
    fn forward(&self, p: PartitionId, cmd: Vec<u8>) {
        let f = Arc::clone(&self.0);
        f.outstanding.fetch_add(1, Ordering::SeqCst);
        let back = Arc::clone(&f);
        f.transport.send(
            &f.addr,
            PeerCall::Command {
                partition: p,
                cmd,
                hops: 0,
                cluster_id: String::new(),
                session: f.session,
                fallback: false,
            },
            Box::new(move |r| {
                back.done(matches!(r, Ok(PeerAnswer::Reply(_))));
            }),
        );
    }
}
