//! Slurm as a sweep's backend: the sweep is expanded and validated here, then submitted as
//! one job array (one task per run, the task id being the run's index in `runs.json`);
//! Slurm places the runs, each task trains its run with `runner run-one`, and the results
//! land in the usual run directories, which must be on a file system the nodes share.
//!
//! Files in the experiment directory: `plan/<run>.toml` (each run's resolved config, what
//! its task trains), `slurm/sweep.sbatch` (the last script submitted), `slurm/jobs.json`
//! (every job submitted and its runs), `slurm/logs/<job>_<task>.out`.

mod options;
mod scheduler;
mod script;

pub use options::{SlurmOptions, check_mem, check_time};
pub use scheduler::{NEVER_RUNS, final_states, pending_reasons, queued, submit};
pub use script::{ScriptSpec, array_spec, render, shell_quote, shown_spec};

use crate::config::RunInfo;
use crate::results::{self, write_json_atomic};
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One submitted job array.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    /// The runs' indices in runs.json, one array task each.
    pub runs: Vec<usize>,
    /// When it was submitted, in seconds since the Unix epoch.
    pub submitted_at: f64,
}

/// Where the plan's configs are: `<dir>/plan/<run>.toml`.
pub fn plan_config(dir: &Path, run: &str) -> PathBuf {
    dir.join("plan").join(format!("{run}.toml"))
}

/// `<dir>/slurm/jobs.json`: every job submitted for this experiment, oldest first.
pub fn read_jobs(dir: &Path) -> Result<Vec<JobRecord>> {
    let path = dir.join("slurm").join("jobs.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a jobs.json this runner wrote", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Adds `job` to `<dir>/slurm/jobs.json`.
pub fn record_job(dir: &Path, job: JobRecord) -> Result<()> {
    let mut jobs = read_jobs(dir)?;
    jobs.push(job);
    write_json_atomic(&dir.join("slurm").join("jobs.json"), &jobs)
}

/// The runs of the experiment's latest job as Slurm sees them now.
pub struct JobStatus {
    pub job: JobRecord,
    /// Tasks Slurm still lists, by run index: PENDING, RUNNING, COMPLETING...
    pub queued: BTreeMap<usize, String>,
}

impl JobStatus {
    /// Whether every task of the array has ended.
    pub fn ended(&self) -> bool {
        self.queued.is_empty()
    }

    /// How many tasks are in `state` (RUNNING, PENDING).
    pub fn count(&self, state: &str) -> usize {
        self.queued.values().filter(|s| *s == state).count()
    }
}

/// The latest job of the experiment at `dir` and its live tasks; `None` when none was submitted.
pub fn latest_job(dir: &Path) -> Result<Option<JobStatus>> {
    let Some(job) = read_jobs(dir)?.pop() else { return Ok(None) };
    let queued = queued(&job.job_id)?;
    Ok(Some(JobStatus { job, queued }))
}

/// What [`settle`] found of an ended job's runs that left no result.
#[derive(Debug, Default)]
pub struct Settled {
    /// Runs whose task started and ended without a result (now recorded as failed).
    pub lost: Vec<String>,
    /// Runs whose task never started (cancelled while pending), each with how Slurm ended
    /// it: left as they were, so they show as pending and a resubmission trains them.
    pub never_started: Vec<String>,
}

/// After `status`'s job has ended: each of its runs that left no summary although its
/// task started (a lost node, SIGKILL) gets a failed summary saying how Slurm ended the
/// task and where its log is, so the summary shows it and a resubmission reruns it. A
/// task that never started (no log, no metrics: cancelled while pending) is no failure:
/// its run stays pending.
pub fn settle(dir: &Path, experiment: &str, runs: &[RunInfo], status: &JobStatus) -> Result<Settled> {
    let mut settled = Settled::default();
    if !status.ended() {
        return Ok(settled);
    }
    let missing: Vec<usize> = status
        .job
        .runs
        .iter()
        .copied()
        .filter(|&i| runs.get(i).is_some_and(|r| !dir.join(&r.name).join("summary.json").exists()))
        .collect();
    if missing.is_empty() {
        return Ok(settled);
    }
    let states = final_states(&status.job.job_id);
    for i in missing {
        let run = &runs[i];
        let log = dir.join("slurm").join("logs").join(format!("{}_{i}.out", status.job.job_id));
        let how = match states.get(&i) {
            Some(state) => format!("Slurm ended its task {}_{i} as {state}", status.job.job_id),
            None => format!("Slurm no longer lists its task {}_{i}", status.job.job_id),
        };
        if !log.exists() && !dir.join(&run.name).join("metrics.csv").exists() {
            settled.never_started.push(format!("{} ({how} before it started)", run.name));
            continue;
        }
        let error = format!("the run ended without writing its result: {how}; its log: {}", log.display());
        results::write_lost_summary(&dir.join(&run.name), experiment, &run.name, run.seed, &error)?;
        settled.lost.push(run.name.clone());
    }
    Ok(settled)
}
