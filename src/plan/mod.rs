//! What to run: an experiment file (with its command-line overrides) read into resolved
//! runs. [`ExperimentConfig`] is one run's whole configuration, each part read by its own
//! component through [`crate::config`]'s reader; [`Experiment`] is every run a file
//! describes (one, or the expansion of its `[sweep]` table, see `expand.rs`). Above
//! `train` (it builds the trainer's [`RunSpec`]) and below the sweep that runs the runs.

mod expand;

pub use expand::{Experiment, MAX_RUNS, PlannedRun, RunInfo, load_experiment, load_experiment_with, parse_experiment};

use crate::config::{
    ConfigError, Override, Source, Table, TableReader, apply_overrides, check_name, check_run_name, hash_text,
    parse_tree, read_text,
};
use crate::data::{AugmentSpec, DatasetSpec, SOURCES};
use crate::model::{MODELS, ModelSpec};
use crate::optim::{OPTIMIZERS, OptimizerSpec};
use crate::schedule::ScheduleSpec;
use crate::suggest::did_you_mean;
use crate::train::{EarlyStopping, RunSpec, TrainSpec};
use std::path::Path;

/// A validated experiment file; every table but `[schedule]` has defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExperimentConfig {
    /// The experiment's name (the config's `name`, else the file stem).
    pub name: String,
    /// The run's directory name (the config's `run`, else the schedule kind).
    pub run: String,
    pub schedule: ScheduleSpec,
    pub dataset: DatasetSpec,
    pub model: ModelSpec,
    pub optimizer: OptimizerSpec,
    pub train: TrainSpec,
}

impl ExperimentConfig {
    /// The plain data the trainer needs.
    pub fn run_spec(&self) -> RunSpec {
        RunSpec {
            schedule: self.schedule.clone(),
            model: self.model.clone(),
            optimizer: self.optimizer.clone(),
            train: self.train.clone(),
            augment: self.dataset.augment,
        }
    }

    /// Where the schedule and the run it is part of disagree (see
    /// [`crate::schedule::fit_warnings`]), for a training set of `train_len` samples.
    pub fn schedule_warnings(&self, train_len: usize) -> Vec<String> {
        crate::schedule::fit_warnings(&self.schedule, &self.train.schedule_context(train_len), "schedule")
    }

    /// The fully resolved config as TOML: every default filled in, loadable again.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config always serialises")
    }

    /// The run's identity: a hash of its resolved config (16 hex digits of SHA-256).
    pub fn config_hash(&self) -> String {
        hash_text(&self.to_toml())
    }

    /// The identity of the run's variant: the hash of its resolved config less what tells
    /// the seeds of one variant apart (the training seed and the run's name). Runs that
    /// share it differ only by seed, so their results may be aggregated.
    pub fn variant_hash(&self) -> String {
        let mut c = self.clone();
        c.train.seed = 0;
        c.run = String::new();
        hash_text(&c.to_toml())
    }
}

/// Reads and validates the experiment file at `path`.
pub fn load(path: &Path) -> Result<ExperimentConfig, ConfigError> {
    let text = read_text(path)?;
    parse(path, &text)
}

/// [`load`] with command-line overrides written over the file.
pub fn load_with(path: &Path, overrides: &[Override]) -> Result<ExperimentConfig, ConfigError> {
    let text = read_text(path)?;
    parse_with(path, &text, overrides)
}

/// Validates the experiment in `text`, whose errors will name `path`. A file with a
/// `[sweep]` table is refused here: [`load_experiment`] expands it.
pub fn parse(path: &Path, text: &str) -> Result<ExperimentConfig, ConfigError> {
    parse_with(path, text, &[])
}

/// [`parse`] with command-line overrides written over the file.
pub fn parse_with(path: &Path, text: &str, overrides: &[Override]) -> Result<ExperimentConfig, ConfigError> {
    let mut table = parse_tree(path, text)?;
    let combined = apply_overrides(path, text, &mut table, overrides)?;
    let text = combined.as_str();
    if let Some(e) = table.get("sweep") {
        return Err(ConfigError::at(
            path,
            text,
            e.key_span.clone(),
            Some("sweep".into()),
            "makes this file a sweep of many runs; this command takes one experiment (use `runner run`, or `runner run --dry-run` to list the runs)".into(),
        ));
    }
    parse_table(path, text, &table)
}

/// Validates one experiment given as a tree whose spans point into `text`.
fn parse_table(path: &Path, text: &str, table: &Table) -> Result<ExperimentConfig, ConfigError> {
    let src = Source { file: path, text };
    let mut top = TableReader::new(table, None, "", src);
    let name = match top.string("name", "a string", "the experiment's name")? {
        Some((name, span)) => {
            check_name(&name).map_err(|why| top.error_at(span, "name", why))?;
            name
        }
        None => checked_default_name(path)?,
    };
    let Some(mut schedule_table) = top.table("schedule")? else {
        return Err(ConfigError::whole_file(
            path,
            "has no [schedule] table; add one, e.g.\n\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 2000\n\n(`runner schedules` lists every kind)".into(),
        ));
    };
    let schedule = ScheduleSpec::read_table(&mut schedule_table)?;
    schedule_table.finish()?;
    let run = match top.string("run", "a string", "the run's directory name")? {
        Some((run, span)) => {
            check_run_name(&run).map_err(|why| top.error_at(span, "run", why))?;
            run
        }
        None => schedule.kind.kind().to_string(),
    };
    // Data paths are relative to the config file; the resolved config holds them absolute,
    // so that it reruns from anywhere (its own run directory, a Slurm node's working dir).
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let base = base.as_path();
    let dataset = read_kinded(&mut top, "dataset", "digits", SOURCES, |k, r| {
        let spec = DatasetSpec::read(k, r, base)?;
        Some(spec.and_then(|mut spec| {
            if let Some(mut a) = r.table("augment")? {
                let image = spec.source.pixel_max().is_some();
                spec.augment = AugmentSpec::read(&mut a, k, image, spec.source.mirrored())?;
                a.finish()?;
            }
            Ok(spec)
        }))
    })?
    .unwrap_or_default();
    let model = read_kinded(&mut top, "model", "mlp", MODELS, ModelSpec::read)?.unwrap_or_default();
    let mut optimizer = read_kinded(&mut top, "optimizer", "sgd", OPTIMIZERS, OptimizerSpec::read)?;
    let train = match top.table("train")? {
        None => TrainSpec::default(),
        Some(mut r) => {
            let mut train = TrainSpec::read(&mut r)?;
            if let Some(mut es) = r.table("early_stopping")? {
                train.early_stopping = Some(EarlyStopping::read(&mut es)?);
                es.finish()?;
            }
            if let Some(o) = read_kinded(&mut r, "optimizer", "sgd", OPTIMIZERS, OptimizerSpec::read)? {
                if optimizer.is_some() {
                    return Err(r.error_at(
                        None,
                        "optimizer",
                        "is also given as [optimizer]; keep one of the two".into(),
                    ));
                }
                optimizer = Some(o);
            }
            r.finish()?;
            train
        }
    };
    top.finish()?;
    Ok(ExperimentConfig { name, run, schedule, dataset, model, optimizer: optimizer.unwrap_or_default(), train })
}

/// Reads an optional table with a `kind` key (default `default_kind`); `None` when absent.
fn read_kinded<'a, T>(
    parent: &mut TableReader<'a>,
    key: &'static str,
    default_kind: &'static str,
    kinds: &[&'static str],
    read: impl FnOnce(&str, &mut TableReader<'a>) -> Option<Result<T, ConfigError>>,
) -> Result<Option<T>, ConfigError> {
    let Some(mut r) = parent.table(key)? else { return Ok(None) };
    let (kind, span) = r.string("kind", "a kind", &format!("one of {}", kinds.join(", ")))?.unzip();
    let kind = kind.unwrap_or_else(|| default_kind.to_string());
    let Some(value) = read(&kind, &mut r) else {
        let hint =
            did_you_mean(&kind, kinds.iter().copied()).map_or(String::new(), |s| format!("; did you mean \"{s}\"?"));
        return Err(r.error_at(
            span.flatten(),
            "kind",
            format!("unknown {key} kind \"{kind}\"{hint} Accepted: {}", kinds.join(", ")),
        ));
    };
    let value = value?;
    r.finish()?;
    Ok(Some(value))
}

/// The file stem, the name of an experiment that does not give one.
fn default_name(path: &Path) -> String {
    path.file_stem().map_or_else(|| "experiment".to_string(), |s| s.to_string_lossy().into_owned())
}

/// The file stem as the experiment's name, refused (exit 2) when it cannot be one: a file
/// named `...toml` has the stem `..`, which would put results in the parent of `--out`.
fn checked_default_name(path: &Path) -> Result<String, ConfigError> {
    let name = default_name(path);
    check_name(&name).map_err(|why| {
        ConfigError::whole_file(
            path,
            format!(
                "the experiment is named after the file when it has no `name`, and the file's stem {why}; \
                 add e.g. name = \"my_experiment\" at the top of the file"
            ),
        )
    })?;
    Ok(name)
}
