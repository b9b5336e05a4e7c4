//! Reading and rewriting ONNX graphs: constants, consumers, initializers, and folding
//! `BatchNormalization` into the `Conv` before it.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

/// `t`'s values as f32, if it is a float tensor stored inline (raw or typed data).
pub(crate) fn floats(t: &pb::TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 || t.data_location == Some(1) {
        return None;
    }
    if !t.raw_data.is_empty() {
        if !t.raw_data.len().is_multiple_of(4) {
            return None;
        }
        return Some(
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
    }
    Some(t.float_data.clone())
}

/// The number of elements `dims` hold.
pub(crate) fn element_count(dims: &[i64]) -> usize {
    dims.iter().map(|&d| d.max(0) as usize).product()
}

/// A float initializer.
pub(crate) fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// An int8 initializer.
pub(crate) fn i8_tensor(name: &str, dims: &[i64], values: &[i8]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Int8 as i32,
        raw_data: values.iter().map(|v| *v as u8).collect(),
        ..Default::default()
    }
}

/// A uint8 initializer.
pub(crate) fn u8_tensor(name: &str, dims: &[i64], values: &[u8]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Uint8 as i32,
        raw_data: values.to_vec(),
        ..Default::default()
    }
}

/// An int32 initializer.
pub(crate) fn i32_tensor(name: &str, dims: &[i64], values: &[i32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Int32 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A node.
pub(crate) fn node(
    op: &str,
    name: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attributes: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name,
        input: inputs,
        output: outputs,
        attribute: attributes,
        ..Default::default()
    }
}

/// A float tensor of unknown shape named `name`, as a graph input or output declares it.
pub(crate) fn float_value(name: &str) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub(crate) fn int_attribute(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// Attribute `name` of `node`.
pub(crate) fn attribute<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// Integer attribute `name` of `node`, or `default`.
pub(crate) fn int_or(node: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attribute(node, name).map_or(default, |a| a.i)
}

/// Float attribute `name` of `node`, or `default`.
pub(crate) fn float_or(node: &pb::NodeProto, name: &str, default: f32) -> f32 {
    attribute(node, name).map_or(default, |a| a.f)
}

/// A node's name for reports: its name, else its first output's.
pub(crate) fn node_name(node: &pb::NodeProto) -> String {
    if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    }
}

/// The graph's constants by name: initializers and `Constant` nodes' tensors.
pub(crate) fn constants(graph: &pb::GraphProto) -> HashMap<String, pb::TensorProto> {
    let mut out: HashMap<String, pb::TensorProto> =
        graph.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect();
    for n in &graph.node {
        if n.op_type == "Constant"
            && let (Some(out_name), Some(t)) =
                (n.output.first(), attribute(n, "value").and_then(|a| a.t.as_ref()))
        {
            out.insert(out_name.clone(), t.clone());
        }
    }
    out
}

/// For every tensor a node writes, the index of that node.
pub(crate) fn producers(graph: &pb::GraphProto) -> HashMap<&str, usize> {
    graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect()
}

/// For every tensor, the indices of the nodes that read it.
pub(crate) fn consumers(graph: &pb::GraphProto) -> HashMap<String, Vec<usize>> {
    let mut out: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for input in n.input.iter().filter(|s| !s.is_empty()) {
            out.entry(input.clone()).or_default().push(i);
        }
    }
    out
}

/// The names of the graph's outputs.
pub(crate) fn graph_outputs(graph: &pb::GraphProto) -> HashSet<String> {
    graph.output.iter().map(|o| o.name.clone()).collect()
}

/// Folds every `BatchNormalization` whose input is a `Conv`'s output read by nothing else into
/// that `Conv`'s weights and bias. Returns the folded pairs (batch norm, conv).
pub(crate) fn fold_batch_norms(graph: &mut pb::GraphProto) -> Vec<(String, String)> {
    let consts = constants(graph);
    let readers = consumers(graph);
    let outputs = graph_outputs(graph);
    let producer: HashMap<String, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.clone(), i)))
        .collect();
    let mut removed = HashSet::new();
    let mut new_initializers = Vec::new();
    let mut folded = Vec::new();
    for bn_index in 0..graph.node.len() {
        let bn = &graph.node[bn_index];
        if bn.op_type != "BatchNormalization" || bn.input.len() < 5 || bn.output.len() != 1 {
            continue;
        }
        let Some(&conv_index) = producer.get(&bn.input[0]) else { continue };
        let conv = &graph.node[conv_index];
        if conv.op_type != "Conv"
            || readers.get(&bn.input[0]).is_none_or(|r| r.len() != 1)
            || outputs.contains(&bn.input[0])
        {
            continue;
        }
        let get = |name: &str| consts.get(name).and_then(floats);
        let (Some(gamma), Some(beta), Some(mean), Some(var)) =
            (get(&bn.input[1]), get(&bn.input[2]), get(&bn.input[3]), get(&bn.input[4]))
        else {
            continue;
        };
        let Some(weight) = conv.input.get(1).and_then(|w| consts.get(w)) else { continue };
        let Some(mut w) = floats(weight) else { continue };
        let channels = gamma.len();
        if [beta.len(), mean.len(), var.len()].iter().any(|&l| l != channels)
            || weight.dims.first() != Some(&(channels as i64))
            || w.len() % channels.max(1) != 0
        {
            continue;
        }
        let mut bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => match get(b) {
                Some(v) if v.len() == channels => v,
                _ => continue,
            },
            None => vec![0.0; channels],
        };
        let eps = float_or(bn, "epsilon", 1e-5);
        let per_channel = w.len() / channels.max(1);
        for c in 0..channels {
            // f64 keeps the fold exact where the variance is 0 and eps is what remains.
            let factor = f64::from(gamma[c]) / (f64::from(var[c]) + f64::from(eps)).sqrt();
            for v in &mut w[c * per_channel..(c + 1) * per_channel] {
                *v = (f64::from(*v) * factor) as f32;
            }
            bias[c] =
                ((f64::from(bias[c]) - f64::from(mean[c])) * factor + f64::from(beta[c])) as f32;
        }
        let conv_name = node_name(conv);
        let w_name = format!("{conv_name}.weight_folded");
        let b_name = format!("{conv_name}.bias_folded");
        new_initializers.push(float_tensor(&w_name, &weight.dims, &w));
        new_initializers.push(float_tensor(&b_name, &[channels as i64], &bias));
        folded.push((node_name(bn), conv_name));
        let bn_output = bn.output[0].clone();
        let conv = &mut graph.node[conv_index];
        conv.input.truncate(2);
        conv.input[1] = w_name;
        conv.input.push(b_name);
        conv.output[0] = bn_output;
        removed.insert(bn_index);
    }
    let mut index = 0;
    graph.node.retain(|_| {
        let keep = !removed.contains(&index);
        index += 1;
        keep
    });
    graph.initializer.extend(new_initializers);
    drop_unused_initializers(graph);
    folded
}

/// Removes initializers no node reads and that are not graph outputs, and their entries in
/// the graph's inputs (exporters that keep initializers as inputs list them there too).
pub(crate) fn drop_unused_initializers(graph: &mut pb::GraphProto) {
    let used: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    let dropped: HashSet<String> = graph
        .initializer
        .iter()
        .filter(|t| !used.contains(&t.name))
        .map(|t| t.name.clone())
        .collect();
    graph.initializer.retain(|t| used.contains(&t.name));
    graph.input.retain(|i| !dropped.contains(&i.name));
}

/// Tensors known not to be float: integer or boolean graph inputs, initializers and
/// constants, declared value infos, the outputs of operators that make integers (`Shape`,
/// `Size`, `ArgMax`, a `Cast` to a non-float type…), and what integer tensors flow through
/// (shape arithmetic: `Gather`, `Add`, `Concat`, `Unsqueeze`…).
pub(crate) fn non_float_tensors(graph: &pb::GraphProto) -> HashSet<String> {
    let float = DataType::Float as i32;
    let elem = |v: &pb::ValueInfoProto| match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) if t.elem_type != 0 => Some(t.elem_type),
        _ => None,
    };
    let mut out: HashSet<String> = HashSet::new();
    for v in graph.input.iter().chain(&graph.value_info).chain(&graph.output) {
        if elem(v).is_some_and(|e| e != float) {
            out.insert(v.name.clone());
        }
    }
    for (name, t) in constants(graph) {
        if t.data_type != float {
            out.insert(name);
        }
    }
    const MAKE_INTEGERS: &[&str] = &[
        "Shape", "Size", "NonZero", "ArgMax", "ArgMin", "Equal", "Less", "Greater", "Not", "And",
        "Or",
    ];
    const KEEP_TYPE: &[&str] = &[
        "Gather",
        "Slice",
        "Unsqueeze",
        "Squeeze",
        "Reshape",
        "Transpose",
        "Identity",
        "Expand",
        "Neg",
        "Abs",
        "ReduceProd",
        "ReduceSum",
        "Range",
        "Tile",
        "Flatten",
    ];
    const BINARY: &[&str] = &["Add", "Sub", "Mul", "Div", "Min", "Max", "Concat"];
    for n in &graph.node {
        let op = n.op_type.as_str();
        let made = if MAKE_INTEGERS.contains(&op) {
            true
        } else if op == "Cast" {
            int_or(n, "to", i64::from(float)) != i64::from(float)
        } else if KEEP_TYPE.contains(&op) {
            // Data movement and unary arithmetic keep their data input's type.
            n.input.first().is_some_and(|i| out.contains(i))
        } else if BINARY.contains(&op) {
            // Operands share a type: one known integer makes them all integers.
            n.input.iter().any(|i| out.contains(i))
        } else {
            if op == "TopK"
                && let Some(indices) = n.output.get(1)
            {
                out.insert(indices.clone());
            }
            false
        };
        if made {
            out.extend(n.output.iter().cloned());
        }
    }
    out
}

/// Replaces every 2-D `Transpose` of a float initializer by the transposed initializer (an
/// exporter that keeps PyTorch's `[out, in]` weights transposes them in the graph; quantizing
/// needs the weight as the `MatMul` reads it). Returns the folded nodes' names.
pub(crate) fn fold_constant_transposes(graph: &mut pb::GraphProto) -> HashSet<String> {
    let inits: HashMap<String, pb::TensorProto> =
        graph.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect();
    let outputs = graph_outputs(graph);
    let mut folded = HashSet::new();
    let mut new_initializers = Vec::new();
    for (i, n) in graph.node.iter().enumerate() {
        if n.op_type != "Transpose" || n.input.len() != 1 || n.output.len() != 1 {
            continue;
        }
        let Some(t) = inits.get(&n.input[0]) else { continue };
        let perm = attribute(n, "perm").map(|a| a.ints.clone()).unwrap_or_else(|| vec![1, 0]);
        if t.dims.len() != 2 || perm != [1, 0] || outputs.contains(&n.output[0]) {
            continue;
        }
        let Some(values) = floats(t) else { continue };
        let (Ok(rows), Ok(cols)) = (usize::try_from(t.dims[0]), usize::try_from(t.dims[1])) else {
            continue;
        };
        if rows.checked_mul(cols) != Some(values.len()) {
            continue;
        }
        let transposed: Vec<f32> =
            (0..rows * cols).map(|k| values[(k % rows) * cols + k / rows]).collect();
        new_initializers.push(float_tensor(&n.output[0], &[t.dims[1], t.dims[0]], &transposed));
        folded.insert(i);
    }
    let names = folded.iter().map(|&i| node_name(&graph.node[i])).collect();
    let mut index = 0;
    graph.node.retain(|_| {
        let keep = !folded.contains(&index);
        index += 1;
        keep
    });
    graph.initializer.extend(new_initializers);
    drop_unused_initializers(graph);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
        node(
            op,
            outputs[0].into(),
            inputs.iter().map(|s| s.to_string()).collect(),
            outputs.iter().map(|s| s.to_string()).collect(),
            vec![],
        )
    }

    #[test]
    fn shape_arithmetic_is_not_float() {
        // x → Shape → Gather(idx) → Mul(·, ·) is integer; x → Relu → Add(·, x) is float.
        let graph = pb::GraphProto {
            node: vec![
                n("Shape", &["x"], &["s"]),
                n("Gather", &["s", "idx"], &["g"]),
                n("Mul", &["g", "g"], &["m"]),
                n("Relu", &["x"], &["r"]),
                n("Add", &["r", "x"], &["y"]),
                n("Cast", &["m"], &["c"]),
            ],
            initializer: vec![i32_tensor("idx", &[], &[0])],
            ..Default::default()
        };
        let ints = non_float_tensors(&graph);
        for t in ["s", "g", "m", "idx"] {
            assert!(ints.contains(t), "{t}: {ints:?}");
        }
        for t in ["x", "r", "y"] {
            assert!(!ints.contains(t), "{t}: {ints:?}");
        }
        // A Cast with no `to` given is read as float (its default here); one to int64 is not.
        assert!(!ints.contains("c"));
    }

    #[test]
    fn dropped_initializers_leave_the_graph_inputs_too() {
        let mut graph = pb::GraphProto {
            node: vec![n("Relu", &["x"], &["y"])],
            initializer: vec![float_tensor("w", &[1], &[1.0])],
            input: vec![
                pb::ValueInfoProto { name: "x".into(), ..Default::default() },
                pb::ValueInfoProto { name: "w".into(), ..Default::default() },
            ],
            ..Default::default()
        };
        drop_unused_initializers(&mut graph);
        assert!(graph.initializer.is_empty());
        assert_eq!(graph.input.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn a_transposed_weight_is_stored_transposed() {
        let mut graph = pb::GraphProto {
            node: vec![n("Transpose", &["w"], &["wt"]), n("MatMul", &["x", "wt"], &["y"])],
            initializer: vec![float_tensor("w", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])],
            ..Default::default()
        };
        let folded = fold_constant_transposes(&mut graph);
        assert_eq!(folded.len(), 1);
        assert_eq!(graph.node.len(), 1);
        let wt = &graph.initializer[0];
        assert_eq!((wt.name.as_str(), wt.dims.as_slice()), ("wt", &[3i64, 2][..]));
        assert_eq!(floats(wt).unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
