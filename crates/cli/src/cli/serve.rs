//! `thrum serve`: the KServe v2 / Open Inference Protocol server (thrum-serve) over the models
//! the command line, a model repository (thrum's or Triton's layout), KServe's model directory
//! or a `thrum.toml` names.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use thrum::{ModelRef, Options, PredictorKind};
use thrum_serve::config::{self, ModelEntry, ServerFile};
use thrum_serve::{
    Batching, Limits, Listen, ModelControl, PoolConfig, Repository, ServeError, ServedModel, Server,
};

use super::options::{ImageRecipeArgs, OptionFlags, warn};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  thrum serve -p zoo:mlp                                   # REST :8080, gRPC :8081 on 127.0.0.1\n  thrum serve -p resnet=resnet50.onnx -e ort --workers 2 --max-batch-size 8\n  thrum serve --model-repository models/                   # one folder per model (thrum's or Triton's layout)\n  thrum serve --model-repository models/ --model-control-mode explicit --load-model resnet50\n  thrum serve --model-dir /mnt/models --model-name m --host 0.0.0.0   # KServe\n  thrum serve --config thrum.toml                          # what thrum tune writes"
)]
pub struct ServeArgs {
    /// A model to serve, [NAME=]MODEL (a file, or zoo:NAME); repeat for several. The name in
    /// URLs defaults to the file's stem.
    #[arg(short = 'p', long = "model-path", value_name = "[NAME=]MODEL")]
    models: Vec<String>,

    /// Engine for the -p models and for model folders without a thrum.toml; `auto`: the first
    /// engine, in `thrum engines` order, that reads the file's format and is installed. A
    /// Triton model folder's platform names its engine.
    #[arg(short, long, default_value = "tract")]
    engine: String,

    /// A model repository: one folder per model, holding its model file and optionally a
    /// thrum.toml (engine, options, workers, batching), or laid out as Triton's
    /// (MODEL/config.pbtxt, MODEL/1/model.onnx).
    #[arg(long, value_name = "DIR")]
    model_repository: Option<PathBuf>,

    /// One model's folder, as KServe mounts it (/mnt/models): its model file and optionally a
    /// thrum.toml.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,

    /// The name of the --model-dir model (KServe's InferenceService name).
    #[arg(long, value_name = "NAME")]
    model_name: Option<String>,

    /// A thrum.toml naming the models to serve and how (what `thrum tune` writes), and its
    /// [server] table (these flags' settings). A file with only [server] goes with -p or
    /// --model-repository.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// none: serve the models given until the server stops; explicit: load and unload them
    /// with the model repository extension (POST /v2/repository/models/NAME/load), starting
    /// with the --load-model ones (Triton's --model-control-mode).
    #[arg(long, value_name = "MODE", value_parser = |v: &str| v.parse::<ModelControl>())]
    model_control_mode: Option<ModelControl>,

    /// With --model-control-mode explicit: a model to load at start (repeatable; `*`: all).
    #[arg(long, value_name = "NAME")]
    load_model: Vec<String>,

    /// Address to listen on. 127.0.0.1 by default; 0.0.0.0 in a container.
    #[arg(long)]
    host: Option<IpAddr>,

    /// REST port (0: any free port). Default 8080.
    #[arg(long)]
    http_port: Option<u16>,

    /// gRPC port (0: any free port). Default 8081.
    #[arg(long)]
    grpc_port: Option<u16>,

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

    /// A text model: most padded token positions per batch; requests of different lengths
    /// join, padded to the batch's longest (TEI's --max-batch-tokens). 0: each request runs
    /// alone unless --max-batch-size says otherwise. Default 16384.
    #[arg(long, value_name = "N")]
    max_batch_tokens: Option<usize>,

    /// Requests that may wait per model; one more is answered 503 with Retry-After.
    /// Default: 64 per worker.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    queue_capacity: Option<u32>,

    /// A text model: most texts one request of TEI's /embed and /tokenize may hold (larger:
    /// 413), as TEI's --max-client-batch-size; /info reports it. Default 32.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    max_client_batch_size: Option<u32>,

    /// A text model: largest body of TEI's and OpenAI's routes (larger: 413), and largest text
    /// in a v2 request (larger: 400), in MiB, as TEI's --payload-limit. Default 2.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=65536))]
    text_body_limit_mib: Option<u64>,

    /// Largest request body, in MiB (larger: 413). Default 64.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=65536))]
    body_limit_mib: Option<u64>,

    /// Seconds readiness is false before the listeners close, at SIGTERM (Kubernetes stops
    /// routing meanwhile); then admitted requests finish. Default 5.
    #[arg(long, value_name = "S", value_parser = |v: &str| seconds(v, true))]
    shutdown_grace_s: Option<Duration>,

    /// Most connections open at once, REST and gRPC together; more wait in the listen
    /// backlog. Default: the file limit (raised to its hard limit) less 256, at most 10000.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    max_connections: Option<u32>,

    /// Seconds a client may take to send a request's head (or, on gRPC, its connection
    /// preface); slower ones are disconnected. Default 30.
    #[arg(long, value_name = "S", value_parser = |v: &str| seconds(v, false))]
    header_timeout_s: Option<Duration>,

    /// Seconds a client may take to send a request's body after its head; slower ones get
    /// 408 and are disconnected. Default 60.
    #[arg(long, value_name = "S", value_parser = |v: &str| seconds(v, false))]
    body_timeout_s: Option<Duration>,

    /// Seconds an HTTP/1.1 connection may stay idle between requests, and a gRPC connection
    /// with no call open (it then gets GOAWAY). Default 75 (nginx's; longer than the usual
    /// load balancer's 60, so the server is not the one to close first).
    #[arg(long, value_name = "S", value_parser = |v: &str| seconds(v, false))]
    keep_alive_timeout_s: Option<Duration>,

    /// Seconds a client may leave an answer unread before it is disconnected. Default 60.
    #[arg(long, value_name = "S", value_parser = |v: &str| seconds(v, false))]
    write_timeout_s: Option<Duration>,

    /// Seconds shutdown waits for open connections (a stuck client) after the grace period
    /// and the last answer, before it closes them. Default 20.
    #[arg(long, value_name = "S", value_parser = |v: &str| seconds(v, true))]
    shutdown_timeout_s: Option<Duration>,

    /// Most concurrent gRPC calls per HTTP/2 connection. Default 128.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    grpc_max_streams: Option<u32>,

    /// The pre-processing of every image model file served (its encoded images, through v2
    /// BYTES and TorchServe's /predictions); a zoo image model keeps its own.
    #[command(flatten)]
    image_recipe: ImageRecipeArgs,

    /// Check the arguments, print what would be served, and exit, reading no file (for
    /// deployment manifests and scripts).
    #[arg(long)]
    check: bool,

    #[command(flatten)]
    options: OptionFlags,
}

/// A number of seconds for a flag: finite, at most a day, above 0 unless `zero` may be given.
fn seconds(v: &str, zero: bool) -> Result<Duration, String> {
    let s: f64 = v.trim().parse().map_err(|_| format!("`{v}` is not a number of seconds"))?;
    let low_ok = if zero { s >= 0.0 } else { s > 0.0 };
    if !(s.is_finite() && low_ok && s <= config::MAX_TIMEOUT_S) {
        return Err(format!(
            "{s} s: expected seconds {} 0, at most {}",
            if zero { "from" } else { "above" },
            config::MAX_TIMEOUT_S
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

/// The `--engine` value that picks an engine per model file.
const AUTO: &str = "auto";

/// Where the models come from.
#[derive(Clone)]
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
#[derive(Clone)]
struct Overrides {
    workers: Option<usize>,
    predictor: Option<PredictorKind>,
    batching: Option<Batching>,
    queue_capacity: Option<usize>,
    max_batch_tokens: Option<usize>,
    /// `--image-*`: the pre-processing of image model files, over each one's `[image]` table.
    image: thrum_serve::config::ImageSettings,
}

/// The command line's server settings; what it leaves out comes from the `[server]` table,
/// then the defaults.
struct ServerFlags {
    host: Option<IpAddr>,
    http_port: Option<u16>,
    grpc_port: Option<u16>,
    no_grpc: bool,
    body_limit: Option<usize>,
    max_client_batch: Option<usize>,
    text_body_limit: Option<usize>,
    shutdown_grace: Option<Duration>,
    max_connections: Option<usize>,
    header_timeout: Option<Duration>,
    body_timeout: Option<Duration>,
    keep_alive_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    shutdown_timeout: Option<Duration>,
    grpc_max_streams: Option<u32>,
    model_control: Option<ModelControl>,
    load_model: Vec<String>,
}

impl ServerFlags {
    /// Where and how to listen: flags over the file over the defaults.
    fn listen(&self, file: &ServerFile) -> Listen {
        let d = Listen::default();
        let l = &d.limits;
        Listen {
            host: self.host.or(file.host).unwrap_or(d.host),
            http_port: self.http_port.or(file.http_port).unwrap_or(d.http_port),
            grpc_port: (!self.no_grpc)
                .then(|| self.grpc_port.or(file.grpc_port).or(d.grpc_port).unwrap_or(8081)),
            body_limit: self.body_limit.or(file.body_limit).unwrap_or(d.body_limit),
            max_client_batch: self
                .max_client_batch
                .or(file.max_client_batch)
                .unwrap_or(d.max_client_batch),
            text_body_limit: self
                .text_body_limit
                .or(file.text_body_limit)
                .unwrap_or(d.text_body_limit),
            shutdown_grace: self.shutdown_grace.or(file.shutdown_grace).unwrap_or(d.shutdown_grace),
            limits: Limits {
                max_connections: self
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or(l.max_connections),
                header_timeout: self
                    .header_timeout
                    .or(file.header_timeout)
                    .unwrap_or(l.header_timeout),
                body_timeout: self.body_timeout.or(file.body_timeout).unwrap_or(l.body_timeout),
                keep_alive_timeout: self
                    .keep_alive_timeout
                    .or(file.keep_alive_timeout)
                    .unwrap_or(l.keep_alive_timeout),
                write_timeout: self.write_timeout.or(file.write_timeout).unwrap_or(l.write_timeout),
                shutdown_timeout: self
                    .shutdown_timeout
                    .or(file.shutdown_timeout)
                    .unwrap_or(l.shutdown_timeout),
                max_streams_per_connection: self
                    .grpc_max_streams
                    .or(file.grpc_max_streams)
                    .unwrap_or(l.max_streams_per_connection),
                http2_keep_alive_interval: l.http2_keep_alive_interval,
            },
        }
    }
}

/// A validated `serve` command. Building it reads no file: model repositories and config files
/// are read, and models loaded, when it runs.
pub struct ServePlan {
    models: Option<Models>,
    engine: String,
    overrides: Overrides,
    server: ServerFlags,
    /// `--config FILE`, whose [server] table applies whatever gives the models.
    config: Option<PathBuf>,
    flags: OptionFlags,
    check: bool,
}

impl ServePlan {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<ServePlan> {
        if args.engine != AUTO {
            thrum::registry().get(&args.engine)?;
        }
        let given =
            [!args.models.is_empty(), args.model_repository.is_some(), args.model_dir.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            anyhow::bail!(
                "give the models one way: -p, --model-repository, --model-dir or --config"
            );
        }
        if args.model_name.is_some() && args.model_dir.is_none() {
            anyhow::bail!("--model-name names the --model-dir model; give --model-dir too");
        }
        if !args.load_model.is_empty() && args.model_control_mode == Some(ModelControl::None) {
            anyhow::bail!(
                "--load-model picks the models loaded at start with --model-control-mode explicit; \
                 with none, every model given is served"
            );
        }
        if args.load_model.iter().any(|m| m == "*") && args.load_model.len() > 1 {
            anyhow::bail!("--load-model '*' loads every model; give it alone");
        }
        let models = if let Some(dir) = args.model_repository {
            Some(Models::Repository(dir))
        } else if let Some(dir) = args.model_dir {
            Some(Models::Dir(dir, args.model_name))
        } else if !args.models.is_empty() {
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
            Some(Models::Paths(entries))
        } else if let Some(file) = &args.config {
            Some(Models::Config(file.clone()))
        } else {
            anyhow::bail!(
                "no model to serve: give -p MODEL, --model-repository DIR, --model-dir DIR or --config FILE"
            );
        };
        let batching = (args.max_batch_size > 0).then(|| {
            Batching::new(args.max_batch_size, Duration::from_micros(args.max_queue_delay_us))
                .with_preferred(args.preferred_batch_sizes.clone())
        });
        // Checked as for a model file (the flags apply to every one served); a model folder's or a --config file's [image] table may
        // set what the flags leave, so the flags are checked with it then (at load).
        if let Some(Models::Paths(_)) = &models {
            args.image_recipe.recipe(&ModelRef::Path(PathBuf::new()))?;
        }
        if let (Some(flag), Some(Models::Paths(entries))) =
            (args.image_recipe.first_given(), &models)
            && entries.iter().all(|e| !matches!(ModelRef::parse(&e.model), Ok(ModelRef::Path(_))))
        {
            anyhow::bail!(
                "{flag} pre-processes the images of a model file; every model given is a zoo \
                 model (an image model with its own pre-processing, or one served tensors only)"
            );
        }
        Ok(ServePlan {
            models,
            engine: args.engine,
            overrides: Overrides {
                workers: args.workers.map(usize::from),
                predictor: args.predictor,
                batching,
                queue_capacity: args.queue_capacity.map(|q| q as usize),
                max_batch_tokens: args.max_batch_tokens,
                image: args.image_recipe.settings(),
            },
            server: ServerFlags {
                host: args.host,
                http_port: args.http_port,
                grpc_port: args.grpc_port,
                no_grpc: args.no_grpc,
                body_limit: args.body_limit_mib.map(|m| (m as usize) << 20),
                max_client_batch: args.max_client_batch_size.map(|n| n as usize),
                text_body_limit: args.text_body_limit_mib.map(|m| (m as usize) << 20),
                shutdown_grace: args.shutdown_grace_s,
                max_connections: args.max_connections.map(|n| n as usize),
                header_timeout: args.header_timeout_s,
                body_timeout: args.body_timeout_s,
                keep_alive_timeout: args.keep_alive_timeout_s,
                write_timeout: args.write_timeout_s,
                shutdown_timeout: args.shutdown_timeout_s,
                grpc_max_streams: args.grpc_max_streams,
                model_control: args.model_control_mode,
                load_model: args.load_model,
            },
            config: args.config,
            flags: args.options,
            check: args.check,
        })
    }

    /// What this plan serves, in words, for `--check`.
    fn describe(&self) -> String {
        let models = match &self.models {
            Some(Models::Paths(entries)) => {
                let list: Vec<String> =
                    entries.iter().map(|e| format!("{}={}", e.name, e.model)).collect();
                format!("models {} on {}", list.join(" "), self.engine)
            }
            Some(Models::Repository(dir)) => format!("the model repository {}", dir.display()),
            Some(Models::Dir(dir, name)) => {
                format!(
                    "the model folder {} as `{}`",
                    dir.display(),
                    name.as_deref().unwrap_or("(its folder name)")
                )
            }
            Some(Models::Config(file)) => format!("the models of {}", file.display()),
            None => "nothing".into(),
        };
        let l = self.server.listen(&ServerFile::default());
        let grpc = l.grpc_port.map_or_else(|| "off".to_string(), |p| format!("{}:{p}", l.host));
        format!(
            "thrum serve: arguments valid: would serve {models}; http {}:{} grpc {grpc}",
            l.host, l.http_port
        )
    }

    pub fn run(self) -> anyhow::Result<()> {
        if self.check {
            println!("{}", self.describe());
            return Ok(());
        }
        init_logging();
        thrum_serve::metrics::install();
        let file = match &self.config {
            Some(path) => config::read_server(path)?,
            None => ServerFile::default(),
        };
        if let (Some(path), Some(Models::Paths(_) | Models::Repository(_) | Models::Dir(..))) =
            (&self.config, &self.models)
            && !config::read_file(path, None, None)?.is_empty()
        {
            anyhow::bail!(
                "`{}` names models, and the command line gives models too; give the models one way \
                 (a --config file beside -p, --model-repository or --model-dir holds only [server])",
                path.display()
            );
        }
        let control = self.server.model_control.or(file.model_control).unwrap_or_default();
        let load_model = if self.server.load_model.is_empty() {
            file.load_model.clone()
        } else {
            self.server.load_model.clone()
        };
        if control == ModelControl::None && !load_model.is_empty() {
            anyhow::bail!(
                "load_model picks the models loaded at start with model control mode explicit; \
                 with none, every model given is served"
            );
        }
        let listen = self.server.listen(&file);
        let (env_options, warnings) = Options::resolve(None)?;
        warn(warnings);
        let repository = Arc::new(CliRepository {
            models: self.models.clone().unwrap_or(Models::Paths(Vec::new())),
            engine: self.engine.clone(),
            overrides: self.overrides.clone(),
            flags: self.flags.clone(),
            env_options,
            usable: thrum_bench::system::cores().usable,
        });
        let names = repository.names()?;
        if let (Models::Repository(dir), true) = (&repository.models, names.is_empty()) {
            anyhow::bail!(ServeError::Config {
                what: format!("`{}`", dir.display()),
                reason: "the model repository has no model folder (one folder per model)".into(),
            });
        }
        let start: Vec<String> = match control {
            ModelControl::None => names.clone(),
            ModelControl::Explicit if load_model.iter().any(|m| m == "*") => names.clone(),
            ModelControl::Explicit => {
                if let Some(unknown) = load_model.iter().find(|m| !names.contains(m)) {
                    anyhow::bail!(
                        "--load-model `{unknown}`: no such model; the models are {}",
                        names.join(", ")
                    );
                }
                load_model
            }
        };
        // At start, a model that fails stops the server, with its error's own kind (and exit
        // status); later loads answer the request that asked.
        let mut served = Vec::new();
        for name in &start {
            let entry = repository
                .entries(Some(name), None)?
                .into_iter()
                .find(|e| e.name == *name)
                .ok_or_else(|| repository.unknown(name))?;
            served.push(repository.start(entry).with_context(|| format!("model `{name}`"))?);
        }
        let server = Server::with_repository(served, listen, repository, control)?;
        let usable = thrum_bench::system::cores().usable;
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

/// The models `thrum serve` was given, as the server loads them: at start, and again for each
/// load request (a repository's folders are read afresh, so a changed model or thrum.toml /
/// config.pbtxt takes effect).
struct CliRepository {
    models: Models,
    engine: String,
    overrides: Overrides,
    flags: OptionFlags,
    env_options: Options,
    usable: usize,
}

fn config_error(what: String, e: anyhow::Error) -> ServeError {
    // `{:#}`: the whole chain of causes, on one line.
    ServeError::Config { what, reason: format!("{e:#}") }
}

impl CliRepository {
    /// The entries `name` can come from: one folder of a repository, else the given ones.
    fn entries(
        &self,
        name: Option<&str>,
        triton: Option<&thrum_serve::pb::ModelConfig>,
    ) -> Result<Vec<ModelEntry>, ServeError> {
        let (mut entries, from_command_line) = match (&self.models, name) {
            (Models::Paths(entries), _) => (entries.clone(), true),
            (Models::Repository(dir), Some(name)) => {
                let folder = dir.join(name);
                if !folder.is_dir() {
                    return Err(self.unknown(name));
                }
                (config::read_model_dir_with(&folder, Some(name), &self.engine, triton)?, false)
            }
            (Models::Repository(dir), None) => (config::read_repository(dir, &self.engine)?, false),
            (Models::Dir(dir, model_name), _) => (
                config::read_model_dir_with(dir, model_name.as_deref(), &self.engine, triton)?,
                false,
            ),
            (Models::Config(file), _) => (config::read_file(file, None, None)?, false),
        };
        if triton.is_some() && from_command_line {
            return Err(ServeError::bad(
                "load parameter `config` is Triton's model configuration; the -p models have none: \
                 serve a Triton model repository to override it",
            ));
        }
        for entry in &mut entries {
            // Environment, then the file's options, then the command line's flags.
            let mut options = self.env_options.clone();
            for (key, value) in entry.options.set_pairs() {
                options.set(key, &value)?;
            }
            self.flags
                .apply(&mut options)
                .map_err(|e| config_error(format!("model `{}`", entry.name), e))?;
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
            if let Some(t) = o.max_batch_tokens {
                entry.max_batch_tokens = Some(t);
            }
        }
        Ok(entries)
    }

    fn unknown(&self, name: &str) -> ServeError {
        ServeError::UnknownModel {
            name: name.into(),
            version: String::new(),
            served: self.names().map(|n| n.join(", ")).unwrap_or_default(),
        }
    }

    /// Loads `entry`'s model and starts its pool: threads from the usable cores (workers ×
    /// intra-op = usable), warm before it returns.
    fn start(&self, mut entry: ModelEntry) -> anyhow::Result<ServedModel> {
        let registry = thrum::registry();
        let model_ref = ModelRef::parse(&entry.model)?;
        // A thrum.toml's [image] table, named in errors by its key.
        let table = (!entry.image.is_empty())
            .then_some((entry.image, std::path::Path::new("its thrum.toml")));
        // A model file's pre-processing, checked before its load: the flags over the table. A
        // zoo image model has its own; other zoo models take tensors here.
        let custom = match (&model_ref, table) {
            (thrum::ModelRef::Path(_), _) => {
                super::options::image_recipe(self.overrides.image, table, &model_ref)?
            }
            (_, None) => None,
            (_, Some(_)) => {
                super::options::image_recipe(Default::default(), table, &model_ref)?;
                anyhow::bail!(
                    "an [image] table pre-processes the images of a model file; thrum serve \
                     gives {} tensors only",
                    entry.model
                );
            }
        };
        let engine = match (&model_ref, entry.engine.as_str()) {
            (ModelRef::Path(path), AUTO) => registry.for_file(path)?,
            (ModelRef::Zoo(_) | ModelRef::Pretrained(_), AUTO) => registry.get("tract")?,
            (_, name) => registry.get(name)?,
        };
        let int8_model = entry.int8_model.as_deref().map(std::path::Path::new);
        let source = super::model_source(&model_ref, engine.as_ref(), int8_model, &entry.options)?;
        // Threads come from the usable cores (affinity and cgroup quota), never the host's
        // count, which engines would take when intra-op is unset.
        let (workers, intra) = thrum_bench::system::split_cores(
            self.usable,
            entry.pool.workers,
            entry.options.intra_op_threads,
        );
        entry.pool.workers = workers;
        entry.options.intra_op_threads = Some(intra);
        entry.options.inter_op_threads.get_or_insert(1);
        let model = engine.load(&source, &entry.options).with_context(|| {
            format!("loading model `{}` ({}) on {}", entry.name, entry.model, engine.name())
        })?;
        if let Some(triton) = &entry.triton {
            thrum_serve::triton::check_model(&entry.name, &triton.config, &model)?;
            if !triton.ignored.is_empty() {
                tracing::warn!(model = %entry.name, ignored = %triton.ignored.join(", "),
                    "config.pbtxt sets fields thrum serve does not use; served as if they were absent");
            }
        }
        if entry.pool.queue_capacity == 0 {
            entry.pool.queue_capacity =
                PoolConfig::DEFAULT_QUEUE_PER_WORKER.saturating_mul(entry.pool.workers);
        }
        // A text model (one that brings its tokenizer) also answers /embed and /v1/embeddings,
        // and batches as TEI does: texts of different lengths join, padded, up to a token budget.
        let text = match model_ref.text_dir() {
            Some(dir) => Some(std::sync::Arc::new(thrum::text::TextEmbedding::from_dir(&dir)?)),
            None => None,
        };
        if text.is_some() {
            entry.pool.batching = thrum_serve::embed::text_batching(
                &model,
                entry.pool.batching.take(),
                entry.max_batch_tokens,
            );
        }
        // An image model also takes encoded images (v2 BYTES, TorchServe's /predictions): a zoo
        // image classifier with its own recipe, or a model file whose one input is an RGB image
        // of TorchServe's 224 × 224 (NCHW or NHWC), pre-processed as TorchServe's
        // image_classifier does, as `thrum predict --image` does for files.
        let image = if model_ref.is_image_model() {
            let transform = model_ref.image_transform(&model, None)?;
            let labels = match &model_ref {
                thrum::ModelRef::Pretrained(m) => m.labels()?.map(std::sync::Arc::new),
                _ => None,
            };
            Some(std::sync::Arc::new(thrum_serve::image::ImageService::new(transform, labels)))
        } else if let thrum::ModelRef::Path(_) = &model_ref {
            // A classifier's first output is [N, classes]: a detector or a segmenter that also
            // takes [N,3,H,W] is not given images it would answer with nonsense classes.
            let classifier = model
                .outputs()
                .first()
                .is_some_and(|o| o.shape.len() == 2 && o.shape[1].fixed().is_some_and(|c| c >= 2));
            let custom = custom.as_ref();
            match model_ref.image_transform(&model, custom) {
                Ok(_) if !classifier => {
                    if table.is_some() {
                        tracing::warn!(model = %entry.name, "its thrum.toml's [image] table is \
                            left out: the model's first output is not [N, classes]");
                    }
                    tracing::debug!(model = %entry.name, "does not take encoded images: its \
                        first output is not [N, classes]");
                    None
                }
                Ok(transform) => {
                    let r = model_ref.image_recipe(custom);
                    tracing::info!(model = %entry.name, resize = r.resize, crop = r.crop,
                        mean = ?r.mean, std = ?r.std, bgr = r.bgr, "takes encoded images too: the shorter \
                        side resized, the center cropped, normalised (TorchServe's \
                        image_classifier's defaults unless --image-* flags or its thrum.toml's \
                        [image] say otherwise)");
                    Some(std::sync::Arc::new(thrum_serve::image::ImageService::new(
                        transform, None,
                    )))
                }
                // Flags that name a pre-processing for image files, and a classifier whose
                // one input is a 4-D RGB image of another side: the flags are wrong for it.
                Err(why)
                    if custom.is_some()
                        && classifier
                        && matches!(model.inputs(), [spec] if spec.shape.len() == 4
                            && (spec.shape[1].fixed() == Some(3) || spec.shape[3].fixed() == Some(3))) =>
                {
                    anyhow::bail!("--image-* flags or an [image] table: {why}");
                }
                Err(why) => {
                    if table.is_some() {
                        tracing::warn!(model = %entry.name, %why, "its thrum.toml's [image] \
                            table is left out: the model does not take encoded images");
                    }
                    tracing::debug!(model = %entry.name, %why, "does not take encoded images");
                    None
                }
            }
        } else {
            None
        };
        // A content-type model (Magika) also takes files (v2 BYTES, TorchServe's /predictions).
        let content = match model_ref.content_type_dir() {
            Some(dir) => {
                let magika = thrum::magika::Magika::from_dir(&dir)?;
                thrum::magika::ContentTypeTranslator::new(magika.clone()).check_model(&model)?;
                Some(std::sync::Arc::new(magika))
            }
            None => None,
        };
        tracing::info!(model = %entry.name, engine = engine.name(), workers = entry.pool.workers,
            intra_op_threads = intra, predictor = %entry.pool.predictor, batching = ?entry.pool.batching, "starting");
        let pool = thrum_serve::ModelPool::start(&entry.name, model, entry.pool.clone())?;
        Ok(ServedModel {
            name: entry.name,
            pool,
            platform: thrum_serve::platform(engine.name(), source.format().map(|f| f.id)),
            text,
            image,
            content,
        })
    }
}

impl Repository for CliRepository {
    fn names(&self) -> Result<Vec<String>, ServeError> {
        match &self.models {
            // A repository's folders, whether or not they hold a model that loads: a broken
            // one shows in the index, and its load says why.
            Models::Repository(dir) => {
                let entries = std::fs::read_dir(dir).map_err(|e| ServeError::Config {
                    what: format!("`{}`", dir.display()),
                    reason: format!("cannot read the model repository: {e}"),
                })?;
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_dir())
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .filter(|n| !n.starts_with('.'))
                    .collect();
                names.sort();
                Ok(names)
            }
            _ => Ok(self.entries(None, None)?.into_iter().map(|e| e.name).collect()),
        }
    }

    fn load(
        &self,
        name: &str,
        triton: Option<&thrum_serve::pb::ModelConfig>,
    ) -> Result<ServedModel, ServeError> {
        let entry = self
            .entries(Some(name), triton)?
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| self.unknown(name))?;
        self.start(entry).map_err(|e| config_error(format!("model `{name}`"), e))
    }
}

/// Logs to stderr through `tracing`, at the level `RUST_LOG` says (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn model_name(model: &str) -> anyhow::Result<String> {
    Ok(match ModelRef::parse(model)? {
        ModelRef::Zoo(z) => z.name.to_string(),
        ModelRef::Pretrained(m) => m.name().to_string(),
        ModelRef::Path(p) => thrum::ModelSource::path(p).name(),
    })
}
