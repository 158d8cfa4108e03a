//! `cosine_decay`: TensorFlow's `cosine_decay` / Keras `CosineDecay`.

use super::{Context, Horizon, Kind, OneHorizon, ParamSource, Resolved, Rule, Schedule};
use std::f64::consts::PI;

/// `lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)` with s clamped at
/// decay_steps, so the rate holds at `alpha * lr0` afterwards.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CosineDecay {
    pub learning_rate: f64,
    pub decay_steps: Horizon,
    pub alpha: f64,
}

impl Kind for CosineDecay {
    const KIND: &'static str = "cosine_decay";
    const SUMMARY: &'static str =
        "half a cosine from lr down to alpha * lr over decay_steps, then constant (TF cosine_decay)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(CosineDecay {
            learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the initial rate")?,
            decay_steps: p.horizon("decay_steps", Some(Horizon::Run), false, "steps to decay over")?,
            alpha: p.number("alpha", Some(0.0), Rule::UnitInterval, "the floor, as a fraction of learning_rate")?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        Resolved::boxed(self, self.decay_steps, ctx)
    }
}

impl OneHorizon for CosineDecay {
    fn rate(&self, step: u64, decay_steps: f64) -> f64 {
        let s = (step as f64).min(decay_steps);
        let c = 0.5 * (1.0 + (PI * s / decay_steps).cos());
        self.learning_rate * ((1.0 - self.alpha) * c + self.alpha)
    }
}
