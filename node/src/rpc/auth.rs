//! The cluster cookie: a shared secret every call carries, as Erlang nodes
//! share a cookie. Missing or wrong is refused with PERMISSION_DENIED.
//!
//! It authenticates callers; it does not encrypt traffic (use TLS or a
//! network policy for that) and is compared in constant time.

use std::path::Path;

use tonic::metadata::AsciiMetadataValue;
use tonic::{Request, Status};

use crate::{Error, Result};

/// The metadata key that carries the cookie.
pub const COOKIE_HEADER: &str = "x-flavio-cookie";

/// A validated cluster cookie.
#[derive(Clone)]
pub struct Cookie(AsciiMetadataValue);

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookie(<redacted>)")
    }
}

impl Cookie {
    /// A cookie from its text: visible ASCII, 1 to 255 characters, with
    /// surrounding whitespace (a file's trailing newline) ignored.
    pub fn new(text: &str) -> Result<Cookie> {
        let t = text.trim();
        if t.is_empty() || t.len() > 255 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidArgument(
                "the cluster cookie must be 1 to 255 visible ASCII characters".into(),
            ));
        }
        let value = AsciiMetadataValue::try_from(t)
            .map_err(|e| Error::InvalidArgument(format!("invalid cookie: {e}")))?;
        Ok(Cookie(value))
    }

    /// Reads a cookie file.
    pub fn from_file(path: &Path) -> Result<Cookie> {
        // A file the user named and we cannot read is their input's fault.
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidArgument(format!("cannot read cookie file {}: {e}", path.display()))
        })?;
        Cookie::new(&text)
            .map_err(|e| Error::InvalidArgument(format!("cookie file {}: {e}", path.display())))
    }

    /// The cookie from a file if one is named, else from the `FLAVIO_COOKIE`
    /// value if set; `None` when neither is given.
    pub fn resolve(file: Option<&Path>, env_value: Option<&str>) -> Result<Option<Cookie>> {
        match (file, env_value) {
            (Some(f), _) => Cookie::from_file(f).map(Some),
            (None, Some(v)) => Cookie::new(v).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// A random cookie of 32 alphanumeric characters.
    pub fn random() -> Cookie {
        use rand::Rng;
        use rand::distr::Alphanumeric;
        let s: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        // 32 alphanumerics always form a valid cookie.
        Cookie::new(&s).expect("alphanumeric cookie is valid")
    }

    /// The cookie's text.
    pub fn as_str(&self) -> &str {
        // Built from visible ASCII, so this cannot fail.
        self.0.to_str().unwrap_or_default()
    }

    fn matches(&self, other: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        // Constant time in the content: no early exit on the first mismatch.
        mine.len() == other.len()
            && mine
                .iter()
                .zip(other)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// Server side: refuses requests without this cookie.
    pub fn check<T>(&self, req: Request<T>) -> std::result::Result<Request<T>, Status> {
        match req.metadata().get(COOKIE_HEADER) {
            Some(v) if self.matches(v.as_bytes()) => Ok(req),
            got => {
                let peer = req
                    .remote_addr()
                    .map_or_else(|| "unknown".to_string(), |a| a.to_string());
                let why = if got.is_some() { "wrong" } else { "missing" };
                tracing::warn!(%peer, "refused a call with a {why} cluster cookie");
                Err(Status::permission_denied(format!(
                    "{why} cluster cookie: check --cookie-file or FLAVIO_COOKIE"
                )))
            }
        }
    }

    /// Client side: adds this cookie to a request.
    pub fn attach<T>(&self, mut req: Request<T>) -> std::result::Result<Request<T>, Status> {
        req.metadata_mut().insert(COOKIE_HEADER, self.0.clone());
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_validates() {
        assert_eq!(Cookie::new("secret\n").expect("valid").as_str(), "secret");
        assert!(Cookie::new("").is_err());
        assert!(Cookie::new("two words").is_err());
        assert!(Cookie::new(&"x".repeat(256)).is_err());
    }

    #[test]
    fn check_accepts_only_the_same_cookie() {
        let c = Cookie::new("abc").expect("valid");
        let ok = c.attach(Request::new(())).expect("attach");
        assert!(c.check(ok).is_ok());
        let wrong = Cookie::new("abd")
            .expect("valid")
            .attach(Request::new(()))
            .expect("attach");
        assert_eq!(
            c.check(wrong).expect_err("wrong").code(),
            tonic::Code::PermissionDenied
        );
        let none = c.check(Request::new(())).expect_err("missing");
        assert_eq!(none.code(), tonic::Code::PermissionDenied);
    }
}
