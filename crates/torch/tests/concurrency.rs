//! Per-thread predictors and the shared predictor, used from many threads at once, give the
//! same outputs as a sequential run (libtorch runs one module concurrently).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::Options;
use thrum_testkit::{Predictors, assert_concurrent_runs_match_sequential};

/// Intra-op 1: with one thread per call, libtorch's kernels reduce in a fixed order, so
/// results are bit-identical whichever thread runs them.
fn options() -> Options {
    Options::default().with_intra_op_threads(1)
}

#[test]
fn per_thread_predictors_on_resnet18_match_a_sequential_run_bit_for_bit() {
    thrum_testkit::require_engine!("torch");
    let (_dir, model) = common::torch("resnet18", &options());
    assert_concurrent_runs_match_sequential(&model, Predictors::PerThread);
}

#[test]
fn shared_predictor_used_by_many_threads_matches_a_sequential_run() {
    thrum_testkit::require_engine!("torch");
    let (_dir, model) = common::torch("transformer", &options());
    assert_concurrent_runs_match_sequential(&model, Predictors::Shared);
}
