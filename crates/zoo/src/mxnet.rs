//! Zoo graphs in MXNet's format: the symbol JSON (`NAME-symbol.json`, the graph MXNet's
//! `export()` writes) and the parameters (`NAME-0000.params`, `arg:NAME` / `aux:NAME` arrays,
//! encoded by [`thrum_mxnet::encode_params`]), with the zoo's weights. No library is loaded:
//! libmxnet reads its settings once, when it loads, and those must come from the model that
//! runs next, not from an export.

use std::path::Path;

use serde_json::{Value, json};
use thrum_core::{Error, Result, Tensor};
use thrum_mxnet::{encode_params, params_path};

use crate::{Graph, Op};

fn fail<T: std::fmt::Display>(what: T) -> Error {
    Error::Unsupported {
        engine: thrum_mxnet::ENGINE,
        feature: "this zoo graph in MXNet's format".into(),
        reason: what.to_string(),
    }
}

fn tuple(values: &[usize]) -> String {
    let items: Vec<String> = values.iter().map(usize::to_string).collect();
    format!("({})", items.join(", "))
}

/// Appends an operator node; its output as an MXNet entry (`[id, 0, 0]`).
fn emit(
    nodes: &mut Vec<Value>,
    (op, attrs): (String, Value),
    name: String,
    inputs: Vec<Value>,
) -> Value {
    let id = nodes.len();
    nodes.push(json!({"op": op, "name": name, "attrs": attrs, "inputs": inputs}));
    json!([id, 0, 0])
}

/// Writes `graph` as `path` (`NAME-symbol.json`, or any name) and its parameters beside it
/// ([`thrum_mxnet::params_path`]), in the files MXNet's `export()` writes.
pub fn export(graph: &Graph, path: &Path) -> Result<()> {
    let (symbol, params) = symbol_json(graph)?;
    let text = serde_json::to_string_pretty(&symbol).map_err(fail)?;
    std::fs::write(path, text).map_err(|e| Error::write(path, e))?;
    let params_file = params_path(path);
    std::fs::write(&params_file, encode_params(&params)?).map_err(|e| Error::write(&params_file, e))
}

/// The symbol JSON and the `(arg:/aux:NAME, tensor)` parameters of `graph`.
pub fn symbol_json(graph: &Graph) -> Result<(Value, Vec<(String, Tensor)>)> {
    let mut nodes: Vec<Value> = Vec::new();
    let mut ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut arg_nodes = Vec::new();
    let mut params = Vec::new();
    for spec in &graph.inputs {
        let shape: Vec<usize> = spec.shape.iter().map(|d| d.fixed().unwrap_or(0)).collect();
        let dtype = thrum_mxnet::dtype_code(spec.dtype)
            .ok_or_else(|| fail(format!("{} inputs", spec.dtype)))?;
        ids.insert(spec.name.clone(), nodes.len());
        arg_nodes.push(nodes.len());
        nodes.push(json!({"op": "null", "name": spec.name, "attrs": {"__shape__": tuple(&shape), "__dtype__": dtype.to_string()}, "inputs": []}));
    }
    // Every value's shape in the IR, for the operators whose MXNet form depends on ranks.
    let shapes: std::collections::HashMap<&str, &[usize]> =
        graph.nodes.iter().map(|n| (n.output.as_str(), n.shape.as_slice())).collect();
    for node in &graph.nodes {
        let weight_shape = |i: usize| -> Result<Vec<usize>> {
            let name =
                node.inputs.get(i).ok_or_else(|| fail(format!("{} lacks input {i}", node.name)))?;
            Ok(graph
                .weight(name)
                .ok_or_else(|| fail(format!("{}: `{name}` is not a weight", node.name)))?
                .shape()
                .to_vec())
        };
        let rank = |i: usize| -> usize {
            node.inputs.get(i).map_or(0, |name| {
                shapes.get(name.as_str()).map(|s| s.len()).unwrap_or_else(|| {
                    graph.weight(name).map(Tensor::rank).unwrap_or_else(|| {
                        graph.inputs.iter().find(|s| s.name == *name).map_or(0, |s| s.shape.len())
                    })
                })
            })
        };
        let same_shapes = node.inputs.len() == 2
            && shapes.get(node.inputs[0].as_str()) == shapes.get(node.inputs[1].as_str());
        // The node's inputs as MXNet entries; a weight becomes an argument (or, for
        // BatchNorm's running statistics, an auxiliary state) the first time it is used.
        let mut inputs = Vec::new();
        for (k, input) in node.inputs.iter().enumerate() {
            let id = match ids.get(input) {
                Some(&id) => id,
                None => {
                    let tensor = graph
                        .weight(input)
                        .ok_or_else(|| fail(format!("unknown value `{input}`")))?;
                    let aux = matches!(node.op, Op::BatchNorm { .. }) && k >= 3;
                    params.push((
                        format!("{}:{input}", if aux { "aux" } else { "arg" }),
                        tensor.clone(),
                    ));
                    let id = nodes.len();
                    ids.insert(input.clone(), id);
                    arg_nodes.push(id);
                    nodes.push(json!({"op": "null", "name": input, "inputs": []}));
                    id
                }
            };
            inputs.push(json!([id, 0, 0]));
        }
        let has_bias = node.inputs.len() > 2;
        let name = node.name.clone();
        let at = |step: &str| format!("{}_{step}", node.name);
        let one = |op: &str, attrs: Value| (op.to_string(), attrs);
        let out = match &node.op {
            Op::Conv { kernel, stride, pads, groups } => {
                let [top, left, bottom, right] = *pads;
                let mut inputs = inputs;
                let pad = if top == bottom && left == right {
                    [top, left]
                } else {
                    // TensorFlow's SAME padding is asymmetric: zero rows and columns are
                    // concatenated first (MXNet's Pad has no gradient, which a cached op needs).
                    let mut padded = inputs[0].clone();
                    for (axis, before, after) in [(2, top, bottom), (3, left, right)] {
                        if before + after == 0 {
                            continue;
                        }
                        let edge = emit(
                            &mut nodes,
                            one(
                                "slice_axis",
                                json!({"axis": axis.to_string(), "begin": "0", "end": "1"}),
                            ),
                            at(&format!("edge{axis}")),
                            vec![padded.clone()],
                        );
                        let zeros = emit(
                            &mut nodes,
                            one("zeros_like", json!({})),
                            at(&format!("zeros{axis}")),
                            vec![edge],
                        );
                        let mut parts = vec![zeros.clone(); before];
                        parts.push(padded);
                        parts.extend(std::iter::repeat_n(zeros, after));
                        padded = emit(
                            &mut nodes,
                            one(
                                "Concat",
                                json!({"dim": axis.to_string(), "num_args": parts.len().to_string()}),
                            ),
                            at(&format!("pad{axis}")),
                            parts,
                        );
                    }
                    inputs[0] = padded;
                    [0, 0]
                };
                emit(
                    &mut nodes,
                    one(
                        "Convolution",
                        json!({"kernel": tuple(&[*kernel, *kernel]), "stride": tuple(&[*stride, *stride]), "pad": tuple(&pad),
                           "num_filter": weight_shape(1)?[0].to_string(), "num_group": groups.to_string(),
                           "no_bias": if has_bias { "False" } else { "True" }}),
                    ),
                    name,
                    inputs,
                )
            }
            Op::Clip { min, max } => emit(
                &mut nodes,
                one("clip", json!({"a_min": min.to_string(), "a_max": max.to_string()})),
                name,
                inputs,
            ),
            Op::BatchNorm { epsilon } => emit(
                &mut nodes,
                one(
                    "BatchNorm",
                    json!({"eps": epsilon.to_string(), "fix_gamma": "False", "use_global_stats": "True", "momentum": "0.9"}),
                ),
                name,
                inputs,
            ),
            Op::Relu => {
                emit(&mut nodes, one("Activation", json!({"act_type": "relu"})), name, inputs)
            }
            Op::MaxPool { kernel, stride, pad } => emit(
                &mut nodes,
                one(
                    "Pooling",
                    json!({"kernel": tuple(&[*kernel, *kernel]), "stride": tuple(&[*stride, *stride]), "pad": tuple(&[*pad, *pad]),
                       "pool_type": "max", "pooling_convention": "valid"}),
                ),
                name,
                inputs,
            ),
            Op::GlobalAveragePool => emit(
                &mut nodes,
                one(
                    "Pooling",
                    json!({"kernel": "(1, 1)", "global_pool": "True", "pool_type": "avg"}),
                ),
                name,
                inputs,
            ),
            Op::Flatten => emit(&mut nodes, one("Flatten", json!({})), name, inputs),
            // Over the last axis only when the input has more than two (a sequence's tokens).
            Op::Linear => emit(
                &mut nodes,
                one(
                    "FullyConnected",
                    json!({"num_hidden": weight_shape(1)?[0].to_string(), "no_bias": if has_bias { "False" } else { "True" },
                       "flatten": if rank(0) > 2 { "False" } else { "True" }}),
                ),
                name,
                inputs,
            ),
            // Equal shapes: elemwise_add, which oneDNN fuses into a convolution; else
            // broadcasting (a position table, an attention mask).
            Op::Add if same_shapes => {
                emit(&mut nodes, one("elemwise_add", json!({})), name, inputs)
            }
            Op::Add => emit(&mut nodes, one("broadcast_add", json!({})), name, inputs),
            // The product over the last two axes, the leading ones a batch.
            Op::MatMul => emit(
                &mut nodes,
                one(
                    "linalg_gemm2",
                    json!({"transpose_a": "False", "transpose_b": "False", "alpha": "1.0"}),
                ),
                name,
                inputs,
            ),
            // MXNet's Embedding takes the indices first, then the table.
            Op::Gather => {
                let table = weight_shape(0)?;
                let attrs = json!({"input_dim": table[0].to_string(), "output_dim": table[1].to_string(), "dtype": "float32"});
                emit(
                    &mut nodes,
                    one("Embedding", attrs),
                    name,
                    vec![inputs[1].clone(), inputs[0].clone()],
                )
            }
            // MXNet's Reshape reads 0 as ONNX does (copy the input's size) and infers one -1.
            Op::Reshape { shape } => {
                let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
                let attrs = json!({"shape": format!("({})", dims.join(", "))});
                emit(&mut nodes, one("Reshape", attrs), name, inputs)
            }
            Op::Transpose { perm } => {
                emit(&mut nodes, one("transpose", json!({"axes": tuple(perm)})), name, inputs)
            }
            Op::Softmax { axis } => {
                emit(&mut nodes, one("softmax", json!({"axis": axis.to_string()})), name, inputs)
            }
            Op::LayerNorm { epsilon } => emit(
                &mut nodes,
                one(
                    "LayerNorm",
                    json!({"axis": "-1", "eps": epsilon.to_string(), "output_mean_var": "False"}),
                ),
                name,
                inputs,
            ),
            // MXNet's GELU is the exact one, x · Φ(x) with erf.
            Op::Gelu => {
                emit(&mut nodes, one("LeakyReLU", json!({"act_type": "gelu"})), name, inputs)
            }
            Op::Scale { factor } => emit(
                &mut nodes,
                one("_mul_scalar", json!({"scalar": factor.to_string()})),
                name,
                inputs,
            ),
            Op::Affine { scale, shift } => {
                let scaled = emit(
                    &mut nodes,
                    one("_mul_scalar", json!({"scalar": scale.to_string()})),
                    at("scaled"),
                    inputs,
                );
                emit(
                    &mut nodes,
                    one("_plus_scalar", json!({"scalar": shift.to_string()})),
                    name,
                    vec![scaled],
                )
            }
            Op::Cast { to } => {
                let dtype = match to {
                    thrum_core::DType::F32 => "float32",
                    thrum_core::DType::I64 => "int64",
                    thrum_core::DType::I32 => "int32",
                    other => return Err(fail(format!("a cast to {other}"))),
                };
                emit(&mut nodes, one("Cast", json!({"dtype": dtype})), name, inputs)
            }
            // The table's first S rows, S = `like`'s size along axis 1: `slice_like` along the
            // table's axis 0 against `like` transposed, then a leading axis of 1 so that it
            // broadcasts against `[N, S, H]` (MXNet's broadcasting wants equal ranks).
            Op::RowsLike => {
                let like = emit(
                    &mut nodes,
                    one("transpose", json!({"axes": "(1, 0)"})),
                    at("like_t"),
                    vec![inputs[1].clone()],
                );
                let rows = emit(
                    &mut nodes,
                    one("slice_like", json!({"axes": "(0,)"})),
                    at("rows"),
                    vec![inputs[0].clone(), like],
                );
                emit(&mut nodes, one("expand_dims", json!({"axis": "0"})), name, vec![rows])
            }
        };
        let id = out[0].as_u64().map_or(0, |id| id as usize);
        ids.insert(node.output.clone(), id);
    }
    let heads: Vec<Value> = graph
        .outputs
        .iter()
        .map(|o| {
            ids.get(&o.name)
                .map(|&id| json!([id, 0, 0]))
                .ok_or_else(|| fail(format!("output `{}` not computed", o.name)))
        })
        .collect::<Result<_>>()?;
    let symbol = json!({
        "nodes": nodes,
        "arg_nodes": arg_nodes,
        "heads": heads,
        "attrs": {"mxnet_version": ["int", 10901]},
    });
    Ok((symbol, params))
}
