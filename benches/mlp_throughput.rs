//! Training throughput against PyTorch, measured in the same run: a 784-256-128-10 MLP on
//! 60,000 synthetic MNIST-shaped samples (standard normal inputs, uniform labels), batch
//! 128, SGD with momentum 0.9, the rate set every step from a cosine decay; four epochs,
//! the first a warm-up and the median of the other three reported (one epoch alone swings
//! with the machine's load), at 1 and 2 threads. The peer is `bench/pytorch_mlp.py` (run when
//! python3 can import torch). Run with `cargo bench --bench mlp_throughput`.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use runner::config;
use runner::data::{Dataset, Split, Task};
use runner::train::{self, EvalRow, Recorder, StepRow};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;

const N: usize = 60_000;
const D: usize = 784;

fn split(n: usize, rng: &mut ChaCha8Rng) -> Split {
    let x: Vec<f32> = (0..n * D).map(|_| StandardNormal.sample(rng)).collect();
    let labels = Uniform::new(0u32, 10).unwrap();
    let y: Vec<u32> = (0..n).map(|_| labels.sample(rng)).collect();
    Split {
        x: Tensor::from_vec(x, (n, D), &Device::Cpu).unwrap(),
        y: Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
        len: n,
    }
}

/// Remembers when each evaluation (the end of each epoch) happened.
#[derive(Default)]
struct EpochClock(Vec<f64>);

impl Recorder for EpochClock {
    fn on_step(&mut self, _: &StepRow, _: u64, _: bool) -> anyhow::Result<()> {
        Ok(())
    }
    fn on_eval(&mut self, row: &EvalRow) -> anyhow::Result<()> {
        self.0.push(row.seconds);
        Ok(())
    }
}

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // A small validation part: the evaluation at the end of epoch 1 is inside the timing.
    let data = Dataset {
        name: "synthetic-mnist".into(),
        task: Task::Classification,
        features: D,
        classes: 10,
        image: None,
        train: split(N, &mut rng),
        validation: split(128, &mut rng),
    };
    let total = 4 * N.div_ceil(128);
    println!("machine: {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut ours = Vec::new();
    for threads in [1u64, 2] {
        let text = format!(
            "[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.05\ndecay_steps = {total}\n\
             [model]\nkind = \"mlp\"\nhidden = [256, 128]\n[optimizer]\nkind = \"sgd\"\nmomentum = 0.9\n\
             [train]\nepochs = 4\nbatch_size = 128\nthreads = {threads}\nlog_every = 100000\n"
        );
        let cfg = config::parse(Path::new("mlp_throughput.toml"), &text).unwrap();
        // SAFETY: set between runs, while no run is reading it.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads as usize).build().unwrap();
        let mut clock = EpochClock::default();
        pool.install(|| train::train(&cfg.run_spec(), &data, &mut clock, &AtomicBool::new(false))).unwrap();
        // Each epoch's time, from the evaluation that ends it (inside the timing, as in the peer).
        let mut epochs: Vec<f64> = clock.0.windows(2).map(|w| w[1] - w[0]).collect();
        epochs.sort_by(f64::total_cmp);
        let rate = N as f64 / epochs[epochs.len() / 2];
        println!("runner: threads {threads}: {rate:.0} samples/s");
        ours.push(rate);
    }
    let peer = Command::new("python3").arg("bench/pytorch_mlp.py").output();
    match peer {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            for (line, rate) in text.lines().zip(&ours) {
                let theirs: f64 = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                println!("pytorch {line}; runner / pytorch = {:.2}", rate / theirs);
            }
        }
        Ok(out) => {
            println!("PyTorch peer not measured: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""))
        }
        Err(e) => println!("PyTorch peer not measured: cannot run python3: {e}"),
    }
}
