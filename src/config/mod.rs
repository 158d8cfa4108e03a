//! Experiment files at the bottom of the data's path: TOML text in, checked plain values
//! out. The [`TableReader`] reads a table through [`crate::params::ParamSource`], so each
//! component (schedule, data set, model, optimizer, training) reads its own options
//! without knowing TOML; [`crate::plan`] puts a whole experiment together from them.
//!
//! Every refusal is a [`ConfigError`] naming the file, line, column and key, and saying
//! what would be accepted. This module imports nothing above [`crate::params`].

mod error;
pub mod launch;
mod overrides;
mod reader;
mod tree;

pub use error::ConfigError;
pub use overrides::{Override, apply as apply_overrides};
pub use reader::{Source, TableReader};
pub use tree::{Entry, Node, Spanned, Table};

use std::path::Path;

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

/// The tree of `text`, or its syntax error.
pub fn parse_tree(path: &Path, text: &str) -> Result<Table, ConfigError> {
    tree::parse(text)
        .map_err(|(message, span)| ConfigError::at(path, text, span, None, format!("is not valid TOML: {message}")))
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
