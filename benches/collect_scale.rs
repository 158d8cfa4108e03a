//! What a sweep of 100,000 runs costs once trained: `runner collect` (summary.csv from
//! every run's summary.json) and `runner report`, on a synthetic experiment directory.
//! Four real runs are trained on digits, then each is hard-linked as a quarter of the
//! runs under new names (a runs.json listing them all), so every file is a real one.
//! Also the array split of such a sweep (how many `--array` values and their length).
//! Run with `cargo bench --bench collect_scale`; `RUNS=N` sets the size (default 100000),
//! `KEEP=1` keeps the directories.

#[path = "support/mod.rs"]
mod support;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use support::machine;

const SEED_SWEEP: &str = r#"
name = "seed"
[schedule]
kind = "cosine_decay"
learning_rate = 0.1
decay_steps = 60
[sweep]
seeds = [1, 2]
"schedule.learning_rate" = [0.1, 0.03]
[train]
epochs = 4
"#;

fn runner(args: &[&str], dir: &Path) -> (f64, bool, String) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_runner")).args(args).arg(dir).output().expect("the runner binary runs");
    let seconds = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    (seconds, out.status.success(), lines[lines.len().saturating_sub(12)..].join("\n"))
}

/// Peak resident memory of the children so far, in MB.
fn children_peak_mb() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    // SAFETY: initialised by the call above.
    unsafe { usage.assume_init() }.ru_maxrss as f64 / 1024.0
}

fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    println!("machine: {}", machine());
    let holder = tempfile::tempdir().unwrap();
    let root = holder.path().to_path_buf();
    let cfg = root.join("seed.toml");
    std::fs::write(&cfg, SEED_SWEEP).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["sweep", "-q"])
        .arg(&cfg)
        .arg("--out")
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    let seed = root.join("seed");
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(seed.join("runs.json")).unwrap()).unwrap();
    let originals = plan["runs"].as_array().unwrap().clone();

    let big = root.join("big");
    std::fs::create_dir_all(&big).unwrap();
    let start = Instant::now();
    let mut infos = Vec::with_capacity(runs);
    let mut bytes = 0u64;
    for k in 0..runs {
        let original = &originals[k % originals.len()];
        let from = seed.join(original["name"].as_str().unwrap());
        let mut info = original.clone();
        let name = format!("{}-copy{}", original["name"].as_str().unwrap(), k / originals.len());
        info["name"] = Value::from(name.clone());
        info["variant"] = Value::from(format!("{}-copy{}", original["variant"].as_str().unwrap(), k / originals.len()));
        let to = big.join(&name);
        std::fs::create_dir(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            if entry.path().is_file() {
                std::fs::hard_link(entry.path(), to.join(entry.file_name())).unwrap();
                if k < originals.len() {
                    bytes += entry.metadata().unwrap().len();
                }
            }
        }
        infos.push(info);
    }
    let mut big_plan = plan.clone();
    big_plan["experiment"] = Value::from("big");
    big_plan["runs"] = Value::from(infos);
    let runs_json = serde_json::to_string_pretty(&big_plan).unwrap();
    std::fs::write(big.join("runs.json"), &runs_json).unwrap();
    println!(
        "{runs} runs written in {:.1} s (hard links of 4 trained runs, {:.1} kB of files each); runs.json {:.1} MB",
        start.elapsed().as_secs_f64(),
        bytes as f64 / 4.0 / 1e3,
        runs_json.len() as f64 / 1e6
    );

    let indices: Vec<usize> = (0..runs).collect();
    let arrays = runner::slurm::split(&indices, runner::slurm::DEFAULT_MAX_ARRAY_SIZE);
    let longest = arrays.iter().map(|a| a.spec(Some(50)).len()).max().unwrap_or(0);
    // jobs.json as `runner sweep --backend slurm` writes it (write_json_atomic: pretty JSON).
    let jobs: Vec<runner::slurm::JobRecord> = arrays
        .iter()
        .enumerate()
        .map(|(k, a)| runner::slurm::JobRecord {
            job_id: (4242 + k).to_string(),
            runs: a.runs.clone(),
            submitted_at: 1.0e9,
            offset: a.offset,
        })
        .collect();
    let jobs_json = serde_json::to_vec_pretty(&jobs).unwrap();
    println!(
        "Slurm: {} job arrays with MaxArraySize 1001, the longest --array value {longest} characters; \
         jobs.json {:.1} MB",
        arrays.len(),
        jobs_json.len() as f64 / 1e6
    );

    for (what, args) in [("collect", vec!["collect", "-q"]), ("report", vec!["report"])] {
        let mut times = Vec::new();
        for _ in 0..3 {
            let (seconds, ok, last) = runner(&args, &big);
            if !ok {
                println!("runner {what} failed; the end of what it said:\n{last}");
                println!("kept in {}", holder.keep().display());
                std::process::exit(1);
            }
            times.push(seconds);
        }
        println!(
            "runner {what} of {runs} runs: {:.2} s (median of 3; children's peak memory so far {:.0} MB)",
            support::median(times),
            children_peak_mb()
        );
    }
    let csv = std::fs::read_to_string(big.join("summary.csv")).unwrap();
    println!("summary.csv: {} rows, {:.1} MB", csv.lines().count() - 1, csv.len() as f64 / 1e6);
    // KEEP=1 keeps the directories to look at afterwards.
    if std::env::var_os("KEEP").is_some() {
        println!("kept in {}", holder.keep().display());
    }
}
