//! How a sweep is launched, as plain option data (read from `[sweep]` and the command
//! line; `sweep/` and `slurm/` act on it): the backend, and what a sweep asks of Slurm,
//! the `#SBATCH` options of its job array, from the command line or the file's
//! `[sweep.slurm]` (the command line wins, key by key).

/// Where a sweep's runs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Here, `jobs` at a time.
    Local,
    /// As a Slurm job array, one task per run.
    Slurm,
}

impl Backend {
    /// The backend named `word` in a config.
    pub fn parse(word: &str) -> Option<Backend> {
        match word {
            "local" => Some(Backend::Local),
            "slurm" => Some(Backend::Slurm),
            _ => None,
        }
    }
}

/// The job array's options; `None` leaves the cluster's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time`: a run's wall-clock limit (`MM`, `HH:MM:SS`, `D-HH:MM`...).
    pub time: Option<String>,
    /// `--cpus-per-task`; also each run's thread count. Default: the runs' `[train] threads`.
    pub cpus_per_task: Option<u64>,
    /// `--mem`: memory per node (`500M`, `4G`).
    pub mem: Option<String>,
    /// `--gpus-per-task`: GPUs of each task; its run trains on the first (`cuda`, the GPU
    /// Slurm gives it through CUDA_VISIBLE_DEVICES). Default: 1 when the runs train on
    /// `cuda`, none otherwise.
    pub gpus_per_task: Option<u64>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// Array tasks at once (`--array=...%N`); default: as many as Slurm places. With
    /// several arrays, each waits for the one before (`--dependency=afterany`), so the
    /// bound holds for the whole sweep.
    pub max_parallel: Option<u64>,
    /// Task ids must stay below this (Slurm's `MaxArraySize`); default: what
    /// `scontrol show config` says, else Slurm's default 1001.
    pub max_array_size: Option<u64>,
    /// Further `#SBATCH` lines, as written after `#SBATCH ` (`--gres=gpu:1`).
    pub sbatch: Vec<String>,
    /// Shell lines run before each run (`module load ...`, `source venv/bin/activate`).
    pub setup: Vec<String>,
    /// Seconds before the time limit at which Slurm sends SIGTERM (`--signal=B:TERM@N`),
    /// so the run checkpoints and exits before it is killed; default 60.
    pub signal_grace: Option<u64>,
    /// Requeue a task stopped by its time limit or a preemption; the requeued task resumes
    /// from the run's checkpoint, so a run longer than `--time` finishes over several.
    pub requeue: bool,
}

/// Seconds before the time limit at which a task is asked to stop, by default.
pub const DEFAULT_SIGNAL_GRACE: u64 = 60;

/// How much earlier than `--signal=...@N` asks Slurm may send the signal: its controller
/// looks for due signals every 30 s and sends one as soon as it could fall due before the
/// next look (sbatch's manual: "up to 60 seconds earlier than specified").
pub const SIGNAL_EARLY_BY: u64 = 60;

impl SlurmOptions {
    /// These options, each one that is unset taken from `fallback`.
    pub fn or(self, fallback: SlurmOptions) -> SlurmOptions {
        let list = |a: Vec<String>, b: Vec<String>| if a.is_empty() { b } else { a };
        SlurmOptions {
            partition: self.partition.or(fallback.partition),
            time: self.time.or(fallback.time),
            cpus_per_task: self.cpus_per_task.or(fallback.cpus_per_task),
            mem: self.mem.or(fallback.mem),
            gpus_per_task: self.gpus_per_task.or(fallback.gpus_per_task),
            account: self.account.or(fallback.account),
            qos: self.qos.or(fallback.qos),
            max_parallel: self.max_parallel.or(fallback.max_parallel),
            max_array_size: self.max_array_size.or(fallback.max_array_size),
            sbatch: list(self.sbatch, fallback.sbatch),
            setup: list(self.setup, fallback.setup),
            signal_grace: self.signal_grace.or(fallback.signal_grace),
            requeue: self.requeue || fallback.requeue,
        }
    }

    /// Where `--time` leaves a task no sure time to run before its stop signal (the limit
    /// is at most the grace plus the minute by which Slurm may signal early): what is
    /// wrong and what would work. With `--requeue` such a task could be stopped and
    /// requeued again and again without getting anywhere.
    pub fn signal_window_problem(&self) -> Option<String> {
        let time = self.time.as_deref()?;
        let limit = time_seconds(time)?;
        let grace = self.signal_grace.unwrap_or(DEFAULT_SIGNAL_GRACE);
        if limit > grace + SIGNAL_EARLY_BY {
            return None;
        }
        let minutes = (grace + SIGNAL_EARLY_BY) / 60 + 1;
        Some(format!(
            "a time limit of {time} ({limit} s) is not more than the signal grace ({grace} s) plus the up to \
             {SIGNAL_EARLY_BY} s by which Slurm may send its signal early: a task may be asked to stop as soon as \
             it starts{}; give a time limit above {} s (e.g. --time {minutes}) or a smaller --signal-grace \
             (`time` and `signal_grace` in [sweep.slurm])",
            if self.requeue { ", and with --requeue be requeued over and over" } else { "" },
            grace + SIGNAL_EARLY_BY
        ))
    }
}

/// Seconds in a Slurm time limit that `check_time` accepts; `None` for `infinite`.
pub fn time_seconds(s: &str) -> Option<u64> {
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (d.parse::<u64>().ok()?, Some(rest)),
        None => (0, None),
    };
    let parts: Vec<u64> = rest.unwrap_or(s).split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    // Without days: M, M:S, H:M:S. With days: D-H, D-H:M, D-H:M:S.
    let (h, m, sec) = match (rest.is_some(), parts.as_slice()) {
        (false, [m]) => (0, *m, 0),
        (false, [m, sec]) => (0, *m, *sec),
        (_, [h, m, sec]) => (*h, *m, *sec),
        (true, [h]) => (*h, 0, 0),
        (true, [h, m]) => (*h, *m, 0),
        _ => return None,
    };
    Some(((days * 24 + h) * 60 + m) * 60 + sec)
}

/// Checks a Slurm time limit: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or
/// `infinite`/`unlimited`; the error says what is accepted.
pub fn check_time(s: &str) -> Result<(), String> {
    let accepted =
        "a Slurm time limit: minutes (\"30\"), \"MM:SS\", \"HH:MM:SS\", \"D-HH\", \"D-HH:MM\" or \"D-HH:MM:SS\"";
    if matches!(s, "infinite" | "unlimited" | "UNLIMITED" | "INFINITE") {
        return Ok(());
    }
    let numbers = |part: &str| part.split(':').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let ok = match s.split_once('-') {
        Some((days, rest)) => {
            !days.is_empty()
                && days.bytes().all(|b| b.is_ascii_digit())
                && numbers(rest)
                && rest.split(':').count() <= 3
        }
        None => numbers(s) && s.split(':').count() <= 3,
    };
    if ok { Ok(()) } else { Err(format!("must be {accepted}, found \"{s}\"")) }
}

/// Checks a Slurm memory size: a whole number with an optional K, M, G or T suffix.
pub fn check_mem(s: &str) -> Result<(), String> {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    let suffix = s.len() - digits.len();
    if !digits.is_empty() && suffix <= 1 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "must be a memory size: megabytes (\"4000\") or a number with K, M, G or T (\"4G\"), found \"{s}\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_time_formats() {
        for ok in ["30", "30:00", "1:00:00", "2-0", "2-12:00", "1-00:00:00", "infinite"] {
            assert_eq!(check_time(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "-1", "a-1", "1-", "1::2"] {
            assert!(check_time(bad).is_err(), "{bad}");
        }
        assert_eq!(check_mem("4G"), Ok(()));
        assert_eq!(check_mem("4000"), Ok(()));
        assert!(check_mem("4GB").is_err());
        assert!(check_mem("G").is_err());
    }

    #[test]
    fn time_limits_in_seconds_as_slurm_reads_them() {
        for (s, secs) in [
            ("30", 1800),
            ("30:15", 1815),
            ("1:00:00", 3600),
            ("2-0", 172_800),
            ("2-12:30", 217_800),
            ("1-00:00:05", 86_405),
        ] {
            assert_eq!(time_seconds(s), Some(secs), "{s}");
        }
        assert_eq!(time_seconds("infinite"), None);
    }

    #[test]
    fn a_limit_within_the_grace_and_slurms_early_minute_is_refused_with_what_works() {
        let opts = |time: &str, grace: Option<u64>, requeue: bool| SlurmOptions {
            time: Some(time.into()),
            signal_grace: grace,
            requeue,
            ..Default::default()
        };
        // 60 s limit, 30 s grace: Slurm may signal at once.
        let msg = opts("1", Some(30), true).signal_window_problem().unwrap();
        assert!(msg.contains("a time limit of 1 (60 s)"), "{msg}");
        assert!(msg.contains("signal grace (30 s)"), "{msg}");
        assert!(msg.contains("requeued over and over"), "{msg}");
        assert!(msg.contains("give a time limit above 90 s (e.g. --time 2) or a smaller --signal-grace"), "{msg}");
        // The default grace is 60 s: two minutes is still not enough.
        assert!(opts("2", None, false).signal_window_problem().unwrap().contains("above 120 s (e.g. --time 3)"));
        assert!(!opts("2", None, false).signal_window_problem().unwrap().contains("requeue"));
        assert_eq!(opts("2", Some(10), true).signal_window_problem(), None);
        assert_eq!(opts("2:01", None, true).signal_window_problem(), None);
        assert_eq!(opts("infinite", None, true).signal_window_problem(), None);
        assert_eq!(SlurmOptions::default().signal_window_problem(), None);
    }

    #[test]
    fn the_command_line_wins_key_by_key() {
        let file = SlurmOptions {
            partition: Some("cpu".into()),
            time: Some("10".into()),
            sbatch: vec!["--gres=gpu:1".into()],
            ..Default::default()
        };
        let cli = SlurmOptions { time: Some("20".into()), ..Default::default() };
        let merged = cli.or(file);
        assert_eq!(merged.partition.as_deref(), Some("cpu"));
        assert_eq!(merged.time.as_deref(), Some("20"));
        assert_eq!(merged.sbatch, vec!["--gres=gpu:1".to_string()]);
    }
}
