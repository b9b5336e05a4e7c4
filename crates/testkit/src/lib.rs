//! # thrum-testkit
//!
//! What every engine's integration tests check the same way, in one place: whether the engine
//! is here to test ([`require_engine!`]), outputs compared with a relative tolerance,
//! predictors run from many threads against a sequential run, and RSS across a load/drop
//! loop. A dev-dependency of the engine crates and the CLI only.
// Test support: a failed step is a failed test, so panicking is the right report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::Command;

use thrum_core::{Model, Tensor};

/// The variable that makes a missing engine a test failure: engine names separated by commas,
/// or `all`. The test command sets it; a plain `cargo test` reports and skips what is missing.
pub const REQUIRE_VAR: &str = "THRUM_REQUIRE_ENGINES";

/// Whether `engine`'s tests must run here ([`REQUIRE_VAR`]).
pub fn engine_required(engine: &str) -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| {
        v.split(',').map(str::trim).any(|e| e.eq_ignore_ascii_case(engine) || e == "all")
    })
}

/// Whether `engine` (a name registered in this test binary) can run here. When it cannot, a
/// test that needs it fails if the engine is required ([`REQUIRE_VAR`]); otherwise this says
/// on stderr, past the test harness's capture, that the test was not run and why.
pub fn engine_under_test(engine: &str, test: &str) -> bool {
    let check = thrum_core::engine::info(engine).map(|info| (info.engine)().check());
    let reason = match &check {
        Ok(check) if check.available => return true,
        Ok(check) => check.detail.clone().unwrap_or_else(|| "not available".into()),
        Err(e) => e.to_string(),
    };
    if engine_required(engine) {
        panic!("{REQUIRE_VAR} requires engine `{engine}`, which cannot run here: {reason}");
    }
    // Written to the process's stderr directly: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "NOT TESTED: {test} needs engine `{engine}`: {reason} (set {REQUIRE_VAR}={engine} to make this a failure)"
    );
    false
}

/// Returns from the calling test, saying so, when `engine` cannot run here and is not required
/// (see [`engine_under_test`]); a required engine that is missing fails the test.
#[macro_export]
macro_rules! require_engine {
    ($engine:expr) => {
        if !$crate::engine_under_test($engine, module_path!()) {
            return;
        }
    };
}

/// Largest absolute difference relative to the largest magnitude of the reference:
/// `max |got − reference| / max |reference|`.
pub fn relative_difference(got: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(got.shape(), reference.shape(), "output shapes differ");
    let (g, r) = (got.to_f64_vec().unwrap(), reference.to_f64_vec().unwrap());
    let scale = r.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    g.iter().zip(&r).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / scale
}

/// Asserts that two engines' outputs agree: as many outputs, the same shapes, and each within
/// `tolerance` of the reference ([`relative_difference`]). `what` names the comparison.
pub fn assert_outputs_agree(got: &[Tensor], reference: &[Tensor], tolerance: f64, what: &str) {
    assert_eq!(
        got.len(),
        reference.len(),
        "{what}: {} outputs against {}",
        got.len(),
        reference.len()
    );
    for (k, (g, r)) in got.iter().zip(reference).enumerate() {
        assert_eq!(g.shape(), r.shape(), "{what}: output {k} shapes differ");
        let diff = relative_difference(g, r);
        assert!(
            diff <= tolerance,
            "{what}: output {k} differs by {diff:.2e} (tolerance {tolerance:.0e})"
        );
    }
}

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

const CHILD: &str = "THRUM_TEST_PINNED_MMAP_CHILD";

/// Unmeasured cycles before [`assert_rss_flat_over_load_drop`] measures.
pub const WARM_UP_CYCLES: usize = 50;

/// Loads, runs and drops a model `iterations` times (`cycle` does one) and asserts that RSS
/// stays within `tolerance` (0.10 = 10 %) of RSS after the first measured cycle.
///
/// [`WARM_UP_CYCLES`] unmeasured cycles come first: they settle one-time lazy initialisation
/// and the allocator's free lists (measured on tract's transformer: RSS rises 1.4 MiB over the
/// first ~50 cycles, then stays flat to 800; on a 28 MiB process that alone is 5 %).
///
/// The loop runs in a child process (this test binary re-run with `--exact test`) with
/// glibc's mmap threshold pinned (`MALLOC_MMAP_THRESHOLD_`, read only at process start).
/// Otherwise glibc raises the threshold after the first multi-megabyte weight buffers are
/// freed, serves later ones from the heap, and fragmentation keeps freed pages resident: RSS
/// would then measure the allocator's cache, not what the engine still holds.
pub fn assert_rss_flat_over_load_drop(
    test: &str,
    iterations: usize,
    tolerance: f64,
    mut cycle: impl FnMut(),
) {
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("MALLOC_MMAP_THRESHOLD_", "131072")
            // Freed heap tops go back to the OS at once, and one arena: RSS then follows what
            // is live instead of which thread's arena happened to keep free pages.
            .env("MALLOC_TRIM_THRESHOLD_", "0")
            .env("MALLOC_ARENA_MAX", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stderr}");
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child run failed:\n{stdout}\n{stderr}"
        );
        return;
    }
    for _ in 0..WARM_UP_CYCLES {
        cycle();
    }
    let (mut first, mut worst) = (0, 0);
    for i in 0..iterations {
        cycle();
        let rss = rss_bytes();
        if i == 0 {
            first = rss;
        }
        worst = worst.max(rss);
    }
    let ratio = worst as f64 / first as f64;
    eprintln!(
        "RSS after the first load/drop {} KiB, worst of {iterations} {} KiB ({ratio:.3}x)",
        first >> 10,
        worst >> 10
    );
    assert!(ratio <= 1.0 + tolerance, "RSS grew from {first} to {worst} bytes ({ratio:.3}x)");
}

/// Threads, and calls per thread, of [`assert_concurrent_runs_match_sequential`].
pub const THREADS: usize = 4;
/// Calls each thread makes.
pub const PER_THREAD: usize = 3;

/// Input `i` of the concurrency check: the zoo's deterministic sample inputs, batch 1.
pub fn sample(model: &Model, i: usize) -> Vec<Tensor> {
    thrum_zoo::sample_inputs(model.inputs(), 1, 1000 + i as u64).unwrap()
}

/// How the concurrent threads run the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Predictors {
    /// Each thread makes its own predictor.
    PerThread,
    /// Every thread calls one shared (thread-safe) predictor.
    Shared,
}

/// Runs [`THREADS`] threads of [`PER_THREAD`] calls each, and asserts every output is
/// bit-identical to a sequential run of the same inputs on one predictor.
pub fn assert_concurrent_runs_match_sequential(model: &Model, predictors: Predictors) {
    let expected: Vec<Vec<Tensor>> = {
        let mut predictor = model.predictor().unwrap();
        (0..THREADS * PER_THREAD).map(|i| predictor.predict(sample(model, i)).unwrap()).collect()
    };
    let shared = match predictors {
        Predictors::Shared => Some(model.shared_predictor().unwrap()),
        Predictors::PerThread => None,
    };
    let got: Vec<(usize, Vec<Tensor>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let shared = shared.as_ref();
                s.spawn(move || {
                    let mut own = match shared {
                        Some(_) => None,
                        None => Some(model.predictor().unwrap()),
                    };
                    (0..PER_THREAD)
                        .map(|k| {
                            let i = t * PER_THREAD + k;
                            let out = match (&mut own, shared) {
                                (Some(p), _) => p.predict(sample(model, i)),
                                (None, Some(shared)) => shared.predict(sample(model, i)),
                                (None, None) => unreachable!("one of the two is set"),
                            };
                            (i, out.unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got.len(), expected.len());
    for (i, outputs) in &got {
        for (a, b) in expected[*i].iter().zip(outputs) {
            assert!(a.bit_eq(b), "{predictors:?}: prediction {i} differs from the sequential run");
        }
    }
}
