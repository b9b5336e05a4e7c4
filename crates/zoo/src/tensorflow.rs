//! Zoo graphs as TensorFlow frozen graphs: one `GraphDef` with the weights as constants
//! (written with the messages of [`thrum_tensorflow::proto`]; no library is loaded).
//!
//! Inputs and outputs keep the zoo's names and layouts (images NCHW, as for the other engines).
//! TensorFlow's CPU kernels take images NHWC, so the exporter converts inside the graph: a
//! value is carried NHWC from the first convolution until an operator that needs the zoo's
//! layout (flatten, an output), where one `Transpose` converts it back. Convolution weights
//! are stored HWIO, linear weights as they are (`MatMul` with `transpose_b`).

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use thrum_core::{DType, Error, Result, Tensor};
use thrum_tensorflow::proto::{
    AttrValue, GraphDef, NodeDef, TensorProto, TensorShapeProto, VersionDef, attr_value,
};

use crate::{Graph, Op};

/// The GraphDef version written: TensorFlow 2.x reads it without compatibility rewrites of the
/// operators used here.
const PRODUCER: i32 = 1700;

const DT_FLOAT: i32 = 1;
const DT_INT32: i32 = 3;
const DT_INT64: i32 = 9;

fn fail<T: std::fmt::Display>(what: T) -> Error {
    Error::Unsupported {
        engine: thrum_tensorflow::ENGINE,
        feature: "this zoo graph as a TensorFlow frozen graph".into(),
        reason: what.to_string(),
    }
}

/// Writes `graph` to `path` as a frozen graph.
pub fn export(graph: &Graph, path: &Path) -> Result<()> {
    let bytes = graph_def(graph)?.encode_to_vec();
    std::fs::write(path, bytes).map_err(|e| Error::write(path, e))
}

fn attr(value: attr_value::Value) -> AttrValue {
    AttrValue { value: Some(value) }
}

fn type_attr(code: i32) -> AttrValue {
    attr(attr_value::Value::Type(code))
}

fn ints(values: &[i64]) -> AttrValue {
    attr(attr_value::Value::List(attr_value::ListValue { i: values.to_vec() }))
}

fn text(value: &str) -> AttrValue {
    attr(attr_value::Value::S(value.as_bytes().to_vec()))
}

/// A value of the graph as the writer carries it: the TF tensor that holds it, and whether it
/// is NHWC (an image the zoo holds NCHW).
#[derive(Clone, Debug)]
struct Value {
    tensor: String,
    nhwc: bool,
}

struct Writer<'g> {
    graph: &'g Graph,
    nodes: Vec<NodeDef>,
    values: HashMap<String, Value>,
    /// Constants written, by name (weights are written once, at first use).
    constants: std::collections::HashSet<String>,
}

impl<'g> Writer<'g> {
    fn node(
        &mut self,
        name: String,
        op: &str,
        inputs: Vec<String>,
        attrs: Vec<(&str, AttrValue)>,
    ) -> String {
        self.nodes.push(NodeDef {
            name: name.clone(),
            op: op.into(),
            input: inputs,
            attr: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
        name
    }

    fn constant(&mut self, name: String, code: i32, shape: &[usize], content: Vec<u8>) -> String {
        if self.constants.insert(name.clone()) {
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            let value = TensorProto {
                dtype: code,
                tensor_shape: Some(TensorShapeProto::of(&dims)),
                tensor_content: content,
            };
            self.node(
                name.clone(),
                "Const",
                Vec::new(),
                vec![("dtype", type_attr(code)), ("value", attr(attr_value::Value::Tensor(value)))],
            );
        }
        name
    }

    fn int32s(&mut self, name: String, shape: &[usize], values: &[i32]) -> String {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(name, DT_INT32, shape, bytes)
    }

    fn float(&mut self, name: String, value: f32) -> String {
        self.constant(name, DT_FLOAT, &[], value.to_le_bytes().to_vec())
    }

    fn weight_tensor(&self, name: &str) -> Result<&'g Tensor> {
        self.graph.weight(name).ok_or_else(|| fail(format!("`{name}` is not a weight")))
    }

    /// A weight as a constant, as it is.
    fn weight(&mut self, name: &str) -> Result<String> {
        let t = self.weight_tensor(name)?;
        let code = thrum_tensorflow::dtype_code(t.dtype())
            .ok_or_else(|| fail(format!("weight `{name}` of {}", t.dtype())))?;
        let bytes = t
            .raw_bytes()
            .ok_or_else(|| fail(format!("weight `{name}` has no raw bytes")))?
            .to_vec();
        Ok(self.constant(format!("w/{name}"), code, t.shape(), bytes))
    }

    /// A convolution weight `[out, in, k, k]` as TensorFlow's HWIO `[k, k, in, out]`.
    /// A convolution weight `[out, in, k, k]` in TensorFlow's layout: HWIO, or for a
    /// depthwise one (`in` = 1) `[k, k, out, 1]` — the same bytes.
    fn conv_weight(&mut self, name: &str, depthwise: bool) -> Result<String> {
        let t = self.weight_tensor(name)?;
        let &[out, cin, kh, kw] = t.shape() else {
            return Err(fail(format!("convolution weight `{name}` is not 4-D")));
        };
        let w = t.as_slice::<f32>().map_err(fail)?;
        let mut hwio = vec![0f32; w.len()];
        for o in 0..out {
            for i in 0..cin {
                for y in 0..kh {
                    for x in 0..kw {
                        hwio[((y * kw + x) * cin + i) * out + o] =
                            w[((o * cin + i) * kh + y) * kw + x];
                    }
                }
            }
        }
        let bytes = hwio.iter().flat_map(|v| v.to_le_bytes()).collect();
        if depthwise {
            return Ok(self.constant(
                format!("w/{name}/hwc1"),
                DT_FLOAT,
                &[kh, kw, out, cin],
                bytes,
            ));
        }
        Ok(self.constant(format!("w/{name}/hwio"), DT_FLOAT, &[kh, kw, cin, out], bytes))
    }

    /// An input of an IR node: a value computed before, or a weight.
    fn value(&mut self, name: &str) -> Result<Value> {
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        Ok(Value { tensor: self.weight(name)?, nhwc: false })
    }

    fn transpose(&mut self, name: String, input: &str, perm: &[i32], code: i32) -> String {
        let perm_const = self.int32s(format!("{name}/perm"), &[perm.len()], perm);
        self.node(
            name,
            "Transpose",
            vec![input.into(), perm_const],
            vec![("T", type_attr(code)), ("Tperm", type_attr(DT_INT32))],
        )
    }

    /// `value` NHWC (an image the zoo holds NCHW).
    fn nhwc(&mut self, at: &str, value: &Value) -> String {
        if value.nhwc {
            value.tensor.clone()
        } else {
            self.transpose(format!("{at}/to_nhwc"), &value.tensor, &[0, 2, 3, 1], DT_FLOAT)
        }
    }

    /// `value` in the zoo's layout.
    fn zoo_layout(&mut self, at: &str, value: &Value) -> String {
        if value.nhwc {
            self.transpose(format!("{at}/to_nchw"), &value.tensor, &[0, 3, 1, 2], DT_FLOAT)
        } else {
            value.tensor.clone()
        }
    }

    fn pad(&mut self, at: &str, input: String, pad: usize, fill: Option<f32>) -> String {
        self.pad_sides(at, input, [pad; 4], fill)
    }

    /// Pads an NHWC value by `[top, left, bottom, right]`.
    fn pad_sides(
        &mut self,
        at: &str,
        input: String,
        pads: [usize; 4],
        fill: Option<f32>,
    ) -> String {
        if pads == [0; 4] {
            return input;
        }
        let [top, left, bottom, right] = pads.map(|p| p as i32);
        let paddings =
            self.int32s(format!("{at}/paddings"), &[4, 2], &[0, 0, top, bottom, left, right, 0, 0]);
        match fill {
            None => self.node(
                format!("{at}/pad"),
                "Pad",
                vec![input, paddings],
                vec![("T", type_attr(DT_FLOAT)), ("Tpaddings", type_attr(DT_INT32))],
            ),
            Some(v) => {
                let fill = self.float(format!("{at}/fill"), v);
                self.node(
                    format!("{at}/pad"),
                    "PadV2",
                    vec![input, paddings, fill],
                    vec![("T", type_attr(DT_FLOAT)), ("Tpaddings", type_attr(DT_INT32))],
                )
            }
        }
    }

    fn binary(&mut self, name: String, op: &str, a: String, b: String) -> String {
        self.node(name, op, vec![a, b], vec![("T", type_attr(DT_FLOAT))])
    }

    fn unary(&mut self, name: String, op: &str, a: String) -> String {
        self.node(name, op, vec![a], vec![("T", type_attr(DT_FLOAT))])
    }

    fn mean(&mut self, name: String, input: String, axes: &[i32]) -> String {
        let axes_const = self.int32s(format!("{name}/axes"), &[axes.len()], axes);
        self.node(
            name,
            "Mean",
            vec![input, axes_const],
            vec![
                ("T", type_attr(DT_FLOAT)),
                ("Tidx", type_attr(DT_INT32)),
                ("keep_dims", attr(attr_value::Value::B(true))),
            ],
        )
    }

    /// `x · wᵀ (+ b)` over the last axis of `x`.
    fn linear(&mut self, at: &str, x: String, rank: usize, inputs: &[String]) -> Result<String> {
        let w = self.weight(&inputs[1])?;
        let product = if rank == 2 {
            self.node(
                format!("{at}/matmul"),
                "MatMul",
                vec![x, w],
                vec![
                    ("T", type_attr(DT_FLOAT)),
                    ("transpose_a", attr(attr_value::Value::B(false))),
                    ("transpose_b", attr(attr_value::Value::B(true))),
                ],
            )
        } else {
            self.node(
                format!("{at}/matmul"),
                "BatchMatMulV2",
                vec![x, w],
                vec![
                    ("T", type_attr(DT_FLOAT)),
                    ("adj_x", attr(attr_value::Value::B(false))),
                    ("adj_y", attr(attr_value::Value::B(true))),
                ],
            )
        };
        Ok(match inputs.get(2) {
            Some(bias) => {
                let b = self.weight(bias)?;
                self.node(
                    at.to_string(),
                    "BiasAdd",
                    vec![product, b],
                    vec![("T", type_attr(DT_FLOAT)), ("data_format", text("NHWC"))],
                )
            }
            None => product,
        })
    }
}

/// Whether a zoo reshape has more unknown sizes than TensorFlow's one `-1`: its leading 0s
/// (ONNX's "copy the input's size") then come from the input's shape at run time.
fn dynamic_reshape(shape: &[i64]) -> bool {
    let unknown = shape.iter().filter(|&&d| d == 0 || d == -1).count();
    unknown > 1 || shape.iter().skip_while(|&&d| d == 0).any(|&d| d == 0)
}

impl Writer<'_> {
    /// `values[begin .. begin + len]` of a 1-D int32 tensor.
    fn slice_ints(&mut self, name: String, values: String, begin: i32, len: i32) -> String {
        let b = self.int32s(format!("{name}/begin"), &[1], &[begin]);
        let n = self.int32s(format!("{name}/len"), &[1], &[len]);
        self.node(
            name,
            "Slice",
            vec![values, b, n],
            vec![("T", type_attr(DT_INT32)), ("Index", type_attr(DT_INT32))],
        )
    }

    /// Two 1-D int32 tensors joined.
    fn concat_ints(&mut self, name: String, a: String, b: String) -> String {
        let axis = self.int32s(format!("{name}/axis"), &[], &[0]);
        self.node(
            name,
            "ConcatV2",
            vec![a, b, axis],
            vec![
                ("N", attr(attr_value::Value::I(2))),
                ("T", type_attr(DT_INT32)),
                ("Tidx", type_attr(DT_INT32)),
            ],
        )
    }

    /// A reshape whose leading sizes are the input's own, read at run time: the leading 0s,
    /// and a `-1` right after them (the zoo's BERT: `[N, S, H]` ↔ `[N, S, heads, H / heads]`,
    /// where S is dynamic); the sizes after them are as given (one `-1` among them at most).
    fn reshape_copying(&mut self, at: &str, input: String, shape: &[i64]) -> Result<String> {
        let zeros = shape.iter().take_while(|&&d| d == 0).count();
        // The -1 right after the 0s is the input's own size only when sizes follow it (a
        // split or a join of what comes after); `[0, -1]` alone flattens.
        let copied = zeros + usize::from(shape.get(zeros) == Some(&-1) && shape.len() > zeros + 1);
        let rest: Vec<i32> = shape[copied..].iter().map(|&d| d as i32).collect();
        if rest.contains(&0) || rest.iter().filter(|&&d| d == -1).count() > 1 {
            return Err(fail(format!("reshape to {shape:?} (0s only in front)")));
        }
        let full = self.node(
            format!("{at}/input_shape"),
            "Shape",
            vec![input.clone()],
            vec![("T", type_attr(DT_FLOAT)), ("out_type", type_attr(DT_INT32))],
        );
        let kept = self.slice_ints(format!("{at}/kept"), full, 0, copied as i32);
        let tail = self.int32s(format!("{at}/tail"), &[rest.len()], &rest);
        let target = self.concat_ints(format!("{at}/target"), kept, tail);
        Ok(self.node(
            at.to_string(),
            "Reshape",
            vec![input, target],
            vec![("T", type_attr(DT_FLOAT)), ("Tshape", type_attr(DT_INT32))],
        ))
    }
}

/// The frozen graph of `graph`.
pub fn graph_def(graph: &Graph) -> Result<GraphDef> {
    let mut w =
        Writer { graph, nodes: Vec::new(), values: HashMap::new(), constants: Default::default() };
    for spec in &graph.inputs {
        let code = thrum_tensorflow::dtype_code(spec.dtype)
            .ok_or_else(|| fail(format!("{} inputs", spec.dtype)))?;
        let dims: Vec<i64> =
            spec.shape.iter().map(|d| d.fixed().map_or(-1, |n| n as i64)).collect();
        let name = w.node(
            spec.name.clone(),
            "Placeholder",
            Vec::new(),
            vec![
                ("dtype", type_attr(code)),
                ("shape", attr(attr_value::Value::Shape(TensorShapeProto::of(&dims)))),
            ],
        );
        w.values.insert(spec.name.clone(), Value { tensor: name, nhwc: false });
    }
    let ranks: HashMap<&str, usize> =
        graph.nodes.iter().map(|n| (n.output.as_str(), n.shape.len())).collect();
    let rank_of = |name: &str| -> usize {
        ranks
            .get(name)
            .copied()
            .or_else(|| graph.inputs.iter().find(|s| s.name == name).map(|s| s.shape.len()))
            .unwrap_or(0)
    };
    for node in &graph.nodes {
        let at = format!("n/{}", node.name);
        let first =
            node.inputs.first().ok_or_else(|| fail(format!("{} has no input", node.name)))?;
        let x = w.value(first)?;
        let out = match &node.op {
            Op::Conv { kernel: _, stride, pads, groups } => {
                let input = w.nhwc(&at, &x);
                let input = w.pad_sides(&at, input, *pads, None);
                let s = *stride as i64;
                let channels = w.weight_tensor(&node.inputs[1])?.shape()[0];
                let (op, filter) = match *groups {
                    1 => ("Conv2D", w.conv_weight(&node.inputs[1], false)?),
                    g if g == channels => {
                        ("DepthwiseConv2dNative", w.conv_weight(&node.inputs[1], true)?)
                    }
                    g => {
                        return Err(fail(format!(
                            "{}: a convolution in {g} groups of {channels} channels (TensorFlow \
                             has full and depthwise ones)",
                            node.name
                        )));
                    }
                };
                let mut attrs = vec![
                    ("T", type_attr(DT_FLOAT)),
                    ("strides", ints(&[1, s, s, 1])),
                    ("padding", text("VALID")),
                    ("data_format", text("NHWC")),
                    ("dilations", ints(&[1, 1, 1, 1])),
                ];
                if op == "Conv2D" {
                    attrs.push(("use_cudnn_on_gpu", attr(attr_value::Value::B(true))));
                }
                let conv = w.node(
                    if node.inputs.len() > 2 { format!("{at}/conv") } else { at.clone() },
                    op,
                    vec![input, filter],
                    attrs,
                );
                let tensor = match node.inputs.get(2) {
                    Some(bias) => {
                        let b = w.weight(bias)?;
                        w.node(
                            at.clone(),
                            "BiasAdd",
                            vec![conv, b],
                            vec![("T", type_attr(DT_FLOAT)), ("data_format", text("NHWC"))],
                        )
                    }
                    None => conv,
                };
                Value { tensor, nhwc: true }
            }
            Op::BatchNorm { epsilon } => {
                let input = w.nhwc(&at, &x);
                let params =
                    node.inputs[1..5].iter().map(|n| w.weight(n)).collect::<Result<Vec<_>>>()?;
                let mut inputs = vec![input];
                inputs.extend(params);
                let tensor = w.node(
                    at.clone(),
                    "FusedBatchNormV3",
                    inputs,
                    vec![
                        ("T", type_attr(DT_FLOAT)),
                        ("U", type_attr(DT_FLOAT)),
                        ("epsilon", attr(attr_value::Value::F(*epsilon))),
                        ("data_format", text("NHWC")),
                        ("is_training", attr(attr_value::Value::B(false))),
                    ],
                );
                Value { tensor, nhwc: true }
            }
            Op::Relu => {
                Value { tensor: w.unary(at.clone(), "Relu", x.tensor.clone()), nhwc: x.nhwc }
            }
            Op::Clip { min, max } if *min == 0.0 && *max == 6.0 => {
                Value { tensor: w.unary(at.clone(), "Relu6", x.tensor.clone()), nhwc: x.nhwc }
            }
            Op::Clip { min, max } => {
                let lo = w.float(format!("{at}/min"), *min);
                let hi = w.float(format!("{at}/max"), *max);
                let tensor = w.node(
                    at.clone(),
                    "ClipByValue",
                    vec![x.tensor.clone(), lo, hi],
                    vec![("T", type_attr(DT_FLOAT))],
                );
                Value { tensor, nhwc: x.nhwc }
            }
            Op::MaxPool { kernel, stride, pad } => {
                let input = w.nhwc(&at, &x);
                let input = w.pad(&at, input, *pad, Some(f32::NEG_INFINITY));
                let (k, s) = (*kernel as i64, *stride as i64);
                let tensor = w.node(
                    at.clone(),
                    "MaxPool",
                    vec![input],
                    vec![
                        ("T", type_attr(DT_FLOAT)),
                        ("ksize", ints(&[1, k, k, 1])),
                        ("strides", ints(&[1, s, s, 1])),
                        ("padding", text("VALID")),
                        ("data_format", text("NHWC")),
                    ],
                );
                Value { tensor, nhwc: true }
            }
            Op::GlobalAveragePool => {
                if x.nhwc {
                    Value { tensor: w.mean(at.clone(), x.tensor.clone(), &[1, 2]), nhwc: true }
                } else {
                    Value { tensor: w.mean(at.clone(), x.tensor.clone(), &[2, 3]), nhwc: false }
                }
            }
            Op::Flatten => {
                let input = w.zoo_layout(&at, &x);
                let rest: usize = node.shape.iter().skip(1).product();
                let shape = w.constant(
                    format!("{at}/shape"),
                    DT_INT64,
                    &[2],
                    [-1i64, rest as i64].iter().flat_map(|v| v.to_le_bytes()).collect(),
                );
                let tensor = w.node(
                    at.clone(),
                    "Reshape",
                    vec![input, shape],
                    vec![("T", type_attr(DT_FLOAT)), ("Tshape", type_attr(DT_INT64))],
                );
                Value { tensor, nhwc: false }
            }
            Op::Linear => {
                let input = w.zoo_layout(&at, &x);
                Value { tensor: w.linear(&at, input, rank_of(first), &node.inputs)?, nhwc: false }
            }
            Op::Add => {
                let y = w.value(&node.inputs[1])?;
                let (a, b, nhwc) = if x.nhwc && y.nhwc {
                    (x.tensor.clone(), y.tensor.clone(), true)
                } else {
                    (
                        w.zoo_layout(&format!("{at}/a"), &x),
                        w.zoo_layout(&format!("{at}/b"), &y),
                        false,
                    )
                };
                Value { tensor: w.binary(at.clone(), "AddV2", a, b), nhwc }
            }
            Op::MatMul => {
                let y = w.value(&node.inputs[1])?;
                let tensor = w.node(
                    at.clone(),
                    "BatchMatMulV2",
                    vec![x.tensor.clone(), y.tensor],
                    vec![
                        ("T", type_attr(DT_FLOAT)),
                        ("adj_x", attr(attr_value::Value::B(false))),
                        ("adj_y", attr(attr_value::Value::B(false))),
                    ],
                );
                Value { tensor, nhwc: false }
            }
            Op::Gather => {
                let indices = w.value(&node.inputs[1])?;
                let index_dtype = graph
                    .inputs
                    .iter()
                    .find(|s| s.name == node.inputs[1])
                    .map_or(DType::I64, |s| s.dtype);
                let code = thrum_tensorflow::dtype_code(index_dtype).unwrap_or(DT_INT64);
                let axis = w.int32s(format!("{at}/axis"), &[], &[0]);
                let tensor = w.node(
                    at.clone(),
                    "GatherV2",
                    vec![x.tensor.clone(), indices.tensor, axis],
                    vec![
                        ("Tparams", type_attr(DT_FLOAT)),
                        ("Tindices", type_attr(code)),
                        ("Taxis", type_attr(DT_INT32)),
                        ("batch_dims", attr(attr_value::Value::I(0))),
                    ],
                );
                Value { tensor, nhwc: false }
            }
            Op::Reshape { shape } if dynamic_reshape(shape) => {
                let input = w.zoo_layout(&at, &x);
                let tensor = w.reshape_copying(&at, input, shape)?;
                Value { tensor, nhwc: false }
            }
            Op::Reshape { shape } => {
                // `0` (copy the input's size) is TensorFlow's `-1` when it is the only unknown.
                let mut target = shape.clone();
                if target.first() == Some(&0) {
                    target[0] = -1;
                }
                let input = w.zoo_layout(&at, &x);
                let shape_const = w.constant(
                    format!("{at}/shape"),
                    DT_INT64,
                    &[target.len()],
                    target.iter().flat_map(|v| v.to_le_bytes()).collect(),
                );
                let tensor = w.node(
                    at.clone(),
                    "Reshape",
                    vec![input, shape_const],
                    vec![("T", type_attr(DT_FLOAT)), ("Tshape", type_attr(DT_INT64))],
                );
                Value { tensor, nhwc: false }
            }
            Op::Transpose { perm } => {
                let input = w.zoo_layout(&at, &x);
                let perm: Vec<i32> = perm.iter().map(|&p| p as i32).collect();
                Value { tensor: w.transpose(at.clone(), &input, &perm, DT_FLOAT), nhwc: false }
            }
            Op::Softmax { axis } => {
                let rank = node.shape.len() as i64;
                if *axis != -1 && *axis != rank - 1 {
                    return Err(fail(format!(
                        "softmax over axis {axis} (TensorFlow's is over the last)"
                    )));
                }
                let input = w.zoo_layout(&at, &x);
                Value { tensor: w.unary(at.clone(), "Softmax", input), nhwc: false }
            }
            Op::LayerNorm { epsilon } => {
                let input = w.zoo_layout(&at, &x);
                let mean = w.mean(format!("{at}/mean"), input.clone(), &[-1]);
                let centered = w.binary(format!("{at}/centered"), "Sub", input, mean);
                let squared = w.unary(format!("{at}/squared"), "Square", centered.clone());
                let variance = w.mean(format!("{at}/variance"), squared, &[-1]);
                let eps = w.float(format!("{at}/epsilon"), *epsilon);
                let shifted = w.binary(format!("{at}/shifted"), "AddV2", variance, eps);
                let inv = w.unary(format!("{at}/rsqrt"), "Rsqrt", shifted);
                let normed = w.binary(format!("{at}/normed"), "Mul", centered, inv);
                let scale = w.weight(&node.inputs[1])?;
                let scaled = w.binary(format!("{at}/scaled"), "Mul", normed, scale);
                let bias = w.weight(&node.inputs[2])?;
                Value { tensor: w.binary(at.clone(), "AddV2", scaled, bias), nhwc: false }
            }
            Op::Gelu => {
                // x · Φ(x) = 0.5 · x · (1 + erf(x / √2)).
                let input = w.zoo_layout(&at, &x);
                let inv_sqrt2 = w.float(format!("{at}/inv_sqrt2"), std::f32::consts::FRAC_1_SQRT_2);
                let scaled = w.binary(format!("{at}/scaled"), "Mul", input.clone(), inv_sqrt2);
                let erf = w.unary(format!("{at}/erf"), "Erf", scaled);
                let one = w.float(format!("{at}/one"), 1.0);
                let plus = w.binary(format!("{at}/plus_one"), "AddV2", erf, one);
                let half = w.float(format!("{at}/half"), 0.5);
                let half_x = w.binary(format!("{at}/half_x"), "Mul", input, half);
                Value { tensor: w.binary(at.clone(), "Mul", half_x, plus), nhwc: false }
            }
            Op::Scale { factor } => {
                let f = w.float(format!("{at}/factor"), *factor);
                Value { tensor: w.binary(at.clone(), "Mul", x.tensor.clone(), f), nhwc: x.nhwc }
            }
            Op::Affine { scale, shift } => {
                let input = w.zoo_layout(&at, &x);
                let scale = w.float(format!("{at}/scale"), *scale);
                let scaled = w.binary(format!("{at}/scaled"), "Mul", input, scale);
                let shift = w.float(format!("{at}/shift"), *shift);
                Value { tensor: w.binary(at.clone(), "AddV2", scaled, shift), nhwc: false }
            }
            Op::Cast { to } => {
                let from =
                    graph.inputs.iter().find(|s| s.name == *first).map_or(DType::F32, |s| s.dtype);
                let code = |d: DType| {
                    thrum_tensorflow::dtype_code(d).ok_or_else(|| fail(format!("a cast of {d}")))
                };
                let (src, dst) = (code(from)?, code(*to)?);
                let tensor = w.node(
                    at.clone(),
                    "Cast",
                    vec![x.tensor.clone()],
                    vec![
                        ("SrcT", type_attr(src)),
                        ("DstT", type_attr(dst)),
                        ("Truncate", attr(attr_value::Value::B(false))),
                    ],
                );
                Value { tensor, nhwc: false }
            }
            Op::RowsLike => {
                // The table's first S rows, S = like's size along axis 1, read at run time.
                let like = w.value(&node.inputs[1])?;
                let like_code = graph
                    .inputs
                    .iter()
                    .find(|s| s.name == node.inputs[1])
                    .and_then(|s| thrum_tensorflow::dtype_code(s.dtype))
                    .unwrap_or(DT_FLOAT);
                let shape = w.node(
                    format!("{at}/like_shape"),
                    "Shape",
                    vec![like.tensor],
                    vec![("T", type_attr(like_code)), ("out_type", type_attr(DT_INT32))],
                );
                let rows = w.slice_ints(format!("{at}/rows"), shape, 1, 1);
                let all = w.int32s(format!("{at}/all_columns"), &[1], &[-1]);
                let size = w.concat_ints(format!("{at}/size"), rows, all);
                let begin = w.int32s(format!("{at}/begin"), &[2], &[0, 0]);
                let tensor = w.node(
                    at.clone(),
                    "Slice",
                    vec![x.tensor.clone(), begin, size],
                    vec![("T", type_attr(DT_FLOAT)), ("Index", type_attr(DT_INT32))],
                );
                Value { tensor, nhwc: false }
            }
        };
        w.values.insert(node.output.clone(), out);
    }
    for spec in &graph.outputs {
        let value = w
            .values
            .get(&spec.name)
            .cloned()
            .ok_or_else(|| fail(format!("output `{}` is not computed", spec.name)))?;
        let input = w.zoo_layout(&format!("out/{}", spec.name), &value);
        w.node(spec.name.clone(), "Identity", vec![input], vec![("T", type_attr(DT_FLOAT))]);
    }
    Ok(GraphDef {
        node: w.nodes,
        versions: Some(VersionDef { producer: PRODUCER, min_consumer: 0 }),
    })
}
