//! ResNet-20 training throughput through `runner run`, against PyTorch in the same run.
//!
//! Writes CIFAR-10's training files with 50,000 random images (the speed does not depend
//! on what is learnt) and a small test file, then for 1 and 2 threads runs the built
//! `runner` binary on configs/cifar10_resnet20.toml without augmentation for SHORT and
//! LONG steps; the difference of the two wall times over the difference of steps is a
//! step's time (loading, the first steps and the final evaluation cancel). The peer is
//! `bench/pytorch_resnet_peer.py` (the ResNet-20 of the fidelity check, the same batches
//! of 128, SGD with momentum and weight decay), run where `python3` (or `$PYTHON`)
//! imports torch. Prints samples/s, peak memory and the ratio.
//!
//! Run with `cargo bench --bench resnet_throughput` (about 6 minutes on 2 cores).

mod support;

const SHORT: usize = 6;
const LONG: usize = 26;

fn main() {
    use rand::{Rng, SeedableRng};
    println!("machine: {}", support::machine());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    std::fs::create_dir(&data).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for (name, n) in [
        ("data_batch_1.bin", 10_000),
        ("data_batch_2.bin", 10_000),
        ("data_batch_3.bin", 10_000),
        ("data_batch_4.bin", 10_000),
        ("data_batch_5.bin", 10_000),
        ("test_batch.bin", 500),
    ] {
        let mut bytes = Vec::with_capacity(n * 3073);
        for i in 0..n {
            bytes.push((i % 10) as u8);
            bytes.extend((0..3072).map(|_| rng.random::<u8>()));
        }
        std::fs::write(data.join(name), bytes).unwrap();
    }
    let runner = env!("CARGO_BIN_EXE_runner");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/cifar10_resnet20.toml");
    let python = support::torch_python();
    println!(
        "{:>7} {:>17} {:>8} {:>18} {:>8} {:>15}",
        "threads", "runner samples/s", "peak MB", "PyTorch samples/s", "peak MB", "runner/PyTorch"
    );
    for threads in [1usize, 2] {
        let (dataset, threads_arg) = (format!("dataset.dir={}", data.display()), format!("train.threads={threads}"));
        let args = [
            "--set",
            &dataset,
            "--set",
            "dataset.augment.crop_padding=0",
            "--set",
            "dataset.augment.flip=false",
            "--set",
            &threads_arg,
            "--set",
            "train.eval_every=100000",
        ];
        let out = dir.path().join(format!("out-{threads}"));
        let (step, peak) = support::seconds_per_step(runner, config, &args, &out, SHORT, LONG);
        let rate = 128.0 / step;
        let peer = if let Some(python) = &python {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/pytorch_resnet_peer.py");
            match support::run_measured(python, &[script, data.to_str().unwrap(), &threads.to_string(), "3", "20"]) {
                Ok((line, their_peak)) => {
                    let theirs: f64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                    format!("{theirs:>18.1} {their_peak:>8.0} {:>15.2}", rate / theirs)
                }
                Err(e) => format!("  PyTorch failed: {e}"),
            }
        } else {
            String::new()
        };
        println!("{threads:>7} {rate:>17.1} {peak:>8.0} {peer}");
    }
}
