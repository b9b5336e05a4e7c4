//! Helpers shared by the libtorch integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test crates; tests fail by panicking

use std::path::{Path, PathBuf};

use thrum_core::{Engine, Model, ModelFormat, ModelSource, Options, Tensor};
use thrum_torch::TorchEngine;
use thrum_tract::TractEngine;

/// The zoo model `name` exported to TorchScript in `dir` (with its spec file beside it).
pub fn export(name: &str, dir: &Path) -> PathBuf {
    let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
    let path = dir.join(format!("{name}.pt"));
    thrum_torch::export_torchscript(&graph, &path).unwrap();
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
    let source = ModelSource::memory(name, ModelFormat::Onnx, thrum_zoo::onnx::export(&graph));
    TractEngine.load(&source, &Options::default()).unwrap()
}

/// Largest absolute difference relative to the largest magnitude of the reference.
pub fn relative_difference(got: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(got.shape(), reference.shape());
    let (g, r) = (got.to_f64_vec().unwrap(), reference.to_f64_vec().unwrap());
    let scale = r.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    g.iter().zip(&r).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / scale
}

/// Resident set size of this process.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}
