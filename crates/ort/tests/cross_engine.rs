//! ONNX Runtime and tract agree on the zoo's models.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::Options;

/// Stated tolerance: max |ort − tract| ≤ 1e-4 × max |tract| over each output.
const TOLERANCE: f64 = 1e-4;

#[test]
fn zoo_models_agree_with_tract_within_1e_4_relative() {
    thrum_testkit::require_engine!("ort");
    for name in ["mlp", "resnet18", "transformer"] {
        let source = common::zoo_source(name);
        let (ort, tract) = (common::ort(&source, &Options::default()), common::tract(&source));
        assert_eq!(ort.inputs(), tract.inputs(), "{name}: input specs");
        let inputs = thrum_zoo::sample_inputs(ort.inputs(), 2, 21).unwrap();
        let a = ort.predictor().unwrap().predict(inputs.clone()).unwrap();
        let b = tract.predictor().unwrap().predict(inputs).unwrap();
        thrum_testkit::assert_outputs_agree(
            &a,
            &b,
            TOLERANCE,
            &format!("{name}: ort against tract"),
        );
    }
}

#[test]
fn specs_come_from_the_session_with_the_dynamic_batch_marked() {
    thrum_testkit::require_engine!("ort");
    let model = common::ort(&common::zoo_source("resnet18"), &Options::default());
    assert_eq!(model.inputs()[0].shape_string(), "[N,3,224,224]");
    assert_eq!(model.outputs()[0].shape_string(), "[N,1000]");
    for batch in [1, 3] {
        let y = model
            .predictor()
            .unwrap()
            .predict(thrum_zoo::sample_inputs(model.inputs(), batch, 1).unwrap())
            .unwrap();
        assert_eq!(y[0].shape(), &[batch, 1000]);
    }
}
