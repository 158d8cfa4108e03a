//! The use cases behind `runner run` and `runner sweep`: an experiment's selected runs,
//! checked once, then trained here ([`Local`]) or handed to Slurm ([`Slurm`]), behind one
//! seam ([`Launcher`]). The commands turn flags into a [`Request`] and a launcher; the
//! launchers know no flags. Above `report` (a sweep ends with its summary and best runs),
//! below `commands`.

mod local;
mod slurm;

pub use local::Local;
pub use slurm::{Slurm, plan_only};

use crate::data;
use crate::error::input_error;
use crate::plan::{Experiment, PlannedRun, RunInfo};
use crate::results::Plan;
use crate::sweep::Shard;
use crate::train::Prepared;
use anyhow::Result;
use std::path::Path;

/// What to launch: the experiment (its runs resolved, the command's flags applied), the
/// data sets loaded while reading it, and where and how.
pub struct Request<'a> {
    pub exp: Experiment,
    pub cache: data::Cache,
    /// Results go to `<out>/<experiment>/`.
    pub out: &'a Path,
    /// Only the runs whose name matches (see [`select`]).
    pub filter: Option<&'a str>,
    /// Rerun finished runs too.
    pub force: bool,
    /// No progress output.
    pub quiet: bool,
    /// Say what would happen, and do nothing.
    pub dry_run: bool,
}

/// Where runs train: here, or on a cluster.
pub trait Launcher {
    /// Trains (or submits) the request's runs into `<out>/<experiment>/`; an error says what
    /// stopped it, and which runs failed and why.
    fn launch(&self, request: Request<'_>) -> Result<()>;
}

/// The experiment's runs.json.
pub fn plan(exp: &Experiment) -> Plan {
    Plan {
        experiment: exp.name.clone(),
        columns: exp.columns.clone(),
        runs: exp
            .runs
            .iter()
            .map(|r| RunInfo { config_hash: Some(r.config.config_hash()), ..r.info.clone() })
            .collect(),
    }
}

/// The indices of the runs of `shard` (all without one) that `filter` selects: a glob
/// when it has `*`, `?` or `[`, else a substring.
pub fn select(exp: &Experiment, filter: Option<&str>, shard: Option<Shard>) -> Result<Vec<usize>> {
    let in_shard: Vec<usize> = (0..exp.runs.len()).filter(|&i| shard.is_none_or(|s| s.contains(i))).collect();
    if in_shard.is_empty() {
        return Err(input_error(format!(
            "shard {} holds none of the {} runs; use at most {} shards",
            shard.map_or(String::new(), |s| s.to_string()),
            exp.runs.len(),
            exp.runs.len()
        )));
    }
    let Some(f) = filter else { return Ok(in_shard) };
    let matches: Box<dyn Fn(&str) -> bool> = if f.contains(['*', '?', '[']) {
        let pattern =
            glob::Pattern::new(f).map_err(|e| input_error(format!("--filter \"{f}\" is not a valid pattern: {e}")))?;
        Box::new(move |name| pattern.matches(name))
    } else {
        Box::new(move |name| name.contains(f))
    };
    let selected: Vec<usize> = in_shard.into_iter().filter(|&i| matches(&exp.runs[i].info.name)).collect();
    if selected.is_empty() {
        let names: Vec<&str> = exp.runs.iter().map(|r| r.info.name.as_str()).collect();
        return Err(input_error(format!("--filter \"{f}\" matches none of the runs: {}", names.join(", "))));
    }
    Ok(selected)
}

/// Steps of a variant checked for a rate that is not a finite number before anything
/// starts (a formula costs about a microsecond a step; beyond these, the trainer checks
/// each step and fails the run).
const PRECHECK_STEPS: u64 = 200_000;

/// Refuses what the config alone decides (a run too long, a model or monitor the data
/// cannot serve, a rate that is not a finite number), and prints where a schedule does not
/// fit its run, once per variant (its seeds share the schedule and the run's length).
/// Negative rates are held at 0 and only warned about (see `fit_warnings`). The runs,
/// checked and prepared for the trainer, in order.
pub fn check_schedules(runs: &[&PlannedRun], cache: &mut data::Cache) -> Result<Vec<Prepared>> {
    let mut done: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut prepared = Vec::with_capacity(runs.len());
    for r in runs {
        let data = cache.get(&r.config.dataset)?;
        let run =
            Prepared::new(r.config.run_spec(), data).map_err(|why| input_error(format!("{}: {why}", r.info.name)))?;
        // Seeds of a variant share its schedule and its run's length.
        if done.insert(&r.info.variant) {
            let ctx = &run.ctx;
            // Checked as the run computes: with its threads' handling of denormals.
            let mode = crate::kernels::denormals::scoped(r.config.train.flush_denormals);
            let bad =
                crate::schedule::first_bad_rate(&*r.config.schedule.build(ctx), ctx.total_steps.min(PRECHECK_STEPS));
            drop(mode);
            if let Some((step, lr)) = bad {
                return Err(input_error(format!(
                    "{}: the schedule gives lr = {lr} at step {step}; a learning rate must be a finite number",
                    r.info.name
                )));
            }
            for w in r.config.schedule_warnings(run.data.train.len) {
                say!("warning: {}: {w}", r.info.variant);
            }
        }
        prepared.push(run);
    }
    Ok(prepared)
}

/// Refuses while the experiment's latest Slurm job still has tasks queued or running:
/// they train what plan/ says and runs.json indexes, which must not change under them.
fn refuse_while_queued(dir: &Path, then: &str) -> Result<()> {
    match crate::slurm::latest_job(dir)? {
        Some(status) if !status.ended() => Err(still_queued(dir, &status, then)),
        _ => Ok(()),
    }
}

/// What [`refuse_while_queued`] says.
fn still_queued(dir: &Path, status: &crate::slurm::JobStatus, then: &str) -> anyhow::Error {
    input_error(format!(
        "Slurm job {} of this experiment still has {} task{} queued or running, training the plan in {}; wait for it \
         (`runner collect {}` shows where it is) or cancel it (`scancel {}`), then {then}",
        status.ids(),
        status.queued.len(),
        if status.queued.len() == 1 { "" } else { "s" },
        dir.join("plan").display(),
        dir.display(),
        status.jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>().join(" ")
    ))
}

/// `--dry-run`'s table of each sequential network's layers (output shapes, parameters) and
/// its parameter count, once per network and data set of `runs`.
fn layer_tables(runs: &[&PlannedRun], cache: &mut data::Cache) -> Result<String> {
    let mut text = String::new();
    let mut shown: Vec<(&crate::model::ModelSpec, &data::DatasetSpec)> = Vec::new();
    for r in runs {
        let crate::model::ModelSpec::Sequential(seq) = &r.config.model else { continue };
        if shown.contains(&(&r.config.model, &r.config.dataset)) {
            continue;
        }
        shown.push((&r.config.model, &r.config.dataset));
        let d = cache.get(&r.config.dataset)?;
        let outputs = if d.task == data::Task::Classification { d.classes } else { 1 };
        let shape = crate::model::DataShape { features: d.features, outputs, image: d.image };
        // A list that does not fit was refused before a dry run prints anything.
        let Ok(rows) = seq.table(shape) else { continue };
        let total: u128 = rows.iter().map(|row| row.parameters).sum();
        let header: Vec<String> = ["layer", "type", "output", "parameters"].map(String::from).to_vec();
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                let indent = "  ".repeat(row.number.matches('.').count());
                vec![
                    format!("{indent}{}", row.number),
                    row.layer.clone(),
                    row.output.short(),
                    if row.parameters == 0 { String::new() } else { row.parameters.to_string() },
                ]
            })
            .collect();
        text.push_str(&format!(
            "\n{} (sequential, {total} parameters, on {}):\n{}",
            r.info.name,
            d.name,
            crate::report::table::render_text(&header, &rows)
        ));
    }
    Ok(text)
}
