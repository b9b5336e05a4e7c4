//! `thrum quantize`: the real EfficientNet-Lite0 quantized to int8 on real photographs, judged
//! by ONNX Runtime's Python API against the fp32 model and against what ONNX Runtime's own
//! `quantize_static` makes of the same model and calibration set; every calibration method on
//! a small model; and bad input, each with its message. And the `precision` option: int8 on
//! the engines that run quantized models, and every refusal naming the engine, the CPU and
//! what would work.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::path::{Path, PathBuf};

use common::{io, json_of, predict_npy, thrum, venv_python};
use thrum_testkit::require_engine;

fn testdata(path: &str) -> PathBuf {
    let path = thrum::config::thrum_home().join("testdata").join(path);
    assert!(
        path.exists(),
        "{} missing: run `bash scripts/install-test-data.sh` (the README's test command does)",
        path.display()
    );
    path
}

fn failure(cmd: &mut assert_cmd::Command) -> (i32, String) {
    let out = cmd.assert().failure().get_output().clone();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn script(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/quant_reference.py");
    let out = std::process::Command::new(venv_python("venv-image"))
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The JSON is the last thing printed (ONNX Runtime's tools may log before it).
    let text = String::from_utf8_lossy(&out.stdout);
    let start = if text.starts_with('{') { 0 } else { text.rfind("\n{").map_or(0, |i| i + 1) };
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Decisions per operator in a report: `decision op` → count.
fn decisions(report: &serde_json::Value) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for n in report["report"]["nodes"].as_array().unwrap() {
        let key = format!("{} {}", n["decision"].as_str().unwrap(), n["op_type"].as_str().unwrap());
        *out.entry(key).or_default() += 1;
    }
    out
}

#[test]
fn quantized_efficientnet_lite0_agrees_with_fp32_as_well_as_onnx_runtimes_own_quantizer() {
    require_engine!("ort");
    let model = thrum::zoo::find_pretrained("efficientnet-lite0").unwrap();
    assert!(
        model.is_installed(),
        "zoo:efficientnet-lite0 is not installed: run `thrum zoo install efficientnet-lite0` \
         (the README's test command does)"
    );
    let calib = testdata("quant/calib");
    let eval = testdata("quant/eval");
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("lite0-thrum.onnx");
    let theirs = dir.path().join("lite0-ort.onnx");
    // Quantizes Lite0 on 40 calibration crops into `out` with `extra` arguments; the report.
    let quantize = |out: &Path, extra: &[&str]| -> serde_json::Value {
        let report = dir.path().join("report.json");
        thrum()
            .args(["quantize", "-e", "ort", "-p", "zoo:efficientnet-lite0", "--samples", "40"])
            .arg("--calibration-images")
            .arg(&calib)
            .args(extra)
            .arg("-o")
            .arg(out)
            .arg("--json")
            .arg(&report)
            .assert()
            .success();
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
    };
    let report = quantize(&ours, &[]);
    assert_eq!(report["calibration"]["samples"], 40, "{report:#}");
    let d = decisions(&report);
    assert_eq!(d["quantized Conv"], 49, "{d:?}");
    assert_eq!(d["folded BatchNormalization"], 49, "{d:?}");
    assert_eq!(d["removed Clip"], 33, "{d:?}");
    assert_eq!(d["quantized Add"], 9, "{d:?}");
    assert_eq!(d["quantized Gemm"], 1, "{d:?}");
    assert!(!d.keys().any(|k| k.starts_with("fp32")), "{d:?}");
    let after = report["report"]["bytes_after"].as_f64().unwrap();
    let before = report["report"]["bytes_before"].as_f64().unwrap();
    assert!(after < before * 0.3, "int8 weights: {before} → {after} bytes");

    // The fp32 model the zoo wrote, to give ONNX Runtime's quantizer the same graph.
    let fp32 = thrum::model_source(
        "zoo:efficientnet-lite0",
        thrum::registry().get("ort").unwrap().as_ref(),
    )
    .unwrap();
    let thrum::ModelSource::Path(fp32) = fp32 else { panic!("the zoo writes a file") };
    let recipe = ["256", "224", "0.4980392", "0.5019608"];
    let peer = script(&[
        "peer".as_ref(),
        fp32.as_os_str(),
        theirs.as_os_str(),
        recipe[0].as_ref(),
        recipe[1].as_ref(),
        recipe[2].as_ref(),
        recipe[3].as_ref(),
        calib.as_os_str(),
        "40".as_ref(),
    ]);
    assert_eq!(peer["samples"], 40);
    // The first depthwise convolution left in fp32. ONNX Runtime quantizes the float weight of
    // a Conv that reads a DequantizeLinear by itself (per tensor: on this layer's folded batch
    // norm that costs a quarter of top-1 agreement); thrum's model must keep it in fp32.
    let excluded = dir.path().join("lite0-conv1-fp32.onnx");
    let r = quantize(&excluded, &["--exclude-nodes", "conv_1"]);
    assert_eq!(r["report"]["fp32_barriers"], 1, "{r:#}");
    let kept = script(&["optimized".as_ref(), excluded.as_os_str(), "conv_1".as_ref()]);
    assert_eq!(kept["conv_1"]["op_type"], "Conv", "{kept:#}");
    assert_eq!(kept["conv_1"]["float_weight"], true, "ONNX Runtime quantized it: {kept:#}");
    let judged = script(&[
        "evaluate".as_ref(),
        recipe[0].as_ref(),
        recipe[1].as_ref(),
        recipe[2].as_ref(),
        recipe[3].as_ref(),
        eval.as_os_str(),
        "1".as_ref(),
        fp32.as_os_str(),
        ours.as_os_str(),
        theirs.as_os_str(),
        excluded.as_os_str(),
    ]);
    let models = judged["models"].as_array().unwrap();
    assert!(judged["samples"].as_u64().unwrap() >= 150, "{judged:#}");
    let (thrum_int8, ort_int8) = (&models[1], &models[2]);
    let top1 = |m: &serde_json::Value| m["top1_agreement"].as_f64().unwrap();
    let top5 = |m: &serde_json::Value| m["top5_agreement"].as_f64().unwrap();
    // At least as close to fp32 as ONNX Runtime's quantizer, within two images in ~190.
    assert!(
        top1(thrum_int8) >= top1(ort_int8) - 0.011,
        "top-1 agreement with fp32: thrum {:.3}, ONNX Runtime's quantize_static {:.3}\n{judged:#}",
        top1(thrum_int8),
        top1(ort_int8)
    );
    let cosine = |m: &serde_json::Value| m["mean_logit_cosine"].as_f64().unwrap();
    assert!(cosine(thrum_int8) >= cosine(ort_int8) - 0.005, "{judged:#}");
    // Top-5 is close to the peer's, not above it on this set (0.91 against 0.93 measured on an
    // AVX2 CPU): a floor, with the comparison in docs/performance.md.
    assert!(top5(thrum_int8) >= 0.88 && top5(thrum_int8) >= top5(ort_int8) - 0.04, "{judged:#}");
    // A layer put back in fp32 does not lose agreement (it lost 21 points of 100 when ONNX
    // Runtime quantized it per tensor; within two images of ~190 of the all-int8 model).
    assert!(top1(&models[3]) >= top1(thrum_int8) - 0.011, "{judged:#}");

    // thrum's engines run it: ONNX Runtime fuses the QDQ pairs, tract runs them as they are;
    // both give the same classes on a real photograph's tensor.
    let x = dir.path().join("x.npy");
    let photo = std::fs::read(testdata("images/chelsea.png")).unwrap();
    let loaded = thrum::registry()
        .get("tract")
        .unwrap()
        .load(&thrum::ModelSource::path(&ours), &thrum::Options::default())
        .unwrap();
    let t = thrum::ModelRef::parse("zoo:efficientnet-lite0")
        .unwrap()
        .image_transform(&loaded, None)
        .unwrap()
        .tensor(&photo)
        .unwrap();
    let mut shape = vec![1];
    shape.extend_from_slice(t.shape());
    let t = thrum::Tensor::from_vec(shape, t.as_slice::<f32>().unwrap().to_vec()).unwrap();
    io::write_npy(&x, &t).unwrap();
    let ours = ours.to_str().unwrap();
    let argmax = |t: &thrum::Tensor| {
        let v = t.as_slice::<f32>().unwrap();
        (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
    };
    let by_ort = predict_npy("ort", ours, &x, &dir.path().join("ort.npy"));
    let by_tract = predict_npy("tract", ours, &x, &dir.path().join("tract.npy"));
    let by_fp32 = predict_npy("ort", "zoo:efficientnet-lite0", &x, &dir.path().join("fp32.npy"));
    // Chelsea is an Egyptian cat (285) to fp32, whose next guess is a tiger cat (282): int8
    // keeps fp32's class among its first five.
    let top5 = |t: &thrum::Tensor| {
        let v = t.as_slice::<f32>().unwrap();
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
        order.truncate(5);
        order
    };
    assert!(top5(&by_ort).contains(&argmax(&by_fp32)), "{:?} {}", top5(&by_ort), argmax(&by_fp32));
    assert_eq!(argmax(&by_tract), argmax(&by_ort), "tract and ONNX Runtime on the int8 model");
}

#[test]
fn every_calibration_method_quantizes_a_small_model_that_both_engines_run() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let input: Vec<f32> = (0..64).map(|i| ((i * 37 % 64) as f32 / 32.0) - 1.0).collect();
    io::write_npy(&x, &thrum::Tensor::from_vec(vec![1, 64], input).unwrap()).unwrap();
    let fp32 = predict_npy("tract", "zoo:mlp", &x, &dir.path().join("fp32.npy"));
    let fp32 = fp32.as_slice::<f32>().unwrap().to_vec();
    let scale = fp32.iter().fold(0f32, |m, v| m.max(v.abs()));
    for method in ["minmax", "percentile", "entropy"] {
        let out = dir.path().join(format!("mlp-{method}.onnx"));
        let json = thrum()
            .args(["quantize", "-e", "tract", "-p", "zoo:mlp", "--samples", "16", "--json", "-"])
            .args(["--method", method, "-o"])
            .arg(&out)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let d = decisions(&report);
        assert_eq!(d["quantized Gemm"], 3, "{method}: {d:?}");
        assert_eq!(d["removed Relu"], 2, "{method}: {d:?}");
        assert_eq!(report["calibration"]["passes"], if method == "minmax" { 1 } else { 2 });
        let out = out.to_str().unwrap();
        for engine in ["tract", "ort"] {
            if engine == "ort" && !thrum_testkit::engine_under_test("ort", module_path!()) {
                continue;
            }
            let y = predict_npy(engine, out, &x, &dir.path().join(format!("{engine}.npy")));
            let y = y.as_slice::<f32>().unwrap();
            let worst = y.iter().zip(&fp32).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(
                worst <= 0.1 * scale,
                "{method} on {engine}: max |int8 − fp32| {worst} against outputs up to {scale}"
            );
        }
    }
}

/// `--format qoperator`: ResNet-18's convolutions as standard `QLinearConv` nodes (the form
/// tract runs on its integer kernels), run by ONNX Runtime (which checks the graph) with the
/// outputs of the QDQ model (which it fuses into the same kernels), and by tract, both
/// agreeing with fp32.
#[test]
fn qoperator_format_writes_qlinearconv_that_onnx_runtime_and_tract_run() {
    require_engine!("ort");
    let dir = tempfile::tempdir().unwrap();
    let quantize = |format: &str| {
        let out = dir.path().join(format!("r18-{format}.onnx"));
        let json = thrum()
            .args(["quantize", "-e", "ort", "-p", "zoo:resnet18", "--samples", "4"])
            .args(["--per-tensor", "--format", format, "--json", "-", "-o"])
            .arg(&out)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        (out, serde_json::from_slice::<serde_json::Value>(&json).unwrap())
    };
    let (out, report) = quantize("qoperator");
    let (qdq, _) = quantize("qdq");
    assert_eq!(report["report"]["options"]["format"], "qoperator", "{report}");
    // Every Conv but none: ResNet-18's 20 convolutions all feed a quantized tensor.
    assert_eq!(report["report"]["qlinear_convs"], 20, "{report}");
    let x = dir.path().join("x.npy");
    let values: Vec<f32> =
        (0..3 * 224 * 224).map(|i| ((i * 7919 % 2000) as f32 / 1000.0) - 1.0).collect();
    io::write_npy(&x, &thrum::Tensor::from_vec(vec![1, 3, 224, 224], values).unwrap()).unwrap();
    let fp32 = predict_npy("ort", "zoo:resnet18", &x, &dir.path().join("fp32.npy"));
    let fp32 = fp32.as_slice::<f32>().unwrap().to_vec();
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
            * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    };
    let on_ort = predict_npy("ort", qdq.to_str().unwrap(), &x, &dir.path().join("qdq.npy"));
    let on_ort = on_ort.as_slice::<f32>().unwrap().to_vec();
    for engine in ["ort", "tract"] {
        let y = predict_npy(
            engine,
            out.to_str().unwrap(),
            &x,
            &dir.path().join(format!("{engine}.npy")),
        );
        let y = y.as_slice::<f32>().unwrap();
        assert_eq!(argmax(y), argmax(&fp32), "{engine}");
        assert!(cosine(y, &fp32) > 0.999, "{engine}: cosine {}", cosine(y, &fp32));
        if engine == "ort" {
            let worst = y.iter().zip(&on_ort).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-5, "QOperator against QDQ on ONNX Runtime: {worst}");
        }
    }
    // `thrum compare --precision int8` quantizes for each engine in the form it runs fastest:
    // tract gets QLinearConv (its integer kernels, which it says it ran), ort QDQ.
    let report = json_of(
        thrum()
            .env("TMPDIR", dir.path())
            .args(["compare", "-p", "zoo:resnet18", "-e", "tract,ort", "--precision", "int8"])
            .args(["--samples", "4", "--target", "0.01", "--json", "-"]),
    );
    let row = |engine: &str| {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["engine"] == engine && r["precision"] == "int8")
            .unwrap_or_else(|| panic!("no {engine} int8 row: {report:#}"))
            .clone()
    };
    let tract = row("tract");
    let ran = tract["ran"].as_str().unwrap_or_default();
    assert!(ran.contains("tract runs QLinearConv ×20 as integer operators"), "{tract:#}");
    assert!(row("ort")["mean_cosine"].as_f64().unwrap() > 0.99, "{report:#}");
    // The temporary int8 models are gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("thrum-compare-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bad_calibration_data_and_models_are_refused_with_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    // --format qoperator rewrites static QDQ convolutions: not with --dynamic.
    let (code, err) = failure(
        thrum()
            .args(["quantize", "-p", "zoo:mlp", "--dynamic", "--format", "qoperator", "-o"])
            .arg(&out),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--format") && err.contains("--dynamic"), "{err}");
    // --for-engine picks the layout: not with --per-tensor; an engine that does not exist is
    // named.
    let (code, err) = failure(
        thrum()
            .args(["quantize", "-p", "zoo:mlp", "--for-engine", "tract", "--per-tensor", "-o"])
            .arg(&out),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--for-engine") && err.contains("--per-tensor"), "{err}");
    let (_, err) = failure(
        thrum().args(["quantize", "-p", "zoo:mlp", "--for-engine", "nosuch", "-o"]).arg(&out),
    );
    assert!(err.contains("nosuch"), "{err}");
    let (_, err) = failure(
        thrum().args(["quantize", "-p", "zoo:mlp", "--for-engine", "torch", "-o"]).arg(&out),
    );
    assert!(err.contains("runs no quantized ONNX model") && err.contains("tract, ort"), "{err}");
    // A node name --exclude-nodes does not find is refused, not ignored.
    let (_, err) = failure(
        thrum().args(["quantize", "-p", "zoo:mlp", "--exclude-nodes", "nosuch", "-o"]).arg(&out),
    );
    assert!(err.contains("has no node `nosuch`") && err.contains("Gemm"), "{err}");
    assert!(!out.exists(), "nothing is written on failure");
    // A --json report that cannot be written fails the command, and takes the model with it.
    let (_, err) = failure(
        thrum()
            .args(["quantize", "-p", "zoo:mlp", "--samples", "4", "--json"])
            .arg(dir.path().join("no-such-dir/r.json"))
            .arg("-o")
            .arg(&out),
    );
    assert!(err.contains("r.json"), "{err}");
    assert!(!out.exists(), "nothing is written on failure");
    // An empty calibration set.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, err) = failure(
        thrum()
            .args(["quantize", "-e", "tract", "-p", "zoo:mlp", "--calibration-npy"])
            .arg(&empty)
            .arg("-o")
            .arg(&out),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("an empty calibration set") && err.contains("at least one sample"),
        "{err}"
    );
    // A sample whose shape does not fit the model.
    let npy = dir.path().join("npy");
    std::fs::create_dir(&npy).unwrap();
    io::write_npy(&npy.join("0.npy"), &thrum::Tensor::from_vec(vec![1, 3], vec![0f32; 3]).unwrap())
        .unwrap();
    let (code, err) = failure(
        thrum()
            .args(["quantize", "-e", "tract", "-p", "zoo:mlp", "--calibration-npy"])
            .arg(&npy)
            .arg("-o")
            .arg(&out),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sample 1") && err.contains("input f32 [N,64]"), "{err}");
    // A dtype that does not fit.
    io::write_npy(
        &npy.join("0.npy"),
        &thrum::Tensor::from_vec(vec![1, 64], vec![0i64; 64]).unwrap(),
    )
    .unwrap();
    let (_, err) = failure(
        thrum()
            .args(["quantize", "-e", "tract", "-p", "zoo:mlp", "--calibration-npy"])
            .arg(&npy)
            .arg("-o")
            .arg(&out),
    );
    assert!(err.contains("sample 1") && err.contains("dtype"), "{err}");
    // Images for a model that does not take images.
    let (_, err) = failure(
        thrum()
            .args(["quantize", "-e", "tract", "-p", "zoo:mlp", "--calibration-images"])
            .arg(testdata("images"))
            .arg("-o")
            .arg(&out),
    );
    assert!(err.contains("image"), "{err}");
    // A model with nothing to quantize.
    let identity = dir.path().join("identity.onnx");
    std::fs::write(&identity, thrum::zoo::onnx::identity(&[("x", thrum::DType::F32)], 4)).unwrap();
    let (code, err) = failure(
        thrum()
            .args(["quantize", "-e", "tract", "--samples", "2", "-p"])
            .arg(&identity)
            .arg("-o")
            .arg(&out),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has nothing to quantize") && err.contains("Identity"), "{err}");
    // Not ONNX, garbage, a wrong output name, an unknown method.
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\x00\x01 not protobuf \xff\xff").unwrap();
    let (_, err) =
        failure(thrum().args(["quantize", "-e", "tract", "-p"]).arg(&garbage).arg("-o").arg(&out));
    assert!(err.contains("garbage"), "{err}");
    let (_, err) = failure(thrum().args(["quantize", "-p", "model.pt", "-o"]).arg(&out));
    assert!(err.contains("is not an ONNX file"), "{err}");
    let (_, err) = failure(thrum().args(["quantize", "-p", "zoo:mlp", "-o", "out.bin"]));
    assert!(err.contains("expected a path ending in .onnx"), "{err}");
    let (_, err) =
        failure(thrum().args(["quantize", "-p", "zoo:mlp", "--method", "kl", "-o"]).arg(&out));
    assert!(err.contains("minmax, percentile or entropy"), "{err}");
    let (_, err) =
        failure(thrum().args(["quantize", "-p", "zoo:mlp", "--op-types", "LSTM", "-o"]).arg(&out));
    assert!(err.contains("does not quantize `LSTM`"), "{err}");
    // An accuracy target that is not a fraction; evaluation data without a target; an empty
    // evaluation set.
    let (code, err) = failure(
        thrum().args(["quantize", "-p", "zoo:mlp", "--min-accuracy", "1.5", "-o"]).arg(&out),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--min-accuracy 1.5") && err.contains("above 0 and at most 1"), "{err}");
    let (code, err) = failure(
        thrum().args(["quantize", "-p", "zoo:mlp", "--eval-npy"]).arg(&npy).arg("-o").arg(&out),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--min-accuracy"), "{err}");
    let (code, err) = failure(
        thrum()
            .args(["quantize", "-e", "tract", "-p", "zoo:mlp", "--samples", "2"])
            .args(["--min-accuracy", "0.99", "--eval-npy"])
            .arg(&empty)
            .arg("-o")
            .arg(&out),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--eval-npy") && err.contains("0 .npy samples"), "{err}");
    assert!(!out.exists(), "no output is written on failure");
}

#[test]
fn the_accuracy_search_on_a_small_model_keeps_what_it_measured() {
    // zoo:mlp's three Gemms on seeded inputs, judged by mean cosine on tract: the baseline meets
    // a low target at once; a target of 1 (bit-exact) is never met by a quantized model, so the
    // search tries each Gemm alone, then accumulates them until nothing would be left to
    // quantize, and writes the best it measured; a budget of one model stops it sooner.
    let dir = tempfile::tempdir().unwrap();
    let run = |target: &str, trials: &str| -> (bool, serde_json::Value, String) {
        let out = dir.path().join(format!("mlp-{target}-{trials}.onnx"));
        let json = dir.path().join("report.json");
        let output = thrum()
            .args(["quantize", "-e", "tract", "-p", "zoo:mlp", "--samples", "8"])
            .args(["--min-accuracy", target, "--eval-samples", "8", "--metric", "cosine"])
            .args(["--max-trials", trials, "-o"])
            .arg(&out)
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        assert!(out.exists(), "the model is written whether or not the target holds");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        (output.status.success(), report, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let value = |t: &serde_json::Value| t["score"]["value"].as_f64().unwrap();
    let (ok, r, err) = run("0.5", "10");
    assert!(ok, "{err}");
    let search = &r["fallback"]["search"];
    assert_eq!(search["stop"], "met", "{r:#}");
    assert_eq!(search["measured"], 1, "{r:#}");
    assert_eq!(r["fallback"]["candidates"], 3, "{r:#}");
    assert!(search["chosen"]["fp32_nodes"].as_array().unwrap().is_empty(), "{r:#}");

    let (ok, r, err) = run("1", "10");
    assert!(!ok);
    assert!(
        err.contains("no quantized model kept mean cosine to fp32 ≥ 1.0000")
            && err.contains("was written to"),
        "{err}"
    );
    let search = &r["fallback"]["search"];
    assert_eq!(search["stop"], "exhausted", "{r:#}");
    assert_eq!(search["singles"].as_array().unwrap().len(), 3, "{r:#}");
    // Two of the three in fp32; all three would leave nothing quantized.
    let cumulative = search["cumulative"].as_array().unwrap();
    assert_eq!(cumulative.len(), 1, "{r:#}");
    assert_eq!(cumulative[0]["fp32_nodes"].as_array().unwrap().len(), 2, "{r:#}");
    assert_eq!(search["measured"], 5, "{r:#}");
    // The model written is the best measured, and its report says which nodes the search left
    // in fp32.
    let best = std::iter::once(&search["baseline"])
        .chain(search["singles"].as_array().unwrap())
        .chain(cumulative)
        .map(value)
        .fold(f64::MIN, f64::max);
    assert_eq!(value(&search["chosen"]), best, "{r:#}");
    let chosen: Vec<&str> = search["chosen"]["fp32_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(!chosen.is_empty(), "a Gemm in fp32 is closer to fp32 than none: {r:#}");
    for n in r["report"]["nodes"].as_array().unwrap() {
        let searched = chosen.contains(&n["name"].as_str().unwrap());
        assert_eq!(n["decision"] == "fp32" && n["op_type"] == "Gemm", searched, "{n}");
        if searched {
            assert!(n["detail"].as_str().unwrap().contains("--min-accuracy"), "{n}");
        }
    }

    let (ok, r, _) = run("1", "1");
    assert!(!ok);
    let search = &r["fallback"]["search"];
    assert_eq!(search["stop"], "budget", "{r:#}");
    assert_eq!(search["measured"], 2, "{r:#}");
    assert_eq!(
        value(&search["chosen"]),
        value(&search["baseline"]).max(value(&search["singles"][0])),
        "{r:#}"
    );
}

/// A `--model-options` run of `thrum predict` that must fail: its exit status and message.
fn refused(engine: &str, model: &str, options: &str, emulate: bool) -> (i32, String) {
    let mut cmd = thrum();
    cmd.args(["predict", "-e", engine, "-p", model, "--model-options", options]);
    if emulate {
        cmd.env(thrum::precision::EMULATE_VAR, "1");
    }
    failure(&mut cmd)
}

#[test]
fn precision_int8_runs_quantized_models_and_the_header_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let int8 = dir.path().join("mlp-int8.onnx");
    thrum()
        .args(["quantize", "-e", "tract", "-p", "zoo:mlp", "--samples", "8", "-o"])
        .arg(&int8)
        .assert()
        .success();
    let int8 = int8.to_str().unwrap();
    let mut engines = vec!["tract"];
    if thrum_testkit::engine_under_test("ort", module_path!()) {
        engines.push("ort");
    }
    for &engine in &engines {
        thrum()
            .args(["predict", "-e", engine, "-p", int8, "--model-options", "precision=int8"])
            .assert()
            .success();
        let (code, err) = refused(engine, "zoo:mlp", "precision=int8", false);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!("engine `{engine}` does not support precision int8"))
                && err.contains("is not quantized")
                && err.contains("thrum quantize"),
            "{err}"
        );
    }
    // The bench header and report name the CPU's features and the precision.
    let out = thrum()
        .args(["bench", "-e", "tract", "-p", int8, "--duration", "1", "--model-options"])
        .arg("precision=int8")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8_lossy(&out);
    let cpu = thrum::CpuFeatures::detect();
    assert!(out.contains(&format!("cpu model        {}", cpu.summary())), "{out}");
    assert!(out.contains("precision        int8: tract runs the model's"), "{out}");
    // ort says which integer kernels its optimised graph runs (the QDQ pairs of zoo:mlp's
    // Gemms fused away), in the header and the JSON.
    if engines.contains(&"ort") {
        let json = thrum()
            .args(["bench", "-e", "ort", "-p", int8, "--duration", "0.5", "--json", "-", "-q"])
            .args(["--model-options", "precision=int8"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let ran = report["engine"]["precision_run"].as_str().unwrap();
        assert!(ran.starts_with("ONNX Runtime's optimised graph: integer kernels "), "{ran}");
        let fp32 = thrum()
            .args(["bench", "-e", "ort", "-p", "zoo:mlp", "--duration", "0.2", "--json", "-", "-q"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let fp32: serde_json::Value = serde_json::from_slice(&fp32).unwrap();
        assert!(fp32["engine"]["precision_run"].is_null(), "{fp32}");
    }
    let engines = thrum().arg("engines").assert().success().get_output().stdout.clone();
    assert!(String::from_utf8_lossy(&engines).contains(&cpu.summary()));
    // The int8 model given to engines that cannot run it: each says why, and what would.
    let x = dir.path().join("x.npy");
    io::write_npy(&x, &thrum::Tensor::from_vec(vec![1, 64], vec![0f32; 64]).unwrap()).unwrap();
    for (engine, says) in [
        ("torch", "runs TorchScript"),
        ("tensorflow", "does not support precision int8"),
        ("mxnet", "does not support precision int8"),
    ] {
        if !thrum_testkit::engine_under_test(engine, module_path!()) {
            continue;
        }
        let (code, err) = failure(
            thrum()
                .args(["predict", "-e", engine, "-p", "zoo:mlp", "--int8-model", int8])
                .args(["--model-options", "precision=int8", "-i"])
                .arg(&x),
        );
        assert_eq!(code, 2, "{engine}: {err}");
        assert!(err.contains(&format!("`{engine}`")) && err.contains(says), "{engine}: {err}");
        assert!(err.contains("ort") || err.contains("ONNX"), "{engine}: what would work: {err}");
    }
}

#[test]
fn precisions_an_engine_or_the_cpu_lacks_are_refused_with_what_would_work() {
    let cpu = thrum::CpuFeatures::detect();
    require_engine!("ort");
    let (code, err) = refused("ort", "zoo:mlp", "precision=bf16", false);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("CPU execution provider has no bf16 kernels") && err.contains("openvino"),
        "{err}"
    );
    let (_, err) = refused("tract", "zoo:mlp", "precision=fp16", false);
    assert!(err.contains("tract computes in f32 on x86"), "{err}");
    // bf16 on OpenVINO: refused on a CPU without the units, naming it; stated as OpenVINO's
    // precision hint where it has them (or when emulation is asked for).
    let openvino = "precision=bf16,ort.execution_providers=openvino";
    if cpu.bf16() {
        thrum()
            .args(["predict", "-e", "ort", "-p", "zoo:mlp", "--model-options", openvino])
            .assert()
            .success();
    } else {
        let (code, err) = refused("ort", "zoo:mlp", openvino, false);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&cpu.summary()) && err.contains("lacks AVX512-BF16 or AMX-BF16"),
            "{err}"
        );
        thrum()
            .args(["predict", "-e", "ort", "-p", "zoo:mlp", "--model-options", openvino])
            .env(thrum::precision::EMULATE_VAR, "1")
            .assert()
            .success();
    }
    if !cpu.avx512_fp16 {
        let (_, err) =
            refused("ort", "zoo:mlp", "precision=fp16,ort.execution_providers=openvino", false);
        assert!(err.contains("lacks AVX512-FP16"), "{err}");
    }
    require_engine!("mxnet");
    for p in ["bf16", "int8"] {
        let (code, err) = refused("mxnet", "zoo:mlp", &format!("precision={p}"), false);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("MXNet 1.9's bf16 and int8 are its Python tools"), "{err}");
    }
    require_engine!("tensorflow");
    let (_, err) = refused("tensorflow", "zoo:mlp", "precision=int8", false);
    assert!(err.contains("thrum quantize") && err.contains("run it on ort"), "{err}");
    let (_, err) = refused("tensorflow", "zoo:mlp", "precision=bf16,onednn=false", true);
    assert!(err.contains("oneDNN's auto mixed precision"), "{err}");
    require_engine!("torch");
    let (_, err) = refused("torch", "zoo:mlp", "precision=int8", false);
    assert!(err.contains("torch.ao.quantization"), "{err}");
    // A traced TorchScript file holds its weights as graph constants, which module.to(bf16)
    // does not convert: said at load, after the CPU check.
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("resnet18.pt");
    thrum().args(["zoo", "export", "resnet18", "-o"]).arg(&pt).assert().success();
    let pt = pt.to_str().unwrap();
    if !cpu.bf16() {
        let (_, err) = refused("torch", pt, "precision=bf16", false);
        assert!(err.contains("lacks AVX512-BF16 or AMX-BF16"), "{err}");
    }
    let (code, err) = refused("torch", pt, "precision=bf16", true);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("holds its weights as constants of the TorchScript graph")
            && err.contains("zoo:NAME"),
        "{err}"
    );
}

/// The same zoo model as `zoo:NAME` runs bf16 on libtorch: thrum traces it in bf16 (weights,
/// inputs and arithmetic), and its outputs stay close to fp32's.
#[test]
fn torch_runs_a_zoo_model_traced_in_bf16() {
    require_engine!("torch");
    let mut cmd = thrum();
    cmd.args(["compare", "-p", "zoo:resnet18", "-e", "torch", "--precision", "bf16"]).args([
        "--samples",
        "4",
        "--metric",
        "cosine",
        "--target",
        "0.9",
        "--json",
        "-",
    ]);
    if !thrum::CpuFeatures::detect().bf16() {
        cmd.env(thrum::precision::EMULATE_VAR, "1");
    }
    let report = common::json_of(&mut cmd);
    let bf16 = &report["rows"][1];
    assert_eq!(bf16["precision"], "bf16", "{report:#}");
    assert!(bf16["refused"].is_null(), "{report:#}");
    let cosine = bf16["mean_cosine"].as_f64().unwrap();
    // bf16 keeps 8 bits of mantissa: close to fp32, and not identical to it.
    assert!((0.98..1.0).contains(&cosine), "{report:#}");
}

#[test]
fn compare_precision_reports_agreement_speed_and_pass_or_fail_per_engine() {
    require_engine!("ort");
    let run = |target: &str, metric: &str| {
        thrum()
            .args(["compare", "-p", "zoo:mlp", "-e", "tract,ort", "--precision", "int8,bf16"])
            .args(["--samples", "50", "--target", target, "--metric", metric, "--json", "-"])
            .assert()
    };
    // At 90 % every int8 row passes: exit 0, and the JSON has every engine × precision.
    let out = run("0.9", "auto").success().get_output().stdout.clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["metric"], "top1", "{report:#}");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{report:#}");
    for row in rows {
        let (engine, precision) =
            (row["engine"].as_str().unwrap(), row["precision"].as_str().unwrap());
        match precision {
            "fp32" => assert_eq!(row["top1_agreement"], 1.0),
            "int8" => {
                assert_eq!(row["samples"], 50);
                assert!(row["top1_agreement"].as_f64().unwrap() >= 0.9, "{row:#}");
                assert!(row["top5_agreement"].as_f64().unwrap() >= 0.99, "{row:#}");
                assert!(row["mean_cosine"].as_f64().unwrap() > 0.999, "{row:#}");
                assert!(row["speedup"].as_f64().unwrap() > 0.0 && row["pass"] == true, "{row:#}");
            }
            "bf16" => {
                assert!(
                    row["refused"].as_str().unwrap().contains(&format!("engine `{engine}`")),
                    "{row:#}"
                );
                assert!(row["pass"].is_null());
            }
            other => panic!("unexpected precision {other}"),
        }
    }
    // A target int8 cannot reach on any CPU (its outputs are never fp32's exactly; whether
    // one sample in 50 changes class depends on the CPU's kernels): exit 1 and the rows named.
    let err = run("1", "cosine").failure().code(1).get_output().stderr.clone();
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains("tract int8, ort int8 below the target: mean cosine under 100.0 % of fp32"),
        "{err}"
    );
    // Judged on real samples (.npy files) but calibrated on seeded ones: the report says so.
    let npy = tempfile::tempdir().unwrap();
    for k in 0..3 {
        let x = thrum::Tensor::from_vec(vec![1, 64], vec![0.25f32 * k as f32; 64]).unwrap();
        io::write_npy(&npy.path().join(format!("{k}.npy")), &x).unwrap();
    }
    let out = thrum()
        .args(["compare", "-p", "zoo:mlp", "-e", "tract", "--precision", "int8", "--npy"])
        .arg(npy.path())
        .args(["--target", "0.1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: int8 is calibrated on seeded inputs")
            && err.contains("--calibration-npy"),
        "{err}"
    );
}

/// `.npy` samples of a model with several inputs (the real all-MiniLM-L6-v2: input_ids,
/// attention_mask, token_type_ids) are folders, one per sample, holding INPUT.npy for each:
/// `thrum compare --precision int8` judges on them; a folder missing an input, or files where
/// folders are needed, is refused naming what was expected.
#[test]
fn npy_samples_of_a_model_with_several_inputs_are_folders() {
    require_engine!("ort");
    let model = thrum::zoo::find_pretrained("all-minilm-l6-v2").unwrap();
    assert!(model.is_installed(), "the test command installs all-minilm-l6-v2");
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples");
    // "[CLS] the weather is lovely today [SEP]" and "[CLS] he drove to the stadium [SEP]".
    let texts: [&[i64]; 2] =
        [&[101, 1996, 4633, 2003, 8403, 2651, 102], &[101, 2002, 5225, 2000, 1996, 3346, 102]];
    for (k, ids) in texts.iter().enumerate() {
        let folder = samples.join(format!("{k}"));
        std::fs::create_dir_all(&folder).unwrap();
        let n = ids.len();
        let tensor = |v: Vec<i64>| thrum::Tensor::from_vec(vec![1, n], v).unwrap();
        io::write_npy(&folder.join("input_ids.npy"), &tensor(ids.to_vec())).unwrap();
        io::write_npy(&folder.join("attention_mask.npy"), &tensor(vec![1; n])).unwrap();
        io::write_npy(&folder.join("token_type_ids.npy"), &tensor(vec![0; n])).unwrap();
    }
    let compare = |dir: &Path| {
        thrum()
            .args(["compare", "-p", "zoo:all-minilm-l6-v2", "-e", "ort", "--precision", "int8"])
            .arg("--npy")
            .arg(dir)
            .args(["--target", "0.9", "--json", "-"])
            .output()
            .unwrap()
    };
    let out = compare(&samples);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("2 .npy samples"), "{stdout}");
    // A folder without one of the inputs.
    std::fs::remove_file(samples.join("1").join("attention_mask.npy")).unwrap();
    let out = compare(&samples);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("has no `attention_mask.npy`")
            && err.contains("input_ids.npy, attention_mask.npy, token_type_ids.npy"),
        "{err}"
    );
    // Files, not folders, for a model with three inputs.
    let flat = dir.path().join("flat");
    std::fs::create_dir(&flat).unwrap();
    std::fs::copy(samples.join("0").join("input_ids.npy"), flat.join("0.npy")).unwrap();
    let out = compare(&flat);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no sample folders") && err.contains("3 inputs"), "{err}");
    // Both layouts at once: which was meant?
    let both = samples.join("extra.npy");
    std::fs::copy(flat.join("0.npy"), &both).unwrap();
    let out = compare(&samples);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("both .npy files and sample folders"), "{err}");
}

#[test]
fn dynamic_quantization_of_a_real_transformer_keeps_its_outputs() {
    require_engine!("ort");
    let model = thrum::zoo::find_pretrained("all-minilm-l6-v2").unwrap();
    assert!(
        model.is_installed(),
        "zoo:all-minilm-l6-v2 is not installed: run `thrum zoo install all-minilm-l6-v2` (the \
         README's test command does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("minilm-int8.onnx");
    let json = thrum()
        .args(["quantize", "-p", "zoo:all-minilm-l6-v2", "--dynamic", "--json", "-", "-o"])
        .arg(&out)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let d = decisions(&report);
    // The six layers' Q, K, V, output and two feed-forward projections; the attention's two
    // products of activations stay in fp32, and so do the embeddings (a Gather).
    assert_eq!(d["quantized MatMul"], 36, "{d:?}");
    assert_eq!(d["folded Transpose"], 36, "{d:?}");
    assert_eq!(d["fp32 MatMul"], 12, "{d:?}");
    assert!(report["calibration"].is_null(), "{report:#}");
    let cmp = thrum()
        .args(["compare", "-p", "zoo:all-minilm-l6-v2", "-e", "ort", "--precision", "int8"])
        .args(["--samples", "10", "--json", "-", "--int8-model"])
        .arg(&out)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let cmp: serde_json::Value = serde_json::from_slice(&cmp).unwrap();
    assert_eq!(cmp["metric"], "cosine");
    let int8 = &cmp["rows"][1];
    assert_eq!(int8["precision"], "int8");
    assert!(int8["mean_cosine"].as_f64().unwrap() >= 0.99, "{cmp:#}");
}
