//! Errors of the benchmark library.

use std::path::PathBuf;

use thrum_core::ErrorKind;

use crate::shapes::ShapeError;

/// What can stop a benchmark.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// Loading or running the model.
    #[error(transparent)]
    Core(#[from] thrum_core::Error),
    /// A malformed `--input-shapes`.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A setting out of range or inconsistent with another.
    #[error("invalid {what}; expected {expected}")]
    Config {
        /// The setting and its value.
        what: String,
        /// What is accepted.
        expected: String,
    },
    /// The first failure of a worker, which stopped the run.
    #[error("worker {worker} failed during {phase}: {source}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// `predictor creation`, `first inference`, `warm-up` or `measurement`.
        phase: &'static str,
        /// The cause.
        source: Box<BenchError>,
    },
    /// Engine code panicked inside a call.
    #[error("the engine panicked: {message}")]
    Panic {
        /// The panic message.
        message: String,
    },
    /// A report, plot or directory that cannot be written.
    #[error("cannot write `{}`: {reason}", path.display())]
    Output {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl BenchError {
    /// What kind of failure this is: a core error's own kind, a worker's cause's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BenchError::Core(e) => e.kind(),
            BenchError::Worker { source, .. } => source.kind(),
            BenchError::Panic { .. } => ErrorKind::Internal,
            BenchError::Shape(_) | BenchError::Config { .. } | BenchError::Output { .. } => {
                ErrorKind::InvalidInput
            }
        }
    }
}
