//! The command line: only the clap definition lives here.

use crate::slurm::SlurmOptions;
use crate::sweep::{Backend, Shard};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Learning-rate-schedule experiments: declare a model, data and schedule in TOML; train,
/// sweep and compare.
#[derive(Debug, Parser)]
#[command(name = "runner", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the experiment FILE describes (one run, or every run of its [sweep]) and write
    /// experiments/<name>/<run>/.
    Run(RunArgs),
    /// The same as `run`, for sweep files; also fans a sweep out: to Slurm as job arrays
    /// (--backend slurm), or by hand in shards (--shard I/N).
    Sweep(Box<SweepArgs>),
    /// Train run number --index of a planned sweep: what each Slurm array task runs (also
    /// usable from any other engine that runs one command per index).
    RunOne(RunOneArgs),
    /// Gather an experiment's results, also while its jobs still run: merge shard
    /// directories, ask Slurm about its tasks, and write summary.csv.
    Collect(CollectArgs),
    /// Rank the runs of an experiment (or one run) and draw its curves.
    Report(ReportArgs),
    /// Evaluate a run's saved weights (model.safetensors or best.safetensors) on its
    /// validation data, or on the data set of another config (--data).
    Eval(EvalArgs),
    /// Print text from a language model run's saved weights (a transformer on a text
    /// data set): the prompt, continued token by token.
    Sample(SampleArgs),
    /// The learning-rate range test: train the config's model from its start while the
    /// rate rises exponentially, and suggest a peak rate (writes lr_find.csv and lr_find.png).
    LrFind(LrFindArgs),
    /// Print a config's learning rate for every step as CSV (`step,lr`), or draw it.
    Schedule(ScheduleArgs),
    /// List every schedule kind with its parameters and defaults.
    Schedules(SchedulesArgs),
}

/// Config keys set from the command line, checked like the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct OverrideArgs {
    /// Set a config key as if the file said so: `--set train.epochs=5 --set schedule.alpha=0.01`
    /// (repeatable; the value is TOML, a bare word is a string; dotted keys as in [sweep] grids).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The same as `--set`, written after the file as Hydra users type them: `train.epochs=5`.
    #[arg(value_name = "KEY=VALUE")]
    pub bare: Vec<String>,
    /// A grid axis, as Hydra's multirun: `--sweep schedule.learning_rate=0.03,0.1,0.3
    /// --sweep train.batch_size=32,64` runs every combination as a sweep (the same as a
    /// [sweep] table's `"schedule.learning_rate" = [0.03, 0.1, 0.3]`; repeatable).
    #[arg(long = "sweep", value_name = "KEY=V1,V2,...")]
    pub sweep: Vec<String>,
}

impl OverrideArgs {
    /// The overrides in the order they apply (`--set` ones first), or why one is malformed.
    pub fn overrides(&self) -> Result<Vec<crate::config::Override>, String> {
        let set = self.set.iter().map(|a| crate::config::Override::parse(a, "--set"));
        let bare = self.bare.iter().map(|a| crate::config::Override::parse(a, ""));
        let sweep = self.sweep.iter().map(|a| crate::config::Override::sweep(a));
        set.chain(bare).chain(sweep).collect()
    }
}

#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// The experiment file (TOML with a [schedule] table).
    pub file: PathBuf,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Number of steps to show (rows 0..N-1, at most 10,000,000); default: the run's total steps.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub steps: Option<u64>,
    /// Optimizer steps per epoch, for `epoch` in expression schedules; default: the run's.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub steps_per_epoch: Option<u64>,
    /// Seed for noisy schedules; default: the run's [train] seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Which run of a sweep file to show (`runner run FILE --dry-run` lists them).
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,
    /// For validation-driven schedules: a file with one monitored value per line; prints
    /// `epoch,metric,lr` with the rate in effect after each evaluation.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Draw the curve in the terminal instead of printing CSV.
    #[arg(long)]
    pub plot: bool,
    /// Also write a chart of the curve to FILE (.png or .svg).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SchedulesArgs {
    /// Show only this kind.
    pub kind: Option<String>,
    /// Print the list as Markdown (the text of docs/schedules.md).
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The experiment file.
    pub file: PathBuf,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Root directory for results.
    #[arg(long, default_value = "experiments")]
    pub out: PathBuf,
    /// Rerun every run, replacing earlier results.
    #[arg(long)]
    pub force: bool,
    /// Keep runs that finished earlier with the same config and run the rest (what a
    /// sweep does anyway; a single run otherwise refuses to touch earlier results).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Runs at once (default: as many as fit the cores at --threads-per-run each).
    #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: Option<u64>,
    /// CPU threads of each run (default: the config's [train] threads, 1 unless set).
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads_per_run: Option<u64>,
    /// Where to train: cpu, cuda (the first GPU) or cuda:N (default: the config's [train]
    /// device, cpu unless set). Needs a runner built with `--features cuda` for a GPU.
    #[arg(long, value_name = "DEVICE", value_parser = crate::device::DeviceSpec::parse)]
    pub device: Option<crate::device::DeviceSpec>,
    /// The GPUs a sweep's runs on `cuda` are placed on, e.g. `0,1,3` (default: every GPU
    /// visible, after CUDA_VISIBLE_DEVICES).
    #[arg(long, value_name = "LIST", value_delimiter = ',', num_args = 1..)]
    pub gpus: Option<Vec<usize>>,
    /// Runs sharing each GPU at once (default 1): small models (a ResNet-20) leave most of
    /// a large GPU idle. With --gpus, the sweep runs `GPUs x K` runs at a time.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub runs_per_gpu: Option<u64>,
    /// List the runs and what would happen to each, and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Train every run from step 0, even where runs share their first steps (by default
    /// those steps are trained once and the runs forked from there: same results).
    #[arg(long)]
    pub no_share: bool,
    /// Only the runs whose name matches: a glob (`cosine*`, `*seed1`) or a substring.
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Where the runs run: here, or as a Slurm job array (default: the file's [sweep]
    /// backend, else local).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Run only the runs whose index (in the sweep's order, from 0) is I modulo N, so that
    /// N machines (a CI matrix, Kubernetes indexed jobs, ssh) share a sweep; then
    /// `runner collect` the shards' directories.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Only write the plan (runs.json and each run's config in plan/) for an engine that
    /// runs `runner run-one DIR --index I` once per run; runs nothing.
    #[arg(long, conflicts_with_all = ["shard", "dry_run"])]
    pub plan: bool,
    #[command(flatten)]
    pub slurm: SlurmArgs,
}

/// The options of `--backend slurm`; each overrides the same key of `[sweep.slurm]`.
#[derive(Debug, Default, clap::Args)]
#[command(next_help_heading = "Slurm (with --backend slurm)")]
pub struct SlurmArgs {
    /// Wait for the job array to finish, showing runs done, running, pending and failed,
    /// then write summary.csv.
    #[arg(long)]
    pub wait: bool,
    /// Seconds between two looks at the queue with --wait.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub poll: f64,
    /// How long --wait keeps asking when Slurm's controller does not answer (busy,
    /// restarting), backing off from 1 s to 30 s between tries; then it stops waiting
    /// and the job goes on.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0, value_parser = parse_seconds)]
    pub retry_for: f64,
    /// Array tasks running at once (`--array=0-N%MAX`).
    #[arg(long, value_name = "MAX", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_parallel: Option<u64>,
    /// The cluster's MaxArraySize: a sweep with more runs is submitted as several job
    /// arrays whose task ids stay below it (default: from `scontrol show config`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_array_size: Option<u64>,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit of each run (`30`, `2:00:00`, `1-00:00:00`).
    #[arg(long, value_parser = parse_time)]
    pub time: Option<String>,
    /// CPUs of each run, which is also its thread count (default: [train] threads).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub cpus_per_task: Option<u64>,
    /// GPUs of each run (`--gpus-per-task`; default 1 when the runs train on `cuda`). The
    /// run trains on the GPU Slurm gives it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub gpus_per_task: Option<u64>,
    /// Memory of each run (`4G`).
    #[arg(long, value_parser = parse_mem)]
    pub mem: Option<String>,
    /// Account to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// Quality of service.
    #[arg(long)]
    pub qos: Option<String>,
    /// An extra `#SBATCH` line, e.g. `--sbatch=--gres=gpu:1` (repeatable).
    #[arg(long, value_name = "LINE")]
    pub sbatch: Vec<String>,
    /// A shell line each task runs before training, e.g. `--setup "module load rust"` (repeatable).
    #[arg(long, value_name = "LINE")]
    pub setup: Vec<String>,
    /// Seconds before its time limit at which a task is sent SIGTERM, to checkpoint and stop
    /// (default 60).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub signal_grace: Option<u64>,
    /// Requeue a task its time limit (or a preemption) stopped; it resumes from its
    /// checkpoint, so a run longer than --time finishes over several tasks.
    #[arg(long)]
    pub requeue: bool,
}

impl SlurmArgs {
    /// The options given on the command line.
    pub fn options(&self) -> SlurmOptions {
        SlurmOptions {
            partition: self.partition.clone(),
            time: self.time.clone(),
            cpus_per_task: self.cpus_per_task,
            gpus_per_task: self.gpus_per_task,
            mem: self.mem.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            max_parallel: self.max_parallel,
            max_array_size: self.max_array_size,
            sbatch: self.sbatch.clone(),
            setup: self.setup.clone(),
            signal_grace: self.signal_grace,
            requeue: self.requeue,
        }
    }

    /// Whether any Slurm option was given.
    pub fn any(&self) -> bool {
        self.wait || self.options() != SlurmOptions::default()
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds (0 or more, e.g. 600)")),
    }
}

fn parse_time(s: &str) -> Result<String, String> {
    crate::slurm::check_time(s).map(|()| s.to_string())
}

fn parse_mem(s: &str) -> Result<String, String> {
    crate::slurm::check_mem(s).map(|()| s.to_string())
}

#[derive(Debug, clap::Args)]
pub struct RunOneArgs {
    /// The experiment directory a sweep was planned into (it holds runs.json and plan/).
    pub dir: PathBuf,
    /// The run's index in runs.json (Slurm's $SLURM_ARRAY_TASK_ID).
    #[arg(long)]
    pub index: usize,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// CPU threads of the run (default: the planned config's [train] threads).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,
    /// Where to train: cpu, cuda (the first GPU) or cuda:N (default: the config's [train]
    /// device, cpu unless set). Needs a runner built with `--features cuda` for a GPU.
    #[arg(long, value_name = "DEVICE", value_parser = crate::device::DeviceSpec::parse)]
    pub device: Option<crate::device::DeviceSpec>,
    /// Rerun the run even if it finished earlier.
    #[arg(long)]
    pub force: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// The experiment directory (experiments/NAME); further directories are other shards'
    /// copies of it, whose finished runs are merged into the first.
    #[arg(required = true, num_args = 1..)]
    pub dirs: Vec<PathBuf>,
    /// No table, only the counts.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A run's directory (experiments/NAME/RUN), holding config.toml and model.safetensors.
    pub dir: PathBuf,
    /// A config file whose [dataset] to evaluate on (e.g. MNIST's t10k files with
    /// test_as_validation = true, a held-out CSV); default: the run's own validation data.
    #[arg(long, value_name = "CONFIG")]
    pub data: Option<PathBuf>,
    /// Which weights: the final ones, or the best evaluation's (runs with a monitored metric).
    #[arg(long, value_enum, default_value_t = Weights::Model)]
    pub weights: Weights,
    /// Where to evaluate: cpu (default), cuda or cuda:N; a model trained on a GPU
    /// evaluates on the CPU and the other way round.
    #[arg(long, value_name = "DEVICE", value_parser = crate::device::DeviceSpec::parse)]
    pub device: Option<crate::device::DeviceSpec>,
}

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// A language model run's directory (experiments/NAME/RUN), holding config.toml,
    /// vocab.json and model.safetensors.
    pub dir: PathBuf,
    /// The text to continue (every character must be in the run's vocabulary).
    #[arg(long, default_value = "\n", allow_hyphen_values = true)]
    pub prompt: String,
    /// Tokens to generate (at most 1,000,000), printed as they are drawn.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub tokens: u64,
    /// Divides the logits: below 1 sharper, above 1 more varied; 0 always takes the most
    /// likely token.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Draw among the K most likely tokens only.
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Seed of the draws: the same seed prints the same text.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Which weights: the final ones, or the best evaluation's.
    #[arg(long, value_enum, default_value_t = Weights::Model)]
    pub weights: Weights,
    /// Where the model runs: cpu (default), cuda or cuda:N.
    #[arg(long, value_name = "DEVICE", value_parser = crate::device::DeviceSpec::parse)]
    pub device: Option<crate::device::DeviceSpec>,
}

#[derive(Debug, clap::Args)]
pub struct LrFindArgs {
    /// The experiment file (for a sweep, pick a run with --run).
    pub file: PathBuf,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// The first rate.
    #[arg(long, default_value_t = 1e-7)]
    pub start: f64,
    /// The last rate.
    #[arg(long, default_value_t = 10.0)]
    pub end: f64,
    /// Steps from --start to --end (one rate each; the test stops early when the loss diverges).
    #[arg(long, default_value_t = 100)]
    pub steps: u64,
    /// Which run of a sweep file (`runner run FILE --dry-run` lists them).
    #[arg(long)]
    pub run: Option<String>,
    /// Results go to DIR/<name>/lr_find/.
    #[arg(long, default_value = "experiments", value_name = "DIR")]
    pub out: PathBuf,
    /// Where to train: cpu, cuda (the first GPU) or cuda:N (default: the config's [train]
    /// device, cpu unless set). Needs a runner built with `--features cuda` for a GPU.
    #[arg(long, value_name = "DEVICE", value_parser = crate::device::DeviceSpec::parse)]
    pub device: Option<crate::device::DeviceSpec>,
}

/// The weights `runner eval` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    /// model.safetensors: the weights the run ended with.
    Model,
    /// best.safetensors: the best evaluation's.
    Best,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// An experiment directory (experiments/NAME) or one run's directory.
    pub dir: PathBuf,
    /// More experiment directories: the experiments side by side, variant by variant
    /// (with two, the second's difference from the first and whether it is real).
    #[arg(value_name = "MORE")]
    pub more: Vec<PathBuf>,
    /// With two directories whose variants are named differently: compare variant A of the
    /// first with variant B of the second (repeat, or separate pairs with commas). Two
    /// directories of a single variant each (two run directories) are paired without it.
    #[arg(long, value_name = "A=B", value_delimiter = ',')]
    pub pair: Vec<String>,
    /// How to print the ranking.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Do not write the charts (PNG and SVG).
    #[arg(long)]
    pub no_plots: bool,
    /// Rank by this metrics.csv column: val_accuracy (higher is better; the default for
    /// classification), val_loss (the default for regression and language models), val_rmse,
    /// train_loss, val_bits_per_char, val_bits_per_byte, val_perplexity. Ties go to the
    /// lower final val_loss.
    #[arg(long, value_name = "NAME")]
    pub metric: Option<String>,
    /// The rate axis of lr.png: log when the rates span more than a decade (auto), or always
    /// log or linear.
    #[arg(long, value_enum, default_value_t = crate::report::LrScale::Auto)]
    pub lr_scale: crate::report::LrScale,
}

/// Output formats of `runner report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Markdown,
    Csv,
    Json,
}
