//! Runs the runs of an experiment, `jobs` at a time: one rayon pool of `threads` per job
//! slot, each pulling the next run from a shared queue and training it inside its pool,
//! so candle's parallel work stays within the run's threads. (Not a pool nested in a pool:
//! a rayon worker waiting on another pool spins, stealing a core from the runs.) A run that fails or panics is recorded as failed and the
//! others go on; an interrupt stops starting runs and lets running ones save their state.
//! Finished runs (completed or diverged, same resolved config) are skipped unless forced,
//! which is what makes rerunning a sweep resume it. The sweep knows runs, not tensors.

use crate::device::DeviceSpec;
use crate::plan::PlannedRun;
use crate::progress::{Board, Tee};
use crate::store;
use crate::store::{RunDir, RunSummary};

mod collapse;
use crate::train::{self, Outcome, Prepared, Status};
use anyhow::Result;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

pub use crate::config::launch::Backend;

/// One of N shares of a sweep: the runs whose index is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Whether the run at `i` (its place in the sweep) is this shard's.
    pub fn contains(&self, i: usize) -> bool {
        i as u64 % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `I/N` with 0 <= I < N.
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("must be I/N with 0 <= I < N (shard I of N, counted from 0), e.g. 0/4, found \"{s}\"");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs at once.
    pub jobs: usize,
    /// CPU threads of each run.
    pub threads: usize,
    /// Rerun finished runs too.
    pub force: bool,
    /// GPUs to place runs on `cuda` (no number) on: job slot `i` takes `gpus[i % len]`,
    /// so `K` slots per GPU share each; empty: no placement.
    pub gpus: Vec<usize>,
}

/// What happened to each run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    pub completed: Vec<String>,
    pub diverged: Vec<String>,
    pub failed: Vec<String>,
    pub interrupted: Vec<String>,
    /// Finished earlier with the same config, not rerun.
    pub skipped: Vec<String>,
    /// Not started because of an interrupt.
    pub not_started: Vec<String>,
    /// Why runs failed that could not record it in a summary (their directory could not
    /// be written): `(run, error)`.
    pub unrecorded: Vec<(String, String)>,
}

/// One run to do: what it is, and it checked against the data it trains on.
pub struct Job<'a> {
    pub run: &'a PlannedRun,
    pub prepared: Prepared,
    /// The experiment's swept keys, whose values are the run's `info.params` (its
    /// hyperparameters in TensorBoard's HParams tab).
    pub columns: &'a [String],
}

/// Runs `jobs` into run directories under `dir`; `after_each` is called (serially) after
/// every run that finished, e.g. to refresh summary.csv.
pub fn execute(
    dir: &Path,
    jobs: &[Job<'_>],
    opts: Options,
    board: &Board,
    stop: &AtomicBool,
    after_each: &(dyn Fn() + Sync),
) -> Result<Tally> {
    let tally = Mutex::new(Tally::default());
    let next = AtomicUsize::new(0);
    let pools = (0..opts.jobs.max(1))
        .map(|i| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(opts.threads.max(1))
                .thread_name(move |t| format!("job{i}-{t}"))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let refresh = Mutex::new(());
    let worker = |slot: usize| {
        let gpu = (!opts.gpus.is_empty()).then(|| opts.gpus[slot % opts.gpus.len()]);
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(job) = jobs.get(i) else { break };
            let name = job.run.info.name.clone();
            if stop.load(Ordering::SeqCst) {
                lock(&tally).not_started.push(name);
                continue;
            }
            let result = run_one(dir, job, gpu, opts.force, board, stop);
            {
                let mut t = lock(&tally);
                match result {
                    Ok(None) => t.skipped.push(name),
                    Ok(Some(Status::Completed)) => t.completed.push(name),
                    Ok(Some(Status::Diverged)) => t.diverged.push(name),
                    Ok(Some(Status::Interrupted)) => t.interrupted.push(name),
                    Ok(Some(Status::Failed)) => t.failed.push(name),
                    Err(e) => {
                        board.finish(crate::progress::Progress::Quiet, &format!("{name}: failed: {e:#}"), true);
                        t.unrecorded.push((name.clone(), format!("{e:#}")));
                        t.failed.push(name);
                    }
                }
            }
            let _serial = lock(&refresh);
            after_each();
        }
    };
    std::thread::scope(|s| {
        for (slot, pool) in pools.iter().enumerate() {
            let worker = &worker;
            s.spawn(move || pool.install(|| worker(slot)));
        }
    });
    Ok(tally.into_inner().unwrap_or_else(|e| e.into_inner()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Trains one run into `dir/<name>` (on GPU `gpu` when it is on `cuda` without a number);
/// `None` when it was already finished. Errors are those of writing its files; a failure
/// of the run itself is recorded in its summary.
fn run_one(
    dir: &Path,
    job: &Job<'_>,
    gpu: Option<usize>,
    force: bool,
    board: &Board,
    stop: &AtomicBool,
) -> Result<Option<Status>> {
    let run = job.run;
    let placed;
    let prepared = match (gpu, job.prepared.spec.train.device) {
        (Some(g), DeviceSpec::Cuda(None)) => {
            let mut p = job.prepared.clone();
            p.spec.train.device = DeviceSpec::Cuda(Some(g));
            placed = p;
            &placed
        }
        _ => &job.prepared,
    };
    let device = prepared.spec.train.device;
    let run_path = dir.join(&run.info.name);
    let config_toml = run.config.to_toml();
    // One writer per run directory (a requeued Slurm task and the one it replaces, a
    // local sweep and a run-one): the other is refused and this run recorded as failed.
    let _run_lock = store::ExperimentLock::acquire_run(dir, &run.info.name)?;
    if !force && store::is_finished(&run_path, &config_toml) {
        board.finish(crate::progress::Progress::Quiet, &format!("{}: finished earlier, kept", run.info.name), false);
        return Ok(None);
    }
    // An interrupted or failed attempt of the same config continues from its latest
    // checkpoint (--force starts over); anything else an earlier attempt left is replaced.
    let config_hash = crate::config::hash_text(&config_toml);
    let same_config = store::holds_config(&run_path, &config_toml);
    let resume = if force {
        None
    } else {
        match store::resume_point(&run_path, &config_toml) {
            Ok(found) => found,
            Err(skipped) => {
                for why in &skipped {
                    board.note(&format!("{}: warning: skipped checkpoint {why}", run.info.name));
                }
                board.note(&format!(
                    "{}: none of its checkpoints can be used, so it starts over from step 0",
                    run.info.name
                ));
                None
            }
        }
    };
    if !force
        && !same_config
        && run_path.join("checkpoints").is_dir()
        && store::finished_with_other_config(&run_path, &config_toml).is_none()
    {
        board.note(&format!(
            "{}: its config changed since it stopped, so it starts over (its checkpoints are of the old config)",
            run.info.name
        ));
    }
    let keep = run.config.train.keep_checkpoints;
    let (mut run_dir, resume) = match resume {
        Some(loaded) => {
            for why in &loaded.skipped {
                board.note(&format!("{}: warning: skipped checkpoint {why}", run.info.name));
            }
            board.note(&format!(
                "{}: resuming from its checkpoint at step {} (epoch {})",
                run.info.name, loaded.meta.step, loaded.meta.epoch
            ));
            (RunDir::reopen(&run_path, &loaded.meta)?.keep_checkpoints(keep), Some(loaded.checkpoint))
        }
        None => {
            let mut dir = RunDir::create(&run_path, &config_toml)?.keep_checkpoints(keep);
            dir.hparams(&format!("{}/{}", run.config.name, run.info.variant), &hparams(job))?;
            (dir, None)
        }
    };
    // A language model's vocabulary, for `runner sample` to turn tokens back into text.
    if let Some(text) = &job.prepared.data.text {
        store::write_json_atomic(&run_path.join("vocab.json"), &text.vocab)?;
    }
    let total = run.config.train.total_steps(job.prepared.data.train.len);
    let mut progress = board.start(&run.info.name, total);
    let start = Instant::now();
    let started_at = store::unix_now();
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Outcome> {
        train::train_prepared(prepared, &mut Tee(&mut run_dir, &mut progress), stop, resume)
    }));
    let (outcome, error) = match result {
        Ok(Ok(outcome)) => (outcome, None),
        Ok(Err(e)) => {
            let mut why = format!("{e:#}");
            if why.contains("OUT_OF_MEMORY") {
                why = format!(
                    "out of GPU memory on {device}: the run needed {} beside what the other runs there hold; \
                     lower --runs-per-gpu or train.batch_size ({why})",
                    prepared.memory()
                );
            }
            let outcome =
                Outcome { device: device.to_string(), ..run_dir.failed_outcome(total, start.elapsed().as_secs_f64()) };
            (outcome, Some(why))
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            (run_dir.failed_outcome(total, start.elapsed().as_secs_f64()), Some(format!("panicked: {what}")))
        }
    };
    let warnings = run.config.schedule_warnings(job.prepared.data.train.len);
    // A completed classifier whose accuracy fell back to chance, or whose loss is flat at
    // the uniform prediction's, is flagged (from its metrics.csv: all of it, resumed or not).
    let collapsed = if outcome.status == Status::Completed
        && job.prepared.data.task == crate::data::Task::Classification
    {
        run_dir.flush()?;
        store::read_metrics(run_dir.path()).ok().and_then(|rows| collapse::collapse(&rows, job.prepared.data.classes))
    } else {
        None
    };
    let stop_reason = (outcome.status == Status::Interrupted).then(crate::interrupt::reason);
    let summary = RunSummary {
        experiment: &run.config.name,
        run: &run.info.name,
        seed: run.config.train.seed,
        threads: run.config.train.threads,
        runner_version: env!("CARGO_PKG_VERSION"),
        host: &store::host_name(),
        started_at,
        error: error.as_deref(),
        stop_reason: stop_reason.as_deref(),
        config_hash: &config_hash,
        variant_hash: Some(&run.config.variant_hash()),
        warnings: &warnings,
        collapsed: collapsed.as_deref(),
        outcome: &outcome,
    };
    run_dir.finish(&summary)?;
    let mut line = format!("{}: {}", run.info.name, describe(&outcome, error.as_deref()));
    if let Some(why) = &collapsed {
        line.push_str(&format!(" (collapsed: {why})"));
    }
    board.finish(progress, &line, outcome.status == Status::Failed);
    Ok(Some(outcome.status))
}

/// A run's outcome in a few words: `completed: val_accuracy 0.9861 in 0.4s`.
pub fn describe(o: &Outcome, error: Option<&str>) -> String {
    let metric = match o.final_metrics {
        Some(m) => match (m.val_bits_per_char.or(m.val_bits_per_byte), m.val_accuracy) {
            (Some(bits), _) => format!(
                " val_loss {:.4} ({bits:.3} bits per {})",
                m.val_loss,
                if m.val_bits_per_char.is_some() { "char" } else { "byte" }
            ),
            (None, Some(acc)) => format!(" val_accuracy {acc:.4}"),
            (None, None) => format!(" val_loss {}", crate::progress::readable(m.val_loss)),
        },
        None => String::new(),
    };
    match o.status {
        Status::Completed => format!("completed:{metric} in {:.1}s", o.wall_seconds),
        Status::Diverged => format!("diverged at step {}", o.diverged_at_step.unwrap_or(o.steps)),
        Status::Interrupted => format!("interrupted at step {} of {}", o.steps, o.total_steps),
        Status::Failed => format!("failed: {}", error.unwrap_or("unknown error")),
    }
}

/// A run's hyperparameters for TensorBoard: its schedule and its swept keys' values (those
/// it has). Not its seed: the seeds of a variant are one group there, which shares them.
fn hparams(job: &Job<'_>) -> Vec<(String, String)> {
    let info = &job.run.info;
    let mut h = vec![("schedule".to_string(), info.schedule.clone())];
    h.extend(job.columns.iter().zip(&info.params).filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_runs_without_overlap() {
        let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        for run in 0..10 {
            assert_eq!(shards.iter().filter(|s| s.contains(run)).count(), 1);
        }
        assert!(shards[1].contains(4) && !shards[1].contains(5));
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
