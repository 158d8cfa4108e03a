//! `linear_cosine_decay` and `noisy_linear_cosine_decay`: TensorFlow's decays of the same
//! names (Bello et al. 2017, "Neural Optimizer Search with Reinforcement Learning").

use super::noise::standard_normal;
use super::{Context, Horizon, Kind, OneHorizon, ParamSource, Resolved, Rule, Schedule};
use std::f64::consts::PI;

/// `lr0 * ((alpha + linear) * cosine + beta)` with `linear = (D - s)/D` and
/// `cosine = 0.5 * (1 + cos(2 pi num_periods s / D))`, s clamped at D = decay_steps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinearCosineDecay {
    pub learning_rate: f64,
    pub decay_steps: Horizon,
    pub num_periods: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl LinearCosineDecay {
    fn read_shared<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(LinearCosineDecay {
            learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the initial rate")?,
            decay_steps: p.horizon("decay_steps", Some(Horizon::Run), false, "steps to decay over")?,
            num_periods: p.number("num_periods", Some(0.5), Rule::NonNegative, "cosine periods over decay_steps")?,
            alpha: p.number("alpha", Some(0.0), Rule::NonNegative, "added to the linear part (see TF)")?,
            beta: p.number("beta", Some(0.001), Rule::NonNegative, "the floor, as a fraction of learning_rate")?,
        })
    }

    /// Clamped step, linear part and cosine part at `step`.
    fn parts(&self, step: u64, decay_steps: f64) -> (f64, f64, f64) {
        let s = (step as f64).min(decay_steps);
        let linear = (decay_steps - s) / decay_steps;
        let cosine = 0.5 * (1.0 + (PI * 2.0 * self.num_periods * s / decay_steps).cos());
        (s, linear, cosine)
    }
}

impl Kind for LinearCosineDecay {
    const KIND: &'static str = "linear_cosine_decay";
    const SUMMARY: &'static str =
        "a cosine whose amplitude shrinks linearly to zero over decay_steps (TF linear_cosine_decay)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Self::read_shared(p)
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        Resolved::boxed(self, self.decay_steps, ctx)
    }
}

impl OneHorizon for LinearCosineDecay {
    fn rate(&self, step: u64, decay_steps: f64) -> f64 {
        let (_, linear, cosine) = self.parts(step, decay_steps);
        self.learning_rate * ((self.alpha + linear) * cosine + self.beta)
    }
}

/// Linear cosine decay with Gaussian noise added to the linear part; the noise variance is
/// `initial_variance / (1 + s)^variance_decay` (s clamped at decay_steps, as in TF).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NoisyLinearCosineDecay {
    #[serde(flatten)]
    pub base: LinearCosineDecay,
    pub initial_variance: f64,
    pub variance_decay: f64,
}

impl Kind for NoisyLinearCosineDecay {
    const KIND: &'static str = "noisy_linear_cosine_decay";
    const SUMMARY: &'static str =
        "linear cosine decay plus seeded Gaussian noise that fades with the step (TF noisy_linear_cosine_decay)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(NoisyLinearCosineDecay {
            base: LinearCosineDecay::read_shared(p)?,
            initial_variance: p.number("initial_variance", Some(1.0), Rule::NonNegative, "noise variance at step 0")?,
            variance_decay: p.number(
                "variance_decay",
                Some(0.55),
                Rule::NonNegative,
                "how fast the variance decays",
            )?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        Box::new(SeededNoisyLinearCosine {
            spec: self.clone(),
            decay_steps: self.base.decay_steps.resolve(ctx),
            seed: ctx.seed,
        })
    }
}

/// A noisy linear cosine decay with its noise drawn from the run's seed.
struct SeededNoisyLinearCosine {
    spec: NoisyLinearCosineDecay,
    decay_steps: f64,
    seed: u64,
}

impl SeededNoisyLinearCosine {
    /// The noise standard deviation at `step`.
    fn std_dev(&self, clamped_step: f64) -> f64 {
        (self.spec.initial_variance / (1.0 + clamped_step).powf(self.spec.variance_decay)).sqrt()
    }
}

impl Schedule for SeededNoisyLinearCosine {
    fn lr(&self, step: u64) -> f64 {
        let b = &self.spec.base;
        let (s, linear, cosine) = b.parts(step, self.decay_steps);
        let eps = self.std_dev(s) * standard_normal(self.seed, step);
        b.learning_rate * ((b.alpha + linear + eps) * cosine + b.beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_has_the_tf_variance_and_is_seeded() {
        let spec = NoisyLinearCosineDecay {
            base: LinearCosineDecay {
                learning_rate: 1.0,
                decay_steps: Horizon::Steps(1000.0),
                num_periods: 0.0,
                alpha: 0.0,
                beta: 0.0,
            },
            initial_variance: 1.0,
            variance_decay: 0.55,
        };
        // num_periods = 0 makes cosine = 1, so lr = linear + eps and eps = lr - linear.
        let step = 99u64;
        let linear = (1000.0 - 99.0) / 1000.0;
        let expected_var = 1.0 / 100f64.powf(0.55);
        let n = 20_000;
        let eps: Vec<f64> = (0..n)
            .map(|seed| spec.build(&Context { total_steps: 1000, steps_per_epoch: 1, seed }).lr(step) - linear)
            .collect();
        let mean = eps.iter().sum::<f64>() / n as f64;
        let var = eps.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var / expected_var - 1.0).abs() < 0.05, "variance {var}, expected {expected_var}");
        let a = spec.build(&Context { total_steps: 1000, steps_per_epoch: 1, seed: 5 });
        assert_eq!(a.lr(10), a.lr(10));
    }
}
