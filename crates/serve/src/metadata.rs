//! What the server says about itself and its models, in the protocol's JSON: server and model
//! metadata, Triton's model configuration and statistics, the repository index. The gRPC front
//! builds its messages from the same facts.

use serde_json::{Value, json};
use thrum_core::TensorSpec;

use crate::pool::PoolStats;
use crate::server::{IndexEntry, ServedModel};
use crate::v2;

/// The extensions the server implements, as `GET /v2` lists them: only what is served
/// (`schedule_policy`'s priority levels, `sequence` and shared memory are not, and requests
/// that ask for them are refused).
pub const EXTENSIONS: &[&str] = &[
    "classification",
    "binary_tensor_data",
    "model_configuration",
    "statistics",
    "model_repository",
    "model_repository(unload_dependents)",
    "parameters",
];

/// The server's name in `GET /v2`.
pub const NAME: &str = "thrum";

/// `GET /v2`.
pub fn server() -> Value {
    json!({ "name": NAME, "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS })
}

fn tensors(specs: &[TensorSpec]) -> Value {
    Value::Array(
        specs
            .iter()
            .map(|s| json!({ "name": s.name, "datatype": v2::datatype(s.dtype), "shape": v2::wire_shape(s) }))
            .collect(),
    )
}

/// `GET /v2/models/{m}`: dynamic dimensions as -1, the batch axis included.
pub fn model(m: &ServedModel) -> Value {
    json!({
        "name": m.name,
        "versions": [ServedModel::VERSION],
        "platform": m.platform,
        "inputs": tensors(m.model().inputs()),
        "outputs": tensors(m.model().outputs()),
    })
}

/// A spec's dimensions for the model configuration: without the batch axis when the model
/// batches (Triton's convention: metadata shape = [-1] + dims).
pub fn config_dims(spec: &TensorSpec, batching: bool) -> Vec<i64> {
    let shape = v2::wire_shape(spec);
    match (batching, spec.batch_axis) {
        (true, Some(0)) => shape[1..].to_vec(),
        _ => shape,
    }
}

/// The model's `max_batch_size` as Triton states it: 0 when it does not batch.
pub fn max_batch_size(m: &ServedModel) -> usize {
    match (&m.pool.config().batching, m.pool.batch_axis()) {
        (Some(b), Some(0)) => b.max_batch_size,
        _ => 0,
    }
}

/// `GET /v2/models/{m}/config` (Triton's model configuration extension).
pub fn config(m: &ServedModel) -> Value {
    let max_batch = max_batch_size(m);
    let batching = max_batch > 0;
    let config = m.pool.config();
    let mut value = json!({
        "name": m.name,
        "platform": m.platform,
        "backend": m.model().engine(),
        "max_batch_size": max_batch,
        "input": m.model().inputs().iter().map(|s| json!({
            "name": s.name, "data_type": v2::config_type(s.dtype), "dims": config_dims(s, batching),
            "is_shape_tensor": false, "optional": false,
        })).collect::<Vec<_>>(),
        "output": m.model().outputs().iter().map(|s| json!({
            "name": s.name, "data_type": v2::config_type(s.dtype), "dims": config_dims(s, batching),
            "is_shape_tensor": false,
        })).collect::<Vec<_>>(),
        "instance_group": [{ "name": format!("{}_0", m.name), "kind": "KIND_CPU", "count": config.workers }],
        "model_transaction_policy": { "decoupled": false },
        "parameters": {
            "intra_op_threads": { "string_value": threads(m.model().threads().intra_op) },
            "inter_op_threads": { "string_value": threads(m.model().threads().inter_op) },
            "predictor": { "string_value": config.predictor.to_string() },
            "queue_capacity": { "string_value": config.queue_capacity.to_string() },
        },
    });
    if let (Some(b), true) = (&config.batching, batching) {
        value["dynamic_batching"] = json!({
            "preferred_batch_size": b.preferred_batch_sizes,
            "max_queue_delay_microseconds": b.max_queue_delay.as_micros() as u64,
        });
    }
    value
}

fn threads(n: Option<usize>) -> String {
    n.map_or_else(|| "engine default".to_string(), |n| n.to_string())
}

fn duration(stat: (u64, u64)) -> Value {
    json!({ "count": stat.0, "ns": stat.1 })
}

/// One model's entry of `GET /v2/models/stats`, every field perf_analyzer reads present.
pub fn stats(m: &ServedModel) -> Value {
    let s: PoolStats = m.pool.stats();
    json!({
        "name": m.name,
        "version": ServedModel::VERSION,
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": duration(s.success),
            "fail": duration(s.fail),
            "queue": duration(s.queue),
            "compute_input": duration(s.compute_input),
            "compute_infer": duration(s.compute_infer),
            "compute_output": duration(s.compute_output),
            "cache_hit": duration((0, 0)),
            "cache_miss": duration((0, 0)),
        },
        "batch_stats": s.batches.iter().map(|(size, b)| json!({
            "batch_size": size,
            "compute_input": { "count": b.count, "ns": b.compute_input_ns },
            "compute_infer": { "count": b.count, "ns": b.compute_infer_ns },
            "compute_output": { "count": b.count, "ns": b.compute_output_ns },
        })).collect::<Vec<_>>(),
    })
}

/// One entry of `POST /v2/repository/index`, as Triton writes it: a model never loaded has
/// only its name; `reason` only when there is one.
pub fn index_entry(e: &IndexEntry) -> Value {
    let mut entry = serde_json::Map::new();
    entry.insert("name".into(), json!(e.name));
    if let Some(state) = e.state {
        entry.insert("version".into(), json!(ServedModel::VERSION));
        entry.insert("state".into(), json!(state));
        if !e.reason.is_empty() {
            entry.insert("reason".into(), json!(e.reason));
        }
    }
    Value::Object(entry)
}
