//! The load generator's one error type.

use thrum_core::ErrorKind;

/// What can stop a load run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// An argument that is not what it should be.
    #[error("invalid {what}; expected {expected}")]
    Usage {
        /// The argument and its value.
        what: String,
        /// What is accepted.
        expected: String,
    },
    /// The server cannot be reached.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The address tried.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// The server answers, but not as a KServe v2 server.
    #[error("{url} is not a KServe v2 server: {reason}")]
    NotV2 {
        /// The address.
        url: String,
        /// What it answered.
        reason: String,
    },
    /// The model is not there, or not ready.
    #[error("model `{model}`: {reason}")]
    Model {
        /// The model.
        model: String,
        /// What the server said, and what it serves.
        reason: String,
    },
    /// Every request of a step failed: there is nothing to measure.
    #[error("every request failed at {step}: {reason}")]
    AllFailed {
        /// The step (`concurrency 4`).
        step: String,
        /// The errors seen, by status.
        reason: String,
    },
    /// Inputs, tensors, files.
    #[error(transparent)]
    Core(#[from] thrum_core::Error),
    /// A report, CSV or plot that cannot be written.
    #[error("cannot write `{}`: {reason}", path.display())]
    Output {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

impl LoadError {
    /// A usage error.
    pub fn usage(what: impl Into<String>, expected: impl Into<String>) -> LoadError {
        LoadError::Usage { what: what.into(), expected: expected.into() }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoadError::Usage { .. } | LoadError::Output { .. } => ErrorKind::InvalidInput,
            LoadError::Unreachable { .. } | LoadError::NotV2 { .. } => ErrorKind::Unavailable,
            LoadError::Model { .. } => ErrorKind::NotFound,
            LoadError::AllFailed { .. } => ErrorKind::Internal,
            LoadError::Core(e) => e.kind(),
        }
    }
}
