//! `cyclic`: PyTorch's `CyclicLR` (Smith 2017, "Cyclical Learning Rates").

use super::{Context, Kind, ParamSource, Rule, Schedule};

/// A triangle wave between `base_lr` and `max_lr`; triangular2 halves the amplitude each
/// cycle, exp_range scales it by `gamma^step`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cyclic {
    pub base_lr: f64,
    pub max_lr: f64,
    pub step_size_up: u64,
    pub step_size_down: u64,
    pub mode: String,
    pub gamma: f64,
}

impl Kind for Cyclic {
    const KIND: &'static str = "cyclic";
    const SUMMARY: &'static str = "a triangle wave between base_lr and max_lr (PyTorch CyclicLR)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let base_lr = p.number("base_lr", None, Rule::NonNegative, "the low end of the wave")?;
        let max_lr = p.number("max_lr", None, Rule::NonNegative, "the high end of the wave")?;
        p.check(max_lr >= base_lr, "max_lr", || format!("must be >= base_lr ({base_lr}), found {max_lr}"))?;
        let step_size_up = p.steps("step_size_up", Some(2000), 1, "steps from base_lr up to max_lr")?;
        let step_size_down = p
            .optional_steps("step_size_down", 1, "step_size_up", "steps from max_lr back down")?
            .unwrap_or(step_size_up);
        Ok(Cyclic {
            base_lr,
            max_lr,
            step_size_up,
            step_size_down,
            mode: p
                .choice(
                    "mode",
                    &["triangular", "triangular2", "exp_range"],
                    Some("triangular"),
                    "how the amplitude changes",
                )?
                .to_string(),
            gamma: p.number("gamma", Some(1.0), Rule::Positive, "exp_range: amplitude factor per step")?,
        })
    }

    fn build(&self, _: &Context) -> Box<dyn Schedule> {
        Box::new(self.clone())
    }
}

impl Schedule for Cyclic {
    fn lr(&self, step: u64) -> f64 {
        let total = (self.step_size_up + self.step_size_down) as f64;
        let ratio = self.step_size_up as f64 / total;
        let e = step as f64;
        let cycle = (1.0 + e / total).floor();
        let x = 1.0 + e / total - cycle;
        let scale = if x <= ratio { x / ratio } else { (x - 1.0) / (ratio - 1.0) };
        let amplitude = match self.mode.as_str() {
            "triangular2" => 1.0 / 2f64.powf(cycle - 1.0),
            "exp_range" => self.gamma.powf(e),
            _ => 1.0,
        };
        self.base_lr + (self.max_lr - self.base_lr) * scale * amplitude
    }
}
