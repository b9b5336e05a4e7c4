//! N threads on per-thread predictors and N threads on the thread-safe predictor give the same
//! outputs as a sequential run. Runs with the seed's recipe (NaiveEngine, one OpenMP thread).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{Model, Tensor};

const THREADS: usize = 4;
const PER_THREAD: usize = 3;

fn inputs(model: &Model, i: usize) -> Vec<Tensor> {
    thrum_zoo::sample_inputs(model.inputs(), 1, 1000 + i as u64)
}

fn sequential(model: &Model) -> Vec<Vec<Tensor>> {
    let mut predictor = model.predictor().unwrap();
    (0..THREADS * PER_THREAD).map(|i| predictor.predict(inputs(model, i)).unwrap()).collect()
}

fn assert_identical(expected: &[Vec<Tensor>], got: &[(usize, Vec<Tensor>)]) {
    assert_eq!(got.len(), expected.len());
    for (i, outputs) in got {
        for (a, b) in expected[*i].iter().zip(outputs) {
            assert!(a.bit_eq(b), "prediction {i} differs from the sequential run");
        }
    }
}

#[test]
fn per_thread_and_thread_safe_predictors_match_a_sequential_run() {
    let (_dir, model) = common::mxnet("resnet18", &common::multithreaded());
    let expected = sequential(&model);
    let per_thread: Vec<(usize, Vec<Tensor>)> = std::thread::scope(|s| {
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
    assert_identical(&expected, &per_thread);

    let shared = model.shared_predictor().unwrap();
    let thread_safe: Vec<(usize, Vec<Tensor>)> = std::thread::scope(|s| {
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
    assert_identical(&expected, &thread_safe);
}
