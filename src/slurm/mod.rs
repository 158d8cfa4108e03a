//! Slurm as a sweep's backend: the sweep is expanded and validated here, then submitted as
//! job arrays, one task per run (one array unless the runs outnumber the cluster's
//! `MaxArraySize`); Slurm places the runs, each task trains its run with `runner run-one`,
//! and the results land in the usual run directories, which must be on a file system the
//! nodes share.
//!
//! Files in the experiment directory: `plan/<run>.toml` (each run's resolved config, what
//! its task trains), `slurm/sweep.sbatch` (the script last submitted), `slurm/jobs.json`
//! (every job array submitted, its offset and its runs), `slurm/logs/<job>_<task>.out`.

mod arrays;
mod scheduler;
mod script;

pub use crate::config::launch::{SlurmOptions, check_mem, check_time};
pub use arrays::{ArrayPlan, DEFAULT_MAX_ARRAY_SIZE, array_spec, shown_spec, split};
pub use scheduler::{NEVER_RUNS, cancel, final_states, max_array_size, pending_reasons, queued, submit};
pub use script::{ScriptSpec, render, shell_quote};

use crate::plan::RunInfo;
use crate::store;
use crate::store::write_json_atomic;
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One submitted job array. The arrays of one submission share `submitted_at`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    /// The runs' indices in runs.json, one array task each.
    pub runs: Vec<usize>,
    /// When it was submitted, in seconds since the Unix epoch.
    pub submitted_at: f64,
    /// Task `T` of this array trains run `offset + T` (0 for records older than offsets).
    #[serde(default)]
    pub offset: usize,
}

impl JobRecord {
    /// `JOB_TASK`, Slurm's name for the task that trains `run`.
    pub fn task_name(&self, run: usize) -> String {
        format!("{}_{}", self.job_id, run - self.offset)
    }

    /// One past its last task id (its runs' largest index less the offset).
    pub fn task_limit(&self) -> usize {
        self.runs.iter().max().map_or(0, |&m| m.saturating_sub(self.offset) + 1)
    }
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

/// Adds `job` to `<dir>/slurm/jobs.json` (rewritten whole: a few bytes a run, once an array).
pub fn record_job(dir: &Path, job: JobRecord) -> Result<()> {
    let mut jobs = read_jobs(dir)?;
    jobs.push(job);
    write_json_atomic(&dir.join("slurm").join("jobs.json"), &jobs)
}

/// The job arrays of the experiment's latest submission as Slurm sees them now.
pub struct JobStatus {
    /// The arrays, in submission order.
    pub jobs: Vec<JobRecord>,
    /// Tasks Slurm still lists, by run index: PENDING, RUNNING, COMPLETING...
    pub queued: BTreeMap<usize, String>,
}

impl JobStatus {
    /// Asks Slurm about `jobs` (one squeue call for all of them).
    pub fn of(jobs: Vec<JobRecord>) -> Result<JobStatus> {
        let queued = queued(&jobs)?;
        Ok(JobStatus { jobs, queued })
    }

    /// Whether every task of every array has ended.
    pub fn ended(&self) -> bool {
        self.queued.is_empty()
    }

    /// How many tasks are in `state` (RUNNING, PENDING).
    pub fn count(&self, state: &str) -> usize {
        self.queued.values().filter(|s| *s == state).count()
    }

    /// The job ids as messages name them: `4242`, `4242, 4243` or `4242 ... 4341 (100 arrays)`.
    pub fn ids(&self) -> String {
        job_ids(&self.jobs)
    }

    /// The array that trains `run` (the latest, should two hold it; runs are ascending).
    pub fn job_of(&self, run: usize) -> Option<&JobRecord> {
        self.jobs.iter().rev().find(|j| j.runs.binary_search(&run).is_ok())
    }
}

/// The ids of `jobs` as messages name them: `4242`, `4242, 4243` or `4242 ... 4341 (100 arrays)`.
pub fn job_ids(jobs: &[JobRecord]) -> String {
    match jobs {
        [] => String::new(),
        [a] => a.job_id.clone(),
        _ if jobs.len() <= 4 => jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>().join(", "),
        [first, .., last] => format!("{} ... {} ({} arrays)", first.job_id, last.job_id, jobs.len()),
    }
}

/// The arrays of the experiment's latest submission (the records sharing the last one's
/// `submitted_at`) and their live tasks; `None` when none was submitted.
pub fn latest_job(dir: &Path) -> Result<Option<JobStatus>> {
    let mut jobs = read_jobs(dir)?;
    let Some(last) = jobs.last().map(|j| j.submitted_at) else { return Ok(None) };
    let first = jobs.iter().rposition(|j| j.submitted_at != last).map_or(0, |i| i + 1);
    let latest = jobs.split_off(first);
    Ok(Some(JobStatus::of(latest)?))
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
    let missing: Vec<(usize, &JobRecord)> = status
        .jobs
        .iter()
        .flat_map(|job| job.runs.iter().map(move |&i| (i, job)))
        .filter(|&(i, _)| runs.get(i).is_some_and(|r| !dir.join(&r.name).join("summary.json").exists()))
        .collect();
    if missing.is_empty() {
        return Ok(settled);
    }
    let states = final_states(&status.jobs);
    for (i, job) in missing {
        let run = &runs[i];
        let task = job.task_name(i);
        let log = dir.join("slurm").join("logs").join(format!("{task}.out"));
        let how = match states.get(&i) {
            Some(state) => format!("Slurm ended its task {task} as {state}"),
            None => format!("Slurm no longer lists its task {task}"),
        };
        if !log.exists() && !dir.join(&run.name).join("metrics.csv").exists() {
            settled.never_started.push(format!("{} ({how} before it started)", run.name));
            continue;
        }
        let error = format!("the run ended without writing its result: {how}; its log: {}", log.display());
        store::write_lost_summary(&dir.join(&run.name), experiment, &run.name, run.seed, &error)?;
        settled.lost.push(run.name.clone());
    }
    Ok(settled)
}
