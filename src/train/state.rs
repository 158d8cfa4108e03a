//! A run checked once ([`Prepared`]) and its training state as one value ([`Training`]):
//! the model, the optimizer, the schedule and everything that moves as it trains
//! (position, generators, losses since the last evaluation, the best and last evaluations,
//! early stopping, the best weights). [`Training::snapshot`] gives the [`Checkpoint`] to
//! write and [`Training::restore`] continues from one, so a resumed run goes on exactly
//! as if it had never stopped.

use super::checkpoint::{named_tensors, positional};
use super::{Checkpoint, EvalRow, RunSpec, check_monitors, metric};
use crate::data::{Dataset, Task};
use crate::model::network::state_dict;
use crate::model::{Loss, Network};
use crate::optim::Optimizer;
use crate::schedule::{Context, Schedule, larger_is_better as maximize};
use anyhow::{Result, bail};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// A run whose spec was checked against its data, with what every part of training
/// reads: built once per run by [`Prepared::new`] (where `runner run`, `run-one` and
/// sweeps check their runs before any starts) and handed to the trainer.
#[derive(Clone)]
pub struct Prepared {
    pub spec: RunSpec,
    pub data: Arc<Dataset>,
    /// The run's length and the schedule's context.
    pub ctx: Context,
    /// The model's outputs: classes, or 1 for regression.
    pub outputs: usize,
    pub loss: Loss,
    /// The metric the best evaluation is the best of: the one early stopping or the
    /// schedule monitors, else val_accuracy (val_loss for regression and language models).
    pub best_by: String,
    /// Whether the best evaluation's weights are kept (best.safetensors, Keras'
    /// restore_best_weights): with early stopping or a monitored schedule.
    pub keeps_best: bool,
}

impl Prepared {
    /// Checks `spec` against `data` (the watched metrics, the model for the data's shape,
    /// the run's length) and resolves what training reads; why not,
    /// as a sentence for the user.
    pub fn new(spec: RunSpec, data: Arc<Dataset>) -> Result<Prepared, String> {
        if data.train.len == 0 {
            // Data sets refuse this at load; without samples an epoch has no batch to end it.
            return Err(format!("{}'s training part is empty", data.name));
        }
        spec.train.check_length(data.train.len)?;
        let ctx = spec.train.schedule_context(data.train.len);
        let monitor = spec.schedule.build(&ctx).monitor().map(String::from);
        check_monitors(&spec, &data, monitor.as_deref())?;
        let classification = data.task == Task::Classification;
        // A language model's best is its lowest loss (token accuracy says little).
        let default_by = if classification && data.text.is_none() { "val_accuracy" } else { "val_loss" };
        let early = spec.train.early_stopping.as_ref().map(|e| e.monitor.clone());
        let keeps_best = early.is_some() || monitor.is_some();
        Ok(Prepared {
            ctx,
            outputs: if classification { data.classes } else { 1 },
            loss: if classification { Loss::CrossEntropy } else { Loss::Mse },
            best_by: early.or(monitor).unwrap_or_else(|| default_by.to_string()),
            keeps_best,
            spec,
            data,
        })
    }

    /// The model, built from the run's seed (the same initial weights on every device)
    /// with its tensors on `device`.
    pub fn build_model(&self, device: &Device) -> Result<Box<dyn Network>> {
        let (spec, data, t) = (&self.spec, &self.data, &self.spec.train);
        crate::model::build(&spec.model, data.features, self.outputs, data.image, t.seed, t.kernels, device)
    }

    /// What the run keeps on its device besides a batch's activations, in words: its
    /// parameters with their gradients and optimizer state (16 bytes each at most), and the
    /// data set; for a message about memory.
    pub fn memory(&self) -> String {
        let data = &self.data;
        let params = self.spec.model.check(data.features, self.outputs, data.image).unwrap_or(0);
        let bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        let set = bytes(&data.train.x) + bytes(&data.train.y) + bytes(&data.validation.x) + bytes(&data.validation.y);
        format!(
            "{params} parameters (up to {:.0} MB with their gradients and optimizer state), the data set ({:.0} MB) \
             and a batch of {}'s activations",
            params as f64 * 16.0 / 1e6,
            set as f64 / 1e6,
            self.spec.train.batch_size
        )
    }

    /// Opens the run's device (`[train] device`) and puts its data set there: the data set
    /// itself on the CPU, else a copy on the GPU (made once per run).
    pub fn open_device(&self) -> Result<(Device, Arc<Dataset>)> {
        let spec = self.spec.train.device;
        let device = spec.open().map_err(|e| anyhow::anyhow!("device = \"{spec}\": {e}"))?;
        if device.is_cpu() {
            return Ok((device, self.data.clone()));
        }
        let data = self.data.to_device(&device).map_err(|e| {
            anyhow::anyhow!("cannot copy the {} data set to {}: {e}", self.data.name, crate::device::describe(&device))
        })?;
        Ok((device, Arc::new(data)))
    }
}

/// The most threads a run may have: this many times the machine's cores. More only
/// oversubscribes them (each thread also holds its own buffers), and a typo (100000)
/// would spawn that many threads.
pub const THREADS_PER_CORE: u64 = 4;

/// Refuses a thread count above [`THREADS_PER_CORE`] times the cores here: checked where
/// the runs train (`runner run` and sweeps here, `run-one` on a Slurm node), not where a
/// sweep is submitted from.
pub fn check_threads(threads: u64) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    if threads > THREADS_PER_CORE * cores {
        return Err(format!(
            "`train.threads` (or --threads-per-run) = {threads} is more than {THREADS_PER_CORE} x the {cores} cores \
             here; give at most {} (one per core is usually fastest)",
            THREADS_PER_CORE * cores
        ));
    }
    Ok(())
}

/// Refuses GPU devices this runner or this machine cannot open (built without CUDA, no
/// driver, a GPU number beyond those visible), before any run starts; the number of GPUs
/// visible (0 when every device is the CPU).
pub fn check_devices(devices: &[crate::device::DeviceSpec]) -> Result<usize, String> {
    if devices.iter().all(|d| d.is_cpu()) {
        return Ok(0);
    }
    let visible = crate::device::gpu_count().map_err(|e| format!("device = \"cuda\": {e}"))?;
    if visible == 0 {
        return Err(
            "device = \"cuda\": the NVIDIA driver sees no GPU (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)".into()
        );
    }
    if let Some(n) = devices.iter().filter_map(|d| d.ordinal()).find(|&n| n >= visible) {
        return Err(format!(
            "device = \"cuda:{n}\": there is no GPU {n}; {visible} visible (cuda:0 to cuda:{})",
            visible - 1
        ));
    }
    Ok(visible)
}

/// Everything about a run that moves as it trains, besides the model's and the
/// optimizer's tensors and the schedule's state.
pub struct RunState {
    /// Optimizer steps done; the epoch in progress; samples trained.
    pub step: u64,
    pub epoch: u64,
    pub samples: u64,
    /// Training losses summed since the last evaluation, and how many.
    pub loss_sum: f64,
    pub loss_count: u64,
    /// The rate of the last step.
    pub last_lr: f64,
    pub shuffle_rng: ChaCha8Rng,
    pub dropout_rng: ChaCha8Rng,
    /// The epoch's sample order.
    pub order: Vec<u32>,
    pub best_row: Option<EvalRow>,
    pub final_row: Option<EvalRow>,
    pub early: EarlyState,
    /// The best evaluation's parameters (named, in PyTorch's layout), when kept.
    pub best_params: Option<Vec<(String, Tensor)>>,
    /// Seconds trained before this process started (a resumed run's clock goes on).
    pub seconds_before: f64,
    /// Batches of the epoch in progress already trained, when resuming mid-epoch.
    resume_skip: Option<usize>,
}

/// A run in training: its model, optimizer and schedule, and its [`RunState`].
pub struct Training {
    pub model: Box<dyn Network>,
    pub optimizer: Optimizer,
    pub schedule: Box<dyn Schedule>,
    pub state: RunState,
    /// Whether the best evaluation's weights are kept.
    keeps_best: bool,
    steps_per_epoch: u64,
}

impl Training {
    /// A run at its start on `device`: the model from the seed, a fresh optimizer, the
    /// generators of shuffling and dropout seeded apart.
    pub fn new(run: &Prepared, device: &Device) -> Result<Training> {
        let t = &run.spec.train;
        let model = run.build_model(device)?;
        let optimizer = Optimizer::new(&run.spec.optimizer, model.vars())?.with_decay_mask(model.decay_mask())?;
        let schedule = run.spec.schedule.build(&run.ctx);
        let state = RunState {
            step: 0,
            epoch: 0,
            samples: 0,
            loss_sum: 0.0,
            loss_count: 0,
            last_lr: schedule.lr(0),
            shuffle_rng: ChaCha8Rng::seed_from_u64(t.seed ^ 0x5_4FF1E),
            dropout_rng: ChaCha8Rng::seed_from_u64(t.seed ^ 0xD_0F0F),
            order: (0..run.data.train.len as u32).collect(),
            best_row: None,
            final_row: None,
            early: EarlyState::default(),
            best_params: None,
            seconds_before: 0.0,
            resume_skip: None,
        };
        Ok(Training {
            model,
            optimizer,
            schedule,
            state,
            keeps_best: run.keeps_best,
            steps_per_epoch: run.ctx.steps_per_epoch,
        })
    }

    /// The whole state at a step boundary, `seconds` trained so far in this process.
    pub fn snapshot(&self, seconds: f64) -> Result<Checkpoint> {
        let s = &self.state;
        let (optim, optimizer_t) = self.optimizer.state();
        let tensors = named_tensors(&self.model.named(), optim, s.best_params.as_ref())?;
        Ok(Checkpoint {
            step: s.step,
            epoch: s.epoch,
            samples: s.samples,
            loss_sum: s.loss_sum,
            loss_count: s.loss_count,
            last_lr: s.last_lr,
            shuffle_word_pos: s.shuffle_rng.get_word_pos(),
            dropout_word_pos: s.dropout_rng.get_word_pos(),
            schedule_state: self.schedule.state(),
            early_best: s.early.best,
            early_wait: s.early.wait,
            best_row: s.best_row,
            final_row: s.final_row,
            seconds: s.seconds_before + seconds,
            order: s.order.clone(),
            tensors,
            optimizer_t,
        })
    }

    /// Continues from `ck`: parameters, optimizer, generators, schedule, early stopping,
    /// rows, the epoch's order and the batches of it already done.
    pub fn restore(&mut self, ck: Checkpoint) -> Result<()> {
        let named = self.model.named();
        let tensors = positional(&named, ck.tensors)?;
        for (i, n) in named.iter().enumerate() {
            let Some(saved) = tensors.get(&format!("param.{i}")) else { bail!("the checkpoint has no {}", n.name) };
            if saved.dims() != n.var.dims() {
                bail!("the checkpoint's {} has shape {:?}, the model's is {:?}", n.name, saved.dims(), n.var.dims());
            }
            // A checkpoint is read onto the CPU; the run may be on a GPU.
            n.var.set(&saved.to_device(n.var.device())?)?;
        }
        self.optimizer.restore(&tensors, ck.optimizer_t)?;
        let s = &mut self.state;
        if self.keeps_best && tensors.contains_key("best.0") {
            let best = named
                .iter()
                .enumerate()
                .map(|(i, n)| Ok((n.name.clone(), tensors[&format!("best.{i}")].to_device(n.var.device())?)));
            s.best_params = Some(best.collect::<Result<_>>()?);
        }
        if ck.order.len() != s.order.len() {
            bail!("the checkpoint's epoch order has {} samples, the data set {}", ck.order.len(), s.order.len());
        }
        s.order = ck.order;
        s.shuffle_rng.set_word_pos(ck.shuffle_word_pos);
        s.dropout_rng.set_word_pos(ck.dropout_word_pos);
        self.schedule.restore(&ck.schedule_state);
        (s.step, s.epoch, s.samples) = (ck.step, ck.epoch, ck.samples);
        (s.loss_sum, s.loss_count, s.last_lr) = (ck.loss_sum, ck.loss_count, ck.last_lr);
        (s.early.best, s.early.wait) = (ck.early_best, ck.early_wait);
        (s.best_row, s.final_row) = (ck.best_row, ck.final_row);
        s.seconds_before = ck.seconds;
        // The epoch in progress, unless its last batch was done: an interrupt can also come
        // right after an epoch's shuffle, before its first batch (0 done).
        let done = s.step.saturating_sub(s.epoch.saturating_sub(1) * self.steps_per_epoch);
        if s.epoch > 0 && done < self.steps_per_epoch {
            s.resume_skip = Some(done as usize);
        }
        Ok(())
    }

    /// Starts the next epoch (its order reshuffled with `shuffle`), unless a resumed run
    /// continues the epoch in progress; the batches of the epoch already trained.
    pub fn begin_epoch(&mut self, shuffle: bool) -> usize {
        let s = &mut self.state;
        match s.resume_skip.take() {
            Some(done) => done,
            None => {
                s.epoch += 1;
                if shuffle {
                    s.order.shuffle(&mut s.shuffle_rng);
                }
                0
            }
        }
    }

    /// Records an evaluation during training: the schedule observes its metric, the best
    /// evaluation (and its weights, where kept) and the last one move; `by` is the metric
    /// the best is the best of.
    pub fn observe(&mut self, row: &EvalRow, by: &str) -> Result<()> {
        if let Some(m) = self.schedule.monitor().and_then(|m| metric(row, m)) {
            self.schedule.observe(m);
        }
        if better(row, self.state.best_row.as_ref(), by) {
            self.state.best_row = Some(*row);
            if self.keeps_best {
                self.state.best_params = Some(state_dict(&*self.model)?);
            }
        }
        self.state.final_row = Some(*row);
        Ok(())
    }

    /// Records the evaluation that ends a run between evaluations: no schedule to feed,
    /// no weights to keep.
    pub fn observe_last(&mut self, row: &EvalRow, by: &str) {
        if better(row, self.state.best_row.as_ref(), by) {
            self.state.best_row = Some(*row);
        }
        self.state.final_row = Some(*row);
    }

    /// Keras' restore_best_weights: the best evaluation's weights back in the model, and
    /// that evaluation as the final one; false where none were kept.
    pub fn restore_best(&mut self) -> Result<bool> {
        let (Some(best), Some(row)) = (&self.state.best_params, self.state.best_row) else { return Ok(false) };
        for (n, (_, saved)) in self.model.named().iter().zip(best) {
            n.var.set(&n.from_torch(saved)?)?;
        }
        self.state.final_row = Some(row);
        Ok(true)
    }
}

fn better(row: &EvalRow, best: Option<&EvalRow>, by: &str) -> bool {
    let (Some(v), Some(b)) = (metric(row, by), best.and_then(|b| metric(b, by))) else { return best.is_none() };
    if maximize(by) { v > b } else { v < b }
}

/// Early-stopping bookkeeping (Keras EarlyStopping: absolute min_delta).
#[derive(Default)]
pub struct EarlyState {
    pub best: Option<f64>,
    pub wait: u64,
    pub stopped: bool,
}

impl EarlyState {
    /// Whether to stop after the evaluation `row`.
    pub fn should_stop(&mut self, row: &EvalRow, es: &super::EarlyStopping) -> bool {
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
