//! Command-line arguments (clap derive) and dispatch. Each command parses its raw flags into
//! a validated plan first, then runs the plan: execution never sees raw strings.

mod bench;
mod engines;
mod options;
mod predict;
mod report;
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
        Command::Engines(args) => engines::run(args),
        Command::Zoo { command } => zoo::run(command),
    }
}

/// Exit status for an error: 1 when an engine failed while running a model, 2 for everything
/// the user can fix (bad arguments, files, models, options), like clap's usage errors.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(bench) = err.downcast_ref::<thrum_bench::BenchError>() {
        return if bench.is_user_error() { 2 } else { 1 };
    }
    let core = match err.downcast_ref::<thrum::Error>() {
        Some(thrum::Error::Core(core)) => Some(core),
        Some(_) => None,
        None => err.downcast_ref::<thrum::CoreError>(),
    };
    match core {
        Some(thrum::CoreError::Inference { .. }) => 1,
        _ => 2,
    }
}
