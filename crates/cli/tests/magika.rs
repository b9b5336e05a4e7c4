//! Google's Magika (`thrum zoo install magika`) through `thrum predict --file`, checked against
//! the Python `magika` package on a corpus of real files; and tract on the real ONNX models
//! from registry packages that it could not load before it typed graphs from a call's shapes,
//! checked against ONNX Runtime.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::path::{Path, PathBuf};

use common::{thrum, venv_python};
use thrum_testkit::require_engine;

const MODEL: &str = "zoo:magika";

fn testdata() -> PathBuf {
    thrum::config::thrum_home().join("testdata")
}

/// The installed model; missing is a failure (the test command installs it).
fn require_model() {
    let model = thrum::zoo::find_pretrained("magika").unwrap();
    assert!(
        model.is_installed(),
        "{MODEL} is not installed in {}: run `thrum zoo install magika` (the README's test \
         command does)",
        model.package.home().display()
    );
}

/// A file of the test data; missing is a failure.
fn data_file(path: &str) -> PathBuf {
    let path = testdata().join(path);
    assert!(
        path.exists(),
        "{} missing: run `bash scripts/install-test-data.sh` (the README's test command does)",
        path.display()
    );
    path
}

/// The corpus scripts/magika_corpus.py wrote, in name order.
fn corpus() -> Vec<PathBuf> {
    let dir = data_file("files");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "{} holds {} files", dir.display(), files.len());
    files
}

fn failure(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.assert().failure().get_output().stderr.clone();
    String::from_utf8_lossy(&out).into_owned()
}

/// `thrum predict -p zoo:magika --file …` on `engine`, as JSON.
fn identify(engine: &str, files: &[PathBuf]) -> serde_json::Value {
    let mut cmd = thrum();
    cmd.args(["predict", "-e", engine, "-p", MODEL, "--json"]);
    for f in files {
        cmd.arg("--file").arg(f);
    }
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

/// The Python package's answers (scripts/magika_reference.py).
fn python_magika(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/magika_reference.py");
    let out = std::process::Command::new(venv_python("venv-image"))
        .arg(script)
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

/// The issue's acceptance: the same label as the Python package on every file of a corpus of
/// ~30 types (source code, JSON, Markdown, HTML, PNG, JPEG, GIF, TIFF, WebP, BMP, PDF, ZIP,
/// tar, gzip, bzip2, xz, ELF, SQLite, npy, pickle, plist, ONNX, CSV, shell, random bytes,
/// empty, 1 byte, short and whitespace-padded files), on ONNX Runtime and on tract; the
/// model's own label too, and its score within 1e-4.
#[test]
fn content_types_equal_the_python_packages_on_a_corpus_of_real_files() {
    require_model();
    require_engine!("ort");
    let files = corpus();
    let theirs = python_magika(&files);
    assert_eq!(theirs[0]["version"], "1.0.3");
    let labels: Vec<&str> = theirs.iter().map(|r| r["output"].as_str().unwrap()).collect();
    for must in ["python", "json", "html", "png", "pdf", "zip", "elf", "empty", "txt", "unknown"] {
        assert!(labels.contains(&must), "the corpus has no `{must}` file: {labels:?}");
    }
    for engine in ["ort", "tract"] {
        let ours = identify(engine, &files);
        let ours = ours["files"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (o, t) in ours.iter().zip(&theirs) {
            let r = &o["result"];
            let what = format!("{engine}: {}", t["path"]);
            assert_eq!(r["output"]["label"], t["output"], "{what}");
            assert_eq!(r["dl"]["label"], t["dl"], "{what}");
            assert_eq!(r["output"]["group"], t["group"], "{what}");
            assert_eq!(r["output"]["mime_type"], t["mime_type"], "{what}");
            let (a, b) = (r["score"].as_f64().unwrap(), t["score"].as_f64().unwrap());
            assert!((a - b).abs() < 1e-4, "{what}: score {a} vs {b}");
        }
    }
}

/// Files that are not there, directories, a model that is not Magika, an engine that does not
/// read ONNX, a model not installed: each an error that says which, never a panic.
#[test]
fn bad_files_and_wrong_models_are_refused_with_the_reason() {
    require_model();
    let refused = |cmd: &mut assert_cmd::Command, says: &str| {
        let err = failure(cmd);
        assert!(err.contains(says), "the error should say `{says}`: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pdf");
    refused(thrum().args(["predict", "-p", MODEL, "--file"]).arg(&missing), "missing.pdf");
    refused(thrum().args(["predict", "-p", MODEL, "--file"]).arg(dir.path()), "a regular file");
    refused(
        thrum().args(["predict", "-p", "zoo:mlp", "--file", "x.pdf"]),
        "--file needs a content-type model, zoo:magika",
    );
    refused(
        thrum().args(["predict", "-e", "mxnet", "-p", MODEL, "--file", "x.pdf"]),
        "ships as an ONNX model",
    );
    refused(
        thrum().args(["zoo", "export", "magika", "-o"]).arg(dir.path().join("m.pt")),
        "ships as the ONNX file",
    );
    let home = tempfile::tempdir().unwrap();
    refused(
        thrum().env("THRUM_HOME", home.path()).args(["predict", "-p", MODEL, "--file", "x.pdf"]),
        "thrum zoo install magika",
    );
}

/// `zoo list` names the package and its licence.
#[test]
fn zoo_list_names_magikas_package_and_licence() {
    let out =
        thrum().args(["zoo", "list", "--json"]).assert().success().get_output().stdout.clone();
    let list: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let model =
        list["pretrained"].as_array().unwrap().iter().find(|m| m["name"] == "magika").unwrap();
    assert_eq!(model["package"], "magika==1.0.3");
    assert!(model["licence"].as_str().unwrap().starts_with("Apache-2.0"));
}

/// Writes `tensor` as .npy into `dir`; its path.
fn npy(dir: &Path, name: &str, tensor: &thrum::Tensor) -> PathBuf {
    let path = dir.join(format!("{name}.npy"));
    common::io::write_npy(&path, tensor).unwrap();
    path
}

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i + seed) * 7919) % 1000) as f32 / 1000.0).collect()
}

/// Every output of `model` on `inputs` (NAME=FILE) by `engine`, read back.
fn run(engine: &str, model: &Path, inputs: &[(String, PathBuf)], out: &Path) -> Vec<thrum::Tensor> {
    let mut cmd = thrum();
    cmd.args(["predict", "-e", engine, "--intra-op-threads", "1", "-p"]).arg(model);
    for (name, path) in inputs {
        cmd.arg("--input").arg(format!("{name}={}", path.display()));
    }
    std::fs::create_dir_all(out).unwrap();
    cmd.arg("-o").arg(out).assert().success();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|f| common::io::read_npy(f).unwrap()).collect()
}

/// tract, the embedded default, loads the real ONNX models from registry packages that it
/// refused before (PaddleOCR's classifier and recogniser: unnamed dimensions, now fresh
/// symbols; PaddleOCR's detector: dimensions it cannot unify in a `Concat`, and Magika: a
/// `BroadcastTo` of variable rank, both now typed from each call's shapes; Silero VAD's
/// `If`-free model), and each agrees with ONNX Runtime within 1e-4. The standard Silero VAD
/// model is the one tract cannot run: its `If` on the sample rate has branches of different
/// ranks, and tract types both; the error says so.
#[test]
fn tract_runs_the_real_onnx_models_it_could_not_load_and_agrees_with_onnx_runtime() {
    require_engine!("ort");
    require_model();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = |h: usize, w_: usize, seed| {
        thrum::Tensor::from_vec(vec![1, 3, h, w_], values(3 * h * w_, seed)).unwrap()
    };
    let tokens: Vec<i32> = (0..2048).map(|i| if i < 1500 { i * 37 % 256 } else { 256 }).collect();
    let magika = thrum::zoo::find_pretrained("magika").unwrap().onnx_file().unwrap();
    let cases: Vec<(PathBuf, Vec<(String, PathBuf)>)> = vec![
        (
            data_file("rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
            vec![("x".into(), npy(w, "cls", &image(48, 192, 1)))],
        ),
        (
            data_file("rapidocr/ch_PP-OCRv4_rec_infer.onnx"),
            vec![("x".into(), npy(w, "rec", &image(48, 320, 2)))],
        ),
        (
            data_file("rapidocr/ch_PP-OCRv4_det_infer.onnx"),
            vec![("x".into(), npy(w, "det", &image(160, 224, 3)))],
        ),
        (
            magika,
            vec![(
                "bytes".into(),
                npy(w, "bytes", &thrum::Tensor::from_vec(vec![1, 2048], tokens).unwrap()),
            )],
        ),
        (
            data_file("silero-vad/silero_vad_op18_ifless.onnx"),
            vec![
                (
                    "input".into(),
                    npy(
                        w,
                        "input",
                        &thrum::Tensor::from_vec(vec![1, 512], values(512, 4)).unwrap(),
                    ),
                ),
                (
                    "state".into(),
                    npy(
                        w,
                        "state",
                        &thrum::Tensor::from_vec(vec![2, 1, 128], vec![0f32; 256]).unwrap(),
                    ),
                ),
                (
                    "sr".into(),
                    npy(w, "sr", &thrum::Tensor::from_vec(vec![], vec![16000i64]).unwrap()),
                ),
            ],
        ),
    ];
    for (k, (model, inputs)) in cases.iter().enumerate() {
        let ours = run("tract", model, inputs, &w.join(format!("tract{k}")));
        let theirs = run("ort", model, inputs, &w.join(format!("ort{k}")));
        assert_eq!(ours.len(), theirs.len(), "{}", model.display());
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a.shape(), b.shape(), "{}", model.display());
            let diff = a
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .zip(b.as_slice::<f32>().unwrap())
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-4, "{}: tract vs ONNX Runtime differ by {diff}", model.display());
        }
    }
    // The standard Silero VAD model: refused with tract's reason, which names the `If`.
    let model = data_file("silero-vad/silero_vad.onnx");
    let mut cmd = thrum();
    cmd.args(["predict", "-e", "tract", "-p"]).arg(&model);
    for (name, path) in &cases[4].1 {
        cmd.arg("--input").arg(format!("{name}={}", path.display()));
    }
    let err = failure(&mut cmd);
    assert!(err.contains("If"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// POSTs `body` to `url`; the status and the JSON answer.
fn post(url: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent.post(url).send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{url}: not JSON: {text}")))
}

/// Magika served three ways, each answering what the Python package answers:
/// TorchServe's `/predictions/magika` with each file as the body (concurrently, so requests
/// batch) → Magika's answer, the same output label, model label and score as the Python
/// package's on every file of the corpus; and the Python `tritonclient`'s v2 BYTES input of
/// the files over HTTP (binary) and gRPC with `class_count=1` → the model's label for every
/// file the package runs its model on. A body that is too big for the server is refused.
#[test]
fn served_magika_answers_torchserve_and_tritonclient_as_the_python_package_does() {
    require_model();
    let files = corpus();
    let theirs = python_magika(&files);
    let server =
        common::serve(&["-p", MODEL, "--max-batch-size", "32", "--max-queue-delay-us", "20000"]);
    let url = format!("http://{}/predictions/magika", server.http);
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|file| {
                let (url, body) = (url.clone(), std::fs::read(file).unwrap());
                s.spawn(move || post(&url, &body))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((status, answer), t) in answers.iter().zip(&theirs) {
        let what = t["path"].to_string();
        assert_eq!(*status, 200, "{what}: {answer}");
        assert_eq!(answer["output"]["label"], t["output"], "{what}: {answer}");
        assert_eq!(answer["dl"]["label"], t["dl"], "{what}: {answer}");
        let (a, b) = (answer["score"].as_f64().unwrap(), t["score"].as_f64().unwrap());
        assert!((a - b).abs() < 1e-4, "{what}: score {a} vs {b}");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/triton_files_check.py");
    let out = std::process::Command::new(venv_python("venv-serve"))
        .arg(script)
        .args([&server.http, &server.grpc, "magika", "target_label"])
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let triton: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for wire in ["http", "grpc"] {
        let tops = triton[wire].as_array().unwrap();
        assert_eq!(tops.len(), files.len(), "{wire}");
        let mut checked = 0;
        for (top, t) in tops.iter().zip(&theirs) {
            if t["dl"] == "undefined" {
                continue; // decided without the model by the package: v2 gives raw scores
            }
            let top = top.as_str().unwrap();
            let label = top.rsplit(':').next().unwrap();
            assert_eq!(label, t["dl"].as_str().unwrap(), "{wire} {}: {top}", t["path"]);
            checked += 1;
        }
        assert!(checked >= 20, "{wire}: {checked} files went to the model");
    }
}

/// `thrum bench --file-dir` measures Magika's whole pipeline on real files (on tract, the
/// embedded default), and the tuner hands the directory to every child `thrum bench` (a
/// wrapper records each child's arguments).
#[test]
fn bench_and_tune_measure_the_file_pipeline() {
    require_model();
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    for f in &corpus()[..6] {
        std::fs::copy(f, files.join(f.file_name().unwrap())).unwrap();
    }
    let out = thrum()
        .args(["bench", "-p", MODEL, "-b", "4", "--duration", "1", "--json", "-", "--file-dir"])
        .arg(&files)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["results"]["samples"].as_u64().unwrap() % 4, 0, "{report}");
    assert!(report["results"]["calls"].as_u64().unwrap() > 0, "{report}");
    let text = report.to_string();
    assert!(text.contains("preprocess") && text.contains("postprocess"), "{text}");
    let (wrapper, log) = common::recording_wrapper(dir.path());
    thrum()
        .args(["tune", "-p", MODEL, "-e", "tract", "--batch", "1", "--measure-s", "0.5"])
        .args(["--budget", "30s", "-q", "-o"])
        .arg(dir.path().join("out"))
        .arg("--file-dir")
        .arg(&files)
        .arg("--bench-exe")
        .arg(&wrapper)
        .timeout(std::time::Duration::from_secs(240))
        .assert()
        .success()
        .stdout(predicates::str::contains("Pick: tract"));
    let children = std::fs::read_to_string(&log).unwrap();
    let wanted = format!("--file-dir {}", files.canonicalize().unwrap().display());
    common::assert_tuned_on(&children, &wanted, None);
    let err = failure(thrum().args(["bench", "-p", "zoo:mlp", "--file-dir"]).arg(&files));
    assert!(err.contains("a content-type model, zoo:magika"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = failure(thrum().args(["bench", "-p", MODEL, "--file-dir"]).arg(&empty));
    assert!(err.contains("at least one file"), "{err}");
}

/// docs/files.md's curl line runs as printed against a server on free ports, in a folder with
/// a `report.pdf` (the corpus's PDF, written by Pillow), and answers what the doc shows.
#[test]
fn the_serving_example_in_docs_files_md_runs_as_printed() {
    require_model();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/files.md"))
        .unwrap();
    let block = |heading: &str, lang: &str| {
        let after = &doc[doc.find(heading).unwrap_or_else(|| panic!("no `{heading}`"))..];
        let fence = format!("```{lang}\n");
        let start = after.find(&fence).unwrap() + fence.len();
        after[start..start + after[start..].find("```").unwrap()].to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(data_file("files/coffee.pdf"), dir.path().join("report.pdf")).unwrap();
    let server = common::serve(&["-p", MODEL]);
    let shell =
        block("### TorchServe's inference API", "sh").replace("127.0.0.1:8080", &server.http);
    assert_eq!(shell.matches("curl ").count(), 1, "{shell}");
    let run = std::process::Command::new("bash")
        .args(["-e", "-c", shell.trim()])
        .current_dir(dir.path())
        .output()
        .expect("bash and curl are needed");
    assert!(run.status.success(), "{shell}: {}", String::from_utf8_lossy(&run.stderr));
    let ours: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let printed: serde_json::Value =
        serde_json::from_str(block("### TorchServe's inference API", "text").trim()).unwrap();
    assert_eq!(ours["output"], printed["output"]);
    assert_eq!(ours["dl"], printed["dl"]);
    let (a, b) = (ours["score"].as_f64().unwrap(), printed["score"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
}
