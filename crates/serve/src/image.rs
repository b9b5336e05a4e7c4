//! Images over the server's APIs, as three ecosystems send them, on the same pools as v2:
//!
//! - **KServe v2 / Triton**: a BYTES input of encoded images (JPEG, PNG, GIF, WebP) to an
//!   image model is decoded, resized and normalised by the server (OpenVINO Model Server's
//!   convention), and any output can be asked for with Triton's `classification` parameter:
//!   each sample's top scores as `"score:index:label"` BYTES ([`classify`]).
//! - **TorchServe**: `POST` (or `PUT`) `/predictions/{model}` with the image as the body →
//!   `{"label": probability, …}` for the top classes, as TorchServe's `image_classifier`
//!   handler answers.
//!
//! Decoding and resizing run on tokio's blocking pool, never on the async threads; the
//! decoded images of one request go to the pool as one request of `N` samples, and requests
//! join batches as any others do. A bad image fails its request alone, before it joins a
//! batch, with an error that names the element and what was wrong with it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thrum_core::translator::Translator;
use thrum_core::{DType, Tensor};
use thrum_vision::ImageTransform;

use crate::error::ServeError;
use crate::http::{offload, read_body};
use crate::server::{ServedModel, State};

/// Most images one request may hold.
pub const MAX_IMAGES: usize = thrum_wire::v2::MAX_IMAGES;

/// Most pixels the images of one request may hold together (their headers' sizes, checked
/// before anything is decoded): 64 photographs of 12 megapixels.
pub const MAX_REQUEST_PIXELS: u64 = 64 * 12_000_000;

/// Classes in a TorchServe answer (its `image_classifier`'s `topk`).
pub const TORCHSERVE_TOP_K: usize = 5;

/// What the server needs to take images for a model: its pre-processing and class names.
#[derive(Debug)]
pub struct ImageService {
    /// Decode, resize, crop, normalise.
    pub transform: ImageTransform,
    /// The class names in output order, when the model has them.
    pub labels: Option<Arc<Vec<String>>>,
    /// Requests decoding at once: as many as the machine has cores, so that a burst of large
    /// images queues here instead of taking every thread of the blocking pool and the memory
    /// of each decode at once.
    decoding: Arc<tokio::sync::Semaphore>,
}

impl ImageService {
    /// A service with `transform` and `labels`, decoding at most one request per core at once.
    pub fn new(transform: ImageTransform, labels: Option<Arc<Vec<String>>>) -> ImageService {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ImageService { transform, labels, decoding: Arc::new(tokio::sync::Semaphore::new(cores)) }
    }
}

/// Decodes the encoded images of a v2 BYTES input to `served` into one batch `[N, …]` of the
/// model's input (on the blocking pool, one request per core at once), refusing an element
/// that is not an image with its index. What would make the pool refuse the request (too many
/// images, a full queue, a model not ready) and images whose headers add up to more than
/// [`MAX_REQUEST_PIXELS`] are refused before anything is decoded; `timeout` bounds the wait
/// for a decoding slot.
pub(crate) async fn decode_batch(
    served: &ServedModel,
    image: &ImageService,
    input: &(String, Tensor),
    timeout: Option<std::time::Duration>,
) -> Result<Tensor, ServeError> {
    let (name, tensor) = input;
    let items = tensor.as_slice::<Vec<u8>>()?;
    if items.is_empty() || items.len() > MAX_IMAGES {
        return Err(ServeError::bad(format!(
            "input `{name}` holds {} elements; an image model takes a BYTES input of 1 to \
             {MAX_IMAGES} encoded images (JPEG, PNG, GIF or WebP)",
            items.len()
        )));
    }
    served.pool.precheck(items.len())?;
    let element = |i: usize, e: thrum_core::Error| {
        ServeError::bad(format!("input `{name}` element {i}: {e}"))
    };
    let mut pixels = 0u64;
    for (i, bytes) in items.iter().enumerate() {
        let (w, h) = thrum_vision::dimensions(bytes).map_err(|e| element(i, e))?;
        pixels += u64::from(w) * u64::from(h);
    }
    if pixels > MAX_REQUEST_PIXELS {
        return Err(ServeError::bad(format!(
            "input `{name}`: its {} images hold {pixels} pixels together; one request may hold \
             at most {MAX_REQUEST_PIXELS} (send them in several requests)",
            items.len()
        )));
    }
    let slot = image.decoding.clone().acquire_owned();
    let permit = match timeout {
        Some(limit) => tokio::time::timeout(limit, slot)
            .await
            .map_err(|_| ServeError::Timeout { model: served.name.clone(), timeout: limit })?,
        None => slot.await,
    }
    .map_err(|_| ServeError::bad("the server is shutting down"))?;
    let items = items.to_vec();
    let transform = image.transform.clone();
    let name = name.clone();
    offload(move || {
        let _permit = permit;
        let tensors = items
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                transform
                    .tensor(bytes)
                    .map_err(|e| ServeError::bad(format!("input `{name}` element {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::stack(&tensors)?)
    })
    .await
}

/// Triton's classification extension: `scores` `[N, C]` (or `[C]`) → BYTES `[N, k]` (or
/// `[k]`), each sample's `k` highest scores, highest first, as `"score:index"` or
/// `"score:index:label"` with the score as C++'s `std::to_string` writes it (six decimals).
pub fn classify(
    output: &str,
    scores: &Tensor,
    k: usize,
    labels: Option<&[String]>,
) -> Result<Tensor, ServeError> {
    let shape = scores.shape().to_vec();
    let classes = shape.last().copied().unwrap_or(0);
    if shape.is_empty() || shape.len() > 2 || scores.dtype() == DType::Bytes {
        return Err(ServeError::bad(format!(
            "output `{output}` is {} {shape:?}; classification needs numbers [classes] or \
             [batch, classes]",
            scores.dtype()
        )));
    }
    if k > classes {
        return Err(ServeError::bad(format!(
            "output `{output}` has {classes} classes; `classification` asks for the top {k}"
        )));
    }
    let values = scores.to_f64_vec().ok_or_else(|| {
        ServeError::bad(format!("output `{output}` is {}: not scores", scores.dtype()))
    })?;
    let mut strings = Vec::with_capacity(values.len() / classes.max(1) * k);
    for sample in values.chunks(classes.max(1)) {
        let mut order: Vec<usize> = (0..sample.len()).collect();
        order.sort_by(|&a, &b| sample[b].total_cmp(&sample[a]).then(a.cmp(&b)));
        for &index in order.iter().take(k) {
            let mut s = format!("{:.6}:{index}", sample[index]);
            if let Some(label) = labels.and_then(|l| l.get(index)) {
                s.push(':');
                s.push_str(label);
            }
            strings.push(s.into_bytes());
        }
    }
    let mut out_shape = shape;
    if let Some(last) = out_shape.last_mut() {
        *last = k;
    }
    Ok(Tensor::from_vec(out_shape, strings)?)
}

/// TorchServe's `{"code", "type", "message"}` for `e`, with `Retry-After` where it applies.
pub(crate) fn torchserve_error(e: &ServeError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status {
        StatusCode::NOT_FOUND => "ModelNotFoundException",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
            "ServiceUnavailableException"
        }
        s if s.is_client_error() => "BadRequestException",
        _ => "InternalServerException",
    };
    let body = json!({ "code": status.as_u16(), "type": kind, "message": e.to_string() });
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(seconds) = e.retry_after()
        && let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
    }
    response
}

/// TorchServe's inference API: the body is one image; the answer its top classes as
/// `{"label": probability}` (softmax), highest first, as TorchServe's `image_classifier`
/// handler answers. Errors are TorchServe's `{"code", "type", "message"}`.
pub(crate) async fn predictions(
    Extract(state): Extract<Arc<State>>,
    Path(model): Path<String>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    predictions_of(&state, &model, None, &headers, body)
        .await
        .unwrap_or_else(|e| torchserve_error(&e))
}

/// TorchServe's `/predictions/{model}/{version}`: [`predictions`] of that version.
pub(crate) async fn predictions_v(
    Extract(state): Extract<Arc<State>>,
    Path((model, version)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    predictions_of(&state, &model, Some(&version), &headers, body)
        .await
        .unwrap_or_else(|e| torchserve_error(&e))
}

async fn predictions_of(
    state: &State,
    model: &str,
    version: Option<&str>,
    headers: &axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ServeError> {
    // An unknown or unavailable model is answered before its body is read, as v2's infer
    // does; every other refusal comes after it (a client still sending would otherwise see
    // the connection reset instead of the answer).
    let served = state.model(model, version)?;
    let mut bytes = read_body(body, state.body_limit, state.limits.body_timeout).await?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        bytes = form_input(content_type, bytes).await?;
    }
    if let Some(magika) = &served.content {
        let answer = crate::content::identify(&served, magika, bytes).await?;
        return Ok((StatusCode::OK, axum::Json(answer)).into_response());
    }
    let answer = predict(&served, bytes).await?;
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// The input of a multipart form (`curl -F data=@kitten.jpg`): its field `data` or `body`,
/// the names TorchServe's handlers read.
async fn form_input(content_type: &str, body: bytes::Bytes) -> Result<bytes::Bytes, ServeError> {
    let bad = |what: String| {
        ServeError::bad(format!(
            "{what}; expected a multipart/form-data body whose field `data` (or `body`) holds \
             the input, as `curl -F data=@image.jpg` sends it"
        ))
    };
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| bad(format!("content type `{content_type}`: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut names = Vec::new();
    while let Some(field) =
        form.next_field().await.map_err(|e| bad(format!("the multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        if name == "data" || name == "body" {
            return field.bytes().await.map_err(|e| bad(format!("field `{name}`: {e}")));
        }
        names.push(format!("`{name}`"));
    }
    Err(bad(if names.is_empty() {
        "the multipart form has no fields".into()
    } else {
        format!("the multipart form has no field `data` or `body` (it has {})", names.join(", "))
    }))
}

/// TorchServe's health check, `GET /ping`: `{"status": "Healthy"}` when every model is
/// ready, else 500 with `"Unhealthy"` and why.
pub(crate) async fn ping(Extract(state): Extract<Arc<State>>) -> Response {
    match state.not_ready() {
        None => (StatusCode::OK, axum::Json(json!({ "status": "Healthy" }))).into_response(),
        Some(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "status": "Unhealthy", "message": e.to_string() })),
        )
            .into_response(),
    }
}

/// Classes and probabilities, serialised as one JSON object in this order (highest first, as
/// TorchServe writes it).
struct Ranked(Vec<(String, f64)>);

impl serde::Serialize for Ranked {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (label, p) in &self.0 {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }
}

async fn predict(served: &ServedModel, bytes: bytes::Bytes) -> Result<Ranked, ServeError> {
    let Some(image) = &served.image else {
        return Err(ServeError::bad(format!(
            "model `{}` is neither an image model nor a content-type model: /predictions \
             takes an image or a file as the body",
            served.name
        )));
    };
    let input = ("body".to_string(), Tensor::from_vec(vec![1], vec![bytes.to_vec()])?);
    let batch = decode_batch(served, image, &input, None).await?;
    let outputs = served.pool.submit_with_timeout(vec![batch], None).await?;
    let logits = outputs.first().ok_or_else(|| ServeError::bad("the model returned no output"))?;
    let classifier = thrum_core::Classifier::new(TORCHSERVE_TOP_K);
    let classifier = match &image.labels {
        Some(labels) => classifier.with_labels(labels.as_ref().clone()),
        None => classifier,
    };
    // One image's scores: [1, classes], or [classes] from a model without a batch axis.
    let sample = match logits.shape() {
        [1, rest @ ..] if !rest.is_empty() => logits.reshape(rest.to_vec())?,
        [_] => logits.clone(),
        other => {
            return Err(ServeError::bad(format!(
                "model `{}` returned {other:?} for one image; an image classifier returns \
                 [1, classes]",
                served.name
            )));
        }
    };
    let classes = classifier.postprocess(served.model(), vec![sample])?;
    let mut seen = std::collections::HashSet::new();
    let ranked = classes
        .into_iter()
        .map(|c| {
            let mut label = c.label.unwrap_or_else(|| c.index.to_string());
            // ImageNet names two classes `crane` (the bird, the machine): a JSON object's
            // keys must differ, so a repeated name gets its index.
            if !seen.insert(label.clone()) {
                label = format!("{label} ({})", c.index);
            }
            (label, f64::from(c.probability))
        })
        .collect();
    Ok(Ranked(ranked))
}
