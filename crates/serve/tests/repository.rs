//! The model repository extension in process: load and unload over REST, what they refuse,
//! the index's states, and an unload while requests are in flight, which answers every one of
//! them before the model goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use thrum_serve::{ModelControl, PoolConfig, Repository, ServeError, ServedModel, Server, pb};

/// A repository of scripted models: `m`, `n` and `q` load (each load a fresh pool of the
/// model `probe` scripts), `slow` does too after 800 ms, `broken` fails to. Only one test uses
/// `q`: its gauge is its own. Workers come from a configuration as the CLI's repository takes
/// them ([`thrum_serve::triton::pool_settings`]).
struct Scripts {
    probe: Mutex<Option<Probe>>,
    loads: Mutex<Vec<String>>,
}

impl Repository for Scripts {
    fn names(&self) -> Result<Vec<String>, ServeError> {
        Ok(vec!["broken".into(), "m".into(), "n".into(), "q".into(), "slow".into()])
    }

    fn load(
        &self,
        name: &str,
        config: Option<&pb::ModelConfig>,
    ) -> Result<ServedModel, ServeError> {
        self.loads.lock().unwrap().push(name.into());
        let workers = config.and_then(|c| thrum_serve::triton::pool_settings(c).0).unwrap_or(1);
        match name {
            "m" | "n" | "q" | "slow" => {
                if name == "slow" {
                    std::thread::sleep(Duration::from_millis(800));
                }
                let model = self.probe.lock().unwrap().as_ref().unwrap().model.clone();
                Ok(ServedModel {
                    name: name.into(),
                    platform: "thrum_scripted".into(),
                    text: None,
                    image: None,
                    content: None,
                    pool: thrum_serve::ModelPool::start(name, model, PoolConfig::new(workers))?,
                })
            }
            "broken" => Err(ServeError::Config {
                what: "model `broken`".into(),
                reason: "its file is not a model".into(),
            }),
            other => Err(ServeError::UnknownModel {
                name: other.into(),
                version: String::new(),
                served: "broken, m, n".into(),
            }),
        }
    }
}

fn serve_repository(control: ModelControl, start: &[&str]) -> (Running, Arc<Scripts>, Probe) {
    thrum_serve::metrics::install();
    let probe = scripted(Duration::ZERO);
    let scripts = Arc::new(Scripts {
        probe: Mutex::new(Some(scripted_like(&probe))),
        loads: Mutex::new(Vec::new()),
    });
    let served = start.iter().map(|name| scripts.load(name, None).unwrap()).collect();
    let mut listen = quick();
    listen.http_port = 0;
    listen.grpc_port = Some(0);
    let server = Server::with_repository(served, listen, scripts.clone(), control).unwrap();
    (run(server), scripts, probe)
}

/// A probe whose model shares `probe`'s gate and counters.
fn scripted_like(probe: &Probe) -> Probe {
    Probe {
        model: probe.model.clone(),
        gate: probe.gate.clone(),
        batches: probe.batches.clone(),
        calls: probe.calls.clone(),
        broken: probe.broken.clone(),
    }
}

fn infer(server: &Running, model: &str) -> Reply {
    post_json(
        &server.url(&format!("/v2/models/{model}/infer")),
        &json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}),
    )
}

fn index(server: &Running) -> serde_json::Value {
    post(&server.url("/v2/repository/index"), &[], b"").json()
}

#[test]
fn load_and_unload_change_what_is_served_and_the_index_shows_it() {
    let (server, _, _) = serve_repository(ModelControl::Explicit, &["m"]);
    assert_eq!(
        index(&server),
        json!([{"name": "broken"}, {"name": "m", "version": "1", "state": "READY"}, {"name": "n"}, {"name": "q"}, {"name": "slow"}])
    );
    assert_eq!(infer(&server, "n").status, 404);
    // tritonclient sends its load without a Content-Type, and an unload with its parameter.
    let loaded = post(&server.url("/v2/repository/models/n/load"), &[], b"{}");
    assert_eq!((loaded.status, loaded.body.len()), (200, 0));
    assert_eq!(infer(&server, "n").status, 200);
    let unloaded = post(
        &server.url("/v2/repository/models/m/unload"),
        &[],
        br#"{"parameters": {"unload_dependents": false}}"#,
    );
    assert_eq!(unloaded.status, 200);
    let gone = infer(&server, "m");
    assert_eq!(gone.status, 404);
    assert!(
        gone.error().contains("UNAVAILABLE") && gone.error().contains("unloaded"),
        "{}",
        gone.error()
    );
    assert_eq!(
        index(&server)[1],
        json!({"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"})
    );
    let ready_only = post_json(&server.url("/v2/repository/index"), &json!({"ready": true})).json();
    assert_eq!(ready_only, json!([{"name": "n", "version": "1", "state": "READY"}]));
    // Unloading what is not loaded does nothing, as Triton does.
    assert_eq!(post(&server.url("/v2/repository/models/m/unload"), &[], b"").status, 200);
}

#[test]
fn a_failed_load_says_why_and_the_index_keeps_the_reason() {
    let (server, _, _) = serve_repository(ModelControl::Explicit, &[]);
    let failed = post(&server.url("/v2/repository/models/broken/load"), &[], b"");
    assert_eq!(failed.status, 400);
    assert!(
        failed.error().contains("load failed for model `broken`")
            && failed.error().contains("not a model"),
        "{}",
        failed.error()
    );
    let entry = &index(&server)[0];
    assert_eq!(entry["state"], "UNAVAILABLE");
    assert!(entry["reason"].as_str().unwrap().contains("not a model"));
    let unknown = post(&server.url("/v2/repository/models/nope/load"), &[], b"");
    assert_eq!(unknown.status, 404, "{}", unknown.error());
    // A name the repository does not have leaves nothing in its index.
    let names: Vec<_> =
        index(&server).as_array().unwrap().iter().map(|e| e["name"].clone()).collect();
    assert!(!names.contains(&json!("nope")), "{names:?}");
    let traversal = post(&server.url("/v2/repository/models/..%2Fetc/load"), &[], b"");
    assert_eq!(traversal.status, 400, "{}", traversal.error());
    let bad = post(
        &server.url("/v2/repository/models/m/load"),
        &[],
        br#"{"parameters": {"file:1/model.onnx": "AAAA"}}"#,
    );
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("file:1/model.onnx"), "{}", bad.error());
}

#[test]
fn a_load_takes_a_triton_configuration_override() {
    let (server, scripts, _) = serve_repository(ModelControl::Explicit, &[]);
    let config = json!({"instance_group": [{"count": 2, "kind": "KIND_CPU"}]}).to_string();
    let loaded = post_json(
        &server.url("/v2/repository/models/m/load"),
        &json!({"parameters": {"config": config}}),
    );
    assert_eq!(loaded.status, 200, "{}", String::from_utf8_lossy(&loaded.body));
    let shown = get(&server.url("/v2/models/m/config")).json();
    assert_eq!(shown["instance_group"][0]["count"], 2);
    let bad = post_json(
        &server.url("/v2/repository/models/m/load"),
        &json!({"parameters": {"config": "{\"max_batch\": 1}"}}),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("max_batch"), "{}", bad.error());
    assert_eq!(scripts.loads.lock().unwrap().len(), 1, "a bad override reached the repository");
    // More instances than a pool allows (summed past i32) is refused with the limit, and the
    // model served before keeps serving.
    let config = json!({"instance_group": [{"count": i32::MAX}, {"count": i32::MAX}]}).to_string();
    let huge = post_json(
        &server.url("/v2/repository/models/m/load"),
        &json!({"parameters": {"config": config}}),
    );
    assert_eq!(huge.status, 400);
    assert!(huge.error().contains("at most 1024"), "{}", huge.error());
    assert_eq!(infer(&server, "m").status, 200);
}

#[test]
fn a_load_whose_client_goes_away_still_finishes() {
    use std::io::Write;
    let (server, _, _) = serve_repository(ModelControl::Explicit, &[]);
    let mut s = std::net::TcpStream::connect(server.http).unwrap();
    s.write_all(
        b"POST /v2/repository/models/slow/load HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    // The load has begun (its handler runs) before the client goes.
    wait_until("the load begins", || index(&server)[4]["state"] == "LOADING");
    drop(s);
    wait_until("the abandoned load finishes", || infer(&server, "slow").status == 200);
    assert_eq!(index(&server)[4]["state"], "READY");
}

#[test]
fn without_explicit_model_control_load_and_unload_are_refused() {
    let (server, _, _) = serve_repository(ModelControl::None, &["m"]);
    for action in ["load", "unload"] {
        let refused = post(&server.url(&format!("/v2/repository/models/m/{action}")), &[], b"");
        assert_eq!(refused.status, 503);
        assert!(refused.error().contains("--model-control-mode explicit"), "{}", refused.error());
        assert!(refused.header("retry-after").is_none());
    }
    assert_eq!(infer(&server, "m").status, 200);
}

#[test]
fn unloading_answers_every_request_in_flight_before_the_model_goes() {
    let (server, _, probe) = serve_repository(ModelControl::Explicit, &["q"]);
    let warm = probe.calls();
    let _closed = probe.gate.closed();
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let url = server.url("/v2/models/q/infer");
            std::thread::spawn(move || {
                post_json(&url, &json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}))
            })
        })
        .collect();
    wait_until("one request runs and five wait", || {
        probe.calls() == warm + 1 && pending(&server, "q") == 5
    });
    let unload = {
        let url = server.url("/v2/repository/models/q/unload");
        std::thread::spawn(move || post(&url, &[], b""))
    };
    wait_until("the unload begins", || index(&server)[3]["state"] == "UNLOADING");
    // New requests are not admitted while it unloads.
    let refused = infer(&server, "q");
    assert_eq!(refused.status, 503, "{}", refused.error());
    std::thread::sleep(Duration::from_millis(200));
    assert!(!unload.is_finished(), "the unload did not wait for the requests in flight");
    probe.gate.open();
    for r in requests {
        let reply = r.join().unwrap();
        assert_eq!(
            reply.status,
            200,
            "an admitted request was lost: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    assert_eq!(unload.join().unwrap().status, 200);
    assert_eq!(index(&server)[3]["state"], "UNAVAILABLE");
    assert_eq!(probe.calls(), warm + 6);
}

/// The pending-request gauge of `model`, from `/metrics`.
fn pending(server: &Running, model: &str) -> u64 {
    let text = String::from_utf8(get(&server.url("/metrics")).body).unwrap();
    let series = format!("thrum_inference_pending_request_count{{model=\"{model}\"}}");
    text.lines()
        .find(|l| l.starts_with(&series))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
