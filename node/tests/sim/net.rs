//! The simulated network: an in-process [`Transport`] between the nodes of
//! one simulation, with seeded faults. Every message waits a random delay
//! (which also reorders messages) and may be lost; links can be cut one way
//! or both. A lost request or reply fails the call, as a broken connection
//! does: the caller cannot tell whether the peer applied it.
//!
//! A node can crash: the network forgets it and every message from or to
//! that incarnation of it is lost from then on, including replies to calls
//! it made and the streams it had open. A restart is a new incarnation.
//!
//! Everything runs on the simulation's one tokio runtime, on its paused
//! clock, and every random choice comes from the network's seeded RNG.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flavio_node::Error;
use flavio_node::app::FlavioVnode;
use flavio_node::cluster::state::{MemberState, RingState, Transfer};
use flavio_node::cluster::transport::{
    Gossip, GossipReply, HandoffAck, HandoffLink, HandoffMessage, HandoffStart, Hint, JoinRequest,
    MemberView, PeerCall, PeerCallback, Transport,
};
use flavio_node::cluster::{Cluster, handoff};
use futures::StreamExt;
use futures::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

type Node = Cluster<FlavioVnode>;

/// Faults in force.
#[derive(Debug, Default)]
pub struct Faults {
    /// Links cut, as (from, to) addresses: messages from `from` to `to` are lost.
    pub cut: BTreeSet<(String, String)>,
    /// Chance that any one message is lost.
    pub loss: f64,
    /// Longest delay of a message.
    pub max_delay: Duration,
}

/// A moment of a handoff at which a node crashes (once), for scenarios
/// that need a crash at an exact point rather than a random one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// The sender crashes as its first item would reach the receiver.
    SenderAtItem,
    /// The sender crashes as its finish would reach the receiver.
    SenderAtFinish,
    /// The receiver crashes as its final acknowledgement would reach the
    /// sender: the data is durable on the receiver, the sender never hears.
    ReceiverBeforeAck,
    /// The receiver crashes just after its final acknowledgement reached
    /// the sender, before it hears of the flip.
    ReceiverAfterAck,
    /// A fallback's node crashes as its hint would reach the owner.
    HintSenderAtSend,
    /// The owner crashes after merging a hint (durably), before its answer
    /// reaches the fallback's node: the hint will come again.
    HintReceiverBeforeAck,
    /// A fallback's node crashes as the owner's answer to its hint arrives,
    /// before it deletes the hint: the hint will be delivered twice.
    HintSenderAtAck,
}

/// Stops a node's components when it crashes.
pub type OnCrash = Box<dyn Fn() + Send + Sync>;

/// The network of one simulation.
pub struct Net {
    /// Reachable nodes by address, with their incarnation.
    nodes: Mutex<BTreeMap<String, (u64, Node)>>,
    /// What to stop when a node crashes, by address.
    on_crash: Mutex<BTreeMap<String, Arc<OnCrash>>>,
    /// Armed hooks: (hook, address of the node that crashes).
    hooks: Mutex<Vec<(Hook, String)>>,
    /// Hooks that fired, not yet reported.
    fired: Mutex<Vec<(Hook, String)>>,
    /// The current incarnation of each address; a transport made for an
    /// older one is dead.
    incarnations: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<Faults>,
    rng: Mutex<StdRng>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Net {
    pub fn new(seed: u64) -> Arc<Net> {
        Arc::new(Net {
            nodes: Mutex::new(BTreeMap::new()),
            incarnations: Mutex::new(BTreeMap::new()),
            on_crash: Mutex::new(BTreeMap::new()),
            hooks: Mutex::new(Vec::new()),
            fired: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults {
                max_delay: Duration::from_millis(5),
                ..Faults::default()
            }),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        })
    }

    /// The transport of a new incarnation of the node at `addr`: the
    /// transports of its earlier incarnations are dead from now on.
    pub fn transport(self: &Arc<Net>, addr: &str) -> Arc<dyn Transport> {
        let inc = {
            let mut incs = lock(&self.incarnations);
            let inc = incs.entry(addr.to_string()).or_insert(0);
            *inc += 1;
            *inc
        };
        Arc::new(SimTransport {
            me: (addr.to_string(), inc),
            net: Arc::clone(self),
        })
    }

    /// Makes the node at `addr`, of its current incarnation, reachable;
    /// `on_crash` stops its components when it crashes.
    pub fn attach(&self, addr: &str, node: Node, on_crash: OnCrash) {
        let inc = lock(&self.incarnations).get(addr).copied().unwrap_or(0);
        lock(&self.nodes).insert(addr.to_string(), (inc, node));
        lock(&self.on_crash).insert(addr.to_string(), Arc::new(on_crash));
    }

    /// Whether the node at `addr` is running.
    pub fn is_up(&self, addr: &str) -> bool {
        lock(&self.nodes).contains_key(addr)
    }

    /// Crashes the node at `addr`: unreachable, its components stopped, and
    /// everything its current incarnation sends or is sent is lost.
    pub fn crash(&self, addr: &str) {
        lock(&self.nodes).remove(addr);
        *lock(&self.incarnations)
            .entry(addr.to_string())
            .or_insert(0) += 1;
        let stop = lock(&self.on_crash).remove(addr);
        if let Some(stop) = stop {
            stop();
        }
    }

    /// Arms `hook` for the node at `addr`.
    pub fn arm(&self, hook: Hook, addr: &str) {
        lock(&self.hooks).push((hook, addr.to_string()));
    }

    /// Fires `hook` if it is armed for `addr`: crashes that node and
    /// disarms it. Returns whether it fired.
    fn fire(&self, hook: Hook, addr: &str) -> bool {
        let fired = {
            let mut hooks = lock(&self.hooks);
            match hooks.iter().position(|(h, a)| *h == hook && a == addr) {
                Some(i) => {
                    hooks.remove(i);
                    true
                }
                None => false,
            }
        };
        if fired {
            lock(&self.fired).push((hook, addr.to_string()));
            self.crash(addr);
        }
        fired
    }

    /// The hooks that fired since the last call.
    pub fn take_fired(&self) -> Vec<(Hook, String)> {
        std::mem::take(&mut *lock(&self.fired))
    }

    fn alive(&self, (addr, inc): &Id) -> bool {
        lock(&self.incarnations).get(addr) == Some(inc)
    }

    /// Forgets every node. The nodes' transports hold the network, so the
    /// network must let go of the nodes for their stores to close.
    pub fn clear(&self) {
        lock(&self.nodes).clear();
        lock(&self.on_crash).clear();
    }

    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// Ends every fault, armed hooks included.
    pub fn heal(&self) {
        let mut f = lock(&self.faults);
        f.cut.clear();
        f.loss = 0.0;
        lock(&self.hooks).clear();
    }

    fn delay(&self) -> Duration {
        let max = lock(&self.faults).max_delay.as_micros() as u64;
        Duration::from_micros(lock(&self.rng).random_range(0..=max))
    }

    /// Whether one message from `from` to `to` gets through now: both
    /// incarnations alive, the link not cut, the message not lost.
    fn passes(&self, from: &Id, to: &Id) -> bool {
        if !self.alive(from) || !self.alive(to) {
            return false;
        }
        let f = lock(&self.faults);
        if f.cut.contains(&(from.0.clone(), to.0.clone())) {
            return false;
        }
        f.loss <= 0.0 || !lock(&self.rng).random_bool(f.loss.min(1.0))
    }

    /// The node at `to` (with its identity), if a message from `from`
    /// reaches it now.
    fn reach(&self, from: &Id, to: &str) -> Option<(Id, Node)> {
        let (inc, node) = lock(&self.nodes).get(to).cloned()?;
        let id = (to.to_string(), inc);
        self.passes(from, &id).then_some((id, node))
    }
}

/// A node incarnation: its address and the number of its start.
type Id = (String, u64);

fn unreachable(to: &str) -> Error {
    Error::Rpc(format!("{to}: unreachable (simulated)"))
}

struct SimTransport {
    me: Id,
    net: Arc<Net>,
}

impl SimTransport {
    /// Runs `f` on the node at `addr` after a delay, and brings its answer
    /// back after another; either way may be lost.
    fn call<T: Send + 'static>(
        &self,
        addr: &str,
        f: impl FnOnce(Node) -> BoxFuture<'static, flavio_node::Result<T>> + Send + 'static,
    ) -> BoxFuture<'static, flavio_node::Result<T>> {
        let (net, me, to) = (Arc::clone(&self.net), self.me.clone(), addr.to_string());
        Box::pin(async move {
            tokio::time::sleep(net.delay()).await;
            let (peer, node) = net.reach(&me, &to).ok_or_else(|| unreachable(&to))?;
            let r = f(node).await;
            tokio::time::sleep(net.delay()).await;
            if !net.passes(&peer, &me) {
                return Err(unreachable(&to));
            }
            r
        })
    }
}

impl Transport for SimTransport {
    fn send(&self, addr: &str, call: PeerCall, reply: PeerCallback) {
        let (net, me, to) = (Arc::clone(&self.net), self.me.clone(), addr.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(net.delay()).await;
            let Some((peer, node)) = net.reach(&me, &to) else {
                return reply(Err(unreachable(&to)));
            };
            node.serve_peer(
                call,
                Box::new(move |r| {
                    tokio::spawn(async move {
                        tokio::time::sleep(net.delay()).await;
                        if net.passes(&peer, &me) {
                            reply(r);
                        } else {
                            reply(Err(unreachable(&to)));
                        }
                    });
                }),
            );
        });
    }

    fn gossip(
        &self,
        addr: &str,
        msg: Gossip,
    ) -> BoxFuture<'static, flavio_node::Result<GossipReply>> {
        self.call(addr, move |n| {
            Box::pin(async move { n.handle_gossip(msg).await })
        })
    }

    fn join(
        &self,
        addr: &str,
        req: JoinRequest,
    ) -> BoxFuture<'static, flavio_node::Result<RingState>> {
        self.call(addr, move |n| {
            Box::pin(async move { n.handle_join(req).await })
        })
    }

    fn complete_transfer(
        &self,
        addr: &str,
        t: Transfer,
    ) -> BoxFuture<'static, flavio_node::Result<Option<RingState>>> {
        self.call(addr, move |n| {
            Box::pin(async move { n.complete_transfer(&t).await.map(Some) })
        })
    }

    fn hint(&self, addr: &str, hint: Hint) -> BoxFuture<'static, flavio_node::Result<()>> {
        let (net, me, to) = (Arc::clone(&self.net), self.me.clone(), addr.to_string());
        Box::pin(async move {
            if net.fire(Hook::HintSenderAtSend, &me.0) {
                return Err(unreachable(&to));
            }
            tokio::time::sleep(net.delay()).await;
            let (peer, node) = net.reach(&me, &to).ok_or_else(|| unreachable(&to))?;
            let r = handoff::receive_hint(&node, hint).await;
            if r.is_ok() && net.fire(Hook::HintReceiverBeforeAck, &to) {
                return Err(unreachable(&to));
            }
            tokio::time::sleep(net.delay()).await;
            if !net.passes(&peer, &me) {
                return Err(unreachable(&to));
            }
            if r.is_ok() && net.fire(Hook::HintSenderAtAck, &me.0) {
                return Err(unreachable(&to));
            }
            r
        })
    }

    fn members(&self, addr: &str) -> BoxFuture<'static, flavio_node::Result<MemberView>> {
        self.call(addr, |n| {
            Box::pin(async move {
                Ok(MemberView {
                    members: n
                        .ring()
                        .ring
                        .members
                        .iter()
                        .filter(|(_, m)| m.state != MemberState::Removed)
                        .map(|(name, _)| name.clone())
                        .collect(),
                    unreachable: n.unreachable(),
                })
            })
        })
    }

    fn handoff(
        &self,
        addr: &str,
        start: HandoffStart,
    ) -> BoxFuture<'static, flavio_node::Result<HandoffLink>> {
        let (net, me, to) = (Arc::clone(&self.net), self.me.clone(), addr.to_string());
        Box::pin(async move {
            tokio::time::sleep(net.delay()).await;
            tracing::debug!(
                partition = %start.partition,
                from = %start.from,
                to = %start.to,
                session = start.session,
                "simulated handoff stream opens"
            );
            let (peer, node) = net.reach(&me, &to).ok_or_else(|| unreachable(&to))?;
            let (tx, rx) = mpsc::channel::<HandoffMessage>(64);
            let (ack_tx, ack_rx) = mpsc::channel(16);
            tx.send(HandoffMessage::Start(start))
                .await
                .map_err(|_| unreachable(&to))?;
            // A stream is one connection: a cut link or a lost message
            // breaks it, in either direction.
            let (n1, f1, p1, t1) = (Arc::clone(&net), me.clone(), peer.clone(), to.clone());
            let inbound = ReceiverStream::new(rx)
                .map(move |m| {
                    let hook = match m {
                        HandoffMessage::Item(_) => Some(Hook::SenderAtItem),
                        HandoffMessage::Finish { .. } => Some(Hook::SenderAtFinish),
                        HandoffMessage::Start(_) => None,
                    };
                    if let Some(h) = hook {
                        n1.fire(h, &f1.0);
                    }
                    if n1.passes(&f1, &p1) {
                        Ok(m)
                    } else {
                        Err(unreachable(&t1))
                    }
                })
                .boxed();
            tokio::spawn(handoff::receive(node, inbound, ack_tx));
            let acks = ReceiverStream::new(ack_rx)
                .map(move |a| {
                    let last = matches!(a, Ok(HandoffAck::Finished(_)));
                    if last {
                        net.fire(Hook::ReceiverBeforeAck, &to);
                    }
                    if net.passes(&peer, &me) {
                        if last {
                            net.fire(Hook::ReceiverAfterAck, &to);
                        }
                        a
                    } else {
                        Err(unreachable(&to))
                    }
                })
                .boxed();
            Ok(HandoffLink { tx, acks })
        })
    }
}
