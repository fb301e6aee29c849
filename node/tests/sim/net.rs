//! The simulated network: an in-process [`Transport`] between the nodes of
//! one simulation, with seeded faults. Every message waits a random delay
//! (which also reorders messages) and may be lost; links can be cut one way
//! or both. A lost request or reply fails the call, as a broken connection
//! does: the caller cannot tell whether the peer applied it.
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
    Gossip, GossipReply, HandoffLink, HandoffMessage, HandoffStart, JoinRequest, PeerCall,
    PeerCallback, Transport,
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

/// The network of one simulation.
pub struct Net {
    nodes: Mutex<BTreeMap<String, Node>>,
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
            faults: Mutex::new(Faults {
                max_delay: Duration::from_millis(5),
                ..Faults::default()
            }),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        })
    }

    /// The transport of the node at `addr`.
    pub fn transport(self: &Arc<Net>, addr: &str) -> Arc<dyn Transport> {
        Arc::new(SimTransport {
            me: addr.to_string(),
            net: Arc::clone(self),
        })
    }

    /// Makes the node at `addr` reachable.
    pub fn attach(&self, addr: &str, node: Node) {
        lock(&self.nodes).insert(addr.to_string(), node);
    }

    /// Forgets every node. The nodes' transports hold the network, so the
    /// network must let go of the nodes for their stores to close.
    pub fn clear(&self) {
        lock(&self.nodes).clear();
    }

    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// Ends every fault.
    pub fn heal(&self) {
        let mut f = lock(&self.faults);
        f.cut.clear();
        f.loss = 0.0;
    }

    fn delay(&self) -> Duration {
        let max = lock(&self.faults).max_delay.as_micros() as u64;
        Duration::from_micros(lock(&self.rng).random_range(0..=max))
    }

    /// Whether one message from `from` to `to` gets through now.
    fn passes(&self, from: &str, to: &str) -> bool {
        let f = lock(&self.faults);
        if f.cut.contains(&(from.to_string(), to.to_string())) {
            return false;
        }
        f.loss <= 0.0 || !lock(&self.rng).random_bool(f.loss.min(1.0))
    }

    /// The node at `to`, if a message from `from` reaches it now.
    fn reach(&self, from: &str, to: &str) -> Option<Node> {
        if !self.passes(from, to) {
            return None;
        }
        lock(&self.nodes).get(to).cloned()
    }
}

fn unreachable(to: &str) -> Error {
    Error::Rpc(format!("{to}: unreachable (simulated)"))
}

struct SimTransport {
    me: String,
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
            let node = net.reach(&me, &to).ok_or_else(|| unreachable(&to))?;
            let r = f(node).await;
            tokio::time::sleep(net.delay()).await;
            if !net.passes(&to, &me) {
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
            let Some(node) = net.reach(&me, &to) else {
                return reply(Err(unreachable(&to)));
            };
            node.serve_peer(
                call,
                Box::new(move |r| {
                    tokio::spawn(async move {
                        tokio::time::sleep(net.delay()).await;
                        if net.passes(&to, &me) {
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

    fn members(&self, addr: &str) -> BoxFuture<'static, flavio_node::Result<Vec<String>>> {
        self.call(addr, |n| {
            Box::pin(async move {
                Ok(n.ring()
                    .ring
                    .members
                    .iter()
                    .filter(|(_, m)| m.state != MemberState::Removed)
                    .map(|(name, _)| name.clone())
                    .collect())
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
            let node = net.reach(&me, &to).ok_or_else(|| unreachable(&to))?;
            let (tx, rx) = mpsc::channel::<HandoffMessage>(64);
            let (ack_tx, ack_rx) = mpsc::channel(16);
            tx.send(HandoffMessage::Start(start))
                .await
                .map_err(|_| unreachable(&to))?;
            // A stream is one connection: a cut link or a lost message
            // breaks it, in either direction.
            let (n1, f1, t1) = (Arc::clone(&net), me.clone(), to.clone());
            let inbound = ReceiverStream::new(rx)
                .map(move |m| {
                    if n1.passes(&f1, &t1) {
                        Ok(m)
                    } else {
                        Err(unreachable(&t1))
                    }
                })
                .boxed();
            tokio::spawn(handoff::receive(node, inbound, ack_tx));
            let acks = ReceiverStream::new(ack_rx)
                .map(move |a| {
                    if net.passes(&to, &me) {
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
