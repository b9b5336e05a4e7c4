//! Sweeps: run a grid of configurations, find the throughput/latency Pareto front.
//!
//! A grid varies the runner's settings (worker threads, batch size, predictor kind) and any
//! option key of any engine (`intra_op_threads`, `ort.execution_mode`…): the model is
//! reloaded for each combination of option values, and every combination of runner settings
//! is measured on it. Keys an engine fixes once per process cannot be varied in one process:
//! [`SweepGrid::process_keys`] names them, for a caller that runs each value in its own.

use std::collections::BTreeMap;

use thrum_core::config::{self, Scope};
use thrum_core::{Engine, EngineInfo, ModelSource, Options, PredictorKind};

use crate::error::BenchError;
use crate::plan::{InputPlan, RunPlan, build_workload};
use crate::system;

/// The runner settings a sweep can vary besides option keys.
pub const SWEEP_KEYS: &str = "threads, batch, predictor, or any option key (intra, inter, \
                              onednn, ort.execution_mode, …)";

/// Values to try for each key; a key left out keeps the base configuration's value.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SweepGrid {
    /// Worker threads.
    pub threads: Vec<usize>,
    /// Batch sizes.
    pub batch: Vec<usize>,
    /// Predictor kinds.
    pub predictor: Vec<PredictorKind>,
    /// Option keys and their values (checked and normalised), in the order given.
    pub options: Vec<(&'static str, Vec<String>)>,
}

impl SweepGrid {
    /// Parses `KEY=V1,V2` items: `threads=1,2 batch=1,4,8 predictor=per-thread,shared`, or any
    /// option key (`intra=1,2` and `inter=…` are short for the thread keys).
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
                "batch" | "batch_size" => grid.batch = counts()?,
                "predictor" => {
                    grid.predictor = values
                        .iter()
                        .map(|v| v.parse().map_err(BenchError::Core))
                        .collect::<Result<_, _>>()?
                }
                other => {
                    let name = match other {
                        "intra" => "intra_op_threads",
                        "inter" => "inter_op_threads",
                        other => other,
                    };
                    let def = config::find_key(name).ok_or_else(|| {
                        let known = ["threads", "batch", "predictor", "intra", "inter"]
                            .into_iter()
                            .chain(config::all_keys().map(|k| k.key));
                        BenchError::Config {
                            what: format!("sweep key `{other}`"),
                            expected: match config::closest(other, known) {
                                Some(near) => format!("`{near}`? keys: {SWEEP_KEYS}"),
                                None => format!("one of {SWEEP_KEYS}"),
                            },
                        }
                    })?;
                    let normal = values
                        .iter()
                        .map(|v| {
                            (def.check)(v).map_err(|why| BenchError::Config {
                                what: format!("sweep value `{v}` for `{}`", def.key),
                                expected: format!("{} ({why})", def.expected),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    grid.options.retain(|(k, _)| *k != def.key);
                    grid.options.push((def.key, normal));
                }
            }
        }
        Ok(grid)
    }

    /// Number of configurations.
    pub fn len(&self) -> usize {
        [self.threads.len(), self.batch.len(), self.predictor.len()]
            .into_iter()
            .chain(self.options.iter().map(|(_, v)| v.len()))
            .map(|n| n.max(1))
            .product()
    }

    /// True when the grid has no configuration (never: a key left out keeps its base value).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The swept keys that `engine` fixes once per process, with more than one value: they
    /// need a process per value.
    pub fn process_keys(&self, engine: &EngineInfo) -> Vec<&'static str> {
        self.options
            .iter()
            .filter(|(k, v)| v.len() > 1 && engine.scope(k) == Some(Scope::Process))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Every combination of option values, each as `key=value` settings over `base`.
    pub fn option_sets(&self, base: &Options) -> Result<Vec<OptionSet>, BenchError> {
        let mut sets = vec![(base.clone(), Vec::new())];
        for (key, values) in &self.options {
            let mut next = Vec::new();
            for (options, labels) in &sets {
                for value in values {
                    let mut options = options.clone();
                    options.set(key, value)?;
                    let mut labels = labels.clone();
                    labels.push((key.to_string(), value.clone()));
                    next.push((options, labels));
                }
            }
            sets = next;
        }
        Ok(sets)
    }
}

/// Options with some keys set, and those keys with their values.
pub type OptionSet = (Options, Vec<(String, String)>);

/// One configuration of a sweep and what it measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepPoint {
    /// Worker threads.
    pub threads: usize,
    /// Samples per call.
    pub batch: usize,
    /// Predictor kind.
    pub predictor: PredictorKind,
    /// The swept option keys and their values at this point.
    pub options: BTreeMap<String, String>,
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
    #[serde(default)]
    pub pareto: bool,
}

impl SweepPoint {
    /// `2 workers, batch 4, intra_op_threads=1` (the predictor kind when not the default).
    pub fn label(&self) -> String {
        let mut label =
            format!("{} worker{}", self.threads, if self.threads == 1 { "" } else { "s" });
        label.push_str(&format!(", batch {}", self.batch));
        if self.predictor == PredictorKind::Shared {
            label.push_str(", shared");
        }
        for (k, v) in &self.options {
            label.push_str(&format!(", {k}={v}"));
        }
        label
    }
}

/// Runs every configuration of `grid` around the base settings; the model is reloaded for each
/// combination of option values. Keys the engine fixes per process must not vary here
/// ([`SweepGrid::process_keys`]): that is an error naming them.
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
    let fixed = grid.process_keys(engine.info());
    if !fixed.is_empty() {
        return Err(BenchError::Config {
            what: format!("sweeping {} in one process", fixed.join(", ")),
            expected: format!(
                "one value each: {} fixes them once per process (run each value in its own process)",
                engine.info().title
            ),
        });
    }
    let threads = if grid.threads.is_empty() { vec![base.workers] } else { grid.threads.clone() };
    let batches: Vec<Option<usize>> = if grid.batch.is_empty() {
        vec![inputs.batch_size]
    } else {
        grid.batch.iter().map(|&n| Some(n)).collect()
    };
    let modes =
        if grid.predictor.is_empty() { vec![base.predictor] } else { grid.predictor.clone() };
    let cores = system::cores();
    let mut points = Vec::new();
    for (opts, labels) in grid.option_sets(options)? {
        let model = engine.load(source, &opts)?;
        for &batch in &batches {
            let input_plan = InputPlan { batch_size: batch, ..inputs.clone() };
            let (workload, per_call) = build_workload(&model, &input_plan)?;
            for &workers in &threads {
                for &mode in &modes {
                    let plan = RunPlan { workers, predictor: mode, ..base.clone() };
                    let m = workload.measure(&model, per_call, &plan, cores.usable)?;
                    let point = SweepPoint {
                        threads: workers,
                        batch: per_call,
                        predictor: mode,
                        options: labels.iter().cloned().collect(),
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
    let keys: Vec<&String> = points.first().map(|p| p.options.keys().collect()).unwrap_or_default();
    let width = |k: &str| k.len().max(10);
    write!(out, "{:>7} {:>5} {:<10}", "threads", "batch", "predictor")?;
    for k in &keys {
        write!(out, " {:<w$}", k, w = width(k))?;
    }
    writeln!(
        out,
        " {:>12} {:>10} {:>10} {:>9}  pareto",
        "samples/s", "P50 ms", "P99 ms", "RSS MiB"
    )?;
    for p in points {
        write!(out, "{:>7} {:>5} {:<10}", p.threads, p.batch, p.predictor.to_string())?;
        for k in &keys {
            write!(out, " {:<w$}", p.options.get(*k).map_or("-", String::as_str), w = width(k))?;
        }
        writeln!(
            out,
            " {:>12.2} {:>10.3} {:>10.3} {:>9.1}  {}",
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
            batch: 1,
            predictor: PredictorKind::PerThread,
            options: BTreeMap::new(),
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
        let items: Vec<String> = [
            "threads=1,2",
            "intra=1,2",
            "batch=1,4,8",
            "predictor=per-thread,shared",
            "onednn=on,off",
        ]
        .map(String::from)
        .to_vec();
        let grid = SweepGrid::parse(&items).unwrap();
        assert_eq!(grid.len(), 2 * 2 * 3 * 2 * 2);
        assert_eq!(grid.options[1], ("onednn", vec!["true".to_string(), "false".to_string()]));
        let sets = grid.option_sets(&Options::default()).unwrap();
        assert_eq!(sets.len(), 4);
        assert_eq!(sets[3].0.intra_op_threads, Some(2));
        let err = SweepGrid::parse(&["cores=2".to_string()]).unwrap_err().to_string();
        assert!(err.starts_with("invalid sweep key `cores`; expected one of threads"), "{err}");
        let err = SweepGrid::parse(&["intra_op_thread=2".to_string()]).unwrap_err().to_string();
        assert!(err.contains("`intra_op_threads`?"), "{err}");
        assert!(SweepGrid::parse(&["batch=0".to_string()]).is_err());
        assert!(SweepGrid::parse(&["intra=0".to_string()]).is_err());
        assert!(SweepGrid::parse(&["threads".to_string()]).is_err());
    }
}
