//! Helpers shared by the CLI integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test crates; tests fail by panicking

use std::path::PathBuf;

use assert_cmd::Command;

/// The binary's tensor files (`.npy`, `.pb`, `.json`), to write inputs and read outputs.
#[path = "../../src/io.rs"]
pub mod io;

/// The `thrum` binary under test.
pub fn thrum() -> Command {
    let mut cmd = Command::cargo_bin("thrum").unwrap();
    // Tests must not pick up a developer's THRUM_* options.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("THRUM_") && name != "THRUM_HOME" {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The onnx wheel's light models, installed by `scripts/install-test-data.sh`. Fails loudly
/// when they are missing: these tests must run in the test command, never be skipped.
pub fn light_models_dir() -> PathBuf {
    let dir = thrum::config::thrum_home().join("testdata").join("onnx-light");
    assert!(
        dir.join("light_resnet50.onnx").is_file(),
        "test data missing: {} has no light_resnet50.onnx. Run `bash scripts/install-test-data.sh` \
         (the README's test command does).",
        dir.display()
    );
    dir
}

/// An engine whose runtime this build of `thrum` does not include, if any.
pub fn engine_not_compiled_in() -> Option<&'static str> {
    thrum::engine::infos()
        .into_iter()
        .find(|i| {
            matches!(
                (i.engine)().load(&thrum::ModelSource::path("x"), &thrum::Options::default()),
                Err(thrum::Error::EngineNotCompiled { .. })
            )
        })
        .map(|i| i.name)
}

/// Runs `thrum bench --memory-report -q` with `args` and returns the steps of its
/// `memory.json` (one per predictor count: 1, 2, 4, 8).
pub fn memory_report_steps(args: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    thrum()
        .args(["bench", "--memory-report", "-q", "-o"])
        .arg(dir.path())
        .args(args)
        .assert()
        .success();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("memory.json")).unwrap())
            .unwrap();
    let steps = report["steps"].as_array().unwrap().clone();
    assert_eq!(steps.last().unwrap()["predictors"], 8);
    steps
}
