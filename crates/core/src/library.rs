//! Finding an engine's native library: one search order and one error for every engine that
//! loads its library at run time (ONNX Runtime, MXNet).
//!
//! Order: the engine's `*.library_path` option, the same option from its `THRUM_*` variable,
//! the engine's own variable (`ORT_DYLIB_PATH`, `MXNET_LIBRARY_PATH`), then the directory
//! `thrum engines install ENGINE` fills. A path that is named but is not a file is an error,
//! not a reason to fall back silently to another library. When nothing is found, the error
//! names every place searched and the install command.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Where one engine looks for its library, and how it names it in messages.
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

    fn unavailable(&self, reason: String) -> Error {
        Error::EngineUnavailable { engine: self.engine, reason }
    }
}
