//! Sweeps: run a grid of configurations, find the throughput/latency Pareto front.

use std::collections::BTreeMap;

use thrum_core::{Engine, ModelSource, Options};

use crate::error::BenchError;
use crate::plan::{InputPlan, PredictorMode, RunPlan, build_inputs};
use crate::runner::measure;
use crate::system;

/// The keys a sweep can vary.
pub const SWEEP_KEYS: &str = "threads, intra, inter, batch, predictor";

/// Values to try for each key; a key left out keeps the base configuration's value.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SweepGrid {
    /// Worker threads.
    pub threads: Vec<usize>,
    /// Intra-op threads.
    pub intra: Vec<usize>,
    /// Inter-op threads.
    pub inter: Vec<usize>,
    /// Batch sizes.
    pub batch: Vec<usize>,
    /// Predictor modes.
    pub predictor: Vec<PredictorMode>,
}

impl SweepGrid {
    /// Parses `KEY=V1,V2` items (`threads=1,2 intra=1,2 batch=1,4,8 predictor=per-thread,shared`).
    pub fn parse(items: &[String]) -> Result<SweepGrid, BenchError> {
        let mut grid = SweepGrid::default();
        for item in items {
            let (key, values) = item.split_once('=').ok_or_else(|| BenchError::Config {
                what: format!("sweep item `{item}`"),
                expected: format!("KEY=V1,V2,... with KEY one of {SWEEP_KEYS}"),
            })?;
            let values: Vec<&str> =
                values.split(',').map(str::trim).filter(|v| !v.is_empty()).collect();
            if values.is_empty() {
                return Err(BenchError::Config {
                    what: format!("sweep item `{item}`"),
                    expected: "at least one value".into(),
                });
            }
            let counts = || -> Result<Vec<usize>, BenchError> {
                values
                    .iter()
                    .map(|v| match v.parse::<usize>() {
                        Ok(n) if n >= 1 => Ok(n),
                        _ => Err(BenchError::Config {
                            what: format!("sweep value `{v}` for `{key}`"),
                            expected: "a positive integer".into(),
                        }),
                    })
                    .collect()
            };
            match key.trim() {
                "threads" | "workers" => grid.threads = counts()?,
                "intra" | "intra_op_threads" => grid.intra = counts()?,
                "inter" | "inter_op_threads" => grid.inter = counts()?,
                "batch" | "batch_size" => grid.batch = counts()?,
                "predictor" => {
                    grid.predictor = values.iter().map(|v| v.parse()).collect::<Result<_, _>>()?
                }
                other => {
                    return Err(BenchError::Config {
                        what: format!("sweep key `{other}`"),
                        expected: format!("one of {SWEEP_KEYS}"),
                    });
                }
            }
        }
        Ok(grid)
    }

    /// Number of configurations.
    pub fn len(&self) -> usize {
        [
            self.threads.len(),
            self.intra.len(),
            self.inter.len(),
            self.batch.len(),
            self.predictor.len(),
        ]
        .iter()
        .map(|&n| n.max(1))
        .product()
    }

    /// True when the grid has no configuration (never: a key left out keeps its base value).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// One configuration of a sweep and what it measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SweepPoint {
    /// Worker threads.
    pub threads: usize,
    /// Intra-op threads (`None`: engine default).
    pub intra: Option<usize>,
    /// Inter-op threads (`None`: engine default).
    pub inter: Option<usize>,
    /// Samples per call.
    pub batch: usize,
    /// Predictor mode.
    pub predictor: PredictorMode,
    /// Samples per second.
    pub samples_per_s: f64,
    /// Calls per second.
    pub calls_per_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// RSS peak during the run, MiB.
    pub rss_peak_mib: f64,
    /// On the Pareto front: no other point has both more throughput and lower P99.
    pub pareto: bool,
}

impl SweepPoint {
    /// `2 workers, intra 1, batch 4` (inter-op and the predictor mode when not the default).
    pub fn label(&self) -> String {
        let mut label =
            format!("{} worker{}", self.threads, if self.threads == 1 { "" } else { "s" });
        if let Some(n) = self.intra {
            label.push_str(&format!(", intra {n}"));
        }
        if let Some(n) = self.inter {
            label.push_str(&format!(", inter {n}"));
        }
        label.push_str(&format!(", batch {}", self.batch));
        if self.predictor == PredictorMode::Shared {
            label.push_str(", shared");
        }
        label
    }
}

/// Runs every configuration of `grid` around the base settings; the model is reloaded only
/// when thread options change.
pub fn run_sweep(
    engine: &dyn Engine,
    source: &ModelSource,
    options: &Options,
    inputs: &InputPlan,
    base: &RunPlan,
    grid: &SweepGrid,
    mut on_point: impl FnMut(&SweepPoint),
) -> Result<Vec<SweepPoint>, BenchError> {
    if inputs.shapes.is_some() && !grid.batch.is_empty() {
        return Err(BenchError::Config {
            what: "sweep over batch with explicit --input-shapes".into(),
            expected: "either batch=… in the sweep or shapes, not both".into(),
        });
    }
    let or_base = |v: &Vec<usize>, base: Option<usize>| -> Vec<Option<usize>> {
        if v.is_empty() { vec![base] } else { v.iter().map(|&n| Some(n)).collect() }
    };
    let intra = or_base(&grid.intra, options.intra_op_threads);
    let inter = or_base(&grid.inter, options.inter_op_threads);
    let threads = if grid.threads.is_empty() { vec![base.workers] } else { grid.threads.clone() };
    let batches = or_base(&grid.batch, inputs.batch_size);
    let modes =
        if grid.predictor.is_empty() { vec![base.predictor] } else { grid.predictor.clone() };
    let cores = system::cores();
    let mut points = Vec::new();
    for &intra_n in &intra {
        for &inter_n in &inter {
            let mut opts = options.clone();
            opts.intra_op_threads = intra_n;
            opts.inter_op_threads = inter_n;
            let model = engine.load(source, &opts)?;
            for &batch in &batches {
                let input_plan = InputPlan { shapes: inputs.shapes.clone(), batch_size: batch };
                let (tensors, per_call) = build_inputs(&model, &input_plan)?;
                for &workers in &threads {
                    for &mode in &modes {
                        let plan = RunPlan { workers, predictor: mode, ..base.clone() };
                        let m = measure(&model, &tensors, per_call, &plan, cores.usable)?;
                        let point = SweepPoint {
                            threads: workers,
                            intra: intra_n,
                            inter: inter_n,
                            batch: per_call,
                            predictor: mode,
                            samples_per_s: m.samples_per_s,
                            calls_per_s: m.calls_per_s,
                            p50_ms: m.latency.total.p50_ms,
                            p99_ms: m.latency.total.p99_ms,
                            rss_peak_mib: m.rss_peak_run.unwrap_or(0) as f64 / (1024.0 * 1024.0),
                            pareto: false,
                        };
                        on_point(&point);
                        points.push(point);
                    }
                }
            }
        }
    }
    mark_pareto_front(&mut points);
    Ok(points)
}

/// Marks points that no other point dominates (at least as much throughput and at most the
/// P99, better in one of them).
pub fn mark_pareto_front(points: &mut [SweepPoint]) {
    let snapshot: Vec<(f64, f64)> = points.iter().map(|p| (p.samples_per_s, p.p99_ms)).collect();
    for (i, p) in points.iter_mut().enumerate() {
        p.pareto = !snapshot.iter().enumerate().any(|(j, &(tput, p99))| {
            j != i
                && tput >= snapshot[i].0
                && p99 <= snapshot[i].1
                && (tput > snapshot[i].0 || p99 < snapshot[i].1)
        });
    }
}

/// A sweep's results as a text table (one row per configuration, `*` on the Pareto front).
pub fn write_table(points: &[SweepPoint], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>7} {:>5} {:>5} {:>5} {:<10} {:>12} {:>10} {:>10} {:>9}  pareto",
        "threads",
        "intra",
        "inter",
        "batch",
        "predictor",
        "samples/s",
        "P50 ms",
        "P99 ms",
        "RSS MiB"
    )?;
    let opt = |v: Option<usize>| v.map_or_else(|| "-".into(), |n: usize| n.to_string());
    for p in points {
        writeln!(
            out,
            "{:>7} {:>5} {:>5} {:>5} {:<10} {:>12.2} {:>10.3} {:>10.3} {:>9.1}  {}",
            p.threads,
            opt(p.intra),
            opt(p.inter),
            p.batch,
            p.predictor.to_string(),
            p.samples_per_s,
            p.p50_ms,
            p.p99_ms,
            p.rss_peak_mib,
            if p.pareto { "*" } else { "" }
        )?;
    }
    Ok(())
}

/// The sweep's points grouped by configuration, for JSON.
pub fn sweep_json(points: &[SweepPoint], model: &str, engine: &str) -> serde_json::Value {
    let mut meta = BTreeMap::new();
    meta.insert("schema", serde_json::Value::from("thrum-sweep/1"));
    meta.insert("model", serde_json::Value::from(model));
    meta.insert("engine", serde_json::Value::from(engine));
    serde_json::json!({ "meta": meta, "points": points })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(tput: f64, p99: f64) -> SweepPoint {
        SweepPoint {
            threads: 1,
            intra: None,
            inter: None,
            batch: 1,
            predictor: PredictorMode::PerThread,
            samples_per_s: tput,
            calls_per_s: tput,
            p50_ms: p99,
            p99_ms: p99,
            rss_peak_mib: 0.0,
            pareto: false,
        }
    }

    #[test]
    fn pareto_front_keeps_undominated_points() {
        let mut points =
            vec![point(100.0, 10.0), point(150.0, 20.0), point(90.0, 15.0), point(150.0, 25.0)];
        mark_pareto_front(&mut points);
        let front: Vec<bool> = points.iter().map(|p| p.pareto).collect();
        assert_eq!(front, [true, true, false, false]);
    }

    #[test]
    fn grid_parses_keys_and_rejects_unknown_ones() {
        let items: Vec<String> =
            ["threads=1,2", "intra=1,2", "batch=1,4,8", "predictor=per-thread,shared"]
                .map(String::from)
                .to_vec();
        let grid = SweepGrid::parse(&items).unwrap();
        assert_eq!(grid.len(), 2 * 2 * 3 * 2);
        let err = SweepGrid::parse(&["cores=2".to_string()]).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid sweep key `cores`; expected one of threads, intra, inter, batch, predictor"
        );
        assert!(SweepGrid::parse(&["batch=0".to_string()]).is_err());
        assert!(SweepGrid::parse(&["threads".to_string()]).is_err());
    }
}
