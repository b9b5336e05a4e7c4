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
    // The pick's outputs were checked against fp32 in a child before it was written, and the
    // file says how it was measured.
    let checks = r["outcome"]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["pass"], true, "{checks:?}");
    assert!(toml.contains("thrum bench -p zoo:mlp -e tract"), "{toml}");
    // What is written: the pick, checked; or the default, when it clearly beat the pick.
    let default_wins = r["outcome"]["default_wins"] == true;
    let written = if default_wins { &versus["default"] } else { winner };
    if default_wins {
        assert!(toml.contains("lost to this default configuration"), "{toml}");
    } else {
        assert!(toml.contains("checked in a child") && toml.contains("PASS"), "{toml}");
    }
    // Precision auto: int8 and bf16 are searched only where the CPU has units for them, and
    // the report says why not otherwise.
    let precision = &r["precision"];
    let asked = precision["asked"].as_array().unwrap();
    assert_eq!(asked[0], "fp32", "{precision}");
    if !asked.iter().any(|p| p == "int8") {
        assert!(precision["notes"].to_string().contains("int8 not searched"), "{precision}");
    }
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
    assert_eq!(bench["plan"]["workers"], written["workers"]);
    assert_eq!(bench["plan"]["samples_per_call"], written["batch"]);
    assert_eq!(bench["plan"]["options"]["intra_op_threads"], written["intra"].to_string());
    // serve takes the same file: the model under its name, with the pick's workers.
    let toml = dir.path().join("thrum.toml");
    let served = common::serve(&["--config", toml.to_str().unwrap()]);
    let config = common::get_json(&format!("http://{}/v2/models/mlp/config", served.http));
    assert_eq!(config["instance_group"][0]["count"], written["workers"], "{config}");
}

#[test]
fn int8_is_searched_under_the_accuracy_floor_and_the_pick_is_checked_in_a_child() {
    let dir = tempfile::tempdir().unwrap();
    let floor = ["--precision", "fp32,int8", "--accuracy-samples", "20", "--batch", "1"];
    tune_mlp(dir.path(), &[&floor[..], &["--min-accuracy", "0.9"]].concat()).success();
    let r = report(dir.path());
    // The int8 model was made as `thrum quantize` does, gated on 20 samples against fp32,
    // and measured in the search. tract's fast form (QLinearConv, weights per tensor) is for
    // convolutions: the MLP has none, so tract gets QDQ with per-channel weights.
    let int8 = r["precision"]["int8_models"]["tract"].as_str().unwrap();
    assert!(Path::new(int8).is_file() && int8.ends_with("mlp-int8.onnx"), "{int8}");
    assert!(!dir.path().join("mlp-int8-qlinear.onnx").exists());
    let screen = &r["precision"]["screens"][0]["report"]["rows"];
    assert_eq!(screen[1]["precision"], "int8", "{screen}");
    assert_eq!(screen[1]["pass"], true, "{screen}");
    assert_eq!(screen[1]["samples"], 20, "{screen}");
    let trials = r["outcome"]["trials"].as_array().unwrap();
    assert!(
        trials.iter().any(|t| t["candidate"]["options"]["precision"] == "int8"
            && t["outcome"]["status"] == "measured"),
        "{trials:?}"
    );
    assert_eq!(r["outcome"]["checks"][0]["pass"], true, "{}", r["outcome"]);
    // A floor int8 cannot keep (cosine to fp32 of exactly 1): int8 is not searched, and the
    // report says why with the figure.
    let strict = tempfile::tempdir().unwrap();
    tune_mlp(strict.path(), &[&floor[..], &["--metric", "cosine", "--min-accuracy", "1"]].concat())
        .success();
    let r = report(strict.path());
    let notes = r["precision"]["notes"].to_string();
    assert!(notes.contains("tract int8 not searched: mean cosine"), "{notes}");
    assert!(notes.contains("< 100.0 % of fp32 on 20 samples"), "{notes}");
    let trials = r["outcome"]["trials"].as_array().unwrap();
    assert!(
        trials.iter().all(|t| t["candidate"]["options"].get("precision").is_none()),
        "{trials:?}"
    );
}

#[test]
fn a_pick_that_fails_its_check_is_replaced_and_when_none_passes_fp32_is_written_marked() {
    let dir = tempfile::tempdir().unwrap();
    // Children run the real thrum, except that every accuracy check reports a shortfall.
    let real = assert_cmd::cargo::cargo_bin("thrum");
    let failing = r#"{"model":"zoo:mlp","metric":"top1","target":0.99,"samples_from":"test","cpu":"test","rows":[{"engine":"tract","precision":"fp32","refused":null,"samples":20,"samples_per_s":1.0,"speedup":1.0,"top1_agreement":1.0,"top5_agreement":1.0,"mean_cosine":1.0,"min_cosine":1.0,"max_abs":0.0,"max_rel":0.0,"pass":true},{"engine":"tract (check)","precision":"fp32","refused":null,"samples":20,"samples_per_s":1.0,"speedup":1.0,"top1_agreement":0.5,"top5_agreement":1.0,"mean_cosine":0.9,"min_cosine":0.5,"max_abs":1.0,"max_rel":1.0,"pass":false}]}"#;
    let exe = script(
        dir.path(),
        &format!(
            "case \"$*\" in *--config*) echo '{failing}'; exit 1;; esac\nexec {} \"$@\"",
            real.display()
        ),
    );
    let out = tune_mlp(dir.path(), &["--batch", "1", "--bench-exe", exe.to_str().unwrap()])
        .get_output()
        .clone();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("FAIL — top-1 agreement 50.0 % < 99.0 %"), "{stdout}");
    let r = report(dir.path());
    let checks = r["outcome"]["checks"].as_array().unwrap();
    assert!(checks.len() >= 2 && checks.len() <= 4, "{checks:?}");
    assert!(checks.iter().all(|c| c["pass"] == false), "{checks:?}");
    let toml = std::fs::read_to_string(dir.path().join("thrum.toml")).unwrap();
    if r["outcome"]["default_wins"] == true {
        // The pick and the default are near ties on zoo:mlp, so the alternating runs can go
        // either way. When every round goes to the default, it is written: it runs the
        // engine's own fp32 numerics, the reference every check compares with, and needs no
        // check of its own.
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        assert_eq!(r["outcome"]["accuracy_unmet"], false);
        assert!(toml.contains("lost to this default configuration"), "{toml}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(stderr.contains("below the target"), "{stderr}");
        assert_eq!(r["outcome"]["accuracy_unmet"], true);
        assert!(
            toml.contains("# BELOW TARGET: no configuration checked kept 99.0 % of fp32"),
            "{toml}"
        );
    }
}

#[test]
fn precision_arguments_that_cannot_work_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["--min-accuracy", "1.5"][..], "--min-accuracy 1.5"),
        (&["--min-accuracy", "0"][..], "above 0 and at most 1"),
        (&["--fixed", "precision=int8"][..], "--precision P"),
        (&["--precision", "fp8"][..], "fp8"),
    ] {
        thrum()
            .args(["tune", "-p", "zoo:mlp", "-e", "tract", "-q", "-o"])
            .arg(dir.path())
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
    assert!(!dir.path().join("tune.json").exists());
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
fn ctrl_c_or_sigterm_writes_the_checkpoint_and_resume_reuses_it() {
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
    // SIGTERM (what `timeout` and Kubernetes send) is handled as Ctrl-C's SIGINT is: the
    // running child's group is killed and the checkpoint kept.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("thrum"))
        .args(["tune", "-p", "zoo:mlp", "-e", "tract", "--max-batch", "2", "--measure-s", "0.3"])
        .args(["--budget", "90s", "-q", "--resume", "-o"])
        .arg(dir.path())
        .spawn()
        .unwrap();
    let before = std::fs::metadata(&checkpoint).unwrap().modified().unwrap();
    let start = Instant::now();
    while std::fs::metadata(&checkpoint).unwrap().modified().unwrap() == before
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
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
