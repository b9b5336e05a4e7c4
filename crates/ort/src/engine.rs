//! The ONNX Runtime engine itself (compiled with the `runtime` feature).

use std::ffi::{CString, c_char};
use std::sync::{Arc, Mutex, OnceLock};

use ort::environment::{Environment, GlobalThreadPoolOptions};
use ort::ep;
use ort::ep::ArbitrarilyConfigurableExecutionProvider;
use ort::logging::LogLevel;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::value::ValueType;
use thrum_core::kit::{Forward, RunConcurrently};
use thrum_core::precision::{self, Precision};
use thrum_core::{
    Capabilities, CpuFeatures, Dim, Engine, EngineCheck, EngineInfo, Error, ErrorKind, Model,
    ModelBackend, ModelFormat, ModelSource, NativeError, Options, PredictorBackend, Result,
    SharedPredictorBackend, Support, Tensor, TensorSpec, ThreadConfig,
};

use crate::{ENGINE, OrtOptions, binding, convert, ffi, library};

const EXPECTED: &str = "an ONNX model (.onnx)";

/// thrum's provider names and ONNX Runtime's.
const PROVIDER_NAMES: &[(&str, &str)] = &[
    ("cpu", "CPUExecutionProvider"),
    ("cuda", "CUDAExecutionProvider"),
    ("dnnl", "DnnlExecutionProvider"),
    ("openvino", "OpenVINOExecutionProvider"),
];

fn ort_name(provider: &str) -> &'static str {
    PROVIDER_NAMES.iter().find(|(t, _)| *t == provider).map_or("?", |(_, o)| o)
}

/// The ONNX Runtime engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrtEngine;

impl OrtEngine {
    /// The engine.
    pub fn new() -> OrtEngine {
        OrtEngine
    }
}

/// The environment, created once per process with the first model's thread-pool settings.
pub(crate) struct Env {
    env: Environment,
    /// `Some((intra, inter))` when created with global thread pools.
    global: Option<(Option<usize>, Option<usize>)>,
}

static ENV: OnceLock<Env> = OnceLock::new();
static ENV_INIT: Mutex<()> = Mutex::new(());

fn unavailable(reason: impl Into<String>) -> Error {
    Error::EngineUnavailable { engine: ENGINE, reason: reason.into() }
}

fn environment(
    loaded: &library::Loaded,
    options: &Options,
    ort_options: &OrtOptions,
) -> Result<&'static Env> {
    let wanted = ort_options
        .global_thread_pools
        .then_some((options.intra_op_threads, options.inter_op_threads));
    let _guard = ENV_INIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = ENV.get() {
        return match (env.global, wanted) {
            (_, None) => Ok(env),
            (Some(have), Some(want)) if have == want => Ok(env),
            (Some(have), Some(want)) => Err(Error::Unsupported {
                engine: ENGINE,
                feature: format!("global thread pools of {want:?} (intra, inter) threads"),
                reason: format!(
                    "this process's ONNX Runtime environment already has global pools of {have:?}; they \
                     are created once per process"
                ),
            }),
            (None, Some(_)) => Err(Error::Unsupported {
                engine: ENGINE,
                feature: "ort.global_thread_pools".into(),
                reason:
                    "ONNX Runtime's environment, which owns the global pools, was already created \
                         without them; set the option for the first model loaded in the process"
                        .into(),
            }),
        };
    }
    let mut builder =
        ort::init_from(&loaded.path).map_err(|e| unavailable(e.to_string()))?.with_name("thrum");
    if let Some((intra, inter)) = wanted {
        let fail = |e: ort::Error| unavailable(format!("creating global thread pools: {e}"));
        let mut pools = GlobalThreadPoolOptions::default();
        if let Some(n) = intra {
            pools = pools.with_intra_threads(n).map_err(fail)?;
        }
        if let Some(n) = inter {
            pools = pools.with_inter_threads(n).map_err(fail)?;
        }
        if let Some(spin) = ort_options.spinning {
            pools = pools.with_spin_control(spin).map_err(fail)?;
        }
        builder = builder.with_global_thread_pool(pools);
    }
    let env = builder
        .build()
        .map_err(|e| unavailable(format!("creating the ONNX Runtime environment: {e}")))?;
    Ok(ENV.get_or_init(|| Env { env, global: wanted }))
}

/// The process's ONNX Runtime environment, once thrum has created it (at the first model
/// load). `ort` allows one per process: code that builds its own `ort` sessions next to
/// thrum's must use this one.
pub fn ort_environment() -> Option<&'static Environment> {
    ENV.get().map(|e| &e.env)
}

fn providers() -> Vec<String> {
    ffi::available_providers().unwrap_or_default()
}

fn thrum_provider_list(providers: &[String]) -> String {
    providers
        .iter()
        .map(|p| match PROVIDER_NAMES.iter().find(|(_, o)| o == p) {
            Some((t, _)) => format!("{p} ({t})"),
            None => p.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Engine for OrtEngine {
    fn info(&self) -> &'static EngineInfo {
        &crate::INFO
    }

    fn check(&self) -> EngineCheck {
        self.check_with(&Options::default())
    }

    fn check_with(&self, options: &Options) -> EngineCheck {
        let loaded = OrtOptions::from_options(options).and_then(|o| library_for(&o));
        let flavours: Vec<String> = library::installed_flavours()
            .into_iter()
            .map(|(name, path, providers)| {
                format!("{name} at {} ({})", path.display(), providers.join(", "))
            })
            .collect();
        let note =
            (!flavours.is_empty()).then(|| format!("installed flavours: {}", flavours.join("; ")));
        match loaded {
            Ok(l) => {
                let providers = providers();
                let mut devices = vec!["cpu".to_string()];
                if providers.iter().any(|p| p == "CUDAExecutionProvider") {
                    devices.push("cuda".into());
                }
                let check = EngineCheck::available(ENGINE, l.version.clone())
                    .with_library(&l.path)
                    .with_providers(providers)
                    .with_devices(devices);
                match note {
                    Some(note) => check.with_detail(note),
                    None => check,
                }
            }
            Err(e) => EngineCheck::unavailable(ENGINE, e.to_string()),
        }
    }

    fn capabilities(&self) -> Capabilities {
        let onednn = match library::loaded() {
            Some(_) if providers().iter().any(|p| p == "DnnlExecutionProvider") => Support::Yes,
            Some(l) => Support::No {
                reason: format!(
                    "the ONNX Runtime library at `{}` has no DNNL (oneDNN) execution provider; its providers: {}",
                    l.path.display(),
                    thrum_provider_list(&providers())
                ),
            },
            None => Support::No {
                reason: "known once the library is loaded (the PyPI build has no DNNL provider)"
                    .into(),
            },
        };
        // Concurrent runs of one session are offered on the CPU provider only: with another,
        // runs are serialised (`OrtModel::exclusive`) and the shared predictor is refused.
        Capabilities::new(Support::Yes, onednn, vec!["cpu".into(), "cuda".into()])
            .with_int8_form(thrum_core::Int8Form::Qdq)
            .with_concurrency_need("ort.execution_providers", "cpu")
    }

    fn load(&self, source: &ModelSource, options: &Options) -> Result<Model> {
        options.validate()?;
        let ort_options = OrtOptions::from_options(options)?;
        let loaded = library_for(&ort_options)?;
        let env = environment(loaded, options, &ort_options)?;
        let name = source.name();
        source.check_format(
            ENGINE,
            &[ModelFormat::ONNX],
            "ONNX Runtime reads ONNX models",
            EXPECTED,
        )?;
        let providers = select_providers(loaded, options, &ort_options)?;
        check_precision(options, &providers, source)?;
        let recipe = ort_options.session_per_predictor.then(|| Recipe {
            env,
            source: source.clone(),
            options: options.clone(),
            ort_options: ort_options.clone(),
            providers: providers.clone(),
            prepacked: PrepackedWeights::new(),
        });
        // An int8 model on the CPU provider: ONNX Runtime writes its optimised graph, whose
        // integer kernels say what it runs (QDQ pairs fused into QLinearConv, QGemm…).
        let optimized = (options.precision == Some(Precision::Int8)
            && providers.iter().all(|p| p == "cpu"))
        .then(optimized_graph_path);
        let build = |optimized_to: Option<&std::path::Path>| {
            build_session(
                env,
                source,
                options,
                &ort_options,
                &providers,
                recipe.as_ref().map(|r| &r.prepacked),
                optimized_to,
            )
        };
        // Writing the optimised graph is for the report only: where it cannot be written (a
        // read-only temporary directory), the session is built without it.
        let session = match optimized.as_ref().map(|p| (p, build(Some(p)))) {
            Some((_, Ok(session))) => session,
            Some((path, Err(_))) => {
                let _ = std::fs::remove_file(path);
                build(None)?
            }
            None => build(None)?,
        };
        let precision_run = precision_run(options, &providers, optimized.as_deref());
        let mut model =
            OrtModel::new(name.clone(), session, options, &ort_options, env, &providers, recipe)?;
        model.precision_run = precision_run;
        Ok(Model::new(name, ENGINE, Shared(Arc::new(model))))
    }
}

/// The library a model with these options runs on: the one this process loaded, unless the
/// options name another (`ort.library_path`) or ask for OpenVINO, which the loaded one lacks;
/// else found (the OpenVINO flavour first when OpenVINO is asked for) and loaded.
fn library_for(o: &OrtOptions) -> Result<&'static library::Loaded> {
    let openvino = o.execution_providers.iter().any(|p| p == "openvino");
    match library::loaded() {
        Some(l)
            if o.library_path.is_none()
                && (!openvino || providers().iter().any(|p| p == ort_name("openvino"))) =>
        {
            Ok(l)
        }
        _ => library::load(&library::find_flavour(o.library_path.as_deref(), openvino)?),
    }
}

/// The providers to register, in priority order, each checked against the loaded library.
fn select_providers(
    loaded: &library::Loaded,
    options: &Options,
    ort_options: &OrtOptions,
) -> Result<Vec<String>> {
    let available = providers();
    let mut wanted: Vec<String> = ort_options.execution_providers.clone();
    match options.onednn {
        Some(true) if !wanted.iter().any(|p| p == "dnnl") => wanted.insert(0, "dnnl".into()),
        Some(false) => wanted.retain(|p| p != "dnnl"),
        _ => {}
    }
    for provider in &wanted {
        if !available.iter().any(|a| a == ort_name(provider)) {
            let (feature, what) = if provider == "dnnl" {
                ("oneDNN".to_string(), "no DNNL (oneDNN) execution provider: the PyPI onnxruntime build ships without it".to_string())
            } else {
                (format!("execution provider `{provider}`"), format!("no {}", ort_name(provider)))
            };
            return Err(Error::Unsupported {
                engine: ENGINE,
                feature,
                reason: format!(
                    "the ONNX Runtime {} library at `{}` has {what}; its providers: {}",
                    loaded.version,
                    loaded.path.display(),
                    thrum_provider_list(&available)
                ),
            });
        }
    }
    wanted.retain(|p| p != "cpu");
    wanted.push("cpu".into());
    Ok(wanted)
}

/// Checks `options.precision` for these providers and model: int8 needs a quantized model;
/// bf16 and fp16 need OpenVINO (ONNX Runtime's CPU provider has no such kernels on x86) and a
/// CPU with the units.
fn check_precision(options: &Options, providers: &[String], source: &ModelSource) -> Result<()> {
    let openvino = providers.first().is_some_and(|p| p == "openvino");
    match options.precision.unwrap_or_default() {
        Precision::Fp32 => Ok(()),
        Precision::Int8 => precision::require_quantized_onnx(ENGINE, source),
        p if !openvino => Err(precision::unsupported(
            ENGINE,
            p,
            format!(
                "ONNX Runtime's CPU execution provider has no {p} kernels for x86 CPUs; use \
                 ort.execution_providers=openvino (`thrum engines install ort-openvino`), or \
                 precision=int8 with a model from `thrum quantize`"
            ),
        )),
        p => precision::require_cpu(ENGINE, p, CpuFeatures::detect()),
    }
}

/// A fresh path for ONNX Runtime's optimised graph of one load (removed once read).
fn optimized_graph_path() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("thrum-ort-{}-{n}-optimized.onnx", std::process::id()))
}

/// What ran for a reduced precision: the integer kernels of ONNX Runtime's optimised graph
/// (read from `optimized`, then removed), or what was asked of OpenVINO, which does not say
/// through ONNX Runtime which precision each layer ran.
fn precision_run(
    options: &Options,
    providers: &[String],
    optimized: Option<&std::path::Path>,
) -> Option<String> {
    let p = options.precision.filter(|p| *p != Precision::Fp32)?;
    if let Some(path) = optimized {
        let report = std::fs::read(path)
            .map_err(|e| format!("it was not written ({e})"))
            .and_then(|bytes| precision::onnx_operator_counts(&bytes))
            .map(|counts| {
                format!(
                    "ONNX Runtime's optimised graph: {}",
                    precision::integer_kernel_summary(&counts)
                )
            })
            .unwrap_or_else(|e| format!("cannot tell: ONNX Runtime's optimised graph: {e}"));
        let _ = std::fs::remove_file(path);
        return Some(report);
    }
    providers.iter().any(|p| p == "openvino").then(|| {
        format!(
            "asked of OpenVINO's CPU plugin: INFERENCE_PRECISION_HINT={}{}; it does not report \
             through ONNX Runtime which precision each layer ran",
            openvino_precision(p),
            if p == Precision::Int8 { " around the model's int8 QDQ" } else { "" }
        )
    })
}

/// OpenVINO's `INFERENCE_PRECISION_HINT` for a precision (int8 is the model's own QDQ, with
/// what is left in float kept in f32).
fn openvino_precision(p: Precision) -> &'static str {
    match p {
        Precision::Bf16 => "bf16",
        Precision::Fp16 => "f16",
        Precision::Fp32 | Precision::Int8 => "f32",
    }
}

fn build_session(
    env: &Env,
    source: &ModelSource,
    options: &Options,
    o: &OrtOptions,
    providers: &[String],
    prepacked: Option<&PrepackedWeights>,
    optimized_to: Option<&std::path::Path>,
) -> Result<Session> {
    let name = &source.name();
    let setting = |what: &str, e: &dyn std::fmt::Display| Error::InvalidValue {
        what: format!("ONNX Runtime session setting {what} for model `{name}`"),
        value: e.to_string(),
        expected: "a value ONNX Runtime accepts".into(),
    };
    let mut b = Session::builder(&env.env).map_err(|e| unavailable(e.to_string()))?;
    b = b.with_log_level(LogLevel::Error).map_err(|e| setting("log level", &e))?;
    if o.global_thread_pools {
        // Sessions of an environment with global pools use them by default.
    } else {
        if env.global.is_some() {
            b = b
                .with_independent_thread_pool()
                .map_err(|e| setting("independent thread pool", &e))?;
        }
        if let Some(n) = options.intra_op_threads {
            b = b.with_intra_threads(n).map_err(|e| setting("intra_op_threads", &e))?;
        }
        if let Some(n) = options.inter_op_threads {
            b = b.with_inter_threads(n).map_err(|e| setting("inter_op_threads", &e))?;
        }
        if let Some(spin) = o.spinning {
            b = b.with_intra_op_spinning(spin).map_err(|e| setting("ort.spinning", &e))?;
            b = b.with_inter_op_spinning(spin).map_err(|e| setting("ort.spinning", &e))?;
        }
        if let Some(affinity) = &o.intra_op_affinity {
            b = b
                .with_config_entry("session.intra_op_thread_affinities", affinity)
                .map_err(|e| setting("ort.intra_op_affinity", &e))?;
        }
    }
    b = b
        .with_parallel_execution(o.parallel_execution)
        .map_err(|e| setting("ort.execution_mode", &e))?;
    let level = match o.optimization_level.as_str() {
        "disable" => GraphOptimizationLevel::Disable,
        "basic" => GraphOptimizationLevel::Level1,
        "extended" => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::All,
    };
    b = b.with_optimization_level(level).map_err(|e| setting("ort.optimization_level", &e))?;
    b = b.with_memory_pattern(o.memory_pattern).map_err(|e| setting("ort.memory_pattern", &e))?;
    if let Some(prefix) = &o.profiling {
        b = b.with_profiling(prefix).map_err(|e| setting("ort.profiling", &e))?;
    }
    if let Some(path) = optimized_to {
        b = b.with_optimized_model_path(path).map_err(|e| setting("optimized model path", &e))?;
    }
    for (dim, size) in &o.free_dimension_overrides {
        b = b
            .with_dimension_override(dim, *size)
            .map_err(|e| setting("ort.free_dimension_overrides", &e))?;
    }
    let dispatch: Vec<ep::ExecutionProviderDispatch> = providers
        .iter()
        .map(|p| match p.as_str() {
            "cuda" => ep::CUDA::default().build().error_on_failure(),
            "dnnl" => {
                ep::OneDNN::default().with_arena_allocator(o.cpu_arena).build().error_on_failure()
            }
            // OpenVINO runs its own thread pool (all cores by default): `intra_op_threads`
            // sizes it, so that a configuration's thread count is what it uses.
            "openvino" => match options.intra_op_threads {
                Some(n) => ep::OpenVINO::default().with_num_threads(n),
                None => ep::OpenVINO::default(),
            }
            // The precision OpenVINO's CPU plugin computes in, always stated: unset, it would
            // pick bf16 by itself on CPUs with AVX512-BF16 (`load_config` wins over the
            // provider's own f32 hint).
            .with_arbitrary_config(
                "load_config",
                format!(
                    r#"{{"CPU":{{"INFERENCE_PRECISION_HINT":"{}"}}}}"#,
                    openvino_precision(options.precision.unwrap_or_default())
                ),
            )
            .build()
            .error_on_failure(),
            _ => ep::CPU::default().with_arena_allocator(o.cpu_arena).build().error_on_failure(),
        })
        .collect();
    b = b.with_execution_providers(dispatch).map_err(|e| setting("ort.execution_providers", &e))?;
    if let Some(prepacked) = prepacked {
        b = b
            .with_prepacked_weights(prepacked)
            .map_err(|e| setting("ort.session_per_predictor", &e))?;
    }
    let committed = match source {
        ModelSource::Path(path) => b.commit_from_file(path),
        ModelSource::Memory { bytes, .. } => b.commit_from_memory(bytes),
    };
    committed.map_err(|e| model_error(name, &e))
}

/// ONNX Runtime's load error: its code decides the kind (a missing file, an operator or feature
/// ONNX Runtime does not implement, else a model it cannot load); its message names the detail
/// (an unknown operator, for one).
fn model_error(model: &str, e: &ort::Error) -> Error {
    let code = ffi::native_code(e.code().into());
    let source = NativeError::with_code(code, e.message());
    match kind_of(code) {
        ErrorKind::NotFound | ErrorKind::Unsupported | ErrorKind::InvalidInput => {
            Error::inference_native(ENGINE, model, kind_of(code), source)
        }
        _ => Error::InvalidModel { engine: ENGINE, model: model.into(), source },
    }
}

/// The kind of failure an ONNX Runtime error code means.
pub(crate) fn kind_of(code: thrum_core::NativeCode) -> ErrorKind {
    match code.name {
        "ORT_INVALID_ARGUMENT" => ErrorKind::InvalidInput,
        "ORT_NO_SUCHFILE" | "ORT_NOT_FOUND" => ErrorKind::NotFound,
        "ORT_NO_MODEL" | "ORT_INVALID_PROTOBUF" | "ORT_INVALID_GRAPH" | "ORT_MODEL_LOADED" => {
            ErrorKind::InvalidModel
        }
        "ORT_NOT_IMPLEMENTED" | "ORT_MODEL_REQUIRES_COMPILATION" => ErrorKind::Unsupported,
        _ => ErrorKind::Internal,
    }
}

/// A failure while running `model`, of the kind its ONNX Runtime code means.
pub(crate) fn run_error(model: &str, cause: impl Into<NativeError>) -> Error {
    let source = cause.into();
    let kind = source.code.map_or(ErrorKind::Internal, kind_of);
    Error::inference_native(ENGINE, model, kind, source)
}

/// NUL-terminated names and the pointer array the C API takes.
pub(crate) struct Names {
    _owned: Vec<CString>,
    pub(crate) ptrs: Vec<*const c_char>,
}

// SAFETY: the pointers point into `_owned`, which the struct owns, never mutates and frees only
// on drop; sharing read-only pointers to immutable strings between threads is sound.
unsafe impl Send for Names {}
// SAFETY: as above; no interior mutability.
unsafe impl Sync for Names {}

impl Names {
    fn new(names: impl Iterator<Item = String>, model: &str) -> Result<Names> {
        let owned: Vec<CString> = names
            .map(|n| {
                CString::new(n)
                    .map_err(|_| Error::invalid_model(ENGINE, model, "a tensor name contains NUL"))
            })
            .collect::<Result<_>>()?;
        let ptrs = owned.iter().map(|c| c.as_ptr()).collect();
        Ok(Names { _owned: owned, ptrs })
    }
}

pub(crate) struct OrtModel {
    pub(crate) name: String,
    pub(crate) session: Session,
    pub(crate) inputs: Vec<TensorSpec>,
    pub(crate) outputs: Vec<TensorSpec>,
    pub(crate) input_names: Names,
    pub(crate) output_names: Names,
    pub(crate) threads: ThreadConfig,
    /// Describes thrum's buffers to ONNX Runtime when they are passed as inputs.
    pub(crate) memory: ffi::CpuMemory,
    /// Options for every run, created once.
    pub(crate) run_options: ffi::RunOptions,
    /// Serialises runs when an accelerator provider is active (see the crate docs).
    pub(crate) exclusive: Option<Mutex<()>>,
    /// With `ort.session_per_predictor`: how to build each predictor's own session.
    pub(crate) recipe: Option<Recipe>,
    /// What ran for a reduced precision ([`ModelBackend::precision_run`]).
    pub(crate) precision_run: Option<String>,
}

/// What a predictor needs to build its own session of the same model.
pub(crate) struct Recipe {
    env: &'static Env,
    source: ModelSource,
    options: Options,
    ort_options: OrtOptions,
    providers: Vec<String>,
    /// Shared by every session of the model, so weights are prepacked once.
    prepacked: PrepackedWeights,
}

fn spec(outlet: &ort::value::Outlet, model: &str) -> Result<TensorSpec> {
    let ValueType::Tensor { ty, shape, dimension_symbols } = outlet.dtype() else {
        return Err(Error::invalid_model(
            ENGINE,
            model,
            format!("`{}` is a {:?}; thrum exchanges tensors only", outlet.name(), outlet.dtype()),
        ));
    };
    let dtype = convert::dtype(*ty).ok_or_else(|| {
        Error::invalid_model(
            ENGINE,
            model,
            format!("`{}` has element type {ty:?}, which thrum has no dtype for", outlet.name()),
        )
    })?;
    let symbols: Vec<String> = dimension_symbols.iter().map(|s| s.to_string()).collect();
    let dims = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d >= 0 {
                Dim::Fixed(d as usize)
            } else {
                symbols.get(i).map_or(Dim::Dynamic(None), |s| Dim::named(s.as_str()))
            }
        })
        .collect();
    Ok(TensorSpec::new(outlet.name(), dtype, dims))
}

impl OrtModel {
    fn new(
        name: String,
        session: Session,
        options: &Options,
        ort_options: &OrtOptions,
        env: &Env,
        providers: &[String],
        recipe: Option<Recipe>,
    ) -> Result<OrtModel> {
        let inputs = session.inputs().iter().map(|o| spec(o, &name)).collect::<Result<Vec<_>>>()?;
        let outputs =
            session.outputs().iter().map(|o| spec(o, &name)).collect::<Result<Vec<_>>>()?;
        let input_names = Names::new(inputs.iter().map(|s| s.name.clone()), &name)?;
        let output_names = Names::new(outputs.iter().map(|s| s.name.clone()), &name)?;
        let threads = match (ort_options.global_thread_pools, env.global) {
            (true, Some((intra, inter))) => ThreadConfig::new(intra, inter).with_note(
                "ONNX Runtime global thread pools, shared by every session in the process",
            ),
            // Sequential execution never uses the inter-op pool: one operator at a time.
            _ => ThreadConfig::new(
                options.intra_op_threads,
                if ort_options.parallel_execution { options.inter_op_threads } else { Some(1) },
            )
            .with_note(if options.intra_op_threads.is_none() {
                "ONNX Runtime's default intra-op pool: one thread per physical core, per session"
            } else {
                "one intra-op pool per session (model), shared by its predictors"
            }),
        };
        let accelerated = providers.iter().any(|p| p != "cpu");
        Ok(OrtModel {
            name,
            session,
            inputs,
            outputs,
            input_names,
            output_names,
            threads,
            memory: ffi::CpuMemory::new().map_err(|e| unavailable(e.to_string()))?,
            run_options: ffi::RunOptions::new().map_err(|e| unavailable(e.to_string()))?,
            exclusive: accelerated.then(|| Mutex::new(())),
            recipe,
            precision_run: None,
        })
    }

    fn run(&self, session: &Session, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        // `values` borrow the buffers of `inputs`, which outlive them.
        let values = inputs
            .iter()
            .map(|t| convert::to_ort(t, &self.memory, &self.name))
            .collect::<Result<Vec<_>>>()?;
        let ptrs: Vec<_> = values.iter().map(convert::Input::ptr).collect();
        let _serial = self.exclusive.as_ref().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()));
        let outputs = ffi::run(
            session,
            &self.run_options,
            &self.input_names.ptrs,
            &ptrs,
            &self.output_names.ptrs,
        )
        .map_err(|reason| self.fail(reason))?;
        drop(values);
        outputs.into_iter().map(|v| convert::from_ort(v, session, &self.name)).collect()
    }
}

/// The backend thrum's `Model` holds; predictors hold clones of the same `Arc`.
struct Shared(Arc<OrtModel>);

impl ModelBackend for Shared {
    fn inputs(&self) -> &[TensorSpec] {
        &self.0.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.0.outputs
    }

    fn predictor(&self) -> Result<Box<dyn PredictorBackend>> {
        let own = match &self.0.recipe {
            Some(r) => Some(build_session(
                r.env,
                &r.source,
                &r.options,
                &r.ort_options,
                &r.providers,
                Some(&r.prepacked),
                None,
            )?),
            None => None,
        };
        let binding = binding::Binding::new(&self.0, own.as_ref().unwrap_or(&self.0.session))?;
        Ok(Box::new(OrtPredictor { binding, model: self.0.clone(), own }))
    }

    fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
        if self.0.exclusive.is_some() {
            return Err(Error::Unsupported {
                engine: ENGINE,
                feature: "a shared predictor with an accelerator execution provider".into(),
                reason: "concurrent runs are offered on the CPU provider only; use per-thread predictors".into(),
            });
        }
        Ok(Box::new(Forward(self.0.clone())))
    }

    fn threads(&self) -> ThreadConfig {
        self.0.threads.clone()
    }

    fn precision_run(&self) -> Option<String> {
        self.0.precision_run.clone()
    }
}

/// A per-thread predictor: a binding on the model's one session, or (with
/// `ort.session_per_predictor`) on its own.
struct OrtPredictor {
    /// Declared first so that it is dropped before the session it was made on.
    binding: Option<binding::Binding>,
    model: Arc<OrtModel>,
    own: Option<Session>,
}

impl PredictorBackend for OrtPredictor {
    fn predict(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let session = self.own.as_ref().unwrap_or(&self.model.session);
        match &mut self.binding {
            Some(b) => b.run(&self.model, session, &self.model.run_options, &inputs),
            None => self.model.run(session, &inputs),
        }
    }
}

/// The shared predictor: concurrent `Run`s on the model's session (CPU provider only).
impl RunConcurrently for OrtModel {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        OrtModel::run(self, &self.session, &inputs)
    }
}
