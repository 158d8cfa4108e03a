//! `runner lr-find FILE [--start A] [--end B] [--steps N] [--run NAME] [--out DIR]`: the
//! learning-rate range test on the config's model, data and optimizer; writes
//! `DIR/<name>/lr_find/lr_find.csv` and `lr_find.png` and prints the suggested peak rate.

use super::{UsageError, print};
use crate::cli::LrFindArgs;
use crate::lr_find::{RangeTest, find};
use crate::plan;
use crate::store;
use crate::{chart, data};
use anyhow::{Context as _, Result};

pub fn run(args: &LrFindArgs) -> Result<()> {
    if !(args.start > 0.0 && args.end > args.start && args.end.is_finite()) {
        return Err(UsageError(format!(
            "--start {} --end {}: the rates must rise from a positive start (0 < start < end)",
            args.start, args.end
        ))
        .into());
    }
    if args.steps < 2 {
        return Err(UsageError(format!("--steps {}: the test needs at least 2 steps", args.steps)).into());
    }
    let mut cache = data::Cache::default();
    let overrides = args.overrides.overrides().map_err(UsageError)?;
    let exp = plan::load_experiment_with(&args.file, &overrides, &mut |spec| Ok(cache.get(spec)?.train.len))?;
    let cfg = super::pick_run(&args.file, &exp, args.run.as_deref())?;
    let data = cache.get(&cfg.dataset)?;
    let test = RangeTest { start: args.start, end: args.end, steps: args.steps, ..RangeTest::default() };
    let mut spec = cfg.run_spec();
    if let Some(d) = args.device {
        spec.train.device = d;
    }
    crate::train::check_devices(&[spec.train.device]).map_err(UsageError)?;
    let finding = find(&spec, &data, &test)?;
    let dir = args.out.join(&cfg.name).join("lr_find");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    for p in &finding.points {
        csv.serialize(p)?;
    }
    store::write_atomic(&dir.join("lr_find.csv"), &csv.into_inner()?)?;
    let points: Vec<(f64, f64, f64)> = finding.points.iter().map(|p| (p.lr, p.loss, p.smoothed_loss)).collect();
    let title = format!("{}: learning-rate range test", cfg.name);
    let found = finding.suggestion;
    let mut marks = Vec::new();
    if let Some(peak) = found.peak {
        marks.push(chart::Mark { x: peak, label: format!("suggested: {}", chart::short(peak)), strong: true });
    }
    if let Some((lr, _)) = found.steepest {
        marks.push(chart::Mark { x: lr, label: format!("steepest descent: {}", chart::short(lr)), strong: false });
    }
    if let Some((lr, _)) = found.minimum {
        marks.push(chart::Mark {
            x: lr,
            label: format!("minimum: {} (/10 = {})", chart::short(lr), chart::short(lr / 10.0)),
            strong: false,
        });
    }
    chart::write_lr_find_chart(&dir.join("lr_find.png"), &points, &marks, &title)?;
    let last = finding.points.last().map_or(args.start, |p| p.lr);
    let mut text = format!(
        "{}: {} steps from {} to {}{}\n",
        cfg.name,
        finding.points.len(),
        args.start,
        last,
        if finding.stopped_early { " (stopped: the smoothed loss passed 4 times its minimum)" } else { "" }
    );
    match found.peak {
        Some(peak) => {
            let (steep, slope) = found.steepest.unwrap_or((f64::NAN, f64::NAN));
            let (min_lr, min_loss) = found.minimum.unwrap_or((f64::NAN, f64::NAN));
            text.push_str(&format!(
                "the curve: the smoothed loss falls fastest at {steep:.3e} ({slope:.3} per decade of rate) and is lowest at {min_lr:.3e} ({min_loss:.4})\n"
            ));
            text.push_str(&format!("suggested peak learning rate: {peak:.3e}: {}\n", found.reason()));
        }
        None => text.push_str(
            "no suggestion: the smoothed loss never fell before it diverged; lower --start or raise --steps\n",
        ),
    }
    print(&text)?;
    say!("wrote {}, {}", dir.join("lr_find.csv").display(), dir.join("lr_find.png").display());
    Ok(())
}
