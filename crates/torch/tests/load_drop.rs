//! Resource release is deterministic: loading and dropping a TorchScript model 200 times keeps
//! RSS flat (what DJL's `disable_close_resource_on_finalize` flag is about has no counterpart:
//! the module is freed when the last predictor and the model are dropped).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{Engine, ModelSource, Options};
use thrum_torch::TorchEngine;

#[test]
fn loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent() {
    thrum_testkit::require_engine!("torch");
    let dir = tempfile::tempdir().unwrap();
    let source = ModelSource::path(common::export("transformer", dir.path()));
    let input = {
        let model = TorchEngine.load(&source, &Options::default()).unwrap();
        thrum_zoo::sample_inputs(model.inputs(), 1, 3).unwrap()
    };
    thrum_testkit::assert_rss_flat_over_load_drop(
        "loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent",
        200,
        0.10,
        || {
            let model = TorchEngine.load(&source, &Options::default()).unwrap();
            model.predictor().unwrap().predict(input.clone()).unwrap();
        },
    );
}
