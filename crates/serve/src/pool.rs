//! A model's worker pool: the seed's pattern (one predictor per OS thread over one shared
//! model) behind a bounded queue, with Triton's dynamic batching. This is a library: the server
//! is a protocol layer over it, and a Rust service can embed it directly.
//!
//! ```no_run
//! # async fn demo(model: thrum_core::Model) -> Result<(), thrum_serve::ServeError> {
//! use thrum_serve::{Batching, ModelPool, PoolConfig};
//! let config = PoolConfig::new(2).with_batching(Batching::new(8, std::time::Duration::from_micros(500)));
//! let pool = ModelPool::start("mlp", model.clone(), config)?; // warm, ready
//! let outputs = pool.submit(model.zero_inputs(1)?).await?;   // from any task
//! # Ok(()) }
//! ```
//!
//! - Admission is bounded: when `queue_capacity` requests wait, `submit` answers
//!   [`ServeError::QueueFull`] at once, never an unbounded wait.
//! - Without batching, each worker takes the next request from the queue. With batching, one
//!   batcher thread waits for a free worker, then forms a batch: the first waiting request,
//!   plus what arrives within `max_queue_delay` of it, up to `max_batch_size` samples along the
//!   model's batch axis, stopping early at a preferred size when nothing else waits. Requests
//!   are merged along the batch axis and the outputs split back; a request that cannot merge
//!   (other non-batch dimensions) runs in the next batch.
//! - Inference runs on the pool's OS threads only, never on the caller's (async) thread.
//! - Each request is checked on its own before it is admitted (its inputs against the model's
//!   specs, and every input holding the same number of samples along the batch axis), so a bad
//!   request fails alone and never the batch it would have joined.
//! - A request whose caller went away (a disconnected client) is dropped unrun; one whose
//!   timeout passed in the queue is answered [`ServeError::Timeout`]. Both are checked again
//!   for a request held over for the next batch, and for one in a later pass of a padded
//!   batch, right before it runs.
//! - A worker that panics answers its requests with [`ServeError::WorkerPanicked`], gets a new
//!   predictor, and keeps serving. A worker that cannot get one stops; when no worker is left,
//!   the pool is no longer ready, refuses new requests and answers the queued ones.
//! - Dropping the last clone of a pool stops it; on an async runtime's thread the drop only
//!   signals, and the workers are joined on a thread of their own.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use thrum_core::{Error, Model, Predictor, PredictorKind, SharedPredictor, Tensor};
use tokio::sync::oneshot;

use crate::error::ServeError;

/// Triton's dynamic batching settings for one model.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Batching {
    /// Most samples in one batch (Triton's `max_batch_size`; at least 1).
    pub max_batch_size: usize,
    /// How long the first request of a batch may wait for others.
    pub max_queue_delay: Duration,
    /// Batch sizes to stop at when nothing else is waiting (empty: only the maximum).
    pub preferred_batch_sizes: Vec<usize>,
    /// Requests of different lengths joined by padding (a text model's tokens), under a
    /// token budget; `None`: only requests of equal shapes join.
    pub padding: Option<Padding>,
}

/// How requests of different lengths join one batch, as text-embeddings-inference batches
/// texts: a batch holds at most `max_batch_tokens` padded positions (samples × longest), and
/// runs in passes of similar lengths ([`thrum_core::length_passes`]), each input padded with
/// zeros along `axis` to its pass's longest request. Each request gets its outputs cut back to
/// its own length along `axis`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Padding {
    /// The axis requests differ along (a text model's sequence axis).
    pub axis: usize,
    /// Most padded positions in one batch (TEI's `--max-batch-tokens`). One request over it
    /// still runs, alone.
    pub max_batch_tokens: usize,
}

impl Batching {
    /// Batches of up to `max_batch_size` samples, waiting up to `max_queue_delay`.
    pub fn new(max_batch_size: usize, max_queue_delay: Duration) -> Batching {
        Batching {
            max_batch_size,
            max_queue_delay,
            preferred_batch_sizes: Vec::new(),
            padding: None,
        }
    }

    /// Joins requests of different lengths along `axis` by padding, at most
    /// `max_batch_tokens` padded positions per batch.
    pub fn with_padding(mut self, axis: usize, max_batch_tokens: usize) -> Batching {
        self.padding = Some(Padding { axis, max_batch_tokens });
        self
    }

    /// Sets the preferred batch sizes.
    pub fn with_preferred(mut self, sizes: Vec<usize>) -> Batching {
        self.preferred_batch_sizes = sizes;
        self
    }
}

/// How a model is served: workers, predictor kind, batching, queue bound.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PoolConfig {
    /// Worker OS threads (Triton's instance count).
    pub workers: usize,
    /// One predictor per worker, or one shared predictor (engines that allow it).
    pub predictor: PredictorKind,
    /// Dynamic batching; `None` runs each request alone.
    pub batching: Option<Batching>,
    /// Requests that may wait; one more is refused with [`ServeError::QueueFull`].
    pub queue_capacity: usize,
}

impl PoolConfig {
    /// Requests that may wait per worker by default.
    pub const DEFAULT_QUEUE_PER_WORKER: usize = 64;
    /// Most workers one model may have.
    pub const MAX_WORKERS: usize = 1024;
    /// Most requests that may wait for one model.
    pub const MAX_QUEUE: usize = 1 << 20;

    /// `workers` per-thread predictors, no batching, a queue of
    /// [`DEFAULT_QUEUE_PER_WORKER`](Self::DEFAULT_QUEUE_PER_WORKER) requests per worker.
    pub fn new(workers: usize) -> PoolConfig {
        PoolConfig {
            workers,
            predictor: PredictorKind::PerThread,
            batching: None,
            queue_capacity: Self::DEFAULT_QUEUE_PER_WORKER.saturating_mul(workers.max(1)),
        }
    }

    /// Turns dynamic batching on.
    pub fn with_batching(mut self, batching: Batching) -> PoolConfig {
        self.batching = Some(batching);
        self
    }

    /// Sets the predictor kind.
    pub fn with_predictor(mut self, predictor: PredictorKind) -> PoolConfig {
        self.predictor = predictor;
        self
    }

    /// Sets the queue bound.
    pub fn with_queue_capacity(mut self, capacity: usize) -> PoolConfig {
        self.queue_capacity = capacity;
        self
    }

    /// Checks the settings against `model`: batching needs a batch axis every input and
    /// output shares.
    pub fn validate(&self, name: &str, model: &Model) -> Result<Option<usize>, ServeError> {
        let bad = |reason: String| ServeError::Config { what: format!("model `{name}`"), reason };
        if self.workers == 0 {
            return Err(bad("0 workers; at least 1 runs the model".into()));
        }
        if self.workers > Self::MAX_WORKERS {
            return Err(bad(format!(
                "{} workers; at most {} (each is an OS thread with a predictor of its own)",
                self.workers,
                Self::MAX_WORKERS
            )));
        }
        if self.queue_capacity == 0 {
            return Err(bad("a queue capacity of 0 admits no request; at least 1".into()));
        }
        if self.queue_capacity > Self::MAX_QUEUE {
            return Err(bad(format!(
                "a queue capacity of {}; at most {} (the queue's slots are allocated up front)",
                self.queue_capacity,
                Self::MAX_QUEUE
            )));
        }
        let Some(batching) = &self.batching else { return Ok(None) };
        if batching.max_batch_size == 0 {
            return Err(bad("max_batch_size 0 with batching on; 0 means off".into()));
        }
        if let Some(p) =
            batching.preferred_batch_sizes.iter().find(|&&p| p == 0 || p > batching.max_batch_size)
        {
            return Err(bad(format!(
                "preferred batch size {p} is outside 1..={}",
                batching.max_batch_size
            )));
        }
        if let Some(padding) = &batching.padding {
            if padding.max_batch_tokens == 0 {
                return Err(bad("max_batch_tokens 0 with padding on; at least 1".into()));
            }
            if let Some(spec) = model
                .inputs()
                .iter()
                .find(|s| !s.shape.get(padding.axis).is_some_and(thrum_core::Dim::is_dynamic))
            {
                return Err(bad(format!(
                    "padding along axis {} needs that axis dynamic in every input; input `{}` is {}",
                    padding.axis,
                    spec.name,
                    spec.shape_string()
                )));
            }
        }
        let axis = model.batch_axis().ok_or_else(|| {
            bad(format!(
                "dynamic batching needs a dynamic batch axis shared by every input and output; \
                 the model's inputs are {} and outputs {}",
                describe(model.inputs()),
                describe(model.outputs())
            ))
        })?;
        Ok(Some(axis))
    }
}

fn describe(specs: &[thrum_core::TensorSpec]) -> String {
    specs.iter().map(|s| format!("{} {}", s.name, s.shape_string())).collect::<Vec<_>>().join(", ")
}

/// One request waiting in the queue.
struct Job {
    inputs: Vec<Tensor>,
    /// Samples along the batch axis (1 without batching).
    samples: usize,
    /// Its length along the padding axis (0 without padding).
    length: usize,
    reply: oneshot::Sender<Result<Vec<Tensor>, ServeError>>,
    enqueued: Instant,
    timeout: Option<Duration>,
}

/// A model's cumulative statistics, as Triton's statistics extension reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Requests answered with outputs, and their total time in the server (ns).
    pub success: (u64, u64),
    /// Requests answered with an error after admission.
    pub fail: (u64, u64),
    /// Time requests waited in the queue.
    pub queue: (u64, u64),
    /// Time merging inputs into batches (per request).
    pub compute_input: (u64, u64),
    /// Time in the engine (per request).
    pub compute_infer: (u64, u64),
    /// Time splitting outputs (per request).
    pub compute_output: (u64, u64),
    /// Samples inferred.
    pub inference_count: u64,
    /// Engine calls (batches).
    pub execution_count: u64,
    /// Milliseconds since the epoch of the last inference (0: none yet).
    pub last_inference_ms: u64,
    /// Per batch size: executions and their input / infer / output ns.
    pub batches: BTreeMap<usize, BatchStat>,
    /// Requests dropped unrun because their caller went away.
    pub cancelled: u64,
    /// Predictors replaced after a worker panicked.
    pub restarts: u64,
}

/// Executions at one batch size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchStat {
    /// Executions.
    pub count: u64,
    /// Time merging inputs (ns).
    pub compute_input_ns: u64,
    /// Time in the engine (ns).
    pub compute_infer_ns: u64,
    /// Time splitting outputs (ns).
    pub compute_output_ns: u64,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn add(stat: &mut (u64, u64), count: u64, d: Duration) {
    stat.0 += count;
    stat.1 += ns(d) * count;
}

struct Inner {
    name: String,
    model: Model,
    config: PoolConfig,
    batch_axis: Option<usize>,
    /// `None` once shutdown began: dropping the sender lets the workers drain and stop.
    queue: Mutex<Option<Sender<Job>>>,
    /// Requests admitted and not yet taken by a worker. The gauge is set under the same lock,
    /// so whatever order admissions and dequeues race in, it ends at the count.
    queued: Mutex<usize>,
    closing: AtomicBool,
    /// Workers with a predictor, serving. The pool is ready while one is left.
    live: AtomicUsize,
    stats: Mutex<PoolStats>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    /// One more request waits (`true`) or one fewer (`false`: taken by a worker, or refused
    /// after all); the pending-request gauge follows at once.
    fn count_queued(&self, one_more: bool) {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        *queued = if one_more { *queued + 1 } else { queued.saturating_sub(1) };
        metrics::gauge!("thrum_inference_pending_request_count", "model" => self.name.clone())
            .set(*queued as f64);
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, PoolStats> {
        // Statistics are plain counters: a panic mid-update leaves them usable.
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A model served by a pool of worker threads; cheap to clone (clones share the pool). When the
/// last clone is dropped, the pool shuts down: admitted requests finish, the threads stop.
#[derive(Clone)]
pub struct ModelPool {
    inner: Arc<Inner>,
    _owner: Arc<Owner>,
}

/// Shuts the pool down when the last [`ModelPool`] clone goes (the threads hold `Inner`, so it
/// cannot be `Inner`'s own drop).
struct Owner(Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        // Joining waits for every admitted request: never on an async runtime's thread, where
        // it would stall every task that thread runs. There the pool stops admitting at once
        // and a thread of its own waits for the workers.
        if tokio::runtime::Handle::try_current().is_ok() {
            let inner = self.0.clone();
            inner.closing.store(true, Ordering::Release);
            inner.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
            let spawned = std::thread::Builder::new()
                .name(format!("thrum-{}-stop", inner.name))
                .spawn(move || shutdown(&inner));
            if let Err(e) = spawned {
                // The workers still stop (their queue is closed); they are just not joined.
                tracing::warn!(model = %self.0.name, error = %e, "cannot start a thread to join the pool's workers");
            }
        } else {
            shutdown(&self.0);
        }
    }
}

fn shutdown(inner: &Inner) {
    inner.closing.store(true, Ordering::Release);
    inner.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
    let threads: Vec<JoinHandle<()>> =
        std::mem::take(&mut *inner.threads.lock().unwrap_or_else(|p| p.into_inner()));
    for t in threads {
        let _ = t.join();
    }
}

impl std::fmt::Debug for ModelPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelPool").field("name", &self.inner.name).finish_non_exhaustive()
    }
}

/// How a worker runs the model.
enum Runner {
    PerThread(Predictor),
    Shared(Arc<SharedPredictor>),
}

impl Runner {
    fn predict(&mut self, inputs: Vec<Tensor>) -> thrum_core::Result<Vec<Tensor>> {
        match self {
            Runner::PerThread(p) => p.predict(inputs),
            Runner::Shared(p) => p.predict(inputs),
        }
    }
}

impl ModelPool {
    /// Starts `config.workers` threads for `model`, each with its predictor (or the one shared
    /// predictor), and returns once every worker has run a warm-up call: the pool is ready.
    /// Blocks; from async code call it in `spawn_blocking`.
    pub fn start(name: &str, model: Model, config: PoolConfig) -> Result<ModelPool, ServeError> {
        let batch_axis = config.validate(name, &model)?;
        let shared = match config.predictor {
            PredictorKind::Shared => Some(Arc::new(model.shared_predictor()?)),
            PredictorKind::PerThread => None,
        };
        let (queue_tx, queue_rx) = crossbeam_channel::bounded::<Job>(config.queue_capacity);
        let inner = Arc::new(Inner {
            name: name.to_string(),
            model: model.clone(),
            config: config.clone(),
            batch_axis,
            queue: Mutex::new(Some(queue_tx)),
            queued: Mutex::new(0),
            closing: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            stats: Mutex::new(PoolStats::default()),
            threads: Mutex::new(Vec::new()),
        });
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<Result<(), ServeError>>();
        let mut threads = Vec::new();
        let mut work_txs = Vec::new();
        let (idle_tx, idle_rx) = crossbeam_channel::unbounded::<usize>();
        for w in 0..config.workers {
            let inner = inner.clone();
            let shared = shared.clone();
            let ready = ready_tx.clone();
            let source = match batch_axis {
                None => Source::Queue(queue_rx.clone()),
                Some(_) => {
                    let (tx, rx) = crossbeam_channel::bounded::<Vec<Job>>(1);
                    work_txs.push(tx);
                    Source::Batches { index: w, idle: idle_tx.clone(), batches: rx }
                }
            };
            let thread = std::thread::Builder::new()
                .name(format!("thrum-{}-{w}", inner.name))
                .spawn(move || worker(&inner, shared, source, &ready))
                .map_err(|e| ServeError::Config {
                    what: format!("model `{name}`"),
                    reason: format!("cannot start worker thread {w}: {e}"),
                })?;
            threads.push(thread);
        }
        drop((ready_tx, idle_tx));
        if let (Some(_), Some(batching)) = (batch_axis, config.batching.clone()) {
            let inner_b = inner.clone();
            let thread = std::thread::Builder::new()
                .name(format!("thrum-{}-batcher", inner.name))
                .spawn(move || batcher(&inner_b, &batching, &queue_rx, &idle_rx, work_txs))
                .map_err(|e| ServeError::Config {
                    what: format!("model `{name}`"),
                    reason: format!("cannot start the batcher thread: {e}"),
                })?;
            threads.push(thread);
        } else {
            drop(queue_rx);
        }
        *inner.threads.lock().unwrap_or_else(|p| p.into_inner()) = threads;
        let pool = ModelPool { _owner: Arc::new(Owner(inner.clone())), inner };
        for _ in 0..config.workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    pool.shutdown();
                    return Err(e);
                }
                Err(_) => {
                    pool.shutdown();
                    return Err(ServeError::Config {
                        what: format!("model `{name}`"),
                        reason: "a worker stopped before it was ready".into(),
                    });
                }
            }
        }
        Ok(pool)
    }

    /// The model's name in the pool.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.inner.model
    }

    /// How the pool serves it.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// The batch axis requests are merged along, when batching is on.
    pub fn batch_axis(&self) -> Option<usize> {
        self.inner.batch_axis
    }

    /// Requests admitted and not yet taken by a worker.
    pub fn pending(&self) -> usize {
        *self.inner.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False once shutdown began, or when no worker is left to serve.
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why the pool does not serve, if it does not.
    pub fn not_ready(&self) -> Option<String> {
        if self.inner.closing.load(Ordering::Acquire) {
            Some("it is shutting down".into())
        } else if self.inner.live.load(Ordering::Acquire) == 0 {
            Some("no worker is left: every worker failed to replace its predictor (see the server log)".into())
        } else {
            None
        }
    }

    /// Workers serving now (each with its predictor).
    pub fn live_workers(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> PoolStats {
        self.inner.stats().clone()
    }

    /// Runs `inputs` (the model's inputs in order) and returns its outputs.
    pub async fn submit(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServeError> {
        self.submit_with_timeout(inputs, None).await
    }

    /// Like [`ModelPool::submit`]; a request still queued after `timeout` is answered
    /// [`ServeError::Timeout`] instead of running.
    pub async fn submit_with_timeout(
        &self,
        inputs: Vec<Tensor>,
        timeout: Option<Duration>,
    ) -> Result<Vec<Tensor>, ServeError> {
        let rx = self.enqueue(inputs, timeout)?;
        rx.await.unwrap_or_else(|_| {
            Err(ServeError::NotReady {
                what: format!("model `{}`", self.inner.name),
                reason: "its workers stopped before answering".into(),
            })
        })
    }

    /// Checks and admits a request; the receiver gets its answer.
    fn enqueue(
        &self,
        inputs: Vec<Tensor>,
        timeout: Option<Duration>,
    ) -> Result<oneshot::Receiver<Result<Vec<Tensor>, ServeError>>, ServeError> {
        let inner = &self.inner;
        let shutting_down = || ServeError::NotReady {
            what: format!("model `{}`", inner.name),
            reason: "the server is shutting down".into(),
        };
        if let Some(reason) = self.not_ready() {
            return Err(ServeError::NotReady { what: format!("model `{}`", inner.name), reason });
        }
        inner.model.check_inputs(&inputs)?;
        let samples = match (inner.batch_axis, &inner.config.batching) {
            (Some(axis), Some(_)) => {
                let samples = samples_along(inner, &inputs, axis)?;
                self.check_samples(samples)?;
                samples
            }
            _ => 1,
        };
        let length = match inner.config.batching.as_ref().and_then(|b| b.padding.as_ref()) {
            Some(p) => length_along(inner, &inputs, p.axis)?,
            None => 0,
        };
        let (reply, rx) = oneshot::channel();
        let job = Job { inputs, samples, length, reply, enqueued: Instant::now(), timeout };
        let queue = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = queue.as_ref() else { return Err(shutting_down()) };
        // Counted before the send so a worker's decrement never runs first.
        inner.count_queued(true);
        match queue.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => {
                inner.count_queued(false);
                metrics::counter!("thrum_inference_request_failure", "model" => inner.name.clone(), "reason" => "REJECTED").increment(1);
                Err(ServeError::QueueFull {
                    model: inner.name.clone(),
                    queued: inner.config.queue_capacity,
                    retry_after: self.retry_after(),
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                inner.count_queued(false);
                match self.not_ready() {
                    Some(reason) => Err(ServeError::NotReady {
                        what: format!("model `{}`", inner.name),
                        reason,
                    }),
                    None => Err(shutting_down()),
                }
            }
        }
    }

    /// Refuses a request of `samples` samples beyond the batching's `max_batch_size`.
    fn check_samples(&self, samples: usize) -> Result<(), ServeError> {
        let inner = &self.inner;
        match (inner.batch_axis, &inner.config.batching) {
            (Some(axis), Some(batching)) if samples > batching.max_batch_size => {
                Err(ServeError::bad(format!(
                    "the request holds {samples} samples along axis {axis}; model `{}` takes at \
                     most max_batch_size = {} per request",
                    inner.name, batching.max_batch_size
                )))
            }
            _ => Ok(()),
        }
    }

    /// What [`ModelPool::submit`] would refuse a request of `samples` samples for before it
    /// runs — a model that is not ready, too many samples, a full queue — checked before
    /// costly pre-processing (decoding images) is spent on a request that cannot run. Advisory:
    /// the queue may fill in between, and submitting checks again.
    pub fn precheck(&self, samples: usize) -> Result<(), ServeError> {
        let inner = &self.inner;
        if let Some(reason) = self.not_ready() {
            return Err(ServeError::NotReady { what: format!("model `{}`", inner.name), reason });
        }
        self.check_samples(samples)?;
        let queue = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.as_ref().is_some_and(|q| q.is_full()) {
            return Err(ServeError::QueueFull {
                model: inner.name.clone(),
                queued: inner.config.queue_capacity,
                retry_after: self.retry_after(),
            });
        }
        Ok(())
    }

    /// A guess of when a full queue has room: the time it takes to run a queue's worth of
    /// requests at the average execution time so far.
    fn retry_after(&self) -> Duration {
        let stats = self.inner.stats();
        let (count, total) = stats.compute_infer;
        let per_request =
            total.checked_div(count).map_or(Duration::from_millis(10), Duration::from_nanos);
        per_request
            * u32::try_from(self.inner.config.queue_capacity / self.inner.config.workers.max(1))
                .unwrap_or(u32::MAX)
    }

    /// Stops admitting requests, lets the workers finish every admitted one, and waits for
    /// them. Idempotent.
    pub fn shutdown(&self) {
        shutdown(&self.inner);
    }

    /// Stops admitting requests without waiting (the server's first shutdown step).
    pub fn stop_admitting(&self) {
        self.inner.closing.store(true, Ordering::Release);
    }
}

/// The samples a request holds along the batch axis: the same in every input, at least one.
/// Checked here, per request, so that a request whose inputs disagree fails alone instead of
/// failing the batch it would have been merged into.
fn samples_along(inner: &Inner, inputs: &[Tensor], axis: usize) -> Result<usize, ServeError> {
    let specs = inner.model.inputs();
    let mut first: Option<(&str, usize)> = None;
    for (spec, tensor) in specs.iter().zip(inputs) {
        let n = tensor.shape().get(axis).copied().unwrap_or(1);
        match first {
            None => first = Some((&spec.name, n)),
            Some((name, m)) if m != n => {
                return Err(ServeError::bad(format!(
                    "input `{}` holds {n} samples along the batch axis {axis}, but input `{name}` \
                     holds {m}; every input of a request to model `{}` holds the same number",
                    spec.name, inner.name
                )));
            }
            Some(_) => {}
        }
    }
    let samples = first.map_or(1, |(_, n)| n);
    if samples == 0 {
        return Err(
            Error::EmptyBatch { what: format!("a request to model `{}`", inner.name) }.into()
        );
    }
    Ok(samples)
}

/// A request's length along the padding axis: the same in every input, as the padded batch
/// needs (checked here, so that a request whose inputs disagree fails alone).
fn length_along(inner: &Inner, inputs: &[Tensor], axis: usize) -> Result<usize, ServeError> {
    let specs = inner.model.inputs();
    let mut first: Option<(&str, usize)> = None;
    for (spec, tensor) in specs.iter().zip(inputs) {
        let n = tensor.shape().get(axis).copied().unwrap_or(0);
        match first {
            None => first = Some((&spec.name, n)),
            Some((name, m)) if m != n => {
                return Err(ServeError::bad(format!(
                    "input `{}` is {n} long along axis {axis}, but input `{name}` is {m}; every \
                     input of a request to model `{}` has the same length there",
                    spec.name, inner.name
                )));
            }
            Some(_) => {}
        }
    }
    Ok(first.map_or(0, |(_, n)| n))
}

/// Where a worker gets its work.
enum Source {
    /// Straight from the queue, one request at a time.
    Queue(Receiver<Job>),
    /// Batches the batcher sends it, after it says it is idle.
    Batches { index: usize, idle: Sender<usize>, batches: Receiver<Vec<Job>> },
}

fn make_runner(inner: &Inner, shared: &Option<Arc<SharedPredictor>>) -> Result<Runner, ServeError> {
    Ok(match shared {
        Some(p) => Runner::Shared(p.clone()),
        None => Runner::PerThread(inner.model.predictor()?),
    })
}

fn worker(
    inner: &Inner,
    shared: Option<Arc<SharedPredictor>>,
    source: Source,
    ready: &Sender<Result<(), ServeError>>,
) {
    // Create and warm the predictor on the thread that will use it (per-thread state).
    let warm = make_runner(inner, &shared).and_then(|mut runner| {
        let zeros = inner.model.zero_inputs(1)?;
        match catch_unwind(AssertUnwindSafe(|| runner.predict(zeros))) {
            Ok(Ok(_)) => Ok(runner),
            Ok(Err(e)) => Err(e.into()),
            Err(panic) => Err(ServeError::WorkerPanicked {
                model: inner.name.clone(),
                message: thrum_core::error::panic_message(&panic),
            }),
        }
    });
    let mut runner = match warm {
        Ok(r) => {
            inner.live.fetch_add(1, Ordering::AcqRel);
            let _ = ready.send(Ok(()));
            r
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let live = Live { inner, armed: true };
    match source {
        Source::Queue(queue) => {
            while let Ok(job) = queue.recv() {
                inner.count_queued(false);
                if let Some(job) = admit(inner, job)
                    && run(inner, &shared, &mut runner, vec![job], Instant::now()) == After::Lost
                {
                    // The last worker out answers what still waits: nobody else will.
                    if live.stop() == 0 {
                        answer_orphans(inner, queue.try_iter(), true);
                    }
                    return;
                }
            }
        }
        Source::Batches { index, idle, batches } => {
            while idle.send(index).is_ok() {
                match batches.recv() {
                    Ok(jobs) => {
                        let taken = Instant::now();
                        let mut passes = passes(inner, jobs).into_iter();
                        let mut first = true;
                        while let Some(pass) = passes.next() {
                            // A later pass waited for those before it: its callers are
                            // checked again, as a held-over request is.
                            let pass: Vec<Job> = if first {
                                pass
                            } else {
                                pass.into_iter().filter_map(|j| admit(inner, j)).collect()
                            };
                            first = false;
                            if !pass.is_empty()
                                && run(inner, &shared, &mut runner, pass, taken) == After::Lost
                            {
                                unrun(inner, passes.flatten());
                                return;
                            }
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

/// Counts a serving worker off when it stops, however it stops.
struct Live<'a> {
    inner: &'a Inner,
    armed: bool,
}

impl Live<'_> {
    /// Counts the worker off now; returns how many are left.
    fn stop(mut self) -> usize {
        self.armed = false;
        count_off(self.inner)
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        if self.armed {
            count_off(self.inner);
        }
    }
}

/// One worker fewer; returns how many are left.
fn count_off(inner: &Inner) -> usize {
    let left = inner.live.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
    if left == 0 && !inner.closing.load(Ordering::Acquire) {
        tracing::error!(model = %inner.name, "no worker is left; the model is not ready");
    }
    left
}

/// Answers requests that no worker will run (every worker stopped) with why; `queued`: they
/// are still counted as waiting.
fn answer_orphans(inner: &Inner, jobs: impl Iterator<Item = Job>, queued: bool) {
    for job in jobs {
        if queued {
            inner.count_queued(false);
        }
        metrics::counter!("thrum_inference_request_failure", "model" => inner.name.clone(), "reason" => "BACKEND").increment(1);
        add(&mut inner.stats().fail, 1, job.enqueued.elapsed());
        let _ = job.reply.send(Err(ServeError::NotReady {
            what: format!("model `{}`", inner.name),
            reason: "no worker is left to run it: every worker failed to replace its predictor"
                .into(),
        }));
    }
}

/// A job taken from the queue, unless its caller is gone (dropped, counted) or its timeout
/// passed (answered).
fn admit(inner: &Inner, job: Job) -> Option<Job> {
    if job.reply.is_closed() {
        inner.stats().cancelled += 1;
        metrics::counter!("thrum_inference_request_failure", "model" => inner.name.clone(), "reason" => "CANCELED").increment(1);
        return None;
    }
    if let Some(timeout) = job.timeout
        && job.enqueued.elapsed() > timeout
    {
        let waited = job.enqueued.elapsed();
        add(&mut inner.stats().fail, 1, waited);
        metrics::counter!("thrum_inference_request_failure", "model" => inner.name.clone(), "reason" => "TIMEOUT").increment(1);
        let _ = job.reply.send(Err(ServeError::Timeout { model: inner.name.clone(), timeout }));
        return None;
    }
    Some(job)
}

fn batcher(
    inner: &Inner,
    batching: &Batching,
    queue: &Receiver<Job>,
    idle: &Receiver<usize>,
    workers: Vec<Sender<Vec<Job>>>,
) {
    let mut held: Option<Job> = None;
    let mut ready: Option<Vec<Job>> = None;
    // `idle` ends when every worker has stopped: at shutdown (after the queue closed) or when
    // none could replace its predictor.
    while let Ok(w) = idle.recv() {
        let jobs = match ready.take() {
            Some(jobs) => jobs,
            None => match gather(inner, batching, queue, &mut held) {
                Some(jobs) => jobs,
                None => break,
            },
        };
        if let Err(crossbeam_channel::SendError(jobs)) = workers[w].send(jobs) {
            // That worker is gone: the batch waits for the next idle one.
            ready = Some(jobs);
        }
    }
    // Dropping `workers` stops the workers once they finish. Whatever still waits here has no
    // worker to run it (after a normal shutdown, nothing does).
    answer_orphans(inner, ready.into_iter().flatten(), false);
    answer_orphans(inner, held.into_iter().chain(queue.try_iter()), true);
}

/// The next batch: the first live request, and whatever can join it within the delay.
/// `None` once the queue is closed and empty.
fn gather(
    inner: &Inner,
    batching: &Batching,
    queue: &Receiver<Job>,
    held: &mut Option<Job>,
) -> Option<Vec<Job>> {
    let take = |job: Job| {
        inner.count_queued(false);
        admit(inner, job)
    };
    let first = loop {
        // A request held over from the last batch is checked again like a fresh one: its
        // caller may have gone, or its timeout passed, while that batch ran.
        let job = match held.take() {
            Some(job) => take(job), // it was counted back when held
            None => take(queue.recv().ok()?),
        };
        if let Some(job) = job {
            break job;
        }
    };
    let deadline = first.enqueued + batching.max_queue_delay;
    let mut size = first.samples;
    let mut longest = first.length;
    let padding = batching.padding.as_ref();
    let mut jobs = vec![first];
    while size < batching.max_batch_size {
        let next = match queue.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                if batching.preferred_batch_sizes.contains(&size) {
                    break;
                }
                match queue.recv_deadline(deadline) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        let Some(next) = take(next) else { continue };
        let within_tokens = padding.is_none_or(|p| {
            (size + next.samples).saturating_mul(longest.max(next.length)) <= p.max_batch_tokens
        });
        if size + next.samples <= batching.max_batch_size
            && within_tokens
            && mergeable(&jobs[0], &next, inner.batch_axis, padding.map(|p| p.axis))
        {
            size += next.samples;
            longest = longest.max(next.length);
            jobs.push(next);
        } else {
            // Counted back: it waits in `held`, outside the channel.
            inner.count_queued(true);
            *held = Some(next);
            break;
        }
    }
    Some(jobs)
}

/// Whether two requests' inputs can be joined along the batch axis: the same shape on every
/// other axis but the padding axis.
fn mergeable(a: &Job, b: &Job, axis: Option<usize>, pad_axis: Option<usize>) -> bool {
    let Some(axis) = axis else { return false };
    a.inputs.iter().zip(&b.inputs).all(|(x, y)| {
        x.rank() == y.rank()
            && x.shape()
                .iter()
                .zip(y.shape())
                .enumerate()
                .all(|(k, (p, q))| k == axis || Some(k) == pad_axis || p == q)
    })
}

/// What a worker can do after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    /// Serve on.
    Serving,
    /// Stop: its predictor panicked and no new one could be made.
    Lost,
}

/// A batch as it runs: requests of different lengths (padding on) in passes of similar
/// lengths ([`thrum_core::length_passes`]), each padded only to its own longest; any other
/// batch in one pass, and so is a batch of a preferred size (the size was asked for).
fn passes(inner: &Inner, jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let preferred = inner.config.batching.as_ref().is_some_and(|b| {
        b.preferred_batch_sizes.contains(&jobs.iter().map(|j| j.samples).sum::<usize>())
    });
    if padding(inner).is_none() || jobs.len() < 2 || preferred {
        return vec![jobs];
    }
    let lengths: Vec<(usize, usize)> = jobs.iter().map(|j| (j.samples, j.length)).collect();
    let mut jobs: Vec<Option<Job>> = jobs.into_iter().map(Some).collect();
    thrum_core::length_passes(&lengths)
        .into_iter()
        .map(|pass| pass.into_iter().filter_map(|i| jobs[i].take()).collect())
        .collect()
}

/// Answers the requests of a batch's later passes when its worker stopped before they ran:
/// the worker's failure, not the model's readiness (other workers may serve on). A caller
/// that went away or a timeout that passed is counted as such first.
fn unrun(inner: &Inner, jobs: impl Iterator<Item = Job>) {
    for job in jobs.filter_map(|j| admit(inner, j)) {
        metrics::counter!("thrum_inference_request_failure", "model" => inner.name.clone(), "reason" => "BACKEND").increment(1);
        add(&mut inner.stats().fail, 1, job.enqueued.elapsed());
        let _ = job.reply.send(Err(ServeError::WorkerPanicked {
            model: inner.name.clone(),
            message: "an earlier pass of this request's batch panicked and the worker could \
                      not replace its predictor; this request did not run"
                .into(),
        }));
    }
}

/// Runs a batch of one or more requests and answers each.
/// `taken`: when the worker took the batch, the end of its requests' queue time (a later pass
/// of a batch waits for the passes before it, and that is compute, not queue).
fn run(
    inner: &Inner,
    shared: &Option<Arc<SharedPredictor>>,
    runner: &mut Runner,
    mut jobs: Vec<Job>,
    taken: Instant,
) -> After {
    let start = Instant::now();
    let mut after = After::Serving;
    let n = jobs.len() as u64;
    let sizes: Vec<usize> = jobs.iter().map(|j| j.samples).collect();
    let samples: usize = sizes.iter().sum();
    let queue_ns: u64 = jobs.iter().map(|j| ns(taken.saturating_duration_since(j.enqueued))).sum();
    let inputs = if jobs.len() == 1 {
        Ok(std::mem::take(&mut jobs[0].inputs))
    } else {
        let axis = inner.batch_axis.unwrap_or(0);
        let pad_axis = padding(inner).map(|p| p.axis);
        (0..jobs[0].inputs.len())
            .map(|k| {
                let column: Vec<Tensor> = jobs.iter().map(|j| j.inputs[k].clone()).collect();
                match pad_axis {
                    Some(pad_axis) => Tensor::pad_concat(&column, axis, pad_axis),
                    None => Tensor::concat(&column, axis),
                }
            })
            .collect::<thrum_core::Result<Vec<_>>>()
    };
    let merged = Instant::now();
    let result = match inputs {
        Ok(inputs) => match catch_unwind(AssertUnwindSafe(|| runner.predict(inputs))) {
            Ok(result) => result.map_err(ServeError::from),
            Err(panic) => {
                let message = thrum_core::error::panic_message(&panic);
                tracing::error!(model = %inner.name, %message, "a worker panicked; replacing its predictor");
                inner.stats().restarts += 1;
                match make_runner(inner, shared) {
                    Ok(fresh) => *runner = fresh,
                    Err(e) => {
                        // A predictor that panicked may be broken: the worker stops rather
                        // than serve on with it.
                        tracing::error!(model = %inner.name, error = %e, "cannot replace the predictor; the worker stops");
                        after = After::Lost;
                    }
                }
                Err(ServeError::WorkerPanicked { model: inner.name.clone(), message })
            }
        },
        Err(e) => Err(e.into()),
    };
    let inferred = Instant::now();
    let answers: Vec<Result<Vec<Tensor>, ServeError>> = match result {
        Ok(outputs) if jobs.len() == 1 => vec![Ok(outputs)],
        Ok(outputs) => split(inner, outputs, &jobs),
        Err(e) if jobs.len() == 1 => vec![Err(e)],
        Err(e) => {
            // Each request of the batch gets the failure; the first keeps the original error.
            let kind = e.kind();
            let text = e.to_string();
            std::iter::once(Err(e))
                .chain((1..jobs.len()).map(|_| {
                    Err(ServeError::Core(Error::inference_native(
                        inner.model.engine(),
                        inner.name.clone(),
                        kind,
                        thrum_core::NativeError::message(text.clone()),
                    )))
                }))
                .collect()
        }
    };
    let done = Instant::now();
    let (input_d, infer_d, output_d) = (merged - start, inferred - merged, done - inferred);
    let ok = answers.iter().filter(|a| a.is_ok()).count() as u64;
    {
        let mut stats = inner.stats();
        stats.queue.0 += n;
        stats.queue.1 += queue_ns;
        add(&mut stats.compute_input, n, input_d);
        add(&mut stats.compute_infer, n, infer_d);
        add(&mut stats.compute_output, n, output_d);
        for job in &jobs {
            let total = done.duration_since(job.enqueued);
            if ok == n {
                add(&mut stats.success, 1, total);
            } else {
                add(&mut stats.fail, 1, total);
            }
        }
        if ok == n {
            stats.inference_count += samples as u64;
            stats.execution_count += 1;
            stats.last_inference_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let b = stats.batches.entry(samples).or_default();
            b.count += 1;
            b.compute_input_ns += ns(input_d);
            b.compute_infer_ns += ns(infer_d);
            b.compute_output_ns += ns(output_d);
        }
    }
    record_metrics(inner, &jobs, ok, samples, input_d, infer_d, output_d, taken);
    for (job, answer) in jobs.into_iter().zip(answers) {
        // The caller may be gone (a disconnected client): nothing to answer then.
        let _ = job.reply.send(answer);
    }
    after
}

#[allow(clippy::too_many_arguments)]
fn record_metrics(
    inner: &Inner,
    jobs: &[Job],
    ok: u64,
    samples: usize,
    input_d: Duration,
    infer_d: Duration,
    output_d: Duration,
    taken: Instant,
) {
    let model = inner.name.clone();
    let n = jobs.len() as u64;
    metrics::counter!("thrum_inference_request_success", "model" => model.clone()).increment(ok);
    if n > ok {
        metrics::counter!("thrum_inference_request_failure", "model" => model.clone(), "reason" => "BACKEND").increment(n - ok);
    }
    metrics::counter!("thrum_inference_count", "model" => model.clone()).increment(samples as u64);
    metrics::counter!("thrum_inference_exec_count", "model" => model.clone()).increment(1);
    metrics::histogram!("thrum_inference_batch_size", "model" => model.clone())
        .record(samples as f64);
    for job in jobs {
        metrics::histogram!("thrum_inference_queue_duration_seconds", "model" => model.clone())
            .record(taken.saturating_duration_since(job.enqueued).as_secs_f64());
    }
    metrics::histogram!("thrum_inference_compute_input_duration_seconds", "model" => model.clone())
        .record(input_d.as_secs_f64());
    metrics::histogram!("thrum_inference_compute_infer_duration_seconds", "model" => model.clone())
        .record(infer_d.as_secs_f64());
    metrics::histogram!("thrum_inference_compute_output_duration_seconds", "model" => model)
        .record(output_d.as_secs_f64());
}

/// The batching's padding, when requests of different lengths join.
fn padding(inner: &Inner) -> Option<&Padding> {
    inner.config.batching.as_ref().and_then(|b| b.padding.as_ref())
}

/// Splits a batch's outputs back into each request's share, along each output's batch axis;
/// with padding, an output that is dynamic along the padding axis and as long as the batch's
/// longest request is cut back to each request's own length.
fn split(
    inner: &Inner,
    outputs: Vec<Tensor>,
    jobs: &[Job],
) -> Vec<Result<Vec<Tensor>, ServeError>> {
    let sizes: Vec<usize> = jobs.iter().map(|j| j.samples).collect();
    let sizes = &sizes[..];
    let longest = jobs.iter().map(|j| j.length).max().unwrap_or(0);
    let mut per_job: Vec<Vec<Tensor>> = vec![Vec::with_capacity(outputs.len()); sizes.len()];
    for (k, output) in outputs.iter().enumerate() {
        let spec = inner.model.outputs().get(k);
        let axis = spec.and_then(|s| s.batch_axis).unwrap_or(0);
        // An engine that found its output shapes by running the model once may state the
        // axis as fixed at the size it ran (MXNet): a size other than the stated one is the
        // padded length too.
        let trim = padding(inner).map(|p| p.axis).filter(|&a| {
            output.shape().get(a) == Some(&longest)
                && spec.is_some_and(|s| {
                    s.shape.get(a).is_some_and(|d| d.is_dynamic() || d.fixed() != Some(longest))
                })
        });
        let parts = output.split(axis, sizes).and_then(|parts| match trim {
            None => Ok(parts),
            Some(a) => {
                parts.iter().zip(jobs).map(|(part, job)| part.narrow(a, job.length)).collect()
            }
        });
        match parts {
            Ok(parts) => {
                for (slot, part) in per_job.iter_mut().zip(parts) {
                    slot.push(part);
                }
            }
            Err(e) => {
                let text = e.to_string();
                return sizes
                    .iter()
                    .map(|_| {
                        Err(ServeError::Core(Error::inference(
                            inner.model.engine(),
                            inner.name.clone(),
                            format!("splitting output {k} of a batch: {text}"),
                        )))
                    })
                    .collect();
            }
        }
    }
    per_job.into_iter().map(Ok).collect()
}
