//! The load generator against a real `thrum serve` (in this process, 127.0.0.1, free ports):
//! every protocol, closed and open loop, counts that agree with the server's statistics, and
//! the errors a user meets (nothing listening, not a v2 server, no such model, a batch the model
//! does not take).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::time::Duration;

use thrum_core::{Engine, ModelFormat, ModelSource, Options};
use thrum_load::{Distribution, InputData, Load, LoadError, LoadPlan, Measurement, Protocol};
use thrum_serve::{Batching, Listen, ModelPool, PoolConfig, ServedModel, Server};

struct Running {
    http: String,
    grpc: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(|t| t.join());
    }
}

fn serve(config: PoolConfig) -> Running {
    let graph = thrum_zoo::find("mlp").unwrap().build(thrum_zoo::DEFAULT_SEED);
    let source = ModelSource::memory("mlp", ModelFormat::ONNX, thrum_zoo::onnx::export(&graph));
    let model = thrum_tract::TractEngine.load(&source, &Options::default()).unwrap();
    let served = vec![ServedModel {
        name: "mlp".into(),
        platform: "thrum_tract".into(),
        pool: ModelPool::start("mlp", model, config).unwrap(),
    }];
    let listen = Listen {
        http_port: 0,
        grpc_port: Some(0),
        shutdown_grace: Duration::ZERO,
        ..Listen::default()
    };
    let server = Server::new(served, listen).unwrap();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(server.run(
            async move {
                let _ = stop_rx.await;
            },
            move |b| tx.send(b).unwrap(),
        ))
        .unwrap();
    });
    let bound = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    Running {
        http: bound.http.to_string(),
        grpc: bound.grpc.unwrap().to_string(),
        stop: Some(stop),
        thread: Some(thread),
    }
}

fn plan(url: &str, protocol: Protocol, load: Load) -> LoadPlan {
    LoadPlan {
        url: url.into(),
        model: "mlp".into(),
        version: String::new(),
        protocol,
        load,
        batch: 1,
        inputs: InputData::Random { seed: 1 },
        shapes: Vec::new(),
        measurement: Measurement {
            window: Some(Duration::from_millis(300)),
            window_requests: None,
            stability: 0.5,
            stable_windows: 3,
            max_windows: 4,
            warmup: Duration::from_millis(100),
        },
        retry: false,
        progress: false,
    }
}

fn run(plan: &LoadPlan) -> Result<thrum_load::LoadReport, LoadError> {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(thrum_load::run(plan, None, |_| {}, |_, _, _| {}))
}

#[test]
fn every_protocol_measures_and_agrees_with_the_server_statistics() {
    let server = serve(PoolConfig::new(1));
    let mut answered = 0;
    for (protocol, url) in [
        (Protocol::Http, &server.http),
        (Protocol::HttpJson, &server.http),
        (Protocol::Grpc, &server.grpc),
    ] {
        let report = run(&plan(url, protocol, Load::Concurrency(vec![1, 2]))).unwrap();
        answered += report.steps.iter().map(|s| s.total_answered).sum::<u64>();
        assert!(report.server_statistics);
        for step in &report.steps {
            assert!(step.requests > 0 && step.errors.is_empty(), "{protocol} {step:?}");
            assert!(step.latency.p50_us <= step.latency.p99_us, "{step:?}");
            let server = step.server.expect("the server reports statistics");
            // The windows' edges cut through requests in flight, and the server's snapshot is
            // taken half a round trip before the client cuts its window; on a loaded machine
            // (the whole test suite on two cores) that round trip varies by tens of ms, so the
            // windows agree to within 10 %. The whole runs agree exactly (below).
            let slack = match step.step {
                thrum_load::Step::Concurrency(n) => n as u64,
                _ => 0,
            } + 1
                + step.requests / 10;
            assert!(
                step.requests.abs_diff(server.requests) <= slack,
                "{protocol}: client {} vs server {}",
                step.requests,
                server.requests
            );
            assert!(server.compute_infer_us > 0.0, "{server:?}");
        }
        let csv = thrum_load::report::csv(&report);
        assert!(csv.starts_with("Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"), "{csv}");
        assert_eq!(csv.lines().count(), 3);
    }
    // Whole runs, warm-up included, agree exactly: every answer the client counted, the server
    // counted as a success, and nothing more.
    let body = ureq::get(&format!("http://{}/v2/models/mlp/stats", server.http))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["model_stats"][0]["inference_stats"]["success"]["count"], answered, "{stats}");
}

#[test]
fn open_loop_keeps_a_modest_rate_and_says_when_it_cannot() {
    let server = serve(PoolConfig::new(1));
    let load = Load::RequestRate {
        rates: vec![50.0],
        distribution: Distribution::Poisson,
        max_in_flight: 4,
    };
    let report = run(&plan(&server.http, Protocol::Http, load)).unwrap();
    let step = &report.steps[0];
    assert!((step.request_rate - 50.0).abs() < 20.0, "achieved {} of 50/s", step.request_rate);
    // A few sends late by more than 10 ms are a busy machine's stalls, not a loop that cannot
    // keep 50/s (that one is late on nearly every send, as the next run shows).
    assert!(step.delayed_fraction.unwrap() < 0.2, "{step:?}");
    // One caller cannot keep 100 000 requests a second: the report says so.
    let load = Load::RequestRate {
        rates: vec![100_000.0],
        distribution: Distribution::Constant,
        max_in_flight: 1,
    };
    let report = run(&plan(&server.http, Protocol::Http, load)).unwrap();
    let step = &report.steps[0];
    assert!(step.delayed_fraction.unwrap() > 0.5, "{step:?}");
    let mut text = Vec::new();
    thrum_load::report::write_step(step, 1, &mut text).unwrap();
    assert!(String::from_utf8(text).unwrap().contains("the client could not keep this rate"));
}

#[test]
fn batches_follow_the_models_max_batch_size() {
    let server =
        serve(PoolConfig::new(1).with_batching(Batching::new(4, Duration::from_micros(200))));
    let mut p = plan(&server.http, Protocol::Http, Load::Concurrency(vec![2]));
    p.batch = 4;
    let report = run(&p).unwrap();
    assert_eq!(report.max_batch_size, 4);
    let step = &report.steps[0];
    assert!(
        (step.throughput / (step.requests as f64 / step.seconds) - 4.0).abs() < 1e-9,
        "{step:?}"
    );
    p.batch = 8;
    let e = run(&p).unwrap_err();
    assert!(e.to_string().contains("at most the model's max_batch_size, 4"), "{e}");
}

#[test]
fn what_a_user_can_get_wrong_is_named() {
    let server = serve(PoolConfig::new(1));
    // Nothing listens on port 1.
    let e = run(&plan("127.0.0.1:1", Protocol::Http, Load::Concurrency(vec![1]))).unwrap_err();
    assert!(
        matches!(e, LoadError::Unreachable { .. })
            && e.to_string().contains("cannot reach 127.0.0.1:1"),
        "{e}"
    );
    // The gRPC port spoken to over HTTP/1.1 is not a v2 REST server.
    let e = run(&plan(&server.grpc, Protocol::Http, Load::Concurrency(vec![1]))).unwrap_err();
    assert!(matches!(e, LoadError::NotV2 { .. } | LoadError::Unreachable { .. }), "{e}");
    let mut p = plan(&server.http, Protocol::Http, Load::Concurrency(vec![1]));
    p.model = "mpl".into();
    let e = run(&p).unwrap_err();
    assert!(
        e.to_string().contains("model `mpl`") && e.to_string().contains("the server serves: mlp"),
        "{e}"
    );
    let mut p = plan(&server.http, Protocol::Http, Load::Concurrency(vec![1]));
    p.batch = 2;
    let e = run(&p).unwrap_err();
    assert!(e.to_string().contains("does not batch"), "{e}");
    let e = run(&plan("http://127.0.0.1:8080", Protocol::Http, Load::Concurrency(vec![1])))
        .unwrap_err();
    assert!(e.to_string().contains("without a scheme"), "{e}");
}
