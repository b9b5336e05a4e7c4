//! Errors of the tuner.

use std::path::PathBuf;

use thrum_core::ErrorKind;

/// What can stop a comparison or a search.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuneError {
    /// Loading or running a model in this process.
    #[error(transparent)]
    Core(Box<thrum_core::Error>),
    /// Building inputs or measuring in this process.
    #[error(transparent)]
    Bench(Box<thrum_bench::BenchError>),
    /// A setting out of range or inconsistent with another.
    #[error("invalid {what}; expected {expected}")]
    Config {
        /// The setting and its value.
        what: String,
        /// What is accepted.
        expected: String,
    },
    /// No engine could load the model: each one tried, and why it failed.
    #[error("no engine can run `{model}`: {}", tried.iter().map(|(e, why)| format!("{e}: {why}")).collect::<Vec<_>>().join("; "))]
    NoEngine {
        /// The model.
        model: String,
        /// (engine, why it failed).
        tried: Vec<(String, String)>,
    },
    /// The budget cannot hold one measurement.
    #[error(
        "a budget of {budget_s:.0} s is too small: one measurement of this model takes about {needed_s:.0} s (load, warm-up, {measure_s:.1} s measured); give --budget {suggest}"
    )]
    BudgetTooSmall {
        /// The budget.
        budget_s: f64,
        /// What one measurement takes, estimated.
        needed_s: f64,
        /// The measured part of it.
        measure_s: f64,
        /// A budget that fits a useful search.
        suggest: String,
    },
    /// Ctrl-C: the checkpoint holds every finished measurement.
    #[error("interrupted; {trials} measurements are in the checkpoint `{}`: run the same command with --resume to continue", checkpoint.display())]
    Interrupted {
        /// The checkpoint file.
        checkpoint: PathBuf,
        /// Measurements it holds.
        trials: usize,
    },
    /// Ctrl-C (or SIGTERM) before the search measured anything: there is no checkpoint.
    #[error("interrupted during {during}, before any measurement; nothing to resume")]
    InterruptedEarly {
        /// What was running.
        during: String,
    },
    /// Engines whose outputs differ from the reference engine's beyond the tolerance.
    #[error("engine(s) {} disagree with the reference beyond a relative tolerance of {tolerance:e}", engines.join(", "))]
    Disagree {
        /// The engines.
        engines: Vec<String>,
        /// The tolerance.
        tolerance: f64,
    },
    /// Reduced precisions whose accuracy falls short of the target (`thrum compare
    /// --precision`).
    #[error("{} below the target: {metric} under {:.1} % of fp32", variants.join(", "), target * 100.0)]
    BelowTarget {
        /// Each `engine precision`.
        variants: Vec<String>,
        /// The metric (`top-1 agreement`, `mean cosine`).
        metric: String,
        /// The fraction of fp32 asked for.
        target: f64,
    },
    /// Every measurement failed (the first failure is given; the table lists them all).
    #[error("every measurement failed; the first: {first}")]
    AllFailed {
        /// The first failure, with its stderr's last line.
        first: String,
    },
    /// Nothing measured meets the constraints (the closest are printed).
    #[error("no configuration meets the constraints; closest: {closest}")]
    Unmet {
        /// The closest configuration and what it misses.
        closest: String,
    },
    /// A file that cannot be read or written.
    #[error("cannot {action} `{}`: {reason}", path.display())]
    File {
        /// `read`, `write`…
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<thrum_core::Error> for TuneError {
    fn from(e: thrum_core::Error) -> TuneError {
        TuneError::Core(Box::new(e))
    }
}

impl From<thrum_bench::BenchError> for TuneError {
    fn from(e: thrum_bench::BenchError) -> TuneError {
        TuneError::Bench(Box::new(e))
    }
}

impl TuneError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TuneError::Core(e) => e.kind(),
            TuneError::Bench(e) => e.kind(),
            TuneError::NoEngine { .. } => ErrorKind::Unavailable,
            TuneError::Disagree { .. }
            | TuneError::BelowTarget { .. }
            | TuneError::AllFailed { .. } => ErrorKind::Internal,
            TuneError::Unmet { .. } => ErrorKind::InvalidInput,
            TuneError::Interrupted { .. } | TuneError::InterruptedEarly { .. } => {
                ErrorKind::Timeout
            }
            TuneError::Config { .. }
            | TuneError::BudgetTooSmall { .. }
            | TuneError::File { .. } => ErrorKind::InvalidInput,
        }
    }

    /// A file that cannot be written, and why.
    pub fn write(path: &std::path::Path, e: impl std::fmt::Display) -> TuneError {
        TuneError::File { action: "write", path: path.to_path_buf(), reason: e.to_string() }
    }
}
