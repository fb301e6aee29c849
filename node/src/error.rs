//! The crate's one error type. Each variant says what went wrong in words a
//! user can act on. The one mapping to gRPC: [`Error::code`] gives the status
//! code a server returns for an error, [`Error::from_code`] the error a caller
//! makes of a status code and message; conditions a caller branches on
//! (moved, busy, refused, not allowed) survive the round trip as their
//! variant.

use std::path::PathBuf;

/// Everything that can fail in `flavio-node`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A ring size that is not a multiple of 4 from 8 to 1024.
    #[error("invalid ring size {0}: it must be a multiple of 4 from 8 to 1024")]
    InvalidRingSize(u64),
    /// A string that is not the decimal index of a partition of this ring.
    #[error("{0:?} is not a partition index of this ring")]
    InvalidPartition(String),
    /// A claim or preference list asked of a ring without members.
    #[error("the ring has no members")]
    NoMembers,
    /// The request is valid but the cluster is not in a state to accept it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The partition is not here (any more): the ring is changing. Nothing
    /// was applied, so the request may be retried where the ring now says.
    #[error("{0}")]
    Moved(String),
    /// This node was removed from its cluster and serves no client requests
    /// until it joins a cluster or restarts (the node's name).
    #[error(
        "'{0}' has left its cluster and serves no requests: join it to a cluster \
         ('flavio admin cluster join') or restart it to use it on its own"
    )]
    Left(String),
    /// A limit is reached (e.g. concurrent transfers); try again later.
    #[error("{0}")]
    Busy(String),
    /// Input that is wrong in itself (bad parameters, addresses, cookies).
    /// The message says what; the gRPC code (or the CLI's exit 2) says it
    /// is the caller's input.
    #[error("{0}")]
    InvalidArgument(String),
    /// `a + b` does not fit a signed 64-bit integer.
    #[error("{a} + {b} overflows a signed 64-bit integer")]
    Overflow {
        /// Left operand.
        a: i64,
        /// Right operand.
        b: i64,
    },
    /// A quorum request that did not gather W replies in time.
    #[error("quorum not reached: {received} of {wanted} replies (N={n}) within {timeout_ms} ms")]
    QuorumTimeout {
        /// Replies that arrived.
        received: usize,
        /// Replies required (W).
        wanted: usize,
        /// Replicas asked (N).
        n: usize,
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// A quorum request that failed because too many replicas answered with errors.
    #[error(
        "quorum not reached: {received} of {wanted} replies (N={n}); failed replicas: {errors}"
    )]
    QuorumFailed {
        /// Successful replies.
        received: usize,
        /// Replies required (W).
        wanted: usize,
        /// Replicas asked (N).
        n: usize,
        /// What the failed replicas said.
        errors: String,
    },
    /// A vnode refused a command it does not know.
    #[error("vnode {partition} does not understand command {command:?}")]
    UnknownCommand {
        /// Partition index of the vnode.
        partition: String,
        /// What the command was.
        command: String,
    },
    /// A vnode or the node is stopping or stopped.
    #[error("node is shutting down")]
    ShuttingDown,
    /// The data directory was made for another ring size.
    #[error(
        "data directory {dir} holds a ring of size {stored}, but this node was started with ring size {requested}; use the original size or another directory"
    )]
    RingSizeMismatch {
        /// The data directory.
        dir: PathBuf,
        /// Ring size stored there.
        stored: u64,
        /// Ring size asked for.
        requested: u64,
    },
    /// The embedded store failed.
    #[error("storage error in {dir}: {message}")]
    Storage {
        /// The data directory.
        dir: PathBuf,
        /// What the store said.
        message: String,
    },
    /// A staged write could not be made durable; the command's reply is withheld.
    #[error("could not persist the write: {0}")]
    PersistFailed(String),
    /// A stored value that cannot be decoded.
    #[error("corrupt stored value for {what}: {message}")]
    Corrupt {
        /// Which value.
        what: String,
        /// Why it cannot be read.
        message: String,
    },
    /// An I/O error with the path or address it concerns.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The peer refused this node's credentials (the cluster cookie).
    #[error("{0}")]
    PermissionDenied(String),
    /// A remote call failed: the peer is unreachable, the stream broke, or
    /// it answered with an error no other variant names.
    #[error("{0}")]
    Rpc(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC status code a server answers with for this error.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::InvalidRingSize(_)
            | Error::InvalidPartition(_)
            | Error::InvalidArgument(_)
            | Error::Overflow { .. } => Code::InvalidArgument,
            Error::UnknownCommand { .. } => Code::Unimplemented,
            Error::Moved(_) => Code::Aborted,
            Error::Busy(_) => Code::ResourceExhausted,
            Error::QuorumTimeout { .. } => Code::DeadlineExceeded,
            Error::ShuttingDown
            | Error::NoMembers
            | Error::QuorumFailed { .. }
            | Error::Left(_) => Code::Unavailable,
            Error::RingSizeMismatch { .. } | Error::FailedPrecondition(_) => {
                Code::FailedPrecondition
            }
            Error::Storage { .. }
            | Error::PersistFailed(_)
            | Error::Corrupt { .. }
            | Error::Io { .. } => Code::Internal,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Rpc(_) => Code::Unavailable,
        }
    }

    /// The error a caller makes of a status `code` and `message` from a
    /// peer: the inverse of [`Error::code`] for every condition a caller
    /// branches on; anything else is [`Error::Rpc`]. The message is kept as
    /// it came (it already says what went wrong).
    pub fn from_code(code: tonic::Code, message: String) -> Error {
        use tonic::Code;
        match code {
            Code::InvalidArgument => Error::InvalidArgument(message),
            Code::FailedPrecondition => Error::FailedPrecondition(message),
            Code::Aborted => Error::Moved(message),
            Code::ResourceExhausted => Error::Busy(message),
            Code::PermissionDenied | Code::Unauthenticated => Error::PermissionDenied(message),
            Code::Unimplemented => Error::UnknownCommand {
                partition: "-".into(),
                command: message,
            },
            _ => Error::Rpc(message),
        }
    }

    /// [`Error::from_code`] of a status.
    pub fn from_status(s: &tonic::Status) -> Error {
        Error::from_code(s.code(), s.message().to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}
