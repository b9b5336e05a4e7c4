//! Models, options and inputs ONNX Runtime cannot take get named errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use prost::Message;
use thrum_core::{DType, Engine, Error, ErrorKind, ModelFormat, ModelSource, Options, Tensor};
use thrum_ort::OrtEngine;
use tract_onnx::pb;

fn load_err(source: &ModelSource, options: &Options) -> Error {
    OrtEngine.load(source, options).unwrap_err()
}

#[test]
fn an_operator_onnx_runtime_rejects_is_named() {
    thrum_testkit::require_engine!("ort");
    let mut proto = pb::ModelProto::decode(
        &thrum_zoo::onnx::export(&thrum_zoo::find("mlp").unwrap().build(1))[..],
    )
    .unwrap();
    proto.graph.as_mut().unwrap().node[1].op_type = "ThrumBogusOp".into();
    let err = load_err(
        &ModelSource::memory("bogus", ModelFormat::ONNX, proto.encode_to_vec()),
        &Options::default(),
    );
    // The kind comes from ONNX Runtime's error code, the operator's name from its message.
    assert!(err.native_code().is_some(), "{err:?}");
    assert!(
        matches!(err.kind(), ErrorKind::InvalidModel | ErrorKind::Unsupported),
        "{:?}: {err}",
        err.kind()
    );
    assert!(err.to_string().contains("ThrumBogusOp"), "{err}");
}

#[test]
fn a_truncated_model_is_an_invalid_model() {
    thrum_testkit::require_engine!("ort");
    let bytes = thrum_zoo::onnx::export(&thrum_zoo::find("mlp").unwrap().build(1));
    let err = load_err(
        &ModelSource::memory("cut", ModelFormat::ONNX, bytes[..bytes.len() / 3].to_vec()),
        &Options::default(),
    );
    assert!(matches!(err, Error::InvalidModel { engine: "ort", .. }), "{err:?}");
}

#[test]
fn a_provider_the_library_lacks_lists_the_providers_it_has() {
    thrum_testkit::require_engine!("ort");
    let mut options = Options::default();
    options.set("ort.execution_providers", "cuda,cpu").unwrap();
    let err = load_err(&common::zoo_source("mlp"), &options).to_string();
    assert!(
        err.contains("has no CUDAExecutionProvider") && err.contains("CPUExecutionProvider (cpu)"),
        "{err}"
    );
}

#[test]
fn an_unknown_provider_is_refused_with_the_known_ones() {
    thrum_testkit::require_engine!("ort");
    let err = Options::default().set("ort.execution_providers", "tpu").unwrap_err().to_string();
    assert!(err.contains("`tpu`") && err.contains("cpu, cuda, dnnl, openvino"), "{err}");
}

#[test]
fn onednn_says_the_pypi_build_has_no_dnnl_provider() {
    thrum_testkit::require_engine!("ort");
    let err =
        load_err(&common::zoo_source("mlp"), &Options::default().with_onednn(true)).to_string();
    assert!(err.starts_with("engine `ort` does not support oneDNN"), "{err}");
    assert!(
        err.contains("the PyPI onnxruntime build ships without it")
            && err.contains("its providers:"),
        "{err}"
    );
}

#[test]
fn thread_counts_out_of_range_are_refused() {
    thrum_testkit::require_engine!("ort");
    for bad in [0, 4096] {
        let err =
            load_err(&common::zoo_source("mlp"), &Options::default().with_intra_op_threads(bad))
                .to_string();
        assert!(err.contains("intra_op_threads") && err.contains("from 1 to 1024"), "{err}");
    }
    let err = Options::default().set("inter_op_threads", "-2").unwrap_err().to_string();
    assert!(err.contains("`-2`"), "{err}");
}

#[test]
fn wrong_inputs_are_caught_before_onnx_runtime_sees_them() {
    thrum_testkit::require_engine!("ort");
    let model = common::ort(&common::zoo_source("mlp"), &Options::default());
    let err = model
        .predictor()
        .unwrap()
        .predict(vec![Tensor::zeros(DType::F64, &[1, 64]).unwrap()])
        .unwrap_err();
    assert!(matches!(err, Error::WrongDType { .. }), "{err:?}");
}

#[test]
fn a_nonexistent_explicit_library_path_is_an_error_not_a_fallback() {
    let mut options = Options::default();
    options.set("ort.library_path", "/nonexistent/libonnxruntime.so").unwrap();
    let err = thrum_ort::library::find(
        thrum_ort::OrtOptions::from_options(&options).unwrap().library_path.as_deref(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "option ort.library_path names `/nonexistent/libonnxruntime.so`, which is not a file"
        ),
        "{err}"
    );
    assert!(err.contains("thrum engines install ort"), "{err}");
}
