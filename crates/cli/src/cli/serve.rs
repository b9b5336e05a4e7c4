//! `thrum serve`: the KServe v2 / Open Inference Protocol server (thrum-serve) over the models
//! the command line, a model repository, KServe's model directory or a `thrum.toml` names.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use thrum::{ModelRef, Options, PredictorKind};
use thrum_serve::config::{self, ModelEntry};
use thrum_serve::{Batching, Listen, PoolConfig, ServedModel, Server};

use super::options::{OptionFlags, warn};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  thrum serve -p zoo:mlp                                   # REST :8080, gRPC :8081 on 127.0.0.1\n  thrum serve -p resnet=resnet50.onnx -e ort --workers 2 --max-batch-size 8\n  thrum serve --model-repository models/                   # one folder per model\n  thrum serve --model-dir /mnt/models --model-name m --host 0.0.0.0   # KServe\n  thrum serve --config thrum.toml                          # what thrum tune writes"
)]
pub struct ServeArgs {
    /// A model to serve, [NAME=]MODEL (a file, or zoo:NAME); repeat for several. The name in
    /// URLs defaults to the file's stem.
    #[arg(short = 'p', long = "model-path", value_name = "[NAME=]MODEL")]
    models: Vec<String>,

    /// Engine for the -p models and for model folders without a thrum.toml; `auto`: the first
    /// engine, in `thrum engines` order, that reads the file's format and is installed.
    #[arg(short, long, default_value = "tract")]
    engine: String,

    /// A model repository: one folder per model, holding its model file and optionally a
    /// thrum.toml (engine, options, workers, batching).
    #[arg(long, value_name = "DIR")]
    model_repository: Option<PathBuf>,

    /// One model's folder, as KServe mounts it (/mnt/models): its model file and optionally a
    /// thrum.toml.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,

    /// The name of the --model-dir model (KServe's InferenceService name).
    #[arg(long, value_name = "NAME")]
    model_name: Option<String>,

    /// A thrum.toml naming the models to serve and how (what `thrum tune` writes).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Address to listen on. 127.0.0.1 by default; 0.0.0.0 in a container.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,

    /// REST port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    http_port: u16,

    /// gRPC port (0: any free port).
    #[arg(long, default_value_t = 8081)]
    grpc_port: u16,

    /// Serve REST only.
    #[arg(long)]
    no_grpc: bool,

    /// Worker threads per model (each with its predictor). Default: usable cores / intra-op
    /// threads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,

    /// per-thread (a predictor per worker) or shared (one thread-safe predictor).
    #[arg(long, value_name = "MODE", value_parser = |v: &str| v.parse::<PredictorKind>().map_err(|e| e.to_string()))]
    predictor: Option<PredictorKind>,

    /// Dynamic batching: most samples merged into one engine call (0: off).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_batch_size: usize,

    /// Dynamic batching: how long a request may wait for others, in microseconds.
    #[arg(long, value_name = "US", default_value_t = 500)]
    max_queue_delay_us: u64,

    /// Dynamic batching: batch sizes to stop at when nothing else waits (comma-separated).
    #[arg(long, value_name = "N,N", value_delimiter = ',')]
    preferred_batch_sizes: Vec<usize>,

    /// Requests that may wait per model; one more is answered 503 with Retry-After.
    /// Default: 64 per worker.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    queue_capacity: Option<u32>,

    /// Largest request body, in MiB (larger: 413).
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    body_limit_mib: u64,

    /// Seconds readiness is false before the listeners close, at SIGTERM (Kubernetes stops
    /// routing meanwhile); then admitted requests finish.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    shutdown_grace_s: f64,

    /// Check the arguments, print what would be served, and exit, reading no file (for
    /// deployment manifests and scripts).
    #[arg(long)]
    check: bool,

    #[command(flatten)]
    options: OptionFlags,
}

/// The `--engine` value that picks an engine per model file.
const AUTO: &str = "auto";

/// Where the models come from.
enum Models {
    /// `-p [NAME=]MODEL`, with the command line's settings.
    Paths(Vec<ModelEntry>),
    /// `--model-repository DIR`.
    Repository(PathBuf),
    /// `--model-dir DIR [--model-name NAME]`.
    Dir(PathBuf, Option<String>),
    /// `--config FILE`.
    Config(PathBuf),
}

/// The command line's serving settings, which override what files say.
struct Overrides {
    workers: Option<usize>,
    predictor: Option<PredictorKind>,
    batching: Option<Batching>,
    queue_capacity: Option<usize>,
}

/// A validated `serve` command. Building it reads no file: model repositories and config files
/// are read, and models loaded, when it runs.
pub struct ServePlan {
    models: Models,
    engine: String,
    overrides: Overrides,
    listen: Listen,
    flags: OptionFlags,
    check: bool,
}

impl ServePlan {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<ServePlan> {
        if args.engine != AUTO {
            thrum::registry().get(&args.engine)?;
        }
        let given = [
            !args.models.is_empty(),
            args.model_repository.is_some(),
            args.model_dir.is_some(),
            args.config.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            anyhow::bail!(
                "give the models one way: -p, --model-repository, --model-dir or --config"
            );
        }
        if args.model_name.is_some() && args.model_dir.is_none() {
            anyhow::bail!("--model-name names the --model-dir model; give --model-dir too");
        }
        if !(args.shutdown_grace_s.is_finite() && (0.0..=3600.0).contains(&args.shutdown_grace_s)) {
            anyhow::bail!(
                "--shutdown-grace-s {} must be between 0 and 3600 seconds",
                args.shutdown_grace_s
            );
        }
        let models = if let Some(dir) = args.model_repository {
            Models::Repository(dir)
        } else if let Some(dir) = args.model_dir {
            Models::Dir(dir, args.model_name)
        } else if let Some(file) = args.config {
            Models::Config(file)
        } else if args.models.is_empty() {
            anyhow::bail!(
                "no model to serve: give -p MODEL, --model-repository DIR, --model-dir DIR or --config FILE"
            );
        } else {
            let mut entries = Vec::new();
            for arg in &args.models {
                let (name, model) = match arg.split_once('=') {
                    Some((n, m)) if !n.is_empty() && !n.contains(['/', ':', '.']) => {
                        (n.to_string(), m.to_string())
                    }
                    _ => (model_name(arg)?, arg.clone()),
                };
                ModelRef::parse(&model)?;
                entries.push(ModelEntry::new(name, model, args.engine.clone()));
            }
            Models::Paths(entries)
        };
        let batching = (args.max_batch_size > 0).then(|| {
            Batching::new(args.max_batch_size, Duration::from_micros(args.max_queue_delay_us))
                .with_preferred(args.preferred_batch_sizes.clone())
        });
        Ok(ServePlan {
            models,
            engine: args.engine,
            overrides: Overrides {
                workers: args.workers.map(usize::from),
                predictor: args.predictor,
                batching,
                queue_capacity: args.queue_capacity.map(|q| q as usize),
            },
            listen: Listen {
                host: args.host,
                http_port: args.http_port,
                grpc_port: (!args.no_grpc).then_some(args.grpc_port),
                body_limit: (args.body_limit_mib as usize) << 20,
                shutdown_grace: Duration::from_secs_f64(args.shutdown_grace_s),
            },
            flags: args.options,
            check: args.check,
        })
    }

    /// What this plan serves, in words, for `--check`.
    fn describe(&self) -> String {
        let models = match &self.models {
            Models::Paths(entries) => {
                let list: Vec<String> =
                    entries.iter().map(|e| format!("{}={}", e.name, e.model)).collect();
                format!("models {} on {}", list.join(" "), self.engine)
            }
            Models::Repository(dir) => format!("the model repository {}", dir.display()),
            Models::Dir(dir, name) => {
                format!(
                    "the model folder {} as `{}`",
                    dir.display(),
                    name.as_deref().unwrap_or("(its folder name)")
                )
            }
            Models::Config(file) => format!("the models of {}", file.display()),
        };
        let l = &self.listen;
        let grpc = l.grpc_port.map_or_else(|| "off".to_string(), |p| format!("{}:{p}", l.host));
        format!(
            "thrum serve: arguments valid: would serve {models}; http {}:{} grpc {grpc}",
            l.host, l.http_port
        )
    }

    /// The models to serve, with the command line's settings over the files'.
    fn entries(&self) -> anyhow::Result<Vec<ModelEntry>> {
        let (mut entries, from_command_line) = match &self.models {
            Models::Paths(entries) => (entries.clone(), true),
            Models::Repository(dir) => (config::read_repository(dir, &self.engine)?, false),
            Models::Dir(dir, name) => {
                (config::read_model_dir(dir, name.as_deref(), &self.engine)?, false)
            }
            Models::Config(file) => (config::read_file(file, None, None)?, false),
        };
        let (env_options, warnings) = Options::resolve(None)?;
        warn(warnings);
        for entry in &mut entries {
            // Environment, then the file's options, then the command line's flags.
            let mut options = env_options.clone();
            for (key, value) in entry.options.set_pairs() {
                options.set(key, &value)?;
            }
            self.flags.apply(&mut options)?;
            entry.options = options;
            let o = &self.overrides;
            if let Some(w) = o.workers {
                entry.pool.workers = w;
            }
            if let Some(p) = o.predictor.or(entry.options.predictor.filter(|_| from_command_line)) {
                entry.pool.predictor = p;
            }
            if o.batching.is_some() || from_command_line {
                entry.pool.batching = o.batching.clone();
            }
            if let Some(q) = o.queue_capacity {
                entry.pool.queue_capacity = q;
            }
        }
        Ok(entries)
    }

    pub fn run(self) -> anyhow::Result<()> {
        if self.check {
            println!("{}", self.describe());
            return Ok(());
        }
        init_logging();
        thrum_serve::metrics::install();
        let entries = self.entries()?;
        let registry = thrum::registry();
        let usable = thrum_bench::system::cores().usable;
        let mut served = Vec::new();
        for mut entry in entries {
            let model_ref = ModelRef::parse(&entry.model)?;
            let engine = match (&model_ref, entry.engine.as_str()) {
                (ModelRef::Path(path), AUTO) => registry.for_file(path)?,
                (ModelRef::Zoo(_), AUTO) => registry.get("tract")?,
                (_, name) => registry.get(name)?,
            };
            let source = model_ref.source(engine.as_ref())?;
            // Threads come from the usable cores (affinity and cgroup quota), never the host's
            // count, which engines would take when intra-op is unset.
            let (workers, intra) =
                split_cores(usable, entry.pool.workers, entry.options.intra_op_threads);
            entry.pool.workers = workers;
            entry.options.intra_op_threads = Some(intra);
            entry.options.inter_op_threads.get_or_insert(1);
            let model = engine.load(&source, &entry.options).with_context(|| {
                format!("loading model `{}` ({}) on {}", entry.name, entry.model, engine.name())
            })?;
            if entry.pool.queue_capacity == 0 {
                entry.pool.queue_capacity =
                    PoolConfig::DEFAULT_QUEUE_PER_WORKER * entry.pool.workers;
            }
            tracing::info!(model = %entry.name, engine = engine.name(), workers = entry.pool.workers,
                predictor = %entry.pool.predictor, batching = ?entry.pool.batching, "starting");
            let pool = thrum_serve::ModelPool::start(&entry.name, model, entry.pool.clone())?;
            served.push(ServedModel {
                name: entry.name,
                pool,
                platform: thrum_serve::platform(engine.name(), source.format().map(|f| f.id)),
            });
        }
        let server = Server::new(served, self.listen)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usable.clamp(1, 4))
            .thread_name("thrum-serve-io")
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(server.run(std::future::pending(), |bound| {
            let grpc = bound.grpc.map_or_else(|| "off".to_string(), |a| a.to_string());
            println!("thrum serve: listening on http {} grpc {grpc}", bound.http);
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }))?;
        Ok(())
    }
}

/// Logs to stderr through `tracing`, at the level `RUST_LOG` says (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Workers and intra-op threads per worker for `usable` cores, from what was asked (`workers` 0
/// and `intra` `None` mean "decide"): the seed's rule, workers × intra-op = usable cores. With
/// neither given, one single-threaded worker per core (throughput first, like DJL Serving).
pub fn split_cores(usable: usize, workers: usize, intra: Option<usize>) -> (usize, usize) {
    let usable = usable.max(1);
    match (workers, intra) {
        (0, None) => (usable, 1),
        (0, Some(i)) => ((usable / i.max(1)).max(1), i),
        (w, None) => (w, (usable / w).max(1)),
        (w, Some(i)) => (w, i),
    }
}

fn model_name(model: &str) -> anyhow::Result<String> {
    Ok(match ModelRef::parse(model)? {
        ModelRef::Zoo(z) => z.name.to_string(),
        ModelRef::Path(p) => thrum::ModelSource::path(p).name(),
    })
}
