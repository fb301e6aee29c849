//! `flavio-kubelet`: the kubelet stand-in of the FlavioDB test environment.
//!
//! Registers a Node and runs the pods bound to it as host processes; see the
//! `flavio_testenv::standin` module docs for what it does and leaves out.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use flavio_testenv::standin::{self, Config};

/// Kubelet stand-in: runs pods as host processes on loopback addresses.
#[derive(Debug, Parser)]
#[command(name = "flavio-kubelet", version)]
struct Args {
    /// Kubeconfig to reach the API server (default: $KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// State directory: pod dirs, PVC dirs, logs, pid files.
    #[arg(long)]
    state_dir: PathBuf,
    /// Node name to register.
    #[arg(long, default_value = "flavio-testenv")]
    node_name: String,
    /// Image map file (default: <state-dir>/images.map).
    #[arg(long)]
    image_map: Option<PathBuf>,
    /// Only bind unscheduled pods matching this label selector (default: all).
    #[arg(long)]
    selector: Option<String>,
    /// First loopback address for pods.
    #[arg(long, default_value = "127.0.0.10")]
    ip_first: Ipv4Addr,
    /// Last loopback address for pods.
    #[arg(long, default_value = "127.0.0.250")]
    ip_last: Ipv4Addr,
    /// Serve `kubectl logs` over TLS on this address (needs --tls-cert/--tls-key).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    serve_logs: Option<std::net::SocketAddr>,
    /// PEM certificate for --serve-logs.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM key for --serve-logs.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// First restart back-off in milliseconds (doubles per crash).
    #[arg(long, default_value_t = 1000)]
    restart_backoff_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let args = Args::parse();
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("loading kubeconfig")?;
    let apiserver = config
        .cluster_url
        .host()
        .map(|h| (h.to_string(), config.cluster_url.port_u16().unwrap_or(443)));
    let client = kube::Client::try_from(config).context("building client")?;
    let mut cfg = Config::new(args.state_dir.clone());
    cfg.node_name = args.node_name;
    if let Some(m) = args.image_map {
        cfg.image_map = m;
    }
    cfg.selector = args.selector;
    cfg.ip_first = args.ip_first;
    cfg.ip_last = args.ip_last;
    cfg.restart_backoff = Duration::from_millis(args.restart_backoff_ms);
    cfg.apiserver = apiserver;
    if let (Some(addr), Some(cert), Some(key)) = (args.serve_logs, args.tls_cert, args.tls_key) {
        cfg.logs_endpoint = Some(standin::LogsEndpoint { addr, cert, key });
    }
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    return std::future::pending().await;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    standin::run(client, cfg, shutdown).await?;
    Ok(())
}
