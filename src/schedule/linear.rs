//! `linear`: PyTorch's `LinearLR`.

use super::{Context, Horizon, Kind, OneHorizon, ParamSource, Resolved, Rule, Schedule};

/// `lr0 * (start + (end - start) * min(step, total_steps) / total_steps)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Linear {
    pub learning_rate: f64,
    pub start_factor: f64,
    pub end_factor: f64,
    pub total_steps: Horizon,
}

impl Kind for Linear {
    const KIND: &'static str = "linear";
    const SUMMARY: &'static str =
        "scale lr linearly from start_factor to end_factor over total_steps, then hold (PyTorch LinearLR)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let learning_rate = p.number("learning_rate", None, Rule::NonNegative, "the base rate")?;
        let start_factor =
            p.number("start_factor", Some(1.0 / 3.0), Rule::UnitInterval, "factor at step 0, in (0, 1]")?;
        p.check(start_factor > 0.0, "start_factor", || "must be in (0, 1] (PyTorch refuses 0), found 0".to_string())?;
        Ok(Linear {
            learning_rate,
            start_factor,
            end_factor: p.number("end_factor", Some(1.0), Rule::UnitInterval, "factor from total_steps on")?,
            total_steps: p.horizon(
                "total_steps",
                Some(Horizon::Steps(5.0)),
                true,
                "steps to go from start_factor to end_factor",
            )?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        let total = Horizon::Steps(self.total_steps.resolve_steps(ctx, 1) as f64);
        Resolved::boxed(self, total, ctx)
    }
}

impl OneHorizon for Linear {
    fn rate(&self, step: u64, total_steps: f64) -> f64 {
        let t = (step as f64).min(total_steps) / total_steps;
        self.learning_rate * (self.start_factor + (self.end_factor - self.start_factor) * t)
    }
}
