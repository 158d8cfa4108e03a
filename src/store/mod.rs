//! What a run leaves on disk. A run's directory holds `config.toml`, `metrics.csv`,
//! `steps.csv`, TensorBoard events, checkpoints and, written last and atomically,
//! `summary.json`: a `summary.json` that exists means a finished run. [`RunDir`] is the
//! trainer's [`Recorder`] that writes them; the lock keeps two processes from writing one
//! experiment or run. Reading a whole experiment back is [`crate::results`]'.

pub mod checkpoints;
mod fork;
mod lock;
mod rows;
pub mod tensorboard;

pub use fork::{fork, snapshot};
pub use lock::ExperimentLock;
pub use rows::{csv_problems, read_metrics, read_steps};

use crate::train::{EvalRow, Outcome, Recorder, Status, StepRow};
use anyhow::{Context as _, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What summary.json holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary<'a> {
    pub experiment: &'a str,
    pub run: &'a str,
    pub seed: u64,
    pub threads: u64,
    pub runner_version: &'static str,
    /// The machine that ran it (a cluster node's name under Slurm).
    pub host: &'a str,
    /// When it started, in seconds since the Unix epoch.
    pub started_at: f64,
    /// Why a failed run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// Why an interrupted run was stopped (a signal; under Slurm, its time limit or not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<&'a str>,
    /// The hash of the resolved config (config.toml) this run trained.
    pub config_hash: &'a str,
    /// The hash of that config less the seed and the run's name: runs sharing it differ
    /// only by seed (unknown for a run whose process died without a word).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant_hash: Option<&'a str>,
    /// Where the schedule and the run disagree (a decay cut off by the run, ...).
    pub warnings: &'a [String],
    /// Why a completed classifier is flagged as collapsed (back to chance, or flat at the
    /// uniform prediction's loss); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapsed: Option<&'a str>,
    /// The step this attempt began at, when not 0: its own checkpoint's, or a fork's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub began_at_step: Option<u64>,
    /// The run that trained its first steps (up to `began_at_step`) for it: a prefix
    /// the sweep's runs share, trained once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_from: Option<&'a str>,
    #[serde(flatten)]
    pub outcome: &'a Outcome,
}

/// summary.json read back.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct StoredSummary {
    pub experiment: String,
    pub run: String,
    pub seed: u64,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub started_at: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub config_hash: Option<String>,
    #[serde(default)]
    pub variant_hash: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub collapsed: Option<String>,
    #[serde(default)]
    pub began_at_step: Option<u64>,
    #[serde(default)]
    pub shared_from: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Reads `dir/summary.json`; `None` when there is none (a run not finished) or it cannot be read.
pub fn read_summary(dir: &Path) -> Option<StoredSummary> {
    let text = fs::read_to_string(dir.join("summary.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Refuses, before anything is written, an output place that cannot hold the experiment:
/// `--out` a file or a symbolic link to nothing, or a file where the experiment's
/// directory goes (each said with its path, where the OS would say only "Not a
/// directory" or "File exists"). A file where one run's directory goes fails that run
/// alone, naming it, and the others go on.
pub fn check_out(out: &Path, experiment: &str) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(out)
        && meta.file_type().is_symlink()
        && !out.exists()
    {
        let target = fs::read_link(out).map_or_else(|_| "?".into(), |t| t.display().to_string());
        return Err(crate::error::input_error(format!(
            "--out {} is a symbolic link to {target}, which does not exist: create its target, or give another --out",
            out.display()
        )));
    }
    let file_at = |path: &Path, what: String| -> Result<()> {
        if path.exists() && !path.is_dir() {
            return Err(crate::error::input_error(format!(
                "{} is a file where {what} goes: move it away, or give another --out",
                path.display()
            )));
        }
        Ok(())
    };
    file_at(out, "the output directory (--out)".into())?;
    file_at(&out.join(experiment), format!("the experiment {experiment}'s directory"))
}

/// Whether `dir` holds a finished run (completed or diverged) of exactly `config_toml`,
/// which a resumed sweep keeps.
pub fn is_finished(dir: &Path, config_toml: &str) -> bool {
    let finished = read_summary(dir).is_some_and(|s| s.outcome.status.is_final());
    finished && holds_config(dir, config_toml)
}

/// Whether the run directory `dir` was written by a run of exactly `config_toml`.
pub fn holds_config(dir: &Path, config_toml: &str) -> bool {
    fs::read_to_string(dir.join("config.toml")).is_ok_and(|c| c == config_toml)
}

/// Where a run of `config_toml` in `dir` would continue: the latest usable checkpoint of
/// that same config (`Ok(None)`: none, or another config's directory; `Err`: checkpoints
/// there, none usable, and why each was skipped).
pub fn resume_point(dir: &Path, config_toml: &str) -> Result<Option<checkpoints::Loaded>, Vec<String>> {
    if !holds_config(dir, config_toml) {
        return Ok(None);
    }
    checkpoints::latest(dir, &crate::config::hash_text(config_toml))
}

/// The config of the finished run (completed or diverged) `dir` holds, when it differs
/// from `config_toml`: a rerun would replace results of another config.
pub fn finished_with_other_config(dir: &Path, config_toml: &str) -> Option<String> {
    let finished = read_summary(dir).is_some_and(|s| s.outcome.status.is_final());
    let old = fs::read_to_string(dir.join("config.toml")).ok()?;
    (finished && old != config_toml).then_some(old)
}

/// Where a finished run of another config is kept when a rerun replaces it:
/// `<experiment>/replaced/<run>-<its config hash>`.
pub fn replaced_path(dir: &Path, old_config: &str) -> PathBuf {
    let name = dir.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    let parent = dir.parent().unwrap_or(Path::new("."));
    parent.join("replaced").join(format!("{name}-{}", crate::config::hash_text(old_config)))
}

/// This machine's name.
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Writes the summary of a run whose process ended without writing one (killed by a
/// scheduler, a lost node): status failed with `error`, and what its CSVs recorded. A
/// run that has a summary is left alone; a run never started gets a directory holding
/// only this summary. Rerunning the sweep reruns it.
pub fn write_lost_summary(dir: &Path, experiment: &str, run: &str, seed: u64, error: &str) -> Result<()> {
    if dir.join("summary.json").exists() {
        return Ok(());
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config_hash =
        fs::read_to_string(dir.join("config.toml")).map(|t| crate::config::hash_text(&t)).unwrap_or_default();
    let metrics = read_metrics(dir).unwrap_or_default();
    let steps = read_steps(dir).unwrap_or_default();
    let last_step = steps.last().map(|s| s.step).into_iter().chain(metrics.last().map(|m| m.step)).max();
    let outcome = Outcome {
        status: Status::Failed,
        steps: last_step.map_or(0, |s| s + 1),
        // Unknown without loading the data; the run's config.toml has what decides it.
        total_steps: 0,
        epochs: metrics.last().map_or(0, |m| m.epoch),
        diverged_at_step: None,
        early_stopped: false,
        final_metrics: metrics.last().copied(),
        best_metrics: None,
        best_by: String::new(),
        wall_seconds: metrics.last().map_or(0.0, |m| m.seconds),
        samples_per_second: 0.0,
        parameters: 0,
        validation_samples: 0,
        device: String::new(),
    };
    let summary = RunSummary {
        experiment,
        run,
        seed,
        threads: 0,
        runner_version: env!("CARGO_PKG_VERSION"),
        host: "",
        started_at: 0.0,
        error: Some(error),
        stop_reason: None,
        config_hash: &config_hash,
        variant_hash: None,
        warnings: &[],
        collapsed: None,
        began_at_step: None,
        shared_from: None,
        outcome: &outcome,
    };
    write_json_atomic(&dir.join("summary.json"), &summary)
}

/// Writes `value` as pretty JSON (ending in a newline) to `path`, atomically.
pub fn write_json_atomic(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(value)?;
    json.push(b'\n');
    write_atomic(path, &json)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader (or a
/// process killed half-way) never sees a partial file.
///
/// On failure (a full disk, a read-only directory) the temporary file is removed, the file
/// at `path` is left as it was, and the error names `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(anyhow::anyhow!("cannot write {}: {e}", path.display()));
    }
    Ok(())
}

/// An open run directory with its CSV writers.
pub struct RunDir {
    pub path: PathBuf,
    metrics: csv::Writer<BufWriter<File>>,
    steps: csv::Writer<BufWriter<File>>,
    /// What was recorded so far, for the summary of a run that fails part-way.
    last_step: Option<u64>,
    last_epoch: u64,
    last_eval: Option<EvalRow>,
    /// When metrics.csv was last flushed to disk.
    flushed: std::time::Instant,
    /// The hash of the config this run trains (in every checkpoint).
    config_hash: String,
    /// Checkpoints kept.
    keep: u64,
    /// The run's TensorBoard event file.
    events: tensorboard::EventWriter,
}

/// The files are flushed with an evaluation unless they were flushed less than this many
/// seconds before: `runner report` on a live run sees every evaluation of a run whose
/// evaluations are further apart, and a short run does not write once per evaluation.
const FLUSH_SECONDS: f64 = 0.5;

/// Between evaluations, steps.csv and the TensorBoard events are flushed with the first
/// logged step this many seconds after the last flush: `tail -f`, pandas and TensorBoard
/// follow a run live.
const LIVE_SECONDS: f64 = 2.0;

impl RunDir {
    /// Creates `dir` with the resolved config, removing whatever an earlier attempt left
    /// there (whether to keep earlier results is the caller's decision).
    /// A finished run of another config is never lost: it moves to
    /// [`replaced_path`] instead.
    pub fn create(dir: &Path, config_toml: &str) -> Result<RunDir> {
        if let Some(old) = finished_with_other_config(dir, config_toml) {
            let to = replaced_path(dir, &old);
            if to.exists() {
                fs::remove_dir_all(&to).with_context(|| format!("cannot remove {}", to.display()))?;
            }
            fs::create_dir_all(to.parent().unwrap_or(dir))?;
            fs::rename(dir, &to).with_context(|| format!("cannot move {} to {}", dir.display(), to.display()))?;
        }
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config = dir.join("config.toml");
        fs::write(&config, config_toml).with_context(|| format!("cannot write {}", config.display()))?;
        let open = |name: &str| -> Result<csv::Writer<BufWriter<File>>> {
            let f =
                File::create(dir.join(name)).with_context(|| format!("cannot create {}", dir.join(name).display()))?;
            Ok(csv::Writer::from_writer(BufWriter::new(f)))
        };
        let mut metrics = open("metrics.csv")?;
        let header_error = |name: &str| format!("cannot write {}", dir.join(name).display());
        metrics
            .write_record([
                "epoch",
                "step",
                "lr",
                "train_loss",
                "val_loss",
                "val_accuracy",
                "val_rmse",
                "val_bits_per_char",
                "val_bits_per_byte",
                "val_perplexity",
                "seconds",
            ])
            .with_context(|| header_error("metrics.csv"))?;
        let mut steps = open("steps.csv")?;
        steps.write_record(["step", "lr", "loss"]).with_context(|| header_error("steps.csv"))?;
        let events = tensorboard::EventWriter::create(dir)?;
        Ok(RunDir {
            path: dir.to_path_buf(),
            metrics,
            steps,
            last_step: None,
            last_epoch: 0,
            last_eval: None,
            flushed: std::time::Instant::now(),
            config_hash: crate::config::hash_text(config_toml),
            keep: 2,
            events,
        })
    }

    /// Reopens the run directory `dir` to continue from the checkpoint `meta` describes:
    /// metrics.csv and steps.csv are cut back to what the run had written then (rows of the
    /// steps after it are trained again, not duplicated), then appended to.
    pub fn reopen(dir: &Path, meta: &checkpoints::CheckpointMeta) -> Result<RunDir> {
        let open = |name: &str, len: u64| -> Result<csv::Writer<BufWriter<File>>> {
            let path = dir.join(name);
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {} to resume", path.display()))?;
            f.set_len(len).with_context(|| format!("cannot trim {}", path.display()))?;
            let f = fs::OpenOptions::new().append(true).open(&path)?;
            Ok(csv::WriterBuilder::new().has_headers(false).from_writer(BufWriter::new(f)))
        };
        let _ = fs::remove_file(dir.join("summary.json"));
        let config = fs::read_to_string(dir.join("config.toml")).unwrap_or_default();
        // The event file cut back as the CSVs are; a checkpoint of a version that wrote
        // none (or a file gone missing) starts a new one.
        let events = match (tensorboard::find(dir), meta.events_bytes) {
            (Some(path), Some(len)) => tensorboard::EventWriter::reopen(&path, len)?,
            _ => tensorboard::EventWriter::create(dir)?,
        };
        Ok(RunDir {
            path: dir.to_path_buf(),
            metrics: open("metrics.csv", meta.metrics_bytes)?,
            steps: open("steps.csv", meta.steps_bytes)?,
            last_step: meta.step.checked_sub(1),
            last_epoch: meta.epoch,
            last_eval: meta.final_row,
            flushed: std::time::Instant::now(),
            config_hash: crate::config::hash_text(&config),
            keep: 2,
            events,
        })
    }

    /// Keeps the latest `keep` checkpoints (default 2).
    pub fn keep_checkpoints(mut self, keep: u64) -> RunDir {
        self.keep = keep;
        self
    }

    /// The outcome of a run that failed after recording what this directory holds.
    pub fn failed_outcome(&self, total_steps: u64, wall_seconds: f64) -> Outcome {
        Outcome {
            status: Status::Failed,
            steps: self.last_step.map_or(0, |s| s + 1),
            total_steps,
            epochs: self.last_epoch,
            diverged_at_step: None,
            early_stopped: false,
            final_metrics: self.last_eval,
            best_metrics: None,
            best_by: String::new(),
            wall_seconds,
            samples_per_second: 0.0,
            parameters: 0,
            validation_samples: 0,
            device: String::new(),
        }
    }

    /// Writes what the run recorded so far to its files (metrics.csv, steps.csv, events).
    pub fn flush(&mut self) -> Result<()> {
        let (metrics, steps) = (self.path.join("metrics.csv"), self.path.join("steps.csv"));
        self.metrics.flush().with_context(|| format!("cannot write {}", metrics.display()))?;
        self.steps.flush().with_context(|| format!("cannot write {}", steps.display()))?;
        self.events.flush()?;
        self.flushed = std::time::Instant::now();
        Ok(())
    }

    /// The run's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run's TensorBoard event file.
    pub fn events_path(&self) -> &Path {
        self.events.path()
    }

    /// Records the run's hyperparameters (key, value) for TensorBoard's HParams tab, its
    /// seeds grouped under `group`; once, when the run starts (a resumed run keeps them).
    pub fn hparams(&mut self, group: &str, hparams: &[(String, String)]) -> Result<()> {
        self.events.session_start(group, hparams)?;
        self.events.flush()
    }

    /// Flushes the files and writes summary.json atomically (and, for a run that ended
    /// rather than stopped, its end for TensorBoard's HParams tab).
    pub fn finish(mut self, summary: &RunSummary<'_>) -> Result<()> {
        let status = summary.outcome.status;
        if status != Status::Interrupted {
            self.events.session_end(status == Status::Completed)?;
        }
        let (metrics, steps) = (self.path.join("metrics.csv"), self.path.join("steps.csv"));
        self.metrics.flush().with_context(|| format!("cannot write {}", metrics.display()))?;
        self.steps.flush().with_context(|| format!("cannot write {}", steps.display()))?;
        self.events.flush()?;
        write_json_atomic(&self.path.join("summary.json"), summary)
    }
}

/// An optional number as a CSV cell (empty when absent).
pub(crate) fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

impl Recorder for RunDir {
    fn checkpoint(&mut self, ck: &crate::train::Checkpoint) -> Result<()> {
        let (metrics, steps) = (self.path.join("metrics.csv"), self.path.join("steps.csv"));
        self.metrics.flush().with_context(|| format!("cannot write {}", metrics.display()))?;
        self.steps.flush().with_context(|| format!("cannot write {}", steps.display()))?;
        self.events.flush()?;
        self.flushed = std::time::Instant::now();
        let len = |p: &Path| fs::metadata(p).map(|m| m.len()).with_context(|| format!("cannot read {}", p.display()));
        let events = len(self.events.path())?;
        checkpoints::write(&self.path, ck, &self.config_hash, (len(&metrics)?, len(&steps)?, Some(events)), self.keep)
    }

    fn save_model(&mut self, name: &str, params: &[(String, candle_core::Tensor)]) -> Result<()> {
        checkpoints::write_model(&self.path, name, params)
    }

    fn on_step(&mut self, row: &StepRow, epoch: u64, logged: bool) -> Result<()> {
        (self.last_step, self.last_epoch) = (Some(row.step), epoch);
        if logged {
            self.steps
                .write_record([row.step.to_string(), row.lr.to_string(), row.loss.to_string()])
                .with_context(|| format!("cannot write {}", self.path.join("steps.csv").display()))?;
            self.events.scalars(row.step, &[("lr", row.lr), ("train_loss", row.loss)])?;
            // See LIVE_SECONDS (a logged step at most every log_every steps: the clock is
            // read that often, not every step).
            if self.flushed.elapsed().as_secs_f64() >= LIVE_SECONDS {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn on_eval(&mut self, r: &EvalRow) -> Result<()> {
        self.last_eval = Some(*r);
        let file = || format!("cannot write {}", self.path.join("metrics.csv").display());
        self.metrics
            .write_record([
                r.epoch.to_string(),
                r.step.to_string(),
                r.lr.to_string(),
                r.train_loss.to_string(),
                r.val_loss.to_string(),
                opt(r.val_accuracy),
                opt(r.val_rmse),
                opt(r.val_bits_per_char),
                opt(r.val_bits_per_byte),
                opt(r.val_perplexity),
                format!("{:.3}", r.seconds),
            ])
            .with_context(file)?;
        let scalars: Vec<(&str, f64)> = [
            ("val_loss", Some(r.val_loss)),
            ("val_accuracy", r.val_accuracy),
            ("val_rmse", r.val_rmse),
            ("val_bits_per_char", r.val_bits_per_char),
            ("val_bits_per_byte", r.val_bits_per_byte),
            ("val_perplexity", r.val_perplexity),
        ]
        .into_iter()
        .filter_map(|(tag, v)| Some((tag, v?)))
        .collect();
        self.events.scalars(r.step, &scalars)?;
        // See FLUSH_SECONDS; whatever is left is flushed by `finish`.
        if self.flushed.elapsed().as_secs_f64() >= FLUSH_SECONDS {
            self.flush()?;
        }
        Ok(())
    }
}
