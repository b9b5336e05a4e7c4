//! Which nodes are quantized, and the QDQ model that says so.

use std::collections::{HashMap, HashSet};

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use crate::calibrate::{Range, Ranges};
use crate::error::QuantError;
use crate::graph::{self, floats, node_name};

/// The operators quantized by default: the compute-heavy ones (`Conv`, `Gemm`, `MatMul`), the
/// element-wise and pooling ones ONNX Runtime has integer kernels for, the data-movement ones
/// that pass a quantized tensor through unchanged, and the activations folded into the
/// quantization of the node before them.
pub const DEFAULT_OP_TYPES: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "GlobalAveragePool",
    "AveragePool",
    "MaxPool",
    "Flatten",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Relu",
    "Clip",
];

/// Operators whose float weight ONNX Runtime quantizes by itself (per tensor) when they read
/// a `DequantizeLinear` and their output goes on to a `QuantizeLinear`: a node of these left
/// in fp32 reads its quantized input through a Clip.
const FP32_BARRIER_OPS: &[&str] = &["Conv", "ConvTranspose", "Gemm"];

/// Operators ONNX Runtime moves a `DequantizeLinear` past (its QDQ propagation): the Clip
/// goes before the first of a chain of these, left in fp32, that feeds such a node.
const DQ_PROPAGATES: &[&str] =
    &["MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice"];

const PASS_THROUGH: &[&str] =
    &["MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze"];

/// What to quantize and how.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QuantizeOptions {
    /// Operators to quantize ([`DEFAULT_OP_TYPES`] by default).
    pub op_types: Vec<String>,
    /// Nodes (by name) left in fp32.
    pub exclude_nodes: Vec<String>,
    /// One weight scale per output channel (true, the default) or one per tensor.
    pub per_channel: bool,
    /// Weights in 7 bits (±63): avoids the int16 saturation of AVX2's `vpmaddubsw` on CPUs
    /// without VNNI, at some accuracy.
    pub reduce_range: bool,
    /// How the quantized convolutions are written.
    pub format: Format,
    /// Ordinary convolutions (group 1) get one weight scale per tensor whatever `per_channel`
    /// says, and with [`Format::QOperator`] only those become `QLinearConv`; grouped
    /// (depthwise) convolutions, `Gemm` and `MatMul` keep `per_channel` and QDQ. This is the
    /// form tract runs fastest ([`thrum_core::Int8Form::QLinearPerTensor`]): its integer
    /// convolution kernel takes one weight scale per tensor, and it has no integer depthwise
    /// kernel.
    pub per_tensor_convs: bool,
}

impl QuantizeOptions {
    /// The options that write `form`, the int8 form an engine runs fastest.
    pub fn for_form(form: thrum_core::Int8Form) -> QuantizeOptions {
        match form {
            thrum_core::Int8Form::Qdq => QuantizeOptions::default(),
            thrum_core::Int8Form::QLinearPerTensor => QuantizeOptions {
                format: Format::QOperator,
                per_tensor_convs: true,
                ..QuantizeOptions::default()
            },
        }
    }

    /// How weights are scaled, in words: `per channel`, `per tensor`, or both.
    pub fn weight_scales(&self) -> &'static str {
        match (self.per_channel, self.per_tensor_convs) {
            (true, true) => "per tensor in ordinary convolutions, else per channel",
            (true, false) => "per channel",
            (false, _) => "per tensor",
        }
    }

    /// Whether `n`'s weights get one scale per output channel. An ordinary convolution whose
    /// output is one of `graph_outputs` stays QDQ (a `QLinearConv`'s output is quantized), so
    /// it keeps per-channel weights.
    fn per_channel_for(&self, n: &pb::NodeProto, graph_outputs: &HashSet<String>) -> bool {
        self.per_channel
            && !(self.per_tensor_convs
                && is_ordinary_conv(n)
                && !n.output.first().is_some_and(|y| graph_outputs.contains(y)))
    }
}

/// A weighted node's report, by how its weights are scaled.
fn weight_detail(axis: Option<usize>) -> String {
    match axis {
        Some(a) => format!("int8 weights, one scale per channel on axis {a}"),
        None => "int8 weights, one scale".into(),
    }
}

/// A `Conv` of one group: the convolutions with an integer kernel on tract.
pub(crate) fn is_ordinary_conv(n: &pb::NodeProto) -> bool {
    n.op_type == "Conv" && graph::int_or(n, "group", 1) == 1
}

/// How a static int8 model writes its quantized convolutions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `QuantizeLinear` / `DequantizeLinear` pairs around float operators (ONNX Runtime's and
    /// OpenVINO's fused form).
    #[default]
    Qdq,
    /// Each quantized `Conv` as one `QLinearConv`, the rest as QDQ: the form tract runs on its
    /// integer kernels (faster than fp32 with one weight scale per tensor; per channel, not).
    QOperator,
}

impl Format {
    /// Its name on the command line: `qdq` or `qoperator`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Qdq => "qdq",
            Format::QOperator => "qoperator",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "qdq" => Ok(Format::Qdq),
            "qoperator" => Ok(Format::QOperator),
            _ => Err(format!("`{s}` is not a format: expected qdq or qoperator")),
        }
    }
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            op_types: DEFAULT_OP_TYPES.iter().map(|s| s.to_string()).collect(),
            exclude_nodes: Vec::new(),
            per_channel: true,
            reduce_range: false,
            format: Format::Qdq,
            per_tensor_convs: false,
        }
    }
}

/// What happened to one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Runs on quantized inputs (and writes a quantized output).
    Quantized,
    /// Left in fp32; the report says why.
    Fp32,
    /// An activation removed: the quantization of the node before it clips as it did.
    Removed,
    /// A batch normalization folded into the convolution before it.
    Folded,
}

/// One node of the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeReport {
    /// The node's name.
    pub name: String,
    /// Its operator.
    pub op_type: String,
    /// What happened to it.
    pub decision: Decision,
    /// Why (for fp32 nodes), or how (for the others).
    pub detail: String,
}

/// What [`Quantizer::quantize`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The model.
    pub model: String,
    /// Every node of the original model, in order.
    pub nodes: Vec<NodeReport>,
    /// Activation tensors given a `QuantizeLinear` / `DequantizeLinear` pair.
    pub quantized_tensors: usize,
    /// Weights stored as int8.
    pub int8_weights: usize,
    /// Biases stored as int32.
    pub int32_biases: usize,
    /// Clips added before fp32 Conv, ConvTranspose or Gemm nodes that read a quantized
    /// tensor, so that ONNX Runtime keeps them in fp32.
    pub fp32_barriers: usize,
    /// Quantized convolutions written as `QLinearConv` ([`Format::QOperator`]).
    pub qlinear_convs: usize,
    /// What was asked.
    pub options: QuantizeOptions,
    /// The model's size before and after, bytes.
    pub bytes_before: usize,
    /// The quantized model's size, bytes.
    pub bytes_after: usize,
}

impl Report {
    /// Nodes per decision and operator: `(decision, op_type, count)`, in first-seen order.
    pub fn summary(&self) -> Vec<(Decision, String, usize)> {
        let mut out: Vec<(Decision, String, usize)> = Vec::new();
        for n in &self.nodes {
            match out.iter_mut().find(|(d, op, _)| *d == n.decision && *op == n.op_type) {
                Some(row) => row.2 += 1,
                None => out.push((n.decision, n.op_type.clone(), 1)),
            }
        }
        out
    }
}

#[derive(Clone, Debug)]
enum Kind {
    /// A node with a constant weight (input 1), quantized per channel along `axis`.
    Weighted {
        axis: Option<usize>,
    },
    /// A node whose float inputs are all activations.
    Activations,
    /// Passes its quantized input through; its output shares the input's parameters.
    Pass,
    /// Removed: node `producer` writes its output.
    Removed {
        producer: usize,
    },
    Fp32,
}

/// The range of tensor `t`: its own, or for the output of a pass-through node (MaxPool, Reshape,
/// Transpose…) its input's, as the plan shares it when the input is quantized. Ranges
/// calibrated for one plan then serve a plan that leaves more nodes in fp32 (the accuracy
/// search's), where such an output, no longer shared, is quantized in its own right.
fn range_of(
    t: &str,
    ranges: &Ranges,
    g: &pb::GraphProto,
    producer: &HashMap<&str, usize>,
) -> Option<Range> {
    let mut t = t;
    // Each step goes one node back up the graph: at most as many steps as nodes.
    for _ in 0..=g.node.len() {
        if let Some(range) = ranges.get(t) {
            return Some(*range);
        }
        let n = &g.node[*producer.get(t)?];
        if !PASS_THROUGH.contains(&n.op_type.as_str()) || n.output.len() != 1 {
            return None;
        }
        t = n.input.first()?;
    }
    None
}

/// A model read and planned: ready to give its calibration model and, with ranges, its
/// quantized form.
#[derive(Clone, Debug)]
pub struct Quantizer {
    pub(crate) name: String,
    /// The model without its graph (opsets, metadata).
    pub(crate) model: pb::ModelProto,
    /// Its graph, batch norms folded.
    pub(crate) graph: pb::GraphProto,
    pub(crate) options: QuantizeOptions,
    kinds: Vec<Kind>,
    pub(crate) reports: Vec<NodeReport>,
    /// For each node of `graph`, the index of its report in `reports`.
    report_of: Vec<usize>,
    /// Tensors with a range of their own, in graph order.
    calibrated: Vec<String>,
    /// Pass-through outputs and the tensor whose parameters they share.
    shared: Vec<(String, String)>,
    pub(crate) bytes_before: usize,
}

impl Quantizer {
    /// Reads an ONNX model (`name` for messages) for static quantization, folds batch
    /// normalizations and plans what to quantize. A model with nothing quantizable is an
    /// error that says why.
    pub fn new(
        name: &str,
        bytes: &[u8],
        options: QuantizeOptions,
    ) -> Result<Quantizer, QuantError> {
        Quantizer::read(name, bytes, options, 13, true)
    }

    /// Reads an ONNX model for [`Quantizer::quantize_dynamic`] (opset 11 is enough:
    /// `DynamicQuantizeLinear` and `MatMulInteger` have it).
    pub fn new_dynamic(
        name: &str,
        bytes: &[u8],
        options: QuantizeOptions,
    ) -> Result<Quantizer, QuantError> {
        if options.format != Format::Qdq {
            return Err(QuantError::Model {
                model: name.into(),
                reason: format!(
                    "the {} format is for static quantization: the dynamic form's MatMulInteger \
                     has no QuantizeLinear / DequantizeLinear pairs to rewrite",
                    options.format.name()
                ),
            });
        }
        Quantizer::read(name, bytes, options, 11, false)
    }

    fn read(
        name: &str,
        bytes: &[u8],
        options: QuantizeOptions,
        min_opset: i64,
        static_plan: bool,
    ) -> Result<Quantizer, QuantError> {
        let bad = |reason: String| QuantError::Model { model: name.into(), reason };
        let mut model = pb::ModelProto::decode(bytes)
            .map_err(|e| bad(format!("not an ONNX model ({e}); expected an ONNX protobuf file")))?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map_or(1, |o| o.version);
        if opset < min_opset {
            return Err(bad(format!(
                "opset {opset}; expected opset {min_opset} or later (the quantized operators \
                 thrum writes need it): convert it first (onnx.version_converter)"
            )));
        }
        let Some(mut graph) = model.graph.take() else {
            return Err(bad("the file has no graph".into()));
        };
        if graph.node.is_empty() {
            return Err(bad("the graph has no nodes".into()));
        }
        // Control flow hides tensor uses in subgraphs, which the rewrites here do not follow.
        if let Some(n) = graph
            .node
            .iter()
            .find(|n| n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty()))
        {
            return Err(bad(format!(
                "node `{}` ({}) holds a subgraph; thrum quantizes graphs without control flow \
                 (If, Loop, Scan)",
                node_name(n),
                n.op_type
            )));
        }
        if let Some(n) = graph.node.iter().find(|n| n.output.is_empty()) {
            return Err(bad(format!("node `{}` ({}) has no output", node_name(n), n.op_type)));
        }
        let original: Vec<(String, String)> =
            graph.node.iter().map(|n| (node_name(n), n.op_type.clone())).collect();
        let transposed = graph::fold_constant_transposes(&mut graph);
        let folded = graph::fold_batch_norms(&mut graph);
        let mut q = Quantizer {
            name: name.into(),
            model,
            graph,
            options,
            kinds: Vec::new(),
            reports: Vec::new(),
            report_of: Vec::new(),
            calibrated: Vec::new(),
            shared: Vec::new(),
            bytes_before: bytes.len(),
        };
        q.plan();
        // The report lists the original nodes: the folded batch norms in their place.
        let folded_into: HashMap<&str, &str> =
            folded.iter().map(|(bn, conv)| (bn.as_str(), conv.as_str())).collect();
        let mut planned = std::mem::take(&mut q.reports).into_iter();
        let mut reports = Vec::with_capacity(original.len());
        for (node, op) in &original {
            if transposed.contains(node) {
                reports.push(NodeReport {
                    name: node.clone(),
                    op_type: op.clone(),
                    decision: Decision::Folded,
                    detail: "a constant weight's transpose, done once here".into(),
                });
                continue;
            }
            match folded_into.get(node.as_str()) {
                Some(conv) => reports.push(NodeReport {
                    name: node.clone(),
                    op_type: op.clone(),
                    decision: Decision::Folded,
                    detail: format!("folded into `{conv}`'s weights and bias"),
                }),
                None => {
                    if let Some(r) = planned.next() {
                        q.report_of.push(reports.len());
                        reports.push(r);
                    }
                }
            }
        }
        q.reports = reports;
        if static_plan
            && !q.kinds.iter().any(|k| matches!(k, Kind::Weighted { .. } | Kind::Activations))
        {
            let mut reasons: Vec<String> = Vec::new();
            for r in q.reports.iter().filter(|r| r.decision == Decision::Fp32) {
                let line = format!("{}: {}", r.op_type, r.detail);
                if !reasons.contains(&line) {
                    reasons.push(line);
                }
            }
            return Err(QuantError::NothingQuantizable {
                model: name.into(),
                reasons: if reasons.is_empty() { "no nodes".into() } else { reasons.join("; ") },
            });
        }
        Ok(q)
    }

    /// The model's name.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// The tensors calibration must range, in graph order.
    pub fn tensors_to_calibrate(&self) -> &[String] {
        &self.calibrated
    }

    /// The planned decisions, node by node (final once [`Quantizer::quantize`] runs).
    pub fn nodes(&self) -> &[NodeReport] {
        &self.reports
    }

    fn plan(&mut self) {
        let g = self.graph.clone();
        let consts = graph::constants(&g);
        let readers = graph::consumers(&g);
        let outputs = graph::graph_outputs(&g);
        let float_inputs: HashSet<&str> = g
            .input
            .iter()
            .filter(|i| {
                matches!(&i.r#type.as_ref().and_then(|t| t.value.as_ref()),
                    Some(pb::type_proto::Value::TensorType(t)) if t.elem_type == DataType::Float as i32)
            })
            .map(|i| i.name.as_str())
            .collect();
        let graph_inputs: HashSet<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
        let producer = graph::producers(&g);
        let is_const = |t: &str| consts.contains_key(t);
        let not_float = graph::non_float_tensors(&g);
        // An activation thrum can quantize: not a constant, and a float tensor (graph inputs
        // as declared; shape arithmetic and other integer tensors are left alone).
        let activation = |t: &str| {
            !t.is_empty()
                && !is_const(t)
                && !not_float.contains(t)
                && (!graph_inputs.contains(t) || float_inputs.contains(t))
        };
        let const_float = |t: &str| consts.get(t).filter(|c| floats(c).is_some());
        let mut quantized: HashSet<String> = HashSet::new();
        let mut calibrated: Vec<String> = Vec::new();
        let mut shared: Vec<(String, String)> = Vec::new();
        let mut kinds: Vec<Kind> = Vec::with_capacity(g.node.len());
        let mut reports = Vec::with_capacity(g.node.len());
        let mark = |t: &str, quantized: &mut HashSet<String>, calibrated: &mut Vec<String>| {
            if quantized.insert(t.to_string()) {
                calibrated.push(t.to_string());
            }
        };
        for n in &g.node {
            let op = n.op_type.as_str();
            let name = node_name(n);
            let fp32 = |why: String| (Kind::Fp32, why);
            let (kind, detail) = if n.op_type == "Constant" {
                fp32("a constant".into())
            } else if !n.domain.is_empty() && n.domain != "ai.onnx" {
                fp32(format!("operator of domain `{}`", n.domain))
            } else if !self.options.op_types.iter().any(|o| o == op) {
                fp32(if DEFAULT_OP_TYPES.contains(&op) {
                    "not among the operators asked for (--op-types)".into()
                } else {
                    format!(
                        "thrum does not quantize `{op}` (it quantizes {})",
                        DEFAULT_OP_TYPES.join(", ")
                    )
                })
            } else if self.options.exclude_nodes.contains(&name) {
                fp32("excluded (--exclude-nodes)".into())
            } else {
                match op {
                    "Conv" | "Gemm" | "MatMul" => {
                        let weight = n.input.get(1).map(String::as_str).unwrap_or("");
                        let data = n.input.first().map(String::as_str).unwrap_or("");
                        if !activation(data) {
                            fp32(format!("its input `{data}` is not a float activation"))
                        } else if op == "Gemm"
                            && (graph::int_or(n, "transA", 0) != 0
                                || graph::float_or(n, "alpha", 1.0) != 1.0
                                || graph::float_or(n, "beta", 1.0) != 1.0)
                        {
                            fp32("a Gemm with transA, alpha or beta set (ONNX Runtime's QGemm takes none)".into())
                        } else if let Some(w) = const_float(weight) {
                            let rank = w.dims.len();
                            let axis = match op {
                                "Conv" if rank >= 3 => Some(0),
                                "Gemm" if rank == 2 => {
                                    Some(if graph::int_or(n, "transB", 0) != 0 { 0 } else { 1 })
                                }
                                "MatMul" if rank == 2 => Some(1),
                                _ => None,
                            };
                            if op == "Conv" && axis.is_none() {
                                fp32(format!(
                                    "its weight `{weight}` has rank {rank}, expected 3 or more"
                                ))
                            } else {
                                (Kind::Weighted { axis }, String::new())
                            }
                        } else if op == "MatMul" && activation(weight) {
                            (Kind::Activations, "both inputs are activations".into())
                        } else {
                            fp32(format!(
                                "its weight `{weight}` is not a float tensor stored in the model"
                            ))
                        }
                    }
                    "Add" | "Mul" => match n.input.iter().find(|t| !activation(t)) {
                        Some(c) => fp32(format!(
                            "input `{c}` is a constant: thrum quantizes {op} of two \
                                 activations (a bias add runs in fp32)"
                        )),
                        None => (Kind::Activations, String::new()),
                    },
                    "GlobalAveragePool" | "AveragePool" => {
                        let data = n.input.first().map(String::as_str).unwrap_or("");
                        if activation(data) {
                            (Kind::Activations, String::new())
                        } else {
                            fp32(format!("its input `{data}` is not a float activation"))
                        }
                    }
                    _ if PASS_THROUGH.contains(&op) => {
                        let data = n.input.first().map(String::as_str).unwrap_or("");
                        if quantized.contains(data) && n.output.len() == 1 {
                            (Kind::Pass, format!("passes `{data}`'s quantized values through"))
                        } else {
                            fp32(
                                "its input is not quantized, so there is nothing to pass through"
                                    .into(),
                            )
                        }
                    }
                    "Relu" | "Clip" => {
                        let data = n.input.first().map(String::as_str).unwrap_or("");
                        let out = n.output.first().map(String::as_str).unwrap_or("");
                        let floor_zero = op == "Relu"
                            || match n.input.get(1).filter(|s| !s.is_empty()) {
                                Some(min) => consts
                                    .get(min)
                                    .and_then(floats)
                                    .is_some_and(|v| v.len() == 1 && v[0] == 0.0),
                                None => graph::attribute(n, "min").is_some_and(|a| a.f == 0.0),
                            };
                        let source = producer.get(data).copied();
                        let removable = floor_zero
                            && source.is_some_and(|p| {
                                matches!(kinds[p], Kind::Weighted { .. } | Kind::Activations)
                            })
                            && readers.get(data).is_some_and(|r| r.len() == 1)
                            && !outputs.contains(data)
                            && !outputs.contains(out);
                        match source {
                            Some(p) if removable => (
                                Kind::Removed { producer: p },
                                format!(
                                    "removed: `{}` writes `{out}` quantized to its range, which \
                                     clips at 0 as {op} did",
                                    node_name(&g.node[p])
                                ),
                            ),
                            _ => fp32(format!(
                                "{op} is removed only after a quantized node whose output it \
                                 alone reads, and only when it clips at 0"
                            )),
                        }
                    }
                    _ => fp32(format!("thrum does not quantize `{op}`")),
                }
            };
            // The tensors this decision quantizes.
            match &kind {
                Kind::Weighted { .. } => {
                    mark(&n.input[0], &mut quantized, &mut calibrated);
                    if !outputs.contains(&n.output[0]) {
                        mark(&n.output[0], &mut quantized, &mut calibrated);
                    }
                }
                Kind::Activations => {
                    for t in n.input.iter().filter(|t| !t.is_empty()) {
                        mark(t, &mut quantized, &mut calibrated);
                    }
                    if !outputs.contains(&n.output[0]) {
                        mark(&n.output[0], &mut quantized, &mut calibrated);
                    }
                }
                Kind::Pass => {
                    if !outputs.contains(&n.output[0]) && quantized.insert(n.output[0].clone()) {
                        shared.push((n.output[0].clone(), n.input[0].clone()));
                    }
                }
                Kind::Removed { .. } => {
                    // The producer's output is the activation's output now: range that.
                    let data = &n.input[0];
                    quantized.remove(data);
                    calibrated.retain(|t| t != data);
                    mark(&n.output[0], &mut quantized, &mut calibrated);
                }
                Kind::Fp32 => {}
            }
            let decision = match kind {
                Kind::Fp32 => Decision::Fp32,
                Kind::Removed { .. } => Decision::Removed,
                _ => Decision::Quantized,
            };
            let detail = match (&kind, detail.is_empty()) {
                (Kind::Weighted { axis }, true) => {
                    weight_detail(axis.filter(|_| self.options.per_channel_for(n, &outputs)))
                }
                (Kind::Activations, true) => "uint8 inputs and output".into(),
                _ => detail,
            };
            kinds.push(kind);
            reports.push(NodeReport { name, op_type: n.op_type.clone(), decision, detail });
        }
        self.kinds = kinds;
        self.reports = reports;
        self.calibrated = calibrated;
        self.shared = shared;
    }

    /// The model (batch norms folded) with every tensor to calibrate made an output, for an
    /// engine to run on calibration samples.
    pub fn calibration_model(&self) -> Vec<u8> {
        let mut model = self.model.clone();
        let mut graph = self.graph.clone();
        // Graph inputs are not made outputs (an engine may then forget their types):
        // calibration reads them from the samples.
        let mut existing = graph::graph_outputs(&graph);
        existing.extend(graph.input.iter().map(|i| i.name.clone()));
        for t in self.calibrated.iter().filter(|t| !existing.contains(*t)) {
            graph.output.push(graph::float_value(t));
        }
        model.graph = Some(graph);
        model.encode_to_vec()
    }

    /// The QDQ model for `ranges` (from [`crate::calibrate`]), with the report.
    pub fn quantize(&self, ranges: &Ranges) -> Result<(Vec<u8>, Report), QuantError> {
        let g = &self.graph;
        let consts = graph::constants(g);
        let mut params: HashMap<String, (f32, u8)> = HashMap::new();
        let producer = graph::producers(g);
        for t in &self.calibrated {
            let range = range_of(t, ranges, g, &producer)
                .ok_or_else(|| QuantError::MissingRange { tensor: t.clone() })?;
            params.insert(t.clone(), activation_params(range));
        }
        for (out, from) in &self.shared {
            if let Some(p) = params.get(from).copied() {
                params.insert(out.clone(), p);
            }
        }
        let mut renamed: HashMap<usize, String> = HashMap::new();
        for (i, kind) in self.kinds.iter().enumerate() {
            if let Kind::Removed { producer } = kind {
                renamed.insert(*producer, g.node[i].output[0].clone());
            }
        }
        let mut nodes: Vec<pb::NodeProto> = Vec::new();
        let mut initializers: Vec<pb::TensorProto> = Vec::new();
        let dq = |t: &str| format!("{t}_DequantizeLinear_Output");
        let qdq_pair =
            |t: &str, nodes: &mut Vec<pb::NodeProto>, inits: &mut Vec<pb::TensorProto>| {
                let Some(&(scale, zero)) = params.get(t) else { return };
                let (s, z, q) = (
                    format!("{t}_scale"),
                    format!("{t}_zero_point"),
                    format!("{t}_QuantizeLinear_Output"),
                );
                inits.push(graph::float_tensor(&s, &[], &[scale]));
                inits.push(graph::u8_tensor(&z, &[], &[zero]));
                nodes.push(graph::node(
                    "QuantizeLinear",
                    format!("{t}_QuantizeLinear"),
                    vec![t.into(), s.clone(), z.clone()],
                    vec![q.clone()],
                    vec![],
                ));
                nodes.push(graph::node(
                    "DequantizeLinear",
                    format!("{t}_DequantizeLinear"),
                    vec![q, s, z],
                    vec![dq(t)],
                    vec![],
                ));
            };
        for input in &g.input {
            qdq_pair(&input.name, &mut nodes, &mut initializers);
        }
        let mut weights_done: HashMap<String, (String, Vec<f32>)> = HashMap::new();
        // Where a Clip goes: before each fp32 Conv, ConvTranspose or Gemm that reads a
        // quantized tensor, or before the fp32 reshaping or pooling chain between them.
        let producer = graph::producers(g);
        let mut barrier_at: HashSet<usize> = HashSet::new();
        for (i, n) in g.node.iter().enumerate() {
            if !matches!(self.kinds[i], Kind::Fp32)
                || !FP32_BARRIER_OPS.contains(&n.op_type.as_str())
            {
                continue;
            }
            let mut at = i;
            while let Some(t) = g.node[at].input.first() {
                if params.contains_key(t) {
                    barrier_at.insert(at);
                    break;
                }
                // Only back up the graph (`p < at`): a malformed graph whose node reads its
                // own output must not loop here.
                match producer.get(t.as_str()) {
                    Some(&p)
                        if p < at
                            && matches!(self.kinds[p], Kind::Fp32)
                            && DQ_PROPAGATES.contains(&g.node[p].op_type.as_str()) =>
                    {
                        at = p
                    }
                    _ => break,
                }
            }
        }
        let mut barriers: HashSet<String> = HashSet::new();
        let mut fp32_barriers = 0;
        let mut reports = self.reports.clone();
        let (mut int8_weights, mut int32_biases) = (0, 0);
        let qmax = if self.options.reduce_range { 63.0 } else { 127.0 };
        let graph_outputs = graph::graph_outputs(g);
        for (i, n) in g.node.iter().enumerate() {
            let kind = &self.kinds[i];
            if matches!(kind, Kind::Removed { .. }) {
                continue;
            }
            let mut n = n.clone();
            if let Some(out) = renamed.get(&i) {
                n.output[0] = out.clone();
            }
            let input_scale = n.input.first().and_then(|t| params.get(t)).map(|p| p.0);
            for t in n.input.iter_mut() {
                if params.contains_key(t.as_str()) {
                    *t = dq(t);
                }
            }
            // A Conv, ConvTranspose or Gemm left in fp32 must not read a DequantizeLinear:
            // ONNX Runtime's `WeightBiasQuantization` graph pass (1.32 has it) quantizes the
            // float weight of such a node itself, per tensor, when its output goes on to a
            // QuantizeLinear, and fuses the node into its integer kernel. It reads a Clip to
            // the range its input was quantized to instead, which changes no value.
            if barrier_at.contains(&i)
                && let Some(t) = g.node[i].input.first()
                && let Some(&(scale, zero)) = params.get(t)
            {
                let barrier = format!("{t}_fp32_barrier");
                if barriers.insert(t.clone()) {
                    let (lo, hi) = (format!("{barrier}_min"), format!("{barrier}_max"));
                    initializers.push(graph::float_tensor(&lo, &[], &[-scale * f32::from(zero)]));
                    initializers.push(graph::float_tensor(
                        &hi,
                        &[],
                        &[scale * (255.0 - f32::from(zero))],
                    ));
                    nodes.push(graph::node(
                        "Clip",
                        barrier.clone(),
                        vec![dq(t), lo, hi],
                        vec![barrier.clone()],
                        vec![],
                    ));
                    fp32_barriers += 1;
                }
                n.input[0] = barrier;
                if let Some(r) = self.report_of.get(i).and_then(|&r| reports.get_mut(r)) {
                    r.detail.push_str(
                        "; reads its input through a Clip to the input's quantized range, so \
                         that ONNX Runtime cannot quantize it (or the Conv or Gemm it feeds) on \
                         its own",
                    );
                }
            }
            if let Kind::Weighted { axis: planned } = kind {
                // The output as written (an activation removed after it gives it its own):
                // the report's scale layout follows it.
                let axis = planned.filter(|_| self.options.per_channel_for(&n, &graph_outputs));
                if let Some(r) = self.report_of.get(i).and_then(|&r| reports.get_mut(r))
                    && r.detail
                        == weight_detail(
                            planned.filter(|_| {
                                self.options.per_channel_for(&g.node[i], &graph_outputs)
                            }),
                        )
                {
                    r.detail = weight_detail(axis);
                }
                let w_name = n.input[1].clone();
                let (w_dq, w_scales) = match weights_done.get(&w_name) {
                    Some(done) => done.clone(),
                    None => {
                        let w = &consts[&w_name];
                        let Some(values) = floats(w) else {
                            return Err(QuantError::Model {
                                model: self.name.clone(),
                                reason: format!("weight `{w_name}` is not a float tensor"),
                            });
                        };
                        // A bias must fit int32 at input scale × weight scale: a channel whose
                        // weights are all but zero gets a scale large enough for its bias
                        // (ONNX Runtime's quantizer does the same), or the bias would clamp.
                        let bias = n
                            .input
                            .get(2)
                            .filter(|_| n.op_type != "MatMul")
                            .and_then(|b| consts.get(b))
                            .and_then(floats);
                        let floor: Vec<f32> = match (&bias, input_scale) {
                            (Some(b), Some(s_in)) if s_in > 0.0 => {
                                b.iter().map(|v| v.abs() / (s_in * BIAS_LIMIT)).collect()
                            }
                            _ => Vec::new(),
                        };
                        let (q, scales) = quantize_weight(&values, &w.dims, axis, qmax, &floor);
                        let (qn, sn, zn, out) = (
                            format!("{w_name}_quantized"),
                            format!("{w_name}_scale"),
                            format!("{w_name}_zero_point"),
                            dq(&w_name),
                        );
                        let scale_dims: Vec<i64> =
                            if axis.is_some() { vec![scales.len() as i64] } else { vec![] };
                        initializers.push(graph::i8_tensor(&qn, &w.dims, &q));
                        initializers.push(graph::float_tensor(&sn, &scale_dims, &scales));
                        initializers.push(graph::i8_tensor(
                            &zn,
                            &scale_dims,
                            &vec![0; scales.len()],
                        ));
                        let attrs = axis
                            .map(|a| vec![graph::int_attribute("axis", a as i64)])
                            .unwrap_or_default();
                        nodes.push(graph::node(
                            "DequantizeLinear",
                            format!("{w_name}_DequantizeLinear"),
                            vec![qn, sn, zn],
                            vec![out.clone()],
                            attrs,
                        ));
                        int8_weights += 1;
                        weights_done.insert(w_name.clone(), (out.clone(), scales.clone()));
                        (out, scales)
                    }
                };
                n.input[1] = w_dq;
                // The bias in int32 at input scale × weight scale, where both are known.
                if let (Some(b_name), Some(s_in)) = (n.input.get(2).cloned(), input_scale)
                    && consts.get(&b_name).is_some_and(|t| t.dims.len() == 1)
                    && let Some(b) = consts.get(&b_name).and_then(floats)
                    && (w_scales.len() == 1 || w_scales.len() == b.len())
                    && n.op_type != "MatMul"
                {
                    let scales: Vec<f32> = (0..b.len())
                        .map(|c| s_in * w_scales[if w_scales.len() == 1 { 0 } else { c }])
                        .collect();
                    let q: Vec<i32> = b
                        .iter()
                        .zip(&scales)
                        .map(|(v, s)| {
                            (f64::from(*v) / f64::from(*s))
                                .round()
                                .clamp(f64::from(i32::MIN), f64::from(i32::MAX))
                                as i32
                        })
                        .collect();
                    let (qn, sn, zn, out) = (
                        format!("{b_name}_{i}_quantized"),
                        format!("{b_name}_{i}_scale"),
                        format!("{b_name}_{i}_zero_point"),
                        format!("{b_name}_{i}_DequantizeLinear_Output"),
                    );
                    let dims = [b.len() as i64];
                    initializers.push(graph::i32_tensor(&qn, &dims, &q));
                    initializers.push(graph::float_tensor(&sn, &dims, &scales));
                    initializers.push(graph::i32_tensor(&zn, &dims, &vec![0; b.len()]));
                    nodes.push(graph::node(
                        "DequantizeLinear",
                        format!("{b_name}_{i}_DequantizeLinear"),
                        vec![qn, sn, zn],
                        vec![out.clone()],
                        vec![graph::int_attribute("axis", 0)],
                    ));
                    n.input[2] = out;
                    int32_biases += 1;
                }
            }
            let outputs = n.output.clone();
            nodes.push(n);
            for o in &outputs {
                qdq_pair(o, &mut nodes, &mut initializers);
            }
        }
        let (bytes, qlinear_convs) =
            self.encode(nodes, initializers, "static int8 QDQ: uint8 activations");
        let report = Report {
            model: self.name.clone(),
            nodes: reports,
            quantized_tensors: params.len(),
            int8_weights,
            int32_biases,
            fp32_barriers,
            qlinear_convs,
            options: self.options.clone(),
            bytes_before: self.bytes_before,
            bytes_after: bytes.len(),
        };
        Ok((bytes, report))
    }
}

impl Quantizer {
    /// The model with `nodes` as its graph's and `initializers` added (those no node reads
    /// dropped), its convolutions as `QLinearConv` with [`Format::QOperator`], its metadata
    /// saying `how` it was quantized, encoded; and how many convolutions were rewritten.
    pub(crate) fn encode(
        &self,
        nodes: Vec<pb::NodeProto>,
        initializers: Vec<pb::TensorProto>,
        how: &str,
    ) -> (Vec<u8>, usize) {
        let mut model = self.model.clone();
        let mut graph = self.graph.clone();
        graph.node = nodes;
        graph.initializer.extend(initializers);
        let qlinear_convs = match self.options.format {
            Format::Qdq => 0,
            Format::QOperator => {
                crate::qoperator::qlinear_convs(&mut graph, self.options.per_tensor_convs)
            }
        };
        graph::drop_unused_initializers(&mut graph);
        model.graph = Some(graph);
        // A model thrum quantized before says how it was then: this says how it is now.
        model.metadata_props.retain(|m| m.key != "thrum.quantize");
        model.metadata_props.push(pb::StringStringEntryProto {
            key: "thrum.quantize".into(),
            value: format!(
                "{how}, int8 weights ({}{}){}",
                self.options.weight_scales(),
                if self.options.reduce_range { ", 7-bit" } else { "" },
                match self.options.format {
                    Format::Qdq => String::new(),
                    Format::QOperator =>
                        format!("; QOperator: {qlinear_convs} Conv as QLinearConv"),
                }
            ),
        });
        (model.encode_to_vec(), qlinear_convs)
    }
}

/// Asymmetric uint8 parameters (scale, zero point) for a range holding 0.
fn activation_params(range: Range) -> (f32, u8) {
    let (lo, hi) = (range.min.min(0.0), range.max.max(0.0));
    let scale = (hi - lo) / 255.0;
    if scale.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !scale.is_finite() {
        return (1.0, 0);
    }
    let zero = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero)
}

/// The largest |int32 bias| the quantizer writes: 2^30 leaves the accumulator room.
const BIAS_LIMIT: f32 = 1_073_741_824.0;

/// Symmetric int8 weights: one scale per slice along `axis` (or one for all), ±`qmax`; no
/// scale below `floor` (per channel, or its largest for one scale; empty: none).
pub(crate) fn quantize_weight(
    values: &[f32],
    dims: &[i64],
    axis: Option<usize>,
    qmax: f32,
    floor: &[f32],
) -> (Vec<i8>, Vec<f32>) {
    let (channels, stride) = match axis {
        Some(a) if a < dims.len() => {
            (dims[a].max(1) as usize, graph::element_count(&dims[a + 1..]).max(1))
        }
        _ => (1, values.len().max(1)),
    };
    let channel = |i: usize| (i / stride) % channels;
    let mut absmax = vec![0.0f32; channels];
    for (i, v) in values.iter().enumerate() {
        let c = channel(i);
        absmax[c] = absmax[c].max(v.abs());
    }
    let floor_of = |c: usize| match floor.len() {
        0 => 0.0,
        n if n == channels => floor[c],
        _ => floor.iter().copied().fold(0.0, f32::max),
    };
    let scales: Vec<f32> = absmax
        .iter()
        .enumerate()
        .map(|(c, &m)| {
            // A subnormal largest weight underflows m / qmax to 0: one scale of 1 then.
            let s = Some(m / qmax).filter(|s| *s > 0.0 && s.is_finite()).unwrap_or(1.0);
            s.max(floor_of(c))
        })
        .collect();
    let q = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[channel(i)]).round().clamp(-qmax, qmax) as i8)
        .collect();
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x → Conv `a` → y → Conv `b` → z, 1 × 1 convolutions of one channel, opset 13; with
    /// `transpose`, y → Transpose `t` → yt → Conv `b`.
    fn two_convs(transpose: bool) -> Vec<u8> {
        let conv = |name: &str, x: &str, w: &str, y: &str| {
            graph::node("Conv", name.into(), vec![x.into(), w.into()], vec![y.into()], vec![])
        };
        let mut node = vec![conv("a", "x", "wa", "y")];
        if transpose {
            node.push(graph::node(
                "Transpose",
                "t".into(),
                vec!["y".into()],
                vec!["yt".into()],
                vec![],
            ));
            node.push(conv("b", "yt", "wb", "z"));
        } else {
            node.push(conv("b", "y", "wb", "z"));
        }
        let graph = pb::GraphProto {
            node,
            initializer: vec![
                graph::float_tensor("wa", &[1, 1, 1, 1], &[0.5]),
                graph::float_tensor("wb", &[1, 1, 1, 1], &[2.0]),
            ],
            input: vec![graph::float_value("x")],
            output: vec![graph::float_value("z")],
            ..Default::default()
        };
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// tract's form ([`QuantizeOptions::for_form`]): the ordinary convolution becomes a
    /// QLinearConv with one weight scale; the depthwise one (group 2) keeps QDQ with one scale
    /// per channel, and so does the last (its output is the graph's, so it stays QDQ).
    #[test]
    fn tracts_form_writes_ordinary_convs_per_tensor_as_qlinearconv_and_the_rest_per_channel() {
        let conv = |name: &str, x: &str, w: &str, y: &str, group: i64| {
            let attrs = vec![graph::int_attribute("group", group)];
            graph::node("Conv", name.into(), vec![x.into(), w.into()], vec![y.into()], attrs)
        };
        let graph = pb::GraphProto {
            node: vec![
                conv("dw", "x", "wd", "y", 2),
                conv("pw", "y", "wp", "z", 1),
                conv("out", "z", "wo", "o", 1),
            ],
            initializer: vec![
                graph::float_tensor("wd", &[2, 1, 1, 1], &[0.5, -4.0]),
                graph::float_tensor("wp", &[2, 2, 1, 1], &[1.0, 0.1, -0.2, 3.0]),
                graph::float_tensor("wo", &[2, 2, 1, 1], &[1.0, 0.5, 0.25, 2.0]),
            ],
            input: vec![graph::float_value("x")],
            output: vec![graph::float_value("o")],
            ..Default::default()
        };
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec();
        let options = QuantizeOptions::for_form(thrum_core::Int8Form::QLinearPerTensor);
        let (g, report) = quantize_with(&model, options);
        assert_eq!(report.qlinear_convs, 1);
        let kept: Vec<&str> = g
            .node
            .iter()
            .filter(|n| n.op_type == "Conv" || n.op_type == "QLinearConv")
            .map(|n| n.op_type.as_str())
            .collect();
        assert_eq!(kept, ["Conv", "QLinearConv", "Conv"]);
        let scales = |w: &str| {
            let t = g.initializer.iter().find(|t| t.name == format!("{w}_scale")).unwrap();
            graph::element_count(&t.dims)
        };
        assert_eq!((scales("wd"), scales("wp"), scales("wo")), (2, 1, 2));
        let detail = |name: &str| {
            report.nodes.iter().find(|r| r.name == name).map(|r| r.detail.clone()).unwrap()
        };
        assert!(detail("dw").contains("one scale per channel"), "{}", detail("dw"));
        assert_eq!(detail("pw"), "int8 weights, one scale");
        assert!(detail("out").contains("one scale per channel"), "{}", detail("out"));
    }

    /// QOperator: each quantized Conv becomes one QLinearConv reading the quantized input,
    /// the int8 weight, its scales and zero points and the output's; the DequantizeLinear
    /// nodes only the convolutions read go, the pairs between them stay.
    #[test]
    fn qoperator_writes_each_quantized_conv_as_one_qlinearconv() {
        for per_channel in [true, false] {
            let options = QuantizeOptions {
                per_channel,
                format: Format::QOperator,
                ..QuantizeOptions::default()
            };
            let (g, report) = quantize_with(&two_convs(false), options);
            let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
            // `b`'s output is the graph's, in fp32: it stays a Conv between DequantizeLinears.
            assert_eq!(report.qlinear_convs, 1);
            assert_eq!(
                ops,
                ["QuantizeLinear", "QLinearConv", "DequantizeLinear", "DequantizeLinear", "Conv"],
                "per channel {per_channel}"
            );
            let a = &g.node[1];
            assert_eq!(
                a.input,
                [
                    "x_QuantizeLinear_Output",
                    "x_scale",
                    "x_zero_point",
                    "wa_quantized",
                    "wa_scale",
                    "wa_zero_point",
                    "y_scale",
                    "y_zero_point"
                ]
            );
            assert_eq!(a.output, ["y_QuantizeLinear_Output"]);
            assert_eq!(g.node[2].input[0], "y_QuantizeLinear_Output");
            assert_eq!(
                g.node[4].input,
                ["y_DequantizeLinear_Output", "wb_DequantizeLinear_Output"]
            );
            assert!(!g.initializer.iter().any(|t| t.name == "wa"), "the fp32 weight is left");
            // Every input is a graph input, an initializer or an earlier node's output.
            let mut known: HashSet<String> = g.input.iter().map(|i| i.name.clone()).collect();
            known.extend(g.initializer.iter().map(|t| t.name.clone()));
            for n in &g.node {
                for i in &n.input {
                    assert!(known.contains(i), "{} reads unknown `{i}`", n.op_type);
                }
                known.extend(n.output.iter().cloned());
            }
        }
    }

    /// A Conv with a bias: its QLinearConv takes the int32 bias as its ninth input; the model
    /// says once how it was quantized. A bias that is not int32 (a QDQ graph thrum did not
    /// write) keeps the QDQ form.
    #[test]
    fn qoperator_takes_the_int32_bias_and_leaves_other_forms_alone() {
        let mut model = pb::ModelProto::decode(two_convs(false).as_slice()).unwrap();
        let g = model.graph.as_mut().unwrap();
        g.node[0].input.push("ba".into());
        g.initializer.push(graph::float_tensor("ba", &[1], &[0.25]));
        let with_bias = model.encode_to_vec();
        let options = QuantizeOptions { format: Format::QOperator, ..Default::default() };
        let (bytes, report) = quantize_bytes(&with_bias, options);
        assert_eq!((report.qlinear_convs, report.int32_biases), (1, 1));
        let model = pb::ModelProto::decode(bytes.as_slice()).unwrap();
        let meta: Vec<&str> = model
            .metadata_props
            .iter()
            .filter(|m| m.key == "thrum.quantize")
            .map(|m| m.value.as_str())
            .collect();
        assert!(
            meta.len() == 1 && meta[0].ends_with("QOperator: 1 Conv as QLinearConv"),
            "{meta:?}"
        );
        let g = model.graph.unwrap();
        let conv = g.node.iter().find(|n| n.op_type == "QLinearConv").unwrap();
        let bias = g.initializer.iter().find(|t| t.name == conv.input[8]).unwrap();
        assert_eq!((bias.data_type, bias.dims.as_slice()), (DataType::Int32 as i32, &[1i64][..]));
        // The same graph in QDQ with its bias stored as uint8: not QLinearConv's form.
        let (qdq, _) = quantize_bytes(&with_bias, QuantizeOptions::default());
        let mut model = pb::ModelProto::decode(qdq.as_slice()).unwrap();
        let g = model.graph.as_mut().unwrap();
        for t in g.initializer.iter_mut().filter(|t| t.data_type == DataType::Int32 as i32) {
            t.data_type = DataType::Uint8 as i32;
        }
        assert_eq!(crate::qoperator::qlinear_convs(g, false), 0);
    }

    /// `model` quantized with `exclude` left in fp32 and every range [-1, 3]: its graph and
    /// report.
    fn quantize_excluding(model: &[u8], exclude: &[&str]) -> (pb::GraphProto, Report) {
        let options = QuantizeOptions {
            exclude_nodes: exclude.iter().map(|s| s.to_string()).collect(),
            ..QuantizeOptions::default()
        };
        quantize_with(model, options)
    }

    /// `model` quantized with `options` and every range [-1, 3]: its graph and report.
    fn quantize_with(model: &[u8], options: QuantizeOptions) -> (pb::GraphProto, Report) {
        let (bytes, report) = quantize_bytes(model, options);
        (pb::ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap(), report)
    }

    /// [`quantize_with`]'s model, encoded.
    fn quantize_bytes(model: &[u8], options: QuantizeOptions) -> (Vec<u8>, Report) {
        let q = Quantizer::new("two convs", model, options).unwrap();
        let ranges: Ranges = q
            .tensors_to_calibrate()
            .iter()
            .map(|t| (t.clone(), Range { min: -1.0, max: 3.0 }))
            .collect();
        q.quantize(&ranges).unwrap()
    }

    #[test]
    fn a_conv_left_in_fp32_reads_its_quantized_input_through_a_clip() {
        let (graph, report) = quantize_excluding(&two_convs(false), &["b"]);
        assert_eq!(report.fp32_barriers, 1);
        let b = report.nodes.iter().find(|n| n.name == "b").unwrap();
        assert_eq!(b.decision, Decision::Fp32);
        assert!(b.detail.contains("through a Clip"), "{}", b.detail);
        let node = |name: &str| graph.node.iter().find(|n| n.name == name).unwrap();
        // `b` keeps its float weight and reads the Clip, which reads `y`'s DequantizeLinear
        // and clips to the range `y` was quantized to: [-1, 3] as uint8 with zero point 64.
        assert_eq!(node("b").input, ["y_fp32_barrier", "wb"]);
        let clip = node("y_fp32_barrier");
        assert_eq!(clip.op_type, "Clip");
        assert_eq!(clip.input[0], "y_DequantizeLinear_Output");
        let consts = graph::constants(&graph);
        let bound = |name: &str| floats(&consts[name]).unwrap()[0];
        let (scale, zero) = activation_params(Range { min: -1.0, max: 3.0 });
        assert_eq!(bound(&clip.input[1]), -scale * f32::from(zero));
        assert_eq!(bound(&clip.input[2]), scale * (255.0 - f32::from(zero)));
        // `a` is quantized and reads no Clip.
        assert_eq!(node("a").input[0], "x_DequantizeLinear_Output");
        assert_eq!(node("a").input[1], "wa_DequantizeLinear_Output");
    }

    /// Ranges calibrated for every node quantized serve a plan with the first Conv in fp32
    /// (the accuracy search's): the Transpose's output, shared with its input before, now
    /// needs a range of its own, which is its input's.
    #[test]
    fn a_pass_through_output_takes_its_inputs_range_when_it_is_no_longer_shared() {
        let model = two_convs(true);
        let base = Quantizer::new("two convs", &model, QuantizeOptions::default()).unwrap();
        let ranges: Ranges = base
            .tensors_to_calibrate()
            .iter()
            .map(|t| (t.clone(), Range { min: -1.0, max: 3.0 }))
            .collect();
        assert!(!ranges.contains_key("yt"), "{ranges:?}");
        let options = QuantizeOptions { exclude_nodes: vec!["a".into()], ..Default::default() };
        let q = Quantizer::new("two convs", &model, options).unwrap();
        assert!(q.tensors_to_calibrate().contains(&"yt".to_string()));
        let (bytes, report) = q.quantize(&ranges).unwrap();
        let b = report.nodes.iter().find(|n| n.name == "b").unwrap();
        assert_eq!(b.decision, Decision::Quantized);
        let graph = pb::ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap();
        let consts = graph::constants(&graph);
        let (scale, _) = activation_params(Range { min: -1.0, max: 3.0 });
        assert_eq!(floats(&consts["yt_scale"]).unwrap()[0], scale);
        // Without a range behind the pass-through either, it is still an error.
        let mut missing = ranges.clone();
        missing.remove("y");
        assert!(matches!(q.quantize(&missing), Err(QuantError::MissingRange { .. })));
    }

    /// A malformed graph whose Transpose reads its own output, in front of an fp32 Conv: the
    /// search for where the Clip goes ends (no Clip: nothing quantized reaches the Conv).
    #[test]
    fn a_node_reading_its_own_output_does_not_hang_the_quantizer() {
        let mut model = pb::ModelProto::decode(two_convs(false).as_slice()).unwrap();
        let graph = model.graph.as_mut().unwrap();
        graph.node.insert(
            1,
            graph::node("Transpose", "t".into(), vec!["l".into()], vec!["l".into()], vec![]),
        );
        graph.node[2].input[0] = "l".into();
        let (_, report) = quantize_excluding(&model.encode_to_vec(), &["b"]);
        assert_eq!(report.fp32_barriers, 0);
    }

    /// ONNX Runtime moves a DequantizeLinear past a Transpose: the Clip goes before an fp32
    /// Transpose that feeds the fp32 Conv, and the Clip is written after what it reads.
    #[test]
    fn the_clip_goes_before_an_fp32_transpose_feeding_the_fp32_conv() {
        let (graph, report) = quantize_excluding(&two_convs(true), &["t", "b"]);
        assert_eq!(report.fp32_barriers, 1);
        let at = |name: &str| graph.node.iter().position(|n| n.name == name).unwrap();
        assert_eq!(graph.node[at("t")].input[0], "y_fp32_barrier");
        assert_eq!(graph.node[at("b")].input[0], "yt");
        assert!(at("y_DequantizeLinear") < at("y_fp32_barrier"));
        assert!(at("y_fp32_barrier") < at("t"));
        let t = report.nodes.iter().find(|n| n.name == "t").unwrap();
        assert!(t.detail.contains("through a Clip"), "{}", t.detail);
    }

    #[test]
    fn activation_params_keep_zero_exact() {
        let (s, z) = activation_params(Range { min: -1.0, max: 3.0 });
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 64);
        assert_eq!(activation_params(Range { min: 0.0, max: 0.0 }), (1.0, 0));
        assert_eq!(activation_params(Range { min: 0.0, max: 6.0 }).1, 0);
    }

    #[test]
    fn weights_get_a_scale_per_output_channel() {
        // Two channels of two values: [1, -2], [0.5, 0.25].
        let (q, s) = quantize_weight(&[1.0, -2.0, 0.5, 0.25], &[2, 2], Some(0), 127.0, &[]);
        assert_eq!(s, vec![2.0 / 127.0, 0.5 / 127.0]);
        assert_eq!(q, vec![64, -127, 127, 64]);
        // Axis 1 of a [K, N] matrix: the columns.
        let (_, s) = quantize_weight(&[1.0, -2.0, 0.5, 0.25], &[2, 2], Some(1), 127.0, &[]);
        assert_eq!(s, vec![1.0 / 127.0, 2.0 / 127.0]);
        // An all-zero channel gets scale 1, not a division by zero.
        let (q, s) = quantize_weight(&[0.0, 0.0], &[1, 2], Some(0), 63.0, &[]);
        assert_eq!((q, s), (vec![0, 0], vec![1.0]));
        // A channel of near-zero weights takes the scale its bias needs.
        let (q, s) =
            quantize_weight(&[1e-12, -1e-12, 1.0, 0.5], &[2, 2], Some(0), 127.0, &[0.1, 0.0]);
        assert_eq!(s, vec![0.1, 1.0 / 127.0]);
        assert_eq!(q, vec![0, 0, 127, 64]);
    }
}
