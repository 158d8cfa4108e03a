//! `runner schedule FILE [--steps N]`: a schedule's rates without training (by default
//! over the run's own length).

use super::{UsageError, print};
use crate::chart::{Labels, Series, terminal_chart, write_line_chart};
use crate::cli::ScheduleArgs;
use crate::data;
use crate::plan;
use crate::schedule::Context;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

pub fn run(args: &ScheduleArgs) -> Result<()> {
    if let Some(out) = &args.out {
        let ext = out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("png" | "svg")) {
            return Err(UsageError(format!(
                "--out {}: a chart is written as PNG or SVG; give a file name ending in .png or .svg",
                out.display()
            ))
            .into());
        }
    }
    let mut cache = data::Cache::default();
    let overrides = args.overrides.overrides().map_err(UsageError)?;
    let exp = plan::load_experiment_with(&args.file, &overrides, &mut |spec| Ok(cache.get(spec)?.train.len))?;
    let cfg = super::pick_run(&args.file, &exp, args.run.as_deref())?;
    // The run's own length (what "run" horizons span) and epoch size need the data set's
    // size; with both --steps and --steps-per-epoch given, the data is optional.
    let len = if args.steps.is_some() && args.steps_per_epoch.is_some() {
        cache.get(&cfg.dataset).ok().map(|d| d.train.len)
    } else {
        Some(cache.get(&cfg.dataset)?.train.len)
    };
    let run_total = match len {
        Some(n) => cfg.train.check_length(n).map_err(|why| UsageError(format!("{}: {why}", args.file.display())))?,
        None => cfg.train.steps.or(args.steps).unwrap_or(1),
    };
    const MAX_ROWS: u64 = 10_000_000;
    if args.steps.is_none() && run_total > MAX_ROWS {
        return Err(UsageError(format!(
            "{}: the run is {run_total} steps, more rows than `runner schedule` prints ({MAX_ROWS}); pass --steps N",
            args.file.display()
        ))
        .into());
    }
    let steps = args.steps.unwrap_or(run_total);
    let steps_per_epoch = args.steps_per_epoch.unwrap_or_else(|| len.map_or(1, |n| cfg.train.steps_per_epoch(n)));
    let ctx = Context { total_steps: run_total, steps_per_epoch, seed: args.seed.unwrap_or(cfg.train.seed) };
    for w in crate::schedule::fit_warnings(&cfg.schedule, &ctx, "schedule") {
        say!("warning: {w}");
    }
    // The rates as the run computes them: its threads flush denormals unless told not to.
    let _mode = crate::kernels::denormals::scoped(cfg.train.flush_denormals);
    let mut schedule = cfg.schedule.build(&ctx);
    let kind = cfg.schedule.kind.kind();

    let (csv, points, x_label) = match &args.metrics {
        Some(path) => {
            if schedule.monitor().is_none() {
                return Err(UsageError(format!(
                    "--metrics applies to validation-driven schedules (reduce_on_plateau), but {} is {kind}",
                    args.file.display()
                ))
                .into());
            }
            let metrics = read_metrics(path)?;
            // Training evaluates every `eval_every` steps (else at each epoch's end) and the
            // rate in effect after evaluation i is the one of the step that follows it: a
            // warmup in front of the plateau schedule shows as training would run it.
            let per_eval = cfg.train.eval_every.unwrap_or(steps_per_epoch).max(1);
            let mut csv = String::from("epoch,metric,lr\n");
            let mut points = Vec::with_capacity(metrics.len());
            for (i, m) in metrics.iter().enumerate() {
                schedule.observe(*m);
                let lr = schedule.lr((i as u64 + 1).saturating_mul(per_eval));
                writeln!(csv, "{},{m},{lr}", i + 1)?;
                points.push(((i + 1) as f64, lr));
            }
            (csv, points, "evaluation")
        }
        None => {
            if schedule.monitor().is_some() {
                say!("note: {kind} changes only when told a metric; pass --metrics FILE (one value per line)");
            }
            let mut csv = String::with_capacity(steps as usize * 24);
            csv.push_str("step,lr\n");
            let mut points = Vec::with_capacity(steps as usize);
            for step in 0..steps {
                let lr = schedule.lr(step);
                if !lr.is_finite() {
                    return Err(UsageError(format!(
                        "{}: the schedule gives lr = {lr} at step {step}; a learning rate must be a finite number",
                        args.file.display()
                    ))
                    .into());
                }
                writeln!(csv, "{step},{lr}")?;
                points.push((step as f64, lr));
            }
            (csv, points, "step")
        }
    };

    if let Some(out) = &args.out {
        let title = format!("{} ({kind})", cfg.name);
        let series = [Series::line(String::new(), points.clone())];
        write_line_chart(out, &series, &Labels { title: &title, x: x_label, y: "learning rate" })?;
        say!("wrote {}", out.display());
    }
    if args.plot {
        print(&format!("{} ({kind}): learning rate by {x_label}\n", cfg.name))?;
        print(&terminal_chart(&points, 160, 60))?;
    } else {
        print(&csv)?;
    }
    Ok(())
}

/// One number per line; blank lines are skipped.
fn read_metrics(path: &Path) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read the metrics file {}: {e}", path.display())))?;
    let mut values = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<f64>() {
            Ok(v) if v.is_finite() => values.push(v),
            _ => {
                return Err(UsageError(format!(
                    "{}:{}: expected one finite number per line, found \"{line}\"",
                    path.display(),
                    i + 1
                ))
                .into());
            }
        }
    }
    if values.is_empty() {
        return Err(
            UsageError(format!("{}: holds no values; give one monitored value per line", path.display())).into()
        );
    }
    Ok(values)
}
