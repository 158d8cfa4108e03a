//! The `runner` binary: parse arguments, run the command, map errors to exit codes
//! (2: config or usage error, 1: failure while running, 130: interrupted, 0: success).

use clap::Parser;
use runner::cli::Cli;
use runner::commands;
use runner::config::ConfigError;
use runner::error::{InputError, Interrupted};
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    runner::kernels::candle_threads::limit_spinning();
    runner::kernels::heap::keep_freed_memory();
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed stderr drops the message, never the exit code.
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            if err.downcast_ref::<Interrupted>().is_some() {
                return ExitCode::from(130);
            }
            let usage = err.downcast_ref::<ConfigError>().is_some() || err.downcast_ref::<InputError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
