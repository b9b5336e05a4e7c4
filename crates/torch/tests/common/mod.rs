//! Helpers shared by the libtorch integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test crates; tests fail by panicking

use std::path::{Path, PathBuf};

use thrum_core::{Engine, Model, ModelFormat, ModelSource, Options};
use thrum_torch::TorchEngine;
use thrum_tract::TractEngine;

/// The zoo model `name` exported to TorchScript in `dir` (with its spec file beside it).
pub fn export(name: &str, dir: &Path) -> PathBuf {
    let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
    let path = dir.join(format!("{name}.pt"));
    thrum_zoo::torchscript::export(&graph, &path, thrum_core::Precision::Fp32).unwrap();
    path
}

/// The zoo model `name` as TorchScript, loaded on torch with `options`.
pub fn torch(name: &str, options: &Options) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let path = export(name, dir.path());
    let model = TorchEngine.load(&ModelSource::path(path), options).unwrap();
    (dir, model)
}

/// The same zoo model (same seed, same weights) as ONNX, on tract.
pub fn tract(name: &str) -> Model {
    let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
    let source = ModelSource::memory(name, ModelFormat::ONNX, thrum_zoo::onnx::export(&graph));
    TractEngine.load(&source, &Options::default()).unwrap()
}
