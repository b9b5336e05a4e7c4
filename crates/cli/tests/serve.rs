//! `thrum serve` through the binary, driven by clients no one here wrote: the Python
//! `tritonclient` package (HTTP with its default binary tensors, HTTP with JSON, gRPC and its
//! bidirectional stream) must get exactly what `thrum predict` computes; every datatype
//! round-trips; SIGTERM loses no request; a Triton model repository serves as it is, and
//! tritonclient loads and unloads its models.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Serving, serve, thrum};
use thrum::{DType, Tensor};

fn tritonclient(server: &Serving, model: &str, inputs: &Path, out: &Path) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/tritonclient_check.py");
    let run = Command::new(common::venv_python("venv-serve"))
        .args([script, &server.http, &server.grpc, model])
        .arg(inputs)
        .arg(out)
        .output()
        .unwrap();
    assert!(run.status.success(), "tritonclient failed:\n{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_slice(&run.stdout).unwrap()
}

fn random_f32(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let data = (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect::<Vec<f32>>();
    Tensor::from_vec(shape.to_vec(), data).unwrap()
}

#[test]
fn tritonclient_gets_what_thrum_predict_computes_bit_for_bit() {
    let work = tempfile::tempdir().unwrap();
    for (model, input_name, input) in [
        ("mlp", "input", random_f32(&[3, 64], 7)),
        (
            "transformer",
            "input_ids",
            Tensor::from_vec(
                vec![2, 128],
                (0..256).map(|i| (i * 37 % 1000) as i64).collect::<Vec<_>>(),
            )
            .unwrap(),
        ),
    ] {
        let inputs = work.path().join(format!("{model}-in"));
        let out = work.path().join(format!("{model}-out"));
        let expected = work.path().join(format!("{model}-expected"));
        for dir in [&inputs, &out, &expected] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let file = inputs.join(format!("{input_name}.npy"));
        common::io::write_npy(&file, &input).unwrap();
        thrum()
            .args(["predict", "-p", &format!("zoo:{model}"), "--input"])
            .arg(&file)
            .arg("-o")
            .arg(&expected)
            .assert()
            .success();
        let server = serve(&["-p", &format!("zoo:{model}")]);
        let report = tritonclient(&server, model, &inputs, &out);
        assert_eq!(
            (report["live"].as_bool(), report["ready"].as_bool()),
            (Some(true), Some(true)),
            "{report}"
        );
        assert_eq!(report["binary_id"], "b1");
        assert_eq!(report["json_outputs_have_data"], true);
        assert_eq!(report["unknown_model"][0], "404", "{report}");
        assert_eq!(report["grpc_unknown_model"][0], "StatusCode.NOT_FOUND", "{report}");
        assert_eq!(report["grpc_config"]["config"]["name"], model);
        let stats = &report["stats"]["model_stats"][0];
        assert_eq!(stats["inference_stats"]["success"]["count"], 11, "{stats}");
        // The stream answered in request order, the bad request with its error, and went on.
        let stream: Vec<String> = report["stream"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a["id"].as_str().map_or_else(|| format!("error: {}", a["error"]), String::from)
            })
            .collect();
        assert_eq!(stream.len(), 10, "{stream:?}");
        assert_eq!(&stream[..8], (0..8).map(|k| format!("s{k}")).collect::<Vec<_>>().as_slice());
        assert!(stream[8].starts_with("error") && stream[8].contains("dtype"), "{stream:?}");
        assert_eq!(stream[9], "s8");
        for spec in report["metadata"]["outputs"].as_array().unwrap() {
            let name = spec["name"].as_str().unwrap();
            let want = common::io::read_npy(&expected.join(format!("{name}.npy"))).unwrap();
            let mut ways = vec!["http_binary", "http_json", "http_all", "grpc"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
            ways.extend((0..8).map(|k| format!("http_async{k}")));
            ways.extend((0..9).map(|k| format!("grpc_stream_s{k}")));
            for way in ways {
                let got = common::io::read_npy(&out.join(format!("{way}__{name}.npy"))).unwrap();
                assert!(
                    got.bit_eq(&want),
                    "{model} {way} {name}: {got:?} differs from thrum predict's {want:?}"
                );
            }
        }
    }
}

#[test]
fn every_datatype_round_trips_through_binary_json_and_grpc() {
    let work = tempfile::tempdir().unwrap();
    let dtypes = [
        ("b", DType::Bool),
        ("u8", DType::U8),
        ("u16", DType::U16),
        ("u32", DType::U32),
        ("u64", DType::U64),
        ("i8", DType::I8),
        ("i16", DType::I16),
        ("i32", DType::I32),
        ("i64", DType::I64),
        ("f16", DType::F16),
        ("f32", DType::F32),
        ("f64", DType::F64),
        ("s", DType::Bytes),
    ];
    let model = work.path().join("identity.onnx");
    std::fs::write(&model, thrum::zoo::onnx::identity(&dtypes, 3)).unwrap();
    let inputs = work.path().join("in");
    let out = work.path().join("out");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let mut sent = Vec::new();
    for (name, dtype) in dtypes {
        let t = match dtype {
            DType::Bytes => Tensor::from_vec(
                vec![2, 3],
                ["a", "bc", "", "déjà", "x y", "z"]
                    .iter()
                    .map(|s| s.as_bytes().to_vec())
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
            DType::Bool => {
                Tensor::from_vec(vec![2, 3], vec![true, false, true, true, false, false]).unwrap()
            }
            other => {
                let values: Vec<f64> = vec![0.0, 1.0, 2.0, 3.0, 100.0, 7.0];
                let f = Tensor::from_vec(
                    vec![2, 3],
                    values.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                )
                .unwrap();
                match other {
                    DType::F32 => f,
                    _ => {
                        // Build the dtype through numpy's own bytes: little-endian values.
                        let bytes: Vec<u8> = match other {
                            DType::U8 => values.iter().map(|&v| v as u8).collect(),
                            DType::I8 => values.iter().map(|&v| v as i8 as u8).collect(),
                            DType::U16 => {
                                values.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect()
                            }
                            DType::I16 => {
                                values.iter().flat_map(|&v| (v as i16).to_le_bytes()).collect()
                            }
                            DType::U32 => {
                                values.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect()
                            }
                            DType::I32 => {
                                values.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect()
                            }
                            DType::U64 => {
                                values.iter().flat_map(|&v| (v as u64).to_le_bytes()).collect()
                            }
                            DType::I64 => {
                                values.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect()
                            }
                            DType::F16 => values
                                .iter()
                                .flat_map(|&v| thrum::half::f16::from_f64(v).to_le_bytes())
                                .collect(),
                            DType::F64 => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
                            _ => unreachable!(),
                        };
                        Tensor::from_le_bytes(other, &[2, 3], &bytes).unwrap()
                    }
                }
            }
        };
        common::io::write_npy(&inputs.join(format!("{name}.npy")), &t).unwrap();
        sent.push((name, t));
    }
    let server = serve(&["-p", model.to_str().unwrap()]);
    tritonclient(&server, "identity", &inputs, &out);
    for way in ["http_binary", "http_json", "grpc"] {
        for (name, t) in &sent {
            let got = common::io::read_npy(&out.join(format!("{way}__{name}_out.npy"))).unwrap();
            let same = if t.dtype() == DType::Bytes {
                got.shape() == t.shape()
                    && got.as_slice::<Vec<u8>>().ok() == t.as_slice::<Vec<u8>>().ok()
            } else {
                got.bit_eq(t)
            };
            assert!(same, "{way} {name}: sent {t:?}, got back {got:?}");
        }
    }
}

#[test]
fn sigterm_stops_readiness_then_finishes_every_admitted_request() {
    let server =
        serve(&["-p", "zoo:resnet18", "--workers", "1", "--no-grpc", "--shutdown-grace-s", "1"]);
    let url = format!("http://{}/v2/models/resnet18/infer", server.http);
    let ready = format!("http://{}/v2/health/ready", server.http);
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let body = serde_json::to_vec(&serde_json::json!({"inputs": [{"name": "data", "shape": [1, 3, 224, 224], "datatype": "FP32",
        "data": vec![0.25f32; 3 * 224 * 224]}]})).unwrap();
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let agent = agent.clone();
                let (url, body) = (url.clone(), body.clone());
                s.spawn(move || agent.post(&url).send(&body[..]).map(|r| r.status().as_u16()))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300)); // every request is admitted
        // SAFETY: a plain kill(2) to the child we started.
        unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(300));
        let during_grace = agent.get(&ready).call().map(|r| r.status().as_u16());
        (handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>(), during_grace)
    });
    let (statuses, during_grace) = results;
    assert_eq!(during_grace.ok(), Some(503), "readiness did not go false first");
    for s in &statuses {
        assert_eq!(s.as_ref().ok(), Some(&200), "an admitted request was lost: {statuses:?}");
    }
    let mut server = server;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "thrum serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn kserve_arguments_and_model_repositories_serve() {
    let work = tempfile::tempdir().unwrap();
    // KServe mounts one model's folder at /mnt/models and passes --model-name.
    let mnt = work.path().join("mnt-models");
    std::fs::create_dir_all(&mnt).unwrap();
    thrum().args(["zoo", "export", "mlp", "-o"]).arg(mnt.join("model.onnx")).assert().success();
    let server = serve(&["--model-dir", mnt.to_str().unwrap(), "--model-name", "sentiment"]);
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let status = agent
        .get(format!("http://{}/v2/models/sentiment/ready", server.http))
        .call()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
    drop(server);
    // A repository: one folder per model; a thrum.toml sets batching.
    let repo = work.path().join("repo");
    for name in ["a", "b"] {
        std::fs::create_dir_all(repo.join(name)).unwrap();
        thrum()
            .args(["zoo", "export", "mlp", "-o"])
            .arg(repo.join(name).join("mlp.onnx"))
            .assert()
            .success();
    }
    std::fs::write(
        repo.join("b/thrum.toml"),
        "workers = 1\n[batching]\nmax_batch_size = 4\nmax_queue_delay_us = 100\n",
    )
    .unwrap();
    let server = serve(&["--model-repository", repo.to_str().unwrap()]);
    let config = |m: &str| -> serde_json::Value {
        let mut r =
            agent.get(format!("http://{}/v2/models/{m}/config", server.http)).call().unwrap();
        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap()
    };
    assert_eq!(config("a")["max_batch_size"], 0);
    assert_eq!(config("b")["max_batch_size"], 4);
}

#[test]
fn serve_refuses_what_it_cannot_serve_with_exit_code_2() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("empty")).unwrap();
    for (args, message) in [
        (vec!["serve"], "no model to serve"),
        (vec!["serve", "-p", "zoo:vgg"], "unknown zoo model `vgg`"),
        (vec!["serve", "-p", "zoo:mlp", "--model-dir", "x"], "give the models one way"),
        (
            vec!["serve", "--model-name", "m", "-p", "zoo:mlp"],
            "--model-name names the --model-dir model",
        ),
        (vec!["serve", "-p", "zoo:mlp", "--workers", "0"], "invalid value '0' for '--workers <N>'"),
        (vec!["serve", "-p", "zoo:mlp", "--header-timeout-s", "0"], "--header-timeout-s"),
        (vec!["serve", "-p", "zoo:mlp", "--keep-alive-timeout-s", "inf"], "--keep-alive-timeout-s"),
        (vec!["serve", "-p", "zoo:mlp", "--max-connections", "0"], "--max-connections"),
        (vec!["serve", "-p", "zoo:mlp", "--model-control-mode", "poll"], "`poll` is not offered"),
        (
            vec!["serve", "-p", "zoo:mlp", "--model-control-mode", "none", "--load-model", "mlp"],
            "--load-model picks the models loaded at start",
        ),
    ] {
        thrum()
            .args(&args)
            .current_dir(work.path())
            .assert()
            .code(2)
            .stderr(predicates::str::contains(message));
    }
    thrum()
        .args(["serve", "--model-repository"])
        .arg(work.path().join("empty"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("has no model folder"));
}

/// The fenced block of `lang` that follows `heading` in `doc`.
fn doc_block(doc: &str, heading: &str, lang: &str) -> String {
    let after = &doc[doc.find(heading).unwrap_or_else(|| panic!("no `{heading}` in the doc"))..];
    let fence = format!("```{lang}\n");
    let start = after.find(&fence).unwrap_or_else(|| panic!("no {lang} block after `{heading}`"))
        + fence.len();
    after[start..start + after[start..].find("```").unwrap()].to_string()
}

#[test]
fn the_calling_examples_in_docs_serve_md_run_as_printed() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/serve.md"))
        .unwrap();
    let server = serve(&["-p", "zoo:mlp"]);
    // The doc's ports are the defaults; the test's server is on free ones.
    let local = |text: String| {
        text.replace("localhost:8080", &server.http)
            .replace("127.0.0.1:8080", &server.http)
            .replace("127.0.0.1:8081", &server.grpc)
    };
    let shell = local(doc_block(&doc, "## Calling it", "sh"));
    assert_eq!(shell.matches("curl ").count(), 4, "{shell}");
    let run = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &shell])
        .output()
        .expect("bash and curl are needed");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{shell}\n{out}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(out.starts_with("200\n"), "{out}");
    assert!(out.contains(r#""name":"mlp""#) && out.contains(r#""name":"logits""#), "{out}");
    assert!(out.contains(r#""model_name":"mlp""#) && out.contains(r#""shape":[1,10]"#), "{out}");
    assert!(out.contains(r#""inference_stats""#), "{out}");
    let python = local(doc_block(&doc, "With Triton's Python client", "python"));
    let run =
        Command::new(common::venv_python("venv-serve")).args(["-c", &python]).output().unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{python}\n{out}\n{}", String::from_utf8_lossy(&run.stderr));
    // Two printed arrays of 4 × 10 logits: numpy prints one bracketed row per sample.
    assert_eq!(out.matches("[[").count(), 2, "{out}");
}

#[test]
fn the_local_try_out_in_docs_deploy_md_runs_as_printed() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deploy.md"))
        .unwrap();
    let block = doc_block(&doc, "**Try it locally**", "sh");
    let lines: Vec<&str> = block.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{block}");
    let dir = tempfile::tempdir().unwrap();
    let exe = assert_cmd::cargo::cargo_bin("thrum");
    let path = format!(
        "{}:{}",
        exe.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let export = Command::new("bash")
        .args(["-e", "-c", lines[0]])
        .current_dir(&dir)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}: {}", lines[0], String::from_utf8_lossy(&export.stderr));
    // `thrum serve ARGS` as printed, from the same folder.
    let args: Vec<String> = lines[1]
        .strip_prefix("thrum serve ")
        .unwrap()
        .split_whitespace()
        .map(|a| a.replace("models/", &format!("{}/models/", dir.path().display())))
        .collect();
    let server = serve(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let curl = lines[2].replace("localhost:8080", &server.http);
    let out = Command::new("bash").args(["-e", "-c", &curl]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains(r#""name":"resnet50""#)
            && text.contains(r#""platform":"#),
        "{curl}: {text}"
    );
}

/// A Triton model repository as Triton's users have it: `config.pbtxt` and `1/model.onnx`.
fn triton_repository(dir: &Path, model: &str, config: &str) {
    let onnx = dir.join("src.onnx");
    thrum().args(["zoo", "export", model, "-o"]).arg(&onnx).assert().success();
    let version = dir.join("repo").join(model).join("1");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::rename(&onnx, version.join("model.onnx")).unwrap();
    std::fs::write(dir.join("repo").join(model).join("config.pbtxt"), config).unwrap();
}

#[test]
fn a_triton_repository_serves_as_it_is_with_what_its_config_says() {
    let work = tempfile::tempdir().unwrap();
    triton_repository(
        work.path(),
        "mlp",
        r#"
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 64 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 200 preferred_batch_size: [ 4 ] }
model_warmup [ { name: "w" batch_size: 1 inputs { key: "input" value { data_type: TYPE_FP32 dims: [ 64 ] zero_data: true } } } ]
"#,
    );
    let repository = work.path().join("repo");
    let triton = serve(&["--model-repository", repository.to_str().unwrap()]);
    let config = common::get_json(&format!("http://{}/v2/models/mlp/config", triton.http));
    assert_eq!(config["platform"], "onnxruntime_onnx", "{config}");
    assert_eq!(config["max_batch_size"], 8, "{config}");
    assert_eq!(config["instance_group"][0]["count"], 2, "{config}");
    assert_eq!(
        config["dynamic_batching"]["preferred_batch_size"],
        serde_json::json!([4]),
        "{config}"
    );
    // The same model given with -p, on the same engine: the same outputs, bit for bit.
    let input = work.path().join("input.npy");
    common::io::write_npy(&input, &random_f32(&[3, 64], 11)).unwrap();
    let plain = serve(&[
        "-e",
        "ort",
        "-p",
        &format!("mlp={}", repository.join("mlp/1/model.onnx").display()),
    ]);
    let mut outputs = Vec::new();
    for (k, server) in [&triton, &plain].into_iter().enumerate() {
        let out = work.path().join(format!("out{k}.npy"));
        let run = Command::new(common::venv_python("venv-serve"))
            .args([
                "-c",
                "import sys, numpy as np, tritonclient.http as h\n\
                 c = h.InferenceServerClient(sys.argv[1])\n\
                 x = np.load(sys.argv[2]); i = h.InferInput('input', list(x.shape), 'FP32')\n\
                 i.set_data_from_numpy(x)\n\
                 np.save(sys.argv[3], c.infer('mlp', [i]).as_numpy('logits'))",
                &server.http,
            ])
            .arg(&input)
            .arg(&out)
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        outputs.push(common::io::read_npy(&out).unwrap());
    }
    assert!(outputs[0].bit_eq(&outputs[1]), "{:?} vs {:?}", outputs[0], outputs[1]);
}

#[test]
fn a_triton_config_that_disagrees_with_its_model_is_refused_at_start() {
    let work = tempfile::tempdir().unwrap();
    triton_repository(
        work.path(),
        "mlp",
        "platform: \"onnxruntime_onnx\"\ninput [ { name: \"images\" data_type: TYPE_FP32 dims: [ 64 ] } ]\n",
    );
    let out = thrum()
        .args(["serve", "--http-port", "0", "--no-grpc", "--model-repository"])
        .arg(work.path().join("repo"))
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("`images`") && stderr.contains("`input`"), "{stderr}");
    // A field that is not Triton's: named with its line.
    std::fs::write(
        work.path().join("repo/mlp/config.pbtxt"),
        "platform: \"onnxruntime_onnx\"\nmax_batch: 4\n",
    )
    .unwrap();
    let out = thrum()
        .args(["serve", "--http-port", "0", "--no-grpc", "--model-repository"])
        .arg(work.path().join("repo"))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("config.pbtxt") && stderr.contains("line 2"), "{stderr}");
}

#[test]
fn tritonclient_loads_and_unloads_models_of_the_repository() {
    let work = tempfile::tempdir().unwrap();
    triton_repository(work.path(), "mlp", "platform: \"onnxruntime_onnx\"\nmax_batch_size: 4\n");
    let server = serve(&[
        "--model-repository",
        work.path().join("repo").to_str().unwrap(),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "mlp",
    ]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/tritonclient_check.py");
    let run = Command::new(common::venv_python("venv-serve"))
        .args([script, "--repository", &server.http, &server.grpc, "mlp"])
        .output()
        .unwrap();
    assert!(run.status.success(), "tritonclient failed:\n{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let extensions = report["extensions"].as_array().unwrap();
    assert!(extensions.iter().any(|e| e == "model_repository"), "{report}");
    assert!(
        !extensions.iter().any(|e| e == "schedule_policy"),
        "announced but not served: {report}"
    );
    assert_eq!(
        report["index"],
        serde_json::json!([{"name": "mlp", "version": "1", "state": "READY"}])
    );
    let unloaded = &report["after_http_unload"];
    assert_eq!(unloaded["ready"], false, "{report}");
    assert_eq!(unloaded["index"][0]["reason"], "unloaded", "{report}");
    assert_eq!(unloaded["infer"][0], "404", "{report}");
    assert_eq!(report["after_http_load"]["ready"], true, "{report}");
    assert_eq!(report["after_grpc_unload"]["ready"], false, "{report}");
    assert_eq!(report["after_grpc_load"]["ready"], true, "{report}");
    assert_eq!(report["http_load_unknown"][0], "404", "{report}");
    assert_eq!(report["grpc_load_unknown"][0], "StatusCode.NOT_FOUND", "{report}");
}

/// Every limit is a flag and a `[server]` key of thrum.toml; the flag wins over the file, and a
/// mistake in the file names the key.
#[test]
fn server_limits_come_from_flags_and_the_thrum_toml_server_table() {
    use predicates::prelude::PredicateBooleanExt;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("thrum.toml");
    std::fs::write(
        &config,
        "[server]\nmax_connections = 3\nheader_timeout_s = 5\nkeep_alive_timeout_s = 9\nmodel_control_mode = \"explicit\"\nload_model = [\"mlp\"]\n",
    )
    .unwrap();
    // The file's settings apply to -p models; a flag overrides the file.
    let server = serve(&[
        "-p",
        "zoo:mlp",
        "--config",
        config.to_str().unwrap(),
        "--header-timeout-s",
        "0.3",
    ]);
    // explicit control from the file: unload works.
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let r = agent
        .post(&format!("http://{}/v2/repository/models/mlp/unload", server.http))
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 200);
    // The flag's header timeout (0.3 s), not the file's (5 s): a silent connection is cut.
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(&server.http).unwrap();
    use std::io::Read;
    let mut buf = [0u8; 16];
    let _ = s.read(&mut buf);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "cut after {took:?}"
    );
    drop(server);
    std::fs::write(&config, "[server]\nkeep_alive_timeout = 9\n").unwrap();
    thrum().args(["serve", "-p", "zoo:mlp", "--config"]).arg(&config).assert().code(2).stderr(
        predicates::str::contains("unknown key `server.keep_alive_timeout`")
            .and(predicates::str::contains("keep_alive_timeout_s")),
    );
}

/// docs/serve.md's table of limits lists every `[server]` key, each beside a flag that
/// `thrum serve --help` has: the code and the table agree.
#[test]
fn the_limits_table_in_docs_serve_md_matches_the_code() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/serve.md"))
        .unwrap();
    let section = &doc[doc.find("## Limits and timeouts").unwrap()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let help = thrum().args(["serve", "--help"]).assert().success().get_output().stdout.clone();
    let help = String::from_utf8(help).unwrap();
    let mut keys = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for flag in cells[1].split(", ") {
            let flag = flag.trim_matches('`');
            assert!(
                help.contains(flag),
                "{flag} is in docs/serve.md but not in `thrum serve --help`"
            );
        }
        keys.extend(cells[2].split(", ").map(|k| k.trim_matches('`').to_string()));
    }
    keys.sort();
    let mut expected: Vec<String> =
        thrum_serve::config::SERVER_KEYS.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(keys, expected, "docs/serve.md's [server] keys and the code's");
}
