//! `warmup_stable_decay` (WSD): hold a peak rate, then decay quickly at the end of the run
//! (Hu et al. 2024, MiniCPM). The warmup phase is the shared `warmup_steps` keys.

use super::{Context, Horizon, Kind, ParamSource, Rule, Schedule};
use std::f64::consts::PI;

/// Stable at `learning_rate` for `stable_steps`, then down to `end_learning_rate` over
/// `decay_steps` in the chosen shape.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WarmupStableDecay {
    pub learning_rate: f64,
    pub stable_steps: Horizon,
    pub decay_steps: Horizon,
    pub decay_shape: String,
    pub end_learning_rate: f64,
}

impl Kind for WarmupStableDecay {
    const KIND: &'static str = "warmup_stable_decay";
    const SUMMARY: &'static str =
        "warm up (warmup_steps), hold the peak, then decay over the last decay_steps: linear, cosine or 1-sqrt (WSD)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(WarmupStableDecay {
            learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the peak (stable) rate")?,
            stable_steps: p.horizon(
                "stable_steps",
                Some(Horizon::Run),
                true,
                "steps held at the peak; \"run\": the rest of the run after warmup and decay",
            )?,
            decay_steps: p.horizon("decay_steps", None, true, "steps of the final decay")?,
            decay_shape: p
                .choice(
                    "decay_shape",
                    &["linear", "cosine", "sqrt"],
                    Some("linear"),
                    "sqrt is 1 - sqrt(t), as in MiniCPM",
                )?
                .to_string(),
            end_learning_rate: p.number("end_learning_rate", Some(0.0), Rule::NonNegative, "the final rate")?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        let decay = self.decay_steps.resolve_steps(ctx, 1);
        let stable = match self.stable_steps {
            Horizon::Run => ctx.total_steps.saturating_sub(decay),
            h => h.resolve_steps(ctx, 0),
        };
        Box::new(Wsd { spec: self.clone(), stable, decay })
    }
}

/// A WSD schedule with its stable length resolved.
struct Wsd {
    spec: WarmupStableDecay,
    stable: u64,
    decay: u64,
}

impl Schedule for Wsd {
    fn lr(&self, step: u64) -> f64 {
        let s = &self.spec;
        if step < self.stable {
            return s.learning_rate;
        }
        let t = ((step - self.stable) as f64 / self.decay as f64).min(1.0);
        let remaining = match s.decay_shape.as_str() {
            "cosine" => 0.5 * (1.0 + (PI * t).cos()),
            "sqrt" => 1.0 - t.sqrt(),
            _ => 1.0 - t,
        };
        s.end_learning_rate + (s.learning_rate - s.end_learning_rate) * remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::testing::assert_sequence;

    fn wsd(shape: &str, stable: Option<u64>) -> Box<dyn Schedule> {
        let spec = WarmupStableDecay {
            learning_rate: 0.1,
            stable_steps: stable.map_or(Horizon::Run, |s| Horizon::Steps(s as f64)),
            decay_steps: Horizon::Steps(100.0),
            decay_shape: shape.into(),
            end_learning_rate: 0.0,
        };
        spec.build(&Context { total_steps: 1000, steps_per_epoch: 1, seed: 0 })
    }

    #[test]
    fn holds_then_decays_in_each_shape() {
        // Stable defaults to total - decay = 900 steps.
        assert_sequence(
            &*wsd("linear", None),
            &[(0, 0.1), (899, 0.1), (900, 0.1), (950, 0.05), (1000, 0.0), (2000, 0.0)],
        );
        assert_sequence(&*wsd("cosine", Some(100)), &[(99, 0.1), (150, 0.05), (200, 0.0)]);
        assert_sequence(&*wsd("sqrt", Some(100)), &[(125, 0.05), (164, 0.1 * (1.0 - 0.64f64.sqrt()))]);
    }
}
