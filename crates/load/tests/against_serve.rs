//! The load generator against a real `thrum serve` (in this process, 127.0.0.1, free ports):
//! every protocol (gRPC's stream included), closed and open loop, counts that agree with the server's statistics, and
//! the errors a user meets (nothing listening, not a v2 server, no such model, a batch the model
//! does not take).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::time::Duration;

use thrum_core::{Engine, ModelFormat, ModelSource, Options};
use thrum_load::{Distribution, InputData, Load, LoadError, LoadPlan, Measurement, Protocol};
use thrum_serve::{Batching, Listen, ModelPool, PoolConfig, ServedModel, Server};

/// The zoo's MLP on tract, served in this process on free ports of 127.0.0.1.
fn serve(config: PoolConfig) -> thrum_serve::Background {
    let graph = thrum_zoo::find("mlp").unwrap().build(thrum_zoo::DEFAULT_SEED);
    let source = ModelSource::memory("mlp", ModelFormat::ONNX, thrum_zoo::onnx::export(&graph));
    let model = thrum_tract::TractEngine.load(&source, &Options::default()).unwrap();
    let served = vec![ServedModel {
        name: "mlp".into(),
        platform: "thrum_tract".into(),
        text: None,
        image: None,
        content: None,
        pool: ModelPool::start("mlp", model, config).unwrap(),
    }];
    let listen = Listen {
        http_port: 0,
        grpc_port: Some(0),
        shutdown_grace: Duration::ZERO,
        ..Listen::default()
    };
    Server::new(served, listen).unwrap().spawn(1).unwrap()
}

fn plan(url: &str, protocol: Protocol, load: Load) -> LoadPlan {
    LoadPlan {
        url: url.into(),
        model: "mlp".into(),
        version: String::new(),
        protocol,
        streaming: false,
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
        request_timeout: Duration::from_secs(30),
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
    for (protocol, url, streaming) in [
        (Protocol::Http, &server.http(), false),
        (Protocol::HttpJson, &server.http(), false),
        (Protocol::Grpc, &server.grpc().unwrap(), false),
        (Protocol::Grpc, &server.grpc().unwrap(), true),
    ] {
        let mut plan = plan(url, protocol, Load::Concurrency(vec![1, 2]));
        plan.streaming = streaming;
        let report = run(&plan).unwrap();
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
    let body = ureq::get(&format!("http://{}/v2/models/mlp/stats", server.http()))
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
    let report = run(&plan(&server.http(), Protocol::Http, load)).unwrap();
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
    let report = run(&plan(&server.http(), Protocol::Http, load)).unwrap();
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
    let mut p = plan(&server.http(), Protocol::Http, Load::Concurrency(vec![2]));
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
    let e = run(&plan(&server.grpc().unwrap(), Protocol::Http, Load::Concurrency(vec![1])))
        .unwrap_err();
    assert!(matches!(e, LoadError::NotV2 { .. } | LoadError::Unreachable { .. }), "{e}");
    let mut p = plan(&server.http(), Protocol::Http, Load::Concurrency(vec![1]));
    p.model = "mpl".into();
    let e = run(&p).unwrap_err();
    assert!(
        e.to_string().contains("model `mpl`") && e.to_string().contains("the server serves: mlp"),
        "{e}"
    );
    let mut p = plan(&server.http(), Protocol::Http, Load::Concurrency(vec![1]));
    p.batch = 2;
    let e = run(&p).unwrap_err();
    assert!(e.to_string().contains("does not batch"), "{e}");
    let e = run(&plan("http://127.0.0.1:8080", Protocol::Http, Load::Concurrency(vec![1])))
        .unwrap_err();
    assert!(e.to_string().contains("without a scheme"), "{e}");
}

/// A v2 server written for the test: it answers the discovery calls with `inputs` as the
/// model's metadata, and never answers an inference (it keeps the connection and says nothing).
fn fake_v2(inputs: serde_json::Value) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let inputs = inputs.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).unwrap();
                    let answer = match path.as_str() {
                        "/v2" => serde_json::json!({"name": "fake", "version": "1", "extensions": ["binary_tensor_data"]}),
                        "/v2/models/m" => serde_json::json!({"name": "m", "versions": ["1"], "platform": "fake", "inputs": inputs, "outputs": []}),
                        "/v2/models/m/ready" => serde_json::json!({}),
                        // An inference: never answered.
                        _ => {
                            std::thread::sleep(Duration::from_secs(600));
                            return;
                        }
                    }
                    .to_string();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        answer.len()
                    );
                    writer.write_all(head.as_bytes()).unwrap();
                    writer.write_all(answer.as_bytes()).unwrap();
                }
            });
        }
    });
    addr
}

#[test]
fn a_server_that_stops_answering_fails_requests_by_their_timeout_and_the_step_ends() {
    let addr = fake_v2(serde_json::json!([{"name": "x", "datatype": "FP32", "shape": [1, 4]}]));
    let mut p = plan(&addr, Protocol::Http, Load::Concurrency(vec![2]));
    p.model = "m".into();
    p.request_timeout = Duration::from_millis(300);
    let start = std::time::Instant::now();
    let e = run(&p).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(20), "the step waited {:?}", start.elapsed());
    let text = e.to_string();
    assert!(
        matches!(e, LoadError::AllFailed { .. })
            && text.contains("timeout (no answer within 300 ms)"),
        "{text}"
    );
}

#[test]
fn a_model_whose_metadata_lists_no_inputs_is_refused_at_discovery() {
    let addr = fake_v2(serde_json::json!([]));
    let mut p = plan(&addr, Protocol::Http, Load::Concurrency(vec![1]));
    p.model = "m".into();
    let e = run(&p).unwrap_err();
    assert!(
        matches!(e, LoadError::Model { .. }) && e.to_string().contains("lists no inputs"),
        "{e}"
    );
}

#[test]
fn input_files_count_the_samples_they_hold() {
    let server =
        serve(PoolConfig::new(1).with_batching(Batching::new(4, Duration::from_micros(200))));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let files = |rows: usize| {
        Some(vec![(
            "input".to_string(),
            thrum_core::Tensor::zeros(thrum_core::DType::F32, &[rows, 64]).unwrap(),
        )])
    };
    let p = plan(&server.http(), Protocol::Http, Load::Concurrency(vec![1]));
    // Three samples per request, from the file: throughput counts three per request.
    let report = rt.block_on(thrum_load::run(&p, files(3), |_| {}, |_, _, _| {})).unwrap();
    let step = &report.steps[0];
    assert!(
        (step.throughput / (step.requests as f64 / step.seconds) - 3.0).abs() < 1e-9,
        "{step:?}"
    );
    // -b that disagrees with the files, and files past the model's max_batch_size.
    let mut q = p.clone();
    q.batch = 2;
    let e = rt.block_on(thrum_load::run(&q, files(3), |_| {}, |_, _, _| {})).unwrap_err();
    assert!(e.to_string().contains("-b 2 with input files holding 3 samples"), "{e}");
    let e = rt.block_on(thrum_load::run(&p, files(6), |_| {}, |_, _, _| {})).unwrap_err();
    assert!(e.to_string().contains("max_batch_size, 4"), "{e}");
    // A file whose shape the server does not take is refused before any request.
    let wrong = Some(vec![(
        "input".to_string(),
        thrum_core::Tensor::zeros(thrum_core::DType::F32, &[1, 63]).unwrap(),
    )]);
    let e = rt.block_on(thrum_load::run(&p, wrong, |_| {}, |_, _, _| {})).unwrap_err();
    assert!(e.to_string().contains("[1, 63]"), "{e}");
}
