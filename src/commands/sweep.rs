//! `runner sweep FILE`: a sweep run here (as `runner run`), a shard of it (`--shard I/N`),
//! or submitted to Slurm as job arrays (`--backend slurm`, optionally `--wait`): one,
//! unless the runs outnumber the cluster's MaxArraySize.

use super::run::{load, local, request};
use crate::cli::SweepArgs;
use crate::data;
use crate::error::input_error;
use crate::launch::{Launcher, Slurm, plan_only};
use crate::plan::Experiment;
use crate::sweep::Backend;
use anyhow::Result;

pub fn run(args: &SweepArgs) -> Result<()> {
    let (exp, cache) = load(&args.run)?;
    if args.plan {
        return plan_only(&exp, cache, &args.run.out);
    }
    match args.backend.or(exp.backend).unwrap_or(Backend::Local) {
        Backend::Local => {
            if args.slurm.any() {
                return Err(input_error(
                    "the Slurm options (--wait, --partition, --time, ...) need --backend slurm (or `backend = \"slurm\"` in [sweep])",
                ));
            }
            local(&args.run, args.shard).launch(request(&args.run, exp, cache))
        }
        Backend::Slurm => submit(args, exp, cache),
    }
}

/// Refuses the flags that mean nothing on Slurm, then submits (see [`Slurm`]).
fn submit(args: &SweepArgs, exp: Experiment, cache: data::Cache) -> Result<()> {
    let run_args = &args.run;
    if args.shard.is_some() {
        return Err(input_error(
            "--shard splits a sweep by hand; with --backend slurm, Slurm places the runs (bound them with --max-parallel)",
        ));
    }
    if run_args.jobs.is_some() {
        return Err(input_error("--jobs is for local sweeps; with --backend slurm, use --max-parallel"));
    }
    if run_args.gpus.is_some() || run_args.runs_per_gpu.is_some() {
        return Err(input_error(
            "--gpus and --runs-per-gpu place runs on this machine's GPUs; with --backend slurm, each task gets \
             its own from Slurm (--gpus-per-task)",
        ));
    }
    let slurm = Slurm {
        options: args.slurm.options(),
        wait: args.slurm.wait,
        poll: args.slurm.poll,
        retry_for: args.slurm.retry_for,
        no_share: run_args.no_share,
    };
    slurm.launch(request(run_args, exp, cache))
}
