//! The cluster cookie: a shared secret every call carries, as Erlang nodes
//! share a cookie. Missing or wrong is refused with PERMISSION_DENIED.
//!
//! It authenticates callers; it does not encrypt traffic (use TLS for that)
//! and is compared in constant time.
//!
//! A node may know several cookies ([`Cookies`]): it sends the first and
//! accepts any, and reads its cookie file again when it changes. That is how
//! a cluster rotates its cookie with no failed request: every node first
//! accepts the new cookie while still sending the old (`old` then `new` in
//! the file), then sends the new one while still accepting the old (`new`
//! then `old`), then knows only the new one; each step reaches every node
//! before the next starts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tonic::metadata::AsciiMetadataValue;
use tonic::{Request, Status};

use crate::sync::{lock, read, write};
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

    /// Reads a cookie file: the first of its cookies (the one to send).
    pub fn from_file(path: &Path) -> Result<Cookie> {
        Ok(CookieSet::from_file(path)?.send)
    }

    /// The cookie from a file if one is named, else from the `FLAVIO_COOKIE`
    /// value if set; `None` when neither is given.
    pub fn resolve(file: Option<&Path>, env_value: Option<&str>) -> Result<Option<Cookie>> {
        match (file, env_value) {
            (Some(f), _) => Cookie::from_file(f).map(Some),
            (None, Some(v)) => Ok(Some(CookieSet::parse(v)?.send)),
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

    /// Client side: adds this cookie to a request.
    pub fn attach<T>(&self, mut req: Request<T>) -> std::result::Result<Request<T>, Status> {
        req.metadata_mut().insert(COOKIE_HEADER, self.0.clone());
        Ok(req)
    }
}

/// A node's cookies at one moment: the one it sends, and every one it
/// accepts (that one first).
#[derive(Clone, Debug)]
pub struct CookieSet {
    /// Sent with every call.
    pub send: Cookie,
    /// Accepted from callers.
    pub accept: Vec<Cookie>,
}

impl CookieSet {
    /// One cookie per line (blank lines ignored); the first is sent.
    pub fn parse(text: &str) -> Result<CookieSet> {
        let accept = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(Cookie::new)
            .collect::<Result<Vec<_>>>()?;
        let send = accept.first().cloned().ok_or_else(|| {
            Error::InvalidArgument(
                "the cluster cookie must be 1 to 255 visible ASCII characters".into(),
            )
        })?;
        if accept.len() > 8 {
            return Err(Error::InvalidArgument(format!(
                "{} cookies: a node accepts at most 8 (the current one and those being rotated out)",
                accept.len()
            )));
        }
        Ok(CookieSet { send, accept })
    }

    /// Reads a cookie file.
    pub fn from_file(path: &Path) -> Result<CookieSet> {
        CookieSet::parse_file(path, &read_cookie_file(path)?)
    }

    /// The cookies of `text`, read from `path` (named in the error).
    fn parse_file(path: &Path, text: &str) -> Result<CookieSet> {
        CookieSet::parse(text)
            .map_err(|e| Error::InvalidArgument(format!("cookie file {}: {e}", path.display())))
    }

    /// SHA-1 (hex) of the cookies, in order (the sent one first): equal
    /// digests, equal sets.
    pub fn digest(&self) -> String {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        for c in &self.accept {
            h.update(c.as_str().as_bytes());
            h.update(b"\n");
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `got` is one of the accepted cookies. Every cookie is
    /// compared, each in constant time: the time says nothing of which
    /// matched, or how much of one.
    fn accepts(&self, got: &[u8]) -> bool {
        self.accept
            .iter()
            .fold(false, |found, c| c.matches(got) | found)
    }
}

/// A cookie file's text. A file the user named and we cannot read is their
/// input's fault.
fn read_cookie_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::InvalidArgument(format!("cannot read cookie file {}: {e}", path.display()))
    })
}

impl From<Cookie> for CookieSet {
    fn from(c: Cookie) -> Self {
        CookieSet {
            send: c.clone(),
            accept: vec![c],
        }
    }
}

/// The cookies a node (or a client) uses now, read again from their file
/// when it changes.
pub struct Cookies {
    now: RwLock<Arc<CookieSet>>,
    file: Option<PathBuf>,
    seen: Mutex<Option<String>>,
    throttle: crate::rpc::net::Throttle,
    reloads: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Cookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookies(<redacted>)")
    }
}

impl From<Cookie> for Arc<Cookies> {
    fn from(c: Cookie) -> Self {
        Arc::new(Cookies::fixed(c.into()))
    }
}

impl Cookies {
    /// These cookies, never reloaded.
    pub fn fixed(set: CookieSet) -> Cookies {
        Cookies {
            now: RwLock::new(Arc::new(set)),
            file: None,
            seen: Mutex::new(None),
            throttle: crate::rpc::net::Throttle::new(),
            reloads: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The cookies of `path`, read again by [`Cookies::reload`].
    pub fn from_file(path: &Path) -> Result<Cookies> {
        let text = read_cookie_file(path)?;
        let mut c = Cookies::fixed(CookieSet::parse_file(path, &text)?);
        c.file = Some(path.to_path_buf());
        c.seen = Mutex::new(Some(text));
        Ok(c)
    }

    /// The cookies now.
    pub fn now(&self) -> Arc<CookieSet> {
        Arc::clone(&read(&self.now))
    }

    /// The cookie sent now.
    pub fn current(&self) -> Cookie {
        self.now().send.clone()
    }

    /// How many times the file's new contents were taken.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads the file again (when there is one): `Ok(true)` when its
    /// cookies replaced the old ones; an error, keeping the old ones, when
    /// it changed into something unusable (reported once per change).
    pub fn reload(&self) -> Result<bool> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let text = read_cookie_file(path)?;
        let mut seen = lock(&self.seen);
        if seen.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        let parsed = CookieSet::parse_file(path, &text);
        *seen = Some(text);
        *write(&self.now) = Arc::new(parsed?);
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    /// Looks at the file every `every` until the task is aborted.
    pub fn watch(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.file.as_ref()?;
        let (me, me2) = (Arc::clone(self), Arc::clone(self));
        Some(super::watch::every(
            every,
            move || me.reload(),
            move || {
                tracing::info!(
                    accepted = me2.now().accept.len(),
                    "cluster cookie file changed: sending its first cookie, accepting all of its"
                )
            },
            "cluster cookie file changed but cannot be used; keeping the previous cookies",
        ))
    }

    /// Server side: refuses requests without one of these cookies. A peer
    /// sending wrong ones is logged once per interval, not once per call.
    pub fn check<T>(&self, req: Request<T>) -> std::result::Result<Request<T>, Status> {
        let got = req.metadata().get(COOKIE_HEADER);
        if let Some(v) = got
            && self.now().accepts(v.as_bytes())
        {
            return Ok(req);
        }
        let why = if got.is_some() { "wrong" } else { "missing" };
        if let Some(peer) = req.remote_addr()
            && let Some(silenced) = self.throttle.admit(peer.ip(), why)
        {
            tracing::warn!(%peer, silenced, "refused a call with a {why} cluster cookie");
        }
        Err(Status::permission_denied(format!(
            "{why} cluster cookie: check --cookie-file or FLAVIO_COOKIE"
        )))
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
        let c: Arc<Cookies> = Cookie::new("abc").expect("valid").into();
        let ok = c.current().attach(Request::new(())).expect("attach");
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

#[cfg(test)]
mod rotation {
    use super::*;

    fn call_with(cookie: &str) -> Request<()> {
        Cookie::new(cookie)
            .expect("valid")
            .attach(Request::new(()))
            .expect("attach")
    }

    #[test]
    fn a_file_of_several_cookies_sends_the_first_and_accepts_all() {
        let set = CookieSet::parse("new\n\nold\n").expect("valid");
        assert_eq!(set.send.as_str(), "new");
        let c = Cookies::fixed(set);
        assert!(c.check(call_with("new")).is_ok());
        assert!(c.check(call_with("old")).is_ok());
        assert!(c.check(call_with("other")).is_err());
        assert!(CookieSet::parse("").is_err());
        assert!(CookieSet::parse("a b").is_err());
        assert!(CookieSet::parse(&"c\n".repeat(9)).is_err());
    }

    #[test]
    fn reload_follows_the_file_and_keeps_the_old_cookies_on_a_bad_change() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cookie");
        std::fs::write(&path, "old\n").expect("write");
        let c = Cookies::from_file(&path).expect("read");
        assert!(!c.reload().expect("unchanged"));
        std::fs::write(&path, "old\nnew\n").expect("write");
        assert!(c.reload().expect("changed"));
        assert_eq!(c.current().as_str(), "old");
        assert!(c.check(call_with("new")).is_ok());
        std::fs::write(&path, "not a cookie\n").expect("write");
        assert!(c.reload().is_err());
        assert!(c.check(call_with("new")).is_ok(), "the old cookies stay");
        assert!(!c.reload().expect("reported once"));
        assert_eq!(c.reloads(), 1);
    }
}
