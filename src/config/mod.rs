//! Experiment files: TOML in, validated plain data out.
//!
//! Every refusal is a [`ConfigError`] naming the file, line, column and key, and saying
//! what would be accepted.

mod error;
pub mod launch;
mod overrides;
mod reader;
mod sweep;
mod tree;

pub use error::ConfigError;
pub use overrides::Override;
pub use reader::{Source, TableReader};
pub use sweep::{Experiment, PlannedRun, RunInfo, load_experiment, load_experiment_with, parse_experiment};
pub use tree::{Entry, Node, Spanned, Table};

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

/// The text of the config file at `path`; a file that is not UTF-8 is refused at the
/// line and column of its first bad byte.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes =
        std::fs::read(path).map_err(|e| ConfigError::whole_file(path, format!("cannot read the config file: {e}")))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let shown = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let byte = e.as_bytes()[at];
            Err(ConfigError::at(
                path,
                &shown,
                Some(at..at + 1),
                None,
                format!("is not valid UTF-8: byte {byte:#04x} at offset {at}; save the file as UTF-8"),
            ))
        }
    }
}

/// 16 hex digits of the SHA-256 of `text`.
pub fn hash_text(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The dotted keys whose values differ between two resolved configs (TOML texts), with
/// both values: `train.epochs 15 -> 16`. Empty when either does not parse.
pub fn changed_keys(old: &str, new: &str) -> Vec<String> {
    fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let (Ok(a), Ok(b)) = (old.parse::<toml::Table>(), new.parse::<toml::Table>()) else { return Vec::new() };
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    flatten("", &toml::Value::Table(a), &mut fa);
    flatten("", &toml::Value::Table(b), &mut fb);
    let mut keys: Vec<&String> = fa.iter().chain(fb.iter()).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    let get = |f: &[(String, String)], k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (get(&fa, k), get(&fb, k));
            (x != y).then(|| {
                format!("{k} {} -> {}", x.unwrap_or_else(|| "(unset)".into()), y.unwrap_or_else(|| "(unset)".into()))
            })
        })
        .collect()
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
    let combined = overrides::apply(path, text, &mut table, overrides)?;
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

/// The tree of `text`, or its syntax error.
fn parse_tree(path: &Path, text: &str) -> Result<Table, ConfigError> {
    tree::parse(text)
        .map_err(|(message, span)| ConfigError::at(path, text, span, None, format!("is not valid TOML: {message}")))
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

/// The longest name a run or experiment may have (a directory name; most file systems
/// allow 255 bytes, and run names grow with swept values).
pub const MAX_NAME_LEN: usize = 100;

/// What runner writes in an experiment's directory beside its runs (archived results,
/// Slurm's plan and records, the plan and summary); charts add `<chart>.png` and `.svg`,
/// locks and temporary files start with '.'. No run may be named so.
pub const RESERVED_RUN_NAMES: &[&str] = &["replaced", "plan", "slurm", "runs.json", "summary.csv"];

/// The charts `runner report` writes beside the runs, as `<chart>.png` and `<chart>.svg`.
pub const CHARTS: &[&str] = &["lr", "val_loss", "val_accuracy", "val_rmse", "val_bits_per_char", "final", "grid"];

/// A run's name: a directory beside runner's own files in the experiment's directory, so
/// none of theirs (see [`RESERVED_RUN_NAMES`]).
pub fn check_run_name(name: &str) -> Result<(), String> {
    check_name(name)?;
    let chart = name.rsplit_once('.').is_some_and(|(stem, ext)| CHARTS.contains(&stem) && matches!(ext, "png" | "svg"));
    if name.starts_with('.') || chart || RESERVED_RUN_NAMES.contains(&name) {
        return Err(format!(
            "\"{name}\" is a name runner uses beside the runs of an experiment, where it would overwrite or delete \
             results; reserved: {}, the charts' <chart>.png and .svg ({}) and names starting with '.'",
            RESERVED_RUN_NAMES.join(", "),
            CHARTS.join(", ")
        ));
    }
    Ok(())
}

/// A name becomes a directory: keep it to one safe path component.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(format!("must be a non-empty name of letters, digits, '-', '_' or '.', found \"{name}\""));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_NAME_LEN} characters (it names a directory), found {} (\"{}...\")",
            name.len(),
            &name[..20]
        ));
    }
    Ok(())
}
