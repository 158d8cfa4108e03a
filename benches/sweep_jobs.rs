//! The sweep of the ten decays on digits with 1 job and with 2 jobs (the release binary,
//! interleaved, median of several), and the runner's own per-run overhead: the same run
//! trained with a recorder that drops everything against the real one (CSV files and
//! progress lines). Run with `cargo bench --bench sweep_jobs`.

#[path = "support/mod.rs"]
mod support;
use runner::data;
use runner::plan;
use runner::progress::{Progress, Tee};
use runner::store::RunDir;
use runner::train;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use support::{Nothing, machine, median};

fn sweep_seconds(jobs: u32, out: &Path) -> f64 {
    let _ = std::fs::remove_dir_all(out);
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["run", "configs/sweep_all_decays.toml", "--quiet", "--jobs", &jobs.to_string(), "--out"])
        .arg(out)
        .status()
        .expect("the runner binary runs");
    assert!(status.success());
    start.elapsed().as_secs_f64()
}

fn main() {
    // As `runner run` does for a run of 1 thread (the default): candle reads this.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    let tmp = tempfile::tempdir().unwrap();
    println!("machine: {}", machine());
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        one.push(sweep_seconds(1, &tmp.path().join("one")));
        two.push(sweep_seconds(2, &tmp.path().join("two")));
    }
    let (one, two) = (median(one), median(two));
    println!("sweep of the ten decays on digits: 1 job {one:.2} s, 2 jobs {two:.2} s, ratio {:.2}", two / one);

    // Time to the first training step, bounded by a whole one-step run of the binary on
    // digits: start, config, data, model, one step, one evaluation, files.
    let first = tmp.path().join("first.toml");
    std::fs::write(&first, "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nsteps = 1\n").unwrap();
    let mut times = Vec::new();
    for i in 0..5 {
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg("run")
            .arg(&first)
            .args(["--quiet", "--out"])
            .arg(tmp.path().join(format!("first{i}")))
            .status()
            .unwrap();
        assert!(status.success());
        times.push(start.elapsed().as_secs_f64());
    }
    println!(
        "a whole one-step digits run of the binary (bounds the time to the first step): {:.0} ms",
        median(times) * 1e3
    );

    let cfg = plan::load(Path::new("configs/cosine.toml")).unwrap();
    let data = std::sync::Arc::new(data::prepare(&cfg.dataset).unwrap());
    let spec = cfg.run_spec();
    let stop = AtomicBool::new(false);
    let (mut bare, mut full) = (Vec::new(), Vec::new());
    for i in 0..7 {
        let start = Instant::now();
        train::train(&spec, &data, &mut Nothing, &stop).unwrap();
        bare.push(start.elapsed().as_secs_f64());
        let dir = tmp.path().join(format!("run{i}"));
        let start = Instant::now();
        let mut run_dir = RunDir::create(&dir, &cfg.to_toml()).unwrap();
        // Plain progress lines, as in CI; they go to stderr.
        let mut progress = Progress::Lines {
            total: cfg.train.total_steps(data.train.len),
            next_percent: 0,
            label: "bench".into(),
            last_eval: String::new(),
        };
        train::train(&spec, &data, &mut Tee(&mut run_dir, &mut progress), &stop).unwrap();
        full.push(start.elapsed().as_secs_f64());
    }
    // The run directory's creation (a directory, config.toml, two CSV headers) is paid once
    // per run, not per step.
    let mut create = Vec::new();
    for i in 0..7 {
        let start = Instant::now();
        drop(RunDir::create(&tmp.path().join(format!("create{i}")), &cfg.to_toml()).unwrap());
        create.push(start.elapsed().as_secs_f64());
    }
    let (bare, full, create) = (median(bare), median(full), median(create));
    println!(
        "configs/cosine.toml: training alone {:.1} ms, with CSV files and progress {:.1} ms: runner overhead {:.2}% \
         ({:.2} ms creating the run directory, once; the per-step work {:.2}%)",
        bare * 1e3,
        full * 1e3,
        (full - bare) / bare * 100.0,
        create * 1e3,
        (full - bare - create) / bare * 100.0
    );
}
