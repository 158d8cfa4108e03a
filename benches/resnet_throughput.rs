//! ResNet-20 training throughput through `runner run`, against PyTorch in the same run.
//!
//! Writes CIFAR-10's training files with 50,000 random images (the speed does not depend
//! on what is learnt) and a small test file, then for 1 and 2 threads runs the built
//! `runner` binary on configs/cifar10_resnet20.toml without augmentation for SHORT and
//! LONG steps; the difference of the two wall times over the difference of steps is a
//! step's time (loading, the first steps and the final evaluation cancel). The peer is
//! `bench/pytorch_resnet_peer.py` (the ResNet-20 of the fidelity check, the same batches
//! of 128, SGD with momentum and weight decay), run where `python3` (or `$PYTHON`)
//! imports torch. Each thread count is measured in ROUNDS rounds, runner then PyTorch in
//! each (so a slow minute on a shared machine falls on both); prints the medians' samples/s,
//! peak memory, their ratio and the range of the rounds' own ratios.
//!
//! Run with `cargo bench --bench resnet_throughput` (about 5 minutes on 2 cores).

mod support;

const SHORT: usize = 6;
const LONG: usize = 26;
const ROUNDS: usize = 3;

fn main() {
    println!("machine: {}", support::machine());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    support::cifar_files(&data);
    let runner = env!("CARGO_BIN_EXE_runner");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/cifar10_resnet20.toml");
    let python = support::torch_python();
    println!(
        "{:>7} {:>17} {:>8} {:>18} {:>8} {:>15} {:>13}",
        "threads", "runner samples/s", "peak MB", "PyTorch samples/s", "peak MB", "runner/PyTorch", "rounds' range"
    );
    for threads in [1usize, 2] {
        let (dataset, threads_arg) = (format!("dataset.dir={}", data.display()), format!("train.threads={threads}"));
        let mut args = vec!["--set", &dataset, "--set", &threads_arg];
        args.extend(support::RESNET_PLAIN);
        let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut peak, mut their_peak, mut failure) = (0f64, 0f64, None);
        for round in 0..ROUNDS {
            let out = dir.path().join(format!("out-{threads}-{round}"));
            let (step, p) = support::seconds_per_step(runner, config, &args, &out, SHORT, LONG);
            let rate = 128.0 / step;
            ours.push(rate);
            peak = peak.max(p);
            let Some(python) = &python else { continue };
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/pytorch_resnet_peer.py");
            match support::run_measured(python, &[script, data.to_str().unwrap(), &threads.to_string(), "3", "20"]) {
                Ok((line, p)) => {
                    let rate_peer: f64 =
                        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                    theirs.push(rate_peer);
                    ratios.push(rate / rate_peer);
                    their_peak = their_peak.max(p);
                }
                Err(e) => failure = Some(e),
            }
        }
        let rate = support::median(ours);
        let peer = match (failure, python.is_some()) {
            (Some(e), _) => format!("  PyTorch failed: {e}"),
            (None, false) => String::new(),
            (None, true) => {
                let theirs = support::median(theirs);
                let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
                format!("{theirs:>18.1} {their_peak:>8.0} {:>15.2} {:>13}", rate / theirs, format!("{lo:.2}-{hi:.2}"))
            }
        };
        println!("{threads:>7} {rate:>17.1} {peak:>8.0} {peer}");
    }
}
