//! Helpers shared by the ONNX Runtime integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test crates; tests fail by panicking

use std::path::PathBuf;

use thrum_core::{Engine, Model, ModelFormat, ModelSource, Options};
use thrum_ort::OrtEngine;
use thrum_tract::TractEngine;

pub fn zoo_source(name: &str) -> ModelSource {
    let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
    ModelSource::memory(name, ModelFormat::ONNX, thrum_zoo::onnx::export(&graph))
}

pub fn ort(source: &ModelSource, options: &Options) -> Model {
    OrtEngine.load(source, options).unwrap()
}

pub fn tract(source: &ModelSource) -> Model {
    TractEngine.load(source, &Options::default()).unwrap()
}

pub fn testdata() -> PathBuf {
    thrum_core::config::thrum_home().join("testdata")
}

/// The onnx wheel's light models, from `scripts/install-test-data.sh`.
pub fn light_model(name: &str) -> PathBuf {
    let path = testdata().join("onnx-light").join(format!("light_{name}.onnx"));
    assert!(
        path.is_file(),
        "test data missing: {}; run `bash scripts/install-test-data.sh`",
        path.display()
    );
    path
}
