//! A node's metrics for Prometheus, and the tiny plain-HTTP server that
//! serves them (`/metrics`, `/healthz`) on their own port, with no cookie:
//! what a scraper and a person with `curl` need, like the gRPC health
//! service.
//!
//! Request counts and latencies are recorded as requests finish; everything
//! about the cluster (ring version, members by state, vnodes by kind, peers
//! seen up and down, handoffs) is read from the node's state at each scrape,
//! so a scrape always shows the present. Handoff totals are counters kept by
//! the handoff code ([`crate::cluster::handoff::Totals`]) and copied here.
//!
//! The server answers one GET per connection and closes it; what it leaves
//! out: keep-alive, TLS, authentication (bind it where only scrapers reach).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::cluster::handoff::Kind;
use crate::cluster::{Cluster, MemberState};
use crate::vnode::Vnode;
use crate::{Error, Result};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Every metric of a node.
pub struct NodeMetrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    ring_version: Gauge,
    members: Family<Labels, Gauge>,
    vnodes: Family<Labels, Gauge>,
    peers: Family<Labels, Gauge>,
    handoffs_active: Family<Labels, Gauge>,
    handoffs_done: Family<Labels, Counter>,
    handoffs_failed: Family<Labels, Counter>,
    handoff_items: Family<Labels, Counter>,
    handoff_bytes: Family<Labels, Counter>,
    secret_reloads: Family<Labels, Counter>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The request commands counted.
pub const COMMANDS: [&str; 3] = ["ping", "add", "stats"];

impl NodeMetrics {
    /// Registers every metric (all names start with `flavio_`).
    pub fn new() -> NodeMetrics {
        let mut r = Registry::with_prefix("flavio");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(
            // 100 us to about 3.3 s.
            (|| Histogram::new(exponential_buckets(0.0001, 2.0, 16))) as fn() -> Histogram,
        );
        let ring_version = Gauge::default();
        let members = Family::<Labels, Gauge>::default();
        let vnodes = Family::<Labels, Gauge>::default();
        let peers = Family::<Labels, Gauge>::default();
        let handoffs_active = Family::<Labels, Gauge>::default();
        let handoffs_done = Family::<Labels, Counter>::default();
        let handoffs_failed = Family::<Labels, Counter>::default();
        let handoff_items = Family::<Labels, Counter>::default();
        let handoff_bytes = Family::<Labels, Counter>::default();
        r.register(
            "requests",
            "Client requests served by this node, by command and result (ok or the gRPC code)",
            requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time to serve a client request, by command",
            latency.clone(),
        );
        r.register(
            "ring_version",
            "Version of the ring this node holds",
            ring_version.clone(),
        );
        r.register(
            "members",
            "Ring members by state, as this node's ring says",
            members.clone(),
        );
        r.register(
            "vnodes",
            "Vnodes running here, by kind (primary: owned partitions; fallback: standing in for a down owner)",
            vnodes.clone(),
        );
        r.register(
            "peers",
            "Other active members, by what this node's failure detector sees (up or down)",
            peers.clone(),
        );
        r.register(
            "handoffs_active",
            "Transfers this node is sending, running or waiting for a slot, by kind (ownership or hinted)",
            handoffs_active.clone(),
        );
        r.register(
            "handoffs_done",
            "Transfers this node completed, by kind",
            handoffs_done.clone(),
        );
        r.register(
            "handoffs_failed",
            "Transfer attempts that failed (and were retried), by kind",
            handoffs_failed.clone(),
        );
        r.register(
            "handoff_items",
            "Items sent by completed transfers, by kind",
            handoff_items.clone(),
        );
        r.register(
            "handoff_bytes",
            "Bytes sent by completed transfers, by kind",
            handoff_bytes.clone(),
        );
        let secret_reloads = Family::<Labels, Counter>::default();
        r.register(
            "secret_reloads",
            "Times the node took new contents of its cookie file (file=cookie) or TLS files (file=tls) without a restart",
            secret_reloads.clone(),
        );
        for f in ["cookie", "tls"] {
            let _ = secret_reloads.get_or_create(&vec![("file".into(), f.into())]);
        }
        // Every series exists from the start, at zero: a rate over a
        // series that appears late misses its first increase.
        for c in COMMANDS {
            let _ = latency.get_or_create(&labels(&[("command", c)]));
            let _ = requests.get_or_create(&labels(&[("command", c), ("result", "ok")]));
        }
        for s in MemberState::ALL {
            let _ = members.get_or_create(&labels(&[("state", s.as_str())]));
        }
        for k in ["primary", "fallback"] {
            let _ = vnodes.get_or_create(&labels(&[("kind", k)]));
        }
        for s in ["up", "down"] {
            let _ = peers.get_or_create(&labels(&[("state", s)]));
        }
        for k in [Kind::Ownership, Kind::Hinted] {
            let l = labels(&[("kind", k.as_str())]);
            let _ = handoffs_active.get_or_create(&l);
            let _ = handoffs_done.get_or_create(&l);
            let _ = handoffs_failed.get_or_create(&l);
            let _ = handoff_items.get_or_create(&l);
            let _ = handoff_bytes.get_or_create(&l);
        }
        NodeMetrics {
            registry: r,
            requests,
            latency,
            ring_version,
            members,
            vnodes,
            peers,
            handoffs_active,
            handoffs_done,
            handoffs_failed,
            handoff_items,
            handoff_bytes,
            secret_reloads,
        }
    }

    /// Records a request of `command` that started at `started`; `code` is
    /// `None` for success, else its gRPC code.
    pub fn request(&self, command: &str, started: Instant, code: Option<tonic::Code>) {
        let result = match code {
            None => "ok".to_string(),
            Some(c) => code_name(c),
        };
        self.requests
            .get_or_create(&labels(&[("command", command), ("result", &result)]))
            .inc();
        self.latency
            .get_or_create(&labels(&[("command", command)]))
            .observe(started.elapsed().as_secs_f64());
    }

    /// Reads the cluster's present state into the gauges and counters.
    pub fn sample<V: Vnode>(&self, cluster: &Cluster<V>) {
        let snap = cluster.ring();
        let ring = &snap.ring;
        self.ring_version
            .set(i64::try_from(ring.version).unwrap_or(i64::MAX));
        for s in MemberState::ALL {
            let n = ring.members.values().filter(|m| m.state == s).count();
            self.members
                .get_or_create(&labels(&[("state", s.as_str())]))
                .set(count(n));
        }
        let primary = ring.owners.owned_by(cluster.me()).len();
        let fallback = cluster.fallbacks().len();
        self.vnodes
            .get_or_create(&labels(&[("kind", "primary")]))
            .set(count(primary));
        self.vnodes
            .get_or_create(&labels(&[("kind", "fallback")]))
            .set(count(fallback));
        let down = cluster.unreachable().len();
        let others = ring
            .members
            .iter()
            .filter(|(n, m)| n.as_str() != cluster.me() && m.state.is_active())
            .count();
        self.peers
            .get_or_create(&labels(&[("state", "up")]))
            .set(count(others.saturating_sub(down)));
        self.peers
            .get_or_create(&labels(&[("state", "down")]))
            .set(count(down));
        let active = cluster.inner_handoffs_active();
        let totals = cluster.handoff_totals();
        for k in [Kind::Ownership, Kind::Hinted] {
            let l = labels(&[("kind", k.as_str())]);
            self.handoffs_active
                .get_or_create(&l)
                .set(count(active.iter().filter(|a| a.kind == k).count()));
            let i = k as usize;
            catch_up(&self.handoffs_done.get_or_create(&l), &totals.done[i]);
            catch_up(&self.handoffs_failed.get_or_create(&l), &totals.failed[i]);
            catch_up(&self.handoff_items.get_or_create(&l), &totals.items[i]);
            catch_up(&self.handoff_bytes.get_or_create(&l), &totals.bytes[i]);
        }
    }

    /// Raises the reload counts to the totals of the cookie and TLS files.
    pub fn secret_reloads(&self, cookie: u64, tls: u64) {
        for (f, n) in [("cookie", cookie), ("tls", tls)] {
            let c = self
                .secret_reloads
                .get_or_create(&vec![("file".into(), f.into())]);
            if n > c.get() {
                c.inc_by(n - c.get());
            }
        }
    }

    /// The text exposition (OpenMetrics).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry);
        s
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Raises `c` to the total `t` (both only grow).
fn catch_up(c: &Counter, t: &std::sync::atomic::AtomicU64) {
    let now = t.load(Ordering::Relaxed);
    let have = c.get();
    if now > have {
        c.inc_by(now - have);
    }
}

/// `DeadlineExceeded` -> `deadline_exceeded`.
fn code_name(c: tonic::Code) -> String {
    let mut out = String::new();
    for (i, ch) in format!("{c:?}").chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// What the server answers `/metrics` with.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `/metrics` (from `render`) and `/healthz` on `listener` until the
/// task is dropped.
pub async fn serve_http(listener: TcpListener, render: Render) -> Result<()> {
    loop {
        let (mut sock, _) = listener.accept().await.map_err(|source| Error::Io {
            context: "accepting a metrics connection".into(),
            source,
        })?;
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("");
            let (code, ctype, body) = match path {
                "/metrics" => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    render(),
                ),
                "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let head = format!(
                "HTTP/1.1 {code}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case() {
        assert_eq!(
            code_name(tonic::Code::DeadlineExceeded),
            "deadline_exceeded"
        );
        assert_eq!(code_name(tonic::Code::Unavailable), "unavailable");
    }

    #[test]
    fn requests_are_counted_by_command_and_result() {
        let m = NodeMetrics::new();
        let t = Instant::now();
        m.request("add", t, None);
        m.request("add", t, Some(tonic::Code::Unavailable));
        let text = m.render();
        assert!(
            text.contains("flavio_requests_total{command=\"add\",result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flavio_requests_total{command=\"add\",result=\"unavailable\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flavio_request_duration_seconds_count{command=\"add\"} 2"),
            "{text}"
        );
    }
}
