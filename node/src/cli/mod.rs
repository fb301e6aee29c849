//! The `flavio` command line: `serve` runs a node; `ping`, `add`, `stats`,
//! `health` and `bench` talk to one over gRPC; `admin` manages the cluster
//! (riak-admin's commands); `devrel` runs a local cluster of real nodes.
//!
//! Errors print one line on stderr and exit non-zero: 2 for usage errors
//! (bad arguments, no cookie), 1 for everything else (unreachable node,
//! refused cookie, failed request).

mod admin;
pub mod admin_format;
mod bench;
mod commands;
mod devrel;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::rpc::tls::ClientTls;
use crate::rpc::{Cookie, Credentials};
use crate::{Error, Result};

/// The default node address: riak's dev1 port from the tutorial.
pub const DEFAULT_NODE: &str = "127.0.0.1:10017";

#[derive(Parser, Debug)]
#[command(
    name = "flavio",
    version,
    about = "FlavioDB: a riak_core-style ring of vnodes",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How client commands reach a node: accepted before or after the
    /// subcommand (`flavio --node X ping` and `flavio ping --node X`).
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node.
    Serve(serve::ServeArgs),
    /// Ping one vnode (chosen by hashing the current time).
    Ping,
    /// Add two signed 64-bit integers on N vnodes, waiting for W replies.
    Add(commands::AddArgs),
    /// Show every vnode's operation count (a coverage request).
    Stats(commands::StatsArgs),
    /// Exit 0 when the node reports itself SERVING (for readiness probes).
    Health,
    /// Drive load against a node and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Cluster administration: member-status, ring-status, transfers, cluster ...
    Admin(admin::AdminArgs),
    /// Start a local cluster of N nodes on 127.0.0.1 and keep it running until Ctrl-C.
    Devrel(devrel::DevrelArgs),
}

/// Output format of client commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// One JSON document, with the shapes documented in the README.
    Json,
}

/// How to reach and authenticate to a node: global options of every client
/// command (`serve` and `devrel` ignore them).
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The node's gRPC address (client and admin commands).
    #[arg(long, env = "FLAVIO_NODE", default_value = DEFAULT_NODE, global = true)]
    pub node: String,
    /// File holding the cluster cookie (else FLAVIO_COOKIE, else ~/.flavio.cookie).
    #[arg(long, env = "FLAVIO_COOKIE_FILE", global = true)]
    pub cookie_file: Option<PathBuf>,
    /// Output format (client and admin commands).
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    /// CA certificate (PEM) that node certificates chain to: turns TLS on.
    /// `serve` trusts peers and clients by it.
    #[arg(long, env = "FLAVIO_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// Certificate (PEM) to present: a node's own (`serve`, required with
    /// TLS), a client's when nodes require one.
    #[arg(long, env = "FLAVIO_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "FLAVIO_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// The name every node's certificate is checked against, instead of the
    /// host of the address dialed (clusters on pod IPs: one name for all).
    #[arg(long, env = "FLAVIO_TLS_SERVER_NAME", global = true)]
    pub tls_server_name: Option<String>,
}

impl ClientArgs {
    /// The certificate and key to present, if any; one without the other
    /// is a usage error.
    pub fn tls_identity(&self) -> Result<Option<(&Path, &Path)>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Ok(Some((c.as_path(), k.as_path()))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(Error::InvalidArgument(
                "--tls-cert needs --tls-key (FLAVIO_TLS_KEY)".into(),
            )),
            (None, Some(_)) => Err(Error::InvalidArgument(
                "--tls-key needs --tls-cert (FLAVIO_TLS_CERT)".into(),
            )),
        }
    }

    /// TLS for a client command: on with --tls-ca (FLAVIO_TLS_CA).
    pub fn client_tls(&self) -> Result<Option<ClientTls>> {
        let identity = self.tls_identity()?;
        match &self.tls_ca {
            Some(ca) => ClientTls::from_files(ca, identity)
                .map(|t| Some(t.expecting(self.tls_server_name.clone()))),
            None if identity.is_some() => Err(Error::InvalidArgument(
                "a TLS certificate without --tls-ca (FLAVIO_TLS_CA): name the CA that verifies the nodes"
                    .into(),
            )),
            None => Ok(None),
        }
    }

    /// The cookie, and TLS when configured.
    pub fn credentials(&self) -> Result<Credentials> {
        Ok(Credentials::new(self.cookie()?, self.client_tls()?))
    }

    /// The cookie a client sends; there must be one.
    pub fn cookie(&self) -> Result<Cookie> {
        let env = std::env::var("FLAVIO_COOKIE").ok();
        if let Some(c) = Cookie::resolve(self.cookie_file.as_deref(), env.as_deref())? {
            return Ok(c);
        }
        match home_cookie_path() {
            Some(p) if p.exists() => Cookie::from_file(&p),
            _ => Err(Error::InvalidArgument(
                "no cluster cookie: pass --cookie-file FILE, set FLAVIO_COOKIE, or create ~/.flavio.cookie".into(),
            )),
        }
    }
}

/// `~/.flavio.cookie`, the cookie of last resort, as Erlang's `~/.erlang.cookie`.
pub fn home_cookie_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".flavio.cookie"))
}

/// A failure and the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::InvalidArgument(_) | Error::InvalidRingSize(_) | Error::Overflow { .. } => 2,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure {
            // The node judged the input itself bad: a usage error, as locally.
            code: if s.code() == tonic::Code::InvalidArgument {
                2
            } else {
                1
            },
            message: status_line(&s),
        }
    }
}

/// One line for a gRPC status: a readable code and the message.
pub fn status_line(s: &tonic::Status) -> String {
    use tonic::Code;
    let what = match s.code() {
        Code::PermissionDenied => "permission denied",
        Code::Unavailable => "unavailable",
        Code::DeadlineExceeded => "timed out",
        Code::InvalidArgument => "invalid argument",
        Code::Unimplemented => "not supported",
        // The cluster said no (commit of a stale plan, leave of the only
        // member, ...): its message says why.
        Code::FailedPrecondition => "refused",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::Internal => "internal error",
        _ => "failed",
    };
    let mut msg = s.message().replace('\n', " ");
    // A status made on this side from a failed connection says only
    // "transport error": its cause (a refused certificate, a reset) is in
    // the source chain.
    if let Some(cause) = std::error::Error::source(s) {
        let chain = crate::rpc::client::source_chain(cause);
        if !msg.contains(&chain) {
            msg = if msg.is_empty() {
                chain
            } else {
                format!("{msg}: {chain}")
            };
        }
    }
    if msg.is_empty() {
        format!("{what} ({:?})", s.code())
    } else {
        format!("{what}: {msg}")
    }
}

/// Folds clap's multi-line error into one line without the usage block.
fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("Usage:") || t.starts_with("For more information") {
            continue;
        }
        parts.push(t.to_string());
    }
    let mut s = parts.join(" ");
    if let Some(rest) = s.strip_prefix("error: ") {
        s = rest.to_string();
    }
    format!("{s} (see --help)")
}

/// Parses a command line as `main` would, without running it: `Err` with
/// the one-line message a user would see. (For the fuzzers: numbers,
/// addresses and every other argument go through here.)
pub fn parse_only<I, T>(args: I) -> std::result::Result<(), String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args)
        .map(|_| ())
        .map_err(|e| one_line(&e))
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    eprintln!("flavio: error: {}", one_line(&e));
                    ExitCode::from(2)
                }
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("flavio: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn runtime(multi: bool) -> std::result::Result<tokio::runtime::Runtime, Failure> {
    let mut b = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().map_err(|e| Failure {
        code: 1,
        message: format!("cannot start the async runtime: {e}"),
    })
}

fn run(cli: Cli) -> std::result::Result<(), Failure> {
    match cli.command {
        Command::Serve(args) => {
            serve::init_logging(&args);
            runtime(true)?.block_on(serve::run(args, cli.client))
        }
        Command::Bench(args) => runtime(true)?.block_on(bench::run(args, cli.client)),
        Command::Devrel(args) => {
            init_client_logging();
            runtime(false)?.block_on(devrel::run(args))
        }
        other => {
            init_client_logging();
            let c = cli.client;
            runtime(false)?.block_on(async move {
                match other {
                    Command::Ping => commands::ping(c).await,
                    Command::Add(a) => commands::add(a, c).await,
                    Command::Stats(a) => commands::stats(a, c).await,
                    Command::Health => commands::health(c).await,
                    Command::Admin(a) => admin::run(a, c).await,
                    Command::Serve(_) | Command::Bench(_) | Command::Devrel(_) => Ok(()),
                }
            })
        }
    }
}

fn init_client_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
