//! The option flags every command that loads a model shares, and their resolution into
//! `Options`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use thrum::Options;
use thrum::vision::ChannelOrder;
use thrum_serve::config::ImageSettings;

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
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(ImageSettings::MAX_SIDE)))]
    image_resize: Option<u32>,

    /// Image model files: the side of the center crop, which is the model's input side.
    /// Default 224.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(ImageSettings::MAX_SIDE)))]
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

    /// Image model files: the colour channels the model takes, `rgb` (default) or `bgr` (a
    /// model trained on OpenCV's or Caffe's images; what OpenVINO Model Server feeds a model).
    /// --image-mean and --image-std stay R,G,B.
    #[arg(long, value_name = "ORDER", value_parser = |v: &str| v.parse::<ChannelOrder>().map_err(|e| e.to_string()))]
    image_channels: Option<ChannelOrder>,
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
        if let Some(order) = self.image_channels {
            args.extend(["--image-channels".to_string(), order.to_string()]);
        }
        args
    }

    /// The flags as the parts of a pre-processing (to lay over a thrum.toml's `[image]`).
    pub fn settings(&self) -> ImageSettings {
        ImageSettings {
            resize: self.image_resize,
            crop: self.image_crop,
            mean: self.image_mean,
            std: self.image_std,
            channels: self.image_channels,
        }
    }

    /// The recipe the flags give for `model`, checked (no I/O): `None` when no flag is given
    /// (the model's own recipe, or TorchServe's for a file).
    pub fn recipe(&self, model: &thrum::ModelRef) -> anyhow::Result<Option<thrum::ImageRecipe>> {
        image_recipe(self.settings(), None, model)
    }

    /// The first flag given, to name in an error.
    pub fn first_given(&self) -> Option<&'static str> {
        first_image_flag(&self.settings())
    }

    /// The flags' recipe for `model`, checked (no I/O); with `config` (a `--config` file whose
    /// `[image]` table may set what the flags leave), `None` after checking only that `model`
    /// takes them: the rest (a resize smaller than the crop) is checked with the table, by
    /// [`image_recipe`].
    pub fn recipe_or_check(
        &self,
        model: &thrum::ModelRef,
        config: bool,
    ) -> anyhow::Result<Option<thrum::ImageRecipe>> {
        match (config, self.first_given()) {
            (false, _) => self.recipe(model),
            (true, Some(flag)) => refuse_zoo(flag, model).map(|()| None),
            (true, None) => Ok(None),
        }
    }
}

/// The flags, each with the `[image]` key it overrides.
const IMAGE_PARTS: [(&str, &str); 5] = [
    ("--image-resize", "resize"),
    ("--image-crop", "crop"),
    ("--image-mean", "mean"),
    ("--image-std", "std"),
    ("--image-channels", "channels"),
];

/// Which parts `s` sets, in [`IMAGE_PARTS`]' order.
fn parts_set(s: &ImageSettings) -> [bool; 5] {
    [s.resize.is_some(), s.crop.is_some(), s.mean.is_some(), s.std.is_some(), s.channels.is_some()]
}

/// The first `--image-*` flag `flags` sets, to name in an error.
fn first_image_flag(flags: &ImageSettings) -> Option<&'static str> {
    IMAGE_PARTS.iter().zip(parts_set(flags)).find(|(_, set)| *set).map(|((flag, _), _)| *flag)
}

/// The recipe the `--image-*` flags (`flags`), over a thrum.toml's `[image]` table (`file`:
/// the table and the file), give for `model`, checked without I/O: `None` when nothing is
/// set (the model's own recipe, or TorchServe's for a file). Each part a flag leaves unset
/// comes from the table, else TorchServe's defaults; a resize neither sets keeps
/// torchvision's 256 / 224 ratio to the crop.
pub fn image_recipe(
    flags: ImageSettings,
    file: Option<(ImageSettings, &Path)>,
    model: &thrum::ModelRef,
) -> anyhow::Result<Option<thrum::ImageRecipe>> {
    let (table, path) = match file {
        Some((table, path)) => (table, Some(path)),
        None => (ImageSettings::default(), None),
    };
    let settings = flags.or(table);
    let (by_flag, by_file) = (parts_set(&flags), parts_set(&table));
    // Each part named where its value came from: the flag, the file's key, or the default.
    let name = |i: usize| match path {
        _ if by_flag[i] => IMAGE_PARTS[i].0.to_string(),
        Some(path) if by_file[i] => format!("`image.{}` in {}", IMAGE_PARTS[i].1, path.display()),
        _ => "the default".to_string(),
    };
    let Some(first) = (0..IMAGE_PARTS.len()).find(|&i| by_flag[i] || by_file[i]) else {
        return Ok(None);
    };
    refuse_zoo(&name(first), model)?;
    let d = thrum::TORCHSERVE_IMAGE_RECIPE;
    let crop = settings.crop.unwrap_or(d.crop);
    // torchvision's 256 / 224, rounded: 320 for a crop of 280, 342 for 299.
    let resize = settings.resize.unwrap_or_else(|| {
        (f64::from(crop) * f64::from(d.resize) / f64::from(d.crop)).round() as u32
    });
    if resize < crop {
        anyhow::bail!(
            "a resize of {resize} ({}) is smaller than the crop of {crop} ({}): the shorter \
             side must be resized to at least the crop's side",
            name(0),
            name(1)
        );
    }
    Ok(Some(thrum::ImageRecipe {
        resize,
        crop,
        mean: settings.mean.unwrap_or(d.mean),
        std: settings.std.unwrap_or(d.std),
        bgr: settings.channels == Some(ChannelOrder::Bgr),
        classes: d.classes,
    }))
}

/// Refuses image pre-processing (`part`: the flag or key that gives some) for a zoo model with
/// real weights: an image model has its own, any other takes no images.
fn refuse_zoo(part: &str, model: &thrum::ModelRef) -> anyhow::Result<()> {
    if let thrum::ModelRef::Pretrained(m) = model {
        if model.is_image_model() {
            anyhow::bail!(
                "{part} is for an image model given as a file: zoo:{} has its own \
                 pre-processing",
                m.name()
            );
        }
        anyhow::bail!("{part} pre-processes images: zoo:{} takes none", m.name());
    }
    Ok(())
}

/// A model's `thrum.toml` given with `--config`: its settings, whether it names its model,
/// and where it is.
pub struct ModelFile {
    /// The settings (the model `zoo:resnet18` when the file names none).
    pub entry: thrum_serve::config::ModelEntry,
    /// Whether the file has a `model` key (else the command's model is used with it).
    pub names_model: bool,
    /// The file.
    pub path: PathBuf,
}

impl ModelFile {
    /// Its `[image]` table, for `model_path` (the command line's model, if it named one):
    /// the table belongs to the file's model, so for another model it is left out, with a
    /// warning. A file that names no model gives its table to the command's.
    pub fn image_for(&self, model_path: Option<&str>) -> Option<(ImageSettings, &Path)> {
        let image = self.entry.image;
        if image.is_empty() {
            return None;
        }
        let same = |a: &str, b: &str| {
            let canonical = |p: &str| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
            canonical(a) == canonical(b)
        };
        match model_path {
            Some(path) if self.names_model && !same(path, &self.entry.model) => {
                eprintln!(
                    "warning: the [image] table of {} is for its model {}, not {path}: left out",
                    self.path.display(),
                    self.entry.model
                );
                None
            }
            _ => Some((image, &self.path)),
        }
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
    pub fn model_file(&self) -> anyhow::Result<Option<ModelFile>> {
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
        let entries = thrum_serve::config::read_file(path, Some("model"), Some(default_model))?;
        Ok(entries.into_iter().next_back().map(|entry| ModelFile {
            entry,
            names_model: table.contains_key("model"),
            path: path.clone(),
        }))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        image: ImageRecipeArgs,
    }

    /// What `thrum tune` writes for the flags (`[image]` in its thrum.toml) reads back as the
    /// same recipe, for `thrum serve --config` and `thrum bench --config`.
    #[test]
    fn the_flags_tune_records_give_the_same_recipe_back() {
        let flags = Flags::parse_from([
            "x",
            "--image-crop",
            "299",
            "--image-mean",
            "0.482,0.459,0.408",
            "--image-std",
            "0.00392156862745098,0.00392156862745098,0.00392156862745098",
            "--image-channels",
            "bgr",
        ])
        .image;
        let model = thrum::ModelRef::Path(PathBuf::from("m.onnx"));
        let want = flags.recipe(&model).unwrap().unwrap();
        assert_eq!((want.resize, want.crop, want.bgr), (342, 299, true));
        let candidate = thrum_tune::space::Candidate {
            engine: "ort".into(),
            workers: 2,
            intra: 1,
            batch: 1,
            predictor: thrum::PredictorKind::PerThread,
            options: Default::default(),
            probe: false,
        };
        let text = thrum_tune::report::thrum_toml(
            "m",
            "m.onnx",
            None,
            &flags.settings().to_toml(),
            &candidate,
            &[],
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thrum.toml");
        std::fs::write(&path, &text).unwrap();
        let entry = thrum_serve::config::read_file(&path, None, None).unwrap().pop().unwrap();
        let file = ModelFile { entry, names_model: true, path: path.clone() };
        let table = file.image_for(Some(dir.path().join("m.onnx").to_str().unwrap()));
        let got = image_recipe(ImageSettings::default(), table, &model).unwrap().unwrap();
        assert_eq!(got, want, "{text}");
        // Another model file given with it: the table is left out.
        assert!(file.image_for(Some("other.onnx")).is_none());
    }
}
