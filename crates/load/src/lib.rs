//! # thrum-load
//!
//! A load generator for KServe v2 / Open Inference Protocol servers — perf_analyzer's job, in
//! Rust, as a library (the `thrum load` command, tests and the tuner use it):
//!
//! - [`plan`]: what to run, parsed without I/O: closed loop at concurrencies
//!   (`--concurrency-range START:END:STEP`) or open loop at request rates, constant or Poisson;
//!   HTTP with binary tensors, HTTP with JSON, or gRPC; inputs from the model's metadata (zeros
//!   or seeded random) or `.npy` files;
//! - [`target`]: discovering the model (v2 metadata, readiness, `max_batch_size`), the request
//!   built once, and one keep-alive connection per caller;
//! - [`http1`]: the load loop's HTTP/1.1 client — the request encoded once, one `write` per
//!   call, the answer parsed with `httparse` (hyper per request cost more than wrk's whole loop);
//!   [`grpc2`] its gRPC client, on the `h2` crate: the request framed once, the answer read for
//!   its status;
//! - [`measure`]: perf_analyzer's measurement — warm-up excluded, windows until the last three
//!   agree within ±10 % in throughput and latency (or the window limit says unstable),
//!   `hdrhistogram` latencies, errors by status, the server's own split from its statistics;
//! - [`report`]: the console block, perf_analyzer's CSV, JSON, a plot.

pub mod error;
pub mod grpc2;
pub mod http1;
pub mod measure;
pub mod plan;
pub mod report;
pub mod target;

use std::sync::Arc;

pub use error::LoadError;
pub use measure::{Step, StepReport};
pub use plan::{Distribution, InputData, Load, LoadPlan, Measurement, Protocol};
pub use report::LoadReport;
pub use target::Target;

/// Runs every step of `plan` against its server and reports them; `files` are the inputs read
/// from `.npy` when the plan says so. `on_step` sees each step's report as it completes, and
/// `on_window` each window's throughput (step index, window, inferences/s).
pub async fn run(
    plan: &LoadPlan,
    files: Option<Vec<(String, thrum_core::Tensor)>>,
    mut on_step: impl FnMut(&StepReport),
    mut on_window: impl FnMut(usize, usize, f64),
) -> Result<LoadReport, LoadError> {
    let target = Arc::new(Target::connect(plan, files).await?);
    let mut steps = Vec::new();
    for (k, step) in measure::steps(plan).into_iter().enumerate() {
        let report =
            measure::run_step(&target, plan, step, |w, tput| on_window(k, w, tput)).await?;
        on_step(&report);
        steps.push(report);
    }
    Ok(LoadReport {
        schema: "thrum-load/1",
        plan: plan.clone(),
        max_batch_size: target.max_batch_size,
        server_statistics: target.statistics,
        steps,
    })
}
