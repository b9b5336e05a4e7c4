//! Per-thread predictors and one shared predictor, used by many threads, match a sequential run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{Options, Tensor};

const THREADS: usize = 4;
const PER_THREAD: usize = 5;

fn input(model: &thrum_core::Model, i: usize) -> Vec<Tensor> {
    thrum_zoo::sample_inputs(model.inputs(), 1, 500 + i as u64)
}

#[test]
fn shared_and_per_thread_predictors_match_a_sequential_run() {
    // One intra-op thread: ONNX Runtime's results are then deterministic run to run.
    let options = Options::default().with_intra_op_threads(1);
    let model = common::ort(&common::zoo_source("resnet18"), &options);
    let mut sequential = model.predictor().unwrap();
    let expected: Vec<Vec<Tensor>> =
        (0..THREADS * PER_THREAD).map(|i| sequential.predict(input(&model, i)).unwrap()).collect();

    let shared = model.shared_predictor().unwrap();
    for shared_mode in [true, false] {
        let got: Vec<(usize, Vec<Tensor>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (model, shared) = (&model, &shared);
                    s.spawn(move || {
                        let mut own = model.predictor().unwrap();
                        (0..PER_THREAD)
                            .map(|k| {
                                let i = t * PER_THREAD + k;
                                let out = if shared_mode {
                                    shared.predict(input(model, i))
                                } else {
                                    own.predict(input(model, i))
                                };
                                (i, out.unwrap())
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(got.len(), THREADS * PER_THREAD);
        for (i, outputs) in got {
            assert!(outputs[0].bit_eq(&expected[i][0]), "call {i} differs (shared: {shared_mode})");
        }
    }
}
