//! Warmup in front of any schedule: `warmup_steps`, `warmup_start_lr`, `warmup_shape`.

use super::{ParamSource, Rule, Schedule};
use std::f64::consts::PI;

/// Ramp from `warmup_start_lr` to the wrapped schedule's first rate over `warmup_steps`;
/// the wrapped schedule then starts its own step count at 0.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Warmup {
    pub warmup_steps: u64,
    pub warmup_start_lr: f64,
    pub warmup_shape: String,
}

impl Warmup {
    /// Reads the shared warmup keys; `None` when `warmup_steps` is absent or 0.
    pub fn read<P: ParamSource>(p: &mut P) -> Result<Option<Self>, P::Error> {
        let warmup_steps = p.steps("warmup_steps", Some(0), 0, "steps of warmup before the schedule starts")?;
        let warmup_start_lr = p.number("warmup_start_lr", Some(0.0), Rule::NonNegative, "the rate at step 0")?;
        let warmup_shape =
            p.choice("warmup_shape", &["linear", "cosine"], Some("linear"), "shape of the ramp")?.to_string();
        Ok((warmup_steps > 0).then_some(Warmup { warmup_steps, warmup_start_lr, warmup_shape }))
    }

    /// `inner` behind this warmup.
    pub fn wrap(&self, inner: Box<dyn Schedule>) -> Warmed {
        Warmed { warmup: self.clone(), inner }
    }
}

/// A schedule behind its warmup.
pub struct Warmed {
    warmup: Warmup,
    inner: Box<dyn Schedule>,
}

impl Schedule for Warmed {
    fn lr(&self, step: u64) -> f64 {
        let w = &self.warmup;
        if step >= w.warmup_steps {
            return self.inner.lr(step - w.warmup_steps);
        }
        let t = step as f64 / w.warmup_steps as f64;
        let ramp = if w.warmup_shape == "cosine" { 0.5 * (1.0 - (PI * t).cos()) } else { t };
        w.warmup_start_lr + (self.inner.lr(0) - w.warmup_start_lr) * ramp
    }

    fn observe(&mut self, metric: f64) {
        self.inner.observe(metric)
    }

    fn monitor(&self) -> Option<&str> {
        self.inner.monitor()
    }

    fn state(&self) -> Vec<f64> {
        self.inner.state()
    }

    fn restore(&mut self, state: &[f64]) -> usize {
        self.inner.restore(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::testing::assert_sequence;
    use crate::schedule::{Constant, CosineDecay, Kind};

    fn ctx() -> crate::schedule::Context {
        crate::schedule::Context { total_steps: 1000, steps_per_epoch: 10, seed: 0 }
    }

    #[test]
    fn linear_warmup_then_the_schedule_from_its_own_step_zero() {
        let w = Warmup { warmup_steps: 10, warmup_start_lr: 0.0, warmup_shape: "linear".into() };
        let inner = CosineDecay { learning_rate: 0.1, decay_steps: crate::schedule::Horizon::Steps(100.0), alpha: 0.0 };
        let s = w.wrap(inner.build(&ctx()));
        // Ramp 0 -> 0.1 over 10 steps; at step 10 the cosine starts at its step 0.
        assert_sequence(&s, &[(0, 0.0), (5, 0.05), (9, 0.09), (10, 0.1), (60, 0.05), (110, 0.0)]);
    }

    #[test]
    fn cosine_warmup_from_a_start_rate() {
        let w = Warmup { warmup_steps: 4, warmup_start_lr: 0.02, warmup_shape: "cosine".into() };
        let s = w.wrap(Constant { learning_rate: 0.1 }.build(&ctx()));
        // 0.02 + 0.08 * 0.5 * (1 - cos(pi * t)), t = step / 4.
        assert_sequence(&s, &[(0, 0.02), (2, 0.06), (4, 0.1), (100, 0.1)]);
        let quarter = 0.02 + 0.08 * 0.5 * (1.0 - (std::f64::consts::PI / 4.0).cos());
        assert_sequence(&s, &[(1, quarter)]);
    }
}
