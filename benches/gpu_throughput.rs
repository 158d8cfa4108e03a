//! Training throughput on an NVIDIA GPU through `runner run --device cuda`, against PyTorch
//! eager on the same GPU in the same run. Needs a runner built with `--features cuda`, a GPU,
//! and `python3` (or `$PYTHON`) with torch built for CUDA; `scripts/gpu-check.sh` builds it
//! here and runs it there.
//!
//! - ResNet-20 on CIFAR-shaped data (50,000 random images: the speed does not depend on what
//!   is learnt), batches of 128, SGD with momentum, no augmentation, f32: images/s.
//! - The Shakespeare transformer (configs/shakespeare_char.toml) in batches of 64 windows:
//!   tokens/s.
//!
//! Each as in the CPU benches: runner timed at SHORT and LONG steps, the difference of the
//! wall times over the difference of steps (loading, the first steps and the final
//! evaluation cancel); PyTorch (bench/pytorch_*_peer.py with DEVICE cuda) timed over LONG -
//! SHORT steps after SHORT warm-up steps, in f32 and with TF32 (PyTorch's matrix products
//! may use it; runner's do not).
//! - A sweep of 8 ResNet-20 runs of LONG steps with `--runs-per-gpu 8` against 8 PyTorch
//!   processes at once: images/s of all of them together, start to end (both include their
//!   start-up).
//!
//! ROUNDS rounds (default 3, `GPU_BENCH_ROUNDS`), runner then PyTorch in each; prints the
//! medians, their ratio and the range of the rounds' ratios. `RUNNER_BIN` and `RUNNER_ROOT`
//! point at the binary and the repository when the bench runs away from where it was built.

mod support;

use std::path::PathBuf;

const SHORT: usize = 20;
const LONG: usize = 220;
const SWEEP_RUNS: usize = 8;

fn root() -> PathBuf {
    std::env::var_os("RUNNER_ROOT").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn runner_bin() -> String {
    std::env::var("RUNNER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_runner").to_string())
}

/// The first number after `key` in a peer's output line.
fn field(line: &str, key: &str) -> f64 {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        }
    }
    f64::NAN
}

struct Row {
    what: &'static str,
    unit: &'static str,
    ours: Vec<f64>,
    f32: Vec<f64>,
    tf32: Vec<f64>,
}

impl Row {
    fn print(&self) {
        let ratios: Vec<f64> = self.ours.iter().zip(&self.f32).map(|(a, b)| a / b).collect();
        let (lo, hi) = ratios.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &r| (l.min(r), h.max(r)));
        let (ours, f32, tf32) =
            (support::median(self.ours.clone()), support::median(self.f32.clone()), support::median(self.tf32.clone()));
        println!(
            "{:<28} {:>14.0} {:>14.0} {:>14.0} {:>9.2} {:>7.2}-{:<5.2} {}",
            self.what,
            ours,
            f32,
            tf32,
            ours / f32,
            lo,
            hi,
            self.unit
        );
    }
}

fn main() {
    println!("machine: {}", support::machine());
    let gpu = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("nvidia-smi: {e}"));
    println!("gpu: {gpu}");
    let rounds: usize = std::env::var("GPU_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let (root, runner) = (root(), runner_bin());
    let Some(python) = support::torch_python() else {
        println!("no python3 with torch ($PYTHON): PyTorch not measured; this bench compares, so it stops here");
        std::process::exit(1);
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    support::cifar_files(&data);
    let path = |p: &str| root.join(p).to_string_lossy().into_owned();
    let (resnet, text_config, text) =
        (path("configs/cifar10_resnet20.toml"), path("configs/shakespeare_char.toml"), path("data/shakespeare.txt.gz"));
    let (resnet_peer, text_peer) = (path("bench/pytorch_resnet_peer.py"), path("bench/pytorch_transformer_peer.py"));
    let dataset = format!("dataset.dir={}", data.display());
    let mut resnet_args = vec!["--set", &dataset, "--device", "cuda"];
    resnet_args.extend(support::RESNET_PLAIN);
    let text_args = [
        "--set",
        "train.batch_size=64",
        "--set",
        "train.eval_every=100000",
        "--set",
        "train.eval_batches=1",
        "--device",
        "cuda",
    ];
    // The sweep: the ResNet config with eight seeds.
    let sweep = dir.path().join("sweep8.toml");
    let base = std::fs::read_to_string(&resnet).unwrap();
    let seeds: Vec<String> = (1..=SWEEP_RUNS).map(|s| s.to_string()).collect();
    std::fs::write(&sweep, format!("{base}\n[sweep]\nseeds = [{}]\n", seeds.join(", "))).unwrap();
    let mut rows = [
        Row { what: "ResNet-20, batch 128", unit: "images/s", ours: vec![], f32: vec![], tf32: vec![] },
        Row { what: "transformer, batch 64x64", unit: "tokens/s", ours: vec![], f32: vec![], tf32: vec![] },
        Row { what: "8 ResNet-20 runs at once", unit: "images/s", ours: vec![], f32: vec![], tf32: vec![] },
    ];
    let peer = |args: &[&str]| -> String {
        support::run_measured(&python, args).map(|(line, _)| line).unwrap_or_else(|e| panic!("PyTorch failed: {e}"))
    };
    let warm = SHORT.to_string();
    let timed = (LONG - SHORT).to_string();
    for round in 0..rounds {
        let out = dir.path().join(format!("round-{round}"));
        let (step, _) = support::seconds_per_step(&runner, &resnet, &resnet_args, &out.join("resnet"), SHORT, LONG);
        rows[0].ours.push(128.0 / step);
        let data_dir = data.to_str().unwrap();
        rows[0].f32.push(field(&peer(&[&resnet_peer, data_dir, "4", &warm, &timed, "cuda", "0"]), "samples/s"));
        rows[0].tf32.push(field(&peer(&[&resnet_peer, data_dir, "4", &warm, &timed, "cuda", "1"]), "samples/s"));

        let (step, _) = support::seconds_per_step(&runner, &text_config, &text_args, &out.join("text"), SHORT, LONG);
        rows[1].ours.push(64.0 * 64.0 / step);
        rows[1].f32.push(field(&peer(&[&text_peer, &text, "4", &warm, &timed, "64", "cuda", "0"]), "tokens/s"));
        rows[1].tf32.push(field(&peer(&[&text_peer, &text, "4", &warm, &timed, "64", "cuda", "1"]), "tokens/s"));

        let steps = format!("train.steps={LONG}");
        let sweep_out = out.join("sweep");
        let mut args = vec!["sweep", sweep.to_str().unwrap(), "--quiet", "--out", sweep_out.to_str().unwrap()];
        args.extend(["--set", &steps, "--runs-per-gpu", "8"]);
        args.extend(&resnet_args);
        let start = std::time::Instant::now();
        support::run_measured(&runner, &args).unwrap_or_else(|e| panic!("runner sweep failed: {e}"));
        rows[2].ours.push((SWEEP_RUNS * LONG * 128) as f64 / start.elapsed().as_secs_f64());
        for tf32 in ["0", "1"] {
            let start = std::time::Instant::now();
            let children: Vec<_> = (0..SWEEP_RUNS)
                .map(|_| {
                    std::process::Command::new(&python)
                        .args([&resnet_peer, data_dir, "1", "0", &LONG.to_string(), "cuda", tf32])
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect();
            for mut c in children {
                assert!(c.wait().unwrap().success(), "a PyTorch process failed");
            }
            let rate = (SWEEP_RUNS * LONG * 128) as f64 / start.elapsed().as_secs_f64();
            if tf32 == "0" { rows[2].f32.push(rate) } else { rows[2].tf32.push(rate) }
        }
    }
    println!(
        "{:<28} {:>14} {:>14} {:>14} {:>9} {:>13}",
        "", "runner", "PyTorch f32", "PyTorch TF32", "ratio", "rounds' range"
    );
    for row in &rows {
        row.print();
    }
    println!("(ratio: runner over PyTorch f32, medians of {rounds} rounds; runner's matrix products are f32)");
}
