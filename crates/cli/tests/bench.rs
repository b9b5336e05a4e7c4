//! `thrum bench`: report schema, terminal vs pipe output, sweeps, memory report, bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use common::thrum;
use predicates::prelude::*;

fn schema() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/bench-report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn json_report_matches_the_documented_schema() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("report.json");
    thrum()
        .args(["bench", "-p", "zoo:mlp", "-t", "2", "-c", "60", "-w", "1", "-q", "--json"])
        .arg(&path)
        .assert()
        .success()
        .stdout("");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&report).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "report does not match docs/bench-report.schema.json:\n{}",
        errors.join("\n")
    );
    assert_eq!(report["results"]["calls"], 60);
    assert_eq!(report["results"]["latency_ms"]["total"]["count"], 60);
    assert_eq!(report["plan"]["workers"], 2);
    assert_eq!(report["plan"]["input_shapes"][0], "(1,64)f");
    assert_eq!(report["model"]["inputs"][0]["shape"], serde_json::json!(["N", 64]));
}

#[test]
fn schema_rejects_a_report_missing_a_field() {
    // The schema is strict enough to catch drift between the code and the docs.
    let validator = jsonschema::validator_for(&schema()).unwrap();
    assert!(!validator.is_valid(&serde_json::json!({ "schema": "thrum-bench/1" })));
}

#[test]
fn output_in_a_pipe_is_clean_text_without_a_progress_bar() {
    let out = thrum()
        .args(["bench", "-p", "zoo:mlp", "-t", "1", "-d", "2.5"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("Throughput: ") && stdout.contains("samples/s"), "{stdout}");
    for line in ["first inference", "total            P50", "memory (RSS MiB)", "cpu "] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    assert!(
        !stdout.contains('\r') && !stdout.contains('\u{1b}'),
        "control characters in a pipe:\n{stdout:?}"
    );
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_terminal_gets_a_progress_bar_for_runs_over_two_seconds() {
    // `script` (util-linux) runs the command in a pseudo-terminal.
    let exe = assert_cmd::cargo::cargo_bin("thrum");
    let command = format!("{} bench -p zoo:mlp -t 1 -d 3.5", exe.display());
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("`script` from util-linux must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("/3500 ms"), "no progress bar in a terminal:\n{text}");
    assert!(text.contains("Throughput: "), "{text}");
}

#[test]
fn json_to_stdout_moves_the_summary_to_stderr() {
    let out = thrum()
        .args(["bench", "-p", "zoo:mlp", "-c", "20", "-t", "1", "--json", "-"])
        .assert()
        .success()
        .get_output()
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["schema"], "thrum-bench/1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Throughput: "));
}

#[test]
fn shared_predictor_and_batch_size_are_honoured() {
    let out = thrum()
        .args([
            "bench",
            "-p",
            "zoo:mlp",
            "-c",
            "40",
            "-t",
            "2",
            "-b",
            "4",
            "--predictor",
            "shared",
            "--json",
            "-",
            "-q",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["plan"]["predictor"], "shared");
    assert_eq!(report["plan"]["samples_per_call"], 4);
    assert_eq!(report["results"]["samples"], 160);
}

#[test]
fn explicit_input_shapes_in_djl_syntax() {
    thrum()
        .args(["bench", "-p", "zoo:transformer", "-s", "(2,128)l", "-c", "4", "-t", "1", "-w", "0"])
        .assert()
        .success()
        .stdout(predicate::str::contains("2 sample(s)/call (2,128)l"));
}

#[test]
fn sweep_prints_a_table_and_plots_the_pareto_front() {
    let work = tempfile::tempdir().unwrap();
    let plot = work.path().join("sweep.svg");
    let out = work.path().join("out");
    thrum()
        .args([
            "bench",
            "-p",
            "zoo:mlp",
            "-c",
            "40",
            "-w",
            "1",
            "--sweep",
            "threads=1,2",
            "batch=1,4",
            "--plot",
        ])
        .arg(&plot)
        .arg("-o")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("samples/s").and(predicate::str::contains("pareto")));
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("Pareto front") && svg.contains("P99 latency"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 4);
    assert!(json["points"].as_array().unwrap().iter().any(|p| p["pareto"] == true));
    assert!(out.join("sweep.svg").is_file());
}

#[test]
fn memory_report_lists_rss_for_each_predictor_count() {
    thrum().args(["bench", "-p", "zoo:mlp", "--memory-report"]).assert().success().stdout(
        predicate::str::contains("  1 predictor ").and(predicate::str::contains("  8 predictors")),
    );
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_2() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["-s".into(), "(1,6x)f".into()],
            "invalid --input-shapes: expected `,` or `)`\n  (1,6x)f\n      ^",
        ),
        (
            vec!["-p".into(), "zoo:mlp".into(), "-s".into(), "(1,63)f".into()],
            "input `input` expects 64 along axis 1",
        ),
        (
            vec!["-p".into(), "zoo:mlp".into(), "-s".into(), "(1,64)l".into()],
            "expects dtype f32, got i64",
        ),
        (
            vec!["-p".into(), "zoo:mlp".into(), "-s".into(), "(1,64)f,(1,64)f".into()],
            "invalid 2 input shape(s) for model `mlp`; expected 1",
        ),
        (
            vec!["-c".into(), "0".into()],
            "invalid value '0' for '--iteration <N>': expected at least 1",
        ),
        (vec!["-c".into(), "-5".into()], "invalid value '-5' for '--iteration <N>'"),
        (
            vec!["-d".into(), "0".into()],
            "invalid value '0' for '--duration <SECONDS>': expected a number of seconds above 0",
        ),
        (vec!["-d".into(), "-1.5".into()], "invalid value '-1.5' for '--duration <SECONDS>'"),
        (
            vec!["-b".into(), "0".into()],
            "invalid value '0' for '--batch-size <N>': expected at least 1",
        ),
        (
            vec!["-b".into(), "99999999999".into()],
            "invalid value '99999999999' for '--batch-size <N>': expected at most 4294967296",
        ),
        (
            vec!["-p".into(), "zoo:mlp".into(), "-b".into(), "4294967296".into()],
            "a f32 tensor of shape [4294967296, 64] would hold 274877906944 elements",
        ),
        (
            vec!["-s".into(), "(4294967296,4294967296)f".into()],
            "would hold more elements than a 64-bit count can hold",
        ),
        (vec!["-w".into(), "-1".into()], "invalid value '-1' for '--warmup-iteration <N>'"),
        (vec!["-e".into(), "caffe".into()], "unknown engine `caffe`"),
        (
            vec!["--model-options".into(), "threads=2".into()],
            "unknown option `threads` in model options",
        ),
        (
            vec!["-o".into(), file.join("sub").display().to_string()],
            "cannot create the output directory",
        ),
        (
            vec!["--sweep".into(), "cores=1,2".into()],
            "invalid sweep key `cores`; expected one of threads",
        ),
        (
            vec!["--sweep".into(), "ort.execution_mode=fast".into()],
            "invalid sweep value `fast` for `ort.execution_mode`; expected sequential or parallel",
        ),
        (
            vec!["--sweep".into(), "precision=fp32,bf16".into()],
            "invalid --sweep precision=…; expected one bench per precision",
        ),
        (
            vec!["--predictor".into(), "pooled".into()],
            "invalid value 'pooled' for '--predictor <MODE>': expected per-thread or shared",
        ),
        (vec!["--plot".into(), "x.svg".into()], "--plot without --sweep"),
        (vec!["--onednn".into()], "engine `tract` does not support oneDNN"),
    ];
    let not_compiled = common::engine_not_compiled_in()
        .map(|e| (e, format!("engine `{e}` is not compiled in: rebuild with --features {e}")));
    let mut cases = cases;
    if let Some((engine, message)) = &not_compiled {
        cases.push((vec!["-e".into(), engine.to_string()], message.as_str()));
    }
    for (args, message) in cases {
        thrum().arg("bench").args(&args).args(["-q"]).assert().code(2).stderr(
            predicate::str::contains(message).and(predicate::str::contains("panicked").not()),
        );
    }
}

#[test]
fn arguments_are_checked_before_any_model_is_built() {
    // A fresh THRUM_HOME: building zoo:resnet50 would write it to the zoo cache there.
    let home = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    thrum()
        .env("THRUM_HOME", home.path())
        .args(["bench", "-p", "zoo:resnet50", "-b", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("'--batch-size <N>'"));
    assert!(
        !home.path().join("zoo").exists(),
        "the model was exported before the batch size was checked"
    );
    eprintln!("refused in {:?}", start.elapsed());
}
