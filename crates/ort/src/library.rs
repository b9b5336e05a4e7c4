//! Finding, checking and loading `libonnxruntime.so`.
//!
//! Search order: the `ort.library_path` option, `$THRUM_ORT_LIBRARY_PATH` (the same option from
//! the environment), `$ORT_DYLIB_PATH` (the `ort` crate's variable), then
//! `$THRUM_HOME/engines/ort/` where `thrum engines install ort` puts the library from the PyPI
//! `onnxruntime` wheel — after `$THRUM_HOME/engines/ort-openvino/` (the `onnxruntime-openvino`
//! wheel) when the options ask for OpenVINO. A process loads one ONNX Runtime library, once.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use thrum_core::Result;
use thrum_core::config::engine_home;
use thrum_native::{LibrarySearch, NativeLibrary, Visibility};

use crate::ENGINE;

/// The command that installs the library.
pub const INSTALL: &str = "thrum engines install ort";

/// Oldest ONNX Runtime minor version the `ort` bindings accept (their C API level).
pub const MIN_MINOR: u32 = ort::MINOR_VERSION;

/// The library this process loaded: its path and version.
pub type Loaded = thrum_native::Loaded<()>;

/// The process's ONNX Runtime library, searched for as `SEARCH` says.
static LIBRARY: NativeLibrary<()> = NativeLibrary::new(LibrarySearch {
    engine: ENGINE,
    library: "the ONNX Runtime library (libonnxruntime.so)",
    option: "ort.library_path",
    option_env: "THRUM_ORT_LIBRARY_PATH",
    native_env: "ORT_DYLIB_PATH",
    install: INSTALL,
});

/// Finds the library: `explicit` (the option), then the environment, then the install directory.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf> {
    find_flavour(explicit, false)
}

/// [`find`], with the OpenVINO flavour's install directory (`thrum engines install
/// ort-openvino`) searched before the plain one when `openvino` is set.
pub fn find_flavour(explicit: Option<&Path>, openvino: bool) -> Result<PathBuf> {
    LIBRARY.search().find(explicit, || {
        let plain = engine_home(ENGINE);
        let flavour = engine_home(crate::OPENVINO_FLAVOUR);
        let dirs: Vec<&Path> = if openvino { vec![&flavour, &plain] } else { vec![&plain] };
        dirs.iter().find_map(|d| newest_in(d)).ok_or_else(|| {
            let shown: Vec<String> = dirs.iter().map(|d| format!("`{}`", d.display())).collect();
            (shown.join(" and "), "no libonnxruntime.so*".into())
        })
    })
}

/// Each installed flavour (`ort`, `ort-openvino`): its library and the execution providers its
/// files hold besides CPU, read from the directory without loading anything.
pub fn installed_flavours() -> Vec<(&'static str, PathBuf, Vec<String>)> {
    crate::PACKAGES
        .iter()
        .filter_map(|package| {
            let dir = engine_home(package.dir);
            let library = newest_in(&dir)?;
            let mut providers: Vec<String> = std::fs::read_dir(&dir)
                .ok()?
                .filter_map(|e| {
                    let name = e.ok()?.file_name().to_string_lossy().into_owned();
                    let provider =
                        name.strip_prefix("libonnxruntime_providers_")?.strip_suffix(".so")?;
                    (provider != "shared").then(|| provider.to_string())
                })
                .collect();
            providers.sort();
            providers.push("cpu".into());
            Some((package.name, library, providers))
        })
        .collect()
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

/// Loads the library at `path` (once per process) after checking its version, and hands it to
/// the `ort` crate.
pub fn load(path: &Path) -> Result<&'static Loaded> {
    LIBRARY.load(
        path,
        Visibility::Local,
        &[],
        || {},
        |library| {
            let version = version_of(library, path)?;
            let minor = version.split('.').nth(1).and_then(|m| m.parse::<u32>().ok()).unwrap_or(0);
            if !version.starts_with("1.") || minor < MIN_MINOR {
                return Err(format!(
                    "ONNX Runtime {version} is not compatible: thrum needs 1.{MIN_MINOR} or newer; \
                 install a compatible one with `{INSTALL}`"
                ));
            }
            ort::init_from(path).map_err(|e| e.to_string())?;
            Ok((version, ()))
        },
    )
}

/// The library's version string, read through `OrtGetApiBase`.
fn version_of(library: &libloading::Library, path: &Path) -> std::result::Result<String, String> {
    #[repr(C)]
    struct ApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
    }
    let missing = || {
        format!(
            "`{}` is not an ONNX Runtime library: it does not export OrtGetApiBase",
            path.display()
        )
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
    LIBRARY.loaded()
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
