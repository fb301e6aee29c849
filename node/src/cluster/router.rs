//! Routing by ownership: a command for a partition goes to the vnode on the
//! node that owns it, here or over the peer stream; a coverage request is
//! split by owner, one batch per node. Requests that reach a node that no
//! longer owns the partition are forwarded to the owner it knows, at most
//! [`MAX_HOPS`] times. A node removed from its cluster routes nothing
//! (`Error::Left`) until it joins one again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::transport::{PeerAnswer, PeerCall, Transport};
use super::view::View;
use super::watcher::Liveness;
use crate::request::{Answers, CoverageSink, Dispatch};
use crate::ring::{PartitionId, Replica, RingSize, Role, apl};
use crate::vnode::{Replier, Vnode, VnodeMaster, Wire};
use crate::{Error, Result};

/// How often a request may be forwarded before it is refused: enough for
/// one stale hop and one flip, without looping on disagreeing rings.
pub const MAX_HOPS: u32 = 3;

/// Encoded reply to a command.
pub type EncodedReply = Box<dyn FnOnce(Result<Vec<u8>>) + Send>;
/// Answers of a node's fallback vnodes to a coverage request: one per
/// partition asked that it holds a fallback of.
pub type FallbackAnswers = Vec<(PartitionId, Result<Vec<u8>>)>;
/// Receives a node's [`FallbackAnswers`].
pub type FallbackDone = Box<dyn FnOnce(FallbackAnswers) + Send>;
/// Runs an encoded coverage request on a node's fallback vnodes.
pub type FallbackCoverage = Box<dyn Fn(Vec<PartitionId>, Vec<u8>, FallbackDone) + Send + Sync>;

/// This node's fallback vnodes, as the cluster manager runs them.
pub struct LocalFallback {
    /// Runs an encoded command on the fallback vnode of a partition.
    pub command: Box<dyn Fn(PartitionId, Vec<u8>, EncodedReply) + Send + Sync>,
    /// Runs an encoded coverage request on the fallback vnodes of those
    /// partitions this node holds one of.
    pub coverage: FallbackCoverage,
}
/// The encoded reply a peer's answer to a command carries.
fn command_answer(r: Result<PeerAnswer>) -> Result<Vec<u8>> {
    match r {
        Ok(PeerAnswer::Reply(b)) => Ok(b),
        Ok(_) => Err(Error::Rpc("unexpected answer to a command".into())),
        Err(e) => Err(e),
    }
}

/// Receives encoded coverage answers.
pub type EncodedSink = Arc<dyn Fn(PartitionId, Result<Vec<u8>>) + Send + Sync>;

/// Sends vnode traffic to owners.
pub struct Router<V: Vnode> {
    me: Arc<str>,
    view: View,
    master: VnodeMaster<V>,
    transport: Arc<dyn Transport>,
    liveness: Arc<Liveness>,
    names: Vec<Arc<str>>,
    this: Weak<Router<V>>,
    /// The node's fallback vnodes (set once by the cluster manager).
    local_fallback: OnceLock<LocalFallback>,
}

/// How often a request refused as [`Error::Moved`] is tried again, and how
/// long to wait in between: the ring settles within a gossip push.
const RETRIES: u32 = 40;
const RETRY_PAUSE: Duration = Duration::from_millis(25);

impl<V: Vnode> Router<V> {
    /// Routes for node `me`.
    pub fn new(
        me: &str,
        view: View,
        master: VnodeMaster<V>,
        transport: Arc<dyn Transport>,
        liveness: Arc<Liveness>,
    ) -> Arc<Self> {
        let size = master.ring_size();
        let names = size
            .partitions()
            .map(|p| Arc::clone(master.partition_name(p)))
            .collect();
        Arc::new_cyclic(|this| Router {
            me: Arc::from(me),
            view,
            master,
            transport,
            liveness,
            names,
            this: this.clone(),
            local_fallback: OnceLock::new(),
        })
    }

    /// Asks every up member (this node too) for its fallback vnodes of
    /// `down`, whose owners are down; each partition gets every fallback's
    /// answer, or an error naming the down owner when no fallback has it.
    fn fallback_coverage(
        &self,
        snap: &super::view::Snapshot,
        down: Vec<PartitionId>,
        req: Vec<u8>,
        sink: CoverageSink<Answers<V::CoverageReply>>,
    ) {
        type Acc<T> = (BTreeMap<PartitionId, Answers<T>>, usize);
        let nodes: Vec<(Arc<str>, String)> = snap
            .ring
            .active_members()
            .filter(|(n, _)| self.liveness.is_up(n))
            .map(|(n, m)| (Arc::from(n.as_str()), m.addr.clone()))
            .collect();
        let acc: Arc<Mutex<Acc<V::CoverageReply>>> =
            Arc::new(Mutex::new((BTreeMap::new(), nodes.len())));
        let owners: BTreeMap<PartitionId, Arc<str>> =
            down.iter().map(|p| (*p, snap.owner(*p))).collect();
        let finish = {
            let acc = Arc::clone(&acc);
            Arc::new(move || {
                let mut got = std::mem::take(
                    &mut acc
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0,
                );
                for (p, owner) in &owners {
                    match got.remove(p) {
                        Some(answers) if !answers.is_empty() => sink(*p, Ok(answers)),
                        _ => sink(
                            *p,
                            Err(Error::Rpc(format!(
                                "partition {p}: its owner {owner} is down and no fallback holds it"
                            ))),
                        ),
                    }
                }
            })
        };
        if nodes.is_empty() {
            return finish();
        }
        for (node, addr) in nodes {
            let (acc, finish) = (Arc::clone(&acc), Arc::clone(&finish));
            let local = *node == *self.me;
            let done: FallbackDone = Box::new(move |answers| {
                let mut a = acc
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (p, r) in answers {
                    if let Ok(t) = r.and_then(|b| V::CoverageReply::decode(&b)) {
                        let who = Replica {
                            partition: p,
                            node: Arc::clone(&node),
                            role: Role::Fallback,
                        };
                        a.0.entry(p).or_default().push((who, t));
                    }
                }
                a.1 -= 1;
                let last = a.1 == 0;
                drop(a);
                if last {
                    finish();
                }
            });
            if local {
                match self.local_fallback.get() {
                    Some(f) => (f.coverage)(down.clone(), req.clone(), done),
                    None => done(Vec::new()),
                }
                continue;
            }
            self.transport.send(
                &addr,
                PeerCall::Coverage {
                    partitions: down.clone(),
                    req: req.clone(),
                    hops: MAX_HOPS,
                    cluster_id: snap.ring.cluster_id.clone(),
                    fallback: true,
                },
                Box::new(move |r| match r {
                    Ok(PeerAnswer::Coverage(items)) => done(items),
                    _ => done(Vec::new()),
                }),
            );
        }
    }

    /// Where requests for this node's fallback vnodes go; set once.
    pub fn set_local_fallback(&self, f: LocalFallback) {
        let _ = self.local_fallback.set(f);
    }

    /// Sends an encoded command to the fallback `to` names: this node's own
    /// fallback vnode, or the named node's, never forwarded elsewhere.
    fn fallback_encoded(&self, to: &Replica, cmd: Vec<u8>, reply: EncodedReply) {
        let p = to.partition;
        if *to.node == *self.me {
            return match self.local_fallback.get() {
                Some(f) => (f.command)(p, cmd, reply),
                None => reply(Err(Error::FailedPrecondition(format!(
                    "{to}: this node keeps no fallback vnodes"
                )))),
            };
        }
        let snap = self.view.current();
        let Some(addr) = snap.addr(&to.node).map(str::to_string) else {
            return reply(Err(Error::Rpc(format!("{to}: the node has no address"))));
        };
        self.transport.send(
            &addr,
            PeerCall::Command {
                partition: p,
                cmd,
                hops: MAX_HOPS,
                cluster_id: snap.ring.cluster_id.clone(),
                session: 0,
                fallback: true,
            },
            Box::new(move |r| reply(command_answer(r))),
        );
    }

    /// The local vnode master.
    pub fn master(&self) -> &VnodeMaster<V> {
        &self.master
    }

    /// Why a node removed from its cluster routes nothing: its one-member
    /// ring is not a cluster anyone wrote to.
    fn left(&self) -> Error {
        Error::Left(self.me.to_string())
    }

    /// Runs an encoded command at the owner of `p`, forwarding at most
    /// [`MAX_HOPS`] times. A refusal because the partition moved is retried
    /// here (nothing was applied) while the ring settles.
    pub fn command_encoded(&self, p: PartitionId, cmd: Vec<u8>, hops: u32, reply: EncodedReply) {
        self.command_attempt(p, cmd, hops, reply, 0);
    }

    fn command_attempt(
        &self,
        p: PartitionId,
        cmd: Vec<u8>,
        hops: u32,
        reply: EncodedReply,
        attempt: u32,
    ) {
        let snap = self.view.current();
        if snap.left {
            // Retries of requests begun while a member must not land on
            // the one-member ring of a node just removed.
            return reply(Err(self.left()));
        }
        let owner = snap.owner(p);
        if *owner == *self.me {
            self.master.command_encoded(p, &cmd, reply);
            return;
        }
        if hops >= MAX_HOPS {
            reply(Err(Error::Moved(format!(
                "partition {p} was forwarded {hops} times without reaching its owner; the ring is converging"
            ))));
            return;
        }
        let Some(addr) = snap.addr(&owner).map(str::to_string) else {
            reply(Err(Error::Rpc(format!(
                "owner {owner} of partition {p} has no address"
            ))));
            return;
        };
        let retry = (hops == 0 && attempt < RETRIES).then(|| (self.this.clone(), cmd.clone()));
        self.send_command(
            &addr,
            &snap.ring.cluster_id,
            p,
            cmd,
            hops + 1,
            Box::new(move |r| match (r, retry) {
                (Err(Error::Moved(_)), Some((this, cmd))) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        match this.upgrade() {
                            Some(router) => router.command_attempt(p, cmd, 0, reply, attempt + 1),
                            None => reply(Err(Error::ShuttingDown)),
                        }
                    });
                }
                (r, _) => reply(r),
            }),
        );
    }

    /// Sends an encoded command to the node at `addr`.
    pub fn send_command(
        &self,
        addr: &str,
        cluster_id: &str,
        p: PartitionId,
        cmd: Vec<u8>,
        hops: u32,
        reply: EncodedReply,
    ) {
        self.transport.send(
            addr,
            PeerCall::Command {
                partition: p,
                cmd,
                hops,
                cluster_id: cluster_id.to_string(),
                session: 0,
                fallback: false,
            },
            Box::new(move |r| reply(command_answer(r))),
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
        self.coverage_attempt(partitions, req, hops, sink, 0);
    }

    fn coverage_attempt(
        &self,
        partitions: Vec<PartitionId>,
        req: Vec<u8>,
        hops: u32,
        sink: EncodedSink,
        attempt: u32,
    ) {
        // Partitions refused as moved are asked again once the ring settles.
        let sink: EncodedSink = if hops == 0 && attempt < RETRIES {
            let this = self.this.clone();
            let req = req.clone();
            let inner = sink;
            Arc::new(move |p, r| match r {
                Err(Error::Moved(_)) => {
                    let (this, req, inner) = (this.clone(), req.clone(), Arc::clone(&inner));
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        match this.upgrade() {
                            Some(router) => {
                                router.coverage_attempt(vec![p], req, 0, inner, attempt + 1)
                            }
                            None => inner(p, Err(Error::ShuttingDown)),
                        }
                    });
                }
                r => inner(p, r),
            })
        } else {
            sink
        };
        let snap = self.view.current();
        if snap.left {
            for p in partitions {
                sink(p, Err(self.left()));
            }
            return;
        }
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
                    let e = match e {
                        Error::Moved(m) => Error::Moved(m.clone()),
                        other => Error::Rpc(other.to_string()),
                    };
                    sink(*p, Err(e));
                }
            };
            let Some(addr) = addr else {
                let e = Error::Rpc(format!("owner {owner} has no address"));
                fail_all(&parts, &e, &sink);
                continue;
            };
            if hops >= MAX_HOPS {
                let e = Error::Moved(format!("forwarded {hops} times; the ring is converging"));
                fail_all(&parts, &e, &sink);
                continue;
            }
            let sink = Arc::clone(&sink);
            let asked = parts.clone();
            self.transport.send(
                &addr,
                PeerCall::Coverage {
                    partitions: parts,
                    req: req.clone(),
                    hops: hops + 1,
                    cluster_id: snap.ring.cluster_id.clone(),
                    fallback: false,
                },
                Box::new(move |r| match r {
                    Ok(PeerAnswer::Coverage(items)) => {
                        for (p, r) in items {
                            sink(p, r);
                        }
                    }
                    Ok(_) => fail_all(
                        &asked,
                        &Error::Rpc("unexpected answer to coverage".into()),
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

    fn preflist(&self, first: PartitionId, n: usize, sloppy: bool) -> Result<Vec<Replica>> {
        let snap = self.view.current();
        if snap.left {
            return Err(self.left());
        }
        if !sloppy {
            // Strict: the primaries, up or not.
            return apl::annotated(&snap.ring.owners, first, n, |_| true);
        }
        apl::annotated(&snap.ring.owners, first, n, |node| {
            self.liveness.is_up(node)
        })
    }

    fn command(&self, to: &Replica, cmd: V::Command, reply: Replier<V::Reply>) {
        let p = to.partition;
        if to.role == Role::Fallback {
            let mut buf = Vec::new();
            cmd.encode(&mut buf);
            return self.fallback_encoded(
                to,
                buf,
                Box::new(move |r| reply(p, r.and_then(|b| V::Reply::decode(&b)))),
            );
        }
        // The local path stays typed: no encoding for partitions owned here.
        let snap = self.view.current();
        if snap.left {
            return reply(p, Err(self.left()));
        }
        if *snap.owner(p) == *self.me {
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
        sink: CoverageSink<Answers<V::CoverageReply>>,
    ) {
        let snap = self.view.current();
        if snap.left {
            for p in partitions {
                sink(p, Err(self.left()));
            }
            return;
        }
        // Partitions whose owner is down are asked of fallbacks instead
        // (one look at the detector for the whole request).
        let down_now = self.liveness.down_set();
        let (down, partitions): (Vec<PartitionId>, Vec<PartitionId>) = partitions
            .into_iter()
            .partition(|p| down_now.contains(snap.ring.owner(*p)));
        let (local, remote): (Vec<PartitionId>, Vec<PartitionId>) = partitions
            .into_iter()
            .partition(|p| *snap.owner(*p) == *self.me);
        let primary = |p: PartitionId| Replica::primary(p, snap.owner(p));
        for p in local {
            let (sink, me) = (Arc::clone(&sink), primary(p));
            self.master.coverage(
                p,
                Arc::clone(&req),
                Box::new(move |p, r| sink(p, r.map(|t| vec![(me, t)]))),
            );
        }
        let mut buf = Vec::new();
        req.encode(&mut buf);
        if !down.is_empty() {
            self.fallback_coverage(&snap, down, buf.clone(), Arc::clone(&sink));
        }
        if remote.is_empty() {
            return;
        }
        // Answers name the owner this node asked, as of this snapshot.
        let asked = Arc::clone(&snap);
        self.coverage_encoded(
            remote,
            buf,
            0,
            Arc::new(move |p, r| {
                let who = Replica::primary(p, asked.owner(p));
                sink(
                    p,
                    r.and_then(|b| V::CoverageReply::decode(&b))
                        .map(|t| vec![(who, t)]),
                )
            }),
        );
    }
}
