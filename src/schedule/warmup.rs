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
}
