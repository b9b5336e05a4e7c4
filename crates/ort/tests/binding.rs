//! Per-thread predictors keep an IoBinding across calls (inputs copied into bound buffers or
//! bound as views, outputs written into bound buffers). Whatever the sequence of shapes and
//! values, they must give what `Run` gives: the shared predictor, which calls `Run`, is the
//! reference.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use prost::Message;
use thrum_core::{DType, ModelFormat, ModelSource, Options, Tensor};
use tract_onnx::pb;

/// `[batch, 64]` inputs of distinct values per call.
fn mlp_input(batch: usize, call: usize) -> Vec<Tensor> {
    let data = (0..batch * 64).map(|i| ((i * 7 + call * 13) % 101) as f32 / 50.0 - 1.0).collect();
    vec![Tensor::from_vec(vec![batch, 64], data).unwrap()]
}

fn check_against_run(options: &Options) {
    let model = common::ort(&common::zoo_source("mlp"), options);
    let reference = model.shared_predictor().unwrap();
    let mut predictor = model.predictor().unwrap();
    // Batch 300 is 75 KiB of input: bound as a view each call, above the copy limit; the
    // others are copied into bound buffers. Same shapes in a row reuse the bound outputs;
    // every change of shape rebinds them.
    for (call, batch) in [1, 1, 3, 3, 1, 300, 300, 2, 300, 1, 1].into_iter().enumerate() {
        let inputs = mlp_input(batch, call);
        let got = predictor.predict(inputs.clone()).unwrap();
        let want = reference.predict(inputs).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].shape(), [batch, 10], "call {call}");
        assert!(got[0].bit_eq(&want[0]), "call {call}, batch {batch}: differs from Run");
    }
}

#[test]
fn a_per_thread_predictor_matches_run_across_shape_changes() {
    thrum_testkit::require_engine!("ort");
    check_against_run(&Options::default().with_intra_op_threads(1));
}

#[test]
fn a_predictor_with_its_own_session_matches_run_too() {
    thrum_testkit::require_engine!("ort");
    let mut options = Options::default().with_intra_op_threads(1);
    options.set("ort.session_per_predictor", "true").unwrap();
    check_against_run(&options);
}

fn value_info(
    name: &str,
    elem_type: pb::tensor_proto::DataType,
    dims: &[&str],
) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| {
            let value = match d.parse() {
                Ok(size) => Value::DimValue(size),
                Err(_) => Value::DimParam(d.to_string()),
            };
            Dimension { value: Some(value), ..Default::default() }
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem_type as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `x [N] float → NonZero → [1, K] int64`: the output's shape depends on the values. It is
/// declared as `output_dims`.
fn nonzero_model(output_dims: &[&str]) -> ModelSource {
    use pb::tensor_proto::DataType;
    let graph = pb::GraphProto {
        name: "nonzero".into(),
        node: vec![pb::NodeProto {
            op_type: "NonZero".into(),
            input: vec!["x".into()],
            output: vec!["indices".into()],
            ..Default::default()
        }],
        input: vec![value_info("x", DataType::Float, &["N"])],
        output: vec![value_info("indices", DataType::Int64, output_dims)],
        ..Default::default()
    };
    let proto = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(graph),
        ..Default::default()
    };
    ModelSource::memory("nonzero", ModelFormat::ONNX, proto.encode_to_vec())
}

#[test]
fn an_output_whose_shape_follows_the_values_is_right_on_every_call() {
    thrum_testkit::require_engine!("ort");
    check_nonzero(&["1", "K"]);
}

#[test]
fn an_output_declared_with_the_wrong_shape_is_right_on_every_call() {
    thrum_testkit::require_engine!("ort");
    // Declared as [1, N]: as if its shape followed the input's, so the first predictor binds
    // its outputs, fails when the values change its length, and retries without.
    check_nonzero(&["1", "N"]);
}

fn check_nonzero(output_dims: &[&str]) {
    let options = Options::default().with_intra_op_threads(1);
    let model = common::ort(&nonzero_model(output_dims), &options);
    let mut predictor = model.predictor().unwrap();
    let shared = model.shared_predictor().unwrap();
    // Same input shape every call, so the binding keeps its input buffer; the output's length
    // changes with the values, so a bound output of the previous length cannot be reused.
    for (x, want) in [
        (vec![1.0f32, 0.0, 2.0], vec![0i64, 2]),
        (vec![1.0, 0.0, 2.0], vec![0, 2]),
        (vec![3.0, 1.0, 2.0], vec![0, 1, 2]),
        (vec![0.0, 0.0, 0.0], vec![]),
        (vec![0.0, 5.0, 0.0], vec![1]),
        (vec![0.0, 5.0, 0.0, 1.0], vec![1, 3]),
        (vec![2.0], vec![0]),
    ] {
        let out = predictor.predict(vec![Tensor::from_vec(vec![x.len()], x.clone()).unwrap()]);
        let out = out.unwrap_or_else(|e| panic!("{x:?}: {e}"));
        assert_eq!(out[0].dtype(), DType::I64);
        assert_eq!(out[0].shape(), [1, want.len()], "{x:?}");
        assert_eq!(out[0].as_slice::<i64>().unwrap(), want, "{x:?}");
        let run = shared.predict(vec![Tensor::from_vec(vec![x.len()], x.clone()).unwrap()]);
        assert!(run.unwrap()[0].bit_eq(&out[0]), "{x:?}: the shared predictor's `Run` differs");
    }
}
