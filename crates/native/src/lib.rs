//! # thrum-native
//!
//! What every engine that loads its library at run time (ONNX Runtime, MXNet, TensorFlow) needs
//! and no engine should write twice:
//!
//! - [`LibrarySearch`]: one search order and one error. The engine's `*.library_path` option,
//!   the same option from its `THRUM_*` variable, the engine's own variable (`ORT_DYLIB_PATH`,
//!   `MXNET_LIBRARY_PATH`), then the directory `thrum engines install ENGINE` fills. A path
//!   that is named but is not a file is an error, not a reason to fall back silently to another
//!   library; when nothing is found, the error names every place searched and the install
//!   command.
//! - [`NativeLibrary`]: a library loaded once per process, under a lock, with its version
//!   checked and whatever the engine resolves from it kept beside it; asking for the library
//!   from another path later is an error naming both.
//!
//! The `unsafe` of loading lives here, each block with its SAFETY note.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use thrum_core::{Error, Result};

/// Where one engine looks for its library, and how messages name it.
#[derive(Clone, Copy, Debug)]
pub struct LibrarySearch {
    /// The engine (`ort`).
    pub engine: &'static str,
    /// The library as users know it: `the ONNX Runtime library (libonnxruntime.so)`.
    pub library: &'static str,
    /// The option naming it: `ort.library_path`.
    pub option: &'static str,
    /// The option's environment variable: `THRUM_ORT_LIBRARY_PATH`.
    pub option_env: &'static str,
    /// The engine's own variable: `ORT_DYLIB_PATH`.
    pub native_env: &'static str,
    /// The command that installs it: `thrum engines install ort`.
    pub install: &'static str,
}

impl LibrarySearch {
    /// Finds the library: `explicit` (the option's value), then the two variables, then
    /// `installed`, which looks in the install directory and returns the file, or the place
    /// it looked and what it found there (for the error).
    pub fn find(
        &self,
        explicit: Option<&Path>,
        installed: impl FnOnce() -> std::result::Result<PathBuf, (String, String)>,
    ) -> Result<PathBuf> {
        let from_env =
            |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let candidates = [
            (format!("option {}", self.option), explicit.map(Path::to_path_buf)),
            (format!("${}", self.option_env), from_env(self.option_env)),
            (format!("${}", self.native_env), from_env(self.native_env)),
        ];
        let mut searched = Vec::new();
        for (place, path) in candidates {
            match path {
                None => searched.push((place, "not set".to_string())),
                Some(path) if !path.is_file() => {
                    return Err(self.unavailable(format!(
                        "{place} names `{}`, which is not a file; {}",
                        path.display(),
                        self.missing(&searched)
                    )));
                }
                Some(path) => return Ok(path),
            }
        }
        installed().map_err(|looked| {
            searched.push(looked);
            self.unavailable(self.missing(&searched))
        })
    }

    /// [`LibrarySearch::find`] with the install directory's candidate:
    /// `$THRUM_HOME/engines/ENGINE/FILE`, where `thrum engines install` puts it.
    pub fn find_installed(&self, explicit: Option<&Path>, file: &str) -> Result<PathBuf> {
        self.find(explicit, || {
            let path = thrum_core::config::engine_home(self.engine).join(file);
            if path.is_file() {
                Ok(path)
            } else {
                Err((format!("`{}`", path.display()), "no such file".into()))
            }
        })
    }

    /// Refuses a library of another major version than `major` (`"2."`): thrum's bindings are
    /// for one C API.
    pub fn require_major(
        &self,
        name: &str,
        version: &str,
        major: &str,
        api: &str,
    ) -> std::result::Result<(), String> {
        if version.starts_with(major) {
            Ok(())
        } else {
            Err(format!(
                "{name} {version} is not supported: thrum uses the {api} C API; install it with `{}`",
                self.install
            ))
        }
    }

    fn missing(&self, searched: &[(String, String)]) -> String {
        let list: Vec<String> =
            searched.iter().map(|(place, found)| format!("{place} ({found})")).collect();
        format!(
            "{} was not found; searched: {}. Install it with `{}`, or point the {} option ({}) at it",
            self.library,
            list.join("; "),
            self.install,
            self.option,
            self.option_env
        )
    }

    /// The engine-unavailable error for `reason`.
    pub fn unavailable(&self, reason: String) -> Error {
        Error::EngineUnavailable { engine: self.engine, reason }
    }
}

/// How a library is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Visibility {
    /// Its symbols stay private to it (`RTLD_LOCAL`): the default.
    #[default]
    Local,
    /// Its symbols resolve the undefined symbols of libraries loaded after it
    /// (`RTLD_GLOBAL`): what a companion library such as `libtensorflow_framework.so.2` needs.
    Global,
}

/// A library this process loaded, its version, and what the engine resolved from it.
#[derive(Debug)]
pub struct Loaded<T> {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Its version (`1.32.0`).
    pub version: String,
    /// What the engine resolved from it (function tables, settings it started with).
    pub data: T,
    library: libloading::Library,
    _companions: Vec<libloading::Library>,
}

impl<T> Loaded<T> {
    /// The library, to resolve symbols from.
    pub fn library(&self) -> &libloading::Library {
        &self.library
    }
}

/// A library loaded once per process: a `static` of the engine crate.
///
/// ```ignore
/// static LIBRARY: NativeLibrary<Api> = NativeLibrary::new(SEARCH);
/// let loaded = LIBRARY.load(&path, Visibility::Local, &[], || {}, |lib| {
///     let api = Api::resolve(lib)?;
///     Ok((api.version()?, api))
/// })?;
/// ```
pub struct NativeLibrary<T: 'static> {
    search: LibrarySearch,
    loaded: OnceLock<Loaded<T>>,
    loading: Mutex<()>,
}

impl<T: Send + Sync + 'static> NativeLibrary<T> {
    /// `Engine::check` for an engine whose library is loaded only by its first model (loading
    /// fixes settings a model's options choose): the loaded library if there is one, else the
    /// one that would be loaded, found without loading it (its version then reads
    /// `unloaded_version`). `detail` describes a loaded library's settings.
    pub fn check(
        &'static self,
        find: impl FnOnce() -> Result<PathBuf>,
        unloaded_version: &str,
        providers: &[&str],
        detail: impl FnOnce(&Loaded<T>) -> Option<String>,
    ) -> thrum_core::EngineCheck {
        let engine = self.search.engine;
        let found = match self.loaded() {
            Some(loaded) => Ok((loaded.path.clone(), loaded.version.clone(), Some(loaded))),
            None => find().map(|p| (p, format!("{unloaded_version} (checked when loaded)"), None)),
        };
        match found {
            Ok((path, version, loaded)) => {
                let mut check = thrum_core::EngineCheck::available(engine, version)
                    .with_library(path)
                    .with_providers(providers.iter().map(|p| p.to_string()).collect())
                    .with_devices(vec!["cpu".into()]);
                if let Some(text) = loaded.and_then(detail) {
                    check = check.with_detail(text);
                }
                check
            }
            Err(e) => thrum_core::EngineCheck::unavailable(engine, e.to_string()),
        }
    }

    /// A library not loaded yet, searched for as `search` says.
    pub const fn new(search: LibrarySearch) -> NativeLibrary<T> {
        NativeLibrary { search, loaded: OnceLock::new(), loading: Mutex::new(()) }
    }

    /// How the library is searched for and named.
    pub fn search(&self) -> &LibrarySearch {
        &self.search
    }

    /// The library, if this process loaded it.
    pub fn loaded(&self) -> Option<&Loaded<T>> {
        self.loaded.get()
    }

    /// Loads the library at `path` once per process and returns it; later calls return the
    /// same library when `path` is the same file, and an error naming both paths otherwise.
    ///
    /// Under a lock, in order: `prepare` (settings the library reads when it starts, such as
    /// environment variables), each of `companions` opened globally (libraries `path` needs
    /// from beside it), `path` itself, then `init`, which checks the library and resolves what
    /// the engine needs: it returns the version and the engine's data, or why the library is
    /// not usable.
    pub fn load(
        &self,
        path: &Path,
        visibility: Visibility,
        companions: &[PathBuf],
        prepare: impl FnOnce(),
        init: impl FnOnce(&libloading::Library) -> std::result::Result<(String, T), String>,
    ) -> Result<&Loaded<T>> {
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(loaded) = self.loaded.get() {
            return if same_file(path, &loaded.path) {
                Ok(loaded)
            } else {
                Err(self.search.unavailable(format!(
                    "{} {} is already loaded from `{}` in this process; a process loads one, so `{}` \
                     cannot be used as well (start another process for it)",
                    self.search.library,
                    loaded.version,
                    loaded.path.display(),
                    path.display()
                )))
            };
        }
        prepare();
        let companions = companions
            .iter()
            .map(|c| open(c, Visibility::Global).map_err(|e| self.cannot_load(c, &e)))
            .collect::<Result<Vec<_>>>()?;
        let library = open(path, visibility).map_err(|e| self.cannot_load(path, &e))?;
        let (version, data) = init(&library)
            .map_err(|reason| self.search.unavailable(format!("`{}`: {reason}", path.display())))?;
        Ok(self.loaded.get_or_init(|| Loaded {
            path: path.to_path_buf(),
            version,
            data,
            library,
            _companions: companions,
        }))
    }

    fn cannot_load(&self, path: &Path, e: &libloading::Error) -> Error {
        let message = e.to_string();
        let hint = match missing_dependency(&message) {
            Some(dep) => format!(
                " ({dep} is a library it needs: install the package that provides it, or \
                 reinstall with `{}`)",
                self.search.install
            ),
            None => String::new(),
        };
        self.search.unavailable(format!("cannot load `{}`: {message}{hint}", path.display()))
    }
}

/// The name in a dynamic loader's "libX.so: cannot open shared object file" message: which
/// library a library needs and the loader did not find.
fn missing_dependency(message: &str) -> Option<&str> {
    let (before, _) = message.split_once(": cannot open shared object file")?;
    before.rsplit([' ', ':']).next().filter(|name| name.contains(".so"))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(unix)]
fn open(
    path: &Path,
    visibility: Visibility,
) -> std::result::Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_LOCAL, RTLD_NOW};
    let flags = RTLD_NOW
        | match visibility {
            Visibility::Local => RTLD_LOCAL,
            Visibility::Global => RTLD_GLOBAL,
        };
    // SAFETY: loading a shared library runs its initialisers. The libraries loaded here are an
    // engine's own runtime (or what the user named as such), loaded once per process under the
    // lock of `NativeLibrary::load` and never unloaded while the process runs.
    unsafe { Library::open(Some(path), flags) }.map(libloading::Library::from)
}

#[cfg(not(unix))]
fn open(
    path: &Path,
    _visibility: Visibility,
) -> std::result::Result<libloading::Library, libloading::Error> {
    // SAFETY: as on unix: an engine's own runtime, loaded once per process, never unloaded.
    unsafe { libloading::Library::new(path) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    use super::*;

    const SEARCH: LibrarySearch = LibrarySearch {
        engine: "fake",
        library: "the fake library (libfake.so)",
        option: "fake.library_path",
        option_env: "THRUM_FAKE_LIBRARY_PATH",
        native_env: "FAKE_LIBRARY_PATH",
        install: "thrum engines install fake",
    };

    #[test]
    fn a_named_path_that_is_not_a_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = SEARCH
            .find(Some(&dir.path().join("nope.so")), || Ok(PathBuf::from("/x")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("option fake.library_path names") && e.contains("not a file"), "{e}");
    }

    #[test]
    fn nothing_found_lists_every_place_and_the_install_command() {
        let e = SEARCH
            .find(None, || Err(("`/home/engines/fake`".into(), "no libfake.so".into())))
            .unwrap_err();
        let text = e.to_string();
        for part in [
            "$THRUM_FAKE_LIBRARY_PATH (not set)",
            "$FAKE_LIBRARY_PATH (not set)",
            "no libfake.so",
            "thrum engines install fake",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert_eq!(e.kind(), thrum_core::ErrorKind::Unavailable);
    }

    #[test]
    fn a_file_that_is_not_a_library_is_unavailable_with_the_loader_message() {
        static LIBRARY: NativeLibrary<()> = NativeLibrary::new(SEARCH);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libfake.so");
        std::fs::write(&path, b"not an ELF file").unwrap();
        let e = LIBRARY
            .load(&path, Visibility::Local, &[], || {}, |_| Ok(("1".into(), ())))
            .unwrap_err();
        assert!(e.to_string().contains("cannot load"), "{e}");
        assert!(LIBRARY.loaded().is_none());
    }

    #[test]
    fn a_second_path_is_refused_naming_both() {
        static LIBRARY: NativeLibrary<u32> = NativeLibrary::new(SEARCH);
        // libc is always loadable; it stands in for an engine library here.
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        if !libc.is_file() {
            return;
        }
        let first =
            LIBRARY.load(libc, Visibility::Local, &[], || {}, |_| Ok(("2.x".into(), 7))).unwrap();
        assert_eq!((first.version.as_str(), first.data), ("2.x", 7));
        let again = LIBRARY.load(libc, Visibility::Local, &[], || {}, |_| unreachable!()).unwrap();
        assert_eq!(again.data, 7);
        let other = Path::new("/lib/x86_64-linux-gnu/libm.so.6");
        let e = LIBRARY.load(other, Visibility::Local, &[], || {}, |_| unreachable!()).unwrap_err();
        assert!(
            e.to_string().contains("already loaded from") && e.to_string().contains("libm"),
            "{e}"
        );
    }

    #[test]
    fn missing_dependencies_are_named() {
        let message =
            "libmxnet.so: libgomp.so.1: cannot open shared object file: No such file or directory";
        assert_eq!(missing_dependency(message), Some("libgomp.so.1"));
    }
}
