//! `step` and `multistep`: PyTorch's `StepLR` and `MultiStepLR`.

use super::{Context, Horizon, Kind, OneHorizon, ParamSource, Resolved, Rule, Schedule};

/// `lr0 * gamma^floor(step / step_size)`: changes at step = k * step_size (PyTorch StepLR).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    pub learning_rate: f64,
    pub step_size: Horizon,
    pub gamma: f64,
}

impl Kind for Step {
    const KIND: &'static str = "step";
    const SUMMARY: &'static str = "multiply by gamma every step_size steps (PyTorch StepLR)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(Step {
            learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the initial rate")?,
            step_size: p.horizon("step_size", None, true, "steps between reductions")?,
            gamma: p.number("gamma", Some(0.1), Rule::NonNegative, "the factor applied at each reduction")?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        let step_size = Horizon::Steps(self.step_size.resolve_steps(ctx, 1) as f64);
        Resolved::boxed(self, step_size, ctx)
    }
}

impl OneHorizon for Step {
    fn rate(&self, step: u64, step_size: f64) -> f64 {
        self.learning_rate * self.gamma.powf((step / step_size as u64) as f64)
    }
}

/// `lr0 * gamma^(number of milestones <= step)` (PyTorch MultiStepLR; repeated milestones count twice).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MultiStep {
    pub learning_rate: f64,
    pub milestones: Vec<f64>,
    pub gamma: f64,
}

impl Kind for MultiStep {
    const KIND: &'static str = "multistep";
    const SUMMARY: &'static str = "multiply by gamma at each milestone step (PyTorch MultiStepLR)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let learning_rate = p.number("learning_rate", None, Rule::NonNegative, "the initial rate")?;
        let milestones =
            p.numbers("milestones", Rule::NonNegative, "steps at which the rate is multiplied by gamma, increasing")?;
        if let Some(i) = (1..milestones.len()).find(|&i| milestones[i] < milestones[i - 1]) {
            let (a, b) = (milestones[i - 1], milestones[i]);
            return Err(p.invalid("milestones", format!("must be increasing, but {b} follows {a}")));
        }
        let gamma = p.number("gamma", Some(0.1), Rule::NonNegative, "the factor applied at each milestone")?;
        Ok(MultiStep { learning_rate, milestones, gamma })
    }

    fn build(&self, _: &Context) -> Box<dyn Schedule> {
        Box::new(self.clone())
    }
}

impl Schedule for MultiStep {
    fn lr(&self, step: u64) -> f64 {
        let passed = self.milestones.partition_point(|&m| m <= step as f64);
        self.learning_rate * self.gamma.powi(passed as i32)
    }
}
