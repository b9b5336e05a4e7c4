//! Every kind of bad input gets a named error, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use prost::Message;
use thrum_core::{DType, Engine, Error, Model, ModelFormat, ModelSource, Options, Tensor};
use thrum_tract::TractEngine;
use tract_onnx::pb;

fn mlp() -> Model {
    common::load_zoo("mlp", &Options::default())
}

fn load_bytes(name: &str, bytes: &[u8]) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    TractEngine.load(&ModelSource::path(&path), &Options::default()).unwrap_err()
}

fn predict_err(inputs: Vec<Tensor>) -> Error {
    mlp().predictor().unwrap().predict(inputs).unwrap_err()
}

#[test]
fn wrong_dtype_is_named() {
    let err = predict_err(vec![Tensor::zeros(DType::I64, &[1, 64]).unwrap()]);
    assert!(matches!(err, Error::WrongDType { .. }), "{err:?}");
    assert_eq!(err.to_string(), "model `mlp`: input `input` expects dtype f32, got i64");
}

#[test]
fn wrong_rank_is_named() {
    let err = predict_err(vec![Tensor::zeros(DType::F32, &[64]).unwrap()]);
    assert!(matches!(err, Error::WrongRank { .. }), "{err:?}");
    assert!(err.to_string().contains("expects rank 2 (shape [N,64]), got rank 1"), "{err}");
}

#[test]
fn wrong_dimension_is_named() {
    let err = predict_err(vec![Tensor::zeros(DType::F32, &[1, 63]).unwrap()]);
    assert!(
        matches!(err, Error::WrongDimension { axis: 1, expected_dim: 64, found_dim: 63, .. }),
        "{err:?}"
    );
}

#[test]
fn wrong_element_count_for_the_shape_is_named() {
    let err = Tensor::from_vec(vec![1, 64], vec![0.0f32; 60]).unwrap_err();
    assert_eq!(err.to_string(), "shape [1, 64] holds 64 elements, but 60 were given");
}

#[test]
fn unknown_and_missing_input_names_are_named() {
    let model = mlp();
    let err = model
        .order_named_inputs(vec![("pixels".into(), Tensor::zeros(DType::F32, &[1, 64]).unwrap())])
        .unwrap_err();
    assert_eq!(err.to_string(), "model `mlp` has no input named `pixels`; its inputs are: `input`");
    let err = model.order_named_inputs(vec![]).unwrap_err();
    assert!(
        matches!(err, Error::MissingInput { .. }) && err.to_string().contains("`input` is missing"),
        "{err}"
    );
    let err = predict_err(vec![]);
    assert!(matches!(err, Error::InputCount { expected: 1, found: 0, .. }), "{err:?}");
}

#[test]
fn a_batch_of_zero_samples_is_an_empty_tensor_and_zero_items_an_error() {
    let out =
        mlp().predictor().unwrap().predict(vec![Tensor::zeros(DType::F32, &[0, 64]).unwrap()]);
    assert_eq!(out.unwrap()[0].shape(), &[0, 10]);
    let err = mlp().predictor().unwrap().batch_predict(vec![]).unwrap_err();
    assert!(err.to_string().contains("batch of zero inputs"), "{err}");
}

#[test]
fn empty_model_file_is_named() {
    let err = load_bytes("empty.onnx", b"");
    assert!(matches!(err, Error::EmptyModel { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.onnx") && err.to_string().contains("0 bytes"), "{err}");
}

#[test]
fn truncated_model_is_an_invalid_model_error() {
    let bytes = common::zoo_onnx("mlp");
    let err = load_bytes("truncated.onnx", &bytes[..bytes.len() / 2]);
    assert!(matches!(err, Error::InvalidModel { engine: "tract", .. }), "{err:?}");
    assert!(err.to_string().starts_with("engine `tract` cannot load model `truncated`"), "{err}");
}

#[test]
fn random_bytes_are_an_invalid_model_error() {
    let noise: Vec<u8> =
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let err = load_bytes("noise.onnx", &noise);
    assert!(matches!(err, Error::InvalidModel { .. }), "{err:?}");
}

#[test]
fn nonexistent_path_is_named() {
    let err = TractEngine
        .load(&ModelSource::path("/nonexistent/model.onnx"), &Options::default())
        .unwrap_err();
    assert_eq!(err.to_string(), "model file `/nonexistent/model.onnx` does not exist");
}

#[test]
fn directory_as_path_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::create_dir(&path).unwrap();
    let err = TractEngine.load(&ModelSource::path(&path), &Options::default()).unwrap_err();
    assert!(matches!(err, Error::ModelIsDirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("is a directory; expected an ONNX model"), "{err}");
}

#[test]
fn unsupported_operator_is_named() {
    let mut proto = pb::ModelProto::decode(&common::zoo_onnx("mlp")[..]).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    graph.node[1].op_type = "ThrumBogusOp".into();
    let source = ModelSource::memory("bogus", ModelFormat::ONNX, proto.encode_to_vec());
    let err = TractEngine.load(&source, &Options::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "model `bogus` uses operator `ThrumBogusOp`, which engine `tract` does not support"
    );
}

#[test]
fn inter_op_threads_above_one_is_refused_with_the_reason() {
    let source = ModelSource::memory("mlp", ModelFormat::ONNX, common::zoo_onnx("mlp"));
    let err = TractEngine.load(&source, &Options::default().with_inter_op_threads(2)).unwrap_err();
    assert!(matches!(err, Error::Unsupported { engine: "tract", .. }), "{err:?}");
    assert!(err.to_string().contains("one after another"), "{err}");
}
