//! A run's directory on disk: `config.toml`, `metrics.csv`, `steps.csv` and, written last
//! and atomically, `summary.json`. A `summary.json` that exists means a finished run.

use crate::error::input_error;
use crate::train::{EvalRow, Outcome, Recorder, StepRow};
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
    #[serde(flatten)]
    pub outcome: &'a Outcome,
}

/// An open run directory with its CSV writers.
pub struct RunDir {
    pub path: PathBuf,
    metrics: csv::Writer<BufWriter<File>>,
    steps: csv::Writer<BufWriter<File>>,
}

impl RunDir {
    /// Creates `dir` with the resolved config; refuses a directory holding an earlier run
    /// unless `force`, in which case the earlier files are removed first.
    pub fn create(dir: &Path, config_toml: &str, force: bool) -> Result<RunDir> {
        if dir.exists() && fs::read_dir(dir)?.next().is_some() {
            if !force {
                return Err(input_error(format!(
                    "{} already holds results of an earlier run; pass --force to replace them, or --out DIR to write elsewhere",
                    dir.display()
                )));
            }
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::write(dir.join("config.toml"), config_toml)?;
        let open = |name: &str| -> Result<csv::Writer<BufWriter<File>>> {
            let f =
                File::create(dir.join(name)).with_context(|| format!("cannot create {}", dir.join(name).display()))?;
            Ok(csv::Writer::from_writer(BufWriter::new(f)))
        };
        let mut metrics = open("metrics.csv")?;
        metrics.write_record([
            "epoch",
            "step",
            "lr",
            "train_loss",
            "val_loss",
            "val_accuracy",
            "val_rmse",
            "seconds",
        ])?;
        let mut steps = open("steps.csv")?;
        steps.write_record(["step", "lr", "loss"])?;
        Ok(RunDir { path: dir.to_path_buf(), metrics, steps })
    }

    /// Flushes the CSVs, then writes summary.json through a temporary file and a rename.
    pub fn finish(mut self, summary: &RunSummary<'_>) -> Result<()> {
        self.metrics.flush()?;
        self.steps.flush()?;
        let tmp = self.path.join(".summary.json.tmp");
        let mut f = File::create(&tmp)?;
        serde_json::to_writer_pretty(&mut f, summary)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, self.path.join("summary.json"))?;
        Ok(())
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

impl Recorder for RunDir {
    fn on_step(&mut self, row: &StepRow, _epoch: u64, logged: bool) -> Result<()> {
        if logged {
            self.steps.write_record([row.step.to_string(), row.lr.to_string(), row.loss.to_string()])?;
        }
        Ok(())
    }

    fn on_eval(&mut self, r: &EvalRow) -> Result<()> {
        self.metrics.write_record([
            r.epoch.to_string(),
            r.step.to_string(),
            r.lr.to_string(),
            r.train_loss.to_string(),
            r.val_loss.to_string(),
            opt(r.val_accuracy),
            opt(r.val_rmse),
            format!("{:.3}", r.seconds),
        ])?;
        // Each evaluation is on disk as soon as it happens, for `runner report` on a live run.
        self.metrics.flush()?;
        Ok(())
    }
}
