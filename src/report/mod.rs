//! `runner report`: read an experiment back from disk (finished or still running) and say
//! who won: a ranked table (mean and spread over seeds when a variant ran with several) and
//! charts beside the data: every run's rate, validation loss and accuracy curves, and the
//! final metric of each run.

mod charts;
mod compare;
pub mod noise;
pub mod table;

pub use charts::{CHART_RUNS, ChartOptions, LrScale, write_charts};
pub use compare::{compare, variants};

use crate::results::{ExperimentView, RunRecord};

/// A difference from the best and its 95% interval's half width: `-0.0111 ± 0.0153`.
fn interval(c: &noise::Comparison) -> String {
    format!("{:+.4} ± {:.4}", c.difference, c.half_width)
}

/// The validation samples a run's evaluations read, when its summary records them.
fn validation_samples(r: &RunRecord) -> Option<usize> {
    r.summary.as_ref().map(|s| s.outcome.validation_samples).filter(|&n| n > 0)
}

fn num(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite()).map_or_else(String::new, |x| format!("{x:.4}"))
}

/// The best value of the experiment's metric a run reached, and at which epoch: the
/// evaluation its summary keeps as best where that is by this metric, else the best of
/// its metrics.csv (a run keeps its best evaluation by the metric it watches, e.g. the
/// val_loss a plateau schedule monitors, while the report may rank by accuracy).
fn best(view: &ExperimentView, r: &RunRecord) -> (Option<f64>, Option<u64>) {
    let Some(s) = r.summary.as_ref() else { return (None, None) };
    let metric = view.metric();
    if let Some(b) = s.outcome.best_metrics
        && (s.outcome.best_by.is_empty() || s.outcome.best_by == view.metric_name())
    {
        return (metric.value(&b), Some(b.epoch));
    }
    let rows = crate::store::read_metrics(&r.dir).unwrap_or_default();
    let better = |a: f64, b: f64| if metric.higher_is_better { a > b } else { a < b };
    rows.iter()
        .filter_map(|row| Some((metric.value(row).filter(|v| v.is_finite())?, row.epoch)))
        .fold(None, |acc: Option<(f64, u64)>, (v, e)| match acc {
            Some((bv, _)) if !better(v, bv) => acc,
            _ => Some((v, e)),
        })
        .map_or((None, None), |(v, e)| (Some(v), Some(e)))
}

fn final_metric(view: &ExperimentView, r: &RunRecord) -> Option<f64> {
    view.metric().value(&r.last?)
}

/// Whether some variant ran with more than one seed.
fn has_seeds(view: &ExperimentView) -> bool {
    let mut variants: Vec<&str> = view.runs.iter().map(|r| r.info.variant.as_str()).collect();
    let n = variants.len();
    variants.sort_unstable();
    variants.dedup();
    variants.len() < n
}

/// The best `k` runs (variants, over seeds) in one line, for the end of a sweep:
/// `best of 10 by val_accuracy: cosine_decay 0.9861; polynomial 0.9833 (tied); ...`.
pub fn top_line(view: &ExperimentView, k: usize) -> Option<String> {
    let (header, rows) = ranking(view);
    let m = view.metric_name();
    let value = header.iter().position(|h| *h == format!("mean_final_{m}") || *h == format!("final_{m}"))?;
    let verdict = header.iter().position(|h| h == "vs_best");
    // A run that has not finished (interrupted, still running) shows its last evaluation:
    // said so beside it and in the count.
    let status = header.iter().position(|h| h == "status");
    let partial = |r: &Vec<String>| {
        status.is_some_and(|s| ["interrupted", "incomplete", "running", "pending"].iter().any(|w| r[s].contains(w)))
    };
    let shown: Vec<String> = rows
        .iter()
        .filter(|r| !r[value].is_empty())
        .take(k)
        .map(|r| {
            let tied = verdict.is_some_and(|v| r[v] == "tied");
            let unfinished = match status {
                Some(s) if partial(r) => format!(" ({}: its last evaluation)", r[s]),
                _ => String::new(),
            };
            format!("{} {}{}{unfinished}", r[1], r[value], if tied { " (tied with the best)" } else { "" })
        })
        .collect();
    let unfinished = rows.iter().filter(|r| partial(r)).count();
    let of = match unfinished {
        0 => String::new(),
        n => format!(" ({n} unfinished)"),
    };
    (!shown.is_empty()).then(|| format!("best of {} by {m}{of}: {}", rows.len(), shown.join("; ")))
}

/// A language model experiment's bits per char (or per byte), shown beside its loss.
fn bits_metric(view: &ExperimentView) -> Option<crate::results::Metric> {
    let evaluated = || view.runs.iter().filter_map(|r| r.last);
    let name = if evaluated().any(|l| l.val_bits_per_char.is_some()) {
        "val_bits_per_char"
    } else if evaluated().any(|l| l.val_bits_per_byte.is_some()) {
        "val_bits_per_byte"
    } else {
        return None;
    };
    crate::results::METRICS.iter().copied().find(|m| m.name == name)
}

/// The ranking: one row per run, or per variant (mean, std, min, max over seeds).
pub fn ranking(view: &ExperimentView) -> (Vec<String>, Vec<Vec<String>>) {
    let m = view.metric_name();
    if has_seeds(view) {
        return ranking_over_seeds(view);
    }
    let mut header: Vec<String> = vec!["rank".into(), "run".into(), "schedule".into()];
    header.extend(view.columns.iter().cloned());
    header.extend(["status".into(), format!("final_{m}"), format!("best_{m}"), "best_epoch".into()]);
    // The validation loss beside another metric (it breaks ties), and regression's RMSE.
    let with_loss = m != "val_loss";
    let with_rmse = !view.is_classification() && m != "val_rmse";
    if with_loss {
        header.push("final_val_loss".into());
    }
    if with_rmse {
        header.push("final_val_rmse".into());
    }
    let bits = bits_metric(view).filter(|b| b.name != m);
    if let Some(b) = bits {
        header.push(format!("final_{}", b.name));
    }
    header.extend(["steps".into(), "seconds".into()]);
    // Single runs ranked by accuracy: each against the best, on its validation set.
    let ranked = view.ranked();
    let best_run = ranked.first().copied().filter(|r| r.finished());
    let compare = |r: &RunRecord| -> Option<noise::Comparison> {
        if view.metric_name() != "val_accuracy" {
            return None;
        }
        let best = best_run?;
        let n = validation_samples(r)?;
        if validation_samples(best) != Some(n) || !r.finished() {
            return None;
        }
        noise::two_proportions(final_metric(view, r)?, final_metric(view, best)?, n)
    };
    let with_noise = ranked.iter().skip(1).any(|r| compare(r).is_some());
    if with_noise {
        header.extend(["vs_best".into(), "difference_95".into()]);
    }
    let rows = ranked
        .iter()
        .copied()
        .enumerate()
        .map(|(i, r)| {
            let mut row = vec![(i + 1).to_string(), r.info.name.clone(), r.info.schedule.clone()];
            row.extend(r.info.params.iter().cloned());
            row.resize(3 + view.columns.len(), String::new());
            let (best_value, best_epoch) = best(view, r);
            row.extend([
                r.status.clone(),
                num(final_metric(view, r)),
                num(best_value),
                best_epoch.map_or_else(String::new, |e| e.to_string()),
            ]);
            if with_loss {
                row.push(num(r.last.map(|l| l.val_loss)));
            }
            if with_rmse {
                row.push(num(r.last.and_then(|l| l.val_rmse)));
            }
            if let Some(b) = bits {
                row.push(num(r.last.and_then(|l| b.value(&l))));
            }
            let outcome = r.summary.as_ref().map(|s| &s.outcome);
            row.push(outcome.map(|o| o.steps).or(r.last.map(|l| l.step)).map_or_else(String::new, |s| s.to_string()));
            row.push(outcome.map_or_else(String::new, |o| format!("{:.1}", o.wall_seconds)));
            if with_noise {
                let c = if i == 0 { None } else { compare(r) };
                row.push(match (i, c) {
                    (0, _) => "best".into(),
                    (_, Some(c)) => c.verdict(false).into(),
                    _ => String::new(),
                });
                row.push(c.map_or_else(String::new, |c| interval(&c)));
            }
            row
        })
        .collect();
    (header, rows)
}

/// The config a run trained, less its seed: runs of one variant that share it may be
/// aggregated (`None` for runs from before it was recorded, or not finished).
fn variant_hash(r: &RunRecord) -> Option<&str> {
    r.summary.as_ref().and_then(|s| s.variant_hash.as_deref())
}

/// The runs of each variant, split where they trained different configs: `(label, runs)`,
/// the label marked `[config HASH]` when a variant's runs are reported apart.
fn variant_groups(view: &ExperimentView) -> Vec<(String, Vec<&RunRecord>)> {
    let mut groups: Vec<(&str, Option<&str>, Vec<&RunRecord>)> = Vec::new();
    // Each variant's groups, by index into `groups`: sweeps hold thousands of variants.
    let mut of_variant: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    for r in &view.runs {
        let h = variant_hash(r);
        let indices = of_variant.entry(r.info.variant.as_str()).or_default();
        // A run without a hash joins its variant's first group.
        match indices.iter().copied().find(|&g| h.is_none() || groups[g].1.is_none() || groups[g].1 == h) {
            Some(g) => {
                groups[g].1 = groups[g].1.or(h);
                groups[g].2.push(r)
            }
            None => {
                indices.push(groups.len());
                groups.push((&r.info.variant, h, vec![r]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(v, h, runs)| {
            let label = match h {
                Some(h) if of_variant[v].len() > 1 => format!("{v} [config {}]", &h[..h.len().min(8)]),
                _ => v.to_string(),
            };
            (label, runs)
        })
        .collect()
}

/// What a reader of the ranking (`header` and `rows`, as [`ranking`] gave them) must know:
/// the validation-set size, the variants tied with the best, variants whose runs trained
/// different configs (reported apart) and schedules that do not fit their run, once per
/// variant.
pub fn notes(view: &ExperimentView, (header, rows): (&[String], &[Vec<String>])) -> Vec<String> {
    let mut notes = Vec::new();
    let mut sizes: Vec<usize> = view.runs.iter().filter_map(validation_samples).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let language = view.runs.iter().any(|r| r.last.is_some_and(|l| l.val_perplexity.is_some()));
    let unit = if language { "tokens" } else { "samples" };
    match sizes.as_slice() {
        [] => {}
        [n] => notes.push(format!(
            "every evaluation reads {n} validation {unit}{}",
            if language { String::new() } else { format!(" (one sample is {:.2}% of accuracy)", 100.0 / *n as f64) }
        )),
        more => notes.push(format!(
            "the runs' evaluations read different numbers of validation {unit}: {}",
            more.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
        )),
    }
    if let Some(col) = header.iter().position(|h| h == "vs_best") {
        let tied: Vec<&str> = rows.iter().filter(|r| r[col] == "tied").map(|r| r[1].as_str()).collect();
        let how = if has_seeds(view) {
            "Welch's 95% interval over seeds of the difference of means from the best variant's"
        } else {
            "the 95% interval of the difference of two accuracies on the validation set (unpaired, so wide)"
        };
        notes.push(format!(
            "vs_best: {how}; \"tied\" where it contains 0, so the two cannot be told apart{}",
            if tied.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} of {}: {})",
                    tied.len(),
                    rows.len(),
                    tied.iter().take(10).copied().collect::<Vec<_>>().join(", ")
                        + if tied.len() > 10 { ", ..." } else { "" }
                )
            }
        ));
    }
    let groups = variant_groups(view);
    let mut mixed: Vec<&str> = Vec::new();
    for (label, runs) in &groups {
        let v = runs[0].info.variant.as_str();
        if label != v && !mixed.contains(&v) {
            mixed.push(v);
            let parts: Vec<String> = groups
                .iter()
                .filter(|(_, rs)| rs[0].info.variant == v)
                .map(|(l, rs)| {
                    format!("{} ({})", l, rs.iter().map(|r| r.info.name.as_str()).collect::<Vec<_>>().join(", "))
                })
                .collect();
            notes.push(format!(
                "{v}: its runs trained different configs, so they are reported apart: {}; rerun the sweep to bring them in line",
                parts.join("; ")
            ));
        }
    }
    // Every run's CSV files are read through: on all cores, for sweeps of thousands.
    use rayon::prelude::*;
    let problems: Vec<Vec<String>> = view.runs.par_iter().map(|r| crate::store::csv_problems(&r.dir)).collect();
    for (r, problems) in view.runs.iter().zip(problems) {
        for p in problems {
            let live = if r.status == "running" { " (it is still being written)" } else { "" };
            notes.push(format!("{}: {p}{live}", r.info.name));
        }
    }
    for r in &view.runs {
        if let Some(why) = r.summary.as_ref().and_then(|s| s.collapsed.as_deref()) {
            notes.push(format!("{}: collapsed: {why}", r.info.name));
        }
    }
    // Each warning once, with the variants that had it (the first few, then how many).
    let mut warnings: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut seen: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    for r in &view.runs {
        for w in r.summary.iter().flat_map(|s| s.warnings.iter()) {
            if seen.insert((r.info.variant.as_str(), w.as_str())) {
                let i = *index.entry(w.as_str()).or_insert_with(|| {
                    warnings.push((w.as_str(), Vec::new()));
                    warnings.len() - 1
                });
                warnings[i].1.push(r.info.variant.as_str());
            }
        }
    }
    for (w, variants) in warnings {
        let who = match variants.len() {
            n if n <= 3 => variants.join(", "),
            n => format!("{} and {} more variants", variants[..3].join(", "), n - 3),
        };
        notes.push(format!("{who}: warning: {w}"));
    }
    notes
}

fn ranking_over_seeds(view: &ExperimentView) -> (Vec<String>, Vec<Vec<String>>) {
    let m = view.metric_name();
    let groups = variant_groups(view);
    let sign = if view.metric().higher_is_better { 1.0 } else { -1.0 };
    let bits = bits_metric(view).filter(|b| b.name != m);
    let mut stats: Vec<(f64, f64, Vec<String>, Vec<f64>)> = groups
        .iter()
        .map(|(variant, runs)| {
            // Completed runs only: an interrupted or failed run's metrics are partial.
            let values: Vec<f64> = runs
                .iter()
                .filter(|r| r.finished())
                .filter_map(|r| final_metric(view, r))
                .filter(|v| v.is_finite())
                .collect();
            let n = values.len() as f64;
            let mean = (n > 0.0).then(|| values.iter().sum::<f64>() / n);
            let std = mean
                .filter(|_| n > 1.0)
                .map(|mu| (values.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
            let mut statuses: Vec<(String, usize)> = Vec::new();
            for r in runs {
                match statuses.iter_mut().find(|(s, _)| *s == r.status) {
                    Some((_, c)) => *c += 1,
                    None => statuses.push((r.status.clone(), 1)),
                }
            }
            // The mean validation loss beside another metric: it breaks ties.
            let losses: Vec<f64> = runs
                .iter()
                .filter(|r| r.finished())
                .filter_map(|r| r.last.map(|l| l.val_loss))
                .filter(|v| v.is_finite())
                .collect();
            let mean_loss = (!losses.is_empty()).then(|| losses.iter().sum::<f64>() / losses.len() as f64);
            let bits_values: Vec<f64> = bits
                .map(|b| {
                    runs.iter().filter(|r| r.finished()).filter_map(|r| r.last.and_then(|l| b.value(&l))).collect()
                })
                .unwrap_or_default();
            let mean_bits =
                (!bits_values.is_empty()).then(|| bits_values.iter().sum::<f64>() / bits_values.len() as f64);
            let first = runs[0];
            let mut row = vec![variant.to_string(), first.info.schedule.clone()];
            row.extend(first.info.params.iter().cloned());
            row.resize(2 + view.columns.len(), String::new());
            row.extend([
                runs.len().to_string(),
                num(mean),
                num(std),
                num(values.iter().copied().reduce(f64::min)),
                num(values.iter().copied().reduce(f64::max)),
            ]);
            if m != "val_loss" {
                row.push(num(mean_loss));
            }
            if bits.is_some() {
                row.push(num(mean_bits));
            }
            row.push(statuses.iter().map(|(s, c)| format!("{c} {s}")).collect::<Vec<_>>().join(", "));
            (mean.map_or(f64::NEG_INFINITY, |m| sign * m), mean_loss.unwrap_or(f64::INFINITY), row, values)
        })
        .collect();
    stats.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.total_cmp(&b.1)));
    // Each variant against the best: Welch's interval over their seeds.
    let best_values = stats.first().map(|s| s.3.clone()).unwrap_or_default();
    for (i, (_, _, row, values)) in stats.iter_mut().enumerate() {
        let c = noise::welch(values, &best_values);
        row.push(c.map_or_else(String::new, |c| c.verdict(i == 0).to_string()));
        row.push(c.filter(|_| i > 0).map_or_else(String::new, |c| interval(&c)));
    }
    let mut header: Vec<String> = vec!["rank".into(), "variant".into(), "schedule".into()];
    header.extend(view.columns.iter().cloned());
    header.extend(["seeds".into(), format!("mean_final_{m}"), "std".into(), "min".into(), "max".into()]);
    if m != "val_loss" {
        header.push("mean_final_val_loss".into());
    }
    if let Some(b) = bits {
        header.push(format!("mean_final_{}", b.name));
    }
    header.extend(["status".into(), "vs_best".into(), "difference_95".into()]);
    let rows =
        stats.into_iter().enumerate().map(|(i, (_, _, row, _))| [vec![(i + 1).to_string()], row].concat()).collect();
    (header, rows)
}
