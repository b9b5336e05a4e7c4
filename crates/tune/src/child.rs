//! Measuring one configuration in a fresh `thrum bench` process: process-wide settings
//! (libtorch's inter-op pool, MXNet's engine type, ONNX Runtime's and TensorFlow's pools) and
//! memory figures are then the configuration's own. A child that fails or outlives its
//! timeout is a failed measurement with its stderr's tail, never the end of the search.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::space::Candidate;

/// Set by the Ctrl-C handler: the running child is stopped and the search ends.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How long one measurement runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Longest measured phase, seconds (it ends earlier once throughput is stable).
    pub max_s: f64,
    /// Window length, seconds.
    pub window_s: f64,
    /// Stability band, percent.
    pub stability_percent: f64,
}

/// What a measurement found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Samples per second.
    pub samples_per_s: f64,
    /// Half-width of the 95 % confidence interval of `samples_per_s`, from the windows.
    pub ci95: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// The child's peak RSS, MiB.
    pub rss_mib: f64,
    /// Cores the child kept busy while measuring.
    pub cores_busy: f64,
    /// Windows measured.
    pub windows: usize,
    /// Whether it stopped early on stability.
    pub stable: bool,
}

/// One measurement's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// It ran.
    Measured(Metrics),
    /// It failed: exit status or timeout, and the end of its stderr.
    Failed {
        /// What happened.
        reason: String,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
}

/// How to start children.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// The `thrum` executable.
    pub exe: PathBuf,
    /// The model, as `thrum bench -p` takes it.
    pub model: String,
    /// Seconds a child may take beyond its measured phase (start, load, warm-up) before it
    /// is killed.
    pub setup_timeout_s: f64,
    /// Arguments every child's `thrum bench` also gets (`--text-file FILE`: the whole text
    /// pipeline on real sentences, not the model on seeded tensors).
    pub extra_args: Vec<String>,
    /// The quantized model int8 candidates of each engine run (`thrum bench --int8-model`),
    /// by engine: each engine's fastest int8 form.
    pub int8_models: std::collections::BTreeMap<String, String>,
}

/// Lines of stderr kept for a failed child.
const TAIL_LINES: usize = 12;

impl Launcher {
    /// The `thrum bench` arguments that run `c`.
    pub fn bench_args(&self, c: &Candidate, budget: &Budget) -> Vec<String> {
        let pairs: Vec<String> = c.option_pairs().iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            "bench".into(),
            "-p".into(),
            self.model.clone(),
            "-e".into(),
            c.engine.clone(),
            "-t".into(),
            c.workers.to_string(),
            "-b".into(),
            c.batch.to_string(),
            "--predictor".into(),
            c.predictor.to_string(),
            "--model-options".into(),
            pairs.join(","),
            "-d".into(),
            format!("{:.3}", budget.max_s),
            "--window-ms".into(),
            format!("{:.0}", budget.window_s * 1e3),
            "--stability-percentage".into(),
            budget.stability_percent.to_string(),
            "--json".into(),
            "-".into(),
            "--quiet".into(),
        ]
        .into_iter()
        .chain(self.extra_args.iter().cloned())
        .chain(
            self.int8_model(c)
                .into_iter()
                .flat_map(|m| ["--int8-model".to_string(), m.to_string()]),
        )
        .collect()
    }

    /// The quantized model `c` runs: its engine's, when `c` is an int8 candidate.
    pub fn int8_model(&self, c: &Candidate) -> Option<&str> {
        self.int8_models
            .get(&c.engine)
            .filter(|_| c.options.get("precision").is_some_and(|p| p == "int8"))
            .map(String::as_str)
    }

    /// Runs `c` in a child and reads its report. Returns the outcome and the child's wall time.
    pub fn measure(&self, c: &Candidate, budget: &Budget) -> (Outcome, f64) {
        let t = Instant::now();
        let outcome = self.run_child(c, budget);
        (outcome, t.elapsed().as_secs_f64())
    }

    fn run_child(&self, c: &Candidate, budget: &Budget) -> Outcome {
        let limit = Duration::from_secs_f64(self.setup_timeout_s + budget.max_s * 1.5);
        match self.run_process(&self.bench_args(c, budget), limit) {
            Err((reason, tail)) => Outcome::Failed { reason, stderr_tail: tail },
            Ok((status, _, tail)) if !status.success() => Outcome::Failed {
                reason: format!("`thrum bench` exited with {status}"),
                stderr_tail: tail,
            },
            Ok((_, out, tail)) => match parse_report(&out) {
                Ok(m) => Outcome::Measured(m),
                Err(why) => Outcome::Failed { reason: why, stderr_tail: tail },
            },
        }
    }

    /// Runs `thrum compare ARGS --json -` (an accuracy check) in a child and reads its report:
    /// a report whose rows fall short (exit 1) is a report too; anything else is an error with
    /// the child's last stderr line. `limit_s` bounds it.
    pub fn compare(
        &self,
        args: &[String],
        limit_s: f64,
    ) -> Result<crate::accuracy::PrecisionReport, String> {
        let mut all = vec!["compare".to_string(), "-p".into(), self.model.clone()];
        all.extend(args.iter().cloned());
        all.extend(["--json".to_string(), "-".into()]);
        let (status, out, tail) = self
            .run_process(&all, Duration::from_secs_f64(limit_s))
            .map_err(|(reason, tail)| {
                format!(
                    "{reason}{}",
                    tail.lines().last().map(|l| format!(": {l}")).unwrap_or_default()
                )
            })?;
        let last = || tail.lines().last().unwrap_or("").to_string();
        if !matches!(status.code(), Some(0 | 1)) {
            return Err(format!("`thrum compare` exited with {status}: {}", last()));
        }
        serde_json::from_slice(&out)
            .map_err(|e| format!("`thrum compare` wrote no report ({e}): {}", last()))
    }

    /// Runs `EXE ARGS` in a process group of its own, killed with the group after `limit` or
    /// on Ctrl-C. Returns its status, stdout and the tail of its stderr; or why it did not
    /// finish, with that tail.
    fn run_process(
        &self,
        args: &[String],
        limit: Duration,
    ) -> Result<(std::process::ExitStatus, Vec<u8>, String), (String, String)> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own: on a timeout the whole group is killed, so that a wrapper
            // that does not `exec` cannot leave `thrum bench` running with the pipes open.
            .process_group(0);
        // The candidate's options are the only ones: none from the parent's environment.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name == "THRUM_CONFIG" || thrum_core::config::all_keys().any(|k| k.env == name) {
                cmd.env_remove(name.as_ref());
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| (format!("cannot start `{}`: {e}", self.exe.display()), String::new()))?;
        let stdout = child.stdout.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                buf
            })
        });
        let stderr = child.stderr.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                buf
            })
        });
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if start.elapsed() > limit => {
                    kill_group(&mut child);
                    break Err(format!(
                        "timed out: still running after {:.0} s, killed",
                        limit.as_secs_f64()
                    ));
                }
                Ok(None) if INTERRUPTED.load(Ordering::SeqCst) => {
                    kill_group(&mut child);
                    break Err("interrupted".into());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    // Killed, so that its pipes close and the readers below return.
                    kill_group(&mut child);
                    break Err(format!("cannot wait for it: {e}"));
                }
            }
        };
        let out = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
        let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        let tail = tail(&String::from_utf8_lossy(&err));
        status.map(|s| (s, out, tail.clone())).map_err(|reason| (reason, tail))
    }
}

/// Kills `child`'s process group (it leads one: `process_group(0)`), then reaps it.
fn kill_group(child: &mut std::process::Child) {
    if let Some(pid) = i32::try_from(child.id()).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of `text`.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Reads a `thrum bench --json` report.
pub fn parse_report(json: &[u8]) -> Result<Metrics, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("its report is not JSON ({e})"))?;
    let num = |path: &[&str]| -> Option<f64> {
        let mut cur = &v;
        for p in path {
            cur = cur.get(p)?;
        }
        cur.as_f64()
    };
    let samples_per_s =
        num(&["results", "samples_per_s"]).ok_or("its report has no samples_per_s")?;
    let windows: Vec<f64> = v["results"]["window_samples_per_s"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    Ok(Metrics {
        samples_per_s,
        ci95: ci95(&windows, samples_per_s),
        p50_ms: num(&["results", "latency_ms", "total", "p50_ms"]).unwrap_or(f64::NAN),
        p99_ms: num(&["results", "latency_ms", "total", "p99_ms"]).unwrap_or(f64::NAN),
        rss_mib: num(&["memory", "rss_peak_process_mib"]).unwrap_or(f64::NAN),
        cores_busy: num(&["cpu", "cores_busy"]).unwrap_or(f64::NAN),
        windows: windows.len(),
        stable: v["results"]["stable"].as_bool().unwrap_or(false),
    })
}

/// Half-width of a 95 % confidence interval of the mean window rate (Student's t for the
/// window count); 10 % of the rate when there are fewer than two windows.
pub fn ci95(windows: &[f64], rate: f64) -> f64 {
    let n = windows.len();
    if n < 2 {
        return rate * 0.1;
    }
    let mean = windows.iter().sum::<f64>() / n as f64;
    let var = windows.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // Two-sided 97.5 % quantiles of Student's t for 1..=9 degrees of freedom, then ~normal.
    const T: [f64; 9] = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26];
    let t = T.get(n - 2).copied().unwrap_or(2.0);
    t * (var / n as f64).sqrt()
}

/// Where a checkpoint goes by default, beside the other outputs.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wrapper that does not `exec` (here: starts a long `sleep` holding the pipes, then
    /// waits for it) is killed with everything it started, at the timeout.
    #[test]
    fn a_timed_out_child_is_killed_with_its_whole_process_group() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let wrapper = dir.path().join("wrapper.sh");
        std::fs::write(&wrapper, "#!/bin/sh\nsleep 60 &\nwait\n").unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let launcher = Launcher {
            exe: wrapper,
            model: "zoo:mlp".into(),
            setup_timeout_s: 0.5,
            extra_args: Vec::new(),
            int8_models: Default::default(),
        };
        let candidate = Candidate {
            engine: "tract".into(),
            workers: 1,
            intra: 1,
            batch: 1,
            predictor: thrum_core::PredictorKind::PerThread,
            options: std::collections::BTreeMap::new(),
            probe: false,
        };
        let budget = Budget { max_s: 0.2, window_s: 0.1, stability_percent: 10.0 };
        let t = Instant::now();
        let (outcome, _) = launcher.measure(&candidate, &budget);
        assert!(t.elapsed() < Duration::from_secs(20), "hung for {:?}", t.elapsed());
        match outcome {
            Outcome::Failed { reason, .. } => assert!(reason.contains("timed out"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ci_narrows_with_agreeing_windows() {
        let wide = ci95(&[90.0, 110.0, 95.0, 105.0], 100.0);
        let narrow = ci95(&[99.0, 101.0, 100.0, 100.0], 100.0);
        assert!(narrow < wide && narrow > 0.0, "{narrow} {wide}");
        assert_eq!(ci95(&[100.0], 100.0), 10.0);
    }
}
