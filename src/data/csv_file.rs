//! CSV data: numeric feature columns and one target column, by name or index.

use super::{Table, Task};
use crate::error::input_error;
use anyhow::Result;
use std::path::Path;

/// Reads `path`; `target` is a header name or a 0-based index ("" = the last column).
pub fn load(path: &Path, target: &str, header: bool, task: Task) -> Result<Table> {
    let shown = path.display();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(header)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| input_error(format!("cannot read the data file {shown}: {}", io_message(&e))))?;
    let names: Vec<String> = if header {
        reader.headers().map_err(|e| input_error(format!("{shown}: {e}")))?.iter().map(str::to_string).collect()
    } else {
        Vec::new()
    };
    let (mut x, mut y, mut width) = (Vec::new(), Vec::new(), if header { Some(names.len()) } else { None });
    let mut target_col = None;
    for (i, record) in reader.records().enumerate() {
        // Rows are numbered as a spreadsheet shows them: the header is row 1.
        let row = i + 1 + header as usize;
        let record = record.map_err(|e| input_error(format!("{shown}: row {row}: {e}")))?;
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let w = *width.get_or_insert(record.len());
        if record.len() != w {
            return Err(input_error(format!(
                "{shown}: row {row} has {} fields, but {} has {w}; every row needs the same number of columns",
                record.len(),
                if header { "the header" } else { "the first row" }
            )));
        }
        let t = match target_col {
            Some(t) => t,
            None => *target_col.insert(target_column(target, &names, w, path)?),
        };
        for (col, field) in record.iter().enumerate() {
            let v: f32 = field.parse().ok().filter(|v: &f32| v.is_finite()).ok_or_else(|| {
                input_error(format!("{shown}: row {row}, column {}: \"{field}\" is not a number", col + 1))
            })?;
            if col == t {
                if task == Task::Classification && (v < 0.0 || v.fract() != 0.0) {
                    return Err(input_error(format!(
                        "{shown}: row {row}, column {}: class labels must be whole numbers >= 0, found \"{field}\"",
                        col + 1
                    )));
                }
                y.push(v);
            } else {
                x.push(v);
            }
        }
    }
    if y.is_empty() {
        return Err(input_error(format!("{shown}: holds no data rows")));
    }
    let cols = width.unwrap_or(1) - 1;
    if cols == 0 {
        return Err(input_error(format!("{shown}: needs at least one feature column besides the target")));
    }
    Ok(Table { x, cols, y })
}

fn io_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    }
}

fn target_column(target: &str, names: &[String], width: usize, path: &Path) -> Result<usize> {
    if target.is_empty() {
        return Ok(width - 1);
    }
    if let Some(i) = names.iter().position(|n| n == target) {
        return Ok(i);
    }
    match target.parse::<usize>() {
        Ok(i) if i < width => Ok(i),
        _ => {
            let known = if names.is_empty() { format!("an index 0..{}", width - 1) } else { names.join(", ") };
            Err(input_error(format!("{}: no target column \"{target}\"; the columns are {known}", path.display())))
        }
    }
}
