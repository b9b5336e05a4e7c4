//! # thrum
//!
//! Fast, multi-threaded deep-learning inference across engines. This crate is the facade:
//! it re-exports the engine-neutral API of [`thrum_core`], registers the engines compiled in
//! by cargo feature, resolves `zoo:NAME` model paths, and reads and writes tensor files.
//! The `thrum` binary is built on it.
//!
//! ```
//! let registry = thrum::registry();
//! let engine = registry.get("tract")?;
//! let source = thrum::model_source("zoo:mlp", engine.as_ref())?;
//! let model = engine.load(&source, &thrum::Options::default())?;
//! let mut predictor = model.predictor()?;          // one per thread
//! let outputs = predictor.predict(model.zero_inputs(1))?;
//! assert_eq!(outputs[0].shape(), &[1, 10]);
//! # Ok::<(), thrum::Error>(())
//! ```
//!
//! Engines are chosen by cargo feature (`tract`, the default). An engine whose feature is off
//! is still registered and answers with "not compiled in: rebuild with --features X".

#![forbid(unsafe_code)]

pub mod install;
pub mod io;

use std::sync::Arc;

pub use thrum_core::*;
pub use thrum_zoo as zoo;

/// The core's error (loading and running models), which [`Error::Core`] wraps.
pub use thrum_core::Error as CoreError;

/// Result with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the facade: the core's, the zoo's, and tensor files'.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading or running a model.
    #[error(transparent)]
    Core(#[from] thrum_core::Error),
    /// Building or exporting a zoo model.
    #[error(transparent)]
    Zoo(#[from] thrum_zoo::Error),
    /// A tensor file that cannot be read or is not what was expected.
    #[error("input file `{}`: {reason}", path.display())]
    InputFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, and what was expected.
        reason: String,
    },
    /// Installing an engine's native library failed.
    #[error("cannot install engine `{engine}`: {reason}")]
    Install {
        /// The engine.
        engine: String,
        /// What went wrong.
        reason: String,
    },
    /// An output that cannot be written.
    #[error("cannot write `{}`: {reason}", path.display())]
    Output {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// Every engine thrum knows, the ones compiled in and stand-ins for the others.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    #[cfg(feature = "tract")]
    registry.register(Arc::new(thrum_tract::TractEngine::new()));
    #[cfg(not(feature = "tract"))]
    registry.register(Arc::new(NotCompiled::new("tract", "tract")));
    #[cfg(feature = "ort")]
    registry.register(Arc::new(thrum_ort::OrtEngine::new()));
    #[cfg(not(feature = "ort"))]
    registry.register(Arc::new(NotCompiled::new("ort", "ort")));
    registry.register(Arc::new(NotCompiled::new("torch", "torch")));
    registry.register(Arc::new(NotCompiled::new("mxnet", "mxnet")));
    registry
}

/// Prefix of model paths that name a zoo model (`zoo:resnet50`).
pub const ZOO_PREFIX: &str = "zoo:";

/// Resolves a model path for `engine`: a file path as is, or `zoo:NAME`, which builds the zoo
/// model (default seed) in a format the engine reads.
///
/// Zoo models are written once to `$THRUM_HOME/zoo/<content hash>/NAME.onnx` and loaded from
/// there, so that the serialized bytes do not stay resident while a model runs (ResNet-50's
/// are 100 MB). Without a writable cache they are loaded from memory.
pub fn model_source(path: &str, engine: &dyn Engine) -> Result<ModelSource, Error> {
    let Some(name) = path.strip_prefix(ZOO_PREFIX) else {
        return Ok(ModelSource::path(path));
    };
    let zoo_model = zoo::find(name)?;
    let formats = engine.capabilities().formats;
    if formats.contains(&ModelFormat::Onnx) || formats.is_empty() {
        // An engine with no formats is not compiled in; loading it reports that.
        let bytes = zoo::onnx::export(&zoo_model.build(zoo::DEFAULT_SEED));
        return Ok(match cache_file(name, "onnx", &bytes) {
            Some(file) => ModelSource::path(file),
            None => ModelSource::memory(name, ModelFormat::Onnx, bytes),
        });
    }
    Err(Error::Core(thrum_core::Error::UnsupportedFormat {
        engine: engine.name(),
        model: path.into(),
        reason: format!(
            "zoo models are exported as ONNX here, and `{}` reads {}",
            engine.name(),
            formats.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
        ),
    }))
}

/// Writes `bytes` to `$THRUM_HOME/zoo/<hash>/<name>.<ext>` unless already there; `None` when
/// the cache cannot be written.
fn cache_file(name: &str, ext: &str, bytes: &[u8]) -> Option<std::path::PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let dir = config::thrum_home().join("zoo").join(format!("{:016x}", hasher.finish()));
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
