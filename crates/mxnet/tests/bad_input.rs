//! Bad input on the MXNet engine: each gets an error that names what was wrong, never a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{Engine, Error, ModelSource, Options};
use thrum_mxnet::MxnetEngine;

fn load_err(path: &std::path::Path) -> Error {
    match MxnetEngine.load(&ModelSource::path(path), &Options::default()) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e,
    }
}

#[test]
fn corrupt_symbol_json_is_an_invalid_model_error() {
    thrum_testkit::require_engine!("mxnet");
    let dir = tempfile::tempdir().unwrap();
    let path = common::export("mlp", dir.path());
    std::fs::write(&path, "{\"nodes\": [ {\"op\": ").unwrap();
    let err = load_err(&path);
    assert!(matches!(err, Error::InvalidModel { .. }), "{err:?}");
    assert!(err.to_string().contains("not valid symbol JSON"), "{err}");
    std::fs::write(&path, r#"{"nodes": [{"op": "NoSuchOperator", "name": "x", "inputs": []}], "arg_nodes": [], "heads": [[0, 0, 0]]}"#).unwrap();
    let err = load_err(&path);
    assert!(err.to_string().contains("MXNet rejects the symbol"), "{err}");
}

#[test]
fn params_that_do_not_match_the_symbol_are_refused() {
    thrum_testkit::require_engine!("mxnet");
    let dir = tempfile::tempdir().unwrap();
    let mlp = common::export("mlp", dir.path());
    let resnet = common::export("resnet18", dir.path());
    // resnet18's graph with the mlp's parameters.
    std::fs::copy(thrum_mxnet::params_path(&mlp), thrum_mxnet::params_path(&resnet)).unwrap();
    let err = load_err(&resnet);
    assert!(matches!(err, Error::InvalidModel { .. }), "{err:?}");
    assert!(err.to_string().contains("do not match the symbol"), "{err}");
    // Same names, wrong shapes: MXNet's shape check, reported as a mismatch.
    let graph = thrum_zoo::find("mlp").unwrap().build(1);
    let mut wrong = graph.clone();
    for (_, t) in &mut wrong.weights {
        *t = thrum_core::Tensor::zeros(t.dtype(), &[t.len()]).unwrap();
    }
    thrum_zoo::mxnet::export(&wrong, &dir.path().join("flat-symbol.json")).unwrap();
    std::fs::copy(dir.path().join("flat-0000.params"), thrum_mxnet::params_path(&mlp)).unwrap();
    let err = load_err(&mlp);
    assert!(err.to_string().contains("do not match the symbol"), "{err}");
}

#[test]
fn missing_params_name_the_files_looked_for() {
    thrum_testkit::require_engine!("mxnet");
    let dir = tempfile::tempdir().unwrap();
    let path = common::export("mlp", dir.path());
    std::fs::remove_file(thrum_mxnet::params_path(&path)).unwrap();
    let err = load_err(&path);
    assert!(err.to_string().contains("mlp-0000.params"), "{err}");
}

#[test]
fn a_params_file_alone_is_refused_as_not_symbolic() {
    thrum_testkit::require_engine!("mxnet");
    let dir = tempfile::tempdir().unwrap();
    let path = common::export("mlp", dir.path());
    let err = load_err(&thrum_mxnet::params_path(&path));
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err:?}");
    assert!(err.to_string().contains("symbolic models only"), "{err}");
}

#[test]
fn sparse_input_on_the_thread_safe_predictor_is_refused() {
    thrum_testkit::require_engine!("mxnet");
    let dir = tempfile::tempdir().unwrap();
    let path = common::export("mlp", dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        "\"__dtype__\": \"0\"",
        "\"__dtype__\": \"0\", \"__storage_type__\": \"2\"",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let model = MxnetEngine.load(&ModelSource::path(&path), &Options::default()).unwrap();
    let err = match model.shared_predictor() {
        Ok(_) => panic!("sparse input refused"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(
        err.to_string().contains("sparse storage") && err.to_string().contains("dense arrays only"),
        "{err}"
    );
    // Per-thread predictors are not limited.
    model.predictor().unwrap();
}
