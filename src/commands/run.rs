//! `runner run FILE`: train one experiment and write its run directory.

use crate::cli::RunArgs;
use crate::config;
use crate::data;
use crate::progress::{Progress, Tee};
use crate::results::{RunDir, RunSummary};
use crate::train::{self, Status};
use anyhow::Result;

pub fn run(args: &RunArgs) -> Result<()> {
    let cfg = config::load(&args.file)?;
    let threads = cfg.train.threads as usize;
    // candle's matrix products read this for their thread count; set before any work starts.
    // SAFETY: no other thread exists yet that could read the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let data = data::prepare(&cfg.dataset, cfg.train.seed)?;
    let dir = args.out.join(&cfg.name).join(&cfg.run);
    let mut run_dir = RunDir::create(&dir, &cfg.to_toml(), args.force)?;
    let label = format!("{}/{}", cfg.name, cfg.run);
    let mut progress = Progress::new(&label, cfg.train.total_steps(data.train.len), args.quiet);
    let spec = cfg.run_spec();
    let outcome = pool.install(|| train::train(&spec, &data, &mut Tee(&mut run_dir, &mut progress)));
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            progress.finish("failed");
            return Err(e.context(format!("run {label} failed; partial results are in {}", dir.display())));
        }
    };
    let summary = RunSummary {
        experiment: &cfg.name,
        run: &cfg.run,
        seed: cfg.train.seed,
        threads: cfg.train.threads,
        runner_version: env!("CARGO_PKG_VERSION"),
        outcome: &outcome,
    };
    run_dir.finish(&summary)?;
    let last = outcome.final_metrics;
    let message = match outcome.status {
        Status::Diverged => format!("diverged at step {}", outcome.diverged_at_step.unwrap_or(outcome.steps)),
        _ => match (last.and_then(|m| m.val_accuracy), last) {
            (Some(acc), _) => format!("val_accuracy {:.4}", acc),
            (None, Some(m)) => format!("val_loss {:.4}", m.val_loss),
            _ => "done".into(),
        },
    };
    progress.finish(&message);
    if !args.quiet {
        eprintln!("{label}: {message} in {:.1}s; results in {}", outcome.wall_seconds, dir.display());
    }
    Ok(())
}
