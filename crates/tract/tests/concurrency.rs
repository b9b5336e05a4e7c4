//! Per-thread and shared predictors give bit-identical results to a sequential run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{Options, Tensor};

const THREADS: usize = 4;
const PER_THREAD: usize = 3;

fn inputs(model: &thrum_core::Model, i: usize) -> Vec<Tensor> {
    thrum_zoo::sample_inputs(model.inputs(), 1, 1000 + i as u64)
}

fn sequential(model: &thrum_core::Model) -> Vec<Vec<Tensor>> {
    let mut predictor = model.predictor().unwrap();
    (0..THREADS * PER_THREAD).map(|i| predictor.predict(inputs(model, i)).unwrap()).collect()
}

fn assert_bit_identical(expected: &[Vec<Tensor>], got: &[(usize, Vec<Tensor>)]) {
    assert_eq!(got.len(), expected.len());
    for (i, outputs) in got {
        for (a, b) in expected[*i].iter().zip(outputs) {
            assert!(a.bit_eq(b), "prediction {i} differs from the sequential run");
        }
    }
}

#[test]
fn per_thread_predictors_on_resnet18_match_a_sequential_run_bit_for_bit() {
    let model = common::load_zoo("resnet18", &Options::default());
    let expected = sequential(&model);
    let got: Vec<(usize, Vec<Tensor>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let model = &model;
                s.spawn(move || {
                    let mut predictor = model.predictor().unwrap();
                    (0..PER_THREAD)
                        .map(|k| {
                            let i = t * PER_THREAD + k;
                            (i, predictor.predict(inputs(model, i)).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_bit_identical(&expected, &got);
}

#[test]
fn shared_predictor_used_by_many_threads_matches_a_sequential_run() {
    let model = common::load_zoo("transformer", &Options::default());
    let expected = sequential(&model);
    let shared = model.shared_predictor().unwrap();
    let got: Vec<(usize, Vec<Tensor>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (shared, model) = (&shared, &model);
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|k| {
                            let i = t * PER_THREAD + k;
                            (i, shared.predict(inputs(model, i)).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_bit_identical(&expected, &got);
}

#[test]
fn intra_op_thread_pool_gives_the_same_results_as_one_thread() {
    let one = common::load_zoo("resnet18", &Options::default());
    let two = common::load_zoo("resnet18", &Options::default().with_intra_op_threads(2));
    assert_eq!(two.threads().intra_op, Some(2));
    let x = inputs(&one, 0);
    let a = one.predictor().unwrap().predict(x.clone()).unwrap();
    let b = two.predictor().unwrap().predict(x).unwrap();
    let (a, b) = (a[0].to_f64_vec().unwrap(), b[0].to_f64_vec().unwrap());
    let worst =
        a.iter().zip(&b).map(|(x, y)| (x - y).abs() / x.abs().max(1e-3)).fold(0.0, f64::max);
    assert!(worst <= 1e-5, "relative difference {worst}");
}
