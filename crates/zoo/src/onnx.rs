//! ONNX protobuf I/O: graphs out (export), tensors in and out (`TensorProto` `.pb` files).

use prost::Message;
use thrum_core::{DType, Dim, Tensor, TensorData, TensorSpec};
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;

use crate::Error;
use crate::graph::{Graph, Node, Op};

/// The ONNX opset the exporter targets (17 has `LayerNormalization`).
pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;

/// Serializes `graph` as an ONNX model (opset 17), weights as initializers.
pub fn export(graph: &Graph) -> Vec<u8> {
    let mut w = Writer::default();
    for node in &graph.nodes {
        w.node(node);
    }
    let mut initializer: Vec<pb::TensorProto> =
        graph.weights.iter().map(|(name, t)| tensor_proto(name, t)).collect();
    initializer.append(&mut w.constants);
    let model = pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "thrum-zoo".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{}: built by thrum-zoo; {} parameters; {} FLOPs per sample",
            graph.name,
            graph.parameter_count(),
            graph.flops_per_sample
        ),
        graph: Some(pb::GraphProto {
            name: graph.name.clone(),
            node: w.nodes,
            initializer,
            input: graph.inputs.iter().map(value_info).collect(),
            output: graph.outputs.iter().map(value_info).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// A model whose outputs echo its inputs (`NAME` → `Identity` → `NAME_out`), each of the
/// given dtype with a dynamic batch axis and `width` values per sample: what protocol tests
/// send every datatype through.
pub fn identity(specs: &[(&str, DType)], width: usize) -> Vec<u8> {
    let spec = |name: String, dtype: DType| {
        TensorSpec::new(name, dtype, vec![Dim::named("N"), Dim::Fixed(width)])
    };
    let inputs: Vec<TensorSpec> = specs.iter().map(|(n, d)| spec(n.to_string(), *d)).collect();
    let outputs: Vec<TensorSpec> =
        specs.iter().map(|(n, d)| spec(format!("{n}_out"), *d)).collect();
    let nodes = specs
        .iter()
        .map(|(n, _)| pb::NodeProto {
            op_type: "Identity".into(),
            name: format!("echo_{n}"),
            input: vec![n.to_string()],
            output: vec![format!("{n}_out")],
            ..Default::default()
        })
        .collect();
    pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "thrum-zoo".into(),
        graph: Some(pb::GraphProto {
            name: "identity".into(),
            node: nodes,
            input: inputs.iter().map(value_info).collect(),
            output: outputs.iter().map(value_info).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[derive(Default)]
struct Writer {
    nodes: Vec<pb::NodeProto>,
    constants: Vec<pb::TensorProto>,
}

impl Writer {
    fn push(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<pb::AttributeProto>,
    ) {
        self.nodes.push(pb::NodeProto {
            op_type: op_type.into(),
            name: name.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        });
    }

    fn constant(&mut self, name: String, tensor: &Tensor) -> String {
        self.constants.push(tensor_proto(&name, tensor));
        name
    }

    fn node(&mut self, node: &Node) {
        let inputs: Vec<&str> = node.inputs.iter().map(String::as_str).collect();
        let (name, out) = (node.name.as_str(), node.output.as_str());
        match &node.op {
            Op::Conv { kernel, stride, pads, groups } => {
                let (k, s) = (*kernel as i64, *stride as i64);
                let [top, left, bottom, right] = pads.map(|p| p as i64);
                let attrs = vec![
                    ints("kernel_shape", &[k, k]),
                    ints("strides", &[s, s]),
                    // ONNX orders pads as every axis's begin, then every axis's end.
                    ints("pads", &[top, left, bottom, right]),
                    int("group", *groups as i64),
                ];
                self.push("Conv", name, &inputs, out, attrs);
            }
            Op::Clip { min, max } => {
                let min = self.constant(format!("{name}_min"), &Tensor::scalar(*min));
                let max = self.constant(format!("{name}_max"), &Tensor::scalar(*max));
                self.push("Clip", name, &[inputs[0], &min, &max], out, vec![]);
            }
            Op::BatchNorm { epsilon } => self.push(
                "BatchNormalization",
                name,
                &inputs,
                out,
                vec![float("epsilon", *epsilon)],
            ),
            Op::Relu => self.push("Relu", name, &inputs, out, vec![]),
            Op::MaxPool { kernel, stride, pad } => {
                let (k, s, p) = (*kernel as i64, *stride as i64, *pad as i64);
                let attrs = vec![
                    ints("kernel_shape", &[k, k]),
                    ints("strides", &[s, s]),
                    ints("pads", &[p, p, p, p]),
                ];
                self.push("MaxPool", name, &inputs, out, attrs);
            }
            Op::GlobalAveragePool => self.push("GlobalAveragePool", name, &inputs, out, vec![]),
            Op::Flatten => self.push("Flatten", name, &inputs, out, vec![int("axis", 1)]),
            Op::Linear if node.shape.len() == 2 => {
                self.push("Gemm", name, &inputs, out, vec![int("transB", 1)]);
            }
            Op::Linear => {
                // x·wᵀ: the weight keeps its [out, in] initializer; engines fold the Transpose.
                let wt = format!("{name}_wT");
                self.push("Transpose", &wt, &[inputs[1]], &wt, vec![ints("perm", &[1, 0])]);
                let product = format!("{name}_matmul");
                self.push("MatMul", &product, &[inputs[0], &wt], &product, vec![]);
                self.push("Add", name, &[&product, inputs[2]], out, vec![]);
            }
            Op::Add => self.push("Add", name, &inputs, out, vec![]),
            Op::MatMul => self.push("MatMul", name, &inputs, out, vec![]),
            Op::Gather => self.push("Gather", name, &inputs, out, vec![int("axis", 0)]),
            Op::Reshape { shape } => {
                let len = shape.len();
                let shape = Tensor::from_vec(vec![len], shape.clone())
                    .unwrap_or_else(|_| Tensor::scalar(0i64));
                let shape_name = self.constant(format!("{name}_shape"), &shape);
                self.push("Reshape", name, &[inputs[0], &shape_name], out, vec![]);
            }
            Op::Transpose { perm } => {
                let perm: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
                self.push("Transpose", name, &inputs, out, vec![ints("perm", &perm)]);
            }
            Op::Softmax { axis } => {
                self.push("Softmax", name, &inputs, out, vec![int("axis", *axis)])
            }
            Op::LayerNorm { epsilon } => {
                let attrs = vec![int("axis", -1), float("epsilon", *epsilon)];
                self.push("LayerNormalization", name, &inputs, out, attrs);
            }
            Op::Gelu => {
                // Opset 17 has no Gelu: 0.5·x·(1 + erf(x/√2)), the exact form.
                let sqrt2 = self
                    .constant(format!("{name}_sqrt2"), &Tensor::scalar(std::f32::consts::SQRT_2));
                let one = self.constant(format!("{name}_one"), &Tensor::scalar(1.0f32));
                let half = self.constant(format!("{name}_half"), &Tensor::scalar(0.5f32));
                let (div, erf, plus, times) = (
                    format!("{name}_div"),
                    format!("{name}_erf"),
                    format!("{name}_plus1"),
                    format!("{name}_mul"),
                );
                self.push("Div", &div, &[inputs[0], &sqrt2], &div, vec![]);
                self.push("Erf", &erf, &[&div], &erf, vec![]);
                self.push("Add", &plus, &[&erf, &one], &plus, vec![]);
                self.push("Mul", &times, &[inputs[0], &plus], &times, vec![]);
                self.push("Mul", name, &[&times, &half], out, vec![]);
            }
            Op::Scale { factor } => {
                let factor = self.constant(format!("{name}_factor"), &Tensor::scalar(*factor));
                self.push("Mul", name, &[inputs[0], &factor], out, vec![]);
            }
            Op::Affine { scale, shift } => {
                let scale = self.constant(format!("{name}_scale"), &Tensor::scalar(*scale));
                let shift = self.constant(format!("{name}_shift"), &Tensor::scalar(*shift));
                let scaled = format!("{name}_scaled");
                self.push("Mul", &scaled, &[inputs[0], &scale], &scaled, vec![]);
                self.push("Add", name, &[&scaled, &shift], out, vec![]);
            }
            Op::Cast { to } => {
                self.push("Cast", name, &inputs, out, vec![int("to", data_type(*to) as i64)]);
            }
            Op::RowsLike => {
                // Shape(like)[1:2] is the row count, a 1-D tensor as Slice wants its ends.
                let rows = format!("{name}_rows");
                let attrs = vec![int("start", 1), int("end", 2)];
                self.push("Shape", &rows, &[inputs[1]], &rows, attrs);
                let zero = self.constant(
                    format!("{name}_start"),
                    &Tensor::from_vec(vec![1], vec![0i64]).unwrap_or_else(|_| Tensor::scalar(0i64)),
                );
                self.push("Slice", name, &[inputs[0], &zero, &rows, &zero], out, vec![]);
            }
        }
    }
}

fn int(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn float(name: &str, value: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: value,
        ..Default::default()
    }
}

fn value_info(spec: &TensorSpec) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = spec
        .shape
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n as i64),
                Dim::Dynamic(name) => Value::DimParam(name.clone().unwrap_or_else(|| "?".into())),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: spec.name.clone(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: data_type(spec.dtype) as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn data_type(dtype: DType) -> DataType {
    match dtype {
        DType::Bool => DataType::Bool,
        DType::U8 => DataType::Uint8,
        DType::U16 => DataType::Uint16,
        DType::U32 => DataType::Uint32,
        DType::U64 => DataType::Uint64,
        DType::I8 => DataType::Int8,
        DType::I16 => DataType::Int16,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::F16 => DataType::Float16,
        DType::BF16 => DataType::Bfloat16,
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::Bytes => DataType::String,
    }
}

/// `tensor` as an ONNX `TensorProto` named `name` (numeric data in `raw_data`).
pub fn tensor_proto(name: &str, tensor: &Tensor) -> pb::TensorProto {
    let mut proto = pb::TensorProto {
        name: name.into(),
        dims: tensor.shape().iter().map(|&d| d as i64).collect(),
        data_type: data_type(tensor.dtype()) as i32,
        ..Default::default()
    };
    match (tensor.data(), tensor.to_le_bytes()) {
        (TensorData::Bytes(strings), _) => proto.string_data = strings.as_ref().clone(),
        (_, Some(raw)) => proto.raw_data = raw,
        (_, None) => {}
    }
    proto
}

/// Serializes `tensor` as a `TensorProto` `.pb` file's bytes.
pub fn encode_tensor(name: &str, tensor: &Tensor) -> Vec<u8> {
    tensor_proto(name, tensor).encode_to_vec()
}

/// Reads a serialized `TensorProto` (the `.pb` files of ONNX test data): its name and tensor.
pub fn decode_tensor(bytes: &[u8]) -> Result<(String, Tensor), Error> {
    let invalid = |reason: String| Error::InvalidData { what: "ONNX TensorProto".into(), reason };
    let proto =
        pb::TensorProto::decode(bytes).map_err(|e| invalid(format!("not a TensorProto: {e}")))?;
    let shape: Vec<usize> = proto
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| invalid(format!("negative dimension in {:?}", proto.dims)))?;
    if proto.data_location == Some(1) || !proto.external_data.is_empty() {
        return Err(invalid(format!(
            "tensor `{}` keeps its data in an external file; inline data is expected",
            proto.name
        )));
    }
    let dims = proto.dims.clone();
    let bad = |what: &str| invalid(format!("tensor `{}` of shape {dims:?}: {what}", proto.name));
    let data_type = DataType::try_from(proto.data_type)
        .map_err(|_| bad(&format!("unknown data type {}", proto.data_type)))?;
    let raw = &proto.raw_data;
    macro_rules! from_raw {
        ($t:ty, $n:expr) => {{
            if raw.len() % $n != 0 {
                return Err(bad(&format!(
                    "raw_data holds {} bytes, not a multiple of {}",
                    raw.len(),
                    $n
                )));
            }
            raw.chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])))
                .collect::<Vec<$t>>()
        }};
    }
    let use_raw = !raw.is_empty();
    let tensor = match data_type {
        DataType::Float if use_raw => Tensor::from_vec(shape, from_raw!(f32, 4)),
        DataType::Float => Tensor::from_vec(shape, proto.float_data.clone()),
        DataType::Double if use_raw => Tensor::from_vec(shape, from_raw!(f64, 8)),
        DataType::Double => Tensor::from_vec(shape, proto.double_data.clone()),
        DataType::Int64 if use_raw => Tensor::from_vec(shape, from_raw!(i64, 8)),
        DataType::Int64 => Tensor::from_vec(shape, proto.int64_data.clone()),
        DataType::Int32 if use_raw => Tensor::from_vec(shape, from_raw!(i32, 4)),
        DataType::Int32 => Tensor::from_vec(shape, proto.int32_data.clone()),
        DataType::Uint64 if use_raw => Tensor::from_vec(shape, from_raw!(u64, 8)),
        DataType::Uint64 => Tensor::from_vec(shape, proto.uint64_data.clone()),
        DataType::Uint32 if use_raw => Tensor::from_vec(shape, from_raw!(u32, 4)),
        DataType::Uint32 => {
            Tensor::from_vec(shape, proto.uint64_data.iter().map(|&v| v as u32).collect())
        }
        DataType::Int16 if use_raw => Tensor::from_vec(shape, from_raw!(i16, 2)),
        DataType::Int16 => {
            Tensor::from_vec(shape, proto.int32_data.iter().map(|&v| v as i16).collect())
        }
        DataType::Uint16 if use_raw => Tensor::from_vec(shape, from_raw!(u16, 2)),
        DataType::Uint16 => {
            Tensor::from_vec(shape, proto.int32_data.iter().map(|&v| v as u16).collect())
        }
        DataType::Int8 if use_raw => {
            Tensor::from_vec(shape, raw.iter().map(|&b| b as i8).collect::<Vec<i8>>())
        }
        DataType::Int8 => {
            Tensor::from_vec(shape, proto.int32_data.iter().map(|&v| v as i8).collect())
        }
        DataType::Uint8 if use_raw => Tensor::from_vec(shape, raw.clone()),
        DataType::Uint8 => {
            Tensor::from_vec(shape, proto.int32_data.iter().map(|&v| v as u8).collect())
        }
        DataType::Bool if use_raw => {
            Tensor::from_vec(shape, raw.iter().map(|&b| b != 0).collect::<Vec<bool>>())
        }
        DataType::Bool => {
            Tensor::from_vec(shape, proto.int32_data.iter().map(|&v| v != 0).collect::<Vec<bool>>())
        }
        DataType::Float16 if use_raw => Tensor::from_vec(
            shape,
            from_raw!(u16, 2).into_iter().map(thrum_core::half::f16::from_bits).collect::<Vec<_>>(),
        ),
        DataType::Float16 => Tensor::from_vec(
            shape,
            proto
                .int32_data
                .iter()
                .map(|&v| thrum_core::half::f16::from_bits(v as u16))
                .collect::<Vec<_>>(),
        ),
        DataType::Bfloat16 if use_raw => Tensor::from_vec(
            shape,
            from_raw!(u16, 2)
                .into_iter()
                .map(thrum_core::half::bf16::from_bits)
                .collect::<Vec<_>>(),
        ),
        DataType::Bfloat16 => Tensor::from_vec(
            shape,
            proto
                .int32_data
                .iter()
                .map(|&v| thrum_core::half::bf16::from_bits(v as u16))
                .collect::<Vec<_>>(),
        ),
        DataType::String => Tensor::from_vec(shape, proto.string_data.clone()),
        other => {
            return Err(bad(&format!(
                "data type {} is not supported by thrum",
                other.as_str_name()
            )));
        }
    }
    .map_err(|e| bad(&e.to_string()))?;
    Ok((proto.name, tensor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_round_trip_through_tensor_proto() {
        let tensors = [
            Tensor::from_vec(vec![2, 2], vec![1.5f32, -2.0, 0.0, 3.25]).unwrap(),
            Tensor::from_vec(vec![3], vec![1i64, -7, 9]).unwrap(),
            Tensor::from_vec(vec![2], vec![true, false]).unwrap(),
            Tensor::from_vec(vec![1], vec![b"abc".to_vec()]).unwrap(),
        ];
        for t in tensors {
            let (name, back) = decode_tensor(&encode_tensor("x", &t)).unwrap();
            assert_eq!(name, "x");
            assert!(back.bit_eq(&t), "{t:?} became {back:?}");
        }
    }

    #[test]
    fn garbage_is_not_a_tensor_proto() {
        let err = decode_tensor(&[0xff, 0xff, 0xff, 0x01]).unwrap_err().to_string();
        assert!(err.contains("TensorProto"), "{err}");
    }

    #[test]
    fn raw_data_of_the_wrong_length_is_refused() {
        let proto = pb::TensorProto {
            name: "x".into(),
            dims: vec![2],
            data_type: DataType::Float as i32,
            raw_data: vec![0; 7],
            ..Default::default()
        };
        let err = decode_tensor(&proto.encode_to_vec()).unwrap_err().to_string();
        assert!(err.contains("7 bytes"), "{err}");
    }
}
