//! `runner`: learning-rate-schedule experiments with candle.
//!
//! Modules follow the data's path: [`config`] reads a TOML experiment into plain data,
//! [`schedule`] computes learning rates, [`chart`] draws them, and [`commands`] are what
//! each subcommand of the [`cli`] does.

/// `eprintln!` that never panics: a closed stderr (`runner run ... 2>&1 | head -1`) drops
/// the message and leaves the command's work and exit code as they are.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod chart;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod interrupt;
pub mod kernels;
pub mod launch;
pub mod lr_find;
pub mod model;
pub mod optim;
pub mod output;
pub mod params;
pub mod plan;
pub mod progress;
pub mod report;
pub mod results;
pub mod schedule;
pub mod slurm;
pub mod store;
pub mod suggest;
pub mod sweep;
pub mod train;

/// The seed used when a config names none.
pub const DEFAULT_SEED: u64 = 42;
