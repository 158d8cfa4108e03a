//! Progress for a run: an indicatif bar on a terminal, occasional plain lines otherwise
//! (CI, pipes), nothing with `--quiet`.

use crate::train::{EvalRow, Recorder, StepRow};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// How progress is shown.
pub enum Progress {
    Bar(ProgressBar),
    Lines { total: u64, next_percent: u64, label: String },
    Quiet,
}

impl Progress {
    /// A display for a run of `total` steps labelled `label`.
    pub fn new(label: &str, total: u64, quiet: bool) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ETA {eta}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            Progress::Bar(bar)
        } else {
            Progress::Lines { total, next_percent: 0, label: label.to_string() }
        }
    }

    /// Ends the display with a last line.
    pub fn finish(&self, message: &str) {
        match self {
            Progress::Bar(bar) => bar.finish_with_message(message.to_string()),
            // Plain output ends with the caller's own summary line.
            Progress::Lines { .. } | Progress::Quiet => {}
        }
    }
}

impl Recorder for Progress {
    fn on_step(&mut self, row: &StepRow, epoch: u64, _logged: bool) -> Result<()> {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(row.step + 1);
                if row.step % 10 == 0 {
                    bar.set_message(format!("epoch {epoch} loss {:.4} lr {:.3e}", row.loss, row.lr));
                }
            }
            Progress::Lines { total, next_percent, label } => {
                let percent = (row.step + 1) * 100 / (*total).max(1);
                if percent >= *next_percent {
                    eprintln!(
                        "{label}: step {}/{total} epoch {epoch} loss {:.4} lr {:.3e}",
                        row.step + 1,
                        row.loss,
                        row.lr
                    );
                    *next_percent = percent / 25 * 25 + 25;
                }
            }
            Progress::Quiet => {}
        }
        Ok(())
    }

    fn on_eval(&mut self, _row: &EvalRow) -> Result<()> {
        Ok(())
    }
}

/// Sends every event to two recorders.
pub struct Tee<'a>(pub &'a mut dyn Recorder, pub &'a mut dyn Recorder);

impl Recorder for Tee<'_> {
    fn on_step(&mut self, row: &StepRow, epoch: u64, logged: bool) -> Result<()> {
        self.0.on_step(row, epoch, logged)?;
        self.1.on_step(row, epoch, logged)
    }

    fn on_eval(&mut self, row: &EvalRow) -> Result<()> {
        self.0.on_eval(row)?;
        self.1.on_eval(row)
    }
}
