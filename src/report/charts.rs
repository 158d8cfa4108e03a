//! The report's charts, beside the data, as PNG and SVG: the rate, the validation loss and
//! accuracy (RMSE for regression, bits per char for language models) against training
//! time, the final metric per variant, and a heat map when a sweep varies two keys.
//!
//! Seeds of a variant are grouped: one colour per variant, its mean curve and a band from
//! the lowest to the highest seed. The best 20 variants are named in the legend, the rest
//! drawn thin and grey. The rate axis is logarithmic when the rates span more than a
//! decade; the loss axis ends a little above the highest first evaluation, so one spike
//! does not squash every good run.

use super::{bits_metric, final_metric, validation_samples, variant_groups};
use crate::chart::{Labels, Series, Style, YRange, write_bar_chart, write_heat_map, write_line_chart_styled};
use crate::results::{ExperimentView, RunRecord};
use crate::store::{read_metrics, read_steps};
use crate::train::EvalRow;
use anyhow::Result;
use std::collections::HashMap;
use std::path::PathBuf;

/// The most runs whose curves a chart reads: the variants of the best ones (a sweep of
/// thousands would read every run's steps.csv into memory).
pub const CHART_RUNS: usize = 100;

/// Evaluations a curve needs for the validation charts to get a panel zoomed on the last
/// quarter (with fewer, the quarter holds a point or two).
pub const ZOOM_FROM: usize = 8;

/// The most bars final.png draws (the best variants).
pub const BARS: usize = 40;

/// The rate axis of lr.png.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LrScale {
    /// Logarithmic when the rates span more than a decade.
    #[default]
    Auto,
    Log,
    Linear,
}

/// What the charts may be asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChartOptions {
    pub lr_scale: LrScale,
}

/// A variant's runs (seeds), in rank order of the variants.
struct Variant<'a> {
    name: String,
    runs: Vec<&'a RunRecord>,
}

/// (x, lowest, highest) of a band.
type Band = Vec<(f64, f64, f64)>;

/// The mean of the curves at each x of the first, and the band from their lowest to their
/// highest value where two or more have that x.
fn mean_and_band(curves: &[Vec<(f64, f64)>]) -> (Vec<(f64, f64)>, Band) {
    let Some(first) = curves.iter().find(|c| !c.is_empty()) else { return (Vec::new(), Vec::new()) };
    let at: Vec<HashMap<u64, f64>> =
        curves.iter().map(|c| c.iter().map(|&(x, y)| (x.to_bits(), y)).collect()).collect();
    let (mut mean, mut band) = (Vec::new(), Vec::new());
    for &(x, _) in first {
        let values: Vec<f64> =
            at.iter().filter_map(|m| m.get(&x.to_bits()).copied()).filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            continue;
        }
        mean.push((x, values.iter().sum::<f64>() / values.len() as f64));
        if values.len() > 1 {
            let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            band.push((x, lo, hi));
        }
    }
    (mean, band)
}

/// Writes lr, val_loss, the second metric's chart and final (and grid, for a sweep of two
/// keys) as PNG and SVG into the experiment's directory; returns the PNGs' paths.
pub fn write_charts(view: &ExperimentView, options: &ChartOptions) -> Result<Vec<PathBuf>> {
    let ranked = view.ranked();
    let rank: HashMap<&str, usize> = ranked.iter().enumerate().map(|(i, r)| (r.info.name.as_str(), i)).collect();
    let mut groups = variant_groups(view);
    groups.sort_by_key(|(_, runs)| runs.iter().filter_map(|r| rank.get(r.info.name.as_str())).min().copied());
    let variants_all = groups.len();
    // The best variants, up to CHART_RUNS runs in all.
    let mut variants = Vec::new();
    let mut runs_read = 0;
    for (name, runs) in groups {
        if runs_read >= CHART_RUNS {
            break;
        }
        runs_read += runs.len();
        // A variant of one run is named by its run (seed included).
        let name = if runs.len() == 1 { runs[0].info.name.clone() } else { name };
        variants.push(Variant { name, runs });
    }
    let seeds = variants.iter().any(|v| v.runs.len() > 1);
    let unit = if seeds { "variants" } else { "runs" };
    let title = |chart: &str| {
        let band = if seeds { ", mean over seeds, band from lowest to highest" } else { "" };
        if variants_all > variants.len() {
            format!("{}: {chart}{band} (best {} of {variants_all} {unit})", view.name, variants.len())
        } else {
            format!("{}: {chart}{band}", view.name)
        }
    };
    let mut written = Vec::new();
    let mut both = |name: &str, draw: &dyn Fn(&std::path::Path) -> Result<()>| -> Result<()> {
        let png = view.dir.join(format!("{name}.png"));
        draw(&png)?;
        draw(&view.dir.join(format!("{name}.svg")))?;
        written.push(png);
        Ok(())
    };

    // The rate.
    let lr: Vec<Series> = variants
        .iter()
        .map(|v| {
            let curves: Vec<Vec<(f64, f64)>> = v
                .runs
                .iter()
                .map(|r| read_steps(&r.dir).unwrap_or_default().iter().map(|s| (s.step as f64, s.lr)).collect())
                .collect();
            let (points, band) = mean_and_band(&curves);
            Series { name: v.name.clone(), points, band }
        })
        .collect();
    let positive = lr.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|&v| v > 0.0 && v.is_finite());
    let (lo, hi) = positive.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let log_y = match options.lr_scale {
        LrScale::Log => true,
        LrScale::Linear => false,
        LrScale::Auto => lo.is_finite() && hi / lo > 10.0,
    };
    let lr_title = title(if log_y { "learning rate (log scale)" } else { "learning rate" });
    both("lr", &|path| {
        let labels = Labels { title: &lr_title, x: "step", y: "learning rate" };
        write_line_chart_styled(path, &lr, &labels, Style { log_y, ..Style::default() })
    })?;

    // The validation curves.
    let metrics: Vec<Vec<Vec<EvalRow>>> =
        variants.iter().map(|v| v.runs.iter().map(|r| read_metrics(&r.dir).unwrap_or_default()).collect()).collect();
    // Epochs on x, unless some run evaluates more than once per epoch.
    let by_epoch = metrics.iter().flatten().all(|rows| rows.windows(2).all(|w| w[0].epoch < w[1].epoch));
    let x_label = if by_epoch { "epoch" } else { "step" };
    let curve = |value: &dyn Fn(&EvalRow) -> Option<f64>| -> Vec<Series> {
        variants
            .iter()
            .zip(&metrics)
            .map(|(v, runs)| {
                let curves: Vec<Vec<(f64, f64)>> = runs
                    .iter()
                    .map(|rows| {
                        rows.iter()
                            .filter_map(|r| Some((if by_epoch { r.epoch as f64 } else { r.step as f64 }, value(r)?)))
                            .collect()
                    })
                    .collect();
                let (points, band) = mean_and_band(&curves);
                Series { name: v.name.clone(), points, band }
            })
            .collect()
    };
    // A diverged run's losses would flatten every other curve: the axis ends a little
    // above the highest first evaluation of any run.
    let first_losses =
        metrics.iter().flatten().filter_map(|rows| rows.first().map(|r| r.val_loss)).filter(|v| v.is_finite());
    let top = first_losses.fold(f64::NEG_INFINITY, f64::max);
    let low =
        metrics.iter().flatten().flatten().map(|r| r.val_loss).filter(|v| v.is_finite()).fold(f64::INFINITY, f64::min);
    let range = YRange((top.is_finite() && low < top).then(|| (low.min(0.0).max(low - (top - low) * 0.05), top * 1.1)));
    let loss_title = title("validation loss");
    let losses = curve(&|r| Some(r.val_loss));
    // The final values decide the ranking: with enough evaluations, a panel zoomed on the
    // last quarter under the whole run.
    let zoom = |series: &[Series]| series.iter().any(|s| s.points.len() >= ZOOM_FROM).then_some(0.25);
    both("val_loss", &|path| {
        let labels = Labels { title: &loss_title, x: x_label, y: "validation loss" };
        write_line_chart_styled(
            path,
            &losses,
            &labels,
            Style { y_range: range, zoom_last: zoom(&losses), ..Style::default() },
        )
    })?;
    type Value<'a> = &'a dyn Fn(&EvalRow) -> Option<f64>;
    // A language model: bits per char (or byte) instead of its token accuracy.
    let (file, what, value): (&str, &str, Value<'_>) = match bits_metric(view).map(|b| b.name) {
        Some("val_bits_per_char") => ("val_bits_per_char", "validation bits per character", &|r| r.val_bits_per_char),
        Some(_) => ("val_bits_per_byte", "validation bits per byte", &|r| r.val_bits_per_byte),
        None if view.is_classification() => ("val_accuracy", "validation accuracy", &|r| r.val_accuracy),
        None => ("val_rmse", "validation RMSE", &|r| r.val_rmse),
    };
    let second = curve(value);
    let second_title = title(what);
    both(file, &|path| {
        let labels = Labels { title: &second_title, x: x_label, y: what };
        write_line_chart_styled(path, &second, &labels, Style { zoom_last: zoom(&second), ..Style::default() })
    })?;

    // The final metric per variant: the mean over its seeds with their range, or a single
    // run's value with its binomial 95% interval (accuracy on a known validation set).
    let m = view.metric_name();
    let bars: Vec<crate::chart::Bar> = variants
        .iter()
        .take(BARS)
        .map(|v| {
            let values: Vec<f64> = v
                .runs
                .iter()
                .filter(|r| r.finished() || v.runs.len() == 1)
                .filter_map(|r| final_metric(view, r))
                .filter(|x| x.is_finite())
                .collect();
            if values.is_empty() {
                return (v.name.clone(), f64::NAN, None);
            }
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let interval = if values.len() > 1 {
                Some(values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x))))
            } else {
                match (m, validation_samples(v.runs[0])) {
                    ("val_accuracy", Some(n)) => {
                        let half = 1.959964 * (mean * (1.0 - mean) / n as f64).sqrt();
                        Some(((mean - half).max(0.0), (mean + half).min(1.0)))
                    }
                    _ => None,
                }
            };
            (v.name.clone(), mean, interval)
        })
        .collect();
    // Best first by the bars' own values (a variant's mean over its seeds, as the table
    // ranks them); bars without a value last.
    let mut bars = bars;
    let higher = view.metric().higher_is_better;
    bars.sort_by(|a, b| match (a.1.is_finite(), b.1.is_finite()) {
        (true, true) if higher => b.1.total_cmp(&a.1),
        (true, true) => a.1.total_cmp(&b.1),
        (x, y) => y.cmp(&x),
    });
    let whiskers = if seeds { "lines: lowest to highest seed" } else { "lines: 95% binomial interval" };
    let shown = if variants_all > bars.len() {
        format!(" (best {} of {variants_all} {unit})", bars.len())
    } else {
        String::new()
    };
    let final_title = format!(
        "{}: final {m}{}, best first{shown}{}",
        view.name,
        if seeds { " (mean over seeds)" } else { "" },
        if bars.iter().any(|b| b.2.is_some()) { format!("; {whiskers}") } else { String::new() }
    );
    let y_label = if seeds { "variant" } else { "run" };
    // The values the metric can take: the axis never passes them.
    let limits = match m {
        "val_accuracy" => (0.0, 1.0),
        "val_perplexity" => (1.0, f64::INFINITY),
        _ => (0.0, f64::INFINITY),
    };
    both("final", &|path| write_bar_chart(path, &bars, &Labels { title: &final_title, x: m, y: y_label }, limits))?;

    // Two swept keys: the mean final metric of each pair of values.
    if let Some((rows, cols, cells)) = grid(view) {
        let grid_title = format!("{}: final {m} by {} and {}", view.name, view.columns[0], view.columns[1]);
        let higher = view.metric().higher_is_better;
        both("grid", &|path| {
            let labels = Labels { title: &grid_title, x: &view.columns[1], y: &view.columns[0] };
            write_heat_map(path, &rows, &cols, &cells, &labels, higher)
        })?;
    }
    Ok(written)
}

type Grid = (Vec<String>, Vec<String>, Vec<Vec<Option<f64>>>);

/// For a sweep of exactly two keys with several values each: their values (in the order
/// first met) and the mean final metric of the finished runs of each pair.
fn grid(view: &ExperimentView) -> Option<Grid> {
    if view.columns.len() != 2 {
        return None;
    }
    let mut rows: Vec<String> = Vec::new();
    let mut cols: Vec<String> = Vec::new();
    for r in &view.runs {
        let (a, b) = (r.info.params.first()?, r.info.params.get(1)?);
        if !rows.contains(a) {
            rows.push(a.clone());
        }
        if !cols.contains(b) {
            cols.push(b.clone());
        }
    }
    if rows.len() < 2 || cols.len() < 2 {
        return None;
    }
    let mut sums = vec![vec![(0f64, 0usize); cols.len()]; rows.len()];
    for r in view.runs.iter().filter(|r| r.finished()) {
        let (Some(i), Some(j)) =
            (rows.iter().position(|v| *v == r.info.params[0]), cols.iter().position(|v| *v == r.info.params[1]))
        else {
            continue;
        };
        if let Some(v) = final_metric(view, r).filter(|v| v.is_finite()) {
            sums[i][j].0 += v;
            sums[i][j].1 += 1;
        }
    }
    let cells = sums.iter().map(|row| row.iter().map(|&(s, n)| (n > 0).then(|| s / n as f64)).collect()).collect();
    Some((rows, cols, cells))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_and_bands_by_hand() {
        let a = vec![(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)];
        let b = vec![(0.0, 3.0), (1.0, 4.0)];
        let (mean, band) = mean_and_band(&[a, b]);
        assert_eq!(mean, vec![(0.0, 2.0), (1.0, 3.0), (2.0, 3.0)]);
        assert_eq!(band, vec![(0.0, 1.0, 3.0), (1.0, 2.0, 4.0)], "no band where one seed has the point");
        assert_eq!(mean_and_band(&[]), (Vec::new(), Vec::new()));
    }
}
