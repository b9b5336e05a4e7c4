//! The REST front (axum): the v2 protocol's endpoints, the binary tensor data extension, the
//! Triton extensions tools need (model configuration, statistics, the model repository: index,
//! load, unload), and Prometheus `/metrics`. Handlers validate, hand the request to the
//! model's pool, and await; they never run a model. Decompressing, parsing and encoding large
//! bodies run on the blocking pool (`offload`), never on the async threads that answer
//! health probes; a body must arrive within the body timeout (408 otherwise).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use thrum_core::Tensor;

use crate::error::ServeError;
use crate::metadata;
use crate::server::{ServedModel, State};
use crate::v2::{self, InferRequest};

type Shared = Arc<State>;

/// The header that says how much of the body is the JSON header (the binary extension).
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Every route of the REST front.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata_v))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(model_ready_v))
        .route("/v2/models/{model}/config", get(model_config))
        .route("/v2/models/{model}/versions/{version}/config", get(model_config_v))
        .route("/v2/models/{model}/stats", get(model_stats))
        .route("/v2/models/{model}/versions/{version}/stats", get(model_stats_v))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_v))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(repository_load))
        .route("/v2/repository/models/{model}/unload", post(repository_unload))
        .route("/metrics", get(prometheus))
        // Text embeddings: TEI's and OpenAI's endpoints (embed.rs).
        .route("/embed", post(crate::embed::embed))
        .route("/tokenize", post(crate::embed::tokenize_route))
        .route("/info", get(crate::embed::info))
        .route("/v1/embeddings", post(crate::embed::openai_embeddings))
        // Images: TorchServe's inference API (image.rs).
        .route(
            "/predictions/{model}",
            post(crate::image::predictions).put(crate::image::predictions),
        )
        .route(
            "/predictions/{model}/{version}",
            post(crate::image::predictions_v).put(crate::image::predictions_v),
        )
        .route("/ping", get(crate::image::ping))
        .fallback(not_found)
        // The body is read by the infer handler itself, against the server's own limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The one way errors leave the REST front: `{"error": "..."}` with the status of the error's
/// kind ([`ServeError::http_status`]) and `Retry-After` where it applies.
pub fn error_response(e: &ServeError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(json!({ "error": e.to_string() }))).into_response();
    if let Some(seconds) = e.retry_after()
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn json_response(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

fn reply(result: Result<Value, ServeError>) -> Response {
    match result {
        Ok(value) => json_response(value),
        Err(e) => error_response(&e),
    }
}

async fn not_found() -> Response {
    let mut response = error_response(&ServeError::bad(
        "no such endpoint; the v2 protocol's are /v2, /v2/health/{live,ready}, \
         /v2/models/NAME[/versions/V][/ready|/config|/stats|/infer], /v2/repository/index, \
         /v2/repository/models/NAME/{load,unload}, /metrics; for text models also /embed, \
         /tokenize, /info and /v1/embeddings; for image and content-type models \
         /predictions/NAME[/VERSION]; /ping",
    ));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(Extract(state): Extract<Shared>) -> Response {
    match state.not_ready() {
        None => StatusCode::OK.into_response(),
        Some(e) => error_response(&e),
    }
}

async fn server_metadata() -> Response {
    json_response(metadata::server())
}

async fn model_metadata(Extract(s): Extract<Shared>, Path(model): Path<String>) -> Response {
    reply(s.model(&model, None).map(|m| metadata::model(&m)))
}

async fn model_metadata_v(
    Extract(s): Extract<Shared>,
    Path((model, v)): Path<(String, String)>,
) -> Response {
    reply(s.model(&model, Some(&v)).map(|m| metadata::model(&m)))
}

fn readiness(s: &State, model: &str, version: Option<&str>) -> Response {
    let m = match s.model(model, version) {
        Ok(m) => m,
        Err(e) => return error_response(&e),
    };
    let why = m.pool.not_ready().or_else(|| s.phase_not_ready().map(String::from));
    match why {
        None => StatusCode::OK.into_response(),
        Some(reason) => {
            error_response(&ServeError::NotReady { what: format!("model `{}`", m.name), reason })
        }
    }
}

async fn model_ready(Extract(s): Extract<Shared>, Path(model): Path<String>) -> Response {
    readiness(&s, &model, None)
}

async fn model_ready_v(
    Extract(s): Extract<Shared>,
    Path((model, v)): Path<(String, String)>,
) -> Response {
    readiness(&s, &model, Some(&v))
}

async fn model_config(Extract(s): Extract<Shared>, Path(model): Path<String>) -> Response {
    reply(s.model(&model, None).map(|m| metadata::config(&m)))
}

async fn model_config_v(
    Extract(s): Extract<Shared>,
    Path((model, v)): Path<(String, String)>,
) -> Response {
    reply(s.model(&model, Some(&v)).map(|m| metadata::config(&m)))
}

async fn all_stats(Extract(s): Extract<Shared>) -> Response {
    let stats: Vec<Value> = s.models().iter().map(|m| metadata::stats(m)).collect();
    json_response(json!({ "model_stats": stats }))
}

async fn model_stats(Extract(s): Extract<Shared>, Path(model): Path<String>) -> Response {
    reply(s.model(&model, None).map(|m| json!({ "model_stats": [metadata::stats(&m)] })))
}

async fn model_stats_v(
    Extract(s): Extract<Shared>,
    Path((model, v)): Path<(String, String)>,
) -> Response {
    reply(s.model(&model, Some(&v)).map(|m| json!({ "model_stats": [metadata::stats(&m)] })))
}

/// Most bytes of a repository request's body (a load's `config` parameter included).
const REPOSITORY_BODY_LIMIT: usize = 4 << 20;

/// A small JSON body of the repository extension: empty (tritonclient sends none, and no
/// `Content-Type`), or an object.
async fn small_json(s: &State, body: Body) -> Result<serde_json::Map<String, Value>, ServeError> {
    let bytes = read_body(body, REPOSITORY_BODY_LIMIT, s.limits.body_timeout).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ServeError::bad(format!("the body must be a JSON object, not {other}"))),
        Err(e) => Err(ServeError::bad(format!("the body is not valid JSON: {e}"))),
    }
}

async fn repository_index(Extract(s): Extract<Shared>, body: Body) -> Response {
    let ready_only = match small_json(&s, body).await {
        Ok(body) => match body.get("ready") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return error_response(&ServeError::bad(format!(
                    "`ready` must be a boolean, not {other}"
                )));
            }
        },
        Err(e) => return error_response(&e),
    };
    let entries = s
        .index()
        .into_iter()
        .filter(|e| !ready_only || e.state == Some("READY"))
        .map(|e| metadata::index_entry(&e))
        .collect();
    json_response(Value::Array(entries))
}

async fn repository_load(
    Extract(s): Extract<Shared>,
    Path(model): Path<String>,
    body: Body,
) -> Response {
    let result = async {
        let body = small_json(&s, body).await?;
        let config = match body.get("parameters") {
            None | Some(Value::Null) => None,
            Some(Value::Object(params)) => load_config(params)?,
            Some(other) => {
                return Err(ServeError::bad(format!(
                    "`parameters` must be an object, not {other}"
                )));
            }
        };
        s.load(&model, config).await
    }
    .await;
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error_response(&e),
    }
}

/// The `config` parameter of a load request: Triton's model configuration as a JSON string,
/// over what the repository says. Files (`file:…`) are not taken.
fn load_config(
    params: &serde_json::Map<String, Value>,
) -> Result<Option<crate::pb::ModelConfig>, ServeError> {
    let mut config = None;
    for (key, value) in params {
        match (key.as_str(), value) {
            ("config", Value::String(json)) => {
                config = Some(crate::triton::config_from_json(json)?)
            }
            ("config", other) => {
                return Err(ServeError::bad(format!(
                    "load parameter `config` must be a string holding the model configuration as JSON, not {other}"
                )));
            }
            (k, _) => return Err(crate::triton::load_parameter_refused(k)),
        }
    }
    Ok(config)
}

async fn repository_unload(
    Extract(s): Extract<Shared>,
    Path(model): Path<String>,
    body: Body,
) -> Response {
    let result = async {
        let body = small_json(&s, body).await?;
        if let Some(params) = body.get("parameters") {
            let Value::Object(params) = params else {
                return Err(ServeError::bad("`parameters` must be an object"));
            };
            for (key, value) in params {
                match (key.as_str(), value) {
                    // thrum's models have no dependents: either value unloads the one model.
                    ("unload_dependents", Value::Bool(_)) => {}
                    ("unload_dependents", other) => {
                        return Err(ServeError::bad(format!(
                            "`unload_dependents` must be a boolean, not {other}"
                        )));
                    }
                    (k, _) => {
                        return Err(ServeError::bad(format!(
                            "unknown unload parameter `{k}`; an unload takes `unload_dependents`"
                        )));
                    }
                }
            }
        }
        s.unload(&model).await
    }
    .await;
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error_response(&e),
    }
}

async fn prometheus() -> Response {
    match crate::metrics::render() {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        None => error_response(&ServeError::NotReady {
            what: "metrics".into(),
            reason: "another metrics recorder is installed in this process; it exports them".into(),
        }),
    }
}

async fn infer(
    Extract(s): Extract<Shared>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_common(s, model, None, headers, body).await
}

async fn infer_v(
    Extract(s): Extract<Shared>,
    Path((model, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_common(s, model, Some(v), headers, body).await
}

async fn infer_common(
    state: Shared,
    model: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use tracing::Instrument;
    let request = state.requests.fetch_add(1, Ordering::Relaxed);
    let span = tracing::debug_span!("infer", request, model = %model);
    let start = Instant::now();
    let result =
        infer_inner(&state, &model, version.as_deref(), &headers, body).instrument(span).await;
    match result {
        Ok(response) => {
            tracing::debug!(request, elapsed_us = start.elapsed().as_micros() as u64, "ok");
            response
        }
        Err(e) => {
            log_failure(request, &model, &e);
            error_response(&e)
        }
    }
}

/// Logs a failed request: at `info`, except refusals under overload (a full queue), which
/// come by the thousand when a server is at capacity and are counted by the metrics instead:
/// writing each to stderr would slow the server that is already behind.
pub(crate) fn log_failure(request: u64, model: &str, e: &ServeError) {
    if e.kind() == thrum_core::ErrorKind::ResourceExhausted {
        tracing::debug!(request, model = %model, status = e.http_status(), error = %e, "request refused");
    } else {
        tracing::info!(request, model = %model, status = e.http_status(), error = %e, "request failed");
    }
}

/// Bodies up to this size are decoded on the async thread (microseconds); larger ones, and
/// every compressed one, on the blocking pool.
pub(crate) const INLINE_BYTES: usize = 64 << 10;

/// Runs CPU-heavy work (decompressing, parsing, encoding large bodies) on tokio's blocking
/// pool, so that the async threads keep answering health probes and small requests.
pub(crate) async fn offload<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServeError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ServeError::WorkerPanicked {
            model: "(request decoding)".into(),
            message: e.to_string(),
        })
    })
}

async fn infer_inner(
    state: &State,
    model: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ServeError> {
    // An unknown or unavailable model is answered before its body is read.
    state.model(model, version)?;
    let limit = state.body_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(size) = declared.filter(|&n| n > limit) {
        drain(body).await;
        return Err(ServeError::BodyTooLarge { size, limit });
    }
    let bytes = read_body(body, limit, state.limits.body_timeout).await?;
    // Again, now that the body is in: a reload while it was read (up to the body timeout)
    // replaced the pool looked up above, which no longer admits.
    let served = state.model(model, version)?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().map(|s| s.trim().to_ascii_lowercase()).unwrap_or_else(|_| "?".into()));
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => {
            Some(v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()).ok_or_else(|| {
                ServeError::bad(format!(
                    "Inference-Header-Content-Length `{v:?}` is not a byte count"
                ))
            })?)
        }
    };
    let compressed = !matches!(encoding.as_deref(), None | Some("identity" | ""));
    let specs = served.model().inputs().to_vec();
    let decode = move || -> Result<InferRequest, ServeError> {
        let bytes = decompress(encoding.as_deref(), bytes, limit)?;
        match header_length {
            Some(0) => Ok(v2::parse_raw_request(&bytes, &specs)?),
            Some(n) if n > bytes.len() => Err(ServeError::bad(format!(
                "Inference-Header-Content-Length is {n}, but the body has {} bytes",
                bytes.len()
            ))),
            Some(n) => Ok(v2::parse_rest_request(&bytes[..n], &bytes[n..])?),
            None => Ok(v2::parse_rest_request(&bytes, &[])?),
        }
    };
    let request = if compressed || declared.unwrap_or(INLINE_BYTES + 1) > INLINE_BYTES {
        offload(decode).await?
    } else {
        decode()?
    };
    let outputs = run(state, &served, request).await?;
    let size: usize = outputs.outputs.iter().map(|(_, t, _)| t.len()).sum();
    if size * 4 > INLINE_BYTES {
        offload(move || encode_response(outputs)).await
    } else {
        encode_response(outputs)
    }
}

/// Reads the body up to `limit` bytes within `timeout`; more is [`ServeError::BodyTooLarge`],
/// later is [`ServeError::BodyTimeout`] (408, and the connection closes: its body was not
/// read to the end).
///
/// An oversized body is read on and thrown away (up to [`DRAIN_BYTES`] or [`DRAIN_TIME`]) before
/// the 413 goes out, as nginx's lingering close does: a client still writing its body would
/// otherwise see a broken pipe instead of the answer that says what was wrong.
pub(crate) async fn read_body(
    mut body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ServeError> {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => return Err(ServeError::BodyTimeout { timeout }),
        };
        let frame = frame
            .map_err(|e| ServeError::bad(format!("the request body could not be read: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > limit {
            let seen = buf.len() + data.len();
            return Err(ServeError::BodyTooLarge { size: seen + drain(body).await, limit });
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// Most bytes of an oversized body read and discarded before answering 413.
const DRAIN_BYTES: usize = 1 << 30;
/// Longest time spent discarding an oversized body before answering 413.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads and discards what is left of `body` (bounded); returns the bytes discarded.
async fn drain(mut body: Body) -> usize {
    use http_body_util::BodyExt;
    let mut discarded = 0;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            discarded += frame.data_ref().map_or(0, Bytes::len);
            if discarded > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
    discarded
}

/// Undoes `Content-Encoding: gzip` or `deflate` (zlib), capped at `limit` bytes inflated.
fn decompress(encoding: Option<&str>, bytes: Bytes, limit: usize) -> Result<Bytes, ServeError> {
    let mut out = Vec::new();
    let read = match encoding {
        None | Some("identity") | Some("") => return Ok(bytes),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&bytes[..]).take(limit as u64 + 1).read_to_end(&mut out)
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(&bytes[..]).take(limit as u64 + 1).read_to_end(&mut out)
        }
        Some(other) => {
            return Err(ServeError::bad(format!(
                "Content-Encoding `{other}` is not supported; send gzip, deflate or none"
            )));
        }
    };
    read.map_err(|e| ServeError::bad(format!("the compressed body does not decompress: {e}")))?;
    if out.len() > limit {
        return Err(ServeError::BodyTooLarge { size: out.len(), limit });
    }
    Ok(Bytes::from(out))
}

/// The request's outputs, each with whether it goes back in binary.
pub(crate) struct Answer {
    pub(crate) id: Option<String>,
    pub(crate) model: String,
    pub(crate) outputs: Vec<(String, Tensor, bool)>,
}

/// Orders a decoded request's inputs for the model, runs it in the pool, and picks the outputs
/// the request asked for (shared by the REST and gRPC fronts).
pub(crate) async fn run(
    state: &State,
    served: &ServedModel,
    request: InferRequest,
) -> Result<Answer, ServeError> {
    let model = served.model();
    // A text model also takes its texts: one BYTES input → FP32 embeddings.
    if let (Some(text), [input]) = (&served.text, &request.inputs[..])
        && input.1.dtype() == thrum_core::DType::Bytes
    {
        let name = crate::embed::V2_TEXT_OUTPUT;
        let binary = match request.outputs.as_deref() {
            None => request.binary_output,
            Some([wanted]) if wanted.name == name && wanted.classification.is_none() => {
                wanted.binary.unwrap_or(request.binary_output)
            }
            Some(_) => {
                return Err(ServeError::bad(format!(
                    "model `{}` answers a BYTES input of texts with one output, `{name}`",
                    served.name
                )));
            }
        };
        let embeddings =
            crate::embed::v2_texts(state, served, text, input, request.timeout).await?;
        return Ok(Answer {
            id: request.id,
            model: served.name.clone(),
            outputs: vec![(name.to_string(), embeddings, binary)],
        });
    }
    if let Some(outputs) = &request.outputs {
        for out in outputs {
            let Some(spec) = model.outputs().iter().find(|s| s.name == out.name) else {
                return Err(ServeError::bad(format!(
                    "model `{}` has no output `{}`; its outputs are {}",
                    served.name,
                    out.name,
                    model
                        .outputs()
                        .iter()
                        .map(|s| format!("`{}`", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            // A class count beyond what the output states is refused before anything runs.
            if let (Some(k), Some(classes)) =
                (out.classification, spec.shape.last().and_then(thrum_core::Dim::fixed))
                && k > classes
            {
                return Err(ServeError::bad(format!(
                    "output `{}` has {classes} classes; `classification` asks for the top {k}",
                    out.name
                )));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some((name, _)) = request.inputs.iter().find(|(name, _)| !seen.insert(name.as_str())) {
        return Err(ServeError::bad(format!("input `{name}` is given twice")));
    }
    // An image model also takes encoded images: one BYTES input, decoded and resized here.
    // A content-type model (Magika) takes files the same way: their ends become its tokens.
    let inputs = match (&served.image, &served.content, &request.inputs[..]) {
        (Some(image), _, [input]) if input.1.dtype() == thrum_core::DType::Bytes => {
            vec![crate::image::decode_batch(served, image, input, request.timeout).await?]
        }
        (_, Some(magika), [input]) if input.1.dtype() == thrum_core::DType::Bytes => {
            vec![crate::content::tokens_batch(served, magika, input)?]
        }
        _ => model.order_named_inputs(request.inputs)?,
    };
    let outputs = served.pool.submit_with_timeout(inputs, request.timeout).await?;
    let labels = served.labels();
    let picked = match &request.outputs {
        None => model
            .outputs()
            .iter()
            .zip(outputs)
            .map(|(spec, t)| (spec.name.clone(), t, request.binary_output))
            .collect(),
        Some(wanted) => {
            let mut by_name: Vec<(String, Option<Tensor>)> = model
                .outputs()
                .iter()
                .map(|s| s.name.clone())
                .zip(outputs.into_iter().map(Some))
                .collect();
            let mut picked = Vec::with_capacity(wanted.len());
            for w in wanted {
                let Some(tensor) =
                    by_name.iter_mut().find(|(n, _)| *n == w.name).and_then(|slot| slot.1.clone())
                else {
                    continue;
                };
                let tensor = match w.classification {
                    Some(k) => crate::image::classify(&w.name, &tensor, k, labels)?,
                    None => tensor,
                };
                picked.push((w.name.clone(), tensor, w.binary.unwrap_or(request.binary_output)));
            }
            picked
        }
    };
    Ok(Answer { id: request.id, model: served.name.clone(), outputs: picked })
}

fn encode_response(answer: Answer) -> Result<Response, ServeError> {
    let mut binary = Vec::new();
    let mut outputs = Vec::with_capacity(answer.outputs.len());
    for (name, tensor, as_binary) in &answer.outputs {
        let mut out = serde_json::Map::new();
        out.insert("name".into(), json!(name));
        out.insert("datatype".into(), json!(v2::datatype(tensor.dtype())));
        out.insert("shape".into(), json!(tensor.shape()));
        if *as_binary {
            let data = v2::binary_of(tensor);
            out.insert("parameters".into(), json!({ "binary_data_size": data.len() }));
            binary.extend(data);
        } else {
            // No `parameters` on JSON outputs: Triton's C++ client then requires a binary size.
            out.insert("data".into(), v2::json_of(tensor, name)?);
        }
        outputs.push(Value::Object(out));
    }
    let mut body = serde_json::Map::new();
    body.insert("model_name".into(), json!(answer.model));
    body.insert("model_version".into(), json!(ServedModel::VERSION));
    if let Some(id) = answer.id {
        body.insert("id".into(), json!(id));
    }
    body.insert("outputs".into(), Value::Array(outputs));
    let mut header_json = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| ServeError::bad(format!("encoding the response: {e}")))?;
    if binary.is_empty() && !answer.outputs.iter().any(|(_, _, b)| *b) {
        return Ok(([(header::CONTENT_TYPE, "application/json")], header_json).into_response());
    }
    let json_length = header_json.len();
    header_json.extend(binary);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (header::HeaderName::from_static(HEADER_LENGTH), HeaderValue::from(json_length)),
        ],
        header_json,
    )
        .into_response())
}
