//! Finding and loading `libmxnet.so`, once per process, with the settings libmxnet reads from
//! its environment when it starts.
//!
//! Search order: the `mxnet.library_path` option (`THRUM_MXNET_LIBRARY_PATH`),
//! `$MXNET_LIBRARY_PATH` (MXNet's own variable), then `$THRUM_HOME/engines/mxnet/libmxnet.so`
//! where `thrum engines install mxnet` puts the library from the PyPI `mxnet` wheel.
//!
//! libmxnet reads `MXNET_ENGINE_TYPE`, `OMP_NUM_THREADS`, `MXNET_CPU_WORKER_NTHREADS` and
//! `MXNET_MKLDNN_ENABLED` once: thrum sets them from the first model's options just before it
//! loads the library, and refuses a later model that asks for different values.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use thrum_core::config::engine_home;
use thrum_core::library::LibrarySearch;
use thrum_core::{Error, Options, Result};

use crate::ENGINE;
use crate::ffi::Api;

/// The command that installs the library.
pub const INSTALL: &str = "thrum engines install mxnet";

/// The settings libmxnet starts with, as requested (`None`: leave the environment alone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `MXNET_ENGINE_TYPE`.
    pub engine_type: Option<String>,
    /// `OMP_NUM_THREADS` (intra-op threads).
    pub omp_threads: Option<usize>,
    /// `MXNET_CPU_WORKER_NTHREADS` (inter-op threads of the threaded engines).
    pub cpu_workers: Option<usize>,
    /// `MXNET_MKLDNN_ENABLED`.
    pub mkldnn: Option<bool>,
}

impl Settings {
    /// The settings `options` ask for.
    pub fn from_options(options: &Options) -> Settings {
        Settings {
            engine_type: options.mxnet.engine_type.clone(),
            omp_threads: options.intra_op_threads,
            cpu_workers: options.inter_op_threads,
            mkldnn: options.onednn,
        }
    }

    fn variables(&self) -> [(&'static str, Option<String>); 4] {
        [
            ("MXNET_ENGINE_TYPE", self.engine_type.clone()),
            ("OMP_NUM_THREADS", self.omp_threads.map(|n| n.to_string())),
            ("MXNET_CPU_WORKER_NTHREADS", self.cpu_workers.map(|n| n.to_string())),
            ("MXNET_MKLDNN_ENABLED", self.mkldnn.map(|b| u8::from(b).to_string())),
        ]
    }
}

/// The library this process loaded, and the environment it started with.
pub struct Loaded {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Its version (`1.9.1`).
    pub version: String,
    /// Each variable libmxnet read at start-up, and its value (`None`: unset, MXNet's default).
    pub environment: Vec<(&'static str, Option<String>)>,
    pub(crate) api: Api,
    _library: libloading::Library,
}

impl Loaded {
    /// The value libmxnet started with for `variable`.
    pub fn variable(&self, variable: &str) -> Option<&str> {
        self.environment.iter().find(|(k, _)| *k == variable).and_then(|(_, v)| v.as_deref())
    }

    /// The engine type in effect.
    pub fn engine_type(&self) -> &str {
        self.variable("MXNET_ENGINE_TYPE").unwrap_or("ThreadedEnginePerDevice")
    }
}

static LOADED: OnceLock<Loaded> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// Where the library is searched for, and how messages name it.
const SEARCH: LibrarySearch = LibrarySearch {
    engine: ENGINE,
    library: "the MXNet library (libmxnet.so)",
    option: "mxnet.library_path",
    option_env: "THRUM_MXNET_LIBRARY_PATH",
    native_env: "MXNET_LIBRARY_PATH",
    install: INSTALL,
};

/// Finds the library: `explicit` (the option), then the environment, then the install directory.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf> {
    SEARCH.find(explicit, || {
        let file = engine_home(ENGINE).join("libmxnet.so");
        if file.is_file() {
            Ok(file)
        } else {
            Err((format!("`{}`", file.display()), "no such file".into()))
        }
    })
}

/// Loads the library at `path` with `settings`, once per process; later calls check that the
/// path and settings agree with the first.
pub fn load(path: &Path, settings: &Settings) -> Result<&'static Loaded> {
    let _guard = LOADING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(loaded) = LOADED.get() {
        if std::fs::canonicalize(path).ok() != std::fs::canonicalize(&loaded.path).ok() {
            return Err(Error::EngineUnavailable {
                engine: ENGINE,
                reason: format!(
                    "MXNet {} is already loaded from `{}` in this process, so `{}` cannot be used as well",
                    loaded.version,
                    loaded.path.display(),
                    path.display()
                ),
            });
        }
        for (variable, wanted) in settings.variables() {
            let Some(wanted) = wanted else { continue };
            let current = loaded.variable(variable);
            if current != Some(wanted.as_str()) {
                return Err(Error::Unsupported {
                    engine: ENGINE,
                    feature: format!("{variable}={wanted}"),
                    reason: format!(
                        "libmxnet reads {variable} once, when it loads, and this process loaded it with {}; \
                         load every MXNet model of a process with the same settings (or start a new process)",
                        current
                            .map_or_else(|| "it unset".to_string(), |v| format!("{variable}={v}"))
                    ),
                });
            }
        }
        return Ok(loaded);
    }
    for (variable, value) in settings.variables() {
        if let Some(value) = value {
            // SAFETY: set under the LOADING lock just before libmxnet starts, as MXNet's own
            // documentation requires; thrum reads no other variable concurrently here.
            unsafe { std::env::set_var(variable, value) };
        }
    }
    if settings.mkldnn == Some(false)
        && std::env::var_os("MXNET_STORAGE_FALLBACK_LOG_VERBOSE").is_none()
    {
        // Without oneDNN every operator logs a "storage type fallback" warning on first use:
        // expected here, and correctness is unaffected.
        // SAFETY: as above.
        unsafe { std::env::set_var("MXNET_STORAGE_FALLBACK_LOG_VERBOSE", "0") };
    }
    let environment: Vec<(&'static str, Option<String>)> = settings
        .variables()
        .map(|(k, _)| (k, std::env::var(k).ok().filter(|v| !v.is_empty())))
        .into();
    let unavailable = |reason: String| Error::EngineUnavailable { engine: ENGINE, reason };
    // SAFETY: loading runs libmxnet's initialisers; it is MXNet's library (or what the user
    // named as such), loaded once and never unloaded.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| {
        let message = e.to_string();
        let hint = if message.contains("libgomp") {
            " (libmxnet needs the system's OpenMP runtime: install the libgomp1 package)"
        } else {
            ""
        };
        unavailable(format!("cannot load `{}`: {message}{hint}", path.display()))
    })?;
    let api = Api::resolve(&library)
        .map_err(|reason| unavailable(format!("`{}`: {reason}", path.display())))?;
    let mut code = 0;
    // SAFETY: MXGetVersion writes one int.
    api.call(unsafe { (api.get_version)(&mut code) }, unavailable)?;
    let version = format!("{}.{}.{}", code / 10000, code / 100 % 100, code % 100);
    if !version.starts_with("1.") {
        return Err(unavailable(format!(
            "MXNet {version} at `{}` is not supported: thrum uses the 1.x C API (1.9); install it with `{INSTALL}`",
            path.display()
        )));
    }
    Ok(LOADED.get_or_init(|| Loaded {
        path: path.to_path_buf(),
        version,
        environment,
        api,
        _library: library,
    }))
}

/// The library loaded in this process, if any.
pub fn loaded() -> Option<&'static Loaded> {
    LOADED.get()
}
