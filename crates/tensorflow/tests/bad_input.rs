//! Bad input on the TensorFlow engine: each gets an error that names what was wrong, never a
//! crash. SavedModels here are written with thrum's own protobuf messages (the signature checks
//! run before TensorFlow reads the files); the ones TensorFlow writes itself are in the CLI's
//! tests (crates/cli/tests/tensorflow.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::collections::HashMap;

use prost::Message;
use thrum_core::{DType, Engine, Error, ErrorKind, ModelSource, Options, Tensor};
use thrum_tensorflow::proto::{MetaGraphDef, MetaInfoDef, SavedModel, SignatureDef, TensorInfo};
use thrum_tensorflow::{FROZEN_GRAPH, TensorflowEngine};

fn load_err(source: &ModelSource, options: &Options) -> Error {
    match TensorflowEngine.load(source, options) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e,
    }
}

/// A SavedModel directory whose one meta graph (tags `serve`) has a `serving_default`
/// signature with input `x` of TensorFlow dtype `dtype`.
fn saved_model(dtype: i32) -> tempfile::TempDir {
    let info = TensorInfo { name: "x:0".into(), dtype, ..Default::default() };
    let signature = SignatureDef {
        inputs: HashMap::from([("x".to_string(), info.clone())]),
        outputs: HashMap::from([("y".to_string(), TensorInfo { name: "y:0".into(), ..info })]),
        method_name: "tensorflow/serving/predict".into(),
    };
    let saved = SavedModel {
        saved_model_schema_version: 1,
        meta_graphs: vec![MetaGraphDef {
            meta_info_def: Some(MetaInfoDef {
                tags: vec!["serve".into()],
                tensorflow_version: "2.21.0".into(),
            }),
            signature_def: HashMap::from([("serving_default".to_string(), signature)]),
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("saved_model.pb"), saved.encode_to_vec()).unwrap();
    dir
}

#[test]
fn a_dtype_tensorflow_has_and_thrum_has_not_is_named() {
    let dir = saved_model(8); // DT_COMPLEX64
    let e = load_err(&ModelSource::path(dir.path()), &Options::default());
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("input `x` of dtype DT_COMPLEX64"), "{e}");
}

#[test]
fn unknown_tags_and_signatures_list_the_available_ones() {
    let dir = saved_model(1);
    let mut options = Options::default();
    options.set("tensorflow.tags", "serve,gpu").unwrap();
    let e = load_err(&ModelSource::path(dir.path()), &options).to_string();
    assert!(
        e.contains("`serve,gpu`")
            && e.contains("a tag set of the SavedModel")
            && e.contains("`serve`"),
        "{e}"
    );
    let mut options = Options::default();
    options.set("tensorflow.signature", "classify").unwrap();
    let e = load_err(&ModelSource::path(dir.path()), &options).to_string();
    assert!(e.contains("`classify`") && e.contains("`serving_default`"), "{e}");
}

#[test]
fn a_text_savedmodel_and_an_empty_directory_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_err(&ModelSource::path(dir.path()), &Options::default());
    assert_eq!(e.kind(), ErrorKind::InvalidModel, "{e}");
    assert!(e.to_string().contains("has no saved_model.pb"), "{e}");
    std::fs::write(dir.path().join("saved_model.pbtxt"), "meta_graphs {}").unwrap();
    let e = load_err(&ModelSource::path(dir.path()), &Options::default());
    assert!(e.to_string().contains("saved_model.pbtxt, a text SavedModel"), "{e}");
}

#[test]
fn a_frozen_graph_in_memory_runs_and_wrong_inputs_are_named() {
    thrum_testkit::require_engine!("tensorflow");
    let graph = thrum_zoo::find("mlp").unwrap().build(thrum_zoo::DEFAULT_SEED);
    let bytes = thrum_zoo::tensorflow::graph_def(&graph).unwrap().encode_to_vec();
    let model = TensorflowEngine
        .load(&ModelSource::memory("mlp", FROZEN_GRAPH, bytes), &Options::default())
        .unwrap();
    let mut predictor = model.predictor().unwrap();
    // A wrong dtype and a wrong width are refused before TensorFlow sees them.
    let e = predictor.predict(vec![Tensor::zeros(DType::I32, &[1, 64]).unwrap()]).unwrap_err();
    assert!(e.to_string().contains("input"), "{e}");
    let e = predictor.predict(vec![Tensor::zeros(DType::F32, &[1, 63]).unwrap()]).unwrap_err();
    assert!(e.to_string().contains("63"), "{e}");
    let out = predictor.predict(vec![Tensor::zeros(DType::F32, &[3, 64]).unwrap()]).unwrap();
    assert_eq!(out[0].shape(), [3, 10]);
}
