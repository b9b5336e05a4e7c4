//! Finding, checking and loading `libonnxruntime.so`.
//!
//! Search order: the `ort.library_path` option, `$THRUM_ORT_LIBRARY_PATH` (the same option from
//! the environment), `$ORT_DYLIB_PATH` (the `ort` crate's variable), then
//! `$THRUM_HOME/engines/ort/` where `thrum engines install ort` puts the library from the PyPI
//! `onnxruntime` wheel. A process loads one ONNX Runtime library, once.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use thrum_core::config::engine_home;
use thrum_core::library::LibrarySearch;
use thrum_core::{Error, Result};

use crate::ENGINE;

/// The command that installs the library.
pub const INSTALL: &str = "thrum engines install ort";

/// Oldest ONNX Runtime minor version the `ort` bindings accept (their C API level).
pub const MIN_MINOR: u32 = ort::MINOR_VERSION;

/// The library this process loaded.
#[derive(Debug)]
pub struct Loaded {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Its version (`1.32.0`).
    pub version: String,
    /// Keeps our handle open for the life of the process, as `ort`'s is.
    _library: libloading::Library,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();
/// Serialises the first load so two threads cannot race two different paths.
static LOADING: Mutex<()> = Mutex::new(());

/// Where the library is searched for, and how messages name it.
const SEARCH: LibrarySearch = LibrarySearch {
    engine: ENGINE,
    library: "the ONNX Runtime library (libonnxruntime.so)",
    option: "ort.library_path",
    option_env: "THRUM_ORT_LIBRARY_PATH",
    native_env: "ORT_DYLIB_PATH",
    install: INSTALL,
};

/// Finds the library: `explicit` (the option), then the environment, then the install directory.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf> {
    SEARCH.find(explicit, || {
        let dir = engine_home(ENGINE);
        newest_in(&dir)
            .ok_or_else(|| (format!("`{}`", dir.display()), "no libonnxruntime.so*".into()))
    })
}

/// The highest-versioned `libonnxruntime.so*` in `dir`.
fn newest_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
        })
        .collect();
    found.sort_by_key(|p| version_key(&p.to_string_lossy()));
    found.pop()
}

fn version_key(name: &str) -> Vec<u32> {
    name.rsplit("libonnxruntime.so")
        .next()
        .unwrap_or("")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Loads the library at `path` (once per process) after checking its version.
pub fn load(path: &Path) -> Result<&'static Loaded> {
    let _guard = LOADING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(loaded) = LOADED.get() {
        let same = std::fs::canonicalize(path).ok() == std::fs::canonicalize(&loaded.path).ok();
        return if same {
            Ok(loaded)
        } else {
            Err(Error::EngineUnavailable {
                engine: ENGINE,
                reason: format!(
                    "ONNX Runtime {} is already loaded from `{}` in this process; a process loads one \
                     ONNX Runtime library, so `{}` cannot be used as well",
                    loaded.version,
                    loaded.path.display(),
                    path.display()
                ),
            })
        };
    }
    let unavailable = |reason: String| Error::EngineUnavailable { engine: ENGINE, reason };
    // SAFETY: loading a shared library runs its initialisers; this is ONNX Runtime's own library
    // (or what the user named as such), loaded once, as the `ort` crate itself does.
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|e| unavailable(format!("cannot load `{}`: {e}", path.display())))?;
    let version = version_of(&library, path)?;
    let minor = version.split('.').nth(1).and_then(|m| m.parse::<u32>().ok()).unwrap_or(0);
    if !version.starts_with("1.") || minor < MIN_MINOR {
        return Err(unavailable(format!(
            "ONNX Runtime {version} at `{}` is not compatible: thrum needs 1.{MIN_MINOR} or newer; install a \
             compatible one with `{INSTALL}`",
            path.display()
        )));
    }
    ort::init_from(path).map_err(|e| unavailable(e.to_string()))?;
    Ok(LOADED.get_or_init(|| Loaded { path: path.to_path_buf(), version, _library: library }))
}

/// The library's version string, read through `OrtGetApiBase`.
fn version_of(library: &libloading::Library, path: &Path) -> Result<String> {
    #[repr(C)]
    struct ApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
    }
    let missing = || Error::EngineUnavailable {
        engine: ENGINE,
        reason: format!(
            "`{}` is not an ONNX Runtime library: it does not export OrtGetApiBase",
            path.display()
        ),
    };
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release (onnxruntime_c_api.h).
    let get_base =
        unsafe { library.get::<unsafe extern "C" fn() -> *const ApiBase>(b"OrtGetApiBase\0") }
            .map_err(|_| missing())?;
    // SAFETY: the function takes no argument and returns a pointer to a static struct.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err(missing());
    }
    // SAFETY: `base` is non-null and points to ONNX Runtime's static OrtApiBase, whose
    // GetVersionString returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(((*base).get_version_string)()) };
    Ok(version.to_string_lossy().into_owned())
}

/// The library loaded in this process, if any.
pub fn loaded() -> Option<&'static Loaded> {
    LOADED.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_wins() {
        assert!(version_key("libonnxruntime.so.1.32.0") > version_key("libonnxruntime.so.1.9.1"));
        assert!(version_key("libonnxruntime.so.1.32.0") > version_key("libonnxruntime.so"));
    }
}
