//! What a run needs to continue exactly where it stopped, and when to take it. The trainer
//! fills a [`Checkpoint`] and hands it to its recorder, which writes it (results/); on
//! resume it gets one back. Nothing here touches a file.

use super::EvalRow;
use crate::model::Named;
use anyhow::{Result, bail};
use candle_core::Tensor;
use std::collections::HashMap;
use std::time::Duration;

/// A run's full state at a step boundary (after the step's evaluation, if it had one).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Optimizer steps done.
    pub step: u64,
    /// The epoch in progress (or just finished, when `step` is a multiple of its length).
    pub epoch: u64,
    pub samples: u64,
    /// The training losses summed since the last evaluation, and how many.
    pub loss_sum: f64,
    pub loss_count: u64,
    pub last_lr: f64,
    /// Positions of the shuffling and dropout generators (ChaCha8 word positions).
    pub shuffle_word_pos: u128,
    pub dropout_word_pos: u128,
    /// [`crate::schedule::Schedule::state`].
    pub schedule_state: Vec<f64>,
    /// Early stopping's best value and evaluations without improvement.
    pub early_best: Option<f64>,
    pub early_wait: u64,
    pub best_row: Option<EvalRow>,
    pub final_row: Option<EvalRow>,
    /// Wall seconds of training before this checkpoint (the clock goes on from there).
    pub seconds: f64,
    /// The epoch's sample order.
    pub order: Vec<u32>,
    /// Model parameters by name (`blocks.0.a.conv.weight`), optimizer state
    /// (`optim.<slot>.<name>`), and the best evaluation's parameters (`best.<name>`) when a
    /// metric is monitored, all in PyTorch's layout (see [`named_tensors`]). Checkpoints of
    /// runner before named parameters hold `param.I`, `optim.<slot>.I` and `best.I` in the
    /// model's order and runner's layout; [`positional`] reads both.
    pub tensors: Vec<(String, Tensor)>,
    /// The optimizer's step count (Adam's bias correction).
    pub optimizer_t: i64,
}

/// When to write checkpoints: every `every` steps (an epoch by default), and at least every
/// `max_interval` of wall time, but never so often that writing them takes more than
/// `max_share` of the run's time (a digits run of 0.1 s would otherwise spend more time
/// writing than training). Forced ones (an interrupt) are always written.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub every: u64,
    pub max_interval: Duration,
    pub max_share: f64,
}

impl Policy {
    /// Whether to write one after `step` (steps done), given how long ago the last was
    /// written and how long writing it took.
    pub fn due(&self, step: u64, since_last: Duration, last_cost: Duration) -> bool {
        let affordable = since_last.as_secs_f64() * self.max_share >= last_cost.as_secs_f64();
        affordable && (step.is_multiple_of(self.every.max(1)) || since_last >= self.max_interval)
    }
}

/// A checkpoint's tensors by name in PyTorch's layout, from the model's tensors
/// `named`, the optimizer's state (keyed `optim.<slot>.I`, I the position in `named`) and
/// the best evaluation's parameters (already named and in PyTorch's layout).
pub fn named_tensors(
    named: &[Named],
    optimizer: Vec<(String, Tensor)>,
    best: Option<&Vec<(String, Tensor)>>,
) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::with_capacity(named.len() * 3);
    for n in named {
        out.push((n.name.clone(), n.torch_copy()?));
    }
    for (key, t) in optimizer {
        let (slot, i) = split_key(&key)?;
        let Some(n) = i.parse::<usize>().ok().and_then(|i| named.get(i)) else {
            bail!("the optimizer's state {key} is for no parameter of the model")
        };
        out.push((format!("optim.{slot}.{}", n.name), n.to_torch(&t)?));
    }
    for (name, t) in best.into_iter().flatten() {
        out.push((format!("best.{name}"), t.clone()));
    }
    Ok(out)
}

/// A checkpoint's `tensors` as the model's order and runner's layout, keyed as the
/// optimizer and the trainer read them (`param.I`, `optim.<slot>.I`, `best.I`), from a
/// checkpoint of either kind; the best parameters stay in PyTorch's layout.
pub fn positional(named: &[Named], tensors: Vec<(String, Tensor)>) -> Result<HashMap<String, Tensor>> {
    let mut map: HashMap<String, Tensor> = tensors.into_iter().collect();
    if map.contains_key("param.0") {
        // Written before parameters had names: already positional; best.I to PyTorch's layout.
        for (i, n) in named.iter().enumerate() {
            if let Some(t) = map.remove(&format!("best.{i}")) {
                map.insert(format!("best.{i}"), n.to_torch(&t)?);
            }
        }
        return Ok(map);
    }
    let index: HashMap<&str, usize> = named.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut out = HashMap::with_capacity(map.len());
    for (key, t) in map {
        if let Some(&i) = index.get(key.as_str()) {
            out.insert(format!("param.{i}"), named[i].from_torch(&t)?);
        } else if let Some(name) = key.strip_prefix("best.") {
            let Some(&i) = index.get(name) else { bail!("the checkpoint's {key} is no parameter of this model") };
            out.insert(format!("best.{i}"), t);
        } else if key.starts_with("optim.") {
            let (slot, name) = split_key(&key)?;
            let Some(&i) = index.get(name) else { bail!("the checkpoint's {key} is for no parameter of this model") };
            out.insert(format!("optim.{slot}.{i}"), named[i].from_torch(&t)?);
        } else if key != "order" {
            bail!("the checkpoint holds {key}, which this model does not have (another [model]?)");
        }
    }
    Ok(out)
}

/// (slot, rest) of an optimizer key `optim.<slot>.<rest>`.
fn split_key(key: &str) -> Result<(&str, &str)> {
    let mut parts = key.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("optim"), Some(slot), Some(rest)) => Ok((slot, rest)),
        _ => bail!("{key} is no optimizer state (optim.<slot>.<parameter>)"),
    }
}

/// Takes a run's periodic checkpoints as its [`Policy`] says: after a step, when one is
/// due and affordable (its cost measured each time; before the first, 5 ms: two small
/// files, fsynced, so a run shorter than a second writes none unless stopped).
pub struct Checkpointer {
    policy: Policy,
    last: std::time::Instant,
    cost: Duration,
}

impl Checkpointer {
    pub fn new(t: &super::TrainSpec, ctx: &crate::schedule::Context) -> Checkpointer {
        let policy = Policy {
            every: t.checkpoint_every.resolve_steps(ctx, 1),
            max_interval: Duration::from_secs_f64(t.checkpoint_minutes * 60.0),
            max_share: 0.005,
        };
        Checkpointer { policy, last: std::time::Instant::now(), cost: Duration::from_millis(5) }
    }

    /// Whether a checkpoint is due after step `step` (asked once a step: the answer
    /// depends on the clock).
    pub fn due(&self, step: u64) -> bool {
        self.policy.due(step, self.last.elapsed(), self.cost)
    }

    /// Hands `recorder` a checkpoint of `training` (one [`Checkpointer::due`] said was
    /// due); `seconds` is the time trained in this process.
    pub fn write(
        &mut self,
        training: &super::Training,
        recorder: &mut dyn super::Recorder,
        seconds: impl Fn() -> f64,
    ) -> Result<()> {
        let began = std::time::Instant::now();
        recorder.checkpoint(&training.snapshot(seconds())?)?;
        (self.last, self.cost) = (std::time::Instant::now(), began.elapsed());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_follow_the_interval_and_stay_cheap() {
        let p = Policy { every: 45, max_interval: Duration::from_secs(600), max_share: 0.01 };
        let ms = Duration::from_millis;
        assert!(p.due(45, ms(2000), ms(5)));
        assert!(!p.due(44, ms(2000), ms(5)));
        // Written 10 ms after one that took 5 ms: 50% of the time, refused.
        assert!(!p.due(90, ms(10), ms(5)));
        // A long epoch: the wall-clock bound writes one mid-epoch.
        assert!(p.due(7, Duration::from_secs(601), ms(5)));
    }
}
