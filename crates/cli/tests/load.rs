//! `thrum load` against servers no one here wrote and against `thrum serve`: MLServer 1.7 (from
//! PyPI, serving an ONNX file through onnxruntime with scripts/mlserver/onnx_runtime.py) over
//! REST JSON and gRPC, with the counts thrum load reports equal to MLServer's own Prometheus
//! counters; `thrum serve`'s statistics likewise; perf_analyzer's CSV; the errors a user meets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{get_json, serve, thrum};
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `mlserver start` on a repository with one ONNX model; stopped (SIGTERM, then killed) when
/// dropped.
struct MlServer {
    child: Child,
    http: String,
    grpc: String,
    metrics: String,
    _dir: tempfile::TempDir,
}

impl Drop for MlServer {
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) to the child we started; a clean stop removes its metric files.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mlserver(onnx: &Path, name: &str) -> MlServer {
    let python = common::venv_python("venv-mlserver");
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc, metrics) = (free_port(), free_port(), free_port());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mlserver/repo.py");
    let status = Command::new(&python)
        .arg(repo)
        .arg(onnx)
        .arg(name)
        .arg(dir.path())
        .args([
            "--http-port",
            &http.to_string(),
            "--grpc-port",
            &grpc.to_string(),
            "--metrics-port",
            &metrics.to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = Command::new(python.with_file_name("mlserver"))
        .args(["start", "."])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = |p: u16| format!("127.0.0.1:{p}");
    let ready = format!("http://{}/v2/models/{name}/ready", server(http));
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let start = Instant::now();
    loop {
        if agent.get(&ready).call().is_ok_and(|r| r.status() == 200) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mlserver exited with {status} before its model was ready");
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "mlserver's model not ready after 180 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    MlServer { child, http: server(http), grpc: server(grpc), metrics: server(metrics), _dir: dir }
}

/// MLServer's `model_infer_request_success_total` for `model`, summed over its labels (REST and
/// gRPC count under different version labels).
fn mlserver_successes(server: &MlServer, model: &str) -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let text = agent
        .get(format!("http://{}/metrics", server.metrics))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("model_infer_request_success_total{")
                && l.contains(&format!("model=\"{model}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

/// `thrum load ARGS --json -`, short windows; its one step's report.
fn load(args: &[&str]) -> Value {
    let out = thrum()
        .arg("load")
        .args([
            "-q",
            "--measurement-interval",
            "300",
            "--max-trials",
            "4",
            "--stability-percentage",
            "100",
            "--warmup-ms",
            "300",
        ])
        .args(args)
        .args(["--json", "-"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(out.status.success(), "thrum load {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["steps"][0].clone()
}

#[test]
fn counts_agree_with_mlservers_own_metrics_over_rest_json_and_grpc() {
    let work = tempfile::tempdir().unwrap();
    let onnx = work.path().join("mlp.onnx");
    thrum().args(["zoo", "export", "mlp", "-o"]).arg(&onnx).assert().success();
    let server = mlserver(&onnx, "mlp");
    for (protocol, url) in [("http-json", &server.http), ("grpc", &server.grpc)] {
        let before = mlserver_successes(&server, "mlp");
        let step = load(&["-u", url, "-m", "mlp", "-i", protocol, "--concurrency-range", "2"]);
        let after = mlserver_successes(&server, "mlp");
        assert_eq!(step["total_failed"], 0, "{protocol}: {step}");
        let answered = step["total_answered"].as_u64().unwrap();
        assert!(
            answered > 0 && step["requests"].as_u64().unwrap() <= answered,
            "{protocol}: {step}"
        );
        assert_eq!(
            after - before,
            answered,
            "{protocol}: MLServer counted {} successes, thrum load {answered}",
            after - before
        );
        assert!(step["server"].is_null(), "MLServer has no statistics extension: {step}");
    }
    // An open loop at a rate the server keeps.
    let step =
        load(&["-u", &server.http, "-m", "mlp", "-i", "http-json", "--request-rate-range", "50"]);
    let rate = step["request_rate"].as_f64().unwrap();
    assert!((35.0..=65.0).contains(&rate), "asked 50/s, sent {rate}/s: {step}");
    // MLServer's REST front has no binary tensors: said before any request is sent.
    thrum().args(["load", "-u", &server.http, "-m", "mlp", "-i", "http"]).assert().code(2).stderr(
        predicates::str::contains("binary_tensor_data")
            .and(predicates::str::contains("-i http-json")),
    );
}

#[test]
fn counts_agree_with_thrum_serves_statistics_and_the_csv_is_perf_analyzers() {
    let server = serve(&["-p", "zoo:mlp", "--workers", "1"]);
    let work = tempfile::tempdir().unwrap();
    let csv = work.path().join("mlp.csv");
    let stats = || {
        get_json(&format!("http://{}/v2/models/mlp/stats", server.http))["model_stats"][0]["inference_stats"]["success"]["count"]
        .as_u64()
        .unwrap()
    };
    for (protocol, url) in
        [("http", &server.http), ("http-json", &server.http), ("grpc", &server.grpc)]
    {
        let before = stats();
        let step = load(&["-u", url, "-m", "mlp", "-i", protocol, "--concurrency-range", "2"]);
        assert_eq!(
            stats() - before,
            step["total_answered"].as_u64().unwrap(),
            "{protocol}: {step}"
        );
        let split = &step["server"];
        assert!(
            split["requests"].as_u64().unwrap() > 0
                && split["compute_infer_us"].as_f64().unwrap() > 0.0,
            "{split}"
        );
    }
    let out = thrum()
        .args([
            "load",
            "-q",
            "-u",
            &server.http,
            "-m",
            "mlp",
            "--concurrency-range",
            "1:2",
            "--measurement-interval",
            "200",
        ])
        .args(["--stability-percentage", "100", "--warmup-ms", "100", "-f"])
        .arg(&csv)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,\
         Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in &rows {
        assert_eq!(row.len(), 13, "{text}");
        assert!(row[1].parse::<f64>().unwrap() > 0.0 && row[9].parse::<u64>().is_ok(), "{text}");
    }
}

#[test]
fn load_says_what_is_wrong_with_exit_code_2() {
    let server = serve(&["-p", "zoo:mlp", "--workers", "1"]);
    let dead = format!("127.0.0.1:{}", free_port());
    // An HTTP server that is not a v2 server: it answers 404 to everything.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let not_v2 = other.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in other.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    for (args, message) in [
        (vec!["-m", "mlp", "-u", not_v2.as_str()], "is not a KServe v2 server"),
        (vec!["-m", "mlp", "-u", dead.as_str()], "cannot reach"),
        (vec!["-m", "nope", "-u", server.http.as_str()], "the server serves: mlp"),
        (
            vec!["-m", "mlp", "-u", server.http.as_str(), "--concurrency-range", "4:2"],
            "--concurrency-range",
        ),
        (
            vec!["-m", "mlp", "-u", server.http.as_str(), "--concurrency-range", "x"],
            "--concurrency-range",
        ),
        (vec!["-m", "mlp", "-u", "http://127.0.0.1:8080"], "without a scheme"),
        // Rates whose gaps overflow a duration or fall under the timer, and more callers
        // than file descriptors: refused before anything is sent.
        (
            vec!["-m", "mlp", "-u", server.http.as_str(), "--request-rate-range", "1e-300"],
            "--request-rate-range",
        ),
        (
            vec!["-m", "mlp", "-u", server.http.as_str(), "--request-rate-range", "1e12"],
            "--request-rate-range",
        ),
        (
            vec!["-m", "mlp", "-u", server.http.as_str(), "--concurrency-range", "1:100000"],
            "--concurrency-range",
        ),
        (
            vec!["-m", "mlp", "-u", server.http.as_str(), "--request-timeout-ms", "0"],
            "--request-timeout-ms",
        ),
        (vec!["-m", "mlp", "-u", server.http.as_str(), "-b", "4"], "max_batch_size"),
    ] {
        thrum()
            .arg("load")
            .args(&args)
            .timeout(Duration::from_secs(60))
            .assert()
            .code(2)
            .stderr(predicates::str::contains(message));
    }
}

use predicates::prelude::PredicateBooleanExt;
