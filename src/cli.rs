//! The command line: only the clap definition lives here.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Learning-rate-schedule experiments: declare a model, data and schedule in TOML; train,
/// sweep and compare.
#[derive(Debug, Parser)]
#[command(name = "runner", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the experiment FILE describes (one run, or every run of its [sweep]) and write
    /// experiments/<name>/<run>/.
    Run(RunArgs),
    /// The same as `run`, for sweep files.
    Sweep(RunArgs),
    /// Rank the runs of an experiment (or one run) and draw its curves.
    Report(ReportArgs),
    /// Print a config's learning rate for every step as CSV (`step,lr`), or draw it.
    Schedule(ScheduleArgs),
    /// List every schedule kind with its parameters and defaults.
    Schedules(SchedulesArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// The experiment file (TOML with a [schedule] table).
    pub file: PathBuf,
    /// Number of steps to show (rows 0..N-1); default: the run's total steps.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub steps: Option<u64>,
    /// Optimizer steps per epoch, for `epoch` in expression schedules; default: the run's.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub steps_per_epoch: Option<u64>,
    /// Seed for noisy schedules; default: the run's [train] seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Which run of a sweep file to show (`runner run FILE --dry-run` lists them).
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,
    /// For validation-driven schedules: a file with one monitored value per line; prints
    /// `epoch,metric,lr` with the rate in effect after each evaluation.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Draw the curve in the terminal instead of printing CSV.
    #[arg(long)]
    pub plot: bool,
    /// Also write a chart of the curve to FILE (.png or .svg).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SchedulesArgs {
    /// Show only this kind.
    pub kind: Option<String>,
    /// Print the list as Markdown (the text of docs/schedules.md).
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Root directory for results.
    #[arg(long, default_value = "experiments")]
    pub out: PathBuf,
    /// Rerun every run, replacing earlier results.
    #[arg(long)]
    pub force: bool,
    /// Keep runs that finished earlier with the same config and run the rest (what a
    /// sweep does anyway; a single run otherwise refuses to touch earlier results).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Runs at once (default: as many as fit the cores at --threads-per-run each).
    #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: Option<u64>,
    /// CPU threads of each run (default: the config's [train] threads, 1 unless set).
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads_per_run: Option<u64>,
    /// List the runs and what would happen to each, and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Only the runs whose name matches: a glob (`cosine*`, `*seed1`) or a substring.
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// An experiment directory (experiments/NAME) or one run's directory.
    pub dir: PathBuf,
    /// How to print the ranking.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Do not write the PNG charts.
    #[arg(long)]
    pub no_plots: bool,
}

/// Output formats of `runner report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Markdown,
    Csv,
    Json,
}
