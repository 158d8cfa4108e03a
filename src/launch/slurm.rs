//! A sweep handed to Slurm: planned into its directory (runs.json, each run's config in
//! plan/), the runs not finished submitted as job arrays of `runner run-one` tasks, and with
//! `wait` followed to the end (then settled and summarised as a local sweep is). Runs that
//! start from another's fork (shared first steps) are arrays that wait for its task.

use super::{Launcher, Request, check_schedules, layer_tables, plan, refuse_while_queued, select};
use crate::config::launch::SlurmOptions;
use crate::data;
use crate::error::{Interrupted, input_error};
use crate::output::print;
use crate::plan::{Experiment, RunInfo};
use crate::results;
use crate::slurm::{self, JobRecord, JobStatus, ScriptSpec};
use crate::store::{self, ExperimentLock};
use crate::sweep::{self, Job};
use anyhow::{Context as _, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Submits runs to Slurm as job arrays.
#[derive(Debug, Clone, Default)]
pub struct Slurm {
    /// The `#SBATCH` options given on the command line; each overrides the file's
    /// `[sweep.slurm]` key.
    pub options: SlurmOptions,
    /// Follow the arrays until they end, then write summary.csv.
    pub wait: bool,
    /// Seconds between two looks at the queue when waiting.
    pub poll: f64,
    /// How long to keep asking a controller that does not answer.
    pub retry_for: f64,
    /// Each run from its step 0 (`--no-share`): no task waits for another's prefix.
    pub no_share: bool,
}

impl Launcher for Slurm {
    /// Plans the sweep into its directory and submits the runs that have not finished as
    /// Slurm job arrays (task ids below MaxArraySize); with `wait`, follows them to the end
    /// and writes summary.csv.
    fn launch(&self, request: Request<'_>) -> Result<()> {
        let Request { mut exp, mut cache, out, filter, force, quiet, dry_run } = request;
        let options = self.options.clone().or(exp.slurm.clone());
        if let Some(problem) = options.signal_window_problem() {
            return Err(input_error(problem));
        }
        let threads = exp.runs.iter().map(|r| r.config.train.threads).max().unwrap_or(1);
        let cpus = options.cpus_per_task.unwrap_or(threads);
        // Runs on a GPU get one each unless told; the nodes run this binary, so it must have
        // been built for GPUs (whether the nodes have them is their run-one's to check).
        let on_gpu = exp.runs.iter().any(|r| !r.config.train.device.is_cpu());
        if on_gpu && !crate::device::CUDA_BUILT {
            return Err(input_error(
                "the runs train on device = \"cuda\", and this runner (which the nodes run) was built without GPU \
                 support: build it with `cargo build --release --features cuda`",
            ));
        }
        if let Some(n) = exp.runs.iter().find_map(|r| r.config.train.device.ordinal().filter(|&n| n > 0)) {
            return Err(input_error(format!(
                "device = \"cuda:{n}\" names a GPU, and on Slurm each task trains on the GPU Slurm gives it: use \
                 device = \"cuda\" and gpus_per_task"
            )));
        }
        let gpus = options.gpus_per_task.or(on_gpu.then_some(1));
        for r in &mut exp.runs {
            r.config.train.threads = cpus;
        }
        let selected = select(&exp, filter, None)?;
        let chosen: Vec<&crate::plan::PlannedRun> = selected.iter().map(|&i| &exp.runs[i]).collect();
        let prepared = check_schedules(&chosen, &mut cache)?;
        let jobs_list: Vec<Job<'_>> = chosen
            .iter()
            .zip(prepared)
            .map(|(run, prepared)| Job { run, prepared, columns: &exp.columns, extend: None })
            .collect();
        // Steps the runs share, trained once: the task of a run that starts from another's
        // fork waits for that run's task (see [`submissions`]).
        // A task waits for the whole of its writer's, so a run forks only where that saves at
        // least half of its steps; before, it trains from step 0 at once.
        let mut sharing = (!self.no_share).then(|| sweep::share::plan(&jobs_list));
        let alone: Vec<usize> = sharing.as_mut().map_or(Vec::new(), |s| {
            s.keep_starts(|run, start| 2 * start.step >= jobs_list[run].prepared.ctx.total_steps)
        });
        let sharing = sharing.filter(|s| s.shares());
        store::check_out(out, &exp.name)?;
        let dir = std::path::absolute(out.join(&exp.name)).context("cannot resolve the output directory")?;
        let finished = |i: usize| {
            let r = &exp.runs[i];
            !force && store::is_finished(&dir.join(&r.info.name), &r.config.to_toml())
        };
        let todo: Vec<usize> = selected.iter().copied().filter(|&i| !finished(i)).collect();
        let workdir = std::env::current_dir().context("cannot read the current directory")?;
        let runner = std::env::current_exe().context("cannot find this runner's own path")?;
        let script = slurm::render(&ScriptSpec {
            experiment: &exp.name,
            dir: &dir,
            workdir: &workdir,
            runner: &runner,
            cpus,
            gpus,
            force,
            options: &options,
        });
        // Task ids stay below the cluster's MaxArraySize: more runs make more arrays.
        let (max_array_size, limit_from) = match options.max_array_size {
            Some(n) => (n as usize, "--max-array-size".to_string()),
            None => match slurm::max_array_size() {
                Some(n) => (n, "MaxArraySize from `scontrol show config`".to_string()),
                None => (
                    slurm::DEFAULT_MAX_ARRAY_SIZE,
                    "Slurm's default MaxArraySize; `scontrol show config` did not say".to_string(),
                ),
            },
        };
        let arrays = submissions(&todo, &selected, sharing.as_ref(), max_array_size);
        // With a bound on tasks at once, each array waits for the one before, so the bound
        // holds for the whole sweep.
        let chained = options.max_parallel.is_some() && arrays.len() > 1;
        let waiting = arrays.iter().filter(|(_, w)| w.is_some()).count();
        // Whether MaxArraySize alone cuts the runs into several arrays.
        let over_limit = slurm::split(&todo, max_array_size).len() > 1;
        // `<array K>_T`, the task of run `w` in the dry run's words.
        let task_label = |w: usize| {
            arrays
                .iter()
                .position(|(a, _)| a.runs.contains(&w))
                .map_or(String::new(), |k| format!("<array {}>_{}", k + 1, w - arrays[k].0.offset))
        };
        let script_path = dir.join("slurm").join("sweep.sbatch");
        if dry_run {
            let finished = selected.len() - todo.len();
            let mut text = format!(
                "{}: {} of {} runs to submit as {}{}, {cpus} CPU{} each, into {}\n",
                exp.name,
                todo.len(),
                selected.len(),
                match (arrays.len(), waiting) {
                    (1, _) => "one Slurm job array".to_string(),
                    (n, 0) => format!("{n} Slurm job arrays (task ids below {max_array_size}: {limit_from})"),
                    (n, w) if over_limit => format!(
                        "{n} Slurm job arrays ({w} waiting for the task that trains their runs' shared first steps; task \
                         ids below {max_array_size}: {limit_from})"
                    ),
                    (n, w) => format!(
                        "{n} Slurm job arrays ({w} waiting for the task that trains their runs' shared first steps)"
                    ),
                },
                match finished {
                    0 => String::new(),
                    1 => " (1 finished earlier)".to_string(),
                    k => format!(" ({k} finished earlier)"),
                },
                if cpus == 1 { "" } else { "s" },
                dir.display()
            );
            for (k, (a, writer)) in arrays.iter().enumerate() {
                let mut after: Vec<String> = Vec::new();
                if chained && k > 0 {
                    after.push("<the array before>".into());
                }
                after.extend(writer.map(task_label));
                text.push_str(&format!(
                    "sbatch --array={}{} {} {}\n",
                    a.spec(options.max_parallel),
                    if after.is_empty() {
                        String::new()
                    } else {
                        format!(" --dependency=afterany:{}", after.join(":"))
                    },
                    script_path.display(),
                    a.offset
                ));
                for &i in &a.runs {
                    text.push_str(&format!("  task {}: {}\n", i - a.offset, exp.runs[i].info.name));
                }
            }
            let names: Vec<&str> = chosen.iter().map(|r| r.info.name.as_str()).collect();
            if let Some(s) = &sharing {
                text.push_str(&format!(
                    "\n{}a run that starts from another's fork is a task that waits for that run's task (afterany): \
                     it starts when that task ends, from the fork (or from step 0 where the fork was not written)\n",
                    s.tree_text(&names)
                ));
            }
            if !alone.is_empty() {
                let list: Vec<String> = alone.iter().map(|&r| names[r].to_string()).collect();
                text.push_str(&format!(
                    "\ntrained from step 0, not forked: {} (their fork comes before half their steps, and a task would \
                     wait for the whole of the run it forks from)\n",
                    crate::suggest::first_few(&list, || format!("{} runs", list.len()))
                ));
            }
            text.push_str(&layer_tables(&chosen, &mut cache)?);
            text.push_str(&format!("\n{script}\n"));
            print(&text)?;
            return Ok(());
        }
        // Every data set must load here before anything is submitted.
        for &i in &todo {
            cache.get(&exp.runs[i].config.dataset)?;
        }
        // What this submission creates, removed again if Slurm refuses it (or there is no
        // sbatch): a refused submission records nothing.
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
        // The folders above it that this submission creates (--out itself, when new), innermost
        // first: removed too when empty, so a refused submission leaves nothing behind.
        let new_parents: Vec<PathBuf> = dir
            .ancestors()
            .skip(1)
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .map(Path::to_path_buf)
            .collect();
        check_writable(&dir)?;
        std::fs::create_dir_all(dir.join("slurm").join("logs")).context("cannot create the Slurm log directory")?;
        let _lock = ExperimentLock::acquire(&dir)?;
        refuse_while_queued(&dir, "submit again")?;
        write_plan_files(&dir, &exp)?;
        sweep::share::write_parts(&dir, &jobs_list, sharing.as_ref())?;
        if todo.is_empty() {
            results::write_summary_csv(&results::read_experiment(&dir)?)?;
            say!(
                "{}: all {} runs finished earlier with this config; nothing to submit (--force reruns them). Summary in {}",
                exp.name,
                selected.len(),
                dir.join("summary.csv").display()
            );
            return Ok(());
        }
        store::write_atomic(&script_path, script.as_bytes())?;
        let submitted_at = store::unix_now();
        let mut jobs: Vec<JobRecord> = Vec::with_capacity(arrays.len());
        for (k, (a, writer)) in arrays.iter().enumerate() {
            let mut after: Vec<String> = Vec::new();
            if chained && let Some(j) = jobs.last() {
                after.push(j.job_id.clone());
            }
            // The task of the run whose fork this array's runs start from.
            after.extend(writer.and_then(|w| jobs.iter().find(|j| j.runs.contains(&w)).map(|j| j.task_name(w))));
            match slurm::submit(&script_path, &a.spec(options.max_parallel), a.offset, &after) {
                Ok(job_id) => {
                    let job = JobRecord { job_id, runs: a.runs.clone(), submitted_at, offset: a.offset };
                    slurm::record_job(&dir, job.clone())?;
                    jobs.push(job);
                }
                Err(e) if jobs.is_empty() => {
                    drop(_lock);
                    remove_created(&dir, &created);
                    for parent in &new_parents {
                        // Only if empty: remove_dir refuses otherwise.
                        let _ = std::fs::remove_dir(parent);
                    }
                    return Err(e);
                }
                Err(e) => {
                    // Half a sweep queued is no submission: cancel it, and keep the records
                    // so that collect knows what ran.
                    let ids: Vec<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
                    slurm::cancel(&ids);
                    return Err(e.context(format!(
                        "Slurm refused job array {} of {} (runs {} to {}); the {} array{} submitted before it ({}) \
                         {} cancelled. Submit again once the cause is fixed",
                        k + 1,
                        arrays.len(),
                        a.runs[0],
                        a.runs[a.runs.len() - 1],
                        jobs.len(),
                        if jobs.len() == 1 { "" } else { "s" },
                        slurm::job_ids(&jobs),
                        if jobs.len() == 1 { "was" } else { "were" }
                    )));
                }
            }
        }
        let ids = slurm::job_ids(&jobs);
        say!(
            "{}: submitted Slurm job{} {ids}: {} run{} as {} ({cpus} CPU{} each{}); script {}, logs in {}",
            exp.name,
            if jobs.len() == 1 { "" } else { "s" },
            todo.len(),
            if todo.len() == 1 { "" } else { "s" },
            match arrays.as_slice() {
                [(a, _)] => format!("array tasks {}", slurm::shown_spec(&a.spec(options.max_parallel))),
                _ => format!(
                    "{} arrays{}{}{}",
                    arrays.len(),
                    if over_limit {
                        format!(" of task ids below {max_array_size} ({limit_from})")
                    } else {
                        String::new()
                    },
                    match waiting {
                        0 => String::new(),
                        n => format!(
                            ", {n} of them waiting for the task that trains their runs' shared first steps ({})",
                            sharing.as_ref().map_or(String::new(), |s| s.cost_line())
                        ),
                    },
                    if chained { ", one after another to keep --max-parallel" } else { "" }
                ),
            },
            if cpus == 1 { "" } else { "s" },
            if selected.len() > todo.len() {
                format!("; {} finished earlier, kept", selected.len() - todo.len())
            } else {
                String::new()
            },
            script_path.display(),
            dir.join("slurm").join("logs").display()
        );
        if !self.wait {
            say!(
                "follow it with `squeue -j {}`; collect the results (also while it runs) with `runner collect {}`",
                jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>().join(","),
                dir.display()
            );
            return Ok(());
        }
        let stop = crate::interrupt::install();
        wait(&dir, &exp, &jobs, (self.poll, self.retry_for), quiet, stop)
    }
}

/// The arrays to submit for the runs `todo` (indices into runs.json; `selected`: those
/// `sharing` was planned for, in its order), each with the run whose task it waits for:
/// first the runs that start at step 0 (or from a fork already written, or whose writer
/// is not submitted), then, per run that writes forks, the runs that start from them,
/// after that run's array. Each group is cut below `max_array_size` as a sweep is.
fn submissions(
    todo: &[usize],
    selected: &[usize],
    sharing: Option<&sweep::share::Sharing>,
    max_array_size: usize,
) -> Vec<(slurm::ArrayPlan, Option<usize>)> {
    let writer = |run: usize| -> Option<usize> {
        let pos = selected.iter().position(|&s| s == run)?;
        let start = sharing?.starts.get(pos)?.as_ref()?;
        Some(selected[start.from]).filter(|w| todo.contains(w))
    };
    let mut groups: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
    for &run in todo {
        groups.entry(writer(run)).or_default().push(run);
    }
    let mut out: Vec<(slurm::ArrayPlan, Option<usize>)> = Vec::new();
    let mut placed: std::collections::HashSet<usize> = std::collections::HashSet::new();
    // A group goes once the run it waits for is in an array before it (a writer starts
    // before its fork, so every writer is placed in time; a group left over would mean a
    // cycle, and goes without waiting).
    while !groups.is_empty() {
        let ready: Vec<Option<usize>> =
            groups.keys().copied().filter(|w| w.is_none_or(|w| placed.contains(&w))).collect();
        let next = if ready.is_empty() { groups.keys().copied().take(1).collect() } else { ready };
        for w in next {
            let runs = groups.remove(&w).unwrap_or_default();
            placed.extend(&runs);
            let w = w.filter(|w| placed.contains(w));
            out.extend(slurm::split(&runs, max_array_size).into_iter().map(|a| (a, w)));
        }
    }
    out
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

/// runs.json and every run's resolved config in plan/, which `runner run-one` trains.
fn write_plan_files(dir: &Path, exp: &Experiment) -> Result<()> {
    results::record_plan(dir, &plan(exp))?;
    for r in &exp.runs {
        store::write_atomic(&slurm::plan_config(dir, &r.info.name), r.config.to_toml().as_bytes())?;
    }
    Ok(())
}

/// `--plan`: validates every run and writes the plan, for an engine that runs
/// `runner run-one DIR --index I` once per index.
pub fn plan_only(exp: &Experiment, mut cache: data::Cache, out: &Path) -> Result<()> {
    check_schedules(&exp.runs.iter().collect::<Vec<_>>(), &mut cache)?;
    let dir = std::path::absolute(out.join(&exp.name)).context("cannot resolve the output directory")?;
    check_writable(&dir)?;
    let _lock = ExperimentLock::acquire(&dir)?;
    refuse_while_queued(&dir, "plan again")?;
    write_plan_files(&dir, exp)?;
    // An engine runs the tasks in any order: each trains its run from step 0.
    sweep::share::write_parts(&dir, &[], None)?;
    say!(
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

/// Follows the arrays `jobs` of one submission until Slurm lists none of their tasks,
/// printing a line whenever the counts change; then settles runs that left no result and
/// writes summary.csv.
fn wait(
    dir: &Path,
    exp: &Experiment,
    jobs: &[JobRecord],
    (poll, retry_for): (f64, f64),
    quiet: bool,
    stop: &AtomicBool,
) -> Result<()> {
    let infos: Vec<RunInfo> = exp.runs.iter().map(|r| r.info.clone()).collect();
    let runs: Vec<usize> = jobs.iter().flat_map(|j| j.runs.iter().copied()).collect();
    let submitted_at = jobs.first().map_or(0.0, |j| j.submitted_at);
    let ids = slurm::job_ids(jobs);
    let (job_word, goes) = if jobs.len() == 1 { ("job", "goes") } else { ("jobs", "go") };
    let started = std::time::Instant::now();
    let mut last_line = String::new();
    // Since when, and how many times, Slurm's controller has not answered.
    let mut unanswered: Option<(std::time::Instant, u32)> = None;
    let stopped = || {
        Interrupted(format!(
            "stopped waiting; Slurm {job_word} {ids} {goes} on. Collect the results later with `runner collect {}`",
            dir.display()
        ))
    };
    let status = loop {
        let queued = match slurm::queued(jobs) {
            Ok(queued) => {
                if unanswered.take().is_some() && !quiet {
                    say!("[{:>5.0}s] Slurm answers again", started.elapsed().as_secs_f64());
                }
                queued
            }
            Err(e) => {
                let (since, tries) = unanswered.get_or_insert_with(|| (std::time::Instant::now(), 0));
                if *tries == 0 && !quiet {
                    say!(
                        "[{:>5.0}s] Slurm's controller does not answer ({}); asking again for up to {retry_for:.0} s",
                        started.elapsed().as_secs_f64(),
                        e.to_string().trim()
                    );
                }
                if since.elapsed().as_secs_f64() >= retry_for {
                    bail!(
                        "stopped waiting: Slurm's controller has not answered for {:.0} s (last: {}); {job_word} {ids} {goes} on. \
                         Collect the results later with `runner collect {}`",
                        since.elapsed().as_secs_f64(),
                        e.to_string().trim(),
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
        let status = JobStatus { jobs: jobs.to_vec(), queued };
        let counts = count(dir, &infos, &runs, Some(submitted_at));
        let reasons = if status.count("PENDING") > 0 { slurm::pending_reasons(jobs) } else { Default::default() };
        if let Some((reason, what)) = slurm::NEVER_RUNS.iter().find(|(never, _)| reasons.values().any(|r| r == never)) {
            let tasks: Vec<String> = reasons
                .iter()
                .filter(|(_, r)| *r == reason)
                .filter_map(|(&i, _)| status.job_of(i).map(|j| j.task_name(i)))
                .collect();
            bail!(
                "Slurm says {} of {job_word} {ids} can never start: pending with reason {reason} ({what}). The \
                 {job_word} {} queued: cancel {} (`scancel {}`) and submit again with what the partition allows \
                 (--cpus-per-task, --mem, --time, --partition; `sinfo -o '%P %c %m %l'` lists them)",
                match tasks.len() {
                    1 => format!("task {}", tasks[0]),
                    n if n <= 8 => format!("tasks {}", tasks.join(", ")),
                    n => format!("{n} tasks ({}, ...)", tasks[..4].join(", ")),
                },
                if jobs.len() == 1 { "stays" } else { "stay" },
                if jobs.len() == 1 { "it" } else { "them" },
                jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>().join(" ")
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
        let gone = runs
            .iter()
            .filter(|&&i| {
                !status.queued.contains_key(&i)
                    && infos
                        .get(i)
                        .and_then(|r| store::read_summary(&dir.join(&r.name)))
                        .is_none_or(|s| s.started_at.unwrap_or(0.0) < submitted_at - 5.0)
            })
            .count();
        // A task still listed whose run has written its result since the submission is
        // finishing (its process exiting): counted as finished, not as running as well.
        let done_since = |i: usize| {
            infos
                .get(i)
                .and_then(|r| store::read_summary(&dir.join(&r.name)))
                .is_some_and(|s| s.started_at.unwrap_or(0.0) >= submitted_at - 5.0)
        };
        let listed_as = |states: &[&str]| {
            status.queued.iter().filter(|(i, s)| states.contains(&s.as_str()) && !done_since(**i)).count()
        };
        let line = format!(
            "{job_word} {ids}: {}/{} finished ({}), {} running, {} pending{}{}",
            counts.values().sum::<usize>(),
            runs.len(),
            describe(&counts),
            listed_as(&["RUNNING", "COMPLETING"]),
            listed_as(&["PENDING"]),
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.iter().map(|(w, n)| format!("{n} {w}")).collect::<Vec<_>>().join(", "))
            },
            if gone == 0 { String::new() } else { format!(", {gone} ended without a result") }
        );
        if line != last_line && !quiet {
            say!("[{:>5.0}s] {line}", started.elapsed().as_secs_f64());
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
    let counts = count(dir, &infos, &runs, None);
    say!(
        "{}: Slurm {job_word} {ids} ended: {} in {:.0}s{}; summary in {}; see `runner report {}`",
        exp.name,
        describe(&counts),
        started.elapsed().as_secs_f64(),
        shared_steps(dir, &infos, &runs, submitted_at).map_or(String::new(), |(trained, of)| format!(
            "; trained {} of the {} steps its runs take",
            sweep::share::thousands(trained),
            sweep::share::thousands(of)
        )),
        dir.join("summary.csv").display(),
        dir.display()
    );
    let unfinished: Vec<&str> = runs
        .iter()
        .filter(|&&i| store::read_summary(&dir.join(&infos[i].name)).is_none_or(|s| !s.outcome.status.is_final()))
        .map(|&i| infos[i].name.as_str())
        .collect();
    if unfinished.is_empty() {
        // Every run finished: the forks of their shared steps have served.
        let _ = std::fs::remove_dir_all(dir.join(".forks"));
    } else {
        bail!(
            "{} of {} runs did not finish: {}{} (each run's summary.json says why; submit again to rerun them)",
            unfinished.len(),
            runs.len(),
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

/// The steps the tasks of a submission (at `since`) trained, and the steps of their runs,
/// from the runs' summaries; `None` unless one of them started from another's fork.
fn shared_steps(dir: &Path, infos: &[RunInfo], runs: &[usize], since: f64) -> Option<(u64, u64)> {
    let summaries: Vec<store::StoredSummary> = runs
        .iter()
        .filter_map(|&i| store::read_summary(&dir.join(&infos.get(i)?.name)))
        .filter(|s| s.started_at.unwrap_or(0.0) >= since - 5.0)
        .collect();
    summaries.iter().any(|s| s.shared_from.is_some()).then(|| {
        summaries.iter().fold((0, 0), |(trained, of), s| {
            (trained + s.outcome.steps.saturating_sub(s.began_at_step.unwrap_or(0)), of + s.outcome.total_steps)
        })
    })
}

/// How many of `runs` are in each finished state, from their summaries; with `since`,
/// only runs started since then (a failed run's summary from an earlier job is not this
/// job's result; a few seconds allow for the nodes' clocks).
fn count(dir: &Path, infos: &[RunInfo], runs: &[usize], since: Option<f64>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for &i in runs {
        let summary = infos.get(i).and_then(|r| store::read_summary(&dir.join(&r.name)));
        if let Some(s) = summary.filter(|s| since.is_none_or(|t| s.started_at.unwrap_or(0.0) >= t - 5.0)) {
            // collect's and report's words: a completed run flagged as collapsed is one.
            let status = if s.collapsed.is_some() && s.outcome.status == crate::train::Status::Completed {
                "collapsed"
            } else {
                s.outcome.status.name()
            };
            *counts.entry(status.to_string()).or_default() += 1;
        }
    }
    counts
}

/// `3 completed, 1 failed` (`none yet` when empty).
fn describe(counts: &BTreeMap<String, usize>) -> String {
    let order = ["completed", "collapsed", "diverged", "failed", "interrupted"];
    let parts: Vec<String> =
        order.iter().filter_map(|s| counts.get(*s).filter(|n| **n > 0).map(|n| format!("{n} {s}"))).collect();
    if parts.is_empty() { "none yet".into() } else { parts.join(", ") }
}
