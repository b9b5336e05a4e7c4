//! The gRPC front (tonic): `inference.GRPCInferenceService` as the protocol publishes it. Data
//! arrives in `raw_input_contents` (what tritonclient sends) or the typed `contents`, and
//! leaves in `raw_output_contents`, one entry per output in order (the only form tritonclient
//! reads). The messages come from `thrum-wire`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use thrum_core::{DType, Tensor};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::error::ServeError;
use crate::front::Fronts;
use crate::metadata;
use crate::server::{ServedModel, State};
use crate::v2::{self, InferRequest, RequestedOutput};

pub use thrum_wire::pb;

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use pb::infer_parameter::ParameterChoice;

struct Service {
    state: Arc<State>,
}

/// Serves `state`'s models on `listener` until `stop` completes, then lets in-flight calls
/// finish within the shutdown timeout (`front::serve_grpc`: connections, limits, idleness).
pub(crate) async fn serve(
    state: Arc<State>,
    fronts: Fronts,
    listener: TcpListener,
    stop: impl Future<Output = ()>,
) {
    let limit = state.body_limit;
    let service = GrpcInferenceServiceServer::new(Service { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    crate::front::serve_grpc(fronts, listener, service, stop).await;
}

fn version(v: &str) -> Option<&str> {
    Some(v).filter(|v| !v.is_empty())
}

fn tensor_metadata(
    specs: &[thrum_core::TensorSpec],
) -> Vec<pb::model_metadata_response::TensorMetadata> {
    specs
        .iter()
        .map(|s| pb::model_metadata_response::TensorMetadata {
            name: s.name.clone(),
            datatype: v2::datatype(s.dtype).into(),
            shape: v2::wire_shape(s),
        })
        .collect()
}

fn data_type(dtype: DType) -> i32 {
    match dtype {
        DType::Bool => pb::DataType::TypeBool as i32,
        DType::U8 => pb::DataType::TypeUint8 as i32,
        DType::U16 => pb::DataType::TypeUint16 as i32,
        DType::U32 => pb::DataType::TypeUint32 as i32,
        DType::U64 => pb::DataType::TypeUint64 as i32,
        DType::I8 => pb::DataType::TypeInt8 as i32,
        DType::I16 => pb::DataType::TypeInt16 as i32,
        DType::I32 => pb::DataType::TypeInt32 as i32,
        DType::I64 => pb::DataType::TypeInt64 as i32,
        DType::F16 => pb::DataType::TypeFp16 as i32,
        DType::BF16 => pb::DataType::TypeBf16 as i32,
        DType::F32 => pb::DataType::TypeFp32 as i32,
        DType::F64 => pb::DataType::TypeFp64 as i32,
        DType::Bytes => pb::DataType::TypeString as i32,
    }
}

fn duration(stat: (u64, u64)) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration { count: stat.0, ns: stat.1 })
}

fn statistics(m: &ServedModel) -> pb::ModelStatistics {
    let s = m.pool.stats();
    pb::ModelStatistics {
        name: m.name.clone(),
        version: ServedModel::VERSION.into(),
        last_inference: s.last_inference_ms,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: duration(s.success),
            fail: duration(s.fail),
            queue: duration(s.queue),
            compute_input: duration(s.compute_input),
            compute_infer: duration(s.compute_infer),
            compute_output: duration(s.compute_output),
            cache_hit: duration((0, 0)),
            cache_miss: duration((0, 0)),
        }),
        batch_stats: s
            .batches
            .iter()
            .map(|(size, b)| pb::InferBatchStatistics {
                batch_size: *size as u64,
                compute_input: duration((b.count, b.compute_input_ns)),
                compute_infer: duration((b.count, b.compute_infer_ns)),
                compute_output: duration((b.count, b.compute_output_ns)),
            })
            .collect(),
    }
}

/// A gRPC input's tensor: from its `raw_input_contents` entry, else its typed contents.
fn input_tensor(
    input: &pb::model_infer_request::InferInputTensor,
    raw: Option<&[u8]>,
) -> Result<Tensor, ServeError> {
    let what = format!("input `{}`", input.name);
    let dtype = v2::dtype_of(&input.datatype, &what)?;
    let shape = v2::shape_of(&input.shape, dtype, &what)?;
    if let Some(raw) = raw {
        return Ok(v2::tensor_from_binary(dtype, &shape, raw, &what)?);
    }
    let c = input.contents.clone().unwrap_or_default();
    let fits = |n: usize| -> Result<(), ServeError> {
        let count = thrum_core::tensor::checked_len(dtype, &shape)
            .map_err(|e| ServeError::bad(format!("{what}: {e}")))?;
        if n == count {
            Ok(())
        } else {
            Err(ServeError::bad(format!(
                "{what}: shape {shape:?} holds {count} elements, but contents has {n}"
            )))
        }
    };
    macro_rules! typed {
        ($field:expr, $t:ty) => {{
            fits($field.len())?;
            let values = $field
                .iter()
                .map(|&x| {
                    <$t>::try_from(x).map_err(|_| {
                        ServeError::bad(format!("{what}: {x} does not fit {}", v2::datatype(dtype)))
                    })
                })
                .collect::<Result<Vec<$t>, _>>()?;
            Tensor::from_vec(shape.clone(), values)
        }};
    }
    let tensor = match dtype {
        DType::Bool => {
            fits(c.bool_contents.len())?;
            Tensor::from_vec(shape.clone(), c.bool_contents)
        }
        DType::I8 => typed!(c.int_contents, i8),
        DType::I16 => typed!(c.int_contents, i16),
        DType::I32 => typed!(c.int_contents, i32),
        DType::I64 => typed!(c.int64_contents, i64),
        DType::U8 => typed!(c.uint_contents, u8),
        DType::U16 => typed!(c.uint_contents, u16),
        DType::U32 => typed!(c.uint_contents, u32),
        DType::U64 => typed!(c.uint64_contents, u64),
        DType::F32 => {
            fits(c.fp32_contents.len())?;
            Tensor::from_vec(shape.clone(), c.fp32_contents)
        }
        DType::F64 => {
            fits(c.fp64_contents.len())?;
            Tensor::from_vec(shape.clone(), c.fp64_contents)
        }
        DType::Bytes => {
            fits(c.bytes_contents.len())?;
            Tensor::from_vec(
                shape.clone(),
                c.bytes_contents.iter().map(|b| b.to_vec()).collect::<Vec<_>>(),
            )
        }
        DType::F16 | DType::BF16 => {
            return Err(ServeError::bad(format!(
                "{what}: {} data must come in raw_input_contents (the protocol has no typed field for it)",
                v2::datatype(dtype)
            )));
        }
    };
    tensor.map_err(|e| ServeError::bad(format!("{what}: {e}")))
}

fn decode(request: pb::ModelInferRequest) -> Result<InferRequest, ServeError> {
    for input in &request.inputs {
        if input.parameters.keys().any(|k| k.starts_with("shared_memory")) {
            return Err(ServeError::bad(format!(
                "input `{}` asks for shared memory, which thrum serve does not offer; send the \
                 data in raw_input_contents",
                input.name
            )));
        }
    }
    if !request.raw_input_contents.is_empty()
        && request.raw_input_contents.len() != request.inputs.len()
    {
        return Err(ServeError::bad(format!(
            "raw_input_contents has {} entries for {} inputs; it needs one per input, in order",
            request.raw_input_contents.len(),
            request.inputs.len()
        )));
    }
    let inputs = request
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let raw = request.raw_input_contents.get(i).map(|b| &b[..]);
            input_tensor(input, raw).map(|t| (input.name.clone(), t))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (key, value) in &request.parameters {
        let set = match &value.parameter_choice {
            None | Some(ParameterChoice::BoolParam(false)) => false,
            Some(ParameterChoice::Int64Param(0) | ParameterChoice::Uint64Param(0)) => false,
            Some(ParameterChoice::StringParam(s)) => !s.is_empty(),
            Some(_) => true,
        };
        if set {
            v2::refuse_parameter(key)?;
        }
    }
    let timeout = match request.parameters.get("timeout").and_then(|p| p.parameter_choice.clone()) {
        None => None,
        Some(ParameterChoice::Int64Param(us)) if us >= 0 => Some(Duration::from_micros(us as u64)),
        Some(ParameterChoice::Uint64Param(us)) => Some(Duration::from_micros(us)),
        Some(other) => {
            return Err(ServeError::bad(format!(
                "parameter `timeout` must be a count of microseconds, not {other:?}"
            )));
        }
    };
    // Per-output parameters mean what they mean over REST: what thrum does not offer is
    // refused, never silently ignored. `binary_data` is accepted: gRPC outputs are always raw.
    let mut outputs = Vec::with_capacity(request.outputs.len());
    for output in &request.outputs {
        let mut classification = None;
        for (key, value) in &output.parameters {
            match key.as_str() {
                "binary_data" => {}
                "classification" => {
                    let count = match &value.parameter_choice {
                        Some(ParameterChoice::Int64Param(k)) => u64::try_from(*k).ok(),
                        Some(ParameterChoice::Uint64Param(k)) => Some(*k),
                        _ => None,
                    };
                    let given = format!("{:?}", value.parameter_choice);
                    classification =
                        Some(thrum_wire::v2::class_count(count, &output.name, &given)?);
                }
                k if k.starts_with("shared_memory") => {
                    return Err(ServeError::bad(format!(
                        "output `{}` asks for shared memory, which thrum serve does not offer; \
                         its data comes in raw_output_contents",
                        output.name
                    )));
                }
                other => {
                    return Err(ServeError::bad(format!(
                        "output `{}` has parameter `{other}`, which thrum serve does not know; \
                         an output takes `binary_data` and `classification`",
                        output.name
                    )));
                }
            }
        }
        outputs.push(RequestedOutput {
            name: output.name.clone(),
            binary: Some(true),
            classification,
        });
    }
    let outputs = (!outputs.is_empty()).then_some(outputs);
    Ok(InferRequest {
        id: Some(request.id).filter(|id| !id.is_empty()),
        inputs,
        outputs,
        binary_output: true,
        timeout,
    })
}

/// Most requests of one stream in flight at once; the stream's further requests wait to be
/// read (HTTP/2 flow control holds the client back).
pub const STREAM_IN_FLIGHT: usize = 64;

/// Runs one `ModelInferRequest`: decoded, run in the model's pool, encoded.
async fn infer_one(
    state: &State,
    r: pb::ModelInferRequest,
) -> Result<pb::ModelInferResponse, ServeError> {
    let model = state.model(&r.model_name, version(&r.model_version))?;
    // Large requests are decoded off the async threads (they copy or convert every element).
    let request = if prost::Message::encoded_len(&r) > crate::http::INLINE_BYTES {
        crate::http::offload(move || decode(r)).await?
    } else {
        decode(r)?
    };
    let answer = crate::http::run(state, &model, request).await?;
    let size: usize = answer.outputs.iter().map(|(_, t, _)| t.len()).sum();
    if size * 4 > crate::http::INLINE_BYTES {
        crate::http::offload(move || Ok(encode(answer))).await
    } else {
        Ok(encode(answer))
    }
}

/// The answer's outputs in `raw_output_contents`, one entry per output in order.
fn encode(answer: crate::http::Answer) -> pb::ModelInferResponse {
    let (outputs, raw): (Vec<_>, Vec<_>) = answer
        .outputs
        .into_iter()
        .map(|(name, tensor, _)| {
            let out = pb::model_infer_response::InferOutputTensor {
                name,
                datatype: v2::datatype(tensor.dtype()).into(),
                shape: tensor.shape().iter().map(|&d| d as i64).collect(),
                parameters: Default::default(),
                contents: None,
            };
            (out, bytes::Bytes::from(v2::binary_of(&tensor)))
        })
        .unzip();
    pb::ModelInferResponse {
        model_name: answer.model,
        model_version: ServedModel::VERSION.into(),
        id: answer.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw,
    }
}

/// One request of a stream, answered: its response marked final, or its error with the
/// request's id and model so that the client knows which failed.
async fn stream_answer(
    state: Arc<State>,
    r: pb::ModelInferRequest,
) -> pb::ModelStreamInferResponse {
    let (id, model_name, model_version) =
        (r.id.clone(), r.model_name.clone(), r.model_version.clone());
    let request = state.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match infer_one(&state, r).await {
        Ok(mut response) => {
            response.parameters.insert(
                "triton_final_response".into(),
                pb::InferParameter { parameter_choice: Some(ParameterChoice::BoolParam(true)) },
            );
            pb::ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(response),
            }
        }
        Err(e) => {
            crate::http::log_failure(request, &model_name, &e);
            pb::ModelStreamInferResponse {
                error_message: e.to_string(),
                infer_response: Some(pb::ModelInferResponse {
                    model_name,
                    model_version,
                    id,
                    ..Default::default()
                }),
            }
        }
    }
}

/// The `config` parameter of a load: Triton's model configuration as a JSON string.
fn load_config(
    parameters: &std::collections::HashMap<String, pb::ModelRepositoryParameter>,
) -> Result<Option<pb::ModelConfig>, ServeError> {
    use pb::model_repository_parameter::ParameterChoice as P;
    let mut config = None;
    for (key, value) in parameters {
        match (key.as_str(), &value.parameter_choice) {
            ("config", Some(P::StringParam(json))) => {
                config = Some(crate::triton::config_from_json(json)?);
            }
            ("config", _) => {
                return Err(ServeError::bad(
                    "load parameter `config` must be a string_param holding the model configuration as JSON",
                ));
            }
            (k, _) => return Err(crate::triton::load_parameter_refused(k)),
        }
    }
    Ok(config)
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse { ready: self.state.is_ready() }))
    }

    async fn model_ready(
        &self,
        r: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = r.into_inner();
        // A model the server knows but does not serve now (unloaded, loading) is not ready;
        // only an unknown one is an error, as in Triton.
        let ready = match self.state.model(&r.name, version(&r.version)) {
            Ok(model) => model.pool.is_ready() && self.state.phase_not_ready().is_none(),
            Err(ServeError::Unavailable { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: metadata::NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: metadata::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let m = self.state.model(&r.name, version(&r.version))?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name.clone(),
            versions: vec![ServedModel::VERSION.into()],
            platform: m.platform.clone(),
            inputs: tensor_metadata(m.model().inputs()),
            outputs: tensor_metadata(m.model().outputs()),
        }))
    }

    async fn model_infer(
        &self,
        r: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let request = self.state.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let model = r.get_ref().model_name.clone();
        match infer_one(&self.state, r.into_inner()).await {
            Ok(response) => Ok(Response::new(response)),
            Err(e) => {
                crate::http::log_failure(request, &model, &e);
                Err(e.into())
            }
        }
    }

    type ModelStreamInferStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>,
    >;

    /// Triton's bidirectional stream: each request is answered on the stream, a failed one
    /// with its `error_message` (the stream goes on). Requests of one stream run concurrently
    /// (up to [`STREAM_IN_FLIGHT`]) and their answers go out in request order, as Triton does
    /// for models that are not decoupled.
    async fn model_stream_infer(
        &self,
        r: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        use futures_util::StreamExt;
        let mut incoming = r.into_inner();
        let state = self.state.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_IN_FLIGHT);
        tokio::spawn(async move {
            let mut pending = futures_util::stream::FuturesOrdered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    next = incoming.message(), if open && pending.len() < STREAM_IN_FLIGHT => match next {
                        Ok(Some(request)) => pending.push_back(stream_answer(state.clone(), request)),
                        Ok(None) => open = false,
                        Err(status) => {
                            // The stream itself broke (a bad message, a reset): no more requests
                            // come; those in flight are still answered if the client listens.
                            tracing::debug!(%status, "a stream's requests ended with an error");
                            open = false;
                        }
                    },
                    Some(answer) = pending.next(), if !pending.is_empty() => {
                        if tx.send(Ok(answer)).await.is_err() {
                            return;
                        }
                    }
                    else => break,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn model_config(
        &self,
        r: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let r = r.into_inner();
        let m = self.state.model(&r.name, version(&r.version))?;
        let max_batch = metadata::max_batch_size(&m);
        let batching = max_batch > 0;
        let config = m.pool.config();
        let dynamic = config.batching.as_ref().filter(|_| batching).map(|b| {
            pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
                preferred_batch_size: b.preferred_batch_sizes.iter().map(|&s| s as i32).collect(),
                max_queue_delay_microseconds: b.max_queue_delay.as_micros() as u64,
                ..Default::default()
            })
        });
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(pb::ModelConfig {
                name: m.name.clone(),
                platform: m.platform.clone(),
                backend: m.model().engine().into(),
                max_batch_size: max_batch as i32,
                input: m
                    .model()
                    .inputs()
                    .iter()
                    .map(|s| pb::ModelInput {
                        name: s.name.clone(),
                        data_type: data_type(s.dtype),
                        dims: metadata::config_dims(s, batching),
                        is_shape_tensor: false,
                        optional: false,
                        ..Default::default()
                    })
                    .collect(),
                output: m
                    .model()
                    .outputs()
                    .iter()
                    .map(|s| pb::ModelOutput {
                        name: s.name.clone(),
                        data_type: data_type(s.dtype),
                        dims: metadata::config_dims(s, batching),
                        is_shape_tensor: false,
                        ..Default::default()
                    })
                    .collect(),
                instance_group: vec![pb::ModelInstanceGroup {
                    name: format!("{}_0", m.name),
                    count: config.workers as i32,
                    kind: pb::model_instance_group::Kind::Cpu as i32,
                    ..Default::default()
                }],
                scheduling_choice: dynamic,
                model_transaction_policy: Some(pb::ModelTransactionPolicy { decoupled: false }),
                ..Default::default()
            }),
        }))
    }

    async fn model_statistics(
        &self,
        r: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let r = r.into_inner();
        let model_stats = if r.name.is_empty() {
            self.state.models().iter().map(|m| statistics(m)).collect()
        } else {
            let m = self.state.model(&r.name, version(&r.version))?;
            vec![statistics(&m)]
        };
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        r: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let ready_only = r.get_ref().ready;
        let models = self
            .state
            .index()
            .into_iter()
            .filter(|e| !ready_only || e.state == Some("READY"))
            .map(|e| pb::repository_index_response::ModelIndex {
                version: if e.state.is_some() {
                    ServedModel::VERSION.into()
                } else {
                    String::new()
                },
                state: e.state.unwrap_or_default().into(),
                reason: e.reason,
                name: e.name,
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        r: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        let r = r.into_inner();
        let config = load_config(&r.parameters)?;
        self.state.load(&r.model_name, config).await?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        r: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        use pb::model_repository_parameter::ParameterChoice as P;
        let r = r.into_inner();
        for (key, value) in &r.parameters {
            match (key.as_str(), &value.parameter_choice) {
                // thrum's models have no dependents: either value unloads the one model.
                ("unload_dependents", Some(P::BoolParam(_))) => {}
                ("unload_dependents", _) => {
                    return Err(ServeError::bad("`unload_dependents` must be a bool_param").into());
                }
                (k, _) => {
                    return Err(ServeError::bad(format!(
                        "unknown unload parameter `{k}`; an unload takes `unload_dependents`"
                    ))
                    .into());
                }
            }
        }
        self.state.unload(&r.model_name).await?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}
