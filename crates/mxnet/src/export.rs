//! Zoo graphs in MXNet's format: the symbol JSON (`NAME-symbol.json`, the graph MXNet's
//! `export()` writes) and the parameters (`NAME-0000.params`, `arg:NAME` / `aux:NAME` arrays
//! in MXNet's NDArray-list format), with the zoo's weights.
//!
//! The params file is written here rather than through `MXNDArraySave`: exporting must not load
//! libmxnet, which reads its engine type and thread counts once, when it loads, and those must
//! come from the options of the model that runs next, not from the export. A test checks that
//! the bytes equal `MXNDArraySave`'s for the same arrays.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use thrum_core::{Error, Result, Tensor};
use thrum_zoo::{Graph, Op};

use crate::ENGINE;

fn fail<T: std::fmt::Display>(what: T) -> Error {
    Error::InvalidModel { engine: ENGINE, model: "export".into(), reason: what.to_string() }
}

/// `dir/NAME-0000.params` for `dir/NAME-symbol.json`.
pub fn params_path(symbol: &Path) -> PathBuf {
    symbol.with_file_name(format!("{}-0000.params", model_stem(symbol)))
}

/// `NAME` of `NAME-symbol.json` (or of `NAME.json`).
pub fn model_stem(symbol: &Path) -> String {
    let file = symbol.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    file.strip_suffix("-symbol.json")
        .or_else(|| file.strip_suffix(".json"))
        .unwrap_or(&file)
        .to_string()
}

fn tuple(values: &[usize]) -> String {
    let items: Vec<String> = values.iter().map(usize::to_string).collect();
    format!("({})", items.join(", "))
}

/// Writes `graph` as `path` (`NAME-symbol.json`) and its parameters beside it
/// ([`params_path`]).
pub fn export_mxnet(graph: &Graph, path: &Path) -> Result<()> {
    let (symbol, params) = symbol_json(graph)?;
    let text = serde_json::to_string_pretty(&symbol).map_err(fail)?;
    std::fs::write(path, text).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let params_file = params_path(path);
    std::fs::write(&params_file, encode_params(&params)?)
        .map_err(|source| Error::Io { path: params_file, source })
}

/// The symbol JSON and the `(arg:/aux:NAME, tensor)` parameters of `graph`.
pub(crate) fn symbol_json(graph: &Graph) -> Result<(Value, Vec<(String, Tensor)>)> {
    let mut nodes: Vec<Value> = Vec::new();
    let mut ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut arg_nodes = Vec::new();
    let mut params = Vec::new();
    for spec in &graph.inputs {
        let shape: Vec<usize> = spec.shape.iter().map(|d| d.fixed().unwrap_or(0)).collect();
        let dtype = crate::ffi::dtype_code(spec.dtype)
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

/// MXNet's NDArray-list file (`NDArray::Save` in MXNet 1.x): a list magic and a reserved
/// word, the arrays (each: V2 magic, dense storage type, shape as u32 rank + i64 dims, CPU
/// context, dtype code, raw little-endian data), then the names. All integers little-endian.
pub(crate) fn encode_params(params: &[(String, Tensor)]) -> Result<Vec<u8>> {
    const LIST_MAGIC: u64 = 0x112;
    const NDARRAY_V2_MAGIC: u32 = 0xF993_FAC9;
    let mut out = Vec::new();
    out.extend(LIST_MAGIC.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend((params.len() as u64).to_le_bytes());
    for (name, tensor) in params {
        let code = crate::ffi::dtype_code(tensor.dtype())
            .ok_or_else(|| fail(format!("`{name}`: {} arrays", tensor.dtype())))?;
        out.extend(NDARRAY_V2_MAGIC.to_le_bytes());
        out.extend(0i32.to_le_bytes()); // dense storage
        out.extend((tensor.shape().len() as u32).to_le_bytes());
        for &d in tensor.shape() {
            out.extend((d as i64).to_le_bytes());
        }
        out.extend(1i32.to_le_bytes()); // device type: CPU
        out.extend(0i32.to_le_bytes()); // device id
        out.extend(code.to_le_bytes());
        out.extend(
            tensor
                .to_le_bytes()
                .ok_or_else(|| fail(format!("`{name}`: {} arrays", tensor.dtype())))?,
        );
    }
    out.extend((params.len() as u64).to_le_bytes());
    for (name, _) in params {
        out.extend((name.len() as u64).to_le_bytes());
        out.extend(name.as_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

    use super::*;
    use crate::ffi::NDArray;

    /// The hand-written params file is byte for byte what MXNet's own `MXNDArraySave` writes.
    #[test]
    fn params_bytes_equal_mxnet_ndarray_save() {
        let graph = thrum_zoo::find("resnet18").unwrap().build(3);
        let (_, params) = symbol_json(&graph).unwrap();
        let path = crate::library::find(None)
            .expect("libmxnet is required: run `thrum engines install mxnet`");
        let loaded = crate::library::load(&path, &crate::library::Settings::default()).unwrap();
        let arrays: Vec<(String, NDArray)> = params
            .iter()
            .map(|(k, t)| {
                (k.clone(), NDArray::from_tensor(&loaded.api, t, fail::<String>).unwrap())
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mxnet.params");
        NDArray::save_file(&loaded.api, &file, &arrays, fail::<String>).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), encode_params(&params).unwrap());
    }
}
