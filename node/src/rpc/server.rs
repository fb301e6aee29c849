//! The node process: opens the store, starts the vnodes, and serves the
//! `flavio.v1.Flavio` and `grpc.health.v1.Health` services until shut down.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use flavio_proto::v1 as pb;
use flavio_proto::v1::flavio_server::{Flavio as FlavioApi, FlavioServer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use flavio_proto::v1::admin_server::AdminServer;
use flavio_proto::v1::cluster_server::ClusterServer;

use super::admin_service::AdminService;
use super::auth::Cookies;
use super::client::Credentials;
use super::cluster_service::ClusterService;
use super::convert::{ProtoRingCodec, add_options, stats_timeout};
use super::net;
use super::peer::Peers;
use super::tls::NodeTls;
use crate::app::{Defaults, Flavio, FlavioVnode};
use crate::cluster::transport::Transport;
use crate::cluster::{Cluster, ClusterConfig};
use crate::metrics::NodeMetrics;
use crate::ring::RingSize;
use crate::vnode::{Durability, Store, VnodeMaster};
use crate::{Error, Result};

/// How long a stopping node lets requests in flight finish before it closes
/// the connections that are still open (peers' and clients' streams).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The default of [`Limits::session_in_flight`].
pub const SESSION_IN_FLIGHT: usize = 4096;

/// The trailer a stopping node ends a session with: every request of the
/// session that got no reply was not run, so the client may send it again
/// (to another node) without counting it twice.
pub const NOT_RUN_TRAILER: &str = "flavio-not-run";

/// Everything `flavio serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The node's name, as other nodes and users see it.
    pub name: String,
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// Partitions of the ring.
    pub ring_size: RingSize,
    /// Request defaults (N, W, timeouts).
    pub defaults: Defaults,
    /// What an acknowledged write has survived.
    pub durability: Durability,
    /// The cluster secret every call must carry (those accepted, and the
    /// one sent to peers).
    pub cookie: Arc<Cookies>,
    /// The address other nodes use to reach this one (default: the bound
    /// listen address).
    pub advertise: Option<String>,
    /// Ownership transfers at once, per direction.
    pub handoff_concurrency: usize,
    /// Silence after which a peer counts as down.
    pub detect_after: std::time::Duration,
    /// Where `/metrics` is served over plain HTTP (`None`: not at all).
    pub metrics_listen: Option<SocketAddr>,
    /// TLS for every connection, in and out (`None`: plain TCP).
    pub tls: Option<Arc<NodeTls>>,
    /// What one client may hold of the node.
    pub limits: Limits,
}

/// What clients may hold of a node, so that one hostile or broken client
/// cannot take it down for the others. Each limit reached gets a clear
/// refusal (a closed connection is logged; a refused call says which limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, clients' and peers' together; more are
    /// closed as they arrive.
    pub max_connections: usize,
    /// Largest message decoded or encoded, in bytes (gRPC OUT_OF_RANGE
    /// beyond; the length prefix is checked before the body is buffered).
    pub max_message_bytes: usize,
    /// Streams (calls) one connection may have open at once (HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS: the client waits for a free one).
    pub max_streams_per_connection: u32,
    /// Client sessions open on the node at once (RESOURCE_EXHAUSTED beyond).
    pub max_sessions: usize,
    /// Requests one session may have in flight; more are not read until
    /// replies go out, which pushes back through HTTP/2 flow control.
    pub session_in_flight: usize,
    /// A session with no request in flight and none sent for this long is
    /// closed (DEADLINE_EXCEEDED), freeing its slot.
    pub session_idle: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_message_bytes: 4 << 20,
            max_streams_per_connection: 1024,
            max_sessions: 8192,
            session_in_flight: SESSION_IN_FLIGHT,
            session_idle: std::time::Duration::from_secs(300),
        }
    }
}

/// An idle connection is pinged this often, and closed when the ping is not
/// answered within [`KEEPALIVE_TIMEOUT`]: a peer that vanished (a pulled
/// cable, a paused VM) does not hold its slot for ever.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// How often a node looks at its TLS and cookie files for new contents.
const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A node that has opened its store and bound its port but not yet served.
pub struct Node {
    config: ServeConfig,
    listener: TcpListener,
    master: VnodeMaster<FlavioVnode>,
    cluster: Cluster<FlavioVnode>,
    peers: Arc<Peers>,
    app: Flavio,
    metrics: Arc<NodeMetrics>,
    metrics_listener: Option<TcpListener>,
}

impl Node {
    /// Opens the store and the ring, starts the owned vnodes and binds the
    /// listen address.
    pub async fn start(config: ServeConfig) -> Result<Node> {
        let store = Store::open(&config.data_dir, config.ring_size, config.durability)?;
        let master: VnodeMaster<FlavioVnode> =
            VnodeMaster::start(&config.name, config.ring_size, store.clone(), [])?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Io {
                context: format!("listening on {}", config.listen),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| Error::Io {
            context: "reading the bound address".into(),
            source,
        })?;
        let advertise = config
            .advertise
            .clone()
            .unwrap_or_else(|| bound.to_string());
        let credentials = Credentials::new(
            Arc::clone(&config.cookie),
            config.tls.as_ref().map(|t| t.client()),
        );
        let peers = Arc::new(Peers::new(credentials).leaving_from(bound.ip()));
        let cluster = Cluster::open(
            ClusterConfig {
                name: config.name.clone(),
                addr: advertise,
                handoff_concurrency: config.handoff_concurrency,
                seed: None,
                detect_after: config.detect_after,
            },
            store,
            master.clone(),
            Arc::clone(&peers) as Arc<dyn Transport>,
            Arc::new(ProtoRingCodec),
        )
        .await?;
        let app = Flavio::new(cluster.router(), config.defaults);
        let metrics_listener = match config.metrics_listen {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|source| Error::Io {
                context: format!("listening for /metrics on {a}"),
                source,
            })?),
            None => None,
        };
        Ok(Node {
            config,
            listener,
            master,
            cluster,
            peers,
            app,
            metrics: Arc::new(NodeMetrics::new()),
            metrics_listener,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Io {
            context: "reading the bound address".into(),
            source,
        })
    }

    /// The address `/metrics` is served on, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish,
    /// stops the vnodes and flushes the store.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Node {
            config,
            listener,
            master,
            cluster,
            peers,
            app,
            metrics,
            metrics_listener,
        } = self;
        cluster.start().await;
        let metrics_task = metrics_listener.map(|l| {
            let m = Arc::clone(&metrics);
            let c = cluster.clone();
            let cookies = Arc::clone(&config.cookie);
            let tls = config.tls.clone();
            tokio::spawn(crate::metrics::serve_http(
                l,
                Arc::new(move || {
                    m.sample(&c);
                    m.secret_reloads(cookies.reloads(), tls.as_ref().map_or(0, |t| t.reloads()));
                    m.render()
                }),
            ))
        });
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<FlavioServer<Service>>().await;
        // A node removed from its cluster stays SERVING for health: it
        // refuses client requests itself (Service::check_member), and a
        // failing probe would have Kubernetes restart it (a restart ends the
        // refusal) or keep the operator from joining it again.
        let cookie = config.cookie.clone();
        let stopper = cluster.clone();
        let (draining_tx, draining) = tokio::sync::watch::channel(false);
        let service = Service {
            app: app.clone(),
            cluster: cluster.clone(),
            draining,
            metrics: Arc::clone(&metrics),
            sessions: Arc::new(Semaphore::new(config.limits.max_sessions)),
            limits: config.limits,
        };
        let limits = config.limits;
        let api = InterceptedService::new(
            FlavioServer::new(service)
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(limits.max_message_bytes),
            {
                let cookie = cookie.clone();
                move |req| cookie.check(req)
            },
        );
        let admin = InterceptedService::new(
            AdminServer::new(
                AdminService::new(cluster.clone(), Arc::clone(&peers), config.defaults.n_val)
                    .with_cookies(Arc::clone(&config.cookie)),
            )
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes),
            {
                let cookie = cookie.clone();
                move |req| cookie.check(req)
            },
        );
        let peer = InterceptedService::new(
            ClusterServer::new(ClusterService::new(cluster.clone()))
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(limits.max_message_bytes),
            {
                let cookie = cookie.clone();
                let tls = config.tls.is_some();
                move |req: Request<()>| {
                    // With TLS, only nodes call each other's Cluster service, and
                    // every node has a certificate of the cluster's CA: a client
                    // without one holding the cookie is still not a node.
                    if tls && req.peer_certs().is_none() {
                        return Err(Status::permission_denied(
                            "calls between nodes need a certificate signed by the cluster CA",
                        ));
                    }
                    cookie.check(req)
                }
            },
        );
        tracing::info!(
            node = %config.name,
            listen = %listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
            ring_size = %config.ring_size,
            data_dir = %config.data_dir.display(),
            tls = match &config.tls {
                None => "off",
                Some(t) if t.client_auth() == super::tls::ClientAuth::Require => "on, client certificates required",
                Some(_) => "on",
            },
            "node serving"
        );
        let throttle = Arc::new(net::Throttle::new());
        let tls_watch = config.tls.as_ref().map(|t| t.watch(RELOAD_EVERY));
        let cookie_watch = config.cookie.watch(RELOAD_EVERY);
        let health_on_stop = health.clone();
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let goodbye = cluster.clone();
        let shutdown = async move {
            shutdown.await;
            // Peers switch to fallbacks now, not after the detection
            // timeout; requests already sent here still finish below.
            goodbye.say_goodbye().await;
            // Sessions stop taking requests and end once their replies are
            // out, telling the client the rest was not run (it resends them
            // elsewhere): a rolling restart fails no request.
            let _ = draining_tx.send(true);
            tracing::info!("shutting down: finishing in-flight requests");
            health_on_stop
                .set_not_serving::<FlavioServer<Service>>()
                .await;
            let _ = stopping_tx.send(());
        };
        let router = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(limits.max_streams_per_connection))
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .add_service(health_service)
            .add_service(api)
            .add_service(admin)
            .add_service(peer);
        let (server, acceptor): (Pin<Box<dyn Future<Output = _> + Send>>, _) = match &config.tls {
            Some(tls) => {
                let (incoming, acceptor) = net::tls(
                    listener,
                    config.limits.max_connections,
                    Arc::clone(tls),
                    Arc::clone(&throttle),
                );
                (
                    Box::pin(router.serve_with_incoming_shutdown(incoming, shutdown)),
                    acceptor,
                )
            }
            None => {
                let (incoming, acceptor) = net::plain(
                    listener,
                    config.limits.max_connections,
                    Arc::clone(&throttle),
                );
                (
                    Box::pin(router.serve_with_incoming_shutdown(incoming, shutdown)),
                    acceptor,
                )
            }
        };
        // A graceful stop waits for every connection to close, but peers and
        // sessions keep long-lived streams open: after a grace period for the
        // requests in flight, stop anyway.
        let grace = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let served = tokio::select! {
            r = server => r.map_err(|e| Error::Rpc(format!("server failed: {e}"))),
            () = grace => {
                tracing::info!(grace_ms = SHUTDOWN_GRACE.as_millis() as u64, "closing the remaining streams");
                Ok(())
            }
        };
        acceptor.abort();
        for t in [tls_watch, cookie_watch].into_iter().flatten() {
            t.abort();
        }
        // Stop vnodes and flush even if serving failed, so nothing
        // acknowledged is left unwritten.
        let stopped = master.shutdown().await;
        // Then the node's background tasks (gossip, handoff senders): they
        // end with it rather than with the process.
        stopper.stop();
        if let Some(t) = metrics_task {
            t.abort();
        }
        tracing::info!("node stopped");
        served.and(stopped)
    }
}

/// The `flavio.v1.Flavio` service over the app.
#[derive(Clone)]
pub struct Service {
    app: Flavio,
    cluster: Cluster<FlavioVnode>,
    /// True once the node is stopping.
    draining: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<NodeMetrics>,
    /// A slot per open session ([`Limits::max_sessions`]).
    sessions: Arc<Semaphore>,
    limits: Limits,
}

impl Service {
    /// Refuses client requests while this node has left its cluster.
    fn check_member(&self) -> Result<()> {
        if self.cluster.ring().left {
            return Err(Error::Left(self.cluster.me().to_string()));
        }
        Ok(())
    }

    /// Runs a unary request, counting it in the metrics by `command`.
    async fn measured<T>(
        &self,
        command: &str,
        request: impl Future<Output = Result<T>>,
    ) -> std::result::Result<Response<T>, Status> {
        let t = Instant::now();
        let r = request.await;
        self.metrics
            .request(command, t, r.as_ref().err().map(Error::code));
        Ok(Response::new(r?))
    }
}

type SessionStream = ReceiverStream<std::result::Result<pb::SessionReply, Status>>;

/// The command a session request carries, as metrics name it.
fn command_of(req: &pb::SessionRequest) -> &'static str {
    use pb::session_request::Op;
    match req.op {
        Some(Op::Ping(_)) => "ping",
        Some(Op::Add(_)) => "add",
        Some(Op::Stats(_)) => "stats",
        None => "none",
    }
}

/// The status a session of a stopping node ends with.
fn not_run() -> Status {
    let mut s = Status::unavailable(
        "the node is stopping: requests of this session without a reply were not run; \
         send them again (to another node)",
    );
    s.metadata_mut().insert(
        NOT_RUN_TRAILER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    s
}

/// Whether a session ended with `not_run`: its unanswered requests can be
/// sent again safely.
pub fn unanswered_not_run(s: &Status) -> bool {
    s.metadata().get(NOT_RUN_TRAILER).is_some()
}

fn refused(id: u64, e: &Error) -> pb::SessionReply {
    pb::SessionReply {
        id,
        result: Some(pb::session_reply::Result::Error(pb::Error {
            code: e.code() as i32,
            message: e.to_string(),
        })),
    }
}

async fn answer(app: &Flavio, req: pb::SessionRequest) -> pb::SessionReply {
    use pb::session_reply::Result as R;
    use pb::session_request::Op;
    let result = match req.op {
        Some(Op::Ping(_)) => app.ping().await.map(|p| R::Ping(p.into())),
        Some(Op::Add(a)) => match add_options(&a) {
            Ok(opts) => app.add(a.a, a.b, opts).await.map(|r| R::Add(r.into())),
            Err(e) => Err(e),
        },
        Some(Op::Stats(s)) => match stats_timeout(&s) {
            Ok(t) => Ok(R::Stats(app.stats(t).await.into())),
            Err(e) => Err(e),
        },
        None => Err(Error::InvalidArgument(
            "session request without an operation".into(),
        )),
    };
    pb::SessionReply {
        id: req.id,
        result: Some(result.unwrap_or_else(|e| {
            R::Error(pb::Error {
                code: e.code() as i32,
                message: e.to_string(),
            })
        })),
    }
}

#[tonic::async_trait]
impl FlavioApi for Service {
    async fn ping(
        &self,
        _req: Request<pb::PingRequest>,
    ) -> std::result::Result<Response<pb::PingReply>, Status> {
        self.measured("ping", async {
            self.check_member()?;
            Ok(self.app.ping().await?.into())
        })
        .await
    }

    async fn add(
        &self,
        req: Request<pb::AddRequest>,
    ) -> std::result::Result<Response<pb::AddReply>, Status> {
        self.measured("add", async {
            self.check_member()?;
            let r = req.into_inner();
            let opts = add_options(&r)?;
            Ok(self.app.add(r.a, r.b, opts).await?.into())
        })
        .await
    }

    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> std::result::Result<Response<pb::StatsReply>, Status> {
        self.measured("stats", async {
            self.check_member()?;
            let timeout = stats_timeout(req.get_ref())?;
            Ok(self.app.stats(timeout).await.into())
        })
        .await
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<Streaming<pb::SessionRequest>>,
    ) -> std::result::Result<Response<SessionStream>, Status> {
        let Ok(session_slot) = Arc::clone(&self.sessions).try_acquire_owned() else {
            return Err(Status::resource_exhausted(format!(
                "this node has {} sessions open, its limit (--max-sessions): use fewer sessions, \
                 or another node",
                self.limits.max_sessions
            )));
        };
        let in_flight = self.limits.session_in_flight;
        let idle_after = self.limits.session_idle;
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let app = self.app.clone();
        let me = self.clone();
        let mut draining = self.draining.clone();
        tokio::spawn(async move {
            let _session_slot = session_slot;
            let slots = Arc::new(Semaphore::new(in_flight));
            loop {
                // Idle: nothing in flight and nothing sent for a while.
                let idle = async {
                    loop {
                        tokio::time::sleep(idle_after).await;
                        if slots.available_permits() == in_flight {
                            return;
                        }
                    }
                };
                let next = tokio::select! {
                    biased;
                    _ = draining.wait_for(|d| *d) => None,
                    m = inbound.message() => Some(Some(m)),
                    () = idle => Some(None),
                };
                let next = match next {
                    None => None,
                    Some(Some(m)) => Some(m),
                    Some(None) => {
                        let _ = tx
                            .send(Err(Status::deadline_exceeded(format!(
                                "session closed after {}s without a request (--session-idle-secs)",
                                idle_after.as_secs()
                            ))))
                            .await;
                        break;
                    }
                };
                let msg = match next {
                    Some(Ok(Some(m))) => m,
                    Some(Ok(None)) => break,
                    Some(Err(status)) => {
                        tracing::debug!(%status, "session stream ended with an error");
                        break;
                    }
                    None => {
                        // Stopping: no request is read any more. Once every
                        // request taken has its reply sent, end the session
                        // saying the others were not run.
                        let all = u32::try_from(in_flight).unwrap_or(u32::MAX);
                        let _ = slots.acquire_many(all).await;
                        let _ = tx.send(Err(not_run())).await;
                        break;
                    }
                };
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                let app = app.clone();
                let tx = tx.clone();
                let metrics = Arc::clone(&me.metrics);
                // Checked per request: a session opened while this node was
                // a member must not be served by the cluster it left for.
                let left = me.check_member().err();
                tokio::spawn(async move {
                    let t = Instant::now();
                    let command = command_of(&msg);
                    let reply = match left {
                        None => answer(&app, msg).await,
                        Some(e) => refused(msg.id, &e),
                    };
                    let code = match &reply.result {
                        Some(pb::session_reply::Result::Error(e)) => {
                            Some(tonic::Code::from_i32(e.code))
                        }
                        _ => None,
                    };
                    metrics.request(command, t, code);
                    // The client may have gone; its replies have nowhere to go.
                    let _ = tx.send(Ok(reply)).await;
                    drop(slot);
                });
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C).
pub fn shutdown_signal() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the node");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    })
}
