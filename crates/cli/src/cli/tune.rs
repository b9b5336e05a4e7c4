//! `thrum tune`: the agreement check, then a search over engines, threads, batch and engine
//! settings, each configuration measured in a child `thrum bench`; writes the ranked table,
//! the Pareto plot, a JSON report and the winner's `thrum.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::{Args, ValueEnum};
use thrum::{Engine, ModelRef, Options};
use thrum_tune::TuneError;
use thrum_tune::child::{Budget, INTERRUPTED, Launcher};
use thrum_tune::compare::DEFAULT_TOLERANCE;
use thrum_tune::report::{self, TuneReport};
use thrum_tune::search::{self, Constraints, SearchPlan, Strategy};
use thrum_tune::space::{self, Candidate, Limits, Objective};

use super::compare::run_comparison;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  thrum tune -p zoo:resnet50 --budget 5m\n  thrum tune -p model.onnx -e tract,ort --max-p99 50 -o tuned/\n  thrum tune -p zoo:mlp --objective latency --json -\n  thrum tune -p zoo:resnet50 --resume            # continue an interrupted run\n\nThen: thrum bench --config thrum-tune/thrum.toml, thrum serve --config thrum-tune/thrum.toml"
)]
pub struct TuneArgs {
    /// Model file, or zoo:NAME.
    #[arg(short = 'p', long = "model-path", value_name = "MODEL")]
    model_path: String,

    /// Engines to consider, comma-separated. Default: every engine compiled in, installed and
    /// reading the model's format.
    #[arg(short, long, value_name = "E1,E2", value_delimiter = ',')]
    engines: Vec<String>,

    /// What to maximise: throughput (samples/s, every usable core busy) or latency (one
    /// stream's median).
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Throughput)]
    objective: ObjectiveArg,

    /// Largest acceptable P99 latency, ms.
    #[arg(long, value_name = "MS", value_parser = positive)]
    max_p99: Option<f64>,

    /// Largest acceptable peak RSS, MiB.
    #[arg(long, value_name = "MIB", value_parser = positive)]
    max_rss: Option<f64>,

    /// Largest batch size tried (models with a dynamic batch axis).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_batch: u32,

    /// A text-embedding model (zoo:all-minilm-l6-v2): measure the whole pipeline (tokenize,
    /// infer, pool) on the texts of FILE, one per line, as `thrum bench --text-file` does.
    #[arg(long, value_name = "FILE", conflicts_with = "image_dir")]
    text_file: Option<PathBuf>,

    /// An image model (zoo:efficientnet-lite0): measure the whole pipeline (decode, resize,
    /// infer, top-k) on the images of DIR, as `thrum bench --image-dir` does.
    #[arg(long, value_name = "DIR", conflicts_with = "file_dir")]
    image_dir: Option<PathBuf>,

    /// A content-type model (zoo:magika): measure the whole pipeline (each file's ends as
    /// tokens, infer, Magika's rules) on the files of DIR, as `thrum bench --file-dir` does.
    #[arg(long, value_name = "DIR", conflicts_with = "text_file")]
    file_dir: Option<PathBuf>,

    /// Pin the batch size instead of searching it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: Option<u32>,

    /// Wall-clock budget: 90s, 5m, 1h, or seconds.
    #[arg(long, value_name = "TIME", default_value = "5m", value_parser = duration)]
    budget: f64,

    /// climb (hill climbing per engine) or exhaustive (every point of the grid).
    #[arg(long, value_enum, default_value_t = StrategyArg::Climb)]
    search: StrategyArg,

    /// Options pinned rather than searched (KEY=V,...; any option key).
    #[arg(long, value_name = "K=V,...")]
    fixed: Option<String>,

    /// Longest exploring measurement, seconds (finalists get 3×). Default: from the model's
    /// single-call latency.
    #[arg(long, value_name = "S", value_parser = positive)]
    measure_s: Option<f64>,

    /// Seconds a child may spend starting, loading and warming up before it is killed.
    #[arg(long, value_name = "S", default_value_t = 120.0, value_parser = positive)]
    timeout: f64,

    /// The executable children run as `EXE bench …` (default: this thrum); for a wrapper
    /// script that pins children (numactl, taskset) or for tests.
    #[arg(long, value_name = "PATH", hide = true)]
    bench_exe: Option<PathBuf>,

    /// Relative tolerance of the agreement check.
    #[arg(long, value_name = "REL", default_value_t = DEFAULT_TOLERANCE)]
    tolerance: f64,

    /// Directory for thrum.toml, tune.json, pareto.svg and checkpoint.json.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR", default_value = "thrum-tune")]
    output_dir: PathBuf,

    /// Continue an interrupted run from the output directory's checkpoint.json.
    #[arg(long)]
    resume: bool,

    /// Also write the JSON report to FILE ('-' for stdout).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Rows of the ranked table printed.
    #[arg(long, value_name = "N", default_value_t = 15)]
    rows: usize,

    /// No progress and no per-measurement lines.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ObjectiveArg {
    Throughput,
    Latency,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StrategyArg {
    Climb,
    Exhaustive,
}

fn positive(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err("expected a number above 0".into()),
    }
}

/// `path` (given as `flag`) made absolute, for children that may run elsewhere; it must exist.
fn absolute(flag: &str, path: &Path) -> anyhow::Result<String> {
    let full = std::fs::canonicalize(path)
        .with_context(|| format!("{flag} `{}` cannot be read", path.display()))?;
    Ok(full.to_string_lossy().into_owned())
}

/// `90s`, `5m`, `1h`, `1.5m` or plain seconds.
fn duration(v: &str) -> Result<f64, String> {
    let v = v.trim();
    let (number, unit) = match v.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "s"),
    };
    let scale = match unit {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit `{unit}`; expected s, m or h (e.g. 90s, 5m)")),
    };
    match number.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x * scale),
        _ => Err("expected a duration above 0, e.g. 90s, 5m, 1h".into()),
    }
}

/// A validated `tune` command.
pub struct TunePlan {
    args: TuneArgs,
    model: ModelRef,
    engines: Vec<Arc<dyn Engine>>,
    fixed: BTreeMap<String, String>,
}

impl TunePlan {
    pub fn from_args(args: TuneArgs) -> anyhow::Result<TunePlan> {
        let model = ModelRef::parse(&args.model_path)?;
        let registry = thrum::registry();
        let engines = if args.engines.is_empty() {
            registry.engines().cloned().collect()
        } else {
            args.engines.iter().map(|e| registry.get(e)).collect::<Result<Vec<_>, _>>()?
        };
        let mut fixed = BTreeMap::new();
        if let Some(pairs) = &args.fixed {
            let mut options = Options::default();
            options.apply_pairs(pairs)?;
            for (k, v) in options.set_pairs() {
                if matches!(k, "intra_op_threads" | "predictor") {
                    return Err(TuneError::Config {
                        what: format!("--fixed {k}"),
                        expected: "engine keys, inter_op_threads or onednn (threads, batch and \
                                   predictor are searched; --batch pins the batch)"
                            .into(),
                    }
                    .into());
                }
                fixed.insert(k.to_string(), v);
            }
        }
        if args.batch.is_some_and(|b| b > args.max_batch) {
            return Err(TuneError::Config {
                what: format!(
                    "--batch {} above --max-batch {}",
                    args.batch.unwrap_or(0),
                    args.max_batch
                ),
                expected: "a batch within --max-batch".into(),
            }
            .into());
        }
        Ok(TunePlan { args, model, engines, fixed })
    }

    pub fn run(self) -> anyhow::Result<()> {
        let a = &self.args;
        let cores = thrum_bench::system::cores();
        let say = |line: String| {
            if !a.quiet {
                eprintln!("{line}");
            }
        };
        say(format!(
            "cores: {} usable (affinity {}, cgroup quota {}); {} logical, {} physical",
            cores.usable,
            cores.affinity.map_or("?".into(), |n| n.to_string()),
            cores.cgroup_quota.map_or("none".into(), |q| format!("{q:.2}")),
            cores.available_parallelism,
            cores.physical.map_or("?".into(), |n| n.to_string()),
        ));
        // Outputs first: a directory that cannot be written fails before any measurement.
        let dir = &a.output_dir;
        std::fs::create_dir_all(dir).map_err(|e| {
            TuneError::write(dir, format!("cannot create the output directory: {e}"))
        })?;
        let checkpoint = thrum_tune::child::checkpoint_path(dir);
        std::fs::write(dir.join(".thrum-write-test"), b"").map_err(|e| {
            TuneError::write(dir, format!("the output directory is not writable: {e}"))
        })?;
        let _ = std::fs::remove_file(dir.join(".thrum-write-test"));
        if let Some(json) = &a.json
            && json != Path::new("-")
            && let Some(parent) = json.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(TuneError::write(
                json,
                format!("directory `{}` does not exist", parent.display()),
            )
            .into());
        }
        ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;

        say(format!("agreement check: running {} on the same seeded input", a.model_path));
        let comparison = run_comparison(
            &a.model_path,
            &self.model,
            &self.engines,
            !a.engines.is_empty(),
            a.tolerance,
        )?;
        if !a.quiet {
            comparison.write_table(&mut std::io::stderr().lock())?;
        }
        let mut excluded: Vec<(String, String)> =
            comparison.failures.iter().map(|f| (f.engine.clone(), f.reason.clone())).collect();
        for engine in comparison.disagreeing() {
            let worst = comparison
                .diffs
                .iter()
                .filter(|d| d.engine == engine && !d.agrees)
                .map(|d| format!("output {} max rel {:.2e}", d.output, d.max_rel))
                .collect::<Vec<_>>()
                .join(", ");
            excluded.push((engine, format!("disagrees with the reference: {worst}")));
        }
        let agreeing = comparison.agreeing();
        if agreeing.is_empty() {
            return Err(TuneError::NoEngine { model: a.model_path.clone(), tried: excluded }.into());
        }
        let objective = match a.objective {
            ObjectiveArg::Throughput => Objective::Throughput,
            ObjectiveArg::Latency => Objective::Latency,
        };
        let limits = Limits {
            usable: cores.usable,
            objective,
            batch: a.batch.map(|b| b as usize),
            max_batch: a.max_batch as usize,
            fixed: self.fixed.clone(),
        };
        let mut spaces = Vec::new();
        for engine in self.engines.iter().filter(|e| agreeing.iter().any(|n| n == e.name())) {
            let Some(run) = comparison.run(engine.name()) else { continue };
            let caps = engine.capabilities();
            spaces.push(space::engine_space(engine.info(), &caps, run, &limits));
        }
        // Measurement lengths from the fastest engine's single call: windows of a few calls.
        let call_s = comparison.runs.iter().map(|r| r.call_ms).fold(f64::INFINITY, f64::min) / 1e3;
        // A window holds about a dozen calls, so that counting whole calls in it is not noise.
        let window_s = (call_s * 12.0).clamp(0.25, 2.0);
        let short_s = a.measure_s.unwrap_or((window_s * 4.0).max(1.0));
        let short = Budget {
            max_s: short_s,
            window_s: window_s.min(short_s / 3.0),
            stability_percent: 5.0,
        };
        let long = Budget { max_s: short_s * 3.0, ..short };
        // One measurement's cost: a process start, the slowest engine's load and first call.
        let setup_s =
            comparison.runs.iter().map(|r| (r.load_ms + r.first_call_ms) / 1e3).fold(0.0, f64::max)
                + 0.5;
        let one = setup_s + short.max_s;
        if a.budget < one {
            return Err(TuneError::BudgetTooSmall {
                budget_s: a.budget,
                needed_s: one,
                measure_s: short.max_s,
                suggest: format!("{:.0}s", (one * 20.0).ceil()),
            }
            .into());
        }
        let default_engine = if agreeing.iter().any(|e| e == "tract") {
            "tract".to_string()
        } else {
            agreeing[0].clone()
        };
        let default = Candidate {
            engine: default_engine,
            workers: match objective {
                Objective::Throughput => cores.usable,
                Objective::Latency => 1,
            },
            intra: 1,
            batch: a.batch.map_or(1, |b| b as usize),
            predictor: thrum::PredictorKind::PerThread,
            options: BTreeMap::new(),
            probe: false,
        };
        let exe = match &a.bench_exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("cannot find the `thrum` executable")?,
        };
        let mut plan = SearchPlan {
            spaces: spaces.clone(),
            launcher: Launcher {
                exe,
                model: a.model_path.clone(),
                setup_timeout_s: a.timeout,
                extra_args: match (&a.text_file, &a.image_dir, &a.file_dir) {
                    (Some(file), _, _) => {
                        vec!["--text-file".into(), absolute("--text-file", file)?]
                    }
                    (None, Some(dir), _) => {
                        vec!["--image-dir".into(), absolute("--image-dir", dir)?]
                    }
                    (None, None, Some(dir)) => {
                        vec!["--file-dir".into(), absolute("--file-dir", dir)?]
                    }
                    (None, None, None) => Vec::new(),
                },
            },
            objective,
            constraints: Constraints { max_p99_ms: a.max_p99, max_rss_mib: a.max_rss },
            budget_s: a.budget,
            short,
            long,
            finalists: 3,
            confirm_rounds: 3,
            default,
            strategy: match a.search {
                StrategyArg::Climb => Strategy::Climb,
                StrategyArg::Exhaustive => Strategy::Exhaustive,
            },
            usable: cores.usable,
            checkpoint: checkpoint.clone(),
            resumed: Vec::new(),
            first_estimate_s: setup_s,
            progress: !a.quiet,
        };
        say(format!(
            "search: {} engine(s), {} configurations in the grid; measuring up to {:.1} s each \
             (finalists {:.1} s), budget {:.0} s",
            spaces.len(),
            spaces.iter().map(|s| s.size()).sum::<usize>(),
            short.max_s,
            long.max_s,
            a.budget
        ));
        if a.resume {
            plan.resumed = search::read_checkpoint(&checkpoint, &plan.fingerprint())?;
        }
        let outcome = search::run(&plan)?;
        let ranked = report::ranked(&outcome, objective, &plan.constraints);
        report::write_summary(&mut std::io::stdout().lock(), &ranked, &outcome, objective, a.rows)?;

        let report = TuneReport {
            schema: "thrum-tune/1",
            model: &a.model_path,
            cores: &cores,
            objective,
            constraints: plan.constraints,
            strategy: plan.strategy,
            budget_s: a.budget,
            comparison: &comparison,
            excluded: &excluded,
            spaces: &spaces,
            ranked: ranked.clone(),
            outcome: &outcome,
        };
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(dir.join("tune.json"), &json)
            .map_err(|e| TuneError::write(&dir.join("tune.json"), e))?;
        if let Some(path) = &a.json {
            super::report::write_output(path, &json)?;
        }
        let plot = dir.join("pareto.svg");
        report::plot(
            &ranked,
            &format!("{}: throughput vs P99, every engine", a.model_path),
            &plot,
        )?;
        if let Some((c, m)) = &outcome.winner {
            let (name, model) = match &self.model {
                ModelRef::Path(p) => (
                    p.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned()),
                    std::fs::canonicalize(p).unwrap_or(p.clone()).display().to_string(),
                ),
                ModelRef::Zoo(_) | ModelRef::Pretrained(_) => {
                    (self.model.zoo_name().unwrap_or("model").to_string(), a.model_path.clone())
                }
            };
            let toml_path = dir.join("thrum.toml");
            std::fs::write(&toml_path, report::thrum_toml(&name, &model, c, m, cores.usable))
                .map_err(|e| TuneError::write(&toml_path, e))?;
            say(format!(
                "wrote {} (thrum bench --config / thrum serve --config), tune.json, pareto.svg",
                toml_path.display()
            ));
            return Ok(());
        }
        if let Some((c, _, misses)) = outcome.closest.first() {
            return Err(TuneError::Unmet {
                closest: format!("{} misses {}", c.key(), misses.join(", ")),
            }
            .into());
        }
        let first = outcome.trials.iter().find_map(|t| match &t.outcome {
            thrum_tune::child::Outcome::Failed { reason, stderr_tail } => Some(format!(
                "{}: {reason}{}",
                t.candidate.key(),
                stderr_tail.lines().last().map(|l| format!(" ({l})")).unwrap_or_default()
            )),
            thrum_tune::child::Outcome::Measured(_) => None,
        });
        Err(TuneError::AllFailed {
            first: first.unwrap_or_else(|| "nothing was measured within the budget".into()),
        }
        .into())
    }
}
