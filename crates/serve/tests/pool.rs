//! The worker pool as a library: batching merges and splits, admission is bounded, timeouts
//! and disconnected callers are handled, a panicking worker is replaced.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use thrum_core::{
    DType, Dim, Model, ModelBackend, PredictorBackend, Result, SharedPredictorBackend, Tensor,
    TensorSpec, ThreadConfig,
};
use thrum_serve::{Batching, ModelPool, PoolConfig, ServeError};

/// A model whose output is its input doubled, that sleeps `delay` per call, records the batch
/// sizes it sees, and panics on an input whose first element is -1.
struct Scripted {
    specs: Vec<TensorSpec>,
    delay: Duration,
    batches: Arc<std::sync::Mutex<Vec<usize>>>,
    calls: Arc<AtomicUsize>,
}

struct ScriptedPredictor {
    delay: Duration,
    batches: Arc<std::sync::Mutex<Vec<usize>>>,
    calls: Arc<AtomicUsize>,
}

impl PredictorBackend for ScriptedPredictor {
    fn predict(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let x = inputs[0].as_slice::<f32>()?;
        if x.first() == Some(&-1.0) {
            panic!("scripted panic");
        }
        self.batches.lock().unwrap().push(inputs[0].shape()[0]);
        std::thread::sleep(self.delay);
        let doubled: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
        Ok(vec![Tensor::from_vec(inputs[0].shape().to_vec(), doubled)?])
    }
}

impl ModelBackend for Scripted {
    fn inputs(&self) -> &[TensorSpec] {
        &self.specs[..1]
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.specs[1..]
    }
    fn predictor(&self) -> Result<Box<dyn PredictorBackend>> {
        Ok(Box::new(ScriptedPredictor {
            delay: self.delay,
            batches: self.batches.clone(),
            calls: self.calls.clone(),
        }))
    }
    fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
        Err(thrum_core::Error::Unsupported {
            engine: "scripted",
            feature: "a shared predictor".into(),
            reason: "tests use per-thread predictors".into(),
        })
    }
    fn threads(&self) -> ThreadConfig {
        ThreadConfig::default()
    }
}

struct Probe {
    model: Model,
    batches: Arc<std::sync::Mutex<Vec<usize>>>,
    calls: Arc<AtomicUsize>,
}

fn scripted(delay: Duration) -> Probe {
    let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let spec = |name: &str| TensorSpec::new(name, DType::F32, vec![Dim::named("N"), Dim::Fixed(2)]);
    let backend = Scripted {
        specs: vec![spec("x"), spec("y")],
        delay,
        batches: batches.clone(),
        calls: calls.clone(),
    };
    Probe { model: Model::new("scripted", "scripted", backend), batches, calls }
}

fn input(rows: usize, value: f32) -> Vec<Tensor> {
    vec![Tensor::from_vec(vec![rows, 2], vec![value; rows * 2]).unwrap()]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn batching_merges_concurrent_requests_and_splits_the_outputs_back() {
    let probe = scripted(Duration::from_millis(30));
    let config = PoolConfig::new(1).with_batching(Batching::new(8, Duration::from_millis(20)));
    let pool = ModelPool::start("m", probe.model.clone(), config).unwrap();
    probe.batches.lock().unwrap().clear(); // the warm-up call
    let rt = runtime();
    let outputs = rt.block_on(async {
        let calls: Vec<_> = (0..6)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.submit(input(1 + i % 2, i as f32)).await })
            })
            .collect();
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap().unwrap());
        }
        out
    });
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(out[0].shape(), &[1 + i % 2, 2], "request {i} got another's share");
        assert!(
            out[0].as_slice::<f32>().unwrap().iter().all(|&v| v == 2.0 * i as f32),
            "request {i}"
        );
    }
    let batches = probe.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 9, "{batches:?}");
    assert!(batches.len() < 6, "no request was merged: {batches:?}");
    let stats = pool.stats();
    assert_eq!((stats.success.0, stats.inference_count), (6, 9));
    assert_eq!(stats.execution_count as usize, batches.len());
}

#[test]
fn a_full_queue_refuses_at_once_with_a_retry_hint() {
    let probe = scripted(Duration::from_millis(300));
    let pool =
        ModelPool::start("m", probe.model, PoolConfig::new(1).with_queue_capacity(1)).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.submit(input(1, 1.0)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await; // the worker takes it
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.submit(input(1, 2.0)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let start = std::time::Instant::now();
        let refused = pool.submit(input(1, 3.0)).await.unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(100), "the refusal waited");
        assert!(matches!(refused, ServeError::QueueFull { .. }), "{refused}");
        assert_eq!((refused.http_status(), refused.retry_after().is_some()), (503, true));
        busy.await.unwrap().unwrap();
        queued.await.unwrap().unwrap();
    });
}

#[test]
fn a_request_whose_timeout_passes_in_the_queue_is_not_run() {
    let probe = scripted(Duration::from_millis(200));
    let pool = ModelPool::start("m", probe.model, PoolConfig::new(1)).unwrap();
    let calls_before = probe.calls.load(Ordering::SeqCst);
    let rt = runtime();
    rt.block_on(async {
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.submit(input(1, 1.0)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let late = pool.submit_with_timeout(input(1, 2.0), Some(Duration::from_millis(10))).await;
        assert!(matches!(late, Err(ServeError::Timeout { .. })), "{late:?}");
        busy.await.unwrap().unwrap();
    });
    assert_eq!(probe.calls.load(Ordering::SeqCst) - calls_before, 1, "the expired request ran");
}

#[test]
fn a_caller_that_goes_away_frees_its_slot_unrun() {
    let probe = scripted(Duration::from_millis(200));
    let pool = ModelPool::start("m", probe.model, PoolConfig::new(1)).unwrap();
    let calls_before = probe.calls.load(Ordering::SeqCst);
    let rt = runtime();
    rt.block_on(async {
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.submit(input(1, 1.0)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A caller that gives up (a client that disconnects drops its request the same way).
        let gone =
            tokio::time::timeout(Duration::from_millis(10), pool.submit(input(1, 2.0))).await;
        assert!(gone.is_err());
        busy.await.unwrap().unwrap();
        pool.submit(input(1, 3.0)).await.unwrap();
    });
    assert_eq!(probe.calls.load(Ordering::SeqCst) - calls_before, 2, "the abandoned request ran");
    assert_eq!(pool.stats().cancelled, 1);
    assert_eq!(pool.pending(), 0);
}

#[test]
fn a_worker_that_panics_answers_500_and_keeps_serving() {
    let probe = scripted(Duration::ZERO);
    let pool = ModelPool::start("m", probe.model, PoolConfig::new(1)).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let e = pool.submit(input(1, -1.0)).await.unwrap_err();
        assert!(matches!(e, ServeError::WorkerPanicked { .. }) && e.http_status() == 500, "{e}");
        let out = pool.submit(input(1, 4.0)).await.unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[8.0, 8.0]);
    });
    assert_eq!(pool.stats().restarts, 1);
}

#[test]
fn bad_inputs_and_batches_are_refused_before_the_queue() {
    let probe = scripted(Duration::ZERO);
    let config = PoolConfig::new(1).with_batching(Batching::new(4, Duration::from_micros(100)));
    let pool = ModelPool::start("m", probe.model, config).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let e = pool.submit(input(5, 1.0)).await.unwrap_err();
        assert!(e.to_string().contains("at most max_batch_size = 4"), "{e}");
        let e = pool.submit(input(0, 1.0)).await.unwrap_err();
        assert!(e.to_string().contains("a batch of zero samples"), "{e}");
        let e = pool.submit(vec![Tensor::zeros(DType::I64, &[1, 2]).unwrap()]).await.unwrap_err();
        assert_eq!(e.http_status(), 400, "{e}");
    });
}

#[test]
fn shutdown_finishes_admitted_requests_then_refuses() {
    let probe = scripted(Duration::from_millis(50));
    let pool = ModelPool::start("m", probe.model, PoolConfig::new(1)).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let admitted: Vec<_> = (0..4)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.submit(input(1, i as f32)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let closer = pool.clone();
        let shutdown = tokio::task::spawn_blocking(move || closer.shutdown());
        tokio::time::sleep(Duration::from_millis(10)).await;
        let refused = pool.submit(input(1, 9.0)).await.unwrap_err();
        assert!(
            refused.to_string().contains("shutting down") && refused.http_status() == 503,
            "{refused}"
        );
        for a in admitted {
            a.await.unwrap().unwrap();
        }
        shutdown.await.unwrap();
    });
}

#[test]
fn batching_needs_a_batch_axis() {
    let model = common::zoo("mlp");
    let ok = PoolConfig::new(1).with_batching(Batching::new(4, Duration::ZERO));
    assert_eq!(ok.validate("mlp", &model).unwrap(), Some(0));
    let spec = |n: &str| TensorSpec::new(n, DType::F32, vec![Dim::Fixed(1), Dim::Fixed(2)]);
    let fixed = Model::new(
        "fixed",
        "scripted",
        Scripted {
            specs: vec![spec("x"), spec("y")],
            delay: Duration::ZERO,
            batches: Default::default(),
            calls: Default::default(),
        },
    );
    let e = ok.validate("fixed", &fixed).unwrap_err().to_string();
    assert!(e.contains("dynamic batch axis") && e.contains("x [1,2]"), "{e}");
}
