//! Resource release is deterministic: loading and dropping a TorchScript model 200 times keeps
//! RSS flat (what DJL's `disable_close_resource_on_finalize` flag is about has no counterpart:
//! the module is freed when the last predictor and the model are dropped).
//!
//! Like tract's test, it re-runs itself with glibc's mmap threshold pinned, so RSS measures
//! what is still held rather than the allocator's cache.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::process::Command;

use thrum_core::{Engine, ModelSource, Options};
use thrum_torch::TorchEngine;

const CHILD: &str = "THRUM_TEST_LOAD_DROP_CHILD";
const TEST: &str = "loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent";

#[test]
fn loading_and_dropping_a_model_200_times_keeps_rss_within_10_percent() {
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("MALLOC_MMAP_THRESHOLD_", "131072")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stderr}");
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child run failed:\n{stdout}\n{stderr}"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = ModelSource::path(common::export("transformer", dir.path()));
    let input = {
        let model = TorchEngine.load(&source, &Options::default()).unwrap();
        thrum_zoo::sample_inputs(model.inputs(), 1, 3)
    };
    let mut first = 0;
    let mut worst = 0;
    for i in 0..200 {
        let model = TorchEngine.load(&source, &Options::default()).unwrap();
        let mut predictor = model.predictor().unwrap();
        predictor.predict(input.clone()).unwrap();
        drop(predictor);
        drop(model);
        let rss = common::rss_bytes();
        if i == 0 {
            first = rss;
        }
        worst = worst.max(rss);
    }
    let ratio = worst as f64 / first as f64;
    eprintln!(
        "RSS after the first load/drop {} KiB, worst of 200 {} KiB ({ratio:.3}x)",
        first >> 10,
        worst >> 10
    );
    assert!(ratio <= 1.10, "RSS grew from {first} to {worst} bytes ({ratio:.3}x)");
}
