//! The PyTorch engine through the `thrum` binary: `thrum engines`, zoo models as TorchScript,
//! cross-engine agreement, bench with every option, memory.
#![cfg(feature = "torch")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use common::thrum;

/// Stated tolerance: max |a − b| ≤ 1e-4 × max |b| over each output.
const TOLERANCE: f64 = 1e-4;

#[test]
fn engines_reports_libtorch_version_path_and_mkldnn() {
    let out = thrum().args(["engines", "--json"]).assert().success().get_output().stdout.clone();
    let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let torch = rows.as_array().unwrap().iter().find(|r| r["engine"] == "torch").unwrap();
    assert_eq!(torch["available"], true, "{torch}");
    assert_eq!(torch["version"], "2.13.0");
    assert!(torch["library"].as_str().unwrap().ends_with("libtorch_cpu.so"), "{torch}");
    assert!(torch.to_string().contains("mkldnn"), "{torch}");
}

/// `zoo:NAME` on torch is the TorchScript export of the same weights as the ONNX export tract
/// and ort run and the frozen graph tensorflow runs: every engine compiled in agrees within
/// the tolerance.
#[test]
fn zoo_models_agree_across_torch_tract_ort_and_tensorflow() {
    let dir = tempfile::tempdir().unwrap();
    let mut engines = vec!["tract"];
    if cfg!(feature = "ort") {
        engines.push("ort");
    }
    if cfg!(feature = "tensorflow") {
        engines.push("tensorflow");
    }
    for name in ["mlp", "resnet18", "resnet50", "transformer"] {
        let graph = thrum::zoo::find(name).unwrap().build(thrum::zoo::DEFAULT_SEED);
        let input = dir.path().join(format!("{name}-input.npy"));
        common::io::write_npy(&input, &thrum::zoo::sample_inputs(&graph.inputs, 2, 5).unwrap()[0])
            .unwrap();
        let model = format!("zoo:{name}");
        let torch = common::predict_npy(
            "torch",
            &model,
            &input,
            &dir.path().join(format!("{name}-torch.npy")),
        );
        for engine in &engines {
            let other = common::predict_npy(
                engine,
                &model,
                &input,
                &dir.path().join(format!("{name}-{engine}.npy")),
            );
            let diff = thrum_testkit::relative_difference(&torch, &other);
            eprintln!("{name}: torch vs {engine}: {diff:.2e}");
            assert!(diff <= TOLERANCE, "{name}: torch and {engine} differ by {diff:.2e}");
        }
    }
}

#[test]
fn zoo_export_writes_torchscript_with_its_spec_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.pt");
    thrum().args(["zoo", "export", "mlp", "-o"]).arg(&path).assert().success();
    assert!(path.is_file() && dir.path().join("mlp.spec.json").is_file());
    thrum()
        .args(["predict", "-e", "torch", "-p"])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicates::str::contains("[1, 10]"));
}

fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = thrum()
        .args(["bench", "-e", "torch", "-q", "--json", "-"])
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn bench_runs_on_torch_with_every_option() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench_json(&[
        "-p",
        "zoo:mlp",
        "-s",
        "(4,64)f",
        "-c",
        "40",
        "-w",
        "3",
        "-t",
        "2",
        "-l",
        "1",
        "--intra-op-threads",
        "1",
        "--inter-op-threads",
        "1",
        "--onednn",
        "--model-options",
        "torch.graph_optimizer=false",
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(report["engine"]["version"], "2.13.0");
    assert_eq!(report["results"]["calls"], 40);
    assert_eq!(report["results"]["samples"], 160);
    assert_eq!(report["threads"]["engine"]["intra_op"], 1);
    assert_eq!(report["threads"]["engine"]["inter_op"], 1);
    for mode in ["per-thread", "shared"] {
        let report =
            bench_json(&["-p", "zoo:mlp", "-b", "2", "-d", "0.3", "-t", "2", "--predictor", mode]);
        assert!(report["results"]["calls"].as_u64().unwrap() > 0, "{mode}: {report}");
    }
}

/// Predictors share the module's weights: RSS with 8 is at most 1.15× RSS with 1.
#[test]
fn memory_report_stays_flat_on_resnet50() {
    let steps = common::memory_report_steps(&["-e", "torch", "-p", "zoo:resnet50"]);
    let last = steps.last().unwrap();
    let ratio = last["ratio_to_first"].as_f64().unwrap();
    assert!(ratio <= 1.15, "RSS with 8 predictors is {ratio:.3}x that with 1");
}

/// Triton's TorchScript layout served as it is: `1/model.pt` with no spec file, its input
/// `INPUT__0` and output `OUTPUT__0` named, typed and shaped by config.pbtxt, answers what the
/// same model given with -p (and its spec file) answers.
#[test]
fn a_triton_torchscript_folder_serves_as_it_is() {
    let work = tempfile::tempdir().unwrap();
    let pt = work.path().join("mlp.pt");
    thrum().args(["zoo", "export", "mlp", "-o"]).arg(&pt).assert().success();
    let version = work.path().join("repo/mlp/1");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::copy(&pt, version.join("model.pt")).unwrap();
    std::fs::write(
        work.path().join("repo/mlp/config.pbtxt"),
        r#"platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 64 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 10 ] } ]
"#,
    )
    .unwrap();
    let triton = common::serve(&["--model-repository", work.path().join("repo").to_str().unwrap()]);
    let plain = common::serve(&["-e", "torch", "-p", pt.to_str().unwrap()]);
    let x = thrum::Tensor::from_vec(
        vec![3, 64],
        (0..192).map(|i| i as f32 / 96.0 - 1.0).collect::<Vec<_>>(),
    )
    .unwrap();
    let a = common::infer_json(&triton.http, "mlp", &[("INPUT__0", &x)]);
    let b = common::infer_json(&plain.http, "mlp", &[("input", &x)]);
    assert_eq!(a.keys().collect::<Vec<_>>(), ["OUTPUT__0"]);
    assert_eq!(a["OUTPUT__0"], b.values().next().unwrap().clone());
}
