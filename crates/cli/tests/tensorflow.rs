//! The TensorFlow engine through the `thrum` binary: discovery errors, `thrum engines`, a
//! SavedModel written by TensorFlow itself (the reference), zoo models as frozen graphs against
//! tract, bench with every option, and memory with eight predictors on one session.
#![cfg(feature = "tensorflow")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::thrum;
use predicates::prelude::*;

/// Stated tolerance against tract: max |a − b| ≤ 1e-4 × max |b| over each output.
const TOLERANCE: f64 = 1e-4;

#[test]
fn a_missing_library_names_every_place_searched_and_the_install_command() {
    let home = tempfile::tempdir().unwrap();
    thrum()
        .env("THRUM_HOME", home.path())
        .env_remove("TENSORFLOW_LIBRARY_PATH")
        .args(["predict", "-e", "tensorflow", "-p", "zoo:mlp"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(
                "TensorFlow's C API library (libtensorflow_cc.so.2) was not found",
            )
            .and(predicate::str::contains("$TENSORFLOW_LIBRARY_PATH (not set)"))
            .and(predicate::str::contains(
                "engines/tensorflow/libtensorflow_cc.so.2` (no such file)",
            ))
            .and(predicate::str::contains("thrum engines install tensorflow")),
        );
}

#[test]
fn engines_reports_the_library_and_its_version() {
    let out = thrum().args(["engines", "--json"]).assert().success().get_output().stdout.clone();
    let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let tf = rows.as_array().unwrap().iter().find(|r| r["engine"] == "tensorflow").unwrap();
    assert_eq!(tf["available"], true, "{tf}");
    assert!(tf["version"].as_str().unwrap().starts_with("2.21.0"), "{tf}");
    assert!(tf["library"].as_str().unwrap().ends_with("libtensorflow_cc.so.2"), "{tf}");
}

/// The SavedModel, inputs and outputs `scripts/tf_reference.py` writes with TensorFlow
/// itself (the venv-tf of scripts/install-test-data.sh), built once for this test binary.
fn reference() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tf_reference.py");
        let out = std::process::Command::new(common::venv_python("venv-tf"))
            .arg(script)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tf_reference.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

fn reference_inputs(cmd: &mut assert_cmd::Command) {
    for name in ["features", "ids"] {
        cmd.arg("-i").arg(format!(
            "{name}={}",
            reference().join("inputs").join(format!("{name}.npy")).display()
        ));
    }
}

/// thrum reads SavedModels as TensorFlow's own tools write them: the signature's inputs and
/// outputs by key (a float, an int32 input; float, int64 and string outputs), and every output
/// bit-equal to TensorFlow Python's on the same inputs.
#[test]
fn a_savedmodel_written_by_tensorflow_gives_tensorflows_outputs() {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = thrum();
    cmd.args(["predict", "-e", "tensorflow", "-p"]).arg(reference().join("saved"));
    reference_inputs(&mut cmd);
    cmd.arg("-o").arg(out.path()).assert().success();
    for name in ["scores", "best", "label"] {
        let got = common::io::read_npy(&out.path().join(format!("{name}.npy"))).unwrap();
        let expected =
            common::io::read_npy(&reference().join("expected").join(format!("{name}.npy")))
                .unwrap();
        assert_eq!(got.dtype(), expected.dtype(), "{name}");
        assert!(got.bit_eq(&expected), "{name}: thrum {got:?} vs TensorFlow {expected:?}");
    }
}

#[test]
fn another_signature_is_chosen_by_its_key() {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = thrum();
    cmd.args([
        "predict",
        "-e",
        "tensorflow",
        "--model-options",
        "tensorflow.signature=scores_only",
        "-p",
    ])
    .arg(reference().join("saved"));
    reference_inputs(&mut cmd);
    cmd.arg("-o").arg(out.path()).assert().success();
    let written: Vec<_> =
        std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(written, ["scores.npy"]);
    let got = common::io::read_npy(&out.path().join("scores.npy")).unwrap();
    let expected = common::io::read_npy(&reference().join("expected/scores.npy")).unwrap();
    assert!(got.bit_eq(&expected));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn predict_fails(model: &Path, options: &[&str], expected: &[&str]) {
    let mut cmd = thrum();
    cmd.args(["predict", "-e", "tensorflow", "-p"]).arg(model).args(options);
    let assert = cmd.assert().failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    for part in expected {
        assert!(stderr.contains(part), "expected `{part}` in: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unknown_tags_and_signatures_list_what_the_savedmodel_has() {
    let saved = reference().join("saved");
    predict_fails(
        &saved,
        &["--model-options", "tensorflow.tags=gpu"],
        &["tensorflow.tags", "`gpu`", "a tag set of the SavedModel", "`serve`"],
    );
    predict_fails(
        &saved,
        &["--model-options", "tensorflow.signature=predict"],
        &["tensorflow.signature", "`predict`", "`scores_only`, `serving_default`"],
    );
}

#[test]
fn broken_savedmodels_are_invalid_model_errors() {
    let work = tempfile::tempdir().unwrap();
    // A directory that is not a SavedModel.
    predict_fails(work.path(), &[], &["not a SavedModel directory", "has no saved_model.pb"]);
    // A corrupt saved_model.pb.
    let corrupt = work.path().join("corrupt");
    copy_dir(&reference().join("saved"), &corrupt);
    std::fs::write(corrupt.join("saved_model.pb"), b"\x0a\xff\xff\xff garbage").unwrap();
    predict_fails(&corrupt, &[], &["is not a SavedModel"]);
    // Variables cut short.
    let cut = work.path().join("cut");
    copy_dir(&reference().join("saved"), &cut);
    let data = cut.join("variables/variables.data-00000-of-00001");
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    predict_fails(&cut, &[], &["TensorFlow cannot load the SavedModel"]);
}

/// `zoo:NAME` on tensorflow is the zoo's frozen graph of the same weights as the ONNX export
/// tract runs (images converted to NHWC inside the graph): outputs agree within the tolerance.
#[test]
fn zoo_models_agree_with_tract() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["mlp", "resnet18", "resnet50", "transformer"] {
        let graph = thrum::zoo::find(name).unwrap().build(thrum::zoo::DEFAULT_SEED);
        let input = dir.path().join(format!("{name}-input.npy"));
        common::io::write_npy(&input, &thrum::zoo::sample_inputs(&graph.inputs, 2, 5).unwrap()[0])
            .unwrap();
        let model = format!("zoo:{name}");
        let tract = common::predict_npy(
            "tract",
            &model,
            &input,
            &dir.path().join(format!("{name}-tract.npy")),
        );
        let tf = common::predict_npy(
            "tensorflow",
            &model,
            &input,
            &dir.path().join(format!("{name}-tf.npy")),
        );
        let diff = thrum_testkit::relative_difference(&tf, &tract);
        eprintln!("{name}: tensorflow vs tract: {diff:.2e}");
        assert!(diff <= TOLERANCE, "{name}: tensorflow and tract differ by {diff:.2e}");
    }
}

fn exported_mlp(dir: &Path) -> PathBuf {
    let path = dir.join("mlp.pb");
    thrum().args(["zoo", "export", "mlp", "-o"]).arg(&path).assert().success();
    path
}

#[test]
fn a_frozen_graph_runs_with_its_inputs_and_outputs_discovered_or_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = exported_mlp(dir.path());
    thrum()
        .args(["predict", "-e", "tensorflow", "-p"])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::contains("logits: f32 [1, 10]"));
    thrum()
        .args([
            "predict",
            "-e",
            "tensorflow",
            "--model-options",
            "tensorflow.inputs=input,tensorflow.outputs=logits:0",
            "-p",
        ])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::contains("logits:0: f32 [1, 10]"));
}

#[test]
fn unknown_frozen_graph_names_list_the_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let path = exported_mlp(dir.path());
    predict_fails(
        &path,
        &["--model-options", "tensorflow.outputs=probabilities"],
        &["tensorflow.outputs", "`probabilities`", "the nodes nothing consumes are: logits"],
    );
    predict_fails(
        &path,
        &["--model-options", "tensorflow.inputs=images"],
        &["tensorflow.inputs", "`images`", "its placeholders are: input"],
    );
    // Output indices from an option reach TensorFlow's C API, which indexes with them
    // unchecked: a negative or past-the-end one is refused before it gets there.
    predict_fails(
        &path,
        &["--model-options", "tensorflow.outputs=logits:-1"],
        &["tensorflow.outputs", "`-1` is not an output index"],
    );
    predict_fails(
        &path,
        &["--model-options", "tensorflow.outputs=logits:7"],
        &["tensorflow.outputs", "has 1 outputs; there is no output 7"],
    );
    predict_fails(
        &path,
        &["--model-options", "tensorflow.outputs=logits:99999999999"],
        &["tensorflow.outputs", "output index 99999999999 is too large"],
    );
    // Not a GraphDef at all.
    let junk = dir.path().join("junk.pb");
    std::fs::write(&junk, b"\xff\xff\xff\xff not protobuf").unwrap();
    predict_fails(&junk, &[], &["not a TensorFlow GraphDef"]);
}

#[test]
fn bench_runs_on_tensorflow_with_every_option() {
    for (mode, onednn) in [("per-thread", "--onednn"), ("shared", "")] {
        let mut cmd = thrum();
        cmd.args([
            "bench",
            "-e",
            "tensorflow",
            "-p",
            "zoo:mlp",
            "-t",
            "2",
            "-c",
            "100",
            "-w",
            "5",
            "-q",
            "--json",
            "-",
        ])
        .args(["--intra-op-threads", "1", "--inter-op-threads", "1", "--predictor", mode]);
        if !onednn.is_empty() {
            cmd.arg(onednn);
        }
        let out = cmd.assert().success().get_output().stdout.clone();
        let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(report["results"]["calls"], 100, "{mode}");
        assert_eq!(report["threads"]["engine"]["intra_op"], 1, "{mode}: {}", report["threads"]);
        // The inter-op pool runs every call in flight: never fewer threads than usable cores.
        let cores = std::thread::available_parallelism().unwrap().get() as u64;
        assert_eq!(
            report["threads"]["engine"]["inter_op"],
            cores.max(1),
            "{mode}: {}",
            report["threads"]
        );
    }
}

/// Per-thread predictors share the model's one session (TF_SessionRun is thread-safe), so
/// eight of them, or eight threads on the shared predictor, stay within 1.15× of one.
#[test]
fn eight_predictors_share_one_session() {
    for mode in ["per-thread", "shared"] {
        let steps: Vec<f64> = common::memory_report_steps(&[
            "-e",
            "tensorflow",
            "-p",
            "zoo:resnet50",
            "--predictor",
            mode,
        ])
        .iter()
        .map(|s| s["rss_mib"].as_f64().unwrap())
        .collect();
        let ratio = steps[steps.len() - 1] / steps[0];
        eprintln!("{mode}: RSS {steps:?} MiB, 8 vs 1: {ratio:.3}x");
        assert!(ratio <= 1.15, "{mode}: 8 predictors use {ratio:.3}x the memory of one");
    }
}

#[test]
fn serve_serves_a_savedmodel_folder_as_kserve_mounts_it() {
    let serving = common::serve(&[
        "--model-dir",
        reference().join("saved").to_str().unwrap(),
        "--model-name",
        "ref",
        "-e",
        "tensorflow",
    ]);
    let text = ureq::get(format!("http://{}/v2/models/ref", serving.http))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    let inputs: Vec<&str> =
        meta["inputs"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(inputs, ["features", "ids"], "{meta}");
    assert_eq!(meta["platform"], "tensorflow_savedmodel", "{meta}");
}

/// Triton's TensorFlow layouts served as they are: `1/model.savedmodel/` and
/// `1/model.graphdef`, each named and shaped by its config.pbtxt, answer what the same model
/// given with -p answers.
#[test]
fn triton_savedmodel_and_graphdef_folders_serve_as_they_are() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    copy_dir(&reference().join("saved"), &repo.join("ref/1/model.savedmodel"));
    std::fs::write(
        repo.join("ref/config.pbtxt"),
        r#"platform: "tensorflow_savedmodel"
max_batch_size: 4
input [ { name: "features" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "ids" data_type: TYPE_INT32 dims: [ ] } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 3 ] } ]
"#,
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("mlp/1")).unwrap();
    exported_mlp(work.path());
    std::fs::rename(work.path().join("mlp.pb"), repo.join("mlp/1/model.graphdef")).unwrap();
    std::fs::write(
        repo.join("mlp/config.pbtxt"),
        r#"platform: "tensorflow_graphdef"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 64 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] } ]
"#,
    )
    .unwrap();
    let triton = common::serve(&["--model-repository", repo.to_str().unwrap()]);
    let features = common::io::read_npy(&reference().join("inputs/features.npy")).unwrap();
    let ids = common::io::read_npy(&reference().join("inputs/ids.npy")).unwrap();
    let got = common::infer_json(&triton.http, "ref", &[("features", &features), ("ids", &ids)]);
    let expected = common::io::read_npy(&reference().join("expected/scores.npy")).unwrap();
    assert_eq!(got["scores"], expected.to_f64_vec().unwrap(), "the SavedModel folder");
    // The graphdef against the same file given with -p on the same engine.
    exported_mlp(work.path());
    let plain =
        common::serve(&["-e", "tensorflow", "-p", work.path().join("mlp.pb").to_str().unwrap()]);
    let x = thrum::Tensor::from_vec(
        vec![2, 64],
        (0..128).map(|i| i as f32 / 64.0 - 1.0).collect::<Vec<_>>(),
    )
    .unwrap();
    let a = common::infer_json(&triton.http, "mlp", &[("input", &x)]);
    let b = common::infer_json(&plain.http, "mlp", &[("input", &x)]);
    assert_eq!(a.keys().collect::<Vec<_>>(), ["logits"]);
    assert_eq!(a["logits"], b.values().next().unwrap().clone());
}
