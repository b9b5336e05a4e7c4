//! The search: hill climbing on each engine's ordered dimensions with short measurements, then
//! the best few re-measured longer, then the winner against the default configuration in
//! alternating runs. Every measurement is a child process ([`crate::child`]); every finished
//! one goes to the checkpoint file at once, so an interrupted search resumes where it stopped.
//!
//! Why hill climbing and not successive halving over the grid: the grid is a product (ONNX
//! Runtime alone has 3 thread splits × 4 batch sizes × 2 predictor kinds × 2 inter-op × 2 ×
//! 3 × 2 × 2 × 2 × 2 engine settings = 4 608 grid points on 2 cores, 3 072 once OpenVINO's
//! serialised calls keep one worker), and successive halving's first rung still runs every
//! point once. The dimensions are nearly separable (the thread split and the batch size decide
//! most of the throughput; engine settings move it by a few percent, see
//! docs/performance.md), so one pass along each dimension from a good start finds the same
//! optimum in a few dozen runs; the re-measurement of the best few at 3× the time then guards
//! against a lucky short run.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::child::{Budget, INTERRUPTED, Launcher, Metrics, Outcome};
use crate::error::TuneError;
use crate::space::{Candidate, EngineSpace, Objective};

/// Limits a configuration must meet to be proposed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Largest P99 latency, ms.
    pub max_p99_ms: Option<f64>,
    /// Largest peak RSS, MiB.
    pub max_rss_mib: Option<f64>,
}

impl Constraints {
    /// By how much `m` misses each limit, in words; empty when it meets them.
    pub fn misses(&self, m: &Metrics) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(max) = self.max_p99_ms
            && m.p99_ms.partial_cmp(&max) != Some(std::cmp::Ordering::Less)
            && m.p99_ms != max
        {
            out.push(format!(
                "P99 {:.2} ms > {max} ms (+{:.0} %)",
                m.p99_ms,
                100.0 * (m.p99_ms / max - 1.0)
            ));
        }
        if let Some(max) = self.max_rss_mib
            && m.rss_mib.is_nan()
        {
            out.push(format!("RSS not measured, so --max-rss {max} MiB cannot be checked"));
        } else if let Some(max) = self.max_rss_mib
            && m.rss_mib.partial_cmp(&max) != Some(std::cmp::Ordering::Less)
            && m.rss_mib != max
        {
            out.push(format!(
                "RSS {:.0} MiB > {max} MiB (+{:.0} %)",
                m.rss_mib,
                100.0 * (m.rss_mib / max - 1.0)
            ));
        }
        out
    }

    /// How far `m` is from meeting every limit (0 when it does): the sum of relative misses.
    pub fn distance(&self, m: &Metrics) -> f64 {
        // A metric that was not measured misses its limit by more than any measured one.
        let over = |v: f64, max: Option<f64>| {
            max.map_or(0.0, |max| if v.is_nan() { f64::INFINITY } else { (v / max - 1.0).max(0.0) })
        };
        over(m.p99_ms, self.max_p99_ms) + over(m.rss_mib, self.max_rss_mib)
    }
}

/// How the space is explored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Hill climbing per engine, then the best few re-measured.
    Climb,
    /// Every point of the grid (what the climb is checked against), then the best few
    /// re-measured the same way.
    Exhaustive,
}

/// What a measurement was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A short run while exploring.
    Explore,
    /// The oversubscribed probe.
    Probe,
    /// A finalist's longer run.
    Final,
    /// The winner or the default in the alternating comparison.
    Confirm,
}

/// One finished measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trial {
    /// What ran.
    pub candidate: Candidate,
    /// Why.
    pub phase: Phase,
    /// How long it could measure.
    pub budget: Budget,
    /// What it found.
    pub outcome: Outcome,
    /// The child's wall time, seconds.
    pub wall_s: f64,
}

impl Trial {
    /// Its metrics when it ran.
    pub fn metrics(&self) -> Option<&Metrics> {
        match &self.outcome {
            Outcome::Measured(m) => Some(m),
            Outcome::Failed { .. } => None,
        }
    }
}

/// Everything a search needs.
#[derive(Clone, Debug)]
pub struct SearchPlan {
    /// Each engine's space.
    pub spaces: Vec<EngineSpace>,
    /// Starts children.
    pub launcher: Launcher,
    /// What is optimised.
    pub objective: Objective,
    /// What a pick must meet.
    pub constraints: Constraints,
    /// Wall-clock budget, seconds (the final and confirming runs included).
    pub budget_s: f64,
    /// Exploration runs.
    pub short: Budget,
    /// Finalists' and confirming runs.
    pub long: Budget,
    /// Finalists re-measured.
    pub finalists: usize,
    /// Alternating rounds of winner and default.
    pub confirm_rounds: usize,
    /// The default configuration the winner is compared with.
    pub default: Candidate,
    /// Climb or exhaustive.
    pub strategy: Strategy,
    /// Usable cores (a probe exceeds them once; nothing proposed does).
    pub usable: usize,
    /// Where finished measurements are written.
    pub checkpoint: PathBuf,
    /// Measurements of an interrupted run of the same search, reused in order.
    pub resumed: Vec<Trial>,
    /// Seconds one measurement is estimated to take before any ran.
    pub first_estimate_s: f64,
    /// Draw a progress bar (when stderr is a terminal) and print each measurement.
    pub progress: bool,
}

/// The winner against the default configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Versus {
    /// The default configuration.
    pub default: Candidate,
    /// Winner's objective over the default's, from the means of the alternating runs.
    pub speedup: f64,
    /// Smallest and largest ratio of a winner run to its neighbouring default run.
    pub band: (f64, f64),
    /// Winner's runs (samples/s, or ms for latency).
    pub winner_runs: Vec<f64>,
    /// Default's runs.
    pub default_runs: Vec<f64>,
    /// The default's last measurement.
    pub default_metrics: Option<Metrics>,
}

/// A configuration's outputs checked against its engine's fp32 with default settings, in a
/// child process (`thrum compare --config`): what the pick must pass before it is written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The configuration ([`Candidate::key`]).
    pub candidate: String,
    /// Whether it met the accuracy target.
    pub pass: bool,
    /// What was found: the metric against the target, or why the check could not run.
    pub summary: String,
}

/// Most configurations checked before the search gives up on meeting the accuracy target.
pub const MAX_CHECKS: usize = 4;

/// What a search found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcomes {
    /// Every measurement, in order.
    pub trials: Vec<Trial>,
    /// The proposed configuration and its final measurement.
    pub winner: Option<(Candidate, Metrics)>,
    /// Finalists tied with the winner (confidence intervals overlap), settled by fewer
    /// threads, then fp32 over a reduced precision, then less memory.
    pub tied: Vec<String>,
    /// When nothing meets the constraints: the closest, with what each misses.
    pub closest: Vec<(Candidate, Metrics, Vec<String>)>,
    /// Winner against the default.
    pub versus_default: Option<Versus>,
    /// The accuracy checks of the pick (and of those tried after a pick failed its check),
    /// in order.
    pub checks: Vec<Check>,
    /// No configuration checked met the accuracy target: the winner is the best fp32
    /// configuration measured, written marked as below the target.
    pub accuracy_unmet: bool,
    /// The default configuration beat the pick in the alternating runs: the default is
    /// what is written.
    pub default_wins: bool,
    /// Points in the grids of every engine.
    pub space_size: usize,
    /// Distinct configurations measured.
    pub distinct_measured: usize,
    /// Seconds the search took (this run; resumed measurements cost none).
    pub wall_s: f64,
    /// Whether the budget ran out before the search was done.
    pub budget_exhausted: bool,
}

/// The score a search maximises.
pub fn score(m: &Metrics, objective: Objective) -> f64 {
    match objective {
        Objective::Throughput => m.samples_per_s,
        Objective::Latency => -m.p50_ms,
    }
}

struct Search<'a> {
    plan: &'a SearchPlan,
    trials: Vec<Trial>,
    resumed: BTreeMap<(String, Phase), VecDeque<Trial>>,
    start: Instant,
    bar: ProgressBar,
    exhausted: bool,
    /// While one engine is explored: when its share of the budget ends (seconds from start).
    share_ends: Option<f64>,
}

impl Search<'_> {
    fn spent(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Average child wall time per second of measuring so far.
    fn estimate(&self, budget: &Budget) -> f64 {
        let fresh: Vec<&Trial> = self.trials.iter().filter(|t| t.metrics().is_some()).collect();
        if fresh.is_empty() {
            return self.plan.first_estimate_s + budget.max_s;
        }
        let overhead = fresh.iter().map(|t| (t.wall_s - t.budget.max_s).max(0.0)).sum::<f64>()
            / fresh.len() as f64;
        overhead + budget.max_s
    }

    fn fits(&mut self, budget: &Budget) -> bool {
        self.fits_n(budget, 1)
    }

    /// Whether `n` more measurements of `budget` fit.
    fn fits_n(&mut self, budget: &Budget, n: usize) -> bool {
        let end = self.share_ends.map_or(self.plan.budget_s, |e| e.min(self.plan.budget_s));
        let fits = self.spent() + n as f64 * self.estimate(budget) <= end;
        if !fits {
            self.exhausted = true;
        }
        fits
    }

    /// Measures `c` (or takes its measurement from the resumed checkpoint).
    fn measure(&mut self, c: &Candidate, phase: Phase, budget: Budget) -> Result<Trial, TuneError> {
        let reused = self.resumed.get_mut(&(c.key(), phase)).and_then(VecDeque::pop_front);
        let trial = match reused {
            Some(t) => t,
            None => {
                self.bar.set_message(format!("measuring {}", c.key()));
                let (outcome, wall_s) = self.plan.launcher.measure(c, &budget);
                if INTERRUPTED.load(Ordering::SeqCst) {
                    return Err(TuneError::Interrupted {
                        checkpoint: self.plan.checkpoint.clone(),
                        trials: self.trials.len(),
                    });
                }
                Trial { candidate: c.clone(), phase, budget, outcome, wall_s }
            }
        };
        self.trials.push(trial.clone());
        write_checkpoint(&self.plan.checkpoint, &self.plan.fingerprint(), &self.trials)?;
        self.bar.inc(1);
        if self.plan.progress {
            let line = match &trial.outcome {
                Outcome::Measured(m) => format!(
                    "  {:<8} {}: {:.2} ± {:.2} samples/s, P99 {:.2} ms, RSS {:.0} MiB",
                    format!("{phase:?}").to_lowercase(),
                    c.key(),
                    m.samples_per_s,
                    m.ci95,
                    m.p99_ms,
                    m.rss_mib
                ),
                Outcome::Failed { reason, .. } => format!(
                    "  {:<8} {}: failed: {reason}",
                    format!("{phase:?}").to_lowercase(),
                    c.key()
                ),
            };
            if self.bar.is_hidden() {
                eprintln!("{line}");
            } else {
                self.bar.println(line);
            }
            if let Some((best, m)) = self.best_explored() {
                self.bar.set_message(format!(
                    "best so far: {} ({:.2} samples/s)",
                    best.key(),
                    m.samples_per_s
                ));
            }
        }
        Ok(trial)
    }

    fn best_explored(&self) -> Option<(Candidate, Metrics)> {
        let plan = self.plan;
        self.trials
            .iter()
            .filter(|t| !t.candidate.probe)
            .filter_map(|t| t.metrics().map(|m| (t.candidate.clone(), m.clone())))
            .max_by(|a, b| rank(plan, &a.1).total_cmp(&rank(plan, &b.1)))
    }

    fn climb(&mut self, space: &EngineSpace, probe: Option<Candidate>) -> Result<(), TuneError> {
        let short = self.plan.short;
        // Every engine's start point runs if the whole budget allows, even past its share.
        if self.spent() + self.estimate(&short) > self.plan.budget_s {
            self.exhausted = true;
            return Ok(());
        }
        let first = self.measure(&space.start, Phase::Explore, short)?;
        let mut best = first.metrics().map(|m| (space.start.clone(), m.clone()));
        if let Some(probe) = probe
            && self.fits(&short)
        {
            self.measure(&probe, Phase::Probe, short)?;
        }
        let mut current = space.start.clone();
        // An engine whose first two configurations both fail (a crash on load, a library
        // that hangs) is abandoned: the rest would fail the same way.
        let mut failures = usize::from(best.is_none());
        for dim in &space.dims {
            for value in &dim.values {
                if *value == current.value(&dim.name) {
                    continue;
                }
                // A value under which calls are serialised is tried with one worker.
                let c = space.runnable(current.with(&dim.name, value));
                if c == current || self.trials.iter().any(|t| t.candidate == c) {
                    continue;
                }
                if !self.fits(&short) {
                    continue;
                }
                if best.is_none() && failures >= 2 {
                    return Ok(());
                }
                let t = self.measure(&c, Phase::Explore, short)?;
                failures += usize::from(t.metrics().is_none());
                if let Some(m) = t.metrics()
                    && best.as_ref().is_none_or(|(_, b)| rank(self.plan, m) > rank(self.plan, b))
                {
                    best = Some((c, m.clone()));
                }
            }
            if let Some((c, _)) = &best {
                current = c.clone();
            }
        }
        Ok(())
    }

    fn sweep(&mut self, space: &EngineSpace) -> Result<(), TuneError> {
        let short = self.plan.short;
        for c in space.all() {
            if !self.fits(&short) {
                break;
            }
            self.measure(&c, Phase::Explore, short)?;
        }
        Ok(())
    }
}

/// Part of the budget exploring may use.
const EXPLORE_SHARE: f64 = 0.7;

/// Feasible points first, then the objective: a single number to sort by.
fn rank(plan: &SearchPlan, m: &Metrics) -> f64 {
    let d = plan.constraints.distance(m);
    if d > 0.0 { -1e12 * (1.0 + d) } else { score(m, plan.objective) }
}

/// Runs the search. `check` runs a configuration's outputs against fp32 in a child; the pick
/// is the best finalist that passes it.
pub fn run(
    plan: &SearchPlan,
    check: &mut dyn FnMut(&Candidate) -> Result<Check, TuneError>,
) -> Result<Outcomes, TuneError> {
    let mut resumed: BTreeMap<(String, Phase), VecDeque<Trial>> = BTreeMap::new();
    for t in &plan.resumed {
        resumed.entry((t.candidate.key(), t.phase)).or_default().push_back(t.clone());
    }
    let space_size: usize = plan.spaces.iter().map(EngineSpace::size).sum();
    let planned: usize = match plan.strategy {
        Strategy::Climb => plan
            .spaces
            .iter()
            .map(|s| 1 + s.dims.iter().map(|d| d.values.len().saturating_sub(1)).sum::<usize>())
            .sum(),
        Strategy::Exhaustive => space_size,
    } + 1
        + plan.finalists
        + 2 * plan.confirm_rounds;
    let bar = if plan.progress {
        ProgressBar::with_draw_target(Some(planned as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len}  {msg}")
    {
        bar.set_style(style);
    }
    let mut search = Search {
        plan,
        trials: Vec::new(),
        resumed,
        start: Instant::now(),
        bar,
        exhausted: false,
        share_ends: None,
    };
    let probe = plan.spaces.first().map(|s| crate::space::oversubscribed_probe(s, plan.usable));
    // Exploring may use this much of the budget; the rest is for finalists and the default.
    let explore_end = plan.budget_s * EXPLORE_SHARE;
    for (i, space) in plan.spaces.iter().enumerate() {
        match plan.strategy {
            Strategy::Climb => {
                // Each engine left gets an equal part of what exploring has left, so that the
                // last engines are not starved by the first ones.
                let left = (explore_end - search.spent()).max(0.0);
                search.share_ends = Some(search.spent() + left / (plan.spaces.len() - i) as f64);
                search.climb(space, probe.clone().filter(|_| i == 0))?;
            }
            Strategy::Exhaustive => search.sweep(space)?,
        }
    }
    search.share_ends = None;
    // The finalists: the best distinct explored configurations (probes never).
    let mut explored: Vec<(Candidate, Metrics)> = Vec::new();
    for t in &search.trials {
        if let Some(m) = t.metrics()
            && !t.candidate.probe
            && t.candidate.threads() <= plan.usable.max(1) * inter_allowance(&t.candidate)
            && !explored.iter().any(|(c, _)| *c == t.candidate)
        {
            explored.push((t.candidate.clone(), m.clone()));
        }
    }
    let distinct_measured = explored.len();
    explored.sort_by(|a, b| rank(plan, &b.1).total_cmp(&rank(plan, &a.1)));
    // Finalists are compared on runs of one length: all re-measured longer when the budget
    // allows it for all of them, else all on their exploring runs.
    let chosen = contenders(&explored, &plan.constraints, plan.objective, plan.finalists);
    let longer = search.fits_n(&plan.long, chosen.len());
    let mut finals: Vec<(Candidate, Metrics)> = Vec::new();
    for (c, m) in chosen {
        if longer {
            let t = search.measure(c, Phase::Final, plan.long)?;
            if let Some(m) = t.metrics() {
                finals.push((c.clone(), m.clone()));
            }
        } else {
            finals.push((c.clone(), m.clone()));
        }
    }
    let feasible: Vec<(Candidate, Metrics)> =
        finals.into_iter().filter(|(_, m)| plan.constraints.distance(m) == 0.0).collect();
    let fp32: Vec<(Candidate, Metrics)> = explored
        .iter()
        .filter(|(c, m)| {
            plan.constraints.distance(m) == 0.0
                && c.options.get("precision").is_none_or(|p| p == "fp32")
        })
        .cloned()
        .collect();
    let measured = search.trials.len();
    let (winner, tied, checks, accuracy_unmet) =
        checked_pick(feasible, fp32, plan.objective, check).map_err(|e| match e {
            TuneError::Interrupted { checkpoint, .. } => {
                TuneError::Interrupted { checkpoint, trials: measured }
            }
            other => other,
        })?;
    let closest = if winner.is_none() {
        let mut all: Vec<&(Candidate, Metrics)> = explored.iter().collect();
        all.sort_by(|a, b| {
            plan.constraints.distance(&a.1).total_cmp(&plan.constraints.distance(&b.1))
        });
        all.iter()
            .take(3)
            .map(|(c, m)| (c.clone(), m.clone(), plan.constraints.misses(m)))
            .collect()
    } else {
        Vec::new()
    };
    let mut versus_default = None;
    if let Some((w, _)) = &winner {
        let mut winner_runs = Vec::new();
        let mut default_runs = Vec::new();
        let mut default_metrics = None;
        for _ in 0..plan.confirm_rounds {
            if !search.fits(&plan.long) {
                break;
            }
            let a = search.measure(w, Phase::Confirm, plan.long)?;
            let b = search.measure(&plan.default, Phase::Confirm, plan.long)?;
            if let (Some(a), Some(b)) = (a.metrics(), b.metrics()) {
                winner_runs.push(objective_value(a, plan.objective));
                default_runs.push(objective_value(b, plan.objective));
                default_metrics = Some(b.clone());
            }
        }
        if !winner_runs.is_empty() {
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let ratio = |a: f64, b: f64| match plan.objective {
                Objective::Throughput => a / b,
                Objective::Latency => b / a,
            };
            let ratios: Vec<f64> =
                winner_runs.iter().zip(&default_runs).map(|(a, b)| ratio(*a, *b)).collect();
            versus_default = Some(Versus {
                default: plan.default.clone(),
                speedup: ratio(mean(&winner_runs), mean(&default_runs)),
                band: (
                    ratios.iter().copied().fold(f64::INFINITY, f64::min),
                    ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                ),
                winner_runs,
                default_runs,
                default_metrics,
            });
        }
    }
    // The default is the engine's own numerics at fp32: what every check compares with, so it
    // needs none. When it beats the pick (a winner that is not the default), it is written.
    // Only a clear loss counts: every round's ratio below 1, and the default meeting the
    // constraints. The default runs fp32 with the engine's own numerics, so it meets any
    // accuracy target.
    let default_wins = versus_default.as_ref().is_some_and(|v| {
        v.band.1 < 1.0
            && v.default_metrics.as_ref().is_some_and(|m| plan.constraints.distance(m) == 0.0)
    }) && winner.as_ref().is_some_and(|(w, _)| w.key() != plan.default.key());
    let accuracy_unmet = accuracy_unmet && !default_wins;
    search.bar.finish_and_clear();
    Ok(Outcomes {
        checks,
        accuracy_unmet,
        default_wins,
        wall_s: search.spent(),
        budget_exhausted: search.exhausted,
        trials: search.trials,
        winner,
        tied,
        closest,
        versus_default,
        space_size,
        distinct_measured,
    })
}

/// What [`checked_pick`] decides: the winner, its ties, the checks run, and whether no
/// configuration checked met the accuracy target.
type CheckedPick = (Option<(Candidate, Metrics)>, Vec<String>, Vec<Check>, bool);

/// The pick whose outputs pass `check`: the best of `finals` ([`pick`]); when it fails, the
/// next best; when no finalist passes, the best fp32 configurations of `fp32` (ranked best
/// first). At most [`MAX_CHECKS`] checks; when none passes, the best fp32 configuration is
/// the winner, marked (`true`).
fn checked_pick(
    finals: Vec<(Candidate, Metrics)>,
    fp32: Vec<(Candidate, Metrics)>,
    objective: Objective,
    check: &mut dyn FnMut(&Candidate) -> Result<Check, TuneError>,
) -> Result<CheckedPick, TuneError> {
    let mut remaining = finals;
    let mut checks: Vec<Check> = Vec::new();
    let checked = |checks: &[Check], c: &Candidate| checks.iter().any(|k| k.candidate == c.key());
    // One check is kept for the best fp32 configuration, unless a finalist is that one.
    let reserve =
        usize::from(fp32.first().is_some_and(|(c, _)| !remaining.iter().any(|(f, _)| f == c)));
    while checks.len() < MAX_CHECKS - reserve {
        let refs: Vec<&(Candidate, Metrics)> = remaining.iter().collect();
        let (Some(w), tied) = pick(&refs, objective) else { break };
        let verdict = check(&w.0)?;
        let pass = verdict.pass;
        checks.push(verdict);
        if pass {
            return Ok((Some(w), tied, checks, false));
        }
        remaining.retain(|(c, _)| *c != w.0);
    }
    for (c, m) in &fp32 {
        if checks.len() >= MAX_CHECKS {
            break;
        }
        if checked(&checks, c) {
            continue;
        }
        let verdict = check(c)?;
        let pass = verdict.pass;
        checks.push(verdict);
        if pass {
            return Ok((Some((c.clone(), m.clone())), Vec::new(), checks, false));
        }
    }
    // None passed: the best fp32 configuration, marked; without one, nothing is written.
    let unmet = !checks.is_empty();
    Ok((fp32.first().cloned(), Vec::new(), checks, unmet))
}

/// The finalists re-measured longer, from `explored` ranked best first: the leader and, up to
/// `n` in all, those next best whose short-run intervals reach the leader's (the others cannot
/// win on a longer run any more than they could tie it here).
fn contenders<'a>(
    explored: &'a [(Candidate, Metrics)],
    constraints: &Constraints,
    objective: Objective,
    n: usize,
) -> Vec<&'a (Candidate, Metrics)> {
    let Some(leader) = explored.first() else { return Vec::new() };
    // Latency runs have one worker and no interval: short ones count within 10 % of the leader.
    let reaches =
        |m: &Metrics| constraints.distance(m) == 0.0 && within_noise(m, &leader.1, objective, 1.1);
    std::iter::once(leader)
        .chain(explored.iter().skip(1).filter(|(_, m)| reaches(m)))
        .take(n)
        .collect()
}

/// Inter-op threads are not all busy at once (they run independent operators): a candidate
/// with inter-op threads may exceed the cores by that factor and still be proposed.
fn inter_allowance(c: &Candidate) -> usize {
    c.options.get("inter_op_threads").and_then(|v| v.parse().ok()).unwrap_or(1usize).max(1)
}

fn objective_value(m: &Metrics, objective: Objective) -> f64 {
    match objective {
        Objective::Throughput => m.samples_per_s,
        Objective::Latency => m.p50_ms,
    }
}

/// Whether `m` could be as good as `best`: their 95 % intervals overlap (throughput), or its
/// median latency is within `latency_band` times the best's (latency runs have no interval).
fn within_noise(m: &Metrics, best: &Metrics, objective: Objective, latency_band: f64) -> bool {
    match objective {
        Objective::Throughput => m.samples_per_s + m.ci95 >= best.samples_per_s - best.ci95,
        Objective::Latency => m.p50_ms <= best.p50_ms * latency_band,
    }
}

/// Relative RSS difference below which two configurations' memory counts as equal.
const RSS_NOISE: f64 = 0.05;

/// The best finalist; those whose confidence intervals overlap it are ties, settled by fewer
/// threads, then fp32 over a reduced precision, then less memory (beyond `RSS_NOISE`), then
/// the better measurement.
fn pick(
    finals: &[&(Candidate, Metrics)],
    objective: Objective,
) -> (Option<(Candidate, Metrics)>, Vec<String>) {
    let Some(best) =
        finals.iter().max_by(|a, b| score(&a.1, objective).total_cmp(&score(&b.1, objective)))
    else {
        return (None, Vec::new());
    };
    // Latency runs have one worker: a 3 % band stands for the noise of a final run.
    let mut tied: Vec<&&(Candidate, Metrics)> =
        finals.iter().filter(|(_, m)| within_noise(m, &best.1, objective, 1.03)).collect();
    // Fewer threads first. Then memory, but only where it differs by more than its own noise
    // (RSS moves by a few per cent between runs of one configuration): among those within
    // that band of the least, the better measurement wins.
    let Some(threads) = tied.iter().map(|t| t.0.threads()).min() else {
        return (None, Vec::new());
    };
    // Then fp32 over a reduced precision: exact numerics cost nothing when the speed ties.
    let reduced = |c: &Candidate| c.options.get("precision").is_some_and(|p| p != "fp32");
    let fewest: Vec<&&(Candidate, Metrics)> =
        tied.iter().copied().filter(|t| t.0.threads() == threads).collect();
    let fewest: Vec<&&(Candidate, Metrics)> = if fewest.iter().any(|t| !reduced(&t.0)) {
        fewest.into_iter().filter(|t| !reduced(&t.0)).collect()
    } else {
        fewest
    };
    let least_rss = fewest.iter().map(|t| t.1.rss_mib).fold(f64::INFINITY, f64::min);
    let winner = fewest
        .iter()
        .filter(|t| t.1.rss_mib <= least_rss * (1.0 + RSS_NOISE))
        .max_by(|a, b| score(&a.1, objective).total_cmp(&score(&b.1, objective)))
        .map(|w| (w.0.clone(), w.1.clone()));
    tied.sort_by(|a, b| score(&b.1, objective).total_cmp(&score(&a.1, objective)));
    let names = tied
        .iter()
        .filter(|t| winner.as_ref().is_none_or(|w| w.0 != t.0))
        .map(|t| t.0.key())
        .collect();
    (winner, names)
}

/// The checkpoint file: the search's fingerprint and every finished measurement.
#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    schema: String,
    /// What was searched ([`SearchPlan::fingerprint`]): a resume of another search is refused.
    fingerprint: String,
    trials: Vec<Trial>,
}

const CHECKPOINT_SCHEMA: &str = "thrum-tune-checkpoint/2";

impl SearchPlan {
    /// What makes two searches' measurements interchangeable: the model (a file by its size
    /// and modification time too), the engines, the usable cores, how candidates are measured
    /// (budgets, the workload's arguments) and the objective.
    pub fn fingerprint(&self) -> String {
        let model = &self.launcher.model;
        let file = std::fs::metadata(model).ok().map(|m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            format!(" ({} bytes, modified {modified})", m.len())
        });
        format!(
            "model {model}{}; engines {}; {} usable cores; runs {:?} / {:?}; workload [{}]; objective {:?}{}",
            file.unwrap_or_default(),
            self.spaces.iter().map(|s| s.engine.as_str()).collect::<Vec<_>>().join(","),
            self.usable,
            self.short,
            self.long,
            self.launcher.extra_args.join(" "),
            self.objective,
            // The precisions each engine searches (they passed its accuracy gate), the
            // settings each needs, and the int8 graph they run, by its content.
            self.spaces
                .iter()
                .filter_map(|s| {
                    let d = s.dims.iter().find(|d| d.name == crate::space::PRECISION)?;
                    Some(format!(
                        "; {} precisions {} {:?}",
                        s.engine,
                        d.values.join(","),
                        s.precision_needs
                    ))
                })
                .collect::<String>()
                + &self
                    .launcher
                    .int8_models
                    .iter()
                    // Each file once (the engines of a text model share one).
                    .fold(BTreeMap::<&String, Vec<&str>>::new(), |mut by_file, (engine, m)| {
                        by_file.entry(m).or_default().push(engine.as_str());
                        by_file
                    })
                    .into_iter()
                    .map(|(m, engines)| {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        std::fs::read(m).unwrap_or_default().hash(&mut h);
                        format!("; {} int8 model {:016x}", engines.join(","), h.finish())
                    })
                    .collect::<String>(),
        )
    }
}

fn write_checkpoint(path: &Path, fingerprint: &str, trials: &[Trial]) -> Result<(), TuneError> {
    let file = CheckpointFile {
        schema: CHECKPOINT_SCHEMA.into(),
        fingerprint: fingerprint.into(),
        trials: trials.to_vec(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| TuneError::write(path, e))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|e| TuneError::write(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TuneError::write(path, e))
}

/// Reads a checkpoint written by an interrupted run of the search whose fingerprint is
/// `fingerprint`; another search's is refused, saying how the two differ.
pub fn read_checkpoint(path: &Path, fingerprint: &str) -> Result<Vec<Trial>, TuneError> {
    let bad = |reason: String| TuneError::File {
        action: "resume from",
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let file: CheckpointFile =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a tune checkpoint ({e})")))?;
    if file.schema != CHECKPOINT_SCHEMA {
        return Err(bad(format!("schema `{}`, expected `{CHECKPOINT_SCHEMA}`", file.schema)));
    }
    if file.fingerprint != fingerprint {
        return Err(bad(format!(
            "it was written by another search ({}), and this one is {fingerprint}; its \
             measurements do not apply: run without --resume, or with the same model, engines, \
             cores and budgets",
            file.fingerprint
        )));
    }
    Ok(file.trials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(workers: usize, samples_per_s: f64, ci95: f64) -> (Candidate, Metrics) {
        let c = Candidate {
            engine: "ort".into(),
            workers,
            intra: 1,
            batch: 1,
            predictor: thrum_core::PredictorKind::PerThread,
            options: BTreeMap::new(),
            probe: false,
        };
        let m = Metrics {
            samples_per_s,
            ci95,
            p50_ms: 1000.0 / samples_per_s,
            p99_ms: 1000.0 / samples_per_s,
            rss_mib: 100.0,
            cores_busy: 1.0,
            windows: 4,
            stable: true,
        };
        (c, m)
    }

    #[test]
    fn a_checkpoint_of_another_search_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.json");
        write_checkpoint(&path, "model zoo:mlp; engines tract", &[]).unwrap();
        assert!(read_checkpoint(&path, "model zoo:mlp; engines tract").unwrap().is_empty());
        let err = read_checkpoint(&path, "model zoo:resnet50; engines tract").unwrap_err();
        let err = err.to_string();
        assert!(err.contains("written by another search (model zoo:mlp"), "{err}");
        assert!(err.contains("run without --resume"), "{err}");
    }

    #[test]
    fn a_limit_on_a_metric_that_was_not_measured_is_missed() {
        let (_, mut m) = point(1, 10.0, 0.1);
        m.rss_mib = f64::NAN;
        let limits = Constraints { max_p99_ms: None, max_rss_mib: Some(500.0) };
        let misses = limits.misses(&m);
        assert_eq!(misses.len(), 1, "{misses:?}");
        assert!(misses[0].contains("RSS not measured"), "{misses:?}");
        assert!(limits.distance(&m) > 1e9);
        assert!(Constraints::default().misses(&m).is_empty());
    }

    #[test]
    fn only_configurations_reaching_the_leader_are_remeasured() {
        // Leader 17.6 ± 0.1: 16.4 ± 4.2 and 17.0 ± 1 reach it, 15.5 ± 1.8 does not; a limit
        // of two keeps the leader and the first that reaches it.
        let explored = vec![
            point(1, 17.6, 0.1),
            point(2, 16.4, 4.2),
            point(3, 15.5, 1.8),
            point(4, 17.0, 1.0),
        ];
        let picked = contenders(&explored, &Constraints::default(), Objective::Throughput, 3);
        let workers: Vec<usize> = picked.iter().map(|(c, _)| c.workers).collect();
        assert_eq!(workers, vec![1, 2, 4]);
        let picked = contenders(&explored, &Constraints::default(), Objective::Throughput, 2);
        assert_eq!(picked.len(), 2);
        assert!(contenders(&[], &Constraints::default(), Objective::Throughput, 3).is_empty());
        // A clear winner is re-measured alone.
        let alone = vec![point(1, 20.0, 0.5), point(2, 15.0, 1.0)];
        assert_eq!(contenders(&alone, &Constraints::default(), Objective::Throughput, 3).len(), 1);
    }

    #[test]
    fn ties_go_to_fewer_threads_then_clearly_less_memory_then_the_faster() {
        let mut fast = point(2, 15.8, 0.9);
        fast.1.rss_mib = 426.0;
        let mut slow = point(2, 14.6, 2.0);
        slow.0.predictor = thrum_core::PredictorKind::Shared;
        slow.1.rss_mib = 424.0;
        // 2 MiB is noise: the faster of the tied pair wins.
        let (w, tied) = pick(&[&slow, &fast], Objective::Throughput);
        assert_eq!(w.unwrap().1.samples_per_s, 15.8);
        assert_eq!(tied.len(), 1);
        // A quarter less memory is not.
        slow.1.rss_mib = 320.0;
        let (w, _) = pick(&[&fast, &slow], Objective::Throughput);
        assert_eq!(w.unwrap().1.samples_per_s, 14.6);
        // Fewer threads first: one worker beats two when they tie.
        let one = point(1, 15.0, 1.0);
        let (w, _) = pick(&[&fast, &one], Objective::Throughput);
        assert_eq!(w.unwrap().0.workers, 1);
        // Then fp32 over int8 when their speeds tie.
        let mut int8 = point(1, 15.5, 1.0);
        int8.0.options.insert("precision".into(), "int8".into());
        let (w, _) = pick(&[&int8, &one], Objective::Throughput);
        assert!(!w.unwrap().0.options.contains_key("precision"));
        // A clearly faster int8 wins.
        int8.1.samples_per_s = 30.0;
        let (w, _) = pick(&[&int8, &one], Objective::Throughput);
        assert_eq!(w.unwrap().0.options["precision"], "int8");
    }

    #[test]
    fn a_pick_failing_its_check_gives_way_to_the_next_and_none_passing_marks_fp32() {
        let mut int8 = point(2, 30.0, 0.5);
        int8.0.options.insert("precision".into(), "int8".into());
        let fp32 = point(2, 17.0, 0.5);
        let slow = point(1, 10.0, 0.5);
        // int8 fails its check: the next finalist, fp32, is checked and wins.
        let mut asked = Vec::new();
        let mut verdicts = |c: &Candidate| {
            asked.push(c.key());
            Ok(Check {
                candidate: c.key(),
                pass: !c.key().contains("int8"),
                summary: String::new(),
            })
        };
        let (w, _, checks, unmet) = checked_pick(
            vec![int8.clone(), fp32.clone()],
            vec![fp32.clone(), slow.clone()],
            Objective::Throughput,
            &mut verdicts,
        )
        .unwrap();
        assert_eq!(w.unwrap().0, fp32.0);
        assert_eq!(checks.len(), 2);
        assert!(!unmet);
        assert_eq!(asked.len(), 2);
        // Nothing passes: finalists, then fp32 configurations not yet checked, at most
        // MAX_CHECKS in all; the best fp32 one is the winner, marked.
        let mut never =
            |c: &Candidate| Ok(Check { candidate: c.key(), pass: false, summary: "short".into() });
        let (w, _, checks, unmet) = checked_pick(
            vec![int8, fp32.clone()],
            vec![fp32.clone(), slow],
            Objective::Throughput,
            &mut never,
        )
        .unwrap();
        assert_eq!(w.unwrap().0, fp32.0);
        assert!(unmet);
        let keys: Vec<&str> = checks.iter().map(|c| c.candidate.as_str()).collect();
        assert_eq!(keys.len(), 3, "each configuration checked once: {keys:?}");
        assert!(checks.len() <= MAX_CHECKS);
    }

    #[test]
    fn a_check_is_kept_for_fp32_when_every_finalist_is_reduced() {
        let finals: Vec<(Candidate, Metrics)> = (1..=4)
            .map(|w| {
                let mut p = point(w, 40.0 - w as f64, 0.1);
                p.0.options.insert("precision".into(), "int8".into());
                p
            })
            .collect();
        let fp32 = point(2, 17.0, 0.5);
        let mut passes_fp32 = |c: &Candidate| {
            Ok(Check {
                candidate: c.key(),
                pass: !c.key().contains("int8"),
                summary: String::new(),
            })
        };
        let (w, _, checks, unmet) =
            checked_pick(finals, vec![fp32.clone()], Objective::Throughput, &mut passes_fp32)
                .unwrap();
        assert_eq!(checks.len(), MAX_CHECKS);
        assert_eq!(w.unwrap().0, fp32.0, "the fp32 configuration was checked and passed");
        assert!(!unmet);
    }
}
