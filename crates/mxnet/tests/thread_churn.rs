//! libmxnet keeps about 5 MiB of state for every OS thread that runs a cached op, until the
//! process exits. The thread-safe predictor runs its calls on a fixed pool of thrum threads, so
//! threads that come and go calling it leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::Options;
use thrum_testkit::rss_bytes;

const THREADS: usize = 32;

#[test]
fn threads_that_come_and_go_on_the_thread_safe_predictor_leave_nothing_behind() {
    thrum_testkit::require_engine!("mxnet");
    let (_dir, model) = common::mxnet("mlp", &Options::default());
    let shared = model.shared_predictor().unwrap();
    let input = thrum_zoo::sample_inputs(model.inputs(), 1, 3).unwrap();
    let want = shared.predict(input.clone()).unwrap();
    // Every pool thread has run once: its state exists before the first measurement.
    let pool = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..4 * pool {
        shared.predict(input.clone()).unwrap();
    }
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let before = rss_bytes();
    for _ in 0..THREADS {
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..3 {
                    let got = shared.predict(input.clone()).unwrap();
                    assert!(got[0].bit_eq(&want[0]));
                }
            });
        });
    }
    let growth = mib(rss_bytes().saturating_sub(before));
    eprintln!(
        "{THREADS} threads, one after another, 3 calls each: RSS +{growth:.1} MiB \
         (calling MXNet from each of them directly: about +{} MiB)",
        5 * THREADS
    );
    // Each thread calling libmxnet itself would add ~5 MiB: 160 MiB for 32 threads.
    assert!(growth < 16.0, "RSS grew {growth:.1} MiB over {THREADS} short-lived threads");
}
