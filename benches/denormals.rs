//! Whether a collapsed run (digits at lr 0.5: every ReLU dead, weights decaying towards
//! zero, denormal floats everywhere) costs more per step than a healthy one (lr 0.05),
//! with denormals flushed to zero (the default) and with IEEE arithmetic
//! (`flush_denormals = false`); 60 epochs in a one-thread pool as `runner run` trains.
//! Run with `cargo bench --bench denormals`.

#[path = "support/mod.rs"]
mod support;
use runner::data;
use runner::plan;
use runner::train;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use support::{Nothing, machine, median};

/// Microseconds per step of the run `text` describes, and its final validation accuracy.
fn per_step(text: &str, pool: &rayon::ThreadPool) -> (f64, f64) {
    let cfg = plan::parse(Path::new("bench.toml"), text).unwrap();
    let data = data::Cache::default().get(&cfg.dataset).unwrap();
    let start = Instant::now();
    let outcome = pool.install(|| train::train(&cfg.run_spec(), &data, &mut Nothing, &AtomicBool::new(false))).unwrap();
    let micros = start.elapsed().as_secs_f64() * 1e6 / outcome.steps as f64;
    (micros, outcome.final_metrics.and_then(|m| m.val_accuracy).unwrap_or(f64::NAN))
}

fn main() {
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    println!("denormals on {}", machine());
    for flush in [true, false] {
        let mut cells = Vec::new();
        for lr in [0.05, 0.5] {
            let text = format!(
                "[schedule]\nkind = \"constant\"\nlearning_rate = {lr}\n[train]\nepochs = 60\nflush_denormals = {flush}\n"
            );
            let runs: Vec<(f64, f64)> = (0..5).map(|_| per_step(&text, &pool)).collect();
            let acc = runs[0].1;
            cells.push((lr, median(runs.iter().map(|r| r.0).collect()), acc));
        }
        let (healthy, collapsed) = (cells[0].1, cells[1].1);
        println!(
            "flush_denormals = {flush}: healthy (lr 0.05, val_accuracy {:.3}) {healthy:.1} us/step, collapsed (lr 0.5, val_accuracy {:.3}) {collapsed:.1} us/step: collapsed/healthy = {:.2}",
            cells[0].2,
            cells[1].2,
            collapsed / healthy
        );
    }
}
