//! Reading a run's metrics.csv and steps.csv back.

use crate::train::{EvalRow, StepRow};
use anyhow::{Context as _, Result};
use std::path::Path;

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
