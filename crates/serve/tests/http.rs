//! The REST front against a real server on 127.0.0.1: the v2 surface, the binary tensor data
//! extension, the Triton extensions, and every bad input answered with the right status and an
//! error naming the field, while other requests are unaffected.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::io::Write;
use std::time::Duration;

use common::{get, post, post_json};
use serde_json::json;
use thrum_core::Tensor;
use thrum_serve::{Batching, Listen, PoolConfig};
use thrum_testkit::assert_outputs_agree;

fn mlp_input(rows: usize) -> Vec<f32> {
    (0..rows * 64).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect()
}

/// The reference: the same model run in-process.
fn reference(rows: usize) -> Vec<f32> {
    let model = common::zoo("mlp");
    let x = Tensor::from_vec(vec![rows, 64], mlp_input(rows)).unwrap();
    model.predictor().unwrap().predict(vec![x]).unwrap()[0].as_slice::<f32>().unwrap().to_vec()
}

#[test]
fn health_metadata_config_stats_and_index() {
    let server = common::serve("mlp", common::zoo("mlp"));
    assert_eq!(get(&server.url("/v2/health/live")).status, 200);
    assert_eq!(get(&server.url("/v2/health/ready")).status, 200);
    assert_eq!(get(&server.url("/v2/models/mlp/ready")).status, 200);
    assert_eq!(get(&server.url("/v2/models/mlp/versions/1/ready")).status, 200);
    let meta = get(&server.url("/v2")).json();
    assert_eq!(meta["name"], "thrum");
    assert!(meta["extensions"].as_array().unwrap().contains(&json!("binary_tensor_data")));
    let model = get(&server.url("/v2/models/mlp")).json();
    assert_eq!(model["inputs"][0], json!({"name": "input", "datatype": "FP32", "shape": [-1, 64]}));
    assert_eq!(model["outputs"][0]["shape"], json!([-1, 10]));
    let config = get(&server.url("/v2/models/mlp/config")).json();
    assert_eq!(config["max_batch_size"], 0);
    assert_eq!(config["input"][0]["dims"], json!([-1, 64]));
    assert_eq!(config["instance_group"][0]["kind"], "KIND_CPU");
    let stats = get(&server.url("/v2/models/mlp/stats")).json();
    for field in [
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    ] {
        assert!(
            stats["model_stats"][0]["inference_stats"][field]["count"].is_u64(),
            "{field}: {stats}"
        );
    }
    assert_eq!(stats["model_stats"][0]["version"], "1");
    let index = post(&server.url("/v2/repository/index"), &[], b"");
    assert_eq!(index.status, 200);
    assert_eq!(index.json(), json!([{"name": "mlp", "version": "1", "state": "READY"}]));
}

#[test]
fn json_inference_equals_in_process_inference() {
    let server = common::serve("mlp", common::zoo("mlp"));
    let reply = post_json(
        &server.url("/v2/models/mlp/infer"),
        &json!({"id": "r1", "inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": mlp_input(2)}]}),
    );
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let body = reply.json();
    assert_eq!((body["id"].as_str(), body["model_name"].as_str()), (Some("r1"), Some("mlp")));
    let out = &body["outputs"][0];
    assert_eq!((out["name"].as_str(), out["shape"].clone()), (Some("logits"), json!([2, 10])));
    assert!(out.get("parameters").is_none(), "JSON outputs carry no parameters");
    let got: Vec<f32> =
        out["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(got, reference(2));
    let stats = get(&server.url("/v2/models/mlp/stats")).json();
    // Triton's rule: without batching (max_batch_size 0) a request counts as one inference.
    assert_eq!(stats["model_stats"][0]["inference_count"], 1);
}

#[test]
fn binary_inputs_and_outputs_are_bit_exact() {
    let server = common::serve("mlp", common::zoo("mlp"));
    let header = json!({
        "inputs": [{"name": "input", "shape": [3, 64], "datatype": "FP32", "parameters": {"binary_data_size": 3 * 64 * 4}}],
        "parameters": {"binary_data_output": true},
    });
    let json_part = serde_json::to_vec(&header).unwrap();
    let mut body = json_part.clone();
    body.extend(mlp_input(3).iter().flat_map(|x| x.to_le_bytes()));
    let length = json_part.len().to_string();
    let reply = post(
        &server.url("/v2/models/mlp/infer"),
        &[("Inference-Header-Content-Length", &length)],
        &body,
    );
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let n: usize = reply.header("inference-header-content-length").unwrap().parse().unwrap();
    let head: serde_json::Value = serde_json::from_slice(&reply.body[..n]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 3 * 10 * 4);
    let got: Vec<f32> = reply.body[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, reference(3));
    // The raw single-input request: header 0, the body is the input's data.
    let raw: Vec<u8> = mlp_input(1).iter().flat_map(|x| x.to_le_bytes()).collect();
    let reply = post(
        &server.url("/v2/models/mlp/infer"),
        &[("Inference-Header-Content-Length", "0")],
        &raw,
    );
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let n: usize = reply.header("inference-header-content-length").unwrap().parse().unwrap();
    let got: Vec<f32> = reply.body[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, reference(1));
}

#[test]
fn gzip_bodies_are_inflated() {
    let server = common::serve("mlp", common::zoo("mlp"));
    let body = serde_json::to_vec(&json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": mlp_input(1)}]})).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body).unwrap();
    let reply = post(
        &server.url("/v2/models/mlp/infer"),
        &[("Content-Encoding", "gzip")],
        &gz.finish().unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
}

fn infer_json(inputs: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "inputs": inputs })).unwrap()
}

#[test]
fn bad_requests_get_the_right_status_and_name_the_field() {
    let listen = Listen { body_limit: 1 << 20, ..common::quick() };
    let server = common::serve_with(vec![("mlp", common::zoo("mlp"), PoolConfig::new(1))], listen);
    let url = server.url("/v2/models/mlp/infer");
    let ok = |n: usize| json!([{"name": "input", "shape": [n, 64], "datatype": "FP32", "data": mlp_input(n)}]);
    // (what, headers, body, status, words the error must contain)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("unknown model", vec![], infer_json(ok(1)), 404, "unknown model `nope`"),
        ("missing input", vec![], infer_json(json!([])), 400, "input `input` is missing"),
        (
            "extra input",
            vec![],
            infer_json(
                json!([ok(1)[0], {"name": "other", "shape": [1], "datatype": "FP32", "data": [1]}]),
            ),
            400,
            "no input named `other`",
        ),
        (
            "misnamed input",
            vec![],
            infer_json(
                json!([{"name": "inputs", "shape": [1, 64], "datatype": "FP32", "data": mlp_input(1)}]),
            ),
            400,
            "no input named `inputs`",
        ),
        (
            "wrong datatype string",
            vec![],
            infer_json(
                json!([{"name": "input", "shape": [1, 64], "datatype": "FLOAT32", "data": mlp_input(1)}]),
            ),
            400,
            "datatype `FLOAT32`",
        ),
        (
            "datatype the model does not take",
            vec![],
            infer_json(
                json!([{"name": "input", "shape": [1, 64], "datatype": "INT64", "data": vec![1; 64]}]),
            ),
            400,
            "expects dtype f32, got i64",
        ),
        (
            "shape against data length",
            vec![],
            infer_json(
                json!([{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": mlp_input(1)}]),
            ),
            400,
            "holds 128 elements, but `data` has 64",
        ),
        (
            "shape against the model",
            vec![],
            infer_json(
                json!([{"name": "input", "shape": [1, 63], "datatype": "FP32", "data": vec![0.0; 63]}]),
            ),
            400,
            "expects 64 along axis 1",
        ),
        (
            "ragged data",
            vec![],
            infer_json(
                json!([{"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3]]}]),
            ),
            400,
            "ragged",
        ),
        (
            "negative dimension",
            vec![],
            infer_json(
                json!([{"name": "input", "shape": [-1, 64], "datatype": "FP32", "data": []}]),
            ),
            400,
            "negative dimension -1",
        ),
        (
            "huge dimensions",
            vec![],
            infer_json(
                json!([{"name": "input", "shape": [4294967296u64, 4294967296u64], "datatype": "FP32", "data": []}]),
            ),
            400,
            "would hold",
        ),
        ("malformed JSON", vec![], b"{\"inputs\": [".to_vec(), 400, "not valid JSON"),
        ("non-UTF-8 JSON", vec![], vec![b'{', 0xff, 0xfe, b'}'], 400, "not UTF-8"),
        ("body over the limit", vec![], vec![b' '; (1 << 20) + 1], 413, "over the limit"),
    ];
    for (what, headers, body, status, message) in cases {
        let url =
            if what == "unknown model" { server.url("/v2/models/nope/infer") } else { url.clone() };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = post(&url, &headers, &body);
        assert_eq!(reply.status, status, "{what}: {}", String::from_utf8_lossy(&reply.body));
        let error = reply.error();
        assert!(error.contains(message), "{what}: {error}");
    }
    // binary_data_size past the end of the body, and a header longer than the body.
    let head = serde_json::to_vec(&json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 256}}]})).unwrap();
    let mut body = head.clone();
    body.extend([0u8; 100]);
    let len = head.len().to_string();
    let reply = post(&url, &[("Inference-Header-Content-Length", &len)], &body);
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("runs past the end of the body"), "{}", reply.error());
    let reply = post(&url, &[("Inference-Header-Content-Length", "100000")], &head);
    assert_eq!(reply.status, 400);
    assert!(
        reply.error().contains("Inference-Header-Content-Length is 100000"),
        "{}",
        reply.error()
    );
    // Unknown version, unknown endpoint.
    let reply = post(&server.url("/v2/models/mlp/versions/7/infer"), &[], &infer_json(ok(1)));
    assert_eq!((reply.status, reply.error().contains("version 7")), (404, true));
    assert_eq!(get(&server.url("/v3/nothing")).status, 404);
    // Other requests are unaffected.
    let reply = post(&url, &[], &infer_json(ok(1)));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let probe = common::scripted(Duration::ZERO);
    let config = PoolConfig::new(1).with_queue_capacity(1);
    let server = common::serve_with(vec![("held", probe.model.clone(), config)], common::quick());
    let url = server.url("/v2/models/held/infer");
    // Raw binary requests (header length 0), one sample each. The gate holds the one worker's
    // call: the first request runs, one more waits in the queue of one, the other ten are
    // refused at once.
    let body: Vec<u8> = [0.5f32; 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let warm = probe.calls();
    let _closed = probe.gate.closed();
    let results: Vec<common::Reply> = std::thread::scope(|s| {
        let infer = || {
            let reply = post(&url, &[("Inference-Header-Content-Length", "0")], &body);
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            reply
        };
        let first = s.spawn(infer);
        common::wait_until("the worker takes the first request", || probe.calls() == warm + 1);
        let rest: Vec<_> = (0..11).map(|_| s.spawn(infer)).collect();
        common::wait_until("ten requests are answered while the gate is shut", || {
            answered.load(std::sync::atomic::Ordering::SeqCst) == 10
        });
        probe.gate.open();
        std::iter::once(first).chain(rest).map(|h| h.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 10, "{statuses:?}");
    for r in results.iter().filter(|r| r.status == 503) {
        assert!(r.header("retry-after").is_some(), "no Retry-After");
        assert!(r.error().contains("at capacity"), "{}", r.error());
    }
}

#[test]
fn batching_is_reported_in_the_config_and_batch_stats() {
    let config = PoolConfig::new(1)
        .with_batching(Batching::new(8, Duration::from_millis(5)).with_preferred(vec![4]));
    let server = common::serve_with(vec![("mlp", common::zoo("mlp"), config)], common::quick());
    let config = get(&server.url("/v2/models/mlp/config")).json();
    assert_eq!(config["max_batch_size"], 8);
    assert_eq!(config["input"][0]["dims"], json!([64]), "dims leave the batch axis out");
    assert_eq!(config["dynamic_batching"]["preferred_batch_size"], json!([4]));
    assert_eq!(config["dynamic_batching"]["max_queue_delay_microseconds"], 5000);
    let url = server.url("/v2/models/mlp/infer");
    let expected = Tensor::from_vec(vec![1, 10], reference(1)).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let reply = post_json(&url, &json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": mlp_input(1)}]}));
                assert_eq!(reply.status, 200);
                let got: Vec<f32> = reply.json()["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                // A merged request runs as a row of a larger batch: the engine may pick another
                // matrix kernel for it (another summation order), so the row agrees with the
                // single call to rounding, not bit for bit (1 ulp apart on an AVX-512 CPU).
                let got = Tensor::from_vec(vec![1, got.len()], got).unwrap();
                assert_outputs_agree(&[got], std::slice::from_ref(&expected), 1e-5, "a batched row against a single call");
            });
        }
    });
    let stats = get(&server.url("/v2/models/mlp/stats")).json();
    let s = &stats["model_stats"][0];
    assert_eq!(s["inference_count"], 8, "{s}");
    let batched: u64 = s["batch_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch_size"].as_u64().unwrap() * b["compute_infer"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(batched, 8, "{s}");
}

#[test]
fn metrics_count_requests() {
    let server = common::serve("mlp", common::zoo("mlp"));
    for _ in 0..3 {
        let reply = post_json(
            &server.url("/v2/models/mlp/infer"),
            &json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": mlp_input(1)}]}),
        );
        assert_eq!(reply.status, 200);
    }
    let text = String::from_utf8(get(&server.url("/metrics")).body).unwrap();
    assert!(text.contains("thrum_inference_request_success{model=\"mlp\"}"), "{text}");
    assert!(text.contains("thrum_inference_pending_request_count"), "{text}");
}

#[test]
fn a_client_that_disconnects_while_queued_is_dropped_unrun() {
    let probe = common::scripted(Duration::ZERO);
    let server = common::serve_with(
        vec![("gone", probe.model.clone(), PoolConfig::new(1))],
        common::quick(),
    );
    let url = server.url("/v2/models/gone/infer");
    let one: Vec<u8> = [0.5f32; 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let pending = |n: usize| {
        let text = String::from_utf8(get(&server.url("/metrics")).body).unwrap();
        text.contains(&format!(r#"thrum_inference_pending_request_count{{model="gone"}} {n}"#))
    };
    let warm = probe.calls();
    let _closed = probe.gate.closed(); // the one worker holds the first request until the gate opens
    std::thread::scope(|s| {
        let busy = s.spawn(|| post(&url, &[("Inference-Header-Content-Length", "0")], &one));
        common::wait_until("the worker takes the first request", || probe.calls() == warm + 1);
        // A second request, queued behind it; its client hangs up before it runs.
        let addr = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!(
            "POST /v2/models/gone/infer HTTP/1.1\r\nHost: {addr}\r\nInference-Header-Content-Length: 0\r\nContent-Length: {}\r\n\r\n",
            one.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&one).unwrap();
        common::wait_until("the second request is queued", || pending(1));
        drop(stream);
        // The server notices the hang-up by itself; the gate stays shut meanwhile, so the
        // queued request cannot run first however fast this CPU is.
        std::thread::sleep(Duration::from_millis(300));
        probe.gate.open();
        assert_eq!(busy.join().unwrap().status, 200);
    });
    // The worker is free again, and the next request is served.
    assert_eq!(post(&url, &[("Inference-Header-Content-Length", "0")], &one).status, 200);
    assert_eq!(probe.calls() - warm, 2, "the abandoned request ran");
    let stats = get(&server.url("/v2/models/gone/stats")).json();
    assert_eq!(stats["model_stats"][0]["inference_stats"]["success"]["count"], 2, "{stats}");
    let text = String::from_utf8(get(&server.url("/metrics")).body).unwrap();
    assert!(
        text.contains(r#"thrum_inference_request_failure{model="gone",reason="CANCELED"} 1"#),
        "{text}"
    );
}

#[test]
fn a_model_left_without_workers_is_not_ready_and_the_others_still_are() {
    let a = common::scripted(Duration::ZERO);
    let b = common::scripted(Duration::ZERO);
    let server = common::serve_with(
        vec![
            ("a", a.model.clone(), PoolConfig::new(1)),
            ("b", b.model.clone(), PoolConfig::new(1)),
        ],
        common::quick(),
    );
    // b's one worker panics and cannot get a new predictor: b has no worker left.
    b.broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let body =
        json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [-1, 0]}]});
    assert_eq!(post_json(&server.url("/v2/models/b/infer"), &body).status, 500);
    common::wait_until("b is not ready", || get(&server.url("/v2/models/b/ready")).status == 503);
    // The server is not ready (Triton's strict readiness), but model a is, and serves.
    assert_eq!(get(&server.url("/v2/health/ready")).status, 503);
    assert_eq!(get(&server.url("/v2/models/a/ready")).status, 200);
    let ok =
        json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]});
    assert_eq!(post_json(&server.url("/v2/models/a/infer"), &ok).status, 200);
}
