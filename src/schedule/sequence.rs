//! `sequence`: schedules run one after another (optax `join_schedules`, PyTorch `SequentialLR`).

use super::{Context, Kind, ParamSource, Phase, Schedule};

/// Phases run in order; each starts its own step count at 0. The last phase may leave out
/// `steps` and runs to the end of training.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sequence {
    pub phases: Vec<Phase>,
}

impl Kind for Sequence {
    const KIND: &'static str = "sequence";
    const SUMMARY: &'static str =
        "phases run one after another, each a schedule with its own steps (optax join_schedules)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(Sequence {
            phases: p.phases("phases", "[[schedule.phases]] tables: a schedule plus steps (optional on the last)")?,
        })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        let mut start = 0u64;
        let mut phases = Vec::with_capacity(self.phases.len());
        for phase in &self.phases {
            let steps = phase.steps.unwrap_or(ctx.total_steps.saturating_sub(start));
            let phase_ctx = Context { total_steps: steps, ..*ctx };
            phases.push((start, phase.schedule.build(&phase_ctx)));
            start = start.saturating_add(steps);
        }
        Box::new(Joined { phases })
    }
}

/// Built phases with the step each starts at.
struct Joined {
    phases: Vec<(u64, Box<dyn Schedule>)>,
}

impl Schedule for Joined {
    fn lr(&self, step: u64) -> f64 {
        let i = self.phases.partition_point(|(start, _)| *start <= step).saturating_sub(1);
        let (start, schedule) = &self.phases[i];
        schedule.lr(step - start)
    }

    /// Every phase hears every evaluation, so a validation-driven phase starts informed.
    fn observe(&mut self, metric: f64) {
        for (_, s) in &mut self.phases {
            s.observe(metric);
        }
    }

    fn monitor(&self) -> Option<&str> {
        self.phases.iter().find_map(|(_, s)| s.monitor())
    }
}
