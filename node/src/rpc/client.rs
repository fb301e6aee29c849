//! A client of one node: unary calls for one-off commands, and the streaming
//! session for many requests in flight.

use flavio_proto::v1 as pb;
use flavio_proto::v1::admin_client::AdminClient;
use flavio_proto::v1::flavio_client::FlavioClient;
use tonic::Request;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use std::sync::Arc;

use super::Cookie;
use super::auth::Cookies;
use super::net;
use super::tls::ClientTls;
use crate::{Error, Result};

/// What a caller needs to reach nodes: the cluster cookie, and TLS when the
/// nodes serve it.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The cookie sent with every call (the current one of these).
    pub cookie: Arc<Cookies>,
    /// `Some` when nodes speak TLS.
    pub tls: Option<ClientTls>,
}

impl From<Cookie> for Credentials {
    fn from(cookie: Cookie) -> Self {
        Credentials {
            cookie: cookie.into(),
            tls: None,
        }
    }
}

impl Credentials {
    /// The cookie, over TLS when `tls` is set.
    pub fn new(cookie: impl Into<Arc<Cookies>>, tls: Option<ClientTls>) -> Credentials {
        Credentials {
            cookie: cookie.into(),
            tls,
        }
    }
}

/// A channel to the node at `addr`, connected now.
pub async fn channel(addr: &str, tls: Option<&ClientTls>) -> Result<Channel> {
    net::connect(endpoint(addr)?, tls)
        .await
        .map_err(|e| Error::Rpc(format!("cannot reach node {addr}: {}", source_chain(&e))))
}

/// The generated client with the cookie attached to every call.
pub type Raw = FlavioClient<InterceptedService<Channel, CookieLayer>>;

/// Adds the cookie to each outgoing call: the one to send at the time of
/// the call, so a node's reloaded cookie file takes effect at once.
#[derive(Clone, Debug)]
pub struct CookieLayer(Arc<Cookies>);

impl CookieLayer {
    /// Attaches `cookie` (the current one of a set).
    pub fn new(cookie: impl Into<Arc<Cookies>>) -> Self {
        CookieLayer(cookie.into())
    }
}

impl tonic::service::Interceptor for CookieLayer {
    fn call(&mut self, req: Request<()>) -> std::result::Result<Request<()>, tonic::Status> {
        self.0.current().attach(req)
    }
}

/// A connection to one node.
#[derive(Clone)]
pub struct Client {
    raw: Raw,
}

/// Turns `host:port` (or a full `http://` URI) into an endpoint.
pub fn endpoint(addr: &str) -> Result<Endpoint> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        // Checked here: the URI parser would take "localhost" (port 80) or
        // port 99999 and leave the user with "connection refused".
        let bad = || {
            Error::InvalidArgument(format!(
                "invalid node address {addr:?}: expected HOST:PORT with a port from 1 to 65535"
            ))
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad());
        }
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri)
        .map(|e| {
            e.tcp_nodelay(true)
                .connect_timeout(std::time::Duration::from_secs(3))
        })
        .map_err(|e| Error::InvalidArgument(format!("invalid node address {addr:?}: {e}")))
}

impl Client {
    /// Connects to the node at `addr` (`host:port`).
    pub async fn connect(addr: &str, credentials: impl Into<Credentials>) -> Result<Client> {
        let c = credentials.into();
        let channel = channel(addr, c.tls.as_ref()).await?;
        Ok(Client {
            raw: FlavioClient::with_interceptor(channel, CookieLayer(c.cookie)),
        })
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> Raw {
        self.raw.clone()
    }

    /// `Ping`.
    pub async fn ping(&self) -> std::result::Result<pb::PingReply, tonic::Status> {
        Ok(self
            .raw
            .clone()
            .ping(pb::PingRequest {})
            .await?
            .into_inner())
    }

    /// `Add`.
    pub async fn add(
        &self,
        req: pb::AddRequest,
    ) -> std::result::Result<pb::AddReply, tonic::Status> {
        Ok(self.raw.clone().add(req).await?.into_inner())
    }

    /// `Stats`.
    pub async fn stats(
        &self,
        req: pb::StatsRequest,
    ) -> std::result::Result<pb::StatsReply, tonic::Status> {
        Ok(self.raw.clone().stats(req).await?.into_inner())
    }
}

/// The generated Admin client with the cookie attached to every call.
pub type Admin = AdminClient<InterceptedService<Channel, CookieLayer>>;

/// Connects an Admin client to the node at `addr` (`host:port`).
pub async fn admin(addr: &str, credentials: impl Into<Credentials>) -> Result<Admin> {
    let c = credentials.into();
    let channel = channel(addr, c.tls.as_ref()).await?;
    Ok(AdminClient::with_interceptor(
        channel,
        CookieLayer(c.cookie),
    ))
}

/// Asks the node at `addr` whether the `flavio.v1.Flavio` service is SERVING
/// (`grpc.health.v1`, no cookie needed). `Ok(false)` means it answered
/// NOT_SERVING; an unreachable node or a failed call is an error.
pub async fn is_serving(addr: &str, tls: Option<&ClientTls>) -> Result<bool> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = channel(addr, tls).await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "flavio.v1.Flavio".into(),
        })
        .await
        .map_err(|s| Error::Rpc(format!("health check of {addr} failed: {}", s.message())))?
        .into_inner();
    Ok(r.status == ServingStatus::Serving as i32)
}

/// An error and its causes on one line: tonic's transport errors hide the
/// useful part ("Connection refused") in their sources.
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
