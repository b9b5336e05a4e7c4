//! The measured phase: worker threads, each with its own predictor created and warmed up on
//! its own thread, started together, stopping on a shared iteration counter or deadline.

use std::io::IsTerminal;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use thrum_core::translator::{Identity, Translator};
use thrum_core::{Model, Predictor, SharedPredictor, StageTimings, Tensor};

use crate::error::BenchError;
use crate::plan::{PredictorKind, RunPlan, STABLE_WINDOWS};
use crate::stats::{LatencySummary, MinMax, Recorder};
use crate::system;

/// Latency summaries of the whole call and of each stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct StageLatencies {
    /// Whole `predict` call as the worker sees it.
    pub total: LatencySummary,
    /// Translator pre-processing and input checks.
    pub preprocess: LatencySummary,
    /// The engine's forward pass.
    pub inference: LatencySummary,
    /// Un-batching and post-processing.
    pub postprocess: LatencySummary,
    /// Within `preprocess`, the parts the translator times itself (an image's `decode` and
    /// `resize`), when it has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<StageParts>,
}

/// Two named parts of the pre-processing stage and their latencies, serialised as
/// `{"decode": {…}, "resize": {…}}`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageParts {
    /// The parts' names ([`thrum_core::Translator::preprocess_parts`]).
    pub names: [&'static str; 2],
    /// Each part's latency.
    pub latency: [LatencySummary; 2],
}

impl serde::Serialize for StageParts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        for (name, latency) in self.names.iter().zip(&self.latency) {
            map.serialize_entry(name, latency)?;
        }
        map.end()
    }
}

/// Process CPU use over the measured phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CpuUsage {
    /// User + system CPU seconds the process used.
    pub cpu_s: f64,
    /// `cpu_s` / wall time: cores kept busy on average.
    pub cores_busy: f64,
    /// `cores_busy` as a percentage of the usable cores.
    pub percent_of_usable: f64,
}

/// What one measured phase produced.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Measurement {
    /// Calls completed in the measured phase.
    pub calls: u64,
    /// Samples completed (calls × samples per call).
    pub samples: u64,
    /// Samples per call.
    pub samples_per_call: usize,
    /// From the common start to the end of the last call.
    pub wall_s: f64,
    /// Calls per second.
    pub calls_per_s: f64,
    /// Samples per second.
    pub samples_per_s: f64,
    /// Latency percentiles.
    pub latency: StageLatencies,
    /// Time each worker took to create its predictor.
    pub predictor_setup: Option<MinMax>,
    /// Each worker's first call, on its own thread.
    pub first_inference: Option<MinMax>,
    /// Latencies of the warm-up calls (all workers).
    pub warmup: Option<MinMax>,
    /// CPU use of the process during the measured phase.
    pub cpu: CpuUsage,
    /// RSS once every worker had its predictor and was warmed up, bytes.
    pub rss_after_predictors: Option<u64>,
    /// Highest RSS sampled during the measured phase, bytes.
    pub rss_peak_run: Option<u64>,
    /// Samples per second in each whole window of `stop.window` (a partial last window is left
    /// out): the spread a caller needs for a confidence interval.
    pub window_samples_per_s: Vec<f64>,
    /// Whether the run stopped because throughput was stable (`stop.stability_percent`).
    pub stable: bool,
}

/// Runs the measured phase of `plan` on `model`, feeding `inputs` to every call.
pub fn measure(
    model: &Model,
    inputs: &[Tensor],
    samples_per_call: usize,
    plan: &RunPlan,
    usable_cores: usize,
) -> Result<Measurement, BenchError> {
    measure_with(
        model,
        &Identity::default(),
        &[inputs.to_vec()],
        1,
        samples_per_call,
        plan,
        usable_cores,
    )
}

/// Runs the measured phase of `plan` on `model` through `translator`: every call is one
/// `batch_predict` of the next `items_per_call` of `items`, taken in turn by all workers and
/// wrapping around (so every text of a file, every image of a directory is measured, not the
/// first batch over and over), each worker's predictor with its own clone of the translator.
/// The stages are the translator's pre-processing, the forward pass and its post-processing.
#[allow(clippy::too_many_arguments)]
pub fn measure_with<T>(
    model: &Model,
    translator: &T,
    items: &[T::Input],
    items_per_call: usize,
    samples_per_call: usize,
    plan: &RunPlan,
    usable_cores: usize,
) -> Result<Measurement, BenchError>
where
    T: Translator + Clone,
    T::Input: Clone + Sync,
{
    plan.validate()?;
    if items.is_empty() || items_per_call == 0 {
        return Err(BenchError::Config {
            what: format!("{} item(s), {items_per_call} per call", items.len()),
            expected: "at least one item and one per call".into(),
        });
    }
    let shared = match plan.predictor {
        PredictorKind::Shared => Some(model.shared_predictor_with(translator.clone())?),
        PredictorKind::PerThread => None,
    };
    let ctx = Context {
        model,
        translator,
        shared: shared.as_ref(),
        inputs: items,
        per_call: items_per_call,
        turn: AtomicU64::new(0),
        plan,
        stop: AtomicBool::new(false),
        claimed: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        failure: Mutex::new(None),
        line: StartLine::default(),
        start: OnceLock::new(),
    };
    let ctx = &ctx;
    let (results, rss_after_predictors, cpu_before, start, (rss_peak_run, windows, stable)) =
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..plan.workers)
                .map(|index| {
                    std::thread::Builder::new()
                        .name(format!("thrum-bench-{index}"))
                        .spawn_scoped(s, move || ctx.worker(index))
                })
                .collect();
            let mut spawned = Vec::new();
            for handle in handles {
                match handle {
                    Ok(h) => spawned.push(h),
                    Err(err) => ctx.fail(
                        spawned.len(),
                        "thread start",
                        BenchError::Config {
                            what: format!("worker thread: {err}"),
                            expected: "fewer --threads".into(),
                        },
                    ),
                }
            }
            let handles = spawned;
            ctx.line.wait_ready(handles.len());
            let rss_after_predictors = system::rss_bytes();
            if ctx.failed() {
                ctx.stop.store(true, Ordering::SeqCst);
            }
            let cpu_before = system::cpu_time();
            let start = Instant::now();
            let _ = ctx.start.set(start);
            ctx.line.go();
            let rss_peak = ctx.watch(&handles, start, samples_per_call);
            let results: Vec<WorkerResult> =
                handles.into_iter().map(|h| h.join().unwrap_or_default()).collect();
            (results, rss_after_predictors, cpu_before, start, rss_peak)
        });
    if let Some(err) = ctx.failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(err);
    }
    let cpu_after = system::cpu_time();
    let end = results.iter().filter_map(|r| r.last_end).max().unwrap_or(start);
    let wall = end.saturating_duration_since(start).max(Duration::from_nanos(1));
    let wall_s = wall.as_secs_f64();
    let mut latency: [Recorder; 6] = std::array::from_fn(|_| Recorder::new());
    for r in &results {
        for (merged, own) in latency.iter_mut().zip(&r.latency) {
            merged.merge(own);
        }
    }
    let calls: u64 = results.iter().map(|r| r.calls).sum();
    let cpu_s = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(Measurement {
        calls,
        samples: calls * samples_per_call as u64,
        samples_per_call,
        wall_s,
        calls_per_s: calls as f64 / wall_s,
        samples_per_s: (calls * samples_per_call as u64) as f64 / wall_s,
        latency: StageLatencies {
            total: latency[0].summary(),
            preprocess: latency[1].summary(),
            inference: latency[2].summary(),
            postprocess: latency[3].summary(),
            parts: translator.preprocess_parts().map(|names| StageParts {
                names,
                latency: [latency[4].summary(), latency[5].summary()],
            }),
        },
        predictor_setup: MinMax::of(results.iter().filter_map(|r| r.setup)),
        first_inference: MinMax::of(results.iter().filter_map(|r| r.first)),
        warmup: MinMax::of(results.iter().flat_map(|r| r.warmup.iter().copied())),
        cpu: CpuUsage {
            cpu_s,
            cores_busy: cpu_s / wall_s,
            percent_of_usable: 100.0 * cpu_s / wall_s / usable_cores.max(1) as f64,
        },
        rss_after_predictors,
        rss_peak_run,
        window_samples_per_s: windows,
        stable,
    })
}

struct Context<'a, T: Translator> {
    model: &'a Model,
    translator: &'a T,
    shared: Option<&'a SharedPredictor<T>>,
    /// What the calls predict: each call the next `per_call` of them, as one batch.
    inputs: &'a [T::Input],
    per_call: usize,
    /// Calls started (warm-up included): where the next call's items start.
    turn: AtomicU64,
    plan: &'a RunPlan,
    /// Set by the first failure (or by the main thread): every worker stops at its next check.
    stop: AtomicBool,
    /// Calls claimed against the iteration budget.
    claimed: AtomicU64,
    /// Calls finished, for the progress bar.
    completed: AtomicU64,
    failure: Mutex<Option<BenchError>>,
    line: StartLine,
    start: OnceLock<Instant>,
}

/// Workers arrive when set up and warmed; the main thread waits for the ones it spawned,
/// samples memory, starts the clock and lets them go. (A `Barrier` sized for every worker
/// would hang if one could not be spawned.)
#[derive(Default)]
struct StartLine {
    /// (workers arrived, go given)
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl StartLine {
    fn arrive_and_wait(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 += 1;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn wait_ready(&self, workers: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.0 < workers {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn go(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.changed.notify_all();
    }
}

#[derive(Default)]
struct WorkerResult {
    setup: Option<Duration>,
    first: Option<Duration>,
    warmup: Vec<Duration>,
    /// total, preprocess, inference, postprocess, and the two parts of preprocess
    latency: [Recorder; 6],
    calls: u64,
    last_end: Option<Instant>,
}

impl<T> Context<'_, T>
where
    T: Translator + Clone,
    T::Input: Clone + Sync,
{
    fn failed(&self) -> bool {
        self.failure.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    fn fail(&self, worker: usize, phase: &'static str, err: BenchError) {
        self.stop.store(true, Ordering::SeqCst);
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(BenchError::Worker { worker, phase, source: Box::new(err) });
        }
    }

    /// One call, with panics turned into errors so that a failing engine cannot hang the
    /// other workers at a barrier.
    fn call(&self, predictor: &mut Option<Predictor<T>>) -> Result<StageTimings, BenchError> {
        let n = self.inputs.len();
        let turn = u128::from(self.turn.fetch_add(1, Ordering::Relaxed));
        let first = (turn * self.per_call as u128 % n as u128) as usize;
        let inputs: Vec<T::Input> =
            (0..self.per_call).map(|j| self.inputs[(first + j) % n].clone()).collect();
        let outcome = catch_unwind(AssertUnwindSafe(|| match (predictor.as_mut(), self.shared) {
            (Some(p), _) => p.batch_predict(inputs).map(|_| p.last_timings()),
            (None, Some(shared)) => shared.batch_predict_timed(inputs).map(|(_, t)| t),
            (None, None) => Err(thrum_core::Error::Batch { reason: "no predictor".into() }),
        }));
        match outcome {
            Ok(result) => result.map_err(BenchError::from),
            Err(panic) => {
                Err(BenchError::Panic { message: thrum_core::error::panic_message(&panic) })
            }
        }
    }

    fn worker(&self, index: usize) -> WorkerResult {
        let mut result = WorkerResult::default();
        let mut predictor: Option<Predictor<T>> = None;
        let mut phase = "predictor creation";
        let setup = (|| -> Result<(), BenchError> {
            let t = Instant::now();
            if self.shared.is_none() {
                let created = catch_unwind(AssertUnwindSafe(|| {
                    self.model.predictor_with(self.translator.clone())
                }))
                .map_err(|p| BenchError::Panic { message: thrum_core::error::panic_message(&p) })?;
                predictor = Some(created?);
            }
            result.setup = Some(t.elapsed());
            phase = "first inference";
            let t = Instant::now();
            self.call(&mut predictor)?;
            result.first = Some(t.elapsed());
            phase = "warm-up";
            for _ in 0..self.plan.warmup {
                let t = Instant::now();
                self.call(&mut predictor)?;
                result.warmup.push(t.elapsed());
            }
            Ok(())
        })();
        if let Err(err) = setup {
            self.fail(index, phase, err);
        }
        self.line.arrive_and_wait();
        if self.stop.load(Ordering::SeqCst) {
            return result;
        }
        let start = self.start.get().copied().unwrap_or_else(Instant::now);
        if !self.plan.delay.is_zero() {
            std::thread::sleep(self.plan.delay * index as u32);
        }
        let deadline = self.plan.stop.duration.map(|d| start + d);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(n) = self.plan.stop.iterations
                && self.claimed.fetch_add(1, Ordering::Relaxed) >= n
            {
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let t = Instant::now();
            match self.call(&mut predictor) {
                Ok(stages) => {
                    let end = Instant::now();
                    result.latency[0].record(end - t);
                    result.latency[1].record(stages.preprocess);
                    result.latency[2].record(stages.inference);
                    result.latency[3].record(stages.postprocess);
                    result.latency[4].record(stages.preprocess_parts[0]);
                    result.latency[5].record(stages.preprocess_parts[1]);
                    result.calls += 1;
                    result.last_end = Some(end);
                    self.completed.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    self.fail(index, "measurement", err);
                    break;
                }
            }
        }
        result
    }

    /// Samples RSS, throughput per window and drives the progress bar until every worker has
    /// finished; stops the workers early once throughput is stable, when asked to.
    /// Returns the RSS peak, the windows' samples per second and whether it stopped on
    /// stability.
    fn watch(
        &self,
        handles: &[std::thread::ScopedJoinHandle<'_, WorkerResult>],
        start: Instant,
        samples_per_call: usize,
    ) -> (Option<u64>, Vec<f64>, bool) {
        let mut peak = system::rss_bytes();
        let bar = self.progress_bar();
        let window = self.plan.stop.window;
        let mut windows = Vec::new();
        let mut window_start = (start, 0u64);
        let mut stable = false;
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(10).min(window / 4));
            peak = peak.max(system::rss_bytes());
            let now = Instant::now();
            let done = self.completed.load(Ordering::Relaxed);
            if now - window_start.0 >= window && !self.stop.load(Ordering::Relaxed) {
                let seconds = (now - window_start.0).as_secs_f64();
                windows.push((done - window_start.1) as f64 * samples_per_call as f64 / seconds);
                window_start = (now, done);
                if let Some(percent) = self.plan.stop.stability_percent
                    && is_stable(&windows, percent)
                {
                    stable = true;
                    self.stop.store(true, Ordering::SeqCst);
                }
            }
            if let Some(bar) = &bar {
                let elapsed = start.elapsed();
                if elapsed > Duration::from_secs(2) && bar.is_hidden() {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                }
                match self.plan.stop.iterations {
                    Some(_) => bar.set_position(done),
                    None => bar.set_position(elapsed.as_millis() as u64),
                }
                bar.set_message(format!(
                    "{done} calls, {:.1} calls/s",
                    done as f64 / elapsed.as_secs_f64().max(1e-9)
                ));
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        (peak.max(system::rss_bytes()), windows, stable)
    }

    /// A progress bar on stderr, hidden at first and shown once the run passes 2 s; none
    /// when not asked for or when stderr is not a terminal.
    fn progress_bar(&self) -> Option<ProgressBar> {
        if !self.plan.progress || !std::io::stderr().is_terminal() {
            return None;
        }
        let (len, unit) = match (self.plan.stop.iterations, self.plan.stop.duration) {
            (Some(n), _) => (n, "calls"),
            (None, Some(d)) => (d.as_millis() as u64, "ms"),
            (None, None) => (0, ""),
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {unit}  {{msg}}"
        )) {
            bar.set_style(style);
        }
        Some(bar)
    }
}

/// The last [`STABLE_WINDOWS`] windows each within `percent` % of their mean (and not all
/// empty).
pub fn is_stable(windows: &[f64], percent: f64) -> bool {
    if windows.len() < STABLE_WINDOWS {
        return false;
    }
    let last = &windows[windows.len() - STABLE_WINDOWS..];
    let mean = last.iter().sum::<f64>() / last.len() as f64;
    mean > 0.0 && last.iter().all(|w| (w - mean).abs() <= mean * percent / 100.0)
}

#[cfg(test)]
mod tests {
    use super::is_stable;

    #[test]
    fn stability_needs_three_windows_within_the_band() {
        assert!(!is_stable(&[100.0, 100.0], 5.0));
        assert!(is_stable(&[10.0, 100.0, 103.0, 98.0], 5.0));
        assert!(!is_stable(&[100.0, 120.0, 100.0], 5.0));
        assert!(!is_stable(&[0.0, 0.0, 0.0], 5.0));
    }
}
