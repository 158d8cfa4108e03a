//! What checkpoints cost: the same run trained into a run directory with the default
//! checkpoint policy (every epoch, never more than 1% of the run's time) and with
//! checkpoints off (`checkpoint_every = "run"`), interleaved, median of several; and the
//! size of one checkpoint. For digits (the default MLP, 30 epochs) and an MNIST-shaped MLP
//! (784-256-128-10 on 12,000 synthetic images, 30 epochs); a run shorter than about a
//! second writes no periodic checkpoint at all. Run with
//! `cargo bench --bench checkpoint_cost`.

#[path = "support/mod.rs"]
mod support;
use runner::data;
use runner::plan;
use runner::progress::{Progress, Tee};
use runner::store::RunDir;
use runner::train;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use support::{machine, median};

/// Seconds to train `text` into a fresh run directory under `dir`, and the bytes of its
/// largest checkpoint (0 when none was written).
fn train_once(text: &str, dir: &Path) -> (f64, u64) {
    let cfg = plan::parse(Path::new("bench.toml"), text).unwrap();
    let data = data::Cache::default().get(&cfg.dataset).unwrap();
    let run = dir.join("run");
    let mut run_dir = RunDir::create(&run, &cfg.to_toml()).unwrap();
    let mut quiet = Progress::Quiet;
    let start = Instant::now();
    train::train(&cfg.run_spec(), &data, &mut Tee(&mut run_dir, &mut quiet), &AtomicBool::new(false)).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let size = std::fs::read_dir(run.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .max()
        .unwrap_or(0);
    (seconds, size)
}

fn compare(label: &str, text: &str, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let off = text.replace("[train]\n", "[train]\ncheckpoint_every = \"run\"\n");
    let (mut with, mut without, mut size) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        let (s, bytes) = train_once(text, dir.path());
        with.push(s);
        size = size.max(bytes);
        without.push(train_once(&off, dir.path()).0);
    }
    let (w, o) = (median(with), median(without));
    println!(
        "{label}: {w:.3} s with checkpoints, {o:.3} s without: {:+.1}% ({} KB a checkpoint's tensors)",
        (w / o - 1.0) * 100.0,
        size / 1024
    );
}

fn main() {
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    println!("checkpoint_cost on {}", machine());
    compare(
        "digits, MLP 64-128-64-10, 30 epochs (1350 steps)",
        "[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\n[train]\nepochs = 30\n",
        9,
    );
    compare(
        "digits, MLP 64-128-64-10, 300 epochs (13,500 steps)",
        "[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\n[train]\nepochs = 300\n",
        5,
    );
    compare(
        "synthetic MNIST-shaped blobs, MLP 784-256-128-10, batch 128, 30 epochs",
        "[dataset]\nkind = \"blobs\"\nclasses = 10\npoints_per_class = 1200\ndims = 784\n[model]\nhidden = [256, 128]\n\
         [schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.05\n[train]\nepochs = 30\nbatch_size = 128\n",
        3,
    );
}
