//! `natural_exp_decay`: TensorFlow's `natural_exp_decay`.

use super::exponential::progress;
use super::{Context, Horizon, Kind, OneHorizon, ParamSource, Resolved, Rule, Schedule};

/// `lr0 * exp(-decay_rate * step / decay_steps)`, the ratio floored when `staircase`.
///
/// TF computes this as `lr0 * exp(-decay_rate) ^ p`; we evaluate `exp(-decay_rate * p)`,
/// which is the same function without the float32 rounding of `exp(-decay_rate)` TF does.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NaturalExpDecay {
    pub learning_rate: f64,
    pub decay_steps: Horizon,
    pub decay_rate: f64,
    pub staircase: bool,
}

impl Kind for NaturalExpDecay {
    const KIND: &'static str = "natural_exp_decay";
    const SUMMARY: &'static str =
        "lr * exp(-decay_rate * step / decay_steps); staircase floors the ratio (TF natural_exp_decay)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(NaturalExpDecay {
            learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the initial rate")?,
            decay_steps: p.horizon("decay_steps", Some(Horizon::Run), false, "steps per unit of decay")?,
            decay_rate: p.number("decay_rate", None, Rule::NonNegative, "the decay constant")?,
            staircase: p.flag("staircase", false, "decay in discrete jumps every decay_steps")?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        Resolved::boxed(self, self.decay_steps, ctx)
    }
}

impl OneHorizon for NaturalExpDecay {
    fn rate(&self, step: u64, decay_steps: f64) -> f64 {
        self.learning_rate * (-self.decay_rate * progress(step, decay_steps, self.staircase)).exp()
    }
}
