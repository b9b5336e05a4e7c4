//! Helpers shared by the MXNet integration tests. libmxnet reads its settings once per
//! process, so each test binary loads every model with the same options.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test crates; tests fail by panicking

use std::path::{Path, PathBuf};

use thrum_core::{Engine, Model, ModelFormat, ModelSource, Options};
use thrum_mxnet::MxnetEngine;
use thrum_tract::TractEngine;

/// The zoo model `name` exported to MXNet's format in `dir`; returns the symbol file.
pub fn export(name: &str, dir: &Path) -> PathBuf {
    let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
    let path = dir.join(format!("{name}-symbol.json"));
    thrum_zoo::mxnet::export(&graph, &path).unwrap();
    path
}

/// The zoo model `name` as MXNet files, loaded on mxnet with `options`.
pub fn mxnet(name: &str, options: &Options) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let path = export(name, dir.path());
    let model = MxnetEngine.load(&ModelSource::path(path), options).unwrap();
    (dir, model)
}

/// The same zoo model (same seed, same weights) as ONNX, on tract.
pub fn tract(name: &str) -> Model {
    let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
    let source = ModelSource::memory(name, ModelFormat::ONNX, thrum_zoo::onnx::export(&graph));
    TractEngine.load(&source, &Options::default()).unwrap()
}

/// The seed's recipe for many predictor threads: NaiveEngine, one OpenMP thread.
pub fn multithreaded() -> Options {
    let mut options = Options::default();
    options.set("mxnet.preset", "multithreaded").unwrap();
    options
}
