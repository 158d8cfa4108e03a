//! `cosine_decay_restarts`: TensorFlow's `cosine_decay_restarts` / Keras `CosineDecayRestarts` (SGDR).

use super::{Context, Horizon, Kind, OneHorizon, ParamSource, Resolved, Rule, Schedule};
use std::f64::consts::PI;

/// Cosine decay that restarts: period i lasts `first_decay_steps * t_mul^i` steps and peaks
/// at `m_mul^i` of the cosine part; the floor stays `alpha * lr0`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CosineDecayRestarts {
    pub learning_rate: f64,
    pub first_decay_steps: Horizon,
    pub t_mul: f64,
    pub m_mul: f64,
    pub alpha: f64,
}

impl Kind for CosineDecayRestarts {
    const KIND: &'static str = "cosine_decay_restarts";
    const SUMMARY: &'static str = "cosine decay restarting after first_decay_steps * t_mul^i steps, peaks scaled by m_mul^i (SGDR, TF cosine_decay_restarts)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let learning_rate = p.number("learning_rate", None, Rule::NonNegative, "the initial rate")?;
        let first_decay_steps =
            p.horizon("first_decay_steps", Some(Horizon::Run), false, "length of the first period")?;
        // Shrinking periods add up to first_decay_steps / (1 - t_mul): past that step the
        // restarts would come infinitely often and no period is defined (TF gives NaN).
        let t_mul = p.number(
            "t_mul",
            Some(2.0),
            Rule::AtLeastOne,
            "each period is t_mul times longer than the last (shorter ones would restart infinitely often)",
        )?;
        Ok(CosineDecayRestarts {
            learning_rate,
            first_decay_steps,
            t_mul,
            m_mul: p.number("m_mul", Some(1.0), Rule::NonNegative, "each restart's peak is m_mul times the last")?,
            alpha: p.number("alpha", Some(0.0), Rule::UnitInterval, "the floor, as a fraction of learning_rate")?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        Resolved::boxed(self, self.first_decay_steps, ctx)
    }
}

impl CosineDecayRestarts {
    /// The period index i and the fraction of it completed at `step`.
    ///
    /// TF/Keras take i from a floating-point log, which at some exact restart steps lands
    /// just below an integer (Keras float64, t_mul=3, step 121) and reports the end of the
    /// previous period instead of the restart. We take the same log as a first guess and
    /// then correct it against the period starts, so restart steps always restart.
    ///
    /// Where the arithmetic cannot place the step (a first period so short that the step
    /// is infinitely many of them, a t_mul so close to 1 that the log's guess is far off),
    /// the period is NaN, so the rate is: the run's check of the rates refuses it before
    /// it starts. The searches are bounded, so every value ends.
    fn period(&self, step: u64, first_decay_steps: f64) -> (f64, f64) {
        let f = step as f64 / first_decay_steps;
        if !f.is_finite() || self.t_mul.is_nan() || self.t_mul < 1.0 {
            return (f64::NAN, f64::NAN);
        }
        if self.t_mul == 1.0 {
            let i = f.floor();
            return (i, f - i);
        }
        let t = self.t_mul;
        // Start of period i, in units of first_decay_steps: 1 + t + ... + t^(i-1).
        let start = |i: f64| (1.0 - t.powf(i)) / (1.0 - t);
        let mut i = ((1.0 - f * (1.0 - t)).ln() / t.ln()).floor().max(0.0);
        // The log is off by at most a step or two where the arithmetic holds.
        const MOST: u32 = 64;
        let mut moves = 0;
        while start(i + 1.0) <= f && moves < MOST {
            (i, moves) = (i + 1.0, moves + 1);
        }
        while i > 0.0 && start(i) > f && moves < MOST {
            (i, moves) = (i - 1.0, moves + 1);
        }
        if moves == MOST || !i.is_finite() {
            return (f64::NAN, f64::NAN);
        }
        (i, (f - start(i)) / t.powf(i))
    }
}

impl OneHorizon for CosineDecayRestarts {
    fn rate(&self, step: u64, first_decay_steps: f64) -> f64 {
        let (i, frac) = self.period(step, first_decay_steps);
        let c = 0.5 * self.m_mul.powf(i) * (1.0 + (PI * frac).cos());
        self.learning_rate * ((1.0 - self.alpha) * c + self.alpha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_values_end_and_give_a_rate_or_nan() {
        // A first period of 1e-320 steps (every step is infinitely many periods), periods
        // that overflow, a t_mul a hair above 1: each call ends.
        for (t_mul, first) in [(2.0, 1e-320), (1e308, 1.0), (1.0 + 1e-15, 1.0), (1.5, 1e-300), (2.0, 1e308)] {
            let s = CosineDecayRestarts {
                learning_rate: 1.0,
                first_decay_steps: Horizon::Run,
                t_mul,
                m_mul: 0.5,
                alpha: 0.0,
            };
            for step in [0u64, 1, 10, 1_000, 1_000_000, 100_000_000, u64::MAX / 2] {
                let lr = s.rate(step, first);
                assert!(lr.is_nan() || (0.0..=1.0).contains(&lr), "t_mul {t_mul}, first {first}, step {step}: {lr}");
            }
        }
    }

    #[test]
    fn every_exact_restart_step_restarts() {
        // Keras 3 float64 misfloors at these steps (SCHEDULE_REFERENCE.md, section 7).
        for (t_mul, first, steps) in
            [(3.0, 1.0, vec![121u64, 29524]), (3.0, 100.0, vec![12100]), (10.0, 1.0, vec![111, 111111])]
        {
            let s = CosineDecayRestarts {
                learning_rate: 1.0,
                first_decay_steps: Horizon::Run,
                t_mul,
                m_mul: 1.0,
                alpha: 0.0,
            };
            for step in steps {
                assert_eq!(s.rate(step, first), 1.0, "t_mul {t_mul}, first {first}, step {step}");
                assert!(s.rate(step - 1, first) < 0.01, "the step before a restart is near the floor");
            }
        }
    }
}
