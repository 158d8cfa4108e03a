//! `runner collect DIR [SHARD_DIR...]`: brings an experiment's results together, also
//! while its runs still go on. Finished runs found in the other directories (copies of the
//! experiment made by shards on other machines) are merged into DIR; for a sweep submitted
//! to Slurm, its latest submission's tasks are looked up (runs still queued show as pending or
//! running, and runs whose task ended without a result are recorded as failed); then
//! summary.csv is written and the runs are counted.

use crate::cli::CollectArgs;
use crate::error::input_error;
use crate::results::{self, ExperimentView};
use crate::slurm;
use crate::store;
use crate::suggest::first_few;
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

pub fn run(args: &CollectArgs) -> Result<()> {
    let (dir, others) = args.dirs.split_first().expect("clap requires one directory");
    if !dir.is_dir() {
        return Err(input_error(format!(
            "{} is not a directory; give an experiment directory (experiments/NAME)",
            dir.display()
        )));
    }
    let mut merged = 0;
    let mut refused = Vec::new();
    for other in others {
        merged += merge(dir, other, &mut refused)?;
    }
    for r in &refused {
        say!("not merged: {r}");
    }
    if !others.is_empty() && !args.quiet {
        say!(
            "merged {merged} finished run{} from {} other director{}",
            plural(merged),
            others.len(),
            if others.len() == 1 { "y" } else { "ies" }
        );
    }
    let mut slurm_note = None;
    let mut queued = BTreeMap::new();
    // Whether the experiment's latest Slurm job has ended: nothing of it is queued or
    // running, so a run still pending will not start by itself.
    let mut job_ended = false;
    if dir.join("slurm").join("jobs.json").exists() {
        match slurm::latest_job(dir) {
            Ok(Some(status)) => {
                let plan = results::read_plan(dir)?;
                let settled = slurm::settle(dir, &plan.experiment, &plan.runs, &status)?;
                let (lost, never) = (&settled.lost, &settled.never_started);
                job_ended = status.ended();
                slurm_note = Some(if status.ended() {
                    format!(
                        "Slurm job{} {} {} ended{}{}",
                        if status.jobs.len() == 1 { "" } else { "s" },
                        status.ids(),
                        if status.jobs.len() == 1 { "has" } else { "have" },
                        if lost.is_empty() {
                            String::new()
                        } else {
                            format!("; {} run{} left no result: {}", lost.len(), plural(lost.len()), listed(lost, dir))
                        },
                        if never.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; {} run{} never started (pending again): {}",
                                never.len(),
                                plural(never.len()),
                                listed(never, dir)
                            )
                        }
                    )
                } else {
                    format!(
                        "Slurm job{} {}: {} running, {} pending",
                        if status.jobs.len() == 1 { "" } else { "s" },
                        status.ids(),
                        status.count("RUNNING") + status.count("COMPLETING"),
                        status.count("PENDING")
                    )
                });
                queued = status.queued;
            }
            Ok(None) => {}
            Err(e) => {
                slurm_note =
                    Some(format!("cannot ask Slurm about this experiment's job ({e:#}); showing what is on disk"))
            }
        }
    }
    let mut view = results::read_experiment(dir)?;
    // What Slurm says of runs that have not written a result yet.
    for (i, state) in &queued {
        if let Some(run) = view.runs.get_mut(*i)
            && run.summary.is_none()
        {
            run.status = if state == "PENDING" { "pending".into() } else { "running".into() };
        }
    }
    results::write_summary_csv(&view)?;
    if let Some(note) = slurm_note {
        say!("{note}");
    }
    super::print(&format!("{}\n", counts_line(&view)))?;
    if !args.quiet {
        say!("summary in {}; see `runner report {}`", dir.join("summary.csv").display(), dir.display());
    }
    // Runs that ended without finishing (failed, interrupted, or lost: a partial
    // metrics.csv with nobody training it) make collect fail, as `sweep --wait` does;
    // pending and running runs are still to come, unless the job has ended: then a
    // pending run will not start by itself (cancelled before it started, a submission
    // refused halfway), and is a failure to report as `--wait` reports it.
    let unfinished: Vec<String> = view
        .runs
        .iter()
        .filter(|r| {
            matches!(r.status.as_str(), "failed" | "interrupted" | "incomplete") || (job_ended && r.status == "pending")
        })
        .map(|r| format!("{} ({})", r.info.name, r.status))
        .collect();
    if !unfinished.is_empty() && refused.is_empty() {
        anyhow::bail!(
            "{} of {} runs did not finish: {} (each run's summary.json or log says why; run or submit the sweep again to train them)",
            unfinished.len(),
            view.runs.len(),
            listed(&unfinished, dir)
        );
    }
    if !refused.is_empty() {
        anyhow::bail!(
            "{} run{} not merged: {} config differs from this experiment's plan ({}); rerun {} with this plan, or collect {} into an experiment of its own",
            refused.len(),
            plural(refused.len()),
            if refused.len() == 1 { "its" } else { "their" },
            dir.join("runs.json").display(),
            if refused.len() == 1 { "it" } else { "them" },
            if refused.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(())
}

/// Names for a message: the first few, and where the whole list is (see [`first_few`]).
fn listed(names: &[String], dir: &Path) -> String {
    first_few(names, || format!("summary.csv in {} lists every run's status", dir.display()))
}

/// The config hash the plan of `dir` expects of run `name`: its `plan/<run>.toml`, else its
/// entry in runs.json. `Ok(None)` when the plan does not record one; `Err` when the plan
/// has no such run.
fn planned_hash(dir: &Path, plan: Option<&results::Plan>, name: &str) -> Result<Option<String>, String> {
    if let Ok(text) = fs::read_to_string(slurm::plan_config(dir, name)) {
        return Ok(Some(crate::config::hash_text(&text)));
    }
    let Some(plan) = plan else { return Ok(None) };
    match plan.runs.iter().find(|r| r.name == name) {
        Some(info) => Ok(info.config_hash.clone()),
        None => Err(format!("the plan has no run \"{name}\"")),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `sweep: 10 runs: 7 completed, 1 diverged, 2 running`.
fn counts_line(view: &ExperimentView) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for run in &view.runs {
        match counts.iter_mut().find(|(s, _)| *s == run.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((run.status.clone(), 1)),
        }
    }
    let order = ["completed", "collapsed", "diverged", "failed", "interrupted", "running", "incomplete", "pending"];
    counts.sort_by_key(|(s, _)| order.iter().position(|o| o == s).unwrap_or(order.len()));
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("{}: {} run{}: {}", view.name, view.runs.len(), plural(view.runs.len()), parts.join(", "))
}

/// Copies into `dir` every run of `other` that finished there and has no finished copy in
/// `dir` (completed or diverged beats failed or interrupted); `runs.json` too when `dir`
/// has none. Returns how many runs were copied.
///
/// A run whose config.toml differs from what the plan of `dir` expects (another config, or
/// a run the plan does not hold) is not copied; it is added to `refused` with the reason.
fn merge(dir: &Path, other: &Path, refused: &mut Vec<String>) -> Result<usize> {
    if !other.is_dir() {
        return Err(input_error(format!("{} is not a directory (a shard's copy of the experiment)", other.display())));
    }
    if !dir.join("runs.json").exists() && other.join("runs.json").exists() {
        fs::copy(other.join("runs.json"), dir.join("runs.json"))
            .with_context(|| format!("cannot copy {}", other.join("runs.json").display()))?;
    }
    let plan = results::read_plan(dir).ok();
    let mut copied = 0;
    let mut entries: Vec<_> = fs::read_dir(other)
        .with_context(|| format!("cannot read {}", other.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for src in entries {
        let Some(theirs) = store::read_summary(&src) else { continue };
        let Some(name) = src.file_name() else { continue };
        let dest = dir.join(name);
        let take = match store::read_summary(&dest) {
            None => true,
            Some(ours) => !ours.outcome.status.is_final() && theirs.outcome.status.is_final(),
        };
        if !take {
            continue;
        }
        let theirs_hash = fs::read_to_string(src.join("config.toml")).ok().map(|t| crate::config::hash_text(&t));
        let name = name.to_string_lossy();
        match planned_hash(dir, plan.as_ref(), &name) {
            Err(why) => {
                refused.push(format!("{}: {why}", src.display()));
                continue;
            }
            Ok(Some(expected)) if theirs_hash.as_deref() != Some(expected.as_str()) => {
                refused.push(format!(
                    "{}: trained config {}, the plan's is {expected}",
                    src.display(),
                    theirs_hash.as_deref().unwrap_or("(no config.toml)")
                ));
                continue;
            }
            Ok(_) => {}
        }
        {
            copy_run(&src, &dest)?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Replaces `dest` with a copy of the run directory `src`; summary.json is copied last,
/// so an interrupted merge leaves an unfinished run, not a wrong one.
fn copy_run(src: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        fs::remove_dir_all(dest).with_context(|| format!("cannot replace {}", dest.display()))?;
    }
    fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut files: Vec<_> =
        fs::read_dir(src)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort_by_key(|p| p.file_name().is_some_and(|n| n == "summary.json"));
    for f in files {
        let to = dest.join(f.file_name().expect("a file has a name"));
        fs::copy(&f, &to).with_context(|| format!("cannot copy {} to {}", f.display(), to.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_of_runs_show_five_and_say_where_the_rest_are() {
        let names: Vec<String> = (0..150).map(|i| format!("run-{i}")).collect();
        let text = listed(&names, Path::new("experiments/x"));
        assert_eq!(
            text,
            "run-0, run-1, run-2, run-3, run-4, ... and 145 more (summary.csv in experiments/x lists every run's status)"
        );
        assert!(text.len() < 200);
        assert_eq!(listed(&names[..6], Path::new("x")), "run-0, run-1, run-2, run-3, run-4, run-5");
    }
}
