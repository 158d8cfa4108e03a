//! What each subcommand does, given its parsed arguments.

mod collect;
mod eval;
mod lr_find;
mod report;
mod run;
mod run_one;
mod sample;
mod schedule;
mod schedules;
mod sweep;

use crate::cli::{Cli, Command};
use crate::output::{print, write_out};
use std::io;

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
        Command::LrFind(args) => lr_find::run(&args),
        Command::Sample(args) => sample::run(&args),
        Command::Schedule(args) => schedule::run(&args),
        Command::Schedules(args) => schedules::run(&args),
    };
    // A closed pipe (`runner schedule ... | head`) is the reader's choice, not a failure.
    match result {
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) => Ok(()),
        other => other,
    }
}

/// A finished run's saved weights (`--weights model|best`): the file's name and tensors,
/// or why the run directory has none.
fn saved_weights(
    dir: &std::path::Path,
    weights: crate::cli::Weights,
) -> anyhow::Result<(&'static str, std::collections::HashMap<String, candle_core::Tensor>)> {
    let name = match weights {
        crate::cli::Weights::Model => "model",
        crate::cli::Weights::Best => "best",
    };
    if !dir.join(format!("{name}.safetensors")).is_file() {
        return Err(crate::error::input_error(format!(
            "{} has no {name}.safetensors: {}",
            dir.display(),
            if name == "best" {
                "best weights are kept for runs with early stopping or a monitored schedule"
            } else {
                "the run has not finished (an interrupted run resumes with `runner run`)"
            }
        )));
    }
    Ok((name, crate::store::checkpoints::read_model(dir, name)?))
}

/// The run of `exp` (read from `file`) that `run` names, or its only run.
fn pick_run<'a>(
    file: &std::path::Path,
    exp: &'a crate::plan::Experiment,
    run: Option<&str>,
) -> anyhow::Result<&'a crate::plan::ExperimentConfig> {
    let names = || exp.runs.iter().map(|r| r.info.name.as_str()).collect::<Vec<_>>().join(", ");
    match (run, exp.runs.as_slice()) {
        (None, [only]) => Ok(&only.config),
        (Some(name), runs) => match runs.iter().find(|r| r.info.name == name) {
            Some(r) => Ok(&r.config),
            None => Err(UsageError(format!("{} has no run \"{name}\"; its runs: {}", file.display(), names())).into()),
        },
        (None, runs) => Err(UsageError(format!(
            "{} is a sweep of {} runs; pick one with --run NAME: {}",
            file.display(),
            runs.len(),
            names()
        ))
        .into()),
    }
}
