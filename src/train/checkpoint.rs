//! What a run needs to continue exactly where it stopped, and when to take it. The trainer
//! fills a [`Checkpoint`] and hands it to its recorder, which writes it (results/); on
//! resume it gets one back. Nothing here touches a file.

use super::EvalRow;
use candle_core::Tensor;
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
    /// Model parameters (`param.I`), optimizer state (`optim.*`), and the best evaluation's
    /// parameters (`best.I`) when a metric is monitored.
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
