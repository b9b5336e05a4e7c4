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
    /// `thrum-tune/2` (2: `precision.int8_models`, by engine, in place of `int8_model`).
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
    /// The precisions searched, their accuracy gates, and why others were not.
    pub precision: &'a crate::accuracy::PrecisionSearch,
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
                    "  tied within the noise (fewer threads, then fp32, then less memory, won): {}",
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
    for check in &outcome.checks {
        writeln!(
            out,
            "  accuracy check of {} (a child `thrum compare --config`): {} — {}",
            check.candidate,
            if check.pass { "PASS" } else { "FAIL" },
            check.summary
        )?;
    }
    if outcome.accuracy_unmet {
        writeln!(
            out,
            "No configuration checked met the accuracy target: the best fp32 configuration is \
             written, marked as below it."
        )?;
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
        if outcome.default_wins {
            writeln!(
                out,
                "The default beat the pick in the alternating runs: the default is what is written."
            )?;
        }
    }
    Ok(())
}

/// The pick as a model's `thrum.toml`, served as `name`; `int8_model`: the quantized graph
/// the pick runs, when it is an int8 candidate; `image`: the pre-processing of an image model
/// file (its `[image]` table, left out when empty).
pub fn thrum_toml(
    name: &str,
    model: &str,
    int8_model: Option<&str>,
    image: &toml::Table,
    c: &Candidate,
    header: &[String],
) -> String {
    let mut t = toml::Table::new();
    t.insert("name".into(), name.into());
    t.insert("model".into(), model.into());
    if let Some(int8) = int8_model {
        t.insert("int8_model".into(), int8.into());
    }
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
        // What was measured is calls of `batch` samples; the server joins only requests
        // already queued when it has no delay (the header says so).
        let mut batching = toml::Table::new();
        batching.insert("max_batch_size".into(), (c.batch as i64).into());
        batching.insert("max_queue_delay_us".into(), 0i64.into());
        t.insert("batching".into(), batching.into());
    }
    if !image.is_empty() {
        t.insert("image".into(), image.clone().into());
    }
    // Every line a comment, even one of a multi-line message (an engine's error).
    let mut text: String =
        header.iter().flat_map(|l| l.lines()).map(|l| format!("# {l}\n")).collect();
    text.push_str(&toml::to_string(&t).unwrap_or_default());
    text
}

/// What a `thrum.toml` says about its measurement: the figures, the `thrum bench` command that
/// made them, and what a batch above 1 was (calls of that many samples from the client; the
/// server batches only what is queued unless given a delay).
pub fn measured_header(
    c: &Candidate,
    m: &Metrics,
    cores: usize,
    cpu: &str,
    bench: &[String],
) -> Vec<String> {
    let mut lines = vec![
        format!("Written by `thrum tune` on a machine with {cores} usable core(s); cpu: {cpu}."),
        format!(
            "Measured: {:.2} samples/s, P50 {:.2} ms, P99 {:.2} ms, peak RSS {:.0} MiB, by:",
            m.samples_per_s, m.p50_ms, m.p99_ms, m.rss_mib
        ),
        format!(
            "  thrum {}",
            bench
                .iter()
                .filter(|a| !matches!(a.as_str(), "--json" | "-" | "--quiet"))
                .map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() })
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ];
    if c.batch > 1 {
        lines.push(format!(
            "Each call carried {b} samples from the client ({w} workers, thrum bench -b {b}). \
             [batching] lets `thrum serve` put up to {b} requests in one call, but with \
             max_queue_delay_us = 0 it joins only requests already queued: clients that send one \
             sample see this throughput only under enough concurrent load, or with a delay \
             (measure it with `thrum load`).",
            b = c.batch,
            w = c.workers
        ));
    }
    lines.push(
        "Read by `thrum bench --config`, `thrum serve --config` and \
         thrum_core::Options::apply_toml_file."
            .into(),
    );
    lines
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
