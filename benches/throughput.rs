//! Training throughput through `runner run` itself, against PyTorch measured in the same run.
//!
//! Writes 60,000 training and 10,000 validation MNIST-shaped images (random pixels, random
//! labels: the speed does not depend on what is learnt) as IDX files, then for each model
//! (the 784-256-128-10 `mlp` and the `cnn` defaults) and 1 and 2 threads runs the built
//! `runner` binary on them: batch 128, SGD with momentum 0.9, a cosine rate set every step,
//! six epochs, each ending with an evaluation of the 10,000 validation images. An epoch's
//! time is the difference of metrics.csv's `seconds` (evaluation included); the first
//! epoch warms up and the median of the other five is reported, with the process's peak
//! resident memory and the share of this machine's measured GEMM peak the training
//! reaches. The peer is `bench/pytorch_peer.py`, the same training in PyTorch on the same
//! files, run where `python3` (or `$PYTHON`) imports torch.
//!
//! Run with `cargo bench --bench throughput`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const TRAIN: usize = 60_000;
const VALIDATION: usize = 10_000;
const EPOCHS: usize = 6;

/// Writes `n` random 28x28 images and labels as `{prefix}-images-idx3-ubyte` and
/// `{prefix}-labels-idx1-ubyte`.
fn write_idx(dir: &Path, prefix: &str, n: usize, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(16 + n * 784);
    for v in [0x803u32, n as u32, 28, 28] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.extend((0..n * 784).map(|_| rng.random::<u8>()));
    let mut labels = Vec::with_capacity(8 + n);
    for v in [0x801u32, n as u32] {
        labels.extend_from_slice(&v.to_be_bytes());
    }
    labels.extend((0..n).map(|_| rng.random_range(0..10u8)));
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
}

/// Floating-point operations of one training sample (forward, backward, no input
/// gradient for the first layer) and the model's `[model]` table.
fn model(kind: &str) -> (f64, &'static str) {
    let dense = |i: f64, o: f64| 2.0 * i * o;
    match kind {
        "mlp" => {
            let (a, b, c) = (dense(784.0, 256.0), dense(256.0, 128.0), dense(128.0, 10.0));
            (a * 2.0 + (b + c) * 3.0, "kind = \"mlp\"\nhidden = [256, 128]")
        }
        _ => {
            // conv 1->16 and 16->32 (3x3, 28x28 and 14x14), dense 1568-64-10.
            let conv1 = 2.0 * 16.0 * 9.0 * 784.0;
            let conv2 = 2.0 * 32.0 * 144.0 * 196.0;
            let (d1, d2) = (dense(1568.0, 64.0), dense(64.0, 10.0));
            (conv1 * 2.0 + (conv2 + d1 + d2) * 3.0, "kind = \"cnn\"")
        }
    }
}

/// The median epoch time after the first, from a run's metrics.csv.
fn epoch_seconds(metrics: &Path) -> f64 {
    let text = std::fs::read_to_string(metrics).unwrap();
    let seconds: Vec<f64> = text.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(seconds.len(), EPOCHS, "{}: one evaluation per epoch", metrics.display());
    support::median(seconds.windows(2).map(|w| w[1] - w[0]).collect())
}

/// GFLOP/s of the gemm crate (the one runner's products use) on square f32 products of
/// 256, 512 and 1024, the best of five of each: this machine's measured peak.
fn gemm_peak(threads: usize) -> f64 {
    [256, 512, 1024].map(|n| gemm_rate(n, threads)).into_iter().fold(0.0, f64::max)
}

fn gemm_rate(n: usize, threads: usize) -> f64 {
    let (a, b, mut c) = (vec![1.0f32; n * n], vec![0.5f32; n * n], vec![0f32; n * n]);
    let parallelism = if threads == 1 { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(threads) };
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        // SAFETY: three n x n row-major matrices, c borrowed mutably apart from a and b.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

fn main() {
    println!("machine: {}", support::machine());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir(&data).unwrap();
    write_idx(&data, "train", TRAIN, 1);
    write_idx(&data, "t10k", VALIDATION, 2);
    let peaks: Vec<f64> = [1, 2].map(gemm_peak).to_vec();
    println!("gemm crate peak (square f32 products): {:.0} GFLOP/s on 1 thread, {:.0} on 2", peaks[0], peaks[1]);

    let runner = env!("CARGO_BIN_EXE_runner");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let torch = Command::new(&python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if !torch {
        println!("PyTorch peer not measured: `{python} -c \"import torch\"` fails (set PYTHON to a python with torch)");
    }
    println!(
        "{:<5} {:>7} {:>17} {:>8} {:>10} {:>18} {:>9} {:>15}",
        "model",
        "threads",
        "runner samples/s",
        "peak MB",
        "GEMM peak",
        "PyTorch samples/s",
        "peak MB",
        "runner/PyTorch"
    );
    let mut own = Vec::new();
    for kind in ["mlp", "cnn"] {
        let (flops, table) = model(kind);
        for threads in [1usize, 2] {
            let config = dir.path().join(format!("{kind}{threads}.toml"));
            let text = format!(
                "[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.05\n[model]\n{table}\n\
                 [optimizer]\nkind = \"sgd\"\nmomentum = 0.9\n\
                 [dataset]\nkind = \"mnist\"\ndir = \"{}\"\ntest_as_validation = true\n\
                 [train]\nepochs = {EPOCHS}\nbatch_size = 128\nthreads = {threads}\n",
                data.display()
            );
            std::fs::write(&config, text).unwrap();
            let out = dir.path().join(format!("out-{kind}{threads}"));
            let (_, peak) = support::run_measured(
                runner,
                &["run", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"],
            )
            .unwrap_or_else(|e| panic!("runner run {kind} failed: {e}"));
            let metrics = out.join(format!("{kind}{threads}")).join("cosine_decay").join("metrics.csv");
            let rate = TRAIN as f64 / epoch_seconds(&metrics);
            own.push(rate);
            let share = 100.0 * rate * flops / 1e9 / peaks[threads - 1];
            let peer = if torch {
                let script = "bench/pytorch_peer.py";
                let args = [script, data.to_str().unwrap(), kind, &threads.to_string(), &EPOCHS.to_string()];
                match support::run_measured(&python, &args) {
                    Ok((line, peak)) => {
                        let theirs: f64 =
                            line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                        format!("{theirs:>18.0} {peak:>9.0} {:>15.2}", rate / theirs)
                    }
                    Err(e) => format!("PyTorch failed: {e}"),
                }
            } else {
                String::new()
            };
            println!("{kind:<5} {threads:>7} {rate:>17.0} {peak:>8.0} {share:>9.0}% {peer}");
        }
    }
    println!(
        "2 threads / 1 thread: mlp {:.2}x, cnn {:.2}x; training data 188 MB as f32 (60,000 x 784), validation 31 MB",
        own[1] / own[0],
        own[3] / own[2]
    );
}
