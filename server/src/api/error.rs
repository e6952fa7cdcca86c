//! Why a request to the log API fails, and what kind of failure that is.

use quire_core::ProofRequestError;

use crate::log::WriteError;
use crate::proofs::ProofError;
use crate::store::StoreError;

/// What kind of failure an [`ApiError`] is: what every face maps to its own
/// codes (gRPC statuses today, HTTP statuses for the tiles face to come).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request is malformed or breaks a limit.
    InvalidArgument,
    /// What the request names does not exist.
    NotFound,
    /// What the request would create exists already.
    AlreadyExists,
    /// An index or size beyond what the log holds.
    OutOfRange,
    /// The log is not in a state to do this (signing stopped, no witnesses).
    FailedPrecondition,
    /// A limit of the server or the log was reached; retry later.
    ResourceExhausted,
    /// Not now (shutting down, witnesses short of the quorum); retry.
    Unavailable,
    /// The caller's identity is missing where one is needed, or invalid
    /// (an unknown, expired or revoked token, say).
    Unauthenticated,
    /// The caller may not do this.
    PermissionDenied,
    /// Stored data is damaged; nothing wrong was served.
    DataLoss,
    /// A failure of the server itself.
    Internal,
}

impl Kind {
    /// Its name, as gRPC spells the status it maps to.
    pub fn name(self) -> &'static str {
        match self {
            Kind::InvalidArgument => "INVALID_ARGUMENT",
            Kind::NotFound => "NOT_FOUND",
            Kind::AlreadyExists => "ALREADY_EXISTS",
            Kind::OutOfRange => "OUT_OF_RANGE",
            Kind::FailedPrecondition => "FAILED_PRECONDITION",
            Kind::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Kind::Unavailable => "UNAVAILABLE",
            Kind::Unauthenticated => "UNAUTHENTICATED",
            Kind::PermissionDenied => "PERMISSION_DENIED",
            Kind::DataLoss => "DATA_LOSS",
            Kind::Internal => "INTERNAL",
        }
    }
}

/// Why a request failed. Each message names the problem and, where there is
/// one, the limit.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No log was named, and the server hosts several.
    #[error("this server hosts {count} logs: name one by origin ({known})")]
    NoLogNamed {
        /// How many logs it hosts.
        count: usize,
        /// Their origins, comma separated.
        known: String,
    },
    /// No log has the origin asked for.
    #[error("no log with origin {origin:?} here; known: {known}")]
    UnknownLog {
        /// The origin asked for (at most 256 characters of it).
        origin: String,
        /// The origins hosted, comma separated.
        known: String,
    },
    /// A witnessed answer was asked of a log without witnesses.
    #[error("log {origin:?} has no witnesses configured: ask without `witnessed`")]
    NotWitnessed {
        /// The log.
        origin: String,
    },
    /// The caller's credentials do not prove who it is.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller may not do this to this log.
    #[error("{caller} may not {action} log {origin:?}: {why}")]
    Denied {
        /// Who asked, in words.
        caller: String,
        /// What was asked, in words.
        action: &'static str,
        /// The log.
        origin: String,
        /// What is missing (the role, say).
        why: String,
    },
    /// A malformed request, or one that breaks a limit.
    #[error("{0}")]
    Invalid(String),
    /// An index or size beyond the log.
    #[error("{0}")]
    OutOfRange(String),
    /// Nothing matches what was asked for.
    #[error("{0}")]
    NotFound(String),
    /// What the request would create exists already.
    #[error("{0}")]
    Exists(String),
    /// The server or the log is not in a state to do this.
    #[error("{0}")]
    Precondition(String),
    /// A server limit is reached.
    #[error("{0}")]
    Exhausted(String),
    /// A quota of the caller is used up for now.
    #[error("{message}")]
    Quota {
        /// What is used up, and when to retry.
        message: String,
        /// When the request would conform (`None`: never as sent).
        retry_after: Option<std::time::Duration>,
    },
    /// Not now; retry.
    #[error("{0}")]
    Unavailable(String),
    /// Fail closed: the witnesses' quorum did not come in time.
    #[error(transparent)]
    NoQuorum(#[from] crate::witnessing::NoQuorum),
    /// A write failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A proof cannot be served.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Storage failed.
    #[error("reading storage: {0}")]
    Store(#[from] StoreError),
    /// The server failed.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The kind of failure, for a face to map to its codes.
    pub fn kind(&self) -> Kind {
        match self {
            ApiError::NoLogNamed { .. }
            | ApiError::Invalid(_)
            | ApiError::Quota {
                retry_after: None, ..
            } => Kind::InvalidArgument,
            ApiError::UnknownLog { .. } | ApiError::NotFound(_) => Kind::NotFound,
            ApiError::NotWitnessed { .. } | ApiError::Precondition(_) => Kind::FailedPrecondition,
            ApiError::Exists(_) => Kind::AlreadyExists,
            ApiError::Denied { .. } => Kind::PermissionDenied,
            ApiError::Unauthenticated(_) => Kind::Unauthenticated,
            ApiError::OutOfRange(_) => Kind::OutOfRange,
            ApiError::Exhausted(_)
            | ApiError::Quota {
                retry_after: Some(_),
                ..
            } => Kind::ResourceExhausted,
            ApiError::Unavailable(_) | ApiError::NoQuorum(_) => Kind::Unavailable,
            ApiError::Write(e) => write_kind(e),
            ApiError::Proof(ProofError::Request(r)) => request_kind(r),
            ApiError::Proof(ProofError::Store(s)) | ApiError::Store(s) => store_kind(s),
            ApiError::Proof(ProofError::Damaged(_)) => Kind::DataLoss,
            ApiError::Internal(_) => Kind::Internal,
        }
    }

    /// Logs a failure the operator must see (damaged storage, a failure of
    /// the server); the others are the caller's business.
    pub fn report(&self) {
        match self.kind() {
            Kind::DataLoss => tracing::error!(error = %self, "stored data is damaged; not served"),
            Kind::Internal => tracing::warn!(error = %self, "request failed"),
            _ => {}
        }
    }
}

impl From<ProofRequestError> for ApiError {
    fn from(e: ProofRequestError) -> Self {
        ApiError::Proof(ProofError::Request(e))
    }
}

fn write_kind(e: &WriteError) -> Kind {
    match e {
        WriteError::Invalid(_) => Kind::InvalidArgument,
        WriteError::QueueFull { .. } | WriteError::StorageFull(_) => Kind::ResourceExhausted,
        WriteError::ShuttingDown
        | WriteError::Stopped { .. }
        | WriteError::SigningHeld { .. }
        | WriteError::NotSequencing { .. }
        | WriteError::NotLeader { .. }
        | WriteError::Forwarded { .. }
        | WriteError::Unreplicated { .. } => Kind::Unavailable,
        WriteError::SigningStopped { .. }
        | WriteError::ClockBackwards { .. }
        | WriteError::Frozen { .. }
        | WriteError::Mode { .. } => Kind::FailedPrecondition,
        WriteError::Store(_) => Kind::Internal,
        WriteError::Remote { code, .. } => match tonic::Code::from(*code) {
            tonic::Code::InvalidArgument => Kind::InvalidArgument,
            tonic::Code::ResourceExhausted => Kind::ResourceExhausted,
            tonic::Code::FailedPrecondition => Kind::FailedPrecondition,
            tonic::Code::PermissionDenied => Kind::PermissionDenied,
            _ => Kind::Unavailable,
        },
    }
}

fn request_kind(r: &ProofRequestError) -> Kind {
    match r {
        ProofRequestError::IndexOutOfRange { .. } | ProofRequestError::SizeTooLarge { .. } => {
            Kind::OutOfRange
        }
        ProofRequestError::OldSizeAboveNew { .. } | ProofRequestError::FromEmptyTree => {
            Kind::InvalidArgument
        }
    }
}

fn store_kind(e: &StoreError) -> Kind {
    match e {
        StoreError::Corrupt(_) => Kind::DataLoss,
        StoreError::Dropped(_) => Kind::NotFound,
        _ => Kind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_have_the_kind_their_cause_asks_for() {
        let cases = [
            (
                WriteError::Invalid("entry 0 is 70000 bytes; the entry size limit is 65535".into()),
                Kind::InvalidArgument,
            ),
            (
                WriteError::QueueFull {
                    origin: "o".into(),
                    depth: 2,
                },
                Kind::ResourceExhausted,
            ),
            (WriteError::ShuttingDown, Kind::Unavailable),
            (
                WriteError::ClockBackwards {
                    now_ms: 1,
                    last_ms: 2,
                },
                Kind::FailedPrecondition,
            ),
            (WriteError::Store("engine".into()), Kind::Internal),
            (
                WriteError::StorageFull("No space left on device (os error 28)".into()),
                Kind::ResourceExhausted,
            ),
            (
                WriteError::Stopped {
                    origin: "o".into(),
                    size: 7,
                    cause: "disk full".into(),
                    remedy: "fix the disk and restart the server",
                },
                Kind::Unavailable,
            ),
        ];
        for (e, kind) in cases {
            let text = e.to_string();
            let e = ApiError::from(e);
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn damage_is_data_loss_and_impossible_requests_are_the_callers() {
        assert_eq!(
            ApiError::from(StoreError::Corrupt("page 3".into())).kind(),
            Kind::DataLoss
        );
        assert_eq!(
            ApiError::from(ProofError::Damaged("leaf 4".into())).kind(),
            Kind::DataLoss
        );
        assert_eq!(
            ApiError::from(StoreError::engine("io")).kind(),
            Kind::Internal
        );
        let dropped = ApiError::from(StoreError::Dropped(crate::lifecycle::Dropped {
            size: 300,
            at_ms: 7,
        }));
        assert_eq!(dropped.kind(), Kind::NotFound);
        assert!(
            dropped
                .to_string()
                .contains("dropped by retention at 7 ms, after it was frozen at size 300"),
            "{dropped}"
        );
        assert_eq!(
            ApiError::from(ProofRequestError::IndexOutOfRange { index: 9, size: 3 }).kind(),
            Kind::OutOfRange
        );
        assert_eq!(
            ApiError::from(ProofRequestError::FromEmptyTree).kind(),
            Kind::InvalidArgument
        );
    }
}
