//! An in-process server on free ports of 127.0.0.1, and a plain HTTP client, for the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test crates; tests fail by panicking

use std::net::SocketAddr;
use std::time::Duration;

use thrum_core::{Engine, Model, ModelFormat, ModelSource, Options};
use thrum_serve::{Listen, ModelPool, PoolConfig, ServedModel, Server};

/// A zoo model on tract.
pub fn zoo(name: &str) -> Model {
    let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
    let source = ModelSource::memory(name, ModelFormat::ONNX, thrum_zoo::onnx::export(&graph));
    thrum_tract::TractEngine.load(&source, &Options::default()).unwrap()
}

/// A running server; dropping it shuts it down (and waits for it).
pub struct Running {
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), thrum_serve::ServeError>>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Begins shutdown and waits for the server to stop.
    pub fn stop(mut self) -> Result<(), thrum_serve::ServeError> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `models` (name, model, pool settings) on free ports, with `listen`'s other settings.
pub fn serve_with(models: Vec<(&str, Model, PoolConfig)>, mut listen: Listen) -> Running {
    thrum_serve::metrics::install();
    let served = models
        .into_iter()
        .map(|(name, model, config)| ServedModel {
            name: name.into(),
            platform: "thrum_tract".into(),
            pool: ModelPool::start(name, model, config).unwrap(),
        })
        .collect();
    listen.http_port = 0;
    listen.grpc_port = listen.grpc_port.map(|_| 0);
    let server = Server::new(served, listen).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(server.run(
            async move {
                let _ = stop_rx.await;
            },
            move |bound| bound_tx.send(bound).unwrap(),
        ))
    });
    let bound = bound_rx.recv_timeout(Duration::from_secs(60)).expect("the server did not start");
    Running { http: bound.http, grpc: bound.grpc, stop: Some(stop_tx), thread: Some(thread) }
}

/// `model` as `name`, one worker, no batching, no shutdown grace.
pub fn serve(name: &str, model: Model) -> Running {
    serve_with(vec![(name, model, PoolConfig::new(1))], quick())
}

/// Listen settings without a shutdown grace period.
pub fn quick() -> Listen {
    Listen { shutdown_grace: Duration::ZERO, ..Listen::default() }
}

/// An HTTP client that returns every status as a response (errors are what the tests check).
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A response's status, headers and body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` of an error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no `error` in {}", String::from_utf8_lossy(&self.body)))
            .to_string()
    }
}

fn collect(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap();
    Reply { status, headers, body }
}

pub fn get(url: &str) -> Reply {
    collect(client().get(url).call().unwrap())
}

pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut request = client().post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    collect(request.send(body).unwrap())
}

pub fn post_json(url: &str, body: &serde_json::Value) -> Reply {
    post(url, &[], serde_json::to_string(body).unwrap().as_bytes())
}
