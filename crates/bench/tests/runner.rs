//! The runner against predictors with known behaviour: a fixed sleep schedule, failures and
//! panics at a chosen call.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thrum_bench::{BenchError, PredictorKind, RunPlan, Stop, measure, measure_with};
use thrum_core::{
    Batchifier, DType, Dim, Error, Identity, Model, ModelBackend, PredictorBackend, Result,
    SharedPredictorBackend, Tensor, TensorSpec, ThreadConfig,
};

/// What the scripted predictor does on call `i` (counted across all its predictors).
#[derive(Clone, Copy)]
enum Script {
    /// Sleep 5 ms ×60, 20 ms ×35, 50 ms ×4, 100 ms ×1, repeating every 100 calls: sorted, the
    /// 50th value is 5 ms, the 90th 20 ms, the 99th 50 ms and the 100th 100 ms, each inside a
    /// plateau so that sleep overshoot does not move a percentile to the next plateau.
    Schedule,
    /// Fail on this call.
    FailAt(usize),
    /// Panic on this call.
    PanicAt(usize),
}

struct Scripted {
    script: Script,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Vec<f32>>>>,
    specs: Vec<TensorSpec>,
}

struct ScriptedPredictor {
    script: Script,
    calls: Arc<AtomicUsize>,
    /// Each call's first input's first column: which items it was given.
    seen: Arc<Mutex<Vec<Vec<f32>>>>,
}

impl ScriptedPredictor {
    fn call(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let i = self.calls.fetch_add(1, Ordering::SeqCst);
        let first = inputs[0].as_slice::<f32>()?.iter().step_by(4).copied().collect();
        self.seen.lock().unwrap().push(first);
        match self.script {
            Script::Schedule => {
                let ms = match i % 100 {
                    0..60 => 5,
                    60..95 => 20,
                    95..99 => 50,
                    _ => 100,
                };
                std::thread::sleep(Duration::from_millis(ms));
            }
            Script::FailAt(n) if i == n => {
                return Err(Error::inference(
                    "scripted",
                    "m",
                    format!("call {i} failed on purpose"),
                ));
            }
            Script::PanicAt(n) if i == n => panic!("call {i} panicked on purpose"),
            _ => {}
        }
        Ok(inputs)
    }
}

impl PredictorBackend for ScriptedPredictor {
    fn predict(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.call(inputs)
    }
}

impl SharedPredictorBackend for ScriptedPredictor {
    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.call(inputs)
    }
}

impl ModelBackend for Scripted {
    fn inputs(&self) -> &[TensorSpec] {
        &self.specs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.specs
    }
    fn predictor(&self) -> Result<Box<dyn PredictorBackend>> {
        Ok(Box::new(self.predictor_backend()))
    }
    fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
        Ok(Box::new(self.predictor_backend()))
    }
    fn threads(&self) -> ThreadConfig {
        ThreadConfig::new(Some(1), Some(1))
    }
}

impl Scripted {
    fn predictor_backend(&self) -> ScriptedPredictor {
        ScriptedPredictor {
            script: self.script,
            calls: self.calls.clone(),
            seen: self.seen.clone(),
        }
    }
}

fn model(script: Script) -> (Model, Vec<Tensor>) {
    let (model, _) = model_seeing(script);
    (model, vec![Tensor::zeros(DType::F32, &[1, 4]).unwrap()])
}

/// The scripted model, and what its calls were given.
fn model_seeing(script: Script) -> (Model, Arc<Mutex<Vec<Vec<f32>>>>) {
    let specs = vec![TensorSpec::new("x", DType::F32, vec![Dim::named("N"), Dim::Fixed(4)])];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let backend =
        Scripted { script, calls: Arc::new(AtomicUsize::new(0)), seen: seen.clone(), specs };
    (Model::new("scripted", "scripted", backend), seen)
}

fn plan(workers: usize, iterations: u64, predictor: PredictorKind) -> RunPlan {
    RunPlan {
        workers,
        stop: Stop::new(Some(iterations), None),
        warmup: 0,
        delay: Duration::ZERO,
        predictor,
        progress: false,
    }
}

#[test]
fn percentiles_match_a_fixed_sleep_schedule() {
    let (model, inputs) = model(Script::Schedule);
    // The first (unmeasured) call takes schedule slot 0; the 100 measured calls are one full
    // cycle of the schedule.
    let m = measure(&model, &inputs, 1, &plan(1, 100, PredictorKind::PerThread), 1).unwrap();
    let t = m.latency.total;
    assert_eq!((m.calls, t.count), (100, 100));
    // A sleep never ends early; it may end late on a busy (shared CI) machine: the upper bound
    // is loose, yet tight enough to tell the schedule's steps (5, 20, 50, 100 ms) apart.
    let within = |got: f64, want: f64| got >= want && got <= want * 1.5 + 5.0;
    assert!(within(t.p50_ms, 5.0), "P50 {t:?}");
    assert!(within(t.p90_ms, 20.0), "P90 {t:?}");
    assert!(within(t.p99_ms, 50.0), "P99 {t:?}");
    assert!(within(t.p999_ms, 100.0) && within(t.max_ms, 100.0), "P99.9/max {t:?}");
    assert!(within(t.min_ms, 5.0), "min {t:?}");
    assert!(within(t.mean_ms, 13.0), "mean {t:?}");
    // The engine's stage is the sleep; the rest is thrum's bookkeeping.
    assert!(within(m.latency.inference.p50_ms, 5.0), "{:?}", m.latency.inference);
    assert!(m.latency.preprocess.p99_ms < 1.0, "{:?}", m.latency.preprocess);
    assert!(m.wall_s >= 1.3 && m.wall_s < 1.3 * 1.5 + 0.1, "wall {}", m.wall_s);
}

#[test]
fn every_worker_counts_toward_one_iteration_budget() {
    for mode in [PredictorKind::PerThread, PredictorKind::Shared] {
        let (model, inputs) = model(Script::FailAt(usize::MAX));
        let m = measure(&model, &inputs, 3, &plan(4, 50, mode), 4).unwrap();
        assert_eq!(m.calls, 50, "{mode}");
        assert_eq!(m.samples, 150, "{mode}");
        assert!(m.first_inference.is_some());
    }
}

#[test]
fn duration_stops_the_run() {
    let (model, inputs) = model(Script::Schedule);
    let plan = RunPlan {
        stop: Stop::new(None, Some(Duration::from_millis(300))),
        ..plan(2, 1, PredictorKind::PerThread)
    };
    let m = measure(&model, &inputs, 1, &plan, 2).unwrap();
    // It stops at 300 ms, after the calls in flight (at most 100 ms each) end.
    assert!(m.wall_s >= 0.3 && m.wall_s < 0.8, "wall {}", m.wall_s);
    assert!(m.calls > 20, "calls {}", m.calls);
}

#[test]
fn the_first_error_stops_the_run_and_names_its_cause() {
    let (model, inputs) = model(Script::FailAt(30));
    let err = measure(&model, &inputs, 1, &plan(2, 1000, PredictorKind::PerThread), 2).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BenchError::Worker { phase: "measurement", .. }), "{err:?}");
    assert!(text.contains("call 30 failed on purpose"), "{text}");
    assert!(!err.kind().is_caller_error(), "an engine failure is not the user's");
}

#[test]
fn an_error_during_setup_is_reported_with_its_phase() {
    let (model, inputs) = model(Script::FailAt(0));
    let err = measure(&model, &inputs, 1, &plan(3, 100, PredictorKind::PerThread), 2).unwrap_err();
    assert!(err.to_string().contains("during first inference"), "{err}");
}

#[test]
fn a_panicking_engine_becomes_an_error_not_a_hang() {
    let (model, inputs) = model(Script::PanicAt(10));
    let err = measure(&model, &inputs, 1, &plan(2, 100, PredictorKind::Shared), 2).unwrap_err();
    assert!(err.to_string().contains("panicked: call 10 panicked on purpose"), "{err}");
}

#[test]
fn invalid_plans_are_refused() {
    let (model, inputs) = model(Script::Schedule);
    let zero_workers = RunPlan { workers: 0, ..plan(1, 1, PredictorKind::PerThread) };
    assert!(
        measure(&model, &inputs, 1, &zero_workers, 1)
            .unwrap_err()
            .to_string()
            .contains("worker count 0")
    );
    let zero_calls = plan(1, 0, PredictorKind::PerThread);
    assert!(
        measure(&model, &inputs, 1, &zero_calls, 1)
            .unwrap_err()
            .to_string()
            .contains("iteration count 0")
    );
}

/// A workload of items (a text file's lines, a directory's images) is measured whole: each
/// call takes the next batch, wrapping around, not the first batch over and over.
#[test]
fn each_call_takes_the_next_items_in_turn() {
    let (model, seen) = model_seeing(Script::FailAt(usize::MAX));
    let items: Vec<Vec<Tensor>> =
        (0..5).map(|i| vec![Tensor::from_vec(vec![4], vec![i as f32; 4]).unwrap()]).collect();
    let translator = Identity::with_batchifier(Batchifier::Stack);
    let m =
        measure_with(&model, &translator, &items, 2, 2, &plan(1, 4, PredictorKind::PerThread), 1)
            .unwrap();
    assert_eq!(m.calls, 4);
    // The first (unmeasured) call, then the four measured ones: 2 items each, in turn.
    let calls = seen.lock().unwrap().clone();
    assert_eq!(
        calls,
        [vec![0.0, 1.0], vec![2.0, 3.0], vec![4.0, 0.0], vec![1.0, 2.0], vec![3.0, 4.0]],
        "{calls:?}"
    );
}
