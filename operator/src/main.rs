//! `flavio-operator`: `run` the controller, or print the `crd`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use flavio_operator::controller::{self, Context};
use flavio_operator::leader::LeaseLock;
use flavio_operator::metrics::{self, Metrics};
use flavio_operator::uninstall::Deleted;

#[derive(Parser)]
#[command(
    name = "flavio-operator",
    version,
    about = "The FlavioDB Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (uses the in-cluster config or KUBECONFIG).
    Run(RunArgs),
    /// Print the FlavioCluster CRD as YAML.
    Crd,
    /// Delete a FlavioCluster and wait until its finalizer has run (the
    /// chart's pre-delete hook: the operator must still be running).
    DeleteCluster(DeleteArgs),
}

#[derive(clap::Args)]
struct DeleteArgs {
    /// The FlavioCluster's name.
    name: String,
    /// Its namespace (default: the client's, i.e. the pod's own).
    #[arg(long, short = 'n', env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// How long to wait for it to be gone.
    #[arg(long, default_value_t = 240)]
    timeout_seconds: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (for a namespaced Role); all when unset.
    #[arg(long, env = "FLAVIO_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics and /healthz.
    #[arg(
        long,
        env = "FLAVIO_OPERATOR_METRICS",
        default_value = "127.0.0.1:8080"
    )]
    metrics_addr: String,
    /// Log format.
    #[arg(long, value_enum, env = "FLAVIO_OPERATOR_LOG_FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Namespace of the leader-election Lease (default: the watched namespace,
    /// else the client's default namespace).
    #[arg(long, env = "FLAVIO_OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Identity in the Lease (default: POD_NAME, else hostname and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", flavio_operator::crd::crd_yaml()?);
            Ok(())
        }
        Command::Run(a) => run(a).await,
        Command::DeleteCluster(a) => delete_cluster(a).await,
    }
}

async fn delete_cluster(a: DeleteArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let ns = a
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api = kube::Api::namespaced(client, &ns);
    let timeout = Duration::from_secs(a.timeout_seconds);
    match flavio_operator::uninstall::delete_and_wait(&api, &a.name, timeout).await? {
        Deleted::Absent => println!("flaviocluster {ns}/{} not found: nothing to delete", a.name),
        Deleted::Gone => println!("flaviocluster {ns}/{} deleted", a.name),
    }
    Ok(())
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match a.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Human => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(&a.metrics_addr)
        .await
        .with_context(|| format!("binding {}", a.metrics_addr))?;
    tracing::info!(addr = %a.metrics_addr, "serving /metrics and /healthz");
    tokio::spawn(metrics::serve(listener, metrics.clone()));

    let lease_ns = a
        .lease_namespace
        .clone()
        .or_else(|| a.namespace.clone())
        .unwrap_or_else(|| client.default_namespace().to_string());
    let identity = a.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let lock = LeaseLock::new(
        kube::Api::namespaced(client.clone(), &lease_ns),
        "flavio-operator",
        &identity,
        Duration::from_secs(a.lease_seconds),
    );
    tracing::info!(identity, lease_ns, "waiting to lead");
    lock.acquire().await?;
    tracing::info!(identity, "leading");

    let pdb_v1 = controller::has_policy_v1(&client).await;
    if !pdb_v1 {
        tracing::warn!("the API server has no policy/v1: no PodDisruptionBudgets");
    }
    let ctx = Arc::new(Context::new(client, metrics, pdb_v1));
    tokio::select! {
        _ = controller::run(ctx, a.namespace.clone()) => {
            tracing::info!("controller stopped");
            Ok(())
        }
        _ = lock.keep() => {
            anyhow::bail!("lost the leader lease; exiting so that only one replica acts")
        }
    }
}
