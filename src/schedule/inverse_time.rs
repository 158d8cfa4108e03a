//! `inverse_time_decay`: TensorFlow's `inverse_time_decay` / Keras `InverseTimeDecay`.

use super::exponential::progress;
use super::{Context, Horizon, Kind, OneHorizon, ParamSource, Resolved, Rule, Schedule};

/// `lr0 / (1 + decay_rate * step / decay_steps)`, the ratio floored when `staircase`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InverseTimeDecay {
    pub learning_rate: f64,
    pub decay_steps: Horizon,
    pub decay_rate: f64,
    pub staircase: bool,
}

impl Kind for InverseTimeDecay {
    const KIND: &'static str = "inverse_time_decay";
    const SUMMARY: &'static str =
        "lr / (1 + decay_rate * step / decay_steps); staircase floors the ratio (TF inverse_time_decay)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(InverseTimeDecay {
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

impl OneHorizon for InverseTimeDecay {
    fn rate(&self, step: u64, decay_steps: f64) -> f64 {
        self.learning_rate / (1.0 + self.decay_rate * progress(step, decay_steps, self.staircase))
    }
}
