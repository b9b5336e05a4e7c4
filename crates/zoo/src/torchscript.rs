//! Zoo graphs as TorchScript (the `torch` feature): the graph is traced through libtorch's
//! operators with the zoo's weights (the same tensors the ONNX export writes, as constants of
//! the traced graph), saved as `NAME.pt`, and its specs written to `NAME.spec.json` beside it
//! ([`thrum_torch::SpecFile`]: TorchScript does not record input shapes or dtypes).
//!
//! For `precision=bf16` the graph is traced again in bf16: weights, float inputs and every
//! float operator (libtorch's `module.to(bf16)` converts parameters, not a traced graph's
//! constants). The specs stay f32: the engine casts float inputs in and outputs back.

use std::collections::HashMap;
use std::path::Path;

use thrum_core::{Error, Precision, Result};
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

/// Writes `graph` as TorchScript to `path`, its float weights and arithmetic in `precision`
/// (fp32 or bf16), and its specs to [`spec_path`].
pub fn export(graph: &Graph, path: &Path, precision: Precision) -> Result<()> {
    let _guard = thrum_torch::tch::no_grad_guard();
    let float = match precision {
        Precision::Fp32 => Kind::Float,
        Precision::Bf16 => Kind::BFloat16,
        other => return Err(fail(format!("{other}: the zoo traces TorchScript in fp32 or bf16"))),
    };
    let in_float = |t: TchTensor| -> Result<TchTensor> {
        if t.kind() == Kind::Float && float != Kind::Float {
            t.f_to_kind(float).map_err(fail)
        } else {
            Ok(t)
        }
    };
    let weights: HashMap<&str, TchTensor> = graph
        .weights
        .iter()
        .map(|(name, t)| {
            convert::to_tch(t, &graph.name).and_then(in_float).map(|t| (name.as_str(), t))
        })
        .collect::<Result<_>>()?;
    // Zeros: a valid index into every embedding table (a token-type table has two rows), and
    // the traced graph has no branch that values could choose.
    let examples: Vec<TchTensor> = crate::sample_inputs(&graph.inputs, 1, 0)?
        .iter()
        .map(|t| {
            thrum_core::Tensor::zeros(t.dtype(), t.shape())
                .and_then(|zeros| convert::to_tch(&zeros, &graph.name))
                .and_then(in_float)
        })
        .collect::<Result<_>>()?;
    let mut failure: Option<Error> = None;
    let module = CModule::create_by_tracing(
        // TorchScript names its module's class after this: an identifier (no `-`).
        &graph.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        "forward",
        &examples,
        &mut |inputs| match run_graph(graph, &weights, inputs, float) {
            Ok(outputs) => outputs,
            Err(e) => {
                failure = Some(e);
                Vec::new()
            }
        },
    );
    // The graph's own error first: tracing then fails too, with less to say.
    if let Some(e) = failure {
        return Err(e);
    }
    let module = module.map_err(fail)?;
    module.save(path).map_err(|e| Error::write(path, std::io::Error::other(e.to_string())))?;
    let spec = SpecFile { inputs: graph.inputs.clone(), outputs: graph.outputs.clone() };
    let json = serde_json::to_string_pretty(&spec).map_err(fail)?;
    let spec_file = spec_path(path);
    std::fs::write(&spec_file, json).map_err(|e| Error::write(&spec_file, e))
}

/// A zoo reshape as operators that keep the traced graph's dynamic dimensions dynamic: the
/// leading 0s copy the input's dimensions (ONNX's rule: the batch axis), and libtorch's
/// `reshape` would freeze every other size it is given at its traced value, so a reshape that
/// splits or joins the trailing dimensions is `unflatten` or `flatten` instead.
fn reshape(
    x: &TchTensor,
    shape: &[i64],
) -> std::result::Result<TchTensor, thrum_torch::tch::TchError> {
    let kept = shape.iter().take_while(|&&d| d == 0).count();
    let rest = &shape[kept..];
    let left = (x.dim()).saturating_sub(kept);
    match rest {
        // One input dimension left: split it (`[N, S]` → `[N, 1, 1, -1]`).
        _ if left == 1 => x.f_unflatten(kept as i64, rest),
        // All that is left joins into one.
        [_] => x.f_flatten(kept as i64, -1),
        // `[N, S, H]` → `[N, -1, heads, H / heads]`: the last dimension splits, S stays.
        [-1, tail @ ..] if left == 2 => x.f_unflatten(-1, tail),
        // `[N, S, heads, H / heads]` → `[N, -1, H]`: the dimensions after S join.
        [-1, _] => x.f_flatten(kept as i64 + 1, -1),
        // Fixed sizes: only the batch axis is dynamic, and -1 keeps it so.
        _ => {
            let target: Vec<i64> = shape.iter().map(|&d| if d == 0 { -1 } else { d }).collect();
            x.f_reshape(target.as_slice())
        }
    }
}

/// Interprets the zoo IR with tch operators (traced when called under `create_by_tracing`),
/// float arithmetic in `float` (f32 or bf16).
fn run_graph(
    graph: &Graph,
    weights: &HashMap<&str, TchTensor>,
    inputs: &[TchTensor],
    float: Kind,
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
            Op::Conv { kernel: _, stride, pads, groups } => {
                let s = *stride as i64;
                let [top, left, bottom, right] = pads.map(|p| p as i64);
                let (g, w) = (*groups as i64, get(1)?);
                if top == bottom && left == right {
                    x.f_conv2d(w, None::<&TchTensor>, [s, s], [top, left], [1, 1], g)
                } else {
                    // TensorFlow's SAME padding is asymmetric: pad first, then convolve.
                    x.f_constant_pad_nd([left, right, top, bottom]).and_then(|padded| {
                        padded.f_conv2d(w, None::<&TchTensor>, [s, s], [0, 0], [1, 1], g)
                    })
                }
            }
            Op::Clip { min, max } => x.f_clamp(f64::from(*min), f64::from(*max)),
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
            Op::Reshape { shape } => reshape(x, shape),
            Op::Transpose { perm } => {
                let perm: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
                x.f_permute(perm.as_slice())
            }
            Op::Softmax { axis } => x.f_softmax(*axis, float),
            Op::LayerNorm { epsilon } => {
                let c = node.shape.last().copied().unwrap_or(1) as i64;
                x.f_layer_norm([c], Some(get(1)?), Some(get(2)?), f64::from(*epsilon), false)
            }
            Op::Gelu => x.f_gelu("none"),
            Op::Scale { factor } => x.f_mul_scalar(f64::from(*factor)),
            Op::Affine { scale, shift } => {
                x.f_mul_scalar(f64::from(*scale)).and_then(|t| t.f_add_scalar(f64::from(*shift)))
            }
            Op::Cast { to } => {
                let kind = match convert::kind(*to) {
                    // The graph's float type is the precision it is traced in.
                    Some(Kind::Float) => float,
                    Some(kind) => kind,
                    None => {
                        return Err(fail(format!(
                            "a cast to {to}, which libtorch has no type for"
                        )));
                    }
                };
                x.f_to_kind(kind)
            }
            // Positions 0..S from `like`'s second axis, with operators only (ones, cumulative
            // sum), so that the traced graph keeps S dynamic; then those rows of the table.
            Op::RowsLike => get(1)?
                .f_select(0, 0)
                .and_then(|row| row.f_ones_like())
                .and_then(|ones| ones.f_cumsum(0, Kind::Int64))
                .and_then(|count| count.f_sub_scalar(1))
                .and_then(|positions| TchTensor::f_embedding(x, &positions, -1, false, false)),
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
