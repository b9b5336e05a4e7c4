//! An in-process server on free ports of 127.0.0.1, and a plain HTTP client, for the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test crates; tests fail by panicking

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use thrum_core::{
    DType, Dim, Engine, Model, ModelBackend, ModelFormat, ModelSource, Options, PredictorBackend,
    Result, SharedPredictorBackend, Tensor, TensorSpec, ThreadConfig,
};
use thrum_serve::{Listen, ModelPool, PoolConfig, ServedModel, Server};

/// A zoo model on tract.
pub fn zoo(name: &str) -> Model {
    let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
    let source = ModelSource::memory(name, ModelFormat::ONNX, thrum_zoo::onnx::export(&graph));
    thrum_tract::TractEngine.load(&source, &Options::default()).unwrap()
}

/// A gate the scripted model's calls wait at while it is closed: the tests decide when a call
/// ends instead of guessing how long one takes on this CPU.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn close(&self) {
        *self.0.0.lock().unwrap() = true;
    }

    pub fn open(&self) {
        *self.0.0.lock().unwrap() = false;
        self.0.1.notify_all();
    }

    /// Closes the gate until the guard goes: a test that fails while calls wait at it opens it
    /// on its way out, so that the server it drops can stop (instead of waiting on them forever).
    #[must_use]
    pub fn closed(&self) -> GateGuard {
        self.close();
        GateGuard(self.clone())
    }

    fn pass(&self) {
        let (closed, cv) = &*self.0;
        let _open = cv.wait_while(closed.lock().unwrap(), |closed| *closed).unwrap();
    }
}

/// Opens its gate when dropped ([`Gate::closed`]).
pub struct GateGuard(Gate);

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// A model whose output is its first input doubled; each call records its batch size, sleeps
/// `delay`, waits at the gate, and panics on an input whose first element is -1. Its specs are
/// its inputs, then its one output. New predictors fail while `broken` is set.
pub struct Scripted {
    pub specs: Vec<TensorSpec>,
    pub delay: Duration,
    pub gate: Gate,
    pub batches: Arc<Mutex<Vec<usize>>>,
    pub calls: Arc<AtomicUsize>,
    pub broken: Arc<std::sync::atomic::AtomicBool>,
}

struct ScriptedPredictor {
    delay: Duration,
    gate: Gate,
    batches: Arc<Mutex<Vec<usize>>>,
    calls: Arc<AtomicUsize>,
}

impl PredictorBackend for ScriptedPredictor {
    fn predict(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let x = inputs[0].as_slice::<f32>()?;
        if x.first() == Some(&-1.0) {
            panic!("scripted panic");
        }
        self.batches.lock().unwrap().push(inputs[0].shape()[0]);
        std::thread::sleep(self.delay);
        self.gate.pass();
        let doubled: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
        Ok(vec![Tensor::from_vec(inputs[0].shape().to_vec(), doubled)?])
    }
}

impl ModelBackend for Scripted {
    fn inputs(&self) -> &[TensorSpec] {
        &self.specs[..self.specs.len() - 1]
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.specs[self.specs.len() - 1..]
    }
    fn predictor(&self) -> Result<Box<dyn PredictorBackend>> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(thrum_core::Error::inference("scripted", "scripted", "no predictor now"));
        }
        Ok(Box::new(ScriptedPredictor {
            delay: self.delay,
            gate: self.gate.clone(),
            batches: self.batches.clone(),
            calls: self.calls.clone(),
        }))
    }
    fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
        Err(thrum_core::Error::Unsupported {
            engine: "scripted",
            feature: "a shared predictor".into(),
            reason: "tests use per-thread predictors".into(),
        })
    }
    fn threads(&self) -> ThreadConfig {
        ThreadConfig::default()
    }
}

/// A scripted model (input `x`, output `y`, both f32 [N,2]) and the handles the tests watch it by.
pub struct Probe {
    pub model: Model,
    pub gate: Gate,
    pub batches: Arc<Mutex<Vec<usize>>>,
    pub calls: Arc<AtomicUsize>,
    pub broken: Arc<std::sync::atomic::AtomicBool>,
}

pub fn scripted(delay: Duration) -> Probe {
    let spec = |name: &str| TensorSpec::new(name, DType::F32, vec![Dim::named("N"), Dim::Fixed(2)]);
    scripted_with(vec![spec("x"), spec("y")], delay)
}

/// A scripted model with these specs (inputs, then the output).
pub fn scripted_with(specs: Vec<TensorSpec>, delay: Duration) -> Probe {
    let (gate, batches, calls) = (Gate::default(), Arc::default(), Arc::new(AtomicUsize::new(0)));
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let backend = Scripted {
        specs,
        delay,
        gate: gate.clone(),
        batches: Arc::clone(&batches),
        calls: Arc::clone(&calls),
        broken: Arc::clone(&broken),
    };
    Probe { model: Model::new("scripted", "scripted", backend), gate, batches, calls, broken }
}

impl Probe {
    /// Calls so far (the pool's warm-up call included).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Waits (at most 30 s, then fails naming `what`) until `done` holds.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running server; dropping it shuts it down (and waits for it).
pub struct Running {
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
    server: thrum_serve::Background,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Begins shutdown and waits for the server to stop.
    pub fn stop(self) -> Result<(), thrum_serve::ServeError> {
        self.server.stop()
    }
}

/// The pools of `models` (name, model, pool settings), started.
pub fn served(models: Vec<(&str, Model, PoolConfig)>) -> Vec<ServedModel> {
    thrum_serve::metrics::install();
    models
        .into_iter()
        .map(|(name, model, config)| ServedModel {
            name: name.into(),
            platform: "thrum_tract".into(),
            text: None,
            image: None,
            content: None,
            pool: ModelPool::start(name, model, config).unwrap(),
        })
        .collect()
}

/// Runs `server` on free ports (its `listen` must ask for port 0).
pub fn run(server: Server) -> Running {
    let server = server.spawn(2).expect("the server did not start");
    Running { http: server.bound.http, grpc: server.bound.grpc, server }
}

/// Serves `models` (name, model, pool settings) on free ports, with `listen`'s other settings.
pub fn serve_with(models: Vec<(&str, Model, PoolConfig)>, mut listen: Listen) -> Running {
    listen.http_port = 0;
    listen.grpc_port = listen.grpc_port.map(|_| 0);
    run(Server::new(served(models), listen).unwrap())
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
