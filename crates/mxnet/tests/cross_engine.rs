//! The MXNet exports on libmxnet agree with the ONNX exports of the same weights on tract.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::Options;

/// Stated tolerance: max |mxnet − tract| ≤ 1e-4 × max |tract| over each output.
const TOLERANCE: f64 = 1e-4;

#[test]
fn mlp_resnet18_and_resnet50_agree_with_tract_within_1e_4_relative() {
    thrum_testkit::require_engine!("mxnet");
    for name in ["mlp", "resnet18", "resnet50"] {
        let (_dir, mxnet) = common::mxnet(name, &Options::default());
        let tract = common::tract(name);
        assert_eq!(mxnet.inputs(), tract.inputs(), "{name}: input specs");
        assert_eq!(mxnet.outputs()[0].shape, tract.outputs()[0].shape, "{name}: output shape");
        let inputs = thrum_zoo::sample_inputs(mxnet.inputs(), 2, 21).unwrap();
        let a = mxnet.predictor().unwrap().predict(inputs.clone()).unwrap();
        let b = tract.predictor().unwrap().predict(inputs).unwrap();
        thrum_testkit::assert_outputs_agree(
            &a,
            &b,
            TOLERANCE,
            &format!("{name}: mxnet against tract"),
        );
    }
}
