//! The worker pool as a library: batching merges and splits, admission is bounded, timeouts
//! and disconnected callers are handled (before a request runs, held over or not), a bad
//! request fails alone, a panicking worker is replaced, a pool without workers says so, and
//! dropping a pool never blocks the async thread that drops it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::time::Duration;

use common::{Scripted, scripted, scripted_with, wait_until};
use thrum_core::{DType, Dim, Model, Tensor, TensorSpec};
use thrum_serve::{Batching, ModelPool, PoolConfig, ServeError};

fn input(rows: usize, value: f32) -> Vec<Tensor> {
    vec![Tensor::from_vec(vec![rows, 2], vec![value; rows * 2]).unwrap()]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn batching_merges_concurrent_requests_and_splits_the_outputs_back() {
    let probe = scripted(Duration::from_millis(30));
    let config = PoolConfig::new(1).with_batching(Batching::new(8, Duration::from_millis(20)));
    let pool = ModelPool::start("m", probe.model.clone(), config).unwrap();
    probe.batches.lock().unwrap().clear(); // the warm-up call
    let rt = runtime();
    let outputs = rt.block_on(async {
        let calls: Vec<_> = (0..6)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.submit(input(1 + i % 2, i as f32)).await })
            })
            .collect();
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap().unwrap());
        }
        out
    });
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(out[0].shape(), &[1 + i % 2, 2], "request {i} got another's share");
        assert!(
            out[0].as_slice::<f32>().unwrap().iter().all(|&v| v == 2.0 * i as f32),
            "request {i}"
        );
    }
    let batches = probe.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 9, "{batches:?}");
    assert!(batches.len() < 6, "no request was merged: {batches:?}");
    let stats = pool.stats();
    assert_eq!((stats.success.0, stats.inference_count), (6, 9));
    assert_eq!(stats.execution_count as usize, batches.len());
    assert_eq!(pool.pending(), 0, "a request held over for the next batch is still counted");
}

#[test]
fn a_request_held_over_for_the_next_batch_waits_there_counted_once() {
    let probe = scripted(Duration::ZERO);
    let config = PoolConfig::new(1).with_batching(Batching::new(3, Duration::ZERO));
    let pool = ModelPool::start("m", probe.model.clone(), config).unwrap();
    let warm = probe.calls();
    probe.batches.lock().unwrap().clear();
    let _closed = probe.gate.closed();
    let rt = runtime();
    rt.block_on(async {
        let submit = |rows: usize| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.submit(input(rows, rows as f32)).await })
        };
        let first = submit(1);
        wait_until("the worker takes the first request", || probe.calls() == warm + 1);
        // Two requests of two samples: they cannot share a batch of at most three, so the
        // second is held over for the next one.
        let (a, b) = (submit(2), submit(2));
        wait_until("both are queued", || pool.pending() == 2);
        probe.gate.open();
        for (call, rows) in [(first, 1), (a, 2), (b, 2)] {
            assert_eq!(call.await.unwrap().unwrap()[0].shape(), &[rows, 2]);
        }
    });
    assert_eq!(*probe.batches.lock().unwrap(), [1, 2, 2]);
    assert_eq!(pool.pending(), 0, "the held-over request is still counted as waiting");
}

#[test]
fn a_full_queue_refuses_at_once_with_a_retry_hint() {
    let probe = scripted(Duration::ZERO);
    let pool =
        ModelPool::start("m", probe.model.clone(), PoolConfig::new(1).with_queue_capacity(1))
            .unwrap();
    let warm = probe.calls();
    let _closed = probe.gate.closed(); // the worker holds the first request until the test opens the gate
    let rt = runtime();
    rt.block_on(async {
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.submit(input(1, 1.0)).await }
        });
        wait_until("the worker takes the first request", || probe.calls() == warm + 1);
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.submit(input(1, 2.0)).await }
        });
        wait_until("the second request is queued", || pool.pending() == 1);
        // The gate is shut: a refusal that waited for room would never come.
        let refused = tokio::time::timeout(Duration::from_secs(10), pool.submit(input(1, 3.0)))
            .await
            .expect("the refusal waited for room in the queue")
            .unwrap_err();
        assert!(matches!(refused, ServeError::QueueFull { .. }), "{refused}");
        assert_eq!((refused.http_status(), refused.retry_after().is_some()), (503, true));
        probe.gate.open();
        busy.await.unwrap().unwrap();
        queued.await.unwrap().unwrap();
    });
}

#[test]
fn a_request_whose_timeout_passes_in_the_queue_is_not_run() {
    let probe = scripted(Duration::ZERO);
    let pool = ModelPool::start("m", probe.model.clone(), PoolConfig::new(1)).unwrap();
    let calls_before = probe.calls();
    let _closed = probe.gate.closed();
    let rt = runtime();
    rt.block_on(async {
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.submit(input(1, 1.0)).await }
        });
        wait_until("the worker takes the first request", || probe.calls() == calls_before + 1);
        let late = tokio::spawn({
            let pool = pool.clone();
            async move { pool.submit_with_timeout(input(1, 2.0), Some(Duration::from_millis(10))).await }
        });
        wait_until("the second request is queued", || pool.pending() == 1);
        tokio::time::sleep(Duration::from_millis(20)).await; // its timeout passes in the queue
        probe.gate.open();
        let late = late.await.unwrap();
        assert!(matches!(late, Err(ServeError::Timeout { .. })), "{late:?}");
        busy.await.unwrap().unwrap();
    });
    assert_eq!(probe.calls() - calls_before, 1, "the expired request ran");
}

#[test]
fn a_caller_that_goes_away_frees_its_slot_unrun() {
    let probe = scripted(Duration::ZERO);
    let pool = ModelPool::start("m", probe.model.clone(), PoolConfig::new(1)).unwrap();
    let calls_before = probe.calls();
    let _closed = probe.gate.closed();
    let rt = runtime();
    rt.block_on(async {
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.submit(input(1, 1.0)).await }
        });
        wait_until("the worker takes the first request", || probe.calls() == calls_before + 1);
        // A caller that gives up (a client that disconnects drops its request the same way).
        let gone =
            tokio::time::timeout(Duration::from_millis(10), pool.submit(input(1, 2.0))).await;
        assert!(gone.is_err());
        probe.gate.open();
        busy.await.unwrap().unwrap();
        pool.submit(input(1, 3.0)).await.unwrap();
    });
    assert_eq!(probe.calls() - calls_before, 2, "the abandoned request ran");
    assert_eq!(pool.stats().cancelled, 1);
    assert_eq!(pool.pending(), 0);
}

#[test]
fn a_worker_that_panics_answers_500_and_keeps_serving() {
    let probe = scripted(Duration::ZERO);
    let pool = ModelPool::start("m", probe.model, PoolConfig::new(1)).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let e = pool.submit(input(1, -1.0)).await.unwrap_err();
        assert!(matches!(e, ServeError::WorkerPanicked { .. }) && e.http_status() == 500, "{e}");
        let out = pool.submit(input(1, 4.0)).await.unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[8.0, 8.0]);
    });
    assert_eq!(pool.stats().restarts, 1);
}

#[test]
fn bad_inputs_and_batches_are_refused_before_the_queue() {
    let probe = scripted(Duration::ZERO);
    let config = PoolConfig::new(1).with_batching(Batching::new(4, Duration::from_micros(100)));
    let pool = ModelPool::start("m", probe.model, config).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let e = pool.submit(input(5, 1.0)).await.unwrap_err();
        assert!(e.to_string().contains("at most max_batch_size = 4"), "{e}");
        let e = pool.submit(input(0, 1.0)).await.unwrap_err();
        assert!(e.to_string().contains("a batch of zero samples"), "{e}");
        let e = pool.submit(vec![Tensor::zeros(DType::I64, &[1, 2]).unwrap()]).await.unwrap_err();
        assert_eq!(e.http_status(), 400, "{e}");
    });
}

#[test]
fn shutdown_finishes_admitted_requests_then_refuses() {
    let probe = scripted(Duration::ZERO);
    let pool = ModelPool::start("m", probe.model.clone(), PoolConfig::new(1)).unwrap();
    let calls_before = probe.calls();
    let _closed = probe.gate.closed();
    let rt = runtime();
    rt.block_on(async {
        let admitted: Vec<_> = (0..4)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.submit(input(1, i as f32)).await })
            })
            .collect();
        wait_until("one request runs and three wait", || {
            probe.calls() == calls_before + 1 && pool.pending() == 3
        });
        let closer = pool.clone();
        let shutdown = tokio::task::spawn_blocking(move || closer.shutdown());
        wait_until("shutdown begins", || !pool.is_ready());
        let refused = pool.submit(input(1, 9.0)).await.unwrap_err();
        assert!(
            refused.to_string().contains("shutting down") && refused.http_status() == 503,
            "{refused}"
        );
        probe.gate.open();
        for a in admitted {
            a.await.unwrap().unwrap();
        }
        shutdown.await.unwrap();
    });
    assert_eq!(probe.calls() - calls_before, 4, "an admitted request was not run");
}

#[test]
fn batching_needs_a_batch_axis() {
    let model = common::zoo("mlp");
    let ok = PoolConfig::new(1).with_batching(Batching::new(4, Duration::ZERO));
    assert_eq!(ok.validate("mlp", &model).unwrap(), Some(0));
    let spec = |n: &str| TensorSpec::new(n, DType::F32, vec![Dim::Fixed(1), Dim::Fixed(2)]);
    let fixed = Model::new(
        "fixed",
        "scripted",
        Scripted {
            specs: vec![spec("x"), spec("y")],
            delay: Duration::ZERO,
            gate: Default::default(),
            batches: Default::default(),
            calls: Default::default(),
            broken: Default::default(),
        },
    );
    let e = ok.validate("fixed", &fixed).unwrap_err().to_string();
    assert!(e.contains("dynamic batch axis") && e.contains("x [1,2]"), "{e}");
}

type Answer = Result<Vec<Tensor>, ServeError>;

/// Two requests' worth of batching: one worker takes the first batch and holds it at the gate;
/// then `a` and `b` are submitted, in that order, by one task: the second worker's batch takes
/// `a` and holds `b` over (they cannot share a batch of at most three samples). `b` has
/// `timeout`, and its caller gives up after `give_up` (`None`: a timeout answer). Returns once
/// `b` is held.
fn hold_one_over(
    probe: &common::Probe,
    pool: &ModelPool,
    rt: &tokio::runtime::Runtime,
    timeout: Option<Duration>,
    give_up: Option<Duration>,
) -> (tokio::task::JoinHandle<Answer>, tokio::task::JoinHandle<(Answer, Option<Answer>)>) {
    let warm = probe.calls();
    probe.batches.lock().unwrap().clear();
    probe.gate.close();
    let first = rt.spawn({
        let pool = pool.clone();
        async move { pool.submit(input(3, 3.0)).await }
    });
    wait_until("a worker takes the first batch", || probe.calls() == warm + 1);
    let pair = rt.spawn({
        let pool = pool.clone();
        async move {
            let a = pool.submit(input(2, 2.0));
            let b = pool.submit_with_timeout(input(2, 5.0), timeout);
            let b = async move {
                match give_up {
                    Some(after) => tokio::time::timeout(after, b).await.ok(),
                    None => Some(b.await),
                }
            };
            // `join!` polls `a` first: it is queued before `b`.
            tokio::join!(a, b)
        }
    });
    wait_until("the other worker runs a, and b is held over", || {
        probe.calls() == warm + 2 && pool.pending() == 1
    });
    (first, pair)
}

#[test]
fn a_held_over_request_whose_caller_left_is_dropped_unrun() {
    let probe = scripted(Duration::ZERO);
    let config = PoolConfig::new(2).with_batching(Batching::new(3, Duration::from_millis(500)));
    let pool = ModelPool::start("m", probe.model.clone(), config).unwrap();
    let rt = runtime();
    let _closed = probe.gate.closed();
    let (first, pair) = hold_one_over(&probe, &pool, &rt, None, Some(Duration::from_millis(200)));
    std::thread::sleep(Duration::from_millis(400)); // b's caller gives up while it is held
    probe.gate.open();
    rt.block_on(first).unwrap().unwrap();
    let (a, b) = rt.block_on(pair).unwrap();
    assert_eq!(a.unwrap()[0].shape(), &[2, 2]);
    assert!(b.is_none(), "the caller that gave up got an answer");
    wait_until("nothing waits", || pool.pending() == 0);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(*probe.batches.lock().unwrap(), [3, 2], "the abandoned request ran");
    assert_eq!(pool.stats().cancelled, 1);
}

#[test]
fn a_held_over_request_whose_timeout_passed_is_answered_unrun() {
    let probe = scripted(Duration::ZERO);
    let config = PoolConfig::new(2).with_batching(Batching::new(3, Duration::from_millis(500)));
    let pool = ModelPool::start("m", probe.model.clone(), config).unwrap();
    let rt = runtime();
    let _closed = probe.gate.closed();
    let (first, pair) = hold_one_over(&probe, &pool, &rt, Some(Duration::from_millis(100)), None);
    std::thread::sleep(Duration::from_millis(200)); // its timeout passes while it is held
    probe.gate.open();
    rt.block_on(first).unwrap().unwrap();
    let (a, b) = rt.block_on(pair).unwrap();
    a.unwrap();
    let late = b.unwrap();
    assert!(matches!(late, Err(ServeError::Timeout { .. })), "{late:?}");
    assert_eq!(*probe.batches.lock().unwrap(), [3, 2], "the expired request ran");
    assert_eq!(pool.pending(), 0);
}

#[test]
fn a_request_whose_inputs_disagree_on_the_batch_axis_fails_alone() {
    // Two inputs whose batch dimensions have no name: nothing ties them but the batch axis.
    let spec = |n: &str| TensorSpec::new(n, DType::F32, vec![Dim::Dynamic(None), Dim::Fixed(2)]);
    let probe = scripted_with(vec![spec("x"), spec("z"), spec("y")], Duration::ZERO);
    let config = PoolConfig::new(1).with_batching(Batching::new(8, Duration::from_millis(100)));
    let pool = ModelPool::start("m", probe.model.clone(), config).unwrap();
    let pair = |x: usize, z: usize| {
        vec![
            Tensor::from_vec(vec![x, 2], vec![1.0f32; x * 2]).unwrap(),
            Tensor::from_vec(vec![z, 2], vec![1.0f32; z * 2]).unwrap(),
        ]
    };
    let rt = runtime();
    rt.block_on(async {
        let good = tokio::spawn({
            let pool = pool.clone();
            let inputs = pair(2, 2);
            async move { pool.submit(inputs).await }
        });
        let bad = pool.submit(pair(1, 3)).await.unwrap_err();
        assert_eq!(bad.http_status(), 400, "{bad}");
        let text = bad.to_string();
        assert!(text.contains("`z` holds 3 samples") && text.contains("`x` holds 1"), "{text}");
        let good = good.await.unwrap().unwrap();
        assert_eq!(good[0].shape(), &[2, 2]);
    });
    assert_eq!(pool.stats().fail.0, 0, "the bad request reached a batch");
}

#[test]
fn a_pool_whose_workers_cannot_replace_their_predictor_is_not_ready() {
    let probe = scripted(Duration::ZERO);
    let pool = ModelPool::start("m", probe.model.clone(), PoolConfig::new(1)).unwrap();
    assert!(pool.is_ready() && pool.live_workers() == 1);
    probe.broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let rt = runtime();
    rt.block_on(async {
        let e = pool.submit(input(1, -1.0)).await.unwrap_err();
        assert!(matches!(e, ServeError::WorkerPanicked { .. }), "{e}");
        wait_until("the worker stops", || pool.live_workers() == 0);
        assert!(!pool.is_ready());
        let why = pool.not_ready().unwrap();
        assert!(why.contains("no worker is left"), "{why}");
        let refused = pool.submit(input(1, 1.0)).await.unwrap_err();
        assert_eq!(refused.http_status(), 503, "{refused}");
        assert!(refused.to_string().contains("no worker is left"), "{refused}");
    });
}

#[test]
fn dropping_the_last_pool_on_an_async_thread_does_not_block_it() {
    let probe = scripted(Duration::ZERO);
    let pool = ModelPool::start("m", probe.model.clone(), PoolConfig::new(1)).unwrap();
    let warm = probe.calls();
    let _closed = probe.gate.closed();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let running = rt.spawn({
        let pool = pool.clone();
        async move { pool.submit(input(1, 1.0)).await }
    });
    // Runs the submit until the worker holds it, then drops the pool on the runtime's one
    // thread: joining the worker there would block that thread until the gate opens.
    rt.block_on(async {
        while probe.calls() == warm {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let start = std::time::Instant::now();
        drop(pool);
        assert!(start.elapsed() < Duration::from_secs(1), "the drop waited for the worker");
    });
    probe.gate.open();
    // The admitted request is still answered.
    rt.block_on(running).unwrap().unwrap();
}

/// With a token budget of `max_batch_tokens`: a request of 2 tokens holds the one worker
/// while four more of `lengths` (tokens, value) queue in order; then all run. Checks that each
/// answer is cut back to its own length and carries its own values; returns the pool and the
/// samples of each engine call after the warm-up.
fn run_padded(max_batch_tokens: usize, lengths: [(usize, f32); 4]) -> (ModelPool, Vec<usize>) {
    // x, y: [N, L] with L dynamic, as a text model's tokens are.
    let spec =
        |name: &str| TensorSpec::new(name, DType::F32, vec![Dim::named("N"), Dim::named("L")]);
    let probe = scripted_with(vec![spec("x"), spec("y")], Duration::ZERO);
    let batching = Batching::new(8, Duration::from_millis(300)).with_padding(1, max_batch_tokens);
    let pool =
        ModelPool::start("m", probe.model.clone(), PoolConfig::new(1).with_batching(batching))
            .unwrap();
    let rt = runtime();
    let _closed = probe.gate.closed();
    let warm = probe.calls();
    probe.batches.lock().unwrap().clear();
    let row =
        |len: usize, value: f32| vec![Tensor::from_vec(vec![1, len], vec![value; len]).unwrap()];
    let first = rt.spawn({
        let pool = pool.clone();
        async move { pool.submit(row(2, 9.0)).await }
    });
    wait_until("the worker takes the first request", || probe.calls() == warm + 1);
    let rest = rt.spawn({
        let pool = pool.clone();
        // One task, polled in order: the queue holds them in this order.
        async move {
            futures_util::future::join_all(lengths.map(|(len, v)| pool.submit(row(len, v)))).await
        }
    });
    wait_until("the four wait", || pool.pending() == 4);
    probe.gate.open();
    assert_eq!(rt.block_on(first).unwrap().unwrap()[0].shape(), &[1, 2]);
    for ((len, v), out) in lengths.iter().zip(rt.block_on(rest).unwrap()) {
        let out = out.unwrap();
        assert_eq!(out[0].shape(), &[1, *len], "cut back to its own length");
        assert!(out[0].as_slice::<f32>().unwrap().iter().all(|&x| x == 2.0 * v), "{out:?}");
    }
    assert_eq!(pool.pending(), 0);
    let batches = probe.batches.lock().unwrap().clone();
    (pool, batches)
}

#[test]
fn requests_of_different_lengths_join_by_padding_within_the_token_budget() {
    let (_, batches) = run_padded(6, [(1, 1.0), (3, 2.0), (2, 3.0), (3, 4.0)]);
    // 1 + 3 tokens join (2 × 3 = 6 padded positions); the 2 would make 3 × 3 = 9 > 6 and
    // starts the next batch, which the last 3 joins (2 × 3 = 6).
    assert_eq!(batches, [1, 2, 2]);
}

#[test]
fn a_padded_batch_of_very_different_lengths_runs_in_passes_of_similar_lengths() {
    let (pool, batches) = run_padded(1000, [(2, 1.0), (20, 2.0), (2, 3.0), (3, 4.0)]);
    // The four join one batch (4 × 20 = 80 padded positions, within 1,000), which runs as two
    // passes: 2, 2 and 3 padded to 3, then the 20 alone (3 × 3 + 20 = 29 positions and a
    // second pass, against 80 in one).
    assert_eq!(batches, [1, 3, 1]);
    let stats = pool.stats();
    assert_eq!((stats.inference_count, stats.execution_count), (5, 3));
}

#[test]
fn padding_needs_a_dynamic_axis_and_a_token_budget() {
    let probe = scripted(Duration::ZERO); // x: [N, 2], fixed along axis 1
    let batching = Batching::new(8, Duration::ZERO).with_padding(1, 64);
    let err =
        ModelPool::start("m", probe.model.clone(), PoolConfig::new(1).with_batching(batching))
            .unwrap_err()
            .to_string();
    assert!(err.contains("axis 1") && err.contains("`x`"), "{err}");
    let zero = Batching::new(8, Duration::ZERO).with_padding(0, 0);
    let err = ModelPool::start("m", probe.model, PoolConfig::new(1).with_batching(zero))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_batch_tokens 0"), "{err}");
}

#[test]
fn a_request_whose_inputs_disagree_along_the_padding_axis_fails_alone() {
    // x, z: [N, L] with unnamed L, so that nothing but the padding ties them.
    let spec =
        |name: &str| TensorSpec::new(name, DType::F32, vec![Dim::named("N"), Dim::named("")]);
    let probe = scripted_with(vec![spec("x"), spec("z"), spec("y")], Duration::ZERO);
    let batching = Batching::new(8, Duration::ZERO).with_padding(1, 64);
    let pool =
        ModelPool::start("m", probe.model.clone(), PoolConfig::new(1).with_batching(batching))
            .unwrap();
    let rt = runtime();
    let t = |len: usize| Tensor::from_vec(vec![1, len], vec![1.0f32; len]).unwrap();
    let err = rt.block_on(pool.submit(vec![t(3), t(2)])).unwrap_err().to_string();
    assert!(err.contains("input `z` is 2 long along axis 1") && err.contains("`x` is 3"), "{err}");
    let ok = rt.block_on(pool.submit(vec![t(2), t(2)])).unwrap();
    assert_eq!(ok[0].shape(), &[1, 2]);
}
