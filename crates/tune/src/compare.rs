//! Agreement across engines: every engine runs the same model on the same seeded input, and
//! each output is compared with the first engine's. `thrum compare` prints this; `thrum tune`
//! runs it first and leaves out the engines that disagree.

use std::time::{Duration, Instant};

use serde::Serialize;
use thrum_core::{Engine, Model, ModelSource, Options, Tensor, ThreadConfig};

use crate::error::TuneError;

/// Relative tolerance for agreement: max |a − b| over max |reference|.
pub const DEFAULT_TOLERANCE: f64 = 1e-4;

/// Timed calls after the first, for the single-call latency.
const TIMED_CALLS: usize = 5;

/// One engine's run of the model.
#[derive(Clone, Debug, Serialize)]
pub struct EngineRun {
    /// The engine.
    pub engine: String,
    /// Outputs of the seeded input, by name.
    #[serde(skip)]
    pub outputs: Vec<(String, Tensor)>,
    /// Loading the model, ms.
    pub load_ms: f64,
    /// The first call, ms (engines compile or allocate there).
    pub first_call_ms: f64,
    /// Median of the next calls, ms: the single-call latency at batch 1.
    pub call_ms: f64,
    /// The thread configuration the engine reports with its defaults.
    pub threads: ThreadConfig,
    /// Whether the model's inputs have a dynamic batch axis (batching can be tuned).
    pub dynamic_batch: bool,
    /// Bytes of input per sample.
    pub input_bytes_per_sample: usize,
}

/// An engine that could not run the model.
#[derive(Clone, Debug, Serialize)]
pub struct EngineFailure {
    /// The engine.
    pub engine: String,
    /// Why, as the engine said it.
    pub reason: String,
}

/// One output of one engine against the reference engine's.
#[derive(Clone, Debug, Serialize)]
pub struct OutputDiff {
    /// The engine compared.
    pub engine: String,
    /// The reference engine.
    pub reference: String,
    /// The output's name (the reference's).
    pub output: String,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// `max_abs` over the largest absolute reference value.
    pub max_rel: f64,
    /// Within the tolerance (and the same shape and type).
    pub agrees: bool,
    /// Why they cannot be compared element-wise, when they cannot.
    pub note: Option<String>,
}

/// The agreement table.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The model.
    pub model: String,
    /// Relative tolerance used.
    pub tolerance: f64,
    /// The engine every other is compared with (the first that ran).
    pub reference: Option<String>,
    /// Engines that ran, in order.
    pub runs: Vec<EngineRun>,
    /// Differences per output and engine.
    pub diffs: Vec<OutputDiff>,
    /// Engines that could not run the model.
    pub failures: Vec<EngineFailure>,
}

/// Loads `source` on `engine`, runs it on the seeded batch-1 input, and times single calls.
pub fn run_engine(
    engine: &dyn Engine,
    source: &ModelSource,
    options: &Options,
) -> Result<EngineRun, TuneError> {
    let t = Instant::now();
    let model = engine.load(source, options)?;
    let load_ms = ms(t.elapsed());
    let inputs = seeded_inputs(&model)?;
    let mut predictor = model.predictor()?;
    let t = Instant::now();
    let outputs = predictor.predict(inputs.clone())?;
    let first_call_ms = ms(t.elapsed());
    let mut times = Vec::with_capacity(TIMED_CALLS);
    for _ in 0..TIMED_CALLS {
        let t = Instant::now();
        predictor.predict(inputs.clone())?;
        times.push(ms(t.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    let names = model.outputs().iter().map(|s| s.name.clone());
    Ok(EngineRun {
        engine: engine.name().into(),
        outputs: names.zip(outputs).collect(),
        load_ms,
        first_call_ms,
        call_ms: times[TIMED_CALLS / 2],
        threads: model.threads(),
        dynamic_batch: model.inputs().iter().any(|s| s.batch_axis.is_some()),
        input_bytes_per_sample: inputs.iter().map(Tensor::byte_size).sum(),
    })
}

/// The inputs every engine gets: floats uniform in [-1, 1) from a fixed seed, integers ones
/// (thrum bench's inputs), batch 1.
pub fn seeded_inputs(model: &Model) -> Result<Vec<Tensor>, TuneError> {
    let plan = thrum_bench::InputPlan { batch_size: Some(1), ..Default::default() };
    Ok(thrum_bench::build_inputs(model, &plan)?.0)
}

/// Compares every run's outputs with the first run's.
pub fn compare(
    model: &str,
    runs: Vec<EngineRun>,
    failures: Vec<EngineFailure>,
    tolerance: f64,
) -> Comparison {
    let mut diffs = Vec::new();
    if let Some((first, rest)) = runs.split_first() {
        for run in rest {
            for (i, (name, reference)) in first.outputs.iter().enumerate() {
                let diff = match run.outputs.get(i) {
                    Some((_, tensor)) => diff_tensors(reference, tensor, tolerance),
                    None => Diff::note(format!("{} has no output {i}", run.engine)),
                };
                diffs.push(OutputDiff {
                    engine: run.engine.clone(),
                    reference: first.engine.clone(),
                    output: name.clone(),
                    max_abs: diff.max_abs,
                    max_rel: diff.max_rel,
                    agrees: diff.agrees,
                    note: diff.note,
                });
            }
        }
    }
    Comparison {
        model: model.into(),
        tolerance,
        reference: runs.first().map(|r| r.engine.clone()),
        runs,
        diffs,
        failures,
    }
}

struct Diff {
    max_abs: f64,
    max_rel: f64,
    agrees: bool,
    note: Option<String>,
}

impl Diff {
    fn note(note: String) -> Diff {
        Diff { max_abs: f64::NAN, max_rel: f64::NAN, agrees: false, note: Some(note) }
    }
}

fn diff_tensors(reference: &Tensor, other: &Tensor, tolerance: f64) -> Diff {
    if reference.shape() != other.shape() {
        return Diff::note(format!("shape {:?} vs {:?}", other.shape(), reference.shape()));
    }
    match (reference.to_f64_vec(), other.to_f64_vec()) {
        (Some(a), Some(b)) => {
            let mut max_abs = 0f64;
            let mut scale = 0f64;
            let mut non_finite = false;
            for (x, y) in a.iter().zip(&b) {
                if x.is_finite() != y.is_finite() {
                    non_finite = true;
                } else if x.is_finite() {
                    max_abs = max_abs.max((x - y).abs());
                    scale = scale.max(x.abs());
                }
            }
            let max_rel = if scale > 0.0 { max_abs / scale } else { max_abs };
            Diff {
                max_abs,
                max_rel,
                agrees: !non_finite && max_rel <= tolerance,
                note: non_finite.then(|| "NaN or infinity where the other is finite".into()),
            }
        }
        _ if reference.bit_eq(other) => {
            Diff { max_abs: 0.0, max_rel: 0.0, agrees: true, note: Some("equal".into()) }
        }
        _ => Diff::note(format!(
            "{} vs {} values differ (not numeric: compared for equality)",
            other.dtype(),
            reference.dtype()
        )),
    }
}

impl Comparison {
    /// Engines whose every output agrees with the reference (the reference included).
    pub fn agreeing(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter(|r| self.diffs.iter().filter(|d| d.engine == r.engine).all(|d| d.agrees))
            .map(|r| r.engine.clone())
            .collect()
    }

    /// Engines with at least one output outside the tolerance.
    pub fn disagreeing(&self) -> Vec<String> {
        let agreeing = self.agreeing();
        self.runs.iter().map(|r| r.engine.clone()).filter(|e| !agreeing.contains(e)).collect()
    }

    /// The run of `engine`.
    pub fn run(&self, engine: &str) -> Option<&EngineRun> {
        self.runs.iter().find(|r| r.engine == engine)
    }

    /// The human table: single-call latency per engine, then differences per output.
    pub fn write_table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{}: {} engine(s) ran it on the same seeded input",
            self.model,
            self.runs.len()
        )?;
        writeln!(
            out,
            "  {:<12} {:>10} {:>14} {:>14}",
            "engine", "load ms", "first call ms", "call ms (p50)"
        )?;
        for r in &self.runs {
            writeln!(
                out,
                "  {:<12} {:>10.1} {:>14.2} {:>14.3}",
                r.engine, r.load_ms, r.first_call_ms, r.call_ms
            )?;
        }
        if let Some(reference) = &self.reference {
            writeln!(
                out,
                "Outputs against {reference} (relative = max |diff| / max |{reference}|, tolerance {:e}):",
                self.tolerance
            )?;
            writeln!(
                out,
                "  {:<12} {:<20} {:>12} {:>12}  verdict",
                "engine", "output", "max abs", "max rel"
            )?;
            for d in &self.diffs {
                let verdict = if d.agrees { "agrees" } else { "DISAGREES" };
                let note = d.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                writeln!(
                    out,
                    "  {:<12} {:<20} {:>12.3e} {:>12.3e}  {verdict}{note}",
                    d.engine, d.output, d.max_abs, d.max_rel
                )?;
            }
        }
        for f in &self.failures {
            writeln!(out, "  {}: could not run: {}", f.engine, f.reason)?;
        }
        let bad = self.disagreeing();
        if !bad.is_empty() {
            writeln!(out, "Disagreeing: {}", bad.join(", "))?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
