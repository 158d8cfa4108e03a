//! `[sweep]`: one file, many runs. Expansion works on the TOML tree (schedule variants,
//! grid values, random draws and seeds are written into a copy of the file's tree), so
//! every variant is validated by the same reader as a single experiment and its errors
//! point into the file: at the grid value or schedule table that made the variant.

use super::{ExperimentConfig, default_name, parse_table};
use crate::config::launch::{Backend, SlurmOptions, check_mem, check_time};
use crate::config::{
    ConfigError, Entry, Node, Override, Source, Spanned, Table, TableReader, apply_overrides, check_run_name,
    parse_tree, read_text,
};
use crate::data::DatasetSpec;
use crate::params::{ParamSource, Rule};
use crate::schedule::{FairValue, KINDS, SEED_DECAYS, fair_params};
use crate::suggest::did_you_mean;
use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

/// The most runs one sweep may expand into (checked before expanding it).
pub const MAX_RUNS: u64 = 100_000;

/// Every run a file describes: one for a plain experiment, the expansion of `[sweep]`.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    /// Whether the file has a `[sweep]` table.
    pub is_sweep: bool,
    pub runs: Vec<PlannedRun>,
    /// The columns of the swept parameters, in file order (`schedule.learning_rate`, ...).
    pub columns: Vec<String>,
    /// `[sweep] jobs` and `threads_per_run`, when the file sets them.
    pub jobs: Option<u64>,
    pub threads_per_run: Option<u64>,
    /// `[sweep] backend`, when the file sets it.
    pub backend: Option<Backend>,
    /// `[sweep.slurm]`.
    pub slurm: SlurmOptions,
}

/// One run of an experiment, validated.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub info: RunInfo,
    pub config: ExperimentConfig,
}

/// What identifies a run of a sweep (its row in runs.json and summary.csv).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunInfo {
    /// The run's directory name, e.g. `cosine_decay-lr0.1-seed1`.
    pub name: String,
    /// The name without the seed part: runs that differ only by seed share it.
    pub variant: String,
    /// The schedule's label: its name in `[[sweep.schedule]]`, else its kind.
    pub schedule: String,
    /// The swept parameters' values, one per [`Experiment::columns`].
    pub params: Vec<String>,
    pub seed: u64,
    /// The hash of the run's resolved config ([`ExperimentConfig::config_hash`]), as
    /// planned; absent in plans written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}

/// Reads the experiment file at `path` and expands it. `train_len` gives the training-set
/// size of a data set (needed only for `schedules = "all"`, whose variants span the run).
pub fn load_experiment(path: &Path, train_len: &mut dyn FnMut(&DatasetSpec) -> Result<usize>) -> Result<Experiment> {
    let text = read_text(path)?;
    parse_experiment(path, &text, train_len)
}

/// [`load_experiment`] with command-line overrides written over the file (before a
/// `[sweep]` expands it, so `sweep.seeds=[1,2]` works too).
pub fn load_experiment_with(
    path: &Path,
    overrides: &[Override],
    train_len: &mut dyn FnMut(&DatasetSpec) -> Result<usize>,
) -> Result<Experiment> {
    let text = read_text(path)?;
    parse_experiment_with(path, &text, overrides, train_len)
}

/// [`load_experiment`] on text already read.
pub fn parse_experiment(
    path: &Path,
    text: &str,
    train_len: &mut dyn FnMut(&DatasetSpec) -> Result<usize>,
) -> Result<Experiment> {
    parse_experiment_with(path, text, &[], train_len)
}

fn parse_experiment_with(
    path: &Path,
    text: &str,
    overrides: &[Override],
    train_len: &mut dyn FnMut(&DatasetSpec) -> Result<usize>,
) -> Result<Experiment> {
    let mut table = parse_tree(path, text)?;
    let combined = apply_overrides(path, text, &mut table, overrides)?;
    let text = combined.as_str();
    let src = Source { file: path, text };
    let Some(sweep_entry) = table.get("sweep") else {
        let config = parse_table(path, text, &table)?;
        // Without its data (`runner schedule --steps N --steps-per-epoch M` needs none), the
        // run's length is not known here: the run checks its rates once it has the data.
        if let Ok(len) = train_len(&config.dataset) {
            check_rates(path, text, &table, &config, len)?;
        }
        let info = RunInfo {
            name: config.run.clone(),
            variant: config.run.clone(),
            schedule: config.schedule.kind.kind().to_string(),
            params: Vec::new(),
            seed: config.train.seed,
            config_hash: None,
        };
        let run = PlannedRun { info, config };
        return Ok(Experiment {
            name: run.config.name.clone(),
            is_sweep: false,
            runs: vec![run],
            columns: Vec::new(),
            jobs: None,
            threads_per_run: None,
            backend: None,
            slurm: SlurmOptions::default(),
        });
    };
    let Node::Table(sweep_table) = &sweep_entry.value.value else {
        return Err(ConfigError::at(
            path,
            text,
            sweep_entry.value.span.clone(),
            Some("sweep".into()),
            "must be a table ([sweep])".into(),
        )
        .into());
    };
    let spec = SweepSpec::read(sweep_table, sweep_entry.value.span.clone(), src)?;
    let mut base = table.clone();
    base.entries.retain(|e| e.key != "sweep" && e.key != "run");
    if spec.schedules.is_empty() && base.get("schedule").is_none() {
        return Err(ConfigError::whole_file(
            path,
            "has a [sweep] but neither a [schedule] table nor `schedules` in [sweep]; add `schedules = \"all\"` to compare the ten decays".into(),
        )
        .into());
    }
    if !spec.schedules.is_empty() && base.get("schedule").is_some() {
        let e = base.get("schedule").expect("checked");
        return Err(ConfigError::at(
            path,
            text,
            e.key_span.clone(),
            Some("schedule".into()),
            "is given, but [sweep] lists the schedules to run; remove one of the two (set a base rate with [sweep] learning_rate)".into(),
        )
        .into());
    }
    expand(path, text, &base, &spec, train_len)
}

/// Where a variant's schedule comes from.
#[derive(Debug, Clone)]
enum ScheduleChoice {
    /// A seed decay with parameters derived from the run (`schedules = "all"` or a list of kinds).
    Fair(&'static str),
    /// A table of `[[sweep.schedule]]`.
    Table { label: String, table: Table, span: Option<Range<usize>> },
}

/// The values one swept key takes.
#[derive(Debug, Clone)]
enum Values {
    Grid(Vec<Spanned>),
    LogUniform(f64, f64, Option<Range<usize>>),
    Uniform(f64, f64, Option<Range<usize>>),
    Choice(Vec<Spanned>),
}

#[derive(Debug, Clone)]
struct Axis {
    path: String,
    values: Values,
}

impl Axis {
    fn is_random(&self) -> bool {
        !matches!(self.values, Values::Grid(_))
    }
}

/// A validated `[sweep]` table.
struct SweepSpec {
    schedules: Vec<ScheduleChoice>,
    axes: Vec<Axis>,
    seeds: Option<Vec<u64>>,
    samples: Option<u64>,
    sample_seed: u64,
    learning_rate: f64,
    jobs: Option<u64>,
    threads_per_run: Option<u64>,
    backend: Option<Backend>,
    slurm: SlurmOptions,
}

/// The tables a swept key may start with.
const SWEPT_TABLES: &[&str] = &["schedule", "dataset", "model", "optimizer", "train"];

impl SweepSpec {
    fn read(table: &Table, span: Option<Range<usize>>, src: Source<'_>) -> Result<SweepSpec, ConfigError> {
        // Swept keys: quoted dotted keys ("schedule.learning_rate" = [...]) or, written
        // unquoted, nested tables under a config table's name. The rest are settings.
        let mut axes = Vec::new();
        let mut settings = Table::default();
        for e in &table.entries {
            let is_schedule_list = e.key == "schedule" && matches!(e.value.value, Node::Array(_));
            if e.key.contains('.') {
                axes.push(read_axis(e.key.clone(), e, span.clone(), src)?);
            } else if SWEPT_TABLES.contains(&e.key.as_str()) && !is_schedule_list {
                let Node::Table(t) = &e.value.value else {
                    return Err(ConfigError::at(
                        src.file,
                        src.text,
                        e.value.span.clone(),
                        Some(format!("sweep.{}", e.key)),
                        format!("must be a table of swept keys, e.g. \"{}.KEY\" = [1, 2]", e.key),
                    ));
                };
                flatten(&e.key, t, span.clone(), src, &mut axes)?;
            } else {
                settings.entries.push(e.clone());
            }
        }
        let mut r = TableReader::new(&settings, span, "sweep", src);
        let mut schedules = Vec::new();
        if let Some(e) = r.entry("schedules") {
            schedules = read_schedule_kinds(&r, e)?;
        }
        if let Some(e) = r.entry("schedule") {
            if !schedules.is_empty() {
                return Err(r.error_at(e.key_span.clone(), "schedule", "is given with `schedules`; keep one".into()));
            }
            schedules = read_schedule_tables(&r, e)?;
        }
        let seeds = match r.entry("seeds") {
            None => None,
            Some(_) => {
                let seeds = r.counts("seeds", &[], 0, "training seeds; every variant runs once per seed")?;
                r.check(!seeds.is_empty(), "seeds", || "must list at least one seed".into())?;
                r.check(seeds.len() as u64 <= MAX_RUNS, "seeds", || {
                    format!("lists {} seeds, more than the {MAX_RUNS} runs one sweep may hold", seeds.len())
                })?;
                let mut seen = std::collections::HashSet::with_capacity(seeds.len());
                if let Some(i) = (0..seeds.len()).find(|&i| !seen.insert(seeds[i])) {
                    return Err(r.invalid(
                        "seeds",
                        format!("lists seed {} twice; each seed runs every variant once, so list it once", seeds[i]),
                    ));
                }
                Some(seeds)
            }
        };
        let samples = r.optional_steps("samples", 1, "no random search", "random draws of the ranged keys")?;
        let sample_seed = r.steps("sample_seed", Some(crate::DEFAULT_SEED), 0, "seed of the random search")?;
        let learning_rate =
            r.number("learning_rate", Some(0.1), Rule::Positive, "base rate of the schedules listed in `schedules`")?;
        let jobs = r.optional_steps("jobs", 1, "what fits the cores", "runs at once")?;
        let threads_per_run = r.optional_steps("threads_per_run", 1, "[train] threads", "CPU threads of each run")?;
        let backend = match r.string("backend", "\"local\" or \"slurm\"", "where the runs run")? {
            None => None,
            Some((word, span)) => Some(Backend::parse(&word).ok_or_else(|| {
                r.error_at(span, "backend", format!("must be \"local\" or \"slurm\", found \"{word}\""))
            })?),
        };
        let slurm = match r.table("slurm")? {
            None => SlurmOptions::default(),
            Some(mut t) => {
                let options = read_slurm(&mut t)?;
                t.finish()?;
                options
            }
        };
        let has_random = axes.iter().any(Axis::is_random);
        match (samples, has_random) {
            (None, true) => {
                return Err(r.invalid(
                    "samples",
                    "is required: a swept key takes a range ({ log_uniform = ... }, { uniform = ... } or { choice = ... }), so say how many random draws to make, e.g. samples = 8".into(),
                ));
            }
            (Some(_), false) => {
                return Err(r.invalid(
                    "samples",
                    "is given, but no swept key takes a range; write one as \"schedule.learning_rate\" = { log_uniform = [1e-4, 1.0] }".into(),
                ));
            }
            _ => {}
        }
        r.finish()?;
        Ok(SweepSpec {
            schedules,
            axes,
            seeds,
            samples,
            sample_seed,
            learning_rate,
            jobs,
            threads_per_run,
            backend,
            slurm,
        })
    }
}

/// `[sweep.slurm]`: the job array's options (see [`SlurmOptions`]).
fn read_slurm(r: &mut TableReader<'_>) -> Result<SlurmOptions, ConfigError> {
    type Check = fn(&str) -> Result<(), String>;
    fn text(
        r: &mut TableReader<'_>,
        key: &'static str,
        doc: &str,
        check: Option<Check>,
    ) -> Result<Option<String>, ConfigError> {
        let Some((value, span)) = r.string(key, "a string", doc)? else { return Ok(None) };
        if let Some(check) = check {
            check(&value).map_err(|why| r.error_at(span, key, why))?;
        }
        Ok(Some(value))
    }
    fn lines(r: &mut TableReader<'_>, key: &'static str, doc: &str) -> Result<Vec<String>, ConfigError> {
        let Some(e) = r.entry(key) else { return Ok(Vec::new()) };
        let expected = format!("a list of strings ({doc})");
        let Node::Array(items) = &e.value.value else {
            return Err(r.error_at(e.value.span.clone(), key, format!("must be {expected}")));
        };
        items
            .iter()
            .map(|item| match &item.value {
                Node::Str(s) => Ok(s.clone()),
                _ => Err(r.error_at(item.span.clone(), key, format!("must be {expected}"))),
            })
            .collect()
    }
    Ok(SlurmOptions {
        partition: text(r, "partition", "the partition to submit to", None)?,
        time: text(r, "time", "each run's time limit", Some(check_time))?,
        mem: text(r, "mem", "memory per run", Some(check_mem))?,
        account: text(r, "account", "the account to charge", None)?,
        qos: text(r, "qos", "the quality of service", None)?,
        cpus_per_task: r.optional_steps("cpus_per_task", 1, "[train] threads", "CPUs (and threads) of each run")?,
        gpus_per_task: r.optional_steps(
            "gpus_per_task",
            1,
            "1 when the runs train on cuda, else none",
            "GPUs of each task (--gpus-per-task); its run trains on the GPU Slurm gives it",
        )?,
        max_parallel: r.optional_steps("max_parallel", 1, "no limit", "array tasks at once")?,
        max_array_size: r.optional_steps(
            "max_array_size",
            1,
            "scontrol show config's MaxArraySize",
            "the cluster's MaxArraySize (task ids stay below it)",
        )?,
        sbatch: lines(r, "sbatch", "extra #SBATCH lines, e.g. \"--gres=gpu:1\"")?,
        setup: lines(r, "setup", "shell lines run before each run, e.g. \"module load cuda\"")?,
        signal_grace: r.optional_steps(
            "signal_grace",
            1,
            "60",
            "seconds before the time limit at which a run is asked to checkpoint and stop",
        )?,
        requeue: r.flag(
            "requeue",
            false,
            "requeue a task stopped by its time limit; it resumes from its checkpoint",
        )?,
    })
}

/// `schedules = "all"` or a list of seed-decay kinds.
fn read_schedule_kinds(r: &TableReader<'_>, e: &Entry) -> Result<Vec<ScheduleChoice>, ConfigError> {
    let accepted = format!("\"all\" or a list of these decays: {}", SEED_DECAYS.join(", "));
    let kind = |v: &Spanned| -> Result<ScheduleChoice, ConfigError> {
        let Node::Str(s) = &v.value else {
            return Err(r.error_at(v.span.clone(), "schedules", format!("must be {accepted}")));
        };
        match SEED_DECAYS.iter().find(|k| **k == s) {
            Some(k) => Ok(ScheduleChoice::Fair(k)),
            None => {
                let hint = did_you_mean(s, SEED_DECAYS.iter().copied())
                    .map_or(String::new(), |k| format!("did you mean \"{k}\"? "));
                let other = if KINDS.contains(&s.as_str()) {
                    format!("\"{s}\" has no derived defaults; give it as a [[sweep.schedule]] table. ")
                } else {
                    String::new()
                };
                Err(r.error_at(
                    v.span.clone(),
                    "schedules",
                    format!("unknown decay \"{s}\"; {hint}{other}Accepted: {accepted}"),
                ))
            }
        }
    };
    match &e.value.value {
        Node::Str(s) if s == "all" => Ok(SEED_DECAYS.iter().map(|k| ScheduleChoice::Fair(k)).collect()),
        Node::Array(items) if !items.is_empty() => items.iter().map(kind).collect(),
        _ => Err(r.error_at(e.value.span.clone(), "schedules", format!("must be {accepted}"))),
    }
}

/// `[[sweep.schedule]]`: schedule tables, each optionally `name`d.
fn read_schedule_tables(r: &TableReader<'_>, e: &Entry) -> Result<Vec<ScheduleChoice>, ConfigError> {
    let Node::Array(items) = &e.value.value else { unreachable!("only arrays are taken as schedule lists") };
    if items.is_empty() {
        return Err(r.error_at(e.value.span.clone(), "schedule", "must list at least one schedule table".into()));
    }
    let mut labels = BTreeSet::new();
    items
        .iter()
        .map(|item| {
            let Node::Table(t) = &item.value else {
                return Err(r.error_at(item.span.clone(), "schedule", "must be a list of schedule tables".into()));
            };
            let mut table = t.clone();
            let name = table.entries.iter().position(|e| e.key == "name").map(|i| table.entries.remove(i));
            let label = match name {
                Some(Entry { value: Spanned { value: Node::Str(s), span }, .. }) => {
                    check_run_name(&s).map_err(|why| r.error_at(span.clone(), "schedule.name", why))?;
                    (s, span)
                }
                Some(other) => {
                    return Err(r.error_at(other.value.span, "schedule.name", "must be a string".into()));
                }
                None => match table.get("kind").map(|e| &e.value.value) {
                    Some(Node::Str(k)) => (k.clone(), item.span.clone()),
                    _ => ("schedule".to_string(), item.span.clone()),
                },
            };
            if !labels.insert(label.0.clone()) {
                return Err(r.error_at(
                    label.1,
                    "schedule.name",
                    format!("\"{}\" names two schedules; give each [[sweep.schedule]] its own `name`", label.0),
                ));
            }
            Ok(ScheduleChoice::Table { label: label.0, table, span: item.span.clone() })
        })
        .collect()
}

/// Turns `[sweep.train] batch_size = [...]` into the axis `train.batch_size`.
fn flatten(
    prefix: &str,
    t: &Table,
    span: Option<Range<usize>>,
    src: Source<'_>,
    axes: &mut Vec<Axis>,
) -> Result<(), ConfigError> {
    for e in &t.entries {
        let path = format!("{prefix}.{}", e.key);
        match &e.value.value {
            Node::Table(inner) if !is_range(inner) => flatten(&path, inner, span.clone(), src, axes)?,
            _ => axes.push(read_axis(path, e, span.clone(), src)?),
        }
    }
    Ok(())
}

const RANGES: &[&str] = &["log_uniform", "uniform", "choice"];

fn is_range(t: &Table) -> bool {
    t.entries.len() == 1 && RANGES.contains(&t.entries[0].key.as_str())
}

fn read_axis(path: String, e: &Entry, span: Option<Range<usize>>, src: Source<'_>) -> Result<Axis, ConfigError> {
    let err = |s: Option<Range<usize>>, m: String| {
        ConfigError::at(src.file, src.text, s.or(span.clone()), Some(format!("sweep.\"{path}\"")), m)
    };
    let first = path.split('.').next().unwrap_or_default();
    if !SWEPT_TABLES.contains(&first) || path.split('.').any(str::is_empty) {
        let hint = did_you_mean(first, SWEPT_TABLES.iter().copied())
            .map_or(String::new(), |s| format!("did you mean \"{s}\"? "));
        return Err(err(
            e.key_span.clone(),
            format!(
                "is not a config key to sweep; {hint}a swept key is a dotted path into one of the tables {}, e.g. \"schedule.learning_rate\"",
                SWEPT_TABLES.join(", ")
            ),
        ));
    }
    if path == "train.threads" {
        return Err(err(
            e.key_span.clone(),
            "cannot be swept; set the threads of every run with --threads-per-run".into(),
        ));
    }
    let usage = "must be a non-empty list of values, or a range: { log_uniform = [low, high] }, { uniform = [low, high] } or { choice = [a, b, ...] }";
    let values = match &e.value.value {
        Node::Array(items) if !items.is_empty() => {
            // Counted before anything else is done with them (a list of millions was checked
            // pairwise for minutes before the run count refused it).
            if items.len() as u64 > MAX_RUNS {
                return Err(err(
                    e.value.span.clone(),
                    format!("lists {} values, more than the {MAX_RUNS} runs one sweep may hold", items.len()),
                ));
            }
            // The same value twice would run the same runs twice under one name.
            let mut seen = std::collections::HashSet::with_capacity(items.len());
            for item in items {
                if !seen.insert(value_key(&item.value)) {
                    return Err(err(
                        item.span.clone(),
                        format!("lists {} twice; every value of a grid must differ", value_text(&item.value, false)),
                    ));
                }
            }
            Values::Grid(items.clone())
        }
        Node::Table(t) if is_range(t) => {
            let r = &t.entries[0];
            let items = match &r.value.value {
                Node::Array(items) if !items.is_empty() => items,
                _ => return Err(err(r.value.span.clone(), format!("`{}` {usage}", r.key))),
            };
            if r.key == "choice" {
                Values::Choice(items.clone())
            } else {
                let bounds: Vec<f64> = items
                    .iter()
                    .filter_map(|v| match v.value {
                        Node::Int(i) => Some(i as f64),
                        Node::Float(f) if f.is_finite() => Some(f),
                        _ => None,
                    })
                    .collect();
                let (lo, hi) = match bounds[..] {
                    [lo, hi] if lo <= hi && items.len() == 2 => (lo, hi),
                    _ => {
                        return Err(err(
                            r.value.span.clone(),
                            format!("`{}` must be two numbers [low, high] with low <= high", r.key),
                        ));
                    }
                };
                if r.key == "log_uniform" {
                    if lo <= 0.0 {
                        return Err(err(r.value.span.clone(), "`log_uniform` needs bounds above 0".into()));
                    }
                    Values::LogUniform(lo, hi, r.value.span.clone())
                } else {
                    Values::Uniform(lo, hi, r.value.span.clone())
                }
            }
        }
        _ => return Err(err(e.value.span.clone(), usage.into())),
    };
    Ok(Axis { path, values })
}

/// The base rate a derived schedule starts from: a swept `schedule.learning_rate`, else [sweep]'s.
fn swept_rate(overrides: &[(&str, Spanned)], base: f64) -> Option<f64> {
    overrides.iter().rev().find(|(p, _)| *p == "schedule.learning_rate").map_or(Some(base), |(_, v)| match v.value {
        Node::Int(i) => Some(i as f64),
        Node::Float(f) => Some(f),
        _ => None,
    })
}

fn expand(
    path: &Path,
    text: &str,
    base: &Table,
    spec: &SweepSpec,
    train_len: &mut dyn FnMut(&DatasetSpec) -> Result<usize>,
) -> Result<Experiment> {
    let name = match base.get("name") {
        Some(Entry { value: Spanned { value: Node::Str(s), .. }, .. }) => s.clone(),
        _ => default_name(path),
    };
    let grid: Vec<&Axis> = spec.axes.iter().filter(|a| !a.is_random()).collect();
    let random: Vec<&Axis> = spec.axes.iter().filter(|a| a.is_random()).collect();
    // Count before expanding: a 12-key grid or samples = 10^8 must be refused, not built.
    let factors: Vec<(String, u64)> = std::iter::once(("schedules".to_string(), spec.schedules.len().max(1) as u64))
        .chain(grid.iter().map(|a| {
            let Values::Grid(values) = &a.values else { unreachable!() };
            (format!("\"{}\"", a.path), values.len() as u64)
        }))
        .chain(std::iter::once(("samples".to_string(), spec.samples.unwrap_or(1))))
        .chain(std::iter::once(("seeds".to_string(), spec.seeds.as_ref().map_or(1, |s| s.len() as u64))))
        .collect();
    let total = factors.iter().try_fold(1u64, |acc, (_, n)| acc.checked_mul(*n));
    if total.is_none_or(|t| t > MAX_RUNS) {
        let shown: Vec<String> = factors.iter().filter(|(_, n)| *n > 1).map(|(k, n)| format!("{n} {k}")).collect();
        return Err(ConfigError::whole_file(
            path,
            format!(
                "[sweep] expands to {} runs ({}), more than the {MAX_RUNS} one sweep may hold; split it into several \
                 sweeps, or use fewer values, samples or seeds",
                total.map_or_else(|| "more than 2^64".to_string(), |t| t.to_string()),
                shown.join(" x ")
            ),
        )
        .into());
    }
    // Every combination of grid values, as one value index per grid axis.
    let mut combos: Vec<Vec<usize>> = vec![Vec::new()];
    for axis in &grid {
        let Values::Grid(values) = &axis.values else { unreachable!() };
        combos =
            combos.into_iter().flat_map(|c| (0..values.len()).map(move |i| [c.clone(), vec![i]].concat())).collect();
    }
    // The random draws, shared by every schedule and grid point so that they compare fairly.
    let mut rng = ChaCha8Rng::seed_from_u64(spec.sample_seed);
    let draws: Vec<Vec<Spanned>> =
        (0..spec.samples.unwrap_or(1)).map(|_| random.iter().map(|a| draw(&a.values, &mut rng)).collect()).collect();
    let schedules: Vec<Option<&ScheduleChoice>> =
        if spec.schedules.is_empty() { vec![None] } else { spec.schedules.iter().map(Some).collect() };
    let seeds: Vec<Option<u64>> = spec.seeds.as_ref().map_or(vec![None], |s| s.iter().copied().map(Some).collect());
    let columns: Vec<String> = spec.axes.iter().map(|a| a.path.clone()).collect();
    let in_name: Vec<bool> = spec.axes.iter().map(|a| !matches!(&a.values, Values::Grid(v) if v.len() == 1)).collect();
    let shorts = short_names(&columns);

    let mut runs: Vec<PlannedRun> = Vec::new();
    for schedule in &schedules {
        for combo in &combos {
            for drawn in &draws {
                // Values in the order of spec.axes.
                let mut values: Vec<Spanned> = Vec::new();
                let (mut g, mut r) = (0, 0);
                for axis in &spec.axes {
                    if let Values::Grid(v) = &axis.values {
                        values.push(v[combo[g]].clone());
                        g += 1;
                    } else {
                        values.push(drawn[r].clone());
                        r += 1;
                    }
                }
                for seed in &seeds {
                    let mut overrides: Vec<(&str, Spanned)> =
                        spec.axes.iter().zip(&values).map(|(a, v)| (a.path.as_str(), v.clone())).collect();
                    if let Some(seed) = seed {
                        overrides.push(("train.seed", Spanned { value: Node::Int(*seed as i64), span: None }));
                    }
                    let label = match schedule {
                        Some(ScheduleChoice::Fair(k)) => k.to_string(),
                        Some(ScheduleChoice::Table { label, .. }) => label.clone(),
                        None => match base.get("schedule").and_then(|e| match &e.value.value {
                            Node::Table(t) => t.get("kind"),
                            _ => None,
                        }) {
                            Some(Entry { value: Spanned { value: Node::Str(k), .. }, .. }) => k.clone(),
                            _ => "schedule".into(),
                        },
                    };
                    let mut parts = vec![label.clone()];
                    for (i, v) in values.iter().enumerate() {
                        if in_name[i] {
                            let random = spec.axes[i].is_random();
                            parts.push(format!("{}{}", shorts[i], value_text(&v.value, random)));
                        }
                    }
                    let variant = parts.join("-");
                    let run_name = match seed {
                        Some(s) if seeds.len() > 1 => format!("{variant}-seed{s}"),
                        _ => variant.clone(),
                    };
                    let config = variant_config(path, text, base, *schedule, &overrides, &run_name, spec, train_len)
                        .map_err(|e| match e.downcast::<ConfigError>() {
                            Ok(mut c) => {
                                c.message = format!("{} (in the sweep's run {run_name})", c.message);
                                anyhow::Error::new(c)
                            }
                            Err(other) => other.context(format!("in the sweep's run {run_name}")),
                        })?;
                    let info = RunInfo {
                        name: run_name,
                        variant,
                        schedule: label,
                        params: values.iter().map(|v| value_text(&v.value, false)).collect(),
                        seed: config.train.seed,
                        config_hash: None,
                    };
                    runs.push(PlannedRun { info, config });
                }
            }
        }
    }
    dedupe_names(&mut runs);
    Ok(Experiment {
        name,
        is_sweep: true,
        runs,
        columns,
        jobs: spec.jobs,
        threads_per_run: spec.threads_per_run,
        backend: spec.backend,
        slurm: spec.slurm.clone(),
    })
}

/// Builds and validates one variant's config.
#[allow(clippy::too_many_arguments)]
fn variant_config(
    path: &Path,
    text: &str,
    base: &Table,
    schedule: Option<&ScheduleChoice>,
    overrides: &[(&str, Spanned)],
    run_name: &str,
    spec: &SweepSpec,
    train_len: &mut dyn FnMut(&DatasetSpec) -> Result<usize>,
) -> Result<ExperimentConfig> {
    let mut root = base.clone();
    set(&mut root, "run", Spanned { value: Node::Str(run_name.to_string()), span: None });
    let (schedule_overrides, other): (Vec<_>, Vec<_>) = overrides.iter().partition(|(p, _)| p.starts_with("schedule."));
    let apply = |root: &mut Table, list: &[&(&str, Spanned)]| -> Result<(), ConfigError> {
        for (p, v) in list {
            apply_override(root, p, v.clone())
                .map_err(|m| ConfigError::at(path, text, v.span.clone(), Some(format!("sweep.\"{p}\"")), m))?;
        }
        Ok(())
    };
    apply(&mut root, &other)?;
    match schedule {
        None => {}
        Some(ScheduleChoice::Table { table, span, .. }) => {
            set(&mut root, "schedule", Spanned { value: Node::Table(table.clone()), span: span.clone() })
        }
        Some(ScheduleChoice::Fair(kind)) => {
            // The run's length decides the derived parameters: read everything but the
            // schedule first (with a stand-in), then fill the schedule in.
            let lr = swept_rate(overrides, spec.learning_rate).unwrap_or(spec.learning_rate);
            let mut stand_in = root.clone();
            set(
                &mut stand_in,
                "schedule",
                generated(&[("kind", FairValue::Text("constant")), ("learning_rate", FairValue::Number(lr))]),
            );
            let cfg = parse_table(path, text, &stand_in)?;
            let total = cfg.train.total_steps(train_len(&cfg.dataset)?);
            let mut params = vec![("kind", FairValue::Text(kind))];
            params.extend(fair_params(kind, lr, total).expect("a seed decay has derived parameters"));
            set(&mut root, "schedule", generated(&params));
            // The swept rate is the base the parameters were derived from (piecewise
            // constant has no learning_rate key of its own); the other keys apply as given.
            let rest: Vec<_> =
                schedule_overrides.iter().copied().filter(|(p, _)| *p != "schedule.learning_rate").collect();
            apply(&mut root, &rest)?;
            return Ok(parse_table(path, text, &root)?);
        }
    }
    apply(&mut root, &schedule_overrides)?;
    let config = parse_table(path, text, &root)?;
    check_rates(path, text, &root, &config, train_len(&config.dataset)?)?;
    Ok(config)
}

/// Refuses a schedule whose rate is not a finite number at a step probed (0, 1, each
/// power of 10 and the last of a run on `len` training samples), computed as the run
/// computes it (denormals flushed as `[train]` says): a value too large or too small to
/// compute with. The error points at the schedule table and lists its extreme values.
fn check_rates(
    path: &Path,
    text: &str,
    root: &Table,
    config: &ExperimentConfig,
    len: usize,
) -> Result<(), ConfigError> {
    let ctx = config.train.schedule_context(len);
    let bad = {
        let _mode = crate::kernels::denormals::scoped(config.train.flush_denormals);
        crate::schedule::first_bad_probe(&*config.schedule.build(&ctx), ctx.total_steps)
    };
    let Some((step, lr)) = bad else { return Ok(()) };
    let entry = root.get("schedule");
    let mut extreme = Vec::new();
    if let Some(Entry { value: Spanned { value: Node::Table(t), .. }, .. }) = entry {
        for e in &t.entries {
            let x = match e.value.value {
                Node::Float(x) => x,
                Node::Int(i) => i as f64,
                _ => continue,
            };
            if x.abs() > 1e15 || (x != 0.0 && x.abs() < 1e-15) {
                extreme.push(format!("{} = {x:e}", e.key));
            }
        }
    }
    let hint = if extreme.is_empty() {
        "a value too large or too small to compute with".to_string()
    } else {
        format!("a value too large or too small to compute with: {}", extreme.join(", "))
    };
    Err(ConfigError::at(
        path,
        text,
        entry.and_then(|e| e.key_span.clone().or(e.value.span.clone())),
        Some("schedule".into()),
        format!("gives lr = {lr} at step {step} of the run's {} ({hint})", ctx.total_steps),
    ))
}

/// A schedule table made by the program.
fn generated(params: &[(&str, FairValue)]) -> Spanned {
    let plain = |value| Spanned { value, span: None };
    let entries = params
        .iter()
        .map(|(k, v)| Entry {
            key: k.to_string(),
            key_span: None,
            value: plain(match v {
                FairValue::Number(x) => Node::Float(*x),
                FairValue::Numbers(xs) => Node::Array(xs.iter().map(|x| plain(Node::Float(*x))).collect()),
                FairValue::Text(s) => Node::Str(s.to_string()),
                FairValue::Flag(b) => Node::Bool(*b),
            }),
        })
        .collect();
    plain(Node::Table(Table { entries }))
}

/// Sets `key` of `table` to `value`, replacing an existing entry in place.
fn set(table: &mut Table, key: &str, value: Spanned) {
    match table.entries.iter_mut().find(|e| e.key == key) {
        Some(e) => e.value = value,
        None => table.entries.push(Entry { key: key.to_string(), key_span: value.span.clone(), value }),
    }
}

/// Writes `value` at the dotted `path`, creating missing tables on the way.
fn apply_override(root: &mut Table, path: &str, value: Spanned) -> Result<(), String> {
    let mut parts: Vec<&str> = path.split('.').collect();
    // An optimizer given as [train.optimizer] is swept there.
    if parts[0] == "optimizer" && root.get("optimizer").is_none() {
        let nested =
            root.get("train").is_some_and(|t| matches!(&t.value.value, Node::Table(t) if t.get("optimizer").is_some()));
        if nested {
            parts.insert(0, "train");
        }
    }
    let (leaf, tables) = parts.split_last().expect("a path has a key");
    let mut t = root;
    for (i, part) in tables.iter().enumerate() {
        if t.get(part).is_none() {
            t.entries.push(Entry {
                key: part.to_string(),
                key_span: None,
                value: Spanned { value: Node::Table(Table::default()), span: None },
            });
        }
        let e = t.entries.iter_mut().find(|e| e.key == *part).expect("just ensured");
        match &mut e.value.value {
            Node::Table(inner) => t = inner,
            _ => return Err(format!("cannot be swept: `{}` is not a table", parts[..=i].join("."))),
        }
    }
    set(t, leaf, value);
    Ok(())
}

/// One random value of a ranged axis.
fn draw(values: &Values, rng: &mut ChaCha8Rng) -> Spanned {
    match values {
        Values::LogUniform(lo, hi, span) => {
            let x = (lo.ln() + (hi.ln() - lo.ln()) * rng.random::<f64>()).exp();
            Spanned { value: Node::Float(x.clamp(*lo, *hi)), span: span.clone() }
        }
        Values::Uniform(lo, hi, span) => {
            Spanned { value: Node::Float(lo + (hi - lo) * rng.random::<f64>()), span: span.clone() }
        }
        Values::Choice(items) => items[rng.random_range(0..items.len())].clone(),
        Values::Grid(_) => unreachable!("grid axes are not drawn"),
    }
}

/// A value as it appears in a run name or a summary column.
fn value_text(v: &Node, random: bool) -> String {
    let text = match v {
        Node::Int(i) => i.to_string(),
        Node::Float(f) if random => format!("{}", significant(*f, 3)),
        Node::Float(f) => format!("{f}"),
        Node::Str(s) => s.clone(),
        Node::Bool(b) => b.to_string(),
        Node::Datetime(d) => d.clone(),
        Node::Array(_) | Node::Table(_) => "list".into(),
    };
    text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

/// `x` rounded to `digits` significant digits.
fn significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// Short names of swept keys for run names: the last part of the path (`lr` for
/// learning_rate), or the whole path where two keys end alike.
fn short_names(columns: &[String]) -> Vec<String> {
    let last = |c: &str| c.rsplit('.').next().unwrap_or(c).to_string();
    columns
        .iter()
        .map(|c| {
            let l = last(c);
            if columns.iter().filter(|o| last(o) == l).count() > 1 {
                return c.replace('.', "_");
            }
            match l.as_str() {
                "learning_rate" => "lr".into(),
                "batch_size" => "bs".into(),
                "weight_decay" => "wd".into(),
                _ => l,
            }
        })
        .collect()
}

/// A value as a key that equal values share (`==` on nodes, spans aside): for finding
/// repeats in a grid by hashing.
fn value_key(n: &Node) -> String {
    match n {
        // 0.0 == -0.0, and both are one key.
        Node::Float(x) if *x == 0.0 => "f0".into(),
        Node::Float(x) => format!("f{x:?}"),
        Node::Int(i) => format!("i{i}"),
        Node::Str(s) => format!("s{s:?}"),
        Node::Bool(b) => format!("b{b}"),
        Node::Datetime(d) => format!("d{d:?}"),
        Node::Array(items) => format!("[{}]", items.iter().map(|i| value_key(&i.value)).collect::<Vec<_>>().join(",")),
        Node::Table(t) => format!(
            "{{{}}}",
            t.entries
                .iter()
                .map(|e| format!("{:?}={}", e.key, value_key(&e.value.value)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Makes run names unique by numbering repeats (`name`, `name-2`, ...).
fn dedupe_names(runs: &mut [PlannedRun]) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for run in runs.iter_mut() {
        let n = seen.entry(run.info.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            run.info.name = format!("{}-{}", run.info.name, n);
            run.info.variant = format!("{}-{}", run.info.variant, n);
            run.config.run = run.info.name.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_text(text: &str) -> Result<Experiment> {
        parse_experiment(Path::new("s.toml"), text, &mut |_| Ok(1000))
    }

    #[test]
    fn grid_times_seeds_gives_named_runs() {
        let e = expand_text(
            "name = \"g\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[sweep]\nseeds = [1, 2]\n\"schedule.learning_rate\" = [0.1, 0.03]\n\"train.batch_size\" = [32]\n",
        )
        .unwrap();
        let names: Vec<_> = e.runs.iter().map(|r| r.info.name.as_str()).collect();
        assert_eq!(
            names,
            ["constant-lr0.1-seed1", "constant-lr0.1-seed2", "constant-lr0.03-seed1", "constant-lr0.03-seed2"]
        );
        assert_eq!(e.runs[2].info.variant, "constant-lr0.03");
        assert_eq!(e.runs[3].config.train.seed, 2);
        assert_eq!(e.runs[3].config.train.batch_size, 32);
        assert_eq!(e.columns, ["schedule.learning_rate", "train.batch_size"]);
        assert_eq!(e.runs[2].info.params, ["0.03", "32"]);
    }

    #[test]
    fn all_decays_span_the_run() {
        let e = expand_text("[sweep]\nschedules = \"all\"\nlearning_rate = 0.2\n[train]\nepochs = 2\n").unwrap();
        assert_eq!(e.runs.len(), 10);
        let cosine = e.runs.iter().find(|r| r.info.name == "cosine_decay").unwrap();
        // 1000 training samples in batches of 32 for 2 epochs: 2 * 32 = 64 steps.
        let toml = cosine.config.to_toml();
        assert!(toml.contains("decay_steps = 64\n"), "{toml}");
        assert!(toml.contains("learning_rate = 0.2"), "{toml}");
    }

    #[test]
    fn a_swept_rate_is_the_base_of_derived_decays() {
        let e =
            expand_text("[sweep]\nschedules = [\"piecewise_constant\"]\n\"schedule.learning_rate\" = [0.5]\n").unwrap();
        let toml = e.runs[0].config.to_toml();
        assert!(toml.contains("values = [0.5, 0.05, 0.005]"), "{toml}");
    }

    #[test]
    fn random_search_is_seeded_and_in_range() {
        let text = "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[sweep]\nsamples = 5\n\"schedule.learning_rate\" = { log_uniform = [1e-4, 1.0] }\n";
        let a = expand_text(text).unwrap();
        let b = expand_text(text).unwrap();
        assert_eq!(a.runs.len(), 5);
        for (x, y) in a.runs.iter().zip(&b.runs) {
            assert_eq!(x.info.name, y.info.name);
            let lr: f64 = x.info.params[0].parse().unwrap();
            assert!((1e-4..=1.0).contains(&lr));
        }
    }

    #[test]
    fn a_bad_variant_names_the_run_and_points_at_the_value() {
        let text =
            "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[sweep]\n\"schedule.learning_rate\" = [0.1, -1]\n";
        let err = expand_text(text).unwrap_err().downcast::<ConfigError>().unwrap();
        assert_eq!(err.position, Some((5, 34)));
        assert!(err.message.contains("constant-lr-1"), "{}", err.message);
    }
}
