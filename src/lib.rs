//! `runner`: learning-rate-schedule experiments with candle.
//!
//! Modules follow the data's path, each importing only those before it (checked by
//! `tests/architecture.rs`): [`config`] reads TOML into checked values; [`schedule`],
//! [`data`], [`model`] and [`optim`] read their own options through [`params`] and do the
//! work; [`train`] trains any [`model::Network`]; [`plan`] puts an experiment file together
//! and [`store`] writes what a run leaves; [`sweep`] and [`slurm`] run runs; [`results`]
//! reads an experiment back and [`report`] shows it; [`launch`] is the use cases behind
//! `runner run` and `runner sweep`, and [`commands`] what each subcommand of the [`cli`]
//! does. [`kernels`] (runner's CPU kernels) and [`device`] are leaves.

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
