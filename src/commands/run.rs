//! `runner run FILE` / `runner sweep FILE`: expand the experiment, validate every run, load
//! each data set once, and train the runs (in parallel for a sweep) into
//! `<out>/<name>/<run>/`, with `runs.json` and `summary.csv` beside them.

use crate::cli::RunArgs;
use crate::data;
use crate::error::input_error;
use crate::launch::{Launcher, Local, Request};
use crate::plan::{self, Experiment};
use crate::sweep::{self, Shard};
use anyhow::Result;

pub fn run(args: &RunArgs) -> Result<()> {
    let (exp, cache) = load(args)?;
    if exp.backend == Some(sweep::Backend::Slurm) && !args.quiet {
        say!(
            "note: the file's [sweep] backend is \"slurm\"; `runner run` trains here. `runner sweep {}` submits it to Slurm",
            args.file.display()
        );
    }
    local(args, None).launch(request(args, exp, cache))
}

/// Reads and expands the experiment file, loading each data set it needs once; applies
/// `--threads-per-run` (or `[sweep] threads_per_run`).
pub fn load(args: &RunArgs) -> Result<(Experiment, data::Cache)> {
    let mut cache = data::Cache::default();
    let overrides = args.overrides.overrides().map_err(input_error)?;
    let mut exp = plan::load_experiment_with(&args.file, &overrides, &mut |spec| Ok(cache.get(spec)?.train.len))?;
    if let Some(m) = args.threads_per_run.or(exp.threads_per_run) {
        for r in &mut exp.runs {
            r.config.train.threads = m;
        }
    }
    if let Some(d) = args.device {
        for r in &mut exp.runs {
            r.config.train.device = d;
        }
    }
    Ok((exp, cache))
}

/// The local launcher the flags describe (`shard`: `runner sweep --shard`).
pub fn local(args: &RunArgs, shard: Option<Shard>) -> Local {
    Local {
        jobs: args.jobs,
        gpus: args.gpus.clone(),
        runs_per_gpu: args.runs_per_gpu,
        shard,
        resume: args.resume,
        no_share: args.no_share,
    }
}

/// What the flags ask of a launcher for `exp`.
pub fn request<'a>(args: &'a RunArgs, exp: Experiment, cache: data::Cache) -> Request<'a> {
    Request {
        exp,
        cache,
        out: &args.out,
        filter: args.filter.as_deref(),
        force: args.force,
        quiet: args.quiet,
        dry_run: args.dry_run,
    }
}
