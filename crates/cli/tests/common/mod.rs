//! Helpers shared by the CLI integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by several test crates; tests fail by panicking

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use assert_cmd::Command;

/// The binary's tensor files (`.npy`, `.pb`, `.json`), to write inputs and read outputs.
#[path = "../../src/io.rs"]
pub mod io;

/// The `thrum` binary under test.
pub fn thrum() -> Command {
    let mut cmd = Command::cargo_bin("thrum").unwrap();
    // Tests must not pick up a developer's THRUM_* options.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("THRUM_") && name != "THRUM_HOME" {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The onnx wheel's light models, installed by `scripts/install-test-data.sh`. Fails loudly
/// when they are missing: these tests must run in the test command, never be skipped.
pub fn light_models_dir() -> PathBuf {
    let dir = thrum::config::thrum_home().join("testdata").join("onnx-light");
    assert!(
        dir.join("light_resnet50.onnx").is_file(),
        "test data missing: {} has no light_resnet50.onnx. Run `bash scripts/install-test-data.sh` \
         (the README's test command does).",
        dir.display()
    );
    dir
}

/// An engine whose runtime this build of `thrum` does not include, if any.
pub fn engine_not_compiled_in() -> Option<&'static str> {
    thrum::engine::infos()
        .into_iter()
        .find(|i| {
            matches!(
                (i.engine)().load(&thrum::ModelSource::path("x"), &thrum::Options::default()),
                Err(thrum::Error::EngineNotCompiled { .. })
            )
        })
        .map(|i| i.name)
}

/// Runs `thrum bench --memory-report -q` with `args` and returns the steps of its
/// `memory.json` (one per predictor count: 1, 2, 4, 8).
pub fn memory_report_steps(args: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    thrum()
        .args(["bench", "--memory-report", "-q", "-o"])
        .arg(dir.path())
        .args(args)
        .assert()
        .success();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("memory.json")).unwrap())
            .unwrap();
    let steps = report["steps"].as_array().unwrap().clone();
    assert_eq!(steps.last().unwrap()["predictors"], 8);
    steps
}

/// The Python of one of the venvs `scripts/install-test-data.sh` makes (`venv-serve` with
/// tritonclient, jsonschema and PyYAML; `venv-mlserver` with MLServer). Missing is a failure.
pub fn venv_python(venv: &str) -> PathBuf {
    let python = thrum::config::thrum_home().join("testdata").join(venv).join("bin/python");
    assert!(
        python.is_file(),
        "{} missing: run `bash scripts/install-test-data.sh` (the README's test command does)",
        python.display()
    );
    python
}

/// A `thrum serve` process on free ports of 127.0.0.1; killed when dropped.
pub struct Serving {
    pub child: Child,
    pub http: String,
    pub grpc: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `thrum serve ARGS` on free ports and waits until it listens.
pub fn serve(args: &[&str]) -> Serving {
    serve_with(|exe| std::process::Command::new(exe), args)
}

/// Like [`serve`], with the command built by `wrap` from the binary's path (to run it under
/// `taskset`, in a cgroup…): `wrap` returns a command that runs that binary with the arguments
/// added after it.
pub fn serve_with(wrap: impl FnOnce(&Path) -> std::process::Command, args: &[&str]) -> Serving {
    let exe = assert_cmd::cargo::cargo_bin("thrum");
    let mut command = wrap(&exe);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("THRUM_") && name != "THRUM_HOME" {
            command.env_remove(name);
        }
    }
    let mut child = command
        .arg("serve")
        .args(["--http-port", "0", "--grpc-port", "0"])
        // No drain delay in tests unless the test is about it.
        .args(if args.contains(&"--shutdown-grace-s") {
            &[][..]
        } else {
            &["--shutdown-grace-s", "0"][..]
        })
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .unwrap_or_else(|| panic!("thrum serve {args:?} exited before listening"))
        .unwrap();
    // "thrum serve: listening on http 127.0.0.1:P grpc 127.0.0.1:Q"
    let words: Vec<&str> = line.split_whitespace().collect();
    let http = words[words.iter().position(|w| *w == "http").unwrap() + 1].to_string();
    let grpc = words[words.iter().position(|w| *w == "grpc").unwrap() + 1].to_string();
    std::thread::spawn(move || for _ in lines {});
    Serving { child, http, grpc }
}

/// GET `url` and parse its JSON body (any status).
pub fn get_json(url: &str) -> serde_json::Value {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    serde_json::from_slice(&r.body_mut().read_to_vec().unwrap())
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// `thrum predict -e ENGINE -p MODEL --input INPUT -o OUT` (OUT a `.npy`): the first output.
pub fn predict_npy(engine: &str, model: &str, input: &Path, out: &Path) -> thrum::Tensor {
    thrum()
        .args(["predict", "-e", engine, "-p", model, "--input"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .assert()
        .success();
    io::read_npy(out).unwrap()
}

/// POSTs a v2 inference with JSON `inputs` (name → tensor) to `model` on `http` and returns
/// each output's values as f64, by name (any status other than 200 fails, with the body).
pub fn infer_json(
    http: &str,
    model: &str,
    inputs: &[(&str, &thrum::Tensor)],
) -> std::collections::BTreeMap<String, Vec<f64>> {
    let body = serde_json::json!({
        "inputs": inputs
            .iter()
            .map(|(name, t)| {
                let data: Vec<serde_json::Value> = match t.dtype() {
                    thrum::DType::F32 | thrum::DType::F64 => {
                        t.to_f64_vec().unwrap().into_iter().map(serde_json::Value::from).collect()
                    }
                    _ => t
                        .to_f64_vec()
                        .unwrap()
                        .into_iter()
                        .map(|v| serde_json::Value::from(v as i64))
                        .collect(),
                };
                serde_json::json!({
                    "name": name,
                    "shape": t.shape(),
                    "datatype": thrum_serve::v2::datatype(t.dtype()),
                    "data": data,
                })
            })
            .collect::<Vec<_>>(),
    });
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent
        .post(format!("http://{http}/v2/models/{model}/infer"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("POST to {model}: {e}"));
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{model}: {text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["datatype"] != "BYTES")
        .map(|o| {
            let values = o["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap());
            (o["name"].as_str().unwrap().to_string(), values.collect())
        })
        .collect()
}

/// A shell script that records its arguments in `dir/children.log`, then runs `thrum` with
/// them: `thrum tune --bench-exe` with it shows what every child was asked. Returns the script
/// and the log.
pub fn recording_wrapper(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("children.log");
    let wrapper = dir.join("child.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            assert_cmd::cargo::cargo_bin("thrum").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (wrapper, log)
}

/// What a recording wrapper's log (`children`) shows of a tune run over real samples: every
/// child `thrum bench` got `bench_flag` (`--text-file PATH`), and the pick's own configuration
/// was checked in a child `thrum compare --config` before it was written, like every compare
/// child on `compare_flag` where there is one (`--texts PATH`; samples of a kind compare
/// cannot read are seeded).
pub fn assert_tuned_on(children: &str, bench_flag: &str, compare_flag: Option<&str>) {
    let benches: Vec<&str> = children.lines().filter(|l| l.starts_with("bench ")).collect();
    assert!(benches.len() >= 2, "{children}");
    assert!(benches.iter().all(|l| l.contains(bench_flag)), "{children}");
    let compares: Vec<&str> = children.lines().filter(|l| l.starts_with("compare ")).collect();
    assert!(compares.iter().any(|l| l.contains("--config")), "{children}");
    if let Some(flag) = compare_flag {
        assert!(compares.iter().all(|l| l.contains(flag)), "{children}");
    }
}

/// Runs `cmd`, which must succeed, and parses its stdout as JSON (a `--json -` report).
pub fn json_of(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out)))
}
