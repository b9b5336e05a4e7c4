//! The QOperator form of a QDQ graph, for engines that run integer convolutions only from
//! `QLinearConv` (tract: it does not fuse QDQ pairs, docs/performance.md "tract and int8").
//!
//! Each `DequantizeLinear(x) → Conv(DequantizeLinear(w), DequantizeLinear(b)) →
//! QuantizeLinear` becomes one standard `QLinearConv` (opset 10: no contrib operator, so every
//! engine that reads ONNX runs it) with the same scales and zero points, the int8 weights and
//! the int32 bias; every other node is kept, QDQ pairs included. ONNX Runtime's own QOperator
//! format (`QuantFormat.QOperator`) does the same for `Conv` and writes contrib operators
//! (`QLinearAdd`, `QGemm`…) for the rest, which only ONNX Runtime reads.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use crate::graph;

/// Rewrites every quantized `Conv` of the QDQ graph `g` (as [`crate::Quantizer::quantize`]
/// writes it) as a `QLinearConv`, and returns how many were rewritten; with `ordinary_only`,
/// only convolutions of one group with one weight scale (tract's integer kernel; the rest
/// keep QDQ). A `Conv` is left as it is unless it has exactly the form
/// `QLinearConv` computes: its input a uint8 tensor with one scale and zero point, its weight
/// an int8 initializer with one scale (or one per output channel, axis 0) and zero points of
/// 0, its bias (if any) an int32 initializer with zero points of 0, its output read by one
/// `QuantizeLinear` to uint8 with one scale and zero point, and no other attribute on these
/// nodes (a graph output, a second reader, a float bias keep the QDQ form).
pub(crate) fn qlinear_convs(g: &mut pb::GraphProto, ordinary_only: bool) -> usize {
    let inits: HashMap<&str, &pb::TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    // An initializer of `dtype` with `count` elements (None: any), else None.
    let init = |name: &str, dtype: DataType, count: Option<usize>| {
        inits.get(name).copied().filter(|t| {
            t.data_type == dtype as i32
                && count.is_none_or(|c| graph::element_count(&t.dims) == c)
                && (count != Some(1) || t.dims.iter().all(|&d| d == 1))
        })
    };
    // Zero points of 0, stored inline.
    let zeros = |t: &pb::TensorProto| {
        t.data_location != Some(1)
            && t.raw_data.iter().all(|&b| b == 0)
            && t.int32_data.iter().all(|&v| v == 0)
    };
    // A scalar float scale and a scalar uint8 zero point: the `QuantizeLinear` or
    // `DequantizeLinear` of an activation as the quantizer writes it.
    let activation = |n: &pb::NodeProto| {
        n.attribute.is_empty()
            && init(&n.input[1], DataType::Float, Some(1)).is_some()
            && init(&n.input[2], DataType::Uint8, Some(1)).is_some()
    };
    let producer = graph::producers(g);
    let consumers = graph::consumers(g);
    let outputs = graph::graph_outputs(g);
    let dequantize = |t: &str| {
        producer.get(t).copied().filter(|&p| {
            let n = &g.node[p];
            n.op_type == "DequantizeLinear"
                && (n.domain.is_empty() || n.domain == "ai.onnx")
                && n.input.len() == 3
        })
    };
    // Conv index → its QLinearConv; the QuantizeLinear each one takes the place of.
    let mut replaced: HashMap<usize, pb::NodeProto> = HashMap::new();
    let mut absorbed: HashSet<usize> = HashSet::new();
    let onnx = |n: &pb::NodeProto| n.domain.is_empty() || n.domain == "ai.onnx";
    for (i, n) in g.node.iter().enumerate() {
        if n.op_type != "Conv" || !onnx(n) || !(2..=3).contains(&n.input.len()) {
            continue;
        }
        if ordinary_only && !crate::qdq::is_ordinary_conv(n) {
            continue;
        }
        let Some(dq) = n.input.iter().map(|t| dequantize(t)).collect::<Option<Vec<usize>>>() else {
            continue;
        };
        let Some(y) = n.output.first().filter(|y| !outputs.contains(*y)) else { continue };
        let q = match consumers.get(y).map(Vec::as_slice) {
            Some(&[q])
                if g.node[q].op_type == "QuantizeLinear"
                    && onnx(&g.node[q])
                    && g.node[q].input.len() == 3 =>
            {
                q
            }
            _ => continue,
        };
        let (x, w) = (&g.node[dq[0]], &g.node[dq[1]]);
        // The weight: int8, one scale or one per output channel (axis 0), zero points 0.
        let Some(weight) = init(&w.input[0], DataType::Int8, None) else { continue };
        let channels = weight.dims.first().map_or(0, |&m| m.max(0) as usize);
        let per_tensor = init(&w.input[1], DataType::Float, Some(1)).is_some()
            && init(&w.input[2], DataType::Int8, Some(1)).is_some_and(zeros);
        let per_channel = init(&w.input[1], DataType::Float, Some(channels))
            .is_some_and(|s| s.dims.len() == 1)
            && init(&w.input[2], DataType::Int8, Some(channels)).is_some_and(zeros);
        let axis_0 = w.attribute.iter().all(|a| a.name == "axis" && a.i == 0);
        // The bias: int32, one per output channel, zero points 0 (its scale is the input's
        // times the weight's, as the quantizer writes it).
        let bias_ok = dq.get(2).is_none_or(|&b| {
            let b = &g.node[b];
            init(&b.input[0], DataType::Int32, Some(channels)).is_some()
                && init(&b.input[2], DataType::Int32, None).is_some_and(zeros)
        });
        if !(activation(x)
            && activation(&g.node[q])
            && (per_tensor || (per_channel && !ordinary_only))
            && axis_0
            && bias_ok)
        {
            continue;
        }
        let mut inputs: Vec<String> = x.input.iter().chain(&w.input).cloned().collect();
        inputs.extend(g.node[q].input[1..].iter().cloned());
        if let Some(&b) = dq.get(2) {
            // The int32 bias at input scale × weight scale, zero point 0, as the quantizer
            // wrote it: QLinearConv takes it as it is.
            inputs.push(g.node[b].input[0].clone());
        }
        let mut conv = graph::node(
            "QLinearConv",
            format!("{}_QLinearConv", graph::node_name(n)),
            inputs,
            vec![g.node[q].output[0].clone()],
            n.attribute.clone(),
        );
        conv.doc_string = n.doc_string.clone();
        replaced.insert(i, conv);
        absorbed.insert(q);
    }
    let count = replaced.len();
    let nodes: Vec<pb::NodeProto> = std::mem::take(&mut g.node)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !absorbed.contains(i))
        .map(|(i, n)| replaced.remove(&i).unwrap_or(n))
        .collect();
    // The DequantizeLinear nodes only the rewritten convolutions read (their weights, biases,
    // and inputs read by nothing else) go too.
    let read: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(outputs.iter().map(String::as_str))
        .collect();
    let keep: Vec<bool> = nodes
        .iter()
        .map(|n| {
            n.op_type != "DequantizeLinear" || n.output.iter().any(|o| read.contains(o.as_str()))
        })
        .collect();
    g.node = nodes.into_iter().zip(keep).filter(|(_, k)| *k).map(|(n, _)| n).collect();
    count
}
