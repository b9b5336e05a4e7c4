//! The server under load: finding out what it serves (v2 metadata, readiness, configuration),
//! building the request once, and sending it over HTTP/1.1 (one keep-alive connection per
//! caller, [`crate::http1`]; hyper for the one-off metadata and statistics calls) or gRPC
//! (tonic).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::{Value, json};
use thrum_core::{DType, Tensor};
use thrum_wire::pb;
use thrum_wire::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use thrum_wire::v2;
use tokio::net::TcpStream;
use tonic::transport::Channel;

use crate::error::LoadError;
pub use crate::grpc2::GrpcConnection;
pub use crate::http1::HttpConnection;
use crate::http1::encode_request;
use crate::plan::{InputData, LoadPlan, Protocol};

/// One input as sent.
#[derive(Clone, Debug)]
pub struct WireInput {
    /// Name.
    pub name: String,
    /// The tensor (its dtype and shape are what is sent).
    pub tensor: Tensor,
}

/// Cumulative server-side statistics of the model (the statistics extension).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerStats {
    /// Successful requests.
    pub success: u64,
    /// Failed requests.
    pub fail: u64,
    /// Samples inferred.
    pub inferences: u64,
    /// Engine calls.
    pub executions: u64,
    /// Cumulative ns in the queue, compute input, compute infer, compute output.
    pub queue_ns: u64,
    /// See `queue_ns`.
    pub compute_input_ns: u64,
    /// See `queue_ns`.
    pub compute_infer_ns: u64,
    /// See `queue_ns`.
    pub compute_output_ns: u64,
    /// Requests the durations count.
    pub timed: u64,
}

impl ServerStats {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &ServerStats) -> ServerStats {
        ServerStats {
            success: self.success.saturating_sub(earlier.success),
            fail: self.fail.saturating_sub(earlier.fail),
            inferences: self.inferences.saturating_sub(earlier.inferences),
            executions: self.executions.saturating_sub(earlier.executions),
            queue_ns: self.queue_ns.saturating_sub(earlier.queue_ns),
            compute_input_ns: self.compute_input_ns.saturating_sub(earlier.compute_input_ns),
            compute_infer_ns: self.compute_infer_ns.saturating_sub(earlier.compute_infer_ns),
            compute_output_ns: self.compute_output_ns.saturating_sub(earlier.compute_output_ns),
            timed: self.timed.saturating_sub(earlier.timed),
        }
    }
}

/// The answer to one request: its latency, or how it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 200 / OK answer.
    Ok,
    /// An HTTP status (or a gRPC code, as `grpc:CODE`) and the server's `Retry-After`.
    Failed {
        /// The HTTP status (`503`) or gRPC code (`grpc:Unavailable`).
        status: String,
        /// The wait the server asked for with `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// Not sent: the keep-alive connection had been closed by the server. The caller
    /// reconnects and sends the request then; it is not counted.
    Stale,
}

/// A caller's connection.
pub enum Connection {
    /// An HTTP/1.1 keep-alive connection, driven by its caller's task.
    Http(Box<HttpConnection>),
    /// An HTTP/2 connection, driven by its caller's task.
    Grpc(Box<GrpcConnection>),
    /// A `ModelStreamInfer` stream on its own connection (`--streaming`).
    GrpcStream(Box<crate::grpc2::GrpcStream>),
}

/// The server, the model and the prepared request.
pub struct Target {
    /// `host:port`.
    pub url: String,
    addr: SocketAddr,
    /// The model.
    pub model: String,
    version: String,
    /// How requests travel.
    pub protocol: Protocol,
    /// The inputs sent with every request.
    pub inputs: Vec<WireInput>,
    /// The model's `max_batch_size` (0: it does not batch, or the server does not say).
    pub max_batch_size: usize,
    /// Samples per request.
    pub batch: usize,
    /// gRPC requests go on one `ModelStreamInfer` stream per caller.
    pub streaming: bool,
    /// Whether the server reports statistics (the extension).
    pub statistics: bool,
    infer_path: String,
    /// The HTTP requests, head and body, encoded once; sent in turn (one, unless texts are).
    http_requests: Vec<Vec<u8>>,
    /// The next of `http_requests` to send.
    next: std::sync::atomic::AtomicUsize,
    /// Texts for TEI's `/embed`, one per line of the plan's text file.
    texts: Vec<String>,
    /// Encoded images, sent as a v2 BYTES input.
    images: Vec<Vec<u8>>,
    /// The gRPC request, framed once.
    grpc_request: Bytes,
}

fn model_path(model: &str, version: &str) -> String {
    if version.is_empty() {
        format!("/v2/models/{model}")
    } else {
        format!("/v2/models/{model}/versions/{version}")
    }
}

/// A one-off HTTP GET or POST, for metadata.
async fn http_call(
    addr: SocketAddr,
    url: &str,
    method: Method,
    path: &str,
) -> Result<(StatusCode, Bytes), LoadError> {
    let unreachable = |reason: String| LoadError::Unreachable { url: url.to_string(), reason };
    let (mut sender, connection) = http_connect(addr).await.map_err(unreachable)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| unreachable(e.to_string()))?;
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
        .await
        .map_err(|_| unreachable(format!("no answer to {path} within 30 s")))?
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    let body =
        response.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
    Ok((status, body))
}

/// A hyper connection for one-off calls: the request half and the connection future.
async fn http_connect(
    addr: SocketAddr,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Full<Bytes>>,
    ),
    String,
> {
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| "connecting timed out after 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())
}

fn json_of(body: &[u8], url: &str, what: &str) -> Result<Value, LoadError> {
    serde_json::from_slice(body).map_err(|e| LoadError::NotV2 {
        url: url.into(),
        reason: format!(
            "{what} is not JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ),
    })
}

/// The server's error text in a `{"error": …}` body, or the body itself.
fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
}

/// What the metadata says of one input.
struct InputMeta {
    name: String,
    dtype: DType,
    shape: Vec<i64>,
}

impl Target {
    /// Checks the server speaks v2, the model is there and ready, and builds the request.
    /// `files` are the inputs read from `.npy` (by name) when the plan says so.
    pub async fn connect(
        plan: &LoadPlan,
        files: Option<Vec<(String, Tensor)>>,
    ) -> Result<Target, LoadError> {
        let addr = resolve(&plan.url)?;
        let (metas, max_batch_size, statistics) = match plan.protocol {
            Protocol::Http | Protocol::HttpJson => discover_http(plan, addr).await?,
            Protocol::Grpc => discover_grpc(plan).await?,
        };
        let texts = match &plan.inputs {
            InputData::Texts(path) => read_texts(path, plan.protocol)?,
            _ => Vec::new(),
        };
        let images = match &plan.inputs {
            InputData::Images(dir) => read_images(dir, plan.protocol)?,
            _ => Vec::new(),
        };
        if !images.is_empty() && (metas.len() != 1 || plan.batch > MAX_IMAGES) {
            return Err(LoadError::usage(
                format!("--image-dir with {} inputs and -b {}", metas.len(), plan.batch),
                format!("a model with one input, and at most {MAX_IMAGES} images per request"),
            ));
        }
        if metas.is_empty() && texts.is_empty() {
            return Err(LoadError::Model {
                model: plan.model.clone(),
                reason: "its metadata lists no inputs, so there is no request to build: the \
                         server must say each input's name, datatype and shape (an MLServer \
                         runtime declares them in model-settings.json)"
                    .into(),
            });
        }
        if !texts.is_empty() {
            let (most, source) = tei_max_texts(addr, &plan.url, &plan.model).await;
            if plan.batch > most {
                return Err(LoadError::usage(
                    format!("-b {} with --text-file", plan.batch),
                    format!(
                        "at most {most}, the texts the server's /embed takes per request ({source})"
                    ),
                ));
            }
        }
        if texts.is_empty() && images.is_empty() && plan.batch > 1 && max_batch_size == 0 {
            return Err(LoadError::usage(
                format!("-b {}", plan.batch),
                format!("1: model `{}` does not batch (its max_batch_size is 0)", plan.model),
            ));
        }
        if texts.is_empty()
            && images.is_empty()
            && max_batch_size > 0
            && plan.batch > max_batch_size
        {
            return Err(LoadError::usage(
                format!("-b {}", plan.batch),
                format!("at most the model's max_batch_size, {max_batch_size}"),
            ));
        }
        let from_files = files.is_some();
        let inputs = if texts.is_empty() && images.is_empty() {
            build_inputs(plan, &metas, max_batch_size > 0, files)?
        } else {
            Vec::new()
        };
        // Samples per request: with input files, what they hold along the batch axis.
        let batch =
            if from_files { file_batch(plan, &inputs, max_batch_size)? } else { plan.batch };
        let mut target = Target {
            url: plan.url.clone(),
            addr,
            model: plan.model.clone(),
            version: plan.version.clone(),
            protocol: plan.protocol,
            inputs,
            max_batch_size,
            batch,
            streaming: plan.streaming,
            statistics,
            infer_path: format!("{}/infer", model_path(&plan.model, &plan.version)),
            http_requests: Vec::new(),
            next: std::sync::atomic::AtomicUsize::new(0),
            texts,
            images,
            grpc_request: Bytes::new(),
        };
        if !target.images.is_empty() {
            target.prepare_images(&metas[0].name)?;
            return Ok(target);
        }
        target.prepare()?;
        Ok(target)
    }

    /// The images as v2 requests of `batch` each (the BYTES input `name`, in the binary
    /// extension), every image in one request (the last wraps to the first): as many requests
    /// as it takes, not one per image, so memory stays that of the images once.
    fn prepare_images(&mut self, name: &str) -> Result<(), LoadError> {
        let n = self.images.len();
        self.http_requests = (0..n.div_ceil(self.batch))
            .map(|r| {
                let blobs: Vec<Vec<u8>> = (0..self.batch)
                    .map(|k| self.images[(r * self.batch + k) % n].clone())
                    .collect();
                let tensor = Tensor::from_vec(vec![blobs.len()], blobs)
                    .map_err(|e| LoadError::usage("images", e.to_string()))?;
                let data = v2::binary_of(&tensor);
                let header = serde_json::to_vec(&json!({
                    "inputs": [{"name": name, "shape": [self.batch], "datatype": "BYTES",
                                "parameters": {"binary_data_size": data.len()}}],
                    "parameters": {"binary_data_output": true}
                }))
                .map_err(|e| LoadError::usage("images", e.to_string()))?;
                let header_length = header.len();
                let mut body = header;
                body.extend(data);
                Ok(encode_request(
                    &self.url,
                    &self.infer_path,
                    "application/octet-stream",
                    &[("Inference-Header-Content-Length", header_length.to_string())],
                    &body,
                ))
            })
            .collect::<Result<_, LoadError>>()?;
        Ok(())
    }

    fn prepare(&mut self) -> Result<(), LoadError> {
        if !self.texts.is_empty() {
            // Each line starts a request of `batch` lines (wrapping at the end).
            let n = self.texts.len();
            self.http_requests = (0..n)
                .map(|i| {
                    let inputs: Vec<&str> =
                        (0..self.batch).map(|k| self.texts[(i + k) % n].as_str()).collect();
                    let body = serde_json::to_vec(
                        &json!({"inputs": inputs, "model": self.model, "truncate": true}),
                    )
                    .map_err(|e| LoadError::usage("texts", e.to_string()))?;
                    Ok(encode_request(&self.url, "/embed", "application/json", &[], &body))
                })
                .collect::<Result<_, LoadError>>()?;
            return Ok(());
        }
        match self.protocol {
            Protocol::Http => {
                let mut binary = Vec::new();
                let inputs: Vec<Value> = self
                    .inputs
                    .iter()
                    .map(|i| {
                        let data = v2::binary_of(&i.tensor);
                        let size = data.len();
                        binary.extend(data);
                        json!({"name": i.name, "shape": i.tensor.shape(), "datatype": v2::datatype(i.tensor.dtype()),
                               "parameters": {"binary_data_size": size}})
                    })
                    .collect();
                let header = serde_json::to_vec(
                    &json!({"inputs": inputs, "parameters": {"binary_data_output": true}}),
                )
                .map_err(|e| LoadError::usage("inputs", e.to_string()))?;
                let header_length = header.len();
                let mut body = header;
                body.extend(binary);
                self.http_requests = vec![encode_request(
                    &self.url,
                    &self.infer_path,
                    "application/octet-stream",
                    &[("Inference-Header-Content-Length", header_length.to_string())],
                    &body,
                )];
            }
            Protocol::HttpJson => {
                let inputs = self
                    .inputs
                    .iter()
                    .map(|i| {
                        let data = v2::json_of(&i.tensor, &i.name).map_err(|e| LoadError::usage("inputs", e.to_string()))?;
                        Ok(json!({"name": i.name, "shape": i.tensor.shape(), "datatype": v2::datatype(i.tensor.dtype()), "data": data}))
                    })
                    .collect::<Result<Vec<Value>, LoadError>>()?;
                let body = serde_json::to_vec(&json!({"inputs": inputs}))
                    .map_err(|e| LoadError::usage("inputs", e.to_string()))?;
                self.http_requests = vec![encode_request(
                    &self.url,
                    &self.infer_path,
                    "application/json",
                    &[],
                    &body,
                )];
            }
            Protocol::Grpc => {
                self.grpc_request = crate::grpc2::frame(&pb::ModelInferRequest {
                    model_name: self.model.clone(),
                    model_version: self.version.clone(),
                    inputs: self
                        .inputs
                        .iter()
                        .map(|i| pb::model_infer_request::InferInputTensor {
                            name: i.name.clone(),
                            datatype: v2::datatype(i.tensor.dtype()).into(),
                            shape: i.tensor.shape().iter().map(|&d| d as i64).collect(),
                            ..Default::default()
                        })
                        .collect(),
                    raw_input_contents: self
                        .inputs
                        .iter()
                        .map(|i| Bytes::from(v2::binary_of(&i.tensor)))
                        .collect(),
                    ..Default::default()
                });
            }
        }
        Ok(())
    }

    /// A new connection for one caller.
    pub async fn connect_caller(&self) -> Result<Connection, LoadError> {
        match self.protocol {
            Protocol::Http | Protocol::HttpJson => HttpConnection::connect(self.addr)
                .await
                .map(|c| Connection::Http(Box::new(c)))
                .map_err(|reason| LoadError::Unreachable { url: self.url.clone(), reason }),
            Protocol::Grpc if self.streaming => {
                crate::grpc2::GrpcStream::open(self.addr, &self.url)
                    .await
                    .map(|c| Connection::GrpcStream(Box::new(c)))
                    .map_err(|reason| LoadError::Unreachable { url: self.url.clone(), reason })
            }
            Protocol::Grpc => GrpcConnection::connect(self.addr, &self.url)
                .await
                .map(|c| Connection::Grpc(Box::new(c)))
                .map_err(|reason| LoadError::Unreachable { url: self.url.clone(), reason }),
        }
    }

    /// Sends the request once on `connection` and waits for the whole answer.
    pub async fn send(&self, connection: &mut Connection) -> Result<Outcome, String> {
        match connection {
            Connection::Http(http) => {
                let k = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                http.exchange(&self.http_requests[k % self.http_requests.len().max(1)]).await
            }
            Connection::Grpc(grpc) => grpc.exchange(&self.grpc_request).await,
            Connection::GrpcStream(stream) => stream.exchange(&self.grpc_request).await,
        }
    }

    /// The model's cumulative statistics, when the server has the extension.
    pub async fn stats(&self) -> Option<ServerStats> {
        if !self.statistics {
            return None;
        }
        match self.protocol {
            Protocol::Http | Protocol::HttpJson => {
                let path = format!("{}/stats", model_path(&self.model, &self.version));
                let (status, body) =
                    http_call(self.addr, &self.url, Method::GET, &path).await.ok()?;
                if status != StatusCode::OK {
                    return None;
                }
                let v: Value = serde_json::from_slice(&body).ok()?;
                let s = &v["model_stats"][0];
                let d = |k: &str, f: &str| s["inference_stats"][k][f].as_u64().unwrap_or(0);
                Some(ServerStats {
                    success: d("success", "count"),
                    fail: d("fail", "count"),
                    inferences: s["inference_count"].as_u64().unwrap_or(0),
                    executions: s["execution_count"].as_u64().unwrap_or(0),
                    queue_ns: d("queue", "ns"),
                    compute_input_ns: d("compute_input", "ns"),
                    compute_infer_ns: d("compute_infer", "ns"),
                    compute_output_ns: d("compute_output", "ns"),
                    timed: d("compute_infer", "count"),
                })
            }
            Protocol::Grpc => {
                let mut client = grpc_client(&self.url).await.ok()?;
                let r = client
                    .model_statistics(pb::ModelStatisticsRequest {
                        name: self.model.clone(),
                        version: self.version.clone(),
                    })
                    .await
                    .ok()?
                    .into_inner();
                let s = r.model_stats.into_iter().next()?;
                let i = s.inference_stats.unwrap_or_default();
                let d = |x: Option<pb::StatisticDuration>| x.unwrap_or_default();
                Some(ServerStats {
                    success: d(i.success).count,
                    fail: d(i.fail).count,
                    inferences: s.inference_count,
                    executions: s.execution_count,
                    queue_ns: d(i.queue).ns,
                    compute_input_ns: d(i.compute_input).ns,
                    compute_infer_ns: d(i.compute_infer).ns,
                    compute_output_ns: d(i.compute_output).ns,
                    timed: d(i.compute_infer).count,
                })
            }
        }
    }
}

/// Texts one request to TEI's `/embed` may hold (its `--max-client-batch-size` default).
const TEI_MAX_TEXTS: usize = 32;

/// The texts one `/embed` request may hold, and where that figure came from: the server's
/// `GET /info?model=MODEL` (`max_client_batch_size`, which TEI and thrum report; TEI serves one
/// model and ignores the query), else TEI's default.
async fn tei_max_texts(addr: SocketAddr, url: &str, model: &str) -> (usize, String) {
    // RFC 3986's unreserved characters as they are, every other byte percent-encoded.
    let query: String = model
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let path = format!("/info?model={query}");
    let (status, reported) = match http_call(addr, url, Method::GET, &path).await {
        Ok((status, body)) => (
            status.to_string(),
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|info| info["max_client_batch_size"].as_u64())
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0 && status == StatusCode::OK),
        ),
        Err(e) => (e.to_string(), None),
    };
    match reported {
        Some(n) => (n, "its GET /info's max_client_batch_size".into()),
        None => (
            TEI_MAX_TEXTS,
            format!(
                "TEI's default: the server's GET /info gave no max_client_batch_size ({status})"
            ),
        ),
    }
}

/// The non-empty lines of a text file, for TEI's `/embed` (which is REST only).
/// Images one v2 request to thrum's image models may hold.
const MAX_IMAGES: usize = v2::MAX_IMAGES;

/// Every file of `dir` but hidden ones, in name order: the encoded images to send.
fn read_images(dir: &std::path::Path, protocol: Protocol) -> Result<Vec<Vec<u8>>, LoadError> {
    if protocol != Protocol::Http {
        return Err(LoadError::usage(
            format!("--image-dir with -i {protocol}"),
            "-i http: images go as a BYTES input in the binary extension",
        ));
    }
    let unreadable = |e: std::io::Error| {
        LoadError::usage(
            format!("--image-dir `{}` ({e})", dir.display()),
            "a readable directory of images",
        )
    };
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Hidden files (`.DS_Store`, stamps) are not images.
        .filter(|p| {
            p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(LoadError::usage(
            format!("--image-dir `{}` with no file", dir.display()),
            "a directory of JPEG, PNG, GIF or WebP files",
        ));
    }
    paths
        .iter()
        .map(|p| {
            std::fs::read(p).map_err(|e| {
                LoadError::usage(format!("image `{}` ({e})", p.display()), "a readable file")
            })
        })
        .collect()
}

fn read_texts(path: &std::path::Path, protocol: Protocol) -> Result<Vec<String>, LoadError> {
    if protocol != Protocol::Http {
        return Err(LoadError::usage(
            format!("texts with -i {protocol}"),
            "-i http: texts go to TEI's POST /embed, a REST route",
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        LoadError::usage(
            format!("--text-file `{}` ({e})", path.display()),
            "a readable UTF-8 file of texts, one per line",
        )
    })?;
    let lines: Vec<String> =
        text.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
    if lines.is_empty() {
        return Err(LoadError::usage(
            format!("--text-file `{}` with no text", path.display()),
            "a file of texts, one per line",
        ));
    }
    Ok(lines)
}

fn resolve(url: &str) -> Result<SocketAddr, LoadError> {
    if url.contains("://") {
        return Err(LoadError::usage(
            format!("-u {url}"),
            "host:port without a scheme, as tritonclient and perf_analyzer take it",
        ));
    }
    use std::net::ToSocketAddrs;
    url.to_socket_addrs()
        .map_err(|e| LoadError::Unreachable {
            url: url.into(),
            reason: format!("cannot resolve it: {e}"),
        })?
        .next()
        .ok_or_else(|| LoadError::Unreachable {
            url: url.into(),
            reason: "it resolves to no address".into(),
        })
}

async fn grpc_client(url: &str) -> Result<GrpcInferenceServiceClient<Channel>, LoadError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{url}"))
        .map_err(|e| LoadError::usage(format!("-u {url}"), format!("host:port ({e})")))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    let channel = endpoint.connect().await.map_err(|e| LoadError::Unreachable {
        url: url.into(),
        reason: format!("{e} ({:?})", std::error::Error::source(&e)),
    })?;
    Ok(GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}

/// The model's inputs, its max batch size and whether the server has statistics, over REST.
async fn discover_http(
    plan: &LoadPlan,
    addr: SocketAddr,
) -> Result<(Vec<InputMeta>, usize, bool), LoadError> {
    let url = &plan.url;
    let (status, body) = http_call(addr, url, Method::GET, "/v2").await?;
    if status != StatusCode::OK {
        return Err(LoadError::NotV2 {
            url: url.clone(),
            reason: format!("GET /v2 answered {status}"),
        });
    }
    let server = json_of(&body, url, "GET /v2")?;
    let extensions: Vec<String> = server["extensions"]
        .as_array()
        .ok_or_else(|| LoadError::NotV2 {
            url: url.clone(),
            reason: "GET /v2 lists no `extensions`".into(),
        })?
        .iter()
        .filter_map(|e| e.as_str().map(String::from))
        .collect();
    if plan.protocol == Protocol::Http && !extensions.iter().any(|e| e == "binary_tensor_data") {
        return Err(LoadError::Usage {
            what: format!(
                "protocol `http` (binary tensors) for {url}: the server does not list the binary_tensor_data extension"
            ),
            expected: "-i http-json or -i grpc for this server".into(),
        });
    }
    let path = model_path(&plan.model, &plan.version);
    let (status, body) = http_call(addr, url, Method::GET, &path).await?;
    if status != StatusCode::OK {
        let served = match http_call(addr, url, Method::POST, "/v2/repository/index").await {
            Ok((StatusCode::OK, index)) => serde_json::from_slice::<Value>(&index)
                .ok()
                .and_then(|v| {
                    v.as_array().map(|a| {
                        a.iter()
                            .filter_map(|m| m["name"].as_str().map(String::from))
                            .collect::<Vec<_>>()
                    })
                })
                .map(|names| format!("; the server serves: {}", names.join(", ")))
                .unwrap_or_default(),
            _ => String::new(),
        };
        return Err(LoadError::Model {
            model: plan.model.clone(),
            reason: format!("the server answered {status} ({}){served}", error_text(&body)),
        });
    }
    let meta = json_of(&body, url, &format!("GET {path}"))?;
    let (status, body) = http_call(addr, url, Method::GET, &format!("{path}/ready")).await?;
    if status != StatusCode::OK {
        return Err(LoadError::Model {
            model: plan.model.clone(),
            reason: format!("not ready: the server answered {status} ({})", error_text(&body)),
        });
    }
    let mut max_batch = 0;
    if extensions.iter().any(|e| e == "model_configuration") {
        let (status, body) = http_call(addr, url, Method::GET, &format!("{path}/config")).await?;
        if status == StatusCode::OK {
            max_batch = json_of(&body, url, "the model configuration")?["max_batch_size"]
                .as_u64()
                .unwrap_or(0) as usize;
        }
    }
    let inputs = meta["inputs"]
        .as_array()
        .ok_or_else(|| LoadError::NotV2 {
            url: url.clone(),
            reason: format!("GET {path} lists no `inputs`"),
        })?
        .iter()
        .map(|i| {
            let name = i["name"].as_str().unwrap_or_default().to_string();
            let dtype = v2::dtype_of(
                i["datatype"].as_str().unwrap_or_default(),
                &format!("input `{name}`"),
            )
            .map_err(|e| LoadError::NotV2 { url: url.clone(), reason: e.to_string() })?;
            let shape = i["shape"]
                .as_array()
                .map(|d| d.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            Ok(InputMeta { name, dtype, shape })
        })
        .collect::<Result<Vec<_>, LoadError>>()?;
    Ok((inputs, max_batch, extensions.iter().any(|e| e == "statistics")))
}

/// The same over gRPC.
async fn discover_grpc(plan: &LoadPlan) -> Result<(Vec<InputMeta>, usize, bool), LoadError> {
    let url = &plan.url;
    let mut client = grpc_client(url).await?;
    let server = client.server_metadata(pb::ServerMetadataRequest {}).await.map_err(|s| {
        LoadError::NotV2 {
            url: url.clone(),
            reason: format!("ServerMetadata answered {:?}: {}", s.code(), s.message()),
        }
    })?;
    let extensions = server.into_inner().extensions;
    let meta = client
        .model_metadata(pb::ModelMetadataRequest {
            name: plan.model.clone(),
            version: plan.version.clone(),
        })
        .await
        .map_err(|s| LoadError::Model {
            model: plan.model.clone(),
            reason: format!("{:?}: {}", s.code(), s.message()),
        })?
        .into_inner();
    let ready = client
        .model_ready(pb::ModelReadyRequest {
            name: plan.model.clone(),
            version: plan.version.clone(),
        })
        .await
        .map(|r| r.into_inner().ready)
        .unwrap_or(false);
    if !ready {
        return Err(LoadError::Model { model: plan.model.clone(), reason: "not ready".into() });
    }
    let max_batch = match client
        .model_config(pb::ModelConfigRequest {
            name: plan.model.clone(),
            version: plan.version.clone(),
        })
        .await
    {
        Ok(r) => r.into_inner().config.map_or(0, |c| c.max_batch_size.max(0) as usize),
        Err(_) => 0,
    };
    let inputs = meta
        .inputs
        .into_iter()
        .map(|i| {
            let dtype = v2::dtype_of(&i.datatype, &format!("input `{}`", i.name))
                .map_err(|e| LoadError::NotV2 { url: url.clone(), reason: e.to_string() })?;
            Ok(InputMeta { name: i.name, dtype, shape: i.shape })
        })
        .collect::<Result<Vec<_>, LoadError>>()?;
    Ok((inputs, max_batch, extensions.iter().any(|e| e == "statistics")))
}

/// The samples each request from input files holds: the files' size along the batch axis
/// (axis 0) when the model batches, else 1. `-b`, when given, must agree.
fn file_batch(
    plan: &LoadPlan,
    inputs: &[WireInput],
    max_batch_size: usize,
) -> Result<usize, LoadError> {
    if max_batch_size == 0 {
        return Ok(1);
    }
    let mut batch = None;
    for input in inputs {
        let n = input.tensor.shape().first().copied().unwrap_or(1);
        match batch {
            None => batch = Some((n, &input.name)),
            Some((m, first)) if m != n => {
                return Err(LoadError::usage(
                    format!(
                        "input files with {n} samples in `{}` but {m} in `{first}` (axis 0)",
                        input.name
                    ),
                    "the same number of samples in every input".to_string(),
                ));
            }
            Some(_) => {}
        }
    }
    let batch = batch.map_or(1, |(n, _)| n);
    if batch == 0 || batch > max_batch_size {
        return Err(LoadError::usage(
            format!("input files holding {batch} samples along axis 0"),
            format!("1 to the model's max_batch_size, {max_batch_size}"),
        ));
    }
    if plan.batch > 1 && plan.batch != batch {
        return Err(LoadError::usage(
            format!("-b {} with input files holding {batch} samples along axis 0", plan.batch),
            "files of -b samples, or no -b (the files' batch counts)".to_string(),
        ));
    }
    Ok(batch)
}

/// The tensors to send: from files, or made from the metadata's shapes with `-b` on the batch
/// axis and `--shape` for other dynamic dimensions.
fn build_inputs(
    plan: &LoadPlan,
    metas: &[InputMeta],
    batching: bool,
    files: Option<Vec<(String, Tensor)>>,
) -> Result<Vec<WireInput>, LoadError> {
    if let Some(mut files) = files {
        // One file for a one-input model is that input, whatever the file's name.
        if let ([meta], [(name, _)]) = (metas, files.as_mut_slice()) {
            *name = meta.name.clone();
        }
        return metas
            .iter()
            .map(|m| {
                let tensor =
                    files.iter().find(|(n, _)| *n == m.name).map(|(_, t)| t.clone()).ok_or_else(
                        || {
                            LoadError::usage(
                                format!("input data for `{}`", m.name),
                                format!("a file {}.npy", m.name),
                            )
                        },
                    )?;
                if tensor.dtype() != m.dtype {
                    return Err(LoadError::usage(
                        format!("input file for `{}` of dtype {}", m.name, tensor.dtype()),
                        format!("{} ({})", m.dtype, v2::datatype(m.dtype)),
                    ));
                }
                // Checked here, once, rather than by the server on every request of the run.
                let fits = tensor.rank() == m.shape.len()
                    && tensor.shape().iter().zip(&m.shape).all(|(&n, &d)| d < 0 || n as i64 == d);
                if !fits {
                    return Err(LoadError::usage(
                        format!("input file for `{}` of shape {:?}", m.name, tensor.shape()),
                        format!("the shape the server states, {:?} (-1: any size)", m.shape),
                    ));
                }
                Ok(WireInput { name: m.name.clone(), tensor })
            })
            .collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(match plan.inputs {
        InputData::Random { seed } => seed,
        _ => 0,
    });
    metas
        .iter()
        .map(|m| {
            let shape: Vec<usize> = match plan.shapes.iter().find(|(n, _)| *n == m.name) {
                Some((_, dims)) => {
                    let mut dims = dims.clone();
                    if batching && dims.len() + 1 == m.shape.len() {
                        dims.insert(0, plan.batch);
                    }
                    dims
                }
                None => m
                    .shape
                    .iter()
                    .enumerate()
                    .map(|(axis, &d)| match d {
                        d if d >= 0 => Ok(d as usize),
                        _ if axis == 0 => Ok(plan.batch),
                        _ => Err(LoadError::usage(
                            format!(
                                "input `{}` with a dynamic dimension at axis {axis} (shape {:?})",
                                m.name, m.shape
                            ),
                            format!("--shape {}:d1,d2,… giving it a size", m.name),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            };
            let tensor = match plan.inputs {
                InputData::Random { .. } => random(m.dtype, &shape, &mut rng)?,
                _ => Tensor::zeros(m.dtype, &shape)?,
            };
            Ok(WireInput { name: m.name.clone(), tensor })
        })
        .collect()
}

fn random(dtype: DType, shape: &[usize], rng: &mut ChaCha8Rng) -> Result<Tensor, LoadError> {
    let n = thrum_core::tensor::checked_len(dtype, shape)?;
    let mut unit = || (rng.next_u32() >> 8) as f64 / (1u32 << 24) as f64;
    let t = match dtype {
        DType::Bytes => Tensor::from_vec(
            shape.to_vec(),
            (0..n).map(|k| format!("s{}", k % 97).into_bytes()).collect::<Vec<_>>(),
        ),
        DType::Bool => {
            Tensor::from_vec(shape.to_vec(), (0..n).map(|_| unit() < 0.5).collect::<Vec<_>>())
        }
        d if d.is_float() => {
            let values: Vec<u8> = (0..n)
                .flat_map(|_| {
                    let x = unit() * 2.0 - 1.0;
                    match d {
                        DType::F16 => thrum_core::half::f16::from_f64(x).to_le_bytes().to_vec(),
                        DType::BF16 => thrum_core::half::bf16::from_f64(x).to_le_bytes().to_vec(),
                        DType::F32 => (x as f32).to_le_bytes().to_vec(),
                        _ => x.to_le_bytes().to_vec(),
                    }
                })
                .collect();
            Tensor::from_le_bytes(d, shape, &values)
        }
        d => {
            let size = d.size_of().unwrap_or(1);
            let values: Vec<u8> = (0..n)
                .flat_map(|_| {
                    let v = (unit() * 100.0) as u64;
                    v.to_le_bytes()[..size].to_vec()
                })
                .collect();
            Tensor::from_le_bytes(d, shape, &values)
        }
    };
    Ok(t?)
}

/// A request's wall time.
pub fn elapsed_us(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}
