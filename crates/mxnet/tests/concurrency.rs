//! N threads on per-thread predictors and N threads on the thread-safe predictor give the same
//! outputs as a sequential run. Runs with the seed's recipe (NaiveEngine, one OpenMP thread).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_testkit::{Predictors, assert_concurrent_runs_match_sequential};

#[test]
fn per_thread_and_thread_safe_predictors_match_a_sequential_run() {
    thrum_testkit::require_engine!("mxnet");
    let (_dir, model) = common::mxnet("resnet18", &common::multithreaded());
    assert_concurrent_runs_match_sequential(&model, Predictors::PerThread);
    assert_concurrent_runs_match_sequential(&model, Predictors::Shared);
}
