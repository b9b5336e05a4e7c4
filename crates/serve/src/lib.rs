//! # thrum-serve
//!
//! thrum's model server: the KServe v2 / Open Inference Protocol over REST (axum) and gRPC
//! (tonic), in front of per-model worker pools — the seed's per-thread predictors behind a
//! socket, with Triton's dynamic batching and a bounded queue.
//!
//! - [`pool`]: [`ModelPool`], the part a Rust service can embed without HTTP: workers,
//!   batching, admission, statistics.
//! - [`server`]: the [`Server`] and its life (readiness, loading and unloading models,
//!   graceful shutdown); [`front`] the connections' limits and timeouts.
//! - [`http`] and [`grpc`]: the protocol fronts over the wire formats of `thrum-wire`;
//!   [`metadata`] what the server says about its models; [`metrics`] Prometheus; [`embed`]
//!   TEI's and OpenAI's embedding endpoints for text models (`/embed`, `/v1/embeddings`);
//!   [`image`] encoded images as v2 BYTES inputs, Triton's `classification` parameter and
//!   TorchServe's `/predictions`.
//! - [`config`]: what to serve, from a `thrum.toml` or a model repository; [`triton`] Triton's
//!   model repositories (`config.pbtxt`, version folders) as they are.
//! - [`ServeError`]: the one error type; its kind decides the HTTP and gRPC status, in one
//!   place ([`ServeError::http_status`], [`ServeError::grpc_code`]).

pub mod config;
pub mod content;
pub mod embed;
mod error;
pub mod front;
pub mod grpc;
pub mod http;
pub mod image;
pub mod metadata;
pub mod metrics;
pub mod pool;
pub mod server;
pub mod triton;

pub use thrum_wire::{pb, v2};

pub use error::ServeError;
pub use front::Limits;
pub use pool::{Batching, ModelPool, Padding, PoolConfig, PoolStats};
pub use server::{
    Background, Bound, IndexEntry, Listen, ModelControl, Repository, ServedModel, Server,
};

/// The protocol's platform string for a model on `engine` in the format whose id is `format`
/// (what model metadata reports; Triton's names where Triton has the engine).
pub fn platform(engine: &str, format: Option<&str>) -> String {
    match engine {
        "ort" => "onnxruntime_onnx".into(),
        "torch" => "pytorch_libtorch".into(),
        "tensorflow" if format == Some("tf-graph") => "tensorflow_graphdef".into(),
        "tensorflow" => "tensorflow_savedmodel".into(),
        "mxnet" => "mxnet_symbol".into(),
        other => format!("thrum_{other}"),
    }
}
