//! Helpers shared by the ONNX Runtime integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test crates; tests fail by panicking

use std::path::PathBuf;

use thrum_core::{Engine, Model, ModelFormat, ModelSource, Options, Tensor};
use thrum_ort::OrtEngine;
use thrum_tract::TractEngine;

/// Fails loudly when the library is missing: these tests must run in the test command.
pub fn require_library() {
    if let Err(e) = thrum_ort::library::find(None) {
        panic!(
            "ONNX Runtime is required by these tests: {e}. The README's test command installs it."
        );
    }
}

pub fn zoo_source(name: &str) -> ModelSource {
    let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
    ModelSource::memory(name, ModelFormat::Onnx, thrum_zoo::onnx::export(&graph))
}

pub fn ort(source: &ModelSource, options: &Options) -> Model {
    require_library();
    OrtEngine.load(source, options).unwrap()
}

pub fn tract(source: &ModelSource) -> Model {
    TractEngine.load(source, &Options::default()).unwrap()
}

/// Largest absolute difference relative to the largest magnitude of the reference.
pub fn relative_difference(got: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(got.shape(), reference.shape());
    let (g, r) = (got.to_f64_vec().unwrap(), reference.to_f64_vec().unwrap());
    let scale = r.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    g.iter().zip(&r).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / scale
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
