//! Model-loading options: one typed home ([`Options`]), one table of keys ([`KEYS`]).
//!
//! Every option can be set four ways, later ones winning:
//! 1. defaults (the `default` column of [`KEYS`]);
//! 2. a TOML file ([`Options::apply_toml_file`]), flat keys or one table per engine;
//! 3. environment variables, one per key (`THRUM_…`, see [`OptionKey::env`]);
//! 4. code: the typed `with_*` builders, or `key=value` strings ([`Options::set`],
//!    [`Options::apply_pairs`], what `--model-options` feeds).
//!
//! Unknown keys and bad values are errors that list what is valid. `docs/configuration.md`
//! holds [`markdown_table`]'s output verbatim, and a test keeps the two equal.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Typed options for loading a model, shared by all engines.
///
/// Build one with `Options::default()` and the `with_*` methods, or resolve it from the
/// environment and a file with [`Options::resolve`].
///
/// ```
/// use thrum_core::Options;
/// let mut options = Options::default().with_intra_op_threads(2);
/// options.apply_pairs("tract.optimize=false")?;
/// assert_eq!(options.intra_op_threads, Some(2));
/// assert!(!options.tract.optimize);
/// assert!(options.set("intra_op_thread", "2").is_err()); // typo: error lists the valid keys
/// # Ok::<(), thrum_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// Threads used inside one operator (a matmul, a convolution). `None`: engine default.
    pub intra_op_threads: Option<usize>,
    /// Threads used to run independent operators in parallel. `None`: engine default.
    pub inter_op_threads: Option<usize>,
    /// oneDNN (MKLDNN) acceleration on or off. `None`: engine default.
    pub onednn: Option<bool>,
    /// Options only the tract engine reads.
    pub tract: TractOptions,
    /// Options only the ONNX Runtime engine reads.
    pub ort: OrtOptions,
    /// Options only the PyTorch (libtorch) engine reads.
    pub torch: TorchOptions,
    /// Options only the Apache MXNet engine reads.
    pub mxnet: MxnetOptions,
}

/// Options of the Apache MXNet engine. Engine type, OpenMP threads, worker threads and oneDNN
/// are read by libmxnet once, when it is loaded: the first model loaded fixes them for the
/// process, and a later model asking for other values is an error.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MxnetOptions {
    /// `libmxnet.so` to load; otherwise the environment and the install directory are searched.
    pub library_path: Option<PathBuf>,
    /// `NaiveEngine`, `ThreadedEngine` or `ThreadedEnginePerDevice` (`MXNET_ENGINE_TYPE`).
    /// `None`: `$MXNET_ENGINE_TYPE`, else MXNet's default (`ThreadedEnginePerDevice`).
    pub engine_type: Option<String>,
    /// Input specs for a symbol whose data variables carry no `__shape__` attribute.
    pub input_specs: Option<Vec<crate::spec::TensorSpec>>,
}

/// MXNet's engine types (`MXNET_ENGINE_TYPE`).
pub const MXNET_ENGINE_TYPES: &[&str] =
    &["NaiveEngine", "ThreadedEngine", "ThreadedEnginePerDevice"];

/// Options of the PyTorch (libtorch) engine.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TorchOptions {
    /// Run libtorch's TorchScript graph optimiser (profiling executor); thread-local in libtorch.
    pub graph_optimizer: bool,
    /// Input specs of a TorchScript model, which does not record them itself.
    pub input_specs: Option<Vec<crate::spec::TensorSpec>>,
}

/// Options of the tract engine.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TractOptions {
    /// Run tract's codegen optimiser (on by default); off keeps the decluttered graph.
    pub optimize: bool,
    /// How many shape-specialised plans one model keeps (least recently used dropped first).
    pub max_cached_plans: usize,
}

/// Options of the ONNX Runtime engine.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OrtOptions {
    /// `libonnxruntime.so` to load; otherwise the environment and the install directory are searched.
    pub library_path: Option<PathBuf>,
    /// Run independent operators in parallel (inter-op pool) instead of in sequence.
    pub parallel_execution: bool,
    /// Graph optimisation level: `disable`, `basic`, `extended` or `all`.
    pub optimization_level: String,
    /// Pre-plan memory from the first run's shapes.
    pub memory_pattern: bool,
    /// Use ONNX Runtime's CPU arena allocator.
    pub cpu_arena: bool,
    /// Let idle intra-/inter-op threads spin; `None`: ONNX Runtime's default (spin).
    pub spinning: Option<bool>,
    /// Intra-op thread affinities in ONNX Runtime's syntax (`1;2`, `1-2;3-4`).
    pub intra_op_affinity: Option<String>,
    /// One intra-/inter-op thread pool for the whole process, shared by every session.
    pub global_thread_pools: bool,
    /// Execution providers in priority order; the CPU provider is always last.
    pub execution_providers: Vec<String>,
    /// Write an ONNX Runtime profile with this file prefix.
    pub profiling: Option<PathBuf>,
    /// Fixed values for named free dimensions (`N` → 1), applied when the session is built.
    pub free_dimension_overrides: Vec<(String, i64)>,
    /// Give each predictor its own session (sharing prepacked weights) instead of running every
    /// predictor on the model's one session.
    pub session_per_predictor: bool,
}

/// Execution providers thrum can ask ONNX Runtime for.
pub const ORT_PROVIDERS: &[&str] = &["cpu", "cuda", "dnnl", "openvino"];

impl Default for Options {
    fn default() -> Options {
        Options {
            intra_op_threads: None,
            inter_op_threads: None,
            onednn: None,
            tract: TractOptions { optimize: true, max_cached_plans: 8 },
            ort: OrtOptions {
                library_path: None,
                parallel_execution: false,
                optimization_level: "all".into(),
                memory_pattern: true,
                cpu_arena: true,
                spinning: None,
                intra_op_affinity: None,
                global_thread_pools: false,
                execution_providers: vec!["cpu".into()],
                profiling: None,
                free_dimension_overrides: Vec::new(),
                session_per_predictor: false,
            },
            torch: TorchOptions { graph_optimizer: true, input_specs: None },
            mxnet: MxnetOptions { library_path: None, engine_type: None, input_specs: None },
        }
    }
}

/// Largest thread count an option accepts.
pub const MAX_THREADS: usize = 1024;

/// One configuration key: its names, default, scope and effect, and how it parses.
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
    parse: fn(&mut Options, &str) -> std::result::Result<(), ()>,
    get: fn(&Options) -> String,
}

/// Environment variables thrum reads that are not option keys.
pub const OTHER_ENV_VARS: &[(&str, &str)] = &[
    ("THRUM_CONFIG", "path of a TOML options file the CLI reads (same as `--config`)"),
    (
        "THRUM_HOME",
        "thrum's cache directory for installed engines and test data (default `~/.cache/thrum`)",
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

/// Where `thrum engines install ENGINE` puts an engine's native libraries:
/// `thrum_home()/engines/ENGINE`.
pub fn engine_home(engine: &str) -> PathBuf {
    thrum_home().join("engines").join(engine)
}

/// Every option key. Engines add theirs here so that one table documents them all, even for
/// engines that are not compiled in.
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
        parse: |o, v| {
            o.intra_op_threads = Some(parse_count(v, 1, MAX_THREADS)?);
            Ok(())
        },
        get: |o| o.intra_op_threads.map_or_else(|| "engine default".into(), |n| n.to_string()),
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
        parse: |o, v| {
            o.inter_op_threads = Some(parse_count(v, 1, MAX_THREADS)?);
            Ok(())
        },
        get: |o| o.inter_op_threads.map_or_else(|| "engine default".into(), |n| n.to_string()),
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
        parse: |o, v| {
            o.onednn = Some(parse_bool(v)?);
            Ok(())
        },
        get: |o| o.onednn.map_or_else(|| "engine default".into(), |b| b.to_string()),
    },
    OptionKey {
        key: "tract.optimize",
        env: "THRUM_TRACT_OPTIMIZE",
        default: "true",
        engine: "tract",
        expected: "true or false",
        effect: "Run tract's codegen optimiser on each plan; false runs the decluttered graph \
                 (slower; for debugging numerical differences).",
        parse: |o, v| {
            o.tract.optimize = parse_bool(v)?;
            Ok(())
        },
        get: |o| o.tract.optimize.to_string(),
    },
    OptionKey {
        key: "tract.max_cached_plans",
        env: "THRUM_TRACT_MAX_CACHED_PLANS",
        default: "8",
        engine: "tract",
        expected: "an integer from 1 to 1024",
        effect: "Plans specialised per concrete input shape (batch size) kept per model; the \
                 least recently used is dropped beyond this. Each plan holds its packed weights.",
        parse: |o, v| {
            o.tract.max_cached_plans = parse_count(v, 1, 1024)?;
            Ok(())
        },
        get: |o| o.tract.max_cached_plans.to_string(),
    },
    OptionKey {
        key: "ort.library_path",
        env: "THRUM_ORT_LIBRARY_PATH",
        default: "searched",
        engine: "ort",
        expected: "a path to libonnxruntime.so",
        effect: "The ONNX Runtime library to load. Otherwise `$ORT_DYLIB_PATH`, then \
                 `$THRUM_HOME/engines/ort/` (filled by `thrum engines install ort`). One library \
                 per process.",
        parse: |o, v| {
            o.ort.library_path = non_empty(v).map(PathBuf::from);
            Ok(())
        },
        get: |o| {
            o.ort
                .library_path
                .as_ref()
                .map_or_else(|| "searched".into(), |p| p.display().to_string())
        },
    },
    OptionKey {
        key: "ort.execution_mode",
        env: "THRUM_ORT_EXECUTION_MODE",
        default: "sequential",
        engine: "ort",
        expected: "sequential or parallel",
        effect: "`parallel` runs independent operators on the inter-op pool. DJL: `executionMode`.",
        parse: |o, v| {
            o.ort.parallel_execution = match v.trim() {
                "sequential" => false,
                "parallel" => true,
                _ => return Err(()),
            };
            Ok(())
        },
        get: |o| if o.ort.parallel_execution { "parallel".into() } else { "sequential".into() },
    },
    OptionKey {
        key: "ort.optimization_level",
        env: "THRUM_ORT_OPTIMIZATION_LEVEL",
        default: "all",
        engine: "ort",
        expected: "disable, basic, extended or all",
        effect: "Graph optimisations applied when the session is built. DJL: `optLevel`.",
        parse: |o, v| {
            let v = v.trim();
            if !["disable", "basic", "extended", "all"].contains(&v) {
                return Err(());
            }
            o.ort.optimization_level = v.into();
            Ok(())
        },
        get: |o| o.ort.optimization_level.clone(),
    },
    OptionKey {
        key: "ort.memory_pattern",
        env: "THRUM_ORT_MEMORY_PATTERN",
        default: "true",
        engine: "ort",
        expected: "true or false",
        effect: "Pre-plan memory from the shapes of the first run. DJL: `memoryPatternOptimization`.",
        parse: |o, v| {
            o.ort.memory_pattern = parse_bool(v)?;
            Ok(())
        },
        get: |o| o.ort.memory_pattern.to_string(),
    },
    OptionKey {
        key: "ort.cpu_arena",
        env: "THRUM_ORT_CPU_ARENA",
        default: "true",
        engine: "ort",
        expected: "true or false",
        effect: "ONNX Runtime's CPU arena allocator (faster; holds memory). DJL: `cpuArenaAllocator`.",
        parse: |o, v| {
            o.ort.cpu_arena = parse_bool(v)?;
            Ok(())
        },
        get: |o| o.ort.cpu_arena.to_string(),
    },
    OptionKey {
        key: "ort.spinning",
        env: "THRUM_ORT_SPINNING",
        default: "engine default",
        engine: "ort",
        expected: "true or false",
        effect: "Whether idle intra- and inter-op threads spin (ONNX Runtime spins by default: \
                 lower latency, CPU burnt while waiting).",
        parse: |o, v| {
            o.ort.spinning = Some(parse_bool(v)?);
            Ok(())
        },
        get: |o| o.ort.spinning.map_or_else(|| "engine default".into(), |b| b.to_string()),
    },
    OptionKey {
        key: "ort.intra_op_affinity",
        env: "THRUM_ORT_INTRA_OP_AFFINITY",
        default: "none",
        engine: "ort",
        expected: "logical processors per intra-op thread but the first, e.g. 1;2 or 1-2;3-4",
        effect: "Pins intra-op threads to processors (`session.intra_op_thread_affinities`).",
        parse: |o, v| {
            let v = v.trim();
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit() || ";-,".contains(c)) {
                return Err(());
            }
            o.ort.intra_op_affinity = Some(v.into());
            Ok(())
        },
        get: |o| o.ort.intra_op_affinity.clone().unwrap_or_else(|| "none".into()),
    },
    OptionKey {
        key: "ort.global_thread_pools",
        env: "THRUM_ORT_GLOBAL_THREAD_POOLS",
        default: "false",
        engine: "ort",
        expected: "true or false",
        effect: "One intra-/inter-op pool for the whole process, sized by the thread options of \
                 the first model loaded, shared by every session. DJL: `disablePerSessionThreads`, \
                 `ai.djl.onnxruntime.num_threads`.",
        parse: |o, v| {
            o.ort.global_thread_pools = parse_bool(v)?;
            Ok(())
        },
        get: |o| o.ort.global_thread_pools.to_string(),
    },
    OptionKey {
        key: "ort.execution_providers",
        env: "THRUM_ORT_EXECUTION_PROVIDERS",
        default: "cpu",
        engine: "ort",
        expected: "a comma-separated priority list of cpu, cuda, dnnl, openvino",
        effect: "Execution providers in priority order; CPU is always the last fallback. A provider \
                 the loaded library lacks is an error listing those it has. DJL: `ortDevice`.",
        parse: |o, v| {
            let list: Vec<String> = v
                .split(',')
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect();
            if list.is_empty() || list.iter().any(|p| !ORT_PROVIDERS.contains(&p.as_str())) {
                return Err(());
            }
            o.ort.execution_providers = list;
            Ok(())
        },
        get: |o| o.ort.execution_providers.join(","),
    },
    OptionKey {
        key: "ort.profiling",
        env: "THRUM_ORT_PROFILING",
        default: "off",
        engine: "ort",
        expected: "a file path prefix",
        effect: "Writes ONNX Runtime's JSON profile (per-operator times) to PREFIX_<date>.json \
                 when the model is dropped. DJL: `profilerOutput`.",
        parse: |o, v| {
            o.ort.profiling = non_empty(v).map(PathBuf::from);
            Ok(())
        },
        get: |o| o.ort.profiling.as_ref().map_or_else(|| "off".into(), |p| p.display().to_string()),
    },
    OptionKey {
        key: "ort.free_dimension_overrides",
        env: "THRUM_ORT_FREE_DIMENSION_OVERRIDES",
        default: "none",
        engine: "ort",
        expected: "NAME:SIZE pairs separated by commas, e.g. N:1,seq:128",
        effect: "Fixes named dynamic dimensions when the session is built, so ONNX Runtime can \
                 optimise for them; inputs must then have those sizes.",
        parse: |o, v| {
            let mut pairs = Vec::new();
            for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let (name, size) = item.split_once(':').ok_or(())?;
                let size: i64 = size.trim().parse().map_err(|_| ())?;
                if name.trim().is_empty() || size < 1 {
                    return Err(());
                }
                pairs.push((name.trim().to_string(), size));
            }
            o.ort.free_dimension_overrides = pairs;
            Ok(())
        },
        get: |o| {
            if o.ort.free_dimension_overrides.is_empty() {
                return "none".into();
            }
            o.ort
                .free_dimension_overrides
                .iter()
                .map(|(n, s)| format!("{n}:{s}"))
                .collect::<Vec<_>>()
                .join(",")
        },
    },
    OptionKey {
        key: "ort.session_per_predictor",
        env: "THRUM_ORT_SESSION_PER_PREDICTOR",
        default: "false",
        engine: "ort",
        expected: "true or false",
        effect: "Each per-thread predictor builds its own session, sharing prepacked weights through \
                 one container, instead of all predictors calling the model's one session \
                 concurrently. Costs a session build per predictor and more memory; measured in \
                 docs/performance.md.",
        parse: |o, v| {
            o.ort.session_per_predictor = parse_bool(v)?;
            Ok(())
        },
        get: |o| o.ort.session_per_predictor.to_string(),
    },
    OptionKey {
        key: "torch.graph_optimizer",
        env: "THRUM_TORCH_GRAPH_OPTIMIZER",
        default: "true",
        engine: "torch",
        expected: "true or false",
        effect: "libtorch's TorchScript graph optimisation (profiling executor). The setting is \
                 thread-local in libtorch, so thrum applies it on every thread that runs the model. \
                 DJL: `ai.djl.pytorch.graph_optimizer`.",
        parse: |o, v| {
            o.torch.graph_optimizer = parse_bool(v)?;
            Ok(())
        },
        get: |o| o.torch.graph_optimizer.to_string(),
    },
    OptionKey {
        key: "torch.input_specs",
        env: "THRUM_TORCH_INPUT_SPECS",
        default: "from NAME.spec.json",
        engine: "torch",
        expected: "name:dtype[dims] specs separated by `;`, e.g. data:f32[N,3,224,224]",
        effect: "Input names, dtypes and shapes of a TorchScript model, which does not record them. \
                 Otherwise read from `NAME.spec.json` beside `NAME.pt` (`thrum zoo export` writes one).",
        parse: |o, v| {
            o.torch.input_specs = Some(parse_specs(v)?);
            Ok(())
        },
        get: |o| {
            o.torch
                .input_specs
                .as_deref()
                .map_or_else(|| "from NAME.spec.json".into(), specs_string)
        },
    },
    OptionKey {
        key: "mxnet.library_path",
        env: "THRUM_MXNET_LIBRARY_PATH",
        default: "searched",
        engine: "mxnet",
        expected: "a path to libmxnet.so",
        effect: "The MXNet library to load. Otherwise `$MXNET_LIBRARY_PATH`, then \
                 `$THRUM_HOME/engines/mxnet/` (`thrum engines install mxnet`) are searched.",
        parse: |o, v| {
            o.mxnet.library_path = Some(PathBuf::from(non_empty(v).ok_or(())?));
            Ok(())
        },
        get: |o| {
            o.mxnet
                .library_path
                .as_ref()
                .map_or_else(|| "searched".into(), |p| p.display().to_string())
        },
    },
    OptionKey {
        key: "mxnet.engine_type",
        env: "THRUM_MXNET_ENGINE_TYPE",
        default: "$MXNET_ENGINE_TYPE, else ThreadedEnginePerDevice",
        engine: "mxnet",
        expected: "NaiveEngine, ThreadedEngine or ThreadedEnginePerDevice",
        effect: "MXNet's execution engine (`MXNET_ENGINE_TYPE`), set before libmxnet loads; a later \
                 model asking for another is an error. NaiveEngine runs each operator on the calling \
                 thread: with intra_op_threads=1 it is the seed's recipe for many predictor threads \
                 (preset `mxnet.preset=multithreaded`).",
        parse: |o, v| {
            let found =
                MXNET_ENGINE_TYPES.iter().find(|t| t.eq_ignore_ascii_case(v.trim())).ok_or(())?;
            o.mxnet.engine_type = Some((*found).to_string());
            Ok(())
        },
        get: |o| {
            o.mxnet
                .engine_type
                .clone()
                .unwrap_or_else(|| "$MXNET_ENGINE_TYPE, else ThreadedEnginePerDevice".into())
        },
    },
    OptionKey {
        key: "mxnet.preset",
        env: "THRUM_MXNET_PRESET",
        default: "none",
        engine: "mxnet",
        expected: "multithreaded",
        effect: "`multithreaded`: the seed's recipe for many predictor threads, NaiveEngine and one \
                 OpenMP thread per operator (mxnet.engine_type=NaiveEngine, intra_op_threads=1).",
        parse: |o, v| {
            if !v.trim().eq_ignore_ascii_case("multithreaded") {
                return Err(());
            }
            o.mxnet.engine_type = Some("NaiveEngine".into());
            o.intra_op_threads = Some(1);
            Ok(())
        },
        get: |o| {
            let on = o.mxnet.engine_type.as_deref() == Some("NaiveEngine")
                && o.intra_op_threads == Some(1);
            if on { "multithreaded".into() } else { "none".into() }
        },
    },
    OptionKey {
        key: "mxnet.input_specs",
        env: "THRUM_MXNET_INPUT_SPECS",
        default: "from the symbol",
        engine: "mxnet",
        expected: "name:dtype[dims] specs separated by `;`, e.g. data:f32[N,3,224,224]",
        effect: "Input specs of a symbol whose data variables have no `__shape__` attribute \
                 (`thrum zoo export` writes it; a dimension 0 there is dynamic).",
        parse: |o, v| {
            o.mxnet.input_specs = Some(parse_specs(v)?);
            Ok(())
        },
        get: |o| {
            o.mxnet.input_specs.as_deref().map_or_else(|| "from the symbol".into(), specs_string)
        },
    },
];

fn parse_specs(v: &str) -> std::result::Result<Vec<crate::spec::TensorSpec>, ()> {
    let specs = v
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<crate::spec::TensorSpec>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| ())?;
    if specs.is_empty() { Err(()) } else { Ok(specs) }
}

fn specs_string(specs: &[crate::spec::TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("{}:{}{}", s.name, s.dtype, s.shape_string()))
        .collect::<Vec<_>>()
        .join(";")
}

fn parse_count(v: &str, min: usize, max: usize) -> std::result::Result<usize, ()> {
    match v.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(()),
    }
}

fn non_empty(v: &str) -> Option<&str> {
    Some(v.trim()).filter(|v| !v.is_empty())
}

fn parse_bool(v: &str) -> std::result::Result<bool, ()> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(()),
    }
}

fn find_key(key: &str) -> Option<&'static OptionKey> {
    KEYS.iter().find(|k| k.key == key)
}

fn valid_keys() -> String {
    KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
}

impl Options {
    /// Defaults, then the TOML file (if any), then `THRUM_*` environment variables.
    pub fn resolve(config_file: Option<&Path>) -> Result<Options> {
        let mut options = Options::default();
        if let Some(path) = config_file {
            options.apply_toml_file(path)?;
        }
        options.apply_env()?;
        Ok(options)
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

    /// Turns tract's optimiser on or off.
    pub fn with_tract_optimize(mut self, optimize: bool) -> Options {
        self.tract.optimize = optimize;
        self
    }

    /// Sets one option from its key and textual value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        self.set_from(key, value, "")
    }

    fn set_from(&mut self, key: &str, value: &str, origin: &str) -> Result<()> {
        let def = find_key(key.trim()).ok_or_else(|| Error::UnknownOption {
            key: key.trim().into(),
            origin: origin.into(),
            valid: valid_keys(),
        })?;
        (def.parse)(self, value).map_err(|()| Error::InvalidValue {
            what: format!("option `{}`{origin}", def.key),
            value: value.into(),
            expected: def.expected.into(),
        })
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

    /// Applies every `THRUM_*` environment variable that names a key. A `THRUM_*` variable
    /// that is neither a key nor one of [`OTHER_ENV_VARS`] is an error (it is most likely a typo).
    pub fn apply_env(&mut self) -> Result<()> {
        // vars_os: a non-UTF-8 variable elsewhere in the environment must not panic here.
        self.apply_env_from(
            std::env::vars_os()
                .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())),
        )
    }

    fn apply_env_from(&mut self, vars: impl Iterator<Item = (String, String)>) -> Result<()> {
        for (name, value) in vars {
            if !name.starts_with("THRUM_") || OTHER_ENV_VARS.iter().any(|(n, _)| *n == name) {
                continue;
            }
            match KEYS.iter().find(|k| k.env == name) {
                Some(def) => self.set_from(def.key, &value, &format!(" (from ${name})"))?,
                None => {
                    let mut valid: Vec<&str> = KEYS.iter().map(|k| k.env).collect();
                    valid.extend(OTHER_ENV_VARS.iter().map(|(n, _)| *n));
                    return Err(Error::UnknownOption {
                        key: name,
                        origin: " in the environment".into(),
                        valid: valid.join(", "),
                    });
                }
            }
        }
        Ok(())
    }

    /// Applies a TOML file: flat keys (`intra_op_threads = 2`, `"tract.optimize" = false`) or
    /// tables (`[tract]` then `optimize = false`).
    pub fn apply_toml_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        self.apply_toml_str(&text, path)
    }

    /// Applies TOML text; `path` is only used in error messages.
    pub fn apply_toml_str(&mut self, text: &str, path: &Path) -> Result<()> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut flat = Vec::new();
        flatten("", &table, &mut flat, path)?;
        let origin = format!(" in `{}`", path.display());
        for (key, value) in flat {
            self.set_from(&key, &value, &origin)?;
        }
        Ok(())
    }

    /// Every key with its current value, in [`KEYS`] order.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        KEYS.iter().map(|k| (k.key, (k.get)(self))).collect()
    }

    /// Checks ranges that typed builders cannot (engines call this first thing in `load`).
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
        if !(1..=1024).contains(&self.tract.max_cached_plans) {
            return Err(Error::InvalidValue {
                what: "option `tract.max_cached_plans`".into(),
                value: self.tract.max_cached_plans.to_string(),
                expected: "an integer from 1 to 1024".into(),
            });
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

/// The options table of `docs/configuration.md`, generated from [`KEYS`].
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| key | env var | default | engine | accepted values | effect |\n|---|---|---|---|---|---|\n",
    );
    for k in KEYS {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} | {} |\n",
            k.key, k.env, k.default, k.engine, k.expected, k.effect
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_matching_env_var() {
        for k in KEYS {
            let expected = format!("THRUM_{}", k.key.replace('.', "_").to_ascii_uppercase());
            assert_eq!(k.env, expected, "env var of `{}`", k.key);
        }
    }

    #[test]
    fn documented_defaults_are_the_code_defaults() {
        let defaults = Options::default();
        for (key, value) in defaults.entries() {
            let def = find_key(key).unwrap();
            assert_eq!(value, def.default, "default of `{key}`");
        }
    }

    #[test]
    fn unknown_key_lists_valid_keys() {
        let e = Options::default().set("intra_threads", "2").unwrap_err().to_string();
        assert!(e.contains("`intra_threads`") && e.contains("intra_op_threads"), "{e}");
    }

    #[test]
    fn bad_value_says_what_is_expected() {
        let e = Options::default().set("intra_op_threads", "0").unwrap_err().to_string();
        assert!(e.contains("`0`") && e.contains("from 1 to 1024"), "{e}");
        let e = Options::default().set("tract.optimize", "maybe").unwrap_err().to_string();
        assert!(e.contains("true or false"), "{e}");
    }

    #[test]
    fn pairs_are_applied_in_order() {
        let mut o = Options::default();
        o.apply_pairs("intra_op_threads=3, tract.max_cached_plans=2").unwrap();
        assert_eq!((o.intra_op_threads, o.tract.max_cached_plans), (Some(3), 2));
        assert!(o.apply_pairs("garbage").is_err());
    }

    #[test]
    fn env_vars_set_keys_and_typos_are_refused() {
        let mut o = Options::default();
        o.apply_env_from([("THRUM_INTRA_OP_THREADS".to_string(), "4".to_string())].into_iter())
            .unwrap();
        assert_eq!(o.intra_op_threads, Some(4));
        let e = o
            .apply_env_from([("THRUM_INTRA_THREADS".to_string(), "4".to_string())].into_iter())
            .unwrap_err()
            .to_string();
        assert!(e.contains("THRUM_INTRA_THREADS") && e.contains("THRUM_INTRA_OP_THREADS"), "{e}");
        let e = o
            .apply_env_from([("THRUM_TRACT_OPTIMIZE".to_string(), "x".to_string())].into_iter())
            .unwrap_err()
            .to_string();
        assert!(e.contains("$THRUM_TRACT_OPTIMIZE"), "{e}");
    }

    #[test]
    fn toml_accepts_tables_and_dotted_keys() {
        let mut o = Options::default();
        let text = "intra_op_threads = 2\n[tract]\noptimize = false\nmax_cached_plans = 3\n";
        o.apply_toml_str(text, Path::new("t.toml")).unwrap();
        assert_eq!(o.intra_op_threads, Some(2));
        assert_eq!((o.tract.optimize, o.tract.max_cached_plans), (false, 3));
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
}

#[cfg(test)]
mod docs_tests {
    /// `docs/configuration.md` must hold the generated table verbatim and name every other
    /// environment variable: the docs and the code cannot drift apart. `UPDATE_DOCS=1 cargo
    /// test -p thrum-core docs_tests` rewrites the table.
    #[test]
    fn configuration_doc_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let mut doc = std::fs::read_to_string(path).unwrap();
        let table = super::markdown_table();
        if std::env::var_os("UPDATE_DOCS").is_some() && !doc.contains(&table) {
            let start = doc.find("| key | env var |").expect("the doc has an options table");
            let end = doc[start..].find("\n\n").map_or(doc.len(), |i| start + i + 1);
            doc.replace_range(start..end, &table);
            std::fs::write(path, &doc).unwrap();
        }
        assert!(
            doc.contains(&table),
            "docs/configuration.md is out of date: run `UPDATE_DOCS=1 cargo test -p thrum-core \
             docs_tests`, or replace its options table with:\n{table}"
        );
        for (name, _) in super::OTHER_ENV_VARS {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/configuration.md does not document {name}"
            );
        }
    }
}
