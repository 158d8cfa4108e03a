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
pub mod share;
use crate::train::{self, Outcome, Prepared, Status};
use anyhow::Result;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
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
    /// Train the steps runs share once ([`share`]).
    pub share: Share,
}

/// Whether a sweep's runs train the steps they share once.
#[derive(Debug, Clone, Default)]
pub enum Share {
    /// Each run from its step 0 (`--no-share`, a shard).
    #[default]
    Off,
    /// Found among the jobs ([`share::plan`]); their forks are removed once every run
    /// has finished.
    Plan,
    /// Planned for a sweep these jobs are part of (a Slurm task's run,
    /// [`share::read_part`]): forks it does not write are used where their snapshot
    /// exists, and all are kept for the sweep's other runs.
    Given(share::Sharing),
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
    /// Steps trained here, and the steps of the runs trained (each from step 0): the
    /// difference is what shared prefixes and resumed checkpoints saved.
    pub steps_trained: u64,
    pub steps_of_runs: u64,
}

/// One run to do: what it is, and it checked against the data it trains on.
pub struct Job<'a> {
    pub run: &'a PlannedRun,
    pub prepared: Prepared,
    /// The experiment's swept keys, whose values are the run's `info.params` (its
    /// hyperparameters in TensorBoard's HParams tab).
    pub columns: &'a [String],
    /// Continue the finished run of another config in its directory from its checkpoint at
    /// this step ([`share::continuation`]: the same computation up to there).
    pub extend: Option<u64>,
}

/// Runs `jobs` into run directories under `dir`; `after_each` is called (serially) after
/// every run that finished, e.g. to refresh summary.csv. With `opts.share`, steps runs
/// share are trained once ([`share`]): runs that start from another's fork wait for it.
pub fn execute(
    dir: &Path,
    jobs: &[Job<'_>],
    opts: Options,
    board: &Board,
    stop: &AtomicBool,
    after_each: &(dyn Fn() + Sync),
) -> Result<Tally> {
    let tally = Mutex::new(Tally::default());
    let sharing = match &opts.share {
        Share::Off => share::Sharing::default(),
        Share::Plan => share::plan(jobs),
        Share::Given(sharing) => sharing.clone(),
    };
    let forks = Forks::new(dir, &sharing, opts.force);
    // Runs in the order they can start: those from step 0 first, then by fork step, so a
    // run waiting for a fork never holds the slot its writer needs.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| sharing.starts.get(i).and_then(|s| s.as_ref()).map_or(0, |s| s.step));
    let next = AtomicUsize::new(0);
    let (trained, of_runs) = (AtomicU64::new(0), AtomicU64::new(0));
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
        while let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) {
            let job = &jobs[i];
            let name = job.run.info.name.clone();
            // A run finished earlier waits for no fork.
            let finished = !opts.force && store::is_finished(&dir.join(&name), &job.run.config.to_toml());
            // A run that continues its own earlier run waits for no fork either.
            let start = sharing.starts.get(i).and_then(|s| s.as_ref()).filter(|_| !finished && job.extend.is_none());
            let mut from = start.and_then(|s| forks.wait(&s.id, stop).then(|| (forks.path(&s.id), s.step)));
            let mut from_run = start.map(|s| s.run.as_str());
            if let Some(k) = job.extend.filter(|_| !finished && !stop.load(Ordering::SeqCst)) {
                // The finished run's state at k, kept before its directory is replaced.
                let path = forks.dir.join(format!("extend-{name}-step{k}"));
                match store::snapshot(&dir.join(&name), k, &path) {
                    Ok(()) => (from, from_run) = (Some((path, k)), Some(name.as_str())),
                    Err(e) => board.note(&format!("{name}: cannot continue the earlier run ({e:#}); it starts over")),
                }
            }
            if stop.load(Ordering::SeqCst) {
                lock(&tally).not_started.push(name);
                forks.give_up(sharing.pauses.get(i).map_or(&[][..], |p| p));
                continue;
            }
            let pauses = sharing.pauses.get(i).map_or(&[][..], |p| p);
            let how = How {
                gpu,
                force: opts.force,
                from: from.as_ref().map(|(p, s)| (p.as_path(), *s)),
                from_run,
                pauses,
                forks: &forks,
            };
            let result = run_one(dir, job, &how, board, stop);
            // Forks it did not write (it failed before, or was finished earlier without
            // them): who waits for them trains from step 0.
            forks.give_up(pauses);
            {
                let mut t = lock(&tally);
                match result {
                    Ok(None) => t.skipped.push(name),
                    Ok(Some((status, steps))) => {
                        trained.fetch_add(steps, Ordering::SeqCst);
                        of_runs.fetch_add(job.prepared.ctx.total_steps, Ordering::SeqCst);
                        match status {
                            Status::Completed => t.completed.push(name),
                            Status::Diverged => t.diverged.push(name),
                            Status::Interrupted => t.interrupted.push(name),
                            Status::Failed => t.failed.push(name),
                        }
                    }
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
    let mut tally = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    (tally.steps_trained, tally.steps_of_runs) = (trained.into_inner(), of_runs.into_inner());
    // Every run of the sweep finished: its forks have served.
    let forked = matches!(opts.share, Share::Plan) && sharing.shares() || jobs.iter().any(|j| j.extend.is_some());
    if forked && tally.interrupted.is_empty() && tally.not_started.is_empty() && tally.failed.is_empty() {
        let _ = std::fs::remove_dir_all(&forks.dir);
    }
    Ok(tally)
}

/// The forks of a sweep's shared prefixes: each pending (its run has not reached it),
/// ready (its snapshot is in `dir`), or never to come.
struct Forks {
    dir: std::path::PathBuf,
    state: Mutex<HashMap<String, ForkState>>,
    changed: Condvar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    Pending,
    Ready,
    Never,
}

impl Forks {
    /// The forks `sharing` plans, ready where an earlier attempt left the snapshot (unless
    /// `force`: then they are written again). A fork that no job here writes (another
    /// task's) is ready where its snapshot is, and never comes otherwise.
    fn new(experiment: &Path, sharing: &share::Sharing, force: bool) -> Forks {
        let dir = experiment.join(".forks");
        let mut state = HashMap::new();
        for p in sharing.pauses.iter().flatten() {
            let path = dir.join(&p.id);
            if force {
                let _ = std::fs::remove_dir_all(&path);
            }
            state.insert(p.id.clone(), if path.is_dir() { ForkState::Ready } else { ForkState::Pending });
        }
        for s in sharing.starts.iter().flatten() {
            let ready = if dir.join(&s.id).is_dir() { ForkState::Ready } else { ForkState::Never };
            state.entry(s.id.clone()).or_insert(ready);
        }
        Forks { dir, state: Mutex::new(state), changed: Condvar::new() }
    }

    fn path(&self, id: &str) -> std::path::PathBuf {
        self.dir.join(id)
    }

    /// Waits until fork `id` is ready (true) or will not come, or the sweep is stopped.
    fn wait(&self, id: &str, stop: &AtomicBool) -> bool {
        let mut state = lock(&self.state);
        loop {
            match state.get(id).copied().unwrap_or(ForkState::Never) {
                ForkState::Ready => return true,
                ForkState::Never => return false,
                ForkState::Pending if stop.load(Ordering::SeqCst) => return false,
                ForkState::Pending => {
                    state = self
                        .changed
                        .wait_timeout(state, std::time::Duration::from_millis(200))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    fn set(&self, id: &str, to: ForkState) {
        lock(&self.state).insert(id.to_string(), to);
        self.changed.notify_all();
    }

    /// Marks `pauses` that are not ready as never to come.
    fn give_up(&self, pauses: &[share::Pause]) {
        let mut state = lock(&self.state);
        for p in pauses {
            if state.get(&p.id) != Some(&ForkState::Ready) {
                state.insert(p.id.clone(), ForkState::Never);
            }
        }
        drop(state);
        self.changed.notify_all();
    }
}

/// How one run is trained: its GPU, whether forced, the fork it starts from (a snapshot
/// and its step) and the forks it writes.
struct How<'a> {
    gpu: Option<usize>,
    force: bool,
    from: Option<(&'a Path, u64)>,
    /// The run that wrote that fork.
    from_run: Option<&'a str>,
    pauses: &'a [share::Pause],
    forks: &'a Forks,
}

/// The run directory as the trainer's recorder, writing the sweep's forks: after the
/// checkpoint at a fork's step, its snapshot.
struct Forking<'a> {
    run: &'a mut RunDir,
    pauses: &'a [share::Pause],
    forks: &'a Forks,
    board: &'a Board,
    name: &'a str,
}

impl train::Recorder for Forking<'_> {
    fn on_step(&mut self, row: &train::StepRow, epoch: u64, logged: bool) -> Result<()> {
        self.run.on_step(row, epoch, logged)
    }

    fn on_eval(&mut self, row: &train::EvalRow) -> Result<()> {
        self.run.on_eval(row)
    }

    fn checkpoint(&mut self, checkpoint: &train::Checkpoint) -> Result<()> {
        self.run.checkpoint(checkpoint)?;
        for p in self.pauses.iter().filter(|p| p.step == checkpoint.step) {
            match store::snapshot(self.run.path(), p.step, &self.forks.path(&p.id)) {
                Ok(()) => self.forks.set(&p.id, ForkState::Ready),
                Err(e) => {
                    // The runs that would start from it train from step 0 instead.
                    self.board.note(&format!("{}: warning: cannot keep the fork at step {}: {e:#}", self.name, p.step));
                    self.forks.set(&p.id, ForkState::Never);
                }
            }
        }
        Ok(())
    }

    fn save_model(&mut self, name: &str, params: &[(String, candle_core::Tensor)]) -> Result<()> {
        self.run.save_model(name, params)
    }
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
    how: &How<'_>,
    board: &Board,
    stop: &AtomicBool,
) -> Result<Option<(Status, u64)>> {
    let (gpu, force) = (how.gpu, how.force);
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
    // Checkpoints at the forks it writes, whatever its policy says.
    let placed_pauses;
    let prepared = if !how.pauses.is_empty() && prepared.spec.train.checkpoint_at.is_empty() {
        let mut p = prepared.clone();
        p.spec.train.checkpoint_at = how.pauses.iter().map(|p| p.step).collect();
        placed_pauses = p;
        &placed_pauses
    } else {
        prepared
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
    let own = if force { Ok(None) } else { store::resume_point(&run_path, &config_toml) };
    // Its first steps trained by another run of the sweep: its directory written from that
    // fork (unless an attempt of its own got further), then resumed as from its own
    // checkpoint.
    let mut forked = None;
    if let Some((snapshot, step)) = how.from
        && own.as_ref().is_ok_and(|o| o.as_ref().is_none_or(|l| l.meta.step < step))
    {
        let group = format!("{}/{}", run.config.name, run.info.variant);
        store::fork(snapshot, &run_path, &config_toml, &group, &hparams(job))?;
        forked = Some(step);
    }
    let same_config = store::holds_config(&run_path, &config_toml);
    let resume = if force && forked.is_none() {
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
    let first_step = resume.as_ref().map_or(0, |l| l.meta.step);
    let (mut run_dir, resume) = match resume {
        Some(loaded) => {
            for why in &loaded.skipped {
                board.note(&format!("{}: warning: skipped checkpoint {why}", run.info.name));
            }
            match forked {
                Some(step) if how.from_run == Some(run.info.name.as_str()) => board.note(&format!(
                    "{}: continuing its finished run of another config from its checkpoint at step {step}: the same \
                     computation up to there (the earlier results move to replaced/)",
                    run.info.name
                )),
                Some(step) => board.note(&format!(
                    "{}: steps 0 to {step} shared with {} (trained once), continuing from there",
                    run.info.name,
                    how.from_run.unwrap_or("another run")
                )),
                None => board.note(&format!(
                    "{}: resuming from its checkpoint at step {} (epoch {})",
                    run.info.name, loaded.meta.step, loaded.meta.epoch
                )),
            }
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
        let mut forking =
            Forking { run: &mut run_dir, pauses: how.pauses, forks: how.forks, board, name: &run.info.name };
        train::train_prepared(prepared, &mut Tee(&mut forking, &mut progress), stop, resume)
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
        began_at_step: (first_step > 0).then_some(first_step),
        shared_from: forked.and(how.from_run).filter(|r| *r != run.info.name),
        outcome: &outcome,
    };
    run_dir.finish(&summary)?;
    let mut line = format!("{}: {}", run.info.name, describe(&outcome, error.as_deref()));
    if let Some(why) = &collapsed {
        line.push_str(&format!(" (collapsed: {why})"));
    }
    board.finish(progress, &line, outcome.status == Status::Failed);
    Ok(Some((outcome.status, outcome.steps.saturating_sub(first_step))))
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
