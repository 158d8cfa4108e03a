//! An experiment directory read back: its plan (`runs.json`), every run's state and
//! curves, and the lock that keeps two sweeps from writing into it at once.

use super::{StoredSummary, read_summary, write_json_atomic};
use crate::config::RunInfo;
use crate::error::input_error;
use crate::train::{EvalRow, StepRow};
use anyhow::{Context as _, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `runs.json`: the runs an experiment was expanded into, in order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub experiment: String,
    /// The swept keys, the columns of every run's `params`.
    pub columns: Vec<String>,
    pub runs: Vec<RunInfo>,
}

/// Reads `dir/runs.json`.
pub fn read_plan(dir: &Path) -> Result<Plan> {
    let path = dir.join("runs.json");
    let text = fs::read_to_string(&path).map_err(|e| {
        input_error(format!(
            "cannot read {}: {e}; give the directory a sweep was planned into (experiments/NAME)",
            path.display()
        ))
    })?;
    let plan: Plan = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a runs.json this runner wrote", path.display()))?;
    // Names become paths (run-one deletes and writes dir/<run>): checked as strictly as a
    // config's, so an edited or forged plan cannot reach outside the experiment.
    let bad = std::iter::once(("experiment", &plan.experiment, crate::config::check_name(&plan.experiment)))
        .chain(plan.runs.iter().map(|r| ("run", &r.name, crate::config::check_run_name(&r.name))))
        .find_map(|(what, name, check)| check.err().map(|why| (what, name, why)));
    if let Some((what, name, why)) = bad {
        return Err(input_error(format!(
            "{} names the {what} \"{}\", which is refused ({why}): it was not written by runner; plan the sweep again",
            path.display(),
            name.escape_debug()
        )));
    }
    Ok(plan)
}

/// Writes `dir/runs.json` atomically.
pub fn write_plan(dir: &Path, plan: &Plan) -> Result<()> {
    write_json_atomic(&dir.join("runs.json"), plan)
}

/// One run of an experiment as found on disk.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub info: RunInfo,
    pub dir: PathBuf,
    /// completed, collapsed (completed, but back to chance or flat at the uniform
    /// prediction's loss), diverged, failed, interrupted (from summary.json); running (no
    /// summary yet, the experiment is locked by a live process); incomplete (no summary,
    /// nobody running it); pending (not started).
    pub status: String,
    pub summary: Option<StoredSummary>,
    /// The last evaluation: the summary's final metrics, or metrics.csv's last row for a
    /// run still going.
    pub last: Option<EvalRow>,
}

impl RunRecord {
    /// Whether the run trained to its end: completed, collapsed or not. Its final metrics
    /// are a result; other runs' are partial.
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "collapsed")
    }
}

/// A metrics.csv column runs can be ranked by, and which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub higher_is_better: bool,
}

/// The columns `runner report --metric` ranks by.
pub const METRICS: [Metric; 7] = [
    Metric { name: "val_accuracy", higher_is_better: true },
    Metric { name: "val_loss", higher_is_better: false },
    Metric { name: "val_rmse", higher_is_better: false },
    Metric { name: "train_loss", higher_is_better: false },
    Metric { name: "val_bits_per_char", higher_is_better: false },
    Metric { name: "val_bits_per_byte", higher_is_better: false },
    Metric { name: "val_perplexity", higher_is_better: false },
];

impl Metric {
    /// This metric's value in an evaluation row (`None` where the row has none).
    pub fn value(&self, row: &EvalRow) -> Option<f64> {
        match self.name {
            "val_accuracy" => row.val_accuracy,
            "val_rmse" => row.val_rmse,
            "train_loss" => Some(row.train_loss),
            "val_bits_per_char" => row.val_bits_per_char,
            "val_bits_per_byte" => row.val_bits_per_byte,
            "val_perplexity" => row.val_perplexity,
            _ => Some(row.val_loss),
        }
    }
}

/// An experiment directory read back.
#[derive(Debug, Clone)]
pub struct ExperimentView {
    pub name: String,
    pub dir: PathBuf,
    pub columns: Vec<String>,
    pub runs: Vec<RunRecord>,
    /// Whether the runs are classification runs (they report a validation accuracy, or
    /// none has evaluated yet); decided once, as ranking asks for every comparison.
    classification: bool,
    /// What runs are ranked by.
    metric: Metric,
}

impl ExperimentView {
    fn new(name: String, dir: PathBuf, columns: Vec<String>, runs: Vec<RunRecord>) -> ExperimentView {
        let evaluated: Vec<EvalRow> = runs.iter().filter_map(|r| r.last).collect();
        let classification = evaluated.is_empty() || evaluated.iter().any(|e| e.val_accuracy.is_some());
        // Language models are ranked by their loss (nats per token), not token accuracy.
        let language = evaluated.iter().any(|e| e.val_perplexity.is_some());
        let metric = METRICS[if classification && !language { 0 } else { 1 }];
        ExperimentView { name, dir, columns, runs, classification, metric }
    }

    /// The view ranked by the metrics.csv column `name` instead (`runner report --metric`);
    /// an error names the columns accepted, or says that no run has this one.
    pub fn with_metric(mut self, name: &str) -> Result<ExperimentView> {
        let accepted = || METRICS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ");
        let Some(metric) = METRICS.iter().find(|m| m.name == name) else {
            return Err(input_error(format!(
                "--metric {name}: not a metric runs can be ranked by; accepted: {} (higher val_accuracy is better, lower is better for the others)",
                accepted()
            )));
        };
        let evaluated: Vec<EvalRow> = self.runs.iter().filter_map(|r| r.last).collect();
        if !evaluated.is_empty() && evaluated.iter().all(|e| metric.value(e).is_none()) {
            return Err(input_error(format!(
                "--metric {name}: no run of {} has it ({}); accepted here: {}",
                self.name,
                if self.classification {
                    "a classification, with no val_rmse"
                } else {
                    "a regression, with no val_accuracy"
                },
                METRICS
                    .iter()
                    .filter(|m| evaluated.iter().any(|e| m.value(e).is_some()))
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.metric = *metric;
        Ok(self)
    }

    /// What runs are ranked by.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Whether the runs are classification runs.
    pub fn is_classification(&self) -> bool {
        self.classification
    }

    /// The metric runs are ranked by: final validation accuracy (higher is better) for
    /// classification, final validation loss (lower is better) otherwise, unless
    /// [`ExperimentView::with_metric`] chose another.
    pub fn metric_name(&self) -> &'static str {
        self.metric.name
    }

    /// A run's ranking value, larger is better; `None` when it has none (diverged, not run).
    pub fn score(&self, run: &RunRecord) -> Option<f64> {
        let v = self.metric.value(&run.last?)?;
        let v = if self.metric.higher_is_better { v } else { -v };
        v.is_finite().then_some(v)
    }

    /// The runs, best first: completed runs by their score, then the others that have
    /// a score (interrupted, failed, running: partial metrics, never ranked among
    /// finished runs), then runs without one, in plan order. Equal scores (the same
    /// accuracy on a few hundred validation samples is common) are ordered by the lower
    /// final validation loss.
    pub fn ranked(&self) -> Vec<&RunRecord> {
        let mut runs: Vec<&RunRecord> = self.runs.iter().collect();
        let group = |r: &RunRecord| match (r.finished(), self.score(r)) {
            (true, Some(_)) => 0,
            (false, Some(_)) => 1,
            (_, None) => 2,
        };
        runs.sort_by(|a, b| {
            group(a)
                .cmp(&group(b))
                .then_with(|| match (self.score(a), self.score(b)) {
                    (Some(x), Some(y)) => y.total_cmp(&x),
                    _ => std::cmp::Ordering::Equal,
                })
                .then_with(|| match (a.last, b.last) {
                    (Some(x), Some(y)) if x.val_loss.is_finite() && y.val_loss.is_finite() => {
                        x.val_loss.total_cmp(&y.val_loss)
                    }
                    _ => std::cmp::Ordering::Equal,
                })
        });
        runs
    }
}

/// Reads the experiment at `dir`: the runs `runs.json` lists or, without one, every
/// subdirectory holding a `config.toml`. `dir` may also be a single run's directory.
pub fn read_experiment(dir: &Path) -> Result<ExperimentView> {
    if !dir.is_dir() {
        return Err(input_error(format!(
            "{} is not a directory; give an experiment directory (experiments/NAME) or a run directory",
            dir.display()
        )));
    }
    if dir.join("metrics.csv").exists() && !dir.join("runs.json").exists() {
        // A single run's directory.
        let parent = dir.parent().unwrap_or(Path::new("."));
        let live = ExperimentLock::run_holder(parent, &file_name(dir)).is_some();
        let info = discovered_info(dir);
        let name = read_summary(dir).map_or_else(|| file_name(parent), |s| s.experiment);
        return Ok(ExperimentView::new(name, dir.to_path_buf(), Vec::new(), vec![record(dir, info, live)]));
    }
    let (name, columns, infos) = match dir.join("runs.json").exists() {
        true => {
            let plan = read_plan(dir)?;
            (plan.experiment, plan.columns, plan.runs)
        }
        false => {
            let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("config.toml").exists())
                .collect();
            dirs.sort();
            (file_name(dir), Vec::new(), dirs.iter().map(|d| discovered_info(d)).collect())
        }
    };
    if infos.is_empty() {
        return Err(input_error(format!(
            "{} holds no runs (no runs.json and no run directories with a config.toml)",
            dir.display()
        )));
    }
    // Running: a run whose own lock a live process holds (a local sweep's job, a Slurm
    // task's run-one); another run of a live experiment whose process died is not.
    let runs = infos
        .into_iter()
        .map(|info| {
            let live = ExperimentLock::run_holder(dir, &info.name).is_some();
            record(&dir.join(&info.name), info, live)
        })
        .collect();
    Ok(ExperimentView::new(name, dir.to_path_buf(), columns, runs))
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| "experiment".into(), |n| n.to_string_lossy().into_owned())
}

/// What can be learnt of a run without a plan: its name, schedule kind and seed.
fn discovered_info(dir: &Path) -> RunInfo {
    let config: Option<toml::Table> =
        fs::read_to_string(dir.join("config.toml")).ok().and_then(|t| t.parse::<toml::Table>().ok());
    let get = |table: &str, key: &str| config.as_ref()?.get(table)?.get(key).cloned();
    let name = file_name(dir);
    RunInfo {
        variant: name.clone(),
        schedule: get("schedule", "kind").and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        params: Vec::new(),
        seed: get("train", "seed").and_then(|v| v.as_integer()).unwrap_or_default() as u64,
        config_hash: fs::read_to_string(dir.join("config.toml")).ok().map(|t| crate::config::hash_text(&t)),
        name,
    }
}

fn record(dir: &Path, info: RunInfo, live: bool) -> RunRecord {
    let summary = read_summary(dir);
    let (status, last) = match &summary {
        // A completed run flagged as collapsed shows as such.
        Some(s) if s.collapsed.is_some() && s.outcome.status.name() == "completed" => {
            ("collapsed".to_string(), s.outcome.final_metrics)
        }
        Some(s) => (s.outcome.status.name().to_string(), s.outcome.final_metrics),
        None if dir.join("metrics.csv").exists() => {
            let status = if live { "running" } else { "incomplete" };
            (status.to_string(), read_metrics(dir).ok().and_then(|m| m.last().copied()))
        }
        None => ("pending".to_string(), None),
    };
    RunRecord { info, dir: dir.to_path_buf(), status, summary, last }
}

/// The rows of a run's metrics.csv (a live run's file may end in a partial line, skipped).
pub fn read_metrics(dir: &Path) -> Result<Vec<EvalRow>> {
    read_rows(&dir.join("metrics.csv"))
}

/// The rows of a run's steps.csv.
pub fn read_steps(dir: &Path) -> Result<Vec<StepRow>> {
    read_rows(&dir.join("steps.csv"))
}

/// The rows of a CSV up to its first bad one (a row cut short by a killed process, an
/// edited file); [`csv_problem`] says whether there is one.
fn read_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    Ok(read_rows_checked::<T>(path)?.0)
}

fn read_rows_checked<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(Vec<T>, Option<String>)> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, r) in reader.deserialize().enumerate() {
        match r {
            Ok(row) => rows.push(row),
            Err(e) => {
                // Row numbers as a spreadsheet shows them: the header is row 1.
                let problem =
                    format!("row {} is not a valid row ({e}); only the {} rows before it are read", i + 2, rows.len());
                return Ok((rows, Some(problem)));
            }
        }
    }
    Ok((rows, None))
}

/// What is wrong with a run's metrics.csv and steps.csv, if anything: `file: problem`.
pub fn csv_problems(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok((_, Some(p))) = read_rows_checked::<EvalRow>(&dir.join("metrics.csv")) {
        out.push(format!("metrics.csv: {p}"));
    }
    if let Ok((_, Some(p))) = read_rows_checked::<StepRow>(&dir.join("steps.csv")) {
        out.push(format!("steps.csv: {p}"));
    }
    out
}

/// The lock that keeps two runners from writing one experiment directory: an OS file lock
/// (`flock`) on `.runner.lock`, taken atomically, held as long as the process lives and
/// released by the kernel when it dies (so a killed process leaves no stale lock). Linux
/// NFSv4, Lustre and GPFS (with flock support) hold it across hosts. The file also says
/// who holds it (process id and host), for the refusal message.
pub struct ExperimentLock {
    path: PathBuf,
    /// Whether the file goes when the lock does (not a shared lock: others may hold it).
    remove: bool,
    // Declared after `path`: dropped (unlocked) after the file is removed in `drop`.
    _file: fs::File,
    /// A shard's hold on the experiment's lock, taken before its own.
    _experiment: Option<Box<ExperimentLock>>,
}

const LOCK: &str = ".runner.lock";

impl ExperimentLock {
    /// Creates `dir` if needed and locks it; refuses when a live process holds the lock
    /// (another runner of the whole experiment, or shards of one).
    pub fn acquire(dir: &Path) -> Result<ExperimentLock> {
        Self::acquire_named(dir, LOCK, false)
    }

    /// Locks `dir` for shard `index` of `count`: shards write different runs, so each
    /// has its own lock and they may run at once (two copies of one shard may not). Each
    /// also holds the experiment's lock shared: a writer of the whole experiment (`runner
    /// run` of another config with the same name) is refused while shards run, and a shard
    /// while it runs.
    pub fn acquire_shard(dir: &Path, index: u64, count: u64) -> Result<ExperimentLock> {
        let shared = Self::acquire_named(dir, LOCK, true)?;
        let mut own = Self::acquire_named(dir, &format!(".runner.shard-{index}-of-{count}.lock"), false)?;
        own._experiment = Some(Box::new(shared));
        Ok(own)
    }

    /// Whether a live process holds a shard's lock of `dir` (other than the caller's own).
    pub fn shards_running(dir: &Path, except: &str) -> bool {
        fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(".runner.shard-") && name != except && Self::lock_holder(&e.path()).is_some()
        })
    }

    /// Locks run `run` of the experiment in `dir`: one writer per run directory, whether a
    /// local sweep, `run-one` (a Slurm task, perhaps requeued while the old one lingers) or
    /// a resumed run. The lock file sits beside the run (`.runner.run-<run>.lock`), since a
    /// restarted run's directory is replaced.
    pub fn acquire_run(dir: &Path, run: &str) -> Result<ExperimentLock> {
        Self::acquire_named(dir, &format!(".runner.run-{run}.lock"), false)
    }

    /// Locks `dir/name`, exclusively, or `shared` with other shared holders (who write
    /// nothing in it, and leave it in place).
    fn acquire_named(dir: &Path, name: &str, shared: bool) -> Result<ExperimentLock> {
        use std::fs::TryLockError;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(name);
        let mut busy = 0;
        for _ in 0..200 {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot create the lock {}", path.display()))?;
            let taken = if shared { file.try_lock_shared() } else { file.try_lock() };
            match taken {
                Ok(()) => {
                    // The holder we raced may have removed the file before unlocking it:
                    // only a lock on the file the path names now counts.
                    if !same_file(&file, &path) {
                        continue;
                    }
                    if shared {
                        return Ok(ExperimentLock { path, remove: false, _file: file, _experiment: None });
                    }
                    // A full disk shows here first (the lock is a run's first file):
                    // the error names the file, as every write's does.
                    let written = file
                        .set_len(0)
                        .and_then(|()| writeln!(file, "{} {}", std::process::id(), super::host_name()))
                        .and_then(|()| file.sync_all());
                    if let Err(e) = written {
                        let _ = fs::remove_file(&path);
                        return Err(e).with_context(|| format!("cannot write {}", path.display()));
                    }
                    return Ok(ExperimentLock { path, remove: true, _file: file, _experiment: None });
                }
                // A reader's brief look (`holder`) or a holder on its way out: try again
                // for a moment before refusing.
                Err(TryLockError::WouldBlock) if busy < 10 => {
                    busy += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut who = fs::read_to_string(&path).unwrap_or_default();
                    // Shards hold the experiment's lock shared and write their ids in their own.
                    if who.trim().is_empty() && name == LOCK {
                        who = fs::read_dir(dir)
                            .into_iter()
                            .flatten()
                            .flatten()
                            .filter(|e| e.file_name().to_string_lossy().starts_with(".runner.shard-"))
                            .find(|e| Self::lock_holder(&e.path()).is_some())
                            .and_then(|e| fs::read_to_string(e.path()).ok())
                            .map(|t| format!("{} (a shard of a sweep)", t.trim()))
                            .unwrap_or_default();
                    }
                    let mut parts = who.trim().splitn(2, char::is_whitespace);
                    let pid = parts.next().filter(|p| !p.is_empty()).unwrap_or("?");
                    let host = parts.next().map_or(String::new(), |h| format!(" on {}", h.trim()));
                    let what = match name.strip_prefix(".runner.run-").and_then(|n| n.strip_suffix(".lock")) {
                        Some(run) => format!("run {run} of {}", dir.display()),
                        None => dir.display().to_string(),
                    };
                    return Err(input_error(format!(
                        "{what} is being written by another runner (process {pid}{host}); wait for it to finish, or stop it. \
                         The lock is the operating system's: it is released the moment that process ends, and on a \
                         shared file system when its host's lease runs out, so a lock left by a dead process or host \
                         never needs breaking by hand"
                    )));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot lock {} (the file system must support file locks, as local disks, NFSv4 and Lustre do)",
                            path.display()
                        )
                    });
                }
            }
        }
        Err(input_error(format!("cannot lock {}: other runners keep taking it", dir.display())))
    }

    /// The process id of a live process training run `run` of `dir` (holding its lock).
    pub fn run_holder(dir: &Path, run: &str) -> Option<u32> {
        Self::lock_holder(&dir.join(format!(".runner.run-{run}.lock")))
    }

    /// The process id of a live process holding a lock of `dir` (the experiment's or a
    /// shard's), if any.
    pub fn holder(dir: &Path) -> Option<u32> {
        if let Some(pid) = Self::lock_holder(&dir.join(LOCK)) {
            return Some(pid);
        }
        fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".runner.") && name.ends_with(".lock") { Self::lock_holder(&e.path()) } else { None }
        })
    }

    /// The process id written in the lock at `path` when some process holds it (0 when
    /// it has not written its id yet); `None` when nobody does. (On a file system without
    /// locks nobody can hold one: `acquire` refuses there.)
    fn lock_holder(path: &Path) -> Option<u32> {
        let file = fs::File::open(path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let text = fs::read_to_string(path).unwrap_or_default();
                Some(text.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(0))
            }
            Err(std::fs::TryLockError::Error(_)) => None,
        }
    }
}

/// Whether the open `file` is the one `path` names now.
fn same_file(file: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Drop for ExperimentLock {
    fn drop(&mut self) {
        if self.remove {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, status: &str, accuracy: f64, val_loss: f64) -> RunRecord {
        RunRecord {
            info: RunInfo {
                name: name.into(),
                variant: name.into(),
                schedule: "constant".into(),
                params: Vec::new(),
                seed: 1,
                config_hash: None,
            },
            dir: PathBuf::from(name),
            status: status.into(),
            summary: None,
            last: Some(EvalRow {
                epoch: 3,
                step: 30,
                lr: 0.1,
                train_loss: val_loss * 0.9,
                val_loss,
                val_accuracy: Some(accuracy),
                val_rmse: None,
                val_bits_per_char: None,
                val_bits_per_byte: None,
                val_perplexity: None,
                seconds: 1.0,
            }),
        }
    }

    fn order(view: &ExperimentView) -> Vec<&str> {
        view.ranked().iter().map(|r| r.info.name.as_str()).collect()
    }

    #[test]
    fn ties_go_to_the_lower_validation_loss_and_the_metric_can_be_chosen() {
        let runs = vec![
            run("a", "completed", 0.995, 0.030),
            run("b", "completed", 0.995, 0.021),
            run("c", "interrupted", 0.999, 0.010),
            run("d", "collapsed", 0.1, 2.31),
            run("e", "completed", 0.995, 0.025),
        ];
        let view = ExperimentView::new("x".into(), PathBuf::from("x"), Vec::new(), runs);
        // Equal accuracies in file order a, b, e: by val_loss b, e, a; the collapsed run is
        // finished (ranked by its accuracy), the interrupted one comes after.
        assert_eq!(order(&view), ["b", "e", "a", "d", "c"]);
        let by_loss = view.clone().with_metric("train_loss").unwrap();
        assert_eq!(by_loss.metric_name(), "train_loss");
        assert_eq!(order(&by_loss), ["b", "e", "a", "d", "c"]);
        let e = view.clone().with_metric("accuracy").unwrap_err().to_string();
        assert!(e.contains("accepted: val_accuracy, val_loss, val_rmse, train_loss, val_bits_per_char, val_bits_per_byte, val_perplexity"), "{e}");
        let e = view.with_metric("val_rmse").unwrap_err().to_string();
        assert!(e.contains("no run of x has it (a classification, with no val_rmse)"), "{e}");
    }

    #[test]
    fn a_lock_refuses_a_second_holder_and_a_dead_ones_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = ExperimentLock::acquire(dir.path()).unwrap();
        assert_eq!(ExperimentLock::holder(dir.path()), Some(std::process::id()));
        assert!(ExperimentLock::acquire(dir.path()).is_err());
        drop(lock);
        assert!(!dir.path().join(LOCK).exists());
        // A lock file whose process is gone (killed: the kernel released its lock).
        fs::write(dir.path().join(LOCK), "4294967 elsewhere\n").unwrap();
        assert_eq!(ExperimentLock::holder(dir.path()), None);
        let _again = ExperimentLock::acquire(dir.path()).unwrap();
        assert_eq!(ExperimentLock::holder(dir.path()), Some(std::process::id()));
    }

    #[test]
    fn shards_lock_apart_and_count_as_holders() {
        let dir = tempfile::tempdir().unwrap();
        let a = ExperimentLock::acquire_shard(dir.path(), 0, 2).unwrap();
        let _b = ExperimentLock::acquire_shard(dir.path(), 1, 2).unwrap();
        assert!(ExperimentLock::acquire_shard(dir.path(), 0, 2).is_err());
        assert_eq!(ExperimentLock::holder(dir.path()), Some(std::process::id()));
        drop(a);
        let _again = ExperimentLock::acquire_shard(dir.path(), 0, 2).unwrap();
    }
}
