//! Resource release is deterministic: loading and dropping a model 200 times keeps RSS flat
//! (the loop runs in a child process with glibc's mmap threshold pinned: see
//! `thrum_testkit::assert_rss_flat_over_load_drop`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{Engine, ModelFormat, ModelSource, Options};
use thrum_tract::TractEngine;

#[test]
fn loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent() {
    let source =
        ModelSource::memory("transformer", ModelFormat::ONNX, common::zoo_onnx("transformer"));
    let input = {
        let model = TractEngine.load(&source, &Options::default()).unwrap();
        thrum_zoo::sample_inputs(model.inputs(), 1, 3).unwrap()
    };
    thrum_testkit::assert_rss_flat_over_load_drop(
        "loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent",
        200,
        0.10,
        || {
            let model = TractEngine.load(&source, &Options::default()).unwrap();
            model.predictor().unwrap().predict(input.clone()).unwrap();
        },
    );
}
