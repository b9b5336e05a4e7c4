//! `thrum engines`, `thrum zoo`, and `--help` on every command.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use common::thrum;
use predicates::prelude::*;

/// The subcommands `--help` lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .map(|section| {
            section
                .lines()
                .skip(1)
                .take_while(|l| l.starts_with("  "))
                // A command's line starts at two spaces; deeper lines continue a description.
                .filter(|l| !l.starts_with("   "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|name| *name != "help")
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_command_has_help() {
    // Walks the command tree from the top, so a new command is covered without editing here.
    let mut pending: Vec<Vec<String>> = vec![vec![]];
    let mut seen = Vec::new();
    while let Some(args) = pending.pop() {
        let out = thrum().args(&args).arg("--help").assert().success().get_output().stdout.clone();
        let help = String::from_utf8(out).unwrap();
        assert!(help.contains("Usage: thrum"), "{args:?}:\n{help}");
        for sub in subcommands(&help) {
            pending.push(args.iter().cloned().chain([sub]).collect());
        }
        seen.push(args.join(" "));
    }
    for command in ["bench", "predict", "engines", "engines install", "zoo list", "zoo export"] {
        assert!(seen.iter().any(|s| s == command), "`{command}` not reached: {seen:?}");
    }
}

#[test]
fn engines_lists_every_engine_with_its_check() {
    let listing = thrum()
        .arg("engines")
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"tract\s+yes\s+0\.23\.9").unwrap());
    if let Some(engine) = common::engine_not_compiled_in() {
        let message =
            format!("engine `{engine}` is not compiled in: rebuild with --features {engine}");
        listing.stdout(predicate::str::contains(message));
    }
    let out = thrum().args(["engines", "--json"]).assert().success().get_output().stdout.clone();
    let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let names: Vec<&str> =
        rows.as_array().unwrap().iter().map(|r| r["engine"].as_str().unwrap()).collect();
    assert_eq!(names, ["tract", "ort", "torch", "mxnet", "tensorflow"]);
    assert_eq!(rows[0]["capabilities"]["shared_predictor"]["supported"], "yes");
}

#[test]
fn zoo_list_states_input_spec_and_flops() {
    let out =
        thrum().args(["zoo", "list", "--json"]).assert().success().get_output().stdout.clone();
    let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let resnet50 =
        rows["built"].as_array().unwrap().iter().find(|r| r["name"] == "resnet50").unwrap();
    assert_eq!(resnet50["inputs"][0], "data: f32 [N,3,224,224]");
    assert!(resnet50["flops_per_sample"].as_u64().unwrap() > 8_000_000_000);
    thrum()
        .args(["zoo", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("transformer  input_ids: i64 [N,128]"));
}

#[test]
fn exported_onnx_runs_like_the_zoo_model() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("mlp.onnx");
    thrum()
        .args(["zoo", "export", "mlp", "-o"])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::contains("exported mlp"));
    let (a, b) = (work.path().join("a.npy"), work.path().join("b.npy"));
    thrum().args(["predict", "-p", "zoo:mlp", "-o"]).arg(&a).assert().success();
    thrum().args(["predict", "-p"]).arg(&path).arg("-o").arg(&b).assert().success();
    assert!(common::io::read_npy(&a).unwrap().bit_eq(&common::io::read_npy(&b).unwrap()));
}

#[test]
fn export_problems_are_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    thrum()
        .args(["zoo", "export", "mlp", "-o"])
        .arg(work.path().join("mlp.bin"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("invalid value")
                .and(predicate::str::contains("mlp.bin"))
                .and(predicate::str::contains("--format onnx|torchscript|mxnet|tf-graph")),
        );
    thrum()
        .args(["zoo", "export", "mlp", "--format", "tflite", "-o", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown format `tflite`"));
    thrum()
        .args(["zoo", "export", "vgg", "-o", "x.onnx"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown zoo model `vgg`"));
}

#[test]
fn install_names_are_checked_before_anything_is_downloaded() {
    let home = tempfile::tempdir().unwrap();
    thrum()
        .env("THRUM_HOME", home.path())
        .args(["engines", "install", "ort", "caffe"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unknown installable engine `caffe`; known installable engines: ort, ort-openvino, torch, mxnet, tensorflow",
        ));
    thrum()
        .env("THRUM_HOME", home.path())
        .args(["engines", "install", "tract"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tract needs nothing installed"));
    assert!(!home.path().join("engines").exists(), "something was installed");
}
