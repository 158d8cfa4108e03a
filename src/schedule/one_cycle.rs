//! `one_cycle`: PyTorch's `OneCycleLR` (Smith & Topin 2017).

use super::{Context, Horizon, Kind, ParamSource, Rule, Schedule};
use std::f64::consts::PI;

/// Warm up from `max_lr / div_factor` to `max_lr` over `pct_start` of the run, then anneal to
/// `max_lr / (div_factor * final_div_factor)` (optionally in three phases).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OneCycle {
    pub max_lr: f64,
    pub total_steps: Horizon,
    pub pct_start: f64,
    pub anneal: String,
    pub div_factor: f64,
    pub final_div_factor: f64,
    pub three_phase: bool,
}

impl Kind for OneCycle {
    const KIND: &'static str = "one_cycle";
    const SUMMARY: &'static str =
        "rise to max_lr over pct_start of the run, then anneal far below the start (PyTorch OneCycleLR)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(OneCycle {
            max_lr: p.number("max_lr", None, Rule::NonNegative, "the peak rate")?,
            total_steps: p.horizon("total_steps", Some(Horizon::Run), true, "length of the cycle (at least 2)")?,
            pct_start: p.number(
                "pct_start",
                Some(0.3),
                Rule::OpenUnitInterval,
                "fraction of the cycle spent rising",
            )?,
            anneal: p.choice("anneal", &["cos", "linear"], Some("cos"), "shape of every phase")?.to_string(),
            div_factor: p.number("div_factor", Some(25.0), Rule::Positive, "initial rate = max_lr / div_factor")?,
            final_div_factor: p.number(
                "final_div_factor",
                Some(1e4),
                Rule::Positive,
                "final rate = initial rate / final_div_factor",
            )?,
            three_phase: p.flag("three_phase", false, "go back down to the initial rate before the final anneal")?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        let total = self.total_steps.resolve_steps(ctx, 2) as f64;
        let initial = self.max_lr / self.div_factor;
        let min = initial / self.final_div_factor;
        let rise_end = self.pct_start * total - 1.0;
        let phases = if self.three_phase {
            vec![
                (rise_end, initial, self.max_lr),
                (2.0 * self.pct_start * total - 2.0, self.max_lr, initial),
                (total - 1.0, initial, min),
            ]
        } else {
            vec![(rise_end, initial, self.max_lr), (total - 1.0, self.max_lr, min)]
        };
        Box::new(OneCycleRun { phases, last_step: total - 1.0, cosine: self.anneal == "cos" })
    }
}

/// A one-cycle schedule resolved against the run's length.
struct OneCycleRun {
    /// (end step, start rate, end rate) per phase, as PyTorch lays them out.
    phases: Vec<(f64, f64, f64)>,
    last_step: f64,
    cosine: bool,
}

impl Schedule for OneCycleRun {
    fn lr(&self, step: u64) -> f64 {
        // PyTorch refuses steps past the cycle; we hold the final rate.
        let e = (step as f64).min(self.last_step);
        let mut phase_start = 0.0;
        for (i, &(end, from, to)) in self.phases.iter().enumerate() {
            if e <= end || i == self.phases.len() - 1 {
                let pct = (e - phase_start) / (end - phase_start);
                return if self.cosine {
                    to + (from - to) / 2.0 * (1.0 + (PI * pct).cos())
                } else {
                    (to - from) * pct + from
                };
            }
            phase_start = end;
        }
        unreachable!("the last phase always answers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_run_length_and_holds_the_final_rate() {
        let spec = OneCycle {
            max_lr: 0.1,
            total_steps: Horizon::Run,
            pct_start: 0.3,
            anneal: "cos".into(),
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        };
        let s = spec.build(&Context { total_steps: 100, steps_per_epoch: 1, seed: 0 });
        crate::schedule::testing::assert_close(s.lr(0), 0.1 / 25.0);
        let min = 0.1 / 25.0 / 1e4;
        assert!((s.lr(99) - min).abs() < 1e-18);
        assert_eq!(s.lr(500), s.lr(99));
    }
}
