//! The server: the models it serves, its readiness, and its life — start, serve REST and gRPC,
//! and shut down without losing an admitted request.
//!
//! Shutdown is a state machine: on SIGTERM or Ctrl-C (or the caller's signal) readiness goes
//! false while requests are still served, for a grace period in which Kubernetes stops routing
//! here; then the listeners stop accepting, every model stops admitting (a request that still
//! arrives on an open connection gets 503), in-flight and queued requests finish, and `run`
//! returns.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use thrum_core::Model;
use tokio::net::TcpListener;

use crate::error::ServeError;
use crate::pool::ModelPool;

/// A model the server serves.
pub struct ServedModel {
    /// Its name in URLs.
    pub name: String,
    /// Its pool.
    pub pool: ModelPool,
    /// The platform string the protocol reports (`onnxruntime_onnx`, `pytorch_libtorch`…).
    pub platform: String,
}

impl ServedModel {
    /// The model.
    pub fn model(&self) -> &Model {
        self.pool.model()
    }

    /// The only version served.
    pub const VERSION: &'static str = "1";
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
    /// How long readiness is false before the listeners close, at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Listen {
    fn default() -> Listen {
        Listen {
            host: IpAddr::from([127, 0, 0, 1]),
            http_port: 8080,
            grpc_port: Some(8081),
            body_limit: 64 << 20,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const NOT_READY: u8 = 2;
const DRAINING: u8 = 3;

/// What the handlers share: the models and the server's state.
pub struct State {
    models: BTreeMap<String, ServedModel>,
    phase: AtomicU8,
    /// Requests seen, for request ids in logs.
    pub(crate) requests: AtomicU64,
    /// Largest request body accepted.
    pub(crate) body_limit: usize,
}

impl State {
    /// The served model called `name`, at `version` if one is given.
    pub fn model(&self, name: &str, version: Option<&str>) -> Result<&ServedModel, ServeError> {
        let unknown = |version: String| ServeError::UnknownModel {
            name: name.into(),
            version,
            served: self.models.keys().cloned().collect::<Vec<_>>().join(", "),
        };
        let model = self.models.get(name).ok_or_else(|| unknown(String::new()))?;
        match version {
            Some(v) if !v.is_empty() && v != ServedModel::VERSION => {
                Err(unknown(format!(" version {v} (version {} is served)", ServedModel::VERSION)))
            }
            _ => Ok(model),
        }
    }

    /// Every served model.
    pub fn models(&self) -> impl Iterator<Item = &ServedModel> {
        self.models.values()
    }

    /// True when every model is warm and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.phase.load(Ordering::Acquire) == READY
    }

    /// Why the server is not ready, if it is not.
    pub fn not_ready(&self) -> Option<ServeError> {
        let reason = match self.phase.load(Ordering::Acquire) {
            READY => return None,
            STARTING => "models are loading",
            _ => "the server is shutting down",
        };
        Some(ServeError::NotReady { what: "the server".into(), reason: reason.into() })
    }
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
        let mut map = BTreeMap::new();
        for model in models {
            if map.contains_key(&model.name) {
                return Err(ServeError::Config {
                    what: format!("model `{}`", model.name),
                    reason: "two models have this name; give each its own (NAME=MODEL)".into(),
                });
            }
            map.insert(model.name.clone(), model);
        }
        if map.is_empty() {
            return Err(ServeError::Config {
                what: "the server".into(),
                reason: "no model to serve: give -p MODEL, --model-repository DIR, --model-dir DIR or --config FILE".into(),
            });
        }
        let state = Arc::new(State {
            models: map,
            phase: AtomicU8::new(STARTING),
            requests: AtomicU64::new(0),
            body_limit: listen.body_limit,
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
        self.state.phase.store(READY, Ordering::Release);
        tracing::info!(http = %bound.http, grpc = ?bound.grpc, models = ?self.state.models.keys().collect::<Vec<_>>(), "ready");
        on_bound(bound);

        // The listeners stop accepting when `close` fires: after the grace period.
        let (close_tx, close_rx) = tokio::sync::watch::channel(false);
        let closed = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|c| *c).await;
        };
        let http = tokio::spawn(
            axum::serve(http_listener, crate::http::router(self.state.clone()))
                .with_graceful_shutdown(closed(close_rx.clone()))
                .into_future(),
        );
        let grpc = grpc_listener.map(|listener| {
            let state = self.state.clone();
            let stop = closed(close_rx.clone());
            tokio::spawn(crate::grpc::serve(state, listener, stop))
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
        let grpc_result = match grpc {
            Some(g) => Some(g.await),
            None => None,
        };
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            for model in state.models() {
                model.pool.shutdown();
            }
        })
        .await
        .map_err(|e| ServeError::Config { what: "shutdown".into(), reason: e.to_string() })?;
        tracing::info!("every admitted request answered; stopped");
        if let Ok(Err(e)) = http_result {
            return Err(ServeError::Config {
                what: "the HTTP server".into(),
                reason: e.to_string(),
            });
        }
        if let Some(Ok(Err(e))) = grpc_result {
            return Err(e);
        }
        Ok(())
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
