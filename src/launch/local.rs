//! A sweep trained here: its runs `jobs` at a time on this machine's cores (or GPUs),
//! with the experiment locked, runs.json written first and summary.csv kept current.

use super::{Launcher, Request, check_schedules, layer_tables, plan, select, still_queued};
use crate::config;
use crate::data;
use crate::error::{Interrupted, input_error};
use crate::output::print;
use crate::plan::{Experiment, PlannedRun};
use crate::progress::Board;
use crate::report::table::render_text;
use crate::results::{self, Plan};
use crate::store::{self, ExperimentLock};
use crate::sweep::{self, Job, Options, Shard};
use anyhow::{Result, bail};
use std::path::Path;
use std::time::Instant;

/// Trains runs on this machine.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// Runs at once (default: as many as fit the cores at each run's threads, or the GPUs).
    pub jobs: Option<u64>,
    /// The GPUs runs on `cuda` are placed on (default: every visible one).
    pub gpus: Option<Vec<usize>>,
    /// Runs sharing each GPU at once (default 1).
    pub runs_per_gpu: Option<u64>,
    /// Only this share of the runs.
    pub shard: Option<Shard>,
    /// Keep a single run's finished results of the same config instead of refusing.
    pub resume: bool,
    /// Train every run from step 0, even where runs share their first steps.
    pub no_share: bool,
}

impl Launcher for Local {
    fn launch(&self, request: Request<'_>) -> Result<()> {
        self.run(request)
    }
}

impl Local {
    /// Whether runs that share their first steps train them once: unless told not to,
    /// and not in a shard (its runs' forks would be another shard's, in the same
    /// directory).
    fn shares(&self) -> bool {
        !self.no_share && self.shard.is_none()
    }

    /// Runs the experiment's runs here (those of the shard only, when given).
    fn run(&self, request: Request<'_>) -> Result<()> {
        let Request { exp, mut cache, out, filter, force, quiet, dry_run } = request;
        let (exp, shard) = (&exp, self.shard);
        let selected: Vec<&PlannedRun> = select(exp, filter, shard)?.into_iter().map(|i| &exp.runs[i]).collect();
        let threads = selected.iter().map(|r| r.config.train.threads).max().unwrap_or(1);
        crate::train::check_threads(threads).map_err(input_error)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let gpus = gpu_placement(self, &selected)?;
        let per_gpu = self.runs_per_gpu.unwrap_or(1);
        let default_jobs = if gpus.is_empty() { (cores / threads).max(1) } else { gpus.len() as u64 * per_gpu };
        let jobs = self.jobs.or(exp.jobs).unwrap_or(default_jobs).min(selected.len().max(1) as u64);
        let dir = out.join(&exp.name);
        let prepared = check_schedules(&selected, &mut cache)?;
        let mut jobs_list: Vec<Job<'_>> = selected
            .iter()
            .zip(prepared)
            .map(|(run, prepared)| Job { run, prepared, columns: &exp.columns, extend: None })
            .collect();
        // A finished run of another config that this one continues (made longer, say)
        // instead of starting over.
        if !force {
            for job in &mut jobs_list {
                let run_dir = dir.join(&job.run.info.name);
                if let Some(old) = store::finished_with_other_config(&run_dir, &job.run.config.to_toml())
                    && let Ok(old) = crate::plan::parse(&run_dir.join("config.toml"), &old)
                {
                    job.extend = sweep::share::continuation(job, &run_dir, &old);
                }
            }
        }
        if dry_run {
            let sharing = self.shares().then(|| sweep::share::plan(&jobs_list));
            let extends: Vec<Option<u64>> = jobs_list.iter().map(|j| j.extend).collect();
            return show_dry_run(
                exp,
                &selected,
                &dir,
                (jobs, threads),
                force,
                (sharing.as_ref(), &extends),
                &mut cache,
            );
        }
        if jobs * threads > cores && !quiet {
            say!(
                "warning: {jobs} jobs x {threads} threads is more than the {cores} cores here; runs will slow each other down"
            );
        }
        // Every data set the runs need was loaded by the checks: a missing file stopped it all.
        store::check_out(out, &exp.name)?;
        let _lock = match shard {
            Some(s) => ExperimentLock::acquire_shard(&dir, s.index, s.count)?,
            None => ExperimentLock::acquire(&dir)?,
        };
        if !exp.is_sweep && !force && !self.resume {
            let run_dir = dir.join(&exp.runs[0].info.name);
            let toml = exp.runs[0].config.to_toml();
            // An interrupted, failed or killed run of this same config continues from its
            // checkpoint; finished results, or another config's, are not touched without a flag.
            let resumable = store::holds_config(&run_dir, &toml) && !store::is_finished(&run_dir, &toml);
            if run_dir.exists() && !run_dir.is_dir() {
                return Err(input_error(format!(
                    "{} is a file where the run's directory goes: move it away, or give another --out",
                    run_dir.display()
                )));
            }
            if !resumable
                && jobs_list[0].extend.is_none()
                && run_dir.exists()
                && std::fs::read_dir(&run_dir)?.next().is_some()
            {
                return Err(input_error(format!(
                    "{} already holds results of an earlier run; pass --force to replace them, --resume to keep them if that run finished with this config, or --out DIR to write elsewhere",
                    run_dir.display()
                )));
            }
        }
        // Queued Slurm tasks train runs.json's runs by index, which this launch would move
        // (where Slurm cannot be asked, as on a machine the experiment was copied to, none is).
        if let Ok(Some(status)) = crate::slurm::latest_job(&dir)
            && !status.ended()
        {
            return Err(still_queued(&dir, &status, "run again"));
        }
        announce_replaced(&dir, &selected, quiet);
        let ours = plan(exp);
        // Shards of one sweep share its plan; a shard of another sweep with the same name would
        // replace the plan under the ones running (their runs would vanish from the listing).
        if let Some(s) = shard
            && dir.join("runs.json").exists()
            && ExperimentLock::shards_running(&dir, &format!(".runner.shard-{}-of-{}.lock", s.index, s.count))
        {
            let theirs = results::read_plan(&dir)?;
            // Its runs come first in runs.json (then runs kept from earlier launches).
            let key = |p: &Plan| -> Vec<(String, Option<String>)> {
                p.runs.iter().take(ours.runs.len()).map(|r| (r.name.clone(), r.config_hash.clone())).collect()
            };
            if key(&theirs) != key(&ours) {
                return Err(input_error(format!(
                    "{} is being written by shards of another sweep named {} (its runs.json lists other runs or configs); \
                     wait for them, or give this sweep another name or --out",
                    dir.display(),
                    exp.name
                )));
            }
        }
        results::record_plan(&dir, &ours)?;
        // candle's matrix products take their thread count from here; each run's own pool
        // then bounds it. Set before the signal handler's thread exists.
        // SAFETY: no other thread of this process reads the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
        let stop = crate::interrupt::install();

        let started = Instant::now();
        if exp.is_sweep && !quiet {
            say!(
                "{}: {} runs{}, {jobs} at a time x {threads} thread{}, data loaded once ({} data set{}); results in {}",
                exp.name,
                selected.len(),
                shard.map_or(String::new(), |s| format!(" (shard {s} of {} runs)", exp.runs.len())),
                if threads == 1 { "" } else { "s" },
                cache.len(),
                if cache.len() == 1 { "" } else { "s" },
                dir.display()
            );
        }
        let board = Board::new(selected.len(), quiet);
        // summary.csv after each finished run, read from disk: O(runs) each time, so in a
        // sweep of thousands it is rewritten only once the time since the last rewrite is 9x
        // what that one took (at most a tenth of the time goes to it); always at the end.
        let last_refresh: std::sync::Mutex<Option<(Instant, std::time::Duration)>> = std::sync::Mutex::new(None);
        let refresh = || {
            let mut last = last_refresh.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, took)) = *last
                && at.elapsed() < took * 9
            {
                return;
            }
            let start = Instant::now();
            if let Ok(view) = results::read_experiment(&dir) {
                let _ = results::write_summary_csv(&view);
            }
            *last = Some((Instant::now(), start.elapsed()));
        };
        let tally = sweep::execute(
            &dir,
            &jobs_list,
            Options {
                jobs: jobs as usize,
                threads: threads as usize,
                force,
                gpus: gpus.clone(),
                share: if self.shares() { sweep::Share::Plan } else { sweep::Share::Off },
            },
            &board,
            stop,
            &refresh,
        )?;
        board.close();
        let mut view = results::read_experiment(&dir)?;
        // A run that failed before it could write its directory shows as failed, not pending.
        for (name, _) in &tally.unrecorded {
            if let Some(r) = view.runs.iter_mut().find(|r| &r.info.name == name) {
                r.status = "failed".into();
            }
        }
        // Said after the runs' own failures, which matter more (on a full disk, both).
        let summary_error = results::write_summary_csv(&view).err();

        if !quiet && tally.steps_trained < tally.steps_of_runs {
            say!(
                "{}: trained {} of the {} steps its runs take ({:.0}%); the others came from shared first steps trained \
                 once, or from earlier attempts' checkpoints",
                exp.name,
                sweep::share::thousands(tally.steps_trained),
                sweep::share::thousands(tally.steps_of_runs),
                100.0 * tally.steps_trained as f64 / tally.steps_of_runs as f64
            );
        }
        if !quiet && !exp.is_sweep {
            say!("results in {}; see `runner report {}`", dir.join(&selected[0].info.name).display(), dir.display());
        } else if !quiet {
            let mut parts = vec![format!("{} completed", tally.completed.len())];
            for (n, what) in [
                (tally.diverged.len(), "diverged"),
                (tally.failed.len(), "failed"),
                (tally.interrupted.len(), "interrupted"),
                (tally.skipped.len(), "kept from before"),
                (tally.not_started.len(), "not started"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {what}"));
                }
            }
            say!(
                "{}: {} in {:.1}s; summary in {}; see `runner report {}`",
                exp.name,
                parts.join(", "),
                started.elapsed().as_secs_f64(),
                dir.join("summary.csv").display(),
                dir.display()
            );
        }
        if !quiet
            && exp.is_sweep
            && let Some(line) = crate::report::top_line(&view, 3)
        {
            say!("{line}");
        }
        // A stop that came after the last run finished (its summary written) stopped nothing:
        // the results are whole, and the exit status says so.
        let left = tally.interrupted.len() + tally.not_started.len();
        if stop.load(std::sync::atomic::Ordering::SeqCst) && left > 0 {
            return Err(Interrupted(format!(
                "interrupted; finished runs are kept and the others saved a checkpoint: rerun the same command to continue them ({left} left)"
            ))
            .into());
        }
        if !tally.failed.is_empty() {
            // The reasons, also under --quiet: an error always says why.
            let why: Vec<String> = tally
                .failed
                .iter()
                .map(|name| {
                    let recorded = store::read_summary(&dir.join(name)).and_then(|s| s.error);
                    let unrecorded = tally.unrecorded.iter().find(|(n, _)| n == name).map(|(_, e)| e.clone());
                    format!("\n  {name}: {}", recorded.or(unrecorded).unwrap_or_else(|| "see its summary.json".into()))
                })
                .collect();
            let also = summary_error.map_or(String::new(), |e| format!("\nalso: {e:#}"));
            bail!("{} of {} runs failed:{}{also}", tally.failed.len(), selected.len(), why.concat());
        }
        if let Some(e) = summary_error {
            return Err(e);
        }
        Ok(())
    }
}

/// The GPUs the runs on `cuda` (no number) are placed on, each job slot on one in turn:
/// `--gpus`, else every visible GPU; none when no run is on a GPU. A run on `cuda:N` stays
/// on GPU N. Refuses (before anything runs) a GPU run on a runner built without CUDA or
/// on a machine without the GPUs named.
fn gpu_placement(local: &Local, runs: &[&PlannedRun]) -> Result<Vec<usize>> {
    let devices: Vec<crate::device::DeviceSpec> = runs.iter().map(|r| r.config.train.device).collect();
    if devices.iter().all(|d| d.is_cpu()) {
        if local.gpus.is_some() || local.runs_per_gpu.is_some() {
            return Err(input_error(
                "--gpus and --runs-per-gpu place runs on GPUs, and these runs train on the CPU: \
                 add --device cuda (or [train] device = \"cuda\")",
            ));
        }
        return Ok(Vec::new());
    }
    let visible = crate::train::check_devices(&devices).map_err(input_error)?;
    let gpus = match &local.gpus {
        Some(list) => {
            if let Some(bad) = list.iter().find(|&&g| g >= visible) {
                return Err(input_error(format!(
                    "--gpus names GPU {bad}, and {visible} {} visible (0 to {}; CUDA_VISIBLE_DEVICES renumbers them)",
                    if visible == 1 { "is" } else { "are" },
                    visible.saturating_sub(1)
                )));
            }
            list.clone()
        }
        None => (0..visible).collect(),
    };
    Ok(gpus)
}

/// The finished runs among `runs` whose config changed since: `(run, what changed)`.
fn replaced(dir: &Path, runs: &[&PlannedRun]) -> Vec<(String, String)> {
    runs.iter()
        .filter_map(|r| {
            let old = store::finished_with_other_config(&dir.join(&r.info.name), &r.config.to_toml())?;
            let keys = config::changed_keys(&old, &r.config.to_toml());
            Some((r.info.name.clone(), if keys.is_empty() { "config changed".into() } else { keys.join(", ") }))
        })
        .collect()
}

/// Says which finished runs a rerun replaces because their config changed, and where
/// their results go.
fn announce_replaced(dir: &Path, runs: &[&PlannedRun], quiet: bool) {
    let list = replaced(dir, runs);
    if list.is_empty() || quiet {
        return;
    }
    say!(
        "{} finished run{} of another config will be replaced (their results move to {}):",
        list.len(),
        if list.len() == 1 { "" } else { "s" },
        dir.join("replaced").display()
    );
    for (name, what) in list {
        say!("  {name}: {what}");
    }
}

/// `--dry-run`: the runs, their swept values and what a real run would do with each.
fn show_dry_run(
    exp: &Experiment,
    runs: &[&PlannedRun],
    dir: &Path,
    (jobs, threads): (u64, u64),
    force: bool,
    (sharing, extends): (Option<&sweep::share::Sharing>, &[Option<u64>]),
    cache: &mut data::Cache,
) -> Result<()> {
    let starts = |i: usize| sharing.and_then(|s| s.starts.get(i)).and_then(|s| s.as_ref());
    let mut header = vec!["run".to_string(), "schedule".into()];
    header.extend(exp.columns.iter().cloned());
    header.extend(["seed".into(), "steps".into(), "would".into()]);
    let mut rows = Vec::new();
    let changed = replaced(dir, runs);
    for (i, r) in runs.iter().enumerate() {
        let steps = r.config.train.total_steps(cache.get(&r.config.dataset)?.train.len);
        let finished = store::is_finished(&dir.join(&r.info.name), &r.config.to_toml());
        let mut row = vec![r.info.name.clone(), r.info.schedule.clone()];
        row.extend(r.info.params.iter().cloned());
        row.extend([
            r.config.train.seed.to_string(),
            steps.to_string(),
            match changed.iter().find(|(n, _)| *n == r.info.name) {
                Some((_, what)) => match extends.get(i).copied().flatten() {
                    Some(k) => format!("continue from step {k} ({what})"),
                    None => format!("replace ({what})"),
                },
                None if finished && !force => "keep (finished)".into(),
                None if force => "run".to_string(),
                // The checkpoint the sweep will take up (the latest usable one).
                None => match (store::resume_point(&dir.join(&r.info.name), &r.config.to_toml()), starts(i)) {
                    (Ok(Some(found)), s) if s.is_none_or(|s| found.meta.step >= s.step) => {
                        format!("resume from step {}", found.meta.step)
                    }
                    (_, Some(s)) => format!("run from step {} ({}'s)", s.step, runs[s.from].info.name),
                    _ => "run".to_string(),
                },
            },
        ]);
        rows.push(row);
    }
    let head = format!(
        "{}: {} run{}, {jobs} at a time x {threads} thread{}, into {}\n",
        exp.name,
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        if threads == 1 { "" } else { "s" },
        dir.display()
    );
    let mut text = head + &render_text(&header, &rows);
    text.push_str(&layer_tables(runs, cache)?);
    if let Some(s) = sharing.filter(|s| s.shares()) {
        let names: Vec<&str> = runs.iter().map(|r| r.info.name.as_str()).collect();
        text.push_str(&format!("\n{}", s.tree_text(&names)));
    }
    print(&text)?;
    Ok(())
}
