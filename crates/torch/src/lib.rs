//! # thrum-torch
//!
//! thrum engine backed by libtorch through [tch](https://github.com/LaurentMazare/tch-rs):
//! TorchScript models (`.pt`). libtorch comes from the PyPI `torch` wheel
//! (`thrum engines install torch`) and is needed at build time (`LIBTORCH`), which is why this
//! crate is outside the workspace's default members and behind the `torch` feature of `thrum`.
//!
//! How thrum maps onto libtorch (DJL guide, "PyTorch" and "oneDNN"):
//! - a [`Model`] holds one TorchScript module; every predictor runs it
//!   (libtorch allows concurrent `forward` on one module), so weights are shared and a shared
//!   predictor exists. Every call runs under no-grad;
//! - thread settings follow libtorch's scopes (see the `threads` module): inter-op threads are
//!   set once per process, intra-op threads and the graph optimiser are applied on the thread
//!   that runs each call;
//! - `onednn=true` (DJL's `use_mkldnn`) runs the model in the MKLDNN layout — inputs converted
//!   to it, outputs back to dense — as DJL treats MKLDNN as a device; a dtype or an operator
//!   oneDNN does not support is an error naming it;
//! - TorchScript records no input shapes or dtypes: they come from `NAME.spec.json` beside the
//!   model (written by [`export_torchscript`]) or the `torch.input_specs` option.

mod convert;
mod export;
mod threads;

use std::path::PathBuf;
use std::sync::Arc;

use tch::{CModule, Device, IValue};
use thrum_core::{
    Capabilities, DType, Dim, Engine, EngineCheck, Error, Model, ModelBackend, ModelFormat,
    ModelSource, Options, PredictorBackend, Result, SharedPredictorBackend, Support, Tensor,
    TensorSpec, ThreadConfig,
};

pub use export::{SpecFile, export_torchscript, spec_path};

/// The engine's name in thrum.
pub const ENGINE: &str = "torch";

/// Version of the libtorch thrum was built against.
pub const LIBTORCH_VERSION: &str = env!("THRUM_LIBTORCH_VERSION");

const EXPECTED: &str = "a TorchScript model (.pt)";

/// The PyTorch engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct TorchEngine;

impl TorchEngine {
    /// The engine.
    pub fn new() -> TorchEngine {
        TorchEngine
    }
}

fn devices() -> Vec<String> {
    let mut devices = vec!["cpu".to_string()];
    if tch::utils::has_cuda() {
        devices.push("cuda".into());
    }
    devices
}

impl Engine for TorchEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn check(&self) -> EngineCheck {
        let mut providers = vec!["cpu".to_string()];
        if tch::utils::has_mkldnn() {
            providers.push("mkldnn (oneDNN)".into());
        }
        if tch::utils::has_openmp() {
            providers.push("openmp".into());
        }
        EngineCheck::available(ENGINE, LIBTORCH_VERSION)
            .with_library(PathBuf::from(env!("THRUM_LIBTORCH_LIB")).join("libtorch_cpu.so"))
            .with_providers(providers)
            .with_devices(devices())
    }

    fn capabilities(&self) -> Capabilities {
        let onednn = if tch::utils::has_mkldnn() {
            Support::Yes
        } else {
            Support::No { reason: "this libtorch build has no MKLDNN".into() }
        };
        Capabilities::new(Support::Yes, onednn, devices(), vec![ModelFormat::TorchScript])
    }

    fn load(&self, source: &ModelSource, options: &Options) -> Result<Model> {
        let model = load_model(source, options)?;
        Ok(Model::new(model.name.clone(), ENGINE, Shared(Arc::new(model))))
    }
}

fn load_model(source: &ModelSource, options: &Options) -> Result<TorchModel> {
    options.validate()?;
    let name = source.name();
    source.check_format(
        ENGINE,
        ModelFormat::TorchScript,
        "libtorch runs TorchScript (.pt; `thrum zoo export NAME -o NAME.pt` writes one)",
        EXPECTED,
    )?;
    let mkldnn = options.onednn == Some(true);
    if mkldnn && !tch::utils::has_mkldnn() {
        return Err(Error::Unsupported {
            engine: ENGINE,
            feature: "oneDNN".into(),
            reason: "this libtorch build has no MKLDNN".into(),
        });
    }
    if let Some(n) = options.inter_op_threads {
        threads::set_inter_op(n)?;
    }
    let per_thread = threads::PerThread {
        intra_op: options.intra_op_threads,
        graph_optimizer: options.torch.graph_optimizer,
    };
    threads::guard(&name, || {
        let module = load_module(source, &name)?;
        let (inputs, outputs) = specs(source, options, &name)?;
        if mkldnn
            && let Some(spec) = inputs.iter().find(|s| !matches!(s.dtype, DType::F32 | DType::BF16))
        {
            return Err(Error::Unsupported {
                engine: ENGINE,
                feature: "oneDNN (use_mkldnn)".into(),
                reason: format!(
                    "input `{}` of model `{name}` is {}; MKLDNN tensors are f32 or bf16",
                    spec.name, spec.dtype
                ),
            });
        }
        let mut model =
            TorchModel { name: name.clone(), module, inputs, outputs, per_thread, mkldnn };
        if model.outputs.is_empty() {
            model.outputs = model.discover_outputs()?;
        }
        Ok(model)
    })
}

fn load_module(source: &ModelSource, name: &str) -> Result<CModule> {
    let loaded = match source {
        ModelSource::Path(path) => CModule::load_on_device(path, Device::Cpu),
        ModelSource::Memory { bytes, .. } => {
            CModule::load_data_on_device(&mut &bytes[..], Device::Cpu)
        }
    };
    let mut module = loaded.map_err(|e| Error::InvalidModel {
        engine: ENGINE,
        model: name.into(),
        reason: first_line(&e.to_string()),
    })?;
    module.f_set_eval().map_err(|e| Error::InvalidModel {
        engine: ENGINE,
        model: name.into(),
        reason: first_line(&e.to_string()),
    })?;
    Ok(module)
}

/// libtorch's messages carry a C++ backtrace after the first line.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// Input specs from the option or the spec file; output specs from the spec file, or found by
/// running the model once on zeros.
fn specs(
    source: &ModelSource,
    options: &Options,
    name: &str,
) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let file = match source {
        ModelSource::Path(path) => {
            let spec_file = spec_path(path);
            match std::fs::read_to_string(&spec_file) {
                Ok(text) => Some(serde_json::from_str::<SpecFile>(&text).map_err(|e| {
                    Error::ConfigFile {
                        path: spec_file.clone(),
                        reason: format!("not a thrum spec file: {e}"),
                    }
                })?),
                Err(_) => None,
            }
        }
        ModelSource::Memory { .. } => None,
    };
    let inputs = match (&options.torch.input_specs, &file) {
        (Some(specs), _) => specs.clone(),
        (None, Some(file)) => file.inputs.clone(),
        (None, None) => {
            return Err(Error::InvalidModel {
                engine: ENGINE,
                model: name.into(),
                reason: format!(
                    "TorchScript does not record input shapes or dtypes; give them with the \
                     torch.input_specs option (e.g. data:f32[N,3,224,224]) or in `{}` (`thrum zoo \
                     export` writes one)",
                    match source {
                        ModelSource::Path(path) => spec_path(path).display().to_string(),
                        ModelSource::Memory { .. } => "NAME.spec.json".into(),
                    }
                ),
            });
        }
    };
    if let Some(spec) = inputs.iter().find(|s| convert::kind(s.dtype).is_none()) {
        return Err(Error::Unsupported {
            engine: ENGINE,
            feature: format!("{} input `{}`", spec.dtype, spec.name),
            reason: "libtorch has no such tensor type".into(),
        });
    }
    let outputs = match file {
        Some(file) if options.torch.input_specs.is_none() => file.outputs,
        _ => Vec::new(),
    };
    Ok((inputs, outputs))
}

struct TorchModel {
    name: String,
    module: CModule,
    inputs: Vec<TensorSpec>,
    /// From the spec file, or found by one run on zeros at load (`output_K`).
    outputs: Vec<TensorSpec>,
    per_thread: threads::PerThread,
    mkldnn: bool,
}

impl TorchModel {
    /// Output specs from one run on zeros (dynamic dimensions at 1): dtypes and shapes, the
    /// leading axis dynamic when the inputs' is.
    fn discover_outputs(&self) -> Result<Vec<TensorSpec>> {
        let zeros: Vec<Tensor> =
            self.inputs.iter().map(|s| Tensor::zeros(s.dtype, &s.concrete_shape(1))).collect();
        let batch_dynamic =
            self.inputs.first().and_then(|s| s.shape.first()).is_some_and(Dim::is_dynamic);
        let outputs = self.run(&zeros)?;
        Ok(outputs
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let shape =
                    t.shape()
                        .iter()
                        .enumerate()
                        .map(|(axis, &d)| {
                            if axis == 0 && batch_dynamic { Dim::named("N") } else { Dim::Fixed(d) }
                        })
                        .collect();
                TensorSpec::new(format!("output_{k}"), t.dtype(), shape)
            })
            .collect())
    }

    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        threads::guard(&self.name, || {
            self.forward(inputs)?
                .iter()
                .map(|t| {
                    let dense = if t.is_mkldnn() {
                        t.f_to_dense(None, false).map_err(|e| self.mkldnn_error(&e.to_string()))?
                    } else {
                        t.shallow_clone()
                    };
                    convert::from_tch(&dense, &self.name)
                })
                .collect()
        })
    }

    /// The module's outputs as it returns them (in the MKLDNN layout when `mkldnn`).
    fn forward(&self, inputs: &[Tensor]) -> Result<Vec<tch::Tensor>> {
        self.per_thread.apply()?;
        let _no_grad = tch::no_grad_guard();
        let mut args = Vec::with_capacity(inputs.len());
        for t in inputs {
            let mut x = convert::to_tch(t, &self.name)?;
            if self.mkldnn {
                x = x.f_to_mkldnn(None).map_err(|e| self.mkldnn_error(&e.to_string()))?;
            }
            args.push(IValue::Tensor(x));
        }
        let out = self.module.forward_is(&args).map_err(|e| {
            let message = e.to_string();
            if self.mkldnn && message.contains("Mkldnn") {
                self.mkldnn_error(&message)
            } else {
                Error::Inference {
                    engine: ENGINE,
                    model: self.name.clone(),
                    reason: first_line(&message),
                }
            }
        })?;
        match out {
            IValue::Tensor(t) => Ok(vec![t]),
            IValue::Tuple(items) | IValue::GenericList(items) => items
                .into_iter()
                .map(|v| match v {
                    IValue::Tensor(t) => Ok(t),
                    other => Err(self.unsupported_output(&other)),
                })
                .collect(),
            IValue::TensorList(items) => Ok(items),
            other => Err(self.unsupported_output(&other)),
        }
    }

    fn unsupported_output(&self, value: &IValue) -> Error {
        let kind = match value {
            IValue::None => "None",
            IValue::Bool(_) | IValue::Int(_) | IValue::Double(_) => "a scalar",
            IValue::String(_) => "a string",
            IValue::GenericDict(_) => "a dict",
            _ => "a non-tensor value",
        };
        Error::Inference {
            engine: ENGINE,
            model: self.name.clone(),
            reason: format!(
                "forward returned {kind}; thrum takes tensors, or tuples and lists of tensors"
            ),
        }
    }

    /// oneDNN could not run something: name the operator when libtorch does.
    fn mkldnn_error(&self, message: &str) -> Error {
        // "Could not run 'aten::foo' with arguments from the 'MkldnnCPU' backend."
        let op =
            message.split('\'').nth(1).filter(|op| op.starts_with("aten::") || op.contains("::"));
        Error::Unsupported {
            engine: ENGINE,
            feature: match op {
                Some(op) => format!("operator `{op}` on oneDNN (use_mkldnn)"),
                None => "this model on oneDNN (use_mkldnn)".into(),
            },
            reason: format!(
                "{} (model `{}`); run it with onednn=false",
                first_line(message),
                self.name
            ),
        }
    }

    fn threads(&self) -> ThreadConfig {
        let intra =
            self.per_thread.intra_op.or_else(|| usize::try_from(tch::get_num_threads()).ok());
        ThreadConfig::new(intra, Some(threads::inter_op()))
            .with_omp(threads::omp_env())
            .with_note("libtorch: inter-op pool process-wide; intra-op (OpenMP) threads and the graph optimiser applied per calling thread")
    }
}

/// The backend thrum's `Model` holds; predictors hold clones of the same `Arc`.
struct Shared(Arc<TorchModel>);

impl ModelBackend for Shared {
    fn inputs(&self) -> &[TensorSpec] {
        &self.0.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.0.outputs
    }

    fn predictor(&self) -> Result<Box<dyn PredictorBackend>> {
        Ok(Box::new(TorchPredictor(self.0.clone())))
    }

    fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
        Ok(Box::new(TorchPredictor(self.0.clone())))
    }

    fn threads(&self) -> ThreadConfig {
        self.0.threads()
    }
}

/// Per-thread and shared predictors alike: the model's one module, run under no-grad.
struct TorchPredictor(Arc<TorchModel>);

impl PredictorBackend for TorchPredictor {
    fn predict(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.0.run(&inputs)
    }
}

impl SharedPredictorBackend for TorchPredictor {
    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.0.run(&inputs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    use super::*;

    fn resnet18(onednn: bool) -> (tempfile::TempDir, TorchModel) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resnet18.pt");
        export_torchscript(&thrum_zoo::find("resnet18").unwrap().build(1), &path).unwrap();
        let options = Options::default().with_onednn(onednn);
        (dir, load_model(&ModelSource::path(path), &options).unwrap())
    }

    #[test]
    fn use_mkldnn_runs_the_model_in_the_mkldnn_layout() {
        for onednn in [false, true] {
            let (_dir, model) = resnet18(onednn);
            let outputs = model.forward(&thrum_zoo::sample_inputs(&model.inputs, 1, 0)).unwrap();
            assert_eq!(outputs[0].is_mkldnn(), onednn, "onednn={onednn}");
        }
    }
}
