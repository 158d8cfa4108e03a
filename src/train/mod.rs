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
pub use state::{Prepared, RunState, THREADS_PER_CORE, Training, check_devices, check_threads};

use crate::data::{Dataset, Task};
use crate::kernels::denormals;
use crate::model::network::state_dict;
use crate::model::{ModelSpec, Step, StepLoss};
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
    /// Where it trained: `cpu`, or the GPU (`cuda:0 (NVIDIA H200, compute capability
    /// 9.0)`); empty where unknown (a run that failed before it started, earlier versions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
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
    match (&data.text, spec.model.reads_tokens()) {
        (None, true) => {
            return Err(format!(
                "the {} model reads windows of tokens: it needs a text data set ([dataset] kind = \"text\"), not {}",
                spec.model.kind(),
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
    // The data set on the run's device (itself on the CPU); augmentation reads `data`.
    let (device, on_device) = run.open_device()?;
    let mut tr = Training::new(run, &device)?;
    if let Some(ck) = resume {
        tr.restore(ck)?;
    }
    let evaluator = Evaluator::new(spec, &on_device);
    let mut batches = Batches::new(&on_device, data, &spec.augment, t.seed, size);
    let mut checkpoints = Checkpointer::new(t, &run.ctx);
    let vars = tr.model.vars();
    // The step's gradients (the CPU kernels rewrite them in place step after step).
    let (mut grads, mut end) = (GradStore::default(), End::Completed);
    // Steps trained whose loss is not read yet (on a GPU: read every log_every steps, and
    // before an evaluation, a checkpoint or the end; on the CPU: at once).
    let mut unread: Vec<Unread> = Vec::new();
    'training: while tr.state.step < total {
        let skip = tr.begin_epoch(t.shuffle);
        for b in skip..tr.state.order.len().div_ceil(size) {
            let step = tr.state.step;
            if step >= total {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                if let Some(at) = settle(&mut unread, &mut tr.state, recorder, t.log_every)? {
                    end = End::Diverged(at);
                    break 'training;
                }
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
                let at = b * size..((b + 1) * size).min(order.len());
                let rows = at.len();
                let batch = batches.batch(order, at, tr.state.epoch, step)?;
                let (micro_batch, threads) = (t.batch_size as usize, t.threads as usize);
                let mut how = Step { loss: run.loss, micro_batch, threads, dropout: &mut tr.state.dropout_rng };
                (tr.model.loss_and_grads(&batch, &mut how, &mut grads)?, rows as u64)
            };
            let epoch = tr.state.epoch;
            if let StepLoss::Value(loss) = loss
                && !loss.is_finite()
            {
                recorder.on_step(&StepRow { step, lr, loss }, epoch, true)?;
                end = End::Diverged(step);
                break 'training;
            }
            if let Some(max) = t.clip_grad_norm {
                clip_grad_norm(&mut grads, &vars, max)?;
            }
            tr.optimizer.step(&grads, lr)?;
            let s = &mut tr.state;
            let read_now = matches!(loss, StepLoss::Value(_));
            unread.push(Unread { step, lr, lr_before: s.last_lr, epoch, samples, loss });
            (s.last_lr, s.samples, s.step) = (lr, s.samples + samples, step + 1);
            let evaluate = t.eval_every.map_or(s.step % steps_per_epoch == 0, |k| s.step % k == 0);
            if (read_now || evaluate || step % t.log_every == 0 || s.step >= total)
                && let Some(at) = settle(&mut unread, s, recorder, t.log_every)?
            {
                end = End::Diverged(at);
                break 'training;
            }
            if evaluate {
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
            if tr.state.step < total && (t.checkpoint_at.contains(&tr.state.step) || checkpoints.due(tr.state.step)) {
                if let Some(at) = settle(&mut unread, &mut tr.state, recorder, t.log_every)? {
                    end = End::Diverged(at);
                    break 'training;
                }
                checkpoints.write(&tr, recorder, seconds)?;
            }
        }
    }
    if end != End::Interrupted
        && let Some(at) = settle(&mut unread, &mut tr.state, recorder, t.log_every)?
    {
        end = End::Diverged(at);
    }
    let device = crate::device::describe(&device);
    finish(run, tr, &evaluator, recorder, (end, device), seconds)
}

/// A step trained whose loss is not read yet.
struct Unread {
    step: u64,
    lr: f64,
    /// The run's last rate before this step.
    lr_before: f64,
    epoch: u64,
    samples: u64,
    loss: StepLoss,
}

/// Reads the losses of the steps in `unread` (one wait for the device for all of them)
/// and records them in order. The first that is not a finite number ends the run as
/// diverged at its step: the state goes back to that step (the steps after it, trained
/// before their loss was read, are not counted). The step it diverged at, if it did.
fn settle(
    unread: &mut Vec<Unread>,
    s: &mut RunState,
    recorder: &mut dyn Recorder,
    log_every: u64,
) -> Result<Option<u64>> {
    if unread.is_empty() {
        return Ok(None);
    }
    let on_device: Vec<Tensor> = unread
        .iter()
        .filter_map(|u| match &u.loss {
            StepLoss::Pending(t) => Some(t.to_dtype(candle_core::DType::F32).and_then(|t| t.reshape(1))),
            StepLoss::Value(_) => None,
        })
        .collect::<candle_core::Result<_>>()?;
    let mut read = match on_device.is_empty() {
        true => Vec::new(),
        false => Tensor::cat(&on_device, 0)?.to_vec1::<f32>()?,
    }
    .into_iter();
    // Drained, not taken: the buffer is kept for the next window (no allocation a step).
    let mut entries = unread.drain(..);
    while let Some(u) = entries.next() {
        let loss = match u.loss {
            StepLoss::Value(v) => v,
            StepLoss::Pending(_) => read.next().map_or(f64::NAN, |v| v as f64),
        };
        let row = StepRow { step: u.step, lr: u.lr, loss };
        if !loss.is_finite() {
            recorder.on_step(&row, u.epoch, true)?;
            let undone: u64 = u.samples + entries.map(|e| e.samples).sum::<u64>();
            (s.step, s.epoch, s.last_lr, s.samples) = (u.step, u.epoch, u.lr_before, s.samples - undone);
            return Ok(Some(u.step));
        }
        recorder.on_step(&row, u.epoch, u.step % log_every == 0)?;
        (s.loss_sum, s.loss_count) = (s.loss_sum + loss, s.loss_count + 1);
    }
    Ok(None)
}

/// The end of a run: a last evaluation when it ended between evaluations, the best
/// weights back after an early stop that asks for them, the weights saved, the outcome.
fn finish(
    run: &Prepared,
    mut tr: Training,
    evaluator: &Evaluator<'_>,
    recorder: &mut dyn Recorder,
    (end, device): (End, String),
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
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the rows it is handed.
    #[derive(Default)]
    struct Rows(Vec<(StepRow, u64, bool)>);

    impl Recorder for Rows {
        fn on_step(&mut self, row: &StepRow, epoch: u64, logged: bool) -> Result<()> {
            self.0.push((*row, epoch, logged));
            Ok(())
        }
        fn on_eval(&mut self, _row: &EvalRow) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn losses_read_late_are_recorded_in_order_and_a_nan_ends_the_run_at_its_step() {
        // What a GPU run does: steps 3..=7 trained before their losses (on the device) are
        // read; step 6's is NaN. The rows up to it are recorded (6 with its NaN, logged), the
        // state goes back to step 6 (steps 6 and 7 not counted).
        let data = crate::data::prepare(&crate::data::DatasetSpec::default()).unwrap();
        let schedule = crate::schedule::ScheduleSpec {
            kind: crate::schedule::KindSpec::ExponentialDecay(crate::schedule::ExponentialDecay {
                learning_rate: 0.1,
                decay_steps: crate::schedule::Horizon::Steps(10.0),
                decay_rate: 0.5,
                staircase: false,
            }),
            warmup: None,
        };
        let spec = RunSpec {
            schedule,
            model: ModelSpec::default(),
            optimizer: OptimizerSpec::default(),
            train: TrainSpec::default(),
            augment: Default::default(),
        };
        let run = Prepared::new(spec, data).unwrap();
        let mut tr = Training::new(&run, &candle_core::Device::Cpu).unwrap();
        let s = &mut tr.state;
        (s.step, s.epoch, s.samples, s.loss_sum, s.loss_count, s.last_lr) = (8, 1, 8 * 32, 1.0, 3, 0.7);
        let pending = |v: f32| StepLoss::Pending(candle_core::Tensor::new(v, &candle_core::Device::Cpu).unwrap());
        let mut unread: Vec<Unread> = [(3, pending(0.5)), (4, StepLoss::Value(0.25)), (5, pending(0.125))]
            .into_iter()
            .map(|(step, loss)| Unread { step, lr: step as f64 / 10.0, lr_before: 0.0, epoch: 1, samples: 32, loss })
            .collect();
        let mut rows = Rows::default();
        assert_eq!(settle(&mut unread, s, &mut rows, 2).unwrap(), None);
        assert!(unread.is_empty());
        let got: Vec<(u64, f64, bool)> = rows.0.iter().map(|(r, _, logged)| (r.step, r.loss, *logged)).collect();
        assert_eq!(got, vec![(3, 0.5, false), (4, 0.25, true), (5, 0.125, false)]);
        assert_eq!((s.loss_sum, s.loss_count, s.step), (1.875, 6, 8));

        let mut unread: Vec<Unread> = [(6, pending(f32::NAN)), (7, pending(0.1))]
            .into_iter()
            .map(|(step, loss)| Unread { step, lr: step as f64 / 10.0, lr_before: 0.5, epoch: 2, samples: 32, loss })
            .collect();
        let mut rows = Rows::default();
        assert_eq!(settle(&mut unread, s, &mut rows, 2).unwrap(), Some(6));
        assert_eq!(rows.0.len(), 1);
        let (row, epoch, logged) = rows.0[0];
        assert!(row.step == 6 && row.loss.is_nan() && epoch == 2 && logged);
        assert_eq!((s.step, s.epoch, s.samples, s.last_lr), (6, 2, 8 * 32 - 64, 0.5));
        assert_eq!((s.loss_sum, s.loss_count), (1.875, 6));
    }

    #[test]
    fn status_names_are_the_serialised_ones() {
        for s in [Status::Completed, Status::Diverged, Status::Failed, Status::Interrupted] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert!(Status::Completed.is_final() && Status::Diverged.is_final());
        assert!(!Status::Failed.is_final() && !Status::Interrupted.is_final());
    }
}
