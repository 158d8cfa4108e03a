//! What the benches share: the machine they ran on, the median of timings, and a recorder
//! that keeps nothing.
#![allow(dead_code)] // each bench uses some of it

use runner::train::{EvalRow, Recorder, StepRow};
use std::path::Path;

/// A recorder that drops everything: training alone.
pub struct Nothing;

impl Recorder for Nothing {
    fn on_step(&mut self, _: &StepRow, _: u64, _: bool) -> anyhow::Result<()> {
        Ok(())
    }
    fn on_eval(&mut self, _: &EvalRow) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The middle value of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The CPU model and core count, for the figures reported.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// Runs `program args` and returns its standard output and peak resident memory in MB
/// (from wait4's resource usage of that child alone).
pub fn run_measured(program: &str, args: &[&str]) -> Result<(String, f64), String> {
    use std::io::Read;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let err = reader.join().unwrap();
    let (pid, mut status) = (child.id() as libc::pid_t, 0);
    // SAFETY: a zeroed rusage is a valid value; wait4 fills it for our own child, which
    // std has not reaped (its Child is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    Ok((out, usage.ru_maxrss as f64 / 1024.0))
}

/// The python (`$PYTHON`, else `python3`) that imports torch, or `None` after saying so.
pub fn torch_python() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let ok =
        std::process::Command::new(&python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("PyTorch peer not measured: `{python} -c \"import torch\"` fails (set PYTHON to a python with torch)");
        return None;
    }
    Some(python)
}

/// Seconds per step of `runner run CONFIG --quiet ARGS...`: the run timed at `short` and
/// at `long` steps (`--set train.steps=N`, results under `out`), the difference of the
/// wall times over the difference of steps (loading, the first steps and the final
/// evaluation cancel); and the larger peak memory in MB.
pub fn seconds_per_step(
    runner: &str,
    config: &str,
    args: &[&str],
    out: &Path,
    short: usize,
    long: usize,
) -> (f64, f64) {
    let mut times = Vec::new();
    let mut peak = 0f64;
    for steps in [short, long] {
        let dir = out.join(format!("steps-{steps}"));
        let steps_arg = format!("train.steps={steps}");
        let mut all = vec!["run", config, "--quiet", "--out", dir.to_str().unwrap(), "--set", &steps_arg];
        all.extend_from_slice(args);
        let start = std::time::Instant::now();
        let (_, p) = run_measured(runner, &all).unwrap_or_else(|e| panic!("runner run failed: {e}"));
        times.push(start.elapsed().as_secs_f64());
        peak = peak.max(p);
    }
    ((times[1] - times[0]) / (long - short) as f64, peak)
}

/// The ResNet benches' settings for `runner run` on configs/cifar10_resnet20.toml: no
/// augmentation, no evaluation before the end (what the PyTorch peer does).
pub const RESNET_PLAIN: [&str; 6] = [
    "--set",
    "dataset.augment.crop_padding=0",
    "--set",
    "dataset.augment.flip=false",
    "--set",
    "train.eval_every=100000",
];

/// CIFAR-10's binary files in `data` with 50,000 random training images (the speed does
/// not depend on what is learnt) and 500 test images.
pub fn cifar_files(data: &Path) {
    use rand::{Rng, SeedableRng};
    std::fs::create_dir_all(data).unwrap();
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
}
