//! `runner run-one DIR --index I`: trains run I of a sweep planned into DIR (by
//! `runner sweep --backend slurm`), as one Slurm array task does, into the usual run
//! directory. A run that finished earlier with the same config is kept.

use crate::cli::RunOneArgs;
use crate::data;
use crate::error::{Interrupted, input_error};
use crate::plan;
use crate::plan::PlannedRun;
use crate::progress::Board;
use crate::results;
use crate::slurm;
use crate::store;
use crate::sweep::{self, Job, Options};
use anyhow::{Result, bail};

pub fn run(args: &RunOneArgs) -> Result<()> {
    let dir = &args.dir;
    let plan = results::read_plan(dir)?;
    let Some(info) = plan.runs.get(args.index).cloned() else {
        return Err(input_error(format!(
            "--index {} is out of range: {} plans {} runs (0 to {})",
            args.index,
            dir.join("runs.json").display(),
            plan.runs.len(),
            plan.runs.len().saturating_sub(1)
        )));
    };
    let path = slurm::plan_config(dir, &info.name);
    if !path.exists() {
        return Err(input_error(format!(
            "{} is missing: run-one trains the runs that `runner sweep FILE --backend slurm` planned into {}",
            path.display(),
            dir.display()
        )));
    }
    let overrides = args.overrides.overrides().map_err(input_error)?;
    let mut config = plan::load_with(&path, &overrides)?;
    let threads = args.threads.unwrap_or(config.train.threads);
    config.train.threads = threads;
    // On a Slurm node with `gpus_per_task`, `cuda` is the GPU Slurm gave the task (it sets
    // CUDA_VISIBLE_DEVICES).
    if let Some(d) = args.device {
        config.train.device = d;
    }
    let task = match (std::env::var("SLURM_ARRAY_JOB_ID"), std::env::var("SLURM_ARRAY_TASK_ID")) {
        (Ok(job), Ok(task)) => format!(", Slurm task {job}_{task}"),
        _ => String::new(),
    };
    if !args.quiet {
        say!(
            "run-one: {} (run {} of {}) on {}, {threads} thread{}{task}",
            info.name,
            args.index,
            plan.runs.len(),
            store::host_name(),
            if threads == 1 { "" } else { "s" }
        );
    }
    let mut cache = data::Cache::default();
    let data = cache.get(&config.dataset)?;
    // What the config alone decides is refused before the run starts (exit 2).
    crate::train::check_threads(config.train.threads).map_err(|why| input_error(format!("{}: {why}", info.name)))?;
    crate::train::check_devices(&[config.train.device]).map_err(|why| input_error(format!("{}: {why}", info.name)))?;
    let prepared = crate::train::Prepared::new(config.run_spec(), data)
        .map_err(|why| input_error(format!("{}: {why}", info.name)))?;
    // candle's matrix products take their thread count from here (see `runner run`).
    // SAFETY: no other thread of this process reads the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let stop = crate::interrupt::install();
    let run = PlannedRun { info, config };
    let board = Board::new(1, args.quiet);
    let job = Job { run: &run, prepared, columns: &plan.columns, extend: None };
    // Its part in the sweep's shared prefixes: the fork it starts from (written by the
    // task it waits for) and those it writes for others.
    let share = match sweep::share::read_part(dir, &job)? {
        Some(part) => sweep::Share::Given(part),
        None => sweep::Share::Off,
    };
    let tally = sweep::execute(
        dir,
        &[job],
        Options { jobs: 1, threads: threads as usize, force: args.force, gpus: Vec::new(), share },
        &board,
        stop,
        &|| {},
    )?;
    board.close();
    if !tally.interrupted.is_empty() || !tally.not_started.is_empty() {
        return Err(
            Interrupted(format!(
                "{} was interrupted and saved a checkpoint; its next attempt (a requeue, or submitting the sweep again) continues from it",
                run.info.name
            ))
            .into()
        );
    }
    if let Some((_, why)) = tally.unrecorded.first() {
        bail!("{}: {why}", run.info.name);
    }
    if !tally.failed.is_empty() {
        bail!("{} failed ({} says why)", run.info.name, dir.join(&run.info.name).join("summary.json").display());
    }
    if !tally.skipped.is_empty() && !args.quiet {
        say!("run-one: {} finished earlier with this config; kept", run.info.name);
    }
    Ok(())
}
