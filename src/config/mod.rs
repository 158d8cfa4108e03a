//! Experiment files: TOML in, validated plain data out.
//!
//! Every refusal is a [`ConfigError`] naming the file, line, column and key, and saying
//! what would be accepted.

mod error;
mod reader;
mod tree;

pub use error::ConfigError;
pub use reader::{Source, TableReader, read_schedule};
pub use tree::{Entry, Node, Spanned, Table};

use crate::schedule::ScheduleSpec;
use std::path::Path;

/// A validated experiment file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExperimentConfig {
    /// The experiment's name (the config's `name`, else the file stem).
    pub name: String,
    pub schedule: ScheduleSpec,
}

/// Reads and validates the experiment file at `path`.
pub fn load(path: &Path) -> Result<ExperimentConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read the config file: {e}")))?;
    parse(path, &text)
}

/// Validates the experiment in `text`, whose errors will name `path`.
pub fn parse(path: &Path, text: &str) -> Result<ExperimentConfig, ConfigError> {
    let table = tree::parse(text)
        .map_err(|(message, span)| ConfigError::at(path, text, span, None, format!("is not valid TOML: {message}")))?;
    let src = Source { file: path, text };
    let mut top = TableReader::new(&table, None, "", src);
    let name = match top.string("name", "a string", "the experiment's name")? {
        Some((name, span)) => {
            check_name(&name).map_err(|why| top.error_at(span, "name", why))?;
            name
        }
        None => default_name(path),
    };
    let Some(mut schedule_table) = top.table("schedule")? else {
        return Err(ConfigError::whole_file(
            path,
            "has no [schedule] table; add one, e.g.\n\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 2000\n\n(`runner schedules` lists every kind)".into(),
        ));
    };
    let schedule = read_schedule(&mut schedule_table)?;
    schedule_table.finish()?;
    top.finish()?;
    Ok(ExperimentConfig { name, schedule })
}

/// The file stem, the name of an experiment that does not give one.
fn default_name(path: &Path) -> String {
    path.file_stem().map_or_else(|| "experiment".to_string(), |s| s.to_string_lossy().into_owned())
}

/// A name becomes a directory: keep it to one safe path component.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("must be a non-empty name of letters, digits, '-', '_' or '.', found \"{name}\""))
    }
}
