//! Per-thread predictors and the shared predictor, used from many threads at once, give the
//! same outputs as a sequential run (libtorch runs one module concurrently).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{Model, Options, Tensor};

const THREADS: usize = 4;
const PER_THREAD: usize = 3;

fn inputs(model: &Model, i: usize) -> Vec<Tensor> {
    thrum_zoo::sample_inputs(model.inputs(), 1, 1000 + i as u64)
}

fn sequential(model: &Model) -> Vec<Vec<Tensor>> {
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

/// Intra-op 1: with one thread per call, libtorch's kernels reduce in a fixed order, so
/// results are bit-identical whichever thread runs them.
fn options() -> Options {
    Options::default().with_intra_op_threads(1)
}

#[test]
fn per_thread_predictors_on_resnet18_match_a_sequential_run_bit_for_bit() {
    let (_dir, model) = common::torch("resnet18", &options());
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
    let (_dir, model) = common::torch("transformer", &options());
    let expected = sequential(&model);
    let shared = model.shared_predictor().unwrap();
    let got: Vec<(usize, Vec<Tensor>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (model, shared) = (&model, &shared);
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
