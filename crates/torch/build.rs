//! Embeds libtorch's library directory as an rpath in this crate's tests, passes it
//! on to dependents (the `thrum` binary does the same), and records libtorch's version.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{lib}");
    println!("cargo:libtorch_lib={lib}");
    // include/torch/headeronly/version.h: `#define TORCH_VERSION_MAJOR 2`, `_MINOR 13`, `_PATCH 0`.
    let header = std::path::Path::new(&lib).join("../include/torch/headeronly/version.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text = std::fs::read_to_string(&header).unwrap_or_default();
    let part = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(&format!("#define TORCH_VERSION_{name} ")).map(|v| v.trim().to_string())
        })
    };
    let version = match (part("MAJOR"), part("MINOR"), part("PATCH")) {
        (Some(major), Some(minor), Some(patch)) => format!("{major}.{minor}.{patch}"),
        _ => "unknown".into(),
    };
    println!("cargo:rustc-env=THRUM_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=THRUM_LIBTORCH_LIB={lib}");
}
