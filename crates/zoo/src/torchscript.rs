//! Zoo graphs as TorchScript (the `torch` feature): the graph is traced through libtorch's
//! operators with the zoo's weights (the same tensors the ONNX export writes, as constants of
//! the traced graph), saved as `NAME.pt`, and its specs written to `NAME.spec.json` beside it
//! ([`thrum_torch::SpecFile`]: TorchScript does not record input shapes or dtypes).

use std::collections::HashMap;
use std::path::Path;

use thrum_core::{Error, Result};
use thrum_torch::convert;
use thrum_torch::tch::{CModule, Kind, Tensor as TchTensor};
use thrum_torch::{SpecFile, spec_path};

use crate::{Graph, Op};

fn fail(what: impl std::fmt::Display) -> Error {
    Error::Unsupported {
        engine: thrum_torch::ENGINE,
        feature: "this zoo graph as TorchScript".into(),
        reason: what.to_string(),
    }
}

/// Writes `graph` as TorchScript to `path` and its specs to [`spec_path`].
pub fn export(graph: &Graph, path: &Path) -> Result<()> {
    let _guard = thrum_torch::tch::no_grad_guard();
    let weights: HashMap<&str, TchTensor> = graph
        .weights
        .iter()
        .map(|(name, t)| convert::to_tch(t, &graph.name).map(|t| (name.as_str(), t)))
        .collect::<Result<_>>()?;
    let examples: Vec<TchTensor> = crate::sample_inputs(&graph.inputs, 1, 0)?
        .iter()
        .map(|t| convert::to_tch(t, &graph.name))
        .collect::<Result<_>>()?;
    let mut failure: Option<Error> = None;
    let module =
        CModule::create_by_tracing(
            &graph.name,
            "forward",
            &examples,
            &mut |inputs| match run_graph(graph, &weights, inputs) {
                Ok(outputs) => outputs,
                Err(e) => {
                    failure = Some(e);
                    Vec::new()
                }
            },
        )
        .map_err(fail)?;
    if let Some(e) = failure {
        return Err(e);
    }
    module.save(path).map_err(|e| Error::write(path, std::io::Error::other(e.to_string())))?;
    let spec = SpecFile { inputs: graph.inputs.clone(), outputs: graph.outputs.clone() };
    let json = serde_json::to_string_pretty(&spec).map_err(fail)?;
    let spec_file = spec_path(path);
    std::fs::write(&spec_file, json).map_err(|e| Error::write(&spec_file, e))
}

/// Interprets the zoo IR with tch operators (traced when called under `create_by_tracing`).
fn run_graph(
    graph: &Graph,
    weights: &HashMap<&str, TchTensor>,
    inputs: &[TchTensor],
) -> Result<Vec<TchTensor>> {
    let mut values: HashMap<String, TchTensor> = HashMap::new();
    for (spec, t) in graph.inputs.iter().zip(inputs) {
        values.insert(spec.name.clone(), t.shallow_clone());
    }
    for node in &graph.nodes {
        let get = |i: usize| -> Result<&TchTensor> {
            let name =
                node.inputs.get(i).ok_or_else(|| fail(format!("{} lacks input {i}", node.name)))?;
            values
                .get(name.as_str())
                .or_else(|| weights.get(name.as_str()))
                .ok_or_else(|| fail(format!("unknown value `{name}`")))
        };
        let x = get(0)?;
        let y = match &node.op {
            Op::Conv { kernel: _, stride, pad } => {
                let (s, p) = (*stride as i64, *pad as i64);
                x.f_conv2d(get(1)?, None::<&TchTensor>, [s, s], [p, p], [1, 1], 1)
            }
            Op::BatchNorm { epsilon } => x.f_batch_norm(
                Some(get(1)?),
                Some(get(2)?),
                Some(get(3)?),
                Some(get(4)?),
                false,
                0.1,
                f64::from(*epsilon),
                false,
            ),
            Op::Relu => x.f_relu(),
            Op::MaxPool { kernel, stride, pad } => {
                let (k, s, p) = (*kernel as i64, *stride as i64, *pad as i64);
                x.f_max_pool2d([k, k], [s, s], [p, p], [1, 1], false)
            }
            Op::GlobalAveragePool => x.f_adaptive_avg_pool2d([1, 1]),
            // reshape rather than flatten: it also runs on MKLDNN tensors.
            Op::Flatten => x.f_reshape([-1, node.shape[1] as i64]),
            Op::Linear => x.f_linear(get(1)?, node.inputs.get(2).map(|_| get(2)).transpose()?),
            Op::Add => x.f_add(get(1)?),
            Op::MatMul => x.f_matmul(get(1)?),
            Op::Gather => TchTensor::f_embedding(x, get(1)?, -1, false, false),
            Op::Reshape { shape } => {
                // ONNX's 0 (copy the input's size) is the batch axis in the zoo: -1 keeps it
                // dynamic in the traced graph.
                let target: Vec<i64> = shape.iter().map(|&d| if d == 0 { -1 } else { d }).collect();
                x.f_reshape(target.as_slice())
            }
            Op::Transpose { perm } => {
                let perm: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
                x.f_permute(perm.as_slice())
            }
            Op::Softmax { axis } => x.f_softmax(*axis, Kind::Float),
            Op::LayerNorm { epsilon } => {
                let c = node.shape.last().copied().unwrap_or(1) as i64;
                x.f_layer_norm([c], Some(get(1)?), Some(get(2)?), f64::from(*epsilon), false)
            }
            Op::Gelu => x.f_gelu("none"),
            Op::Scale { factor } => x.f_mul_scalar(f64::from(*factor)),
            other @ (Op::Affine { .. } | Op::Cast { .. } | Op::RowsLike) => {
                return Err(fail(format!(
                    "operator `{}` of `{}` has no TorchScript export yet (the ONNX export has it)",
                    other.name(),
                    graph.name
                )));
            }
        }
        .map_err(fail)?;
        values.insert(node.output.clone(), y);
    }
    graph
        .outputs
        .iter()
        .map(|o| {
            values
                .remove(&o.name)
                .ok_or_else(|| fail(format!("output `{}` was not computed", o.name)))
        })
        .collect()
}
