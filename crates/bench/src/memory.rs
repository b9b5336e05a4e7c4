//! The memory demonstration (DJL's guide's point): load a model, then add predictors — each on
//! its own thread, each having run once — and read RSS at 1, 2, 4, 8… so a user sees whether
//! the engine shares weights (flat) or copies them (N×).

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use thrum_core::{Engine, ModelSource, Options};

use crate::error::BenchError;
use crate::plan::{InputPlan, PredictorKind, build_workload};
use crate::system;

/// RSS with a number of live predictors.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MemoryStep {
    /// Predictors (per-thread) or threads using the shared predictor.
    pub predictors: usize,
    /// Process RSS, MiB.
    pub rss_mib: f64,
    /// RSS relative to the first step.
    pub ratio_to_first: f64,
}

/// The memory report of one model on one engine.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryReport {
    /// [`crate::report::SCHEMA`]-style identifier of this report.
    pub schema: &'static str,
    /// Model name.
    pub model: String,
    /// Engine name.
    pub engine: String,
    /// Predictor mode.
    pub predictor: PredictorKind,
    /// RSS before loading, MiB.
    pub rss_before_load_mib: f64,
    /// RSS after loading, MiB.
    pub rss_after_load_mib: f64,
    /// Model load time, ms.
    pub model_load_ms: f64,
    /// One step per predictor count.
    pub steps: Vec<MemoryStep>,
    /// How the process's allocator is configured, when the caller knows.
    pub allocator: Option<String>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs the memory report for `counts` predictors (ascending, e.g. 1, 2, 4, 8).
pub fn memory_report(
    engine: &dyn Engine,
    source: &ModelSource,
    options: &Options,
    inputs: &InputPlan,
    mode: PredictorKind,
    counts: &[usize],
) -> Result<MemoryReport, BenchError> {
    let rss = || system::rss_bytes().unwrap_or(0);
    let before = rss();
    let t = Instant::now();
    let model = engine.load(source, options)?;
    let model_load_ms = t.elapsed().as_secs_f64() * 1e3;
    let after_load = rss();
    let (workload, per_call) = build_workload(&model, inputs)?;
    let tensors = workload.tensors(&model, per_call)?;
    let shared = match mode {
        PredictorKind::Shared => Some(model.shared_predictor()?),
        PredictorKind::PerThread => None,
    };
    let release = Release::default();
    let ready: Mutex<Vec<Result<(), BenchError>>> = Mutex::new(Vec::new());
    let arrived = Condvar::new();
    let mut steps: Vec<(usize, u64)> = Vec::new();
    std::thread::scope(|s| -> Result<(), BenchError> {
        let mut live = 0;
        let outcome = (|| {
            for &target in counts {
                while live < target {
                    let (model, tensors, shared, release, ready, arrived) =
                        (&model, &tensors, shared.as_ref(), &release, &ready, &arrived);
                    s.spawn(move || {
                        // Each predictor lives on its own thread and has run once, so that
                        // per-thread engine state (scratch buffers, thread pools) is counted.
                        // A panic is reported like an error, so the step never waits on it.
                        let result =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                                || match shared {
                                    Some(shared) => shared.predict(tensors.clone()).map(|_| None),
                                    None => model.predictor().and_then(|mut p| {
                                        p.predict(tensors.clone()).map(|_| Some(p))
                                    }),
                                },
                            ));
                        let (keep, status) = match result {
                            Ok(Ok(p)) => (p, Ok(())),
                            Ok(Err(e)) => (None, Err(BenchError::from(e))),
                            Err(panic) => (
                                None,
                                Err(BenchError::Panic {
                                    message: thrum_core::error::panic_message(&panic),
                                }),
                            ),
                        };
                        ready.lock().unwrap_or_else(|p| p.into_inner()).push(status);
                        arrived.notify_all();
                        release.wait();
                        drop(keep);
                    });
                    live += 1;
                    // One first call at a time: the step measures what N live predictors
                    // hold, not the activations of N calls that happened to overlap (which
                    // the allocator may keep, by chance of timing, after they are freed).
                    let mut done = ready.lock().unwrap_or_else(|p| p.into_inner());
                    while done.len() < live {
                        done = arrived.wait(done).unwrap_or_else(|p| p.into_inner());
                    }
                    if let Some(pos) = done.iter().position(Result::is_err) {
                        return done.remove(pos);
                    }
                }
                steps.push((target, rss()));
            }
            Ok(())
        })();
        release.open();
        outcome
    })?;
    let first = steps.first().map_or(1, |s| s.1).max(1);
    Ok(MemoryReport {
        schema: "thrum-memory/1",
        model: model.name().into(),
        engine: model.engine().into(),
        predictor: mode,
        rss_before_load_mib: mib(before),
        rss_after_load_mib: mib(after_load),
        model_load_ms,
        steps: steps
            .into_iter()
            .map(|(n, bytes)| MemoryStep {
                predictors: n,
                rss_mib: mib(bytes),
                ratio_to_first: bytes as f64 / first as f64,
            })
            .collect(),
        allocator: None,
    })
}

/// Keeps predictor threads alive until every step is measured.
#[derive(Default)]
struct Release {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Release {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while !*open {
            open = self.changed.wait(open).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }
}

impl MemoryReport {
    /// The human table.
    pub fn write_summary(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "memory report: {} on {} ({} predictors)",
            self.model, self.engine, self.predictor
        )?;
        writeln!(out, "  before load      {:>9.1} MiB", self.rss_before_load_mib)?;
        writeln!(
            out,
            "  after load       {:>9.1} MiB  (loaded in {:.1} ms)",
            self.rss_after_load_mib, self.model_load_ms
        )?;
        for step in &self.steps {
            let label = if step.predictors == 1 { "predictor " } else { "predictors" };
            writeln!(
                out,
                "  {:>3} {label}   {:>9.1} MiB  {:.3}x",
                step.predictors, step.rss_mib, step.ratio_to_first
            )?;
        }
        if let Some(allocator) = &self.allocator {
            writeln!(out, "  allocator        {allocator}")?;
        }
        if let (Some(first), Some(last)) = (self.steps.first(), self.steps.last())
            && last.predictors > first.predictors
        {
            let model_mib = (self.rss_after_load_mib - self.rss_before_load_mib).max(0.0);
            let per_extra =
                (last.rss_mib - first.rss_mib) / (last.predictors - first.predictors) as f64;
            writeln!(
                out,
                "  each extra predictor adds {per_extra:.1} MiB (model itself: {model_mib:.1} MiB): {}",
                if last.ratio_to_first <= 1.15 {
                    "weights are shared"
                } else {
                    "memory grows with predictors"
                }
            )?;
        }
        Ok(())
    }
}
