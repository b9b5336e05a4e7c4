//! Running one load step and measuring it the way perf_analyzer does: a warm-up thrown away,
//! then measurement windows until the last three agree within the stability percentage (in
//! throughput and in average latency) or the window limit is reached, and the step reported
//! over those last windows, with the server's own statistics over the same time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::error::LoadError;
use crate::plan::{Distribution, Load, LoadPlan, Measurement};
use crate::target::{Outcome, ServerStats, Target, elapsed_us};

/// One step of the load.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Requests in flight.
    Concurrency(usize),
    /// Requests started per second.
    RequestRate(f64),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Concurrency(n) => write!(f, "concurrency {n}"),
            Step::RequestRate(r) => write!(f, "request rate {r}/s"),
        }
    }
}

/// What one window (or a merge of windows) saw.
#[derive(Clone)]
struct Window {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    retried: u64,
    /// Open loop: requests started later than scheduled (all callers were busy).
    delayed: u64,
    started: u64,
    elapsed: Duration,
}

impl Window {
    fn new() -> Window {
        Window {
            latency: Histogram::new_with_bounds(1, 600_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
            errors: BTreeMap::new(),
            retried: 0,
            delayed: 0,
            started: 0,
            elapsed: Duration::ZERO,
        }
    }

    fn add(&mut self, other: &Window) {
        let _ = self.latency.add(&other.latency);
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.retried += other.retried;
        self.delayed += other.delayed;
        self.started += other.started;
        self.elapsed += other.elapsed;
    }

    fn ok(&self) -> u64 {
        self.latency.len()
    }

    fn throughput(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Client latencies of a step, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    /// Mean.
    pub avg_us: f64,
    /// Percentiles.
    pub p50_us: u64,
    /// See `p50_us`.
    pub p90_us: u64,
    /// See `p50_us`.
    pub p95_us: u64,
    /// See `p50_us`.
    pub p99_us: u64,
}

/// The server's own split of its time per request over the step (the statistics extension).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ServerSplit {
    /// Successful requests the server counted.
    pub requests: u64,
    /// Samples it inferred.
    pub inferences: u64,
    /// Engine calls (batches).
    pub executions: u64,
    /// Mean µs per request in the queue, compute input, compute infer, compute output.
    pub queue_us: f64,
    /// See `queue_us`.
    pub compute_input_us: f64,
    /// See `queue_us`.
    pub compute_infer_us: f64,
    /// See `queue_us`.
    pub compute_output_us: f64,
}

/// One step's report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StepReport {
    /// The step.
    pub step: Step,
    /// Successful requests in the reported windows.
    pub requests: u64,
    /// Seconds the reported windows lasted.
    pub seconds: f64,
    /// Inferences (samples) per second: requests × batch / seconds.
    pub throughput: f64,
    /// Requests started per second (open loop: what the client achieved).
    pub request_rate: f64,
    /// Client-side latency.
    pub latency: Latency,
    /// Failed requests by status (`503`, `grpc:Unavailable`, `connection: …`).
    pub errors: BTreeMap<String, u64>,
    /// Requests sent again after a `Retry-After` (with `--retry`).
    pub retried: u64,
    /// Open loop: the fraction of requests that started late because every caller was busy.
    pub delayed_fraction: Option<f64>,
    /// The server's split of its time, when it reports statistics.
    pub server: Option<ServerSplit>,
    /// Whether the last windows agreed within the stability percentage.
    pub stable: bool,
    /// Windows measured (the warm-up not counted).
    pub windows: usize,
    /// Requests answered with outputs over the whole step, the warm-up and the windows not
    /// reported included: what the server's own success counter grew by.
    pub total_answered: u64,
    /// Requests that failed over the whole step (any status, any connection error).
    pub total_failed: u64,
}

/// The callers' shared state for one step.
struct Shared {
    window: Mutex<Window>,
    stop: AtomicBool,
    total_answered: AtomicU64,
    total_failed: AtomicU64,
}

impl Shared {
    fn record(&self, outcome: &Result<(Outcome, u64), String>, delayed: bool, retried: bool) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        w.started += 1;
        if delayed {
            w.delayed += 1;
        }
        if retried {
            w.retried += 1;
        }
        let total = if matches!(outcome, Ok((Outcome::Ok, _))) {
            &self.total_answered
        } else {
            &self.total_failed
        };
        total.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok((Outcome::Ok, us)) => {
                let _ = w.latency.record((*us).max(1));
            }
            Ok((Outcome::Failed { status, .. }, _)) => {
                *w.errors.entry(status.clone()).or_default() += 1
            }
            // `call` resends stale requests; one that reaches here was never sent.
            Ok((Outcome::Stale, _)) => {
                *w.errors
                    .entry("connection: closed by the server before sending".into())
                    .or_default() += 1
            }
            Err(reason) => *w.errors.entry(format!("connection: {reason}")).or_default() += 1,
        }
    }

    fn take(&self) -> Window {
        std::mem::replace(
            &mut *self.window.lock().unwrap_or_else(|p| p.into_inner()),
            Window::new(),
        )
    }
}

/// Sends once (and again after each `Retry-After` when `retry`), reconnecting after a
/// connection error. Returns the outcome and the latency of the last try.
async fn call(
    target: &Target,
    conn: &mut Option<crate::target::Connection>,
    retry: bool,
    timeout: Duration,
    shared: &Shared,
) -> (Result<(Outcome, u64), String>, bool) {
    let mut retried = false;
    let mut last_us = 0;
    let mut stale = 0;
    for _ in 0..10 {
        if conn.is_none() {
            match target.connect_caller().await {
                Ok(c) => *conn = Some(c),
                Err(e) => return (Err(e.to_string()), retried),
            }
        }
        let Some(c) = conn.as_mut() else { unreachable!() };
        let start = Instant::now();
        let outcome = match tokio::time::timeout(timeout, target.send(c)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                // The answer may still come: the connection is out of step, so it goes.
                *conn = None;
                Ok(Outcome::Failed {
                    status: format!("timeout (no answer within {} ms)", timeout.as_millis()),
                    retry_after: None,
                })
            }
        };
        let us = elapsed_us(start);
        last_us = us;
        match outcome {
            Ok(Outcome::Failed { status, retry_after: Some(wait) })
                if retry
                    && (status == "503" || status == "429")
                    && !shared.stop.load(Ordering::Relaxed) =>
            {
                retried = true;
                tokio::time::sleep(wait.min(Duration::from_secs(10))).await;
            }
            // A keep-alive connection the server had closed: once, reconnect and send.
            Ok(Outcome::Stale) if stale == 0 => {
                stale += 1;
                *conn = None;
            }
            Ok(Outcome::Stale) => {
                *conn = None;
                return (
                    Err("the server closed every new connection before a request".into()),
                    retried,
                );
            }
            Ok(o) => return (Ok((o, us)), retried),
            Err(e) => {
                *conn = None;
                return (Err(e), retried);
            }
        }
    }
    (
        Ok((
            Outcome::Failed { status: "503 (retried 10 times)".into(), retry_after: None },
            last_us,
        )),
        retried,
    )
}

/// How far behind its schedule an open-loop request may start before it counts as delayed.
const LATE: Duration = Duration::from_millis(10);

/// Starts the callers of `step`; they run until `shared.stop`.
fn start_callers(
    target: &Arc<Target>,
    plan: &LoadPlan,
    step: Step,
    shared: &Arc<Shared>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (retry, timeout) = (plan.retry, plan.request_timeout);
    match (step, &plan.load) {
        (Step::Concurrency(n), _) => (0..n)
            .map(|_| {
                let (target, shared) = (target.clone(), shared.clone());
                tokio::spawn(async move {
                    let mut conn = None;
                    while !shared.stop.load(Ordering::Relaxed) {
                        let (outcome, retried) =
                            call(&target, &mut conn, retry, timeout, &shared).await;
                        if outcome.is_err() {
                            // A server that refuses connections is not hammered in a tight loop.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        shared.record(&outcome, false, retried);
                    }
                })
            })
            .collect(),
        (Step::RequestRate(rate), Load::RequestRate { distribution, max_in_flight, .. }) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<bool>(1);
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            // Callers waiting for a request; none free at a request's time means it is delayed.
            let free = Arc::new(AtomicUsize::new(*max_in_flight));
            let mut handles: Vec<tokio::task::JoinHandle<()>> = (0..*max_in_flight)
                .map(|_| {
                    let (target, shared, rx, free) =
                        (target.clone(), shared.clone(), rx.clone(), free.clone());
                    tokio::spawn(async move {
                        let mut conn = None;
                        loop {
                            let delayed = match rx.lock().await.recv().await {
                                Some(d) => d,
                                None => break,
                            };
                            free.fetch_sub(1, Ordering::AcqRel);
                            let (outcome, retried) =
                                call(&target, &mut conn, retry, timeout, &shared).await;
                            free.fetch_add(1, Ordering::AcqRel);
                            shared.record(&outcome, delayed, retried);
                        }
                    })
                })
                .collect();
            let (shared_d, distribution) = (shared.clone(), *distribution);
            handles.push(tokio::spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(7);
                let start = tokio::time::Instant::now();
                let mut due = Duration::ZERO;
                while !shared_d.stop.load(Ordering::Relaxed) {
                    let gap = match distribution {
                        Distribution::Constant => 1.0 / rate,
                        Distribution::Poisson => {
                            let u = ((rng.next_u32() >> 8) as f64 + 0.5) / (1u32 << 24) as f64;
                            -u.ln() / rate
                        }
                    };
                    due += Duration::from_secs_f64(gap);
                    tokio::time::sleep_until(start + due).await;
                    // Delayed: every caller was busy at its time, or the client's own scheduler
                    // fell behind by more than LATE (timers have millisecond granularity, so
                    // being a millisecond late is not yet a client limit).
                    let delayed = free.load(Ordering::Acquire) == 0 || start.elapsed() > due + LATE;
                    if tx.send(delayed).await.is_err() {
                        break;
                    }
                }
            }));
            handles
        }
        (Step::RequestRate(_), Load::Concurrency(_)) => Vec::new(),
    }
}

/// Waits out one window: its time, or its request count (bounded by ten times the window time,
/// or a minute, whichever is set).
async fn window(m: &Measurement, shared: &Shared) {
    match (m.window_requests, m.window) {
        (Some(count), bound) => {
            let deadline = Instant::now() + bound.map_or(Duration::from_secs(60), |w| w * 10);
            while Instant::now() < deadline {
                let done = {
                    let w = shared.window.lock().unwrap_or_else(|p| p.into_inner());
                    w.ok() + w.errors.values().sum::<u64>()
                };
                if done >= count {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        (None, window) => tokio::time::sleep(window.unwrap_or(Duration::from_secs(5))).await,
    }
}

fn within(values: &[f64], fraction: f64) -> bool {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    mean > 0.0 && values.iter().all(|v| (v - mean).abs() <= fraction * mean)
}

/// Runs one step and reports it. `on_window` sees each window's throughput (for progress).
pub async fn run_step(
    target: &Arc<Target>,
    plan: &LoadPlan,
    step: Step,
    mut on_window: impl FnMut(usize, f64),
) -> Result<StepReport, LoadError> {
    let m = &plan.measurement;
    let shared = Arc::new(Shared {
        window: Mutex::new(Window::new()),
        stop: AtomicBool::new(false),
        total_answered: AtomicU64::new(0),
        total_failed: AtomicU64::new(0),
    });
    let callers = start_callers(target, plan, step, &shared);
    tokio::time::sleep(m.warmup).await;
    shared.take();
    let mut windows: Vec<(Window, Option<ServerStats>)> = Vec::new();
    // Each window's client counts are cut right after the server's statistics arrive, so the
    // client's and the server's windows are offset by the same half round trip at both ends.
    let mut server_before = target.stats().await;
    shared.take();
    let mut began = Instant::now();
    let mut stable = false;
    while windows.len() < m.max_windows.max(m.stable_windows) {
        window(m, &shared).await;
        let server_now = target.stats().await;
        let mut w = shared.take();
        let now = Instant::now();
        w.elapsed = now - began;
        began = now;
        let delta = match (server_now, server_before) {
            (Some(now), Some(before)) => Some(now.since(&before)),
            _ => None,
        };
        server_before = server_now;
        on_window(windows.len() + 1, w.throughput());
        windows.push((w, delta));
        if windows.len() >= m.stable_windows {
            let last = &windows[windows.len() - m.stable_windows..];
            let tputs: Vec<f64> = last.iter().map(|(w, _)| w.throughput()).collect();
            let lats: Vec<f64> = last.iter().map(|(w, _)| w.latency.mean()).collect();
            if within(&tputs, m.stability) && within(&lats, m.stability) {
                stable = true;
                break;
            }
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    // Callers finish the request in flight, which its timeout bounds; one still running after
    // that (a retry's wait, a stuck connect) is aborted, so that nothing of this step loads
    // the server during the next one.
    let deadline = tokio::time::Instant::now() + plan.request_timeout + Duration::from_secs(5);
    for mut c in callers {
        if tokio::time::timeout_at(deadline, &mut c).await.is_err() {
            c.abort();
        }
    }
    let last = &windows[windows.len().saturating_sub(m.stable_windows)..];
    let mut merged = Window::new();
    let mut server = ServerStats::default();
    let mut server_known = true;
    for (w, s) in last {
        merged.add(w);
        match s {
            Some(s) => {
                server.success += s.success;
                server.fail += s.fail;
                server.inferences += s.inferences;
                server.executions += s.executions;
                server.queue_ns += s.queue_ns;
                server.compute_input_ns += s.compute_input_ns;
                server.compute_infer_ns += s.compute_infer_ns;
                server.compute_output_ns += s.compute_output_ns;
                server.timed += s.timed;
            }
            None => server_known = false,
        }
    }
    if merged.ok() == 0 {
        let reason = if merged.errors.is_empty() {
            "no request finished within the windows".to_string()
        } else {
            merged.errors.iter().map(|(k, v)| format!("{v} × {k}")).collect::<Vec<_>>().join(", ")
        };
        return Err(LoadError::AllFailed { step: step.to_string(), reason });
    }
    let seconds = merged.elapsed.as_secs_f64().max(1e-9);
    let per =
        |ns: u64| if server.timed == 0 { 0.0 } else { ns as f64 / server.timed as f64 / 1000.0 };
    let h = &merged.latency;
    Ok(StepReport {
        step,
        requests: merged.ok(),
        seconds,
        throughput: merged.ok() as f64 * target.batch as f64 / seconds,
        request_rate: merged.started as f64 / seconds,
        latency: Latency {
            avg_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
        },
        errors: merged.errors.clone(),
        retried: merged.retried,
        delayed_fraction: matches!(step, Step::RequestRate(_))
            .then(|| merged.delayed as f64 / merged.started.max(1) as f64),
        server: (server_known && target.statistics).then(|| ServerSplit {
            requests: server.success,
            inferences: server.inferences,
            executions: server.executions,
            queue_us: per(server.queue_ns),
            compute_input_us: per(server.compute_input_ns),
            compute_infer_us: per(server.compute_infer_ns),
            compute_output_us: per(server.compute_output_ns),
        }),
        stable,
        windows: windows.len(),
        total_answered: shared.total_answered.load(Ordering::Relaxed),
        total_failed: shared.total_failed.load(Ordering::Relaxed),
    })
}

/// Every step of the plan.
pub fn steps(plan: &LoadPlan) -> Vec<Step> {
    match &plan.load {
        Load::Concurrency(levels) => levels.iter().map(|&n| Step::Concurrency(n)).collect(),
        Load::RequestRate { rates, .. } => rates.iter().map(|&r| Step::RequestRate(r)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stability_is_within_a_fraction_of_the_mean() {
        assert!(within(&[100.0, 105.0, 95.0], 0.10));
        assert!(!within(&[100.0, 130.0, 95.0], 0.10));
        assert!(!within(&[0.0, 0.0, 0.0], 0.10));
    }
}
