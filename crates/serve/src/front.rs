//! The fronts' connections, and the limits that a slow, stuck or hostile client cannot get past
//! (nginx's and envoy's defaults are the anchors): the most connections open at once, how long
//! a client may take to send a request's head, to stay idle between requests, to take an answer,
//! and how long shutdown waits for a client that does not finish.
//!
//! - Accepting: a connection needs a permit of [`Limits::max_connections`]; without one the
//!   listener stops accepting and new connections wait in the kernel's backlog until one
//!   closes. Running out of file descriptors (`EMFILE`) backs off instead of failing the
//!   process. Every accepted socket gets `TCP_NODELAY` (a small answer must not wait for
//!   Nagle's algorithm).
//! - Timeouts live in [`Guarded`], the socket wrapper both fronts read and write through:
//!   a request head must be complete within [`Limits::header_timeout`] of its first byte (or
//!   of the connection's start), an HTTP/1.1 connection idle between requests closes after
//!   [`Limits::keep_alive_timeout`] (an HTTP/2 one with no call open gets GOAWAY after the
//!   same time, in `serve_grpc`), and a write the client does not take closes the
//!   connection after [`Limits::write_timeout`]. A request's body has
//!   [`Limits::body_timeout`], enforced where it is read (the handlers answer 408).
//! - REST is HTTP/1.1 (hyper), one task per connection. gRPC is tonic's generated service
//!   over hyper's HTTP/2 on the same accepted, guarded sockets, one task per connection, with
//!   a bound on concurrent streams per connection and keep-alive pings that find dead peers.
//! - Shutdown: connections finish what is in flight (HTTP/1.1 closes after the current answer;
//!   HTTP/2 sends GOAWAY); those still open after [`Limits::shutdown_timeout`] are cut.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The limits of both fronts. Each is a `thrum serve` flag and a `[server]` key of
/// `thrum.toml` (docs/serve.md lists them with their defaults).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Most connections open at once, REST and gRPC together; more wait in the backlog.
    pub max_connections: usize,
    /// Time to send a request's head (HTTP/1.1), or the connection preface (HTTP/2).
    pub header_timeout: Duration,
    /// Time to send a request's body, from its head.
    pub body_timeout: Duration,
    /// Time an HTTP/1.1 connection may stay idle between requests, and an HTTP/2 (gRPC) one
    /// with no call open.
    pub keep_alive_timeout: Duration,
    /// Time a client may leave an answer unread before its connection is closed.
    pub write_timeout: Duration,
    /// Time shutdown waits for open connections to finish before it cuts them.
    pub shutdown_timeout: Duration,
    /// Most concurrent gRPC streams (calls) per HTTP/2 connection.
    pub max_streams_per_connection: u32,
    /// Interval of HTTP/2 keep-alive pings; a peer that does not answer one within 20 s is
    /// gone and its connection closed.
    pub http2_keep_alive_interval: Duration,
}

impl Limits {
    /// What a connection slot costs besides the socket: the reserve of file descriptors left
    /// for model files, engine libraries and logs when the default limit is derived.
    pub const FD_RESERVE: u64 = 256;
    /// The largest default connection limit.
    pub const MAX_DEFAULT_CONNECTIONS: u64 = 10_000;
}

impl Default for Limits {
    /// nginx's client timeouts (header 60 s, keep-alive 75 s, send 60 s), a header and body
    /// time a little shorter for an API whose requests come from programs, nginx's 128
    /// HTTP/2 streams, and a connection limit that fits the process's file limit.
    fn default() -> Limits {
        Limits {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            keep_alive_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(20),
            max_streams_per_connection: 128,
            http2_keep_alive_interval: Duration::from_secs(60),
        }
    }
}

/// The default connection limit: the process's file limit (raised to its hard limit, as Go's
/// runtime and nginx's `worker_rlimit_nofile` do) less [`Limits::FD_RESERVE`], at most
/// [`Limits::MAX_DEFAULT_CONNECTIONS`], at least 64.
pub fn default_max_connections() -> usize {
    let files = raise_file_limit();
    files.saturating_sub(Limits::FD_RESERVE).clamp(64, Limits::MAX_DEFAULT_CONNECTIONS) as usize
}

/// Raises this process's soft limit of open files to its hard limit; returns the soft limit.
pub fn raise_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else { return u64::MAX };
    if let Some(max) = limit.maximum
        && max > current
        && setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(max), ..limit })
            .is_ok()
    {
        return max;
    }
    current
}

/// Where a connection is between requests.
const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// A connection's phase, shared by its socket (which times out on it) and its service (which
/// moves it when a request starts and its answer is ready).
struct Phase {
    phase: AtomicU8,
    /// When the phase began, in ms from `epoch`.
    since_ms: AtomicU64,
    epoch: Instant,
    /// The task waiting to read from the socket, woken when the connection goes idle.
    reader: futures_util::task::AtomicWaker,
}

impl Phase {
    fn new() -> Phase {
        Phase {
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            reader: futures_util::task::AtomicWaker::new(),
        }
    }

    fn set(&self, phase: u8) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.since_ms.store(ms, Ordering::Release);
        self.phase.store(phase, Ordering::Release);
        if phase == IDLE {
            self.reader.wake();
        }
    }

    /// Restarts an idle phase's clock (without waking the reader: its timer, when it fires,
    /// finds the later deadline and waits on).
    fn touch_idle(&self) {
        if self.phase.load(Ordering::Acquire) == IDLE {
            let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.since_ms.store(ms, Ordering::Release);
        }
    }

    fn get(&self) -> (u8, Instant) {
        let phase = self.phase.load(Ordering::Acquire);
        let since = self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        (phase, since)
    }
}

/// What a [`Guarded`] socket speaks: HTTP/1.1 moves between requests (its service says when),
/// HTTP/2 is busy from its first bytes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, what an HTTP/2 client sends first (RFC 9113, 3.4).
const HTTP2_PREFACE_LEN: usize = 24;

/// A socket with the front's timeouts, its connection permit and the shutdown's kill switch.
/// Read and write errors of kind `TimedOut` (or `ConnectionAborted`, when shutdown cut it)
/// end the connection.
pub struct Guarded {
    io: TcpStream,
    peer: SocketAddr,
    protocol: Protocol,
    phase: Arc<Phase>,
    limits: Arc<Limits>,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    /// When the write now pending began to wait.
    write_waiting: Option<Instant>,
    /// HTTP/2: bytes of the client's connection preface still to come; the head's timeout
    /// holds until the whole preface is in.
    preface_left: usize,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    _permit: OwnedSemaphorePermit,
}

impl Guarded {
    fn new(
        accepted: Accepted,
        protocol: Protocol,
        phase: Arc<Phase>,
        limits: Arc<Limits>,
        kill: &CancellationToken,
    ) -> Guarded {
        let far = Instant::now() + Duration::from_secs(86_400);
        Guarded {
            io: accepted.io,
            peer: accepted.peer,
            protocol,
            phase,
            limits,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            write_waiting: None,
            preface_left: if protocol == Protocol::Http2 { HTTP2_PREFACE_LEN } else { 0 },
            killed: Box::pin(kill.clone().cancelled_owned()),
            _permit: accepted.permit,
        }
    }

    /// When a read that waits now must have had bytes, if ever.
    fn read_deadline(&self) -> Option<(Instant, &'static str)> {
        let (phase, since) = self.phase.get();
        match phase {
            HEAD => Some((since + self.limits.header_timeout, "the request head")),
            // A write waiting on the client is the write timeout's to cut, not this clock's.
            IDLE if self.write_waiting.is_none() => {
                Some((since + self.limits.keep_alive_timeout, "the next request"))
            }
            _ => None,
        }
    }

    fn check_killed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.killed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server is shutting down and its shutdown timeout passed",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

fn timed_out(what: &str, limit: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} did not come within {limit:?}"))
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.check_killed(cx)?;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    match (this.protocol, this.phase.get().0) {
                        // The first bytes of the next request: its head's clock starts.
                        (Protocol::Http1, IDLE) => this.phase.set(HEAD),
                        // HTTP/2 is busy once its whole preface is in: a client that sends a
                        // byte of it and stalls is still on the head's clock.
                        (Protocol::Http2, HEAD) => {
                            this.preface_left = this.preface_left.saturating_sub(read);
                            if this.preface_left == 0 {
                                this.phase.set(BUSY);
                            }
                        }
                        _ => {}
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // hyper polls the socket once while a request is handled and then waits on that
                // registration; the phase's change to idle wakes it to arm the idle timer.
                this.phase.reader.register(cx.waker());
                let Some((deadline, what)) = this.read_deadline() else { return Poll::Pending };
                if this.read_timer.deadline() != deadline {
                    this.read_timer.as_mut().reset(deadline);
                }
                match this.read_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        let limit = if what == "the request head" {
                            this.limits.header_timeout
                        } else {
                            this.limits.keep_alive_timeout
                        };
                        tracing::debug!(peer = %this.peer, "closing a connection: {what} did not come within {limit:?}");
                        Poll::Ready(Err(timed_out(what, limit)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl Guarded {
    /// An answer still being written after its service finished (hyper writes the body after
    /// the response is ready): each write that moves bytes restarts the keep-alive clock, so
    /// that it runs from the last byte out, not while a slow client reads a large answer.
    /// Flushes, which hyper makes on every wake, do not count.
    fn wrote(&self, poll: &Poll<io::Result<usize>>) {
        if self.protocol == Protocol::Http1 && matches!(poll, Poll::Ready(Ok(n)) if *n > 0) {
            self.phase.touch_idle();
        }
    }

    /// Passes a write's result on, timing out one that waits on the client too long.
    fn write_poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                // A write that waited held the idle clock off (`read_deadline`); the read
                // that found no deadline then is woken to arm it now.
                if self.write_waiting.take().is_some() {
                    self.phase.reader.wake();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let since = *self.write_waiting.get_or_insert_with(Instant::now);
                let deadline = since + self.limits.write_timeout;
                if self.write_timer.deadline() != deadline {
                    self.write_timer.as_mut().reset(deadline);
                }
                match self.write_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::debug!(peer = %self.peer, "closing a connection: the client took no answer within {:?}", self.limits.write_timeout);
                        Poll::Ready(Err(timed_out(
                            "the client's reading",
                            self.limits.write_timeout,
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check_killed(cx)?;
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&poll);
        this.write_poll(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check_killed(cx)?;
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&poll);
        this.write_poll(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.write_poll(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An accepted socket and its connection permit.
struct Accepted {
    io: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// What both fronts share: the limits, the connection permits, the kill switch.
#[derive(Clone)]
pub(crate) struct Fronts {
    limits: Arc<Limits>,
    permits: Arc<Semaphore>,
    kill: CancellationToken,
}

impl Fronts {
    pub(crate) fn new(limits: Limits) -> Fronts {
        let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        Fronts { limits: Arc::new(limits), permits, kill: CancellationToken::new() }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Cuts every connection still open: reads and writes fail from now on.
    pub(crate) fn kill(&self) {
        self.kill.cancel();
    }

    /// Connections open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.limits.max_connections.max(1) - self.permits.available_permits()
    }

    /// The next connection, once a permit is free. A listener holds at most the one socket it
    /// accepted while it waits for a permit, and accepts nothing more meanwhile: beyond the
    /// limit, new connections wait in the kernel's backlog (or are refused when it is full),
    /// never at the process's expense. Errors of the listener (out of file descriptors, a
    /// connection reset before it was accepted) are logged and waited out, never returned: a
    /// listener that cannot accept now can later.
    async fn accept(&self, listener: &TcpListener) -> Accepted {
        let mut warned = false;
        let (io, peer) = loop {
            match listener.accept().await {
                Ok(accepted) => break accepted,
                Err(e) if is_resource_error(&e) => {
                    if !warned {
                        tracing::warn!(error = %e, open = self.open_connections(), "cannot accept a connection; waiting for a file descriptor (raise the file limit, or lower --max-connections)");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // Other errors (ECONNABORTED…) concern that one connection only.
                Err(_) => {}
            }
        };
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            // The semaphore is never closed; should it be, accept nothing more.
            std::future::pending::<()>().await;
            unreachable!()
        };
        let _ = io.set_nodelay(true);
        Accepted { io, peer, permit }
    }
}

/// Out of file descriptors or memory: the process's condition, which passes, not a bad
/// connection's.
fn is_resource_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// The REST front's per-connection service: the router, with the connection's phase moved as
/// requests start and their answers are ready.
#[derive(Clone)]
struct Http1Service {
    router: Router,
    phase: Arc<Phase>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Http1Service {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.phase.set(BUSY);
        let phase = self.phase.clone();
        let call = tower::ServiceExt::oneshot(self.router.clone(), request);
        Box::pin(async move {
            let response = call.await;
            // The answer is ready: from here the connection waits for the next request (the
            // answer's writing has its own timeout, and each write restarts the idle clock).
            phase.set(IDLE);
            response
        })
    }
}

/// Serves the REST front on `listener` until `stop` completes, then drains: in-flight
/// requests finish, idle connections close, and what is still open after the shutdown
/// timeout is cut.
pub(crate) async fn serve_http(
    fronts: Fronts,
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()>,
) {
    let limits = fronts.limits.clone();
    let kill = fronts.kill.clone();
    accept_loop(&fronts, listener, stop, |accepted, mut closing| {
        let phase = Arc::new(Phase::new());
        let io = Guarded::new(accepted, Protocol::Http1, phase.clone(), limits.clone(), &kill);
        let service = Http1Service { router: router.clone(), phase };
        async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.keep_alive(true).max_headers(128);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => { log_connection_end(result); return; }
                _ = closing.wait_for(|c| *c) => {}
            }
            // Shutdown: finish the request in flight (answered with `Connection: close`),
            // close an idle connection now.
            connection.as_mut().graceful_shutdown();
            log_connection_end(connection.await);
        }
    })
    .await;
}

/// Accepts connections on `listener` until `stop` completes, each served by `serve` (given
/// the socket and a flag that turns true at shutdown) on a task of its own; then drains them.
async fn accept_loop<F, C>(
    fronts: &Fronts,
    listener: TcpListener,
    stop: impl Future<Output = ()>,
    mut serve: F,
) where
    F: FnMut(Accepted, tokio::sync::watch::Receiver<bool>) -> C,
    C: Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    loop {
        // Finished connections are reaped here, not in the select: the accept must not be
        // cancelled while it holds a socket that waits for a permit.
        while connections.try_join_next().is_some() {}
        tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = fronts.accept(&listener) => {
                connections.spawn(serve(accepted, closing_rx.clone()));
            }
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drain(fronts, &mut connections).await;
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "a connection ended with an error");
    }
}

/// Waits for `connections` to finish, up to the shutdown timeout; then cuts the rest.
async fn drain(fronts: &Fronts, connections: &mut tokio::task::JoinSet<()>) {
    let deadline = Instant::now() + fronts.limits.shutdown_timeout;
    while !connections.is_empty() {
        match tokio::time::timeout_at(deadline, connections.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    open = connections.len(),
                    timeout = ?fronts.limits.shutdown_timeout,
                    "connections still open after the shutdown timeout; closing them"
                );
                fronts.kill();
                connections.shutdown().await;
            }
        }
    }
}

/// The calls open on an HTTP/2 connection, and since when it has had none: what closes a gRPC
/// connection left idle.
struct Calls {
    open: AtomicUsize,
    /// When the last call ended (or the connection began), in ms from `epoch`.
    idle_since_ms: AtomicU64,
    epoch: Instant,
}

impl Calls {
    fn new() -> Calls {
        Calls { open: AtomicUsize::new(0), idle_since_ms: AtomicU64::new(0), epoch: Instant::now() }
    }

    fn start(self: &Arc<Calls>) -> CallGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    /// When the connection may be closed for idleness: `None` while a call is open.
    fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire)) + limit)
    }
}

/// One open call: it ends when its answer's body is done (or dropped), so a streaming call
/// counts for as long as its stream.
struct CallGuard(Arc<Calls>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let calls = &self.0;
        let ms = u64::try_from(calls.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        // The time first, so that whoever sees no call open sees when the last one ended.
        calls.idle_since_ms.fetch_max(ms, Ordering::AcqRel);
        calls.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A gRPC answer's body, holding its call open until it is done.
struct CountedBody {
    body: tonic::body::Body,
    _call: CallGuard,
}

impl hyper::body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, tonic::Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// tonic's generated gRPC service (`GrpcInferenceServiceServer`), as the HTTP/2 front
/// runs it: one clone per connection, its calls on any thread.
pub(crate) trait GrpcService:
    tower::Service<
        hyper::Request<Incoming>,
        Response = hyper::Response<tonic::body::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> GrpcService for S where
    S: tower::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The gRPC front's per-connection service: tonic's generated service, with the connection's
/// open calls counted and the client's `grpc-timeout` enforced until the answer's headers
/// (as tonic's own server did, but with gRPC's `DEADLINE_EXCEEDED` where tonic said
/// `CANCELLED`).
#[derive(Clone)]
struct Http2Service<S> {
    grpc: S,
    calls: Arc<Calls>,
}

impl<S> hyper::service::Service<hyper::Request<Incoming>> for Http2Service<S>
where
    S: GrpcService,
{
    type Response = hyper::Response<CountedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let call = self.calls.start();
        let deadline = request.headers().get("grpc-timeout").and_then(grpc_timeout);
        let answer = tower::ServiceExt::oneshot(self.grpc.clone(), request);
        Box::pin(async move {
            let response = match deadline {
                None => answer.await?,
                Some(limit) => match tokio::time::timeout(limit, answer).await {
                    Ok(response) => response?,
                    Err(_) => tonic::Status::deadline_exceeded(format!(
                        "the call's deadline (grpc-timeout {limit:?}) passed before its answer"
                    ))
                    .into_http(),
                },
            };
            Ok(response.map(|body| CountedBody { body, _call: call }))
        })
    }
}

/// A `grpc-timeout` header's duration (gRPC over HTTP/2: at most 8 digits and a unit of H, M,
/// S, m, u or n); `None` for a malformed one, which is ignored as tonic and grpc-go do.
fn grpc_timeout(value: &hyper::header::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Serves the gRPC front (HTTP/2, hyper) on `listener` until `stop` completes, then drains as
/// the REST front does: open calls finish (each connection gets GOAWAY), and what is still
/// open after the shutdown timeout is cut. A connection with no call open for the keep-alive
/// timeout gets GOAWAY and closes (nginx's `keepalive_timeout` for HTTP/2, grpc-go's
/// `MaxConnectionIdle`): an idle client's slot of `max_connections` comes back, and gRPC
/// clients reconnect on their next call.
pub(crate) async fn serve_grpc<S>(
    fronts: Fronts,
    listener: TcpListener,
    grpc: S,
    stop: impl Future<Output = ()>,
) where
    S: GrpcService,
{
    let limits = fronts.limits.clone();
    let kill = fronts.kill.clone();
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .keep_alive_interval(Some(limits.http2_keep_alive_interval))
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    accept_loop(&fronts, listener, stop, |accepted, mut closing| {
        let peer = accepted.peer;
        let io =
            Guarded::new(accepted, Protocol::Http2, Arc::new(Phase::new()), limits.clone(), &kill);
        let calls = Arc::new(Calls::new());
        let service = Http2Service { grpc: grpc.clone(), calls: calls.clone() };
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let idle_limit = limits.keep_alive_timeout;
        async move {
            tokio::pin!(connection);
            let mut check = Instant::now() + idle_limit;
            loop {
                tokio::select! {
                    result = connection.as_mut() => { log_connection_end(result); return; }
                    _ = closing.wait_for(|c| *c) => break,
                    () = tokio::time::sleep_until(check) => match calls.idle_deadline(idle_limit) {
                        Some(deadline) if deadline <= Instant::now() => {
                            tracing::debug!(%peer, "closing a gRPC connection: no call within {idle_limit:?}");
                            break;
                        }
                        Some(deadline) => check = deadline,
                        None => check = Instant::now() + idle_limit,
                    },
                }
            }
            // GOAWAY: calls open finish, none starts; the connection then closes.
            connection.as_mut().graceful_shutdown();
            log_connection_end(connection.await);
        }
    })
    .await;
}

/// Time a peer has to answer an HTTP/2 keep-alive ping before its connection is closed.
pub const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);
