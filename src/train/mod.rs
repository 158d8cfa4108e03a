//! The training loop: batches from a shared data set, the model's loss and gradients,
//! the schedule's rate before every step, evaluations that feed validation-driven
//! schedules, divergence, early stopping and checkpoints. It trains any
//! [`crate::model::Network`] and knows plain specs, not TOML; it reports through a
//! [`Recorder`] (CSV files, progress), not to the terminal. A run is checked once
//! ([`Prepared`]); its state is one value ([`Training`]) that checkpoints snapshot and
//! restore.

mod batches;
mod checkpoint;
mod evaluate;
mod spec;
mod state;

pub use checkpoint::{Checkpoint, Policy};
pub use evaluate::{Evaluation, evaluate_params};
pub use spec::{EarlyStopping, MAX_STEPS, TrainSpec};
pub use state::{Prepared, RunState, THREADS_PER_CORE, Training, check_threads};

use crate::data::{Dataset, Task};
use crate::kernels::denormals;
use crate::model::network::state_dict;
use crate::model::{ModelSpec, Step};
use crate::optim::{OptimizerSpec, clip_grad_norm};
use crate::schedule::ScheduleSpec;
use anyhow::{Result, bail};
use batches::Batches;
use candle_core::Tensor;
use candle_core::backprop::GradStore;
use checkpoint::Checkpointer;
use evaluate::Evaluator;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Everything one run needs, as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub schedule: ScheduleSpec,
    pub model: ModelSpec,
    pub optimizer: OptimizerSpec,
    pub train: TrainSpec,
    /// Augmentation of the training batches (images only; off by default).
    pub augment: crate::data::AugmentSpec,
}

/// A row of steps.csv.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRow {
    pub step: u64,
    pub lr: f64,
    pub loss: f64,
}

/// A row of metrics.csv: one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalRow {
    pub epoch: u64,
    pub step: u64,
    pub lr: f64,
    // JSON has no NaN: serde_json writes it as null, read back here as NaN.
    #[serde(deserialize_with = "nan_from_null")]
    pub train_loss: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub val_loss: f64,
    pub val_accuracy: Option<f64>,
    pub val_rmse: Option<f64>,
    /// A language model's validation loss in bits per character (char tokens) or per
    /// byte (byte tokens): val_loss / ln 2; and its perplexity, exp(val_loss).
    #[serde(default)]
    pub val_bits_per_char: Option<f64>,
    #[serde(default)]
    pub val_bits_per_byte: Option<f64>,
    #[serde(default)]
    pub val_perplexity: Option<f64>,
    pub seconds: f64,
}

fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use serde::Deserialize;
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    Diverged,
    Failed,
    Interrupted,
}

impl Status {
    /// The status as summary.json and summary.csv write it (`completed`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Diverged => "diverged",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }

    /// Whether the run came to its end (completed or diverged): a resumed sweep keeps it.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Diverged)
    }
}

/// What a run produced, besides what it recorded on the way.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub status: Status,
    pub steps: u64,
    pub total_steps: u64,
    pub epochs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged_at_step: Option<u64>,
    pub early_stopped: bool,
    pub final_metrics: Option<EvalRow>,
    pub best_metrics: Option<EvalRow>,
    /// The metric `best_metrics` is the best of: the one early stopping or the schedule
    /// monitors, else val_accuracy (val_loss for regression).
    #[serde(default)]
    pub best_by: String,
    pub wall_seconds: f64,
    pub samples_per_second: f64,
    pub parameters: usize,
    /// What each evaluation reads: validation samples (a text data set: tokens, in its
    /// fixed windows); 0 where unknown (results of earlier versions).
    #[serde(default)]
    pub validation_samples: usize,
}

/// Receives what a run produces as it goes.
pub trait Recorder {
    /// Called after every step; `logged` marks the steps that belong in steps.csv.
    fn on_step(&mut self, row: &StepRow, epoch: u64, logged: bool) -> Result<()>;
    /// Called after every evaluation.
    fn on_eval(&mut self, row: &EvalRow) -> Result<()>;
    /// Keeps `checkpoint` (written at a step boundary, after everything before it was
    /// recorded), so that the run can continue from it; does nothing by default.
    fn checkpoint(&mut self, _checkpoint: &Checkpoint) -> Result<()> {
        Ok(())
    }
    /// Keeps a set of the model's parameters: `model` (the final ones) or `best` (the best
    /// evaluation's); does nothing by default.
    fn save_model(&mut self, _name: &str, _params: &[(String, Tensor)]) -> Result<()> {
        Ok(())
    }
}

/// The value of `monitor` in an evaluation row, if the task has it.
pub fn metric(row: &EvalRow, monitor: &str) -> Option<f64> {
    match monitor {
        "val_loss" => Some(row.val_loss),
        "train_loss" => Some(row.train_loss),
        "val_accuracy" => row.val_accuracy,
        "val_rmse" => row.val_rmse,
        "val_bits_per_char" => row.val_bits_per_char,
        "val_bits_per_byte" => row.val_bits_per_byte,
        "val_perplexity" => row.val_perplexity,
        _ => None,
    }
}

/// Why `spec` cannot train on `data`, known before it starts (its schedule watching
/// `schedule_monitor`): a watched metric the task does not have, a model that cannot be
/// built for the data (see [`ModelSpec::check`]).
fn check_monitors(spec: &RunSpec, data: &Dataset, schedule_monitor: Option<&str>) -> Result<(), String> {
    let schedule_monitor = schedule_monitor.map(String::from);
    let early = spec.train.early_stopping.as_ref().map(|e| e.monitor.clone());
    for (what, monitor) in [("schedule.monitor", schedule_monitor), ("train.early_stopping.monitor", early)] {
        let Some(monitor) = monitor else { continue };
        if data.task == Task::Regression && monitor == "val_accuracy" {
            return Err(format!(
                "`{what}` = \"{monitor}\", but {} is a regression data set; watch val_loss or val_rmse",
                data.name
            ));
        }
        if data.task == Task::Classification && monitor == "val_rmse" {
            return Err(format!(
                "`{what}` = \"{monitor}\", but {} is a classification data set; watch val_loss or val_accuracy",
                data.name
            ));
        }
    }
    let transformer = matches!(spec.model, ModelSpec::Transformer { .. });
    match (&data.text, transformer) {
        (None, true) => {
            return Err(format!(
                "the transformer model reads windows of tokens: it needs a text data set ([dataset] kind = \"text\"), not {}",
                data.name
            ));
        }
        (Some(_), false) => {
            return Err(
                "a text data set is windows of tokens: it trains the transformer model ([model] kind = \"transformer\")"
                    .into(),
            );
        }
        _ => {}
    }
    if data.text.is_none() && spec.train.eval_batches.is_some() {
        return Err(format!(
            "`train.eval_batches` is for text data sets; {} is evaluated on all of its validation part",
            data.name
        ));
    }
    let outputs = if data.task == Task::Classification { data.classes } else { 1 };
    spec.model.check(data.features, outputs, data.image).map(|_| ())
}

/// Trains `spec` on `data`, reporting to `recorder`. When `stop` becomes true (an
/// interrupt), the run ends before its next step with status `interrupted`.
pub fn train(spec: &RunSpec, data: &Arc<Dataset>, recorder: &mut dyn Recorder, stop: &AtomicBool) -> Result<Outcome> {
    train_from(spec, data, recorder, stop, None)
}

/// [`train`], continuing from `resume` when given: the run then goes on exactly as if it
/// had never stopped (same batches, dropout masks, schedule state and rates), so its
/// results equal an uninterrupted run's.
pub fn train_from(
    spec: &RunSpec,
    data: &Arc<Dataset>,
    recorder: &mut dyn Recorder,
    stop: &AtomicBool,
    resume: Option<Checkpoint>,
) -> Result<Outcome> {
    let run = Prepared::new(spec.clone(), data.clone()).map_err(anyhow::Error::msg)?;
    train_prepared(&run, recorder, stop, resume)
}

/// How a run's loop ended.
#[derive(Clone, Copy, PartialEq)]
enum End {
    /// Its steps done, or stopped early.
    Completed,
    Diverged(u64),
    Interrupted,
}

/// [`train_from`] for a run already checked.
pub fn train_prepared(
    run: &Prepared,
    recorder: &mut dyn Recorder,
    stop: &AtomicBool,
    resume: Option<Checkpoint>,
) -> Result<Outcome> {
    let start = Instant::now();
    let seconds = || start.elapsed().as_secs_f64();
    let (spec, data, t) = (&run.spec, &*run.data, &run.spec.train);
    denormals::set_for_run(t.flush_denormals);
    let (steps_per_epoch, total, size) = (run.ctx.steps_per_epoch, run.ctx.total_steps, t.step_samples() as usize);
    let mut tr = Training::new(run)?;
    if let Some(ck) = resume {
        tr.restore(ck)?;
    }
    let (evaluator, mut batches) = (Evaluator::new(spec, data), Batches::new(data, &spec.augment, t.seed, size));
    let mut checkpoints = Checkpointer::new(t, &run.ctx);
    let vars = tr.model.vars();
    // The step's gradients (the CPU kernels rewrite them in place step after step).
    let (mut grads, mut end) = (GradStore::default(), End::Completed);
    'training: while tr.state.step < total {
        let skip = tr.begin_epoch(t.shuffle);
        for b in skip..tr.state.order.len().div_ceil(size) {
            let step = tr.state.step;
            if step >= total {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                // Saved before exiting: a rerun continues from here.
                recorder.checkpoint(&tr.snapshot(seconds())?)?;
                end = End::Interrupted;
                break 'training;
            }
            let lr = tr.schedule.lr(step);
            if !lr.is_finite() {
                bail!("the schedule gives lr = {lr} at step {step}; a learning rate must be a finite number");
            }
            // The batch borrows the epoch's order while the model and generator train.
            let (loss, samples) = {
                let order = &tr.state.order;
                let rows = &order[b * size..((b + 1) * size).min(order.len())];
                let batch = batches.batch(rows, step)?;
                let (micro_batch, threads) = (t.batch_size as usize, t.threads as usize);
                let mut how = Step { loss: run.loss, micro_batch, threads, dropout: &mut tr.state.dropout_rng };
                (tr.model.loss_and_grads(&batch, &mut how, &mut grads)?, rows.len() as u64)
            };
            let row = StepRow { step, lr, loss };
            if !loss.is_finite() {
                recorder.on_step(&row, tr.state.epoch, true)?;
                end = End::Diverged(step);
                break 'training;
            }
            if let Some(max) = t.clip_grad_norm {
                clip_grad_norm(&mut grads, &vars, max)?;
            }
            tr.optimizer.step(&grads, lr)?;
            recorder.on_step(&row, tr.state.epoch, step % t.log_every == 0)?;
            let s = &mut tr.state;
            (s.loss_sum, s.loss_count, s.last_lr) = (s.loss_sum + loss, s.loss_count + 1, lr);
            (s.samples, s.step) = (s.samples + samples, step + 1);
            if t.eval_every.map_or(s.step % steps_per_epoch == 0, |k| s.step % k == 0) {
                let row = evaluator.row(&*tr.model, &mut tr.state, seconds())?;
                recorder.on_eval(&row)?;
                if !row.val_loss.is_finite() {
                    end = End::Diverged(row.step);
                    break 'training;
                }
                tr.observe(&row, &run.best_by)?;
                if let Some(es) = &t.early_stopping
                    && tr.state.early.should_stop(&row, es)
                {
                    break 'training;
                }
            }
            if tr.state.step < total {
                checkpoints.after_step(&tr, recorder, seconds)?;
            }
        }
    }
    finish(run, tr, &evaluator, recorder, end, seconds)
}

/// The end of a run: a last evaluation when it ended between evaluations, the best
/// weights back after an early stop that asks for them, the weights saved, the outcome.
fn finish(
    run: &Prepared,
    mut tr: Training,
    evaluator: &Evaluator<'_>,
    recorder: &mut dyn Recorder,
    end: End,
    seconds: impl Fn() -> f64,
) -> Result<Outcome> {
    let t = &run.spec.train;
    let step = tr.state.step;
    if end == End::Completed && tr.state.final_row.is_none_or(|r| r.step != step) && step > 0 {
        let row = evaluator.row(&*tr.model, &mut tr.state, seconds())?;
        recorder.on_eval(&row)?;
        tr.observe_last(&row, &run.best_by);
    }
    // Keras' restore_best_weights: a run stopped early ends with its best weights.
    if tr.state.early.stopped && t.early_stopping.as_ref().is_some_and(|e| e.restore_best_weights) {
        tr.restore_best()?;
    }
    if end == End::Completed && step > 0 {
        recorder.save_model("model", &state_dict(&*tr.model)?)?;
        if let Some(best) = &tr.state.best_params {
            recorder.save_model("best", best)?;
        }
    }
    let s = &tr.state;
    let wall = s.seconds_before + seconds();
    Ok(Outcome {
        status: match end {
            End::Diverged(_) => Status::Diverged,
            End::Interrupted => Status::Interrupted,
            End::Completed => Status::Completed,
        },
        steps: step,
        total_steps: run.ctx.total_steps,
        // An interrupted run counts the epochs it finished, as its last metrics row does.
        epochs: if end == End::Interrupted { step / run.ctx.steps_per_epoch } else { s.epoch },
        best_by: run.best_by.clone(),
        diverged_at_step: match end {
            End::Diverged(at) => Some(at),
            _ => None,
        },
        early_stopped: s.early.stopped,
        final_metrics: s.final_row,
        best_metrics: s.best_row,
        wall_seconds: wall,
        samples_per_second: s.samples as f64 / wall.max(1e-9),
        parameters: tr.model.parameter_count(),
        validation_samples: evaluator.samples(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_the_serialised_ones() {
        for s in [Status::Completed, Status::Diverged, Status::Failed, Status::Interrupted] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert!(Status::Completed.is_final() && Status::Diverged.is_final());
        assert!(!Status::Failed.is_final() && !Status::Interrupted.is_final());
    }
}
