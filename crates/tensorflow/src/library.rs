//! Finding and loading TensorFlow's C API, once per process, with the settings TensorFlow
//! fixes once per process.
//!
//! Search order: the `tensorflow.library_path` option (`THRUM_TENSORFLOW_LIBRARY_PATH`),
//! `$TENSORFLOW_LIBRARY_PATH`, then `$THRUM_HOME/engines/tensorflow/libtensorflow_cc.so.2`
//! where `thrum engines install tensorflow` puts the library from the PyPI `tensorflow-cpu`
//! wheel. `libtensorflow_framework.so.2` is opened globally from the same directory first: the
//! C API library resolves its symbols from it.
//!
//! Fixed once per process: `TF_ENABLE_ONEDNN_OPTS` (read when the library starts), and the
//! sizes of the CPU thread pools, which the first session creates and later sessions share.
//! The first model's options set them; a later model asking for others gets an error naming
//! both values.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use thrum_core::{Error, Result};
use thrum_native::{LibrarySearch, NativeLibrary, Visibility};

use crate::ENGINE;
use crate::ffi::Api;

/// The command that installs the library.
pub const INSTALL: &str = "thrum engines install tensorflow";

/// The C API library's file name.
pub const LIBRARY_FILE: &str = "libtensorflow_cc.so.2";
/// The framework library it needs, from the same directory.
pub const FRAMEWORK_FILE: &str = "libtensorflow_framework.so.2";

/// What thrum keeps of the loaded library: its functions and the oneDNN switch it started
/// with.
pub struct Runtime {
    /// `TF_ENABLE_ONEDNN_OPTS` when it loaded (`None`: unset, TensorFlow's default, on for x86).
    pub onednn: Option<bool>,
    pub(crate) api: Api,
    /// The thread pool sizes of the first session: (intra-op, inter-op).
    pools: Mutex<Option<(usize, usize)>>,
}

/// The library this process loaded (path, version) and its [`Runtime`].
pub type Loaded = thrum_native::Loaded<Runtime>;

static LIBRARY: NativeLibrary<Runtime> = NativeLibrary::new(LibrarySearch {
    engine: ENGINE,
    library: "TensorFlow's C API library (libtensorflow_cc.so.2)",
    option: "tensorflow.library_path",
    option_env: "THRUM_TENSORFLOW_LIBRARY_PATH",
    native_env: "TENSORFLOW_LIBRARY_PATH",
    install: INSTALL,
});

/// Finds the library: `explicit` (the option), then the environment, then the install directory.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf> {
    LIBRARY.search().find_installed(explicit, LIBRARY_FILE)
}

/// The engine's check, loading nothing: loading fixes the oneDNN switch before a model could
/// choose it.
pub fn check() -> thrum_core::EngineCheck {
    LIBRARY.check(
        || find(None),
        crate::VERSION,
        &["cpu", "onednn", "eigen"],
        |loaded| {
            let onednn = loaded.data.onednn.unwrap_or(true);
            let mut detail = format!("loaded with oneDNN {}", if onednn { "on" } else { "off" });
            if let Some((intra, inter)) = loaded.data.pools() {
                detail.push_str(&format!(", {intra} intra-op and {inter} inter-op threads"));
            }
            Some(detail)
        },
    )
}

fn variable(onednn: bool) -> &'static str {
    if onednn { "1" } else { "0" }
}

/// Loads the library at `path` once per process, with oneDNN as `onednn` asks (`None`: leave
/// the environment alone); later calls check the path and the oneDNN switch agree.
pub fn load(path: &Path, onednn: Option<bool>) -> Result<&'static Loaded> {
    let framework = path.with_file_name(FRAMEWORK_FILE);
    if !framework.is_file() && LIBRARY.loaded().is_none() {
        return Err(LIBRARY.search().unavailable(format!(
            "`{}` needs `{}` beside it, which is missing; install both with `{INSTALL}`",
            path.display(),
            framework.display()
        )));
    }
    let loaded = LIBRARY.load(
        path,
        Visibility::Local,
        &[framework],
        || {
            if std::env::var_os("TF_CPP_MIN_LOG_LEVEL").is_none() {
                // TensorFlow logs its start-up (CPU features, optimisation passes) at INFO on
                // stderr; warnings and errors still show.
                // SAFETY: as below, under the load lock before TensorFlow starts.
                unsafe { std::env::set_var("TF_CPP_MIN_LOG_LEVEL", "1") };
            }
            if let Some(on) = onednn {
                // SAFETY: set under NativeLibrary's load lock just before TensorFlow starts
                // (it reads the variable once, when it loads); thrum reads no other variable
                // concurrently here.
                unsafe { std::env::set_var("TF_ENABLE_ONEDNN_OPTS", variable(on)) };
            }
        },
        |library| {
            let api = Api::resolve(library)?;
            let version = api.version_string();
            LIBRARY.search().require_major("TensorFlow", &version, "2.", "2.x")?;
            let onednn = std::env::var("TF_ENABLE_ONEDNN_OPTS").ok().and_then(|v| match v.trim() {
                "1" | "true" | "True" => Some(true),
                "0" | "false" | "False" => Some(false),
                _ => None,
            });
            Ok((version, Runtime { onednn, api, pools: Mutex::new(None) }))
        },
    )?;
    if let Some(wanted) = onednn
        && loaded.data.onednn.unwrap_or(true) != wanted
    {
        return Err(Error::Unsupported {
            engine: ENGINE,
            feature: format!("onednn={wanted}"),
            reason: format!(
                "TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it loads, and this process loaded it with {}; \
                 load every TensorFlow model of a process with the same oneDNN setting (or start a new process)",
                match loaded.data.onednn {
                    Some(on) => format!("TF_ENABLE_ONEDNN_OPTS={}", variable(on)),
                    None => "it unset (oneDNN on)".into(),
                }
            ),
        });
    }
    Ok(loaded)
}

impl Runtime {
    /// Records the pool sizes of a new session: the first session's are the process's; a
    /// later session asking for other sizes is refused.
    pub(crate) fn claim_pools(&self, intra: usize, inter: usize) -> Result<()> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        match *pools {
            None => {
                *pools = Some((intra, inter));
                Ok(())
            }
            Some(first) if first == (intra, inter) => Ok(()),
            Some((first_intra, first_inter)) => Err(Error::Unsupported {
                engine: ENGINE,
                feature: format!("intra_op_threads={intra}, an inter-op pool of {inter}"),
                reason: format!(
                    "TensorFlow sizes its CPU thread pools once per process, and this process's first \
                     model set intra_op_threads={first_intra} and an inter-op pool of {first_inter}; load every \
                     TensorFlow model of a process with the same thread settings (or start a new process)"
                ),
            }),
        }
    }

    /// The pool sizes sessions of this process use, once a model has loaded.
    pub fn pools(&self) -> Option<(usize, usize)> {
        *self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The library loaded in this process, if any.
pub fn loaded() -> Option<&'static Loaded> {
    LIBRARY.loaded()
}
