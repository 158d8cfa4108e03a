//! `sequence`: schedules run one after another (optax `join_schedules`, PyTorch `SequentialLR`).

use super::{Context, Kind, ParamSource, Schedule, ScheduleSpec};

/// One phase of a `sequence` schedule: a schedule and how many steps it runs for.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Phase {
    /// Steps this phase runs for; `None` only for the last phase (runs to the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    #[serde(flatten)]
    pub schedule: ScheduleSpec,
}

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
            phases: p.tables(
                "phases",
                "schedule table",
                "[[schedule.phases]] tables: a schedule plus steps (optional on the last)",
                &mut |r, i, n| {
                    let schedule = ScheduleSpec::read_table(r)?;
                    let steps = if i + 1 < n {
                        Some(r.steps(
                            "steps",
                            None,
                            1,
                            "how many steps this phase runs; only the last phase may leave it out",
                        )?)
                    } else {
                        r.optional_steps("steps", 1, "", "")?
                    };
                    Ok(Phase { steps, schedule })
                },
            )?,
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

    fn state(&self) -> Vec<f64> {
        self.phases.iter().flat_map(|(_, s)| s.state()).collect()
    }

    fn restore(&mut self, state: &[f64]) -> usize {
        let mut used = 0;
        for (_, s) in &mut self.phases {
            used += s.restore(&state[used.min(state.len())..]);
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::testing::assert_sequence;
    use crate::schedule::{Constant, KindSpec, Linear, ScheduleSpec};

    fn spec(kind: KindSpec) -> ScheduleSpec {
        ScheduleSpec { kind, warmup: None }
    }

    #[test]
    fn phases_restart_their_step_count() {
        let seq = Sequence {
            phases: vec![
                Phase {
                    steps: Some(10),
                    schedule: spec(KindSpec::Linear(Linear {
                        learning_rate: 0.1,
                        start_factor: 0.1,
                        end_factor: 1.0,
                        total_steps: crate::schedule::Horizon::Steps(10.0),
                    })),
                },
                Phase { steps: Some(5), schedule: spec(KindSpec::Constant(Constant { learning_rate: 0.05 })) },
                Phase { steps: None, schedule: spec(KindSpec::Constant(Constant { learning_rate: 0.01 })) },
            ],
        };
        let s = seq.build(&Context { total_steps: 100, steps_per_epoch: 1, seed: 0 });
        assert_sequence(&*s, &[(0, 0.01), (5, 0.055), (9, 0.091), (10, 0.05), (14, 0.05), (15, 0.01), (99, 0.01)]);
    }
}
