//! `thrum tune`: the agreement check, then a search over engines, threads, batch and engine
//! settings, each configuration measured in a child `thrum bench`; writes the ranked table,
//! the Pareto plot, a JSON report and the winner's `thrum.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::{Args, ValueEnum};
use thrum::{Engine, ModelFormat, ModelRef, Options, Precision};
use thrum_tune::TuneError;
use thrum_tune::child::{Budget, INTERRUPTED, Launcher};
use thrum_tune::compare::DEFAULT_TOLERANCE;
use thrum_tune::report::{self, TuneReport};
use thrum_tune::search::{self, Constraints, SearchPlan, Strategy};
use thrum_tune::space::{self, Candidate, Limits, Objective};

use super::compare::run_comparison;
use super::options::ImageRecipeArgs;
use super::samples::SampleSource;
use thrum_tune::accuracy::{PrecisionSearch, Screen};

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

    /// With --image-dir or --calibration-images: their pre-processing, for an image model
    /// file (given to every bench and check the tuner runs).
    #[command(flatten)]
    image_recipe: ImageRecipeArgs,

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

    /// The executable children run as `EXE bench …` and `EXE compare …` (the accuracy
    /// checks; default: this thrum); for a wrapper script that pins children (numactl,
    /// taskset) or for tests.
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

    /// Precisions searched: auto (fp32, plus bf16 and int8 where this CPU has units for them:
    /// AVX512-BF16 or AMX, VNNI or AMX) or a list (fp32,bf16,fp16,int8). Each is first checked
    /// against fp32 on every engine (a child `thrum compare --precision`); one below
    /// --min-accuracy is not searched. int8 runs the model quantized as `thrum quantize` does,
    /// in the form each engine runs fastest.
    #[arg(long, value_name = "auto|P1,P2", default_value = "auto")]
    precision: String,

    /// The accuracy a configuration must keep, as a fraction of fp32: top-1 agreement for a
    /// classifier, mean cosine otherwise (MLPerf's closed division: 0.99). The pick's own
    /// outputs are checked against it in a child before thrum.toml is written.
    #[arg(long, value_name = "FRACTION", default_value_t = thrum_tune::accuracy::DEFAULT_TARGET)]
    min_accuracy: f64,

    /// What --min-accuracy measures: top1, cosine, or auto (top1 when the first output is
    /// [1, classes], else cosine).
    #[arg(long, value_name = "METRIC", default_value = "auto", value_parser = ["auto", "top1", "cosine"])]
    metric: String,

    /// Samples the accuracy checks run (--image-dir's images, else seeded inputs).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    accuracy_samples: u32,

    /// Calibration images for the int8 model (default: seeded inputs, other than the checks').
    #[arg(long, value_name = "DIR", conflicts_with = "calibration_npy")]
    calibration_images: Option<PathBuf>,

    /// Calibration .npy files for the int8 model.
    #[arg(long, value_name = "DIR")]
    calibration_npy: Option<PathBuf>,

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
    /// `--precision` as given: `None` for auto (decided from the CPU when it runs).
    precisions: Option<Vec<Precision>>,
}

impl TunePlan {
    pub fn from_args(args: TuneArgs) -> anyhow::Result<TunePlan> {
        let model = ModelRef::parse(&args.model_path)?;
        args.image_recipe.recipe(&model)?;
        if let Some(flag) = args.image_recipe.first_given()
            && args.image_dir.is_none()
            && args.calibration_images.is_none()
        {
            anyhow::bail!(
                "{flag} pre-processes --image-dir and --calibration-images; neither is given"
            );
        }
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
                if k == "precision" {
                    return Err(TuneError::Config {
                        what: "--fixed precision".into(),
                        expected: "--precision P (searched against fp32, the reference, and \
                                   checked against --min-accuracy)"
                            .into(),
                    }
                    .into());
                }
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
        if !(args.min_accuracy > 0.0 && args.min_accuracy <= 1.0) {
            return Err(TuneError::Config {
                what: format!("--min-accuracy {}", args.min_accuracy),
                expected: "a fraction of fp32 above 0 and at most 1 (0.99: 99 %)".into(),
            }
            .into());
        }
        let precisions = if args.precision.trim() == "auto" {
            None
        } else {
            let mut list = vec![Precision::Fp32];
            for p in args.precision.split(',') {
                let p: Precision = p.parse()?;
                if !list.contains(&p) {
                    list.push(p);
                }
            }
            Some(list)
        };
        Ok(TunePlan { args, model, engines, fixed, precisions })
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
            .context("cannot install the handler of Ctrl-C and SIGTERM")?;

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
        let mut launcher = Launcher {
            exe,
            model: a.model_path.clone(),
            setup_timeout_s: a.timeout,
            extra_args: match (&a.text_file, &a.image_dir, &a.file_dir) {
                (Some(file), _, _) => vec!["--text-file".into(), absolute("--text-file", file)?],
                (None, Some(dir), _) => vec!["--image-dir".into(), absolute("--image-dir", dir)?],
                (None, None, Some(dir)) => vec!["--file-dir".into(), absolute("--file-dir", dir)?],
                (None, None, None) => Vec::new(),
            }
            .into_iter()
            .chain(a.image_dir.as_ref().map(|_| a.image_recipe.to_args()).unwrap_or_default())
            .collect(),
            int8_models: Default::default(),
        };
        // What every accuracy check runs: the samples, the target and the metric.
        let mut accuracy_args = vec![
            "--samples".to_string(),
            a.accuracy_samples.to_string(),
            "--target".into(),
            a.min_accuracy.to_string(),
            "--metric".into(),
            a.metric.clone(),
        ];
        if let Some(dir) = &a.image_dir {
            accuracy_args.extend(["--images".to_string(), absolute("--image-dir", dir)?]);
            accuracy_args.extend(a.image_recipe.to_args());
        }
        if let Some(file) = &a.text_file {
            accuracy_args.extend(["--texts".to_string(), absolute("--text-file", file)?]);
        }
        // A check runs the samples a few times per variant: bounded by the start-up allowance
        // and the slowest single call.
        let mut slowest_call_s =
            comparison.runs.iter().map(|r| r.call_ms).fold(0.0, f64::max) / 1e3;
        if a.text_file.is_some() {
            // The agreement check's call is one seeded token; a real text runs up to 256 (tract's
            // dynamic int8 took ~0.2 s per sentence): allow half a second a call at least.
            slowest_call_s = slowest_call_s.max(0.5);
        }
        let check_limit_s = |variants: usize| {
            a.timeout + 4.0 * (variants as f64 + 1.0) * a.accuracy_samples as f64 * slowest_call_s
        };
        let precision = self.screen_precisions(
            &mut spaces,
            &mut launcher,
            &accuracy_args,
            &check_limit_s,
            &say,
        )?;
        let mut plan = SearchPlan {
            spaces: spaces.clone(),
            launcher: launcher.clone(),
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
        // The model as a thrum.toml names it, and the name it is served under.
        let (name, model) = match &self.model {
            ModelRef::Path(p) => (
                p.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned()),
                std::fs::canonicalize(p).unwrap_or(p.clone()).display().to_string(),
            ),
            ModelRef::Zoo(_) | ModelRef::Pretrained(_) => {
                (self.model.zoo_name().unwrap_or("model").to_string(), a.model_path.clone())
            }
        };
        // An image model file's --image-* flags: its thrum.toml keeps them for serve and bench.
        let image = match &self.model {
            ModelRef::Path(_) => a.image_recipe.settings().to_toml(),
            _ => toml::Table::new(),
        };
        let check_path = dir.join("thrum.toml.check");
        let mut check = |c: &Candidate| -> Result<search::Check, TuneError> {
            // An int8 candidate's thrum.toml names its engine's quantized graph beside the model.
            let toml = report::thrum_toml(&name, &model, launcher.int8_model(c), &image, c, &[]);
            std::fs::write(&check_path, toml).map_err(|e| TuneError::write(&check_path, e))?;
            let mut args = vec!["--config".to_string(), check_path.display().to_string()];
            args.extend(accuracy_args.iter().cloned());
            let result = launcher.compare(&args, check_limit_s(1));
            let _ = std::fs::remove_file(&check_path);
            if INTERRUPTED.load(Ordering::SeqCst) {
                return Err(TuneError::Interrupted { checkpoint: checkpoint.clone(), trials: 0 });
            }
            let (pass, summary) = match result {
                Ok(r) => match r.rows.last() {
                    Some(row) if row.refused.is_some() => {
                        (false, format!("failed: {}", row.refused.clone().unwrap_or_default()))
                    }
                    Some(row) => (row.pass == Some(true), row.shortfall(r.metric, r.target)),
                    None => (false, "no result".into()),
                },
                Err(e) => (false, format!("the check did not run: {e}")),
            };
            if !a.quiet {
                eprintln!(
                    "  check    {}: {} — {summary}",
                    c.key(),
                    if pass { "PASS" } else { "FAIL" }
                );
            }
            Ok(search::Check { candidate: c.key(), pass, summary })
        };
        let outcome = search::run(&plan, &mut check)?;
        let ranked = report::ranked(&outcome, objective, &plan.constraints);
        report::write_summary(&mut std::io::stdout().lock(), &ranked, &outcome, objective, a.rows)?;

        let report = TuneReport {
            schema: "thrum-tune/2",
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
            precision: &precision,
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
        if let Some((winner, winner_metrics)) = &outcome.winner {
            // The default, when it beat the pick in the alternating runs; else the pick.
            let default_metrics =
                outcome.versus_default.as_ref().and_then(|v| v.default_metrics.clone());
            let (c, m) = match (outcome.default_wins, default_metrics) {
                (true, Some(m)) => (&plan.default, m),
                _ => (winner, winner_metrics.clone()),
            };
            let cpu = thrum::CpuFeatures::detect().summary();
            // The measurement the figures come from, with the length it ran at (a finalist's
            // longer run, or an exploring one when the budget left none).
            let budget = outcome
                .trials
                .iter()
                .rev()
                .find(|t| t.candidate == *c && t.metrics() == Some(&m))
                .map_or(plan.long, |t| t.budget);
            let mut header = report::measured_header(
                c,
                &m,
                cores.usable,
                &cpu,
                &launcher.bench_args(c, &budget),
            );
            if outcome.default_wins {
                header.push(format!(
                    "The search's pick, {}, lost to this default configuration in alternating \
                     runs ({:.2}×): the default is written.",
                    winner.key(),
                    outcome.versus_default.as_ref().map_or(f64::NAN, |v| v.speedup)
                ));
            } else if let Some(check) = outcome.checks.iter().find(|k| k.candidate == c.key()) {
                header.push(format!(
                    "Accuracy against {}'s fp32 with default settings, checked in a child \
                     (thrum compare -p {} --config thrum.toml {}): {} — {}.",
                    c.engine,
                    a.model_path,
                    accuracy_args.join(" "),
                    if check.pass { "PASS" } else { "FAIL" },
                    check.summary
                ));
            }
            if outcome.accuracy_unmet {
                header.push(format!(
                    "BELOW TARGET: no configuration checked kept {:.1} % of fp32 ({}); this is \
                     the best fp32 configuration measured.",
                    a.min_accuracy * 100.0,
                    outcome
                        .checks
                        .iter()
                        .map(|k| format!("{}: {}", k.candidate, k.summary))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            let toml_path = dir.join("thrum.toml");
            let int8 = launcher.int8_model(c);
            let toml = report::thrum_toml(&name, &model, int8, &image, c, &header);
            std::fs::write(&toml_path, toml).map_err(|e| TuneError::write(&toml_path, e))?;
            say(format!(
                "wrote {} (thrum bench --config / thrum serve --config), tune.json, pareto.svg",
                toml_path.display()
            ));
            if outcome.accuracy_unmet {
                return Err(TuneError::BelowTarget {
                    variants: outcome.checks.iter().map(|k| k.candidate.clone()).collect(),
                    metric: match a.metric.as_str() {
                        "top1" => "top-1 agreement".into(),
                        "cosine" => "mean cosine".into(),
                        _ => "accuracy".into(),
                    },
                    target: a.min_accuracy,
                }
                .into());
            }
            return Ok(());
        }
        if outcome.accuracy_unmet {
            // Every configuration checked fell short, and no fp32 one met the constraints.
            return Err(TuneError::BelowTarget {
                variants: outcome.checks.iter().map(|k| k.candidate.clone()).collect(),
                metric: "accuracy".into(),
                target: a.min_accuracy,
            }
            .into());
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

impl TunePlan {
    /// Decides the precisions searched and gates each on accuracy: per engine, a child
    /// `thrum compare --precision` runs every reduced precision against the engine's fp32 (with
    /// default settings, then each other backend of a key that switches it: ONNX Runtime's
    /// OpenVINO provider, where its bf16 runs). A precision that keeps --min-accuracy joins
    /// that engine's space, with the settings it passed under; the others are noted with why.
    fn screen_precisions(
        &self,
        spaces: &mut [space::EngineSpace],
        launcher: &mut Launcher,
        accuracy_args: &[String],
        limit_s: &dyn Fn(usize) -> f64,
        say: &dyn Fn(String),
    ) -> anyhow::Result<PrecisionSearch> {
        let a = &self.args;
        let cpu = thrum::CpuFeatures::detect();
        let mut search = PrecisionSearch { target: a.min_accuracy, ..Default::default() };
        let note = |search: &mut PrecisionSearch, line: String| {
            say(format!("precision: {line}"));
            search.notes.push(line);
        };
        let asked = match &self.precisions {
            Some(list) => list.clone(),
            None => {
                let mut list = vec![Precision::Fp32];
                if cpu.bf16() {
                    list.push(Precision::Bf16);
                } else {
                    note(
                        &mut search,
                        format!(
                            "bf16 not searched: this CPU has neither AVX512-BF16 nor AMX ({}), \
                             so bf16 would run on fp32 units; --precision fp32,bf16 measures it \
                             anyway",
                            cpu.summary()
                        ),
                    );
                }
                if cpu.vnni() || cpu.amx() {
                    list.push(Precision::Int8);
                } else {
                    note(
                        &mut search,
                        "int8 not searched: this CPU has no VNNI or AMX, so int8 runs on AVX2's \
                         vpmaddubsw with 7-bit weights (docs/performance.md measures what that \
                         gives); --precision fp32,int8 searches it anyway"
                            .into(),
                    );
                }
                list
            }
        };
        search.asked = asked.clone();
        let mut reduced: Vec<Precision> =
            asked.iter().copied().filter(|p| *p != Precision::Fp32).collect();
        if reduced.is_empty() {
            return Ok(search);
        }
        let reads_onnx = |engine: &str| {
            thrum::registry()
                .get(engine)
                .is_ok_and(|e| e.info().formats.contains(&ModelFormat::ONNX))
        };
        if reduced.contains(&Precision::Int8) && spaces.iter().any(|s| reads_onnx(&s.engine)) {
            let stem = match &self.model {
                ModelRef::Path(p) => {
                    p.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned())
                }
                _ => self.model.zoo_name().unwrap_or("model").to_string(),
            };
            // One model per int8 form the engines run fastest: QDQ for ONNX Runtime,
            // ordinary convolutions as QLinearConv with per-tensor weights for tract.
            let engines: Vec<Arc<dyn Engine>> = spaces
                .iter()
                .filter_map(|s| thrum::registry().get(&s.engine).ok())
                .filter(|e| e.capabilities().int8_form.is_some())
                .collect();
            let forms = super::compare::int8_forms(&engines);
            let path_of = |form| a.output_dir.join(super::compare::int8_file_name(&stem, form));
            let recipe = a.image_recipe.recipe(&self.model)?;
            // Other seeds than the checks': calibration never sees the evaluation set.
            let calibration = SampleSource::from_flags(
                a.calibration_images.clone(),
                None,
                a.calibration_npy.clone(),
                recipe,
                1_000_000,
            );
            say(format!(
                "precision: quantizing {} to int8 as `thrum quantize` does ({}), in each \
                 engine's fastest form",
                a.model_path,
                match self.model.text_dir() {
                    Some(_) => "dynamic: MatMul weights in int8, no calibration".to_string(),
                    None => format!("static, MinMax, {}", calibration.describe(100)),
                },
            ));
            if self.model.text_dir().is_none()
                && let Some(dir) = &a.image_dir
                && let Some(warning) = super::samples::calibration_warning(
                    &calibration,
                    &SampleSource::Images { dir: dir.clone(), recipe },
                )
            {
                say(warning);
            }
            match super::compare::quantize_default(
                &self.model,
                &calibration,
                &forms,
                path_of,
                &Options::default(),
            ) {
                Ok(files) => {
                    for engine in &engines {
                        let form = engine.capabilities().int8_form;
                        let Some((form, path)) = files.iter().find(|(f, _)| Some(*f) == form)
                        else {
                            continue;
                        };
                        let full = absolute("the int8 model", path)?;
                        say(format!(
                            "precision: {} runs int8 as {full} ({})",
                            engine.name(),
                            if self.model.text_dir().is_some() {
                                "dynamic: one model for every engine".to_string()
                            } else if path.ends_with(super::compare::int8_file_name(&stem, *form)) {
                                form.to_string()
                            } else {
                                format!(
                                    "{}: its own form rewrites no convolution",
                                    thrum::Int8Form::Qdq
                                )
                            }
                        ));
                        search.int8_models.insert(engine.name().to_string(), full.clone());
                        launcher.int8_models.insert(engine.name().to_string(), full);
                    }
                }
                Err(e) => {
                    note(
                        &mut search,
                        format!("int8 not searched: cannot quantize: {}", super::describe(&e)),
                    );
                    reduced.retain(|p| *p != Precision::Int8);
                }
            }
        }
        for space in spaces.iter_mut() {
            let engine = space.engine.clone();
            // The engine's pinned settings (--fixed) always; default settings first, then
            // each other backend of a key that switches it.
            let pinned: BTreeMap<String, String> = space
                .start
                .options
                .iter()
                .filter(|(k, _)| self.fixed.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut variants = vec![BTreeMap::new()];
            for (key, needed) in &space.concurrency_needs {
                if let Some(dim) = space.dims.iter().find(|d| &d.name == key) {
                    for v in dim.values.iter().filter(|v| *v != needed) {
                        variants.push(BTreeMap::from([(key.clone(), v.clone())]));
                    }
                }
            }
            let mut undecided = reduced.clone();
            let mut passing = Vec::new();
            let mut why: std::collections::HashMap<Precision, String> = Default::default();
            for variant in variants {
                if undecided.is_empty() {
                    break;
                }
                let list: Vec<String> = undecided.iter().map(Precision::to_string).collect();
                let mut args = vec!["-e".to_string(), engine.clone(), "--precision".into()];
                args.push(list.join(","));
                let pairs: Vec<String> = variant.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let settings: Vec<String> =
                    pinned.iter().map(|(k, v)| format!("{k}={v}")).chain(pairs.clone()).collect();
                if !settings.is_empty() {
                    args.extend(["--model-options".to_string(), settings.join(",")]);
                }
                if undecided.contains(&Precision::Int8)
                    && let Some(m) = launcher.int8_models.get(&engine)
                {
                    args.extend(["--int8-model".to_string(), m.clone()]);
                }
                args.extend(accuracy_args.iter().cloned());
                let result = launcher.compare(&args, limit_s(undecided.len()));
                if INTERRUPTED.load(Ordering::SeqCst) {
                    return Err(TuneError::InterruptedEarly {
                        during: format!("the accuracy gate of {engine}"),
                    }
                    .into());
                }
                let screen = match result {
                    Ok(report) => Screen {
                        engine: engine.clone(),
                        options: variant,
                        report: Some(report),
                        error: None,
                    },
                    Err(e) => Screen {
                        engine: engine.clone(),
                        options: variant,
                        report: None,
                        error: Some(e),
                    },
                };
                if !a.quiet
                    && let Some(report) = &screen.report
                {
                    report.write_table(&mut std::io::stderr().lock())?;
                }
                let under = if pairs.is_empty() {
                    String::new()
                } else {
                    format!(" (with {})", pairs.join(","))
                };
                for p in undecided.clone() {
                    match screen.verdict(p) {
                        Ok(()) => {
                            passing.push((p.to_string(), screen.options.clone()));
                            undecided.retain(|q| *q != p);
                        }
                        Err(reason) => {
                            why.insert(p, format!("{reason}{under}"));
                        }
                    }
                }
                search.screens.push(screen);
            }
            for p in undecided {
                let reason = why.remove(&p).unwrap_or_default();
                note(&mut search, format!("{engine} {p} not searched: {reason}"));
            }
            if !passing.is_empty() {
                say(format!(
                    "precision: {engine} searches fp32, {}",
                    passing.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            space.add_precisions(passing);
        }
        Ok(search)
    }
}
