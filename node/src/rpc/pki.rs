//! A small certificate authority: makes the CA and the node certificates a
//! TLS cluster needs when nobody brings their own (`flavio devrel --tls`,
//! tests).
//!
//! Every certificate it issues serves both ways (server and client
//! authentication), since nodes present the same certificate to clients and
//! to the peers they call. Keys are ECDSA P-256. It leaves out revocation,
//! intermediates and renewal scheduling: whoever issues decides when to
//! issue again.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{Error, Result};

/// A certificate and its private key, PEM encoded.
#[derive(Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issued(<certificate and key>)")
    }
}

/// A certificate authority: its certificate and the key that signs.
pub struct Authority {
    name: String,
    ca: Issued,
    key: KeyPair,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authority({})", self.name)
    }
}

fn pki_error(what: &str, e: rcgen::Error) -> Error {
    Error::InvalidArgument(format!("{what}: {e}"))
}

/// The distinguished name of the CA called `name`: the same for a new CA and
/// for one loaded back, so certificates issued later chain to it.
fn ca_params(name: &str, not_before: SystemTime, not_after: SystemTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "FlavioDB");
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = not_before.into();
    p.not_after = not_after.into();
    p
}

impl Authority {
    /// A new CA called `name`, valid from an hour ago (clock skew) for
    /// `validity`.
    pub fn new(name: &str, validity: Duration) -> Result<Authority> {
        let now = SystemTime::now();
        let key = KeyPair::generate().map_err(|e| pki_error("generating the CA key", e))?;
        let params = ca_params(name, now - Duration::from_secs(3600), now + validity);
        let cert = params
            .self_signed(&key)
            .map_err(|e| pki_error("signing the CA certificate", e))?;
        Ok(Authority {
            name: name.to_string(),
            ca: Issued {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            key,
        })
    }

    /// The CA made earlier by [`Authority::new`] with the same `name`, from
    /// its certificate and key.
    pub fn load(name: &str, ca: Issued) -> Result<Authority> {
        let key = KeyPair::from_pem(&ca.key_pem).map_err(|e| pki_error("reading the CA key", e))?;
        Ok(Authority {
            name: name.to_string(),
            ca,
            key,
        })
    }

    /// The CA certificate and key.
    pub fn ca(&self) -> &Issued {
        &self.ca
    }

    /// A certificate for `names` (DNS names or IP addresses), valid for both
    /// server and client authentication from `not_before` to `not_after`.
    pub fn issue_between(
        &self,
        names: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued> {
        let mut p = CertificateParams::new(names.to_vec())
            .map_err(|e| pki_error(&format!("certificate names {names:?}"), e))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "FlavioDB");
        dn.push(
            DnType::CommonName,
            names.first().map_or("flavio", String::as_str),
        );
        p.distinguished_name = dn;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.not_before = not_before.into();
        p.not_after = not_after.into();
        let key = KeyPair::generate().map_err(|e| pki_error("generating a key", e))?;
        // The issuer is rebuilt from the CA's parameters: only its name and
        // key matter for signing, and both are the CA's.
        let issuer = Issuer::new(
            ca_params(&self.name, SystemTime::now(), SystemTime::now()),
            &self.key,
        );
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(|e| pki_error("signing a certificate", e))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate for `names`, valid from an hour ago for `validity`.
    pub fn issue(&self, names: &[String], validity: Duration) -> Result<Issued> {
        let now = SystemTime::now();
        self.issue_between(names, now - Duration::from_secs(3600), now + validity)
    }
}

/// Where one node's (or client's) files are: certificate, key, and the CA
/// certificate that verifies its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA certificate(s) peers' certificates must chain to (PEM).
    pub ca: PathBuf,
}

impl TlsFiles {
    /// `cert`, `key` and `ca` named `NAME.crt`, `NAME.key` and `ca.crt` in
    /// `dir`.
    pub fn in_dir(dir: &Path, name: &str) -> TlsFiles {
        TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            ca: dir.join("ca.crt"),
        }
    }

    /// Writes `issued` and the CA certificate to these paths (the key
    /// readable by its owner only), through a rename so a reader never sees
    /// half a file.
    pub fn write(&self, issued: &Issued, ca: &Issued) -> Result<()> {
        write_atomic(&self.ca, ca.cert_pem.as_bytes(), false)?;
        write_atomic(&self.key, issued.key_pem.as_bytes(), true)?;
        write_atomic(&self.cert, issued.cert_pem.as_bytes(), false)
    }
}

/// Writes `bytes` to `path` by a rename from a file beside it.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    use std::io::Write;
    let io = |source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_authority_issues_certificates_of_the_same_ca() {
        let ca = Authority::new("test-ca", Duration::from_secs(86400)).expect("ca");
        let again = Authority::load("test-ca", ca.ca().clone()).expect("load");
        let leaf = again
            .issue(&["127.0.0.1".into()], Duration::from_secs(3600))
            .expect("issue");
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
        assert_eq!(again.ca().cert_pem, ca.ca().cert_pem);
    }
}
