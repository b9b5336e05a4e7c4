//! Static int8 quantization of ONNX models, in Rust (`thrum quantize`).
//!
//! What ONNX Runtime's `quantize_static` does, in three steps:
//! 1. [`Quantizer::new`] reads the model, folds each `BatchNormalization` into the `Conv`
//!    before it (ONNX Runtime's pre-processing does this through its optimiser) and decides,
//!    node by node, what is quantized and why the rest stays in fp32 ([`Report`]).
//! 2. [`calibrate`] runs the model on calibration samples through any thrum engine that reads
//!    ONNX, with every tensor to quantize made an output, and turns what it saw into ranges
//!    ([`Method`]: MinMax, percentile, entropy).
//! 3. [`Quantizer::quantize`] writes the QDQ model: activations as `QuantizeLinear` →
//!    `DequantizeLinear` pairs (asymmetric uint8), weights stored as int8 with a
//!    `DequantizeLinear` (symmetric, per output channel by default), biases as int32 at the
//!    input scale × weight scale, and `Relu` / `Clip` after a quantized node removed (its
//!    output's range does the clipping, as ONNX Runtime's quantizer does). ONNX Runtime's graph
//!    optimiser fuses these patterns into its integer kernels (`QLinearConv`, `QGemm`,
//!    `QLinearMatMul`, `QLinearAdd`, `QLinearGlobalAveragePool`); OpenVINO reads QDQ as its
//!    own low-precision form.
//!
//! Activations are uint8 and weights int8 (ONNX Runtime's U8S8), the combination its x86
//! kernels run fastest. [`Format::QOperator`] writes each quantized `Conv` as one standard
//! `QLinearConv` instead, the form tract runs on its integer kernels.

#![forbid(unsafe_code)]

mod calibrate;
mod dynamic;
mod error;
pub mod fallback;
mod graph;
mod qdq;
mod qoperator;

pub use calibrate::{CalibrationStats, Calibrator, Method, Range, Ranges, calibrate};
pub use error::QuantError;
pub use qdq::{DEFAULT_OP_TYPES, Decision, Format, NodeReport, QuantizeOptions, Quantizer, Report};
