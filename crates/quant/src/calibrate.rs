//! Calibration: the range of every tensor to quantize, from what the model computes on
//! calibration samples.
//!
//! Three methods, as ONNX Runtime's calibrators name them:
//! - **MinMax**: the smallest and largest value seen (one pass).
//! - **Percentile** (default 99.999): the range that keeps that share of the values, cut
//!   equally on both sides, from a 2,048-bin histogram over the MinMax range (two passes).
//! - **Entropy**: TensorRT's KL-divergence threshold on the histogram of |x| (2,048 bins, 128
//!   quantized levels; exact zeros left out, as zero is exact at any threshold), the threshold
//!   whose 8-bit version loses the least information (two passes).
//!
//! Every range is widened to hold 0, so that zero (padding, ReLU's floor) is exact.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use thrum_core::{DType, Engine, ModelFormat, ModelSource, Options, Tensor};

use crate::error::QuantError;
use crate::qdq::Quantizer;

const BINS: usize = 2048;
const QUANTIZED_BINS: usize = 128;

/// How ranges are computed from calibration data.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "method")]
pub enum Method {
    /// The smallest and largest value seen.
    MinMax,
    /// The central `percentile` % of the values.
    Percentile {
        /// The share kept, in percent (ONNX Runtime's default: 99.999).
        percentile: f64,
    },
    /// TensorRT's KL-divergence threshold.
    Entropy,
}

impl Method {
    /// Parses `minmax`, `percentile` or `entropy` (`percentile` keeps `percentile` %).
    pub fn parse(name: &str, percentile: f64) -> Result<Method, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "minmax" => Ok(Method::MinMax),
            "percentile" if percentile > 50.0 && percentile <= 100.0 => {
                Ok(Method::Percentile { percentile })
            }
            "percentile" => Err(format!("a percentile above 50 and at most 100, not {percentile}")),
            "entropy" => Ok(Method::Entropy),
            other => Err(format!("minmax, percentile or entropy, not `{other}`")),
        }
    }

    fn passes(self) -> usize {
        match self {
            Method::MinMax => 1,
            _ => 2,
        }
    }
}

/// A tensor's calibrated range.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Range {
    /// The low end (≤ 0).
    pub min: f32,
    /// The high end (≥ 0).
    pub max: f32,
}

/// Ranges by tensor name.
pub type Ranges = BTreeMap<String, Range>;

/// Collects what calibration runs produce, tensor by tensor.
#[derive(Clone, Debug)]
pub struct Calibrator {
    method: Method,
    names: Vec<String>,
    /// MinMax of each tensor (pass 1).
    seen: Vec<Option<(f32, f32)>>,
    /// Histograms of each tensor (pass 2): over [min, max] (percentile) or [0, max |x|]
    /// (entropy).
    histograms: Vec<Vec<u64>>,
    pass: usize,
}

impl Calibrator {
    /// A calibrator for `names` with `method`.
    pub fn new(method: Method, names: Vec<String>) -> Calibrator {
        let n = names.len();
        Calibrator {
            method,
            names,
            seen: vec![None; n],
            histograms: vec![vec![0; BINS]; n],
            pass: 1,
        }
    }

    /// The passes over the calibration data `method` needs (1 or 2).
    pub fn passes(&self) -> usize {
        self.method.passes()
    }

    /// Starts the second pass (histograms over the ranges of the first).
    pub fn next_pass(&mut self) {
        self.pass = 2;
    }

    /// The tensors calibrated, in the order [`Calibrator::observe`] takes them.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Records the values of tensor `index` from one sample.
    pub fn observe(&mut self, index: usize, values: &[f32]) {
        if self.pass == 1 {
            let mut lo = f32::INFINITY;
            let mut hi = f32::NEG_INFINITY;
            for &v in values.iter().filter(|v| v.is_finite()) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if lo <= hi {
                self.seen[index] = Some(match self.seen[index] {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
            return;
        }
        let Some((lo, hi)) = self.seen[index] else { return };
        let hist = &mut self.histograms[index];
        match self.method {
            Method::MinMax => {}
            Method::Percentile { .. } => {
                let width = (hi - lo) / BINS as f32;
                if width <= 0.0 {
                    return;
                }
                for &v in values.iter().filter(|v| v.is_finite()) {
                    let bin = (((v - lo) / width) as usize).min(BINS - 1);
                    hist[bin] += 1;
                }
            }
            Method::Entropy => {
                let top = lo.abs().max(hi.abs());
                let width = top / BINS as f32;
                if width <= 0.0 {
                    return;
                }
                // Exact zeros (ReLU's floor, padding) are left out: zero is exact at any
                // threshold, and their spike would otherwise decide the divergence.
                for &v in values.iter().filter(|v| v.is_finite() && **v != 0.0) {
                    let bin = ((v.abs() / width) as usize).min(BINS - 1);
                    hist[bin] += 1;
                }
            }
        }
    }

    /// The range of every tensor observed, widened to hold 0.
    pub fn ranges(&self) -> Ranges {
        let mut out = Ranges::new();
        for (i, name) in self.names.iter().enumerate() {
            let Some((lo, hi)) = self.seen[i] else { continue };
            let (lo, hi) = match self.method {
                Method::MinMax => (lo, hi),
                Method::Percentile { percentile } => {
                    percentile_range(&self.histograms[i], lo, hi, percentile)
                }
                Method::Entropy => {
                    let top = lo.abs().max(hi.abs());
                    let t = entropy_threshold(&self.histograms[i], top);
                    (lo.max(-t), hi.min(t))
                }
            };
            out.insert(name.clone(), Range { min: lo.min(0.0), max: hi.max(0.0) });
        }
        out
    }
}

/// The range holding the central `percentile` % of a histogram over [lo, hi].
fn percentile_range(hist: &[u64], lo: f32, hi: f32, percentile: f64) -> (f32, f32) {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return (lo, hi);
    }
    let cut = (100.0 - percentile) / 200.0 * total as f64;
    let width = (hi - lo) / hist.len() as f32;
    let mut acc = 0.0;
    let mut left = 0;
    for (i, &c) in hist.iter().enumerate() {
        acc += c as f64;
        if acc > cut {
            left = i;
            break;
        }
    }
    acc = 0.0;
    let mut right = hist.len() - 1;
    for (i, &c) in hist.iter().enumerate().rev() {
        acc += c as f64;
        if acc > cut {
            right = i;
            break;
        }
    }
    (lo + width * left as f32, lo + width * (right + 1) as f32)
}

/// TensorRT's entropy calibration: the |x| threshold whose 128-level quantization of the
/// histogram (outliers clipped into the last bin) has the smallest KL divergence from it.
fn entropy_threshold(hist: &[u64], top: f32) -> f32 {
    let bins = hist.len();
    let width = top / bins as f32;
    let total: u64 = hist.iter().sum();
    if total == 0 || width <= 0.0 {
        return top;
    }
    let mut best = (f64::INFINITY, bins);
    for i in (QUANTIZED_BINS..=bins).step_by(4) {
        let mut p: Vec<f64> = hist[..i].iter().map(|&c| c as f64).collect();
        let outliers: u64 = hist[i..].iter().sum();
        p[i - 1] += outliers as f64;
        // Q: the first i bins merged into 128 levels, each level spread over its non-empty
        // bins.
        let mut q = vec![0.0f64; i];
        let per = i as f64 / QUANTIZED_BINS as f64;
        for level in 0..QUANTIZED_BINS {
            let start = (level as f64 * per) as usize;
            let end = (((level + 1) as f64 * per) as usize).min(i).max(start + 1);
            // Spread over the bins where P is not empty (the last one holds the outliers).
            let sum: f64 = hist[start..end].iter().map(|&c| c as f64).sum();
            let nonzero = p[start..end].iter().filter(|&&c| c != 0.0).count();
            if nonzero > 0 {
                for j in start..end {
                    if p[j] != 0.0 {
                        q[j] = sum / nonzero as f64;
                    }
                }
            }
        }
        let p_sum: f64 = p.iter().sum();
        let q_sum: f64 = q.iter().sum();
        if p_sum == 0.0 || q_sum == 0.0 {
            continue;
        }
        let mut kl = 0.0;
        for j in 0..i {
            if p[j] > 0.0 {
                let pj = p[j] / p_sum;
                // A bin Q left empty while P is not: smoothed, as TensorRT's reference does.
                let qj = (q[j] / q_sum).max(1e-12);
                kl += pj * (pj / qj).ln();
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
    }
    width * best.1 as f32
}

/// What calibration did: the samples, the passes and the time they took.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CalibrationStats {
    /// Samples run.
    pub samples: usize,
    /// Passes over them.
    pub passes: usize,
    /// Engine that ran them.
    pub engine: &'static str,
    /// Time spent, loading and running.
    #[serde(with = "seconds")]
    pub time: Duration,
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Runs `samples` (one call's inputs each) through `quantizer`'s calibration model on `engine`
/// and returns the ranges `method` computes, with what it took.
pub fn calibrate(
    engine: &dyn Engine,
    options: &Options,
    quantizer: &Quantizer,
    method: Method,
    samples: &[Vec<Tensor>],
) -> Result<(Ranges, CalibrationStats), QuantError> {
    if samples.is_empty() {
        return Err(QuantError::Calibration {
            what: "an empty calibration set".into(),
            expected: "at least one sample (ONNX Runtime's tools use 100 or more)".into(),
        });
    }
    let started = Instant::now();
    let source = ModelSource::memory(
        format!("{}-calibration", quantizer.model_name()),
        ModelFormat::ONNX,
        quantizer.calibration_model(),
    );
    let model = engine.load(&source, options)?;
    for (i, sample) in samples.iter().enumerate() {
        model.check_inputs(sample).map_err(|e| QuantError::Calibration {
            what: format!("sample {} ({})", i + 1, e),
            expected: format!(
                "inputs that fit the model: {}",
                model
                    .inputs()
                    .iter()
                    .map(|s| format!("{} {} {}", s.name, s.dtype, s.shape_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
    }
    let names = quantizer.tensors_to_calibrate();
    let index: BTreeMap<&str, usize> =
        names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    // Output k of the calibration model is calibrated tensor `slots[k]`, if it is one.
    let slots: Vec<Option<usize>> =
        model.outputs().iter().map(|o| index.get(o.name.as_str()).copied()).collect();
    // Input k of the model is calibrated tensor `inputs[k]`, if it is one.
    let inputs: Vec<Option<usize>> =
        model.inputs().iter().map(|i| index.get(i.name.as_str()).copied()).collect();
    let mut calibrator = Calibrator::new(method, names.to_vec());
    let mut predictor = model.predictor()?;
    for pass in 1..=calibrator.passes() {
        if pass == 2 {
            calibrator.next_pass();
        }
        for sample in samples {
            let outputs = predictor.predict(sample.clone())?;
            for (slot, tensor) in slots.iter().zip(&outputs).chain(inputs.iter().zip(sample)) {
                if let Some(i) = slot
                    && tensor.dtype() == DType::F32
                {
                    calibrator.observe(*i, tensor.as_slice::<f32>()?);
                }
            }
        }
    }
    let ranges = calibrator.ranges();
    Ok((
        ranges,
        CalibrationStats {
            samples: samples.len(),
            passes: calibrator.passes(),
            engine: engine.name(),
            time: started.elapsed(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calibrated(method: Method, values: &[f32]) -> Range {
        let mut c = Calibrator::new(method, vec!["x".into()]);
        c.observe(0, values);
        if c.passes() == 2 {
            c.next_pass();
            c.observe(0, values);
        }
        c.ranges()["x"]
    }

    #[test]
    fn minmax_holds_zero_and_the_extremes() {
        assert_eq!(calibrated(Method::MinMax, &[1.0, 3.0, 2.0]), Range { min: 0.0, max: 3.0 });
        assert_eq!(calibrated(Method::MinMax, &[-2.0, 5.0]), Range { min: -2.0, max: 5.0 });
    }

    #[test]
    fn percentile_cuts_rare_outliers() {
        let mut values: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        values.push(100.0);
        let r = calibrated(Method::Percentile { percentile: 99.99 }, &values);
        assert!(r.max < 1.1 && r.max > 0.9, "{r:?}");
        let all = calibrated(Method::Percentile { percentile: 100.0 }, &values);
        assert!(all.max > 99.0, "{all:?}");
    }

    #[test]
    fn entropy_clips_a_long_tail() {
        // Mostly small values, a few far out: the threshold lands well below the maximum.
        let mut values: Vec<f32> = (0..50_000).map(|i| ((i % 500) as f32 / 500.0) - 0.5).collect();
        values.extend([40.0, -40.0]);
        let r = calibrated(Method::Entropy, &values);
        assert!(r.max < 20.0 && r.max >= 0.5, "{r:?}");
        assert!(r.min > -20.0 && r.min <= -0.5, "{r:?}");
    }

    #[test]
    fn methods_parse_with_reasons() {
        assert_eq!(Method::parse("MinMax", 99.999).unwrap(), Method::MinMax);
        assert!(Method::parse("percentile", 20.0).unwrap_err().contains("above 50"));
        assert!(Method::parse("kl", 99.0).unwrap_err().contains("entropy"));
    }
}
