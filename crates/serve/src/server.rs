//! The server: the models it serves, its readiness, and its life — start, serve REST and gRPC,
//! load and unload models while serving, and shut down without losing an admitted request.
//!
//! Shutdown is a state machine: on SIGTERM or Ctrl-C (or the caller's signal) readiness goes
//! false while requests are still served, for a grace period in which Kubernetes stops routing
//! here; then the listeners stop accepting, every model stops admitting (a request that still
//! arrives on an open connection gets 503), in-flight and queued requests finish, connections
//! close (those still open after the shutdown timeout are cut), and `run` returns.
//!
//! Models come and go through the model repository extension (Triton's): with
//! [`ModelControl::Explicit`] and a [`Repository`] to load from, `load` starts a model's pool
//! (a model already loaded is replaced once the new pool is warm), and `unload` stops
//! admitting, lets every admitted request finish, then stops the pool. The repository index
//! shows each model's state (`READY`, `LOADING`, `UNLOADING`, `UNAVAILABLE` with the reason).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use thrum_core::Model;
use tokio::net::TcpListener;

use crate::error::ServeError;
use crate::front::{Fronts, Limits};
use crate::pb;
use crate::pool::ModelPool;

/// A model the server serves.
pub struct ServedModel {
    /// Its name in URLs.
    pub name: String,
    /// Its pool.
    pub pool: ModelPool,
    /// The platform string the protocol reports (`onnxruntime_onnx`, `pytorch_libtorch`…).
    pub platform: String,
    /// For a text-embedding model: its translator, which `/embed` and `/v1/embeddings` use.
    pub text: Option<Arc<thrum_text::TextEmbedding>>,
    /// For an image model: its pre-processing and class names, which v2 BYTES inputs of
    /// encoded images and TorchServe's `/predictions` use.
    pub image: Option<Arc<crate::image::ImageService>>,
    /// For a content-type model (Magika): its configuration, which v2 BYTES inputs of files
    /// and TorchServe's `/predictions` use.
    pub content: Option<Arc<thrum_magika::Magika>>,
}

impl ServedModel {
    /// The model.
    pub fn model(&self) -> &Model {
        self.pool.model()
    }

    /// The names of the model's classes in output order, for Triton's `classification`
    /// extension (an image model's, or Magika's content types).
    pub fn labels(&self) -> Option<&[String]> {
        if let Some(image) = &self.image {
            return image.labels.as_deref().map(Vec::as_slice);
        }
        self.content.as_deref().map(thrum_magika::Magika::labels)
    }

    /// The only version served.
    pub const VERSION: &'static str = "1";
}

/// Where the server loads models from while it runs (the model repository extension): the
/// `thrum` binary's model repository, or the models its command line names.
pub trait Repository: Send + Sync {
    /// Every model the repository holds, loaded or not.
    fn names(&self) -> Result<Vec<String>, ServeError>;

    /// Reads model `name` from the repository afresh and starts its pool (blocking: loading
    /// and warming a model takes a while). `config` overrides what the repository says (the
    /// load request's `config` parameter, Triton's model configuration as JSON).
    fn load(&self, name: &str, config: Option<&pb::ModelConfig>)
    -> Result<ServedModel, ServeError>;
}

/// Whether models can be loaded and unloaded while the server runs (Triton's
/// `--model-control-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModelControl {
    /// The models given at start are served until the server stops; load and unload
    /// requests are refused.
    #[default]
    None,
    /// Load and unload requests load models from the repository and stop them.
    Explicit,
}

impl std::str::FromStr for ModelControl {
    type Err = String;
    fn from_str(s: &str) -> Result<ModelControl, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(ModelControl::None),
            "explicit" => Ok(ModelControl::Explicit),
            "poll" => Err("`poll` is not offered: use explicit, and load with POST \
                           /v2/repository/models/NAME/load when the repository changes"
                .into()),
            other => Err(format!("model control mode `{other}`; expected none or explicit")),
        }
    }
}

/// Where and how the server listens.
#[derive(Clone, Debug)]
pub struct Listen {
    /// Address to bind (127.0.0.1 unless told otherwise).
    pub host: IpAddr,
    /// REST port (0: any free port).
    pub http_port: u16,
    /// gRPC port (0: any free port; `None`: no gRPC).
    pub grpc_port: Option<u16>,
    /// Largest request body accepted (bytes).
    pub body_limit: usize,
    /// Most texts one request of TEI's `/embed` and `/tokenize` may hold (TEI's
    /// `--max-client-batch-size`).
    pub max_client_batch: usize,
    /// Largest body of TEI's and OpenAI's text routes, and largest text of a v2 request to a
    /// text model (bytes; TEI's `--payload-limit`).
    pub text_body_limit: usize,
    /// How long readiness is false before the listeners close, at shutdown.
    pub shutdown_grace: Duration,
    /// Connections, timeouts, streams.
    pub limits: Limits,
}

impl Default for Listen {
    fn default() -> Listen {
        Listen {
            host: IpAddr::from([127, 0, 0, 1]),
            http_port: 8080,
            grpc_port: Some(8081),
            body_limit: 64 << 20,
            max_client_batch: crate::embed::MAX_CLIENT_BATCH,
            text_body_limit: 2 << 20,
            shutdown_grace: Duration::from_secs(5),
            limits: Limits::default(),
        }
    }
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const NOT_READY: u8 = 2;
const DRAINING: u8 = 3;

/// A model's state in the repository index (Triton's names).
#[derive(Clone)]
enum Slot {
    Ready(Arc<ServedModel>),
    Loading,
    Unloading,
    Unavailable(String),
}

impl Slot {
    fn state(&self) -> &'static str {
        match self {
            Slot::Ready(_) => "READY",
            Slot::Loading => "LOADING",
            Slot::Unloading => "UNLOADING",
            Slot::Unavailable(_) => "UNAVAILABLE",
        }
    }
}

/// One entry of the repository index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The model.
    pub name: String,
    /// Its state (`READY`, `LOADING`, `UNLOADING`, `UNAVAILABLE`); `None` for a model of the
    /// repository that was never loaded.
    pub state: Option<&'static str>,
    /// Why it is unavailable (empty otherwise).
    pub reason: String,
}

/// What the handlers share: the models and the server's state.
pub struct State {
    models: RwLock<BTreeMap<String, Slot>>,
    repository: Option<Arc<dyn Repository>>,
    control: ModelControl,
    /// One load or unload at a time.
    operations: tokio::sync::Mutex<()>,
    phase: AtomicU8,
    /// Requests seen, for request ids in logs.
    pub(crate) requests: AtomicU64,
    /// Largest request body accepted.
    pub(crate) body_limit: usize,
    /// Most texts per request of TEI's routes.
    pub(crate) max_client_batch: usize,
    /// Largest body of the text routes, and largest text of a v2 request.
    pub(crate) text_body_limit: usize,
    /// The fronts' limits (the handlers read the body timeout).
    pub(crate) limits: Limits,
}

impl State {
    fn slots(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Slot>> {
        self.models.read().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, name: &str, slot: Slot) {
        self.models.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), slot);
    }

    /// The served model called `name`, at `version` if one is given.
    pub fn model(&self, name: &str, version: Option<&str>) -> Result<Arc<ServedModel>, ServeError> {
        let slots = self.slots();
        let model = match slots.get(name) {
            Some(Slot::Ready(m)) => m.clone(),
            Some(slot) => {
                return Err(ServeError::Unavailable {
                    model: name.into(),
                    state: slot.state(),
                    reason: match slot {
                        Slot::Unavailable(reason) => reason.clone(),
                        _ => String::new(),
                    },
                });
            }
            None => {
                return Err(ServeError::UnknownModel {
                    name: name.into(),
                    version: String::new(),
                    served: slots
                        .iter()
                        .filter(|(_, s)| matches!(s, Slot::Ready(_)))
                        .map(|(n, _)| n.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        };
        match version {
            Some(v) if !v.is_empty() && v != ServedModel::VERSION => {
                Err(ServeError::UnknownModel {
                    name: name.into(),
                    version: format!(" version {v} (version {} is served)", ServedModel::VERSION),
                    served: model.name.clone(),
                })
            }
            _ => Ok(model),
        }
    }

    /// Every model being served now.
    pub fn models(&self) -> Vec<Arc<ServedModel>> {
        self.slots()
            .values()
            .filter_map(|s| match s {
                Slot::Ready(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// The repository index: every model the server knows or its repository holds, by name.
    pub fn index(&self) -> Vec<IndexEntry> {
        let mut entries: BTreeMap<String, IndexEntry> = self
            .slots()
            .iter()
            .map(|(name, slot)| {
                let reason = match slot {
                    Slot::Unavailable(r) => r.clone(),
                    Slot::Ready(m) => m.pool.not_ready().unwrap_or_default(),
                    _ => String::new(),
                };
                let state = match slot {
                    Slot::Ready(m) if !m.pool.is_ready() => "UNAVAILABLE",
                    other => other.state(),
                };
                (name.clone(), IndexEntry { name: name.clone(), state: Some(state), reason })
            })
            .collect();
        if let Some(repository) = &self.repository {
            match repository.names() {
                Ok(names) => {
                    for name in names {
                        entries.entry(name.clone()).or_insert(IndexEntry {
                            name,
                            state: None,
                            reason: String::new(),
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the model repository"),
            }
        }
        entries.into_values().collect()
    }

    /// True when every model is warm, every served model has a live worker (Triton's strict
    /// readiness), and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why the server is not ready, if it is not.
    pub fn not_ready(&self) -> Option<ServeError> {
        let reason = match self.phase_not_ready() {
            Some(reason) => reason.to_string(),
            None => match self
                .models()
                .iter()
                .find_map(|m| m.pool.not_ready().map(|r| (m.name.clone(), r)))
            {
                None => return None,
                Some((model, reason)) => format!("model `{model}` is not ready: {reason}"),
            },
        };
        Some(ServeError::NotReady { what: "the server".into(), reason })
    }

    /// Why no model can be ready now (the server starts or shuts down), whatever the state of
    /// each: a model's readiness is this and its own pool's, never another model's.
    pub fn phase_not_ready(&self) -> Option<&'static str> {
        match self.phase.load(Ordering::Acquire) {
            READY => None,
            STARTING => Some("models are loading"),
            _ => Some("the server is shutting down"),
        }
    }

    /// Whether load and unload requests are served.
    pub fn control(&self) -> ModelControl {
        self.control
    }

    fn explicit(&self) -> Result<&Arc<dyn Repository>, ServeError> {
        match (&self.repository, self.control) {
            (Some(repository), ModelControl::Explicit) => Ok(repository),
            _ => Err(ServeError::ModelControl {
                reason: "explicit model load / unload is not allowed: thrum serve runs with \
                         --model-control-mode none; start it with --model-control-mode explicit"
                    .into(),
            }),
        }
    }

    /// Loads (or reloads) model `name` from the repository; returns once it serves. A model
    /// already served keeps serving until its replacement is warm.
    ///
    /// The operation runs as a task of its own: a caller that goes away (a client's timeout,
    /// a closed connection) does not leave the model half loaded, and a second operation on
    /// the server waits for it.
    pub async fn load(
        self: &Arc<Self>,
        name: &str,
        config: Option<pb::ModelConfig>,
    ) -> Result<(), ServeError> {
        let repository = self.explicit()?.clone();
        check_name(name)?;
        let state = self.clone();
        let name = name.to_string();
        run_to_end(&name.clone(), "loading", async move {
            state.load_now(repository, &name, config).await
        })
        .await
    }

    async fn load_now(
        &self,
        repository: Arc<dyn Repository>,
        name: &str,
        config: Option<pb::ModelConfig>,
    ) -> Result<(), ServeError> {
        let _one_at_a_time = self.operations.lock().await;
        if self.phase.load(Ordering::Acquire) > READY {
            return Err(ServeError::NotReady {
                what: "the server".into(),
                reason: "it is shutting down".into(),
            });
        }
        let previous = self.slots().get(name).cloned();
        if !matches!(previous, Some(Slot::Ready(_))) {
            self.set(name, Slot::Loading);
        }
        let owned = name.to_string();
        let loaded = tokio::task::spawn_blocking(move || repository.load(&owned, config.as_ref()))
            .await
            .map_err(|e| ServeError::Config {
                what: format!("loading model `{name}`"),
                reason: e.to_string(),
            })
            .and_then(|r| r);
        match loaded {
            Ok(model) => {
                tracing::info!(model = %name, "loaded");
                self.set(name, Slot::Ready(Arc::new(model)));
                if let Some(Slot::Ready(old)) = previous {
                    stop_pool(old).await;
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(model = %name, error = %e, "load failed");
                match previous {
                    Some(slot @ Slot::Ready(_)) => self.set(name, slot),
                    // Not in the repository: not in its index either (as Triton does), so
                    // that loads of made-up names leave nothing behind.
                    _ if matches!(e, ServeError::UnknownModel { .. }) => {
                        self.models.write().unwrap_or_else(|p| p.into_inner()).remove(name);
                    }
                    _ => self.set(name, Slot::Unavailable(e.to_string())),
                }
                Err(ServeError::LoadFailed { model: name.into(), source: Box::new(e) })
            }
        }
    }

    /// Unloads model `name`: it stops admitting, every admitted request is answered, then its
    /// pool stops. Unloading a model that is not loaded does nothing (as Triton does).
    /// Runs to its end even when its caller goes away, as [`State::load`] does.
    pub async fn unload(self: &Arc<Self>, name: &str) -> Result<(), ServeError> {
        self.explicit()?;
        let state = self.clone();
        let name = name.to_string();
        run_to_end(&name.clone(), "unloading", async move { state.unload_now(&name).await }).await
    }

    async fn unload_now(&self, name: &str) -> Result<(), ServeError> {
        let _one_at_a_time = self.operations.lock().await;
        let Some(Slot::Ready(model)) = self.slots().get(name).cloned() else { return Ok(()) };
        self.set(name, Slot::Unloading);
        model.pool.stop_admitting();
        stop_pool(model).await;
        self.set(name, Slot::Unavailable("unloaded".into()));
        tracing::info!(model = %name, "unloaded");
        Ok(())
    }
}

/// Runs a load or unload as a task of its own, so that it finishes whether or not its caller
/// waits for it.
async fn run_to_end(
    name: &str,
    what: &str,
    operation: impl Future<Output = Result<(), ServeError>> + Send + 'static,
) -> Result<(), ServeError> {
    tokio::spawn(operation).await.unwrap_or_else(|e| {
        Err(ServeError::LoadFailed {
            model: name.into(),
            source: Box::new(ServeError::Core(thrum_core::Error::inference(
                "thrum",
                name,
                format!("{what} it stopped: {e}"),
            ))),
        })
    })
}

/// Stops a pool off the async threads, once its admitted requests are answered.
async fn stop_pool(model: Arc<ServedModel>) {
    model.pool.stop_admitting();
    let _ = tokio::task::spawn_blocking(move || model.pool.shutdown()).await;
}

fn check_name(name: &str) -> Result<(), ServeError> {
    if name.trim().is_empty() || name.contains(['/', '\\']) || name == ".." || name == "." {
        return Err(ServeError::bad(format!(
            "model name `{name}`: a model's name is its folder's, not empty and without path \
             separators"
        )));
    }
    Ok(())
}

/// A started server: its models are ready; [`Server::run`] serves them.
pub struct Server {
    state: Arc<State>,
    listen: Listen,
}

/// The addresses a running server listens on (ports are real even when 0 was asked).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// REST.
    pub http: SocketAddr,
    /// gRPC, if served.
    pub grpc: Option<SocketAddr>,
}

impl Server {
    /// A server for `models` (already started pools); names must be unique.
    pub fn new(models: Vec<ServedModel>, listen: Listen) -> Result<Server, ServeError> {
        Server::build(models, listen, None, ModelControl::None)
    }

    /// A server that also loads and unloads models from `repository` while it runs when
    /// `control` is [`ModelControl::Explicit`]; `models` are those loaded at start (in
    /// explicit mode, possibly none).
    pub fn with_repository(
        models: Vec<ServedModel>,
        listen: Listen,
        repository: Arc<dyn Repository>,
        control: ModelControl,
    ) -> Result<Server, ServeError> {
        Server::build(models, listen, Some(repository), control)
    }

    fn build(
        models: Vec<ServedModel>,
        listen: Listen,
        repository: Option<Arc<dyn Repository>>,
        control: ModelControl,
    ) -> Result<Server, ServeError> {
        let mut map = BTreeMap::new();
        for model in models {
            if map.contains_key(&model.name) {
                return Err(ServeError::Config {
                    what: format!("model `{}`", model.name),
                    reason: "two models have this name; give each its own (NAME=MODEL)".into(),
                });
            }
            map.insert(model.name.clone(), Slot::Ready(Arc::new(model)));
        }
        if map.is_empty() && control == ModelControl::None {
            return Err(ServeError::Config {
                what: "the server".into(),
                reason: "no model to serve: give -p MODEL, --model-repository DIR, --model-dir DIR or --config FILE".into(),
            });
        }
        let state = Arc::new(State {
            models: RwLock::new(map),
            repository,
            control,
            operations: tokio::sync::Mutex::new(()),
            phase: AtomicU8::new(STARTING),
            requests: AtomicU64::new(0),
            body_limit: listen.body_limit,
            max_client_batch: listen.max_client_batch.max(1),
            text_body_limit: listen.text_body_limit.max(1),
            limits: listen.limits.clone(),
        });
        Ok(Server { state, listen })
    }

    /// The shared state (the handlers').
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Binds the listeners, reports their addresses through `on_bound`, serves until
    /// `shutdown` completes (or SIGTERM / Ctrl-C), then shuts down as the module docs say.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        on_bound: impl FnOnce(Bound),
    ) -> Result<(), ServeError> {
        let bind = |port: u16, what: &str| {
            let addr = SocketAddr::new(self.listen.host, port);
            let what = what.to_string();
            async move {
                TcpListener::bind(addr).await.map_err(|e| ServeError::Config {
                    what: format!("the {what} listener"),
                    reason: format!("cannot bind {addr}: {e}"),
                })
            }
        };
        let http_listener = bind(self.listen.http_port, "HTTP").await?;
        let grpc_listener = match self.listen.grpc_port {
            Some(port) => Some(bind(port, "gRPC").await?),
            None => None,
        };
        let local = |l: &TcpListener| {
            l.local_addr().map_err(|e| ServeError::Config {
                what: "a listener".into(),
                reason: e.to_string(),
            })
        };
        let bound = Bound {
            http: local(&http_listener)?,
            grpc: grpc_listener.as_ref().map(local).transpose()?,
        };
        let fronts = Fronts::new(self.listen.limits.clone());
        self.state.phase.store(READY, Ordering::Release);
        tracing::info!(http = %bound.http, grpc = ?bound.grpc, models = ?self.state.models().iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
            max_connections = fronts.limits().max_connections, "ready");
        on_bound(bound);

        // The listeners stop accepting when `close` fires: after the grace period.
        let (close_tx, close_rx) = tokio::sync::watch::channel(false);
        let closed = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|c| *c).await;
        };
        let http = tokio::spawn(crate::front::serve_http(
            fronts.clone(),
            http_listener,
            crate::http::router(self.state.clone()),
            closed(close_rx.clone()),
        ));
        let grpc = grpc_listener.map(|listener| {
            let state = self.state.clone();
            let stop = closed(close_rx.clone());
            tokio::spawn(crate::grpc::serve(state, fronts.clone(), listener, stop))
        });

        tokio::select! {
            () = shutdown => {}
            () = signal() => {}
        }
        let grace = self.listen.shutdown_grace;
        tracing::info!(grace_s = grace.as_secs_f64(), "shutting down: not ready, then draining");
        self.state.phase.store(NOT_READY, Ordering::Release);
        tokio::time::sleep(grace).await;
        self.state.phase.store(DRAINING, Ordering::Release);
        for model in self.state.models() {
            model.pool.stop_admitting();
        }
        let _ = close_tx.send(true);
        let http_result = http.await;
        // Each front drains its own connections within the shutdown timeout.
        let grpc_result = match grpc {
            Some(g) => Some(g.await),
            None => None,
        };
        // A load or unload still running (a task of its own) ends before the pools stop,
        // within the shutdown timeout: a model it loaded is stopped with the others, and none
        // starts after (a load checks the phase under this lock).
        let _operations =
            tokio::time::timeout(self.state.limits.shutdown_timeout, self.state.operations.lock())
                .await;
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            for model in state.models() {
                model.pool.shutdown();
            }
        })
        .await
        .map_err(|e| ServeError::Config { what: "shutdown".into(), reason: e.to_string() })?;
        tracing::info!("every admitted request answered; stopped");
        if let Err(e) = http_result {
            return Err(ServeError::Config {
                what: "the HTTP server".into(),
                reason: e.to_string(),
            });
        }
        if let Some(Err(e)) = grpc_result {
            return Err(ServeError::Config {
                what: "the gRPC server".into(),
                reason: e.to_string(),
            });
        }
        Ok(())
    }

    /// Runs the server on a runtime of its own, on a thread of its own, until the returned
    /// handle is stopped or dropped: for tests and for programs without a runtime.
    pub fn spawn(self, io_threads: usize) -> Result<Background, ServeError> {
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("thrum-serve".into())
            .spawn(move || -> Result<(), ServeError> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(io_threads.max(1))
                    .thread_name("thrum-serve-io")
                    .enable_all()
                    .build()
                    .map_err(|e| ServeError::Config {
                        what: "the async runtime".into(),
                        reason: e.to_string(),
                    })?;
                let bound_err = bound_tx.clone();
                let result = runtime.block_on(self.run(
                    async move {
                        let _ = stop_rx.await;
                    },
                    move |bound| {
                        let _ = bound_tx.send(Ok(bound));
                    },
                ));
                if let Err(e) = &result {
                    let _ = bound_err.send(Err(e.to_string()));
                }
                result
            })
            .map_err(|e| ServeError::Config {
                what: "the server thread".into(),
                reason: e.to_string(),
            })?;
        match bound_rx.recv() {
            Ok(Ok(bound)) => Ok(Background { bound, stop: Some(stop), thread: Some(thread) }),
            Ok(Err(reason)) => {
                let _ = thread.join();
                Err(ServeError::Config { what: "the server".into(), reason })
            }
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(ServeError::Config {
                    what: "the server thread".into(),
                    reason: "it ended before it listened".into(),
                }),
            },
        }
    }
}

/// A server running on its own thread ([`Server::spawn`]); stopping or dropping it shuts the
/// server down as SIGTERM would, and waits.
pub struct Background {
    /// Where it listens.
    pub bound: Bound,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl Background {
    /// `host:port` of the REST front.
    pub fn http(&self) -> String {
        self.bound.http.to_string()
    }

    /// `host:port` of the gRPC front, if served.
    pub fn grpc(&self) -> Option<String> {
        self.bound.grpc.map(|a| a.to_string())
    }

    /// Shuts the server down and waits; its error, if it failed.
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ServeError::Config {
                what: "the server thread".into(),
                reason: "it panicked".into(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
