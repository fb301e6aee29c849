//! `flavio serve`: run a node until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{ClientArgs, Failure, home_cookie_path};
use crate::app::Defaults;
use crate::ring::RingSize;
use crate::rpc::Cookie;
use crate::rpc::auth::{CookieSet, Cookies};
use crate::rpc::server::{Limits, Node, ServeConfig, shutdown_signal};
use crate::rpc::tls::{ClientAuth, NodeTls, TlsFiles};
use crate::vnode::Durability;
use crate::{Error, Result};
use std::sync::Arc;

/// Log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Arguments of `flavio serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The node's name (riak style, e.g. flavio1@127.0.0.1).
    #[arg(long, env = "FLAVIO_NAME", default_value = "flavio@127.0.0.1")]
    name: String,
    /// Address to listen on for gRPC.
    #[arg(long, env = "FLAVIO_LISTEN", default_value = super::DEFAULT_NODE)]
    listen: SocketAddr,
    /// Directory for the node's store.
    #[arg(long, env = "FLAVIO_DATA_DIR", default_value = "./flavio-data")]
    data_dir: PathBuf,
    /// Partitions in the ring: a multiple of 4 from 8 to 1024 (riak uses powers of two).
    #[arg(long, env = "FLAVIO_RING_SIZE", default_value_t = 64)]
    ring_size: u64,
    /// Default replicas of an add (N).
    #[arg(long, default_value_t = 3)]
    n_val: usize,
    /// Default replies an add waits for (W).
    #[arg(long, default_value_t = 3)]
    w_val: usize,
    /// Default request timeout in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Address other nodes reach this one at (default: the listen address).
    #[arg(long, env = "FLAVIO_ADVERTISE")]
    advertise: Option<String>,
    /// Ownership transfers at once per node, inbound and outbound each.
    #[arg(long, env = "FLAVIO_HANDOFF_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    handoff_concurrency: u32,
    /// Default for add: fallbacks stand in for down primaries (a sloppy
    /// quorum, true) or only the primaries are asked (false).
    #[arg(long, env = "FLAVIO_SLOPPY", default_value_t = true, action = clap::ArgAction::Set)]
    sloppy: bool,
    /// Milliseconds without a heartbeat answer after which a peer counts as
    /// down and its partitions' requests go to fallbacks.
    #[arg(long, env = "FLAVIO_DETECT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    detect_ms: u64,
    /// fsync every group of writes before replying (survives machine crashes,
    /// not just process crashes).
    #[arg(long, env = "FLAVIO_SYNC")]
    sync: bool,
    /// File holding the cluster cookie (else FLAVIO_COOKIE, else ~/.flavio.cookie, created if missing).
    #[arg(long, env = "FLAVIO_COOKIE_FILE")]
    cookie_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, env = "FLAVIO_LOG_FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Where to serve Prometheus `/metrics` over plain HTTP (no cookie):
    /// HOST:PORT, or `off`. Default: the listen address's host, port + 1.
    #[arg(long, env = "FLAVIO_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// With TLS on (--tls-cert, --tls-key, --tls-ca): whether every client
    /// must present a certificate signed by the CA (`require`), or only
    /// other nodes (`optional`; clients then authenticate by the cookie
    /// alone, over TLS).
    #[arg(long, value_enum, env = "FLAVIO_TLS_CLIENT_AUTH", default_value_t = TlsClientAuth::Optional)]
    tls_client_auth: TlsClientAuth,
    /// Refuse to start without TLS: the cookie must never cross the network
    /// in clear.
    #[arg(long, env = "FLAVIO_REQUIRE_TLS")]
    require_tls: bool,
    /// Connections open at once (clients' and peers'); more are closed as
    /// they arrive, with a log line.
    #[arg(long, env = "FLAVIO_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections as u32, value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    max_connections: u32,
    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "FLAVIO_MAX_MESSAGE_BYTES", default_value_t = Limits::default().max_message_bytes as u32, value_parser = clap::value_parser!(u32).range(65_536..=(256 << 20)))]
    max_message_bytes: u32,
    /// Calls one connection may have open at once (HTTP/2 concurrent streams).
    #[arg(long, env = "FLAVIO_MAX_STREAMS_PER_CONNECTION", default_value_t = Limits::default().max_streams_per_connection, value_parser = clap::value_parser!(u32).range(16..=65_536))]
    max_streams_per_connection: u32,
    /// Client sessions (`flavio bench`'s streams) open on the node at once.
    #[arg(long, env = "FLAVIO_MAX_SESSIONS", default_value_t = Limits::default().max_sessions as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_sessions: u32,
    /// Requests one session may have in flight before the node stops
    /// reading it until replies go out.
    #[arg(long, env = "FLAVIO_SESSION_IN_FLIGHT", default_value_t = Limits::default().session_in_flight as u32, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    session_in_flight: u32,
    /// Seconds after which a session with no request in flight and none
    /// sent is closed.
    #[arg(long, env = "FLAVIO_SESSION_IDLE_SECS", default_value_t = Limits::default().session_idle.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    session_idle_secs: u64,
}

/// `--tls-client-auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TlsClientAuth {
    /// Nodes present certificates to each other; clients may.
    Optional,
    /// Every connection presents a certificate of the CA.
    Require,
}

/// The node's TLS from the global `--tls-*` options: all three files, or
/// none (then `--require-tls` refuses to start).
fn node_tls(
    client: &ClientArgs,
    auth: TlsClientAuth,
    require: bool,
) -> std::result::Result<Option<Arc<NodeTls>>, Failure> {
    let identity = client.tls_identity()?;
    let auth = match auth {
        TlsClientAuth::Optional => ClientAuth::Optional,
        TlsClientAuth::Require => ClientAuth::Require,
    };
    match (identity, &client.tls_ca) {
        (Some((cert, key)), Some(ca)) => Ok(Some(NodeTls::load(
            TlsFiles {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                ca: ca.clone(),
            },
            auth,
            client.tls_server_name.clone(),
        )?)),
        (None, None) if require => Err(Failure::usage(
            "--require-tls: TLS is off; pass --tls-cert, --tls-key and --tls-ca \
             (FLAVIO_TLS_CERT, FLAVIO_TLS_KEY, FLAVIO_TLS_CA)",
        )),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Failure::usage(
            "--tls-cert needs --tls-ca (FLAVIO_TLS_CA): the CA that verifies peers",
        )),
        (None, Some(_)) => Err(Failure::usage(
            "--tls-ca needs the node's own --tls-cert and --tls-key (FLAVIO_TLS_CERT, FLAVIO_TLS_KEY)",
        )),
    }
}

/// The `/metrics` address: `arg` (`off` for none), else `listen`'s port + 1.
fn metrics_addr(
    arg: Option<&str>,
    listen: std::net::SocketAddr,
) -> std::result::Result<Option<std::net::SocketAddr>, Failure> {
    match arg {
        Some("off") => Ok(None),
        Some(a) => a.parse().map(Some).map_err(|_| {
            Failure::usage(format!(
                "--metrics-listen {a:?}: expected HOST:PORT (e.g. 127.0.0.1:10018) or off"
            ))
        }),
        None => {
            let port = match listen.port() {
                0 => 0,
                p => p.checked_add(1).ok_or_else(|| {
                    Failure::usage(format!(
                        "--listen port {p} leaves no port + 1 for /metrics: pass --metrics-listen"
                    ))
                })?,
            };
            Ok(Some(std::net::SocketAddr::new(listen.ip(), port)))
        }
    }
}

pub(super) fn init_logging(args: &ServeArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    // Colours only for a terminal: log files (devrel's node.log, kubectl
    // logs) stay plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Human => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

/// The server's cookies: named file (read again when it changes), else
/// FLAVIO_COOKIE, else ~/.flavio.cookie (created with a random value when
/// missing, like Erlang's cookie). A file or value may hold several, one per
/// line: the first is sent, all are accepted.
fn server_cookie(file: Option<&std::path::Path>) -> Result<Arc<Cookies>> {
    if let Some(f) = file {
        return Ok(Arc::new(Cookies::from_file(f)?));
    }
    if let Ok(v) = std::env::var("FLAVIO_COOKIE") {
        return Ok(Arc::new(Cookies::fixed(CookieSet::parse(&v)?)));
    }
    let path = home_cookie_path().ok_or_else(|| {
        Error::InvalidArgument(
            "no cluster cookie: pass --cookie-file FILE or set FLAVIO_COOKIE (HOME is unset)"
                .into(),
        )
    })?;
    if path.exists() {
        return Ok(Arc::new(Cookies::from_file(&path)?));
    }
    let cookie = Cookie::random();
    write_private(&path, cookie.as_str())?;
    tracing::info!(path = %path.display(), "created a new cluster cookie");
    Ok(Arc::new(Cookies::from_file(&path)?))
}

pub(super) fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let io = |source| Error::Io {
        context: format!("creating cookie file {}", path.display()),
        source,
    };
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

pub(super) async fn run(args: ServeArgs, client: ClientArgs) -> std::result::Result<(), Failure> {
    let ring_size = RingSize::new(args.ring_size)?;
    if args.n_val == 0 || args.w_val == 0 || args.w_val > args.n_val {
        return Err(Failure::usage(format!(
            "need 1 <= --w-val <= --n-val, got N={} W={}",
            args.n_val, args.w_val
        )));
    }
    if args.n_val > ring_size.get() as usize {
        return Err(Failure::usage(format!(
            "--n-val {} exceeds the ring size {ring_size}",
            args.n_val
        )));
    }
    let tls = node_tls(&client, args.tls_client_auth, args.require_tls)?;
    let cookie = server_cookie(args.cookie_file.as_deref())?;
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let metrics_listen = metrics_addr(args.metrics_listen.as_deref(), args.listen)?;
    let config = ServeConfig {
        metrics_listen,
        name: args.name,
        listen: args.listen,
        data_dir: args.data_dir,
        ring_size,
        defaults: Defaults {
            n_val: args.n_val,
            w_val: args.w_val,
            add_timeout: timeout,
            stats_timeout: timeout,
            sloppy: args.sloppy,
        },
        durability: if args.sync {
            Durability::Sync
        } else {
            Durability::Process
        },
        cookie,
        advertise: args.advertise,
        handoff_concurrency: args.handoff_concurrency as usize,
        detect_after: Duration::from_millis(args.detect_ms),
        tls,
        limits: Limits {
            max_connections: args.max_connections as usize,
            max_message_bytes: args.max_message_bytes as usize,
            max_streams_per_connection: args.max_streams_per_connection,
            max_sessions: args.max_sessions as usize,
            session_in_flight: args.session_in_flight as usize,
            session_idle: Duration::from_secs(args.session_idle_secs),
        },
    };
    let node = Node::start(config).await?;
    if let Some(a) = node.metrics_addr() {
        tracing::info!(metrics = %format!("http://{a}/metrics"), "serving metrics");
    }
    node.serve(shutdown_signal()).await?;
    Ok(())
}
