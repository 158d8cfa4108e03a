//! The training loop: batches from a shared data set, the model's forward and backward
//! pass, the schedule's rate before every step, evaluations that feed validation-driven
//! schedules, divergence and early stopping. It knows plain specs, not TOML, and reports
//! through a [`Recorder`] (CSV files, progress), not to the terminal.

mod checkpoint;
mod spec;

pub use checkpoint::{Checkpoint, Policy};
use checkpoint::{named_tensors, positional};
pub use spec::{EarlyStopping, MAX_STEPS, TrainSpec};

use crate::data::{Dataset, Split, Task};
use crate::kernels::{denormals, gather, with_values};
use crate::model::network::{load_state_dict, state_dict};
use crate::model::{Batch, HostRows, Loss, ModelSpec, Network, Step, Targets, accuracy};
use crate::optim::{Optimizer, OptimizerSpec, clip_grad_norm};
use crate::schedule::{ScheduleSpec, larger_is_better as maximize};
use anyhow::{Result, bail};
use candle_core::Tensor;
use candle_core::backprop::GradStore;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
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

/// A language model's (bits per char, bits per byte, perplexity) for a validation loss
/// `val_loss` in nats per token of `tokens`: bits per char or per byte by the tokens; none
/// of them for other data sets.
fn language_metrics(
    val_loss: f64,
    tokens: Option<crate::data::text::Tokens>,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    use crate::data::text::Tokens;
    let bits = val_loss / std::f64::consts::LN_2;
    (
        (tokens == Some(Tokens::Char)).then_some(bits),
        (tokens == Some(Tokens::Byte)).then_some(bits),
        tokens.map(|_| val_loss.exp()),
    )
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

/// The model's parameters as named tensors in PyTorch's layout, deep copies (a `Var` is
/// updated in place).
fn param_copies(model: &dyn Network) -> Result<Vec<(String, Tensor)>> {
    state_dict(model)
}

/// One step's samples: rows `rows` of the training set (token windows for text), their
/// images augmented where `augmented` holds them, their targets gathered for kernels
/// that read host values.
struct StepBatch<'a> {
    data: &'a Dataset,
    rows: &'a [u32],
    augmented: Option<&'a [f32]>,
    targets: Option<Targets<'a>>,
}

impl Batch for StepBatch<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn tensors(&self, range: std::ops::Range<usize>) -> Result<(Tensor, Tensor)> {
        let data = self.data;
        let rows = &self.rows[range.clone()];
        if let Some(text) = &data.text {
            return text.batch(crate::data::text::Part::Train, rows);
        }
        let idx = Tensor::from_slice(rows, rows.len(), data.train.x.device())?;
        let x = match self.augmented {
            Some(all) => {
                let f = data.features;
                Tensor::from_slice(&all[range.start * f..range.end * f], (rows.len(), f), data.train.x.device())?
            }
            None => data.train.x.index_select(&idx, 0)?,
        };
        Ok((x, data.train.y.index_select(&idx, 0)?))
    }

    fn host(&self) -> Option<(HostRows<'_>, Targets<'_>, usize)> {
        let targets = self.targets?;
        let rows = match self.augmented {
            Some(values) => HostRows::Gathered(values),
            None => HostRows::Of { x: &self.data.train.x, rows: self.rows },
        };
        Some((rows, targets, self.data.features))
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

/// Why `spec` cannot train on `data`, known before it starts: a watched metric the task
/// does not have, a model that cannot be built for the data (see [`ModelSpec::check`]).
pub fn check(spec: &RunSpec, data: &Dataset) -> Result<(), String> {
    let schedule_monitor =
        spec.schedule.build(&spec.train.schedule_context(data.train.len)).monitor().map(String::from);
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

/// The metrics of a set of weights on a data set's validation part.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub val_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_rmse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_bits_per_char: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_bits_per_byte: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_perplexity: Option<f64>,
    /// Validation samples read (a text data set: windows).
    pub samples: usize,
}

/// Evaluates the model `spec` describes with the tensors `params` (named as
/// model.safetensors holds them; see [`load_state_dict`]) on `data`'s validation part,
/// exactly as training evaluates; `what` names the weights in errors.
pub fn evaluate_params(
    spec: &RunSpec,
    data: &Dataset,
    params: &HashMap<String, Tensor>,
    what: &str,
) -> Result<Evaluation> {
    check(spec, data).map_err(anyhow::Error::msg)?;
    let outputs = if data.task == Task::Classification { data.classes } else { 1 };
    let model =
        crate::model::build(&spec.model, data.features, outputs, data.image, spec.train.seed, spec.train.kernels)?;
    load_state_dict(&*model, params, what, &data.name)?;
    let model = &*model;
    let (val_loss, val_accuracy, samples) = match &data.text {
        Some(text) => {
            let starts = text.evaluation_starts(spec.train.eval_windows());
            let (loss, accuracy) = evaluate_text(model, text, &starts, spec.train.batch_size as usize)?;
            (loss, Some(accuracy), starts.len())
        }
        None => {
            let (loss, accuracy) = evaluate(model, &data.validation, data.task)?;
            (loss, accuracy, data.validation.len)
        }
    };
    let (val_bits_per_char, val_bits_per_byte, val_perplexity) =
        language_metrics(val_loss, data.text.as_ref().map(|t| t.vocab.tokens));
    Ok(Evaluation {
        val_loss,
        val_accuracy: val_accuracy.filter(|_| data.task == Task::Classification),
        val_rmse: (data.task == Task::Regression).then(|| val_loss.sqrt()),
        val_bits_per_char,
        val_bits_per_byte,
        val_perplexity,
        samples,
    })
}

/// Trains `spec` on `data`, reporting to `recorder`. When `stop` becomes true (an
/// interrupt), the run ends before its next step with status `interrupted`.
pub fn train(spec: &RunSpec, data: &Dataset, recorder: &mut dyn Recorder, stop: &AtomicBool) -> Result<Outcome> {
    train_from(spec, data, recorder, stop, None)
}

/// [`train`], continuing from `resume` when given: the run then goes on exactly as if it
/// had never stopped (same batches, dropout masks, schedule state and rates), so its
/// results equal an uninterrupted run's.
pub fn train_from(
    spec: &RunSpec,
    data: &Dataset,
    recorder: &mut dyn Recorder,
    stop: &AtomicBool,
    resume: Option<Checkpoint>,
) -> Result<Outcome> {
    let start = Instant::now();
    let t = &spec.train;
    let n = data.train.len;
    if n == 0 {
        // Data sets refuse this at load; without samples an epoch has no batch to end it.
        bail!("{}'s training part is empty", data.name);
    }
    denormals::set_for_run(spec.train.flush_denormals);
    let ctx = t.schedule_context(n);
    let (steps_per_epoch, total) = (ctx.steps_per_epoch, ctx.total_steps);
    let mut schedule = spec.schedule.build(&ctx);
    check(spec, data).map_err(anyhow::Error::msg)?;
    let outputs = if data.task == Task::Classification { data.classes } else { 1 };
    let model = crate::model::build(&spec.model, data.features, outputs, data.image, t.seed, t.kernels)?;
    let model = &*model;
    let vars = model.vars();
    let mut optimizer = Optimizer::new(&spec.optimizer, vars.clone())?.with_decay_mask(model.decay_mask())?;
    let loss_kind = if data.task == Task::Classification { Loss::CrossEntropy } else { Loss::Mse };
    let mut shuffle_rng = ChaCha8Rng::seed_from_u64(t.seed ^ 0x5_4FF1E);
    let mut dropout_rng = ChaCha8Rng::seed_from_u64(t.seed ^ 0xD_0F0F);
    let mut order: Vec<u32> = (0..n as u32).collect();
    let (mut batch_classes, mut batch_values) = (Vec::new(), Vec::new());
    // The step's gradients (the CPU kernels rewrite them in place step after step).
    let mut grads = GradStore::default();
    // Augmented batches are written here and read in order.
    let augment_shape = data.image.filter(|_| !spec.augment.is_off());
    let mut augmented_x: Vec<f32> = Vec::new();
    // A text data set's evaluation windows: the same for every evaluation and run.
    let eval_starts = data.text.as_ref().map(|text| text.evaluation_starts(t.eval_windows()));
    let tokens = data.text.as_ref().map(|text| text.vocab.tokens);

    let (mut step, mut epoch, mut samples) = (0u64, 0u64, 0u64);
    let (mut loss_sum, mut loss_count, mut last_lr) = (0f64, 0u64, schedule.lr(0));
    let (mut final_row, mut best_row): (Option<EvalRow>, Option<EvalRow>) = (None, None);
    let mut diverged_at = None;
    let mut interrupted = false;
    let mut early = EarlyState::default();
    // Keras' restore_best_weights keeps the best evaluation's weights; so does best.safetensors.
    let keeps_best = t.early_stopping.is_some() || schedule.monitor().is_some();
    let mut best_params: Option<Vec<(String, Tensor)>> = None;
    let mut seconds_before = 0.0;
    // Batches of the epoch in progress already trained, when resuming mid-epoch.
    let mut resume_skip = None;
    if let Some(ck) = resume {
        let named = model.named();
        let tensors = positional(&named, ck.tensors)?;
        for (i, var) in vars.iter().enumerate() {
            let Some(saved) = tensors.get(&format!("param.{i}")) else {
                bail!("the checkpoint has no {}", named[i].name)
            };
            if saved.dims() != var.dims() {
                bail!(
                    "the checkpoint's {} has shape {:?}, the model's is {:?}",
                    named[i].name,
                    saved.dims(),
                    var.dims()
                );
            }
            var.set(saved)?;
        }
        optimizer.restore(&tensors, ck.optimizer_t)?;
        if keeps_best && tensors.contains_key("best.0") {
            best_params = Some(
                named
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.name.clone(), tensors[&format!("best.{i}")].clone()))
                    .collect(),
            );
        }
        if ck.order.len() != order.len() {
            bail!("the checkpoint's epoch order has {} samples, the data set {}", ck.order.len(), order.len());
        }
        order = ck.order;
        shuffle_rng.set_word_pos(ck.shuffle_word_pos);
        dropout_rng.set_word_pos(ck.dropout_word_pos);
        schedule.restore(&ck.schedule_state);
        (step, epoch, samples) = (ck.step, ck.epoch, ck.samples);
        (loss_sum, loss_count, last_lr) = (ck.loss_sum, ck.loss_count, ck.last_lr);
        (early.best, early.wait) = (ck.early_best, ck.early_wait);
        (best_row, final_row) = (ck.best_row, ck.final_row);
        seconds_before = ck.seconds;
        // The epoch in progress, unless its last batch was done: an interrupt can also come
        // right after an epoch's shuffle, before its first batch (0 done).
        let done = step.saturating_sub(epoch.saturating_sub(1) * steps_per_epoch);
        if epoch > 0 && done < steps_per_epoch {
            resume_skip = Some(done as usize);
        }
    }
    let policy = Policy {
        every: t.checkpoint_every.resolve_steps(&ctx, 1),
        max_interval: std::time::Duration::from_secs_f64(t.checkpoint_minutes * 60.0),
        max_share: 0.005,
    };
    // Before the first checkpoint its cost is taken as 5 ms (two small files, fsynced): a
    // run shorter than a second writes none unless stopped.
    let (mut last_checkpoint, mut checkpoint_cost) = (Instant::now(), std::time::Duration::from_millis(5));
    // The best evaluation is the best of the monitored metric (early stopping's, else the
    // schedule's), else of the ranking metric.
    // A language model's best is its lowest loss (token accuracy says little).
    let default_by = if data.task == Task::Classification && data.text.is_none() { "val_accuracy" } else { "val_loss" };
    let best_by: String = t
        .early_stopping
        .as_ref()
        .map(|e| e.monitor.clone())
        .or_else(|| schedule.monitor().map(String::from))
        .unwrap_or_else(|| default_by.to_string());
    let best_by = best_by.as_str();

    let evaluate = |epoch: u64, step: u64, lr: f64, loss_sum: &mut f64, loss_count: &mut u64| -> Result<EvalRow> {
        let (val_loss, val_accuracy) = match (&data.text, &eval_starts) {
            (Some(text), Some(starts)) => {
                let (loss, accuracy) = evaluate_text(model, text, starts, t.batch_size as usize)?;
                (loss, Some(accuracy))
            }
            _ => evaluate(model, &data.validation, data.task)?,
        };
        let (val_bits_per_char, val_bits_per_byte, val_perplexity) = language_metrics(val_loss, tokens);
        let row = EvalRow {
            epoch,
            step,
            lr,
            train_loss: if *loss_count > 0 { *loss_sum / *loss_count as f64 } else { f64::NAN },
            val_loss,
            val_accuracy: val_accuracy.filter(|_| data.task == Task::Classification),
            val_rmse: (data.task == Task::Regression).then(|| val_loss.sqrt()),
            val_bits_per_char,
            val_bits_per_byte,
            val_perplexity,
            seconds: seconds_before + start.elapsed().as_secs_f64(),
        };
        (*loss_sum, *loss_count) = (0.0, 0);
        Ok(row)
    };
    // The state at a step boundary, for a checkpoint.
    let snapshot = |step: u64,
                    epoch: u64,
                    samples: u64,
                    losses: (f64, u64, f64),
                    rngs: (&ChaCha8Rng, &ChaCha8Rng),
                    schedule: &dyn crate::schedule::Schedule,
                    early: &EarlyState,
                    rows: (Option<EvalRow>, Option<EvalRow>),
                    order: &[u32],
                    best: Option<&Vec<(String, Tensor)>>,
                    optimizer: &Optimizer|
     -> Result<Checkpoint> {
        let (optim, optimizer_t) = optimizer.state();
        let tensors = named_tensors(&model.named(), optim, best)?;
        Ok(Checkpoint {
            step,
            epoch,
            samples,
            loss_sum: losses.0,
            loss_count: losses.1,
            last_lr: losses.2,
            shuffle_word_pos: rngs.0.get_word_pos(),
            dropout_word_pos: rngs.1.get_word_pos(),
            schedule_state: schedule.state(),
            early_best: early.best,
            early_wait: early.wait,
            best_row: rows.0,
            final_row: rows.1,
            seconds: seconds_before + start.elapsed().as_secs_f64(),
            order: order.to_vec(),
            tensors,
            optimizer_t,
        })
    };

    // The current state, for the two places that take a checkpoint.
    macro_rules! snapshot {
        () => {
            snapshot(
                step,
                epoch,
                samples,
                (loss_sum, loss_count, last_lr),
                (&shuffle_rng, &dropout_rng),
                &*schedule,
                &early,
                (best_row, final_row),
                &order,
                best_params.as_ref(),
                &optimizer,
            )
        };
    }

    'training: while step < total {
        // A resumed run continues the epoch in progress: same order, its first batches done.
        let skip = match resume_skip.take() {
            Some(done) => done,
            None => {
                epoch += 1;
                if t.shuffle {
                    order.shuffle(&mut shuffle_rng);
                }
                0
            }
        };
        for batch in order.chunks(t.step_samples() as usize).skip(skip) {
            if step >= total {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                // Saved before exiting: a rerun continues from here.
                let ck = snapshot!()?;
                recorder.checkpoint(&ck)?;
                break 'training;
            }
            let lr = schedule.lr(step);
            if !lr.is_finite() {
                bail!("the schedule gives lr = {lr} at step {step}; a learning rate must be a finite number");
            }
            // The batch's images, cropped and flipped, drawn from the seed and the step.
            let augmented = match augment_shape {
                Some(shape) => {
                    with_values(&data.train.x, |all: &[f32]| {
                        let mut rng = crate::data::step_rng(t.seed, step);
                        crate::data::augment_rows(all, batch, shape, &spec.augment, &mut rng, &mut augmented_x);
                    })?;
                    true
                }
                None => false,
            };
            // Tabular data's targets as host values, for kernels that read them.
            let targets = match (&data.text, data.task) {
                (Some(_), _) => None,
                (None, Task::Classification) => {
                    gather(&data.train.y, batch, &mut batch_classes)?;
                    Some(Targets::Classes(&batch_classes))
                }
                (None, Task::Regression) => {
                    gather(&data.train.y, batch, &mut batch_values)?;
                    Some(Targets::Values(&batch_values))
                }
            };
            let samples_of_step =
                StepBatch { data, rows: batch, augmented: augmented.then_some(&augmented_x[..]), targets };
            let mut how = Step {
                loss: loss_kind,
                micro_batch: t.batch_size as usize,
                threads: t.threads as usize,
                dropout: &mut dropout_rng,
            };
            let loss_value = model.loss_and_grads(&samples_of_step, &mut how, &mut grads)?;
            let row = StepRow { step, lr, loss: loss_value };
            if !loss_value.is_finite() {
                recorder.on_step(&row, epoch, true)?;
                diverged_at = Some(step);
                break 'training;
            }
            if let Some(max) = t.clip_grad_norm {
                clip_grad_norm(&mut grads, &vars, max)?;
            }
            optimizer.step(&grads, lr)?;
            recorder.on_step(&row, epoch, step % t.log_every == 0)?;
            (loss_sum, loss_count, last_lr) = (loss_sum + loss_value, loss_count + 1, lr);
            samples += batch.len() as u64;
            step += 1;
            if t.eval_every.is_some_and(|k| step % k == 0) || (t.eval_every.is_none() && step % steps_per_epoch == 0) {
                let row = evaluate(epoch, step, last_lr, &mut loss_sum, &mut loss_count)?;
                if !row.val_loss.is_finite() {
                    recorder.on_eval(&row)?;
                    diverged_at = Some(step);
                    break 'training;
                }
                recorder.on_eval(&row)?;
                if let Some(m) = schedule.monitor().and_then(|m| metric(&row, m)) {
                    schedule.observe(m);
                }
                if better(&row, best_row.as_ref(), best_by) {
                    best_row = Some(row);
                    if keeps_best {
                        best_params = Some(param_copies(model)?);
                    }
                }
                final_row = Some(row);
                if let Some(es) = &t.early_stopping
                    && early.should_stop(&row, es)
                {
                    break 'training;
                }
            }
            if step < total && policy.due(step, last_checkpoint.elapsed(), checkpoint_cost) {
                let began = Instant::now();
                let ck = snapshot!()?;
                recorder.checkpoint(&ck)?;
                (last_checkpoint, checkpoint_cost) = (Instant::now(), began.elapsed());
            }
        }
    }
    // A last evaluation when the run ended between evaluations.
    if diverged_at.is_none() && !interrupted && final_row.is_none_or(|r| r.step != step) && step > 0 {
        let row = evaluate(epoch, step, last_lr, &mut loss_sum, &mut loss_count)?;
        recorder.on_eval(&row)?;
        if better(&row, best_row.as_ref(), best_by) {
            best_row = Some(row);
        }
        final_row = Some(row);
    }
    // Keras' restore_best_weights: a run stopped early ends with its best weights.
    if early.stopped
        && t.early_stopping.as_ref().is_some_and(|e| e.restore_best_weights)
        && let (Some(best), Some(row)) = (&best_params, best_row)
    {
        for (n, (_, saved)) in model.named().iter().zip(best) {
            n.var.set(&n.from_torch(saved)?)?;
        }
        final_row = Some(row);
    }
    if !interrupted && diverged_at.is_none() && step > 0 {
        recorder.save_model("model", &param_copies(model)?)?;
        if let Some(best) = &best_params {
            recorder.save_model("best", best)?;
        }
    }
    let wall = seconds_before + start.elapsed().as_secs_f64();
    Ok(Outcome {
        status: match (diverged_at, interrupted) {
            (Some(_), _) => Status::Diverged,
            (None, true) => Status::Interrupted,
            (None, false) => Status::Completed,
        },
        steps: step,
        total_steps: total,
        // An interrupted run counts the epochs it finished, as its last metrics row does.
        epochs: if interrupted { step / steps_per_epoch } else { epoch },
        best_by: best_by.to_string(),
        diverged_at_step: diverged_at,
        early_stopped: early.stopped,
        final_metrics: final_row,
        best_metrics: best_row,
        wall_seconds: wall,
        samples_per_second: samples as f64 / wall.max(1e-9),
        parameters: model.parameter_count(),
        validation_samples: match (&data.text, &eval_starts) {
            (Some(text), Some(starts)) => starts.len() * text.context,
            _ => data.validation.len,
        },
    })
}

fn better(row: &EvalRow, best: Option<&EvalRow>, by: &str) -> bool {
    let (Some(v), Some(b)) = (metric(row, by), best.and_then(|b| metric(b, by))) else { return best.is_none() };
    if maximize(by) { v > b } else { v < b }
}

/// Early-stopping bookkeeping (Keras EarlyStopping: absolute min_delta).
#[derive(Default)]
struct EarlyState {
    best: Option<f64>,
    wait: u64,
    stopped: bool,
}

impl EarlyState {
    fn should_stop(&mut self, row: &EvalRow, es: &EarlyStopping) -> bool {
        let Some(m) = metric(row, &es.monitor) else { return false };
        let improved = match self.best {
            None => true,
            Some(b) if maximize(&es.monitor) => m - es.min_delta > b,
            Some(b) => m + es.min_delta < b,
        };
        if improved {
            (self.best, self.wait) = (Some(m), 0);
        } else {
            self.wait += 1;
        }
        self.stopped = self.wait >= es.patience;
        self.stopped
    }
}

/// Mean loss per token and the fraction of tokens predicted right (the largest logit) over
/// the text's validation windows at `starts`, in batches of `batch`, without dropout.
fn evaluate_text(
    model: &dyn Network,
    text: &crate::data::text::TextData,
    starts: &[u32],
    batch: usize,
) -> Result<(f64, f64)> {
    let (mut loss, mut correct, mut tokens) = (0f64, 0f64, 0usize);
    for chunk in starts.chunks(batch.max(1)) {
        let (x, y) = text.batch(crate::data::text::Part::Validation, chunk)?;
        let out = model.forward(&x, crate::model::Mode::Eval)?.detach();
        let logp = candle_nn::ops::log_softmax(&out, 1)?;
        let picked = logp.gather(&y.unsqueeze(1)?, 1)?.neg()?;
        loss += picked.flatten_all()?.to_vec1::<f32>()?.iter().map(|&v| v as f64).sum::<f64>();
        correct += accuracy(&out, &y)? * y.dim(0)? as f64;
        tokens += y.dim(0)?;
    }
    let n = tokens.max(1) as f64;
    Ok((loss / n, correct / n))
}

/// Mean loss (and accuracy for classification) over `split`, without dropout, in the
/// pieces the model computes its outputs in.
fn evaluate(model: &dyn Network, split: &Split, task: Task) -> Result<(f64, Option<f64>)> {
    let (mut loss, mut correct) = (0f64, 0f64);
    let mut start = 0;
    model.outputs(&split.x, &mut |out: Tensor| {
        let len = out.dim(0)?;
        let y = split.y.narrow(0, start, len)?;
        // Per-sample losses summed in f64, as the training loss is averaged: a piece's f32
        // mean would carry f32 rounding into the written value.
        let per_sample = if task == Task::Classification {
            let logp = candle_nn::ops::log_softmax(&out, 1)?;
            logp.gather(&y.unsqueeze(1)?, 1)?.neg()?
        } else {
            (&out - &y)?.sqr()?
        };
        loss += per_sample.flatten_all()?.to_vec1::<f32>()?.iter().map(|&v| v as f64).sum::<f64>()
            / per_sample.dim(1)? as f64;
        if task == Task::Classification {
            correct += accuracy(&out, &y)? * len as f64;
        }
        start += len;
        Ok(())
    })?;
    let n = split.len.max(1) as f64;
    Ok((loss / n, (task == Task::Classification).then_some(correct / n)))
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
