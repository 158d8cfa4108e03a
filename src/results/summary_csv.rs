//! `summary.csv`: one row per run of an experiment, best first by its metric.

use super::experiment::ExperimentView;
use crate::store::{opt, write_atomic};
use anyhow::Result;

/// The header and rows of summary.csv, best first.
pub fn summary_rows(view: &ExperimentView) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = vec!["run".into(), "schedule".into()];
    header.extend(view.columns.iter().cloned());
    header.extend(
        [
            "seed",
            "status",
            "final_val_loss",
            "final_val_accuracy",
            "final_val_rmse",
            "best_val_accuracy",
            "best_epoch",
            "steps",
            "wall_seconds",
            "config_hash",
        ]
        .map(String::from),
    );
    let rows = view
        .ranked()
        .into_iter()
        .map(|r| {
            let mut row = vec![r.info.name.clone(), r.info.schedule.clone()];
            row.extend(r.info.params.iter().cloned());
            row.resize(2 + view.columns.len(), String::new());
            let outcome = r.summary.as_ref().map(|s| &s.outcome);
            let best = outcome.and_then(|o| o.best_metrics);
            row.extend([
                r.info.seed.to_string(),
                r.status.clone(),
                opt(r.last.map(|e| e.val_loss)),
                opt(r.last.and_then(|e| e.val_accuracy)),
                opt(r.last.and_then(|e| e.val_rmse)),
                opt(best.and_then(|e| e.val_accuracy)),
                best.map_or_else(String::new, |e| e.epoch.to_string()),
                outcome
                    .map_or_else(|| r.last.map_or_else(String::new, |e| e.step.to_string()), |o| o.steps.to_string()),
                outcome.map_or_else(String::new, |o| format!("{:.3}", o.wall_seconds)),
                r.summary
                    .as_ref()
                    .and_then(|s| s.config_hash.clone())
                    .or_else(|| r.info.config_hash.clone())
                    .unwrap_or_default(),
            ]);
            row
        })
        .collect();
    (header, rows)
}

/// Writes `summary.csv` into the experiment's directory, atomically. When it cannot (a
/// full disk), the earlier summary.csv is removed rather than left to show finished runs
/// as pending, and the error says how to write it later.
pub fn write_summary_csv(view: &ExperimentView) -> Result<()> {
    let (header, rows) = summary_rows(view);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    for row in rows {
        w.write_record(&row)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = view.dir.join("summary.csv");
    write_atomic(&path, &bytes).map_err(|e| {
        let _ = std::fs::remove_file(&path);
        e.context(format!(
            "summary.csv is not up to date, so the old one was removed; `runner collect {}` writes it again",
            view.dir.display()
        ))
    })
}
