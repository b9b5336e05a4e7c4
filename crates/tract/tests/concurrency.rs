//! Per-thread and shared predictors give bit-identical results to a sequential run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::Options;
use thrum_testkit::{Predictors, assert_concurrent_runs_match_sequential, sample};

#[test]
fn per_thread_predictors_on_resnet18_match_a_sequential_run_bit_for_bit() {
    let model = common::load_zoo("resnet18", &Options::default());
    assert_concurrent_runs_match_sequential(&model, Predictors::PerThread);
}

#[test]
fn shared_predictor_used_by_many_threads_matches_a_sequential_run() {
    let model = common::load_zoo("transformer", &Options::default());
    assert_concurrent_runs_match_sequential(&model, Predictors::Shared);
}

#[test]
fn intra_op_thread_pool_gives_the_same_results_as_one_thread() {
    let one = common::load_zoo("resnet18", &Options::default());
    let two = common::load_zoo("resnet18", &Options::default().with_intra_op_threads(2));
    assert_eq!(two.threads().intra_op, Some(2));
    let x = sample(&one, 0);
    let a = one.predictor().unwrap().predict(x.clone()).unwrap();
    let b = two.predictor().unwrap().predict(x).unwrap();
    let (a, b) = (a[0].to_f64_vec().unwrap(), b[0].to_f64_vec().unwrap());
    let worst =
        a.iter().zip(&b).map(|(x, y)| (x - y).abs() / x.abs().max(1e-3)).fold(0.0, f64::max);
    assert!(worst <= 1e-5, "relative difference {worst}");
}
