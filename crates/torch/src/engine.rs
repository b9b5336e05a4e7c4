//! The libtorch engine itself (compiled with the `runtime` feature).

use std::path::PathBuf;
use std::sync::Arc;

use tch::{CModule, Device, IValue};
use thrum_core::kit::{Forward, RunConcurrently};
use thrum_core::precision::{self, Precision};
use thrum_core::{
    Capabilities, CpuFeatures, DType, Engine, EngineCheck, EngineInfo, Error, Model, ModelBackend,
    ModelSource, Options, PredictorBackend, Result, SharedPredictorBackend, Support, Tensor,
    TensorSpec, ThreadConfig,
};

use crate::{ENGINE, SpecFile, TORCHSCRIPT, TorchOptions, convert, spec_path, threads};

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
    fn info(&self) -> &'static EngineInfo {
        &crate::INFO
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
        Capabilities::new(Support::Yes, onednn, devices())
    }

    fn load(&self, source: &ModelSource, options: &Options) -> Result<Model> {
        let model = load_model(source, options)?;
        Ok(Model::new(model.name.clone(), ENGINE, Shared(Arc::new(model))))
    }
}

fn load_model(source: &ModelSource, options: &Options) -> Result<TorchModel> {
    options.validate()?;
    let torch = TorchOptions::from_options(options)?;
    let name = source.name();
    source.check_format(
        ENGINE,
        &[TORCHSCRIPT],
        "libtorch runs TorchScript (.pt; `thrum zoo export NAME -o NAME.pt` writes one)",
        EXPECTED,
    )?;
    let bf16 = match options.precision.unwrap_or_default() {
        Precision::Fp32 => false,
        Precision::Bf16 => {
            precision::require_cpu(ENGINE, Precision::Bf16, CpuFeatures::detect())?;
            true
        }
        Precision::Int8 => {
            return Err(precision::unsupported(
                ENGINE,
                Precision::Int8,
                "libtorch runs int8 only from a model quantized in Python (torch.ao.quantization's \
                 FX or PT2E flow, then saved as TorchScript), which thrum does not make; for \
                 int8 quantize the ONNX model (`thrum quantize`) and run it on ort",
            ));
        }
        Precision::Fp16 => {
            return Err(precision::unsupported(
                ENGINE,
                Precision::Fp16,
                "libtorch's CPU kernels are fp32 and bf16 (oneDNN); fp16 on a CPU runs through \
                 conversions: use precision=bf16 on a CPU with AVX512-BF16 or AMX",
            ));
        }
    };
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
        graph_optimizer: torch.graph_optimizer,
    };
    threads::guard(&name, || {
        let mut module = load_module(source, &name)?;
        if bf16 {
            // Parameters and buffers in bf16; float inputs are cast on the way in and float
            // outputs back to f32 on the way out, so the model's signature does not change.
            module.to(Device::Cpu, tch::Kind::BFloat16, false);
        }
        let (inputs, outputs) = specs(source, &torch, &name)?;
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
            TorchModel { name: name.clone(), module, inputs, outputs, per_thread, mkldnn, bf16 };
        if bf16 {
            model.check_bf16()?;
        }
        if model.outputs.is_empty() {
            model.outputs = model.discover_outputs(torch.output_names.as_deref().unwrap_or(&[]))?;
        } else if let Some(names) = &torch.output_names {
            for (spec, name) in model.outputs.iter_mut().zip(names) {
                spec.name.clone_from(name);
            }
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
    let mut module =
        loaded.map_err(|e| Error::invalid_model(ENGINE, name, first_line(&e.to_string())))?;
    module
        .f_set_eval()
        .map_err(|e| Error::invalid_model(ENGINE, name, first_line(&e.to_string())))?;
    Ok(module)
}

/// libtorch's messages carry a C++ backtrace after the first line; the TorchScript
/// interpreter's say what failed on a `RuntimeError:` line after the trace, kept too.
fn first_line(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    match message.lines().skip(1).find(|l| l.trim_start().starts_with("RuntimeError:")) {
        Some(cause) => format!("{first} ({})", cause.trim()),
        None => first.to_string(),
    }
}

/// Input specs from the option or the spec file; output specs from the spec file, or found by
/// running the model once on zeros.
fn specs(
    source: &ModelSource,
    torch: &TorchOptions,
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
    let inputs = match (&torch.input_specs, &file) {
        (Some(specs), _) => specs.clone(),
        (None, Some(file)) => file.inputs.clone(),
        (None, None) => {
            return Err(Error::invalid_model(
                ENGINE,
                name,
                format!(
                    "TorchScript does not record input shapes or dtypes; give them with the \
                     torch.input_specs option (e.g. data:f32[N,3,224,224]) or in `{}` (`thrum zoo \
                     export` writes one)",
                    match source {
                        ModelSource::Path(path) => spec_path(path).display().to_string(),
                        ModelSource::Memory { .. } => "NAME.spec.json".into(),
                    }
                ),
            ));
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
        Some(file) if torch.input_specs.is_none() => file.outputs,
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
    /// `precision=bf16`: the module in bf16, float inputs cast in and outputs cast back.
    bf16: bool,
}

impl TorchModel {
    /// Output specs from runs on zeros: dtypes and shapes, with the axes that follow the batch
    /// dynamic.
    fn discover_outputs(&self, names: &[String]) -> Result<Vec<TensorSpec>> {
        thrum_core::kit::discover_outputs(&self.inputs, names, |zeros| self.run(zeros))
    }

    /// `module.to(bf16)` converts parameters and buffers, not the constants a traced function
    /// holds its weights in: one call on zeros finds out, and such a module is refused with
    /// the reason instead of failing on every call.
    fn check_bf16(&self) -> Result<()> {
        let zeros = self
            .inputs
            .iter()
            .map(|s| Tensor::zeros(s.dtype, &s.shape_at(1, 1)))
            .collect::<Result<Vec<_>>>()?;
        match self.run(&zeros) {
            // libtorch words it by kernel: "expected … BFloat16 but found Float", or (oneDNN's
            // convolution) "Input type (CPUBFloat16Type) and weight type (CPUFloatType)".
            Err(e)
                if {
                    let message = format!("{e:?}");
                    message.contains("BFloat16 but found Float")
                        || message.contains("weight type (CPUFloatType)")
                } =>
            {
                Err(precision::unsupported(
                    ENGINE,
                    Precision::Bf16,
                    format!(
                        "model `{}` holds its weights as constants of the TorchScript graph (a \
                         traced function, as `thrum zoo export` writes), which libtorch's \
                         module.to(bf16) does not convert; export it from a torch.nn.Module \
                         whose weights are parameters, give the zoo model as zoo:NAME (thrum \
                         traces it in bf16), or run bf16 on ort with \
                         ort.execution_providers=openvino",
                        self.name
                    ),
                ))
            }
            other => other.map(|_| ()),
        }
    }

    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        threads::guard(&self.name, || {
            self.forward(inputs)?
                .iter()
                .map(|t| {
                    let mut dense = if t.is_mkldnn() {
                        t.f_to_dense(None, false).map_err(|e| self.mkldnn_error(&e.to_string()))?
                    } else {
                        t.shallow_clone()
                    };
                    if self.bf16 && dense.kind() == tch::Kind::BFloat16 {
                        dense = dense.f_to_kind(tch::Kind::Float).map_err(|e| {
                            Error::inference(ENGINE, &self.name, first_line(&e.to_string()))
                        })?;
                    }
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
            if self.bf16 && x.kind() == tch::Kind::Float {
                x = x.f_to_kind(tch::Kind::BFloat16).map_err(|e| {
                    Error::inference(ENGINE, &self.name, first_line(&e.to_string()))
                })?;
            }
            if self.mkldnn {
                x = x.f_to_mkldnn(None).map_err(|e| self.mkldnn_error(&e.to_string()))?;
            }
            args.push(IValue::Tensor(x));
        }
        let out = self.module.forward_is(&args).map_err(|e| {
            let message = e.to_string();
            // On oneDNN, the layout is the one thing the caller chose that can make a model
            // fail where it otherwise runs: say so, and how to run without it.
            if self.mkldnn {
                self.mkldnn_error(&message)
            } else {
                Error::inference(ENGINE, &self.name, first_line(&message))
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
        Error::inference(
            ENGINE,
            &self.name,
            format!("forward returned {kind}; thrum takes tensors, or tuples and lists of tensors"),
        )
    }

    /// The model failed on oneDNN: the message names the operator where libtorch's does.
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

    // Per-thread and shared predictors alike: the model's one module, run under no-grad.
    fn predictor(&self) -> Result<Box<dyn PredictorBackend>> {
        Ok(Box::new(Forward(self.0.clone())))
    }

    fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
        Ok(Box::new(Forward(self.0.clone())))
    }

    fn threads(&self) -> ThreadConfig {
        self.0.threads()
    }

    fn precision_run(&self) -> Option<String> {
        self.0.bf16.then(|| {
            "libtorch: the module's parameters and buffers in bf16 (checked by a probe call at \
             load), float inputs cast to bf16 and outputs back to f32; oneDNN picks the kernels"
                .to_string()
        })
    }
}

impl RunConcurrently for TorchModel {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        TorchModel::run(self, &inputs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    use super::*;

    /// A one-convolution TorchScript model with its spec file, traced here.
    fn conv(dir: &std::path::Path) -> std::path::PathBuf {
        let weight = tch::Tensor::ones([4, 3, 3, 3], (tch::Kind::Float, tch::Device::Cpu));
        let example = tch::Tensor::zeros([1, 3, 8, 8], (tch::Kind::Float, tch::Device::Cpu));
        let module = tch::CModule::create_by_tracing("conv", "forward", &[example], &mut |x| {
            vec![x[0].conv2d(&weight, None::<&tch::Tensor>, [1, 1], [1, 1], [1, 1], 1)]
        })
        .unwrap();
        let path = dir.join("conv.pt");
        module.save(&path).unwrap();
        let spec = SpecFile {
            inputs: vec!["x:f32[N,3,8,8]".parse().unwrap()],
            outputs: vec!["y:f32[N,4,8,8]".parse().unwrap()],
        };
        std::fs::write(spec_path(&path), serde_json::to_string(&spec).unwrap()).unwrap();
        path
    }

    fn load(onednn: bool) -> (tempfile::TempDir, TorchModel) {
        let dir = tempfile::tempdir().unwrap();
        let path = conv(dir.path());
        let options = Options::default().with_onednn(onednn);
        (dir, load_model(&ModelSource::path(path), &options).unwrap())
    }

    #[test]
    fn use_mkldnn_runs_the_model_in_the_mkldnn_layout() {
        for onednn in [false, true] {
            let (_dir, model) = load(onednn);
            let outputs =
                model.forward(&[Tensor::zeros(DType::F32, &[1, 3, 8, 8]).unwrap()]).unwrap();
            assert_eq!(outputs[0].is_mkldnn(), onednn, "onednn={onednn}");
        }
    }
}
