//! [`Engine`]: a runtime that loads models; [`Registry`]: engines found by name.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Options;
use crate::error::{Error, Result};
use crate::model::Model;

/// The file formats thrum's engines read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ModelFormat {
    /// ONNX protobuf (`.onnx`).
    Onnx,
    /// NNEF, tract's native format (`.nnef`, `.nnef.tar`, `.nnef.tgz`, or a directory).
    Nnef,
    /// TorchScript archive (`.pt`, `.pth`, `.torchscript`).
    TorchScript,
    /// MXNet symbol JSON with its `.params` file (`NAME-symbol.json`).
    MxnetSymbol,
}

impl ModelFormat {
    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::Onnx => "ONNX",
            ModelFormat::Nnef => "NNEF",
            ModelFormat::TorchScript => "TorchScript",
            ModelFormat::MxnetSymbol => "MXNet symbol",
        }
    }

    /// Guesses the format from a file name.
    pub fn from_path(path: &Path) -> Option<ModelFormat> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".onnx") {
            Some(ModelFormat::Onnx)
        } else if name.ends_with(".nnef")
            || name.ends_with(".nnef.tar")
            || name.ends_with(".nnef.tgz")
            || name.ends_with(".nnef.tar.gz")
        {
            Some(ModelFormat::Nnef)
        } else if name.ends_with(".pt") || name.ends_with(".pth") || name.ends_with(".torchscript")
        {
            Some(ModelFormat::TorchScript)
        } else if name.ends_with("-symbol.json") || name.ends_with(".json") {
            Some(ModelFormat::MxnetSymbol)
        } else {
            None
        }
    }
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a model comes from: a path, or bytes already in memory.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// A file (or an NNEF directory).
    Path(PathBuf),
    /// Serialized model bytes, e.g. a zoo model exported in memory.
    Memory {
        /// Name used in messages.
        name: String,
        /// Format of the bytes.
        format: ModelFormat,
        /// The bytes.
        bytes: Arc<[u8]>,
    },
}

impl ModelSource {
    /// A source from a path.
    pub fn path(path: impl Into<PathBuf>) -> ModelSource {
        ModelSource::Path(path.into())
    }

    /// A source from bytes in memory.
    pub fn memory(
        name: impl Into<String>,
        format: ModelFormat,
        bytes: impl Into<Arc<[u8]>>,
    ) -> ModelSource {
        ModelSource::Memory { name: name.into(), format, bytes: bytes.into() }
    }

    /// The model's name for messages: the file name without its model extension, or the name
    /// given with the bytes.
    pub fn name(&self) -> String {
        match self {
            ModelSource::Path(path) => {
                let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
                let file = file.unwrap_or_else(|| path.display().to_string());
                for ext in [
                    ".onnx",
                    ".nnef.tgz",
                    ".nnef.tar.gz",
                    ".nnef.tar",
                    ".nnef",
                    ".pt",
                    ".pth",
                    "-symbol.json",
                ] {
                    if let Some(stem) = file.strip_suffix(ext) {
                        return stem.to_string();
                    }
                }
                file
            }
            ModelSource::Memory { name, .. } => name.clone(),
        }
    }

    /// The format, from the bytes' declared format or the path's extension.
    pub fn format(&self) -> Option<ModelFormat> {
        match self {
            ModelSource::Path(path) => ModelFormat::from_path(path),
            ModelSource::Memory { format, .. } => Some(*format),
        }
    }

    /// Checks that the source is in `format` (one whose format is unknown is left to the
    /// engine's parser), then [`ModelSource::check_file`]. `reads` says what the engine reads,
    /// for the error ("ONNX Runtime reads ONNX models", then ", not TorchScript").
    pub fn check_format(
        &self,
        engine: &'static str,
        format: ModelFormat,
        reads: &str,
        expected: &str,
    ) -> Result<()> {
        match self.format() {
            Some(found) if found != format => Err(Error::UnsupportedFormat {
                engine,
                model: self.name(),
                reason: format!("{reads}, not {}", found.name()),
            }),
            _ => self.check_file(expected),
        }
    }

    /// For a path: checks that it exists, is a regular file and is not empty. `expected`
    /// describes what the engine reads, for the error messages.
    pub fn check_file(&self, expected: &str) -> Result<()> {
        match self {
            ModelSource::Path(path) => check_model_file(path, expected),
            ModelSource::Memory { bytes, name, .. } if bytes.is_empty() => {
                Err(Error::EmptyModel { path: PathBuf::from(name), expected: expected.into() })
            }
            ModelSource::Memory { .. } => Ok(()),
        }
    }

    /// The model's bytes, after [`ModelSource::check_file`].
    pub fn read(&self, expected: &str) -> Result<Cow<'_, [u8]>> {
        self.check_file(expected)?;
        match self {
            ModelSource::Path(path) => std::fs::read(path)
                .map(Cow::Owned)
                .map_err(|source| Error::Io { path: path.clone(), source }),
            ModelSource::Memory { bytes, .. } => Ok(Cow::Borrowed(bytes)),
        }
    }
}

/// Checks that `path` is an existing, non-empty regular file.
pub fn check_model_file(path: &Path, expected: &str) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound { path: path.to_path_buf() },
        _ => Error::Io { path: path.to_path_buf(), source },
    })?;
    if meta.is_dir() {
        return Err(Error::ModelIsDirectory {
            path: path.to_path_buf(),
            expected: expected.into(),
        });
    }
    if meta.len() == 0 {
        return Err(Error::EmptyModel { path: path.to_path_buf(), expected: expected.into() });
    }
    Ok(())
}

/// Whether an engine supports a feature, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "supported", rename_all = "lowercase")]
pub enum Support {
    /// Supported.
    Yes,
    /// Not supported.
    No {
        /// Why, in one sentence.
        reason: String,
    },
}

impl Support {
    /// True when supported.
    pub fn is_yes(&self) -> bool {
        matches!(self, Support::Yes)
    }
}

/// What an engine can do, independent of any model.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// A thread-safe predictor shared by all threads ([`Model::shared_predictor`]).
    pub shared_predictor: Support,
    /// oneDNN (MKLDNN) acceleration.
    pub onednn: Support,
    /// Devices it can run on (`cpu`, `cuda:0`…).
    pub devices: Vec<String>,
    /// Model formats it reads.
    pub formats: Vec<ModelFormat>,
}

impl Capabilities {
    /// Capabilities from their parts.
    pub fn new(
        shared_predictor: Support,
        onednn: Support,
        devices: Vec<String>,
        formats: Vec<ModelFormat>,
    ) -> Capabilities {
        Capabilities { shared_predictor, onednn, devices, formats }
    }
}

/// The answer to "can this engine run here?".
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct EngineCheck {
    /// Engine name.
    pub engine: &'static str,
    /// True when models can be loaded.
    pub available: bool,
    /// Version of the engine's runtime.
    pub version: Option<String>,
    /// The native library in use, for engines that load one.
    pub library: Option<PathBuf>,
    /// Devices found (`cpu`, `cuda:0`…).
    pub devices: Vec<String>,
    /// Execution providers or backends the runtime offers.
    pub providers: Vec<String>,
    /// When unavailable: what is wrong and how to fix it. Otherwise an optional note.
    pub detail: Option<String>,
}

impl EngineCheck {
    /// An available engine.
    pub fn available(engine: &'static str, version: impl Into<String>) -> EngineCheck {
        EngineCheck {
            engine,
            available: true,
            version: Some(version.into()),
            library: None,
            devices: vec!["cpu".into()],
            providers: Vec::new(),
            detail: None,
        }
    }

    /// An unavailable engine and why.
    pub fn unavailable(engine: &'static str, detail: impl Into<String>) -> EngineCheck {
        EngineCheck {
            engine,
            available: false,
            version: None,
            library: None,
            devices: Vec::new(),
            providers: Vec::new(),
            detail: Some(detail.into()),
        }
    }

    /// Sets the native library path.
    pub fn with_library(mut self, path: impl Into<PathBuf>) -> EngineCheck {
        self.library = Some(path.into());
        self
    }

    /// Sets the providers list.
    pub fn with_providers(mut self, providers: Vec<String>) -> EngineCheck {
        self.providers = providers;
        self
    }

    /// Sets the devices list.
    pub fn with_devices(mut self, devices: Vec<String>) -> EngineCheck {
        self.devices = devices;
        self
    }

    /// Sets the note.
    pub fn with_detail(mut self, detail: impl Into<String>) -> EngineCheck {
        self.detail = Some(detail.into());
        self
    }
}

/// An inference runtime that loads models (tract, ONNX Runtime, libtorch, MXNet).
///
/// Engines are registered in a [`Registry`] and looked up by name. An engine whose cargo
/// feature is off is represented by [`NotCompiled`], which answers every call with a
/// "not compiled in" error through this same trait.
pub trait Engine: Send + Sync + 'static {
    /// Canonical name (`tract`, `ort`, `torch`, `mxnet`).
    fn name(&self) -> &'static str;

    /// Is the engine usable here: native library, version, devices, providers.
    fn check(&self) -> EngineCheck;

    /// What the engine supports.
    fn capabilities(&self) -> Capabilities;

    /// Loads a model once; the returned [`Model`] is shared by all threads.
    fn load(&self, source: &ModelSource, options: &Options) -> Result<Model>;
}

/// Stand-in for an engine whose cargo feature was off at build time.
#[derive(Debug)]
pub struct NotCompiled {
    name: &'static str,
    feature: &'static str,
}

impl NotCompiled {
    /// The engine `name`, enabled by cargo feature `feature`.
    pub fn new(name: &'static str, feature: &'static str) -> NotCompiled {
        NotCompiled { name, feature }
    }

    fn error(&self) -> Error {
        Error::EngineNotCompiled { engine: self.name, feature: self.feature }
    }
}

impl Engine for NotCompiled {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self) -> EngineCheck {
        EngineCheck::unavailable(self.name, self.error().to_string())
    }

    fn capabilities(&self) -> Capabilities {
        let no = Support::No { reason: self.error().to_string() };
        Capabilities::new(no.clone(), no, Vec::new(), Vec::new())
    }

    fn load(&self, _source: &ModelSource, _options: &Options) -> Result<Model> {
        Err(self.error())
    }
}

/// Engines by name.
#[derive(Clone, Default)]
pub struct Registry {
    engines: Vec<Arc<dyn Engine>>,
}

/// Other names users type for engines (DJL's among them), lower-case.
const ALIASES: &[(&str, &str)] = &[
    ("onnxruntime", "ort"),
    ("onnx-runtime", "ort"),
    ("pytorch", "torch"),
    ("libtorch", "torch"),
    ("apache-mxnet", "mxnet"),
];

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds an engine, replacing one of the same name.
    pub fn register(&mut self, engine: Arc<dyn Engine>) {
        self.engines.retain(|e| e.name() != engine.name());
        self.engines.push(engine);
    }

    /// Adds an engine (builder form).
    pub fn with(mut self, engine: Arc<dyn Engine>) -> Registry {
        self.register(engine);
        self
    }

    /// The engine called `name` (case-insensitive; DJL names like `OnnxRuntime` and
    /// `PyTorch` are accepted).
    pub fn get(&self, name: &str) -> Result<Arc<dyn Engine>> {
        let lower = name.trim().to_ascii_lowercase();
        let canonical =
            ALIASES.iter().find(|(a, _)| *a == lower).map_or(lower.as_str(), |(_, c)| c);
        self.engines.iter().find(|e| e.name() == canonical).cloned().ok_or_else(|| {
            Error::UnknownEngine { name: name.into(), known: self.names().join(", ") }
        })
    }

    /// Names of the registered engines.
    pub fn names(&self) -> Vec<&'static str> {
        self.engines.iter().map(|e| e.name()).collect()
    }

    /// Every registered engine, in registration order.
    pub fn engines(&self) -> impl Iterator<Item = &Arc<dyn Engine>> {
        self.engines.iter()
    }

    /// Looks up `engine` and loads `source` with it.
    pub fn load(&self, engine: &str, source: &ModelSource, options: &Options) -> Result<Model> {
        self.get(engine)?.load(source, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_compiled_engine_names_the_feature() {
        let registry = Registry::new().with(Arc::new(NotCompiled::new("ort", "ort")));
        let err = registry
            .load("OnnxRuntime", &ModelSource::path("m.onnx"), &Options::default())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "engine `ort` is not compiled in: rebuild with --features ort");
        assert!(!registry.get("ort").unwrap().check().available);
    }

    #[test]
    fn unknown_engine_lists_known_ones() {
        let registry = Registry::new()
            .with(Arc::new(NotCompiled::new("ort", "ort")))
            .with(Arc::new(NotCompiled::new("torch", "torch")));
        let err = registry.get("tensorflow").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("`tensorflow`") && err.contains("ort, torch"), "{err}");
    }

    #[test]
    fn source_name_strips_model_extensions() {
        assert_eq!(ModelSource::path("/x/resnet50.onnx").name(), "resnet50");
        assert_eq!(ModelSource::path("m-symbol.json").name(), "m");
    }

    #[test]
    fn missing_directory_and_empty_paths_are_told_apart() {
        let dir = std::env::temp_dir().join(format!("thrum-core-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.onnx");
        std::fs::write(&empty, b"").unwrap();
        let check = |p: &Path| check_model_file(p, "an ONNX file").unwrap_err().to_string();
        assert!(check(&dir.join("nope.onnx")).contains("does not exist"));
        assert!(check(&dir).contains("is a directory; expected an ONNX file"));
        assert!(check(&empty).contains("is empty"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
