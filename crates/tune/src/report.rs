//! What a search leaves behind: the ranked table, the Pareto front (throughput, P99, RSS) and
//! its plot, the JSON report, and the `thrum.toml` that `thrum bench --config`, `thrum serve
//! --config` and `thrum_core::Options` read.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use thrum_bench::SweepPoint;
use thrum_bench::system::Cores;

use crate::child::{Metrics, Outcome};
use crate::compare::Comparison;
use crate::error::TuneError;
use crate::search::{Constraints, Outcomes, Phase, Strategy, score};
use crate::space::{Candidate, EngineSpace, Objective};

/// The JSON report of `thrum tune`.
#[derive(Debug, Serialize)]
pub struct TuneReport<'a> {
    /// `thrum-tune/1`.
    pub schema: &'static str,
    /// The model as given.
    pub model: &'a str,
    /// The cores it was tuned on.
    pub cores: &'a Cores,
    /// What was optimised.
    pub objective: Objective,
    /// What the pick had to meet.
    pub constraints: Constraints,
    /// Climb or exhaustive.
    pub strategy: Strategy,
    /// The budget, seconds.
    pub budget_s: f64,
    /// The agreement check.
    pub comparison: &'a Comparison,
    /// Engines left out, and why.
    pub excluded: &'a [(String, String)],
    /// Each engine's space.
    pub spaces: &'a [EngineSpace],
    /// The configurations ranked, best first (each one's latest measurement).
    pub ranked: Vec<Ranked>,
    /// The search's results.
    pub outcome: &'a Outcomes,
}

/// One configuration's place in the ranking.
#[derive(Clone, Debug, Serialize)]
pub struct Ranked {
    /// Its identity.
    pub key: String,
    /// The configuration.
    pub candidate: Candidate,
    /// Its latest measurement.
    pub metrics: Metrics,
    /// What it misses of the constraints.
    pub misses: Vec<String>,
    /// On the Pareto front of throughput, P99 and RSS.
    pub pareto: bool,
}

/// Each measured configuration once (its longest run), best first, Pareto front marked.
pub fn ranked(outcome: &Outcomes, objective: Objective, constraints: &Constraints) -> Vec<Ranked> {
    let mut latest: BTreeMap<String, (Candidate, Metrics, f64)> = BTreeMap::new();
    for t in &outcome.trials {
        if t.phase == Phase::Confirm {
            continue;
        }
        if let Some(m) = t.metrics() {
            let entry =
                latest.entry(t.candidate.key()).or_insert((t.candidate.clone(), m.clone(), 0.0));
            if t.budget.max_s >= entry.2 {
                *entry = (t.candidate.clone(), m.clone(), t.budget.max_s);
            }
        }
    }
    let points: Vec<(Candidate, Metrics)> = latest.into_values().map(|(c, m, _)| (c, m)).collect();
    let mut out: Vec<Ranked> = points
        .iter()
        .map(|(c, m)| Ranked {
            key: c.key(),
            candidate: c.clone(),
            metrics: m.clone(),
            misses: constraints.misses(m),
            pareto: !c.probe
                && !points.iter().any(|(o, n)| {
                    !o.probe
                        && n.samples_per_s >= m.samples_per_s
                        && n.p99_ms <= m.p99_ms
                        && n.rss_mib <= m.rss_mib
                        && (n.samples_per_s > m.samples_per_s
                            || n.p99_ms < m.p99_ms
                            || n.rss_mib < m.rss_mib)
                }),
        })
        .collect();
    out.sort_by(|a, b| {
        (a.misses.is_empty(), score(&a.metrics, objective))
            .partial_cmp(&(b.misses.is_empty(), score(&b.metrics, objective)))
            .unwrap_or(std::cmp::Ordering::Equal)
            .reverse()
    });
    out
}

/// The human summary: ranked table (top `rows`), failures, the pick and its speed-up.
pub fn write_summary(
    out: &mut dyn Write,
    ranked: &[Ranked],
    outcome: &Outcomes,
    objective: Objective,
    rows: usize,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Measured {} of {} configurations in {:.0} s{} (* Pareto front of throughput, P99, RSS; ! misses a constraint)",
        outcome.distinct_measured,
        outcome.space_size,
        outcome.wall_s,
        if outcome.budget_exhausted { ", stopped by the budget" } else { "" }
    )?;
    writeln!(
        out,
        "  {:>4}  {:<64} {:>14} {:>9} {:>9} {:>8}",
        "rank", "configuration", "samples/s", "P50 ms", "P99 ms", "RSS MiB"
    )?;
    for (i, r) in ranked.iter().take(rows).enumerate() {
        let mark = if !r.misses.is_empty() {
            "!"
        } else if r.pareto {
            "*"
        } else {
            " "
        };
        let probe = if r.candidate.probe { " (probe: more threads than cores)" } else { "" };
        writeln!(
            out,
            "{mark} {:>4}  {:<64} {:>8.2} ±{:<5.2} {:>9.2} {:>9.2} {:>8.0}{probe}",
            i + 1,
            r.key,
            r.metrics.samples_per_s,
            r.metrics.ci95,
            r.metrics.p50_ms,
            r.metrics.p99_ms,
            r.metrics.rss_mib
        )?;
    }
    for t in &outcome.trials {
        if let Outcome::Failed { reason, stderr_tail } = &t.outcome {
            writeln!(out, "  failed: {}: {reason}", t.candidate.key())?;
            for line in stderr_tail.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev() {
                writeln!(out, "      | {line}")?;
            }
        }
    }
    match &outcome.winner {
        Some((c, m)) => {
            writeln!(
                out,
                "Pick: {} — {:.2} ± {:.2} samples/s, P50 {:.2} ms, P99 {:.2} ms, RSS {:.0} MiB",
                c.key(),
                m.samples_per_s,
                m.ci95,
                m.p50_ms,
                m.p99_ms,
                m.rss_mib
            )?;
            if !outcome.tied.is_empty() {
                writeln!(
                    out,
                    "  tied within the noise (fewer threads, then less memory, won): {}",
                    outcome.tied.join("; ")
                )?;
            }
        }
        None => {
            writeln!(out, "No configuration meets the constraints; the closest:")?;
            for (c, m, misses) in &outcome.closest {
                writeln!(
                    out,
                    "  {}: {:.2} samples/s; misses {}",
                    c.key(),
                    m.samples_per_s,
                    misses.join(", ")
                )?;
            }
        }
    }
    if let Some(v) = &outcome.versus_default {
        let what = match objective {
            Objective::Throughput => "throughput",
            Objective::Latency => "latency",
        };
        writeln!(
            out,
            "Against the default ({}), {} alternating runs each: {what} {:.2}× (runs ranged {:.2}× to {:.2}×)",
            v.default.key(),
            v.winner_runs.len(),
            v.speedup,
            v.band.0,
            v.band.1
        )?;
    }
    Ok(())
}

/// The pick as a model's `thrum.toml`, served as `name`.
pub fn thrum_toml(name: &str, model: &str, c: &Candidate, m: &Metrics, cores: usize) -> String {
    let mut t = toml::Table::new();
    t.insert("name".into(), name.into());
    t.insert("model".into(), model.into());
    t.insert("engine".into(), c.engine.clone().into());
    t.insert("workers".into(), (c.workers as i64).into());
    t.insert("predictor".into(), c.predictor.to_string().into());
    let mut options = toml::Table::new();
    for (k, v) in c.option_pairs() {
        let value: toml::Value = match v.parse::<i64>() {
            Ok(n) => n.into(),
            Err(_) => match v.as_str() {
                "true" => true.into(),
                "false" => false.into(),
                _ => v.into(),
            },
        };
        options.insert(k, value);
    }
    t.insert("options".into(), options.into());
    if c.batch > 1 {
        let mut batching = toml::Table::new();
        batching.insert("max_batch_size".into(), (c.batch as i64).into());
        t.insert("batching".into(), batching.into());
    }
    format!(
        "# Written by `thrum tune` on a machine with {cores} usable core(s): {:.2} samples/s, \
         P99 {:.2} ms, RSS {:.0} MiB.\n# Read by `thrum bench --config`, `thrum serve --config` \
         and thrum_core::Options::apply_toml_file.\n{}",
        m.samples_per_s,
        m.p99_ms,
        m.rss_mib,
        toml::to_string(&t).unwrap_or_default()
    )
}

/// Plots throughput against P99 for every ranked configuration, the Pareto front marked.
pub fn plot(ranked: &[Ranked], title: &str, path: &Path) -> Result<(), TuneError> {
    let points: Vec<SweepPoint> = ranked
        .iter()
        .filter(|r| !r.candidate.probe)
        .map(|r| {
            let mut options: BTreeMap<String, String> = BTreeMap::new();
            options.insert("engine".into(), r.candidate.engine.clone());
            options.extend(r.candidate.option_pairs());
            SweepPoint {
                threads: r.candidate.workers,
                batch: r.candidate.batch,
                predictor: r.candidate.predictor,
                options,
                samples_per_s: r.metrics.samples_per_s,
                calls_per_s: r.metrics.samples_per_s / r.candidate.batch as f64,
                p50_ms: r.metrics.p50_ms,
                p99_ms: r.metrics.p99_ms,
                rss_peak_mib: r.metrics.rss_mib,
                pareto: r.pareto,
            }
        })
        .collect();
    Ok(thrum_bench::plot_sweep(&points, title, path)?)
}
