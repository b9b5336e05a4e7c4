//! `thrum load`: drive a KServe v2 server (thrum serve, Triton, MLServer, KServe's runtimes)
//! and measure it the way perf_analyzer does, with perf_analyzer's flag names.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use thrum_load::plan::{parse_range, parse_shape};
use thrum_load::{Distribution, InputData, Load, LoadPlan, Measurement, Protocol};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  thrum load -m mlp                                         # http (binary tensors), concurrency 1, 127.0.0.1:8080\n  thrum load -m mlp --concurrency-range 1:8:2 -f mlp.csv --plot mlp.svg\n  thrum load -m mlp -i grpc -u 127.0.0.1:8081 --request-rate-range 500:2000:500 --request-distribution poisson\n  thrum load -m resnet50 -b 4 --input-data random --measurement-interval 2000\n  thrum load -m all-minilm-l6-v2 --text-file sentences.txt --concurrency-range 32   # TEI's /embed"
)]
pub struct LoadArgs {
    /// The model to load.
    #[arg(short = 'm', long = "model-name", value_name = "MODEL")]
    model: String,

    /// The model's version (default: the server's choice).
    #[arg(short = 'x', long = "model-version", value_name = "V", default_value = "")]
    version: String,

    /// The server, host:port without a scheme (default 127.0.0.1:8080, or :8081 with -i grpc).
    #[arg(short = 'u', long = "url", value_name = "HOST:PORT")]
    url: Option<String>,

    /// http (binary tensors, tritonclient's default), http-json, or grpc.
    #[arg(short = 'i', long = "protocol", default_value = "http", value_parser = |v: &str| v.parse::<Protocol>().map_err(|e| e.to_string()))]
    protocol: Protocol,

    /// gRPC: send each caller's requests on one bidirectional ModelStreamInfer stream
    /// (perf_analyzer's --streaming) instead of unary calls.
    #[arg(long)]
    streaming: bool,

    /// Closed loop: requests in flight, START[:END[:STEP]] (perf_analyzer's syntax). Default 1.
    #[arg(long, value_name = "START:END:STEP", conflicts_with = "request_rate_range")]
    concurrency_range: Option<String>,

    /// Open loop: requests started per second, START[:END[:STEP]].
    #[arg(long, value_name = "START:END:STEP")]
    request_rate_range: Option<String>,

    /// Open loop: constant gaps, or poisson (exponential gaps from a seed).
    #[arg(long, default_value = "constant", value_parser = ["constant", "poisson"])]
    request_distribution: String,

    /// Open loop: most requests in flight (connections); a request due when all are busy is late.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_threads: u32,

    /// Samples per request along the batch axis (the model's max_batch_size bounds it).
    #[arg(short = 'b', long = "batch-size", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    batch: u32,

    /// zero, random (seeded), or a .npy file (one-input model) / a directory of NAME.npy.
    #[arg(long, value_name = "zero|random|PATH", default_value = "random")]
    input_data: String,

    /// A text-embedding model: send TEI's POST /embed with texts from FILE (one per line, -b
    /// lines per request, taken in turn) instead of v2 tensors. HTTP only.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["input_data", "shape"])]
    text_file: Option<PathBuf>,

    /// An image model: send every file of DIR (JPEG, PNG, GIF, WebP; -b per request, taken in
    /// turn) as a v2 BYTES input for the server to decode and resize. HTTP only.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["input_data", "shape", "text_file"])]
    image_dir: Option<PathBuf>,

    /// Seed of random inputs.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Sizes of an input's dynamic dimensions besides the batch axis: NAME:d1,d2 (repeatable).
    #[arg(long, value_name = "NAME:DIMS")]
    shape: Vec<String>,

    /// Measurement window in milliseconds (time_windows mode).
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    measurement_interval: u64,

    /// time_windows, or count_windows (each window is --measurement-request-count requests).
    #[arg(long, default_value = "time_windows", value_parser = ["time_windows", "count_windows"])]
    measurement_mode: String,

    /// Requests per window in count_windows mode.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    measurement_request_count: u64,

    /// Windows within this percentage of each other are stable.
    #[arg(long, value_name = "PCT", default_value_t = 10.0)]
    stability_percentage: f64,

    /// Most windows per step before the step is reported unstable.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(3..=1000))]
    max_trials: u32,

    /// Milliseconds of load thrown away before each step's first window.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    warmup_ms: u64,

    /// On 503 or 429 with Retry-After, wait as told and send again (counted).
    #[arg(long)]
    retry: bool,

    /// Longest wait for one answer, in milliseconds; a request unanswered by then counts as a
    /// `timeout` error and its connection is dropped.
    #[arg(long, value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    request_timeout_ms: u64,

    /// Write perf_analyzer's CSV to FILE.
    #[arg(short = 'f', value_name = "FILE.csv")]
    csv: Option<PathBuf>,

    /// Write the JSON report to FILE ('-' for stdout).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Plot throughput against P99 latency over the steps (.svg or .png).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,

    /// No progress bar and no console report.
    #[arg(short, long)]
    quiet: bool,
}

/// A validated `load` command.
pub struct LoadCommand {
    plan: LoadPlan,
    csv: Option<PathBuf>,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
    quiet: bool,
}

impl LoadCommand {
    pub fn from_args(args: LoadArgs) -> anyhow::Result<LoadCommand> {
        let load = match (&args.concurrency_range, &args.request_rate_range) {
            (_, Some(rates)) => Load::RequestRate {
                rates: parse_range(rates, "--request-rate-range", false)?,
                distribution: if args.request_distribution == "poisson" {
                    Distribution::Poisson
                } else {
                    Distribution::Constant
                },
                max_in_flight: args.max_threads as usize,
            },
            (Some(levels), None) => Load::Concurrency(
                parse_range(levels, "--concurrency-range", true)?
                    .into_iter()
                    .map(|v| v as usize)
                    .collect(),
            ),
            (None, None) => Load::Concurrency(vec![1]),
        };
        if !(args.stability_percentage.is_finite()
            && args.stability_percentage > 0.0
            && args.stability_percentage <= 100.0)
        {
            return Err(thrum_load::LoadError::usage(
                format!("--stability-percentage {}", args.stability_percentage),
                "a percentage above 0, at most 100",
            )
            .into());
        }
        if args.streaming && args.protocol != Protocol::Grpc {
            return Err(thrum_load::LoadError::usage(
                format!("--streaming with -i {}", args.protocol),
                "-i grpc: streaming is gRPC's ModelStreamInfer",
            )
            .into());
        }
        let inputs = match (&args.text_file, &args.image_dir, args.input_data.as_str()) {
            (Some(_), _, _) if args.protocol != Protocol::Http => {
                return Err(thrum_load::LoadError::usage(
                    format!("--text-file with -i {}", args.protocol),
                    "-i http: texts go to TEI's POST /embed, a REST route",
                )
                .into());
            }
            (Some(file), _, _) => InputData::Texts(file.clone()),
            (None, Some(_), _) if args.protocol != Protocol::Http => {
                return Err(thrum_load::LoadError::usage(
                    format!("--image-dir with -i {}", args.protocol),
                    "-i http: images go as a BYTES input in the binary extension",
                )
                .into());
            }
            (None, Some(dir), _) => InputData::Images(dir.clone()),
            (None, None, "zero") => InputData::Zero,
            (None, None, "random") => InputData::Random { seed: args.seed },
            (None, None, path) => InputData::Files(PathBuf::from(path)),
        };
        let count_mode = args.measurement_mode == "count_windows";
        let plan = LoadPlan {
            url: args.url.unwrap_or_else(|| {
                if args.protocol == Protocol::Grpc {
                    "127.0.0.1:8081".into()
                } else {
                    "127.0.0.1:8080".into()
                }
            }),
            model: args.model,
            version: args.version,
            protocol: args.protocol,
            streaming: args.streaming,
            load,
            batch: args.batch as usize,
            inputs,
            shapes: args.shape.iter().map(|s| parse_shape(s)).collect::<Result<_, _>>()?,
            measurement: Measurement {
                window: (!count_mode)
                    .then(|| Duration::from_millis(args.measurement_interval))
                    .or(Some(Duration::from_millis(args.measurement_interval))),
                window_requests: count_mode.then_some(args.measurement_request_count),
                stability: args.stability_percentage / 100.0,
                stable_windows: 3,
                max_windows: args.max_trials as usize,
                warmup: Duration::from_millis(args.warmup_ms),
            },
            retry: args.retry,
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            progress: !args.quiet && std::io::stderr().is_terminal(),
        };
        Ok(LoadCommand { plan, csv: args.csv, json: args.json, plot: args.plot, quiet: args.quiet })
    }

    pub fn run(self) -> anyhow::Result<()> {
        let files = match &self.plan.inputs {
            InputData::Files(path) => Some(read_inputs(path)?),
            _ => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("thrum-load")
            .build()
            .context("cannot start the async runtime")?;
        let quiet = self.quiet;
        let bar = self.plan.progress.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let steps = thrum_load::measure::steps(&self.plan);
        let batch = self.plan.batch;
        let report = runtime.block_on(thrum_load::run(
            &self.plan,
            files,
            |step| {
                if let Some(bar) = &bar {
                    bar.suspend(|| {
                        let _ = thrum_load::report::write_step(step, batch, &mut std::io::stdout());
                    });
                } else if !quiet {
                    let _ = thrum_load::report::write_step(step, batch, &mut std::io::stdout());
                }
            },
            |k, window, tput| {
                if let Some(bar) = &bar {
                    bar.set_message(format!(
                        "{} ({}/{}): window {window}, {tput:.1} infer/s",
                        steps[k],
                        k + 1,
                        steps.len()
                    ));
                }
            },
        ))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if let Some(path) = &self.csv {
            thrum_load::report::write_csv(&report, path)?;
        }
        if let Some(path) = &self.json {
            thrum_load::report::write_json(&report, path)?;
        }
        if let Some(path) = &self.plot {
            thrum_load::report::plot(&report, path)?;
        }
        Ok(())
    }
}

/// Inputs from a `.npy` file (a one-input model: named by the model) or a directory of
/// `NAME.npy` files.
fn read_inputs(path: &std::path::Path) -> anyhow::Result<Vec<(String, thrum::Tensor)>> {
    if path.is_dir() {
        let mut inputs = Vec::new();
        for entry in
            std::fs::read_dir(path).with_context(|| format!("cannot read `{}`", path.display()))?
        {
            let file = entry?.path();
            if file.extension().is_some_and(|e| e == "npy") {
                let name =
                    file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                inputs.push((name, crate::io::read_npy(&file)?));
            }
        }
        if inputs.is_empty() {
            anyhow::bail!(
                "--input-data `{}` is a directory without NAME.npy files",
                path.display()
            );
        }
        return Ok(inputs);
    }
    if !path.is_file() {
        return Err(thrum_load::LoadError::usage(
            format!("--input-data `{}`", path.display()),
            "zero, random, a .npy file or a directory of NAME.npy files",
        )
        .into());
    }
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(vec![(name, crate::io::read_npy(path)?)])
}
