//! `cosine_decay`: TensorFlow's `cosine_decay` / Keras `CosineDecay`.

use super::{Context, Kind, ParamSource, Rule, Schedule};
use std::f64::consts::PI;

/// `lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)` with s clamped at
/// decay_steps, so the rate holds at `alpha * lr0` afterwards.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CosineDecay {
    pub learning_rate: f64,
    pub decay_steps: f64,
    pub alpha: f64,
}

impl Kind for CosineDecay {
    const KIND: &'static str = "cosine_decay";
    const SUMMARY: &'static str =
        "half a cosine from lr down to alpha * lr over decay_steps, then constant (TF cosine_decay)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(CosineDecay {
            learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the initial rate")?,
            decay_steps: p.number("decay_steps", None, Rule::Positive, "steps to decay over")?,
            alpha: p.number("alpha", Some(0.0), Rule::UnitInterval, "the floor, as a fraction of learning_rate")?,
        })
    }

    fn build(&self, _: &Context) -> Box<dyn Schedule> {
        Box::new(self.clone())
    }
}

impl Schedule for CosineDecay {
    fn lr(&self, step: u64) -> f64 {
        let s = (step as f64).min(self.decay_steps);
        let c = 0.5 * (1.0 + (PI * s / self.decay_steps).cos());
        self.learning_rate * ((1.0 - self.alpha) * c + self.alpha)
    }
}
