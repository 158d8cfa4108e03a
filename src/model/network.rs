//! The one interface every architecture implements ([`Network`]): its parameters by name
//! (PyTorch's `state_dict()` names), which of them weight decay applies to, the forward
//! pass in training or evaluation, and one step's loss and gradients, whose default is
//! candle's autograd over the forward pass. A model with a faster way (the CPU kernels of
//! `kernels/`) overrides [`Network::loss_and_grads`] or [`Network::outputs`]; the default
//! path is plain candle ops, which run on any `candle_core::Device`.
//!
//! The trainer hands a step's samples as a [`Batch`] and knows nothing of which model it
//! trains.

use super::Targets;
use anyhow::{Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;
use std::ops::Range;

/// Training (dropout drawn from the generator, batch statistics used and updated) or
/// evaluation (no dropout, running statistics).
pub enum Mode<'a> {
    Train(&'a mut ChaCha8Rng),
    Eval,
}

impl Mode<'_> {
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train(_))
    }

    /// The dropout generator, in training.
    pub fn rng(&mut self) -> Option<&mut ChaCha8Rng> {
        match self {
            Mode::Train(r) => Some(r),
            Mode::Eval => None,
        }
    }
}

/// Which code trains and evaluates a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// runner's CPU kernels where the model has them and the tensors are on the CPU, else
    /// plain candle ops.
    #[default]
    Auto,
    /// Plain candle ops and candle's autograd only (what other devices run).
    Plain,
}

pub const KERNELS: &[&str] = &["auto", "plain"];

impl Kernels {
    pub fn from_word(w: &str) -> Kernels {
        if w == "plain" { Kernels::Plain } else { Kernels::Auto }
    }
}

/// How a tensor is laid out in runner and in PyTorch's `state_dict()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The same.
    Same,
    /// A linear layer's matrix: (in, out) in runner, (out, in) in PyTorch.
    Transposed,
}

/// One tensor of a model: a parameter (trained) or a buffer (state such as batch norm's
/// running statistics, never given a gradient).
#[derive(Clone)]
pub struct Named {
    /// PyTorch's `state_dict()` name (`blocks.0.a.conv.weight`).
    pub name: String,
    pub var: Var,
    pub trainable: bool,
    /// Whether the optimizer's weight decay applies to it.
    pub decay: bool,
    pub layout: Layout,
}

impl Named {
    /// A trained parameter.
    pub fn param(name: impl Into<String>, var: &Var, decay: bool) -> Named {
        Named { name: name.into(), var: var.clone(), trainable: true, decay, layout: Layout::Same }
    }

    /// A linear layer's matrix stored (in, out).
    pub fn matrix(name: impl Into<String>, var: &Var, decay: bool) -> Named {
        Named { layout: Layout::Transposed, ..Named::param(name, var, decay) }
    }

    /// State that is saved but not trained.
    pub fn buffer(name: impl Into<String>, var: &Var) -> Named {
        Named { name: name.into(), var: var.clone(), trainable: false, decay: false, layout: Layout::Same }
    }

    /// The tensor as PyTorch holds it.
    pub fn to_torch(&self, t: &Tensor) -> Result<Tensor> {
        Ok(match self.layout {
            Layout::Same => t.clone(),
            Layout::Transposed => t.t()?.contiguous()?,
        })
    }

    /// A copy of the tensor's current value as PyTorch holds it (a `Var` changes in place).
    pub fn torch_copy(&self) -> Result<Tensor> {
        self.to_torch(&self.var.as_tensor().copy()?)
    }

    /// A tensor saved in PyTorch's layout, as this model holds it.
    pub fn from_torch(&self, t: &Tensor) -> Result<Tensor> {
        self.to_torch(t)
    }

    /// The shape of this tensor in PyTorch's layout.
    pub fn torch_dims(&self) -> Vec<usize> {
        let mut d = self.var.dims().to_vec();
        if self.layout == Layout::Transposed {
            d.reverse();
        }
        d
    }
}

/// What a step's loss compares the outputs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Softmax cross-entropy against class indices, averaged over the batch.
    CrossEntropy,
    /// Mean squared error.
    Mse,
}

impl Loss {
    pub fn of(self, outputs: &Tensor, targets: &Tensor) -> Result<Tensor> {
        match self {
            Loss::CrossEntropy => super::cross_entropy(outputs, targets),
            Loss::Mse => super::mse(outputs, targets),
        }
    }
}

/// A step's inputs as rows of the CPU, for kernels that read them in place.
pub enum HostRows<'a> {
    /// Rows `rows` of the training set's inputs (a contiguous f32 CPU tensor).
    Of { x: &'a Tensor, rows: &'a [u32] },
    /// The batch's inputs, already gathered (augmented images), row after row, with the
    /// rows 0, 1, ... of them to read.
    Gathered { x: &'a [f32], rows: &'a [u32] },
}

/// A step's samples, as the trainer hands them to a network.
pub trait Batch: Sync {
    /// Samples in the batch.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Samples `range` (positions in the batch) as (inputs, targets) tensors.
    fn tensors(&self, range: Range<usize>) -> Result<(Tensor, Tensor)>;
    /// The device those tensors are on.
    fn device(&self) -> &candle_core::Device;
    /// The inputs as CPU rows with the targets as host values, where the data are plain
    /// rows of numbers on the CPU (not token windows); `features` values a row.
    fn host(&self) -> Option<(HostRows<'_>, Targets<'_>, usize)>;
}

/// A batch held in memory on the CPU: rows of f32 features with class targets, or windows
/// of tokens with a target for each position. For loops of one's own over a model (the
/// tests against the plain path and PyTorch use it); the trainer's batches are drawn from
/// a data set.
pub struct InMemory {
    x: Tensor,
    y: Tensor,
    values: Option<Vec<f32>>,
    /// 0, 1, ...: the rows of `values`.
    order: Vec<u32>,
    classes: Vec<u32>,
    features: usize,
}

impl InMemory {
    /// `values.len() / features` rows of `features` values, with their classes.
    pub fn rows(values: Vec<f32>, features: usize, classes: Vec<u32>) -> Result<InMemory> {
        let n = classes.len();
        Ok(InMemory {
            x: Tensor::from_vec(values.clone(), (n, features), &candle_core::Device::Cpu)?,
            y: Tensor::from_vec(classes.clone(), n, &candle_core::Device::Cpu)?,
            values: Some(values),
            order: (0..n as u32).collect(),
            classes,
            features,
        })
    }

    /// `windows` windows of `t` tokens (`x`, row after row) and the token after each position.
    pub fn tokens(x: Vec<u32>, next: Vec<u32>, windows: usize, t: usize) -> Result<InMemory> {
        Ok(InMemory {
            x: Tensor::from_vec(x, (windows, t), &candle_core::Device::Cpu)?,
            y: Tensor::from_vec(next.clone(), windows * t, &candle_core::Device::Cpu)?,
            values: None,
            order: Vec::new(),
            classes: next,
            features: t,
        })
    }

    /// The inputs: (rows, features) f32 or (windows, t) u32.
    pub fn x(&self) -> &Tensor {
        &self.x
    }

    /// The targets: a class for each row, or the next token for each position.
    pub fn y(&self) -> &Tensor {
        &self.y
    }
}

impl Batch for InMemory {
    fn len(&self) -> usize {
        self.x.dims()[0]
    }

    fn tensors(&self, range: Range<usize>) -> Result<(Tensor, Tensor)> {
        let per = self.y.dim(0)? / self.len();
        Ok((self.x.narrow(0, range.start, range.len())?, self.y.narrow(0, range.start * per, range.len() * per)?))
    }

    fn device(&self) -> &candle_core::Device {
        self.x.device()
    }

    fn host(&self) -> Option<(HostRows<'_>, Targets<'_>, usize)> {
        let x = self.values.as_ref()?;
        Some((HostRows::Gathered { x, rows: &self.order }, Targets::Classes(&self.classes), self.features))
    }
}

/// A step's mean loss: its value, or on a GPU the scalar tensor that will hold it (reading
/// it would make the host wait for the step; the trainer reads a window of them at once
/// when it logs, evaluates or checkpoints).
pub enum StepLoss {
    Value(f64),
    Pending(Tensor),
}

impl StepLoss {
    /// The value, read from the device if need be.
    pub fn value(self) -> Result<f64> {
        Ok(match self {
            StepLoss::Value(v) => v,
            StepLoss::Pending(t) => t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?,
        })
    }
}

/// What one step needs besides its batch.
pub struct Step<'a> {
    pub loss: Loss,
    /// Samples a forward pass takes at once (`batch_size`): a larger batch (gradient
    /// accumulation) is its parts' gradients summed.
    pub micro_batch: usize,
    /// Threads the run has.
    pub threads: usize,
    pub dropout: &'a mut ChaCha8Rng,
}

/// A model: named parameters, a forward pass, and a step's loss and gradients.
pub trait Network: Send + Sync {
    /// Every tensor, parameters then buffers as the model orders them (checkpoints and
    /// the optimizer's state follow this order), named as PyTorch's `state_dict()`.
    fn named(&self) -> Vec<Named>;

    /// The outputs of a batch `x` (n, features), or for a language model of token windows
    /// (n, t) of u32 the logits (n * t, vocab).
    fn forward(&self, x: &Tensor, mode: Mode<'_>) -> Result<Tensor>;

    /// The step's mean loss over `batch`, the gradient of every parameter in `grads` (a
    /// store kept from step to step). A non-finite loss is returned as soon as it is seen,
    /// the gradients then left as they are (on a GPU, where the loss is not read, a
    /// non-finite one is found when the trainer reads it). The default: candle's autograd
    /// over [`Network::forward`], one `micro_batch` at a time.
    fn loss_and_grads(&self, batch: &dyn Batch, step: &mut Step<'_>, grads: &mut GradStore) -> Result<StepLoss> {
        autograd_loss_and_grads(self, batch, step, grads, false)
    }

    /// The outputs of `x` (n, features) in evaluation, handed to `each` in pieces of rows
    /// in order (the network chooses their size); the default: [`Network::forward`] on
    /// 128 rows at a time.
    fn outputs(&self, x: &Tensor, each: &mut dyn FnMut(Tensor) -> Result<()>) -> Result<()> {
        eval_outputs(self, x, each)
    }

    /// The variables of [`Network::named`], in order.
    fn vars(&self) -> Vec<Var> {
        self.named().into_iter().map(|n| n.var).collect()
    }

    /// Which of [`Network::vars`] the optimizer's weight decay applies to.
    fn decay_mask(&self) -> Vec<bool> {
        self.named().iter().map(|n| n.decay).collect()
    }

    /// Trainable values (buffers not counted).
    fn parameter_count(&self) -> usize {
        self.named().iter().filter(|n| n.trainable).map(|n| n.var.elem_count()).sum()
    }
}

/// [`Network::outputs`] by [`Network::forward`] on 128 rows at a time: candle's forward
/// pass keeps every activation of a piece alive (the parameters are Vars, so it records
/// the graph), and a ResNet-20 on 1,024 CIFAR images would hold 4 GB.
pub fn eval_outputs<N: Network + ?Sized>(
    net: &N,
    x: &Tensor,
    each: &mut dyn FnMut(Tensor) -> Result<()>,
) -> Result<()> {
    in_pieces(x.dim(0)?, 128, |start, len| each(net.forward(&x.narrow(0, start, len)?, Mode::Eval)?.detach()))
}

/// Calls `f(start, len)` for `n` rows in pieces of at most `size`, in order.
pub fn in_pieces(n: usize, size: usize, mut f: impl FnMut(usize, usize) -> Result<()>) -> Result<()> {
    let mut start = 0;
    while start < n {
        let len = size.min(n - start);
        f(start, len)?;
        start += len;
    }
    Ok(())
}

/// [`Network::loss_and_grads`] by candle's autograd: each `micro_batch` of the batch
/// forward and backward, its gradient (of its share of the step's mean loss) added to the
/// step's. With `split` and several threads (on the CPU), each micro-batch's parts go
/// forward and backward at once, one per thread, their gradients summed in part order (for
/// models without batch statistics to share; dropout seeded per part from the step's
/// generator). On a GPU the loss stays there ([`StepLoss::Pending`]).
pub fn autograd_loss_and_grads<N: Network + ?Sized>(
    net: &N,
    batch: &dyn Batch,
    step: &mut Step<'_>,
    grads: &mut GradStore,
    split: bool,
) -> Result<StepLoss> {
    if !batch.device().is_cpu() {
        return device_loss_and_grads(net, batch, step, grads);
    }
    let n = batch.len();
    let parts = split && step.threads > 1;
    // The gradients of several parts are summed by parameter: only then are they needed.
    let vars = if parts || step.micro_batch < n { net.vars() } else { Vec::new() };
    *grads = GradStore::default();
    let mut loss_value = 0f64;
    let mut start = 0;
    while start < n {
        let micro = start..(start + step.micro_batch.max(1)).min(n);
        start = micro.end;
        if parts {
            let len = micro.len();
            let piece = len.div_ceil(step.threads);
            let pieces: Vec<Range<usize>> =
                (micro.start..micro.end).step_by(piece).map(|s| s..(s + piece).min(micro.end)).collect();
            let seeds: Vec<u64> = pieces.iter().map(|_| step.dropout.random()).collect();
            let loss_of = step.loss;
            let parts: Vec<Result<(f64, GradStore)>> = pieces
                .par_iter()
                .zip(&seeds)
                .map(|(piece, &seed)| {
                    let (xb, yb) = batch.tensors(piece.clone())?;
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    let loss = loss_of.of(&net.forward(&xb, Mode::Train(&mut rng))?, &yb)?;
                    let share = piece.len() as f64 / n as f64;
                    let value = loss.to_scalar::<f32>()? as f64 * share;
                    let g = if value.is_finite() { (loss * share)?.backward()? } else { GradStore::default() };
                    Ok((value, g))
                })
                .collect();
            for part in parts {
                let (value, g) = part?;
                loss_value += value;
                add_grads(grads, &g, &vars)?;
            }
            if !loss_value.is_finite() {
                break;
            }
            continue;
        }
        let (xb, yb) = batch.tensors(micro.clone())?;
        let out = net.forward(&xb, Mode::Train(step.dropout))?;
        let loss = step.loss.of(&out, &yb)?;
        let share = micro.len() as f64 / n as f64;
        let value = loss.to_scalar::<f32>()? as f64;
        loss_value += value * share;
        if !value.is_finite() {
            break;
        }
        if micro.len() == n {
            *grads = loss.backward()?;
        } else {
            add_grads(grads, &(loss * share)?.backward()?, &vars)?;
        }
    }
    Ok(StepLoss::Value(loss_value))
}

/// [`autograd_loss_and_grads`] on a device other than the CPU: the micro-batches one after
/// the other, the step's loss summed there and never read here.
pub(crate) fn device_loss_and_grads<N: Network + ?Sized>(
    net: &N,
    batch: &dyn Batch,
    step: &mut Step<'_>,
    grads: &mut GradStore,
) -> Result<StepLoss> {
    let n = batch.len();
    let vars = if step.micro_batch < n { net.vars() } else { Vec::new() };
    *grads = GradStore::default();
    let mut total: Option<Tensor> = None;
    let mut start = 0;
    while start < n {
        let micro = start..(start + step.micro_batch.max(1)).min(n);
        start = micro.end;
        let (xb, yb) = batch.tensors(micro.clone())?;
        let loss = step.loss.of(&net.forward(&xb, Mode::Train(step.dropout))?, &yb)?;
        if micro.len() == n {
            *grads = loss.backward()?;
            total = Some(loss.detach());
        } else {
            let part = (loss * (micro.len() as f64 / n as f64))?;
            add_grads(grads, &part.backward()?, &vars)?;
            let part = part.detach();
            total = Some(match total {
                Some(t) => (t + part)?,
                None => part,
            });
        }
    }
    match total {
        Some(t) => Ok(StepLoss::Pending(t)),
        None => Ok(StepLoss::Value(0.0)),
    }
}

/// Adds the gradients of `vars` in `part` to those in `sum`.
pub fn add_grads(sum: &mut GradStore, part: &GradStore, vars: &[Var]) -> Result<()> {
    for var in vars {
        let Some(g) = part.get(var) else { continue };
        let total = match sum.get(var) {
            Some(before) => (before + g)?,
            None => g.clone(),
        };
        sum.insert(var, total);
    }
    Ok(())
}

/// The model's tensors as PyTorch's `state_dict()` holds them: (name, a copy in PyTorch's
/// layout), in the model's order.
pub fn state_dict(net: &dyn Network) -> Result<Vec<(String, Tensor)>> {
    net.named().iter().map(|n| Ok((n.name.clone(), n.torch_copy()?))).collect()
}

/// Sets the model's tensors from `saved`: named as [`state_dict`] writes them, or (files of
/// runner before named parameters) `param.0`, `param.1`, ... in the model's order and
/// runner's layout. Every tensor must be there with the model's shape; `what` names the
/// source in errors, `built_for` what the model was built for (a data set's name).
pub fn load_state_dict(net: &dyn Network, saved: &HashMap<String, Tensor>, what: &str, built_for: &str) -> Result<()> {
    let named = net.named();
    let positional = !saved.contains_key(&named[0].name) && saved.contains_key("param.0");
    let mut values = Vec::with_capacity(named.len());
    let mut missing = Vec::new();
    for (i, n) in named.iter().enumerate() {
        let (key, want) =
            if positional { (format!("param.{i}"), n.var.dims().to_vec()) } else { (n.name.clone(), n.torch_dims()) };
        let Some(t) = saved.get(&key) else {
            missing.push(key);
            continue;
        };
        if t.dims() != want.as_slice() {
            bail!(
                "{what}: {key} has shape {:?}, the model built for {built_for} has {want:?} (another data set's features or classes, or an edited [model]?)",
                t.dims()
            );
        }
        values.push(if positional { t.clone() } else { n.from_torch(t)? });
    }
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(3).map(String::as_str).collect();
        bail!(
            "{what} does not hold this model: {} of its {} tensors are missing ({}{}); was it written for another [model]?",
            missing.len(),
            named.len(),
            shown.join(", "),
            if missing.len() > 3 { ", ..." } else { "" }
        );
    }
    for (n, v) in named.iter().zip(values) {
        n.var.set(&v.to_device(n.var.device())?)?;
    }
    Ok(())
}
