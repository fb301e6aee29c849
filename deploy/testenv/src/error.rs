//! The one error type of this crate.
//!
//! Covers API failures, local I/O, configuration mistakes (image map, pod specs the
//! stand-in cannot run) and an unavailable test environment. It does not carry
//! retry policy: callers decide whether an error is worth retrying.

use std::path::PathBuf;

/// Errors of the test environment crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path the operation was about.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The image map file has a bad line.
    #[error("image map {path}:{line}: {message}")]
    ImageMap {
        /// The map file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A container cannot be configured (missing secret key, unmapped image, ...).
    #[error("{reason}: {message}")]
    Container {
        /// A kubelet-style reason such as `CreateContainerConfigError`.
        reason: String,
        /// Human readable details.
        message: String,
    },
    /// Encoding or decoding JSON failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Sending a signal failed.
    #[error("signal: {0}")]
    Signal(#[from] nix::errno::Errno),
    /// The stand-in's log endpoint could not be set up.
    #[error("kubelet endpoint: {0}")]
    Serve(String),
    /// The test environment is not available and could not be started.
    #[error("test environment unavailable: {0}")]
    Unavailable(String),
    /// A wait ran out of time.
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        secs: u64,
    },
}

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A container configuration error with a kubelet-style reason.
    pub fn container(reason: &str, message: impl Into<String>) -> Self {
        Error::Container {
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
