//! Whether a schedule fits its run: a decay that reaches its floor before the run is half
//! over, one that ends far above its floor, a warmup as long as the run, boundaries or
//! milestones past the last step. These are warnings, never errors: TF users do hold a
//! rate on purpose, but a comparison whose schedules do not span the run compares nothing.

use super::{Context, KindSpec, ScheduleSpec};
use crate::suggest::first_few;

/// What share of the way from its end value back to its start a decay may still be at
/// the last step before it counts as "ending far above its floor".
const FAR_ABOVE: f64 = 0.05;

/// The ways `spec` and a run of `ctx.total_steps` steps disagree, in words; empty when
/// they agree. `path` is the schedule's dotted key (`schedule`).
pub fn fit_warnings(spec: &ScheduleSpec, ctx: &Context, path: &str) -> Vec<String> {
    let total = ctx.total_steps;
    let mut out = Vec::new();
    let warm = spec.warmup.as_ref().map_or(0, |w| w.warmup_steps);
    if warm > 0 && warm >= total {
        out.push(format!(
            "`{path}.warmup_steps` = {warm} is not shorter than the run ({total} steps): the schedule after the warmup never starts"
        ));
        return out;
    }
    let inner = Context { total_steps: total - warm, ..*ctx };
    kind_warnings(&spec.kind, &inner, warm, path, &mut out);
    let raw = spec.build_unclamped(ctx);
    let negative: Vec<(u64, f64)> =
        (0..total.min(NEGATIVE_SCAN)).map(|s| (s, raw.lr(s))).filter(|(_, lr)| *lr < 0.0).collect();
    if let Some(&(step, lr)) = negative.first() {
        out.push(format!(
            "`{path}` goes below 0 at {} step{} of the run, first at step {step} (lr = {}); the rate is held at 0 there, as a negative rate would be gradient ascent",
            negative.len(),
            if negative.len() == 1 { "" } else { "s" },
            rate(lr)
        ));
    }
    out
}

/// Steps scanned for negative rates (a formula costs about a microsecond a step).
const NEGATIVE_SCAN: u64 = 200_000;

/// A rate in a message: four decimals where they suffice.
fn rate(x: f64) -> String {
    if x == 0.0 || x.abs() >= 1e-3 { format!("{x:.4}") } else { format!("{x:.2e}") }
}

/// Warnings for one kind whose own steps start at `offset` of the run and number
/// `ctx.total_steps`.
fn kind_warnings(kind: &KindSpec, ctx: &Context, offset: u64, path: &str, out: &mut Vec<String>) {
    let t = ctx.total_steps;
    match kind {
        KindSpec::CosineDecay(k) => decay_fit(kind, ctx, offset, path, "decay_steps", k.decay_steps.resolve(ctx), out),
        KindSpec::PolynomialDecay(k) if !k.cycle => {
            decay_fit(kind, ctx, offset, path, "decay_steps", k.decay_steps.resolve(ctx), out)
        }
        KindSpec::LinearCosineDecay(k) => {
            decay_fit(kind, ctx, offset, path, "decay_steps", k.decay_steps.resolve(ctx), out)
        }
        KindSpec::NoisyLinearCosineDecay(k) => {
            decay_fit(kind, ctx, offset, path, "decay_steps", k.base.decay_steps.resolve(ctx), out)
        }
        KindSpec::Linear(k) if k.end_factor < k.start_factor => {
            decay_fit(kind, ctx, offset, path, "total_steps", k.total_steps.resolve_steps(ctx, 1) as f64, out)
        }
        KindSpec::OneCycle(k) => {
            decay_fit(kind, ctx, offset, path, "total_steps", k.total_steps.resolve_steps(ctx, 2) as f64, out)
        }
        KindSpec::CosineDecayRestarts(k) => {
            let first = k.first_decay_steps.resolve(ctx);
            if first > t as f64 {
                let label = format!("`{path}.first_decay_steps` = {first}");
                ends_above(kind, ctx, offset, &label, "first_decay_steps = \"run\"", first, out);
            }
        }
        KindSpec::WarmupStableDecay(k) => {
            let decay = k.decay_steps.resolve_steps(ctx, 1);
            let stable = match k.stable_steps {
                super::Horizon::Run => t.saturating_sub(decay),
                h => h.resolve_steps(ctx, 0),
            };
            let end = stable.saturating_add(decay);
            if end > t {
                let label = format!("`{path}.stable_steps` + `decay_steps` = {end}");
                ends_above(kind, ctx, offset, &label, "leaving out stable_steps", end as f64, out);
            } else if (end as f64) < t as f64 / 2.0 {
                out.push(format!(
                    "`{path}.stable_steps` + `decay_steps` = {end}: the decay ends at step {}, before half the run ({} steps) is over, and holds for the last {}% of it",
                    end + offset,
                    t + offset,
                    percent((t - end) as f64 / (t + offset) as f64)
                ));
            }
        }
        KindSpec::CosineAnnealing(k) => {
            let t_max = k.t_max.resolve_steps(ctx, 1);
            if t_max > t {
                let label = format!("`{path}.t_max` = {t_max}");
                ends_above(kind, ctx, offset, &label, "t_max = \"run\"", t_max as f64, out);
            } else if t_max < t {
                out.push(format!(
                    "`{path}.t_max` = {t_max} is shorter than the run ({t} steps{}): after step {}, PyTorch's cosine annealing rises back towards its start (period {}); `t_max = \"run\"` ends the run at eta_min, `cosine_decay` holds there",
                    after_warmup(offset),
                    t_max + offset,
                    2 * t_max
                ));
            }
        }
        KindSpec::Step(k) => {
            let size = k.step_size.resolve_steps(ctx, 1);
            if size >= t {
                out.push(format!(
                    "`{path}.step_size` = {size} is not shorter than the run ({t} steps{}): the rate is never reduced",
                    after_warmup(offset)
                ));
            }
        }
        KindSpec::Multistep(k) => {
            let past: Vec<String> = k.milestones.iter().filter(|&&m| m >= t as f64).map(|m| m.to_string()).collect();
            if !past.is_empty() {
                out.push(format!(
                    "`{path}.milestones` {} {} past the run's last step ({}{}): never reached",
                    listed(&past),
                    if past.len() == 1 { "is" } else { "are" },
                    t.saturating_sub(1),
                    after_warmup(offset)
                ));
            }
        }
        KindSpec::PiecewiseConstant(k) => {
            // TF switches at boundary + 1.
            let past: Vec<String> =
                k.boundaries.iter().filter(|&&b| b + 1.0 >= t as f64).map(|b| b.to_string()).collect();
            if !past.is_empty() {
                out.push(format!(
                    "`{path}.boundaries` {} {} at or past the run's last step ({}{}): {} never used",
                    listed(&past),
                    if past.len() == 1 { "is" } else { "are" },
                    t.saturating_sub(1),
                    after_warmup(offset),
                    if past.len() == 1 { "the value after it is" } else { "the values after them are" }
                ));
            }
        }
        KindSpec::Sequence(seq) => {
            let mut start = 0u64;
            for (i, phase) in seq.phases.iter().enumerate() {
                let phase_path = format!("{path}.phases[{i}]");
                if start >= t {
                    out.push(format!(
                        "`{phase_path}` starts at step {}, after the run's last step ({}): never reached",
                        start + offset,
                        t + offset - 1
                    ));
                    break;
                }
                let steps = phase.steps.unwrap_or(t - start).min(t - start);
                let phase_ctx = Context { total_steps: steps, ..*ctx };
                for w in fit_warnings(&phase.schedule, &phase_ctx, &phase_path) {
                    out.push(w);
                }
                start = start.saturating_add(phase.steps.unwrap_or(t));
            }
        }
        _ => {}
    }
}

/// Values for a message: the first few, and the last (see [`first_few`]).
fn listed(values: &[String]) -> String {
    first_few(values, || format!("the last {}", values[values.len() - 1]))
}

fn after_warmup(offset: u64) -> String {
    if offset > 0 { format!(" after {offset} warmup steps") } else { String::new() }
}

fn percent(x: f64) -> String {
    format!("{:.0}", (x * 100.0).round())
}

/// A decay of `horizon` steps that holds its end value afterwards, against a run of
/// `ctx.total_steps` (starting at `offset` of the whole run).
fn decay_fit(kind: &KindSpec, ctx: &Context, offset: u64, path: &str, key: &str, horizon: f64, out: &mut Vec<String>) {
    let t = ctx.total_steps as f64;
    if horizon > t {
        let label = format!("`{path}.{key}` = {horizon}");
        ends_above(kind, ctx, offset, &label, &format!("{key} = \"run\""), horizon, out);
    } else if horizon < t / 2.0 {
        let end = kind.build(ctx).lr(horizon.ceil() as u64);
        out.push(format!(
            "`{path}.{key}` = {horizon}: the decay reaches its end value ({}) at step {}, before half the run ({} steps) is over, and holds it for the last {}% of the run; `{key} = \"run\"` spans the run",
            rate(end),
            horizon.ceil() as u64 + offset,
            ctx.total_steps + offset,
            percent((t - horizon) / (t + offset as f64))
        ));
    }
}

/// A decay of `horizon` steps that the run (of `ctx.total_steps`) cuts off: warns when the
/// last step's rate is still far above the end value.
fn ends_above(
    kind: &KindSpec,
    ctx: &Context,
    offset: u64,
    label: &str,
    hint: &str,
    horizon: f64,
    out: &mut Vec<String>,
) {
    let s = kind.build(ctx);
    let (start, end) = (s.lr(0), s.lr(horizon.ceil() as u64));
    let last = s.lr(ctx.total_steps.saturating_sub(1));
    let span = start - end;
    if span.abs() <= f64::EPSILON * start.abs().max(1e-300) {
        return;
    }
    let left = (last - end) / span;
    if left > FAR_ABOVE {
        out.push(format!(
            "{label} is longer than the run ({} steps{}): the rate ends at {}, {}% of the way from its end value {} back to its start {}; `{hint}` spans the run",
            ctx.total_steps,
            after_warmup(offset),
            rate(last),
            percent(left),
            rate(end),
            rate(start)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{CosineDecay, Horizon, MultiStep, PiecewiseConstant, Step, Warmup};

    fn ctx(total: u64) -> Context {
        Context { total_steps: total, steps_per_epoch: 45, seed: 0 }
    }

    fn cosine(decay: Horizon) -> ScheduleSpec {
        ScheduleSpec {
            kind: KindSpec::CosineDecay(CosineDecay { learning_rate: 0.1, decay_steps: decay, alpha: 0.0 }),
            warmup: None,
        }
    }

    #[test]
    fn a_decay_spanning_the_run_is_quiet() {
        assert!(fit_warnings(&cosine(Horizon::Run), &ctx(1350), "schedule").is_empty());
        assert!(fit_warnings(&cosine(Horizon::Steps(1350.0)), &ctx(1350), "schedule").is_empty());
        // A little longer than the run ends near its floor: fine.
        assert!(fit_warnings(&cosine(Horizon::Steps(1400.0)), &ctx(1350), "schedule").is_empty());
    }

    #[test]
    fn a_decay_cut_off_by_the_run_says_where_it_ends() {
        let w = fit_warnings(&cosine(Horizon::Steps(2000.0)), &ctx(1350), "schedule");
        assert_eq!(w.len(), 1, "{w:?}");
        // 0.05 * (1 + cos(pi * 1349 / 2000)) = 0.02393...
        assert!(w[0].starts_with("`schedule.decay_steps` = 2000 is longer than the run (1350 steps"), "{}", w[0]);
        assert!(w[0].contains("the rate ends at 0.0239, 24% of the way"), "{}", w[0]);
    }

    #[test]
    fn a_decay_over_before_half_the_run_says_so() {
        let w = fit_warnings(&cosine(Horizon::Steps(500.0)), &ctx(1350), "schedule");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("reaches its end value (0.0000) at step 500, before half the run (1350 steps)"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("for the last 63% of the run"), "{}", w[0]);
    }

    #[test]
    fn warmup_counts_before_the_decay() {
        let mut s = cosine(Horizon::Steps(1800.0));
        s.warmup = Some(Warmup { warmup_steps: 200, warmup_start_lr: 0.0, warmup_shape: "linear".into() });
        let w = fit_warnings(&s, &ctx(1350), "schedule");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("longer than the run (1150 steps after 200 warmup steps)"), "{}", w[0]);
        s.warmup.as_mut().unwrap().warmup_steps = 1350;
        let w = fit_warnings(&s, &ctx(1350), "schedule");
        assert_eq!(
            w,
            [
                "`schedule.warmup_steps` = 1350 is not shorter than the run (1350 steps): the schedule after the warmup never starts"
            ]
        );
    }

    #[test]
    fn steps_past_the_run_are_named() {
        let spec = |kind| ScheduleSpec { kind, warmup: None };
        let step = spec(KindSpec::Step(Step { learning_rate: 0.1, step_size: Horizon::Steps(2000.0), gamma: 0.1 }));
        assert_eq!(
            fit_warnings(&step, &ctx(1350), "schedule"),
            ["`schedule.step_size` = 2000 is not shorter than the run (1350 steps): the rate is never reduced"]
        );
        let ms =
            spec(KindSpec::Multistep(MultiStep { learning_rate: 0.1, milestones: vec![500.0, 1500.0], gamma: 0.1 }));
        assert_eq!(
            fit_warnings(&ms, &ctx(1350), "schedule"),
            ["`schedule.milestones` 1500 is past the run's last step (1349): never reached"]
        );
        let pc = spec(KindSpec::PiecewiseConstant(PiecewiseConstant {
            boundaries: vec![100.0, 1349.0],
            values: vec![0.1, 0.01, 0.001],
        }));
        let w = fit_warnings(&pc, &ctx(1350), "schedule");
        assert!(w[0].starts_with("`schedule.boundaries` 1349 is at or past the run's last step (1349)"), "{w:?}");
        let many: Vec<String> = (0..500_000).map(|i| (2000 + i).to_string()).collect();
        assert_eq!(listed(&many), "2000, 2001, 2002, 2003, 2004, ... and 499995 more (the last 501999)");
        assert_eq!(listed(&many[..6]), "2000, 2001, 2002, 2003, 2004, 2005");
    }
}
