//! `runner report A B ...`: experiments side by side, variant by variant (the same variant
//! names, as two runs of one sweep file with a changed data set or model give; variants
//! only one has are listed too, blank elsewhere). Each experiment's mean final metric over
//! its finished seeds; with two experiments, the second's difference from the first with
//! its 95% interval (Welch over seeds, or two accuracies on the validation set for single
//! runs) and which is better, or `tied` where the interval contains 0.

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

/// The table comparing `views` (ranked by the first one's metric; all must have it).
pub fn compare(views: &[ExperimentView]) -> (Vec<String>, Vec<Vec<String>>) {
    let m = views[0].metric_name();
    let higher = views[0].metric().higher_is_better;
    // Column names: the experiments' names, numbered where two share one.
    let names: Vec<String> = views
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if views.iter().filter(|w| w.name == v.name).count() > 1 {
                format!("{}#{}", v.name, i + 1)
            } else {
                v.name.clone()
            }
        })
        .collect();
    let all: Vec<Vec<(String, Finals)>> = views.iter().map(finals).collect();
    let mut variants: Vec<String> = Vec::new();
    for f in &all {
        for (label, _) in f {
            if !variants.contains(label) {
                variants.push(label.clone());
            }
        }
    }
    let mut header = vec!["variant".to_string()];
    for n in &names {
        header.extend([format!("{n}: seeds"), format!("{n}: mean_final_{m}")]);
    }
    let two = views.len() == 2;
    if two {
        header.extend(["difference_95".into(), "better".into()]);
    }
    let rows = variants
        .iter()
        .map(|variant| {
            let mut row = vec![variant.clone()];
            let found: Vec<Option<&Finals>> =
                all.iter().map(|f| f.iter().find(|(l, _)| l == variant).map(|(_, x)| x)).collect();
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
