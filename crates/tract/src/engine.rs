//! The tract engine itself (compiled with the `runtime` feature).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use thrum_core::kit::SpawnPerCall;
use thrum_core::precision::{self, Precision};
use thrum_core::{
    Capabilities, Dim, Engine, EngineCheck, EngineInfo, Error, Model, ModelBackend, ModelFormat,
    ModelSource, Options, PredictorBackend, Result, SharedPredictorBackend, Support, Tensor,
    TensorSpec, ThreadConfig,
};
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;
use tract_onnx::tract_hir::infer::{DimFact, Factoid, ShapeFactoid};

use crate::{ENGINE, NNEF, TRACT_VERSION, TractOptions, convert};

const EXPECTED: &str = "an ONNX model (.onnx) or an NNEF model (.nnef, .nnef.tar, .nnef.tgz)";

/// The tract engine. Stateless: all state lives in the models it loads.
#[derive(Clone, Copy, Debug, Default)]
pub struct TractEngine;

impl TractEngine {
    /// The engine.
    pub fn new() -> TractEngine {
        TractEngine
    }
}

impl Engine for TractEngine {
    fn info(&self) -> &'static EngineInfo {
        &crate::INFO
    }

    fn check(&self) -> EngineCheck {
        EngineCheck::available(ENGINE, TRACT_VERSION)
            .with_providers(vec![format!("cpu ({} kernels, linked in)", std::env::consts::ARCH)])
            .with_detail("pure Rust, no native library")
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(
            Support::Yes,
            Support::No {
                reason:
                    "tract runs its own Rust kernels; oneDNN applies to the torch and mxnet engines"
                        .into(),
            },
            vec!["cpu".into()],
        )
        .with_int8_form(thrum_core::Int8Form::QLinearPerTensor)
    }

    fn load(&self, source: &ModelSource, options: &Options) -> Result<Model> {
        options.validate()?;
        if let Some(n) = options.inter_op_threads.filter(|&n| n != 1) {
            return Err(Error::Unsupported {
                engine: ENGINE,
                feature: format!("inter_op_threads={n}"),
                reason: "tract runs operators one after another; use intra_op_threads for \
                         parallelism inside operators, or more predictor threads"
                    .into(),
            });
        }
        if options.onednn == Some(true) {
            return Err(Error::Unsupported {
                engine: ENGINE,
                feature: "oneDNN".into(),
                reason: "tract runs its own Rust kernels; oneDNN applies to the torch and mxnet \
                         engines"
                    .into(),
            });
        }
        match options.precision.unwrap_or_default() {
            Precision::Fp32 => {}
            Precision::Int8 if source.format() == Some(NNEF) => {}
            Precision::Int8 => precision::require_quantized_onnx(ENGINE, source)?,
            p => {
                return Err(precision::unsupported(
                    ENGINE,
                    p,
                    "tract computes in f32 on x86: its f16 kernels are for ARM CPUs with fp16 \
                     arithmetic, and its opt-in AMX bf16 matmul did not speed up ResNet-50 on an \
                     AMX Xeon (13.1 → 12.9 images/s); for bf16 use ort with \
                     ort.execution_providers=openvino on a CPU with AVX512-BF16 or AMX; for int8 \
                     quantize the model (`thrum quantize`) and use precision=int8 (tract runs its \
                     QuantizeLinear / DequantizeLinear pairs in f32: ort runs them as integer \
                     kernels; `thrum quantize --for-engine tract` writes ordinary \
                     convolutions as QLinearConv, which tract runs on integer kernels)",
                ));
            }
        }
        let tract = TractOptions::from_options(options)?;
        let name = source.name();
        let template = read_model(source, &name)?;
        let mut model = TractModel::new(name.clone(), template, options, &tract)?;
        if options.precision == Some(Precision::Int8) {
            model.precision_run = Some(int8_report(source));
        }
        Ok(Model::new(name, ENGINE, Shared(Arc::new(model))))
    }
}

/// What tract runs of an int8 ONNX model: the QOperator forms (QLinearConv, QLinearMatMul,
/// ConvInteger, MatMulInteger) as integer operators; a QuantizeLinear / DequantizeLinear pair
/// around a float operator stays f32 arithmetic. (Integer is not fast here: tract ran
/// MiniLM's MatMulInteger form at 1/57 of its fp32 speed; docs/performance.md.)
fn int8_report(source: &ModelSource) -> String {
    let counts = match source
        .read("an ONNX model")
        .map_err(|e| e.to_string())
        .and_then(|bytes| precision::onnx_operator_counts(&bytes))
    {
        Ok(counts) => counts,
        Err(e) => return format!("cannot tell: {e}"),
    };
    let precision::OperatorCensus { integer, conversions: qdq, .. } =
        precision::OperatorCensus::new(&counts);
    if integer.is_empty() {
        format!(
            "tract runs the model's {qdq} QuantizeLinear / DequantizeLinear in f32 around f32 \
             kernels (fake quantization): its integer kernels take the QOperator form \
             (QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger)"
        )
    } else {
        format!(
            "tract runs {} as integer operators (i32 accumulation); {qdq} QuantizeLinear / \
             DequantizeLinear and the other operators in f32",
            integer.join(", ")
        )
    }
}

fn invalid(model: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid_model(ENGINE, model, e)
}

/// Parses a model into the template its plans are made from.
fn read_model(source: &ModelSource, name: &str) -> Result<Template> {
    // A name no format claims is tried as ONNX: exports may be written under any name.
    let format = source.format().unwrap_or(ModelFormat::ONNX);
    if format == NNEF {
        if let ModelSource::Path(path) = source
            && !path.is_dir()
        {
            source.check_file(EXPECTED)?;
        }
    } else {
        source.check_file(EXPECTED)?;
    }
    match format {
        f if f == ModelFormat::ONNX => {
            let onnx = tract_onnx::onnx();
            let parsed = match source {
                ModelSource::Path(path) => onnx.model_for_path(path),
                ModelSource::Memory { bytes, .. } => onnx.model_for_read(&mut &bytes[..]),
            }
            .map_err(|e| invalid(name, format!("{e:#}")))?;
            // tract keeps unknown operators as placeholders that fail during analysis with a
            // long message; name the operator instead.
            for node in parsed.nodes() {
                let op = node.op.name();
                if let Some(op) =
                    op.strip_prefix("Unimplemented(").and_then(|s| s.strip_suffix(')'))
                {
                    return Err(Error::UnsupportedOperator {
                        engine: ENGINE,
                        model: name.into(),
                        op: op.into(),
                    });
                }
            }
            Template::from_onnx(parsed, source, name)
        }
        f if f == NNEF => {
            let nnef = tract_nnef::nnef().with_onnx();
            match source {
                ModelSource::Path(path) => nnef.model_for_path(path),
                ModelSource::Memory { bytes, .. } => nnef.model_for_read(&mut &bytes[..]),
            }
            .map(Template::Typed)
            .map_err(|e| invalid(name, format!("{e:#}")))
        }
        other => Err(Error::UnsupportedFormat {
            engine: ENGINE,
            model: name.into(),
            reason: format!("tract reads ONNX and NNEF, not {other}"),
        }),
    }
}

/// What every plan of a model is made from.
enum Template {
    /// A decluttered graph whose dynamic dimensions, if any, are symbols: a plan substitutes
    /// their values.
    Typed(TypedModel),
    /// A graph tract can type only once its inputs' shapes are known (a dimension without a
    /// name feeding a `Concat` that must unify it, a shape computed from an input's shape
    /// whose rank analysis cannot see): each plan is typed from the actual shapes of a call.
    Concrete(InferenceModel),
}

impl Template {
    /// Types an ONNX graph: as it is; else with a fresh symbol for every dimension the file
    /// leaves unnamed (`?`, empty), which ONNX does not tie to any other; else left for each
    /// call's shapes to type.
    fn from_onnx(parsed: InferenceModel, source: &ModelSource, name: &str) -> Result<Template> {
        let typed = |model: InferenceModel| -> TractResult<TypedModel> {
            model.into_typed()?.into_decluttered()
        };
        let first = match typed(parsed.clone()) {
            Ok(model) => return Ok(Template::Typed(model)),
            Err(e) => e,
        };
        if let Some(named) = name_unknown_dims(&parsed).map_err(|e| invalid(name, e))?
            && let Ok(model) = typed(named)
        {
            return Ok(Template::Typed(model));
        }
        // Typing needs the inputs' actual shapes: the graph must state every input's type
        // and rank for calls to be checked and plans to be made.
        for (ix, outlet) in parsed.input_outlets().map_err(|e| invalid(name, e))?.iter().enumerate()
        {
            let fact = parsed.outlet_fact(*outlet).map_err(|e| invalid(name, e))?;
            if fact.datum_type.concretize().is_none() || fact.shape.is_open() {
                return Err(invalid(
                    name,
                    format!(
                        "{first:#} (input {ix} `{}` has no stated type and rank, so tract \
                         cannot type the graph even from a call's shapes)",
                        parsed.node(outlet.node).name
                    ),
                ));
            }
        }
        // tract reads no output types or shapes from the file, and analysis without the
        // inputs' sizes may stop before an output: what the file declares fills the gaps (the
        // specs thrum states; each plan is typed afresh from its call's shapes).
        let mut graph = parsed;
        let mut analysed = graph.clone();
        let _ = analysed.analyse(true);
        let mut declared: Option<Vec<Declared>> = None;
        let outlets = graph.output_outlets().map_err(|e| invalid(name, e))?.to_vec();
        for (ix, outlet) in outlets.into_iter().enumerate() {
            let mut fact = analysed.outlet_fact(outlet).map_err(|e| invalid(name, e))?.clone();
            if fact.datum_type.concretize().is_none() || fact.shape.is_open() {
                let declared = declared.get_or_insert_with(|| declared_outputs(source));
                if let Some(d) = declared.get(ix) {
                    if fact.datum_type.concretize().is_none()
                        && let Some(dt) = d.dtype
                    {
                        fact = fact.with_datum_type(dt);
                    }
                    if fact.shape.is_open()
                        && let Some(dims) = &d.shape
                    {
                        let dims: TVec<DimFact> = dims
                            .iter()
                            .map(|d| {
                                d.map_or_else(DimFact::default, |n| DimFact::from(TDim::Val(n)))
                            })
                            .collect();
                        fact.shape = ShapeFactoid::closed(dims);
                    }
                }
            }
            graph.set_outlet_fact(outlet, fact).map_err(|e| invalid(name, e))?;
        }
        Ok(Template::Concrete(graph))
    }
}

/// What an ONNX file declares of one of its graph's outputs.
struct Declared {
    dtype: Option<DatumType>,
    /// Sizes, `None` for a dynamic one; `None` when the file states no shape.
    shape: Option<Vec<Option<i64>>>,
}

/// What an ONNX file declares of its graph's outputs (nothing when the file cannot be read
/// again).
fn declared_outputs(source: &ModelSource) -> Vec<Declared> {
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
    use tract_onnx::pb::type_proto::Value;
    let onnx = tract_onnx::onnx();
    let proto = match source {
        ModelSource::Path(path) => onnx.proto_model_for_path(path),
        ModelSource::Memory { bytes, .. } => onnx.proto_model_for_read(&mut &bytes[..]),
    };
    let Some(graph) = proto.ok().and_then(|p| p.graph) else { return Vec::new() };
    graph
        .output
        .iter()
        .map(|output| {
            let tensor = output.r#type.as_ref().and_then(|t| t.value.as_ref()).map(|v| {
                let Value::TensorType(t) = v;
                t
            });
            Declared {
                dtype: tensor
                    .and_then(|t| DatumType::try_from(DataType::try_from(t.elem_type).ok()?).ok()),
                shape: tensor.and_then(|t| t.shape.as_ref()).map(|shape| {
                    shape
                        .dim
                        .iter()
                        .map(|d| match d.value {
                            Some(DimValue::DimValue(n)) if n >= 0 => Some(n),
                            _ => None,
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

/// The graph with a fresh symbol on every input dimension the file leaves unknown, or `None`
/// when it has none.
fn name_unknown_dims(parsed: &InferenceModel) -> TractResult<Option<InferenceModel>> {
    let mut model = parsed.clone();
    let mut renamed = false;
    for (ix, outlet) in parsed.input_outlets()?.iter().enumerate() {
        let fact = parsed.outlet_fact(*outlet)?;
        if fact.shape.is_open() {
            continue;
        }
        let dims: TVec<DimFact> = fact
            .shape
            .dims()
            .map(|d| match d.concretize() {
                Some(dim) => DimFact::from(dim),
                None => {
                    renamed = true;
                    DimFact::from(TDim::Sym(model.symbols.new_with_prefix("unnamed")))
                }
            })
            .collect();
        let mut fact = fact.clone();
        fact.shape = ShapeFactoid::closed(dims);
        model.set_input_fact(ix, fact)?;
    }
    Ok(renamed.then_some(model))
}

type Plan = Arc<TypedSimplePlan>;

/// What tells one plan from another: the values of the model's input symbols, in
/// [`TractModel::symbols`] order (empty for fixed shapes, and for models whose dynamic
/// dimensions are expressions tract resolves at run time: those run one generic plan); for a
/// [`Template::Concrete`] model, every input's shape, each prefixed by its rank.
type PlanKey = Vec<i64>;

struct TractModel {
    name: String,
    /// The graph every plan is specialised from.
    template: Template,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Each input symbol with the (input, axis) positions that carry it ([`Template::Typed`]).
    symbols: Vec<(Symbol, Vec<(usize, usize)>)>,
    optimize: bool,
    max_plans: usize,
    intra_op_threads: usize,
    executor: Option<Executor>,
    /// Most recently used last.
    plans: Mutex<Vec<(PlanKey, Plan)>>,
    /// What runs for precision=int8 ([`ModelBackend::precision_run`]).
    precision_run: Option<String>,
}

/// A dimension of a model's input or output as thrum states it: fixed sizes refused when
/// negative (never wrapped), anything else named by tract's expression.
fn spec_dim(dim: &TDim, model: &str, what: impl Fn() -> String) -> Result<Dim> {
    match dim.to_i64() {
        Ok(n) => usize::try_from(n)
            .map(Dim::Fixed)
            .map_err(|_| invalid(model, format!("{} has dimension {n}", what()))),
        Err(_) => Ok(Dim::named(dim.to_string())),
    }
}

fn spec_dtype(dt: DatumType, model: &str, what: impl Fn() -> String) -> Result<thrum_core::DType> {
    convert::dtype(dt).ok_or_else(|| {
        invalid(model, format!("{} has tract type {dt:?}, which thrum cannot feed", what()))
    })
}

/// The spec of an input or output of a graph tract has not typed: a type it does not state is
/// an error; a rank it does not state, or a size, is a dynamic dimension.
fn inference_spec(
    spec_name: String,
    fact: &InferenceFact,
    model: &str,
    what: impl Fn() -> String,
) -> Result<TensorSpec> {
    let dt = fact
        .datum_type
        .concretize()
        .ok_or_else(|| invalid(model, format!("{} has no stated element type", what())))?;
    let dtype = spec_dtype(dt, model, &what)?;
    let shape = fact
        .shape
        .dims()
        .enumerate()
        .map(|(axis, d)| match d.concretize() {
            Some(dim) => spec_dim(&dim, model, &what),
            None => Ok(Dim::named(format!("{}_{axis}", spec_name))),
        })
        .collect::<Result<Vec<Dim>>>()?;
    Ok(TensorSpec::new(spec_name, dtype, shape))
}

impl TractModel {
    fn new(
        name: String,
        template: Template,
        options: &Options,
        tract: &TractOptions,
    ) -> Result<TractModel> {
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        let mut symbols: Vec<(Symbol, Vec<(usize, usize)>)> = Vec::new();
        match &template {
            Template::Typed(typed) => {
                let mut resolvable = true;
                let outlets = typed.input_outlets().map_err(|e| invalid(&name, e))?;
                for (ix, outlet) in outlets.iter().enumerate() {
                    let fact = typed.outlet_fact(*outlet).map_err(|e| invalid(&name, e))?;
                    let dtype = spec_dtype(fact.datum_type, &name, || format!("input {ix}"))?;
                    let mut shape = Vec::new();
                    for (axis, dim) in fact.shape.iter().enumerate() {
                        shape.push(spec_dim(dim, &name, || format!("input {ix} on axis {axis}"))?);
                        if dim.to_i64().is_ok() {
                            continue;
                        }
                        match dim {
                            TDim::Sym(sym) => match symbols.iter_mut().find(|(s, _)| s == sym) {
                                Some((_, at)) => at.push((ix, axis)),
                                None => symbols.push((sym.clone(), vec![(ix, axis)])),
                            },
                            _ => resolvable = false,
                        }
                    }
                    let input_name = typed.node(outlet.node).name.clone();
                    inputs.push(TensorSpec::new(input_name, dtype, shape));
                }
                if !resolvable {
                    symbols.clear();
                }
                for outlet in typed.output_outlets().map_err(|e| invalid(&name, e))? {
                    let fact = typed.outlet_fact(*outlet).map_err(|e| invalid(&name, e))?;
                    let label = typed.outlet_label(*outlet).map(str::to_string);
                    let out = label.unwrap_or_else(|| typed.node(outlet.node).name.clone());
                    let what = || format!("output `{out}`");
                    let dtype = spec_dtype(fact.datum_type, &name, what)?;
                    let shape = fact
                        .shape
                        .iter()
                        .map(|d| spec_dim(d, &name, what))
                        .collect::<Result<Vec<Dim>>>()?;
                    outputs.push(TensorSpec::new(out, dtype, shape));
                }
            }
            Template::Concrete(graph) => {
                // Types and ranks were checked by `Template::from_onnx`; unknown sizes are
                // named as ONNX Runtime names them, each free.
                let outlets = graph.input_outlets().map_err(|e| invalid(&name, e))?;
                for (ix, outlet) in outlets.iter().enumerate() {
                    let fact = graph.outlet_fact(*outlet).map_err(|e| invalid(&name, e))?;
                    let spec_name = graph.node(outlet.node).name.clone();
                    inputs.push(inference_spec(spec_name, fact, &name, || format!("input {ix}"))?);
                }
                // Output types come from analysis or the file (`Template::from_onnx`).
                for outlet in graph.output_outlets().map_err(|e| invalid(&name, e))? {
                    let fact = graph.outlet_fact(*outlet).map_err(|e| invalid(&name, e))?;
                    let label = graph.outlet_label(*outlet).map(str::to_string);
                    let out = label.unwrap_or_else(|| graph.node(outlet.node).name.clone());
                    let what = || format!("output `{out}`");
                    outputs.push(inference_spec(out.clone(), fact, &name, what)?);
                }
            }
        }
        let intra = options.intra_op_threads.unwrap_or(1);
        let model = TractModel {
            name,
            template,
            inputs,
            outputs,
            symbols,
            optimize: tract.optimize,
            max_plans: tract.max_cached_plans,
            intra_op_threads: intra,
            executor: (intra > 1).then(|| Executor::multithread_with_name(intra, "thrum-tract")),
            plans: Mutex::new(Vec::new()),
            precision_run: None,
        };
        // Fixed-shape models get their one plan now, so load errors surface at load and the
        // first inference is not a compilation.
        if let Template::Typed(typed) = &model.template
            && model.symbols.is_empty()
            && typed.symbols.all_symbols().is_empty()
        {
            model.plan(&[])?;
        }
        Ok(model)
    }

    fn plans(&self) -> MutexGuard<'_, Vec<(PlanKey, Plan)>> {
        // A panic while holding the lock leaves the cache consistent (entries are pushed
        // whole), so a poisoned lock is safe to keep using.
        self.plans.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn key(&self, inputs: &[Tensor]) -> PlanKey {
        if let Template::Concrete(_) = self.template {
            return inputs
                .iter()
                .flat_map(|t| {
                    std::iter::once(t.shape().len() as i64)
                        .chain(t.shape().iter().map(|&d| d as i64))
                })
                .collect();
        }
        self.symbols
            .iter()
            .map(|(_, at)| at.first().map_or(0, |&(ix, axis)| dim(inputs, ix, axis)))
            .collect()
    }

    /// Whether `key` is the key of `inputs`, without building one (the per-call path).
    fn key_matches(&self, key: &[i64], inputs: &[Tensor]) -> bool {
        if let Template::Concrete(_) = self.template {
            let mut rest = key;
            for t in inputs {
                let shape = t.shape();
                let Some((&rank, tail)) = rest.split_first() else { return false };
                if rank != shape.len() as i64 || tail.len() < shape.len() {
                    return false;
                }
                let (dims, tail) = tail.split_at(shape.len());
                if dims.iter().zip(shape).any(|(&k, &d)| k != d as i64) {
                    return false;
                }
                rest = tail;
            }
            return rest.is_empty();
        }
        self.symbols.iter().zip(key).all(|((_, at), &value)| {
            at.first().is_none_or(|&(ix, axis)| dim(inputs, ix, axis) == value)
        })
    }

    /// The plan for `key`, built and cached on first use. Building holds the cache lock so
    /// that threads asking for the same new shape build it once.
    fn plan(&self, key: &[i64]) -> Result<Plan> {
        let mut plans = self.plans();
        if let Some(pos) = plans.iter().position(|(k, _)| k == key) {
            let entry = plans.remove(pos);
            let plan = entry.1.clone();
            plans.push(entry);
            return Ok(plan);
        }
        let plan = self.build_plan(key)?;
        plans.push((key.to_vec(), plan.clone()));
        if plans.len() > self.max_plans {
            plans.remove(0);
        }
        Ok(plan)
    }

    fn build_plan(&self, key: &[i64]) -> Result<Plan> {
        let fail = |e: TractError| {
            Error::inference(
                ENGINE,
                &self.name,
                format!("preparing a plan for {}: {e:#}", self.describe_key(key)),
            )
        };
        let mut model = match &self.template {
            Template::Typed(typed) if key.is_empty() => typed.clone(),
            Template::Typed(typed) => {
                let subs: HashMap<Symbol, TDim> = self
                    .symbols
                    .iter()
                    .zip(key)
                    .map(|((s, _), &v)| (s.clone(), TDim::Val(v)))
                    .collect();
                typed.clone().set_symbols(&subs).map_err(fail)?
            }
            Template::Concrete(graph) => {
                let mut graph = graph.clone();
                let mut rest = key;
                for (ix, spec) in self.inputs.iter().enumerate() {
                    let (&rank, tail) = rest.split_first().unwrap_or((&0, &[]));
                    let rank = usize::try_from(rank).unwrap_or(0).min(tail.len());
                    let (dims, tail) = tail.split_at(rank);
                    let shape: TVec<usize> = dims.iter().map(|&d| d as usize).collect();
                    let dt = convert::datum_type(spec.dtype);
                    graph.set_input_fact(ix, InferenceFact::dt_shape(dt, shape)).map_err(fail)?;
                    rest = tail;
                }
                graph.into_typed().and_then(|m| m.into_decluttered()).map_err(fail)?
            }
        };
        if self.optimize {
            model = model.into_optimized().map_err(fail)?;
        }
        let options = RunOptions { executor: self.executor.clone(), ..Default::default() };
        TypedSimplePlan::new_with_options(model, &options).map_err(fail)
    }

    fn describe_key(&self, key: &[i64]) -> String {
        if key.is_empty() {
            return "the model's shapes".into();
        }
        if let Template::Concrete(_) = self.template {
            let mut parts = Vec::new();
            let mut rest = key;
            for spec in &self.inputs {
                let (&rank, tail) = rest.split_first().unwrap_or((&0, &[]));
                let rank = usize::try_from(rank).unwrap_or(0).min(tail.len());
                let (dims, tail) = tail.split_at(rank);
                parts.push(format!("{} {dims:?}", spec.name));
                rest = tail;
            }
            return parts.join(", ");
        }
        let parts: Vec<String> =
            self.symbols.iter().zip(key).map(|((s, _), v)| format!("{s}={v}")).collect();
        parts.join(", ")
    }

    fn run(&self, state: &mut TypedSimpleState, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let values: TVec<TValue> = inputs
            .iter()
            .map(|t| convert::to_tract(t, &self.name).map(TValue::from))
            .collect::<Result<_>>()?;
        let outputs = state
            .run(values)
            .map_err(|e| Error::inference(ENGINE, &self.name, format!("{e:#}")))?;
        outputs.iter().map(|t| convert::from_tract(t, &self.name)).collect()
    }
}

/// Size of `inputs[ix]` along `axis`; inputs were checked against the specs these positions
/// come from.
fn dim(inputs: &[Tensor], ix: usize, axis: usize) -> i64 {
    inputs.get(ix).and_then(|t| t.shape().get(axis)).map_or(0, |&d| d as i64)
}

/// The backend thrum's `Model` holds; predictors hold clones of the same `Arc`.
struct Shared(Arc<TractModel>);

impl ModelBackend for Shared {
    fn inputs(&self) -> &[TensorSpec] {
        &self.0.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.0.outputs
    }

    fn predictor(&self) -> Result<Box<dyn PredictorBackend>> {
        Ok(Box::new(TractPredictor { model: self.0.clone(), states: Vec::new() }))
    }

    fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
        // A fresh per-thread predictor per call: its state is scratch buffers only.
        Ok(Box::new(SpawnPerCall(Arc::new(Shared(self.0.clone())))))
    }

    fn threads(&self) -> ThreadConfig {
        // No inter-op setting: tract runs operators one after another (`inter_op_threads`
        // other than 1 is refused), so none is reported.
        ThreadConfig::new(Some(self.0.intra_op_threads), None).with_note(
            "tract: one matmul thread pool per model, shared by its predictors; operators run one after another",
        )
    }

    fn precision_run(&self) -> Option<String> {
        self.0.precision_run.clone()
    }
}

/// Per-thread predictor: one tract state per plan it has run, oldest dropped first beyond
/// `tract.max_cached_plans`.
struct TractPredictor {
    model: Arc<TractModel>,
    states: Vec<(PlanKey, TypedSimpleState)>,
}

impl PredictorBackend for TractPredictor {
    fn predict(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let model = &self.model;
        let index = match self.states.iter().position(|(k, _)| model.key_matches(k, &inputs)) {
            Some(i) => i,
            None => {
                let key = model.key(&inputs);
                let state = model
                    .plan(&key)?
                    .spawn()
                    .map_err(|e| Error::inference(ENGINE, &model.name, format!("{e:#}")))?;
                if self.states.len() >= model.max_plans {
                    self.states.remove(0);
                }
                self.states.push((key, state));
                self.states.len() - 1
            }
        };
        model.run(&mut self.states[index].1, inputs)
    }
}
