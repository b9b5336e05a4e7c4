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
        let has_bias = node.inputs.len() > 2;
        let (op, attrs) = match &node.op {
            Op::Conv { kernel, stride, pad } => (
                "Convolution",
                json!({"kernel": tuple(&[*kernel, *kernel]), "stride": tuple(&[*stride, *stride]), "pad": tuple(&[*pad, *pad]),
                       "num_filter": weight_shape(1)?[0].to_string(), "no_bias": if has_bias { "False" } else { "True" }}),
            ),
            Op::BatchNorm { epsilon } => (
                "BatchNorm",
                json!({"eps": epsilon.to_string(), "fix_gamma": "False", "use_global_stats": "True", "momentum": "0.9"}),
            ),
            Op::Relu => ("Activation", json!({"act_type": "relu"})),
            Op::MaxPool { kernel, stride, pad } => (
                "Pooling",
                json!({"kernel": tuple(&[*kernel, *kernel]), "stride": tuple(&[*stride, *stride]), "pad": tuple(&[*pad, *pad]),
                       "pool_type": "max", "pooling_convention": "valid"}),
            ),
            Op::GlobalAveragePool => {
                ("Pooling", json!({"kernel": "(1, 1)", "global_pool": "True", "pool_type": "avg"}))
            }
            Op::Flatten => ("Flatten", json!({})),
            Op::Linear => (
                "FullyConnected",
                json!({"num_hidden": weight_shape(1)?[0].to_string(), "no_bias": if has_bias { "False" } else { "True" }, "flatten": "True"}),
            ),
            Op::Add => ("elemwise_add", json!({})),
            other => {
                return Err(fail(format!(
                    "operator {other:?} of `{}` has no MXNet export (the zoo's mlp, resnet18 and resnet50 have one)",
                    graph.name
                )));
            }
        };
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
        ids.insert(node.output.clone(), nodes.len());
        nodes.push(json!({"op": op, "name": node.name, "attrs": attrs, "inputs": inputs}));
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
