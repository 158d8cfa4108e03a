//! Progress on stderr: for each run an indicatif bar on a terminal, occasional plain lines
//! otherwise (CI, pipes), nothing with `--quiet`; for a sweep, a [`Board`]: one line per
//! active run above an overall bar (runs done, failed, ETA), or a plain line per finished run.

use crate::train::{EvalRow, Recorder, StepRow};
use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

/// How progress is shown.
pub enum Progress {
    /// A bar, and the last evaluation's metric for its message.
    Bar(ProgressBar, String),
    Lines {
        total: u64,
        next_percent: u64,
        label: String,
        last_eval: String,
    },
    Quiet,
}

/// A loss or rate as a reader wants it: four decimals from 0.01 up, three significant
/// digits below (`3.21e-5`, never `0.0000`).
pub fn readable(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || x.abs() >= 0.01 { format!("{x:.4}") } else { format!("{x:.2e}") }
}

/// The metric of an evaluation a progress line shows: accuracy for classifiers, bits per
/// char (byte) for language models, else the validation loss.
fn eval_text(row: &EvalRow) -> String {
    if let Some(b) = row.val_bits_per_char {
        format!(" val_loss {} ({b:.3} bits/char)", readable(row.val_loss))
    } else if let Some(b) = row.val_bits_per_byte {
        format!(" val_loss {} ({b:.3} bits/byte)", readable(row.val_loss))
    } else if let Some(a) = row.val_accuracy {
        format!(" val_acc {a:.4}")
    } else {
        format!(" val_loss {}", readable(row.val_loss))
    }
}

/// A run's bar message: where it is and the last evaluation's metric.
fn bar_message(epoch: u64, loss: f64, lr: f64, last_eval: &str) -> String {
    format!("epoch {epoch} loss {} lr {lr:.3e}{last_eval}", readable(loss))
}

fn run_bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        // The message last and `wide`: cut to the terminal's width, so a line never wraps
        // (a wrapped line is left behind as a stale frame when the bars redraw).
        ProgressStyle::with_template("{prefix} [{bar:20}] {pos}/{len} ETA {eta} {wide_msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    // Long run names (a sweep's grid values) cut to 24 characters, so a bar fits a line
    // of 80 columns with room for its message.
    let short: String = if label.chars().count() > 24 {
        label.chars().take(23).chain(std::iter::once('…')).collect()
    } else {
        label.to_string()
    };
    bar.set_prefix(short);
    bar
}

impl Progress {
    /// A display for a run of `total` steps labelled `label`.
    pub fn new(label: &str, total: u64, quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bar(run_bar(label, total), String::new())
        } else {
            Progress::Lines { total, next_percent: 0, label: label.to_string(), last_eval: String::new() }
        }
    }

    /// Ends the display with a last line.
    pub fn finish(&self, message: &str) {
        match self {
            Progress::Bar(bar, _) => bar.finish_with_message(message.to_string()),
            // Plain output ends with the caller's own summary line.
            Progress::Lines { .. } | Progress::Quiet => {}
        }
    }
}

impl Recorder for Progress {
    fn on_step(&mut self, row: &StepRow, epoch: u64, _logged: bool) -> Result<()> {
        match self {
            Progress::Bar(bar, last_eval) => {
                bar.set_position(row.step + 1);
                if row.step.is_multiple_of(10) {
                    bar.set_message(bar_message(epoch, row.loss, row.lr, last_eval));
                }
            }
            Progress::Lines { total, next_percent, label, last_eval } => {
                let percent = (row.step + 1) * 100 / (*total).max(1);
                // Not the last step's: its evaluation comes after it, and the outcome line
                // that follows says the run's final metrics.
                if percent >= *next_percent && row.step + 1 < *total {
                    say!(
                        "{label}: step {}/{total} epoch {epoch} loss {} lr {:.3e}{last_eval}",
                        row.step + 1,
                        readable(row.loss),
                        row.lr
                    );
                    *next_percent = percent / 25 * 25 + 25;
                }
            }
            Progress::Quiet => {}
        }
        Ok(())
    }

    fn on_eval(&mut self, row: &EvalRow) -> Result<()> {
        match self {
            // Shown at once: the bar would otherwise show the evaluation before this one
            // until its next update (and for good after the last).
            Progress::Bar(bar, last_eval) => {
                *last_eval = eval_text(row);
                bar.set_message(bar_message(row.epoch, row.train_loss, row.lr, last_eval));
            }
            Progress::Lines { last_eval, .. } => *last_eval = eval_text(row),
            Progress::Quiet => {}
        }
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

    fn checkpoint(&mut self, checkpoint: &crate::train::Checkpoint) -> Result<()> {
        self.0.checkpoint(checkpoint)?;
        self.1.checkpoint(checkpoint)
    }

    fn save_model(&mut self, name: &str, params: &[(String, candle_core::Tensor)]) -> Result<()> {
        self.0.save_model(name, params)?;
        self.1.save_model(name, params)
    }
}

/// The display of a sweep: many runs, some at once. With a single run it is that run's
/// own display (a bar, or plain lines every quarter of the run).
pub struct Board {
    multi: Option<(MultiProgress, Option<ProgressBar>)>,
    quiet: bool,
    total: usize,
    counts: Mutex<(usize, usize)>,
}

impl Board {
    /// A board for `total` runs.
    pub fn new(total: usize, quiet: bool) -> Board {
        let multi = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::new();
            let overall = (total > 1).then(|| {
                let overall = multi.add(ProgressBar::new(total as u64));
                overall.set_style(
                    ProgressStyle::with_template("sweep [{bar:20}] {pos}/{len} runs ETA {eta} {wide_msg}")
                        .expect("a valid template")
                        .progress_chars("=> "),
                );
                overall.set_message("0 failed");
                overall
            });
            (multi, overall)
        });
        Board { multi, quiet, total, counts: Mutex::new((0, 0)) }
    }

    /// The display of one run starting now: a bar above the overall one on a terminal;
    /// otherwise plain lines for a single run, nothing for one of many (a line comes when
    /// it ends).
    pub fn start(&self, label: &str, total_steps: u64) -> Progress {
        match &self.multi {
            Some((multi, Some(overall))) => {
                Progress::Bar(multi.insert_before(overall, run_bar(label, total_steps)), String::new())
            }
            Some((multi, None)) => Progress::Bar(multi.add(run_bar(label, total_steps)), String::new()),
            None if self.total == 1 => Progress::new(label, total_steps, self.quiet),
            None => Progress::Quiet,
        }
    }

    /// Ends a run's display with `line` (its outcome); `failed` counts it as a failure.
    pub fn finish(&self, progress: Progress, line: &str, failed: bool) {
        let (done, failures) = {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            c.0 += 1;
            c.1 += usize::from(failed);
            *c
        };
        if let Progress::Bar(bar, _) = progress {
            bar.finish_and_clear();
        }
        match &self.multi {
            Some((multi, overall)) => {
                let _ = multi.println(line);
                if let Some(overall) = overall {
                    overall.set_position(done as u64);
                    overall.set_message(format!("{failures} failed"));
                }
            }
            None if self.quiet => {}
            None if self.total == 1 => say!("{line}"),
            None => say!("[{done}/{} done, {failures} failed] {line}", self.total),
        }
    }

    /// A line about a run that is not its outcome (it resumes from a checkpoint, its old
    /// results were set aside); shown unless quiet.
    pub fn note(&self, line: &str) {
        match &self.multi {
            Some((multi, _)) => {
                let _ = multi.println(line);
            }
            None if self.quiet => {}
            None => say!("{line}"),
        }
    }

    /// Clears the overall bar at the end of the sweep.
    pub fn close(&self) {
        if let Some((_, Some(overall))) = &self.multi {
            overall.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_keep_their_digits() {
        assert_eq!(readable(2.345678), "2.3457");
        assert_eq!(readable(0.0123), "0.0123");
        assert_eq!(readable(0.0000321), "3.21e-5");
        assert_eq!(readable(0.0), "0.0000");
        assert_eq!(readable(f64::NAN), "NaN");
    }
}
