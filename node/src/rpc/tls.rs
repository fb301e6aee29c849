//! TLS on every gRPC connection: the client API, the admin API and the
//! streams between nodes (rustls, ring).
//!
//! A node has one certificate and key, and a CA file: it presents the
//! certificate to clients and, as a client itself, to the peers it calls
//! (mutual TLS between nodes); it trusts what chains to the CA. Clients
//! (the CLI, the operator) need the CA and, when the node requires it, a
//! certificate of their own. The files are read again when they change (a
//! Kubernetes Secret update), so certificates rotate without a restart:
//! new connections use the new ones, open ones go on.
//!
//! What it leaves out: revocation lists, OCSP, and picking a certificate by
//! server name; hostnames are checked against the certificate as usual
//! (an address's IP against its IP SANs).

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

pub use super::pki::TlsFiles;
use crate::sync::{lock, read, write};
use crate::{Error, Result};

/// Whether a node asks clients for a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Clients may present one (it is then verified); calls between nodes
    /// must (the Cluster service refuses a connection without one).
    #[default]
    Optional,
    /// Every connection presents a certificate signed by the CA.
    Require,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn bad(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{what} {}: {e}", path.display()))
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| bad(path, &format!("cannot read {what}"), e))
}

fn certs(path: &Path, bytes: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(path, what, e))?;
    if certs.is_empty() {
        return Err(bad(path, what, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| bad(path, "private key", e))
}

fn roots(path: &Path, bytes: &[u8]) -> Result<Arc<RootCertStore>> {
    let mut store = RootCertStore::empty();
    for c in certs(path, bytes, "CA certificate")? {
        store
            .add(c)
            .map_err(|e| bad(path, "CA certificate", TlsError(e)))?;
    }
    Ok(Arc::new(store))
}

/// rustls errors, worded for a person who has the files in front of them.
struct TlsError(rustls::Error);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use rustls::CertificateError as C;
        match &self.0 {
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                write!(f, "the certificate has expired ({})", self.0)
            }
            rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
                write!(f, "the certificate is not valid yet ({})", self.0)
            }
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
                write!(f, "the certificate is not signed by the CA ({})", self.0)
            }
            // What the other side said of our certificate.
            rustls::Error::AlertReceived(a) => {
                use rustls::AlertDescription as A;
                let what = match a {
                    A::CertificateExpired => "the certificate presented has expired",
                    A::UnknownCA | A::BadCertificate => {
                        "the certificate presented is not signed by the CA the other side trusts"
                    }
                    A::CertificateRequired => {
                        "a certificate is required (--tls-cert and --tls-key, FLAVIO_TLS_CERT and FLAVIO_TLS_KEY)"
                    }
                    _ => return write!(f, "{}", self.0),
                };
                write!(f, "{what} ({})", self.0)
            }
            e => write!(f, "{e}"),
        }
    }
}

/// A client's side of TLS: the CA that verifies nodes, and the certificate
/// it presents if it has one. Cheap to clone; a node's copy follows its
/// certificate files.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<RwLock<Arc<ClientConfig>>>,
    /// The name node certificates are checked against instead of the
    /// dialed host (`--tls-server-name`): one name for every node of a
    /// cluster whose addresses are not known when certificates are made
    /// (pod IPs).
    expect_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

fn client_config(
    ca: (&Path, &[u8]),
    identity: Option<(&Path, &[u8], &Path, &[u8])>,
) -> Result<ClientConfig> {
    let roots = roots(ca.0, ca.1)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidArgument(format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert_path, cert, key_path, key_bytes)) => builder
            .with_client_auth_cert(
                certs(cert_path, cert, "certificate")?,
                key(key_path, key_bytes)?,
            )
            .map_err(|e| bad(cert_path, "certificate and key", TlsError(e)))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl ClientTls {
    /// Trusts the CA in `ca`; presents the certificate and key of
    /// `identity` when given.
    pub fn from_files(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls> {
        let ca_bytes = read_file(ca, "CA certificate")?;
        let config = match identity {
            Some((c, k)) => {
                let (cb, kb) = (read_file(c, "certificate")?, read_file(k, "private key")?);
                client_config((ca, &ca_bytes), Some((c, &cb, k, &kb)))?
            }
            None => client_config((ca, &ca_bytes), None)?,
        };
        Ok(ClientTls {
            config: Arc::new(RwLock::new(Arc::new(config))),
            expect_name: None,
        })
    }

    /// Trusts the CA certificate(s) `ca_pem` (a client of a cluster whose CA
    /// it read from a Secret, such as the operator); presents no
    /// certificate.
    pub fn from_ca_pem(ca_pem: &[u8]) -> Result<ClientTls> {
        let config = client_config((Path::new("<CA certificate>"), ca_pem), None)?;
        Ok(ClientTls {
            config: Arc::new(RwLock::new(Arc::new(config))),
            expect_name: None,
        })
    }

    /// Checks node certificates against `name` rather than the dialed host.
    pub fn expecting(mut self, name: Option<String>) -> ClientTls {
        self.expect_name = name.filter(|n| !n.is_empty());
        self
    }

    /// The name a node dialed at `host` must have in its certificate.
    pub fn name_for(&self, host: &str) -> Result<ServerName<'static>> {
        ClientTls::server_name(self.expect_name.as_deref().unwrap_or(host))
    }

    /// The configuration new connections use now.
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&read(&self.config))
    }

    fn replace(&self, config: ClientConfig) {
        *write(&self.config) = Arc::new(config);
    }

    /// The name a node at `host` must have in its certificate: its DNS name,
    /// or its IP address.
    pub fn server_name(host: &str) -> Result<ServerName<'static>> {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = h.parse::<IpAddr>() {
            return Ok(ServerName::IpAddress(ip.into()));
        }
        ServerName::try_from(h.to_string()).map_err(|e| {
            Error::InvalidArgument(format!("{host:?} is not a name TLS can check: {e}"))
        })
    }
}

/// The contents of a node's three files, to notice a change.
#[derive(PartialEq, Eq)]
struct Snapshot {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl Snapshot {
    fn read(files: &TlsFiles) -> Result<Snapshot> {
        Ok(Snapshot {
            cert: read_file(&files.cert, "certificate")?,
            key: read_file(&files.key, "private key")?,
            ca: read_file(&files.ca, "CA certificate")?,
        })
    }
}

/// A node's TLS: the server configuration clients meet, and the client
/// configuration it calls peers with, both from the same files and both
/// replaced when the files change.
pub struct NodeTls {
    files: TlsFiles,
    auth: ClientAuth,
    server: RwLock<Arc<ServerConfig>>,
    client: ClientTls,
    seen: Mutex<Snapshot>,
    reloads: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("files", &self.files)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

fn build(files: &TlsFiles, auth: ClientAuth, s: &Snapshot) -> Result<(ServerConfig, ClientConfig)> {
    let roots = roots(&files.ca, &s.ca)?;
    let chain = certs(&files.cert, &s.cert, "certificate")?;
    let private = key(&files.key, &s.key)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider());
    let verifier = match auth {
        ClientAuth::Optional => verifier.allow_unauthenticated(),
        ClientAuth::Require => verifier,
    }
    .build()
    .map_err(|e| bad(&files.ca, "CA certificate", e))?;
    // A node presents its certificate to peers as a client too, so it must
    // chain to the CA, be valid now and allow client authentication: say so
    // at start rather than in every peer's log.
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| bad(&files.cert, "certificate", "empty chain"))?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map_err(|e| bad(&files.cert, "certificate", TlsError(e)))?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidArgument(format!("TLS setup: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private)
        .map_err(|e| bad(&files.key, "certificate and key", TlsError(e)))?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    let client = client_config(
        (&files.ca, &s.ca),
        Some((&files.cert, &s.cert, &files.key, &s.key)),
    )?;
    Ok((server, client))
}

impl NodeTls {
    /// Reads and checks the files: a missing, malformed, expired or foreign
    /// certificate is an error here, before the node serves. Peers'
    /// certificates are checked against `server_name` when set
    /// (`--tls-server-name`), else against the dialed host.
    pub fn load(
        files: TlsFiles,
        auth: ClientAuth,
        server_name: Option<String>,
    ) -> Result<Arc<NodeTls>> {
        let snapshot = Snapshot::read(&files)?;
        let (server, client) = build(&files, auth, &snapshot)?;
        Ok(Arc::new(NodeTls {
            files,
            auth,
            server: RwLock::new(Arc::new(server)),
            client: ClientTls {
                config: Arc::new(RwLock::new(Arc::new(client))),
                expect_name: None,
            }
            .expecting(server_name),
            seen: Mutex::new(snapshot),
            reloads: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Whether clients must present a certificate.
    pub fn client_auth(&self) -> ClientAuth {
        self.auth
    }

    /// The acceptor for a new connection, with the current certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&read(&self.server)))
    }

    /// How many times new files were taken.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The client side this node calls its peers with.
    pub fn client(&self) -> ClientTls {
        self.client.clone()
    }

    /// Reads the files again; when they changed and are valid, new
    /// connections use them. `Ok(true)` when replaced; an error (the old
    /// certificate stays) when they changed into something unusable.
    pub fn reload(&self) -> Result<bool> {
        let now = Snapshot::read(&self.files)?;
        let mut seen = lock(&self.seen);
        if *seen == now {
            return Ok(false);
        }
        // Remembered even when unusable: one error per change, not one per
        // look. (A Secret update writes the files one after the other; the
        // next look sees them complete.)
        let built = build(&self.files, self.auth, &now);
        *seen = now;
        let (server, client) = built?;
        *write(&self.server) = Arc::new(server);
        self.client.replace(client);
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    /// Looks at the files every `every` until the returned task is aborted,
    /// logging each reload and each unusable change.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let (me, me2) = (Arc::clone(self), Arc::clone(self));
        super::watch::every(
            every,
            move || me.reload(),
            move || {
                tracing::info!(
                    cert = %me2.files.cert.display(),
                    "TLS certificate files changed: new connections use them"
                )
            },
            "TLS certificate files changed but cannot be used; keeping the previous ones",
        )
    }
}

/// A TLS failure as a person reads it: the cause chain on one line.
pub fn describe_handshake_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => TlsError(tls.clone()).to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::pki::Authority;
    use super::*;
    use std::time::SystemTime;

    const DAY: Duration = Duration::from_secs(86400);

    fn files(dir: &Path, ca: &Authority, name: &str, valid: (SystemTime, SystemTime)) -> TlsFiles {
        let f = TlsFiles::in_dir(dir, name);
        let issued = ca
            .issue_between(&["127.0.0.1".into(), "localhost".into()], valid.0, valid.1)
            .expect("issue");
        f.write(&issued, ca.ca()).expect("write");
        f
    }

    #[test]
    fn loads_good_files_and_refuses_expired_or_foreign_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = Authority::new("ca", DAY).expect("ca");
        let now = SystemTime::now();
        let good = files(dir.path(), &ca, "good", (now - DAY, now + DAY));
        NodeTls::load(good.clone(), ClientAuth::Require, None).expect("good files load");

        let expired = files(dir.path(), &ca, "expired", (now - 3 * DAY, now - DAY));
        let e = NodeTls::load(expired, ClientAuth::Optional, None).expect_err("expired");
        assert!(e.to_string().contains("expired"), "{e}");

        let other = Authority::new("other", DAY).expect("ca");
        let elsewhere = dir.path().join("other");
        std::fs::create_dir(&elsewhere).expect("dir");
        let mut foreign = files(&elsewhere, &other, "foreign", (now - DAY, now + DAY));
        foreign.ca = good.ca.clone();
        let e = NodeTls::load(foreign, ClientAuth::Optional, None).expect_err("foreign");
        assert!(e.to_string().contains("not signed by the CA"), "{e}");

        let mut missing = good.clone();
        missing.key = dir.path().join("nope.key");
        let e = NodeTls::load(missing, ClientAuth::Optional, None).expect_err("missing");
        assert!(e.to_string().contains("cannot read private key"), "{e}");
    }

    #[test]
    fn reload_takes_a_valid_change_and_keeps_the_old_one_otherwise() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = Authority::new("ca", DAY).expect("ca");
        let now = SystemTime::now();
        let f = files(dir.path(), &ca, "node", (now - DAY, now + DAY));
        let tls = NodeTls::load(f.clone(), ClientAuth::Optional, None).expect("load");
        assert!(!tls.reload().expect("unchanged"));
        files(dir.path(), &ca, "node", (now - DAY, now + 2 * DAY));
        assert!(tls.reload().expect("changed"));
        std::fs::write(&f.cert, "not a certificate").expect("write");
        assert!(tls.reload().is_err());
        // Seen once: no error again until the files change again.
        assert!(!tls.reload().expect("seen"));
    }

    #[test]
    fn server_names_are_dns_names_or_ip_addresses() {
        assert!(matches!(
            ClientTls::server_name("127.0.0.1").expect("ip"),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            ClientTls::server_name("[::1]").expect("ip6"),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            ClientTls::server_name("flavio-0.flavio.ns.svc").expect("dns"),
            ServerName::DnsName(_)
        ));
    }
}
