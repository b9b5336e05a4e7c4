//! Errors of the benchmark library.

use std::path::PathBuf;

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
    /// True when the user can fix the cause (bad arguments, files, models, options); false
    /// when an engine failed while running.
    pub fn is_user_error(&self) -> bool {
        match self {
            BenchError::Core(e) => !matches!(e, thrum_core::Error::Inference { .. }),
            BenchError::Worker { source, .. } => source.is_user_error(),
            BenchError::Panic { .. } => false,
            _ => true,
        }
    }
}
