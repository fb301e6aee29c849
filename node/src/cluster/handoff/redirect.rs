//! Redirecting: a vnode whose partition moved away sends every command and
//! coverage request on to the partition's owner now.

use std::sync::{Arc, Mutex};

use super::Host;
use crate::cluster::router::Router;
use crate::ring::PartitionId;
use crate::sync::lock;
use crate::vnode::{Redirector, Vnode};
use crate::{Error, Result};

/// Sends everything for a partition this node no longer owns to its owner.
struct RouterRedirect<V: Vnode>(Arc<Router<V>>, String);

impl<V: Vnode> Redirector for RouterRedirect<V> {
    fn command(
        &self,
        p: PartitionId,
        cmd: Vec<u8>,
        reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>,
    ) {
        use crate::request::Dispatch;
        if *self.0.owner(p) == *self.1 {
            // Ownership came back before this vnode was switched to normal:
            // nothing was applied, and the router retries once it is.
            reply(Err(Error::Moved(format!(
                "partition {p} is moving back; retry"
            ))));
            return;
        }
        self.0.command_encoded(p, cmd, 1, reply);
    }

    fn coverage(
        &self,
        p: PartitionId,
        req: Vec<u8>,
        reply: Box<dyn FnOnce(Result<Vec<u8>>) + Send>,
    ) {
        use crate::request::Dispatch;
        if *self.0.owner(p) == *self.1 {
            reply(Err(Error::Moved(format!(
                "partition {p} is moving back; retry"
            ))));
            return;
        }
        let once = Mutex::new(Some(reply));
        self.0.coverage_encoded(
            vec![p],
            req,
            1,
            Arc::new(move |_, r| {
                if let Some(reply) = lock(&once).take() {
                    reply(r);
                }
            }),
        );
    }
}

/// A redirector to whoever owns a partition now.
pub fn redirector<H: Host>(c: &H) -> Arc<dyn Redirector> {
    Arc::new(RouterRedirect(c.router(), c.me().to_string()))
}
