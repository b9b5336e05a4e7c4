//! `thrum zoo list` and `thrum zoo export`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use thrum::ModelFormat;
use thrum::zoo;

use super::report;

#[derive(Subcommand, Debug)]
pub enum ZooCommand {
    /// List the zoo's models with their input spec, size and FLOPs per sample.
    List {
        /// Print as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Export a zoo model to a file (weights deterministic from the seed).
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Zoo model name (see `thrum zoo list`).
    name: String,
    /// onnx, torchscript, mxnet or tf-graph; taken from the output's name when omitted (.onnx,
    /// .pt, -symbol.json, .pb). With --format, any name: the engine loads it back from that name.
    #[arg(short, long, value_parser = parse_format)]
    format: Option<ModelFormat>,
    /// Output file.
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
    /// Seed of the weights; the same seed gives the same weights in every format.
    #[arg(long, default_value_t = zoo::DEFAULT_SEED)]
    seed: u64,
}

#[derive(serde::Serialize)]
struct ZooRow {
    name: &'static str,
    description: &'static str,
    inputs: Vec<String>,
    outputs: Vec<String>,
    parameters: usize,
    flops_per_sample: u64,
}

pub fn run(command: ZooCommand) -> anyhow::Result<()> {
    match command {
        ZooCommand::List { json } => list(json),
        ZooCommand::Export(args) => export(args),
    }
}

fn list(json: bool) -> anyhow::Result<()> {
    let rows: Vec<ZooRow> = zoo::models()
        .iter()
        .map(|m| {
            let graph = m.build(zoo::DEFAULT_SEED);
            ZooRow {
                name: m.name,
                description: m.description,
                inputs: graph.inputs.iter().map(|s| s.to_string()).collect(),
                outputs: graph.outputs.iter().map(|s| s.to_string()).collect(),
                parameters: graph.parameter_count(),
                flops_per_sample: graph.flops_per_sample,
            }
        })
        .collect();
    if json {
        return report::print_json(&rows);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.into(),
                r.inputs.join("; "),
                r.outputs.join("; "),
                format!("{:.2} M", r.parameters as f64 / 1e6),
                format!("{:.3}", r.flops_per_sample as f64 / 1e9),
                r.description.into(),
            ]
        })
        .collect();
    report::print_table(
        &["name", "input", "output", "params", "GFLOPs/sample", "description"],
        &table,
    )
}

fn parse_format(text: &str) -> Result<ModelFormat, String> {
    let formats = zoo::export_formats();
    formats.iter().copied().find(|f| f.id.eq_ignore_ascii_case(text.trim())).ok_or_else(|| {
        format!(
            "unknown format `{text}`; the zoo exports {}",
            formats.iter().map(|f| f.id).collect::<Vec<_>>().join(", ")
        )
    })
}

/// A validated export.
struct ExportPlan {
    model: &'static zoo::ZooModel,
    format: ModelFormat,
    output: PathBuf,
    seed: u64,
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let plan = ExportPlan {
        model: zoo::find(&args.name)?,
        format: match args.format {
            Some(f) => f,
            None => zoo::format_of(&args.output)?,
        },
        output: args.output,
        seed: args.seed,
    };
    let graph = plan.model.build(plan.seed);
    zoo::export(&graph, plan.format, &plan.output)?;
    println!(
        "exported {} ({:.2} M parameters, seed {}) to {}",
        graph.name,
        graph.parameter_count() as f64 / 1e6,
        plan.seed,
        plan.output.display()
    );
    Ok(())
}
