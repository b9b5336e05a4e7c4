//! # thrum-bench
//!
//! The benchmark engine behind `thrum bench`, as a library so that the auto-tuner and the
//! server can reuse it:
//!
//! - [`run_benchmark`]: load a model, build inputs ([`InputPlan`], djl-bench's shape
//!   grammar in [`shapes`]), run the measured phase ([`measure`]), report ([`BenchReport`]);
//! - [`measure`]: worker threads that each create and warm up their predictor on their own
//!   thread (DJL warms up on the main thread, which misses per-thread lazy initialisation),
//!   start together, and stop on a shared iteration counter or deadline; the first error
//!   stops every worker and is reported with its cause;
//! - latencies in `hdrhistogram` ([`stats`]), memory and CPU from `/proc` ([`system`]),
//!   progress with `indicatif`;
//! - [`memory_report`]: RSS with 1, 2, 4, 8… predictors, to show whether weights are shared;
//! - [`run_sweep`] and [`plot_sweep`]: a grid of configurations, its Pareto front, a plot.

mod error;
mod memory;
mod plan;
mod plot;
mod report;
mod runner;
pub mod shapes;
pub mod stats;
mod sweep;
pub mod system;

pub use error::BenchError;
pub use memory::{MemoryReport, MemoryStep, memory_report};
pub use plan::{
    DEFAULT_WINDOW, FilePlan, ImagePlan, InputPlan, PredictorKind, RunPlan, STABLE_WINDOWS, Stop,
    TextPlan, Workload, build_inputs, build_workload,
};
pub use plot::plot_sweep;
pub use report::{BenchReport, SCHEMA, run_benchmark};
pub use runner::{CpuUsage, Measurement, StageLatencies, measure, measure_with};
pub use sweep::{
    SWEEP_KEYS, SweepGrid, SweepPoint, mark_pareto_front, run_sweep, sweep_json, write_table,
};
