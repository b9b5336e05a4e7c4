//! The `precision` option: the arithmetic an engine runs a model in, and the checks every
//! engine makes before it agrees to one.
//!
//! Each engine maps a precision its own way (OpenVINO's `INFERENCE_PRECISION_HINT`, a bf16
//! TorchScript module, TensorFlow's oneDNN auto mixed precision) or refuses it with the reason
//! and what would work; this module holds what they share: the values, the CPU check (bf16 and
//! fp16 only where the CPU has the units, since emulating them is slower than fp32), and the
//! check that an `int8` model really is quantized.

use std::collections::BTreeSet;
use std::fmt;

use crate::cpu::CpuFeatures;
use crate::engine::ModelSource;
use crate::error::{Error, Result};

/// The arithmetic a model runs in.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats: the model as its file says.
    #[default]
    Fp32,
    /// bfloat16: fp32's range with 8 bits of mantissa (AVX512-BF16, AMX).
    Bf16,
    /// IEEE half precision (AVX512-FP16, AMX-FP16).
    Fp16,
    /// 8-bit integers: a quantized model (`thrum quantize`), run by integer kernels.
    Int8,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        })
    }
}

/// The form of a statically quantized ONNX model whose convolutions an engine runs on its
/// integer kernels: what `thrum quantize` writes, and `thrum compare` and `thrum tune` give
/// that engine for int8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Int8Form {
    /// `QuantizeLinear` / `DequantizeLinear` pairs around float operators, weights with one
    /// scale per output channel: the engine fuses them into integer operators (ONNX Runtime,
    /// OpenVINO).
    #[default]
    Qdq,
    /// Each ordinary (one-group) `Conv` as one `QLinearConv` with one weight scale per tensor,
    /// the rest QDQ with per-channel weights: tract runs QDQ pairs in f32 between conversions,
    /// per-channel scales off its fast path, and has no integer depthwise kernel.
    #[serde(rename = "qlinear-per-tensor")]
    QLinearPerTensor,
}

impl fmt::Display for Int8Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Int8Form::Qdq => "QDQ, weights per channel",
            Int8Form::QLinearPerTensor => {
                "ordinary convolutions as QLinearConv with weights per tensor, the rest QDQ"
            }
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Precision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "fp16" | "f16" | "float16" | "half" => Ok(Precision::Fp16),
            "int8" | "i8" => Ok(Precision::Int8),
            other => Err(Error::InvalidValue {
                what: "precision".into(),
                value: other.into(),
                expected: "fp32, bf16, fp16 or int8".into(),
            }),
        }
    }
}

/// The environment variable that lets bf16 and fp16 run on a CPU without their units
/// (emulated, slower than fp32): for testing an engine's reduced-precision path anywhere.
pub const EMULATE_VAR: &str = "THRUM_EMULATE_PRECISION";

/// `engine` refuses `precision`: the error names both and says why and what would work.
pub fn unsupported(engine: &'static str, precision: Precision, reason: impl Into<String>) -> Error {
    Error::Unsupported { engine, feature: format!("precision {precision}"), reason: reason.into() }
}

/// Checks that this CPU has the units `precision` needs (bf16: AVX512-BF16 or AMX-BF16;
/// fp16: AVX512-FP16), unless [`EMULATE_VAR`] is set to 1.
pub fn require_cpu(engine: &'static str, precision: Precision, cpu: &CpuFeatures) -> Result<()> {
    let (has, needs) = match precision {
        Precision::Bf16 => (cpu.bf16(), "AVX512-BF16 or AMX-BF16"),
        Precision::Fp16 => (cpu.avx512_fp16, "AVX512-FP16"),
        Precision::Fp32 | Precision::Int8 => return Ok(()),
    };
    if has || std::env::var(EMULATE_VAR).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    Err(unsupported(
        engine,
        precision,
        format!(
            "this CPU ({}) lacks {needs}, so {precision} would be emulated and slower than fp32; \
             use precision=fp32, or precision=int8 with a model from `thrum quantize` (set \
             {EMULATE_VAR}=1 to run it emulated anyway)",
            cpu.summary()
        ),
    ))
}

/// ONNX operators that make a model quantized: QDQ pairs, QOperator forms and ONNX Runtime's
/// integer contrib operators.
pub const QUANTIZED_OPERATORS: &[&str] = &[
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "QGemm",
    "QLinearAdd",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
];

/// Checks that the ONNX model of `source` is quantized (has one of
/// [`QUANTIZED_OPERATORS`]), as `precision=int8` needs.
pub fn require_quantized_onnx(engine: &'static str, source: &ModelSource) -> Result<()> {
    let bytes = source.read("an ONNX model")?;
    let operators = onnx_operators(&bytes).map_err(|reason| Error::InvalidData {
        what: format!("ONNX model `{}`", source.name()),
        reason,
    })?;
    if operators.iter().any(|op| QUANTIZED_OPERATORS.contains(&op.as_str())) {
        return Ok(());
    }
    Err(unsupported(
        engine,
        Precision::Int8,
        format!(
            "model `{}` is not quantized (no QuantizeLinear, DequantizeLinear or integer \
             operator); quantize it first: `thrum quantize -p MODEL -o MODEL-int8.onnx`",
            source.name()
        ),
    ))
}

/// The operator types of an ONNX model's main graph.
pub fn onnx_operators(bytes: &[u8]) -> std::result::Result<BTreeSet<String>, String> {
    Ok(onnx_operator_counts(bytes)?.into_keys().collect())
}

/// How many nodes of each operator type an ONNX model's graph has.
pub fn onnx_operator_counts(
    bytes: &[u8],
) -> std::result::Result<std::collections::BTreeMap<String, usize>, String> {
    use prost::Message;
    #[derive(Clone, PartialEq, prost::Message)]
    struct Node {
        #[prost(string, tag = "4")]
        op_type: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Graph {
        #[prost(message, repeated, tag = "1")]
        node: Vec<Node>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Model {
        #[prost(message, optional, tag = "7")]
        graph: Option<Graph>,
    }
    let model = Model::decode(bytes).map_err(|e| format!("not an ONNX protobuf ({e})"))?;
    let graph = model.graph.ok_or("the file has no graph")?;
    let mut counts = std::collections::BTreeMap::new();
    for node in graph.node {
        *counts.entry(node.op_type).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Whether an operator computes in integers: ONNX's QLinear* and *Integer operators and ONNX
/// Runtime's fused integer kernels (QGemm, QAttention, DynamicQuantizeMatMul…).
pub fn is_integer_operator(op: &str) -> bool {
    op.starts_with("QLinear")
        || op.contains("Integer")
        || op.starts_with("DynamicQuantize")
        || (op.len() > 1
            && op.starts_with('Q')
            && op[1..].starts_with(|c: char| c.is_ascii_uppercase()))
}

/// A graph's operators sorted by the arithmetic they do (from [`onnx_operator_counts`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorCensus {
    /// The integer operators ([`is_integer_operator`]) as `NAME ×COUNT`, by name.
    pub integer: Vec<String>,
    /// QuantizeLinear and DequantizeLinear nodes: conversions, computed in float.
    pub conversions: usize,
    /// Every other node (float arithmetic or data movement).
    pub float: usize,
}

impl OperatorCensus {
    /// Sorts `counts` (operator → nodes).
    pub fn new(counts: &std::collections::BTreeMap<String, usize>) -> OperatorCensus {
        let mut census = OperatorCensus::default();
        for (op, &n) in counts {
            if is_integer_operator(op) {
                census.integer.push(format!("{op} ×{n}"));
            } else if matches!(op.as_str(), "QuantizeLinear" | "DequantizeLinear") {
                census.conversions += n;
            } else {
                census.float += n;
            }
        }
        census
    }
}

/// A graph's operators as a precision report: the integer kernels with their counts, the
/// quantize / dequantize conversions left, and how many other (float) nodes there are.
pub fn integer_kernel_summary(counts: &std::collections::BTreeMap<String, usize>) -> String {
    let OperatorCensus { integer, conversions, float } = OperatorCensus::new(counts);
    if integer.is_empty() {
        return format!(
            "no integer kernel: {conversions} QuantizeLinear/DequantizeLinear and {float} float \
             nodes (the model runs in float)"
        );
    }
    format!(
        "integer kernels {}; {conversions} QuantizeLinear/DequantizeLinear left; {float} other \
         nodes in float",
        integer.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_kernels_are_told_from_conversions_and_float_nodes() {
        let counts: std::collections::BTreeMap<String, usize> = [
            ("QLinearConv", 3),
            ("QGemm", 1),
            ("MatMulInteger", 2),
            ("DequantizeLinear", 2),
            ("QuantizeLinear", 1),
            ("Sigmoid", 4),
            ("Quantize", 0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert!(!is_integer_operator("QuantizeLinear") && !is_integer_operator("Sigmoid"));
        let s = integer_kernel_summary(&counts);
        assert!(s.starts_with("integer kernels MatMulInteger ×2, QGemm ×1, QLinearConv ×3"), "{s}");
        assert!(s.contains("3 QuantizeLinear/DequantizeLinear left; 4 other nodes"), "{s}");
        let float: std::collections::BTreeMap<String, usize> =
            [("Conv".to_string(), 2usize)].into_iter().collect();
        assert!(integer_kernel_summary(&float).starts_with("no integer kernel"));
    }

    #[test]
    fn precisions_parse_by_their_usual_names() {
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("float16".parse::<Precision>().unwrap(), Precision::Fp16);
        let err = "int4".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("fp32, bf16, fp16 or int8"), "{err}");
    }

    #[test]
    fn a_cpu_without_bf16_refuses_it_and_names_what_works() {
        let cpu = CpuFeatures::from_cpuinfo("model name : AMD EPYC\nflags : avx2 fma\n");
        if std::env::var(EMULATE_VAR).is_ok() {
            return;
        }
        let err = require_cpu("torch", Precision::Bf16, &cpu).unwrap_err().to_string();
        assert!(err.contains("precision bf16") && err.contains("AMD EPYC"), "{err}");
        assert!(err.contains("AVX512-BF16 or AMX-BF16") && err.contains("thrum quantize"), "{err}");
        assert!(require_cpu("torch", Precision::Int8, &cpu).is_ok());
        let amx = CpuFeatures::from_cpuinfo("flags : avx2 avx512f avx512_bf16 amx_bf16\n");
        assert!(require_cpu("torch", Precision::Bf16, &amx).is_ok());
    }
}
