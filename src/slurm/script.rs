//! The sbatch script of a sweep's job array: one array task per run, the task id being
//! the run's index in `runs.json`; each task execs `runner run-one`.

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
    /// The runs' indices to run.
    pub indices: &'a [usize],
    /// CPUs of each task, and so the threads of each run.
    pub cpus: u64,
    /// Rerun runs that finished earlier.
    pub force: bool,
    pub options: &'a SlurmOptions,
}

/// `--array`'s value: the indices as ranges (`0-4,7,9-10`), then `%max_parallel`.
pub fn array_spec(indices: &[usize], max_parallel: Option<u64>) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    let mut spec = parts.join(",");
    if let Some(m) = max_parallel {
        let _ = write!(spec, "%{m}");
    }
    spec
}

/// `spec` as a message shows it: whole up to 80 characters, else its first ranges and how
/// many there are in all (the script holds the whole spec).
pub fn shown_spec(spec: &str) -> String {
    if spec.len() <= 80 {
        return spec.to_string();
    }
    let ranges = spec.split('%').next().unwrap_or("").split(',').count();
    let cut = spec[..60].rfind(',').unwrap_or(60);
    format!("{},... ({ranges} ranges in all)", &spec[..cut])
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
    let _ = writeln!(s, "# One array task per run; the task id is the run's index in runs.json.");
    let _ = writeln!(s, "# Submitting the sweep again reruns only the runs that did not finish.");
    let mut sbatch = |line: String| {
        let _ = writeln!(s, "#SBATCH {line}");
    };
    sbatch(format!("--job-name=runner-{}", spec.experiment));
    sbatch(format!("--array={}", array_spec(spec.indices, o.max_parallel)));
    sbatch(format!("--output={}", logs.join("%A_%a.out").display()));
    // A requeued task appends to its log: the earlier attempts' output is kept.
    sbatch("--open-mode=append".into());
    // SIGTERM to the batch shell ahead of the time limit: the run checkpoints and stops.
    sbatch(format!("--signal=B:TERM@{}", o.signal_grace.unwrap_or(super::options::DEFAULT_SIGNAL_GRACE)));
    if o.requeue {
        sbatch("--requeue".into());
    }
    sbatch(format!("--chdir={}", spec.workdir.display()));
    sbatch("--ntasks=1".into());
    sbatch(format!("--cpus-per-task={}", spec.cpus));
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
    s.push_str("stop=0\nchild=\n");
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
        "  {} run-one {} --index \"$SLURM_ARRAY_TASK_ID\" --threads \"${{SLURM_CPUS_PER_TASK:-{}}}\"{} &",
        shell_quote(&spec.runner.to_string_lossy()),
        shell_quote(&spec.dir.to_string_lossy()),
        spec.cpus,
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
    #[test]
    fn long_array_specs_are_shortened_in_messages() {
        let every_other: Vec<usize> = (0..1000).step_by(2).collect();
        let spec = array_spec(&every_other, Some(4));
        assert!(spec.len() > 1500, "{}", spec.len());
        let shown = shown_spec(&spec);
        assert!(shown.len() < 90, "{shown}");
        assert!(shown.starts_with("0,2,4,") && shown.ends_with(",... (500 ranges in all)"), "{shown}");
        assert_eq!(shown_spec("0-9%2"), "0-9%2");
    }

    use super::*;
    use std::path::PathBuf;

    #[test]
    fn array_spec_compresses_runs_of_indices() {
        assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
        assert_eq!(array_spec(&[7, 0, 1, 4, 5, 9], None), "0-1,4-5,7,9");
        assert_eq!(array_spec(&[3], Some(1)), "3%1");
    }

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
            sbatch: vec!["--gres=gpu:1".into(), "#SBATCH --exclusive".into()],
            setup: vec!["module load rust".into()],
            cpus_per_task: Some(2),
            signal_grace: None,
            requeue: true,
        };
        let dir = PathBuf::from("/shared/exp/sweep");
        let text = render(&ScriptSpec {
            experiment: "sweep",
            dir: &dir,
            workdir: Path::new("/shared"),
            runner: Path::new("/opt/runner"),
            indices: &[0, 1, 2, 5],
            cpus: 2,
            force: false,
            options: &options,
        });
        for line in [
            "#SBATCH --array=0-2,5%4",
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
            "  /opt/runner run-one /shared/exp/sweep --index \"$SLURM_ARRAY_TASK_ID\" --threads \"${SLURM_CPUS_PER_TASK:-2}\" &",
            "#SBATCH --open-mode=append",
            "#SBATCH --signal=B:TERM@60",
            "#SBATCH --requeue",
            "  scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\" && echo \"runner: requeued\"",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
