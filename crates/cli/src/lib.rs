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
    registry.register(Arc::new(NotCompiled::new("ort", "ort")));
    registry.register(Arc::new(NotCompiled::new("torch", "torch")));
    registry.register(Arc::new(NotCompiled::new("mxnet", "mxnet")));
    registry
}

/// Prefix of model paths that name a zoo model (`zoo:resnet50`).
pub const ZOO_PREFIX: &str = "zoo:";

/// Resolves a model path for `engine`: a file path as is, or `zoo:NAME`, which builds the zoo
/// model (default seed) in a format the engine reads.
pub fn model_source(path: &str, engine: &dyn Engine) -> Result<ModelSource, Error> {
    let Some(name) = path.strip_prefix(ZOO_PREFIX) else {
        return Ok(ModelSource::path(path));
    };
    let zoo_model = zoo::find(name)?;
    let formats = engine.capabilities().formats;
    if formats.contains(&ModelFormat::Onnx) || formats.is_empty() {
        // An engine with no formats is not compiled in; loading it reports that.
        let graph = zoo_model.build(zoo::DEFAULT_SEED);
        return Ok(ModelSource::memory(name, ModelFormat::Onnx, zoo::onnx::export(&graph)));
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
