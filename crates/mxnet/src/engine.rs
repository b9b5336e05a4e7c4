//! The MXNet engine itself (compiled with the `runtime` feature).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use thrum_core::{
    Capabilities, DType, Dim, Engine, EngineCheck, EngineInfo, Error, Model, ModelBackend,
    ModelSource, Options, PredictorBackend, Result, SharedPredictorBackend, Support, Tensor,
    TensorSpec, ThreadConfig,
};

use crate::ffi::{self, CachedOp, Handle, NDArray, Symbol};
use crate::library::Started;
use crate::{ENGINE, MxnetOptions, SYMBOL, callers, library, model_stem, params_path};

const EXPECTED: &str = "an MXNet symbol file (NAME-symbol.json) with NAME-0000.params beside it";

/// Flags of every cached op thrum creates: memory planned once per input shape.
const CACHED_OP_FLAGS: &[(&str, &str)] = &[("static_alloc", "true"), ("static_shape", "true")];

/// Whether a thread-safe cached op is alive in this process (MXNet supports one).
static THREAD_SAFE_LIVE: AtomicBool = AtomicBool::new(false);

/// The Apache MXNet engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct MxnetEngine;

impl MxnetEngine {
    /// The engine.
    pub fn new() -> MxnetEngine {
        MxnetEngine
    }
}

fn library_for(options: &Options, mx: &MxnetOptions) -> Result<&'static library::Loaded> {
    let path = library::find(mx.library_path.as_deref())?;
    library::load(&path, &library::Settings::from_options(options, mx))
}

/// Writes `params` with libmxnet's own `MXNDArraySave` (loading the library with default
/// settings): what the test of [`crate::encode_params`] compares against.
#[doc(hidden)]
pub fn save_params_with_mxnet(path: &Path, params: &[(String, Tensor)]) -> Result<()> {
    let library = library::load(&library::find(None)?, &library::Settings::default())?;
    let wrap = |m: String| Error::inference(ENGINE, "params", m);
    let arrays = params
        .iter()
        .map(|(k, t)| NDArray::from_tensor(&library.data.api, t, wrap).map(|a| (k.clone(), a)))
        .collect::<Result<Vec<_>>>()?;
    NDArray::save_file(&library.data.api, path, &arrays, wrap)
}

impl Engine for MxnetEngine {
    fn info(&self) -> &'static EngineInfo {
        &crate::INFO
    }

    fn check(&self) -> EngineCheck {
        library::check()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(Support::Yes, Support::Yes, vec!["cpu".into()])
    }

    fn load(&self, source: &ModelSource, options: &Options) -> Result<Model> {
        options.validate()?;
        if let Some(p) = options.precision.filter(|p| *p != thrum_core::Precision::Fp32) {
            return Err(thrum_core::precision::unsupported(
                ENGINE,
                p,
                "thrum runs MXNet symbols as exported, in fp32: MXNet 1.9's bf16 and int8 are \
                 its Python tools (mx.contrib.amp.convert_model to bfloat16, \
                 mx.contrib.quantization.quantize_model with oneDNN), which rewrite the symbol \
                 before export; use ort (int8 from `thrum quantize`) or ort with \
                 ort.execution_providers=openvino (bf16)",
            ));
        }
        let model = MxModel::load(source, options)?;
        Ok(Model::new(model.name.clone(), ENGINE, Shared(Arc::new(model))))
    }
}

/// Where one cached-op input comes from.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// The k-th model input.
    Data(usize),
    /// The k-th parameter.
    Param(usize),
}

struct MxModel {
    name: String,
    api: &'static ffi::Api,
    library: &'static library::Loaded,
    symbol: Symbol,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Every symbol input, in cached-op order.
    slots: Vec<Slot>,
    /// `(name, array)`, loaded once; per-thread predictors copy them.
    params: Vec<(String, NDArray)>,
    /// Sparse storage declared in the symbol, by variable (refused by the thread-safe op).
    sparse_variables: Vec<String>,
    /// Loss heads that only make sense with backward (refused by the thread-safe op).
    training_ops: Vec<String>,
    /// The OpenMP thread count libmxnet started with, applied on each calling thread.
    omp_threads: Option<i32>,
}

impl MxModel {
    fn err(&self, reason: String) -> Error {
        Error::inference(ENGINE, &self.name, reason)
    }

    fn load(source: &ModelSource, options: &Options) -> Result<MxModel> {
        let path = match source {
            ModelSource::Path(path) => path.clone(),
            ModelSource::Memory { name, .. } => {
                return Err(Error::UnsupportedFormat {
                    engine: ENGINE,
                    model: name.clone(),
                    reason: "MXNet models load from files (NAME-symbol.json and NAME-0000.params)"
                        .into(),
                });
            }
        };
        let name = source.name();
        let file_name =
            path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if file_name.ends_with(".params") {
            return Err(Error::UnsupportedFormat {
                engine: ENGINE,
                model: name,
                reason:
                    "a .params file alone is an imperative (Gluon) model with no graph; thrum runs \
                         symbolic models only: hybridize the block and `export()` it, then load \
                         NAME-symbol.json"
                        .into(),
            });
        }
        // A name no format claims is tried as a symbol: exports may be written under any name.
        source.check_format(
            ENGINE,
            &[SYMBOL],
            "MXNet runs symbolic models (NAME-symbol.json + NAME-0000.params; `thrum zoo export \
             NAME -o NAME-symbol.json` writes one)",
            EXPECTED,
        )?;
        let mx = MxnetOptions::from_options(options)?;
        let library = library_for(options, &mx)?;
        let api = &library.data.api;
        let invalid = |reason: String| Error::invalid_model(ENGINE, &name, reason);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::read(&path, source))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| invalid(format!("`{}` is not valid symbol JSON: {e}", path.display())))?;
        let symbol = Symbol::from_json(api, &text, |m| {
            invalid(format!("MXNet rejects the symbol `{}`: {m}", path.display()))
        })?;
        let params_file = find_params(&path).map_err(&invalid)?;
        let params = NDArray::load_file(api, &params_file, |m| {
            invalid(format!("cannot read `{}`: {m}", params_file.display()))
        })?;
        let params: Vec<(String, NDArray)> = params
            .into_iter()
            .map(|(key, array)| {
                let bare = key
                    .strip_prefix("arg:")
                    .or_else(|| key.strip_prefix("aux:"))
                    .unwrap_or(&key)
                    .to_string();
                (bare, array)
            })
            .collect();
        let symbol_inputs = symbol.inputs()?;
        if let Some((extra, _)) = params.iter().find(|(k, _)| !symbol_inputs.contains(k)) {
            return Err(invalid(format!(
                "params `{}` do not match the symbol: `{extra}` is not an input of `{}` (its inputs: {})",
                params_file.display(),
                path.display(),
                symbol_inputs.join(", ")
            )));
        }
        let variables = variables(&json);
        let mut slots = Vec::new();
        let mut data_names = Vec::new();
        for input in &symbol_inputs {
            match params.iter().position(|(k, _)| k == input) {
                Some(k) => slots.push(Slot::Param(k)),
                None => {
                    slots.push(Slot::Data(data_names.len()));
                    data_names.push(input.clone());
                }
            }
        }
        let inputs = input_specs(&data_names, &variables, &mx, &params_file).map_err(&invalid)?;
        let sparse_variables = variables
            .iter()
            .filter(|v| v.attr("__storage_type__").is_some_and(|s| s != "0" && s != "default"))
            .map(|v| v.name.clone())
            .collect();
        let training_ops = ops(&json)
            .into_iter()
            .filter(|op| {
                op == "MakeLoss" || op.ends_with("RegressionOutput") || op.starts_with("_backward")
            })
            .collect();
        let mut model = MxModel {
            name: name.clone(),
            api,
            library,
            symbol,
            inputs,
            outputs: Vec::new(),
            slots,
            params,
            sparse_variables,
            training_ops,
            omp_threads: library.variable("OMP_NUM_THREADS").and_then(|v| v.trim().parse().ok()),
        };
        // Runs on zeros find the outputs and check that the params fit the symbol.
        let op = CachedOp::new(api, &model.symbol, CACHED_OP_FLAGS, false, invalid)?;
        let params: Vec<Handle> = model.params.iter().map(|(_, a)| a.handle()).collect();
        let names = model.symbol.outputs()?;
        model.outputs = thrum_core::kit::discover_outputs(&model.inputs, &names, |zeros| {
            model.forward(&op, &params, zeros)
        })
        .map_err(|e| {
            invalid(format!(
                "params `{}` do not match the symbol: {}",
                params_file.display(),
                reason_of(&e)
            ))
        })?;
        Ok(model)
    }

    /// Applies the OpenMP thread count on the calling thread, once per thread. OMP_NUM_THREADS
    /// alone is not enough: the OpenMP runtime reads it when it is first loaded, which in a
    /// process that also links libtorch is before thrum could set it; OpenBLAS (MXNet's GEMM
    /// without oneDNN) then runs multi-threaded, and concurrent callers spin forever in it.
    fn apply_omp_threads(&self) -> Result<()> {
        thread_local! {
            static APPLIED: std::cell::Cell<Option<i32>> = const { std::cell::Cell::new(None) };
        }
        let Some(n) = self.omp_threads else {
            return Ok(());
        };
        if APPLIED.get() == Some(n) {
            return Ok(());
        }
        // SAFETY: MXSetNumOMPThreads takes a plain int and sets the calling thread's OpenMP count.
        self.api.call(unsafe { (self.api.set_num_omp_threads)(n) }, |m| self.err(m))?;
        APPLIED.set(Some(n));
        Ok(())
    }

    /// One forward call of `op` with `params` (handles in parameter order).
    fn forward(&self, op: &CachedOp, params: &[Handle], inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.apply_omp_threads()?;
        if inputs.len() != self.inputs.len() {
            return Err(Error::InputCount {
                model: self.name.clone(),
                expected: self.inputs.len(),
                names: self.inputs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
                found: inputs.len(),
            });
        }
        let wrap = |m: String| self.err(m);
        let data: Vec<NDArray> = inputs
            .iter()
            .map(|t| NDArray::from_tensor(self.api, t, wrap))
            .collect::<Result<_>>()?;
        let handles: Vec<Handle> = self
            .slots
            .iter()
            .map(|slot| match *slot {
                Slot::Data(k) => data[k].handle(),
                Slot::Param(k) => params[k],
            })
            .collect();
        let outputs = op.invoke(&handles, wrap)?;
        outputs.iter().map(|o| o.to_tensor(wrap)).collect()
    }

    fn threads(&self) -> ThreadConfig {
        let number = |k: &str| self.library.variable(k).and_then(|v| v.parse().ok());
        ThreadConfig::new(number("OMP_NUM_THREADS"), number("MXNET_CPU_WORKER_NTHREADS"))
            .with_omp(number("OMP_NUM_THREADS"))
            .with_note(format!(
                "MXNet engine {}, oneDNN {}; set when libmxnet loaded (process-wide)",
                self.library.engine_type(),
                if self.library.variable("MXNET_MKLDNN_ENABLED") == Some("0") {
                    "off"
                } else {
                    "on"
                }
            ))
    }
}

fn reason_of(e: &Error) -> String {
    match e {
        Error::Inference { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// `NAME-0000.params`, else the highest-epoch `NAME-*.params`, else `NAME.params`.
fn find_params(symbol: &Path) -> std::result::Result<PathBuf, String> {
    let stem = model_stem(symbol);
    let first = params_path(symbol);
    if first.is_file() {
        return Ok(first);
    }
    let dir = symbol.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut epochs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with(&format!("{stem}-")) && n.ends_with(".params")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    epochs.sort();
    if let Some(last) = epochs.pop() {
        return Ok(last);
    }
    let plain = dir.join(format!("{stem}.params"));
    if plain.is_file() {
        return Ok(plain);
    }
    Err(format!(
        "no parameters for `{}`: looked for `{}`, `{stem}-*.params` and `{}`",
        symbol.display(),
        first.display(),
        plain.display()
    ))
}

/// A variable node of the symbol JSON and its attributes.
struct Variable {
    name: String,
    attrs: serde_json::Map<String, serde_json::Value>,
}

impl Variable {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(|v| v.as_str())
    }
}

fn nodes(json: &serde_json::Value) -> &[serde_json::Value] {
    json.get("nodes").and_then(|n| n.as_array()).map_or(&[], Vec::as_slice)
}

fn variables(json: &serde_json::Value) -> Vec<Variable> {
    nodes(json)
        .iter()
        .filter(|n| n.get("op").and_then(|o| o.as_str()) == Some("null"))
        .map(|n| Variable {
            name: n.get("name").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
            // Older files call them "attr" or "param".
            attrs: ["attrs", "attr", "param"]
                .iter()
                .find_map(|k| n.get(*k).and_then(|a| a.as_object()).cloned())
                .unwrap_or_default(),
        })
        .collect()
}

fn ops(json: &serde_json::Value) -> Vec<String> {
    nodes(json)
        .iter()
        .filter_map(|n| n.get("op").and_then(|o| o.as_str()))
        .filter(|o| *o != "null")
        .map(String::from)
        .collect()
}

/// Specs of the data inputs: from the option, else from each variable's `__shape__` (0 is
/// dynamic) and `__dtype__` attributes.
fn input_specs(
    data: &[String],
    variables: &[Variable],
    mx: &MxnetOptions,
    params_file: &Path,
) -> std::result::Result<Vec<TensorSpec>, String> {
    if let Some(specs) = &mx.input_specs {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        if names != data.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(format!(
                "mxnet.input_specs names {} but the symbol's data inputs (inputs without a parameter) are {}",
                names.join(", "),
                data.join(", ")
            ));
        }
        return Ok(specs.clone());
    }
    data.iter()
        .map(|name| {
            let var = variables.iter().find(|v| &v.name == name);
            let shape = var.and_then(|v| v.attr("__shape__")).ok_or_else(|| {
                format!(
                    "symbol input `{name}` has no parameter in `{}` and no `__shape__`: either the params do \
                     not match the symbol, or `{name}` is a data input whose shape the mxnet.input_specs \
                     option must give (e.g. {name}:f32[N,3,224,224])",
                    params_file.display()
                )
            })?;
            let dims: Vec<Dim> = shape
                .trim_matches(|c| c == '(' || c == ')' || c == '[' || c == ']')
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .enumerate()
                .map(|(axis, d)| match d.parse::<i64>() {
                    Ok(n) if n > 0 => Ok(Dim::Fixed(n as usize)),
                    Ok(_) => Ok(if axis == 0 { Dim::named("N") } else { Dim::named(format!("d{axis}")) }),
                    Err(_) => Err(format!("input `{name}`: `__shape__` {shape} is not a shape")),
                })
                .collect::<std::result::Result<_, _>>()?;
            let dtype = match var.and_then(|v| v.attr("__dtype__")) {
                None => DType::F32,
                Some(code) => {
                    let code: i32 = code.parse().map_err(|_| format!("input `{name}`: `__dtype__` {code} is not a dtype code"))?;
                    [DType::F32, DType::F64, DType::F16, DType::U8, DType::I32, DType::I8, DType::I64]
                        .into_iter()
                        .find(|d| crate::dtype_code(*d) == Some(code))
                        .ok_or_else(|| format!("input `{name}`: MXNet dtype code {code} is not supported"))?
                }
            };
            Ok(TensorSpec::new(name.clone(), dtype, dims))
        })
        .collect()
}

/// The backend thrum's `Model` holds.
struct Shared(Arc<MxModel>);

impl ModelBackend for Shared {
    fn inputs(&self) -> &[TensorSpec] {
        &self.0.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.0.outputs
    }

    fn predictor(&self) -> Result<Box<dyn PredictorBackend>> {
        let model = &self.0;
        let wrap =
            |m: String| model.err(format!("cannot copy the parameters for a predictor: {m}"));
        let params =
            model.params.iter().map(|(_, a)| a.duplicate(wrap)).collect::<Result<Vec<_>>>()?;
        let op = CachedOp::new(model.api, &model.symbol, CACHED_OP_FLAGS, false, wrap)?;
        Ok(Box::new(CopyPredictor { model: model.clone(), params, op }))
    }

    fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
        let model = &self.0;
        let refuse = |reason: String| Error::Unsupported {
            engine: ENGINE,
            feature: format!("the thread-safe predictor on `{}`", model.name),
            reason,
        };
        if let Some(var) = model.sparse_variables.first() {
            return Err(refuse(format!(
                "input `{var}` has sparse storage; MXNet's thread-safe cached op takes dense arrays only"
            )));
        }
        for (name, array) in &model.params {
            if array.storage_type()? != 0 {
                return Err(refuse(format!(
                    "parameter `{name}` is sparse; MXNet's thread-safe cached op takes dense arrays only"
                )));
            }
        }
        if let Some(op) = model.training_ops.first() {
            return Err(refuse(format!(
                "the symbol contains `{op}`, a training graph; the thread-safe cached op runs forward only \
                 (no backward, so no training or transfer learning)"
            )));
        }
        if THREAD_SAFE_LIVE.swap(true, Ordering::SeqCst) {
            return Err(refuse(
                "another thread-safe predictor is alive in this process; MXNet supports one thread-safe \
                 cached op per process (drop it first, or use per-thread predictors)"
                    .into(),
            ));
        }
        match CachedOp::new(model.api, &model.symbol, CACHED_OP_FLAGS, true, |m| model.err(m)) {
            Ok(op) => Ok(Box::new(ThreadSafePredictor {
                op: Arc::new(ThreadSafeOp { model: model.clone(), op }),
                shape: Mutex::new(None),
            })),
            Err(e) => {
                THREAD_SAFE_LIVE.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    fn threads(&self) -> ThreadConfig {
        self.0.threads()
    }

    fn shared_calls_serialised(&self) -> Option<String> {
        (self.0.library.engine_type() == "NaiveEngine").then(|| {
            "MXNet's thread-safe cached op runs calls one after another on NaiveEngine; \
             mxnet.engine_type=ThreadedEnginePerDevice runs them concurrently"
                .to_string()
        })
    }
}

/// A per-thread predictor: its own copy of the parameters and its own cached op (DJL's
/// MXNet predictor).
struct CopyPredictor {
    model: Arc<MxModel>,
    params: Vec<NDArray>,
    op: CachedOp,
}

impl PredictorBackend for CopyPredictor {
    fn predict(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let params: Vec<Handle> = self.params.iter().map(NDArray::handle).collect();
        self.model.forward(&self.op, &params, &inputs)
    }
}

/// The thread-safe cached op on the model's one copy of the parameters.
struct ThreadSafeOp {
    model: Arc<MxModel>,
    op: CachedOp,
}

/// The shared predictor: calls of the thread-safe cached op, run on thrum's MXNet caller
/// threads (see `callers.rs`).
struct ThreadSafePredictor {
    op: Arc<ThreadSafeOp>,
    /// The input shapes of the first call: MXNet's thread-safe cached op has no dynamic shapes.
    shape: Mutex<Option<Vec<Vec<usize>>>>,
}

impl SharedPredictorBackend for ThreadSafePredictor {
    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        {
            let mut fixed = self.shape.lock().unwrap_or_else(|p| p.into_inner());
            match &*fixed {
                None => *fixed = Some(shapes),
                Some(first) if *first == shapes => {}
                Some(first) => {
                    return Err(Error::Unsupported {
                        engine: ENGINE,
                        feature: format!(
                            "input shapes {shapes:?} after {first:?} on `{}`",
                            self.op.model.name
                        ),
                        reason:
                            "MXNet's thread-safe cached op has no dynamic shapes: every call of a \
                                 thread-safe predictor uses the input shapes of its first call"
                                .into(),
                    });
                }
            }
        }
        let op = self.op.clone();
        callers::run(move || {
            let params: Vec<Handle> = op.model.params.iter().map(|(_, a)| a.handle()).collect();
            let outputs = op.model.forward(&op.op, &params, &inputs);
            // Dropped here, before the caller hears back: once the predictor is dropped, its
            // cached op is gone too (MXNet allows one thread-safe cached op at a time).
            drop(op);
            outputs
        })
        .map_err(|reason| self.op.model.err(reason))?
    }
}

impl Drop for ThreadSafePredictor {
    fn drop(&mut self) {
        THREAD_SAFE_LIVE.store(false, Ordering::SeqCst);
    }
}
