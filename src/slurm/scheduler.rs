//! Talking to Slurm through its own commands: `sbatch` to submit, `squeue` for the live
//! state of array tasks, `sacct` (or `scontrol` where accounting is off) for how ended
//! tasks ended. Errors quote Slurm's own message.

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

/// Submits `script` with sbatch; the job id. A refusal is an error with sbatch's message.
pub fn submit(script: &Path) -> Result<String> {
    let out = slurm("sbatch", &["--parsable", &script.to_string_lossy()])?;
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

/// The array tasks of `job` that Slurm still lists (pending, running, completing...):
/// task index -> state. Empty once the whole array has ended.
pub fn queued(job: &str) -> Result<BTreeMap<usize, String>> {
    let out = slurm("squeue", &["--noheader", "--array", "--jobs", job, "--format=%i|%T"])?;
    let stderr = text(&out.stderr);
    if !out.status.success() {
        // A job that ended long ago is forgotten by the controller.
        if stderr.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        return Err(anyhow!("squeue failed ({}): {stderr}", out.status));
    }
    Ok(parse_tasks(&text(&out.stdout), job))
}

/// Why each pending task of `job` waits (squeue's reason: `Resources`, `Priority`, ...);
/// empty when Slurm cannot say.
pub fn pending_reasons(job: &str) -> BTreeMap<usize, String> {
    match slurm("squeue", &["--noheader", "--array", "--states=PENDING", "--jobs", job, "--format=%i|%r"]) {
        Ok(out) if out.status.success() => parse_tasks(&text(&out.stdout), job),
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

/// `JOB_INDEX|STATE` lines (squeue, sacct) as index -> state; other lines are skipped.
fn parse_tasks(text: &str, job: &str) -> BTreeMap<usize, String> {
    let mut tasks = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.trim().split('|');
        let (Some(id), Some(state)) = (fields.next(), fields.next()) else { continue };
        let Some((j, index)) = id.split_once('_') else { continue };
        if j != job {
            continue;
        }
        if let Ok(i) = index.parse::<usize>() {
            tasks.insert(i, state.split_whitespace().next().unwrap_or("").to_string());
        }
    }
    tasks
}

/// How the ended tasks of `job` ended (COMPLETED, FAILED, TIMEOUT, CANCELLED, NODE_FAIL,
/// PREEMPTED, OUT_OF_MEMORY...): from sacct, else from scontrol (which remembers a job for
/// a while after it ends); empty when neither knows.
pub fn final_states(job: &str) -> BTreeMap<usize, String> {
    if let Ok(out) =
        slurm("sacct", &["--noheader", "--parsable2", "--allocations", "--jobs", job, "--format=JobID,State"])
        && out.status.success()
    {
        let tasks = parse_tasks(&text(&out.stdout), job);
        if !tasks.is_empty() {
            return tasks;
        }
    }
    let Ok(out) = slurm("scontrol", &["--oneliner", "show", "job", job]) else { return BTreeMap::new() };
    if !out.status.success() {
        return BTreeMap::new();
    }
    let mut tasks = BTreeMap::new();
    for line in text(&out.stdout).lines() {
        let field =
            |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')));
        if let (Some(index), Some(state)) = (field("ArrayTaskId"), field("JobState"))
            && let Ok(i) = index.parse::<usize>()
        {
            tasks.insert(i, state.to_string());
        }
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_lines_are_read_for_this_job_only() {
        let tasks = parse_tasks("12_0|RUNNING\n12_3|PENDING\n13_1|RUNNING\n12|PENDING\n12_x|RUNNING\n", "12");
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[&0], "RUNNING");
        assert_eq!(tasks[&3], "PENDING");
        // sacct writes "CANCELLED by 0".
        assert_eq!(parse_tasks("5_2|CANCELLED by 0", "5")[&2], "CANCELLED");
    }
}
