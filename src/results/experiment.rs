//! An experiment directory read back: its plan (`runs.json`), every run's state and
//! curves, and the lock that keeps two sweeps from writing into it at once.

use crate::error::input_error;
use crate::plan::RunInfo;
use crate::store::{ExperimentLock, StoredSummary, read_metrics, read_summary, write_json_atomic};
use crate::train::EvalRow;
use anyhow::{Context as _, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// `runs.json`: the runs an experiment was expanded into, in order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub experiment: String,
    /// The swept keys, the columns of every run's `params`.
    pub columns: Vec<String>,
    pub runs: Vec<RunInfo>,
}

/// Reads `dir/runs.json`.
pub fn read_plan(dir: &Path) -> Result<Plan> {
    let path = dir.join("runs.json");
    let text = fs::read_to_string(&path).map_err(|e| {
        input_error(format!(
            "cannot read {}: {e}; give the directory a sweep was planned into (experiments/NAME)",
            path.display()
        ))
    })?;
    let plan: Plan = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a runs.json this runner wrote", path.display()))?;
    // Names become paths (run-one deletes and writes dir/<run>): checked as strictly as a
    // config's, so an edited or forged plan cannot reach outside the experiment.
    let bad = std::iter::once(("experiment", &plan.experiment, crate::config::check_name(&plan.experiment)))
        .chain(plan.runs.iter().map(|r| ("run", &r.name, crate::config::check_run_name(&r.name))))
        .find_map(|(what, name, check)| check.err().map(|why| (what, name, why)));
    if let Some((what, name, why)) = bad {
        return Err(input_error(format!(
            "{} names the {what} \"{}\", which is refused ({why}): it was not written by runner; plan the sweep again",
            path.display(),
            name.escape_debug()
        )));
    }
    Ok(plan)
}

/// Writes `dir/runs.json` atomically.
pub fn write_plan(dir: &Path, plan: &Plan) -> Result<()> {
    write_json_atomic(&dir.join("runs.json"), plan)
}

/// Writes `ours` as `dir/runs.json`, keeping what the experiment already holds: an
/// experiment accumulates runs (two configs run one after the other into one experiment
/// are compared there). The runs of `ours` come first, at the indices their launch gave
/// them (a Slurm task trains run `OFFSET + T`), then the earlier plan's other runs whose
/// directory holds results, in their order; runs it planned that never started are
/// dropped. The columns are both plans' swept keys, ours first; a run has no value under
/// a key its launch did not sweep. Returns the plan written.
pub fn record_plan(dir: &Path, ours: &Plan) -> Result<Plan> {
    // An unreadable earlier plan is replaced: its runs' directories are still found
    // (read_experiment lists every run directory).
    let earlier = dir.join("runs.json").exists().then(|| read_plan(dir).ok()).flatten();
    let merged = merge_plans(earlier.as_ref(), ours, |name| dir.join(name).join("config.toml").exists());
    write_plan(dir, &merged)?;
    Ok(merged)
}

/// [`record_plan`]'s merge: `ours`, then the runs of `earlier` it does not name for which
/// `has_results` holds.
fn merge_plans(earlier: Option<&Plan>, ours: &Plan, has_results: impl Fn(&str) -> bool) -> Plan {
    let Some(earlier) = earlier else { return ours.clone() };
    let mut columns = ours.columns.clone();
    for c in &earlier.columns {
        if !columns.contains(c) {
            columns.push(c.clone());
        }
    }
    // A run's values under the merged columns, from those of the plan it came from.
    let align = |info: &RunInfo, from: &[String]| -> RunInfo {
        let params = columns
            .iter()
            .map(|c| from.iter().position(|f| f == c).and_then(|i| info.params.get(i)).cloned().unwrap_or_default())
            .collect();
        RunInfo { params, ..info.clone() }
    };
    let mut runs: Vec<RunInfo> = ours.runs.iter().map(|r| align(r, &ours.columns)).collect();
    let named: std::collections::HashSet<&str> = ours.runs.iter().map(|r| r.name.as_str()).collect();
    runs.extend(
        earlier
            .runs
            .iter()
            .filter(|r| !named.contains(r.name.as_str()) && has_results(&r.name))
            .map(|r| align(r, &earlier.columns)),
    );
    Plan { experiment: ours.experiment.clone(), columns, runs }
}

/// One run of an experiment as found on disk.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub info: RunInfo,
    pub dir: PathBuf,
    /// completed, collapsed (completed, but back to chance or flat at the uniform
    /// prediction's loss), diverged, failed, interrupted (from summary.json); running (no
    /// summary yet, the experiment is locked by a live process); incomplete (no summary,
    /// nobody running it); pending (not started).
    pub status: String,
    pub summary: Option<StoredSummary>,
    /// The last evaluation: the summary's final metrics, or metrics.csv's last row for a
    /// run still going.
    pub last: Option<EvalRow>,
}

impl RunRecord {
    /// Whether the run trained to its end: completed, collapsed or not. Its final metrics
    /// are a result; other runs' are partial.
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "collapsed")
    }
}

/// A metrics.csv column runs can be ranked by, and which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub higher_is_better: bool,
}

/// The columns `runner report --metric` ranks by.
pub const METRICS: [Metric; 7] = [
    Metric { name: "val_accuracy", higher_is_better: true },
    Metric { name: "val_loss", higher_is_better: false },
    Metric { name: "val_rmse", higher_is_better: false },
    Metric { name: "train_loss", higher_is_better: false },
    Metric { name: "val_bits_per_char", higher_is_better: false },
    Metric { name: "val_bits_per_byte", higher_is_better: false },
    Metric { name: "val_perplexity", higher_is_better: false },
];

impl Metric {
    /// This metric's value in an evaluation row (`None` where the row has none).
    pub fn value(&self, row: &EvalRow) -> Option<f64> {
        match self.name {
            "val_accuracy" => row.val_accuracy,
            "val_rmse" => row.val_rmse,
            "train_loss" => Some(row.train_loss),
            "val_bits_per_char" => row.val_bits_per_char,
            "val_bits_per_byte" => row.val_bits_per_byte,
            "val_perplexity" => row.val_perplexity,
            _ => Some(row.val_loss),
        }
    }
}

/// An experiment directory read back.
#[derive(Debug, Clone)]
pub struct ExperimentView {
    pub name: String,
    pub dir: PathBuf,
    pub columns: Vec<String>,
    pub runs: Vec<RunRecord>,
    /// Whether the runs are classification runs (they report a validation accuracy, or
    /// none has evaluated yet); decided once, as ranking asks for every comparison.
    classification: bool,
    /// What runs are ranked by.
    metric: Metric,
}

impl ExperimentView {
    fn new(name: String, dir: PathBuf, columns: Vec<String>, runs: Vec<RunRecord>) -> ExperimentView {
        let evaluated: Vec<EvalRow> = runs.iter().filter_map(|r| r.last).collect();
        let classification = evaluated.is_empty() || evaluated.iter().any(|e| e.val_accuracy.is_some());
        // Language models are ranked by their loss (nats per token), not token accuracy.
        let language = evaluated.iter().any(|e| e.val_perplexity.is_some());
        let metric = METRICS[if classification && !language { 0 } else { 1 }];
        ExperimentView { name, dir, columns, runs, classification, metric }
    }

    /// The view ranked by the metrics.csv column `name` instead (`runner report --metric`);
    /// an error names the columns accepted, or says that no run has this one.
    pub fn with_metric(mut self, name: &str) -> Result<ExperimentView> {
        let accepted = || METRICS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ");
        let Some(metric) = METRICS.iter().find(|m| m.name == name) else {
            return Err(input_error(format!(
                "--metric {name}: not a metric runs can be ranked by; accepted: {} (higher val_accuracy is better, lower is better for the others)",
                accepted()
            )));
        };
        let evaluated: Vec<EvalRow> = self.runs.iter().filter_map(|r| r.last).collect();
        if !evaluated.is_empty() && evaluated.iter().all(|e| metric.value(e).is_none()) {
            return Err(input_error(format!(
                "--metric {name}: no run of {} has it ({}); accepted here: {}",
                self.name,
                if self.classification {
                    "a classification, with no val_rmse"
                } else {
                    "a regression, with no val_accuracy"
                },
                METRICS
                    .iter()
                    .filter(|m| evaluated.iter().any(|e| m.value(e).is_some()))
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.metric = *metric;
        Ok(self)
    }

    /// What runs are ranked by.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Whether the runs are classification runs.
    pub fn is_classification(&self) -> bool {
        self.classification
    }

    /// The metric runs are ranked by: final validation accuracy (higher is better) for
    /// classification, final validation loss (lower is better) otherwise, unless
    /// [`ExperimentView::with_metric`] chose another.
    pub fn metric_name(&self) -> &'static str {
        self.metric.name
    }

    /// A run's ranking value, larger is better; `None` when it has none (diverged, not run).
    pub fn score(&self, run: &RunRecord) -> Option<f64> {
        let v = self.metric.value(&run.last?)?;
        let v = if self.metric.higher_is_better { v } else { -v };
        v.is_finite().then_some(v)
    }

    /// The runs, best first: completed runs by their score, then the others that have
    /// a score (interrupted, failed, running: partial metrics, never ranked among
    /// finished runs), then runs without one, in plan order. Equal scores (the same
    /// accuracy on a few hundred validation samples is common) are ordered by the lower
    /// final validation loss.
    pub fn ranked(&self) -> Vec<&RunRecord> {
        let mut runs: Vec<&RunRecord> = self.runs.iter().collect();
        let group = |r: &RunRecord| match (r.finished(), self.score(r)) {
            (true, Some(_)) => 0,
            (false, Some(_)) => 1,
            (_, None) => 2,
        };
        runs.sort_by(|a, b| {
            group(a)
                .cmp(&group(b))
                .then_with(|| match (self.score(a), self.score(b)) {
                    (Some(x), Some(y)) => y.total_cmp(&x),
                    _ => std::cmp::Ordering::Equal,
                })
                .then_with(|| match (a.last, b.last) {
                    (Some(x), Some(y)) if x.val_loss.is_finite() && y.val_loss.is_finite() => {
                        x.val_loss.total_cmp(&y.val_loss)
                    }
                    _ => std::cmp::Ordering::Equal,
                })
        });
        runs
    }
}

/// Reads the experiment at `dir`: the runs `runs.json` lists or, without one, every
/// subdirectory holding a `config.toml`. `dir` may also be a single run's directory.
pub fn read_experiment(dir: &Path) -> Result<ExperimentView> {
    if !dir.is_dir() {
        return Err(input_error(format!(
            "{} is not a directory; give an experiment directory (experiments/NAME) or a run directory",
            dir.display()
        )));
    }
    if dir.join("metrics.csv").exists() && !dir.join("runs.json").exists() {
        // A single run's directory.
        let parent = dir.parent().unwrap_or(Path::new("."));
        let live = ExperimentLock::run_holder(parent, &file_name(dir)).is_some();
        let info = discovered_info(dir);
        let name = read_summary(dir).map_or_else(|| file_name(parent), |s| s.experiment);
        return Ok(ExperimentView::new(name, dir.to_path_buf(), Vec::new(), vec![record(dir, info, live)]));
    }
    let (name, columns, mut infos) = match dir.join("runs.json").exists() {
        true => {
            let plan = read_plan(dir)?;
            (plan.experiment, plan.columns, plan.runs)
        }
        false => (file_name(dir), Vec::new(), Vec::new()),
    };
    // Every run directory the plan does not list too (runs written by a runner that kept
    // only the latest launch in runs.json, or copied in), after the plan's, by name.
    let listed: std::collections::HashSet<&std::ffi::OsStr> =
        infos.iter().map(|i| std::ffi::OsStr::new(i.name.as_str())).collect();
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| !listed.contains(n)) && p.join("config.toml").exists())
        .collect();
    dirs.sort();
    infos.extend(dirs.iter().map(|d| discovered_info(d)));
    if infos.is_empty() {
        return Err(input_error(format!(
            "{} holds no runs (no runs.json and no run directories with a config.toml)",
            dir.display()
        )));
    }
    // Running: a run whose own lock a live process holds (a local sweep's job, a Slurm
    // task's run-one); another run of a live experiment whose process died is not.
    let runs = infos
        .into_iter()
        .map(|info| {
            let live = ExperimentLock::run_holder(dir, &info.name).is_some();
            record(&dir.join(&info.name), info, live)
        })
        .collect();
    Ok(ExperimentView::new(name, dir.to_path_buf(), columns, runs))
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| "experiment".into(), |n| n.to_string_lossy().into_owned())
}

/// What can be learnt of a run without a plan: its name, schedule kind and seed.
fn discovered_info(dir: &Path) -> RunInfo {
    let config: Option<toml::Table> =
        fs::read_to_string(dir.join("config.toml")).ok().and_then(|t| t.parse::<toml::Table>().ok());
    let get = |table: &str, key: &str| config.as_ref()?.get(table)?.get(key).cloned();
    let name = file_name(dir);
    RunInfo {
        variant: name.clone(),
        schedule: get("schedule", "kind").and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        params: Vec::new(),
        seed: get("train", "seed").and_then(|v| v.as_integer()).unwrap_or_default() as u64,
        config_hash: fs::read_to_string(dir.join("config.toml")).ok().map(|t| crate::config::hash_text(&t)),
        name,
    }
}

fn record(dir: &Path, info: RunInfo, live: bool) -> RunRecord {
    let summary = read_summary(dir);
    let (status, last) = match &summary {
        // A completed run flagged as collapsed shows as such.
        Some(s) if s.collapsed.is_some() && s.outcome.status.name() == "completed" => {
            ("collapsed".to_string(), s.outcome.final_metrics)
        }
        Some(s) => (s.outcome.status.name().to_string(), s.outcome.final_metrics),
        None if dir.join("metrics.csv").exists() => {
            let status = if live { "running" } else { "incomplete" };
            (status.to_string(), read_metrics(dir).ok().and_then(|m| m.last().copied()))
        }
        None => ("pending".to_string(), None),
    };
    RunRecord { info, dir: dir.to_path_buf(), status, summary, last }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, status: &str, accuracy: f64, val_loss: f64) -> RunRecord {
        RunRecord {
            info: RunInfo {
                name: name.into(),
                variant: name.into(),
                schedule: "constant".into(),
                params: Vec::new(),
                seed: 1,
                config_hash: None,
            },
            dir: PathBuf::from(name),
            status: status.into(),
            summary: None,
            last: Some(EvalRow {
                epoch: 3,
                step: 30,
                lr: 0.1,
                train_loss: val_loss * 0.9,
                val_loss,
                val_accuracy: Some(accuracy),
                val_rmse: None,
                val_bits_per_char: None,
                val_bits_per_byte: None,
                val_perplexity: None,
                seconds: 1.0,
            }),
        }
    }

    fn info(name: &str, params: &[&str]) -> RunInfo {
        RunInfo {
            name: name.into(),
            variant: name.into(),
            schedule: "constant".into(),
            params: params.iter().map(|p| p.to_string()).collect(),
            seed: 1,
            config_hash: Some(format!("hash-{name}")),
        }
    }

    #[test]
    fn a_launch_keeps_the_earlier_runs_that_hold_results_under_the_merged_columns() {
        let plan = |columns: &[&str], runs: Vec<RunInfo>| Plan {
            experiment: "x".into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            runs,
        };
        let earlier = plan(
            &["lr", "batch"],
            vec![info("a", &["0.1", "32"]), info("b", &["0.3", "64"]), info("gone", &["1", "8"])],
        );
        let ours = plan(&["warmup", "lr"], vec![info("b", &["10", "0.2"]), info("c", &["20", "0.1"])]);
        let merged = merge_plans(Some(&earlier), &ours, |name| name != "gone");
        assert_eq!(merged.columns, ["warmup", "lr", "batch"]);
        let rows: Vec<(&str, Vec<&str>)> =
            merged.runs.iter().map(|r| (r.name.as_str(), r.params.iter().map(String::as_str).collect())).collect();
        // Ours first (b replaced by our b), then a; "gone" never wrote a directory.
        assert_eq!(rows, [("b", vec!["10", "0.2", ""]), ("c", vec!["20", "0.1", ""]), ("a", vec!["", "0.1", "32"])]);
        assert_eq!(merged.runs[0].config_hash.as_deref(), Some("hash-b"));
        assert_eq!(merge_plans(None, &ours, |_| true), ours);
    }

    fn order(view: &ExperimentView) -> Vec<&str> {
        view.ranked().iter().map(|r| r.info.name.as_str()).collect()
    }

    #[test]
    fn ties_go_to_the_lower_validation_loss_and_the_metric_can_be_chosen() {
        let runs = vec![
            run("a", "completed", 0.995, 0.030),
            run("b", "completed", 0.995, 0.021),
            run("c", "interrupted", 0.999, 0.010),
            run("d", "collapsed", 0.1, 2.31),
            run("e", "completed", 0.995, 0.025),
        ];
        let view = ExperimentView::new("x".into(), PathBuf::from("x"), Vec::new(), runs);
        // Equal accuracies in file order a, b, e: by val_loss b, e, a; the collapsed run is
        // finished (ranked by its accuracy), the interrupted one comes after.
        assert_eq!(order(&view), ["b", "e", "a", "d", "c"]);
        let by_loss = view.clone().with_metric("train_loss").unwrap();
        assert_eq!(by_loss.metric_name(), "train_loss");
        assert_eq!(order(&by_loss), ["b", "e", "a", "d", "c"]);
        let e = view.clone().with_metric("accuracy").unwrap_err().to_string();
        assert!(e.contains("accepted: val_accuracy, val_loss, val_rmse, train_loss, val_bits_per_char, val_bits_per_byte, val_perplexity"), "{e}");
        let e = view.with_metric("val_rmse").unwrap_err().to_string();
        assert!(e.contains("no run of x has it (a classification, with no val_rmse)"), "{e}");
    }
}
