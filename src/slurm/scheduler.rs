//! Talking to Slurm through its own commands: `sbatch` to submit, `squeue` for the live
//! state of array tasks, `sacct` (or `scontrol` where accounting is off) for how ended
//! tasks ended, `scontrol show config` for the cluster's limits. Errors quote Slurm's own
//! message. Tasks are reported by run index: a job's offset plus the task id.

use super::JobRecord;
use anyhow::{Result, anyhow};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

/// Runs a Slurm command; a missing command gets an error that says what to do.
fn slurm(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "`{program}` was not found on PATH: run this on a Slurm login node (or install Slurm's client commands). \
                 Without Slurm, run the sweep here without --backend slurm, or fan it out with --shard I/N"
            )
        } else {
            anyhow!("cannot run `{program}`: {e}")
        }
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// Submits `script` as one job array with sbatch: `--array=array`, the script's argument
/// `offset` (added to each task id to give its run), and with `after` (jobs, or tasks
/// as `JOB_TASK`), to start once those have ended (`--dependency=afterany:`). The job id; a refusal is an error with
/// sbatch's message.
pub fn submit(script: &Path, array: &str, offset: usize, after: &[String]) -> Result<String> {
    let mut args = vec!["--parsable".to_string(), format!("--array={array}")];
    if !after.is_empty() {
        args.push(format!("--dependency=afterany:{}", after.join(":")));
    }
    args.push(script.to_string_lossy().into_owned());
    args.push(offset.to_string());
    let out = slurm("sbatch", &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let stdout = text(&out.stdout);
    if !out.status.success() {
        let said = [text(&out.stderr), stdout].join("\n");
        return Err(anyhow!("sbatch refused the job array ({}):\n{}", out.status, said.trim()));
    }
    // `--parsable` prints "JOBID" or "JOBID;CLUSTER".
    let id = stdout.lines().last().unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(anyhow!("sbatch did not print a job id; it said: {stdout}"));
    }
    Ok(id)
}

/// Cancels `jobs` (best effort: what a half-submitted sweep leaves queued).
pub fn cancel(jobs: &[String]) {
    if !jobs.is_empty() {
        let _ = slurm("scancel", &jobs.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// The cluster's `MaxArraySize` (`scontrol show config`): task ids must stay below it.
/// `None` when scontrol does not say.
pub fn max_array_size() -> Option<usize> {
    let out = slurm("scontrol", &["show", "config"]).ok().filter(|o| o.status.success())?;
    parse_max_array_size(&text(&out.stdout))
}

fn parse_max_array_size(config: &str) -> Option<usize> {
    config.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() == "MaxArraySize" { value.trim().parse().ok() } else { None }
    })
}

/// The comma-separated ids of `jobs`, as squeue and sacct take them.
fn id_list(jobs: &[JobRecord]) -> String {
    jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>().join(",")
}

/// The array tasks of `jobs` that Slurm still lists (pending, running, completing...), as
/// run index -> state. Empty once every array has ended.
pub fn queued(jobs: &[JobRecord]) -> Result<BTreeMap<usize, String>> {
    let out = slurm("squeue", &["--noheader", "--array", "--jobs", &id_list(jobs), "--format=%i|%T"])?;
    let stderr = text(&out.stderr);
    if !out.status.success() {
        // A job that ended long ago is forgotten by the controller.
        if stderr.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        return Err(anyhow!("squeue failed ({}): {stderr}", out.status));
    }
    Ok(parse_tasks(&text(&out.stdout), jobs))
}

/// Why each pending task of `jobs` waits (squeue's reason: `Resources`, `Priority`, ...),
/// by run index; empty when Slurm cannot say.
pub fn pending_reasons(jobs: &[JobRecord]) -> BTreeMap<usize, String> {
    match slurm("squeue", &["--noheader", "--array", "--states=PENDING", "--jobs", &id_list(jobs), "--format=%i|%r"]) {
        Ok(out) if out.status.success() => parse_tasks(&text(&out.stdout), jobs),
        _ => BTreeMap::new(),
    }
}

/// Pending reasons that no waiting cures: the request exceeds what the partition, its
/// nodes or the account allow, so the task stays pending until cancelled.
pub const NEVER_RUNS: &[(&str, &str)] = &[
    ("PartitionConfig", "more CPUs, memory or nodes than the partition's nodes have"),
    ("BadConstraints", "constraints no node satisfies"),
    ("PartitionNodeLimit", "more nodes than the partition allows"),
    ("PartitionTimeLimit", "a time limit above the partition's"),
    ("QOSMaxWallDurationPerJobLimit", "a time limit above the QOS's"),
    ("AssocMaxWallDurationPerJobLimit", "a time limit above the account's"),
    ("InvalidQOS", "a QOS the account may not use"),
    ("InvalidAccount", "an account that does not exist"),
];

/// `JOB_TASK|STATE` lines (squeue, sacct) of `jobs` as run index -> state (the run being
/// the job's offset + the task id); other lines are skipped.
fn parse_tasks(text: &str, jobs: &[JobRecord]) -> BTreeMap<usize, String> {
    let mut tasks = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.trim().split('|');
        let (Some(id), Some(state)) = (fields.next(), fields.next()) else { continue };
        let Some((j, task)) = id.split_once('_') else { continue };
        let Some(job) = jobs.iter().find(|job| job.job_id == j) else { continue };
        let state = state.split_whitespace().next().unwrap_or("").to_string();
        // One task (`12_3`), or tasks not yet split out of their array (`12_[3-5%1]`).
        let task = task.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(task);
        for t in task_ids(task, job.task_limit()) {
            tasks.insert(job.offset + t, state.clone());
        }
    }
    tasks
}

/// The task ids of an array spec as Slurm writes them: `3`, `0-298:2%1`, `1,4-6` (the
/// `%N` bound aside); ids from `limit` on (past the array's last task: a spec read back
/// cannot hold them) are left out, so a malformed one cannot make a list of billions.
fn task_ids(spec: &str, limit: usize) -> Vec<usize> {
    let spec = spec.split('%').next().unwrap_or("");
    let mut ids = Vec::new();
    for part in spec.split(',') {
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => (r, s.parse::<usize>().ok().filter(|&s| s > 0)),
            None => (part, Some(1)),
        };
        let Some(step) = step else { continue };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (a.parse::<usize>(), b.parse::<usize>()),
            None => (range.parse::<usize>(), range.parse::<usize>()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            let hi = hi.min(limit.saturating_sub(1));
            if lo <= hi {
                ids.extend((lo..=hi).step_by(step));
            }
        }
    }
    ids
}

/// How the ended tasks of `jobs` ended (COMPLETED, FAILED, TIMEOUT, CANCELLED, NODE_FAIL,
/// PREEMPTED, OUT_OF_MEMORY...), by run index: from sacct, else from scontrol (which
/// remembers a job for a while after it ends); empty when neither knows.
pub fn final_states(jobs: &[JobRecord]) -> BTreeMap<usize, String> {
    if let Ok(out) = slurm(
        "sacct",
        &["--noheader", "--parsable2", "--allocations", "--jobs", &id_list(jobs), "--format=JobID,State"],
    ) && out.status.success()
    {
        let tasks = parse_tasks(&text(&out.stdout), jobs);
        if !tasks.is_empty() {
            return tasks;
        }
    }
    let mut tasks = BTreeMap::new();
    for job in jobs {
        let Ok(out) = slurm("scontrol", &["--oneliner", "show", "job", &job.job_id]) else { return tasks };
        if !out.status.success() {
            continue;
        }
        for line in text(&out.stdout).lines() {
            let field = |name: &str| {
                line.split_whitespace().find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            };
            // One task, or a range of tasks never split out of the array
            // (`ArrayTaskId=0-298:2%1 JobState=CANCELLED`).
            if let (Some(task), Some(state)) = (field("ArrayTaskId"), field("JobState")) {
                for t in task_ids(task, job.task_limit()) {
                    tasks.insert(job.offset + t, state.to_string());
                }
            }
        }
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, offset: usize) -> JobRecord {
        JobRecord { job_id: id.into(), runs: (offset..offset + 100).collect(), submitted_at: 0.0, offset }
    }

    #[test]
    fn task_lines_are_read_for_these_jobs_only_as_run_indices() {
        let text = "12_0|RUNNING\n12_3|PENDING\n13_1|RUNNING\n12|PENDING\n12_x|RUNNING\n14_2|PENDING\n";
        let tasks = parse_tasks(text, &[job("12", 0)]);
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[&0], "RUNNING");
        assert_eq!(tasks[&3], "PENDING");
        // Two arrays of one submission: the second's task 2 is run 64 + 2.
        let tasks = parse_tasks(text, &[job("12", 0), job("14", 64)]);
        assert_eq!(tasks.keys().copied().collect::<Vec<_>>(), vec![0, 3, 66]);
        // sacct writes "CANCELLED by 0".
        assert_eq!(parse_tasks("5_2|CANCELLED by 0", &[job("5", 0)])[&2], "CANCELLED");
        // Tasks never split out of their array.
        let mut j = job("7", 10);
        j.runs = (10..20).collect();
        let tasks = parse_tasks("7_[2-4%1]|PENDING\n7_[6,8]|CANCELLED", &[j]);
        assert_eq!(tasks.keys().copied().collect::<Vec<_>>(), vec![12, 13, 14, 16, 18]);
        assert_eq!(tasks[&16], "CANCELLED");
    }

    #[test]
    fn array_task_specs_expand_within_the_array() {
        assert_eq!(task_ids("3", 10), vec![3]);
        assert_eq!(task_ids("0-298:2%1", 300).len(), 150);
        assert_eq!(task_ids("0-8:2", 300), vec![0, 2, 4, 6, 8]);
        assert_eq!(task_ids("1,4-6", 10), vec![1, 4, 5, 6]);
        assert_eq!(task_ids("0-4294967295", 5), vec![0, 1, 2, 3, 4]);
        assert!(task_ids("x-y,:0", 10).is_empty());
    }

    #[test]
    fn max_array_size_is_read_from_scontrols_config() {
        let config = "Configuration data as of 2026-11-26T08:00:00\nMaxArraySize            = 64\nMaxJobCount             = 10000\n";
        assert_eq!(parse_max_array_size(config), Some(64));
        assert_eq!(parse_max_array_size("MaxJobCount = 10000"), None);
    }
}
