//! `thrum bench`: the multi-threaded benchmark (djl-bench's options and more), sweeps, and
//! the memory report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use thrum::{Engine, ModelSource, Options};
use thrum_bench::{InputPlan, PredictorMode, RunPlan, Stop, SweepGrid, shapes};

use super::options::OptionArgs;

/// Seconds measured when neither --iteration nor --duration is given.
const DEFAULT_DURATION_S: f64 = 5.0;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  thrum bench                                   # zoo:resnet18 on tract, 5 s, one worker per usable core\n  thrum bench -p model.onnx -s '(1,3,224,224)f' -t 2 -c 200\n  thrum bench -p zoo:transformer -e tract -t 1 -d 10 --json report.json\n  thrum bench --sweep threads=1,2 intra=1,2 batch=1,4 --plot sweep.svg\n  thrum bench -p zoo:resnet50 --memory-report"
)]
pub struct BenchArgs {
    /// Model file, or zoo:NAME for a model built by thrum (see `thrum zoo list`).
    #[arg(short = 'p', long = "model-path", value_name = "MODEL", default_value = "zoo:resnet18")]
    model_path: String,

    /// Engine: tract (default, built in), ort, torch, mxnet.
    #[arg(short, long, default_value = "tract")]
    engine: String,

    /// Input shapes in djl-bench syntax, e.g. '(1,3,224,224)f' or '(1,128)l,(1,128)l'
    /// (dtype suffixes f d s i l b u B). Default: the model's input spec at --batch-size.
    #[arg(short = 's', long = "input-shapes", value_name = "SHAPES")]
    input_shapes: Option<String>,

    /// Total calls across all workers. With --duration, the run stops at whichever comes first.
    #[arg(short = 'c', long = "iteration", value_name = "N", allow_negative_numbers = true)]
    iteration: Option<i64>,

    /// Warm-up calls per worker, on the worker's own thread, after its first call.
    #[arg(
        short = 'w',
        long = "warmup-iteration",
        value_name = "N",
        default_value_t = 2,
        allow_negative_numbers = true
    )]
    warmup: i64,

    /// Seconds to measure (default 5 when --iteration is not given).
    #[arg(short = 'd', long = "duration", value_name = "SECONDS", allow_negative_numbers = true)]
    duration: Option<f64>,

    /// Worker threads; 0 or less means one per usable core (affinity and cgroup quota).
    #[arg(
        short = 't',
        long = "threads",
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    threads: i64,

    /// Milliseconds between worker starts.
    #[arg(
        short = 'l',
        long = "delay",
        value_name = "MS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    delay: i64,

    /// Samples per call: the size of the model's dynamic batch axis (not with --input-shapes
    /// that disagree).
    #[arg(short = 'b', long = "batch-size", value_name = "N", allow_negative_numbers = true)]
    batch_size: Option<i64>,

    /// per-thread (one predictor per worker) or shared (one thread-safe predictor for all);
    /// a comma-separated list with --sweep.
    #[arg(long, value_name = "MODE", default_value = "per-thread")]
    predictor: String,

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

    /// Run a grid of configurations: KEY=V1,V2 with KEY one of threads, intra, inter, batch,
    /// predictor.
    #[arg(long, num_args = 1.., value_name = "KEY=V1,V2")]
    sweep: Vec<String>,

    /// Plot a sweep's throughput against P99 latency (.svg or .png), Pareto front marked.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,

    /// Load the model, then add predictors one thread each and print RSS at every count.
    #[arg(long)]
    memory_report: bool,

    /// Predictor counts for --memory-report.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_value = "1,2,4,8")]
    memory_steps: Vec<usize>,
}

enum Mode {
    Run,
    Sweep(SweepGrid),
    Memory(Vec<usize>),
}

/// A validated `bench` command.
pub struct BenchPlan {
    engine: Arc<dyn Engine>,
    model_path: String,
    source: ModelSource,
    options: Options,
    inputs: InputPlan,
    run: RunPlan,
    mode: Mode,
    json: Option<PathBuf>,
    output_dir: Option<PathBuf>,
    plot: Option<PathBuf>,
    quiet: bool,
}

fn config_error(what: impl Into<String>, expected: impl Into<String>) -> thrum_bench::BenchError {
    thrum_bench::BenchError::Config { what: what.into(), expected: expected.into() }
}

impl BenchPlan {
    pub fn from_args(args: BenchArgs) -> anyhow::Result<BenchPlan> {
        let engine = thrum::registry().get(&args.engine)?;
        let source = thrum::model_source(&args.model_path, engine.as_ref())?;
        let options = args.options.resolve()?;
        let shapes = args.input_shapes.as_deref().map(shapes::parse_input_shapes).transpose()?;
        let batch_size = match args.batch_size {
            Some(b) if b < 1 => {
                return Err(config_error(format!("--batch-size {b}"), "at least 1").into());
            }
            b => b.map(|b| b as usize),
        };
        let iterations = match args.iteration {
            Some(n) if n < 1 => {
                return Err(config_error(format!("--iteration {n}"), "at least 1 call").into());
            }
            n => n.map(|n| n as u64),
        };
        let duration = match args.duration {
            Some(d) if !(d.is_finite() && d > 0.0) => {
                return Err(
                    config_error(format!("--duration {d}"), "a number of seconds above 0").into()
                );
            }
            d => d.map(Duration::from_secs_f64),
        };
        let duration = match (iterations, duration) {
            (None, None) => Some(Duration::from_secs_f64(DEFAULT_DURATION_S)),
            (_, d) => d,
        };
        if args.warmup < 0 {
            return Err(
                config_error(format!("--warmup-iteration {}", args.warmup), "0 or more").into()
            );
        }
        if args.delay < 0 {
            return Err(
                config_error(format!("--delay {}", args.delay), "0 or more milliseconds").into()
            );
        }
        let workers = if args.threads <= 0 {
            thrum_bench::system::cores().usable
        } else {
            args.threads as usize
        };
        let modes: Vec<PredictorMode> =
            args.predictor.split(',').map(str::parse).collect::<Result<_, _>>()?;
        let mode = match (args.sweep.is_empty(), args.memory_report) {
            (false, true) => {
                return Err(config_error("--sweep with --memory-report", "one of them").into());
            }
            (false, false) => {
                let mut grid = SweepGrid::parse(&args.sweep)?;
                if grid.predictor.is_empty() && modes.len() > 1 {
                    grid.predictor = modes.clone();
                }
                Mode::Sweep(grid)
            }
            (true, true) => {
                if args.memory_steps.is_empty() || args.memory_steps.contains(&0) {
                    return Err(config_error(
                        "--memory-steps",
                        "positive predictor counts, e.g. 1,2,4,8",
                    )
                    .into());
                }
                let mut steps = args.memory_steps.clone();
                steps.sort_unstable();
                steps.dedup();
                Mode::Memory(steps)
            }
            (true, false) => Mode::Run,
        };
        if modes.len() > 1 && !matches!(mode, Mode::Sweep(_)) {
            return Err(config_error(
                format!("--predictor {}", args.predictor),
                "one mode (lists need --sweep)",
            )
            .into());
        }
        if args.plot.is_some() && !matches!(mode, Mode::Sweep(_)) {
            return Err(config_error("--plot without --sweep", "--sweep KEY=V1,V2 to plot").into());
        }
        if let Some(dir) = &args.output_dir {
            check_writable_dir(dir)?;
        }
        for file in [&args.json, &args.plot].into_iter().flatten() {
            check_parent(file)?;
        }
        Ok(BenchPlan {
            engine,
            model_path: args.model_path,
            source,
            options,
            inputs: InputPlan { shapes, batch_size },
            run: RunPlan {
                workers,
                stop: Stop { iterations, duration },
                warmup: args.warmup as usize,
                delay: Duration::from_millis(args.delay as u64),
                predictor: modes[0],
                progress: !args.quiet,
            },
            mode,
            json: args.json,
            output_dir: args.output_dir,
            plot: args.plot,
            quiet: args.quiet,
        })
    }

    pub fn run(self) -> anyhow::Result<()> {
        match &self.mode {
            Mode::Run => self.run_once(),
            Mode::Sweep(grid) => self.run_sweep(grid),
            Mode::Memory(steps) => self.run_memory(steps),
        }
    }

    fn run_once(&self) -> anyhow::Result<()> {
        let mut report = thrum_bench::run_benchmark(
            self.engine.as_ref(),
            &self.source,
            &self.model_path,
            &self.options,
            &self.inputs,
            &self.run,
        )?;
        report.allocator = Some(crate::allocator::describe());
        self.emit(&report, "report.json", |out| report.write_summary(out))
    }

    fn run_memory(&self, steps: &[usize]) -> anyhow::Result<()> {
        let mut report = thrum_bench::memory_report(
            self.engine.as_ref(),
            &self.source,
            &self.options,
            &self.inputs,
            self.run.predictor,
            steps,
        )?;
        report.allocator = Some(crate::allocator::describe());
        self.emit(&report, "memory.json", |out| report.write_summary(out))
    }

    fn run_sweep(&self, grid: &SweepGrid) -> anyhow::Result<()> {
        if !self.quiet {
            eprintln!("sweep: {} configurations", grid.len());
        }
        let quiet = self.quiet;
        let run = RunPlan { progress: false, ..self.run.clone() };
        let points = thrum_bench::run_sweep(
            self.engine.as_ref(),
            &self.source,
            &self.options,
            &self.inputs,
            &run,
            grid,
            |p| {
                if !quiet {
                    eprintln!(
                        "  {}: {:.2} samples/s, P99 {:.3} ms",
                        p.label(),
                        p.samples_per_s,
                        p.p99_ms
                    );
                }
            },
        )?;
        let name = self.source.name();
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
            Some(path) if path == Path::new("-") => println!("{json}"),
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
