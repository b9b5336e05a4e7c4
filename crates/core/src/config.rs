//! Model-loading options: one value type ([`Options`]), one table of keys per owner.
//!
//! Core owns the engine-neutral keys ([`KEYS`]: threads, oneDNN, predictor kind) and the
//! machinery; every engine owns its keys (`ort.execution_mode`…) in its
//! [`EngineInfo::options`](crate::EngineInfo), with its typed view of them in its own crate.
//! Every option can be set four ways, later ones winning:
//! 1. defaults (the `default` column of the tables);
//! 2. a TOML file ([`Options::apply_toml_file`]), flat keys or one table per engine;
//! 3. environment variables, one per key (`THRUM_…`, see [`OptionKey::env`]);
//! 4. code: `key=value` strings ([`Options::set`], [`Options::apply_pairs`], what
//!    `--model-options` feeds) or the typed `with_*` builders of the engine-neutral keys.
//!
//! An unknown key or a bad value in a file or in code is an error naming the closest valid key;
//! an unknown `THRUM_*` environment variable is a warning (an environment often carries
//! variables of another thrum version). The `docs/configuration.md` table is
//! [`markdown_table`]'s output, and a test keeps the two equal.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::PredictorKind;
use crate::precision::Precision;

/// When a setting takes effect, which says how it can be varied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Fixed once per process (read when a native library loads, or a process-wide pool):
    /// comparing two values takes two processes.
    Process,
    /// Read when a model is loaded.
    Model,
    /// Applied per predictor or on each thread that runs the model.
    Predictor,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Process => "process",
            Scope::Model => "model",
            Scope::Predictor => "predictor",
        })
    }
}

/// One configuration key: its names, default, scope, effect, and how its values are checked.
#[derive(Debug)]
pub struct OptionKey {
    /// The key, as used in TOML files and `key=value` strings.
    pub key: &'static str,
    /// The environment variable that sets it.
    pub env: &'static str,
    /// The default, as documented.
    pub default: &'static str,
    /// `all`, or the engine that reads it.
    pub engine: &'static str,
    /// What values are accepted.
    pub expected: &'static str,
    /// What it does.
    pub effect: &'static str,
    /// When it takes effect.
    pub scope: Scope,
    /// Values a tuner tries; empty when the key is not tuned (paths, specs, diagnostics).
    pub tunable: &'static [&'static str],
    /// Checks a value: returns it normalised, or why it is not valid.
    pub check: fn(&str) -> std::result::Result<String, String>,
}

/// Options for loading a model: the engine-neutral keys as typed fields, every engine's keys
/// by name (engines read them through their own typed view, e.g. `thrum_ort::OrtOptions`).
///
/// ```
/// use thrum_core::Options;
/// let mut options = Options::default().with_intra_op_threads(2);
/// options.apply_pairs("inter_op_threads=1, predictor=shared")?;
/// assert_eq!(options.intra_op_threads, Some(2));
/// let err = options.set("intra_op_thread", "2").unwrap_err().to_string();
/// assert!(err.contains("did you mean `intra_op_threads`?"), "{err}");
/// # Ok::<(), thrum_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// Threads used inside one operator (a matmul, a convolution). `None`: engine default.
    pub intra_op_threads: Option<usize>,
    /// Threads used to run independent operators in parallel. `None`: engine default.
    pub inter_op_threads: Option<usize>,
    /// oneDNN (MKLDNN) acceleration on or off. `None`: engine default.
    pub onednn: Option<bool>,
    /// Per-thread predictors or one shared predictor, for runners (bench, serve) that take
    /// it from options. `None`: the runner's default (per-thread).
    pub predictor: Option<PredictorKind>,
    /// The arithmetic the engine runs the model in. `None`: fp32, the model as its file says.
    pub precision: Option<Precision>,
    /// Engine keys that were set, with their normalised values.
    engine_values: BTreeMap<&'static str, String>,
}

/// The top-level keys of a model's `thrum.toml` (the serving layout; its options are the
/// `[options]` table, the server's settings the `[server]` table).
pub const DEPLOYMENT_KEYS: &[&str] = &[
    "name",
    "model",
    "int8_model",
    "engine",
    "workers",
    "predictor",
    "queue_capacity",
    "options",
    "batching",
    "image",
    "server",
];

/// Largest thread count an option accepts.
pub const MAX_THREADS: usize = 1024;

/// Environment variables thrum reads that are not option keys.
pub const OTHER_ENV_VARS: &[(&str, &str)] = &[
    ("THRUM_CONFIG", "path of a TOML options file the CLI reads (same as `--config`)"),
    (
        crate::precision::EMULATE_VAR,
        "1: `precision=bf16` / `fp16` run even on a CPU without those units (emulated, slower \
         than fp32), to test an engine's reduced-precision path anywhere",
    ),
    (
        "THRUM_HOME",
        "thrum's cache directory for installed engines and test data (default `~/.cache/thrum`)",
    ),
    (
        "THRUM_REQUIRE_ENGINES",
        "engines whose tests must run (comma-separated, or `all`): a missing one fails them \
         instead of being reported and skipped; the test command sets it",
    ),
];

/// thrum's cache directory, where install commands put engine libraries and test data:
/// `$THRUM_HOME`, else `$XDG_CACHE_HOME/thrum`, else `~/.cache/thrum`.
pub fn thrum_home() -> PathBuf {
    let non_empty =
        |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    non_empty("THRUM_HOME")
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|p| p.join("thrum")))
        .or_else(|| non_empty("HOME").map(|p| p.join(".cache").join("thrum")))
        .unwrap_or_else(|| PathBuf::from(".thrum-cache"))
}

/// Where `thrum engines install` puts a package's native libraries: `thrum_home()/engines/DIR`.
pub fn engine_home(dir: &str) -> PathBuf {
    thrum_home().join("engines").join(dir)
}

/// Checks a boolean (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`); normalises it to
/// `true` or `false`.
pub fn check_bool(v: &str) -> std::result::Result<String, String> {
    parse_bool(v).map(|b| b.to_string())
}

/// Parses a boolean as [`check_bool`] accepts it.
pub fn parse_bool(v: &str) -> std::result::Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("not a boolean".into()),
    }
}

/// Parses an integer in `min..=max`.
pub fn parse_count(v: &str, min: usize, max: usize) -> std::result::Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} is outside {min}..={max}")),
        Err(_) if v.trim().starts_with('-') => Err("negative".into()),
        Err(_) => Err("not a whole number".into()),
    }
}

/// Checks a thread count (1 to [`MAX_THREADS`]).
pub fn check_threads(v: &str) -> std::result::Result<String, String> {
    parse_count(v, 1, MAX_THREADS).map(|n| n.to_string())
}

/// Checks that `v` is one of `allowed` (case-insensitive); normalises it to the listed spelling.
pub fn check_one_of(v: &str, allowed: &[&str]) -> std::result::Result<String, String> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(v.trim()))
        .map(|a| a.to_string())
        .ok_or_else(|| format!("not one of {}", allowed.join(", ")))
}

/// Checks a non-empty path.
pub fn check_path(v: &str) -> std::result::Result<String, String> {
    Some(v.trim()).filter(|v| !v.is_empty()).map(String::from).ok_or_else(|| "empty".into())
}

/// Checks `name:dtype[dims]` tensor specs separated by `;`.
pub fn check_specs(v: &str) -> std::result::Result<String, String> {
    parse_specs(v).map(|specs| {
        specs
            .iter()
            .map(|s| format!("{}:{}{}", s.name, s.dtype, s.shape_string()))
            .collect::<Vec<_>>()
            .join(";")
    })
}

/// Parses `name:dtype[dims]` specs separated by `;` (at least one).
pub fn parse_specs(v: &str) -> std::result::Result<Vec<crate::spec::TensorSpec>, String> {
    let specs = v
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<crate::spec::TensorSpec>().map_err(|e| e.to_string()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if specs.is_empty() { Err("no spec given".into()) } else { Ok(specs) }
}

/// The engine-neutral keys. Engines declare theirs in their `EngineInfo`.
pub static KEYS: &[OptionKey] = &[
    OptionKey {
        key: "intra_op_threads",
        env: "THRUM_INTRA_OP_THREADS",
        default: "engine default",
        engine: "all",
        expected: "an integer from 1 to 1024",
        effect: "Threads inside one operator. tract: size of the model's matmul thread pool \
                 (default 1). torch: `at::set_num_threads`, applied on each thread that runs the \
                 model (default: OMP_NUM_THREADS, else the cores). mxnet: OpenMP threads per \
                 operator (OMP_NUM_THREADS), set when libmxnet loads. DJL: `ai.djl.pytorch.num_threads`, `ai.djl.onnxruntime.num_threads`.",
        scope: Scope::Model,
        tunable: &["1", "2", "4", "8", "16"],
        check: check_threads,
    },
    OptionKey {
        key: "inter_op_threads",
        env: "THRUM_INTER_OP_THREADS",
        default: "engine default",
        engine: "all",
        expected: "an integer from 1 to 1024",
        effect: "Threads running independent operators in parallel. tract runs operators in \
                 order and accepts only 1. torch: process-wide and settable once; a later model asking \
                 for a different count is an error. mxnet: the threaded engine's CPU workers \
                 (MXNET_CPU_WORKER_NTHREADS), set when libmxnet loads. DJL: \
                 `ai.djl.pytorch.num_interop_threads`.",
        scope: Scope::Model,
        tunable: &["1", "2", "4"],
        check: check_threads,
    },
    OptionKey {
        key: "onednn",
        env: "THRUM_ONEDNN",
        default: "engine default",
        engine: "all",
        expected: "true or false",
        effect: "oneDNN (MKLDNN) kernels on or off, where the engine has them; an engine without \
                 oneDNN refuses `true` and says why. torch: runs the model on MKLDNN tensors (inputs \
                 converted in, outputs back; f32/bf16 only). mxnet: on by default; false sets \
                 MXNET_MKLDNN_ENABLED=0 when libmxnet loads. DJL: `ai.djl.pytorch.use_mkldnn`.",
        scope: Scope::Model,
        tunable: &["true", "false"],
        check: check_bool,
    },
    OptionKey {
        key: "predictor",
        env: "THRUM_PREDICTOR",
        default: "per-thread",
        engine: "all",
        expected: "per-thread or shared",
        effect: "How runners (`thrum bench`, `thrum serve`) use the model: one predictor per \
                 worker thread (DJL's recommendation), or one thread-safe predictor shared by all \
                 workers, where the engine offers one (`thrum engines` says which do).",
        scope: Scope::Predictor,
        tunable: &["per-thread", "shared"],
        check: |v| v.parse::<PredictorKind>().map(|k| k.to_string()).map_err(|e| e.to_string()),
    },
    OptionKey {
        key: "precision",
        env: "THRUM_PRECISION",
        default: "fp32",
        engine: "all",
        expected: "fp32, bf16, fp16 or int8",
        effect: "The arithmetic the model runs in; an engine or a CPU that cannot do it refuses \
                 it with the reason and what would work. fp32: the model as its file says \
                 (OpenVINO is pinned to f32, which its CPU plugin would otherwise trade for bf16 \
                 on AMX CPUs). bf16, on CPUs with AVX512-BF16 or AMX: ort with the openvino \
                 provider (`INFERENCE_PRECISION_HINT`), torch (module and inputs in bf16), \
                 tensorflow (oneDNN's bf16 auto mixed precision). fp16: ort with openvino on \
                 CPUs with AVX512-FP16. int8: a quantized (QDQ) ONNX model, e.g. from `thrum \
                 quantize`, on ort (integer kernels) and tract; a model that is not quantized \
                 is refused. mxnet runs fp32 only.",
        scope: Scope::Model,
        tunable: &[],
        check: |v| v.parse::<Precision>().map(|p| p.to_string()).map_err(|e| e.to_string()),
    },
];

/// Every key: the engine-neutral ones, then each registered engine's, in engine order.
pub fn all_keys() -> impl Iterator<Item = &'static OptionKey> {
    KEYS.iter().chain(crate::engine::infos().into_iter().flat_map(|i| i.options.iter()))
}

/// The key called `key`.
pub fn find_key(key: &str) -> Option<&'static OptionKey> {
    all_keys().find(|k| k.key == key)
}

/// The most similar of `candidates` to `given`, if any is similar enough to be a likely typo.
pub fn closest<'a>(given: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let given = given.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::jaro_winkler(&given, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn bare_env(name: &str) -> &str {
    name.strip_prefix("THRUM_").unwrap_or(name)
}

fn unknown_key_hint(key: &str) -> String {
    let valid: Vec<&str> = all_keys().map(|k| k.key).collect();
    let list = format!("valid options: {}", valid.join(", "));
    match closest(key, valid.iter().copied()) {
        Some(near) => format!("did you mean `{near}`? {list}"),
        None => list,
    }
}

/// An unknown `THRUM_*` environment variable, ignored with a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvWarning {
    /// The variable.
    pub variable: String,
    /// The closest variable thrum knows, if one is close.
    pub closest: Option<&'static str>,
}

impl fmt::Display for EnvWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ignoring unknown environment variable {}", self.variable)?;
        match self.closest {
            Some(near) => write!(f, "; did you mean {near}?"),
            None => write!(f, "; thrum's variables are listed in docs/configuration.md"),
        }
    }
}

impl Options {
    /// Defaults, then the TOML file (if any), then `THRUM_*` environment variables. Returns the
    /// options and the unknown `THRUM_*` variables it ignored, for the caller to warn about.
    pub fn resolve(config_file: Option<&Path>) -> Result<(Options, Vec<EnvWarning>)> {
        let mut options = Options::default();
        if let Some(path) = config_file {
            options.apply_toml_file(path)?;
        }
        let warnings = options.apply_env()?;
        Ok((options, warnings))
    }

    /// Sets the intra-op thread count.
    pub fn with_intra_op_threads(mut self, threads: usize) -> Options {
        self.intra_op_threads = Some(threads);
        self
    }

    /// Sets the inter-op thread count.
    pub fn with_inter_op_threads(mut self, threads: usize) -> Options {
        self.inter_op_threads = Some(threads);
        self
    }

    /// Turns oneDNN on or off.
    pub fn with_onednn(mut self, onednn: bool) -> Options {
        self.onednn = Some(onednn);
        self
    }

    /// Sets an option by key (any key, engine keys included) from its textual value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        self.set_from(key, value, "")
    }

    /// Sets an option by key (builder form).
    pub fn with(mut self, key: &str, value: &str) -> Result<Options> {
        self.set(key, value)?;
        Ok(self)
    }

    fn set_from(&mut self, key: &str, value: &str, origin: &str) -> Result<()> {
        let key = key.trim();
        let def = find_key(key).ok_or_else(|| Error::UnknownOption {
            key: key.into(),
            origin: origin.into(),
            hint: unknown_key_hint(key),
        })?;
        let normal = (def.check)(value).map_err(|why| Error::InvalidValue {
            what: format!("option `{}`{origin}", def.key),
            value: value.into(),
            expected: format!("{} ({why})", def.expected),
        })?;
        match def.key {
            "intra_op_threads" => self.intra_op_threads = normal.parse().ok(),
            "inter_op_threads" => self.inter_op_threads = normal.parse().ok(),
            "onednn" => self.onednn = normal.parse().ok(),
            "predictor" => self.predictor = normal.parse().ok(),
            "precision" => self.precision = normal.parse().ok(),
            engine_key => {
                self.engine_values.insert(engine_key, normal);
            }
        }
        Ok(())
    }

    /// The value set for `key`, normalised; `None` when it was not set (its default applies).
    pub fn get(&self, key: &str) -> Option<String> {
        match key {
            "intra_op_threads" => self.intra_op_threads.map(|n| n.to_string()),
            "inter_op_threads" => self.inter_op_threads.map(|n| n.to_string()),
            "onednn" => self.onednn.map(|b| b.to_string()),
            "predictor" => self.predictor.map(|p| p.to_string()),
            "precision" => self.precision.map(|p| p.to_string()),
            other => self.engine_values.get(other).cloned(),
        }
    }

    /// Forgets the value of `key`, so that its default applies again.
    pub fn unset(&mut self, key: &str) {
        match key {
            "intra_op_threads" => self.intra_op_threads = None,
            "inter_op_threads" => self.inter_op_threads = None,
            "onednn" => self.onednn = None,
            "predictor" => self.predictor = None,
            "precision" => self.precision = None,
            other => {
                self.engine_values.remove(other);
            }
        }
    }

    /// Reads engine key `key` with `parse`, or `default` when it was not set.
    pub fn parse_or<T>(
        &self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> Result<T> {
        match self.engine_values.get(key) {
            None => Ok(default),
            Some(v) => parse(v).map_err(|why| Error::InvalidValue {
                what: format!("option `{key}`"),
                value: v.clone(),
                expected: why,
            }),
        }
    }

    /// Engine key `key` as a boolean, or `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        self.parse_or(key, default, parse_bool)
    }

    /// Engine key `key` as text, if it was set.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.engine_values.get(key).map(String::as_str)
    }

    /// Applies `key=value` pairs separated by commas (the `--model-options` syntax). A segment
    /// without `=` continues the previous value, so list values may contain commas.
    pub fn apply_pairs(&mut self, pairs: &str) -> Result<()> {
        let mut parsed: Vec<(String, String)> = Vec::new();
        for segment in pairs.split(',').filter(|s| !s.trim().is_empty()) {
            match segment.split_once('=') {
                Some((k, v)) => parsed.push((k.trim().into(), v.trim().into())),
                None => match parsed.last_mut() {
                    Some((_, v)) => {
                        v.push(',');
                        v.push_str(segment.trim());
                    }
                    None => {
                        return Err(Error::InvalidValue {
                            what: "model options".into(),
                            value: pairs.into(),
                            expected: "comma-separated key=value pairs, e.g. \
                                       intra_op_threads=2,tract.optimize=false"
                                .into(),
                        });
                    }
                },
            }
        }
        for (k, v) in parsed {
            self.set_from(&k, &v, " in model options")?;
        }
        Ok(())
    }

    /// Applies every `THRUM_*` environment variable that names a key. One that is neither a
    /// key's nor one of [`OTHER_ENV_VARS`] is returned as a warning, not an error: a process's
    /// environment (a Kubernetes pod's, say) may carry variables of another thrum version.
    pub fn apply_env(&mut self) -> Result<Vec<EnvWarning>> {
        // vars_os: a non-UTF-8 variable elsewhere in the environment must not panic here.
        self.apply_env_from(
            std::env::vars_os()
                .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())),
        )
    }

    fn apply_env_from(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Vec<EnvWarning>> {
        let mut warnings = Vec::new();
        for (name, value) in vars {
            if !name.starts_with("THRUM_") || OTHER_ENV_VARS.iter().any(|(n, _)| *n == name) {
                continue;
            }
            match all_keys().find(|k| k.env == name) {
                Some(def) => self.set_from(def.key, &value, &format!(" (from ${name})"))?,
                None => {
                    // Compared without the prefix every candidate shares.
                    let known: Vec<&'static str> = all_keys()
                        .map(|k| k.env)
                        .chain(OTHER_ENV_VARS.iter().map(|v| v.0))
                        .collect();
                    let near = closest(bare_env(&name), known.iter().map(|v| bare_env(v)))
                        .and_then(|near| known.iter().copied().find(|v| bare_env(v) == near));
                    warnings.push(EnvWarning { closest: near, variable: name });
                }
            }
        }
        Ok(warnings)
    }

    /// Applies a TOML file: flat keys (`intra_op_threads = 2`, `"tract.optimize" = false`) or
    /// tables (`[tract]` then `optimize = false`).
    pub fn apply_toml_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::read(path, source))?;
        self.apply_toml_str(&text, path)
    }

    /// Applies TOML text; `path` is only used in error messages.
    ///
    /// Two layouts are read: an options file (keys at the top level or in one table per
    /// engine), and a model's `thrum.toml` (what `thrum tune` writes and `thrum serve` reads:
    /// `engine`, `workers`, `[batching]`… with the options in its `[options]` table), recognised
    /// by that table. From the second, options take `[options]` and the top-level `predictor`;
    /// the serving keys ([`DEPLOYMENT_KEYS`]) are for runners (`thrum_serve::config`).
    pub fn apply_toml_str(&mut self, text: &str, path: &Path) -> Result<()> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Error::ConfigFile { path: path.to_path_buf(), reason: e.to_string() }
        })?;
        // `thrum serve`'s own settings; no option among them.
        table.remove("server");
        if table.contains_key("models") {
            return Err(Error::ConfigFile {
                path: path.to_path_buf(),
                reason: "it describes several models ([[models]]); options come from a file \
                         with one model, or an options file"
                    .into(),
            });
        }
        match table.get("options") {
            Some(toml::Value::Table(options)) => {
                if let Some(k) = table.keys().find(|k| !DEPLOYMENT_KEYS.contains(&k.as_str())) {
                    return Err(Error::ConfigFile {
                        path: path.to_path_buf(),
                        reason: format!(
                            "unknown key `{k}` beside [options]; a model's thrum.toml holds {}",
                            DEPLOYMENT_KEYS.join(", ")
                        ),
                    });
                }
                self.apply_toml_table(options, path)?;
                if let Some(toml::Value::String(p)) = table.get("predictor") {
                    self.set_from("predictor", p, &format!(" in `{}`", path.display()))?;
                }
                Ok(())
            }
            _ => self.apply_toml_table(&table, path),
        }
    }

    /// Applies an already parsed TOML table (a section of a larger file, for instance).
    pub fn apply_toml_table(&mut self, table: &toml::Table, path: &Path) -> Result<()> {
        let mut flat = Vec::new();
        flatten("", table, &mut flat, path)?;
        let origin = format!(" in `{}`", path.display());
        for (key, value) in flat {
            self.set_from(&key, &value, &origin)?;
        }
        Ok(())
    }

    /// Every key with its value: the value set, else its documented default.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        all_keys().map(|k| (k.key, self.get(k.key).unwrap_or_else(|| k.default.into()))).collect()
    }

    /// The keys that were set, with their values, as `key=value` pairs (what a child process
    /// given them with `--model-options` would rebuild these options from).
    pub fn set_pairs(&self) -> Vec<(&'static str, String)> {
        all_keys().filter_map(|k| self.get(k.key).map(|v| (k.key, v))).collect()
    }

    /// Checks ranges that the typed builders cannot (engines call this first thing in `load`).
    pub fn validate(&self) -> Result<()> {
        for (key, value) in [
            ("intra_op_threads", self.intra_op_threads),
            ("inter_op_threads", self.inter_op_threads),
        ] {
            if let Some(n) = value
                && !(1..=MAX_THREADS).contains(&n)
            {
                return Err(Error::InvalidValue {
                    what: format!("option `{key}`"),
                    value: n.to_string(),
                    expected: format!("an integer from 1 to {MAX_THREADS}"),
                });
            }
        }
        Ok(())
    }
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, String)>,
    path: &Path,
) -> Result<()> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out, path)?,
            toml::Value::String(s) => out.push((key, s.clone())),
            toml::Value::Integer(i) => out.push((key, i.to_string())),
            toml::Value::Float(f) => out.push((key, f.to_string())),
            toml::Value::Boolean(b) => out.push((key, b.to_string())),
            toml::Value::Array(items) => {
                let mut parts = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) => parts.push(s.clone()),
                        toml::Value::Integer(i) => parts.push(i.to_string()),
                        other => {
                            return Err(Error::ConfigFile {
                                path: path.to_path_buf(),
                                reason: format!(
                                    "`{key}` holds a {}; lists may hold strings and integers",
                                    other.type_str()
                                ),
                            });
                        }
                    }
                }
                out.push((key, parts.join(",")));
            }
            toml::Value::Datetime(_) => {
                return Err(Error::ConfigFile {
                    path: path.to_path_buf(),
                    reason: format!("`{key}` is a date; no option takes a date"),
                });
            }
        }
    }
    Ok(())
}

/// The options table of `docs/configuration.md`, generated from every key.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| key | env var | default | engine | scope | accepted values | effect |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for k in all_keys() {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} | {} | {} |\n",
            k.key, k.env, k.default, k.engine, k.scope, k.expected, k.effect
        ));
    }
    out
}

/// Checks an engine's key table against its typed options (for the engine's tests): every
/// key is named `ENGINE.…` with the matching `THRUM_…` variable, and every documented default
/// that is a value reads back as the typed default. Returns what disagrees.
pub fn check_engine_table<T: PartialEq + fmt::Debug + Default>(
    engine: &str,
    keys: &[OptionKey],
    typed: impl Fn(&Options) -> Result<T>,
) -> std::result::Result<(), String> {
    let base = typed(&Options::default()).map_err(|e| e.to_string())?;
    if base != T::default() {
        return Err(format!("unset options read as {base:?}, not the default"));
    }
    for k in keys {
        let env = format!("THRUM_{}", k.key.replace('.', "_").to_ascii_uppercase());
        if !k.key.starts_with(&format!("{engine}.")) || k.engine != engine || k.env != env {
            return Err(format!("`{}` should be `{engine}.…`, engine {engine}, env {env}", k.key));
        }
        for tried in k.tunable {
            (k.check)(tried)
                .map_err(|why| format!("tunable value `{tried}` of `{}`: {why}", k.key))?;
        }
        // Defaults that describe rather than state a value ("searched", "engine default",
        // "from NAME.spec.json") have nothing to read back.
        let descriptive =
            k.default.contains(' ') || ["searched", "none", "off"].contains(&k.default);
        if !descriptive && (k.check)(k.default).is_ok() {
            let mut options = Options::default();
            options.set(k.key, k.default).map_err(|e| e.to_string())?;
            let read = typed(&options).map_err(|e| e.to_string())?;
            if read != base {
                return Err(format!(
                    "`{}`'s documented default `{}` reads as {read:?}, not the default {base:?}",
                    k.key, k.default
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_models_thrum_toml_gives_its_options_table_and_predictor() {
        let file = "model = \"m.onnx\"\nengine = \"ort\"\nworkers = 2\npredictor = \"shared\"\n\
                    [options]\nintra_op_threads = 1\nonednn = true\n\
                    [batching]\nmax_batch_size = 4\n";
        let mut options = Options::default();
        options.apply_toml_str(file, Path::new("thrum.toml")).unwrap();
        assert_eq!(options.intra_op_threads, Some(1));
        assert_eq!(options.predictor, Some(PredictorKind::Shared));
        assert_eq!(options.onednn, Some(true));
        let err = Options::default()
            .apply_toml_str("engine = \"ort\"\nwokers = 2\n[options]\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `wokers`"), "{err}");
    }

    #[test]
    fn every_key_has_a_matching_env_var() {
        for k in all_keys() {
            let expected = format!("THRUM_{}", k.key.replace('.', "_").to_ascii_uppercase());
            assert_eq!(k.env, expected, "env var of `{}`", k.key);
        }
    }

    #[test]
    fn documented_defaults_are_the_code_defaults() {
        for (key, value) in Options::default().entries() {
            assert_eq!(value, find_key(key).unwrap().default, "default of `{key}`");
        }
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let e = Options::default().set("intra_threads", "2").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("`intra_threads`") && text.contains("did you mean `intra_op_threads`"),
            "{text}"
        );
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
    }

    #[test]
    fn bad_value_says_what_is_expected_and_why() {
        let e = Options::default().set("intra_op_threads", "0").unwrap_err().to_string();
        assert!(e.contains("`0`") && e.contains("from 1 to 1024") && e.contains("outside"), "{e}");
        let e = Options::default().set("onednn", "maybe").unwrap_err().to_string();
        assert!(e.contains("true or false"), "{e}");
    }

    #[test]
    fn pairs_are_applied_in_order() {
        let mut o = Options::default();
        o.apply_pairs("intra_op_threads=3, intra_op_threads=2, predictor=shared").unwrap();
        assert_eq!((o.intra_op_threads, o.predictor), (Some(2), Some(PredictorKind::Shared)));
        assert!(o.apply_pairs("garbage").is_err());
    }

    #[test]
    fn unknown_env_vars_are_warnings_naming_the_closest() {
        let mut o = Options::default();
        let warnings = o
            .apply_env_from(
                [
                    ("THRUM_INTRA_OP_THREADS".to_string(), "4".to_string()),
                    ("THRUM_INTRA_THREADS".to_string(), "4".to_string()),
                    ("THRUM_SOMETHING_NEW".to_string(), "x".to_string()),
                ]
                .into_iter(),
            )
            .unwrap();
        assert_eq!(o.intra_op_threads, Some(4));
        assert_eq!(warnings.len(), 2);
        assert_eq!(
            warnings[0].to_string(),
            "ignoring unknown environment variable THRUM_INTRA_THREADS; did you mean \
             THRUM_INTRA_OP_THREADS?"
        );
        assert!(warnings[1].closest.is_none(), "{}", warnings[1]);
        let e = o
            .apply_env_from([("THRUM_ONEDNN".to_string(), "x".to_string())].into_iter())
            .unwrap_err()
            .to_string();
        assert!(e.contains("$THRUM_ONEDNN"), "{e}");
    }

    #[test]
    fn toml_accepts_flat_keys() {
        let mut o = Options::default();
        o.apply_toml_str("intra_op_threads = 2\npredictor = \"shared\"\n", Path::new("t.toml"))
            .unwrap();
        assert_eq!((o.intra_op_threads, o.predictor), (Some(2), Some(PredictorKind::Shared)));
    }

    #[test]
    fn toml_unknown_key_names_the_file() {
        let e = Options::default()
            .apply_toml_str("[tract]\noptimise = false\n", Path::new("cfg.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`tract.optimise`") && e.contains("cfg.toml"), "{e}");
        let e = Options::default()
            .apply_toml_str("intra_op_threads = ", Path::new("cfg.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cfg.toml"), "{e}");
    }

    #[test]
    fn validate_catches_builder_values_out_of_range() {
        let e = Options::default().with_intra_op_threads(0).validate().unwrap_err().to_string();
        assert!(e.contains("intra_op_threads") && e.contains("from 1"), "{e}");
    }

    #[test]
    fn set_pairs_rebuild_the_same_options() {
        let mut o = Options::default().with_intra_op_threads(2);
        o.set("onednn", "off").unwrap();
        let mut rebuilt = Options::default();
        for (k, v) in o.set_pairs() {
            rebuilt.set(k, &v).unwrap();
        }
        assert_eq!(rebuilt, o);
    }
}
