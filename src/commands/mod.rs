//! What each subcommand does, given its parsed arguments.

mod collect;
mod eval;
mod report;
mod run;
mod run_one;
mod schedule;
mod schedules;
mod sweep;

use crate::cli::{Cli, Command};
use std::io::{self, Write};

pub use crate::error::InputError as UsageError;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::RunOne(args) => run_one::run(&args),
        Command::Collect(args) => collect::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Schedule(args) => schedule::run(&args),
        Command::Schedules(args) => schedules::run(&args),
    };
    // A closed pipe (`runner schedule ... | head`) is the reader's choice, not a failure.
    match result {
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) => Ok(()),
        other => other,
    }
}

/// Writes `text` to stdout.
fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}
