//! The sbatch script of a sweep's job arrays: one array task per run; each array is
//! submitted as `sbatch --array=SPEC sweep.sbatch OFFSET`, and task `T` trains run
//! `OFFSET + T` of `runs.json` with `runner run-one`.

use super::SlurmOptions;
use std::fmt::Write as _;
use std::path::Path;

/// What the script needs to know.
pub struct ScriptSpec<'a> {
    /// The experiment's name (the job's name is `runner-<name>`).
    pub experiment: &'a str,
    /// The experiment directory, absolute: the nodes must see it at this path.
    pub dir: &'a Path,
    /// Where each task starts (relative data paths in configs are already absolute; this
    /// is the submitting directory, as sbatch's own default).
    pub workdir: &'a Path,
    /// The runner binary the nodes run.
    pub runner: &'a Path,
    /// CPUs of each task, and so the threads of each run.
    pub cpus: u64,
    /// GPUs of each task; with some, each run trains on `cuda` (the task's first GPU).
    pub gpus: Option<u64>,
    /// Rerun runs that finished earlier.
    pub force: bool,
    pub options: &'a SlurmOptions,
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The script's text.
pub fn render(spec: &ScriptSpec<'_>) -> String {
    let o = spec.options;
    let logs = spec.dir.join("slurm").join("logs");
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(s, "# Written by `runner sweep --backend slurm` for the experiment {}.", spec.experiment);
    let _ = writeln!(s, "# One array task per run, submitted as `sbatch --array=SPEC sweep.sbatch OFFSET` once per");
    let _ = writeln!(s, "# job array (slurm/jobs.json lists them): task T trains run OFFSET + T of runs.json.");
    let _ = writeln!(s, "# Submitting the sweep again reruns only the runs that did not finish.");
    let mut sbatch = |line: String| {
        let _ = writeln!(s, "#SBATCH {line}");
    };
    sbatch(format!("--job-name=runner-{}", spec.experiment));
    sbatch(format!("--output={}", logs.join("%A_%a.out").display()));
    // A requeued task appends to its log: the earlier attempts' output is kept.
    sbatch("--open-mode=append".into());
    // SIGTERM to the batch shell ahead of the time limit: the run checkpoints and stops.
    sbatch(format!("--signal=B:TERM@{}", o.signal_grace.unwrap_or(crate::config::launch::DEFAULT_SIGNAL_GRACE)));
    if o.requeue {
        sbatch("--requeue".into());
    }
    sbatch(format!("--chdir={}", spec.workdir.display()));
    sbatch("--ntasks=1".into());
    sbatch(format!("--cpus-per-task={}", spec.cpus));
    if let Some(g) = spec.gpus {
        sbatch(format!("--gpus-per-task={g}"));
    }
    for (flag, value) in
        [("partition", &o.partition), ("time", &o.time), ("mem", &o.mem), ("account", &o.account), ("qos", &o.qos)]
    {
        if let Some(v) = value {
            sbatch(format!("--{flag}={v}"));
        }
    }
    for line in &o.sbatch {
        sbatch(line.trim().trim_start_matches("#SBATCH").trim().to_string());
    }
    // A stop can come before runner starts (Slurm may signal up to a minute early): it is
    // noted, and passed on to runner once it runs.
    s.push_str("offset=\"${1:-0}\"\nstop=0\nchild=\n");
    s.push_str("trap 'stop=1; if [ -n \"$child\" ]; then kill -TERM \"$child\" 2>/dev/null; fi' TERM INT\n");
    s.push_str("set -e\n");
    for line in &o.setup {
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(
        s,
        "echo \"runner: task ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}, attempt $(( ${{SLURM_RESTART_COUNT:-0}} + 1 )), on $(hostname) at $(date -Is)\""
    );
    // runner runs as a child so that the shell, which Slurm signals ahead of the time
    // limit (B:), can pass the signal on; runner checkpoints, saves the run as interrupted
    // (the reason in its summary) and exits 130.
    s.push_str("set +e\nrc=130\n");
    s.push_str("if [ \"$stop\" -eq 0 ]; then\n");
    let _ = writeln!(
        s,
        "  {} run-one {} --index \"$(( offset + SLURM_ARRAY_TASK_ID ))\" --threads \"${{SLURM_CPUS_PER_TASK:-{}}}\"{}{} &",
        shell_quote(&spec.runner.to_string_lossy()),
        shell_quote(&spec.dir.to_string_lossy()),
        spec.cpus,
        if spec.gpus.is_some() { " --device cuda" } else { "" },
        if spec.force { " --force" } else { "" }
    );
    s.push_str("  child=$!\n");
    s.push_str("  if [ \"$stop\" -eq 1 ]; then kill -TERM \"$child\" 2>/dev/null; fi\n");
    s.push_str("  wait \"$child\"; rc=$?\n");
    s.push_str("  while kill -0 \"$child\" 2>/dev/null; do wait \"$child\"; rc=$?; done\n");
    s.push_str("fi\n");
    if o.requeue {
        s.push_str("# Stopped ahead of the time limit: requeue; the next attempt resumes from the checkpoint.\n");
        s.push_str("if [ \"$rc\" -eq 130 ]; then\n");
        s.push_str(
            "  scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\" && echo \"runner: requeued\"\n",
        );
        s.push_str("fi\n");
    }
    s.push_str("exit \"$rc\"\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote("/my runs/it's"), "'/my runs/it'\\''s'");
    }

    #[test]
    fn the_script_passes_every_option_through() {
        let options = SlurmOptions {
            partition: Some("cpu".into()),
            time: Some("0:30:00".into()),
            mem: Some("2G".into()),
            account: Some("lab".into()),
            qos: Some("short".into()),
            max_parallel: Some(4),
            max_array_size: None,
            sbatch: vec!["--gres=gpu:1".into(), "#SBATCH --exclusive".into()],
            setup: vec!["module load rust".into()],
            cpus_per_task: Some(2),
            gpus_per_task: Some(1),
            signal_grace: None,
            requeue: true,
        };
        let dir = PathBuf::from("/shared/exp/sweep");
        let text = render(&ScriptSpec {
            experiment: "sweep",
            dir: &dir,
            workdir: Path::new("/shared"),
            runner: Path::new("/opt/runner"),
            cpus: 2,
            gpus: Some(1),
            force: false,
            options: &options,
        });
        for line in [
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --output=/shared/exp/sweep/slurm/logs/%A_%a.out",
            "#SBATCH --chdir=/shared",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --partition=cpu",
            "#SBATCH --time=0:30:00",
            "#SBATCH --mem=2G",
            "#SBATCH --account=lab",
            "#SBATCH --qos=short",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --exclusive",
            "module load rust",
            "offset=\"${1:-0}\"",
            "  /opt/runner run-one /shared/exp/sweep --index \"$(( offset + SLURM_ARRAY_TASK_ID ))\" --threads \"${SLURM_CPUS_PER_TASK:-2}\" --device cuda &",
            "#SBATCH --open-mode=append",
            "#SBATCH --signal=B:TERM@60",
            "#SBATCH --requeue",
            "  scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\" && echo \"runner: requeued\"",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
