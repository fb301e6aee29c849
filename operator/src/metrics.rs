//! Prometheus metrics and the tiny HTTP endpoint serving `/metrics` and
//! `/healthz`.
//!
//! The server is the node's: a few lines over a tokio listener, not a web
//! framework, answering one GET per connection, which is all a scraper or a
//! liveness probe needs. What it leaves out: keep-alive, TLS, authentication.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::{Error, Result};

type Labels = Vec<(String, String)>;

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<Labels, Counter>,
    actions: Family<Labels, Counter>,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flavio_operator");
        let reconciles = Counter::default();
        let errors = Family::<Labels, Counter>::default();
        let actions = Family::<Labels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register("reconciles", "Reconcile passes", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconcile passes by error kind",
            errors.clone(),
        );
        registry.register(
            "actions",
            "Membership and lifecycle actions taken, by kind",
            actions.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile pass took",
            duration.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            actions,
            duration,
        }
    }

    /// Counts one pass that took `took`.
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Counts one failed pass.
    pub fn error(&self, e: &Error) {
        self.errors
            .get_or_create(&vec![("kind".into(), e.metric_label().into())])
            .inc();
    }

    /// Counts one action (`join`, `commit`, `leave`, `shrink`, ...).
    pub fn action(&self, kind: &str) {
        self.actions
            .get_or_create(&vec![("action".into(), kind.into())])
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is dropped
/// (the node's tiny HTTP server, [`flavio_node::metrics::serve_http`]).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> Result<()> {
    flavio_node::metrics::serve_http(listener, Arc::new(move || metrics.render()))
        .await
        .map_err(|e| Error::Io {
            context: "serving metrics".into(),
            source: std::io::Error::other(e.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_metrics_and_healthz() {
        let m = Arc::new(Metrics::new());
        m.reconciled(Duration::from_millis(3));
        m.error(&Error::Missing("uid"));
        m.action("commit");
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let task = tokio::spawn(serve(l, m));
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        let body = get("/metrics").await;
        assert!(
            body.contains("flavio_operator_reconciles_total 1"),
            "{body}"
        );
        assert!(
            body.contains("flavio_operator_reconcile_errors_total{kind=\"missing\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("flavio_operator_actions_total{action=\"commit\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("flavio_operator_reconcile_duration_seconds_count 1"),
            "{body}"
        );
        assert!(get("/healthz").await.ends_with("ok\n"));
        task.abort();
    }
}
