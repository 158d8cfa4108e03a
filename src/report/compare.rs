//! `runner report A B ...`: experiments side by side, variant by variant (the same variant
//! names, as two runs of one sweep file with a changed data set or model give; variants
//! only one has are listed too, blank elsewhere). Each experiment's mean final metric over
//! its finished seeds; with two experiments, the second's difference from the first with
//! its 95% interval (Welch over seeds, or two accuracies on the validation set for single
//! runs) and which is better, or `tied` where the interval contains 0.
//!
//! Two experiments whose variants are named differently are compared pair by pair: the
//! pairs given (`--pair a=b`: variant a of the first against b of the second), or, where
//! each holds a single variant (two run directories, say), that one pair.

use super::{final_metric, noise, num, validation_samples, variant_groups};
use crate::results::ExperimentView;

/// Per variant of one experiment: its finished runs' final values and validation size.
struct Finals {
    values: Vec<f64>,
    samples: Option<usize>,
}

fn finals(view: &ExperimentView) -> Vec<(String, Finals)> {
    let mut groups = variant_groups(view);
    let ranked = view.ranked();
    let rank = |name: &str| ranked.iter().position(|r| r.info.name == name).unwrap_or(usize::MAX);
    groups.sort_by_key(|(_, runs)| runs.iter().map(|r| rank(&r.info.name)).min());
    groups
        .into_iter()
        .map(|(label, runs)| {
            let values =
                runs.iter().filter(|r| r.finished()).filter_map(|r| final_metric(view, r)).filter(|v| v.is_finite());
            (label, Finals { values: values.collect(), samples: runs.first().and_then(|r| validation_samples(r)) })
        })
        .collect()
}

/// The variants of `view` as [`compare`] names them, best first.
pub fn variants(view: &ExperimentView) -> Vec<String> {
    finals(view).into_iter().map(|(label, _)| label).collect()
}

/// The table comparing `views` (ranked by the first one's metric; all must have it):
/// variant by variant, or by `pairs` of variants (of the first and the second of two views;
/// checked by the caller against [`variants`]).
pub fn compare(views: &[ExperimentView], pairs: &[(String, String)]) -> (Vec<String>, Vec<Vec<String>>) {
    let m = views[0].metric_name();
    let higher = views[0].metric().higher_is_better;
    // Column names: the experiments' names; where two share one, their directories' names
    // (two runs of one experiment), else numbered.
    let dir_name = |v: &ExperimentView| v.dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let names: Vec<String> = views
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let shared =
                |f: &dyn Fn(&ExperimentView) -> Option<String>| views.iter().filter(|w| f(w) == f(v)).count() > 1;
            if !shared(&|w| Some(w.name.clone())) {
                v.name.clone()
            } else if !shared(&dir_name) {
                format!("{}/{}", v.name, dir_name(v).unwrap_or_default())
            } else {
                format!("{}#{}", v.name, i + 1)
            }
        })
        .collect();
    let all: Vec<Vec<(String, Finals)>> = views.iter().map(finals).collect();
    let find = |i: usize, label: &str| all[i].iter().find(|(l, _)| l == label).map(|(_, x)| x);
    // Each row: its label and each view's variant in it.
    let rows_of: Vec<(String, Vec<Option<&Finals>>)> = match pairs {
        [] if views.len() == 2 && all[0].len() == 1 && all[1].len() == 1 && all[0][0].0 != all[1][0].0 => {
            let (a, b) = (&all[0][0], &all[1][0]);
            vec![(format!("{} vs {}", a.0, b.0), vec![Some(&a.1), Some(&b.1)])]
        }
        [] => {
            let mut variants: Vec<&String> = Vec::new();
            for f in &all {
                for (label, _) in f {
                    if !variants.contains(&label) {
                        variants.push(label);
                    }
                }
            }
            variants.into_iter().map(|v| (v.clone(), (0..all.len()).map(|i| find(i, v)).collect())).collect()
        }
        pairs => pairs.iter().map(|(a, b)| (format!("{a} vs {b}"), vec![find(0, a), find(1, b)])).collect(),
    };
    let mut header = vec!["variant".to_string()];
    for n in &names {
        header.extend([format!("{n}: seeds"), format!("{n}: mean_final_{m}")]);
    }
    let two = views.len() == 2;
    if two {
        header.extend(["difference_95".into(), "better".into()]);
    }
    let rows = rows_of
        .into_iter()
        .map(|(label, found)| {
            let mut row = vec![label];
            for f in &found {
                let mean =
                    f.filter(|f| !f.values.is_empty()).map(|f| f.values.iter().sum::<f64>() / f.values.len() as f64);
                row.extend([f.map_or_else(String::new, |f| f.values.len().to_string()), num(mean)]);
            }
            if two {
                let c = match (found[0], found[1]) {
                    (Some(a), Some(b)) if a.values.len() > 1 && b.values.len() > 1 => {
                        noise::welch(&b.values, &a.values)
                    }
                    (Some(a), Some(b)) if a.values.len() == 1 && b.values.len() == 1 && m == "val_accuracy" => {
                        match (a.samples, b.samples) {
                            (Some(n), Some(k)) if n == k => noise::two_proportions(b.values[0], a.values[0], n),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                row.push(c.map_or_else(String::new, |c| super::interval(&c)));
                row.push(c.map_or_else(String::new, |c| {
                    if c.indistinguishable() {
                        "tied".into()
                    } else if (c.difference > 0.0) == higher {
                        names[1].clone()
                    } else {
                        names[0].clone()
                    }
                }));
            }
            row
        })
        .collect();
    (header, rows)
}
