//! Dynamic quantization (ONNX Runtime's `quantize_dynamic`): the weights of `MatMul` and
//! `Gemm` stored as int8 once, their activations quantized to uint8 on every call from their
//! own range. No calibration: what transformers want, whose activations vary too much from
//! input to input for fixed ranges. Each such node becomes
//! `DynamicQuantizeLinear → MatMulInteger → Cast → Mul` (+ `Add` for a Gemm's bias), which
//! ONNX Runtime fuses into its `DynamicQuantizeMatMul` kernel.

use std::collections::HashMap;

use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use crate::error::QuantError;
use crate::graph::{self, floats, node_name};
use crate::qdq::{Decision, NodeReport, Quantizer, Report, quantize_weight};

impl Quantizer {
    /// The dynamically quantized model and its report (every `MatMul` and `Gemm` with a
    /// constant 2-D weight that the options allow; the rest stays as it is).
    pub fn quantize_dynamic(&self) -> Result<(Vec<u8>, Report), QuantError> {
        let g = &self.graph;
        let consts = graph::constants(g);
        let qmax = if self.options.reduce_range { 63.0 } else { 127.0 };
        let mut nodes = Vec::with_capacity(g.node.len());
        let mut initializers = Vec::new();
        // What was folded before quantizing (transposed weights, batch norms), then each node.
        let mut reports: Vec<NodeReport> =
            self.reports.iter().filter(|r| r.decision == Decision::Folded).cloned().collect();
        // One DynamicQuantizeLinear per activation, however many nodes read it.
        let mut quantized_inputs: HashMap<String, (String, String, String)> = HashMap::new();
        let mut int8_weights = 0;
        for (index, n) in g.node.iter().enumerate() {
            let name = node_name(n);
            let why_not = self.dynamic_refusal(n, &consts);
            let Some(why_not) = why_not else {
                reports.push(NodeReport {
                    name: name.clone(),
                    op_type: n.op_type.clone(),
                    decision: Decision::Quantized,
                    detail: "dynamic: uint8 activations quantized per call, int8 weights per \
                             column"
                        .into(),
                });
                let x = &n.input[0];
                let w_name = &n.input[1];
                let w = &consts[w_name];
                let mut values = floats(w).unwrap_or_default();
                let (mut k, mut cols) = (w.dims[0], w.dims[1]);
                if n.op_type == "Gemm" && graph::int_or(n, "transB", 0) != 0 {
                    // Gemm's B is [N, K] here: MatMulInteger takes [K, N].
                    let (rows, width) = (k as usize, cols as usize);
                    values =
                        (0..rows * width).map(|i| values[(i % rows) * width + i / rows]).collect();
                    (k, cols) = (cols, k);
                }
                let axis = self.options.per_channel.then_some(1);
                let (q, scales) = quantize_weight(&values, &[k, cols], axis, qmax, &[]);
                let tag = format!("{name}_{index}_dynamic");
                let (qn, sn, zn) = (
                    format!("{tag}_W_quantized"),
                    format!("{tag}_W_scale"),
                    format!("{tag}_W_zero_point"),
                );
                let scale_dims: Vec<i64> =
                    if axis.is_some() { vec![scales.len() as i64] } else { vec![] };
                initializers.push(graph::i8_tensor(&qn, &[k, cols], &q));
                initializers.push(graph::float_tensor(&sn, &scale_dims, &scales));
                initializers.push(graph::i8_tensor(&zn, &scale_dims, &vec![0; scales.len()]));
                int8_weights += 1;
                let (xq, xs, xz) = quantized_inputs
                    .entry(x.clone())
                    .or_insert_with(|| {
                        let outs = (
                            format!("{x}_quantized"),
                            format!("{x}_scale"),
                            format!("{x}_zero_point"),
                        );
                        nodes.push(graph::node(
                            "DynamicQuantizeLinear",
                            format!("{x}_DynamicQuantizeLinear"),
                            vec![x.clone()],
                            vec![outs.0.clone(), outs.1.clone(), outs.2.clone()],
                            vec![],
                        ));
                        outs
                    })
                    .clone();
                let out = n.output[0].clone();
                let (yi, yf, s, y) = (
                    format!("{tag}_int32"),
                    format!("{tag}_float"),
                    format!("{tag}_scale"),
                    if n.input.get(2).is_some_and(|b| !b.is_empty()) {
                        format!("{tag}_nobias")
                    } else {
                        out.clone()
                    },
                );
                nodes.push(graph::node(
                    "MatMulInteger",
                    format!("{tag}_MatMulInteger"),
                    vec![xq, qn, xz, zn],
                    vec![yi.clone()],
                    vec![],
                ));
                nodes.push(graph::node(
                    "Cast",
                    format!("{tag}_Cast"),
                    vec![yi],
                    vec![yf.clone()],
                    vec![graph::int_attribute("to", DataType::Float as i64)],
                ));
                nodes.push(graph::node(
                    "Mul",
                    format!("{tag}_scales"),
                    vec![xs, sn],
                    vec![s.clone()],
                    vec![],
                ));
                nodes.push(graph::node(
                    "Mul",
                    format!("{tag}_Mul"),
                    vec![yf, s],
                    vec![y.clone()],
                    vec![],
                ));
                if y != out {
                    nodes.push(graph::node(
                        "Add",
                        format!("{tag}_bias"),
                        vec![y, n.input[2].clone()],
                        vec![out],
                        vec![],
                    ));
                }
                continue;
            };
            reports.push(NodeReport {
                name,
                op_type: n.op_type.clone(),
                decision: Decision::Fp32,
                detail: why_not,
            });
            nodes.push(n.clone());
        }
        if int8_weights == 0 {
            return Err(QuantError::NothingQuantizable {
                model: self.name.clone(),
                reasons: "dynamic quantization covers MatMul and Gemm whose weight is a constant \
                          2-D float tensor, and the model has none"
                    .into(),
            });
        }
        let (bytes, _) =
            self.encode(nodes, initializers, "dynamic int8: uint8 activations per call");
        let report = Report {
            model: self.name.clone(),
            nodes: reports,
            quantized_tensors: quantized_inputs.len(),
            int8_weights,
            int32_biases: 0,
            fp32_barriers: 0,
            qlinear_convs: 0,
            options: self.options.clone(),
            bytes_before: self.bytes_before,
            bytes_after: bytes.len(),
        };
        Ok((bytes, report))
    }

    /// Why `n` is not quantized dynamically, or `None` when it is.
    fn dynamic_refusal(
        &self,
        n: &pb::NodeProto,
        consts: &HashMap<String, pb::TensorProto>,
    ) -> Option<String> {
        let op = n.op_type.as_str();
        if op != "MatMul" && op != "Gemm" {
            return Some("dynamic quantization covers MatMul and Gemm".into());
        }
        if !self.options.op_types.iter().any(|o| o == op) {
            return Some("not among the operators asked for (--op-types)".into());
        }
        if self.options.exclude_nodes.contains(&node_name(n)) {
            return Some("excluded (--exclude-nodes)".into());
        }
        let weight = n.input.get(1).map(String::as_str).unwrap_or("");
        match consts.get(weight) {
            Some(w)
                if w.dims.len() == 2
                    && w.dims.iter().all(|&d| d > 0)
                    && floats(w).is_some_and(|v| {
                        w.dims[0].checked_mul(w.dims[1]).and_then(|n| usize::try_from(n).ok())
                            == Some(v.len())
                    }) => {}
            _ => return Some(format!("its weight `{weight}` is not a constant 2-D float tensor")),
        }
        if consts.contains_key(n.input.first().map(String::as_str).unwrap_or("")) {
            return Some("its input is a constant".into());
        }
        if op == "Gemm"
            && (graph::int_or(n, "transA", 0) != 0
                || graph::float_or(n, "alpha", 1.0) != 1.0
                || graph::float_or(n, "beta", 1.0) != 1.0)
        {
            return Some("a Gemm with transA, alpha or beta set".into());
        }
        None
    }
}
