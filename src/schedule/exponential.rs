//! `exponential_decay`: TensorFlow's `exponential_decay` / Keras `ExponentialDecay`.

use super::{Context, Horizon, Kind, OneHorizon, ParamSource, Resolved, Rule, Schedule};

/// `lr0 * decay_rate ^ (step / decay_steps)`, the exponent floored when `staircase`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExponentialDecay {
    pub learning_rate: f64,
    pub decay_steps: Horizon,
    pub decay_rate: f64,
    pub staircase: bool,
}

/// `step / decay_steps`, floored when `staircase` (shared by the exponential-family decays).
pub(crate) fn progress(step: u64, decay_steps: f64, staircase: bool) -> f64 {
    let p = step as f64 / decay_steps;
    if staircase { p.floor() } else { p }
}

impl Kind for ExponentialDecay {
    const KIND: &'static str = "exponential_decay";
    const SUMMARY: &'static str =
        "lr * decay_rate^(step / decay_steps); staircase floors the exponent (TF exponential_decay)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(ExponentialDecay {
            learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the initial rate")?,
            decay_steps: p.horizon("decay_steps", Some(Horizon::Run), false, "steps per factor of decay_rate")?,
            decay_rate: p.number("decay_rate", None, Rule::NonNegative, "the factor applied every decay_steps")?,
            staircase: p.flag("staircase", false, "decay in discrete jumps every decay_steps")?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        Resolved::boxed(self, self.decay_steps, ctx)
    }
}

impl OneHorizon for ExponentialDecay {
    fn rate(&self, step: u64, decay_steps: f64) -> f64 {
        self.learning_rate * self.decay_rate.powf(progress(step, decay_steps, self.staircase))
    }
}
