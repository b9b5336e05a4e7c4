//! The `thrum` command line. Each concern of the binary has its own module: argument parsing
//! and the commands in `cli/` (one file per command), tensor files in `io`, the engine
//! installer in `install`, the allocator set-up in `allocator`.

mod allocator;
mod cli;
mod io;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    allocator::cap_arenas();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                // `thrum … | head` closed the pipe: not an error of ours.
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", cli::describe(&err));
            if err.downcast_ref::<thrum_tune::TuneError>().is_some_and(|e| {
                matches!(
                    e,
                    thrum_tune::TuneError::Interrupted { .. }
                        | thrum_tune::TuneError::InterruptedEarly { .. }
                )
            }) {
                // Ctrl-C: the shell's convention, 128 + SIGINT.
                return ExitCode::from(130);
            }
            ExitCode::from(cli::exit_code(&err))
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
