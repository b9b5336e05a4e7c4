//! Accuracy-driven fallback: which nodes to leave in fp32 so that the quantized model keeps a
//! target share of fp32's accuracy (Intel Neural Compressor's "basic" strategy).
//!
//! The search only decides *which* nodes; measuring a candidate (quantize with those nodes
//! excluded, run it, score it against fp32) is the caller's closure, so the strategy is the same
//! whatever the engine, the metric or the data:
//! 1. every node quantized; done if that meets the target;
//! 2. each candidate alone in fp32, in graph order; done at the first that meets the target;
//! 3. the candidates put back in fp32 one after another, the one whose fallback alone scored
//!    best first, until the target holds.
//!
//! A budget bounds the number of models measured. When it runs out, or every candidate is in
//! fp32 without meeting the target, the search reports the best model it measured.

use crate::qdq::{Decision, Report};

/// The operators the search leaves in fp32: those that carry weights and do most of the work.
/// An element-wise node (`Add`, `Mul`) left in fp32 between quantized tensors changes nothing on
/// ONNX Runtime, which still fuses its QDQ pairs into `QLinearAdd` / `QLinearMul`.
pub const CANDIDATE_OPS: &[&str] = &["Conv", "Gemm", "MatMul"];

/// The nodes of a quantized model's `report` that the search may leave in fp32: the quantized
/// ones of [`CANDIDATE_OPS`], in graph order.
pub fn candidates(report: &Report) -> Vec<String> {
    report
        .nodes
        .iter()
        .filter(|n| {
            n.decision == Decision::Quantized && CANDIDATE_OPS.contains(&n.op_type.as_str())
        })
        .map(|n| n.name.clone())
        .collect()
}

/// What one measured model scored.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Score {
    /// The metric, as a fraction of fp32's (top-1 agreement, mean cosine, …).
    pub value: f64,
    /// The model's speed over fp32's in the same measurement, where it was timed.
    pub speedup: Option<f64>,
}

/// One measured model: the nodes left in fp32 and its score.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Trial {
    /// Nodes left in fp32 (besides those the options exclude), in the order they were added.
    pub fp32_nodes: Vec<String>,
    /// What it scored.
    pub score: Score,
}

/// Why the search stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// A model met the target.
    Met,
    /// Every candidate was in fp32 and the target still did not hold.
    Exhausted,
    /// The budget of measured models ran out first.
    Budget,
}

/// What [`search`] found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Search {
    /// The target the score had to reach.
    pub target: f64,
    /// Every node quantized.
    pub baseline: Trial,
    /// Each candidate alone in fp32, in the order measured (graph order).
    pub singles: Vec<Trial>,
    /// The cumulative fallbacks, each one node more than the last.
    pub cumulative: Vec<Trial>,
    /// Why the search stopped.
    pub stop: Stop,
    /// The model to keep: the first that met the target, else the best measured (the fewest
    /// nodes in fp32 among equal scores).
    pub chosen: Trial,
    /// Models measured, the baseline included.
    pub measured: usize,
}

impl Search {
    /// Whether the chosen model meets the target.
    pub fn met(&self) -> bool {
        self.stop == Stop::Met
    }
}

/// Searches which of `candidates` (node names, in graph order) to leave in fp32 for a score of at
/// least `target`, starting from `baseline` (every node quantized) and measuring at most
/// `budget` models besides it. `measure` quantizes with the given nodes in fp32 and scores the
/// result; `None` when that would leave nothing quantized, which ends the search. Its first
/// error ends the search too.
pub fn search<E>(
    baseline: Score,
    candidates: &[String],
    target: f64,
    budget: usize,
    mut measure: impl FnMut(&[String]) -> Result<Option<Score>, E>,
) -> Result<Search, E> {
    let baseline = Trial { fp32_nodes: Vec::new(), score: baseline };
    let mut found = Search {
        target,
        baseline: baseline.clone(),
        singles: Vec::new(),
        cumulative: Vec::new(),
        stop: Stop::Met,
        chosen: baseline,
        measured: 1,
    };
    if found.baseline.score.value >= target {
        return Ok(found);
    }
    // 2. Each candidate alone.
    for node in candidates {
        if found.measured > budget {
            return Ok(found.best(Stop::Budget));
        }
        let Some(score) = measure(std::slice::from_ref(node))? else {
            return Ok(found.best(Stop::Exhausted));
        };
        let trial = Trial { fp32_nodes: vec![node.clone()], score };
        found.measured += 1;
        found.singles.push(trial.clone());
        if trial.score.value >= target {
            found.chosen = trial;
            return Ok(found);
        }
    }
    // 3. Cumulative, the most helpful alone first (graph order among equals: the sort is
    // stable). The first step is the best single, already measured.
    let mut order: Vec<&Trial> = found.singles.iter().collect();
    order.sort_by(|a, b| b.score.value.total_cmp(&a.score.value));
    let order: Vec<String> = order.iter().map(|t| t.fp32_nodes[0].clone()).collect();
    let mut fp32: Vec<String> = Vec::new();
    for node in order {
        fp32.push(node);
        if fp32.len() == 1 {
            continue;
        }
        if found.measured > budget {
            return Ok(found.best(Stop::Budget));
        }
        let Some(score) = measure(&fp32)? else {
            break;
        };
        let trial = Trial { fp32_nodes: fp32.clone(), score };
        found.measured += 1;
        found.cumulative.push(trial.clone());
        if trial.score.value >= target {
            found.chosen = trial;
            return Ok(found);
        }
    }
    Ok(found.best(Stop::Exhausted))
}

impl Search {
    /// Ends an unmet search: the best model measured, the fewest nodes in fp32 among equals.
    fn best(mut self, stop: Stop) -> Search {
        let mut best = &self.baseline;
        for t in self.singles.iter().chain(&self.cumulative) {
            if t.score.value > best.score.value {
                best = t;
            }
        }
        self.chosen = best.clone();
        self.stop = stop;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("conv_{i}")).collect()
    }

    /// A model whose score is the baseline plus each fp32 node's gain, capped at 1.
    fn additive<'a>(
        base: f64,
        gains: &[f64],
        log: &'a mut Vec<Vec<String>>,
    ) -> impl FnMut(&[String]) -> Result<Option<Score>, ()> + 'a {
        let gains = gains.to_vec();
        move |fp32: &[String]| {
            log.push(fp32.to_vec());
            let gain: f64 = fp32
                .iter()
                .map(|n| gains[n.trim_start_matches("conv_").parse::<usize>().unwrap()])
                .sum();
            Ok(Some(score(base + gain)))
        }
    }

    fn score(value: f64) -> Score {
        Score { value: value.min(1.0), speedup: None }
    }

    #[test]
    fn a_baseline_that_meets_the_target_measures_nothing_else() {
        let mut log = Vec::new();
        let s =
            search(score(0.8), &names(3), 0.7, 100, additive(0.8, &[0.1; 3], &mut log)).unwrap();
        assert!(s.met());
        assert_eq!(s.measured, 1);
        assert!(s.chosen.fp32_nodes.is_empty());
        assert!(log.is_empty(), "the baseline is measured by the caller");
    }

    #[test]
    fn one_node_that_is_enough_alone_stops_the_search_there() {
        let mut log = Vec::new();
        let s = search(
            score(0.8),
            &names(4),
            0.9,
            100,
            additive(0.8, &[0.01, 0.12, 0.2, 0.0], &mut log),
        )
        .unwrap();
        assert!(s.met());
        // conv_1 is the first in graph order that is enough; conv_2 (better) is never measured.
        assert_eq!(s.chosen.fp32_nodes, ["conv_1"]);
        assert_eq!(s.measured, 3);
        assert!(s.cumulative.is_empty());
    }

    #[test]
    fn nodes_are_accumulated_the_most_helpful_first_until_the_target_holds() {
        let mut log = Vec::new();
        let gains = [0.01, 0.05, 0.0, 0.04, 0.03];
        let s = search(score(0.8), &names(5), 0.88, 100, additive(0.8, &gains, &mut log)).unwrap();
        assert!(s.met(), "{s:?}");
        // Alone: 0.81, 0.85, 0.80, 0.84, 0.83 → order conv_1, conv_3, conv_4, conv_0, conv_2;
        // conv_1 + conv_3 = 0.89 meets 0.88.
        assert_eq!(s.chosen.fp32_nodes, ["conv_1", "conv_3"]);
        assert_eq!(s.singles.len(), 5);
        assert_eq!(s.cumulative.len(), 1);
        assert_eq!(s.measured, 7);
        assert_eq!(log.len(), 6);
    }

    #[test]
    fn an_unmet_target_keeps_the_best_model_measured() {
        let mut log = Vec::new();
        let s = search(score(0.5), &names(3), 0.99, 100, additive(0.5, &[0.1, 0.0, 0.2], &mut log))
            .unwrap();
        assert_eq!(s.stop, Stop::Exhausted);
        assert!(!s.met());
        // conv_2 + conv_0 score 0.8, the best; adding conv_1 adds nothing.
        assert_eq!(s.chosen.fp32_nodes, ["conv_2", "conv_0"]);
        assert!((s.chosen.score.value - 0.8).abs() < 1e-12);
        assert_eq!(s.measured, 1 + 3 + 2);
    }

    #[test]
    fn ties_keep_the_fewest_nodes_in_fp32() {
        let mut log = Vec::new();
        // Only conv_0 helps; adding the others changes nothing.
        let s = search(score(0.5), &names(3), 0.99, 100, additive(0.5, &[0.1, 0.0, 0.0], &mut log))
            .unwrap();
        assert_eq!(s.stop, Stop::Exhausted);
        assert_eq!(s.chosen.fp32_nodes, ["conv_0"]);
    }

    #[test]
    fn the_budget_bounds_the_models_measured() {
        let mut log = Vec::new();
        let s =
            search(score(0.5), &names(10), 0.99, 4, additive(0.5, &[0.01; 10], &mut log)).unwrap();
        assert_eq!(s.stop, Stop::Budget);
        assert_eq!(s.measured, 5, "the baseline and 4 more");
        assert_eq!(log.len(), 4);
        assert_eq!(s.chosen.fp32_nodes, ["conv_0"]);
    }

    #[test]
    fn a_failed_measurement_ends_the_search_with_its_error() {
        let mut calls = 0;
        let r = search(score(0.5), &names(3), 0.99, 100, |fp32: &[String]| {
            calls += 1;
            if fp32.len() == 1 && fp32[0] == "conv_1" {
                Err("conv_1 broke")
            } else {
                Ok(Some(score(0.5)))
            }
        });
        assert_eq!(r.unwrap_err(), "conv_1 broke");
        assert_eq!(calls, 2);
    }

    #[test]
    fn nothing_left_to_quantize_ends_the_accumulation() {
        // Three candidates and nothing else quantized: all three in fp32 is the fp32 model.
        let r = search(score(0.5), &names(3), 0.99, 100, |fp32: &[String]| {
            Ok::<_, ()>((fp32.len() < 3).then(|| score(0.5 + 0.1 * fp32.len() as f64)))
        })
        .unwrap();
        assert_eq!(r.stop, Stop::Exhausted);
        assert_eq!(r.cumulative.len(), 1);
        assert_eq!(r.chosen.fp32_nodes, ["conv_0", "conv_1"]);
        assert_eq!(r.measured, 5);
    }
}
