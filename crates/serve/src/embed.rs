//! Text embeddings over REST, as the clients of Hugging Face's text-embeddings-inference (TEI)
//! and of OpenAI's API call them, on the same pools as v2: `POST /embed`, `POST /tokenize`,
//! `GET /info` (TEI) and `POST /v1/embeddings` (OpenAI).
//!
//! A request's texts are tokenized by the model's [`TextEmbedding`] translator (on the blocking
//! pool when they are large), padded to the request's longest text and submitted to the
//! model's pool as one request; each text is pooled over its own tokens and normalised when
//! asked. Requests join batches as TEI's do ([`text_batching`]): padded to the batch's longest
//! text, up to a token budget, formed from whatever queued while the last batch ran. Errors are TEI's (`{"error", "error_type"}` with 413, 422, 424, 429) and OpenAI's
//! (`{"error": {"message", "type", "param", "code"}}`) shapes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use thrum_core::Tensor;
use thrum_text::{TextEmbedding, Tokens};

use crate::error::ServeError;
use crate::http::{offload, read_body};
use crate::server::{ServedModel, State};

type Shared = Arc<State>;

/// Most texts one request of TEI's routes may hold by default (TEI's `--max-client-batch-size`
/// default; `thrum serve --max-client-batch-size` sets it); OpenAI's route runs its texts as
/// pool requests of at most this many.
pub const MAX_CLIENT_BATCH: usize = 32;

/// Most texts one request of OpenAI's route may hold (OpenAI's own limit).
pub const MAX_OPENAI_INPUTS: usize = 2048;

/// Padded token positions one batch may hold by default (TEI's `--max-batch-tokens`).
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 16_384;

/// Most requests one batch of a text model may join by default, when the command line or file
/// sets no `max_batch_size`.
pub const DEFAULT_TEXT_BATCH: usize = 128;

/// A text model's batching, as TEI batches: requests of different lengths join along the
/// sequence axis (the inputs' first dynamic axis after the batch axis), padded to the batch's
/// longest, up to `max_batch_tokens` padded positions (default
/// [`DEFAULT_MAX_BATCH_TOKENS`]) and `batching`'s `max_batch_size` requests (default
/// [`DEFAULT_TEXT_BATCH`], with no wait: a batch is what queued while the last one ran).
/// `max_batch_tokens` 0 leaves `batching` as it is; so does a model with no such axis.
pub fn text_batching(
    model: &thrum_core::Model,
    batching: Option<crate::Batching>,
    max_batch_tokens: Option<usize>,
) -> Option<crate::Batching> {
    let tokens = max_batch_tokens.unwrap_or(DEFAULT_MAX_BATCH_TOKENS);
    let (Some(batch_axis), true) = (model.batch_axis(), tokens > 0) else { return batching };
    let axis = model.inputs().first().and_then(|spec| {
        spec.shape.iter().enumerate().position(|(k, d)| k != batch_axis && d.is_dynamic())
    });
    let Some(axis) = axis else { return batching };
    let batching = batching
        .unwrap_or_else(|| crate::Batching::new(DEFAULT_TEXT_BATCH, std::time::Duration::ZERO));
    Some(batching.with_padding(axis, tokens))
}

/// Texts above this many bytes in all are tokenized on the blocking pool.
const INLINE_TEXT_BYTES: usize = 64 * 1024;

/// A refusal, with what TEI and OpenAI call its kind.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    /// TEI's `error_type`: Validation, Overloaded, Backend, Unhealthy.
    kind: &'static str,
    message: String,
    /// The request field it is about, for OpenAI's `param`.
    param: Option<&'static str>,
    /// Seconds for `Retry-After` (a full queue).
    retry_after: Option<u64>,
}

impl Refusal {
    fn validation(status: StatusCode, param: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            kind: "Validation",
            message: message.into(),
            param: Some(param),
            retry_after: None,
        }
    }

    fn with_retry_after(self, mut response: Response) -> Response {
        if let Some(seconds) = self.retry_after
            && let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }

    fn tei(self) -> Response {
        let body = json!({ "error": self.message, "error_type": self.kind });
        let response = (self.status, axum::Json(body)).into_response();
        self.with_retry_after(response)
    }

    fn openai(self) -> Response {
        let kind = match self.status {
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "api_error",
        };
        let body = json!({ "error": {
            "message": self.message, "type": kind, "param": self.param, "code": Value::Null,
        }});
        let response = (self.status, axum::Json(body)).into_response();
        self.with_retry_after(response)
    }
}

impl From<ServeError> for Refusal {
    fn from(e: ServeError) -> Refusal {
        let (status, kind) = match &e {
            ServeError::QueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "Overloaded"),
            ServeError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "Validation"),
            ServeError::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "Validation"),
            ServeError::NotReady { .. } | ServeError::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "Unhealthy")
            }
            e if e.http_status() == 404 => (StatusCode::NOT_FOUND, "Validation"),
            e if e.http_status() < 500 => (StatusCode::UNPROCESSABLE_ENTITY, "Validation"),
            _ => (StatusCode::FAILED_DEPENDENCY, "Backend"),
        };
        Refusal { status, kind, message: e.to_string(), param: None, retry_after: e.retry_after() }
    }
}

/// The served model a request names (`model`), or the only text model served.
fn text_model(
    state: &State,
    name: Option<&str>,
) -> Result<(Arc<ServedModel>, Arc<TextEmbedding>), Refusal> {
    if let Some(name) = name {
        let served = state
            .model(name, None)
            .map_err(|e| Refusal { param: Some("model"), ..Refusal::from(e) })?;
        let text = served.text.clone().ok_or_else(|| {
            Refusal::validation(
                StatusCode::UNPROCESSABLE_ENTITY,
                "model",
                format!("model `{name}` is not a text-embedding model; {}", text_models(state)),
            )
        })?;
        return Ok((served, text));
    }
    let mut found = state.models().into_iter().filter(|m| m.text.is_some());
    match (found.next(), found.next()) {
        (Some(served), None) => {
            let text = served.text.clone().ok_or_else(|| {
                Refusal::validation(StatusCode::UNPROCESSABLE_ENTITY, "model", "no text model")
            })?;
            Ok((served, text))
        }
        (None, _) => Err(Refusal {
            status: StatusCode::NOT_FOUND,
            ..Refusal::validation(
                StatusCode::NOT_FOUND,
                "model",
                "this server serves no text-embedding model (serve one such as \
                 zoo:all-minilm-l6-v2)",
            )
        }),
        (Some(_), Some(_)) => Err(Refusal::validation(
            StatusCode::UNPROCESSABLE_ENTITY,
            "model",
            format!(
                "several text models are served: name one with `model`; {}",
                text_models(state)
            ),
        )),
    }
}

fn text_models(state: &State) -> String {
    let names: Vec<String> = state
        .models()
        .iter()
        .filter(|m| m.text.is_some())
        .map(|m| format!("`{}`", m.name))
        .collect();
    if names.is_empty() {
        "none is served".into()
    } else {
        format!("text models served: {}", names.join(", "))
    }
}

/// `inputs` / `input`: a string or a list of strings, checked: at least one, at most `limit`,
/// every item a string.
fn texts(value: Option<&Value>, param: &'static str, limit: usize) -> Result<Vec<String>, Refusal> {
    let invalid = |m: String| Refusal::validation(StatusCode::UNPROCESSABLE_ENTITY, param, m);
    let texts = match value {
        None => {
            return Err(invalid(format!("`{param}` is missing: a string or a list of strings")));
        }
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(invalid(format!(
                    "`{param}[{i}]` is {}; every item is a string",
                    json_kind(other)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(invalid(format!(
                "`{param}` is {}; expected a string or a list of strings",
                json_kind(other)
            )));
        }
    };
    if texts.is_empty() {
        return Err(invalid(format!("`{param}` cannot be empty")));
    }
    if texts.len() > limit {
        return Err(Refusal::validation(
            StatusCode::PAYLOAD_TOO_LARGE,
            param,
            format!("batch size {} > maximum allowed batch size {limit}", texts.len()),
        ));
    }
    Ok(texts)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn flag(body: &Value, key: &'static str, default: bool) -> Result<bool, Refusal> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(Refusal::validation(
            StatusCode::UNPROCESSABLE_ENTITY,
            key,
            format!("`{key}` is {}; expected true or false", json_kind(other)),
        )),
    }
}

/// Reads and parses a JSON body under the server's limit; a large one is parsed on the
/// blocking pool, away from the async threads that answer probes.
async fn json_body(state: &State, body: Body) -> Result<Value, Refusal> {
    let limit = state.body_limit.min(state.text_body_limit);
    let bytes = read_body(body, limit, state.limits.body_timeout).await?;
    let large = bytes.len() > INLINE_TEXT_BYTES;
    let parse = move || -> Result<Result<Value, Refusal>, ServeError> {
        Ok(serde_json::from_slice(&bytes).map_err(|e| Refusal {
            param: None,
            ..Refusal::validation(
                StatusCode::UNPROCESSABLE_ENTITY,
                "",
                format!("the body is not JSON: {e}"),
            )
        }))
    };
    if large { offload(parse).await? } else { parse()? }
}

/// Tokenizes `texts` (checked: non-empty, within the limit unless `truncate`); a refusal
/// names the text as `label` and its index (`` `inputs`[3] ``).
async fn tokenize(
    text: &Arc<TextEmbedding>,
    texts: Vec<String>,
    truncate: bool,
    param: &'static str,
    label: String,
) -> Result<Vec<Tokens>, Refusal> {
    let size: usize = texts.iter().map(String::len).sum();
    let translator = text.clone();
    let work = move || -> Result<Result<Vec<Tokens>, Refusal>, ServeError> {
        Ok(texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                translator.tokenize_with(t, truncate).map_err(|e| {
                    let status = if t.trim().is_empty() {
                        StatusCode::UNPROCESSABLE_ENTITY
                    } else {
                        StatusCode::PAYLOAD_TOO_LARGE
                    };
                    Refusal::validation(status, param, format!("{label}[{i}]: {e}"))
                })
            })
            .collect())
    };
    if size > INLINE_TEXT_BYTES { offload(work).await? } else { work()? }
}

/// Each text's embedding, pooled over its own tokens: the texts go to `served`'s pool as
/// requests of at most [`MAX_CLIENT_BATCH`] texts (and at most the pool's batch size), at most
/// half the pool's queue of them at once, so that one large request always fits an idle queue
/// and leaves room for others.
async fn embeddings(
    served: &ServedModel,
    text: &TextEmbedding,
    tokens: &[Tokens],
    normalize: bool,
    timeout: Option<std::time::Duration>,
) -> Result<Vec<Vec<f32>>, ServeError> {
    let chunk = served
        .pool
        .config()
        .batching
        .as_ref()
        .map_or(MAX_CLIENT_BATCH, |b| b.max_batch_size.min(MAX_CLIENT_BATCH))
        .max(1);
    let in_flight = (served.pool.config().queue_capacity / 2).max(1);
    let mut out = Vec::with_capacity(tokens.len());
    for group in tokens.chunks(chunk.saturating_mul(in_flight)) {
        let parts = futures_util::future::try_join_all(
            group.chunks(chunk).map(|part| embed_request(served, text, part, normalize, timeout)),
        )
        .await?;
        out.extend(parts.into_iter().flatten());
    }
    Ok(out)
}

/// Pads `tokens` to the longest and runs them as one request of `served`'s pool.
async fn embed_request(
    served: &ServedModel,
    text: &TextEmbedding,
    tokens: &[Tokens],
    normalize: bool,
    timeout: Option<std::time::Duration>,
) -> Result<Vec<Vec<f32>>, ServeError> {
    let n = tokens.len();
    let longest = tokens.iter().map(|t| t.ids.len()).max().unwrap_or(0);
    let column = |pick: fn(&Tokens) -> &Vec<i64>| -> Result<Tensor, ServeError> {
        let mut data = vec![0i64; n * longest];
        for (row, t) in data.chunks_exact_mut(longest.max(1)).zip(tokens) {
            row[..pick(t).len()].copy_from_slice(pick(t));
        }
        Ok(Tensor::from_vec(vec![n, longest], data)?)
    };
    let inputs = served
        .model()
        .inputs()
        .iter()
        .map(|spec| match spec.name.as_str() {
            "input_ids" => column(|t| &t.ids),
            "attention_mask" => column(|t| &t.attention_mask),
            "token_type_ids" => column(|t| &t.type_ids),
            other => Err(ServeError::bad(format!(
                "model `{}` has an input `{other}` that texts do not give",
                served.name
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = served.pool.submit_with_timeout(inputs, timeout).await?;
    let hidden = outputs
        .into_iter()
        .next()
        .ok_or_else(|| ServeError::bad(format!("model `{}` returned no output", served.name)))?;
    let shape = hidden.shape().to_vec();
    let (rows, width) = match shape[..] {
        [b, s, h] if b == n && s == longest => (s, h),
        _ => {
            return Err(ServeError::bad(format!(
                "model `{}` returned {shape:?}; a text-embedding model returns [texts, tokens, width]",
                served.name
            )));
        }
    };
    let values = hidden.as_slice::<f32>()?;
    tokens
        .iter()
        .zip(values.chunks_exact((rows * width).max(1)))
        .map(|(t, item)| {
            let mut v = text.pooling().pool(item, width, t.ids.len())?;
            if normalize {
                thrum_text::normalize(&mut v);
            }
            Ok(v)
        })
        .collect()
}

/// The name of the output a v2 request of texts gets.
pub const V2_TEXT_OUTPUT: &str = "embedding";

/// A v2 request to a text model whose one input is BYTES: each element a UTF-8 text, answered
/// with their normalised embeddings as FP32 `[texts, width]` in the output
/// [`V2_TEXT_OUTPUT`]. Texts over the model's token limit are refused, naming it.
pub(crate) async fn v2_texts(
    state: &State,
    served: &ServedModel,
    text: &Arc<TextEmbedding>,
    input: &(String, Tensor),
    timeout: Option<std::time::Duration>,
) -> Result<Tensor, ServeError> {
    let (name, tensor) = input;
    let items = tensor.as_slice::<Vec<u8>>()?;
    if items.is_empty() || items.len() > MAX_OPENAI_INPUTS {
        return Err(ServeError::bad(format!(
            "input `{name}` holds {} texts; a BYTES input of 1 to {MAX_OPENAI_INPUTS} UTF-8 texts",
            items.len()
        )));
    }
    let texts = items
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            if bytes.len() > state.text_body_limit {
                return Err(ServeError::bad(format!(
                    "input `{name}` element {i} is a text of {} bytes; a text model takes texts \
                     of at most {} bytes (--text-body-limit-mib)",
                    bytes.len(),
                    state.text_body_limit
                )));
            }
            String::from_utf8(bytes.clone()).map_err(|e| {
                ServeError::bad(format!(
                    "input `{name}` element {i} is not UTF-8 ({e}); a text model takes UTF-8 texts"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tokens = tokenize(text, texts, false, "inputs", format!("input `{name}`"))
        .await
        .map_err(|r| ServeError::bad(r.message))?;
    let vectors = embeddings(served, text, &tokens, true, timeout).await?;
    let width = vectors.first().map_or(0, Vec::len);
    let data: Vec<f32> = vectors.into_iter().flatten().collect();
    Ok(Tensor::from_vec(vec![tokens.len(), width], data)?)
}

/// TEI's `POST /embed`: `{"inputs": str | [str], "normalize": true, "truncate": false}` →
/// `[[f32]]`.
pub(crate) async fn embed(Extract(state): Extract<Shared>, body: Body) -> Response {
    embed_inner(&state, body).await.unwrap_or_else(Refusal::tei)
}

async fn embed_inner(state: &State, body: Body) -> Result<Response, Refusal> {
    let body = json_body(state, body).await?;
    let (served, text) = text_model(state, body.get("model").and_then(Value::as_str))?;
    let texts = texts(body.get("inputs"), "inputs", state.max_client_batch)?;
    let normalize = flag(&body, "normalize", true)?;
    let truncate = flag(&body, "truncate", false)?;
    let tokens = tokenize(&text, texts, truncate, "inputs", "`inputs`".into()).await?;
    let vectors = embeddings(&served, &text, &tokens, normalize, None).await?;
    Ok((StatusCode::OK, axum::Json(vectors)).into_response())
}

/// TEI's `POST /tokenize`: `{"inputs": str | [str]}` → per text, its tokens
/// (`id`, `text`, `special`).
pub(crate) async fn tokenize_route(Extract(state): Extract<Shared>, body: Body) -> Response {
    tokenize_inner(&state, body).await.unwrap_or_else(Refusal::tei)
}

async fn tokenize_inner(state: &State, body: Body) -> Result<Response, Refusal> {
    let body = json_body(state, body).await?;
    let (_, text) = text_model(state, body.get("model").and_then(Value::as_str))?;
    let texts = texts(body.get("inputs"), "inputs", state.max_client_batch)?;
    let size: usize = texts.iter().map(String::len).sum();
    let work = move || -> Result<Result<Vec<Value>, Refusal>, ServeError> {
        Ok(texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let invalid = |reason: String| {
                    Refusal::validation(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "inputs",
                        format!("`inputs[{i}]`: {reason}"),
                    )
                };
                if t.trim().is_empty() {
                    return Err(invalid("an empty text; expected at least one word".into()));
                }
                let tokens = text.tokenizer().tokens(t).map_err(|e| invalid(e.to_string()))?;
                Ok(Value::Array(
                    tokens
                        .into_iter()
                        .map(|(id, s, special)| json!({ "id": id, "text": s, "special": special }))
                        .collect(),
                ))
            })
            .collect())
    };
    let out = if size > INLINE_TEXT_BYTES { offload(work).await?? } else { work()?? };
    Ok((StatusCode::OK, axum::Json(out)).into_response())
}

/// TEI's `GET /info`: the text model, its limits. Where several text models are served,
/// `?model=NAME` picks one (a thrum extension; TEI serves one model and ignores it).
pub(crate) async fn info(
    Extract(state): Extract<Shared>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    match text_model(&state, query.get("model").map(String::as_str)) {
        Ok((served, text)) => axum::Json(json!({
            "model_id": served.name,
            "model_type": { "embedding": { "pooling": format!("{:?}", text.pooling()).to_lowercase() } },
            "max_input_length": text.tokenizer().max_tokens(),
            "max_client_batch_size": state.max_client_batch,
            "version": env!("CARGO_PKG_VERSION"),
            "router": "thrum",
        }))
        .into_response(),
        Err(refusal) => refusal.tei(),
    }
}

/// OpenAI's `POST /v1/embeddings`: `{"input": str | [str], "model": "...",
/// "encoding_format": "float" | "base64"}` → `{"object": "list", "data": [...], "model",
/// "usage": {"prompt_tokens", "total_tokens"}}`. Texts are truncated at the model's limit, as
/// OpenAI's clients expect no refusal for length.
pub(crate) async fn openai_embeddings(Extract(state): Extract<Shared>, body: Body) -> Response {
    openai_inner(&state, body).await.unwrap_or_else(|mut refusal| {
        // OpenAI answers an invalid request with 400 where TEI uses 422.
        if refusal.status == StatusCode::UNPROCESSABLE_ENTITY {
            refusal.status = StatusCode::BAD_REQUEST;
        }
        refusal.openai()
    })
}

async fn openai_inner(state: &State, body: Body) -> Result<Response, Refusal> {
    let body = json_body(state, body).await?;
    let (served, text) = text_model(state, body.get("model").and_then(Value::as_str))?;
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(other) => {
            return Err(Refusal::validation(
                StatusCode::BAD_REQUEST,
                "encoding_format",
                format!("`encoding_format` is {other}; expected \"float\" or \"base64\""),
            ));
        }
    };
    if let Some(d) = body.get("dimensions").filter(|d| !d.is_null()) {
        return Err(Refusal::validation(
            StatusCode::BAD_REQUEST,
            "dimensions",
            format!(
                "`dimensions` ({d}) is not supported: the model's embeddings have a fixed width"
            ),
        ));
    }
    // Every refusal of the texts is 400 for OpenAI's clients, too many of them included (TEI
    // answers 413).
    let to_400 = |mut r: Refusal| {
        if matches!(r.status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNPROCESSABLE_ENTITY) {
            r.status = StatusCode::BAD_REQUEST;
        }
        r
    };
    let texts = texts(body.get("input"), "input", MAX_OPENAI_INPUTS).map_err(to_400)?;
    let tokens = tokenize(&text, texts, true, "input", "`input`".into()).await.map_err(to_400)?;
    let vectors = embeddings(&served, &text, &tokens, true, None).await?;
    let prompt_tokens: usize = tokens.iter().map(|t| t.ids.len()).sum();
    let large = vectors.len() > MAX_CLIENT_BATCH;
    let name = served.name.clone();
    let answer = move || {
        let data: Vec<Value> = vectors
            .iter()
            .enumerate()
            .map(|(index, v)| {
                let embedding = if base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(v)
                };
                json!({ "object": "embedding", "index": index, "embedding": embedding })
            })
            .collect();
        json!({
            "object": "list",
            "data": data,
            "model": name,
            "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
        })
    };
    // Up to 2,048 embeddings: built and encoded on the blocking pool.
    let respond = move || Ok(axum::Json(answer()).into_response());
    Ok(if large { offload(respond).await? } else { respond()? })
}
