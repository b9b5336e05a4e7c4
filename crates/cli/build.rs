//! With the `torch` feature, embeds libtorch's library directory (passed on by thrum-torch) as
//! an rpath of the `thrum` binary and of the tests, so they run without LD_LIBRARY_PATH.

fn main() {
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    if let Ok(lib) = std::env::var("DEP_THRUM_TORCH_LIBTORCH_LIB") {
        for target in ["bins", "tests"] {
            println!("cargo:rustc-link-arg-{target}=-Wl,-rpath,{lib}");
        }
    }
}
