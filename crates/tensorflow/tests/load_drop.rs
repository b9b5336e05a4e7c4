//! Resource release is deterministic: loading and dropping a TensorFlow model (graph, session,
//! a per-thread and a shared predictor) 200 times keeps RSS flat. The library itself stays
//! loaded for the process, with its thread pools.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use thrum_core::{Engine, ModelSource, Options};
use thrum_tensorflow::{FROZEN_GRAPH, TensorflowEngine};

#[test]
fn loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent() {
    thrum_testkit::require_engine!("tensorflow");
    let graph = thrum_zoo::find("mlp").unwrap().build(thrum_zoo::DEFAULT_SEED);
    let bytes = prost::Message::encode_to_vec(&thrum_zoo::tensorflow::graph_def(&graph).unwrap());
    let source = ModelSource::memory("mlp", FROZEN_GRAPH, bytes);
    let options = Options::default();
    let input = {
        let model = TensorflowEngine.load(&source, &options).unwrap();
        thrum_zoo::sample_inputs(model.inputs(), 1, 3).unwrap()
    };
    thrum_testkit::assert_rss_flat_over_load_drop(
        "loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent",
        200,
        0.10,
        || {
            let model = TensorflowEngine.load(&source, &options).unwrap();
            model.predictor().unwrap().predict(input.clone()).unwrap();
            model.shared_predictor().unwrap().predict(input.clone()).unwrap();
        },
    );
}
