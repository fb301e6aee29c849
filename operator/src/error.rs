//! The crate's one error type. Each variant names a kind for the
//! `flavio_operator_reconcile_errors_total` metric.

/// Everything the operator's library part can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An Admin gRPC call to a node failed.
    #[error("admin call to {node}: {message}")]
    Admin {
        /// The node (address) called.
        node: String,
        /// What went wrong.
        message: String,
    },
    /// The node library refused something (bad cookie text, bad address).
    #[error("flavio: {0}")]
    Node(#[from] flavio_node::Error),
    /// The plan the claimant computed is not the one the operator staged.
    #[error("unexpected plan: {0}")]
    UnexpectedPlan(String),
    /// An object lacks something the operator needs (namespace, name, uid).
    #[error("missing {0}")]
    Missing(&'static str),
    /// Serialising an object failed.
    #[error("serialisation: {0}")]
    Serde(String),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Waiting on a watch failed.
    #[error("waiting: {0}")]
    Wait(String),
    /// A deleted FlavioCluster was still there when the wait ran out.
    #[error(
        "FlavioCluster {name} still exists after {waited:?} (finalizers: {finalizers}); \
         is the flavio operator running? `helm uninstall --no-hooks` skips this wait"
    )]
    StillPresent {
        /// The cluster's name.
        name: String,
        /// How long was waited.
        waited: std::time::Duration,
        /// Its finalizers, comma-separated.
        finalizers: String,
    },
    /// Local I/O (the metrics listener).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// The label for this error's kind in metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Admin { .. } => "admin",
            Error::Node(_) => "node",
            Error::UnexpectedPlan(_) => "unexpected_plan",
            Error::Missing(_) => "missing",
            Error::Serde(_) => "serde",
            Error::Finalizer(_) => "finalizer",
            Error::Wait(_) => "wait",
            Error::StillPresent { .. } => "still_present",
            Error::Io { .. } => "io",
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
