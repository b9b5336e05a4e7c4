//! Prometheus metrics, through the `metrics` facade: the pool records them (names modelled on
//! Triton's: `thrum_inference_request_success`, `…_failure{reason}`, `…_count`, `…_exec_count`,
//! queue and compute durations, pending requests, batch sizes), and the server renders them at
//! `/metrics` with `metrics-exporter-prometheus`. A process installs one recorder: the first
//! server installs it; an application that embeds the pool with its own recorder keeps it.
//!
//! The exporter keeps every histogram sample in a lock-free bucket until an upkeep pass folds
//! it into the histogram's counts; rendering `/metrics` runs one, but a server that nobody
//! scrapes would grow by each request's samples forever. So the recorder installed here runs
//! its upkeep on a thread of its own every [`UPKEEP_INTERVAL`], whether or not anyone scrapes.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often pending histogram samples are folded into their histograms. At 20,000 requests/s
/// and 6 samples each, that holds at most a few MiB between passes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Installs thrum's Prometheus recorder for this process, unless one is installed already.
pub fn install() {
    HANDLE.get_or_init(|| {
        let seconds = [
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 0.5, 1.0, 2.5,
        ];
        let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &seconds)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full("thrum_inference_batch_size".into()), &batch)
            });
        let Ok(builder) = builder else { return None };
        let recorder = builder.upkeep_timeout(UPKEEP_INTERVAL).build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).ok().map(|()| {
            let upkeep = handle.clone();
            // A plain thread, not a task: the recorder may serve a process without a runtime
            // (an embedded pool), and upkeep must never wait behind busy async threads.
            let spawned = std::thread::Builder::new().name("thrum-metrics-upkeep".into()).spawn(
                move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                },
            );
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms grow until /metrics is scraped");
            }
            metrics::describe_counter!(
                "thrum_inference_request_success",
                "Requests answered with outputs"
            );
            metrics::describe_counter!(
                "thrum_inference_request_failure",
                "Requests answered with an error after admission, or refused (reason)"
            );
            metrics::describe_counter!(
                "thrum_inference_count",
                "Samples inferred (a batch of 8 counts 8)"
            );
            metrics::describe_counter!("thrum_inference_exec_count", "Engine calls (a batch, or each pass of a padded batch)");
            metrics::describe_gauge!(
                "thrum_inference_pending_request_count",
                "Requests admitted and waiting for a worker: the queue depth to autoscale on"
            );
            metrics::describe_histogram!("thrum_inference_batch_size", "Samples per engine call");
            handle
        })
    });
}

/// The metrics in Prometheus' text format, if thrum's recorder is the process's.
pub fn render() -> Option<String> {
    HANDLE.get().and_then(|h| h.as_ref()).map(PrometheusHandle::render)
}
