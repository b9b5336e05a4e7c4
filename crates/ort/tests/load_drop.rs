//! Resource release is deterministic: loading and dropping an ONNX Runtime session 200 times
//! keeps RSS flat. The library itself stays loaded for the process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::Options;

#[test]
fn loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent() {
    thrum_testkit::require_engine!("ort");
    let source = common::zoo_source("transformer");
    let input = {
        let model = common::ort(&source, &Options::default());
        thrum_zoo::sample_inputs(model.inputs(), 1, 3).unwrap()
    };
    thrum_testkit::assert_rss_flat_over_load_drop(
        "loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent",
        200,
        0.10,
        || {
            let model = common::ort(&source, &Options::default());
            model.predictor().unwrap().predict(input.clone()).unwrap();
        },
    );
}
