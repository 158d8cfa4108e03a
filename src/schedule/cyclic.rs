//! `cyclic`: PyTorch's `CyclicLR` (Smith 2017, "Cyclical Learning Rates").

use super::{Context, Horizon, Kind, ParamSource, Rule, Schedule};

/// A triangle wave between `base_lr` and `max_lr`; triangular2 halves the amplitude each
/// cycle, exp_range scales it by `gamma^step`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cyclic {
    pub base_lr: f64,
    pub max_lr: f64,
    pub step_size_up: Horizon,
    pub step_size_down: Horizon,
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
        let step_size_up =
            p.horizon("step_size_up", Some(Horizon::Steps(2000.0)), true, "steps from base_lr up to max_lr")?;
        // Absent: the same as step_size_up (PyTorch's default).
        let step_size_down = p.horizon("step_size_down", Some(step_size_up), true, "steps from max_lr back down")?;
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

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        let up = self.step_size_up.resolve_steps(ctx, 1) as f64;
        let down = self.step_size_down.resolve_steps(ctx, 1) as f64;
        Box::new(CyclicRun { spec: self.clone(), up, down })
    }
}

/// A cyclic schedule with its half-periods resolved against the run.
struct CyclicRun {
    spec: Cyclic,
    up: f64,
    down: f64,
}

impl Schedule for CyclicRun {
    fn lr(&self, step: u64) -> f64 {
        let s = &self.spec;
        let total = self.up + self.down;
        let ratio = self.up / total;
        let e = step as f64;
        let cycle = (1.0 + e / total).floor();
        let x = 1.0 + e / total - cycle;
        let scale = if x <= ratio { x / ratio } else { (x - 1.0) / (ratio - 1.0) };
        let amplitude = match s.mode.as_str() {
            "triangular2" => 1.0 / 2f64.powf(cycle - 1.0),
            "exp_range" => s.gamma.powf(e),
            _ => 1.0,
        };
        s.base_lr + (s.max_lr - s.base_lr) * scale * amplitude
    }
}
