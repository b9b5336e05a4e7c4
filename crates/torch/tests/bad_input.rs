//! Bad input on the torch engine: each gets an error that names what was wrong, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{DType, Engine, Error, ModelSource, Options, Tensor};
use thrum_torch::TorchEngine;

fn load_err(source: &ModelSource, options: &Options) -> Error {
    match TorchEngine.load(source, options) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e,
    }
}

#[test]
fn a_file_that_is_not_torchscript_is_an_invalid_model_error() {
    thrum_testkit::require_engine!("torch");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.pt");
    std::fs::write(&path, b"not a zip archive").unwrap();
    let err = load_err(&ModelSource::path(&path), &Options::default());
    assert!(matches!(err, Error::InvalidModel { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage"), "{err}");
}

#[test]
fn an_onnx_file_is_refused_with_the_export_command() {
    thrum_testkit::require_engine!("torch");
    let err = load_err(&ModelSource::path("model.onnx"), &Options::default());
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err:?}");
    assert!(err.to_string().contains("thrum zoo export"), "{err}");
}

#[test]
fn a_model_without_input_specs_says_how_to_give_them() {
    thrum_testkit::require_engine!("torch");
    let dir = tempfile::tempdir().unwrap();
    let path = common::export("mlp", dir.path());
    std::fs::remove_file(thrum_torch::spec_path(&path)).unwrap();
    let err = load_err(&ModelSource::path(&path), &Options::default());
    let message = err.to_string();
    assert!(
        message.contains("torch.input_specs") && message.contains("mlp.spec.json"),
        "{message}"
    );
    // Given by option, the outputs are found by running the model once.
    let mut options = Options::default();
    options.set("torch.input_specs", "input:f32[N,64]").unwrap();
    let model = TorchEngine.load(&ModelSource::path(&path), &options).unwrap();
    assert_eq!(model.outputs()[0].shape_string(), "[N,10]");
}

#[test]
fn an_input_of_the_wrong_shape_is_an_inference_error_naming_the_model() {
    thrum_testkit::require_engine!("torch");
    let (_dir, model) = common::torch("mlp", &Options::default());
    let err = model
        .predictor()
        .unwrap()
        .predict(vec![Tensor::zeros(DType::F32, &[1, 3]).unwrap()])
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("mlp") && message.contains("[1, 3]"), "{message}");
}

#[test]
fn mkldnn_with_integer_inputs_is_refused_naming_the_input_and_dtype() {
    thrum_testkit::require_engine!("torch");
    let dir = tempfile::tempdir().unwrap();
    let path = common::export("transformer", dir.path());
    let err = load_err(&ModelSource::path(&path), &Options::default().with_onednn(true));
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("i64") && message.contains("f32 or bf16"), "{message}");
}
