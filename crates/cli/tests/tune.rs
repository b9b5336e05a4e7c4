//! `thrum tune` and `thrum compare` through the binary: a real search on a small zoo model
//! (each configuration in a child `thrum bench`), its thrum.toml read back by bench, the
//! core limit under `taskset`, Ctrl-C and --resume, and the bad-input cases.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::thrum;
use predicates::prelude::*;

/// A short search of zoo:mlp on tract: small measurements, a bounded budget.
fn tune_mlp(dir: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = thrum();
    cmd.args(["tune", "-p", "zoo:mlp", "-e", "tract", "--max-batch", "2", "--measure-s", "0.3"])
        .args(["--budget", "90s", "-q", "-o"])
        .arg(dir)
        .args(extra);
    cmd.timeout(Duration::from_secs(180)).assert()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("tune.json")).unwrap()).unwrap()
}

#[test]
fn tune_writes_a_pick_that_bench_reads_back_with_its_engine_workers_and_batch() {
    let dir = tempfile::tempdir().unwrap();
    tune_mlp(dir.path(), &[]).success().stdout(predicate::str::contains("Pick: tract"));
    let r = report(dir.path());
    let ranked = r["ranked"].as_array().unwrap();
    assert!(ranked.len() >= 3, "{ranked:?}");
    let winner = &r["outcome"]["winner"][0];
    let versus = &r["outcome"]["versus_default"];
    assert!(versus["speedup"].as_f64().unwrap() > 0.0, "{versus}");
    assert!(dir.path().join("pareto.svg").is_file());
    let toml = std::fs::read_to_string(dir.path().join("thrum.toml")).unwrap();
    assert!(toml.contains("engine = \"tract\""), "{toml}");
    // bench takes engine, workers, batch and options from the file.
    let out = thrum()
        .args(["bench", "-d", "0.2", "--json", "-", "-q", "--config"])
        .arg(dir.path().join("thrum.toml"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let bench: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(bench["engine"]["name"], "tract");
    assert_eq!(bench["model"]["path"], "zoo:mlp");
    assert_eq!(bench["plan"]["workers"], winner["workers"]);
    assert_eq!(bench["plan"]["samples_per_call"], winner["batch"]);
    assert_eq!(bench["plan"]["options"]["intra_op_threads"], winner["intra"].to_string());
    // serve takes the same file: the model under its name, with the pick's workers.
    let toml = dir.path().join("thrum.toml");
    let served = common::serve(&["--config", toml.to_str().unwrap()]);
    let config = common::get_json(&format!("http://{}/v2/models/mlp/config", served.http));
    assert_eq!(config["instance_group"][0]["count"], winner["workers"], "{config}");
}

#[test]
fn under_taskset_one_core_no_proposal_has_more_than_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("taskset");
    cmd.args(["-c", "0"]).arg(assert_cmd::cargo::cargo_bin("thrum"));
    cmd.args(["tune", "-p", "zoo:mlp", "-e", "tract", "--batch", "1", "--measure-s", "0.3"])
        .args(["--budget", "60s", "-q", "-o"])
        .arg(dir.path());
    let status = cmd.status().unwrap();
    assert!(status.success());
    let r = report(dir.path());
    assert_eq!(r["cores"]["usable"], 1);
    for row in r["ranked"].as_array().unwrap() {
        let c = &row["candidate"];
        let threads = c["workers"].as_u64().unwrap() * c["intra"].as_u64().unwrap();
        assert!(threads == 1 || c["probe"] == true, "{row}");
    }
    let winner = &r["outcome"]["winner"][0];
    assert_eq!((winner["workers"].as_u64(), winner["intra"].as_u64()), (Some(1), Some(1)));
}

#[test]
fn ctrl_c_writes_the_checkpoint_and_resume_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("thrum"))
        .args(["tune", "-p", "zoo:mlp", "-e", "tract", "--max-batch", "2", "--measure-s", "0.3"])
        .args(["--budget", "90s", "-q", "-o"])
        .arg(dir.path())
        .spawn()
        .unwrap();
    let checkpoint = dir.path().join("checkpoint.json");
    let start = Instant::now();
    while !checkpoint.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(checkpoint.exists(), "no checkpoint after 60 s");
    // SAFETY: signalling our own child, whose pid we hold.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    let saved = saved["trials"].as_array().unwrap().len();
    assert!(saved >= 1);
    // Another search (here: longer measurements) cannot reuse them.
    let refused = thrum()
        .args(["tune", "-p", "zoo:mlp", "-e", "tract", "--max-batch", "2", "--measure-s", "0.5"])
        .args(["--budget", "90s", "-q", "--resume", "-o"])
        .arg(dir.path())
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.contains("written by another search"), "{refused}");
    tune_mlp(dir.path(), &["--resume"]).success();
    let trials = report(dir.path())["outcome"]["trials"].as_array().unwrap().len();
    assert!(trials >= saved, "{trials} < {saved}");
}

#[test]
fn a_budget_too_small_for_one_measurement_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    thrum()
        .args(["tune", "-p", "zoo:mlp", "-e", "tract", "--budget", "0.2s", "-q", "-o"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("too small").and(predicate::str::contains("--budget")));
}

#[test]
fn constraints_nothing_meets_print_the_closest_and_by_how_much() {
    let dir = tempfile::tempdir().unwrap();
    tune_mlp(dir.path(), &["--batch", "1", "--max-p99", "0.000001"])
        .code(2)
        .stdout(predicate::str::contains("the closest").and(predicate::str::contains("P99")))
        .stderr(predicate::str::contains("no configuration meets"));
}

/// A script standing in for `thrum` as the children's executable.
fn script(dir: &Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("child.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_child_that_hangs_is_killed_after_the_timeout_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "echo 'loading the model' >&2\nexec sleep 60");
    let start = Instant::now();
    tune_mlp(dir.path(), &["--batch", "1", "--timeout", "1", "--bench-exe", exe.to_str().unwrap()])
        .code(1)
        .stdout(
            predicate::str::contains("timed out")
                .and(predicate::str::contains("loading the model")),
        )
        .stderr(predicate::str::contains("every measurement failed"));
    assert!(start.elapsed() < Duration::from_secs(40), "{:?}", start.elapsed());
}

#[test]
fn a_child_that_crashes_is_marked_failed_with_its_stderr_tail() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "echo 'fatal: out of cheese' >&2\nkill -SEGV $$");
    tune_mlp(dir.path(), &["--batch", "1", "--bench-exe", exe.to_str().unwrap()])
        .code(1)
        .stdout(predicate::str::contains("out of cheese").and(predicate::str::contains("signal")))
        .stderr(predicate::str::contains("every measurement failed"));
}

#[test]
fn a_model_no_engine_can_load_names_each_engine_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("broken.onnx");
    std::fs::write(&model, b"not a model").unwrap();
    thrum()
        .args(["tune", "-e", "tract", "-q", "-p"])
        .arg(&model)
        .arg("-o")
        .arg(dir.path().join("out"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no engine can run").and(predicate::str::contains("tract:")),
        );
}

#[test]
fn an_unwritable_output_directory_fails_before_any_measurement() {
    thrum()
        .args(["tune", "-p", "zoo:mlp", "-e", "tract", "-q", "-o", "/proc/thrum-tune"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/proc/thrum-tune"));
}

#[test]
fn compare_prints_the_agreement_table_for_tract_and_ort() {
    if !thrum_testkit::engine_under_test("ort", "compare_prints_the_agreement_table") {
        return;
    }
    thrum().args(["compare", "-p", "zoo:mlp", "-e", "tract,ort"]).assert().success().stdout(
        predicate::str::contains("Outputs against tract")
            .and(predicate::str::contains("ort"))
            .and(predicate::str::contains("agrees")),
    );
}
