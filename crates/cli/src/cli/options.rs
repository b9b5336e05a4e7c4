//! The option flags every command that loads a model shares, and their resolution into
//! `Options`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use thrum::Options;

/// `--config FILE` (an options TOML) and the option flags.
#[derive(Args, Debug)]
pub struct OptionArgs {
    /// TOML file of options, applied before environment variables and flags.
    #[arg(long, env = "THRUM_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(flatten)]
    flags: OptionFlags,
}

/// The flags that set options, applied over a file and the environment.
#[derive(Args, Clone, Debug)]
pub struct OptionFlags {
    /// Options as key=value pairs separated by commas (keys: docs/configuration.md).
    #[arg(long, value_name = "K=V,...")]
    model_options: Option<String>,

    /// Threads inside one operator (the intra_op_threads option).
    #[arg(long, value_name = "N")]
    intra_op_threads: Option<usize>,

    /// Threads running independent operators (the inter_op_threads option).
    #[arg(long, value_name = "N")]
    inter_op_threads: Option<usize>,

    /// Use oneDNN (MKLDNN) kernels (the onednn option); engines without them say so.
    #[arg(long)]
    onednn: bool,
}

/// Warns about the `THRUM_*` variables `Options::resolve` ignored.
pub fn warn(warnings: Vec<thrum::config::EnvWarning>) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

impl OptionArgs {
    /// Whether `--config` (or `THRUM_CONFIG`) was given.
    pub fn has_config(&self) -> bool {
        self.config.is_some()
    }

    /// The `--config` file's model settings (engine, model, workers, batching) when it is a
    /// model's thrum.toml (what `thrum tune` writes) rather than an options file.
    pub fn model_file(&self) -> anyhow::Result<Option<thrum_serve::config::ModelEntry>> {
        let Some(path) = &self.config else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            // Options::resolve reports the syntax error.
            Err(_) => return Ok(None),
        };
        if !table.contains_key("options") {
            return Ok(None);
        }
        // A file without `model` leaves it to -p (or bench's default model).
        let default_model = std::path::Path::new("zoo:resnet18");
        let mut entries = thrum_serve::config::read_file(path, Some("model"), Some(default_model))?;
        Ok(entries.pop())
    }

    /// Defaults ← TOML file ← `THRUM_*` environment ← `--model-options` ← dedicated flags.
    pub fn resolve(&self) -> anyhow::Result<Options> {
        let (mut options, warnings) = Options::resolve(self.config.as_deref())?;
        warn(warnings);
        self.flags.apply(&mut options)?;
        Ok(options)
    }
}

impl OptionFlags {
    /// Applies `--model-options`, then the dedicated flags, over `options`.
    pub fn apply(&self, options: &mut Options) -> anyhow::Result<()> {
        if let Some(pairs) = &self.model_options {
            options.apply_pairs(pairs)?;
        }
        if let Some(n) = self.intra_op_threads {
            options.set("intra_op_threads", &n.to_string())?;
        }
        if let Some(n) = self.inter_op_threads {
            options.set("inter_op_threads", &n.to_string())?;
        }
        if self.onednn {
            options.set("onednn", "true")?;
        }
        Ok(())
    }
}
