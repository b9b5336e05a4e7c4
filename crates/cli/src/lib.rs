//! # thrum
//!
//! Fast, multi-threaded deep-learning inference across engines. This crate is the facade: the
//! engine-neutral API of [`thrum_core`] re-exported, every engine linked in (each registers
//! itself, see [`thrum_core::engine::ENGINES`]), and model sources: a path, or `zoo:NAME` for
//! a model built by thrum. The `thrum` binary is built on it.
//!
//! ```
//! let registry = thrum::registry();
//! let engine = registry.get("tract")?;
//! let source = thrum::model_source("zoo:mlp", engine.as_ref())?;
//! let model = engine.load(&source, &thrum::Options::default())?;
//! let mut predictor = model.predictor()?;          // one per thread
//! let outputs = predictor.predict(model.zero_inputs(1)?)?;
//! assert_eq!(outputs[0].shape(), &[1, 10]);
//! # Ok::<(), thrum::Error>(())
//! ```
//!
//! Engines whose library is loaded at run time (tract has none; ONNX Runtime and MXNet load
//! theirs) are in the default build; libtorch is linked at build time, so the `torch` engine is
//! behind the `torch` feature. An engine whose runtime is not compiled in is still registered
//! and answers with "not compiled in: rebuild with --features X".

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

pub use thrum_core::*;
pub use thrum_magika as magika;
pub use thrum_text as text;
pub use thrum_vision as vision;
pub use thrum_zoo as zoo;

// Every engine, linked in so that it registers itself; one line each. Its runtime is compiled
// in by this crate's feature of the same name (Cargo.toml).
pub use thrum_mxnet as mxnet;
pub use thrum_ort as ort;
pub use thrum_tensorflow as tensorflow;
pub use thrum_torch as torch;
pub use thrum_tract as tract;

/// Every engine thrum knows: the ones compiled in, and stand-ins for the others.
pub fn registry() -> Registry {
    Registry::linked()
}

/// Prefix of model paths that name a zoo model (`zoo:resnet50`).
pub const ZOO_PREFIX: &str = "zoo:";

/// A model path as given: a file, or a zoo model, checked for existence without building it.
#[derive(Clone, Debug)]
pub enum ModelRef {
    /// A file or directory.
    Path(PathBuf),
    /// `zoo:NAME`.
    Zoo(&'static zoo::ZooModel),
    /// `zoo:NAME` of a model with real weights (`thrum zoo install NAME`).
    Pretrained(&'static zoo::PretrainedModel),
}

impl ModelRef {
    /// Parses `zoo:NAME` (checking the zoo has it) or takes a path as is. No I/O.
    pub fn parse(text: &str) -> Result<ModelRef> {
        match text.strip_prefix(ZOO_PREFIX) {
            Some(name) => match zoo::find_pretrained(name) {
                Some(model) => Ok(ModelRef::Pretrained(model)),
                None => Ok(ModelRef::Zoo(zoo::find(name).map_err(|e| match e {
                    Error::Unknown { what, name, known } => Error::Unknown {
                        what,
                        name,
                        known: format!(
                                "{known}, {}",
                                zoo::pretrained()
                                    .iter()
                                    .map(|m| m.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                    },
                    other => other,
                })?)),
            },
            None => Ok(ModelRef::Path(PathBuf::from(text))),
        }
    }

    /// The name a zoo model goes by, or `None` for a path.
    pub fn zoo_name(&self) -> Option<&'static str> {
        match self {
            ModelRef::Path(_) => None,
            ModelRef::Zoo(z) => Some(z.name),
            ModelRef::Pretrained(m) => Some(m.name()),
        }
    }

    /// Where a text model keeps its files (tokenizer, pooling): `None` for other models.
    pub fn text_dir(&self) -> Option<PathBuf> {
        match self {
            ModelRef::Pretrained(m) if m.task == zoo::pretrained::Task::TextEmbedding => {
                Some(m.package.home())
            }
            _ => None,
        }
    }

    /// Where Magika's configuration is (`zoo:magika`): `None` for other models.
    pub fn content_type_dir(&self) -> Option<PathBuf> {
        match self {
            ModelRef::Pretrained(m) if m.task == zoo::pretrained::Task::ContentType => {
                Some(m.package.home())
            }
            _ => None,
        }
    }

    /// Whether this is a zoo image classifier (`zoo:efficientnet-lite0`).
    pub fn is_image_model(&self) -> bool {
        matches!(self, ModelRef::Pretrained(m) if matches!(m.task, zoo::pretrained::Task::ImageClassification(_)))
    }

    /// An image classifier for this model once loaded: a zoo image model's own pre-processing
    /// and class names, or for a file `custom` (the `--image-*` flags over a thrum.toml's
    /// `[image]`) or TorchServe's defaults (shorter side 256, center 224, ImageNet's mean and
    /// std) and the names in `labels` (one per line) if given.
    pub fn image_classifier(
        &self,
        model: &Model,
        top_k: usize,
        labels: Option<&std::path::Path>,
        custom: Option<&ImageRecipe>,
    ) -> Result<vision::ImageClassifier> {
        if let ModelRef::Pretrained(m) = self
            && !self.is_image_model()
        {
            return Err(Error::InvalidValue {
                what: "model".into(),
                value: format!("zoo:{}", m.name()),
                expected: "an image classifier (zoo:efficientnet-lite0, or an image model's file)"
                    .into(),
            });
        }
        let transform = self.image_transform(model, custom)?;
        let labels = match (labels, self) {
            (Some(path), _) => {
                // Line k names class k: a blank line keeps its place (an unnamed class).
                let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
                let names: Vec<String> =
                    text.trim_end().lines().map(|l| l.trim().to_string()).collect();
                // A file off by a line (a header, a missing class) would shift every name.
                let classes = model.outputs().first().and_then(|o| {
                    o.shape.last().and_then(|d| d.fixed()).map(|c| (o.name.as_str(), c))
                });
                if let Some((output, classes)) = classes
                    && classes != names.len()
                {
                    return Err(Error::InvalidValue {
                        what: format!("labels file `{}`", path.display()),
                        value: format!("{} lines", names.len()),
                        expected: format!(
                            "one name per class, line k naming class k: model `{}` has {classes} \
                             classes (output `{output}`)",
                            model.name()
                        ),
                    });
                }
                Some(names)
            }
            (None, ModelRef::Pretrained(m)) => m.labels()?,
            (None, _) => None,
        };
        Ok(vision::ImageClassifier::new(transform, top_k, labels))
    }

    /// How this model's images are pre-processed: a zoo image model's own recipe, else
    /// `custom` (the `--image-*` flags over a thrum.toml's `[image]`), else TorchServe's defaults
    /// ([`TORCHSERVE_IMAGE_RECIPE`]).
    pub fn image_recipe(&self, custom: Option<&ImageRecipe>) -> ImageRecipe {
        match self {
            ModelRef::Pretrained(m) => match m.task {
                zoo::pretrained::Task::ImageClassification(recipe) => recipe,
                _ => custom.copied().unwrap_or(TORCHSERVE_IMAGE_RECIPE),
            },
            _ => custom.copied().unwrap_or(TORCHSERVE_IMAGE_RECIPE),
        }
    }

    /// The pre-processing of this image model once loaded (see [`ModelRef::image_classifier`]).
    pub fn image_transform(
        &self,
        model: &Model,
        custom: Option<&ImageRecipe>,
    ) -> Result<vision::ImageTransform> {
        let recipe = self.image_recipe(custom);
        let layout = vision::ImageTransform::layout_of(model, recipe.crop)?;
        let transform = vision::ImageTransform::new(
            recipe.resize,
            recipe.crop,
            recipe.mean,
            recipe.std,
            layout,
        )?;
        Ok(transform.with_channels(channel_order(&recipe)))
    }

    /// The source `engine` loads: the path, or the zoo model built and written once in a
    /// format the engine reads (see [`model_source`]).
    pub fn source(&self, engine: &dyn Engine) -> Result<ModelSource> {
        self.source_for(engine, Precision::Fp32)
    }

    /// [`ModelRef::source`] for a run at `precision`: a zoo model that `engine` reads as
    /// TorchScript is traced in bf16 for bf16 (libtorch's `module.to` does not convert the
    /// constants a traced graph holds its weights in); every other model and format is the
    /// fp32 one, which the engine converts at load.
    pub fn source_for(&self, engine: &dyn Engine, precision: Precision) -> Result<ModelSource> {
        match self {
            ModelRef::Path(path) => Ok(ModelSource::path(path)),
            ModelRef::Zoo(model) => zoo_source(model, engine, precision),
            ModelRef::Pretrained(model) => pretrained_source(model, engine, precision),
        }
    }
}

/// An image model's evaluation pre-processing: resize, center crop, mean and std.
pub type ImageRecipe = zoo::pretrained::ImageRecipe;

/// The colour channels of the tensor `recipe` makes.
pub fn channel_order(recipe: &ImageRecipe) -> vision::ChannelOrder {
    if recipe.bgr { vision::ChannelOrder::Bgr } else { vision::ChannelOrder::Rgb }
}

/// TorchServe's `image_classifier` pre-processing (torchvision's `Resize(256)`,
/// `CenterCrop(224)`, ImageNet's mean and std), for image models given as files.
pub const TORCHSERVE_IMAGE_RECIPE: zoo::pretrained::ImageRecipe = zoo::pretrained::ImageRecipe {
    resize: 256,
    crop: 224,
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
    bgr: false,
    classes: 1000,
};

/// A model with real weights in a format `engine` reads (ONNX where it can), written once per
/// package version and graph revision to `$THRUM_HOME/zoo/<hash>-r<revision>/NAME.<ext>`
/// (building it reads ~100 MB of weights).
fn pretrained_source(
    model: &zoo::PretrainedModel,
    engine: &dyn Engine,
    precision: Precision,
) -> Result<ModelSource> {
    let name = model.name();
    if let Some(file) = model.onnx_file() {
        if !engine.info().formats.contains(&ModelFormat::ONNX) {
            return Err(Error::UnsupportedFormat {
                engine: engine.name(),
                model: format!("{ZOO_PREFIX}{name}"),
                reason: format!(
                    "{ZOO_PREFIX}{name} ships as an ONNX model, and `{}` does not read ONNX: \
                     use an engine that does (ort, tract)",
                    engine.name()
                ),
            });
        }
        model.check_installed()?;
        return Ok(ModelSource::path(named_link(&file, name, &model.package.sha256[..16])));
    }
    let format = export_format(name, engine)?;
    model.check_installed()?;
    let dir = config::thrum_home().join("zoo").join(format!(
        "{}-r{}",
        &model.package.sha256[..16],
        zoo::pretrained::GRAPH_REVISION
    ));
    let (file, precision) = export_file(name, format, precision);
    let path = dir.join(&file);
    if !path.exists() {
        let graph = model.build()?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::write(&dir, e))?;
        export_into_cache(&graph, format, &dir, &file, precision)?;
    }
    Ok(ModelSource::path(path))
}

/// The file a zoo model is exported to in `format` for a run at `precision`, and the
/// precision it is written in: `NAME.bf16.pt` for TorchScript at bf16 (traced in bf16), else
/// `NAME.<ext>` in fp32.
fn export_file(name: &str, format: ModelFormat, precision: Precision) -> (String, Precision) {
    if format.id == "torchscript" && precision == Precision::Bf16 {
        (format!("{name}.bf16{}", format.suffixes[0]), Precision::Bf16)
    } else {
        (format!("{name}{}", format.suffixes[0]), Precision::Fp32)
    }
}

/// `file` linked as `$THRUM_HOME/zoo/<hash>-onnx/NAME.onnx`, so that reports and the server
/// name the model (a package may call it `model.onnx`); `file` itself where the cache cannot
/// be written (the model is then named after the file).
fn named_link(file: &Path, name: &str, hash: &str) -> PathBuf {
    let dir = config::thrum_home().join("zoo").join(format!("{hash}-onnx"));
    let named = dir.join(format!("{name}.onnx"));
    let link = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        // Another process may link it at the same time: either link is the same file.
        if std::fs::hard_link(file, &named).is_err() && !named.exists() {
            // Another file system: a copy under a hidden name, moved into place whole.
            let part = dir.join(format!(".{name}.onnx.{}", std::process::id()));
            let copied = std::fs::copy(file, &part).and_then(|_| std::fs::rename(&part, &named));
            if copied.is_err() {
                let _ = std::fs::remove_file(&part);
            }
            copied?;
        }
        Ok(())
    };
    if named.exists() || link().is_ok() { named } else { file.to_path_buf() }
}

/// Resolves a model path for `engine`: a file path as is, or `zoo:NAME`, which builds the zoo
/// model (default seed) in a format the engine reads (ONNX where it can).
///
/// Zoo models are written once to `$THRUM_HOME/zoo/<content hash>/NAME.<ext>` and loaded from
/// there, so that the serialized bytes do not stay resident while a model runs (ResNet-50's
/// are 100 MB). Without a writable cache ONNX models are loaded from memory.
pub fn model_source(path: &str, engine: &dyn Engine) -> Result<ModelSource> {
    ModelRef::parse(path)?.source(engine)
}

/// The format the zoo writes model `name` in for `engine`: ONNX where the engine reads it,
/// else the first format the engine reads that the zoo exports.
fn export_format(name: &str, engine: &dyn Engine) -> Result<ModelFormat> {
    let formats = engine.info().formats;
    if formats.contains(&ModelFormat::ONNX) {
        return Ok(ModelFormat::ONNX);
    }
    let exportable = zoo::export_formats();
    formats.iter().find(|f| exportable.contains(f)).copied().ok_or_else(|| {
        Error::UnsupportedFormat {
            engine: engine.name(),
            model: format!("{ZOO_PREFIX}{name}"),
            reason: format!(
                "the zoo exports {}, and `{}` reads {}",
                exportable.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
                engine.name(),
                formats.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
            ),
        }
    })
}

fn zoo_source(
    zoo_model: &zoo::ZooModel,
    engine: &dyn Engine,
    precision: Precision,
) -> Result<ModelSource> {
    let name = zoo_model.name;
    let format = export_format(name, engine)?;
    let graph = zoo_model.build(zoo::DEFAULT_SEED);
    let bytes = zoo::onnx::export(&graph);
    if format == ModelFormat::ONNX {
        return Ok(match cache_file(name, "onnx", &bytes) {
            Some(file) => ModelSource::path(file),
            None => ModelSource::memory(name, ModelFormat::ONNX, bytes),
        });
    }
    // Keyed by the ONNX bytes: the same weights give the same cache directory.
    let dir = cache_dir(&bytes);
    let (file, precision) = export_file(name, format, precision);
    let path = dir.join(&file);
    if !path.exists() {
        export_into_cache(&graph, format, &dir, &file, precision)?;
    }
    Ok(ModelSource::path(path))
}

/// Exports into a private directory, then moves every file written (the model last, as its
/// presence marks the export complete) into `dir`, so concurrent processes never read half an
/// export.
fn export_into_cache(
    graph: &zoo::Graph,
    format: ModelFormat,
    dir: &Path,
    file: &str,
    precision: Precision,
) -> Result<()> {
    let staging = dir.join(format!(".export-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|e| Error::write(&staging, e))?;
    let result = zoo::export_with(graph, format, &staging.join(file), precision).and_then(|()| {
        let mut written: Vec<_> = std::fs::read_dir(&staging)
            .map_err(|e| Error::read(&staging, e))?
            .filter_map(|entry| entry.ok().map(|e| e.file_name()))
            .collect();
        written.sort_by_key(|name| name.as_os_str() == std::ffi::OsStr::new(file));
        for name in written {
            std::fs::rename(staging.join(&name), dir.join(&name))
                .map_err(|e| Error::write(dir.join(&name), e))?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn cache_dir(bytes: &[u8]) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    config::thrum_home().join("zoo").join(format!("{:016x}", hasher.finish()))
}

/// Writes `bytes` to `$THRUM_HOME/zoo/<hash>/<name>.<ext>` unless already there; `None` when
/// the cache cannot be written.
fn cache_file(name: &str, ext: &str, bytes: &[u8]) -> Option<PathBuf> {
    let dir = cache_dir(bytes);
    let file = dir.join(format!("{name}.{ext}"));
    if std::fs::metadata(&file).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Some(file);
    }
    std::fs::create_dir_all(&dir).ok()?;
    // Write then rename, so a concurrent reader never sees half a file.
    let partial = dir.join(format!(".{name}.{ext}.{}", std::process::id()));
    std::fs::write(&partial, bytes).ok()?;
    std::fs::rename(&partial, &file).ok()?;
    Some(file)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    #[test]
    fn every_engine_is_registered_once() {
        let names = super::registry().names();
        for engine in ["tract", "ort", "torch", "mxnet"] {
            assert_eq!(names.iter().filter(|n| **n == engine).count(), 1, "{names:?}");
        }
    }

    /// `docs/configuration.md` must hold the generated table verbatim and name every other
    /// environment variable: the docs and the code cannot drift apart. `UPDATE_DOCS=1 cargo
    /// test -p thrum configuration_doc` rewrites the table.
    #[test]
    fn configuration_doc_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let mut doc = std::fs::read_to_string(path).unwrap();
        let table = crate::config::markdown_table();
        if std::env::var_os("UPDATE_DOCS").is_some() && !doc.contains(&table) {
            let start = doc.find("| key | env var |").expect("the doc has an options table");
            let end = doc[start..].find("\n\n").map_or(doc.len(), |i| start + i + 1);
            doc.replace_range(start..end, &table);
            std::fs::write(path, &doc).unwrap();
        }
        assert!(
            doc.contains(&table),
            "docs/configuration.md is out of date: run `UPDATE_DOCS=1 cargo test -p thrum \
             configuration_doc`, or replace its options table with:\n{table}"
        );
        for (name, _) in crate::config::OTHER_ENV_VARS {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/configuration.md does not document {name}"
            );
        }
    }
}
