//! `thrum engines`: every engine with its `check()` result and capabilities.

use clap::{Args, Subcommand};
use thrum::Support;

use super::report;

#[derive(Args, Debug)]
pub struct EnginesArgs {
    #[command(subcommand)]
    command: Option<EnginesCommand>,
    /// Print as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum EnginesCommand {
    /// Download an engine's native library from its PyPI wheel (with `python3 -m pip download`)
    /// into $THRUM_HOME/engines/ENGINE, where thrum looks for it.
    Install {
        /// Engines to install: ort.
        #[arg(required = true)]
        engines: Vec<String>,
    },
}

#[derive(serde::Serialize)]
struct EngineRow {
    #[serde(flatten)]
    check: thrum::EngineCheck,
    capabilities: thrum::Capabilities,
}

pub fn run(args: EnginesArgs) -> anyhow::Result<()> {
    if let Some(EnginesCommand::Install { engines }) = args.command {
        thrum_install::install_all(&engines, &mut std::io::stdout())?;
        return Ok(());
    }
    let registry = thrum::registry();
    let rows: Vec<EngineRow> = registry
        .engines()
        .map(|e| EngineRow { check: e.check(), capabilities: e.capabilities() })
        .collect();
    if args.json {
        return report::print_json(&rows);
    }
    println!("cpu: {}", thrum::CpuFeatures::detect().summary());
    let yes_no = |s: &Support| if s.is_yes() { "yes" } else { "no" }.to_string();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let c = &r.check;
            vec![
                c.engine.to_string(),
                if c.available { "yes" } else { "no" }.into(),
                c.version.clone().unwrap_or_else(|| "-".into()),
                c.library.as_ref().map_or_else(|| "-".into(), |p| p.display().to_string()),
                if c.providers.is_empty() { "-".into() } else { c.providers.join(", ") },
                if c.available { yes_no(&r.capabilities.shared_predictor) } else { "-".into() },
                if c.available { yes_no(&r.capabilities.onednn) } else { "-".into() },
                c.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    report::print_table(
        &[
            "engine",
            "available",
            "version",
            "library",
            "providers",
            "shared predictor",
            "onednn",
            "detail",
        ],
        &table,
    )
}
