//! The TorchScript exports on libtorch agree with the ONNX exports of the same weights on
//! tract, with and without oneDNN.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::Options;

/// Stated tolerance: max |torch − tract| ≤ 1e-4 × max |tract| over each output.
const TOLERANCE: f64 = 1e-4;

fn agree_with_tract(name: &str, options: &Options) {
    let (_dir, torch) = common::torch(name, options);
    let tract = common::tract(name);
    assert_eq!(torch.inputs(), tract.inputs(), "{name}: input specs");
    assert_eq!(torch.outputs(), tract.outputs(), "{name}: output specs");
    let inputs = thrum_zoo::sample_inputs(torch.inputs(), 2, 21).unwrap();
    let a = torch.predictor().unwrap().predict(inputs.clone()).unwrap();
    let b = tract.predictor().unwrap().predict(inputs).unwrap();
    let what = format!("{name} (onednn {:?}): torch against tract", options.onednn);
    thrum_testkit::assert_outputs_agree(&a, &b, TOLERANCE, &what);
}

#[test]
fn every_zoo_model_agrees_with_tract_within_1e_4_relative() {
    thrum_testkit::require_engine!("torch");
    for model in thrum_zoo::models() {
        agree_with_tract(model.name, &Options::default());
    }
}

#[test]
fn mkldnn_keeps_conv_and_linear_models_within_tolerance() {
    thrum_testkit::require_engine!("torch");
    let options = Options::default().with_onednn(true);
    for name in ["mlp", "resnet18"] {
        agree_with_tract(name, &options);
    }
}

#[test]
fn the_batch_dimension_stays_dynamic_in_the_traced_graph() {
    thrum_testkit::require_engine!("torch");
    let (_dir, model) = common::torch("resnet18", &Options::default());
    assert_eq!(model.inputs()[0].shape_string(), "[N,3,224,224]");
    for batch in [1, 3] {
        let y = model
            .predictor()
            .unwrap()
            .predict(thrum_zoo::sample_inputs(model.inputs(), batch, 1).unwrap())
            .unwrap();
        assert_eq!(y[0].shape(), &[batch, 1000]);
    }
}
