//! thrum-ort's outputs equal those of ONNX Runtime's own Python package (same library version)
//! on the onnx wheel's light models.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::collections::HashMap;
use std::process::Command;

use thrum_core::{ModelSource, Options, Tensor};

/// Stated tolerance: max |thrum − python| ≤ 1e-5 × max |python| (same ONNX Runtime build and
/// settings; the only difference is the calling API).
const TOLERANCE: f64 = 1e-5;

#[test]
fn outputs_equal_the_onnxruntime_python_package_on_light_models() {
    thrum_testkit::require_engine!("ort");
    let models = ["resnet50", "squeezenet", "inception_v1", "densenet121"];
    let python = common::testdata().join("venv-ort/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run `bash scripts/install-test-data.sh`",
        python.display()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/ort_python.py");
    let out = tempfile::tempdir().unwrap();
    let paths: Vec<_> = models.iter().map(|m| common::light_model(m)).collect();
    let run = Command::new(&python)
        .arg(script)
        .arg("reference")
        .arg(out.path())
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "python reference run failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let shapes: HashMap<String, Vec<Vec<usize>>> = serde_json::from_slice(&run.stdout).unwrap();

    for (name, path) in models.iter().zip(&paths) {
        let model =
            common::ort(&ModelSource::path(path), &Options::default().with_intra_op_threads(1));
        let inputs: Vec<Tensor> = model
            .inputs()
            .iter()
            .map(|spec| {
                let shape = spec.concrete_shape(1);
                let n: usize = shape.iter().product();
                Tensor::from_vec(
                    shape,
                    (0..n).map(|i| (i as f64 / n as f64) as f32).collect::<Vec<_>>(),
                )
                .unwrap()
            })
            .collect();
        let outputs = model.predictor().unwrap().predict(inputs).unwrap();
        let key = format!("light_{name}");
        for (k, got) in outputs.iter().enumerate() {
            let bytes = std::fs::read(out.path().join(format!("{key}_{k}.bin"))).unwrap();
            let values: Vec<f32> =
                bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            let reference = Tensor::from_vec(shapes[&key][k].clone(), values).unwrap();
            let diff = thrum_testkit::relative_difference(got, &reference);
            eprintln!("{key} output {k}: relative difference to onnxruntime-python {diff:.2e}");
            assert!(diff <= TOLERANCE, "{key} output {k}: {diff:.2e} from onnxruntime-python");
        }
    }
}
