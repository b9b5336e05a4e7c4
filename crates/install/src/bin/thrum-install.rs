//! `thrum-install ENGINE…`: what `thrum engines install ENGINE…` does, from a binary that
//! compiles no engine. The test command runs it first: libtorch must be installed before
//! `thrum` (which links it with the `torch` feature) is built.

use std::process::ExitCode;

fn main() -> ExitCode {
    let engines: Vec<String> = std::env::args().skip(1).collect();
    if engines.is_empty() || engines.iter().any(|e| e == "-h" || e == "--help") {
        eprintln!(
            "usage: thrum-install ENGINE…  (the packages: {})",
            thrum_install::packages().iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
        );
        return ExitCode::from(2);
    }
    match thrum_install::install_all(&engines, &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.kind().is_caller_error() { 2 } else { 1 })
        }
    }
}
