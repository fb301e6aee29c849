//! Routing by ownership: a command for a partition goes to the vnode on the
//! node that owns it, here or over the peer stream; a coverage request is
//! split by owner, one batch per node. Requests that reach a node that no
//! longer owns the partition are forwarded to the owner it knows, at most
//! [`MAX_HOPS`] times.

use std::collections::BTreeMap;
use std::sync::Arc;

use flavio_proto::v1 as pb;

use super::view::View;
use crate::request::{CoverageSink, Dispatch};
use crate::ring::{PartitionId, RingSize};
use crate::rpc::peer::Peers;
use crate::vnode::{Replier, Vnode, VnodeMaster, Wire};
use crate::{Error, Result};

/// How often a request may be forwarded before it is refused: enough for
/// one stale hop and one flip, without looping on disagreeing rings.
pub const MAX_HOPS: u32 = 3;

/// Encoded reply to a command.
pub type EncodedReply = Box<dyn FnOnce(Result<Vec<u8>>) + Send>;
/// Receives encoded coverage answers.
pub type EncodedSink = Arc<dyn Fn(PartitionId, Result<Vec<u8>>) + Send + Sync>;

/// Sends vnode traffic to owners.
pub struct Router<V: Vnode> {
    me: Arc<str>,
    view: View,
    master: VnodeMaster<V>,
    peers: Arc<Peers>,
    names: Vec<Arc<str>>,
}

fn error_from_pb(e: pb::Error) -> Error {
    match tonic::Code::from_i32(e.code) {
        tonic::Code::Unimplemented => Error::UnknownCommand {
            partition: "-".into(),
            command: e.message,
        },
        tonic::Code::InvalidArgument => Error::InvalidArgument(e.message),
        tonic::Code::FailedPrecondition => Error::FailedPrecondition(e.message),
        _ => Error::Rpc(e.message),
    }
}

/// The wire form of an error.
pub fn error_to_pb(e: &Error) -> pb::Error {
    pb::Error {
        code: e.code() as i32,
        message: e.to_string(),
    }
}

impl<V: Vnode> Router<V> {
    /// Routes for node `me`.
    pub fn new(me: &str, view: View, master: VnodeMaster<V>, peers: Arc<Peers>) -> Self {
        let size = master.ring_size();
        let names = size
            .partitions()
            .map(|p| Arc::clone(master.partition_name(p)))
            .collect();
        Router {
            me: Arc::from(me),
            view,
            master,
            peers,
            names,
        }
    }

    /// The local vnode master.
    pub fn master(&self) -> &VnodeMaster<V> {
        &self.master
    }

    /// Runs an encoded command at the owner of `p`, forwarding at most
    /// [`MAX_HOPS`] times.
    pub fn command_encoded(&self, p: PartitionId, cmd: Vec<u8>, hops: u32, reply: EncodedReply) {
        let snap = self.view.current();
        let owner = snap.owner(p);
        if *owner == *self.me {
            self.master.command_encoded(p, &cmd, reply);
            return;
        }
        if hops >= MAX_HOPS {
            reply(Err(Error::Rpc(format!(
                "partition {p} was forwarded {hops} times without reaching its owner; the ring is converging, retry"
            ))));
            return;
        }
        let Some(addr) = snap.addr(&owner) else {
            reply(Err(Error::Rpc(format!(
                "owner {owner} of partition {p} has no address"
            ))));
            return;
        };
        self.peers.send(
            addr,
            pb::PeerRequest {
                id: 0,
                partition: p.0,
                kind: Some(pb::peer_request::Kind::Command(cmd)),
                partitions: Vec::new(),
                handoff_session: 0,
                hops: hops + 1,
            },
            Box::new(move |r| {
                reply(match r {
                    Ok(pb::peer_reply::Result::Reply(b)) => Ok(b),
                    Ok(pb::peer_reply::Result::Error(e)) => Err(error_from_pb(e)),
                    Ok(pb::peer_reply::Result::Coverage(_)) => {
                        Err(Error::Rpc("coverage answer to a command".into()))
                    }
                    Err(e) => Err(e),
                })
            }),
        );
    }

    /// Runs an encoded coverage request on every partition in `partitions`,
    /// at their owners.
    pub fn coverage_encoded(
        &self,
        partitions: Vec<PartitionId>,
        req: Vec<u8>,
        hops: u32,
        sink: EncodedSink,
    ) {
        let snap = self.view.current();
        let mut by_owner: BTreeMap<Arc<str>, Vec<PartitionId>> = BTreeMap::new();
        for p in partitions {
            by_owner.entry(snap.owner(p)).or_default().push(p);
        }
        for (owner, parts) in by_owner {
            if *owner == *self.me {
                for p in parts {
                    let sink = Arc::clone(&sink);
                    self.master
                        .coverage_encoded(p, &req, Box::new(move |r| sink(p, r)));
                }
                continue;
            }
            let addr = snap.addr(&owner).map(str::to_string);
            let fail_all = |parts: &[PartitionId], e: &Error, sink: &EncodedSink| {
                for p in parts {
                    sink(*p, Err(Error::Rpc(e.to_string())));
                }
            };
            let (Some(addr), true) = (addr, hops < MAX_HOPS) else {
                let e = Error::Rpc(format!("cannot reach owner {owner}"));
                fail_all(&parts, &e, &sink);
                continue;
            };
            let sink = Arc::clone(&sink);
            let asked = parts.clone();
            self.peers.send(
                &addr,
                pb::PeerRequest {
                    id: 0,
                    partition: 0,
                    kind: Some(pb::peer_request::Kind::Coverage(req.clone())),
                    partitions: parts.iter().map(|p| p.0).collect(),
                    handoff_session: 0,
                    hops: hops + 1,
                },
                Box::new(move |r| match r {
                    Ok(pb::peer_reply::Result::Coverage(c)) => {
                        for item in c.items {
                            let p = PartitionId(item.partition);
                            match item.result {
                                Some(pb::coverage_item::Result::Reply(b)) => sink(p, Ok(b)),
                                Some(pb::coverage_item::Result::Error(e)) => {
                                    sink(p, Err(error_from_pb(e)))
                                }
                                None => sink(p, Err(Error::Rpc("empty coverage item".into()))),
                            }
                        }
                    }
                    Ok(pb::peer_reply::Result::Error(e)) => {
                        fail_all(&asked, &error_from_pb(e), &sink)
                    }
                    Ok(pb::peer_reply::Result::Reply(_)) => fail_all(
                        &asked,
                        &Error::Rpc("command answer to coverage".into()),
                        &sink,
                    ),
                    Err(e) => fail_all(&asked, &e, &sink),
                }),
            );
        }
    }
}

impl<V: Vnode> Dispatch<V> for Router<V> {
    fn ring_size(&self) -> RingSize {
        self.master.ring_size()
    }

    fn partition_name(&self, p: PartitionId) -> Arc<str> {
        self.names
            .get(p.0 as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(p.to_string()))
    }

    fn owner(&self, p: PartitionId) -> Arc<str> {
        self.view.current().owner(p)
    }

    fn command(&self, p: PartitionId, cmd: V::Command, reply: Replier<V::Reply>) {
        // The local path stays typed: no encoding for partitions owned here.
        if *self.view.current().owner(p) == *self.me {
            self.master.command(p, cmd, reply);
            return;
        }
        let mut buf = Vec::new();
        cmd.encode(&mut buf);
        self.command_encoded(
            p,
            buf,
            0,
            Box::new(move |r| reply(p, r.and_then(|b| V::Reply::decode(&b)))),
        );
    }

    fn coverage(
        &self,
        partitions: Vec<PartitionId>,
        req: Arc<V::CoverageRequest>,
        sink: CoverageSink<V::CoverageReply>,
    ) {
        let snap = self.view.current();
        let (local, remote): (Vec<PartitionId>, Vec<PartitionId>) = partitions
            .into_iter()
            .partition(|p| *snap.owner(*p) == *self.me);
        for p in local {
            let sink = Arc::clone(&sink);
            self.master
                .coverage(p, Arc::clone(&req), Box::new(move |p, r| sink(p, r)));
        }
        if remote.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        req.encode(&mut buf);
        self.coverage_encoded(
            remote,
            buf,
            0,
            Arc::new(move |p, r| sink(p, r.and_then(|b| V::CoverageReply::decode(&b)))),
        );
    }
}
