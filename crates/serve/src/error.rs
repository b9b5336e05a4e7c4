//! The server's one error type, and the one place its kinds become HTTP and gRPC statuses.

use std::time::Duration;

use thrum_core::ErrorKind;

/// What a request, a model pool or the server can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Loading or running a model, or a request's tensors against the model's specs.
    #[error(transparent)]
    Core(#[from] thrum_core::Error),
    /// No model of that name (or version) is served.
    #[error("unknown model `{name}`{version}; served models: {served}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// ` version V` when a version was asked for, else empty.
        version: String,
        /// The names served.
        served: String,
    },
    /// The request does not follow the protocol (JSON, binary layout, datatype, shapes).
    #[error("invalid request: {reason}")]
    BadRequest {
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The request body is larger than the server accepts.
    #[error("request body of {size} bytes is over the limit of {limit} bytes (--body-limit)")]
    BodyTooLarge {
        /// The body's size (or the size read before giving up).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The model's queue is full: the server is at capacity for it.
    #[error("model `{model}` is at capacity: {queued} requests queued (--queue-capacity); retry after {}", retry_after_text(*retry_after))]
    QueueFull {
        /// The model.
        model: String,
        /// Requests waiting.
        queued: usize,
        /// When a retry has a chance.
        retry_after: Duration,
    },
    /// The model (or the server) is not ready: still warming up, or shutting down.
    #[error("{what} is not ready: {reason}")]
    NotReady {
        /// `model `m`` or `the server`.
        what: String,
        /// Why.
        reason: String,
    },
    /// The request's timeout passed before it was run.
    #[error("request timeout expired: model `{model}` did not start it within {timeout:?}")]
    Timeout {
        /// The model.
        model: String,
        /// The request's timeout.
        timeout: Duration,
    },
    /// A worker panicked while running this request; the worker's predictor was replaced.
    #[error(
        "model `{model}`: the worker running this request panicked ({message}); it was restarted"
    )]
    WorkerPanicked {
        /// The model.
        model: String,
        /// The panic message.
        message: String,
    },
    /// The model is known but not served now: loading, unloading, unloaded, or its load
    /// failed.
    #[error("model `{model}` is not available ({state}){}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Unavailable {
        /// The model.
        model: String,
        /// Its state in the repository index.
        state: &'static str,
        /// Why, when it is unavailable.
        reason: String,
    },
    /// A load or unload request to a server that does not take them.
    #[error("{reason}")]
    ModelControl {
        /// What the server runs with and what would allow it.
        reason: String,
    },
    /// A model could not be loaded from the repository.
    #[error("load failed for model `{model}`: {source}")]
    LoadFailed {
        /// The model.
        model: String,
        /// Why.
        #[source]
        source: Box<ServeError>,
    },
    /// The request's body did not arrive in time.
    #[error(
        "the request body did not arrive within {timeout:?} (--body-timeout-s); the connection is closed"
    )]
    BodyTimeout {
        /// The limit.
        timeout: Duration,
    },
    /// A configuration that cannot be served (a model repository, a `thrum.toml`, a port).
    #[error("{what}: {reason}")]
    Config {
        /// What was being set up.
        what: String,
        /// What is wrong and what was expected.
        reason: String,
    },
}

impl From<thrum_wire::WireError> for ServeError {
    fn from(e: thrum_wire::WireError) -> ServeError {
        ServeError::BadRequest { reason: e.reason }
    }
}

fn retry_after_text(d: Duration) -> String {
    format!("{} s", d.as_secs().max(1))
}

impl ServeError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServeError::Core(e) => e.kind(),
            ServeError::UnknownModel { .. } => ErrorKind::NotFound,
            ServeError::BadRequest { .. } | ServeError::BodyTooLarge { .. } => {
                ErrorKind::InvalidInput
            }
            ServeError::QueueFull { .. } => ErrorKind::ResourceExhausted,
            ServeError::NotReady { .. } => ErrorKind::Unavailable,
            ServeError::Timeout { .. } => ErrorKind::Timeout,
            ServeError::WorkerPanicked { .. } => ErrorKind::Internal,
            ServeError::Config { .. } => ErrorKind::InvalidInput,
            ServeError::Unavailable { state: "LOADING" | "UNLOADING", .. } => {
                ErrorKind::Unavailable
            }
            // Unloaded or failed: not there until someone loads it; a retry does not help.
            ServeError::Unavailable { .. } => ErrorKind::NotFound,
            ServeError::ModelControl { .. } => ErrorKind::Unavailable,
            ServeError::LoadFailed { source, .. } => match source.kind() {
                ErrorKind::NotFound => ErrorKind::NotFound,
                ErrorKind::Internal => ErrorKind::Internal,
                _ => ErrorKind::InvalidInput,
            },
            ServeError::BodyTimeout { .. } => ErrorKind::Timeout,
        }
    }

    /// A protocol error naming what is wrong.
    pub fn bad(reason: impl Into<String>) -> ServeError {
        ServeError::BadRequest { reason: reason.into() }
    }

    /// The HTTP status this error answers with: the one mapping of kinds to statuses.
    ///
    /// 400 for what the caller sent (an unsupported request too: Triton says 501, but the fix
    /// is the caller's), 404 unknown or unloaded model, 408 body not sent in time, 413 body
    /// over the limit, 503 not ready, loading, queue full or timed out in the queue (Triton's
    /// answer to both; `Retry-After` says when), load and unload refused by the model control
    /// mode (Triton's 503), 500 for failures inside the server or the engine.
    pub fn http_status(&self) -> u16 {
        match self {
            ServeError::BodyTooLarge { .. } => return 413,
            ServeError::BodyTimeout { .. } => return 408,
            _ => {}
        }
        match self.kind() {
            ErrorKind::InvalidInput | ErrorKind::Unsupported => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Unavailable | ErrorKind::ResourceExhausted | ErrorKind::Timeout => 503,
            _ => 500,
        }
    }

    /// The gRPC status code this error answers with (same mapping as [`ServeError::http_status`]).
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            ServeError::BodyTooLarge { .. } => return tonic::Code::ResourceExhausted,
            ServeError::BodyTimeout { .. } => return tonic::Code::DeadlineExceeded,
            _ => {}
        }
        match self.kind() {
            ErrorKind::InvalidInput | ErrorKind::Unsupported => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Unavailable | ErrorKind::ResourceExhausted | ErrorKind::Timeout => {
                tonic::Code::Unavailable
            }
            _ => tonic::Code::Internal,
        }
    }

    /// Seconds a client should wait before retrying, for errors that say so.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServeError::QueueFull { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            ServeError::NotReady { .. } | ServeError::Timeout { .. } => Some(1),
            ServeError::Unavailable { state: "LOADING" | "UNLOADING", .. } => Some(1),
            _ => None,
        }
    }
}

impl From<ServeError> for tonic::Status {
    fn from(e: ServeError) -> tonic::Status {
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_kind() {
        let full = ServeError::QueueFull {
            model: "m".into(),
            queued: 3,
            retry_after: Duration::from_millis(10),
        };
        assert_eq!((full.http_status(), full.retry_after()), (503, Some(1)));
        assert_eq!(full.grpc_code(), tonic::Code::Unavailable);
        assert_eq!(ServeError::bad("x").http_status(), 400);
        assert_eq!(ServeError::BodyTooLarge { size: 2, limit: 1 }.http_status(), 413);
        let unknown = ServeError::UnknownModel {
            name: "m".into(),
            version: String::new(),
            served: "a".into(),
        };
        assert_eq!((unknown.http_status(), unknown.grpc_code()), (404, tonic::Code::NotFound));
        let engine = ServeError::Core(thrum_core::Error::inference("tract", "m", "boom"));
        assert_eq!((engine.http_status(), engine.grpc_code()), (500, tonic::Code::Internal));
    }
}
