//! Helpers shared by the tract integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test crates; tests fail by panicking

use thrum_core::{Engine, Model, ModelFormat, ModelSource, Options};
use thrum_tract::TractEngine;

/// ONNX bytes of a zoo model with the default seed.
pub fn zoo_onnx(name: &str) -> Vec<u8> {
    let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
    thrum_zoo::onnx::export(&graph)
}

/// A zoo model loaded on tract.
pub fn load_zoo(name: &str, options: &Options) -> Model {
    let source = ModelSource::memory(name, ModelFormat::ONNX, zoo_onnx(name));
    TractEngine.load(&source, options).unwrap()
}
