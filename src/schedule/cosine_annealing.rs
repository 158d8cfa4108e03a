//! `cosine_annealing`: PyTorch's `CosineAnnealingLR`, which past `T_max` follows the cosine
//! back up (period 2 * T_max) where TF's `cosine_decay` holds at its floor. Computed the
//! way torch computes it, step by step in its chainable (recursive) form, so its float64
//! rounding is reproduced too.

use super::{Context, Horizon, Kind, ParamSource, Rule, Schedule};
use std::cell::Cell;
use std::f64::consts::PI;

/// `eta_min + (lr0 - eta_min) * (1 + cos(pi * step / t_max)) / 2`, continued past `t_max`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CosineAnnealing {
    pub learning_rate: f64,
    pub t_max: Horizon,
    pub eta_min: f64,
}

impl Kind for CosineAnnealing {
    const KIND: &'static str = "cosine_annealing";
    const SUMMARY: &'static str = "half a cosine from lr to eta_min over t_max steps, then back up and down again with period 2 * t_max (PyTorch CosineAnnealingLR)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(CosineAnnealing {
            learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the initial rate (torch's base_lr)")?,
            t_max: p.horizon("t_max", None, true, "steps of half a period (torch's T_max)")?,
            eta_min: p.number("eta_min", Some(0.0), Rule::NonNegative, "the lowest rate")?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        let t_max = self.t_max.resolve_steps(ctx, 1) as f64;
        Box::new(Annealing {
            base: self.learning_rate,
            t_max,
            eta_min: self.eta_min,
            last: Cell::new((0, self.learning_rate)),
        })
    }
}

/// The chainable form needs the previous step's rate: the last one computed is kept, so
/// the rates of a run (asked for in order) cost one step each.
struct Annealing {
    base: f64,
    t_max: f64,
    eta_min: f64,
    /// The last step computed and its rate.
    last: Cell<(u64, f64)>,
}

impl Annealing {
    /// torch 2.x `CosineAnnealingLR.get_lr` at `last_epoch = e` (e >= 1) from the rate at e - 1.
    fn next(&self, e: u64, lr: f64) -> f64 {
        let (t, base, eta) = (self.t_max, self.base, self.eta_min);
        let e = e as f64;
        if ((e - 1.0 - t).rem_euclid(2.0 * t)) == 0.0 {
            lr + (base - eta) * (1.0 - (PI / t).cos()) / 2.0
        } else {
            (1.0 + (PI * e / t).cos()) / (1.0 + (PI * (e - 1.0) / t).cos()) * (lr - eta) + eta
        }
    }
}

/// Steps the chainable form walks at most to answer one rate: further, the rate starts
/// from torch's closed form (`_get_closed_form_lr`) a step before. A run asks for its
/// rates in order, one step each, and gets torch's chainable rounding; a look far ahead
/// (a check of the run's last step, a chart) answers at once, equal to within rounding.
const MAX_WALK: u64 = 100_000;

impl Annealing {
    /// torch's closed form at step `e`.
    fn closed(&self, e: u64) -> f64 {
        self.eta_min + (self.base - self.eta_min) * (1.0 + (PI * e as f64 / self.t_max).cos()) / 2.0
    }
}

impl Schedule for Annealing {
    fn lr(&self, step: u64) -> f64 {
        let (mut at, mut lr) = self.last.get();
        if step < at {
            (at, lr) = (0, self.base);
        }
        if step - at > MAX_WALK {
            (at, lr) = (step - 1, self.closed(step - 1));
        }
        while at < step {
            at += 1;
            lr = self.next(at, lr);
        }
        self.last.set((at, lr));
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annealing(t_max: f64) -> Box<dyn Schedule> {
        let spec = CosineAnnealing { learning_rate: 0.1, t_max: Horizon::Steps(t_max), eta_min: 0.001 };
        spec.build(&Context { total_steps: 100, steps_per_epoch: 1, seed: 0 })
    }

    #[test]
    fn follows_the_closed_form_down_and_back_up() {
        let s = annealing(10.0);
        let closed = |e: f64| 0.001 + (0.1 - 0.001) * (1.0 + (PI * e / 10.0).cos()) / 2.0;
        for step in [0u64, 1, 5, 9, 10, 11, 15, 20, 25, 31] {
            let got = s.lr(step);
            assert!((got - closed(step as f64)).abs() < 1e-12, "step {step}: {got} vs {}", closed(step as f64));
        }
        // Asked out of order, the same values.
        assert_eq!(s.lr(3), annealing(10.0).lr(3));
    }

    #[test]
    fn a_look_far_ahead_answers_at_once_and_agrees_with_the_walk() {
        let far = 3 * MAX_WALK + 7;
        let walked = annealing(1e5);
        for step in (0..far).step_by(1000) {
            walked.lr(step);
        }
        let (a, b) = (walked.lr(far), annealing(1e5).lr(far));
        assert!((a - b).abs() < 1e-9 * a.abs().max(1e-3), "{a} vs {b}");
        let started = std::time::Instant::now();
        assert!(annealing(1e9).lr(10_000_000_000).is_finite());
        assert!(started.elapsed().as_secs_f64() < 1.0);
    }
}
