//! [`Model`] (loaded once, shared), [`Predictor`] (one per thread) and [`SharedPredictor`]
//! (one for all threads, where the engine allows it), plus the traits engines implement.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::spec::{self, TensorSpec};
use crate::tensor::Tensor;
use crate::translator::{Batchifier, Identity, Translator};

/// What an engine implements for a loaded model. Users hold a [`Model`] instead.
pub trait ModelBackend: Send + Sync + 'static {
    /// Input specs, in the order `predict` takes them.
    fn inputs(&self) -> &[TensorSpec];
    /// Output specs, in the order `predict` returns them.
    fn outputs(&self) -> &[TensorSpec];
    /// A new per-thread predictor that shares the model's weights where the engine allows.
    fn predictor(&self) -> Result<Box<dyn PredictorBackend>>;
    /// A predictor callable from many threads at once, or an error saying why the engine
    /// cannot offer one.
    fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>>;
    /// The thread configuration in effect for this model, as the engine reports it.
    fn threads(&self) -> ThreadConfig;
    /// Why the shared predictor runs one call at a time on this model, when the engine's
    /// runtime serialises concurrent calls; `None` (the default) when they run concurrently.
    fn shared_calls_serialised(&self) -> Option<String> {
        None
    }
    /// What the engine ran for a reduced precision, as far as it can tell (the integer
    /// kernels in ONNX Runtime's optimised graph, tract's fake quantization, a bf16 module);
    /// `None` (the default) for fp32, or when it cannot say.
    fn precision_run(&self) -> Option<String> {
        None
    }
}

/// A per-thread predictor as an engine implements it: `Send`, used through `&mut self`.
pub trait PredictorBackend: Send {
    /// Runs one forward pass on inputs already checked against the model's specs.
    fn predict(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>>;
}

/// A predictor as an engine implements it when its runtime allows concurrent calls.
pub trait SharedPredictorBackend: Send + Sync {
    /// Runs one forward pass; may be called from several threads at once.
    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>>;
}

/// How runners hand predictors to their worker threads.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PredictorKind {
    /// One [`Predictor`] per worker thread (DJL's recommendation).
    #[default]
    PerThread,
    /// One [`SharedPredictor`] used by every worker (engines whose runtime allows it).
    Shared,
}

impl std::fmt::Display for PredictorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PredictorKind::PerThread => "per-thread",
            PredictorKind::Shared => "shared",
        })
    }
}

impl std::str::FromStr for PredictorKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<PredictorKind> {
        match s.trim() {
            "per-thread" | "per_thread" | "perthread" => Ok(PredictorKind::PerThread),
            "shared" => Ok(PredictorKind::Shared),
            other => Err(Error::InvalidValue {
                what: "predictor kind".into(),
                value: other.into(),
                expected: "per-thread or shared".into(),
            }),
        }
    }
}

/// Thread settings in effect for a model, as reported by its engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ThreadConfig {
    /// Threads inside one operator.
    pub intra_op: Option<usize>,
    /// Threads running independent operators.
    pub inter_op: Option<usize>,
    /// OpenMP threads, for engines built on OpenMP.
    pub omp: Option<usize>,
    /// Anything else worth knowing (global pools, process-wide settings).
    pub note: Option<String>,
}

impl ThreadConfig {
    /// A configuration with intra- and inter-op counts.
    pub fn new(intra_op: Option<usize>, inter_op: Option<usize>) -> ThreadConfig {
        ThreadConfig { intra_op, inter_op, omp: None, note: None }
    }

    /// Sets the OpenMP thread count.
    pub fn with_omp(mut self, omp: Option<usize>) -> ThreadConfig {
        self.omp = omp;
        self
    }

    /// Sets the note.
    pub fn with_note(mut self, note: impl Into<String>) -> ThreadConfig {
        self.note = Some(note.into());
        self
    }
}

/// Time spent in each stage of one `predict` or `batch_predict` call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageTimings {
    /// Translator pre-processing, batching and input checks.
    pub preprocess: Duration,
    /// The engine's forward pass(es).
    pub inference: Duration,
    /// Un-batching and translator post-processing.
    pub postprocess: Duration,
    /// Within `preprocess`, the time of each of the translator's
    /// [`Translator::preprocess_parts`] (zeros without them), summed over a batch's items.
    pub preprocess_parts: [Duration; 2],
}

impl StageTimings {
    /// Sum of the stages.
    pub fn total(&self) -> Duration {
        self.preprocess + self.inference + self.postprocess
    }

    fn add(&mut self, other: StageTimings) {
        self.preprocess += other.preprocess;
        self.inference += other.inference;
        self.postprocess += other.postprocess;
        self.preprocess_parts[0] += other.preprocess_parts[0];
        self.preprocess_parts[1] += other.preprocess_parts[1];
    }
}

struct ModelInner {
    name: String,
    engine: &'static str,
    backend: Box<dyn ModelBackend>,
}

/// A loaded model: immutable, `Send + Sync`, cheap to clone (clones share the weights).
///
/// Load it once and hand clones (or `&Model`) to every thread; each thread makes its own
/// [`Predictor`]. The engine's resources are released deterministically when the last clone
/// and the last predictor are dropped — there is no finalizer to disable, unlike DJL's
/// `disable_close_resource_on_finalize`.
///
/// ```
/// fn assert_send_sync<T: Send + Sync>() {}
/// assert_send_sync::<thrum_core::Model>();
/// ```
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.inner.name)
            .field("engine", &self.inner.engine)
            .field("inputs", &self.inputs())
            .field("outputs", &self.outputs())
            .finish()
    }
}

impl Model {
    /// Wraps an engine's loaded model. Called by engine crates.
    pub fn new(name: impl Into<String>, engine: &'static str, backend: impl ModelBackend) -> Model {
        Model {
            inner: Arc::new(ModelInner { name: name.into(), engine, backend: Box::new(backend) }),
        }
    }

    /// The model's name (file stem or zoo name).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The engine that loaded it.
    pub fn engine(&self) -> &'static str {
        self.inner.engine
    }

    /// Input specs, in positional order.
    pub fn inputs(&self) -> &[TensorSpec] {
        self.inner.backend.inputs()
    }

    /// Output specs, in the order predictions return them.
    pub fn outputs(&self) -> &[TensorSpec] {
        self.inner.backend.outputs()
    }

    /// The thread configuration in effect, as the engine reports it.
    pub fn threads(&self) -> ThreadConfig {
        self.inner.backend.threads()
    }

    /// Why the shared predictor runs one call at a time on this model, when the engine
    /// serialises concurrent calls (several threads on it then gain nothing); `None` when
    /// calls run concurrently.
    pub fn shared_calls_serialised(&self) -> Option<String> {
        self.inner.backend.shared_calls_serialised()
    }

    /// What the engine ran for a reduced precision, as far as it can tell; `None` for fp32
    /// or when the engine cannot say.
    pub fn precision_run(&self) -> Option<String> {
        self.inner.backend.precision_run()
    }

    /// A predictor for plain tensors. One per thread; it shares this model's weights.
    pub fn predictor(&self) -> Result<Predictor> {
        self.predictor_with(Identity::default())
    }

    /// A predictor that runs `translator` around each inference.
    pub fn predictor_with<T: Translator>(&self, translator: T) -> Result<Predictor<T>> {
        Ok(Predictor {
            model: self.clone(),
            backend: self.inner.backend.predictor()?,
            translator,
            last: StageTimings::default(),
            _not_sync: PhantomData,
        })
    }

    /// One predictor for all threads, where the engine's runtime allows concurrent calls;
    /// otherwise [`Error::Unsupported`] naming the engine and why.
    pub fn shared_predictor(&self) -> Result<SharedPredictor> {
        self.shared_predictor_with(Identity::default())
    }

    /// A shared predictor that runs `translator` around each inference.
    pub fn shared_predictor_with<T: Translator>(
        &self,
        translator: T,
    ) -> Result<SharedPredictor<T>> {
        Ok(SharedPredictor {
            model: self.clone(),
            backend: self.inner.backend.shared_predictor()?,
            translator,
        })
    }

    /// Checks positional inputs against the input specs (count, dtype, rank, fixed
    /// dimensions, no empty batch).
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        spec::check_inputs(self.name(), self.inputs(), inputs)
    }

    /// Orders `(name, tensor)` pairs into positional inputs.
    pub fn order_named_inputs(&self, named: Vec<(String, Tensor)>) -> Result<Vec<Tensor>> {
        spec::order_named_inputs(self.name(), self.inputs(), named)
    }

    /// Zeros matching every input spec, with each dynamic dimension set to `dynamic`.
    pub fn zero_inputs(&self, dynamic: usize) -> Result<Vec<Tensor>> {
        self.inputs().iter().map(|s| Tensor::zeros(s.dtype, &s.concrete_shape(dynamic))).collect()
    }

    /// The axis along which every input and output stacks samples, when they all share one
    /// ([`TensorSpec::batch_axis`]): where requests can be merged into one batch.
    pub fn batch_axis(&self) -> Option<usize> {
        let axis = spec::common_batch_axis(self.inputs())?;
        (spec::common_batch_axis(self.outputs()) == Some(axis)).then_some(axis)
    }
}

/// A per-thread predictor: `Send`, so it can move to a worker thread, but **not `Sync`**, so
/// it can never be used from two threads at once.
///
/// DJL documents that its `Predictor` is not thread-safe; here the compiler enforces it.
/// Moving a predictor into a thread compiles:
///
/// ```
/// # fn demo(model: thrum_core::Model) -> thrum_core::Result<()> {
/// let mut predictor = model.predictor()?;
/// std::thread::spawn(move || predictor.predict(vec![]));
/// # Ok(()) }
/// ```
///
/// Sharing `&Predictor` between threads does not:
///
/// ```compile_fail
/// # fn demo(model: thrum_core::Model) -> thrum_core::Result<()> {
/// let predictor = model.predictor()?;
/// std::thread::scope(|s| {
///     s.spawn(|| predictor.model().name().len()); // `Predictor` is not `Sync`
/// });
/// # Ok(()) }
/// ```
pub struct Predictor<T: Translator = Identity> {
    model: Model,
    backend: Box<dyn PredictorBackend>,
    translator: T,
    last: StageTimings,
    // Not Sync even if an engine's backend happens to be: the contract is per-thread use.
    _not_sync: PhantomData<Cell<()>>,
}

impl<T: Translator> Predictor<T> {
    /// The model this predictor runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Pre-processes `input`, runs one forward pass, post-processes the outputs.
    pub fn predict(&mut self, input: T::Input) -> Result<T::Output> {
        let backend = &mut self.backend;
        let (output, timings) =
            predict_one(&self.model, &self.translator, input, |x| backend.predict(x))?;
        self.last = timings;
        Ok(output)
    }

    /// Predicts several inputs: one forward pass for the whole batch when the translator has
    /// a batchifier (a padded batch of different lengths: one per group of similar lengths,
    /// [`Batchifier::groups`]), one per input otherwise.
    pub fn batch_predict(&mut self, inputs: Vec<T::Input>) -> Result<Vec<T::Output>> {
        let backend = &mut self.backend;
        let (outputs, timings) =
            predict_batch(&self.model, &self.translator, inputs, |x| backend.predict(x))?;
        self.last = timings;
        Ok(outputs)
    }

    /// Stage timings of the last successful `predict` or `batch_predict`.
    pub fn last_timings(&self) -> StageTimings {
        self.last
    }
}

/// A predictor that many threads use at once (`Sync`), for engines whose runtime allows
/// concurrent calls on one instance; it saves the memory of per-thread state.
///
/// ```
/// # fn demo(model: thrum_core::Model) -> thrum_core::Result<()> {
/// let shared = model.shared_predictor()?;
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| shared.predict(model.zero_inputs(1)?));
///     }
/// });
/// # Ok(()) }
/// ```
pub struct SharedPredictor<T: Translator = Identity> {
    model: Model,
    backend: Box<dyn SharedPredictorBackend>,
    translator: T,
}

impl<T: Translator> SharedPredictor<T> {
    /// The model this predictor runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Like [`Predictor::predict`], callable from many threads at once.
    pub fn predict(&self, input: T::Input) -> Result<T::Output> {
        self.predict_timed(input).map(|(output, _)| output)
    }

    /// [`SharedPredictor::predict`] with the stage timings of this call.
    pub fn predict_timed(&self, input: T::Input) -> Result<(T::Output, StageTimings)> {
        predict_one(&self.model, &self.translator, input, |x| self.backend.predict(x))
    }

    /// Like [`Predictor::batch_predict`], callable from many threads at once.
    pub fn batch_predict(&self, inputs: Vec<T::Input>) -> Result<Vec<T::Output>> {
        self.batch_predict_timed(inputs).map(|(outputs, _)| outputs)
    }

    /// [`SharedPredictor::batch_predict`] with the stage timings of this call.
    pub fn batch_predict_timed(
        &self,
        inputs: Vec<T::Input>,
    ) -> Result<(Vec<T::Output>, StageTimings)> {
        predict_batch(&self.model, &self.translator, inputs, |x| self.backend.predict(x))
    }
}

fn predict_one<T: Translator>(
    model: &Model,
    translator: &T,
    input: T::Input,
    infer: impl FnOnce(Vec<Tensor>) -> Result<Vec<Tensor>>,
) -> Result<(T::Output, StageTimings)> {
    let start = Instant::now();
    let batchifier = translator.batchifier();
    // Kept for `postprocess_with`; tensors share their data, so this copies no values.
    let (item, parts) = translator.preprocess_timed(model, input)?;
    let tensors = if batchifier != Batchifier::None {
        batchifier.batchify(vec![item.clone()])?
    } else {
        item.clone()
    };
    model.check_inputs(&tensors)?;
    let inference_start = Instant::now();
    let mut outputs = infer(tensors)?;
    let post_start = Instant::now();
    if batchifier != Batchifier::None {
        outputs = batchifier.unbatchify(model, outputs, 1)?.pop().unwrap_or_default();
    }
    let output = translator.postprocess_with(model, &item, outputs)?;
    let timings = StageTimings {
        preprocess: inference_start - start,
        inference: post_start - inference_start,
        postprocess: post_start.elapsed(),
        preprocess_parts: parts,
    };
    Ok((output, timings))
}

fn predict_batch<T: Translator>(
    model: &Model,
    translator: &T,
    inputs: Vec<T::Input>,
    mut infer: impl FnMut(Vec<Tensor>) -> Result<Vec<Tensor>>,
) -> Result<(Vec<T::Output>, StageTimings)> {
    if inputs.is_empty() {
        return Err(Error::Batch {
            reason: format!(
                "a batch of zero inputs for model `{}`; pass at least one",
                model.name()
            ),
        });
    }
    let batchifier = translator.batchifier();
    if batchifier == Batchifier::None {
        let mut timings = StageTimings::default();
        let mut outputs = Vec::with_capacity(inputs.len());
        for input in inputs {
            let (output, t) = predict_one(model, translator, input, &mut infer)?;
            timings.add(t);
            outputs.push(output);
        }
        return Ok((outputs, timings));
    }
    let start = Instant::now();
    let n = inputs.len();
    let mut parts = [Duration::ZERO; 2];
    let items = inputs
        .into_iter()
        .map(|i| {
            let (item, [a, b]) = translator.preprocess_timed(model, i)?;
            parts[0] += a;
            parts[1] += b;
            Ok(item)
        })
        .collect::<Result<Vec<_>>>()?;
    // One forward pass per group of similar lengths (`Batchifier::groups`); the outputs go
    // back to their items' places.
    let mut outputs: Vec<Option<T::Output>> = std::iter::repeat_with(|| None).take(n).collect();
    // A model whose batch axis is fixed takes its whole batch in one pass.
    let dynamic_batch =
        model.inputs().iter().all(|s| s.shape.first().is_some_and(|d| d.is_dynamic()));
    let groups = if dynamic_batch { batchifier.groups(&items) } else { vec![(0..n).collect()] };
    let mut batching = start.elapsed();
    let (mut inference, mut postprocess) = (Duration::ZERO, Duration::ZERO);
    for group in groups {
        let batch_start = Instant::now();
        let batch = batchifier.batchify(group.iter().map(|&i| items[i].clone()).collect())?;
        model.check_inputs(&batch)?;
        let inference_start = Instant::now();
        let batched = infer(batch)?;
        let post_start = Instant::now();
        for (&i, o) in group.iter().zip(batchifier.unbatchify(model, batched, group.len())?) {
            outputs[i] = Some(translator.postprocess_with(model, &items[i], o)?);
        }
        batching += inference_start - batch_start;
        inference += post_start - inference_start;
        postprocess += post_start.elapsed();
    }
    let outputs = outputs.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| Error::Batch {
        reason: format!("a batch of {n} for model `{}` left an item without output", model.name()),
    })?;
    let timings =
        StageTimings { preprocess: batching, inference, postprocess, preprocess_parts: parts };
    Ok((outputs, timings))
}
