//! What TensorFlow fixes once per process — the oneDNN switch (read when the library loads) and
//! the CPU thread pools (sized by the first session) — is set by the first model's options; a
//! later model asking for other values is refused with both named. One test, one process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use thrum_core::{Engine, ErrorKind, ModelSource, Options};
use thrum_tensorflow::{FROZEN_GRAPH, TensorflowEngine};

fn options(pairs: &[(&str, &str)]) -> Options {
    let mut o = Options::default();
    for (k, v) in pairs {
        o.set(k, v).unwrap();
    }
    o
}

#[test]
fn process_settings_are_the_first_models_and_others_are_refused() {
    thrum_testkit::require_engine!("tensorflow");
    let graph = thrum_zoo::find("mlp").unwrap().build(thrum_zoo::DEFAULT_SEED);
    let bytes = thrum_zoo::tensorflow::graph_def(&graph).unwrap();
    let source = ModelSource::memory("mlp", FROZEN_GRAPH, prost::Message::encode_to_vec(&bytes));
    let first = [("onednn", "false"), ("intra_op_threads", "1"), ("inter_op_threads", "1")];
    let model = TensorflowEngine.load(&source, &options(&first)).unwrap();
    let input = thrum_zoo::sample_inputs(model.inputs(), 1, 3).unwrap();
    model.predictor().unwrap().predict(input).unwrap();
    // The same settings again load.
    TensorflowEngine.load(&source, &options(&first)).unwrap();
    let onednn = TensorflowEngine
        .load(
            &source,
            &options(&[("onednn", "true"), ("intra_op_threads", "1"), ("inter_op_threads", "1")]),
        )
        .unwrap_err();
    assert_eq!(onednn.kind(), ErrorKind::Unsupported, "{onednn}");
    let text = onednn.to_string();
    assert!(text.contains("onednn=true") && text.contains("TF_ENABLE_ONEDNN_OPTS=0"), "{text}");
    let threads = TensorflowEngine
        .load(
            &source,
            &options(&[("onednn", "false"), ("intra_op_threads", "2"), ("inter_op_threads", "1")]),
        )
        .unwrap_err();
    let text = threads.to_string();
    assert!(
        text.contains("intra_op_threads=2")
            && text.contains("first model set intra_op_threads=1 and an inter-op pool"),
        "{text}"
    );
}
