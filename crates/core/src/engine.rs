//! [`Engine`]: a runtime that loads models; [`EngineInfo`]: what each engine declares about
//! itself (name, formats, options, installer, feature); [`Registry`]: engines found by name.
//!
//! Every engine crate registers one [`EngineInfo`] in [`ENGINES`] (a link-time list: a crate
//! that is linked is registered, see [`register_engine!`](crate::register_engine)). The
//! registry, option parsing, format detection, `thrum engines install` and the test helpers
//! all read that one table, so adding an engine touches no list anywhere else.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{OptionKey, Options, Scope};
use crate::error::{Error, Result};
use crate::install::Package;
use crate::model::Model;
use crate::precision::Int8Form;

/// A model file format: how users name it and how its files are recognised.
///
/// Formats are data that engines declare in their [`EngineInfo`]; two formats are the same
/// when their ids are (tract and ONNX Runtime both read [`ModelFormat::ONNX`]).
#[derive(Clone, Copy, Debug, Eq)]
pub struct ModelFormat {
    /// Short id: `onnx`, `nnef`, `torchscript`, `mxnet`. What `--format` takes.
    pub id: &'static str,
    /// Human name: `ONNX`.
    pub name: &'static str,
    /// File-name suffixes, lower case, most specific first; the first is what exports write.
    pub suffixes: &'static [&'static str],
    /// For a format stored as a directory, a file inside that marks one (`graph.nnef`).
    pub directory_marker: Option<&'static str>,
}

impl ModelFormat {
    /// ONNX, the interchange format several engines read and the zoo writes.
    pub const ONNX: ModelFormat =
        ModelFormat { id: "onnx", name: "ONNX", suffixes: &[".onnx"], directory_marker: None };

    /// How a file of this format is recognised, for messages: its suffix (`.onnx`), or the
    /// file that marks a directory of it (`a directory with saved_model.pb`).
    pub fn hint(&self) -> String {
        match (self.suffixes.first(), self.directory_marker) {
            (Some(suffix), _) => (*suffix).to_string(),
            (None, Some(marker)) => format!("a directory with {marker}"),
            (None, None) => self.name.to_string(),
        }
    }

    /// True when `path` looks like a file (or directory) of this format.
    pub fn matches(&self, path: &Path) -> bool {
        if let Some(marker) = self.directory_marker
            && path.join(marker).is_file()
        {
            return true;
        }
        let Some(name) = path.file_name() else { return false };
        let name = name.to_string_lossy().to_ascii_lowercase();
        self.suffixes.iter().any(|s| name.ends_with(s) && name.len() > s.len())
    }

    /// The format of `path` among every registered engine's formats, if one matches.
    pub fn detect(path: &Path) -> Option<ModelFormat> {
        all_formats().into_iter().find(|f| f.matches(path))
    }

    /// The format whose id is `id` (`onnx`, `torchscript`…), or an error listing them.
    pub fn by_id(id: &str) -> Result<ModelFormat> {
        let formats = all_formats();
        let lower = id.trim().to_ascii_lowercase();
        formats.iter().copied().find(|f| f.id == lower).ok_or_else(|| Error::Unknown {
            what: "model format",
            name: id.into(),
            known: formats.iter().map(|f| f.id).collect::<Vec<_>>().join(", "),
        })
    }
}

impl PartialEq for ModelFormat {
    fn eq(&self, other: &ModelFormat) -> bool {
        self.id == other.id
    }
}

impl Hash for ModelFormat {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl serde::Serialize for ModelFormat {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id)
    }
}

/// Every format some registered engine reads, each once, in registration order.
pub fn all_formats() -> Vec<ModelFormat> {
    let mut formats: Vec<ModelFormat> = Vec::new();
    for info in infos() {
        for f in info.formats {
            if !formats.contains(f) {
                formats.push(*f);
            }
        }
    }
    formats
}

/// What an engine declares about itself, registered once per engine crate in [`ENGINES`].
///
/// It is plain data, compiled whether or not the engine's runtime is: `thrum engines`,
/// `docs/configuration.md` and option parsing know every engine in every build.
pub struct EngineInfo {
    /// Canonical name: `ort`.
    pub name: &'static str,
    /// Human name: `ONNX Runtime`.
    pub title: &'static str,
    /// Other names users type, lower case (DJL's among them): `onnxruntime`.
    pub aliases: &'static [&'static str],
    /// Model formats it loads.
    pub formats: &'static [ModelFormat],
    /// The `thrum` crate's cargo feature that compiles its runtime in.
    pub feature: &'static str,
    /// What building with that feature needs, for the "not compiled in" message (may be empty).
    pub build_note: &'static str,
    /// Its option keys (`ort.execution_mode`…).
    pub options: &'static [OptionKey],
    /// Engine-neutral keys this engine fixes once per process (libtorch's inter-op threads;
    /// everything libmxnet reads when it loads), besides its own keys of scope `process`.
    pub process_keys: &'static [&'static str],
    /// What `thrum engines install NAME` installs for it (one package per flavour).
    pub packages: &'static [Package],
    /// Position in listings (tract 0, ort 10…).
    pub order: u32,
    /// The engine: the real one when its runtime is compiled in, else a [`NotCompiled`].
    pub engine: fn() -> Arc<dyn Engine>,
}

impl fmt::Debug for EngineInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineInfo").field("name", &self.name).finish_non_exhaustive()
    }
}

impl EngineInfo {
    /// When `key` takes effect for this engine: its own table's scope, [`Scope::Process`] for
    /// the engine-neutral keys it fixes per process, the neutral table's scope otherwise;
    /// `None` for a key that is neither the engine's nor engine-neutral.
    pub fn scope(&self, key: &str) -> Option<Scope> {
        if self.process_keys.contains(&key) {
            return Some(Scope::Process);
        }
        self.options
            .iter()
            .chain(crate::config::KEYS.iter())
            .find(|k| k.key == key)
            .map(|k| k.scope)
    }

    /// True when `name` (any case) is this engine's name or one of its aliases.
    pub fn is_called(&self, name: &str) -> bool {
        let lower = name.trim().to_ascii_lowercase();
        self.name == lower || self.aliases.contains(&lower.as_str())
    }
}

/// Every engine linked into this program, registered by its crate.
#[linkme::distributed_slice]
pub static ENGINES: [EngineInfo];

/// Registers an engine's [`EngineInfo`] in [`ENGINES`]; an engine crate does this once:
///
/// ```text
/// thrum_core::register_engine!(INFO = EngineInfo { name: "ort", /* … */ });
/// ```
#[macro_export]
macro_rules! register_engine {
    ($name:ident = $info:expr) => {
        /// This engine's entry in thrum's engine table.
        #[$crate::linkme::distributed_slice($crate::engine::ENGINES)]
        #[linkme(crate = $crate::linkme)]
        pub static $name: $crate::engine::EngineInfo = $info;
    };
}

/// Every registered engine's info, in [`EngineInfo::order`].
pub fn infos() -> Vec<&'static EngineInfo> {
    let mut all: Vec<&'static EngineInfo> = ENGINES.iter().collect();
    all.sort_by_key(|i| (i.order, i.name));
    all
}

/// The registered engine called `name` (or an alias of it).
pub fn info(name: &str) -> Result<&'static EngineInfo> {
    let all = infos();
    all.iter().copied().find(|i| i.is_called(name)).ok_or_else(|| Error::Unknown {
        what: "engine",
        name: name.trim().into(),
        known: all.iter().map(|i| i.name).collect::<Vec<_>>().join(", "),
    })
}

/// Where a model comes from: a path, or bytes already in memory.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// A file (or a directory, for formats stored as one).
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

    /// The model's name for messages: the file name without its format's suffix, or the name
    /// given with the bytes.
    pub fn name(&self) -> String {
        match self {
            ModelSource::Path(path) => {
                let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
                let file = file.unwrap_or_else(|| path.display().to_string());
                let lower = file.to_ascii_lowercase();
                let suffix = all_formats()
                    .iter()
                    .flat_map(|f| f.suffixes.iter())
                    .filter(|s| lower.ends_with(*s) && lower.len() > s.len())
                    .max_by_key(|s| s.len())
                    .map_or(0, |s| s.len());
                file[..file.len() - suffix].to_string()
            }
            ModelSource::Memory { name, .. } => name.clone(),
        }
    }

    /// The format, from the bytes' declared format or the path's name; `None` when no
    /// registered format matches (an engine then tries its own).
    pub fn format(&self) -> Option<ModelFormat> {
        match self {
            ModelSource::Path(path) => ModelFormat::detect(path),
            ModelSource::Memory { format, .. } => Some(*format),
        }
    }

    /// Checks that the source is in one of `formats` (a source whose format is unknown is
    /// left to the engine's parser: exports may be written under any name), then
    /// [`ModelSource::check_file`]. `reads` says what the engine reads, for the error
    /// ("ONNX Runtime reads ONNX models", then ", not TorchScript").
    pub fn check_format(
        &self,
        engine: &'static str,
        formats: &[ModelFormat],
        reads: &str,
        expected: &str,
    ) -> Result<()> {
        match self.format() {
            Some(found) if !formats.contains(&found) => Err(Error::UnsupportedFormat {
                engine,
                model: self.name(),
                reason: format!("{reads}, not {}", found.name),
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
            ModelSource::Path(path) => {
                std::fs::read(path).map(Cow::Owned).map_err(|source| Error::read(path, source))
            }
            ModelSource::Memory { bytes, .. } => Ok(Cow::Borrowed(bytes)),
        }
    }
}

/// Checks that `path` is an existing, non-empty regular file.
pub fn check_model_file(path: &Path, expected: &str) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound { path: path.to_path_buf() },
        _ => Error::read(path, source),
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
    /// Option values concurrent calls on one model need, as `(key, value)`. With another value
    /// of such a key (ONNX Runtime: `ort.execution_providers` other than `cpu`) the engine runs
    /// one call at a time on the model, so more workers only queue, and it refuses
    /// [`Model::shared_predictor`]. A tuner gives those configurations one worker.
    pub concurrency_needs: Vec<(&'static str, &'static str)>,
    /// The form of a quantized ONNX model it runs fastest; `None` for an engine that runs
    /// none (it reads no ONNX, or refuses int8).
    pub int8_form: Option<Int8Form>,
}

impl Capabilities {
    /// Capabilities from their parts.
    pub fn new(shared_predictor: Support, onednn: Support, devices: Vec<String>) -> Capabilities {
        Capabilities {
            shared_predictor,
            onednn,
            devices,
            concurrency_needs: Vec::new(),
            int8_form: None,
        }
    }

    /// These capabilities, with int8 run fastest from models of `form`.
    pub fn with_int8_form(mut self, form: Int8Form) -> Capabilities {
        self.int8_form = Some(form);
        self
    }

    /// These capabilities, with concurrent calls needing `key` = `value`.
    pub fn with_concurrency_need(mut self, key: &'static str, value: &'static str) -> Capabilities {
        self.concurrency_needs.push((key, value));
        self
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
/// Engines are registered in [`ENGINES`] and looked up by name in a [`Registry`]. An engine
/// whose runtime is not compiled in is represented by [`NotCompiled`], which answers every
/// call with a "not compiled in" error through this same trait.
pub trait Engine: Send + Sync + 'static {
    /// What the engine declares about itself.
    fn info(&self) -> &'static EngineInfo;

    /// Canonical name (`tract`, `ort`, `torch`, `mxnet`).
    fn name(&self) -> &'static str {
        self.info().name
    }

    /// Is the engine usable here: native library, version, devices, providers.
    fn check(&self) -> EngineCheck;

    /// [`Engine::check`] for a model loaded with `options`: engines whose options pick the
    /// native library (`ort.library_path`, ONNX Runtime's OpenVINO flavour) check that one.
    fn check_with(&self, options: &Options) -> EngineCheck {
        let _ = options;
        self.check()
    }

    /// What the engine supports.
    fn capabilities(&self) -> Capabilities;

    /// Loads a model once; the returned [`Model`] is shared by all threads.
    fn load(&self, source: &ModelSource, options: &Options) -> Result<Model>;
}

/// Stand-in for an engine whose runtime was not compiled in.
#[derive(Debug)]
pub struct NotCompiled {
    info: &'static EngineInfo,
}

impl NotCompiled {
    /// The stand-in for the engine `info` describes.
    pub fn new(info: &'static EngineInfo) -> NotCompiled {
        NotCompiled { info }
    }

    fn error(&self) -> Error {
        Error::EngineNotCompiled {
            engine: self.info.name,
            feature: self.info.feature,
            note: self.info.build_note,
        }
    }
}

impl Engine for NotCompiled {
    fn info(&self) -> &'static EngineInfo {
        self.info
    }

    fn check(&self) -> EngineCheck {
        EngineCheck::unavailable(self.info.name, self.error().to_string())
    }

    fn capabilities(&self) -> Capabilities {
        let no = Support::No { reason: self.error().to_string() };
        Capabilities::new(no.clone(), no, Vec::new())
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

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Every engine registered in [`ENGINES`]: the real ones where their runtime is compiled
    /// in, stand-ins that say how to compile them in otherwise.
    pub fn linked() -> Registry {
        Registry { engines: infos().into_iter().map(|i| (i.engine)()).collect() }
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

    /// The engine called `name` (case-insensitive; aliases such as DJL's `OnnxRuntime` and
    /// `PyTorch` are accepted).
    pub fn get(&self, name: &str) -> Result<Arc<dyn Engine>> {
        self.engines.iter().find(|e| e.info().is_called(name)).cloned().ok_or_else(|| {
            Error::Unknown {
                what: "engine",
                name: name.trim().into(),
                known: self.names().join(", "),
            }
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

    /// The engine `auto` picks for the model at `path`: the first, in [`EngineInfo::order`],
    /// that reads its format and whose runtime is available here.
    pub fn for_file(&self, path: &Path) -> Result<Arc<dyn Engine>> {
        let Some(format) = ModelFormat::detect(path) else {
            return Err(Error::UnsupportedFormat {
                engine: "auto",
                model: path.display().to_string(),
                reason: format!(
                    "its name matches no format an engine reads; expected one of {}",
                    all_formats().iter().map(ModelFormat::hint).collect::<Vec<_>>().join(", ")
                ),
            });
        };
        let mut readers: Vec<&Arc<dyn Engine>> =
            self.engines.iter().filter(|e| e.info().formats.contains(&format)).collect();
        readers.sort_by_key(|e| e.info().order);
        let mut why = Vec::new();
        for engine in readers {
            let check = engine.check();
            if check.available {
                return Ok(engine.clone());
            }
            why.push(format!(
                "{}: {}",
                engine.name(),
                check.detail.unwrap_or_else(|| "unavailable".into())
            ));
        }
        Err(Error::EngineUnavailable {
            engine: "auto",
            reason: format!(
                "no engine here can run `{}` ({}): {}",
                path.display(),
                format.name,
                if why.is_empty() { "none reads that format".to_string() } else { why.join("; ") }
            ),
        })
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
