//! The quantizer's errors.

use thrum_core::ErrorKind;

/// What can go wrong quantizing a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// The model is not an ONNX model the quantizer can read.
    #[error("model `{model}`: {reason}")]
    Model {
        /// The model.
        model: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No node of the model can be quantized.
    #[error("model `{model}` has nothing to quantize: {reasons}")]
    NothingQuantizable {
        /// The model.
        model: String,
        /// Why each candidate was left in fp32 (or that there is no candidate).
        reasons: String,
    },
    /// The calibration data does not fit the model, or there is none.
    #[error("calibration data: {what}; expected {expected}")]
    Calibration {
        /// What was given.
        what: String,
        /// What the model needs.
        expected: String,
    },
    /// A tensor to calibrate has no range (calibration never produced it).
    #[error(
        "tensor `{tensor}` was not observed during calibration; expected a range for every tensor to quantize"
    )]
    MissingRange {
        /// The tensor.
        tensor: String,
    },
    /// No model the accuracy search measured keeps the target share of fp32's accuracy (the
    /// most accurate one was written).
    #[error(
        "model `{model}`: no quantized model kept {shortfall}; the best was written to `{written}`"
    )]
    BelowTarget {
        /// The model.
        model: String,
        /// The target and the best score measured, in words.
        shortfall: String,
        /// Where the best model measured was written.
        written: String,
    },
    /// The engine that runs calibration failed (loading the model, running a sample).
    #[error(transparent)]
    Engine(#[from] thrum_core::Error),
}

impl QuantError {
    /// The kind callers decide by.
    pub fn kind(&self) -> ErrorKind {
        match self {
            QuantError::Model { .. } => ErrorKind::InvalidModel,
            QuantError::NothingQuantizable { .. } => ErrorKind::Unsupported,
            QuantError::Calibration { .. } => ErrorKind::InvalidInput,
            QuantError::MissingRange { .. } | QuantError::BelowTarget { .. } => ErrorKind::Internal,
            QuantError::Engine(e) => e.kind(),
        }
    }
}
