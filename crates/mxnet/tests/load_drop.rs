//! Resource release is deterministic: loading and dropping an MXNet model (symbol, parameters,
//! cached ops, a per-thread and a thread-safe predictor) 200 times keeps RSS flat. libmxnet
//! itself stays loaded for the process, and so do thrum's MXNet caller threads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{Engine, ModelSource};
use thrum_mxnet::MxnetEngine;

#[test]
fn loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent() {
    thrum_testkit::require_engine!("mxnet");
    let dir = tempfile::tempdir().unwrap();
    let source = ModelSource::path(common::export("mlp", dir.path()));
    let options = common::multithreaded();
    let input = {
        let model = MxnetEngine.load(&source, &options).unwrap();
        thrum_zoo::sample_inputs(model.inputs(), 1, 3).unwrap()
    };
    thrum_testkit::assert_rss_flat_over_load_drop(
        "loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent",
        200,
        0.10,
        || {
            let model = MxnetEngine.load(&source, &options).unwrap();
            model.predictor().unwrap().predict(input.clone()).unwrap();
            model.shared_predictor().unwrap().predict(input.clone()).unwrap();
        },
    );
}
