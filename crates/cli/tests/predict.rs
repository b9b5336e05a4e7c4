//! `thrum predict` on zoo models, on the onnx wheel's light models, with input and output files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use common::{light_models_dir, thrum};
use predicates::prelude::*;
use thrum::{DType, Tensor};

#[test]
fn predict_runs_on_the_zoo_resnet50() {
    thrum()
        .args(["predict", "-e", "tract", "-p", "zoo:resnet50"])
        .assert()
        .success()
        .stdout(predicate::str::contains("logits: f32 [1, 1000]"));
}

/// ONNX's backend test runner feeds `arange(n) / n` to the light models and compares with
/// `*_output_0.pb` at rtol 1e-3 (2e-3 for densenet121), atol 1e-7: so do we.
#[test]
fn predict_on_every_light_model_matches_the_onnx_reference_outputs() {
    let dir = light_models_dir();
    let work = tempfile::tempdir().unwrap();
    let models = [
        "resnet50",
        "squeezenet",
        "bvlc_alexnet",
        "densenet121",
        "inception_v1",
        "inception_v2",
        "shufflenet",
        "vgg19",
        "zfnet512",
    ];
    for name in models {
        let n = 3 * 224 * 224;
        let input = Tensor::from_vec(
            vec![1, 3, 224, 224],
            (0..n).map(|i| i as f32 / n as f32).collect::<Vec<_>>(),
        )
        .unwrap();
        let input_path = work.path().join(format!("{name}_in.npy"));
        common::io::write_npy(&input_path, &input).unwrap();
        let out_path = work.path().join(format!("{name}_out.npy"));
        thrum()
            .args(["predict", "-p"])
            .arg(dir.join(format!("light_{name}.onnx")))
            .arg("--input")
            .arg(&input_path)
            .arg("-o")
            .arg(&out_path)
            .assert()
            .success();
        let got = common::io::read_npy(&out_path).unwrap();
        let reference =
            common::io::read_tensor(&dir.join(format!("light_{name}_output_0.pb")), None).unwrap();
        assert_eq!(got.shape(), reference.shape(), "{name}");
        let rtol = if name == "densenet121" { 2e-3 } else { 1e-3 };
        let (g, r) = (got.to_f64_vec().unwrap(), reference.to_f64_vec().unwrap());
        for (i, (a, b)) in g.iter().zip(&r).enumerate() {
            assert!(
                (a - b).abs() <= 1e-7 + rtol * b.abs(),
                "{name}[{i}]: thrum {a} vs onnx reference {b}"
            );
        }
    }
}

#[test]
fn light_models_list_only_real_inputs_not_initializers() {
    // light_resnet50 declares 270 graph inputs, 269 of them weights with initializers.
    let path = light_models_dir().join("light_resnet50.onnx");
    thrum()
        .args(["predict", "--json", "-p"])
        .arg(path)
        .assert()
        .success()
        .stdout(predicate::str::contains("\"gpu_0/data_0: zeros [1, 3, 224, 224]\""))
        .stdout(predicate::str::contains("res_conv1_bn_s_0").not());
}

#[test]
fn output_file_gets_the_first_output_and_a_directory_gets_all() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("first.npy");
    thrum().args(["predict", "-p", "zoo:mlp", "-o"]).arg(&file).assert().success();
    assert_eq!(common::io::read_npy(&file).unwrap().shape(), &[1, 10]);

    let dir = work.path().join("outs");
    thrum().args(["predict", "-p", "zoo:transformer", "-o"]).arg(&dir).assert().success();
    let saved = common::io::read_npy(&dir.join("last_hidden_state.npy")).unwrap();
    assert_eq!(saved.shape(), &[1, 128, 128]);
}

#[test]
fn inputs_are_read_from_npy_pb_and_json_by_position_or_name() {
    let work = tempfile::tempdir().unwrap();
    let x = thrum::zoo::sample_inputs(
        &[thrum::TensorSpec::new(
            "input",
            DType::F32,
            vec![thrum::Dim::Fixed(2), thrum::Dim::Fixed(64)],
        )],
        2,
        5,
    )
    .unwrap()
    .remove(0);
    let npy = work.path().join("x.npy");
    common::io::write_npy(&npy, &x).unwrap();
    let pb = work.path().join("x.pb");
    std::fs::write(&pb, thrum::zoo::onnx::encode_tensor("input", &x)).unwrap();
    let json = work.path().join("x.json");
    let values = x.to_f64_vec().unwrap();
    let rows: Vec<String> = values
        .chunks(64)
        .map(|r| {
            format!(
                "[{}]",
                r.iter().map(|v| format!("{:?}", *v as f32)).collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    std::fs::write(&json, format!("[{}]", rows.join(","))).unwrap();

    let mut saved = Vec::new();
    for (i, arg) in
        [npy.display().to_string(), pb.display().to_string(), format!("input={}", json.display())]
            .iter()
            .enumerate()
    {
        let out = work.path().join(format!("y{i}.npy"));
        thrum()
            .args(["predict", "-p", "zoo:mlp", "--input", arg, "-o"])
            .arg(&out)
            .assert()
            .success();
        saved.push(common::io::read_npy(&out).unwrap());
    }
    assert_eq!(saved[0].shape(), &[2, 10]);
    assert!(
        saved[0].bit_eq(&saved[1]) && saved[0].bit_eq(&saved[2]),
        "same input in three formats must give the same output"
    );
}

#[test]
fn input_problems_are_clear_errors_with_exit_code_2() {
    let work = tempfile::tempdir().unwrap();
    let x = work.path().join("x.npy");
    common::io::write_npy(&x, &Tensor::zeros(DType::F32, &[1, 64]).unwrap()).unwrap();
    let bad_dtype = work.path().join("ids.npy");
    common::io::write_npy(&bad_dtype, &Tensor::zeros(DType::I64, &[1, 64]).unwrap()).unwrap();
    // A .npy header claiming a 2^62-element dimension, and no data.
    let huge = work.path().join("huge.npy");
    let mut header =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4611686018427387904), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    std::fs::write(&huge, bytes).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--input".into(), "missing.npy".into()],
            "cannot read input file `missing.npy`: it does not exist",
        ),
        (
            vec!["--input".into(), huge.display().to_string()],
            "would hold 4611686018427387904 elements",
        ),
        (
            vec![
                "--input".into(),
                x.display().to_string(),
                "--input".into(),
                format!("input={}", x.display()),
            ],
            "not a mix",
        ),
        (
            vec![
                "--input".into(),
                x.display().to_string(),
                "--input".into(),
                x.display().to_string(),
            ],
            "takes 1 input(s) (`input`), got 2",
        ),
        (vec!["--input".into(), format!("pixels={}", x.display())], "no input named `pixels`"),
        (vec!["--input".into(), bad_dtype.display().to_string()], "expects dtype f32, got i64"),
    ];
    for (extra, message) in cases {
        thrum()
            .args(["predict", "-p", "zoo:mlp"])
            .args(&extra)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
}

#[test]
fn model_and_engine_problems_are_clear_errors_with_exit_code_2() {
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["-p".into(), "/no/such/model.onnx".into()],
            "model file `/no/such/model.onnx` does not exist",
        ),
        (vec!["-p".into(), work.path().display().to_string()], "is a directory"),
        (vec!["-p".into(), empty.display().to_string()], "is empty (0 bytes)"),
        (
            vec!["-p".into(), "zoo:vgg".into()],
            "unknown zoo model `vgg`; known zoo models: mlp, resnet18, resnet50, transformer",
        ),
        (
            vec!["-p".into(), "zoo:mlp".into(), "-e".into(), "caffe".into()],
            "unknown engine `caffe`; known engines: tract, ort, torch, mxnet, tensorflow",
        ),
        (
            vec!["-p".into(), "zoo:mlp".into(), "--model-options".into(), "intra_threads=2".into()],
            "unknown option `intra_threads` in model options; did you mean `intra_op_threads`?",
        ),
        (
            vec!["-p".into(), "zoo:mlp".into(), "--intra-op-threads".into(), "0".into()],
            "expected an integer from 1 to 1024",
        ),
    ];
    for (args, message) in cases {
        thrum()
            .arg("predict")
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
}

#[test]
fn options_come_from_a_toml_file_and_the_environment() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("thrum.toml");
    std::fs::write(&config, "[tract]\noptimise = false\n").unwrap();
    thrum().args(["predict", "-p", "zoo:mlp", "--config"]).arg(&config).assert().code(2).stderr(
        predicate::str::contains("unknown option `tract.optimise` in `")
            .and(predicate::str::contains("thrum.toml")),
    );
    thrum()
        .args(["predict", "-p", "zoo:mlp"])
        .env("THRUM_TRACT_OPTIMIZE", "sometimes")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value `sometimes` for option `tract.optimize` (from $THRUM_TRACT_OPTIMIZE); expected true or false"));
    // An unknown THRUM_* variable is a warning naming the closest, not an error: environments
    // (a Kubernetes pod's) carry variables of other thrum versions.
    thrum()
        .args(["predict", "-p", "zoo:mlp"])
        .env("THRUM_TRACT_OPTIMISE", "false")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "warning: ignoring unknown environment variable THRUM_TRACT_OPTIMISE; did you mean \
             THRUM_TRACT_OPTIMIZE?",
        ));
}
