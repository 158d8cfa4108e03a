//! Shared prefixes: runs of a sweep that are the same computation for their first steps
//! (warmup-stable-decay cool-downs of different lengths, a constant baseline beside them,
//! step decays that drop at different steps) train those steps once. Two runs share
//! steps `0..k` when their resolved configs are equal but for the schedule (and the run's
//! name), they train on the same device, neither schedule follows a metric and neither
//! stops early, and their learning rates are equal, as f64, at every step below `k`.
//!
//! The runs that share steps form a tree: a node is a span of steps its runs train alike,
//! trained once in its first run's directory; where the rates part (a fork), that run
//! writes a checkpoint, a snapshot of it is kept in `<experiment>/.forks/`, and each other
//! branch's first run starts from the snapshot ([`crate::store::fork`]) instead of step 0.
//! Everything after is the ordinary resume from a checkpoint, which is exact: each run's
//! files are those it writes training alone (but the seconds). A finished run made longer
//! continues from its own latest checkpoint the same way ([`continuation`]). On Slurm each
//! run's part (the fork it starts from, those it writes) is written for its task
//! ([`write_parts`], [`read_part`]), whose array waits for the writer's task.

use super::Job;
use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Where a run starts: a snapshot another run writes at `step`.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// The snapshot's name in `.forks/` (the hash of what it holds, so a rerun finds it).
    pub id: String,
    pub step: u64,
    /// The run (index into the jobs) that writes it, and its name.
    pub from: usize,
    pub run: String,
}

/// A fork the run writes: its snapshot at `step`, which others start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    pub id: String,
    pub step: u64,
}

/// A span of steps trained once, and by which runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub from: u64,
    pub to: u64,
    /// The runs (indices into the jobs) that share it; the first trains it.
    pub runs: Vec<usize>,
    /// Its depth in the tree (0: a root).
    pub depth: usize,
}

/// How a sweep's runs share their steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sharing {
    /// Per job: where it starts (`None`: step 0) and the forks it writes on the way.
    pub starts: Vec<Option<Start>>,
    pub pauses: Vec<Vec<Pause>>,
    /// The trees, depth first (for `--dry-run`).
    pub spans: Vec<Span>,
    /// Steps of all runs, and steps to train with sharing.
    pub steps_alone: u64,
    pub steps_shared: u64,
    /// The runs' length, when they all have the same.
    pub each: Option<u64>,
}

impl Sharing {
    /// Whether any run starts from another's snapshot.
    pub fn shares(&self) -> bool {
        self.starts.iter().any(Option::is_some)
    }

    /// Drops the starts `keep` refuses (run, its start): those runs train from step 0, and
    /// the forks no run starts from any more are not written. Returns the runs dropped.
    pub fn keep_starts(&mut self, keep: impl Fn(usize, &Start) -> bool) -> Vec<usize> {
        let mut dropped = Vec::new();
        for (run, start) in self.starts.iter_mut().enumerate() {
            if let Some(s) = start.take_if(|s| !keep(run, s)) {
                self.steps_shared += s.step;
                dropped.push(run);
            }
        }
        let used: std::collections::HashSet<&str> = self.starts.iter().flatten().map(|s| s.id.as_str()).collect();
        for pauses in &mut self.pauses {
            pauses.retain(|p| used.contains(p.id.as_str()));
        }
        dropped
    }

    /// The trees, a line per span, indented by depth (`names`: the runs' names), then the
    /// cost line: what `--dry-run` shows.
    pub fn tree_text(&self, names: &[&str]) -> String {
        let mut text = String::from(
            "shared first steps, trained once in the first run named, the others forked from there (--no-share: each run alone):\n",
        );
        for span in &self.spans {
            let names: Vec<String> = span.runs.iter().map(|&r| names[r].to_string()).collect();
            text.push_str(&format!(
                "{}steps {} to {}: {}\n",
                "  ".repeat(span.depth + 1),
                span.from,
                span.to,
                crate::suggest::first_few(&names, || format!("{} runs", names.len()))
            ));
        }
        text.push_str(&format!("{}\n", self.cost_line()));
        text
    }

    /// The saving in words: `5 runs, 12,000 steps each: 34,800 steps to train instead of
    /// 60,000 (58%)`.
    pub fn cost_line(&self) -> String {
        format!(
            "{} runs{}: {} steps to train instead of {} ({:.0}%)",
            self.starts.len(),
            self.each.map_or(String::new(), |n| format!(", {} steps each", thousands(n))),
            thousands(self.steps_shared),
            thousands(self.steps_alone),
            100.0 * self.steps_shared as f64 / self.steps_alone.max(1) as f64
        )
    }
}

/// `34800` as `34,800`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What must be equal for two runs to share steps: the resolved config less its schedule
/// (set to `schedule`, the same for every run) and run name, and the device; `None` for a
/// run that may not share (a schedule that follows a metric, early stopping).
fn sharing_key(job: &Job<'_>, schedule: &crate::schedule::ScheduleSpec) -> Option<String> {
    let spec = &job.prepared.spec;
    if spec.train.early_stopping.is_some() || spec.schedule.build(&job.prepared.ctx).monitor().is_some() {
        return None;
    }
    Some(key_of(&job.run.config, schedule, spec.train.device))
}

/// [`sharing_key`] of `config`: its TOML with `schedule` for its own and no run name.
fn key_of(
    config: &crate::plan::ExperimentConfig,
    schedule: &crate::schedule::ScheduleSpec,
    device: crate::device::DeviceSpec,
) -> String {
    let mut config = config.clone();
    config.run = String::new();
    config.schedule = schedule.clone();
    format!("{}\ndevice = {device:?}", config.to_toml())
}

/// The step from which `job` may continue the finished run in `run_dir` instead of
/// starting over: the latest checkpoint of that run (its resolved config `old`), when the
/// two are the same computation up to it - configs equal but for the schedule and the
/// run's length (a run made longer: `train.steps = N`), trained on the same kind of device,
/// and rates equal, as f64, at every step before it. A schedule that follows a metric and
/// early stopping never continue (as they never share).
pub fn continuation(job: &Job<'_>, run_dir: &std::path::Path, old: &crate::plan::ExperimentConfig) -> Option<u64> {
    let summary = crate::store::read_summary(run_dir)?;
    if summary.outcome.status != crate::train::Status::Completed
        || summary.outcome.device.starts_with("cpu") != job.prepared.spec.train.device.is_cpu()
    {
        return None;
    }
    let new = &job.run.config;
    let mut same = old.clone();
    same.train.epochs = new.train.epochs;
    same.train.steps = new.train.steps;
    same.train.device = new.train.device;
    same.run.clone_from(&new.run);
    if sharing_key(job, &new.schedule)? != key_of(&same, &new.schedule, job.prepared.spec.train.device) {
        return None;
    }
    let latest = crate::store::checkpoints::latest(run_dir, &old.config_hash()).ok()??;
    let k = latest.meta.step;
    let ctx = crate::schedule::Context { total_steps: summary.outcome.total_steps, ..job.prepared.ctx };
    let (was, now) = (old.schedule.build(&ctx), job.prepared.spec.schedule.build(&job.prepared.ctx));
    let equal = (0..k).all(|s| was.lr(s).to_bits() == now.lr(s).to_bits());
    (k > 0 && k < job.prepared.ctx.total_steps && equal).then_some(k)
}

/// The shared prefixes of `jobs` (in their order: a tree's first run is the first of its
/// runs in the sweep).
pub fn plan(jobs: &[Job<'_>]) -> Sharing {
    let n = jobs.len();
    let mut sharing = Sharing {
        starts: vec![None; n],
        pauses: vec![Vec::new(); n],
        spans: Vec::new(),
        steps_alone: jobs.iter().map(|j| j.prepared.ctx.total_steps).sum(),
        steps_shared: 0,
        each: None,
    };
    let lengths: std::collections::BTreeSet<u64> = jobs.iter().map(|j| j.prepared.ctx.total_steps).collect();
    if lengths.len() == 1 {
        sharing.each = lengths.first().copied();
    }
    let Some(first) = jobs.first() else { return sharing };
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    let mut alone: Vec<usize> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match sharing_key(job, &first.run.config.schedule) {
            Some(key) => match group_of.get(&key) {
                Some(&g) => groups[g].1.push(i),
                None => {
                    group_of.insert(key.clone(), groups.len());
                    groups.push((key, vec![i]));
                }
            },
            None => alone.push(i),
        }
    }
    for &i in &alone {
        sharing.steps_shared += jobs[i].prepared.ctx.total_steps;
        sharing.spans.push(Span { from: 0, to: jobs[i].prepared.ctx.total_steps, runs: vec![i], depth: 0 });
    }
    for (key, members) in groups {
        let rates: HashMap<usize, Rates> = members.iter().map(|&i| (i, Rates::new(&jobs[i]))).collect();
        split(&members, (0, 0), None, &key, &rates, &mut sharing);
    }
    for start in sharing.starts.iter_mut().flatten() {
        start.run.clone_from(&jobs[start.from].run.info.name);
    }
    sharing
}

/// One run's part in a sweep's sharing, as a Slurm task reads it (`slurm/share.json`):
/// the fork it starts from and those it writes, for its config (`config_hash`: a task
/// whose config was changed with `--set` trains alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPart {
    pub config_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartPart>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<Pause>,
}

/// [`Start`] by the writer's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartPart {
    pub id: String,
    pub step: u64,
    pub run: String,
}

/// Where the sweep in `dir` keeps each run's part for its Slurm tasks.
pub fn parts_path(dir: &Path) -> std::path::PathBuf {
    dir.join("slurm").join("share.json")
}

/// Writes each run's part of `sharing` (`jobs`: the runs it was planned for) for the
/// tasks that train them; `None` (no sharing) removes an earlier file.
pub fn write_parts(dir: &Path, jobs: &[Job<'_>], sharing: Option<&Sharing>) -> Result<()> {
    let path = parts_path(dir);
    let Some(sharing) = sharing.filter(|s| s.shares()) else {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        };
    };
    let parts: BTreeMap<&str, RunPart> = jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| sharing.starts[*i].is_some() || !sharing.pauses[*i].is_empty())
        .map(|(i, job)| {
            let part = RunPart {
                config_hash: job.run.config.config_hash(),
                start: sharing.starts[i].as_ref().map(|s| StartPart {
                    id: s.id.clone(),
                    step: s.step,
                    run: s.run.clone(),
                }),
                pauses: sharing.pauses[i].clone(),
            };
            (job.run.info.name.as_str(), part)
        })
        .collect();
    let text = serde_json::to_string_pretty(&parts)?;
    crate::store::write_atomic(&path, format!("{text}\n").as_bytes())
}

/// The sharing of the one run `job` of the sweep in `dir`, from the parts its launch wrote
/// (none, or not for its config: it trains alone).
pub fn read_part(dir: &Path, job: &Job<'_>) -> Result<Option<Sharing>> {
    let path = parts_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut parts: BTreeMap<String, RunPart> =
        serde_json::from_str(&text).with_context(|| format!("{} does not parse", path.display()))?;
    let Some(part) = parts.remove(&job.run.info.name).filter(|p| p.config_hash == job.run.config.config_hash()) else {
        return Ok(None);
    };
    let total = job.prepared.ctx.total_steps;
    let start_at = part.start.as_ref().map_or(0, |s| s.step);
    Ok(Some(Sharing {
        starts: vec![part.start.map(|s| Start { id: s.id, step: s.step, from: 0, run: s.run })],
        pauses: vec![part.pauses],
        spans: Vec::new(),
        steps_alone: total,
        steps_shared: total - start_at.min(total),
        each: Some(total),
    }))
}

/// A run's rates, computed as far as asked, and its length.
struct Rates {
    schedule: Box<dyn crate::schedule::Schedule>,
    total: u64,
}

impl Rates {
    fn new(job: &Job<'_>) -> Rates {
        Rates { schedule: job.prepared.spec.schedule.build(&job.prepared.ctx), total: job.prepared.ctx.total_steps }
    }

    /// The rate at `step` as bits (exact comparison), or `None` past the run's end.
    fn at(&self, step: u64) -> Option<u64> {
        (step < self.total).then(|| self.schedule.lr(step).to_bits())
    }
}

/// The tree of `runs`, which share steps `0..from` (`at_from`: the snapshot there, where
/// one is written), at `depth`: the span from `from` to where their rates part, then each
/// branch, depth first (with a stack of its own: a sweep of thousands of runs that part
/// one step apart would be as deep).
fn split(
    runs: &[usize],
    (from, depth): (u64, usize),
    at_from: Option<Start>,
    key: &str,
    rates: &HashMap<usize, Rates>,
    sharing: &mut Sharing,
) {
    let mut work: Vec<(Vec<usize>, u64, usize, Option<Start>)> = vec![(runs.to_vec(), from, depth, at_from)];
    while let Some((runs, from, depth, at_from)) = work.pop() {
        let first = runs[0];
        let end = rates[&first].total;
        // Where the rates part (the runs of a group are equally long: their configs are
        // equal but for the schedule).
        let mut k = from;
        while k < end && runs.iter().all(|r| rates[r].at(k) == rates[&first].at(k)) {
            k += 1;
        }
        if runs.len() == 1 || k == end {
            // One run, or runs that are the same computation to their end: each trains
            // what is left, from the snapshot at `from` (a fork at their very end would
            // save nothing).
            for &r in &runs {
                sharing.steps_shared += rates[&r].total - from;
                sharing.spans.push(Span { from, to: rates[&r].total, runs: vec![r], depth });
                if r != first && sharing.starts[r].is_none() {
                    sharing.starts[r] = at_from.clone();
                }
            }
            continue;
        }
        // The runs by their rate at k, in the order first met (a sweep of thousands of
        // rates parts at step 0 into as many branches).
        let mut branches: Vec<Vec<usize>> = Vec::new();
        let mut branch_of: HashMap<Option<u64>, usize> = HashMap::new();
        for &r in &runs {
            let rate = rates[&r].at(k);
            match branch_of.get(&rate) {
                Some(&b) => branches[b].push(r),
                None => {
                    branch_of.insert(rate, branches.len());
                    branches.push(vec![r]);
                }
            }
        }
        if k - from < min_span(end) {
            // They part at once, or too soon for a fork (a checkpoint, a snapshot, a copy)
            // to be worth it: each branch from here as if this span were its own.
            for b in branches.into_iter().rev() {
                work.push((b, from, depth, at_from.clone()));
            }
            continue;
        }
        sharing.steps_shared += k - from;
        sharing.spans.push(Span { from, to: k, runs: runs.clone(), depth });
        // The fork: written by the span's first run; each other branch's first run starts
        // from it (the branch holding `first` goes on in its directory).
        let fork = Start { id: fork_id(key, &rates[&first], k), step: k, from: first, run: String::new() };
        sharing.pauses[first].push(Pause { id: fork.id.clone(), step: k });
        for b in &branches {
            if b[0] != first {
                sharing.starts[b[0]] = Some(fork.clone());
            }
        }
        for b in branches.into_iter().rev() {
            work.push((b, k, depth + 1, Some(fork.clone())));
        }
    }
}

/// The fewest steps a span must have to be trained once and forked: 10, or 2% of the
/// run (ten decays that all start at 0.1 share a step, which no fork pays for).
pub fn min_span(total: u64) -> u64 {
    (total / 50).max(10)
}

/// A snapshot's name: the hash of what determines it (the shared config and the rates up
/// to its step).
fn fork_id(key: &str, rates: &Rates, step: u64) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(key.as_bytes());
    for s in 0..step {
        h.update(rates.at(s).unwrap_or(0).to_le_bytes());
    }
    let digest = h.finalize();
    format!("{}-step{step}", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_000), "12,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(min_span(450), 10);
        assert_eq!(min_span(2000), 40);
    }
}
