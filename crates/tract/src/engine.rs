//! The tract engine itself (compiled with the `runtime` feature).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use thrum_core::kit::SpawnPerCall;
use thrum_core::{
    Capabilities, Dim, Engine, EngineCheck, EngineInfo, Error, Model, ModelBackend, ModelFormat,
    ModelSource, Options, PredictorBackend, Result, SharedPredictorBackend, Support, Tensor,
    TensorSpec, ThreadConfig,
};
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;

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
        let tract = TractOptions::from_options(options)?;
        let name = source.name();
        let typed = read_model(source, &name)?;
        let model = TractModel::new(name.clone(), typed, options, &tract)?;
        Ok(Model::new(name, ENGINE, Shared(Arc::new(model))))
    }
}

fn invalid(model: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid_model(ENGINE, model, e)
}

/// Parses, type-checks and declutters a model.
fn read_model(source: &ModelSource, name: &str) -> Result<TypedModel> {
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
            let typed = parsed.into_typed().map_err(|e| invalid(name, format!("{e:#}")))?;
            typed.into_decluttered().map_err(|e| invalid(name, format!("{e:#}")))
        }
        f if f == NNEF => {
            let nnef = tract_nnef::nnef().with_onnx();
            match source {
                ModelSource::Path(path) => nnef.model_for_path(path),
                ModelSource::Memory { bytes, .. } => nnef.model_for_read(&mut &bytes[..]),
            }
            .map_err(|e| invalid(name, format!("{e:#}")))
        }
        other => Err(Error::UnsupportedFormat {
            engine: ENGINE,
            model: name.into(),
            reason: format!("tract reads ONNX and NNEF, not {other}"),
        }),
    }
}

type Plan = Arc<TypedSimplePlan>;

/// Values of the model's input symbols, in [`TractModel::symbols`] order; empty for models
/// with fixed shapes, and for models whose dynamic dimensions are expressions tract resolves
/// at run time (those run one generic plan).
type PlanKey = Vec<i64>;

struct TractModel {
    name: String,
    /// Decluttered graph, symbols unresolved: the template every plan is specialised from.
    typed: TypedModel,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Each input symbol with the (input, axis) positions that carry it.
    symbols: Vec<(Symbol, Vec<(usize, usize)>)>,
    optimize: bool,
    max_plans: usize,
    intra_op_threads: usize,
    executor: Option<Executor>,
    /// Most recently used last.
    plans: Mutex<Vec<(PlanKey, Plan)>>,
}

impl TractModel {
    fn new(
        name: String,
        typed: TypedModel,
        options: &Options,
        tract: &TractOptions,
    ) -> Result<TractModel> {
        let mut inputs = Vec::new();
        let mut symbols: Vec<(Symbol, Vec<(usize, usize)>)> = Vec::new();
        let mut resolvable = true;
        for (ix, outlet) in typed.input_outlets().map_err(|e| invalid(&name, e))?.iter().enumerate()
        {
            let fact = typed.outlet_fact(*outlet).map_err(|e| invalid(&name, e))?;
            let dtype = convert::dtype(fact.datum_type).ok_or_else(|| {
                invalid(
                    &name,
                    format!(
                        "input {ix} has tract type {:?}, which thrum cannot feed",
                        fact.datum_type
                    ),
                )
            })?;
            let mut shape = Vec::new();
            for (axis, dim) in fact.shape.iter().enumerate() {
                if let Ok(n) = dim.to_i64() {
                    // A negative size in the file is no size at all: refused, never wrapped.
                    let n = usize::try_from(n).map_err(|_| {
                        invalid(&name, format!("input {ix} has dimension {n} on axis {axis}"))
                    })?;
                    shape.push(Dim::Fixed(n));
                    continue;
                }
                shape.push(Dim::named(dim.to_string()));
                match dim {
                    TDim::Sym(sym) => match symbols.iter_mut().find(|(s, _)| s == sym) {
                        Some((_, at)) => at.push((ix, axis)),
                        None => symbols.push((sym.clone(), vec![(ix, axis)])),
                    },
                    _ => resolvable = false,
                }
            }
            inputs.push(TensorSpec::new(typed.node(outlet.node).name.clone(), dtype, shape));
        }
        if !resolvable {
            symbols.clear();
        }
        let mut outputs = Vec::new();
        for outlet in typed.output_outlets().map_err(|e| invalid(&name, e))? {
            let fact = typed.outlet_fact(*outlet).map_err(|e| invalid(&name, e))?;
            let label = typed.outlet_label(*outlet).map(str::to_string);
            let out_name = label.unwrap_or_else(|| typed.node(outlet.node).name.clone());
            let dtype = convert::dtype(fact.datum_type).ok_or_else(|| {
                invalid(&name, format!("output `{out_name}` has tract type {:?}", fact.datum_type))
            })?;
            let shape = fact
                .shape
                .iter()
                .map(|d| match d.to_i64() {
                    Ok(n) => usize::try_from(n).map(Dim::Fixed).map_err(|_| {
                        invalid(&name, format!("output `{out_name}` has dimension {n}"))
                    }),
                    Err(_) => Ok(Dim::named(d.to_string())),
                })
                .collect::<Result<Vec<Dim>>>()?;
            outputs.push(TensorSpec::new(out_name, dtype, shape));
        }
        let intra = options.intra_op_threads.unwrap_or(1);
        let model = TractModel {
            name,
            typed,
            inputs,
            outputs,
            symbols,
            optimize: tract.optimize,
            max_plans: tract.max_cached_plans,
            intra_op_threads: intra,
            executor: (intra > 1).then(|| Executor::multithread_with_name(intra, "thrum-tract")),
            plans: Mutex::new(Vec::new()),
        };
        // Fixed-shape models get their one plan now, so load errors surface at load and the
        // first inference is not a compilation.
        if model.symbols.is_empty() && model.typed.symbols.all_symbols().is_empty() {
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
        self.symbols
            .iter()
            .map(|(_, at)| at.first().map_or(0, |&(ix, axis)| dim(inputs, ix, axis)))
            .collect()
    }

    /// Whether `key` is the key of `inputs`, without building one (the per-call path).
    fn key_matches(&self, key: &[i64], inputs: &[Tensor]) -> bool {
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
        let mut model = self.typed.clone();
        if !key.is_empty() {
            let subs: HashMap<Symbol, TDim> = self
                .symbols
                .iter()
                .zip(key)
                .map(|((s, _), &v)| (s.clone(), TDim::Val(v)))
                .collect();
            model = model.set_symbols(&subs).map_err(fail)?;
        }
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
