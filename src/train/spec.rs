//! The `[train]` table: how long, in what batches, how often to evaluate and log.

use crate::device::{DEVICES, DeviceSpec};
use crate::model::{KERNELS, Kernels};
use crate::params::{ParamSource, Rule};
use crate::schedule::{Context, Horizon};

/// The most optimizer steps a run may take (about three years at 100 steps a second).
pub const MAX_STEPS: u64 = 10_000_000_000;

/// Stop when the monitored metric has not improved for `patience` evaluations.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EarlyStopping {
    pub monitor: String,
    pub patience: u64,
    pub min_delta: f64,
    /// Keras' restore_best_weights: when stopping early, the final weights (and metrics)
    /// are the best evaluation's.
    pub restore_best_weights: bool,
}

/// A validated `[train]` table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainSpec {
    /// Epochs to train; `None` exactly when `steps` is set (a run gives one of the two).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    pub batch_size: u64,
    /// Batches whose gradients are summed into one step (gradient accumulation): a step
    /// sees `batch_size * accumulate` samples, the memory of one batch.
    #[serde(skip_serializing_if = "is_one")]
    pub accumulate: u64,
    pub shuffle: bool,
    /// Steps between evaluations; `None` = at the end of every epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<u64>,
    pub log_every: u64,
    /// Batches of validation windows an evaluation of a text data set reads (a fixed,
    /// seeded set); `None`: 20. Other data sets are evaluated on all their validation part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_batches: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    pub seed: u64,
    pub threads: u64,
    /// Steps between checkpoints (a number of steps or "N epochs").
    pub checkpoint_every: Horizon,
    /// Wall-clock bound between checkpoints, in minutes.
    pub checkpoint_minutes: f64,
    /// Checkpoints kept in the run's checkpoints/ (the latest ones).
    pub keep_checkpoints: u64,
    /// Flush denormal floats to zero in the run's threads (TensorFlow's CPU default).
    pub flush_denormals: bool,
    /// runner's CPU kernels where a model has them (auto), or plain candle ops only.
    #[serde(skip_serializing_if = "is_auto")]
    pub kernels: Kernels,
    /// Where the run trains: the CPU or a GPU. Not part of the resolved config (nor of its
    /// hash): where a run trains is how it is run, like a sweep's placement on its GPUs,
    /// and a run checkpointed on one device resumes on another. summary.json records it.
    #[serde(skip)]
    pub device: DeviceSpec,
    /// Steps after which a checkpoint is always written, whatever `checkpoint_every` says:
    /// a sweep that trains the steps several runs share once forks the others from them.
    /// Not part of the resolved config: how a run is run, not what it computes.
    #[serde(skip)]
    pub checkpoint_at: Vec<u64>,
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            epochs: Some(30),
            steps: None,
            batch_size: 32,
            accumulate: 1,
            shuffle: true,
            eval_every: None,
            log_every: 10,
            eval_batches: None,
            clip_grad_norm: None,
            early_stopping: None,
            seed: crate::DEFAULT_SEED,
            threads: 1,
            checkpoint_every: Horizon::Epochs(1.0),
            checkpoint_minutes: 10.0,
            keep_checkpoints: 2,
            flush_denormals: true,
            kernels: Kernels::Auto,
            device: DeviceSpec::Cpu,
            checkpoint_at: Vec::new(),
        }
    }
}

impl TrainSpec {
    /// Reads the `[train]` keys (the `early_stopping` sub-table is read by the caller).
    pub fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let epochs = p.optional_steps("epochs", 1, "30, unless steps is given", "passes over the training data")?;
        let steps =
            p.optional_steps("steps", 1, "epochs * steps per epoch", "optimizer steps to train (instead of epochs)")?;
        if epochs.is_some() && steps.is_some() {
            return Err(p.invalid(
                "steps",
                "is given with epochs; a run is as long as one of the two says, so give only one \
                 (steps counts optimizer updates, epochs passes over the training data)"
                    .into(),
            ));
        }
        Ok(TrainSpec {
            epochs: if steps.is_some() { None } else { Some(epochs.unwrap_or(30)) },
            steps,
            batch_size: p.steps("batch_size", Some(32), 1, "samples per batch (a step's, unless accumulate is above 1)")?,
            accumulate: p.steps(
                "accumulate",
                Some(1),
                1,
                "batches whose gradients make one step (gradient accumulation: batch_size * accumulate samples a step)",
            )?,
            shuffle: p.flag("shuffle", true, "reshuffle the training data each epoch (seeded)")?,
            eval_every: p.optional_steps("eval_every", 1, "every epoch", "steps between evaluations")?,
            log_every: p.steps("log_every", Some(10), 1, "steps between rows of steps.csv")?,
            eval_batches: p.optional_steps(
                "eval_batches",
                1,
                "20",
                "batches of validation windows per evaluation of a text data set (fixed and seeded, so evaluations compare)",
            )?,
            clip_grad_norm: p.optional_number(
                "clip_grad_norm",
                Rule::Positive,
                "no clipping",
                "maximum global gradient norm",
            )?,
            early_stopping: None,
            seed: p.steps(
                "seed",
                Some(crate::DEFAULT_SEED),
                0,
                "seed for weights, shuffling, dropout and noisy schedules",
            )?,
            threads: p.steps("threads", Some(1), 1, "CPU threads for this run")?,
            checkpoint_every: p.horizon(
                "checkpoint_every",
                Some(Horizon::Epochs(1.0)),
                true,
                "steps (or \"N epochs\") between checkpoints; never more than 0.5% of the run's time is spent on them",
            )?,
            checkpoint_minutes: p.number(
                "checkpoint_minutes",
                Some(10.0),
                Rule::Positive,
                "a checkpoint at least this often, in minutes of training",
            )?,
            keep_checkpoints: p.steps("keep_checkpoints", Some(2), 1, "the latest checkpoints kept")?,
            flush_denormals: p.flag(
                "flush_denormals",
                true,
                "flush denormal floats to zero (FTZ/DAZ, as TensorFlow on CPU); false keeps IEEE arithmetic",
            )?,
            kernels: Kernels::from_word(p.choice(
                "kernels",
                KERNELS,
                Some("auto"),
                "auto: runner's CPU kernels where the model has them; plain: candle's ops and autograd only (what other devices run)",
            )?),
            device: match p.optional_text("device", "cpu", "where the run trains: cpu, cuda (the first GPU) or cuda:N")? {
                None => DeviceSpec::Cpu,
                Some(text) => match DeviceSpec::parse(&text) {
                    Ok(d) => d,
                    Err(_) => return Err(p.invalid("device", format!("\"{text}\" is not a device; give {DEVICES}"))),
                },
            },
            checkpoint_at: Vec::new(),
        })
    }

    /// Samples per optimizer step: `batch_size * accumulate`.
    pub fn step_samples(&self) -> u64 {
        self.batch_size.saturating_mul(self.accumulate)
    }

    /// Steps per epoch for a training set of `n` samples (the last step may be smaller).
    pub fn steps_per_epoch(&self, n: usize) -> u64 {
        (n as u64).div_ceil(self.step_samples()).max(1)
    }

    /// Validation windows an evaluation of a text data set reads.
    pub fn eval_windows(&self) -> usize {
        self.eval_batches.unwrap_or(20).saturating_mul(self.batch_size) as usize
    }

    /// What the schedule of a run on a training set of `n` samples depends on.
    pub fn schedule_context(&self, n: usize) -> Context {
        Context { total_steps: self.total_steps(n), steps_per_epoch: self.steps_per_epoch(n), seed: self.seed }
    }

    /// Total optimizer steps for a training set of `n` samples (saturating; see
    /// [`TrainSpec::check_length`] for the refusal of absurd lengths).
    pub fn total_steps(&self, n: usize) -> u64 {
        self.steps.unwrap_or_else(|| self.epochs.unwrap_or(30).saturating_mul(self.steps_per_epoch(n)))
    }

    /// Refuses a run longer than [`MAX_STEPS`] (and an epoch count whose step count would
    /// not even fit in 64 bits), saying which key made it so.
    pub fn check_length(&self, n: usize) -> Result<u64, String> {
        let total = match (self.steps, self.epochs) {
            (Some(s), _) => Some(s),
            (None, e) => e.unwrap_or(30).checked_mul(self.steps_per_epoch(n)),
        };
        match total {
            Some(t) if t <= MAX_STEPS => Ok(t),
            _ => Err(match self.steps {
                Some(s) => format!("`train.steps` = {s} is more than the {MAX_STEPS} steps a run may take"),
                None => format!(
                    "`train.epochs` = {} of {} steps each is more than the {MAX_STEPS} steps a run may take",
                    self.epochs.unwrap_or(30),
                    self.steps_per_epoch(n)
                ),
            }),
        }
    }
}

fn is_one(v: &u64) -> bool {
    *v == 1
}

fn is_auto(k: &Kernels) -> bool {
    *k == Kernels::Auto
}

impl EarlyStopping {
    pub fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(EarlyStopping {
            monitor: p
                .choice("monitor", crate::schedule::MONITORS, Some("val_loss"), "the metric to watch")?
                .to_string(),
            patience: p.steps("patience", Some(5), 1, "evaluations without improvement before stopping")?,
            min_delta: p.number(
                "min_delta",
                Some(0.0),
                Rule::NonNegative,
                "smallest change that counts as improvement",
            )?,
            restore_best_weights: p.flag(
                "restore_best_weights",
                false,
                "when stopping early, end with the best evaluation's weights (Keras)",
            )?,
        })
    }
}
