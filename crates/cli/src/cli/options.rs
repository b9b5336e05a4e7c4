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

/// The pre-processing of an image model given as a file, where TorchServe's defaults
/// (shorter side 256, center 224, ImageNet's mean and std) are not what its weights were
/// trained with. A zoo image model has its own, and refuses these.
#[derive(Args, Clone, Debug, Default)]
pub struct ImageRecipeArgs {
    /// Image model files: resize the shorter side to N pixels (antialiased bilinear, as Pillow
    /// does) before the center crop. Default: 256 for a 224 crop, in that proportion for
    /// another crop (torchvision's and TorchServe's convention).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16384))]
    image_resize: Option<u32>,

    /// Image model files: the side of the center crop, which is the model's input side.
    /// Default 224.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16384))]
    image_crop: Option<u32>,

    /// Image model files: the per-channel mean subtracted, R,G,B on the 0–1 scale. Default
    /// ImageNet's, 0.485,0.456,0.406. TensorFlow's (x − 127) / 128 on 0–255 is
    /// 0.498,0.498,0.498 with a std of 0.502,0.502,0.502; Keras's "tf" mode (x / 127.5 − 1)
    /// is 0.5,0.5,0.5 with 0.5,0.5,0.5.
    #[arg(long, value_name = "R,G,B", value_parser = |v: &str| rgb(v, false))]
    image_mean: Option<[f32; 3]>,

    /// Image model files: the per-channel standard deviation divided by, R,G,B on the 0–1
    /// scale, each above 0. Default ImageNet's, 0.229,0.224,0.225.
    #[arg(long, value_name = "R,G,B", value_parser = |v: &str| rgb(v, true))]
    image_std: Option<[f32; 3]>,
}

/// Three finite numbers, `R,G,B`; `positive`: each above 0.
fn rgb(text: &str, positive: bool) -> Result<[f32; 3], String> {
    let values = text
        .split(',')
        .map(|v| v.trim().parse::<f32>().ok().filter(|x| x.is_finite() && (!positive || *x > 0.0)))
        .collect::<Option<Vec<f32>>>();
    let (what, example) = if positive {
        ("three numbers above 0", "0.229,0.224,0.225")
    } else {
        ("three finite numbers", "0.485,0.456,0.406")
    };
    match values.as_deref() {
        Some(&[r, g, b]) => Ok([r, g, b]),
        _ => Err(format!(
            "`{text}` is not R,G,B: expected {what} separated by commas, on the 0–1 scale \
             ({example})"
        )),
    }
}

impl ImageRecipeArgs {
    /// The flags as given, for a child `thrum` (tune's bench and compare runs).
    pub fn to_args(&self) -> Vec<String> {
        let rgb = |v: [f32; 3]| format!("{},{},{}", v[0], v[1], v[2]);
        let mut args = Vec::new();
        if let Some(n) = self.image_resize {
            args.extend(["--image-resize".to_string(), n.to_string()]);
        }
        if let Some(n) = self.image_crop {
            args.extend(["--image-crop".to_string(), n.to_string()]);
        }
        if let Some(v) = self.image_mean {
            args.extend(["--image-mean".to_string(), rgb(v)]);
        }
        if let Some(v) = self.image_std {
            args.extend(["--image-std".to_string(), rgb(v)]);
        }
        args
    }

    /// The recipe the flags give for `model`, checked (no I/O): `None` when no flag is given
    /// (the model's own recipe, or TorchServe's for a file).
    pub fn recipe(&self, model: &thrum::ModelRef) -> anyhow::Result<Option<thrum::ImageRecipe>> {
        let given = [
            ("--image-resize", self.image_resize.is_some()),
            ("--image-crop", self.image_crop.is_some()),
            ("--image-mean", self.image_mean.is_some()),
            ("--image-std", self.image_std.is_some()),
        ];
        let Some((flag, _)) = given.iter().find(|(_, set)| *set) else { return Ok(None) };
        if let thrum::ModelRef::Pretrained(m) = model {
            if model.is_image_model() {
                anyhow::bail!(
                    "{flag} is for an image model given as a file: zoo:{} has its own \
                     pre-processing",
                    m.name()
                );
            }
            anyhow::bail!("{flag} pre-processes images: zoo:{} takes none", m.name());
        }
        let d = thrum::TORCHSERVE_IMAGE_RECIPE;
        let crop = self.image_crop.unwrap_or(d.crop);
        // torchvision's 256 / 224, rounded: 320 for a crop of 280, 342 for 299.
        let resize = self.image_resize.unwrap_or_else(|| {
            (f64::from(crop) * f64::from(d.resize) / f64::from(d.crop)).round() as u32
        });
        if resize < crop {
            anyhow::bail!(
                "--image-resize {resize} is smaller than the crop of {crop} (--image-crop): the \
                 shorter side must be resized to at least the crop's side"
            );
        }
        Ok(Some(thrum::ImageRecipe {
            resize,
            crop,
            mean: self.image_mean.unwrap_or(d.mean),
            std: self.image_std.unwrap_or(d.std),
            classes: d.classes,
        }))
    }
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
