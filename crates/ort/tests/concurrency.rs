//! Per-thread predictors and one shared predictor, used by many threads, match a sequential run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::Options;
use thrum_testkit::{Predictors, assert_concurrent_runs_match_sequential};

#[test]
fn shared_and_per_thread_predictors_match_a_sequential_run() {
    thrum_testkit::require_engine!("ort");
    // One intra-op thread: ONNX Runtime's results are then deterministic run to run.
    let options = Options::default().with_intra_op_threads(1);
    let model = common::ort(&common::zoo_source("resnet18"), &options);
    assert_concurrent_runs_match_sequential(&model, Predictors::Shared);
    assert_concurrent_runs_match_sequential(&model, Predictors::PerThread);
}
