//! N threads on per-thread predictors and N threads on the shared predictor (all on the
//! model's one session) give the same outputs as a sequential run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use thrum_core::{Engine, ModelSource, Options};
use thrum_tensorflow::{FROZEN_GRAPH, TensorflowEngine};
use thrum_testkit::{Predictors, assert_concurrent_runs_match_sequential};

#[test]
fn per_thread_and_shared_predictors_match_a_sequential_run() {
    thrum_testkit::require_engine!("tensorflow");
    let graph = thrum_zoo::find("resnet18").unwrap().build(thrum_zoo::DEFAULT_SEED);
    let bytes = prost::Message::encode_to_vec(&thrum_zoo::tensorflow::graph_def(&graph).unwrap());
    let model = TensorflowEngine
        .load(&ModelSource::memory("resnet18", FROZEN_GRAPH, bytes), &Options::default())
        .unwrap();
    assert_concurrent_runs_match_sequential(&model, Predictors::PerThread);
    assert_concurrent_runs_match_sequential(&model, Predictors::Shared);
}
