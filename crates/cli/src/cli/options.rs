//! The option flags every command that loads a model shares, and their resolution into
//! `Options`.

use std::path::PathBuf;

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
#[derive(Args, Debug)]
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
