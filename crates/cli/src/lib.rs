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
    #[cfg(feature = "torch")]
    registry.register(Arc::new(thrum_torch::TorchEngine::new()));
    #[cfg(not(feature = "torch"))]
    registry.register(Arc::new(NotCompiled::new("torch", "torch")));
    #[cfg(feature = "mxnet")]
    registry.register(Arc::new(thrum_mxnet::MxnetEngine::new()));
    #[cfg(not(feature = "mxnet"))]
    registry.register(Arc::new(NotCompiled::new("mxnet", "mxnet")));
    registry
}

/// Prefix of model paths that name a zoo model (`zoo:resnet50`).
pub const ZOO_PREFIX: &str = "zoo:";

/// Resolves a model path for `engine`: a file path as is, or `zoo:NAME`, which builds the zoo
/// model (default seed) in a format the engine reads (ONNX, else TorchScript).
///
/// Zoo models are written once to `$THRUM_HOME/zoo/<content hash>/NAME.<ext>` and loaded from
/// there, so that the serialized bytes do not stay resident while a model runs (ResNet-50's
/// are 100 MB). Without a writable cache ONNX models are loaded from memory.
pub fn model_source(path: &str, engine: &dyn Engine) -> Result<ModelSource, Error> {
    let Some(name) = path.strip_prefix(ZOO_PREFIX) else {
        return Ok(ModelSource::path(path));
    };
    let zoo_model = zoo::find(name)?;
    let formats = engine.capabilities().formats;
    let graph = zoo_model.build(zoo::DEFAULT_SEED);
    let bytes = zoo::onnx::export(&graph);
    if formats.contains(&ModelFormat::Onnx) || formats.is_empty() {
        // An engine with no formats is not compiled in; loading it reports that.
        return Ok(match cache_file(name, "onnx", &bytes) {
            Some(file) => ModelSource::path(file),
            None => ModelSource::memory(name, ModelFormat::Onnx, bytes),
        });
    }
    for (format, zoo_format, file) in [
        (ModelFormat::TorchScript, zoo::Format::TorchScript, format!("{name}.pt")),
        (ModelFormat::MxnetSymbol, zoo::Format::Mxnet, format!("{name}-symbol.json")),
    ] {
        if formats.contains(&format) {
            // Keyed by the ONNX bytes: the same weights give the same cache directory.
            let dir = cache_dir(&bytes);
            let path = dir.join(&file);
            if !path.exists() {
                export_into_cache(&graph, zoo_format, &dir, &file)?;
            }
            return Ok(ModelSource::path(path));
        }
    }
    Err(Error::Core(thrum_core::Error::UnsupportedFormat {
        engine: engine.name(),
        model: path.into(),
        reason: format!(
            "the zoo exports ONNX, TorchScript and MXNet, and `{}` reads {}",
            engine.name(),
            formats.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
        ),
    }))
}

/// Writes a zoo graph to `path` in `format`. TorchScript and MXNet exports need their engine
/// compiled in (they are written with the engine's own library); without it the error says
/// which feature to build with.
pub fn export(
    graph: &zoo::Graph,
    format: zoo::Format,
    path: &std::path::Path,
) -> Result<(), Error> {
    match format {
        zoo::Format::Onnx => std::fs::write(path, zoo::onnx::export(graph))
            .map_err(|e| Error::Output { path: path.into(), reason: e.to_string() }),
        #[cfg(feature = "torch")]
        zoo::Format::TorchScript => Ok(thrum_torch::export_torchscript(graph, path)?),
        #[cfg(not(feature = "torch"))]
        zoo::Format::TorchScript => {
            Err(thrum_core::Error::EngineNotCompiled { engine: "torch", feature: "torch" }.into())
        }
        zoo::Format::Mxnet => Ok(thrum_mxnet_export(graph, path)?),
    }
}

/// Exports into a private directory, then moves every file written (the model last, as its
/// presence marks the export complete) into `dir`, so concurrent processes never read half an
/// export.
fn export_into_cache(
    graph: &zoo::Graph,
    format: zoo::Format,
    dir: &std::path::Path,
    file: &str,
) -> Result<(), Error> {
    let io = |path: &std::path::Path, e: std::io::Error| Error::Output {
        path: path.into(),
        reason: e.to_string(),
    };
    let staging = dir.join(format!(".export-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    let result = export(graph, format, &staging.join(file)).and_then(|()| {
        let mut written: Vec<_> = std::fs::read_dir(&staging)
            .map_err(|e| io(&staging, e))?
            .filter_map(|entry| entry.ok().map(|e| e.file_name()))
            .collect();
        written.sort_by_key(|name| name.as_os_str() == std::ffi::OsStr::new(file));
        for name in written {
            std::fs::rename(staging.join(&name), dir.join(&name))
                .map_err(|e| io(&dir.join(&name), e))?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// MXNet's export is written by thrum itself (no library needed), so it is always available.
fn thrum_mxnet_export(graph: &zoo::Graph, path: &std::path::Path) -> Result<(), Error> {
    #[cfg(feature = "mxnet")]
    return Ok(thrum_mxnet::export_mxnet(graph, path)?);
    #[cfg(not(feature = "mxnet"))]
    {
        let _ = (graph, path);
        Err(thrum_core::Error::EngineNotCompiled { engine: "mxnet", feature: "mxnet" }.into())
    }
}

fn cache_dir(bytes: &[u8]) -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    config::thrum_home().join("zoo").join(format!("{:016x}", hasher.finish()))
}

/// Writes `bytes` to `$THRUM_HOME/zoo/<hash>/<name>.<ext>` unless already there; `None` when
/// the cache cannot be written.
fn cache_file(name: &str, ext: &str, bytes: &[u8]) -> Option<std::path::PathBuf> {
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
