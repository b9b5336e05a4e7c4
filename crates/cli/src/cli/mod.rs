//! Command-line arguments (clap derive) and dispatch. Each command parses its raw flags into
//! a validated plan first, then runs the plan: execution never sees raw strings.

mod bench;
mod compare;
mod engines;
mod load;
mod options;
mod predict;
mod quantize;
mod report;
mod samples;
mod serve;
mod tune;
mod zoo;

use clap::{Parser, Subcommand};

/// thrum: fast multi-threaded inference across engines (tract, ONNX Runtime, PyTorch, MXNet).
#[derive(Parser, Debug)]
#[command(name = "thrum", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Benchmark a model: multi-threaded throughput, latency percentiles, memory, CPU.
    Bench(Box<bench::BenchArgs>),
    /// Run one inference on a model and summarise (or save) its outputs.
    Predict(predict::PredictArgs),
    /// Serve models over the KServe v2 / Open Inference Protocol (REST and gRPC).
    Serve(Box<serve::ServeArgs>),
    /// Load a KServe v2 server and measure it (perf_analyzer's job): throughput, latency, server split.
    Load(Box<load::LoadArgs>),
    /// Find the fastest configuration for a model on this machine, across engines (writes thrum.toml).
    Tune(Box<tune::TuneArgs>),
    /// Run a model on every engine with the same input and compare outputs and latency.
    Compare(compare::CompareArgs),
    /// Quantize an ONNX model to int8 (QDQ), calibrated on images, .npy files or sample inputs.
    Quantize(Box<quantize::QuantizeArgs>),
    /// List every engine and whether it can run here (library, version, providers).
    Engines(engines::EnginesArgs),
    /// Models built by code, no download: list them, export them.
    Zoo {
        #[command(subcommand)]
        command: zoo::ZooCommand,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench(args) => bench::BenchPlan::from_args(*args)?.run(),
        Command::Predict(args) => predict::PredictPlan::from_args(args)?.run(),
        Command::Serve(args) => serve::ServePlan::from_args(*args)?.run(),
        Command::Load(args) => load::LoadCommand::from_args(*args)?.run(),
        Command::Tune(args) => tune::TunePlan::from_args(*args)?.run(),
        Command::Compare(args) => compare::ComparePlan::from_args(args)?.run(),
        Command::Quantize(args) => quantize::QuantizePlan::from_args(*args)?.run(),
        Command::Engines(args) => engines::run(args),
        Command::Zoo { command } => zoo::run(command),
    }
}

/// The kind of an error: that of the first error in its chain that has one (thrum's errors and
/// the benchmark library's). An error without one comes from the command line's own checks of
/// its arguments and files: invalid input.
pub fn kind(err: &anyhow::Error) -> thrum::ErrorKind {
    err.chain()
        .find_map(|cause| {
            cause
                .downcast_ref::<thrum::Error>()
                .map(thrum::Error::kind)
                .or_else(|| cause.downcast_ref::<thrum_bench::BenchError>().map(|e| e.kind()))
                .or_else(|| cause.downcast_ref::<thrum_serve::ServeError>().map(|e| e.kind()))
                .or_else(|| cause.downcast_ref::<thrum_load::LoadError>().map(|e| e.kind()))
                .or_else(|| cause.downcast_ref::<thrum_tune::TuneError>().map(|e| e.kind()))
                .or_else(|| cause.downcast_ref::<thrum_quant::QuantError>().map(|e| e.kind()))
        })
        .unwrap_or(thrum::ErrorKind::InvalidInput)
}

/// Exit status for an error, from its kind alone: 2 when the caller can fix it (bad arguments,
/// files, models, options, an engine not installed), like clap's usage errors; 1 otherwise (an
/// engine failed while running).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if kind(err).is_caller_error() { 2 } else { 1 }
}

/// The error and its causes, each once: a cause whose text the level above already includes
/// is not repeated.
pub fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let line = cause.to_string();
        if !text.contains(&line) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&line);
        }
    }
    text
}

/// What `engine` loads for `model`: its own graph (a zoo model that `engine` reads as
/// TorchScript traced in bf16 for `precision = bf16`), or with `precision = int8` the quantized
/// graph `int8_model` (`--int8-model`, a thrum.toml's `int8_model`) while `model` keeps the
/// pipeline. An `int8_model` without int8 precision, or one that is not a file, is refused.
pub fn model_source(
    model: &thrum::ModelRef,
    engine: &dyn thrum::Engine,
    int8_model: Option<&std::path::Path>,
    options: &thrum::Options,
) -> anyhow::Result<thrum::ModelSource> {
    let bad = |what: String, expected: &str| thrum_bench::BenchError::Config {
        what,
        expected: expected.into(),
    };
    match int8_model {
        None => Ok(model.source_for(engine, options.precision.unwrap_or_default())?),
        Some(file) if options.precision != Some(thrum::Precision::Int8) => Err(bad(
            format!(
                "int8 model `{}` with precision {}",
                file.display(),
                options.precision.unwrap_or_default()
            ),
            "precision=int8 with an int8 model, or no int8 model",
        )
        .into()),
        Some(file) if !file.is_file() => Err(bad(
            format!("int8 model `{}`: no such file", file.display()),
            "the quantized model `thrum quantize` wrote",
        )
        .into()),
        Some(file) => Ok(thrum::ModelSource::path(file)),
    }
}
