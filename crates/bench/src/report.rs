//! A whole benchmark (engine and model load, inputs, measured phase) and its report: JSON
//! (schema `docs/bench-report.schema.json`) and the human summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use thrum_core::{Engine, ModelSource, Options, TensorSpec, ThreadConfig};

use crate::error::BenchError;
use crate::plan::{InputPlan, PredictorKind, RunPlan, build_workload};
use crate::runner::{CpuUsage, Measurement, StageLatencies};
use crate::shapes::{InputShape, dtype_suffix};
use crate::stats::{LatencySummary, MinMax};
use crate::system::{self, Cores};

/// Identifies the report format; bumped when a field changes meaning or disappears.
pub const SCHEMA: &str = "thrum-bench/1";

/// Everything one `thrum bench` run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// thrum's version.
    pub thrum_version: &'static str,
    /// The model.
    pub model: ModelInfo,
    /// The engine.
    pub engine: EngineInfo,
    /// What was run.
    pub plan: PlanInfo,
    /// Thread settings and cores.
    pub threads: ThreadInfo,
    /// One-off costs.
    pub timing: TimingInfo,
    /// The measured phase.
    pub results: Results,
    /// Resident memory at each stage, MiB.
    pub memory: MemoryInfo,
    /// CPU use during the measured phase.
    pub cpu: CpuUsage,
    /// Things the user should know (oversubscription, too few calls…).
    pub warnings: Vec<String>,
    /// How the process's allocator is configured (it shapes the memory numbers), when the
    /// caller knows.
    pub allocator: Option<String>,
    /// The CPU model and the instruction sets that decide reduced precision's speed.
    pub machine: thrum_core::CpuFeatures,
}

/// The model benchmarked.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelInfo {
    /// Name.
    pub name: String,
    /// The path or `zoo:NAME` given.
    pub path: String,
    /// Input specs.
    pub inputs: Vec<TensorSpec>,
    /// Output specs.
    pub outputs: Vec<TensorSpec>,
}

/// The engine used.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EngineInfo {
    /// Name.
    pub name: String,
    /// Runtime version.
    pub version: Option<String>,
    /// Native library, if any.
    pub library: Option<String>,
    /// What the engine ran for a reduced precision, as far as it can tell
    /// ([`thrum_core::Model::precision_run`]).
    pub precision_run: Option<String>,
}

/// The run's settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlanInfo {
    /// Workers, stop condition, warm-up, delay, predictor mode.
    #[serde(flatten)]
    pub run: RunPlan,
    /// Shapes fed to every call, in djl-bench syntax.
    pub input_shapes: Vec<String>,
    /// Samples per call (the batch axis).
    pub samples_per_call: usize,
    /// Every option key with its value.
    pub options: BTreeMap<String, String>,
    /// `--image-dir`: the images and their pre-processing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::ImagePlan>,
}

/// Threads in effect and the cores to run them on.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ThreadInfo {
    /// As the engine reports them.
    pub engine: ThreadConfig,
    /// Usable cores (affinity, cgroup quota).
    pub cores: Cores,
    /// Workers × intra-op threads exceed the usable cores.
    pub oversubscribed: bool,
}

/// One-off costs, milliseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TimingInfo {
    /// Engine start-up: finding and loading its runtime (`check()`).
    pub engine_load_ms: f64,
    /// Loading the model.
    pub model_load_ms: f64,
    /// Creating the predictor, per worker.
    pub predictor_setup: Option<MinMax>,
    /// First call on each worker's thread.
    pub first_inference: Option<MinMax>,
    /// Warm-up calls.
    pub warmup: Option<MinMax>,
}

/// Throughput and latency of the measured phase.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Results {
    /// Calls completed.
    pub calls: u64,
    /// Samples completed.
    pub samples: u64,
    /// Measured wall time, seconds.
    pub wall_s: f64,
    /// Calls per second.
    pub calls_per_s: f64,
    /// Samples per second.
    pub samples_per_s: f64,
    /// Latency percentiles, whole call and per stage.
    pub latency_ms: StageLatencies,
    /// Samples per second in each whole window of `plan.stop.window_s`.
    pub window_samples_per_s: Vec<f64>,
    /// Whether the run stopped early because throughput was stable.
    pub stable: bool,
}

/// Resident set size at each stage, MiB.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryInfo {
    /// Before the model was loaded.
    pub rss_before_load_mib: Option<f64>,
    /// After the model was loaded.
    pub rss_after_load_mib: Option<f64>,
    /// With every worker's predictor created and warmed up.
    pub rss_after_predictors_mib: Option<f64>,
    /// Highest sampled during the measured phase.
    pub rss_peak_run_mib: Option<f64>,
    /// The process's peak so far (`VmHWM`).
    pub rss_peak_process_mib: Option<f64>,
}

fn mib(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|b| b as f64 / (1024.0 * 1024.0))
}

/// Loads `source` on `engine` and runs the benchmark.
pub fn run_benchmark(
    engine: &dyn Engine,
    source: &ModelSource,
    model_path: &str,
    options: &Options,
    inputs: &InputPlan,
    plan: &RunPlan,
) -> Result<BenchReport, BenchError> {
    plan.validate()?;
    let cores = system::cores();
    let rss_before_load = system::rss_bytes();
    let t = Instant::now();
    let check = engine.check_with(options);
    let engine_load = t.elapsed();
    let t = Instant::now();
    let model = engine.load(source, options)?;
    let model_load = t.elapsed();
    let rss_after_load = system::rss_bytes();
    let (workload, per_call) = build_workload(&model, inputs)?;
    let m = workload.measure(&model, per_call, plan, cores.usable)?;
    // What the first call's batch is (texts: their token tensors padded as one pass, the
    // shapes' upper bound: the predictor may run them as passes of similar lengths).
    let tensors = workload.tensors(&model, per_call)?;
    let threads = model.threads();
    let mut warnings = warnings(plan, &threads, &cores, &m);
    if let (PredictorKind::Shared, Some(reason)) = (plan.predictor, model.shared_calls_serialised())
        && plan.workers > 1
    {
        warnings.push(format!(
            "the shared predictor runs one call at a time here ({reason}): {} workers on it use \
             one at a time; use per-thread predictors, or the engine setting the reason names",
            plan.workers
        ));
    }
    Ok(BenchReport {
        schema: SCHEMA,
        thrum_version: env!("CARGO_PKG_VERSION"),
        model: ModelInfo {
            name: model.name().into(),
            path: model_path.into(),
            inputs: model.inputs().to_vec(),
            outputs: model.outputs().to_vec(),
        },
        engine: EngineInfo {
            name: engine.name().into(),
            version: check.version,
            library: check.library.map(|p| p.display().to_string()),
            precision_run: model.precision_run(),
        },
        plan: PlanInfo {
            run: plan.clone(),
            input_shapes: tensors
                .iter()
                .map(|t| match dtype_suffix(t.dtype()) {
                    Some(_) => {
                        InputShape { shape: t.shape().to_vec(), dtype: t.dtype() }.to_string()
                    }
                    None => format!("{:?}{}", t.shape(), t.dtype()),
                })
                .collect(),
            samples_per_call: per_call,
            options: options.entries().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            image: inputs.image.clone(),
        },
        threads: ThreadInfo {
            oversubscribed: oversubscribed(plan, &threads, &cores),
            engine: threads,
            cores,
        },
        timing: TimingInfo {
            engine_load_ms: engine_load.as_secs_f64() * 1e3,
            model_load_ms: model_load.as_secs_f64() * 1e3,
            predictor_setup: m.predictor_setup,
            first_inference: m.first_inference,
            warmup: m.warmup,
        },
        results: Results {
            calls: m.calls,
            samples: m.samples,
            wall_s: m.wall_s,
            calls_per_s: m.calls_per_s,
            samples_per_s: m.samples_per_s,
            latency_ms: m.latency,
            window_samples_per_s: m.window_samples_per_s,
            stable: m.stable,
        },
        memory: MemoryInfo {
            rss_before_load_mib: mib(rss_before_load),
            rss_after_load_mib: mib(rss_after_load),
            rss_after_predictors_mib: mib(m.rss_after_predictors),
            rss_peak_run_mib: mib(m.rss_peak_run),
            rss_peak_process_mib: mib(system::peak_rss_bytes()),
        },
        cpu: m.cpu,
        warnings,
        allocator: None,
        machine: thrum_core::CpuFeatures::detect().clone(),
    })
}

fn oversubscribed(plan: &RunPlan, threads: &ThreadConfig, cores: &Cores) -> bool {
    let per_worker = threads.intra_op.or(threads.omp).unwrap_or(1).max(1);
    plan.workers * per_worker > cores.usable
}

fn warnings(plan: &RunPlan, threads: &ThreadConfig, cores: &Cores, m: &Measurement) -> Vec<String> {
    let mut warnings = Vec::new();
    if oversubscribed(plan, threads, cores) {
        let per_worker = threads.intra_op.or(threads.omp).unwrap_or(1).max(1);
        warnings.push(format!(
            "oversubscribed: {} workers × {per_worker} intra-op threads = {} threads on {} usable cores; \
             threads will contend for cores (the reason DJL's guide sets OMP_NUM_THREADS=1 with many \
             predictor threads). Lower --threads or --intra-op-threads.",
            plan.workers,
            plan.workers * per_worker,
            cores.usable
        ));
    }
    if m.calls < 10 * plan.workers as u64 {
        warnings.push(format!(
            "only {} calls for {} workers: percentiles are coarse; raise --iteration or --duration",
            m.calls, plan.workers
        ));
    }
    warnings
}

impl BenchReport {
    /// The human summary, in the spirit of djl-bench's log lines.
    pub fn write_summary(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let r = &self.results;
        let t = &self.timing;
        let th = &self.threads;
        let version = self.engine.version.as_deref().unwrap_or("?");
        writeln!(
            out,
            "thrum bench: {} ({}) on {} {version}",
            self.model.name, self.model.path, self.engine.name
        )?;
        if let Some(lib) = &self.engine.library {
            writeln!(out, "  engine library   {lib}")?;
        }
        writeln!(out, "  cpu model        {}", self.machine.summary())?;
        if let Some(p) = self.plan.options.get("precision") {
            match &self.engine.precision_run {
                Some(ran) => writeln!(out, "  precision        {p}: {ran}")?,
                None => writeln!(out, "  precision        {p}")?,
            }
        }
        writeln!(
            out,
            "  load             engine {:.3} ms, model {:.1} ms",
            t.engine_load_ms, t.model_load_ms
        )?;
        let quota = th
            .cores
            .cgroup_quota
            .map_or_else(|| "no cgroup quota".to_string(), |q| format!("cgroup quota {q:.2}"));
        writeln!(
            out,
            "  setup            {} workers × {} predictor, {} sample(s)/call {}, {} warm-up call(s) per worker",
            self.plan.run.workers,
            self.plan.run.predictor,
            self.plan.samples_per_call,
            self.plan.input_shapes.join(","),
            self.plan.run.warmup
        )?;
        if let Some(i) = &self.plan.image {
            writeln!(
                out,
                "  images           {}: shorter side {}, center {}, mean {:?}, std {:?}, {}",
                i.dir.display(),
                i.resize,
                i.crop,
                i.mean,
                i.std,
                i.channels
            )?;
        }
        let opt = |v: Option<usize>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
        writeln!(
            out,
            "  threads          intra-op {}, inter-op {}, omp {}; usable cores {} (affinity {}, {quota})",
            opt(th.engine.intra_op),
            opt(th.engine.inter_op),
            opt(th.engine.omp),
            th.cores.usable,
            opt(th.cores.affinity)
        )?;
        if let Some(f) = t.first_inference {
            write!(out, "  first inference  min {:.3} ms, max {:.3} ms", f.min_ms, f.max_ms)?;
            match t.warmup {
                Some(w) => {
                    writeln!(out, "; warm-up min {:.3} ms, max {:.3} ms", w.min_ms, w.max_ms)?
                }
                None => writeln!(out)?,
            }
        }
        writeln!(
            out,
            "  Throughput: {:.2} samples/s ({:.2} calls/s), completed {} calls in {:.0} ms",
            r.samples_per_s,
            r.calls_per_s,
            r.calls,
            r.wall_s * 1e3
        )?;
        for (name, s) in [
            ("total", &r.latency_ms.total),
            ("preprocess", &r.latency_ms.preprocess),
            ("inference", &r.latency_ms.inference),
            ("postprocess", &r.latency_ms.postprocess),
        ] {
            writeln!(out, "  {name:<16} {}", latency_line(s))?;
            if let (true, Some(parts)) = (name == "preprocess", &r.latency_ms.parts) {
                for (part, s) in parts.names.iter().zip(&parts.latency) {
                    writeln!(out, "    {part:<14} {}", latency_line(s))?;
                }
            }
        }
        let m = &self.memory;
        let f = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |x| format!("{x:.1}"));
        writeln!(
            out,
            "  memory (RSS MiB) before load {}, after load {}, with predictors {}, peak in run {}, process peak {}",
            f(m.rss_before_load_mib),
            f(m.rss_after_load_mib),
            f(m.rss_after_predictors_mib),
            f(m.rss_peak_run_mib),
            f(m.rss_peak_process_mib)
        )?;
        if let Some(allocator) = &self.allocator {
            writeln!(out, "  allocator        {allocator}")?;
        }
        writeln!(
            out,
            "  cpu              {:.2} cores busy ({:.1}% of {} usable), {:.2} CPU-s",
            self.cpu.cores_busy, self.cpu.percent_of_usable, th.cores.usable, self.cpu.cpu_s
        )?;
        for w in &self.warnings {
            writeln!(out, "  warning: {w}")?;
        }
        Ok(())
    }
}

fn latency_line(s: &LatencySummary) -> String {
    format!(
        "P50 {:.3} ms, P90 {:.3} ms, P99 {:.3} ms, P99.9 {:.3} ms, max {:.3} ms",
        s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
    )
}
