//! # thrum-tune
//!
//! Finds the fastest configuration of a model on this machine, across engines, and shows
//! the evidence. What it owns:
//! - [`compare`]: every engine runs the model on the same seeded input; outputs are compared
//!   with the first engine's (`thrum compare`, and the tuner's first step);
//! - [`space`]: per engine, the dimensions a configuration varies (workers × intra-op split,
//!   batch, predictor kind, inter-op, oneDNN, the engine's tunable keys) and a start point;
//! - [`child`]: one configuration measured in a fresh `thrum bench` process, with a timeout;
//! - [`search`]: hill climbing along the dimensions, the best few re-measured longer, the
//!   winner against the default in alternating runs, a budget and a checkpoint;
//! - [`report`]: the ranked table, the Pareto front and its plot, the JSON, `thrum.toml`.
//!
//! The CLI (`thrum tune`, `thrum compare`) builds the plan and prints; this crate does no
//! argument parsing.

pub mod accuracy;
pub mod child;
pub mod compare;
mod error;
pub mod report;
pub mod search;
pub mod space;

pub use error::TuneError;
