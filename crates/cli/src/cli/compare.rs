//! `thrum compare`: every engine runs the model on the same seeded input; a table of the
//! differences per output against the first engine, and each engine's single-call latency.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use thrum::{Engine, ModelFormat, ModelRef, Options};
use thrum_tune::compare::{self, Comparison, DEFAULT_TOLERANCE, EngineFailure};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  thrum compare -p zoo:resnet50\n  thrum compare -p model.onnx -e tract,ort --json diff.json\n\nExit status: 0 when every engine agrees, 1 when one disagrees, 2 for bad arguments or when fewer than two engines can run the model."
)]
pub struct CompareArgs {
    /// Model file, or zoo:NAME (every engine reads zoo models).
    #[arg(short = 'p', long = "model-path", value_name = "MODEL")]
    model_path: String,

    /// Engines to compare, comma-separated (the first is the reference). Default: every
    /// engine compiled in, installed, and reading the model's format.
    #[arg(short, long, value_name = "E1,E2", value_delimiter = ',')]
    engines: Vec<String>,

    /// Relative tolerance: max |difference| over max |reference output|.
    #[arg(long, value_name = "REL", default_value_t = DEFAULT_TOLERANCE)]
    tolerance: f64,

    /// Write the table as JSON to FILE ('-' for stdout).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// A validated `compare` command.
pub struct ComparePlan {
    model_path: String,
    model: ModelRef,
    engines: Vec<Arc<dyn Engine>>,
    explicit: bool,
    tolerance: f64,
    json: Option<PathBuf>,
}

impl ComparePlan {
    pub fn from_args(args: CompareArgs) -> anyhow::Result<ComparePlan> {
        let model = ModelRef::parse(&args.model_path)?;
        let registry = thrum::registry();
        let explicit = !args.engines.is_empty();
        let engines = if explicit {
            args.engines.iter().map(|e| registry.get(e)).collect::<Result<Vec<_>, _>>()?
        } else {
            registry.engines().cloned().collect()
        };
        if !(args.tolerance >= 0.0 && args.tolerance.is_finite()) {
            return Err(thrum_tune::TuneError::Config {
                what: format!("--tolerance {}", args.tolerance),
                expected: "a relative tolerance of 0 or more".into(),
            }
            .into());
        }
        Ok(ComparePlan {
            model_path: args.model_path,
            model,
            engines,
            explicit,
            tolerance: args.tolerance,
            json: args.json,
        })
    }

    pub fn run(self) -> anyhow::Result<()> {
        let comparison = run_comparison(
            &self.model_path,
            &self.model,
            &self.engines,
            self.explicit,
            self.tolerance,
        )?;
        let to_stdout = self.json.as_deref() == Some(std::path::Path::new("-"));
        if to_stdout {
            comparison.write_table(&mut std::io::stderr().lock())?;
        } else {
            comparison.write_table(&mut std::io::stdout().lock())?;
        }
        if let Some(path) = &self.json {
            let json = serde_json::to_string_pretty(&comparison)?;
            super::report::write_output(path, &json)?;
        }
        if comparison.runs.len() < 2 {
            return Err(thrum_tune::TuneError::Config {
                what: format!(
                    "{} engine(s) able to run `{}`",
                    comparison.runs.len(),
                    self.model_path
                ),
                expected: "at least two to compare".into(),
            }
            .into());
        }
        let bad = comparison.disagreeing();
        if !bad.is_empty() {
            return Err(thrum_tune::TuneError::Disagree {
                engines: bad,
                tolerance: self.tolerance,
            }
            .into());
        }
        Ok(())
    }
}

/// Why `engine` is not tried on `model` without being asked for: not installed, or it does
/// not read the file's format. `None` when it is tried.
pub fn not_tried(engine: &dyn Engine, model: &ModelRef) -> Option<String> {
    let check = engine.check();
    if !check.available {
        return Some(check.detail.unwrap_or_else(|| "not available".into()));
    }
    if let ModelRef::Path(path) = model
        && let Some(format) = ModelFormat::detect(path)
        && !engine.info().formats.contains(&format)
    {
        return Some(format!(
            "reads {}, not {}",
            engine.info().formats.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
            format.name
        ));
    }
    None
}

/// Runs every engine (in this process) and compares. Engines not asked for by name that are
/// not installed or do not read the format are left out, as failures with the reason.
pub fn run_comparison(
    model_path: &str,
    model: &ModelRef,
    engines: &[Arc<dyn Engine>],
    explicit: bool,
    tolerance: f64,
) -> anyhow::Result<Comparison> {
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for engine in engines {
        if !explicit && let Some(reason) = not_tried(engine.as_ref(), model) {
            failures.push(EngineFailure { engine: engine.name().into(), reason });
            continue;
        }
        let result = model
            .source(engine.as_ref())
            .map_err(thrum_tune::TuneError::from)
            .and_then(|source| compare::run_engine(engine.as_ref(), &source, &Options::default()));
        match result {
            Ok(run) => runs.push(run),
            Err(e) => {
                failures.push(EngineFailure { engine: engine.name().into(), reason: e.to_string() })
            }
        }
    }
    Ok(compare::compare(model_path, runs, failures, tolerance))
}
