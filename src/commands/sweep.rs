//! `runner sweep FILE`: a sweep run here (as `runner run`), a shard of it (`--shard I/N`),
//! or submitted to Slurm as one job array (`--backend slurm`, optionally `--wait`).

use super::run::{check_schedules, load, plan, run_local, select};
use crate::cli::SweepArgs;
use crate::config::{Experiment, RunInfo};
use crate::data;
use crate::error::{Interrupted, input_error};
use crate::results::{self, ExperimentLock};
use crate::slurm::{self, JobRecord, JobStatus, ScriptSpec};
use crate::sweep::Backend;
use anyhow::{Context as _, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub fn run(args: &SweepArgs) -> Result<()> {
    let (exp, cache) = load(&args.run)?;
    if args.plan {
        return plan_only(&args.run, &exp, cache);
    }
    match args.backend.or(exp.backend).unwrap_or(Backend::Local) {
        Backend::Local => {
            if args.slurm.any() {
                return Err(input_error(
                    "the Slurm options (--wait, --partition, --time, ...) need --backend slurm (or `backend = \"slurm\"` in [sweep])",
                ));
            }
            run_local(&args.run, &exp, cache, args.shard)
        }
        Backend::Slurm => submit(args, exp, cache),
    }
}

/// Plans the sweep into its directory and submits the runs that have not finished as one
/// Slurm job array; with `--wait`, follows it to the end and writes summary.csv.
fn submit(args: &SweepArgs, mut exp: Experiment, mut cache: data::Cache) -> Result<()> {
    let run_args = &args.run;
    if args.shard.is_some() {
        return Err(input_error(
            "--shard splits a sweep by hand; with --backend slurm, Slurm places the runs (bound them with --max-parallel)",
        ));
    }
    if run_args.jobs.is_some() {
        return Err(input_error("--jobs is for local sweeps; with --backend slurm, use --max-parallel"));
    }
    let options = args.slurm.options().or(exp.slurm.clone());
    let threads = exp.runs.iter().map(|r| r.config.train.threads).max().unwrap_or(1);
    let cpus = options.cpus_per_task.unwrap_or(threads);
    for r in &mut exp.runs {
        r.config.train.threads = cpus;
    }
    let selected = select(&exp, run_args.filter.as_deref(), None)?;
    let chosen: Vec<&crate::config::PlannedRun> = selected.iter().map(|&i| &exp.runs[i]).collect();
    check_schedules(&chosen, &mut cache)?;
    let dir = std::path::absolute(run_args.out.join(&exp.name)).context("cannot resolve the output directory")?;
    let finished = |i: usize| {
        let r = &exp.runs[i];
        !run_args.force && results::is_finished(&dir.join(&r.info.name), &r.config.to_toml())
    };
    let todo: Vec<usize> = selected.iter().copied().filter(|&i| !finished(i)).collect();
    let workdir = std::env::current_dir().context("cannot read the current directory")?;
    let runner = std::env::current_exe().context("cannot find this runner's own path")?;
    let script = slurm::render(&ScriptSpec {
        experiment: &exp.name,
        dir: &dir,
        workdir: &workdir,
        runner: &runner,
        indices: &todo,
        cpus,
        force: run_args.force,
        options: &options,
    });
    if run_args.dry_run {
        let finished = selected.len() - todo.len();
        let mut text = format!(
            "{}: {} of {} runs to submit as one Slurm job array{}, {cpus} CPU{} each, into {}\n",
            exp.name,
            todo.len(),
            selected.len(),
            match finished {
                0 => String::new(),
                1 => " (1 finished earlier)".to_string(),
                k => format!(" ({k} finished earlier)"),
            },
            if cpus == 1 { "" } else { "s" },
            dir.display()
        );
        for &i in &todo {
            text.push_str(&format!("  task {i}: {}\n", exp.runs[i].info.name));
        }
        text.push_str(&format!("\n{script}\n"));
        super::print(&text)?;
        return Ok(());
    }
    // Every data set must load here before anything is submitted.
    for &i in &todo {
        cache.get(&exp.runs[i].config.dataset)?;
    }
    // What this submission creates, removed again if Slurm refuses it (or there is no
    // sbatch): a refused submission records nothing.
    let script_path = dir.join("slurm").join("sweep.sbatch");
    let mut created: Vec<PathBuf> = [
        dir.clone(),
        dir.join("plan"),
        dir.join("slurm"),
        dir.join("slurm").join("logs"),
        dir.join("runs.json"),
        script_path.clone(),
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .collect();
    if created.first() != Some(&dir) {
        // plan/ holds each run's config: those of an earlier submission stay.
        created.retain(|p| !p.starts_with(dir.join("plan")));
    }
    check_writable(&dir)?;
    std::fs::create_dir_all(dir.join("slurm").join("logs")).context("cannot create the Slurm log directory")?;
    let _lock = ExperimentLock::acquire(&dir)?;
    refuse_while_queued(&dir, "submit again")?;
    write_plan_files(&dir, &exp)?;
    if todo.is_empty() {
        results::write_summary_csv(&results::read_experiment(&dir)?)?;
        eprintln!(
            "{}: all {} runs finished earlier with this config; nothing to submit (--force reruns them). Summary in {}",
            exp.name,
            selected.len(),
            dir.join("summary.csv").display()
        );
        return Ok(());
    }
    results::write_atomic(&script_path, script.as_bytes())?;
    let job_id = match slurm::submit(&script_path) {
        Ok(id) => id,
        Err(e) => {
            drop(_lock);
            remove_created(&dir, &created);
            return Err(e);
        }
    };
    let job = JobRecord { job_id: job_id.clone(), runs: todo.clone(), submitted_at: results::unix_now() };
    slurm::record_job(&dir, job.clone())?;
    eprintln!(
        "{}: submitted Slurm job {job_id}: {} run{} as array tasks {} ({cpus} CPU{} each{}); script {}, logs in {}",
        exp.name,
        todo.len(),
        if todo.len() == 1 { "" } else { "s" },
        slurm::shown_spec(&slurm::array_spec(&todo, options.max_parallel)),
        if cpus == 1 { "" } else { "s" },
        if selected.len() > todo.len() {
            format!("; {} finished earlier, kept", selected.len() - todo.len())
        } else {
            String::new()
        },
        script_path.display(),
        dir.join("slurm").join("logs").display()
    );
    if !args.slurm.wait {
        eprintln!(
            "follow it with `squeue -j {job_id}`; collect the results (also while it runs) with `runner collect {}`",
            dir.display()
        );
        return Ok(());
    }
    let stop = crate::interrupt::install();
    wait(&dir, &exp, &job, (args.slurm.poll, args.slurm.retry_for), run_args.quiet, stop)
}

/// Removes what a refused submission created: the whole experiment directory when it was
/// new, else the files and directories that did not exist before it.
fn remove_created(dir: &Path, created: &[PathBuf]) {
    if created.first().is_some_and(|p| p == dir) {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    for path in created.iter().rev() {
        let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    }
}

/// Refuses while the experiment's latest Slurm job still has tasks queued or running:
/// they train what plan/ says, which must not change under them.
fn refuse_while_queued(dir: &Path, then: &str) -> Result<()> {
    if let Some(status) = slurm::latest_job(dir)?
        && !status.ended()
    {
        return Err(input_error(format!(
            "Slurm job {} of this experiment still has {} task{} queued or running, training the plan in {}; wait for it \
             (`runner collect {}` shows where it is) or cancel it (`scancel {}`), then {then}",
            status.job.job_id,
            status.queued.len(),
            if status.queued.len() == 1 { "" } else { "s" },
            dir.join("plan").display(),
            dir.display(),
            status.job.job_id
        )));
    }
    Ok(())
}

/// runs.json and every run's resolved config in plan/, which `runner run-one` trains.
fn write_plan_files(dir: &Path, exp: &Experiment) -> Result<()> {
    results::write_plan(dir, &plan(exp))?;
    for r in &exp.runs {
        results::write_atomic(&slurm::plan_config(dir, &r.info.name), r.config.to_toml().as_bytes())?;
    }
    Ok(())
}

/// `--plan`: validates every run and writes the plan, for an engine that runs
/// `runner run-one DIR --index I` once per index.
fn plan_only(args: &crate::cli::RunArgs, exp: &Experiment, mut cache: data::Cache) -> Result<()> {
    check_schedules(&exp.runs.iter().collect::<Vec<_>>(), &mut cache)?;
    let dir = std::path::absolute(args.out.join(&exp.name)).context("cannot resolve the output directory")?;
    check_writable(&dir)?;
    let _lock = ExperimentLock::acquire(&dir)?;
    refuse_while_queued(&dir, "plan again")?;
    write_plan_files(&dir, exp)?;
    eprintln!(
        "{}: {} runs planned into {}; train each with `runner run-one {} --index I` (I from 0 to {}), then `runner collect {}`",
        exp.name,
        exp.runs.len(),
        dir.display(),
        dir.display(),
        exp.runs.len() - 1,
        dir.display()
    );
    Ok(())
}

/// Refuses an output directory this process cannot write, before anything is submitted.
fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".runner-write-test.{}", std::process::id()));
    let result = std::fs::create_dir_all(dir.join("plan"))
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe));
    result.map_err(|e| {
        input_error(format!(
            "cannot write to {}: {e}; --out must name a writable directory on a file system every node of the cluster sees",
            dir.display()
        ))
    })
}

/// Follows `job` until Slurm lists none of its tasks, printing a line whenever the counts
/// change; then settles runs that left no result and writes summary.csv.
fn wait(
    dir: &Path,
    exp: &Experiment,
    job: &JobRecord,
    (poll, retry_for): (f64, f64),
    quiet: bool,
    stop: &AtomicBool,
) -> Result<()> {
    let infos: Vec<RunInfo> = exp.runs.iter().map(|r| r.info.clone()).collect();
    let started = std::time::Instant::now();
    let mut last_line = String::new();
    // Since when, and how many times, Slurm's controller has not answered.
    let mut unanswered: Option<(std::time::Instant, u32)> = None;
    let stopped = || {
        Interrupted(format!(
            "stopped waiting; Slurm job {} goes on. Collect its results later with `runner collect {}`",
            job.job_id,
            dir.display()
        ))
    };
    let status = loop {
        let queued = match slurm::queued(&job.job_id) {
            Ok(queued) => {
                if unanswered.take().is_some() && !quiet {
                    eprintln!("[{:>5.0}s] Slurm answers again", started.elapsed().as_secs_f64());
                }
                queued
            }
            Err(e) => {
                let (since, tries) = unanswered.get_or_insert_with(|| (std::time::Instant::now(), 0));
                if *tries == 0 && !quiet {
                    eprintln!(
                        "[{:>5.0}s] Slurm's controller does not answer ({}); asking again for up to {retry_for:.0} s",
                        started.elapsed().as_secs_f64(),
                        e.to_string().trim()
                    );
                }
                if since.elapsed().as_secs_f64() >= retry_for {
                    bail!(
                        "stopped waiting: Slurm's controller has not answered for {:.0} s (last: {}); job {} goes on. \
                         Collect its results later with `runner collect {}`",
                        since.elapsed().as_secs_f64(),
                        e.to_string().trim(),
                        job.job_id,
                        dir.display()
                    );
                }
                // 1, 2, 4, ... 30 s, never past the time left.
                let backoff = (2f64.powi((*tries).min(5) as i32)).min(30.0);
                let left = (retry_for - since.elapsed().as_secs_f64()).max(0.0);
                *tries += 1;
                let until = std::time::Instant::now() + Duration::from_secs_f64(backoff.min(left));
                while std::time::Instant::now() < until {
                    if stop.load(Ordering::SeqCst) {
                        return Err(stopped().into());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
        };
        let status = JobStatus { job: job.clone(), queued };
        let counts = count(dir, &infos, &job.runs, Some(job.submitted_at));
        let reasons =
            if status.count("PENDING") > 0 { slurm::pending_reasons(&job.job_id) } else { Default::default() };
        if let Some((reason, what)) = slurm::NEVER_RUNS.iter().find(|(never, _)| reasons.values().any(|r| r == never)) {
            let tasks: Vec<String> =
                reasons.iter().filter(|(_, r)| *r == reason).map(|(i, _)| format!("{}_{i}", job.job_id)).collect();
            bail!(
                "Slurm says {} of job {} can never start: pending with reason {reason} ({what}). The job stays \
                 queued: cancel it (`scancel {}`) and submit again with what the partition allows \
                 (--cpus-per-task, --mem, --time, --partition; `sinfo -o '%P %c %m %l'` lists them)",
                if tasks.len() == 1 { format!("task {}", tasks[0]) } else { format!("tasks {}", tasks.join(", ")) },
                job.job_id,
                job.job_id
            );
        }
        let mut why: Vec<(String, usize)> = Vec::new();
        for r in reasons.values().filter(|r| !r.is_empty() && *r != "None") {
            match why.iter_mut().find(|(w, _)| w == r) {
                Some((_, n)) => *n += 1,
                None => why.push((r.clone(), 1)),
            }
        }
        // Tasks Slurm no longer lists whose run wrote no result since the submission: killed
        // (a lost node, SIGKILL) or cancelled; settled as such when the job has ended.
        let gone = job
            .runs
            .iter()
            .filter(|&&i| {
                !status.queued.contains_key(&i)
                    && infos
                        .get(i)
                        .and_then(|r| results::read_summary(&dir.join(&r.name)))
                        .is_none_or(|s| s.started_at.unwrap_or(0.0) < job.submitted_at - 5.0)
            })
            .count();
        let line = format!(
            "job {}: {}/{} finished ({}), {} running, {} pending{}{}",
            job.job_id,
            counts.values().sum::<usize>(),
            job.runs.len(),
            describe(&counts),
            status.count("RUNNING") + status.count("COMPLETING"),
            status.count("PENDING"),
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.iter().map(|(w, n)| format!("{n} {w}")).collect::<Vec<_>>().join(", "))
            },
            if gone == 0 { String::new() } else { format!(", {gone} ended without a result") }
        );
        if line != last_line && !quiet {
            eprintln!("[{:>5.0}s] {line}", started.elapsed().as_secs_f64());
        }
        last_line = line;
        if status.ended() {
            break status;
        }
        let until = std::time::Instant::now() + Duration::from_secs_f64(poll.max(0.1));
        while std::time::Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return Err(stopped().into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let settled = slurm::settle(dir, &exp.name, &infos, &status)?;
    results::write_summary_csv(&results::read_experiment(dir)?)?;
    let counts = count(dir, &infos, &job.runs, None);
    eprintln!(
        "{}: Slurm job {} ended: {} in {:.0}s; summary in {}; see `runner report {}`",
        exp.name,
        job.job_id,
        describe(&counts),
        started.elapsed().as_secs_f64(),
        dir.join("summary.csv").display(),
        dir.display()
    );
    let unfinished: Vec<&str> = job
        .runs
        .iter()
        .filter(|&&i| results::read_summary(&dir.join(&infos[i].name)).is_none_or(|s| !s.outcome.status.is_final()))
        .map(|&i| infos[i].name.as_str())
        .collect();
    if !unfinished.is_empty() {
        bail!(
            "{} of {} runs did not finish: {}{} (each run's summary.json says why; submit again to rerun them)",
            unfinished.len(),
            job.runs.len(),
            unfinished.join(", "),
            [
                (!settled.lost.is_empty()).then(|| format!("; {} ended without a result", settled.lost.len())),
                (!settled.never_started.is_empty())
                    .then(|| format!("; never started: {}", settled.never_started.join(", "))),
            ]
            .into_iter()
            .flatten()
            .collect::<String>()
        );
    }
    Ok(())
}

/// How many of `runs` are in each finished state, from their summaries; with `since`,
/// only runs started since then (a failed run's summary from an earlier job is not this
/// job's result; a few seconds allow for the nodes' clocks).
fn count(dir: &Path, infos: &[RunInfo], runs: &[usize], since: Option<f64>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for &i in runs {
        let summary = infos.get(i).and_then(|r| results::read_summary(&dir.join(&r.name)));
        if let Some(s) = summary.filter(|s| since.is_none_or(|t| s.started_at.unwrap_or(0.0) >= t - 5.0)) {
            *counts.entry(s.outcome.status.name().to_string()).or_default() += 1;
        }
    }
    counts
}

/// `3 completed, 1 failed` (`none yet` when empty).
fn describe(counts: &BTreeMap<String, usize>) -> String {
    let order = ["completed", "diverged", "failed", "interrupted"];
    let parts: Vec<String> =
        order.iter().filter_map(|s| counts.get(*s).filter(|n| **n > 0).map(|n| format!("{n} {s}"))).collect();
    if parts.is_empty() { "none yet".into() } else { parts.join(", ") }
}
