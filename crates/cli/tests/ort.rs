//! The ONNX Runtime engine through the `thrum` binary: discovery and version errors (each in
//! its own process, since a process loads one ONNX Runtime), `thrum engines`, bench, memory.
#![cfg(feature = "ort")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use common::thrum;
use predicates::prelude::*;

fn testdata() -> std::path::PathBuf {
    thrum::config::thrum_home().join("testdata")
}

/// `thrum` with no ONNX Runtime to find: an empty THRUM_HOME and no library variables.
fn thrum_without_ort(home: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = thrum();
    cmd.env("THRUM_HOME", home).env_remove("ORT_DYLIB_PATH").env_remove("THRUM_ORT_LIBRARY_PATH");
    cmd
}

#[test]
fn a_missing_library_names_every_place_searched_and_the_install_command() {
    let home = tempfile::tempdir().unwrap();
    let engines = thrum_without_ort(home.path())
        .args(["engines", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows: serde_json::Value = serde_json::from_slice(&engines).unwrap();
    let ort = rows.as_array().unwrap().iter().find(|r| r["engine"] == "ort").unwrap();
    assert_eq!(ort["available"], false);
    let detail = ort["detail"].as_str().unwrap();
    for expected in [
        "option ort.library_path (not set)",
        "$THRUM_ORT_LIBRARY_PATH (not set)",
        "$ORT_DYLIB_PATH (not set)",
        "engines/ort` (no libonnxruntime.so*)",
        "thrum engines install ort",
    ] {
        assert!(detail.contains(expected), "missing `{expected}` in: {detail}");
    }
    thrum_without_ort(home.path())
        .args(["predict", "-e", "ort", "-p", "zoo:mlp"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("engine `ort` is not available: the ONNX Runtime library (libonnxruntime.so) was not found"));
}

#[test]
fn an_incompatible_version_is_named_with_its_path() {
    let old = testdata().join("ort-1.20.1/libonnxruntime.so.1.20.1");
    assert!(old.is_file(), "{} missing: run `bash scripts/install-test-data.sh`", old.display());
    thrum()
        .env("THRUM_ORT_LIBRARY_PATH", &old)
        .args(["predict", "-e", "ort", "-p", "zoo:mlp"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "`{}`: ONNX Runtime 1.20.1 is not compatible: thrum needs 1.24 or newer",
            old.display()
        )));
}

#[test]
fn a_library_that_is_not_onnx_runtime_is_refused() {
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).is_file())
    .expect("a libm to stand in for a wrong library");
    thrum()
        .env("THRUM_ORT_LIBRARY_PATH", libm)
        .args(["predict", "-e", "ort", "-p", "zoo:mlp"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "is not an ONNX Runtime library: it does not export OrtGetApiBase",
        ));
}

#[test]
fn engines_reports_library_version_and_providers() {
    thrum().arg("engines").assert().success().stdout(
        predicate::str::is_match(
            r"ort\s+yes\s+1\.32\.0\s+\S+libonnxruntime\.so\.1\.32\.0\s+.*CPUExecutionProvider",
        )
        .unwrap(),
    );
}

#[test]
fn bench_runs_on_ort_with_per_thread_and_shared_predictors() {
    for mode in ["per-thread", "shared"] {
        let out = thrum()
            .args([
                "bench",
                "-e",
                "ort",
                "-p",
                "zoo:mlp",
                "-t",
                "2",
                "-c",
                "200",
                "--intra-op-threads",
                "1",
                "--predictor",
                mode,
                "-q",
                "--json",
                "-",
            ])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(report["engine"]["version"], "1.32.0");
        assert_eq!(report["results"]["calls"], 200);
        assert_eq!(report["threads"]["engine"]["intra_op"], 1);
    }
}

/// DJL's point, as an acceptance bound: predictors share the model's weights, so RSS with 8 is
/// at most 1.15× RSS with 1 (measured 1.06–1.10×; see docs/performance.md).
#[test]
fn memory_report_stays_flat_on_resnet50_for_ort_and_tract() {
    for engine in ["ort", "tract"] {
        let steps = common::memory_report_steps(&["-e", engine, "-p", "zoo:resnet50"]);
        let last = steps.last().unwrap();
        let ratio = last["ratio_to_first"].as_f64().unwrap();
        assert!(ratio <= 1.15, "{engine}: RSS with 8 predictors is {ratio:.3}x that with 1");
    }
}

#[test]
fn a_sweep_varies_an_engine_option() {
    thrum_testkit::require_engine!("ort");
    let out = thrum()
        .args(["bench", "-e", "ort", "-p", "zoo:mlp", "-c", "40", "-t", "1", "-w", "1", "-q"])
        .args(["--sweep", "ort.execution_mode=sequential,parallel", "--json", "-"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let sweep: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let modes: Vec<&str> = sweep["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["options"]["ort.execution_mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["sequential", "parallel"]);
}

#[test]
fn a_sweep_over_a_process_wide_setting_runs_a_process_per_value() {
    thrum_testkit::require_engine!("ort");
    let out = thrum()
        .args(["bench", "-e", "ort", "-p", "zoo:mlp", "-c", "40", "-t", "1", "-w", "1", "-q"])
        .args(["--sweep", "ort.global_thread_pools=false,true", "threads=1,2", "--json", "-"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let sweep: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let points = sweep["points"].as_array().unwrap();
    let seen: Vec<(String, u64)> = points
        .iter()
        .map(|p| {
            (
                p["options"]["ort.global_thread_pools"].as_str().unwrap().to_string(),
                p["threads"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("false".into(), 1), ("false".into(), 2), ("true".into(), 1), ("true".into(), 2)]
    );
    assert!(points.iter().any(|p| p["pareto"] == true));
}

/// Fails loudly when the OpenVINO flavour is not installed (the test command installs it).
fn require_openvino_flavour() {
    let flavour = thrum::config::engine_home(thrum::ort::OPENVINO_FLAVOUR);
    assert!(
        flavour.is_dir(),
        "{} missing: the test command installs it (thrum engines install ort-openvino)",
        flavour.display()
    );
}

/// The OpenVINO flavour (`thrum engines install ort-openvino`, from the onnxruntime-openvino
/// wheel) is what `ort.execution_providers=openvino` runs on: its own library and version,
/// outputs that agree with the plain CPU provider's.
#[test]
fn the_openvino_flavour_runs_when_openvino_is_asked_for_and_agrees_with_cpu() {
    require_openvino_flavour();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.npy");
    let mut x = vec![0f32; 64];
    for (i, v) in x.iter_mut().enumerate() {
        *v = (i as f32 / 64.0) - 0.5;
    }
    common::io::write_npy(&input, &thrum::Tensor::from_vec(vec![1, 64], x).unwrap()).unwrap();
    let run = |options: &str, out: &str| {
        let report = thrum()
            .args([
                "bench", "-e", "ort", "-p", "zoo:mlp", "-c", "20", "-t", "1", "-q", "--json", "-",
            ])
            .args(["--model-options", options])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
        let output = dir.path().join(format!("{out}.npy"));
        thrum()
            .args(["predict", "-e", "ort", "-p", "zoo:mlp", "--model-options", options, "--input"])
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .assert()
            .success();
        (report, common::io::read_npy(&output).unwrap())
    };
    let (openvino, got) = run("ort.execution_providers=openvino", "openvino");
    assert_eq!(openvino["engine"]["version"], "1.24.1");
    assert!(
        openvino["engine"]["library"].as_str().unwrap().contains("ort-openvino"),
        "{}",
        openvino["engine"]
    );
    let (cpu, reference) = run("ort.execution_providers=cpu", "cpu");
    assert_eq!(cpu["engine"]["version"], "1.32.0");
    thrum_testkit::assert_outputs_agree(&[got], &[reference], 1e-4, "OpenVINO vs CPU provider");
}

/// ONNX Runtime runs concurrent calls on its CPU provider only: on OpenVINO a shared predictor
/// is refused and calls are serialised, its capabilities say so, and tune's exhaustive sweep
/// gives OpenVINO one worker with a per-thread predictor (no child of it fails) while keeping
/// shared predictors and several workers on the CPU provider.
#[test]
fn serialised_openvino_calls_get_one_worker_in_the_tuning_space() {
    require_openvino_flavour();
    let caps = thrum::registry().get("ort").unwrap().capabilities();
    assert_eq!(caps.concurrency_needs, vec![("ort.execution_providers", "cpu")]);
    thrum()
        .args(["bench", "-e", "ort", "-p", "zoo:mlp", "-c", "5", "-t", "2", "-q"])
        .args(["--model-options", "ort.execution_providers=openvino,predictor=shared"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("shared predictor"));
    let dir = tempfile::tempdir().unwrap();
    thrum()
        .args(["tune", "-p", "zoo:mlp", "-e", "ort", "--batch", "1", "--search", "exhaustive"])
        .args(["--measure-s", "0.3", "--budget", "3m", "-q", "-o"])
        .arg(dir.path())
        .args([
            "--fixed",
            "inter_op_threads=1,ort.execution_mode=sequential,ort.optimization_level=all,\
             ort.spinning=true,ort.global_thread_pools=false,ort.session_per_predictor=false",
        ])
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .success();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("tune.json")).unwrap()).unwrap();
    let trials = report["outcome"]["trials"].as_array().unwrap();
    fn kind(t: &serde_json::Value) -> (&str, &str, u64) {
        let c = &t["candidate"];
        // The default configuration (the confirming runs) leaves the key at its default, cpu.
        let provider = c["options"]["ort.execution_providers"].as_str().unwrap_or("cpu");
        (provider, c["predictor"].as_str().unwrap(), c["workers"].as_u64().unwrap())
    }
    for t in trials {
        assert_eq!(t["outcome"]["status"], "measured", "{t}");
        if kind(t).0 == "openvino" {
            assert_eq!(kind(t), ("openvino", "per-thread", 1), "{t}");
        }
    }
    for expected in [("cpu", "shared"), ("openvino", "per-thread")] {
        assert!(
            trials.iter().any(|t| (kind(t).0, kind(t).1) == expected),
            "no {expected:?} in {trials:?}"
        );
    }
}

#[test]
fn engines_lists_each_installed_flavour_with_its_providers() {
    thrum().args(["engines"]).assert().success().stdout(
        predicate::str::contains("ort-openvino at")
            .and(predicate::str::contains("(openvino, cpu)")),
    );
}

/// PaddleOCR's text-direction classifier from the `rapidocr-onnxruntime` wheel (Apache-2.0):
/// its input is `x [-1,3,?,?]`, two dynamic dimensions both called `?`. They are independent
/// (ONNX ties only equal real names), so a 48 × 192 image runs, and gives what ONNX Runtime's
/// Python API gives for the same input, bit for bit (same library, one thread each).
#[test]
fn a_model_whose_dynamic_dimensions_have_no_names_runs_as_onnx_runtime_runs_it() {
    thrum_testkit::require_engine!("ort");
    let model = testdata().join("rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    assert!(
        model.is_file(),
        "{} missing: run `bash scripts/install-test-data.sh`",
        model.display()
    );
    let work = tempfile::tempdir().unwrap();
    let n = 3 * 48 * 192;
    let x = thrum::Tensor::from_vec(
        vec![1, 3, 48, 192],
        (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect::<Vec<_>>(),
    )
    .unwrap();
    let input = work.path().join("x.npy");
    common::io::write_npy(&input, &x).unwrap();
    let ours = work.path().join("ours.npy");
    thrum()
        .args(["predict", "-e", "ort", "--intra-op-threads", "1", "-p"])
        .arg(&model)
        .arg("--input")
        .arg(&input)
        .arg("-o")
        .arg(&ours)
        .assert()
        .success();
    let theirs = work.path().join("theirs.npy");
    let python = testdata().join("venv-ort/bin/python");
    let run = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys, numpy as np, onnxruntime as ort\n\
             o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1\n\
             s = ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])\n\
             np.save(sys.argv[3], s.run(None, {'x': np.load(sys.argv[2])})[0])",
        ])
        .arg(&model)
        .arg(&input)
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let ours = common::io::read_npy(&ours).unwrap();
    let theirs = common::io::read_npy(&theirs).unwrap();
    assert_eq!(ours.shape(), &[1, 2]);
    assert!(ours.bit_eq(&theirs), "thrum {ours:?} vs onnxruntime {theirs:?}");
}

/// The seed's rule without any thread flag: workers × intra-op threads = usable cores, and the
/// header reports the threads ONNX Runtime runs (its own default would be every core per
/// worker: 2 workers × 2 threads on 2 cores).
#[test]
fn bench_without_thread_flags_runs_workers_times_intra_op_threads_equal_to_the_cores() {
    thrum_testkit::require_engine!("ort");
    let run = |args: &[&str]| -> serde_json::Value {
        let out = thrum()
            .args(["bench", "-e", "ort", "-p", "zoo:mlp", "-c", "40", "-q", "--json", "-"])
            .args(args)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    };
    for (args, expect_workers) in [(&[][..], None), (&["-t", "1"][..], Some(1))] {
        let report = run(args);
        let usable = report["threads"]["cores"]["usable"].as_u64().unwrap();
        let workers = report["plan"]["workers"].as_u64().unwrap();
        let intra = report["threads"]["engine"]["intra_op"].as_u64().unwrap_or(0);
        assert_eq!(
            workers * intra,
            usable,
            "{args:?}: {workers} workers × {intra} intra-op threads on {usable} cores"
        );
        assert_eq!(report["threads"]["oversubscribed"], false);
        if let Some(w) = expect_workers {
            assert_eq!(workers, w);
        }
    }
}
