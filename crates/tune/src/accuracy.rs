//! Reduced precision against fp32, the way MLPerf Inference and Intel Neural Compressor report
//! it: per engine × precision, the speed-up over the same engine's fp32 at the same threads,
//! how often the answer is fp32's (top-1 and top-5 agreement for classifiers), how close the
//! outputs are (cosine, max abs and rel error), the samples it rests on, and PASS / FAIL
//! against a target (≥ 99 % of fp32 by default: MLPerf's closed division).
//!
//! Without labelled data, agreement with fp32 stands in for accuracy relative to fp32: a
//! sample fp32 gets right and int8 changes is a loss, one both get wrong the same way is not.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thrum_core::{Engine, ModelSource, Options, Precision, Tensor};

use crate::error::TuneError;

/// MLPerf's closed-division target: 99 % of fp32.
pub const DEFAULT_TARGET: f64 = 0.99;

/// What decides PASS / FAIL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Top-1 agreement with fp32 (a classifier: the first output is `[N, classes]`).
    Top1,
    /// Mean cosine of the first output to fp32's (embeddings, anything else).
    Cosine,
}

/// One engine × precision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrecisionRow {
    /// The engine.
    pub engine: String,
    /// The precision.
    pub precision: Precision,
    /// Why it did not run (the engine's or the CPU's refusal, or the error it failed with),
    /// when it did not.
    pub refused: Option<String>,
    /// Samples compared.
    pub samples: usize,
    /// Samples per second at batch 1 (the best of the timed rounds).
    pub samples_per_s: Option<f64>,
    /// Over the same engine's fp32.
    pub speedup: Option<f64>,
    /// Samples whose top class is fp32's.
    pub top1_agreement: Option<f64>,
    /// Samples whose top five classes hold fp32's top class.
    pub top5_agreement: Option<f64>,
    /// Mean cosine of the first output to fp32's.
    pub mean_cosine: Option<f64>,
    /// Smallest cosine over the samples.
    pub min_cosine: Option<f64>,
    /// Largest absolute difference from fp32, any output element.
    pub max_abs: Option<f64>,
    /// `max_abs` over the largest |fp32 output|.
    pub max_rel: Option<f64>,
    /// Whether the metric meets the target (`None` when it did not run).
    pub pass: Option<bool>,
    /// What the engine says it ran for this precision (tract: which int8 operators reached
    /// its integer kernels), where it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ran: Option<String>,
}

/// The comparison: every row, the metric and its target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrecisionReport {
    /// The model.
    pub model: String,
    /// What decides PASS / FAIL.
    pub metric: Metric,
    /// The fraction of fp32 a row must reach.
    pub target: f64,
    /// Where the samples came from.
    pub samples_from: String,
    /// The CPU and its features.
    pub cpu: String,
    /// Every engine × precision.
    pub rows: Vec<PrecisionRow>,
}

/// The tuner's accuracy gate for one engine with some settings: `thrum compare --precision`
/// run in a child, every precision asked for against the engine's fp32.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Screen {
    /// The engine.
    pub engine: String,
    /// Settings besides the precision (ONNX Runtime's OpenVINO provider, where bf16 runs).
    pub options: std::collections::BTreeMap<String, String>,
    /// The child's report.
    pub report: Option<PrecisionReport>,
    /// Why there is none.
    pub error: Option<String>,
}

impl Screen {
    /// This screen's verdict on `precision`: `Ok` when it met the target, else why not.
    pub fn verdict(&self, precision: Precision) -> Result<(), String> {
        let report = match (&self.report, &self.error) {
            (Some(r), _) => r,
            (None, e) => return Err(e.clone().unwrap_or_else(|| "not checked".into())),
        };
        let Some(row) =
            report.rows.iter().find(|r| r.engine == self.engine && r.precision == precision)
        else {
            return Err("no result".into());
        };
        match (row.pass, &row.refused) {
            (Some(true), _) => Ok(()),
            (_, Some(why)) => Err(why.clone()),
            _ => Err(row.shortfall(report.metric, report.target)),
        }
    }
}

/// The precisions `thrum tune` searched, their accuracy gates, and why others were not.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PrecisionSearch {
    /// Precisions considered (fp32 first, the reference).
    pub asked: Vec<Precision>,
    /// The fraction of fp32 a configuration must keep.
    pub target: f64,
    /// Why a precision was not considered or did not pass, per engine.
    pub notes: Vec<String>,
    /// The quantized model each engine's int8 candidates ran, by engine.
    pub int8_models: std::collections::BTreeMap<String, String>,
    /// Each engine's gate.
    pub screens: Vec<Screen>,
}

/// One variant's run: the first output of every sample, and its best time per sample.
pub struct Evaluation {
    outputs: Vec<Tensor>,
    best: Duration,
    /// [`thrum_core::Model::precision_run`].
    ran: Option<String>,
}

/// Runs every sample (one call's inputs each) through `source` on `engine`: one warm-up call,
/// then `rounds` timed passes; the outputs are those of the last pass.
pub fn evaluate(
    engine: &dyn Engine,
    source: &ModelSource,
    options: &Options,
    samples: &[Vec<Tensor>],
    rounds: usize,
) -> Result<Evaluation, TuneError> {
    if samples.is_empty() {
        return Err(TuneError::Config {
            what: "an empty evaluation set".into(),
            expected: "at least one sample".into(),
        });
    }
    let model = engine.load(source, options)?;
    let mut predictor = model.predictor()?;
    predictor.predict(samples[0].clone())?;
    let mut best = Duration::MAX;
    let mut outputs = Vec::new();
    for _ in 0..rounds.max(1) {
        outputs.clear();
        let t = Instant::now();
        for s in samples {
            let mut out = predictor.predict(s.clone())?;
            if out.is_empty() {
                return Err(TuneError::Config {
                    what: format!("model `{}` returned no output", model.name()),
                    expected: "at least one output to compare".into(),
                });
            }
            outputs.push(out.swap_remove(0));
        }
        best = best.min(t.elapsed());
    }
    Ok(Evaluation { outputs, best, ran: model.precision_run() })
}

impl Evaluation {
    /// The same run with each output replaced by `f` of it: what is compared when the model's
    /// raw output is not what users get (a text model's hidden state, pooled into an
    /// embedding).
    pub fn map_outputs<E>(
        self,
        f: impl FnMut(Tensor) -> std::result::Result<Tensor, E>,
    ) -> std::result::Result<Evaluation, E> {
        let outputs = self.outputs.into_iter().map(f).collect::<std::result::Result<_, _>>()?;
        Ok(Evaluation { outputs, ..self })
    }

    /// Samples per second of the best round.
    pub fn samples_per_s(&self) -> f64 {
        self.outputs.len() as f64 / self.best.as_secs_f64().max(1e-9)
    }

    /// The metric that suits these outputs: top-1 for `[1, classes]` (classes ≥ 2), else
    /// cosine.
    pub fn metric(&self) -> Metric {
        match self.outputs.first().map(Tensor::shape) {
            Some([1, c]) if *c >= 2 => Metric::Top1,
            _ => Metric::Cosine,
        }
    }
}

/// An output's values as f64 (integer outputs, such as a label, compare exactly); `None` for
/// a type that has no order (strings, booleans).
fn values(t: &Tensor) -> Option<Vec<f64>> {
    use thrum_core::DType;
    let v = match t.dtype() {
        DType::F32 => t.as_slice::<f32>().ok()?.iter().map(|&x| f64::from(x)).collect(),
        DType::F64 => t.as_slice::<f64>().ok()?.to_vec(),
        DType::F16 => t
            .as_slice::<thrum_core::half::f16>()
            .ok()?
            .iter()
            .map(|x| f64::from(x.to_f32()))
            .collect(),
        DType::I64 => t.as_slice::<i64>().ok()?.iter().map(|&x| x as f64).collect(),
        DType::I32 => t.as_slice::<i32>().ok()?.iter().map(|&x| f64::from(x)).collect(),
        _ => return None,
    };
    Some(v)
}

fn top_k(v: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    order.truncate(k);
    order
}

/// The row of `candidate` against `reference` (the same engine's fp32).
pub fn row(
    engine: &str,
    precision: Precision,
    reference: &Evaluation,
    candidate: &Evaluation,
    metric: Metric,
    target: f64,
) -> PrecisionRow {
    let n = reference.outputs.len().min(candidate.outputs.len());
    let (mut top1, mut top5, mut cos_sum) = (0usize, 0usize, 0.0f64);
    let (mut min_cos, mut max_abs, mut max_ref) = (f64::INFINITY, 0.0f64, 0.0f64);
    for (r, c) in reference.outputs.iter().zip(&candidate.outputs).take(n) {
        // Outputs that cannot be compared (another type, another size) count as disagreeing.
        let (Some(r), Some(c)) = (values(r), values(c)) else {
            min_cos = min_cos.min(0.0);
            continue;
        };
        if r.len() != c.len() || r.is_empty() {
            min_cos = min_cos.min(0.0);
            continue;
        }
        let best = top_k(&r, 1).first().copied();
        if top_k(&c, 1).first().copied() == best {
            top1 += 1;
        }
        if best.is_some_and(|b| top_k(&c, 5).contains(&b)) {
            top5 += 1;
        }
        let dot: f64 = r.iter().zip(&c).map(|(a, b)| a * b).sum();
        let norms = r.iter().map(|a| a * a).sum::<f64>().sqrt()
            * c.iter().map(|b| b * b).sum::<f64>().sqrt();
        // Identical outputs are exactly 1 (the rounding of the norms' product can leave
        // 0.9999999999999998, which a target of 1 would fail).
        let cos = if r == c {
            1.0
        } else if norms > 0.0 {
            (dot / norms).clamp(-1.0, 1.0)
        } else {
            0.0
        };
        cos_sum += cos;
        min_cos = min_cos.min(cos);
        for (a, b) in r.iter().zip(&c) {
            max_abs = max_abs.max((a - b).abs());
            max_ref = max_ref.max(a.abs());
        }
    }
    let classifier = metric == Metric::Top1;
    let share = |k: usize| k as f64 / n.max(1) as f64;
    let mean_cosine = cos_sum / n.max(1) as f64;
    let score = if classifier { share(top1) } else { mean_cosine };
    PrecisionRow {
        engine: engine.into(),
        precision,
        refused: None,
        samples: n,
        samples_per_s: Some(candidate.samples_per_s()),
        speedup: Some(candidate.samples_per_s() / reference.samples_per_s()),
        top1_agreement: classifier.then(|| share(top1)),
        top5_agreement: classifier.then(|| share(top5)),
        mean_cosine: Some(mean_cosine),
        min_cosine: Some(min_cos),
        max_abs: Some(max_abs),
        max_rel: Some(if max_ref > 0.0 { max_abs / max_ref } else { max_abs }),
        pass: Some(score >= target),
        ran: candidate.ran.clone(),
    }
}

impl PrecisionRow {
    /// The metric against the target, in words: `top-1 agreement 97.0 % < 99.0 %`.
    pub fn shortfall(&self, metric: Metric, target: f64) -> String {
        let (name, value) = match metric {
            Metric::Top1 => ("top-1 agreement", self.top1_agreement),
            Metric::Cosine => ("mean cosine", self.mean_cosine),
        };
        match value {
            Some(v) => format!(
                "{name} {:.1} % {} {:.1} % of fp32 on {} samples",
                v * 100.0,
                if v >= target { "≥" } else { "<" },
                target * 100.0,
                self.samples
            ),
            None => format!("{name} not measured"),
        }
    }
}

/// A row for a variant that failed while it ran (it counts as FAIL), with the error.
pub fn failed(engine: &str, precision: Precision, reason: String) -> PrecisionRow {
    PrecisionRow { pass: Some(false), ..refused(engine, precision, reason) }
}

/// A row for a variant that did not run, with the reason.
pub fn refused(engine: &str, precision: Precision, reason: String) -> PrecisionRow {
    PrecisionRow {
        engine: engine.into(),
        precision,
        refused: Some(reason),
        samples: 0,
        samples_per_s: None,
        speedup: None,
        top1_agreement: None,
        top5_agreement: None,
        mean_cosine: None,
        min_cosine: None,
        max_abs: None,
        max_rel: None,
        pass: None,
        ran: None,
    }
}

impl PrecisionReport {
    /// The table, then each refusal's reason.
    pub fn write_table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "precision against fp32 on {} ({}; target: {} ≥ {:.1} % of fp32)",
            self.model,
            self.samples_from,
            match self.metric {
                Metric::Top1 => "top-1 agreement",
                Metric::Cosine => "mean cosine",
            },
            self.target * 100.0
        )?;
        writeln!(out, "cpu: {}", self.cpu)?;
        writeln!(
            out,
            "{:<12} {:<9} {:>8} {:>10} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>5}",
            "engine",
            "precision",
            "samples",
            "samples/s",
            "speedup",
            "top-1",
            "top-5",
            "cosine",
            "max abs",
            "max rel",
            ""
        )?;
        let pct = |v: Option<f64>| v.map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0));
        let num = |v: Option<f64>, d: usize| v.map_or_else(|| "-".into(), |x| format!("{x:.d$}"));
        for r in &self.rows {
            writeln!(
                out,
                "{:<12} {:<9} {:>8} {:>10} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>5}",
                r.engine,
                r.precision.to_string(),
                r.samples,
                num(r.samples_per_s, 1),
                r.speedup.map_or_else(|| "-".into(), |s| format!("{s:.2}×")),
                pct(r.top1_agreement),
                pct(r.top5_agreement),
                num(r.mean_cosine, 4),
                num(r.max_abs, 4),
                num(r.max_rel, 4),
                match r.pass {
                    Some(true) => "PASS",
                    Some(false) => "FAIL",
                    None => "-",
                }
            )?;
        }
        for (r, ran) in self.rows.iter().filter_map(|r| r.ran.as_deref().map(|ran| (r, ran))) {
            writeln!(out, "{} {} ran: {ran}", r.engine, r.precision)?;
        }
        for r in self.rows.iter().filter(|r| r.refused.is_some()) {
            let how = if r.pass == Some(false) { "failed: " } else { "" };
            writeln!(
                out,
                "{} {}: {how}{}",
                r.engine,
                r.precision,
                r.refused.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}
