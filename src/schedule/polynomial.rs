//! `polynomial_decay`: TensorFlow's `polynomial_decay` / Keras `PolynomialDecay`.

use super::{Context, Horizon, Kind, OneHorizon, ParamSource, Resolved, Rule, Schedule};

/// `(lr0 - end) * (1 - s/D)^power + end`: with `cycle`, D stretches to the next multiple
/// of decay_steps (step 0 counts as the first cycle); without, s is clamped at decay_steps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolynomialDecay {
    pub learning_rate: f64,
    pub decay_steps: Horizon,
    pub end_learning_rate: f64,
    pub power: f64,
    pub cycle: bool,
}

impl Kind for PolynomialDecay {
    const KIND: &'static str = "polynomial_decay";
    const SUMMARY: &'static str =
        "(lr - end) * (1 - step/decay_steps)^power + end; cycle stretches the horizon (TF polynomial_decay)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(PolynomialDecay {
            learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the initial rate")?,
            decay_steps: p.horizon("decay_steps", Some(Horizon::Run), false, "steps to reach end_learning_rate")?,
            end_learning_rate: p.number("end_learning_rate", Some(0.0001), Rule::NonNegative, "the final rate")?,
            power: p.number("power", Some(1.0), Rule::Positive, "the polynomial's power (1 = linear)")?,
            cycle: p.flag(
                "cycle",
                false,
                "past decay_steps, stretch the horizon to the next multiple instead of holding",
            )?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        Resolved::boxed(self, self.decay_steps, ctx)
    }
}

impl OneHorizon for PolynomialDecay {
    fn rate(&self, step: u64, decay_steps: f64) -> f64 {
        let s = step as f64;
        let (s, horizon) = if self.cycle {
            let multiple = if step == 0 { 1.0 } else { (s / decay_steps).ceil() };
            (s, decay_steps * multiple)
        } else {
            (s.min(decay_steps), decay_steps)
        };
        (self.learning_rate - self.end_learning_rate) * (1.0 - s / horizon).powf(self.power) + self.end_learning_rate
    }
}
