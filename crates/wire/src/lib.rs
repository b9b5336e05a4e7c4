//! # thrum-wire
//!
//! The KServe v2 / Open Inference Protocol as bytes on the wire, shared by thrum's server
//! (`thrum-serve`) and its load generator (`thrum-load`), so that what one encodes the other
//! decodes by the same code; peers no one here wrote (tritonclient, MLServer) check it.
//!
//! - [`v2`]: datatypes, the REST JSON bodies with the binary tensor data extension, and the
//!   conversions between wire tensors and thrum's, written for hostile input.
//! - [`pb`]: the gRPC service `inference.GRPCInferenceService` and its messages, with Triton's
//!   model configuration (`proto/`, compiled at build time by protox: no system `protoc`).
//! - [`WireError`]: what is wrong with a request's encoding, naming the field.

pub mod v2;

/// The messages, client and server of `proto/grpc_service.proto` and
/// `proto/model_config.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used)]
pub mod pb {
    tonic::include_proto!("inference");

    /// The compiled descriptors of the `.proto` files (for reading Triton's `config.pbtxt`,
    /// which is protobuf text format).
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("inference");
}

/// A request (or answer) that does not follow the protocol: bad JSON, a datatype, a shape, a
/// binary layout. The message names the field and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {reason}")]
#[non_exhaustive]
pub struct WireError {
    /// What is wrong, naming the field.
    pub reason: String,
}

impl WireError {
    /// An error naming what is wrong.
    pub fn bad(reason: impl Into<String>) -> WireError {
        WireError { reason: reason.into() }
    }

    /// Its kind: always the caller's to fix.
    pub fn kind(&self) -> thrum_core::ErrorKind {
        thrum_core::ErrorKind::InvalidInput
    }
}
