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

use thrum_core::{Error, Options, Result};
use thrum_native::{LibrarySearch, NativeLibrary, Visibility};

use crate::ffi::Api;
use crate::{ENGINE, MxnetOptions};

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
    /// The settings `options` (and MXNet's view of them, `mx`) ask for.
    pub fn from_options(options: &Options, mx: &MxnetOptions) -> Settings {
        Settings {
            engine_type: mx.engine_type.clone(),
            omp_threads: mx.omp_threads,
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

/// What thrum keeps of the loaded library: its functions and the environment it started with.
pub struct Runtime {
    /// Each variable libmxnet read at start-up, and its value (`None`: unset, MXNet's default).
    pub environment: Vec<(&'static str, Option<String>)>,
    pub(crate) api: Api,
}

/// The library this process loaded (path, version) and its [`Runtime`].
pub type Loaded = thrum_native::Loaded<Runtime>;

/// What a loaded libmxnet started with.
pub trait Started {
    /// The value libmxnet started with for `variable`.
    fn variable(&self, variable: &str) -> Option<&str>;
    /// The engine type in effect.
    fn engine_type(&self) -> &str;
}

impl Started for Loaded {
    fn variable(&self, variable: &str) -> Option<&str> {
        self.data.environment.iter().find(|(k, _)| *k == variable).and_then(|(_, v)| v.as_deref())
    }

    fn engine_type(&self) -> &str {
        self.variable("MXNET_ENGINE_TYPE").unwrap_or("ThreadedEnginePerDevice")
    }
}

static LIBRARY: NativeLibrary<Runtime> = NativeLibrary::new(LibrarySearch {
    engine: ENGINE,
    library: "the MXNet library (libmxnet.so)",
    option: "mxnet.library_path",
    option_env: "THRUM_MXNET_LIBRARY_PATH",
    native_env: "MXNET_LIBRARY_PATH",
    install: INSTALL,
});

/// Finds the library: `explicit` (the option), then the environment, then the install directory.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf> {
    LIBRARY.search().find_installed(explicit, "libmxnet.so")
}

/// The engine's check, loading nothing: loading fixes settings before a model could choose
/// them.
pub fn check() -> thrum_core::EngineCheck {
    LIBRARY.check(
        || find(None),
        "1.9",
        &["cpu", "mkldnn (oneDNN)", "openblas"],
        |loaded| Some(format!("loaded with engine type {}", loaded.engine_type())),
    )
}

/// Loads the library at `path` with `settings`, once per process; later calls check that the
/// path and settings agree with the first.
pub fn load(path: &Path, settings: &Settings) -> Result<&'static Loaded> {
    let loaded = LIBRARY.load(
        path,
        Visibility::Local,
        &[],
        || apply(settings),
        |library| {
            let environment: Vec<(&'static str, Option<String>)> = settings
                .variables()
                .map(|(k, _)| (k, std::env::var(k).ok().filter(|v| !v.is_empty())))
                .into();
            let api = Api::resolve(library)?;
            let mut code = 0;
            // SAFETY: MXGetVersion writes one int.
            api.call(unsafe { (api.get_version)(&mut code) }, |m| Error::inference(ENGINE, "-", m))
                .map_err(|e| e.to_string())?;
            let version = format!("{}.{}.{}", code / 10000, code / 100 % 100, code % 100);
            LIBRARY.search().require_major("MXNet", &version, "1.", "1.x (1.9)")?;
            Ok((version, Runtime { environment, api }))
        },
    )?;
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
                    current.map_or_else(|| "it unset".to_string(), |v| format!("{variable}={v}"))
                ),
            });
        }
    }
    Ok(loaded)
}

/// Sets the variables libmxnet reads when it starts: called under the load lock, just before
/// the library loads.
fn apply(settings: &Settings) {
    for (variable, value) in settings.variables() {
        if let Some(value) = value {
            // SAFETY: set under NativeLibrary's load lock just before libmxnet starts, as MXNet's
            // own documentation requires; thrum reads no other variable concurrently here.
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
}

/// The library loaded in this process, if any.
pub fn loaded() -> Option<&'static Loaded> {
    LIBRARY.loaded()
}
