//! `thrum bench`: the multi-threaded benchmark (djl-bench's options and more), sweeps, and
//! the memory report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use thrum::{Engine, ModelRef, ModelSource, Options, Precision, PredictorKind};
use thrum_bench::{InputPlan, RunPlan, Stop, SweepGrid, shapes};

use super::options::{ImageRecipeArgs, OptionArgs};

/// Seconds measured when neither --iteration nor --duration is given.
const DEFAULT_DURATION_S: f64 = 5.0;

/// Largest --batch-size: beyond it the inputs of any model are past `Tensor::MAX_BYTES`.
const MAX_BATCH: u64 = 1 << 32;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  thrum bench                                   # zoo:resnet18 on tract, 5 s, one worker per usable core\n  thrum bench -p model.onnx -s '(1,3,224,224)f' -t 2 -c 200\n  thrum bench -p zoo:transformer -e tract -t 1 -d 10 --json report.json\n  thrum bench --sweep threads=1,2 intra=1,2 batch=1,4 --plot sweep.svg\n  thrum bench -e ort --sweep ort.execution_mode=sequential,parallel\n  thrum bench -p zoo:resnet50 --memory-report"
)]
pub struct BenchArgs {
    /// Model file, or zoo:NAME for a model built by thrum (see `thrum zoo list`). Default: the
    /// `--config` thrum.toml's model, else zoo:resnet18.
    #[arg(short = 'p', long = "model-path", value_name = "MODEL")]
    model_path: Option<String>,

    /// Engine: tract, ort, torch, mxnet, tensorflow. Default: the `--config` thrum.toml's
    /// engine, else tract.
    #[arg(short, long)]
    engine: Option<String>,

    /// Real texts, one per line, for a text model (zoo:all-minilm-l6-v2): each call embeds
    /// --batch-size of them (the next lines each call, wrapping around: every line is
    /// measured) through the whole pipeline, with stages tokenize (preprocess), inference and
    /// pool (postprocess).
    #[arg(long = "text-file", value_name = "FILE", conflicts_with = "input_shapes")]
    text_file: Option<std::path::PathBuf>,

    /// Real images (every file of DIR: JPEG, PNG, GIF, WebP) for an image model
    /// (zoo:efficientnet-lite0, or a file, pre-processed as TorchServe does unless --image-*
    /// say otherwise): each call classifies --batch-size of them (the next ones each call)
    /// through the whole pipeline, with stages decode + resize
    /// + normalise (preprocess), inference and top-k (postprocess).
    #[arg(long = "image-dir", value_name = "DIR", conflicts_with_all = ["input_shapes", "text_file"])]
    image_dir: Option<std::path::PathBuf>,

    #[command(flatten)]
    image_recipe: ImageRecipeArgs,

    /// Real files (every file of DIR, any type) for a content-type model (zoo:magika): each
    /// call identifies --batch-size of them (the next ones each call) through the whole
    /// pipeline, with stages tokens
    /// (preprocess: each file's ends, as Magika reads them), inference and Magika's output
    /// rules (postprocess).
    #[arg(long = "file-dir", value_name = "DIR", conflicts_with_all = ["input_shapes", "text_file", "image_dir"])]
    file_dir: Option<std::path::PathBuf>,

    /// With precision=int8: the quantized form of the model to run (`thrum quantize`'s
    /// output), while -p still decides the pipeline (tokenizer, image recipe, labels) and the
    /// inputs. What `thrum tune` passes its int8 candidates.
    #[arg(long = "int8-model", value_name = "FILE")]
    int8_model: Option<PathBuf>,

    /// Input shapes in djl-bench syntax, e.g. '(1,3,224,224)f' or '(1,128)l,(1,128)l'
    /// (dtype suffixes f d s i l b u B). Default: the model's input spec at --batch-size.
    #[arg(short = 's', long = "input-shapes", value_name = "SHAPES")]
    input_shapes: Option<String>,

    /// Total calls across all workers. With --duration, the run stops at whichever comes first.
    #[arg(short = 'c', long = "iteration", value_name = "N", allow_negative_numbers = true,
          value_parser = |v: &str| count(v, 1, u64::MAX, "calls"))]
    iteration: Option<u64>,

    /// Warm-up calls per worker, on the worker's own thread, after its first call.
    #[arg(short = 'w', long = "warmup-iteration", value_name = "N", default_value_t = 2,
          allow_negative_numbers = true, value_parser = |v: &str| count(v, 0, 1 << 32, "calls"))]
    warmup: u64,

    /// Seconds to measure (default 5 when --iteration is not given).
    #[arg(short = 'd', long = "duration", value_name = "SECONDS", allow_negative_numbers = true,
          value_parser = seconds)]
    duration: Option<Duration>,

    /// Stop before --duration once throughput is stable: the last 3 windows each within this
    /// many percent of their mean (perf_analyzer's rule).
    #[arg(long, value_name = "PCT", value_parser = percent)]
    stability_percentage: Option<f64>,

    /// Length of the windows throughput is sampled in (the report's window_samples_per_s).
    #[arg(long, value_name = "MS", default_value_t = 500, allow_negative_numbers = true,
          value_parser = |v: &str| count(v, 10, 3_600_000, "milliseconds"))]
    window_ms: u64,

    /// Worker threads; 0 or less: the usable cores (affinity and cgroup quota) divided by the
    /// intra-op threads, one per core when those are not set either. Without
    /// --intra-op-threads, each worker gets usable cores ÷ workers of them (workers × intra-op
    /// = usable cores). Default: the `--config` thrum.toml's workers, else 0.
    #[arg(short = 't', long = "threads", value_name = "N", allow_negative_numbers = true,
          value_parser = workers)]
    threads: Option<usize>,

    /// Milliseconds between worker starts.
    #[arg(short = 'l', long = "delay", value_name = "MS", default_value_t = 0,
          allow_negative_numbers = true, value_parser = |v: &str| count(v, 0, 3_600_000, "milliseconds"))]
    delay: u64,

    /// Samples per call: the size of the model's batch axis (not with --input-shapes that
    /// disagree). Default: the `--config` thrum.toml's max_batch_size, else the model's.
    #[arg(short = 'b', long = "batch-size", value_name = "N", allow_negative_numbers = true,
          value_parser = |v: &str| count(v, 1, MAX_BATCH, "samples"))]
    batch_size: Option<u64>,

    /// per-thread (one predictor per worker) or shared (one thread-safe predictor for all);
    /// a comma-separated list with --sweep. Default: the `predictor` option, else per-thread.
    #[arg(long, value_name = "MODE", value_delimiter = ',', value_parser = predictor_kind)]
    predictor: Vec<PredictorKind>,

    #[command(flatten)]
    options: OptionArgs,

    /// Write the JSON report to FILE ('-' for stdout; schema: docs/bench-report.schema.json).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Directory for reports: report.json, memory.json, or sweep.json and sweep.svg.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    output_dir: Option<PathBuf>,

    /// No progress bar and no human summary (errors and warnings still go to stderr).
    #[arg(short, long)]
    quiet: bool,

    /// Run a grid of configurations: KEY=V1,V2 with KEY one of threads, batch, predictor, or
    /// any option key (intra, inter, onednn, ort.execution_mode, …; see docs/configuration.md).
    #[arg(long, num_args = 1.., value_name = "KEY=V1,V2")]
    sweep: Vec<String>,

    /// Internal: a sweep's child process, with these settings its parent varies across
    /// processes fixed (KEY=V,...); it prints its points as JSON on stdout and nothing else.
    #[arg(long, hide = true, value_name = "K=V,...")]
    sweep_fixed: Option<String>,

    /// Plot a sweep's throughput against P99 latency (.svg or .png), Pareto front marked.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,

    /// Load the model, then add predictors one thread each and print RSS at every count.
    #[arg(long)]
    memory_report: bool,

    /// Predictor counts for --memory-report.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_value = "1,2,4,8",
          value_parser = |v: &str| count(v, 1, 4096, "predictors"))]
    memory_steps: Vec<u64>,
}

/// A number of `unit` in `min..=max`, or what was expected.
fn count(v: &str, min: u64, max: u64, unit: &str) -> Result<u64, String> {
    match v.trim().parse::<i128>() {
        Ok(n) if n >= i128::from(min) && n <= i128::from(max) => Ok(n as u64),
        Ok(n) if n < i128::from(min) => Err(format!("expected at least {min} ({unit})")),
        Ok(_) => Err(format!("expected at most {max} ({unit})")),
        Err(_) => Err(format!("expected a whole number ({unit})")),
    }
}

fn seconds(v: &str) -> Result<Duration, String> {
    match v.trim().parse::<f64>() {
        Ok(d) if d.is_finite() && d > 0.0 && d <= 1e7 => Ok(Duration::from_secs_f64(d)),
        _ => Err("expected a number of seconds above 0".into()),
    }
}

fn percent(v: &str) -> Result<f64, String> {
    match v.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err("expected a percentage above 0 and at most 100".into()),
    }
}

fn workers(v: &str) -> Result<usize, String> {
    match v.trim().parse::<i64>() {
        Ok(n) if n <= 0 => Ok(0),
        Ok(n) if n <= 4096 => Ok(n as usize),
        Ok(_) => {
            Err("expected at most 4096 worker threads (0 or less: one per usable core)".into())
        }
        Err(_) => Err("expected a whole number of worker threads".into()),
    }
}

fn predictor_kind(v: &str) -> Result<PredictorKind, String> {
    v.parse().map_err(|_| "expected per-thread or shared".to_string())
}

/// Which settings the command line gave (they win over a `--config` thrum.toml's).
struct Given {
    engine: bool,
    model: bool,
    workers: bool,
    batch: bool,
}

enum Mode {
    Run,
    Sweep(SweepGrid),
    Memory(Vec<usize>),
}

/// A validated `bench` command. Building it does no I/O: options files are read, zoo models
/// built and output directories checked when it runs, before the model loads.
pub struct BenchPlan {
    engine: Arc<dyn Engine>,
    model_path: String,
    model: ModelRef,
    /// What the command line set itself (a `--config` thrum.toml fills in the rest).
    given: Given,
    options: OptionArgs,
    inputs: InputPlan,
    run: RunPlan,
    /// `--predictor` as given (empty: the `predictor` option decides).
    predictors: Vec<PredictorKind>,
    /// In a sweep's child process: the process-wide settings this process runs with.
    sweep_fixed: Option<Vec<(String, String)>>,
    mode: Mode,
    json: Option<PathBuf>,
    output_dir: Option<PathBuf>,
    plot: Option<PathBuf>,
    quiet: bool,
    /// `--int8-model`: the quantized graph run in place of the model's own.
    int8_model: Option<PathBuf>,
    /// A `--config` thrum.toml's `int8_model`, run when the precision is int8.
    file_int8_model: Option<PathBuf>,
    /// The real-input flags, for a model a `--config` file names.
    samples: SampleFlags,
}

/// The pipelines of real inputs: texts, images, files.
type Pipelines =
    (Option<thrum_bench::TextPlan>, Option<thrum_bench::ImagePlan>, Option<thrum_bench::FilePlan>);

/// `--text-file`, `--image-dir`, `--file-dir` as given: real inputs through a model's own
/// pipeline, checked against the model once it is known (a `--config` file may name it).
struct SampleFlags {
    text_file: Option<PathBuf>,
    image_dir: Option<PathBuf>,
    image_recipe: ImageRecipeArgs,
    /// A `--config` thrum.toml's `[image]`, under the flags (set once the file is read).
    file_image: Option<(thrum_serve::config::ImageSettings, PathBuf)>,
    file_dir: Option<PathBuf>,
}

impl SampleFlags {
    /// The pipelines these flags ask of `model`; a flag the model has no pipeline for is an
    /// error naming a model that has one.
    fn plans(&self, model: &ModelRef, model_path: &str) -> anyhow::Result<Pipelines> {
        let text = match (&self.text_file, model.text_dir()) {
            (None, _) => None,
            (Some(file), Some(model_dir)) => {
                Some(thrum_bench::TextPlan { file: file.clone(), model_dir })
            }
            (Some(_), None) => {
                return Err(config_error(
                    format!("--text-file with `{model_path}`"),
                    format!(
                        "a text model that brings its tokenizer, such as zoo:{}",
                        thrum::zoo::pretrained::ALL_MINILM_L6_V2.name
                    ),
                )
                .into());
            }
        };
        let file = self.file_image.as_ref().map(|(table, path)| (*table, path.as_path()));
        let custom = super::options::image_recipe(self.image_recipe.settings(), file, model)?;
        let given = self.image_recipe.first_given();
        let image = match (&self.image_dir, &model) {
            (None, _) if given.is_some() => {
                let flag = given.unwrap_or_default();
                return Err(config_error(
                    format!("{flag} without --image-dir"),
                    "--image-dir DIR: the --image-* flags pre-process its images",
                )
                .into());
            }
            (None, _) => None,
            (Some(_), ModelRef::Pretrained(m)) if !model.is_image_model() => {
                return Err(config_error(
                    format!("--image-dir with `zoo:{}`", m.name()),
                    "an image model, such as zoo:efficientnet-lite0",
                )
                .into());
            }
            (Some(dir), _) => {
                let recipe = model.image_recipe(custom.as_ref());
                Some(thrum_bench::ImagePlan {
                    dir: dir.clone(),
                    resize: recipe.resize,
                    crop: recipe.crop,
                    mean: recipe.mean,
                    std: recipe.std,
                    channels: thrum::channel_order(&recipe),
                })
            }
        };
        let file = match (&self.file_dir, model.content_type_dir()) {
            (None, _) => None,
            (Some(dir), Some(model_dir)) => {
                Some(thrum_bench::FilePlan { dir: dir.clone(), model_dir })
            }
            (Some(_), None) => {
                return Err(config_error(
                    format!("--file-dir with `{model_path}`"),
                    format!("a content-type model, zoo:{}", thrum::zoo::pretrained::MAGIKA.name),
                )
                .into());
            }
        };
        Ok((text, image, file))
    }
}

fn config_error(what: impl Into<String>, expected: impl Into<String>) -> thrum_bench::BenchError {
    thrum_bench::BenchError::Config { what: what.into(), expected: expected.into() }
}

impl BenchPlan {
    pub fn from_args(args: BenchArgs) -> anyhow::Result<BenchPlan> {
        let given = Given {
            engine: args.engine.is_some(),
            model: args.model_path.is_some(),
            workers: args.threads.is_some(),
            batch: args.batch_size.is_some(),
        };
        let engine = thrum::registry().get(args.engine.as_deref().unwrap_or("tract"))?;
        let model_path = args.model_path.unwrap_or_else(|| "zoo:resnet18".into());
        let model = ModelRef::parse(&model_path)?;
        let shapes = args.input_shapes.as_deref().map(shapes::parse_input_shapes).transpose()?;
        let samples = SampleFlags {
            text_file: args.text_file,
            image_dir: args.image_dir,
            image_recipe: args.image_recipe,
            file_image: None,
            file_dir: args.file_dir,
        };
        // A `--config` file may name the model: the pipeline is checked against it then.
        // Its [image] table may set what the --image-* flags leave: checked with it.
        let (text, image, file) = if !args.options.has_config() {
            samples.plans(&model, &model_path)?
        } else {
            (None, None, None)
        };
        let duration = match (args.iteration, args.duration) {
            (None, None) => Some(Duration::from_secs_f64(DEFAULT_DURATION_S)),
            (_, d) => d,
        };
        // 0: decided when the plan runs, with the intra-op threads (`split_cores`).
        let workers = args.threads.unwrap_or(0);
        let mode = match (args.sweep.is_empty(), args.memory_report) {
            (false, true) => {
                return Err(config_error("--sweep with --memory-report", "one of them").into());
            }
            (false, false) => {
                let mut grid = SweepGrid::parse(&args.sweep)?;
                if grid.options.iter().any(|(key, _)| *key == "precision") {
                    // Each precision may load another graph (an int8 model, a bf16 trace),
                    // and a sweep runs one.
                    return Err(config_error(
                        "--sweep precision=…",
                        "one bench per precision (--model-options precision=P), `thrum compare \
                         --precision` for speed and accuracy together, or `thrum tune \
                         --precision` to search it",
                    )
                    .into());
                }
                if grid.predictor.is_empty() && args.predictor.len() > 1 {
                    grid.predictor = args.predictor.clone();
                }
                Mode::Sweep(grid)
            }
            (true, true) => {
                let mut steps: Vec<usize> = args.memory_steps.iter().map(|&n| n as usize).collect();
                steps.sort_unstable();
                steps.dedup();
                Mode::Memory(steps)
            }
            (true, false) => Mode::Run,
        };
        if args.predictor.len() > 1 && !matches!(mode, Mode::Sweep(_)) {
            return Err(config_error(
                format!("--predictor with {} modes", args.predictor.len()),
                "one mode (lists need --sweep)",
            )
            .into());
        }
        if args.plot.is_some() && !matches!(mode, Mode::Sweep(_)) {
            return Err(config_error("--plot without --sweep", "--sweep KEY=V1,V2 to plot").into());
        }
        let sweep_fixed = args
            .sweep_fixed
            .map(|pairs| {
                pairs
                    .split(',')
                    .map(|p| {
                        p.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .ok_or_else(|| config_error(format!("--sweep-fixed `{p}`"), "KEY=V"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(BenchPlan {
            engine,
            model_path,
            model,
            given,
            options: args.options,
            inputs: InputPlan {
                shapes,
                batch_size: args.batch_size.map(|b| b as usize),
                text,
                image,
                file,
            },
            run: RunPlan {
                workers,
                stop: Stop {
                    stability_percent: args.stability_percentage,
                    window: Duration::from_millis(args.window_ms),
                    ..Stop::new(args.iteration, duration)
                },
                warmup: args.warmup as usize,
                delay: Duration::from_millis(args.delay),
                predictor: args.predictor.first().copied().unwrap_or_default(),
                progress: !args.quiet,
            },
            predictors: args.predictor,
            sweep_fixed,
            mode,
            json: args.json,
            output_dir: args.output_dir,
            plot: args.plot,
            quiet: args.quiet,
            int8_model: args.int8_model,
            file_int8_model: None,
            samples,
        })
    }

    /// What every mode does first: options resolved, outputs checked writable, the model
    /// source resolved (a zoo model built) — all before any model loads.
    fn prepare(&mut self) -> anyhow::Result<(Options, ModelSource)> {
        let mut options = self.options.resolve()?;
        if let Some(file) = self.options.model_file()? {
            self.apply_model_file(file)?;
        }
        if self.options.has_config() {
            // Put off until the file was read: it may name the model (an options file leaves
            // the default one) and its pre-processing.
            let (text, image, file) = self.samples.plans(&self.model, &self.model_path)?;
            (self.inputs.text, self.inputs.image, self.inputs.file) = (text, image, file);
        }
        // Unless told otherwise, workers × intra-op threads = the usable cores: an engine left
        // to its own default (ONNX Runtime, libtorch: every core per worker) oversubscribes.
        let usable = thrum_bench::system::cores().usable;
        let (workers, intra) =
            thrum_bench::system::split_cores(usable, self.run.workers, options.intra_op_threads);
        self.run.workers = workers;
        options.intra_op_threads = Some(intra);
        if self.predictors.is_empty() {
            self.run.predictor = options.predictor.unwrap_or_default();
        }
        if let Some(dir) = &self.output_dir {
            check_writable_dir(dir)?;
        }
        for file in [&self.json, &self.plot].into_iter().flatten() {
            check_parent(file)?;
        }
        let file_int8 =
            self.file_int8_model.as_deref().filter(|_| options.precision == Some(Precision::Int8));
        let source = super::model_source(
            &self.model,
            self.engine.as_ref(),
            self.int8_model.as_deref().or(file_int8),
            &options,
        )?;
        Ok((options, source))
    }

    /// What a `--config` thrum.toml (`thrum tune`'s output) says about the engine, model,
    /// workers and batch, where the command line said nothing.
    fn apply_model_file(&mut self, file: super::options::ModelFile) -> anyhow::Result<()> {
        let given = self.given.model.then_some(self.model_path.as_str());
        // The table pre-processes --image-dir's images (none: nothing to warn about).
        self.samples.file_image = match &self.samples.image_dir {
            Some(_) => file.image_for(given).map(|(table, path)| (table, path.to_path_buf())),
            None => None,
        };
        let entry = file.entry;
        if !self.given.engine {
            self.engine = thrum::registry().get(&entry.engine)?;
        }
        if !self.given.model {
            self.model = ModelRef::parse(&entry.model)?;
            self.model_path = entry.model;
            self.file_int8_model = entry.int8_model.map(PathBuf::from);
        }
        if !self.given.workers && entry.pool.workers > 0 {
            self.run.workers = entry.pool.workers;
        }
        if !self.given.batch
            && self.inputs.shapes.is_none()
            && let Some(b) = &entry.pool.batching
        {
            self.inputs.batch_size = Some(b.max_batch_size);
        }
        Ok(())
    }

    pub fn run(mut self) -> anyhow::Result<()> {
        let (options, source) = self.prepare()?;
        match &self.mode {
            Mode::Run => self.run_once(&options, &source),
            Mode::Sweep(grid) => self.run_sweep(grid, &options, &source),
            Mode::Memory(steps) => self.run_memory(steps, &options, &source),
        }
    }

    fn run_once(&self, options: &Options, source: &ModelSource) -> anyhow::Result<()> {
        let mut report = thrum_bench::run_benchmark(
            self.engine.as_ref(),
            source,
            &self.model_path,
            options,
            &self.inputs,
            &self.run,
        )?;
        report.allocator = Some(crate::allocator::describe());
        self.emit(&report, "report.json", |out| report.write_summary(out))
    }

    fn run_memory(
        &self,
        steps: &[usize],
        options: &Options,
        source: &ModelSource,
    ) -> anyhow::Result<()> {
        let mut report = thrum_bench::memory_report(
            self.engine.as_ref(),
            source,
            options,
            &self.inputs,
            self.run.predictor,
            steps,
        )?;
        report.allocator = Some(crate::allocator::describe());
        self.emit(&report, "memory.json", |out| report.write_summary(out))
    }

    fn run_sweep(
        &self,
        grid: &SweepGrid,
        options: &Options,
        source: &ModelSource,
    ) -> anyhow::Result<()> {
        let run = RunPlan { progress: false, ..self.run.clone() };
        if let Some(fixed) = &self.sweep_fixed {
            // A child: run the part of the grid this process can, print the points.
            let mut options = options.clone();
            let mut grid = grid.clone();
            for (key, value) in fixed {
                options.set(key, value)?;
                grid.options.retain(|(k, _)| k != key);
            }
            let points = thrum_bench::run_sweep(
                self.engine.as_ref(),
                source,
                &options,
                &self.inputs,
                &run,
                &grid,
                |_| {},
            )?;
            println!("{}", serde_json::to_string(&points)?);
            return Ok(());
        }
        if !self.quiet {
            eprintln!("sweep: {} configurations", grid.len());
        }
        let quiet = self.quiet;
        let report = |p: &thrum_bench::SweepPoint| {
            if !quiet {
                eprintln!(
                    "  {}: {:.2} samples/s, P99 {:.3} ms",
                    p.label(),
                    p.samples_per_s,
                    p.p99_ms
                );
            }
        };
        let across = grid.process_keys(self.engine.info());
        let points = if across.is_empty() {
            thrum_bench::run_sweep(
                self.engine.as_ref(),
                source,
                options,
                &self.inputs,
                &run,
                grid,
                report,
            )?
        } else {
            self.sweep_across_processes(grid, &across, report)?
        };
        let name = source.name();
        let json = thrum_bench::sweep_json(&points, &name, self.engine.name());
        self.emit(&json, "sweep.json", |out| thrum_bench::write_table(&points, out))?;
        let title = format!("{name} on {}: throughput vs P99 latency", self.engine.name());
        let mut plots = Vec::new();
        plots.extend(self.plot.clone());
        if let Some(dir) = &self.output_dir {
            plots.push(dir.join("sweep.svg"));
        }
        for path in plots {
            thrum_bench::plot_sweep(&points, &title, &path)?;
            if !self.quiet {
                println!("plot written to {}", path.display());
            }
        }
        Ok(())
    }

    /// Runs a sweep that varies settings the engine fixes once per process (`across`): one
    /// child `thrum bench` per combination of their values, each sweeping the rest of the grid.
    fn sweep_across_processes(
        &self,
        grid: &SweepGrid,
        across: &[&'static str],
        report: impl Fn(&thrum_bench::SweepPoint),
    ) -> anyhow::Result<Vec<thrum_bench::SweepPoint>> {
        let fixed = SweepGrid {
            options: grid.options.iter().filter(|(k, _)| across.contains(k)).cloned().collect(),
            ..SweepGrid::default()
        };
        if !self.quiet {
            eprintln!(
                "sweep: {} varies per process ({}): one `thrum bench` process per value",
                across.join(", "),
                self.engine.info().title
            );
        }
        let exe = std::env::current_exe().context("cannot find the `thrum` executable")?;
        let mut points = Vec::new();
        for (_, values) in fixed.option_sets(&Options::default())? {
            let pairs: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let out = std::process::Command::new(&exe)
                .args(std::env::args_os().skip(1))
                .arg("--sweep-fixed")
                .arg(pairs.join(","))
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("cannot run `{}`", exe.display()))?;
            if !out.status.success() {
                return Err(config_error(
                    format!("the sweep's process with {}", pairs.join(", ")),
                    format!("success; it exited with {} (its error is above)", out.status),
                )
                .into());
            }
            let mut child: Vec<thrum_bench::SweepPoint> = serde_json::from_slice(&out.stdout)
                .context("reading the points of a sweep's child process")?;
            for point in &mut child {
                point.options.extend(values.iter().cloned());
                report(point);
            }
            points.extend(child);
        }
        thrum_bench::mark_pareto_front(&mut points);
        Ok(points)
    }

    /// Prints the human summary (unless quiet), and writes the JSON to `--json` and to the
    /// output directory.
    fn emit(
        &self,
        value: &impl serde::Serialize,
        file_name: &str,
        summary: impl Fn(&mut dyn Write) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(value)?;
        let json_to_stdout = self.json.as_deref() == Some(Path::new("-"));
        if !self.quiet {
            if json_to_stdout {
                summary(&mut std::io::stderr().lock())?;
            } else {
                summary(&mut std::io::stdout().lock())?;
            }
        }
        match self.json.as_deref() {
            Some(path) if path == Path::new("-") => {
                // A reader that stops early (`| head`) is not an error worth a panic.
                match writeln!(std::io::stdout().lock(), "{json}") {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => other.context("cannot write the JSON report to stdout")?,
                }
            }
            Some(path) => std::fs::write(path, &json)
                .with_context(|| format!("cannot write `{}`", path.display()))?,
            None => {}
        }
        if let Some(dir) = &self.output_dir {
            let path = dir.join(file_name);
            std::fs::write(&path, &json)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        Ok(())
    }
}

/// Creates `dir` if needed and proves a file can be written there, before any benchmark runs.
fn check_writable_dir(dir: &Path) -> anyhow::Result<()> {
    let fail = |reason: String| thrum_bench::BenchError::Output { path: dir.to_path_buf(), reason };
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("cannot create the output directory: {e}")))?;
    let probe = dir.join(format!(".thrum-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| fail(format!("the output directory is not writable: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn check_parent(file: &Path) -> anyhow::Result<()> {
    if file == Path::new("-") {
        return Ok(());
    }
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(thrum_bench::BenchError::Output {
            path: file.to_path_buf(),
            reason: format!("directory `{}` does not exist", parent.display()),
        }
        .into());
    }
    Ok(())
}
