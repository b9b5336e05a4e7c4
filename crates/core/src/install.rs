//! What an engine's native libraries are and where they come from: data each engine declares
//! in its [`EngineInfo`](crate::EngineInfo) and `thrum engines install` reads. No I/O here; the
//! installer (pip download, wheel extraction) lives in the `thrum` binary.

/// Files to take from a wheel: members matching `pattern`, written under the install directory
/// with `strip` removed from the front of their path.
#[derive(Debug)]
pub struct Member {
    /// Glob over the member's path in the wheel (`onnxruntime/capi/libonnxruntime.so*`).
    pub pattern: &'static str,
    /// Prefix removed from the path (`onnxruntime/capi/`).
    pub strip: &'static str,
}

/// One wheel and the members taken from it.
#[derive(Debug)]
pub struct Wheel {
    /// The pip requirement, pinned (`onnxruntime==1.32.0`).
    pub requirement: &'static str,
    /// What to extract.
    pub members: &'static [Member],
}

/// One installable flavour of an engine's libraries (`thrum engines install ort`).
#[derive(Debug)]
pub struct Package {
    /// What users type after `thrum engines install` (`ort`, `ort-openvino`).
    pub name: &'static str,
    /// The directory under `$THRUM_HOME/engines/` it goes to.
    pub dir: &'static str,
    /// Version installed, recorded in a stamp file.
    pub version: &'static str,
    /// Its wheels.
    pub wheels: &'static [Wheel],
}

impl Package {
    /// Where this package is (or will be) installed: `$THRUM_HOME/engines/DIR`.
    pub fn home(&self) -> std::path::PathBuf {
        crate::config::engine_home(self.dir)
    }
}
