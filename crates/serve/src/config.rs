//! What to serve, from a `thrum.toml` or a model repository: for each model its name, where it
//! is, the engine, options, workers, predictor kind, batching and queue bound. Parsing only; the
//! caller (the CLI) loads the models.
//!
//! One model per file (what `thrum tune` writes, and what a model repository's folders hold):
//!
//! ```toml
//! model = "resnet50.onnx"      # relative to the file; in a repository, the folder's model file
//! engine = "ort"
//! workers = 2
//! predictor = "per-thread"
//! queue_capacity = 128
//!
//! [options]                    # any option key (docs/configuration.md)
//! intra_op_threads = 1
//! "ort.execution_mode" = "sequential"
//!
//! [batching]
//! max_batch_size = 8
//! max_queue_delay_us = 500
//! preferred_batch_sizes = [4, 8]
//! max_batch_tokens = 16384     # a text model: padded positions per batch (0: no padding)
//!
//! [image]                      # an image model file: its pre-processing (the --image-* flags)
//! resize = 240
//! crop = 224
//! mean = [0.5, 0.5, 0.5]
//! std = [0.5, 0.5, 0.5]
//! channels = "rgb"             # or "bgr"
//! ```
//!
//! Several models: the same tables as `[[models]]` entries, each with a `name`.
//!
//! The server's own settings (ports, limits, timeouts, model control) go in a `[server]` table
//! beside the model or models, with the names of `thrum serve`'s flags ([`SERVER_KEYS`]):
//!
//! ```toml
//! [server]
//! max_connections = 4096
//! header_timeout_s = 30
//! keep_alive_timeout_s = 75
//! model_control_mode = "explicit"
//! load_model = ["resnet50"]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use thrum_core::{ModelFormat, Options, PredictorKind};

use crate::server::ModelControl;

use crate::error::ServeError;
use crate::pool::{Batching, PoolConfig};
use crate::triton::TritonModel;

/// One model to serve, before it is loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    /// Its name in URLs.
    pub name: String,
    /// Where it is: a path, or `zoo:NAME`.
    pub model: String,
    /// The engine that runs it.
    pub engine: String,
    /// Options for loading it.
    pub options: Options,
    /// How it is served; `workers` 0 and `queue_capacity` 0 mean "decide from the cores" (the
    /// caller does: see [`PoolConfig::DEFAULT_QUEUE_PER_WORKER`]).
    pub pool: PoolConfig,
    /// The Triton model folder it comes from, when it does: its configuration's inputs and
    /// outputs are checked against the loaded model ([`crate::triton::check_model`]).
    pub triton: Option<TritonModel>,
    /// For a text model: most padded token positions per batch (`None`: the default,
    /// [`crate::embed::DEFAULT_MAX_BATCH_TOKENS`]; 0: requests of different lengths do not
    /// join). See [`crate::embed::text_batching`].
    pub max_batch_tokens: Option<usize>,
    /// With `precision = "int8"` in its options: the quantized graph run in place of
    /// `model`'s own (`thrum quantize`'s output), while `model` still decides the pipeline
    /// (tokenizer, image recipe, labels).
    pub int8_model: Option<String>,
    /// For an image model given as a file: its pre-processing, where TorchServe's defaults
    /// are not it (the `[image]` table; the `--image-*` flags override each key).
    pub image: ImageSettings,
}

/// The pre-processing of an image model file as a `thrum.toml`'s `[image]` table (or the
/// `--image-*` flags) gives it: each part unset keeps its default, which the caller decides
/// (TorchServe's: shorter side 256, center 224, ImageNet's mean and std).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ImageSettings {
    /// The shorter side after resizing.
    pub resize: Option<u32>,
    /// The side of the center crop.
    pub crop: Option<u32>,
    /// Per-channel mean, R,G,B on the 0–1 scale.
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation, R,G,B on the 0–1 scale, each above 0.
    pub std: Option<[f32; 3]>,
    /// The tensor's colour channels (RGB unless set).
    pub channels: Option<thrum_vision::ChannelOrder>,
}

impl ImageSettings {
    /// The keys of the `[image]` table.
    pub const KEYS: &[&str] = &["resize", "crop", "mean", "std", "channels"];
    /// The largest side `resize` and `crop` take.
    pub const MAX_SIDE: u32 = 16384;

    /// Whether no part is set.
    pub fn is_empty(&self) -> bool {
        *self == ImageSettings::default()
    }

    /// `self`'s parts, and `under`'s where `self` has none.
    pub fn or(self, under: ImageSettings) -> ImageSettings {
        ImageSettings {
            resize: self.resize.or(under.resize),
            crop: self.crop.or(under.crop),
            mean: self.mean.or(under.mean),
            std: self.std.or(under.std),
            channels: self.channels.or(under.channels),
        }
    }

    /// The parts that are set as an `[image]` table (what `thrum tune` writes).
    pub fn to_toml(&self) -> toml::Table {
        let rgb = |v: [f32; 3]| -> toml::Value {
            // Printed as f32 prints them (0.229, not 0.22900000214576721).
            let floats =
                v.iter().map(|x| toml::Value::Float(x.to_string().parse().unwrap_or(f64::NAN)));
            toml::Value::Array(floats.collect())
        };
        let mut t = toml::Table::new();
        if let Some(n) = self.resize {
            t.insert("resize".into(), i64::from(n).into());
        }
        if let Some(n) = self.crop {
            t.insert("crop".into(), i64::from(n).into());
        }
        if let Some(v) = self.mean {
            t.insert("mean".into(), rgb(v));
        }
        if let Some(v) = self.std {
            t.insert("std".into(), rgb(v));
        }
        if let Some(order) = self.channels {
            t.insert("channels".into(), order.name().into());
        }
        t
    }

    /// Reads an `[image]` table, each value checked: sides of 1 to [`Self::MAX_SIDE`], three
    /// finite numbers for `mean`, three above 0 for `std`.
    fn from_toml(t: &toml::Table, path: &Path) -> Result<ImageSettings, ServeError> {
        if let Some(k) = t.keys().find(|k| !Self::KEYS.contains(&k.as_str())) {
            return Err(bad(
                path,
                format!("unknown key `image.{k}`; keys: {}", Self::KEYS.join(", ")),
            ));
        }
        let side = |key: &str| -> Result<Option<u32>, ServeError> {
            match t.get(key) {
                None => Ok(None),
                Some(toml::Value::Integer(n)) if (1..=i64::from(Self::MAX_SIDE)).contains(n) => {
                    Ok(Some(*n as u32))
                }
                Some(other) => Err(bad(
                    path,
                    format!(
                        "`image.{key}` must be a side in pixels, 1 to {}, not {other}",
                        Self::MAX_SIDE
                    ),
                )),
            }
        };
        let rgb = |key: &str, positive: bool| -> Result<Option<[f32; 3]>, ServeError> {
            let Some(value) = t.get(key) else { return Ok(None) };
            let number = |v: &toml::Value| match v {
                toml::Value::Float(x) => Some(*x as f32),
                toml::Value::Integer(n) => Some(*n as f32),
                _ => None,
            };
            let values = value.as_array().and_then(|items| {
                items
                    .iter()
                    .map(|i| number(i).filter(|x| x.is_finite() && (!positive || *x > 0.0)))
                    .collect::<Option<Vec<f32>>>()
            });
            match values.as_deref() {
                Some(&[r, g, b]) => Ok(Some([r, g, b])),
                _ => Err(bad(
                    path,
                    format!(
                        "`image.{key}` must be [R, G, B]: three {} on the 0–1 scale, not {value}",
                        if positive { "numbers above 0" } else { "finite numbers" }
                    ),
                )),
            }
        };
        let channels = match t.get("channels") {
            None => None,
            Some(toml::Value::String(s)) => Some(s.parse().map_err(|_| {
                bad(path, format!("`image.channels` must be \"rgb\" or \"bgr\", not \"{s}\""))
            })?),
            Some(other) => {
                return Err(bad(
                    path,
                    format!("`image.channels` must be \"rgb\" or \"bgr\", not {other}"),
                ));
            }
        };
        Ok(ImageSettings {
            resize: side("resize")?,
            crop: side("crop")?,
            mean: rgb("mean", false)?,
            std: rgb("std", true)?,
            channels,
        })
    }
}

impl ModelEntry {
    /// An entry with the defaults: `workers` and `queue_capacity` 0 (decided by the caller), no
    /// batching.
    pub fn new(
        name: impl Into<String>,
        model: impl Into<String>,
        engine: impl Into<String>,
    ) -> ModelEntry {
        ModelEntry {
            name: name.into(),
            model: model.into(),
            engine: engine.into(),
            options: Options::default(),
            pool: PoolConfig { workers: 0, queue_capacity: 0, ..PoolConfig::new(1) },
            triton: None,
            max_batch_tokens: None,
            int8_model: None,
            image: ImageSettings::default(),
        }
    }

    /// The entry of a Triton model folder: engine from its platform, workers from its
    /// instance groups, batching from `max_batch_size` and `dynamic_batching`; a TorchScript
    /// model gets its input specs and output names from the configuration, a frozen
    /// TensorFlow graph its input and output operations.
    pub fn from_triton(name: &str, triton: TritonModel) -> Result<ModelEntry, ServeError> {
        let mut entry =
            ModelEntry::new(name, triton.model.display().to_string(), triton.engine.clone());
        let (workers, batching) = crate::triton::pool_settings(&triton.config);
        if let Some(w) = workers {
            entry.pool.workers = w;
        }
        entry.pool.batching = batching;
        let names = |list: Vec<&str>| list.join(",");
        let inputs: Vec<&str> = triton.config.input.iter().map(|i| i.name.as_str()).collect();
        let outputs: Vec<&str> = triton.config.output.iter().map(|o| o.name.as_str()).collect();
        if triton.engine == "torch" {
            // TorchScript records no names, shapes or dtypes: the configuration gives them.
            if !triton.config.input.is_empty() {
                let specs = crate::triton::specs(&triton.config, true).map_err(|reason| {
                    ServeError::Config { what: format!("model `{name}`: its config.pbtxt"), reason }
                })?;
                let text = specs
                    .iter()
                    .map(|s| format!("{}:{}{}", s.name, s.dtype, s.shape_string()))
                    .collect::<Vec<_>>()
                    .join(";");
                entry.options.set("torch.input_specs", &text)?;
            }
            if !outputs.is_empty() {
                entry.options.set("torch.output_names", &names(outputs))?;
            }
        } else if triton.engine == "tensorflow" && triton.model.is_file() {
            // A frozen graph's inputs and outputs are the operations the configuration names.
            if !inputs.is_empty() {
                entry.options.set("tensorflow.inputs", &names(inputs))?;
            }
            if !outputs.is_empty() {
                entry.options.set("tensorflow.outputs", &names(outputs))?;
            }
        }
        entry.triton = Some(triton);
        Ok(entry)
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ServeError {
    ServeError::Config { what: format!("`{}`", path.display()), reason: reason.into() }
}

/// Reads a `thrum.toml`: one model (top-level keys) or several (`[[models]]`). `default_name`
/// names a single model without a `name`; `model_file` is the model of a repository folder.
pub fn read_file(
    path: &Path,
    default_name: Option<&str>,
    model_file: Option<&Path>,
) -> Result<Vec<ModelEntry>, ServeError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot read it: {e}")))?;
    let mut table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| bad(path, e.to_string()))?;
    // The server's table is read by `read_server`.
    table.remove("server");
    let dir = path.parent().unwrap_or(Path::new("."));
    if table.is_empty() {
        return Ok(Vec::new());
    }
    match table.get("models") {
        Some(toml::Value::Array(models)) => {
            if table.len() > 1 {
                return Err(bad(
                    path,
                    "with [[models]], every setting belongs in a model's table (or [server])",
                ));
            }
            models
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let t = m
                        .as_table()
                        .ok_or_else(|| bad(path, format!("models[{i}] is not a table")))?;
                    entry(t, path, dir, None, None)
                })
                .collect()
        }
        Some(_) => Err(bad(path, "`models` must be an array of tables ([[models]])")),
        None => Ok(vec![entry(&table, path, dir, default_name, model_file)?]),
    }
}

fn entry(
    t: &toml::Table,
    path: &Path,
    dir: &Path,
    default_name: Option<&str>,
    model_file: Option<&Path>,
) -> Result<ModelEntry, ServeError> {
    const KEYS: &[&str] = thrum_core::config::DEPLOYMENT_KEYS;
    if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
        let near = thrum_core::config::closest(k, KEYS.iter().copied())
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        return Err(bad(path, format!("unknown key `{k}`; {near}keys: {}", KEYS.join(", "))));
    }
    let string = |key: &str| -> Result<Option<String>, ServeError> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(path, format!("`{key}` must be a string, not {other}"))),
        }
    };
    let count = |table: &toml::Table, key: &str, min: i64| -> Result<Option<usize>, ServeError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if *n >= min => Ok(Some(*n as usize)),
            Some(other) => {
                Err(bad(path, format!("`{key}` must be an integer of at least {min}, not {other}")))
            }
        }
    };
    let name = match (string("name")?, default_name) {
        (Some(n), _) => n,
        (None, Some(n)) => n.to_string(),
        (None, None) => return Err(bad(path, "a model needs a `name`")),
    };
    let model = match (string("model")?, model_file) {
        (Some(m), _) if m.starts_with("zoo:") || Path::new(&m).is_absolute() => m,
        (Some(m), _) => dir.join(m).display().to_string(),
        (None, Some(file)) => file.display().to_string(),
        (None, None) => {
            return Err(bad(path, format!("model `{name}` needs `model` (a path or zoo:NAME)")));
        }
    };
    let mut entry =
        ModelEntry::new(name, model, string("engine")?.unwrap_or_else(|| "tract".into()));
    entry.int8_model = string("int8_model")?
        .map(|m| if Path::new(&m).is_absolute() { m } else { dir.join(m).display().to_string() });
    if let Some(w) = count(t, "workers", 1)? {
        entry.pool.workers = w;
    }
    if let Some(p) = string("predictor")? {
        entry.pool.predictor = p.parse::<PredictorKind>().map_err(|e| bad(path, e.to_string()))?;
    }
    if let Some(q) = count(t, "queue_capacity", 1)? {
        entry.pool.queue_capacity = q;
    }
    match t.get("options") {
        None => {}
        Some(toml::Value::Table(options)) => {
            entry.options.apply_toml_table(options, path)?;
            if entry.options.predictor.is_some() && t.get("predictor").is_none() {
                entry.pool.predictor = entry.options.predictor.unwrap_or_default();
            }
        }
        Some(other) => return Err(bad(path, format!("`options` must be a table, not {other}"))),
    }
    match t.get("batching") {
        None => {}
        Some(toml::Value::Table(b)) => {
            const BATCH_KEYS: &[&str] = &[
                "max_batch_size",
                "max_queue_delay_us",
                "preferred_batch_sizes",
                "max_batch_tokens",
            ];
            if let Some(k) = b.keys().find(|k| !BATCH_KEYS.contains(&k.as_str())) {
                return Err(bad(
                    path,
                    format!("unknown key `batching.{k}`; keys: {}", BATCH_KEYS.join(", ")),
                ));
            }
            let max = count(b, "max_batch_size", 0)?.unwrap_or(0);
            let delay = count(b, "max_queue_delay_us", 0)?.unwrap_or(0);
            entry.max_batch_tokens = count(b, "max_batch_tokens", 0)?;
            let preferred = match b.get("preferred_batch_sizes") {
                None => Vec::new(),
                Some(toml::Value::Array(items)) => items
                    .iter()
                    .map(|i| match i {
                        toml::Value::Integer(n) if *n >= 1 => Ok(*n as usize),
                        other => Err(bad(
                            path,
                            format!("preferred batch size {other} is not a positive integer"),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(bad(
                        path,
                        format!("`preferred_batch_sizes` must be an array, not {other}"),
                    ));
                }
            };
            entry.pool.batching = (max > 0).then(|| {
                Batching::new(max, Duration::from_micros(delay as u64)).with_preferred(preferred)
            });
        }
        Some(other) => return Err(bad(path, format!("`batching` must be a table, not {other}"))),
    }
    match t.get("image") {
        None => {}
        Some(toml::Value::Table(image)) => entry.image = ImageSettings::from_toml(image, path)?,
        Some(other) => return Err(bad(path, format!("`image` must be a table, not {other}"))),
    }
    Ok(entry)
}

/// The keys of a `thrum.toml`'s `[server]` table: `thrum serve`'s flags, with `_` for `-`.
pub const SERVER_KEYS: &[&str] = &[
    "host",
    "http_port",
    "grpc_port",
    "body_limit_mib",
    "max_client_batch_size",
    "text_body_limit_mib",
    "shutdown_grace_s",
    "max_connections",
    "header_timeout_s",
    "body_timeout_s",
    "keep_alive_timeout_s",
    "write_timeout_s",
    "shutdown_timeout_s",
    "grpc_max_streams",
    "model_control_mode",
    "load_model",
];

/// A `[server]` table: every setting it gives (the command line's flags go over them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerFile {
    /// `host`.
    pub host: Option<std::net::IpAddr>,
    /// `http_port`.
    pub http_port: Option<u16>,
    /// `grpc_port`.
    pub grpc_port: Option<u16>,
    /// `body_limit_mib`, in bytes.
    pub body_limit: Option<usize>,
    /// `max_client_batch_size`.
    pub max_client_batch: Option<usize>,
    /// `text_body_limit_mib`, in bytes.
    pub text_body_limit: Option<usize>,
    /// `shutdown_grace_s`.
    pub shutdown_grace: Option<Duration>,
    /// `max_connections`.
    pub max_connections: Option<usize>,
    /// `header_timeout_s`.
    pub header_timeout: Option<Duration>,
    /// `body_timeout_s`.
    pub body_timeout: Option<Duration>,
    /// `keep_alive_timeout_s`.
    pub keep_alive_timeout: Option<Duration>,
    /// `write_timeout_s`.
    pub write_timeout: Option<Duration>,
    /// `shutdown_timeout_s`.
    pub shutdown_timeout: Option<Duration>,
    /// `grpc_max_streams`.
    pub grpc_max_streams: Option<u32>,
    /// `model_control_mode`.
    pub model_control: Option<ModelControl>,
    /// `load_model`.
    pub load_model: Vec<String>,
}

/// Seconds a `[server]` timeout may be: above 0, at most a day.
pub const MAX_TIMEOUT_S: f64 = 86_400.0;

/// Reads the `[server]` table of a `thrum.toml` (none: every setting left to the flags and
/// defaults).
pub fn read_server(path: &Path) -> Result<ServerFile, ServeError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot read it: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(path, e.to_string()))?;
    let Some(server) = table.get("server") else { return Ok(ServerFile::default()) };
    let server =
        server.as_table().ok_or_else(|| bad(path, "`server` must be a table ([server])"))?;
    if let Some(k) = server.keys().find(|k| !SERVER_KEYS.contains(&k.as_str())) {
        let near = thrum_core::config::closest(k, SERVER_KEYS.iter().copied())
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        return Err(bad(
            path,
            format!("unknown key `server.{k}`; {near}keys: {}", SERVER_KEYS.join(", ")),
        ));
    }
    let int = |key: &str, min: i64, max: i64| -> Result<Option<i64>, ServeError> {
        match server.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if (min..=max).contains(n) => Ok(Some(*n)),
            Some(other) => Err(bad(
                path,
                format!("`server.{key}` must be an integer from {min} to {max}, not {other}"),
            )),
        }
    };
    let seconds = |key: &str, zero: bool| -> Result<Option<Duration>, ServeError> {
        let value = match server.get(key) {
            None => return Ok(None),
            Some(toml::Value::Integer(n)) => *n as f64,
            Some(toml::Value::Float(x)) => *x,
            Some(other) => {
                return Err(bad(path, format!("`server.{key}` must be seconds, not {other}")));
            }
        };
        let low_ok = if zero { value >= 0.0 } else { value > 0.0 };
        if !(value.is_finite() && low_ok && value <= MAX_TIMEOUT_S) {
            return Err(bad(
                path,
                format!(
                    "`server.{key}` = {value}: seconds {} 0 and at most {MAX_TIMEOUT_S}",
                    if zero { "from" } else { "above" }
                ),
            ));
        }
        Ok(Some(Duration::from_secs_f64(value)))
    };
    let string = |key: &str| -> Result<Option<String>, ServeError> {
        match server.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(path, format!("`server.{key}` must be a string, not {other}"))),
        }
    };
    Ok(ServerFile {
        host: string("host")?
            .map(|h| h.parse().map_err(|e| bad(path, format!("`server.host` `{h}`: {e}"))))
            .transpose()?,
        http_port: int("http_port", 0, 65535)?.map(|p| p as u16),
        grpc_port: int("grpc_port", 0, 65535)?.map(|p| p as u16),
        body_limit: int("body_limit_mib", 1, 65536)?.map(|m| (m as usize) << 20),
        max_client_batch: int("max_client_batch_size", 1, 1 << 20)?.map(|n| n as usize),
        text_body_limit: int("text_body_limit_mib", 1, 65536)?.map(|m| (m as usize) << 20),
        shutdown_grace: seconds("shutdown_grace_s", true)?,
        max_connections: int("max_connections", 1, 1 << 20)?.map(|n| n as usize),
        header_timeout: seconds("header_timeout_s", false)?,
        body_timeout: seconds("body_timeout_s", false)?,
        keep_alive_timeout: seconds("keep_alive_timeout_s", false)?,
        write_timeout: seconds("write_timeout_s", false)?,
        shutdown_timeout: seconds("shutdown_timeout_s", true)?,
        grpc_max_streams: int("grpc_max_streams", 1, 1 << 20)?.map(|n| n as u32),
        model_control: string("model_control_mode")?
            .map(|m| {
                m.parse::<ModelControl>()
                    .map_err(|e| bad(path, format!("`server.model_control_mode`: {e}")))
            })
            .transpose()?,
        load_model: match server.get("load_model") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(bad(
                        path,
                        format!("`server.load_model` holds {other}; model names are strings"),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(bad(
                    path,
                    format!("`server.load_model` must be an array of model names, not {other}"),
                ));
            }
        },
    })
}

/// The models of a repository: one folder per model, named as the folder, holding the model
/// (the one file or folder of a format some engine reads) and optionally a `thrum.toml`, or
/// laid out as Triton's (`config.pbtxt`, version folders: [`crate::triton`]).
pub fn read_repository(dir: &Path, engine: &str) -> Result<Vec<ModelEntry>, ServeError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| bad(dir, format!("cannot read the model repository: {e}")))?;
    let mut folders: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    folders.sort();
    if folders.is_empty() {
        return Err(bad(dir, "the model repository has no model folder (one folder per model)"));
    }
    folders
        .iter()
        .map(|folder| read_model_dir(folder, None, engine))
        .collect::<Result<Vec<Vec<_>>, _>>()
        .map(|v| v.into_iter().flatten().collect())
}

/// One model's folder (a repository's, or KServe's `--model-dir /mnt/models`): its model file
/// and optional `thrum.toml`, or a Triton model folder. `name` defaults to the folder's name.
pub fn read_model_dir(
    folder: &Path,
    name: Option<&str>,
    engine: &str,
) -> Result<Vec<ModelEntry>, ServeError> {
    read_model_dir_with(folder, name, engine, None)
}

/// [`read_model_dir`], with Triton's configuration replaced by `config` (a load request's).
pub fn read_model_dir_with(
    folder: &Path,
    name: Option<&str>,
    engine: &str,
    config: Option<&crate::pb::ModelConfig>,
) -> Result<Vec<ModelEntry>, ServeError> {
    let default_name = match name {
        Some(n) => n.to_string(),
        None => folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
    };
    if crate::triton::is_triton_model(folder) && !folder.join("thrum.toml").is_file() {
        let triton = crate::triton::read_model(folder, &default_name, config)?;
        return Ok(vec![ModelEntry::from_triton(&default_name, triton)?]);
    }
    if config.is_some() {
        return Err(ServeError::bad(format!(
            "load parameter `config` is Triton's model configuration; model `{default_name}` is \
             not a Triton model folder (it has no config.pbtxt or version folder): change its \
             thrum.toml instead"
        )));
    }
    let model = model_in(folder)?;
    let config = folder.join("thrum.toml");
    if config.is_file() {
        return read_file(&config, Some(&default_name), Some(&model));
    }
    Ok(vec![ModelEntry::new(default_name, model.display().to_string(), engine)])
}

/// The one model in `folder`: the folder itself when it is a model stored as a directory (a
/// SavedModel), else a file (or folder) in it whose name a registered format claims.
fn model_in(folder: &Path) -> Result<PathBuf, ServeError> {
    if ModelFormat::detect(folder).is_some_and(|f| f.directory_marker.is_some()) {
        return Ok(folder.to_path_buf());
    }
    let entries =
        std::fs::read_dir(folder).map_err(|e| bad(folder, format!("cannot read it: {e}")))?;
    let mut models: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| ModelFormat::detect(p).is_some())
        .collect();
    models.sort();
    match models.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(bad(
            folder,
            format!(
                "no model file in it; expected one of {}",
                thrum_core::engine::all_formats()
                    .iter()
                    .map(ModelFormat::hint)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        many => Err(bad(
            folder,
            format!(
                "{} model files in it ({}); a model folder holds one",
                many.len(),
                many.iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    use super::*;

    #[test]
    fn a_single_model_file_reads_every_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thrum.toml");
        std::fs::write(
            &path,
            "model = \"zoo:mlp\"\nengine = \"ort\"\nworkers = 3\npredictor = \"shared\"\nqueue_capacity = 9\n\
             [options]\nintra_op_threads = 2\n[batching]\nmax_batch_size = 8\nmax_queue_delay_us = 250\npreferred_batch_sizes = [4]\n\
             max_batch_tokens = 4096\n",
        )
        .unwrap();
        let models = read_file(&path, Some("mlp"), None).unwrap();
        let m = &models[0];
        assert_eq!(
            (m.name.as_str(), m.model.as_str(), m.engine.as_str()),
            ("mlp", "zoo:mlp", "ort")
        );
        assert_eq!(
            (m.pool.workers, m.pool.predictor, m.pool.queue_capacity),
            (3, PredictorKind::Shared, 9)
        );
        assert_eq!(m.options.intra_op_threads, Some(2));
        let b = m.pool.batching.as_ref().unwrap();
        assert_eq!(
            (b.max_batch_size, b.max_queue_delay, b.preferred_batch_sizes.clone()),
            (8, Duration::from_micros(250), vec![4])
        );
        assert_eq!(m.max_batch_tokens, Some(4096));
        assert!(m.image.is_empty());
    }

    #[test]
    fn an_image_table_reads_back_what_it_was_written_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thrum.toml");
        let image = ImageSettings {
            resize: Some(240),
            crop: None,
            mean: Some([0.485, 0.456, 0.406]),
            std: Some([0.229, 0.224, 0.225]),
            channels: Some(thrum_vision::ChannelOrder::Bgr),
        };
        let mut t = toml::Table::new();
        t.insert("model".into(), "m.onnx".into());
        t.insert("image".into(), image.to_toml().into());
        let text = toml::to_string(&t).unwrap();
        assert!(text.contains("mean = [0.485, 0.456, 0.406]"), "{text}");
        std::fs::write(&path, text).unwrap();
        assert_eq!(read_file(&path, Some("m"), None).unwrap()[0].image, image);
        // The flags' parts over the file's.
        let flags = ImageSettings { crop: Some(200), resize: Some(256), ..Default::default() };
        assert_eq!(flags.or(image), ImageSettings { resize: Some(256), crop: Some(200), ..image });
    }

    #[test]
    fn a_bad_image_table_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thrum.toml");
        for (table, expected) in [
            ("resize = 0", "`image.resize` must be a side in pixels, 1 to 16384, not 0"),
            ("crop = \"224\"", "`image.crop` must be a side in pixels"),
            ("mean = [0.5, 0.5]", "`image.mean` must be [R, G, B]: three finite numbers"),
            ("std = [0.5, 0, 0.5]", "`image.std` must be [R, G, B]: three numbers above 0"),
            ("std = 0.5", "`image.std` must be [R, G, B]"),
            ("size = 3", "unknown key `image.size`; keys: resize, crop, mean, std, channels"),
            ("channels = \"rgba\"", "`image.channels` must be \"rgb\" or \"bgr\", not \"rgba\""),
        ] {
            std::fs::write(&path, format!("model = \"m.onnx\"\n[image]\n{table}\n")).unwrap();
            let e = read_file(&path, Some("m"), None).unwrap_err().to_string();
            assert!(e.contains("thrum.toml") && e.contains(expected), "{table}: {e}");
        }
        std::fs::write(&path, "model = \"m.onnx\"\nimage = 3\n").unwrap();
        let e = read_file(&path, Some("m"), None).unwrap_err().to_string();
        assert!(e.contains("`image` must be a table"), "{e}");
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thrum.toml");
        std::fs::write(&path, "model = \"zoo:mlp\"\nworker = 2\n").unwrap();
        let e = read_file(&path, Some("m"), None).unwrap_err().to_string();
        assert!(
            e.contains("thrum.toml") && e.contains("`worker`") && e.contains("`workers`"),
            "{e}"
        );
        std::fs::write(&path, "model = \"zoo:mlp\"\n[options]\nintra_threads = 2\n").unwrap();
        let e = read_file(&path, Some("m"), None).unwrap_err().to_string();
        assert!(e.contains("intra_threads"), "{e}");
    }
}
