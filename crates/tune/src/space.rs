//! The search space: for each engine that runs the model, the dimensions a configuration
//! varies (threads split into workers × intra-op, batch, predictor kind, inter-op, oneDNN, and
//! the engine's keys marked tunable in its option table), each an ordered list of values, and
//! the point a search starts from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thrum_core::{Capabilities, EngineInfo, PredictorKind};

use crate::compare::EngineRun;

/// What a search optimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Samples per second with every usable core busy.
    Throughput,
    /// Median latency of one stream of calls (one worker, batch 1).
    Latency,
}

/// One configuration: what `thrum bench` runs and `thrum.toml` holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Candidate {
    /// Engine.
    pub engine: String,
    /// Worker threads, each calling the model.
    pub workers: usize,
    /// Intra-op threads per call.
    pub intra: usize,
    /// Samples per call.
    pub batch: usize,
    /// Predictor kind.
    pub predictor: PredictorKind,
    /// Other option keys: inter-op threads, oneDNN, engine keys.
    pub options: BTreeMap<String, String>,
    /// A configuration with more threads than usable cores, measured once to show its cost;
    /// never proposed.
    #[serde(default)]
    pub probe: bool,
}

impl Candidate {
    /// A stable, readable identity: `ort 2x1 b4 shared inter_op_threads=1 …`.
    pub fn key(&self) -> String {
        let mut key = format!("{} {}x{} b{}", self.engine, self.workers, self.intra, self.batch);
        if self.predictor == PredictorKind::Shared {
            key.push_str(" shared");
        }
        for (k, v) in &self.options {
            key.push_str(&format!(" {k}={v}"));
        }
        key
    }

    /// Threads it runs: workers × intra-op × inter-op.
    pub fn threads(&self) -> usize {
        let inter =
            self.options.get("inter_op_threads").and_then(|v| v.parse().ok()).unwrap_or(1usize);
        self.workers * self.intra * inter.max(1)
    }

    /// Option pairs for `--model-options` / `[options]`: intra-op threads and the rest.
    pub fn option_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = vec![("intra_op_threads".to_string(), self.intra.to_string())];
        pairs.extend(self.options.iter().map(|(k, v)| (k.clone(), v.clone())));
        pairs
    }

    /// This candidate with dimension `dim` set to `value`.
    pub fn with(&self, dim: &str, value: &str) -> Candidate {
        let mut c = self.clone();
        match dim {
            THREADS => {
                if let Some((w, i)) = parse_split(value) {
                    c.workers = w;
                    c.intra = i;
                }
            }
            BATCH => c.batch = value.parse().unwrap_or(c.batch),
            PREDICTOR => c.predictor = value.parse().unwrap_or(c.predictor),
            key => {
                c.options.insert(key.to_string(), value.to_string());
            }
        }
        c
    }

    /// This candidate's value of dimension `dim`.
    pub fn value(&self, dim: &str) -> String {
        match dim {
            THREADS => format!("{}x{}", self.workers, self.intra),
            BATCH => self.batch.to_string(),
            PREDICTOR => self.predictor.to_string(),
            key => self.options.get(key).cloned().unwrap_or_default(),
        }
    }
}

/// The dimension of worker × intra-op splits, values `WxI`.
pub const THREADS: &str = "threads";
/// The batch dimension.
pub const BATCH: &str = "batch";
/// The predictor-kind dimension.
pub const PREDICTOR: &str = "predictor";

fn parse_split(value: &str) -> Option<(usize, usize)> {
    let (w, i) = value.split_once('x')?;
    Some((w.parse().ok()?, i.parse().ok()?))
}

/// One dimension and its values, in the order a search tries them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dimension {
    /// `threads`, `batch`, `predictor`, or an option key.
    pub name: String,
    /// Values, as `thrum bench` takes them.
    pub values: Vec<String>,
}

/// One engine's part of the space.
#[derive(Clone, Debug, Serialize)]
pub struct EngineSpace {
    /// The engine.
    pub engine: String,
    /// Where a search starts.
    pub start: Candidate,
    /// The dimensions, most influential first.
    pub dims: Vec<Dimension>,
    /// Option values concurrent calls need ([`Capabilities::concurrency_needs`]). A point with
    /// another value runs one call at a time: only one worker with per-thread predictors is
    /// in the grid (more workers would only queue; a shared predictor is refused).
    pub concurrency_needs: BTreeMap<String, String>,
    /// Option values a reduced precision needs on this engine (ONNX Runtime's bf16 runs on
    /// its OpenVINO provider only): set whenever a candidate has that precision.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub precision_needs: BTreeMap<String, BTreeMap<String, String>>,
}

/// The precision dimension: an option key like the engine's.
pub const PRECISION: &str = "precision";

impl EngineSpace {
    /// Adds the precision dimension, first (it moves throughput most on CPUs with bf16 or
    /// int8 units): fp32, the start, then each of `passing` (a precision that met the
    /// accuracy target, with the options it needs).
    pub fn add_precisions(&mut self, passing: Vec<(String, BTreeMap<String, String>)>) {
        if passing.is_empty() {
            return;
        }
        self.start.options.insert(PRECISION.into(), "fp32".into());
        let mut values = vec!["fp32".to_string()];
        for (p, needs) in passing {
            if !needs.is_empty() {
                self.precision_needs.insert(p.clone(), needs);
            }
            values.push(p);
        }
        self.dims.insert(0, Dimension { name: PRECISION.into(), values });
    }

    /// `c` with the options its precision needs.
    fn with_needs(&self, mut c: Candidate) -> Candidate {
        if let Some(needs) = c.options.get(PRECISION).and_then(|p| self.precision_needs.get(p)) {
            for (k, v) in needs {
                c.options.insert(k.clone(), v.clone());
            }
        }
        c
    }

    /// Configurations in this engine's grid that it can run.
    pub fn size(&self) -> usize {
        self.all().len()
    }

    /// Whether `c` is in the grid: its calls can run concurrently, or it has the one worker
    /// with a per-thread predictor that serialised calls leave.
    pub fn allows(&self, c: &Candidate) -> bool {
        let concurrent = self
            .concurrency_needs
            .iter()
            .all(|(k, v)| c.options.get(k).is_none_or(|have| have == v));
        concurrent || (c.predictor == PredictorKind::PerThread && c.workers == 1)
    }

    /// Every configuration of the grid the engine can run (an exhaustive sweep's list).
    pub fn all(&self) -> Vec<Candidate> {
        let mut out = vec![self.start.clone()];
        for dim in &self.dims {
            out = out
                .iter()
                .flat_map(|c| dim.values.iter().map(move |v| c.with(&dim.name, v)))
                .collect();
        }
        // A precision's needs can make two points one: each is kept once, in order.
        let mut seen = std::collections::HashSet::new();
        out.into_iter()
            .map(|c| self.with_needs(c))
            .filter(|c| self.allows(c) && seen.insert(c.clone()))
            .collect()
    }

    /// `c` if it is in the grid, else its counterpart with serialised calls: one worker with a
    /// per-thread predictor and all of `c`'s threads (what a climb steps to).
    pub fn runnable(&self, c: Candidate) -> Candidate {
        let c = self.with_needs(c);
        if self.allows(&c) {
            return c;
        }
        Candidate {
            predictor: PredictorKind::PerThread,
            workers: 1,
            intra: c.workers * c.intra,
            ..c
        }
    }
}

/// What the space is built from besides the engines.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Cores this process may use (affinity mask and cgroup quota).
    pub usable: usize,
    /// What is optimised.
    pub objective: Objective,
    /// Batch sizes tried: `Some(b)` pins it.
    pub batch: Option<usize>,
    /// Largest batch tried.
    pub max_batch: usize,
    /// Engine keys left out of the space (`--fixed KEY=V` pins them instead).
    pub fixed: BTreeMap<String, String>,
}

/// Thread counts tried: powers of two up to `usable`, and `usable` itself.
pub fn counts_up_to(usable: usize) -> Vec<usize> {
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |n| n.checked_mul(2))
        .take_while(|&n| n <= usable)
        .collect();
    if !v.contains(&usable) {
        v.push(usable);
    }
    v
}

/// The space of one engine. `caps` say whether it has a shared predictor and oneDNN, and what
/// concurrent calls need; `run` is the engine's run of the model in the agreement check: its thread report
/// says whether it has an inter-op setting, its latency where to start.
pub fn engine_space(
    info: &EngineInfo,
    caps: &Capabilities,
    run: &EngineRun,
    limits: &Limits,
) -> EngineSpace {
    let shared_predictor = caps.shared_predictor.is_yes();
    let onednn = caps.onednn.is_yes();
    let usable = limits.usable.max(1);
    let counts = counts_up_to(usable);
    let mut splits: Vec<(usize, usize)> = Vec::new();
    match limits.objective {
        // Throughput: every split of the cores, most workers first (the usual winner).
        Objective::Throughput => {
            for &w in counts.iter().rev() {
                for &i in &counts {
                    if w * i <= usable {
                        splits.push((w, i));
                    }
                }
            }
        }
        // Latency: one stream; only its intra-op threads vary, most first.
        Objective::Latency => splits.extend(counts.iter().rev().map(|&i| (1, i))),
    }
    let batches: Vec<usize> = match (limits.objective, limits.batch) {
        (Objective::Latency, _) => vec![1],
        (_, Some(b)) => vec![b],
        (_, None) if !run.dynamic_batch => vec![1],
        (_, None) => counts_up_to(limits.max_batch.max(1))
            .into_iter()
            .filter(|b| b.is_power_of_two() || *b == limits.max_batch)
            .collect(),
    };
    // A model whose single call takes under a millisecond spends much of it outside the
    // kernels: start batched. Otherwise start at batch 1 (lowest latency, no padding).
    let start_batch = if run.call_ms < 1.0 {
        batches.iter().copied().filter(|&b| b <= 8).max().unwrap_or(1)
    } else {
        batches[0]
    };
    let (w0, i0) = splits[0];
    // Pinned keys of this engine and engine-neutral ones; another engine's keys are not ours.
    let fixed: BTreeMap<String, String> = limits
        .fixed
        .iter()
        .filter(|(k, _)| {
            info.options.iter().any(|o| o.key == k.as_str())
                || thrum_core::config::KEYS.iter().any(|o| o.key == k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut start = Candidate {
        engine: info.name.into(),
        workers: w0,
        intra: i0,
        batch: start_batch,
        predictor: PredictorKind::PerThread,
        options: fixed,
        probe: false,
    };
    let mut dims = vec![Dimension {
        name: THREADS.into(),
        values: splits.iter().map(|(w, i)| format!("{w}x{i}")).collect(),
    }];
    if batches.len() > 1 {
        dims.push(Dimension {
            name: BATCH.into(),
            values: batches.iter().map(usize::to_string).collect(),
        });
    }
    if shared_predictor && limits.objective == Objective::Throughput {
        dims.push(Dimension {
            name: PREDICTOR.into(),
            values: vec!["per-thread".into(), "shared".into()],
        });
    }
    if run.threads.inter_op.is_some() && !limits.fixed.contains_key("inter_op_threads") {
        start.options.insert("inter_op_threads".into(), "1".into());
        dims.push(Dimension {
            name: "inter_op_threads".into(),
            values: counts.iter().map(usize::to_string).collect(),
        });
    }
    if onednn && !limits.fixed.contains_key("onednn") {
        start.options.insert("onednn".into(), "false".into());
        dims.push(Dimension { name: "onednn".into(), values: vec!["false".into(), "true".into()] });
    }
    for key in info.options.iter().filter(|k| !k.tunable.is_empty()) {
        if limits.fixed.contains_key(key.key) {
            continue;
        }
        let first = if key.tunable.contains(&key.default) { key.default } else { key.tunable[0] };
        start.options.insert(key.key.into(), first.into());
        let mut values = vec![first.to_string()];
        values.extend(key.tunable.iter().filter(|v| **v != first).map(|v| v.to_string()));
        dims.push(Dimension { name: key.key.into(), values });
    }
    let concurrency_needs =
        caps.concurrency_needs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    EngineSpace {
        engine: info.name.into(),
        start,
        dims,
        concurrency_needs,
        precision_needs: BTreeMap::new(),
    }
}

/// The one configuration with more threads than usable cores: the start point with twice
/// the intra-op threads per worker.
pub fn oversubscribed_probe(space: &EngineSpace, usable: usize) -> Candidate {
    let mut probe = space.start.clone();
    probe.workers = usable.max(1);
    probe.intra = 2;
    probe.probe = true;
    probe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialised_calls_get_one_worker_and_no_shared_predictor() {
        let start = Candidate {
            engine: "ort".into(),
            workers: 2,
            intra: 1,
            batch: 1,
            predictor: PredictorKind::PerThread,
            options: BTreeMap::from([("ort.execution_providers".into(), "cpu".into())]),
            probe: false,
        };
        let dim = |name: &str, values: &[&str]| Dimension {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let space = EngineSpace {
            engine: "ort".into(),
            start: start.clone(),
            dims: vec![
                dim(THREADS, &["2x1", "1x1", "1x2"]),
                dim(PREDICTOR, &["per-thread", "shared"]),
                dim("ort.execution_providers", &["cpu", "openvino"]),
            ],
            concurrency_needs: BTreeMap::from([("ort.execution_providers".into(), "cpu".into())]),
            precision_needs: BTreeMap::new(),
        };
        // CPU: 3 splits × 2 predictor kinds; OpenVINO serialises calls: 1x1 and 1x2, per-thread.
        assert_eq!(space.size(), 8);
        let all = space.all();
        assert!(all.iter().any(|c| c.predictor == PredictorKind::Shared));
        for c in all.iter().filter(|c| c.options["ort.execution_providers"] == "openvino") {
            assert_eq!((c.workers, c.predictor), (1, PredictorKind::PerThread), "{}", c.key());
        }
        // A climb at 2 workers sharing a predictor, stepping to OpenVINO, measures one worker
        // with both threads.
        let shared = start.with(PREDICTOR, "shared");
        assert_eq!(space.runnable(shared.clone()), shared);
        let stepped = space.runnable(shared.with("ort.execution_providers", "openvino"));
        assert_eq!((stepped.workers, stepped.intra), (1, 2));
        assert_eq!(stepped.predictor, PredictorKind::PerThread);
        assert_eq!(stepped.options["ort.execution_providers"], "openvino");
    }

    #[test]
    fn counts_are_powers_of_two_and_the_core_count() {
        assert_eq!(counts_up_to(1), vec![1]);
        assert_eq!(counts_up_to(6), vec![1, 2, 4, 6]);
    }

    #[test]
    fn a_precision_brings_the_settings_it_passed_under() {
        let start = Candidate {
            engine: "ort".into(),
            workers: 2,
            intra: 1,
            batch: 1,
            predictor: PredictorKind::PerThread,
            options: BTreeMap::from([("ort.execution_providers".into(), "cpu".into())]),
            probe: false,
        };
        let mut space = EngineSpace {
            engine: "ort".into(),
            start,
            dims: vec![
                Dimension { name: THREADS.into(), values: vec!["2x1".into(), "1x2".into()] },
                Dimension {
                    name: "ort.execution_providers".into(),
                    values: vec!["cpu".into(), "openvino".into()],
                },
            ],
            concurrency_needs: BTreeMap::from([("ort.execution_providers".into(), "cpu".into())]),
            precision_needs: BTreeMap::new(),
        };
        // bf16 passed only on OpenVINO, int8 on the CPU provider.
        space.add_precisions(vec![
            (
                "bf16".into(),
                BTreeMap::from([("ort.execution_providers".into(), "openvino".into())]),
            ),
            ("int8".into(), BTreeMap::new()),
        ]);
        assert_eq!(space.dims[0].name, PRECISION);
        assert_eq!(space.start.options[PRECISION], "fp32");
        // A climb stepping to bf16 from 2 workers on the CPU provider measures OpenVINO, with
        // one worker and both threads (its calls are serialised).
        let bf16 = space.runnable(space.start.with(PRECISION, "bf16"));
        assert_eq!(bf16.options["ort.execution_providers"], "openvino");
        assert_eq!((bf16.workers, bf16.intra), (1, 2));
        // Stepping bf16 back to the CPU provider gives the same point: nothing new to measure.
        assert_eq!(space.runnable(bf16.with("ort.execution_providers", "cpu")), bf16);
        // The grid: fp32 and int8 on both providers (2 + 1 points each), bf16 on OpenVINO only.
        let all = space.all();
        assert_eq!(all.iter().filter(|c| c.options[PRECISION] == "bf16").count(), 1, "{all:?}");
        assert_eq!(all.len(), 7, "{all:?}");
    }
}
