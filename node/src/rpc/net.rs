//! Connections under gRPC: dialing a node (plain TCP or TLS, from a chosen
//! local address) and accepting them (a cap on open connections, TLS
//! handshakes with a deadline, refusals logged at most once per interval
//! and peer).
//!
//! HTTP/2 and gRPC on top are tonic's; this module only hands it sockets.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

use super::tls::{ClientTls, NodeTls, describe_handshake_error};
use crate::sync::lock;

/// How long a TLS handshake may take before the connection is dropped: a
/// client that opens a socket and says nothing holds no slot for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often one kind of refusal from one peer address is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs a refusal at most once per [`LOG_EVERY`] and peer, with the count of
/// those not logged since: a client hammering the port cannot flood the log.
pub struct Throttle {
    /// Per peer address and kind of refusal: when it was last logged, and
    /// how many were silenced since.
    seen: Mutex<HashMap<ThrottleKey, (Instant, u64)>>,
}

type ThrottleKey = (IpAddr, &'static str);

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

impl Throttle {
    /// Nothing logged yet.
    pub fn new() -> Throttle {
        Throttle {
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)` when this refusal of `kind` from `ip` should be logged now,
    /// `n` being how many were silenced since the last line; `None` to stay
    /// quiet.
    pub fn admit(&self, ip: IpAddr, kind: &'static str) -> Option<u64> {
        self.admit_at(ip, kind, Instant::now())
    }

    fn admit_at(&self, ip: IpAddr, kind: &'static str, now: Instant) -> Option<u64> {
        let mut seen = lock(&self.seen);
        // Bounded: a flood from many addresses forgets old entries.
        if seen.len() > 4096 {
            seen.retain(|_, (t, _)| now.duration_since(*t) < LOG_EVERY);
            if seen.len() > 4096 {
                seen.clear();
            }
        }
        match seen.get_mut(&(ip, kind)) {
            Some((t, silenced)) if now.duration_since(*t) < LOG_EVERY => {
                *silenced += 1;
                None
            }
            Some((t, silenced)) => {
                let n = *silenced;
                *t = now;
                *silenced = 0;
                Some(n)
            }
            None => {
                seen.insert((ip, kind), (now, 0));
                Some(0)
            }
        }
    }
}

/// An accepted connection and the slot it holds until it closes.
pub struct Conn<IO> {
    io: IO,
    _slot: OwnedSemaphorePermit,
}

impl<IO: Connected> Connected for Conn<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Conn<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Conn<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Accepted connections, as tonic's server takes them.
pub type Incoming<IO> = ReceiverStream<std::io::Result<Conn<IO>>>;

fn accepted(tcp: &TcpStream) -> Option<SocketAddr> {
    // Without no-delay a unary call waits out Nagle's delay (about 40 ms).
    let _ = tcp.set_nodelay(true);
    tcp.peer_addr().ok()
}

/// Accepts plain TCP connections, at most `max` open at once (one more is
/// accepted and closed at once, with a log line).
pub fn plain(
    listener: TcpListener,
    max: usize,
    throttle: Arc<Throttle>,
) -> (Incoming<TcpStream>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(max));
    let task = tokio::spawn(async move {
        loop {
            let Some((tcp, _, slot)) = next(&listener, &slots, max, &throttle).await else {
                continue;
            };
            if tx
                .send(Ok(Conn {
                    io: tcp,
                    _slot: slot,
                }))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    (ReceiverStream::new(rx), task)
}

/// Accepts TLS connections (handshakes run beside each other, each within
/// [`HANDSHAKE_TIMEOUT`]), at most `max` open at once.
pub fn tls(
    listener: TcpListener,
    max: usize,
    tls: Arc<NodeTls>,
    throttle: Arc<Throttle>,
) -> (
    Incoming<tokio_rustls::server::TlsStream<TcpStream>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(max));
    let task = tokio::spawn(async move {
        loop {
            let Some((tcp, peer, slot)) = next(&listener, &slots, max, &throttle).await else {
                continue;
            };
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            let throttle = Arc::clone(&throttle);
            tokio::spawn(async move {
                if speaks_plain_http2(&tcp).await {
                    if let Some(p) = peer
                        && throttle.admit(p.ip(), "plaintext").is_some()
                    {
                        tracing::warn!(peer = %p, "refused a client that connected without TLS");
                    }
                    refuse_plaintext(tcp).await;
                    return;
                }
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(io)) => {
                        let _ = tx.send(Ok(Conn { io, _slot: slot })).await;
                    }
                    Ok(Err(e)) => {
                        if let (Some(p), Some(n)) =
                            (peer, peer.and_then(|p| throttle.admit(p.ip(), "handshake")))
                        {
                            tracing::warn!(
                                peer = %p,
                                silenced = n,
                                "refused a connection: TLS handshake failed: {}",
                                describe_handshake_error(&e)
                            );
                        }
                    }
                    Err(_) => {
                        if let Some(p) = peer
                            && throttle.admit(p.ip(), "handshake-timeout").is_some()
                        {
                            tracing::warn!(peer = %p, "dropped a connection: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                        }
                    }
                }
            });
        }
    });
    (ReceiverStream::new(rx), task)
}

/// What a client that speaks plain gRPC to a TLS node is told.
pub const PLAINTEXT_REFUSED: &str = "this node speaks TLS only and the client connected without it: \
     pass --tls-ca FILE (FLAVIO_TLS_CA), the CA of the cluster's certificates";

/// Whether the connection starts like plain HTTP/2 (its preface, `PRI *
/// HTTP/2.0`) rather than a TLS ClientHello (byte 0x16).
async fn speaks_plain_http2(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await,
        Ok(Ok(1)) if first[0] == b'P'
    )
}

/// Answers every request of a plain HTTP/2 connection with UNAVAILABLE and
/// [`PLAINTEXT_REFUSED`], so the user reads why instead of "transport
/// error". (The client has sent its cookie in clear by then: nothing on
/// this side can prevent that, only the client's TLS settings.)
async fn refuse_plaintext(tcp: TcpStream) {
    let service = hyper::service::service_fn(|_req| async {
        http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .header("grpc-message", PLAINTEXT_REFUSED)
            .body(String::new())
    });
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(TokioIo::new(tcp), service);
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn).await;
}

/// The next connection with a free slot; `None` when accepting failed or
/// the cap is reached (that connection is closed).
async fn next(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    max: usize,
    throttle: &Throttle,
) -> Option<(TcpStream, Option<SocketAddr>, OwnedSemaphorePermit)> {
    let (tcp, _) = match listener.accept().await {
        Ok(c) => c,
        Err(e) => {
            // Out of file descriptors and the like: wait rather than spin.
            tracing::warn!(error = %e, "accepting a connection failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            return None;
        }
    };
    let peer = accepted(&tcp);
    match Arc::clone(slots).try_acquire_owned() {
        Ok(slot) => Some((tcp, peer, slot)),
        Err(_) => {
            if let Some(p) = peer
                && let Some(n) = throttle.admit(p.ip(), "connection-cap")
            {
                tracing::warn!(peer = %p, silenced = n, "refused a connection: {max} connections are open (--max-connections)");
            }
            None
        }
    }
}

/// Dials a node for tonic: TCP from `local` if set, then TLS when
/// configured.
#[derive(Clone)]
pub struct Dialer {
    tls: ClientTls,
    local: Option<IpAddr>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a client waits for a node's first bytes after the handshake.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(5);

/// A stream whose first bytes were read ahead: they are handed out again
/// before the rest.
pub struct Prefixed<IO> {
    prefix: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Reads the node's first bytes (its HTTP/2 settings, always sent at once).
/// In TLS 1.3 a node judges the client's certificate after the client
/// finished its handshake, so a refusal only shows here, as an alert: say
/// so plainly rather than let HTTP/2 report "connection closed".
async fn first_bytes<IO: AsyncRead + Unpin>(mut io: IO) -> Result<Prefixed<IO>, String> {
    use tokio::io::AsyncReadExt;
    let mut prefix = vec![0u8; 4096];
    match tokio::time::timeout(FIRST_BYTES_TIMEOUT, io.read(&mut prefix)).await {
        Ok(Ok(0)) => Err(
            "the node closed the connection right after the TLS handshake (did it refuse this client's certificate?)"
                .into(),
        ),
        Ok(Ok(n)) => {
            prefix.truncate(n);
            Ok(Prefixed { prefix, at: 0, io })
        }
        Ok(Err(e)) => Err(format!(
            "the node refused this client's certificate: {}",
            describe_handshake_error(&e)
        )),
        // Silent: let HTTP/2 find out.
        Err(_) => Ok(Prefixed {
            prefix: Vec::new(),
            at: 0,
            io,
        }),
    }
}

impl tonic::codegen::Service<Uri> for Dialer {
    type Response = TokioIo<Prefixed<tokio_rustls::client::TlsStream<TcpStream>>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let local = self.local;
        Box::pin(async move {
            let host = uri.host().ok_or("the address has no host")?.to_string();
            let port = uri.port_u16().ok_or("the address has no port")?;
            let name = tls.name_for(&host)?;
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = connect_tcp(bare, port, local).await?;
            let connector = tokio_rustls::TlsConnector::from(tls.config());
            let io = connector
                .connect(name, tcp)
                .await
                .map_err(|e| describe_handshake_error(&e))?;
            Ok(TokioIo::new(first_bytes(io).await?))
        })
    }
}

async fn connect_tcp(host: &str, port: u16, local: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = local.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        match socket.connect(addr).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    }))
}

/// A channel to `endpoint` that connects on first use (and again after a
/// failure): over TLS when `tls` is set, from `local` when set.
pub fn lazy(endpoint: Endpoint, tls: Option<&ClientTls>, local: Option<IpAddr>) -> Channel {
    match tls {
        Some(t) => endpoint.connect_with_connector_lazy(Dialer {
            tls: t.clone(),
            local,
        }),
        None => endpoint.local_address(local).connect_lazy(),
    }
}

/// A channel to `endpoint`, connected now.
pub async fn connect(
    endpoint: Endpoint,
    tls: Option<&ClientTls>,
) -> Result<Channel, tonic::transport::Error> {
    match tls {
        Some(t) => {
            endpoint
                .connect_with_connector(Dialer {
                    tls: t.clone(),
                    local: None,
                })
                .await
        }
        None => endpoint.connect().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_logs_once_per_interval_and_counts_the_rest() {
        let t = Throttle::new();
        let ip: IpAddr = [127, 0, 0, 9].into();
        let t0 = Instant::now();
        assert_eq!(t.admit_at(ip, "x", t0), Some(0));
        assert_eq!(t.admit_at(ip, "x", t0 + Duration::from_secs(1)), None);
        assert_eq!(t.admit_at(ip, "x", t0 + Duration::from_secs(2)), None);
        assert_eq!(t.admit_at(ip, "y", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(t.admit_at(ip, "x", t0 + LOG_EVERY * 2), Some(2));
    }
}
