//! Sweeps beyond one machine, through the real binary: shards and `runner collect`,
//! `run-one`, the errors of `--backend slurm`, and (ignored by default, run by `.ci/run`
//! after `scripts/slurm-local.sh up`) a real one-node Slurm cluster: the ten decays as a
//! job array with --wait against the same sweep run locally, two tasks at once, a killed
//! task, resubmission, a refused submission, a sweep split into arrays under a lowered
//! MaxArraySize, a paused controller and a job that can never start.

mod common;

use common::{closed_pipe, column, config, csv_rows, results_without_clock, runner};
use predicates::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Four short runs (two rates x two seeds).
const FOUR: &str = r#"
name = "four"
[schedule]
kind = "cosine_decay"
learning_rate = 0.1
decay_steps = 40
[sweep]
seeds = [1, 2]
"schedule.learning_rate" = [0.1, 0.03]
[train]
steps = 40
"#;

#[test]
fn shards_split_a_sweep_and_collect_merges_them_into_the_full_result() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let (a, b, full) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("full"));
    for (shard, out) in [("0/2", &a), ("1/2", &b)] {
        runner().args(["sweep", "-q", "--shard", shard]).arg(&cfg).arg("--out").arg(out).assert().success();
    }
    runner().args(["sweep", "-q"]).arg(&cfg).arg("--out").arg(&full).assert().success();
    let names = |p: &Path| -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("summary.json").exists())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    // Runs 0 and 2 (the rate 0.1, both seeds... in plan order) in one shard, 1 and 3 in the other.
    let plan: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(full.join("four/runs.json")).unwrap()).unwrap();
    let order: Vec<String> =
        plan["runs"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().into()).collect();
    let mut shard0 = vec![order[0].clone(), order[2].clone()];
    shard0.sort();
    let mut shard1 = vec![order[1].clone(), order[3].clone()];
    shard1.sort();
    assert_eq!(names(&a.join("four")), shard0);
    assert_eq!(names(&b.join("four")), shard1);

    runner()
        .arg("collect")
        .arg(a.join("four"))
        .arg(b.join("four"))
        .assert()
        .success()
        .stdout(predicate::str::contains("four: 4 runs: 4 completed"))
        .stderr(predicate::str::contains("merged 2 finished runs"));
    let rows = csv_rows(&a.join("four/summary.csv"));
    assert_eq!(column(&rows, "status"), vec!["completed"; 4]);
    assert_eq!(results_without_clock(&a.join("four")), results_without_clock(&full.join("four")));
    // Merging again copies nothing: every run is already there and finished.
    runner()
        .arg("collect")
        .arg(a.join("four"))
        .arg(b.join("four"))
        .assert()
        .success()
        .stderr(predicate::str::contains("merged 0 finished runs"));
}

#[test]
fn a_plan_run_one_index_at_a_time_gives_the_same_results_as_the_sweep() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let (planned, full) = (dir.path().join("planned"), dir.path().join("full"));
    runner()
        .args(["sweep", "--plan"])
        .arg(&cfg)
        .arg("--out")
        .arg(&planned)
        .assert()
        .success()
        .stderr(predicate::str::contains("4 runs planned into").and(predicate::str::contains("--index I")));
    let exp = planned.join("four");
    assert_eq!(fs::read_dir(exp.join("plan")).unwrap().count(), 4);
    runner().arg("collect").arg(&exp).assert().success().stdout(predicate::str::contains("four: 4 runs: 4 pending"));
    for i in 0..4 {
        runner().arg("run-one").arg(&exp).args(["--index", &i.to_string(), "-q"]).assert().success();
    }
    // A second time, each run is kept.
    runner()
        .arg("run-one")
        .arg(&exp)
        .args(["--index", "2"])
        .assert()
        .success()
        .stderr(predicate::str::contains("finished earlier with this config; kept"));
    runner().arg("collect").arg(&exp).assert().success().stdout(predicate::str::contains("four: 4 runs: 4 completed"));
    runner().args(["sweep", "-q"]).arg(&cfg).arg("--out").arg(&full).assert().success();
    assert_eq!(results_without_clock(&exp), results_without_clock(&full.join("four")));
    // The planned configs are the ones a local sweep resolves, so it keeps every run.
    runner()
        .args(["sweep"])
        .arg(&cfg)
        .arg("--out")
        .arg(&planned)
        .assert()
        .success()
        .stderr(predicate::str::contains("4 kept from before"));
}

#[test]
fn a_bad_shard_is_refused() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    runner()
        .args(["sweep", "--shard", "2/2"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("must be I/N with 0 <= I < N"));
    runner()
        .args(["sweep", "--shard", "4/5"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("o"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("shard 4/5 holds none of the 4 runs"));
}

#[test]
fn run_one_needs_a_planned_directory_and_an_index_inside_it() {
    let dir = TempDir::new().unwrap();
    runner()
        .arg("run-one")
        .arg(dir.path())
        .args(["--index", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("runs.json").and(predicate::str::contains("planned into")));
    // A local sweep writes runs.json but plans no configs.
    let cfg = config(dir.path(), "four", FOUR);
    runner().args(["sweep", "-q", "--shard", "0/4"]).arg(&cfg).arg("--out").arg(dir.path()).assert().success();
    let exp = dir.path().join("four");
    runner().arg("run-one").arg(&exp).args(["--index", "4"]).assert().code(2).stderr(
        predicate::str::contains("--index 4 is out of range").and(predicate::str::contains("plans 4 runs (0 to 3)")),
    );
    runner()
        .arg("run-one")
        .arg(&exp)
        .args(["--index", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("plan/").and(predicate::str::contains("is missing")));
}

#[test]
fn the_slurm_dry_run_prints_the_script_and_submits_nothing() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let out = dir.path().join("out");
    runner()
        .args(["sweep", "--backend", "slurm", "--dry-run", "--max-parallel", "2", "--partition", "cpu"])
        .args(["--time", "0:10:00", "--mem", "1G", "--account", "lab", "--qos", "short", "--sbatch=--exclusive"])
        .args(["--cpus-per-task", "2", "--setup", "module load rust"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("4 of 4 runs to submit")
                .and(predicate::str::contains("sbatch --array=0-3%2 "))
                .and(predicate::str::contains("#SBATCH --cpus-per-task=2\n"))
                .and(predicate::str::contains("#SBATCH --partition=cpu\n"))
                .and(predicate::str::contains("#SBATCH --time=0:10:00\n"))
                .and(predicate::str::contains("#SBATCH --mem=1G\n"))
                .and(predicate::str::contains("#SBATCH --account=lab\n"))
                .and(predicate::str::contains("#SBATCH --qos=short\n"))
                .and(predicate::str::contains("#SBATCH --exclusive\n"))
                .and(predicate::str::contains("module load rust\n"))
                .and(predicate::str::contains("run-one"))
                .and(predicate::str::contains("--index \"$(( offset + SLURM_ARRAY_TASK_ID ))\"")),
        );
    assert!(!out.exists());
    // More runs than the cluster's MaxArraySize: several arrays, each task id below it,
    // one after another to keep --max-parallel.
    runner()
        .args(["sweep", "--backend", "slurm", "--dry-run", "--max-parallel", "2", "--max-array-size", "3"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(
            predicate::str::contains(
                "4 of 4 runs to submit as 2 Slurm job arrays (task ids below 3: --max-array-size)",
            )
            .and(predicate::str::contains("sbatch --array=0-2%2 "))
            .and(predicate::str::contains("sbatch --array=0%2 --dependency=afterany:<the array before> ")),
        );
    assert!(!out.exists());
}

#[test]
fn slurm_settings_in_the_file_are_checked_where_they_are_written() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "bad", &format!("{FOUR}\n[sweep.slurm]\npartition = \"cpu\"\ntime = \"1h\"\n"));
    runner()
        .args(["sweep", "--backend", "slurm", "--dry-run"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.toml:15:8").and(predicate::str::contains("must be a Slurm time limit")));
    let cfg = config(dir.path(), "typo", &format!("{FOUR}\n[sweep.slurm]\npartiton = \"cpu\"\n"));
    runner()
        .args(["sweep", "--dry-run"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean `partition`"));
    // The file's backend and options are used when the command line names none.
    let cfg = config(
        dir.path(),
        "good",
        &format!(
            "{}\n[sweep.slurm]\npartition = \"cpu\"\nmax_parallel = 3\nsbatch = [\"--gres=gpu:1\"]\n",
            FOUR.replace("[sweep]\n", "[sweep]\nbackend = \"slurm\"\n")
        ),
    );
    runner().args(["sweep", "--dry-run", "--max-parallel", "1"]).arg(&cfg).assert().success().stdout(
        predicate::str::contains("#SBATCH --partition=cpu\n")
            .and(predicate::str::contains("sbatch --array=0-3%1 "))
            .and(predicate::str::contains("#SBATCH --gres=gpu:1\n")),
    );
}

#[test]
fn a_time_limit_that_slurms_early_signal_could_use_up_is_refused() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    runner()
        .args(["sweep", "--backend", "slurm", "--dry-run", "--time", "1", "--signal-grace", "30", "--requeue"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("a time limit of 1 (60 s) is not more than the signal grace (30 s)")
                .and(predicate::str::contains("requeued over and over"))
                .and(predicate::str::contains("above 90 s (e.g. --time 2) or a smaller --signal-grace")),
        );
    // From the file, with the default grace of 60 s.
    let cfg = config(dir.path(), "short", &format!("{FOUR}\n[sweep.slurm]\ntime = \"2:00\"\n"));
    runner()
        .args(["sweep", "--backend", "slurm", "--dry-run"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("a time limit of 2:00 (120 s)").and(predicate::str::contains("(60 s)")));
    runner()
        .args(["sweep", "--backend", "slurm", "--dry-run", "--signal-grace", "50"])
        .arg(&cfg)
        .assert()
        .success()
        .stdout(predicate::str::contains("#SBATCH --signal=B:TERM@50\n"));
}

#[test]
fn slurm_options_without_the_slurm_backend_are_refused() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    runner()
        .args(["sweep", "--partition", "cpu"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("need --backend slurm"));
}

#[test]
fn without_sbatch_the_error_says_so_and_what_else_works() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    runner()
        .env("PATH", dir.path())
        .args(["sweep", "--backend", "slurm"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("`sbatch` was not found on PATH").and(predicate::str::contains("--shard I/N")),
        );
    // Nothing recorded: no runs.json, plan, script or log directory.
    assert!(!dir.path().join("out/four").exists(), "a refused submission left files behind");
}

#[test]
fn an_output_directory_that_cannot_be_written_is_refused_before_submitting() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let submit = |out: &Path| {
        runner().env("PATH", dir.path()).args(["sweep", "--backend", "slurm"]).arg(&cfg).arg("--out").arg(out).assert()
    };
    submit(&file).code(2).stderr(predicate::str::contains("a-file is a file where the output directory (--out) goes"));
    // A directory that cannot be made (under a file, refused even to root): said with what
    // the nodes need.
    submit(&file.join("sub"))
        .code(2)
        .stderr(predicate::str::contains("cannot write to").and(predicate::str::contains("file system every node")));
}

// ---- A real Slurm cluster (scripts/slurm-local.sh up) ----

/// Fails with what went wrong when no Slurm cluster answers.
fn require_slurm() {
    let out = Process::new("sinfo").args(["--noheader", "-o", "%T"]).output();
    match out {
        Ok(o) if o.status.success() && !String::from_utf8_lossy(&o.stdout).trim().is_empty() => {}
        Ok(o) => panic!(
            "no Slurm cluster answers (`sinfo` exited with {}): {}{}\nstart one with `scripts/slurm-local.sh up`",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("`sinfo` cannot be run ({e}); start a cluster with `scripts/slurm-local.sh up`"),
    }
}

/// configs/sweep_all_decays.toml with fewer epochs (15 of 30: each run still takes long enough that two overlap).
fn short_all_decays(dir: &Path) -> PathBuf {
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sweep_all_decays.toml")).unwrap();
    assert!(text.contains("epochs = 30"));
    config(dir, "sweep_all_decays", &text.replace("epochs = 30", "epochs = 15"))
}

fn slurm_sweep(cfg: &Path, out: &Path) -> assert_cmd::Command {
    let mut c = runner();
    c.args(["sweep", "--backend", "slurm", "--wait", "--poll", "0.5", "--max-parallel", "2", "--cpus-per-task", "1"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .timeout(Duration::from_secs(300));
    c
}

/// (start, end) of every run, in seconds since the epoch, from the summaries.
fn intervals(exp: &Path) -> Vec<(f64, f64)> {
    fs::read_dir(exp)
        .unwrap()
        .map(|e| e.unwrap().path().join("summary.json"))
        .filter(|p| p.exists())
        .map(|p| {
            let s: serde_json::Value = serde_json::from_str(&fs::read_to_string(p).unwrap()).unwrap();
            let start = s["started_at"].as_f64().unwrap();
            (start, start + s["wall_seconds"].as_f64().unwrap())
        })
        .collect()
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm-local.sh up"]
fn slurm_runs_the_ten_decays_as_a_job_array_like_a_local_sweep_and_resubmission_skips_finished_runs() {
    require_slurm();
    let dir = TempDir::new().unwrap();
    let cfg = short_all_decays(dir.path());
    let (local, cluster) = (dir.path().join("local"), dir.path().join("cluster"));
    runner().args(["sweep", "-q", "--jobs", "2"]).arg(&cfg).arg("--out").arg(&local).assert().success();

    let out = slurm_sweep(&cfg, &cluster).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("10 runs as array tasks 0-9%2"), "{stderr}");
    assert!(stderr.contains("ended: 10 completed"), "{stderr}");
    let exp = cluster.join("sweep_all_decays");
    assert_eq!(results_without_clock(&exp), results_without_clock(&local.join("sweep_all_decays")));
    let rows = csv_rows(&exp.join("summary.csv"));
    assert_eq!(column(&rows, "status"), vec!["completed"; 10]);
    assert_eq!(fs::read_dir(exp.join("slurm/logs")).unwrap().count(), 10);

    // Two array tasks trained at the same time (the node has 2 CPUs, 1 per task).
    let spans = intervals(&exp);
    let overlapping = spans.iter().enumerate().any(|(i, a)| spans[i + 1..].iter().any(|b| a.0 < b.1 && b.0 < a.1));
    assert!(overlapping, "no two runs overlapped in time: {spans:?}");

    // Submitting again submits nothing and leaves the results alone.
    let before = fs::read(exp.join("cosine_decay/summary.json")).unwrap();
    let jobs_before = fs::read_to_string(exp.join("slurm/jobs.json")).unwrap();
    slurm_sweep(&cfg, &cluster).assert().success().stderr(predicate::str::contains("nothing to submit"));
    assert_eq!(fs::read(exp.join("cosine_decay/summary.json")).unwrap(), before);
    assert_eq!(fs::read_to_string(exp.join("slurm/jobs.json")).unwrap(), jobs_before);

    // A run whose result is lost is the only one resubmitted, and comes back the same;
    // asking for memory as the README's example does is accepted.
    let metrics = fs::read_to_string(exp.join("polynomial_decay/steps.csv")).unwrap();
    fs::remove_dir_all(exp.join("polynomial_decay")).unwrap();
    slurm_sweep(&cfg, &cluster).args(["--mem", "2G"]).assert().success().stderr(
        predicate::str::contains("1 run as array tasks 3%2").and(predicate::str::contains("9 finished earlier, kept")),
    );
    assert_eq!(fs::read_to_string(exp.join("polynomial_decay/steps.csv")).unwrap(), metrics);
    assert_eq!(column(&csv_rows(&exp.join("summary.csv")), "status"), vec!["completed"; 10]);
}

/// Two long runs, to be killed while they train.
const LONG: &str = r#"
name = "long"
[sweep]
schedules = ["cosine_decay", "exponential_decay"]
[train]
steps = 1000000
"#;

/// The experiment's slurm/jobs.json: every job array submitted, oldest first.
fn jobs_json(exp: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&fs::read_to_string(exp.join("slurm/jobs.json")).unwrap()).unwrap()
}

/// The id of the experiment's first submitted Slurm job.
fn first_job(exp: &Path) -> String {
    jobs_json(exp)[0]["job_id"].as_str().unwrap().to_string()
}

/// Returns once squeue lists none of `job`'s tasks (at most a minute).
fn wait_until_slurm_forgets(job: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = Process::new("squeue").args(["--noheader", "--jobs", job]).output().unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "job {job} did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm-local.sh up"]
fn a_task_cancelled_while_pending_stays_pending_rather_than_failed() {
    require_slurm();
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "long", LONG);
    let out = dir.path().join("out");
    // One task at a time: the second waits, pending, while the first trains.
    runner()
        .args(["sweep", "--backend", "slurm", "--max-parallel", "1"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let exp = out.join("long");
    let job = first_job(&exp);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !exp.join("cosine_decay/steps.csv").exists() {
        assert!(Instant::now() < deadline, "the first task did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(Process::new("scancel").arg(&job).status().unwrap().success());
    wait_until_slurm_forgets(&job);
    runner()
        .arg("collect")
        .arg(&exp)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("long: 2 runs: 1 interrupted, 1 pending"))
        .stderr(predicate::str::contains("1 run never started (pending again): exponential_decay"));
    assert!(!exp.join("exponential_decay/summary.json").exists(), "a task that never ran is recorded");
    let rows = csv_rows(&exp.join("summary.csv"));
    let mut statuses = column(&rows, "status");
    statuses.sort();
    assert_eq!(statuses, vec!["interrupted", "pending"]);
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm-local.sh up"]
fn tasks_killed_by_slurm_show_as_interrupted_or_failed_and_are_rerun() {
    require_slurm();
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "long", LONG);
    let out = dir.path().join("out");
    runner()
        .args(["sweep", "--backend", "slurm"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stderr(predicate::str::contains("submitted Slurm job").and(predicate::str::contains("runner collect")));
    let exp = out.join("long");
    let job = first_job(&exp);
    // Both training (each has written a step).
    let deadline = Instant::now() + Duration::from_secs(120);
    while !["cosine_decay", "exponential_decay"].iter().all(|r| exp.join(r).join("steps.csv").exists()) {
        assert!(Instant::now() < deadline, "the tasks did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    runner().arg("collect").arg(&exp).assert().success().stdout(predicate::str::contains("long: 2 runs: 2 running"));
    // A node losing a process: SIGKILL, no summary. A cancel (as at the time limit or on
    // preemption): SIGTERM, the run saves itself as interrupted.
    let status = Process::new("pkill").args(["-KILL", "-f", &format!("run-one {} --index 1", exp.display())]).status();
    assert!(status.unwrap().success(), "no run-one process for index 1");
    std::thread::sleep(Duration::from_millis(500));
    assert!(Process::new("scancel").arg(&job).status().unwrap().success());
    wait_until_slurm_forgets(&job);
    runner()
        .arg("collect")
        .arg(&exp)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("long: 2 runs: 1 failed, 1 interrupted"))
        .stderr(
            predicate::str::contains("1 run left no result: exponential_decay")
                .and(predicate::str::contains("2 of 2 runs did not finish")),
        );
    let lost: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(exp.join("exponential_decay/summary.json")).unwrap()).unwrap();
    assert_eq!(lost["status"], "failed");
    let error = lost["error"].as_str().unwrap();
    assert!(error.contains(&format!("Slurm ended its task {job}_1 as")), "{error}");
    assert!(error.contains(&format!("slurm/logs/{job}_1.out")), "{error}");
    let rows = csv_rows(&exp.join("summary.csv"));
    let mut statuses = column(&rows, "status");
    statuses.sort();
    assert_eq!(statuses, vec!["failed", "interrupted"]);

    // Neither finished, so a resubmission would submit both (shown by its dry run, as
    // rerunning a million steps is no test's business).
    runner()
        .args(["sweep", "--backend", "slurm", "--dry-run"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("2 of 2 runs to submit").and(predicate::str::contains("sbatch --array=0-1 ")));
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm-local.sh up"]
fn a_refused_submission_shows_slurms_message() {
    require_slurm();
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    runner()
        .args(["sweep", "--backend", "slurm", "--partition", "no-such-partition"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("sbatch refused the job array").and(predicate::str::contains("invalid partition")),
        );
    assert!(!dir.path().join("out/four/slurm/jobs.json").exists());
    assert!(!dir.path().join("out/four").exists(), "a refused submission left files behind");
    // --out (and folders above it) that the submission made are gone too.
    assert!(!dir.path().join("out").exists(), "a refused submission left the --out it created");
    let deep = dir.path().join("a/b/c");
    runner()
        .args(["sweep", "--backend", "slurm", "--partition", "no-such-partition"])
        .arg(&cfg)
        .arg("--out")
        .arg(&deep)
        .assert()
        .code(1);
    assert!(!dir.path().join("a").exists(), "a refused submission left the folders it created");
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm-local.sh up"]
fn a_run_longer_than_its_time_limit_finishes_through_requeues_like_a_local_run() {
    require_slurm();
    let dir = TempDir::new().unwrap();
    // About 190 s of training in a debug build on this project's CI machines, under a
    // 2-minute limit with a 10 s grace. Slurm looks for due signals every 30 s and sends
    // one up to a minute early, so an attempt gets 50 to 110 s (80 to 110 as this Slurm
    // does it): at least one requeue, each attempt making progress. (A 1-minute limit with
    // a 30 s grace, as this test once had, lets Slurm signal each attempt as it starts.)
    let cfg = config(
        dir.path(),
        "rq",
        "name = \"rq\"\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\n[train]\nepochs = 7200\nlog_every = 180\n[sweep]\nseeds = [1]\n",
    );
    let (local, cluster) = (dir.path().join("local"), dir.path().join("cluster"));
    // The local run, to compare with, trains beside the cluster's task (one core each).
    let local_run = {
        let (cfg, local) = (cfg.clone(), local.clone());
        std::thread::spawn(move || runner().args(["sweep", "-q"]).arg(&cfg).arg("--out").arg(&local).output().unwrap())
    };
    let out = runner()
        .args([
            "sweep",
            "--backend",
            "slurm",
            "--wait",
            "--poll",
            "1",
            "--time",
            "2",
            "--signal-grace",
            "10",
            "--requeue",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(&cluster)
        .timeout(Duration::from_secs(900))
        .output()
        .unwrap();
    let local_out = local_run.join().unwrap();
    assert!(local_out.status.success(), "{}", String::from_utf8_lossy(&local_out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let logs: String = fs::read_dir(cluster.join("rq/slurm/logs"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(out.status.success(), "{stderr}\n{logs}");
    assert!(stderr.contains("ended: 1 completed"), "{stderr}");
    // Every attempt's output is kept in the one log, and the later ones resumed.
    assert!(logs.contains("attempt 1,") && logs.contains("attempt 2,"), "{logs}");
    assert!(logs.contains("runner: requeued"), "{logs}");
    assert!(logs.contains("resuming from its checkpoint at step"), "{logs}");
    assert_eq!(results_without_clock(&local.join("rq")), results_without_clock(&cluster.join("rq")));
    assert_eq!(
        fs::read(local.join("rq/cosine_decay/model.safetensors")).unwrap(),
        fs::read(cluster.join("rq/cosine_decay/model.safetensors")).unwrap()
    );
}

/// `runner sweep CFG --backend slurm --wait` (and `extra`) into `out`, which must succeed;
/// what it said on stderr.
fn submit_and_wait(cfg: &Path, out: &Path, extra: &[&str]) -> String {
    let done = runner()
        .args(["sweep", "--backend", "slurm", "--wait", "--poll", "0.5"])
        .args(extra)
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    assert!(done.status.success(), "{stderr}");
    stderr
}

/// The cluster's MaxArraySize, from `scontrol show config`.
fn cluster_max_array_size() -> usize {
    let out = Process::new("scontrol").args(["show", "config"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == "MaxArraySize").map(|(_, v)| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .expect("scontrol show config names MaxArraySize")
}

/// 300 two-step runs: four rates x 75 seeds.
fn three_hundred_runs(dir: &Path) -> PathBuf {
    let seeds: Vec<String> = (1..=75).map(|s| s.to_string()).collect();
    config(
        dir,
        "many",
        &format!(
            "name = \"many\"\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 2\n\
             [train]\nsteps = 2\n[sweep]\nseeds = [{}]\n\"schedule.learning_rate\" = [0.1, 0.05, 0.02, 0.01]\n",
            seeds.join(", ")
        ),
    )
}

#[test]
#[ignore = "needs a Slurm cluster: SLURM_LOCAL_MAX_ARRAY_SIZE=64 scripts/slurm-local.sh up"]
fn a_sweep_larger_than_max_array_size_is_submitted_as_several_arrays_and_followed_to_the_end() {
    require_slurm();
    assert_eq!(
        cluster_max_array_size(),
        64,
        "this test needs a cluster with MaxArraySize 64: scripts/slurm-local.sh down, then \
         SLURM_LOCAL_MAX_ARRAY_SIZE=64 scripts/slurm-local.sh up"
    );
    let dir = TempDir::new().unwrap();
    let cfg = three_hundred_runs(dir.path());
    let (local, cluster) = (dir.path().join("local"), dir.path().join("cluster"));
    runner().args(["sweep", "-q", "--jobs", "2"]).arg(&cfg).arg("--out").arg(&local).assert().success();

    // The dry run shows the four sbatch commands; the limit is read from the cluster.
    let dry = runner()
        .args(["sweep", "--backend", "slurm", "--dry-run", "--max-parallel", "2"])
        .arg(&cfg)
        .arg("--out")
        .arg(&cluster)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains("300 of 300 runs to submit as 5 Slurm job arrays (task ids below 64: MaxArraySize from `scontrol show config`)"),
        "{text}"
    );
    for line in ["--array=0-63%2 ", "--array=0-63%2 --dependency=afterany:<the array before> ", "--array=0-43%2 "] {
        assert!(text.contains(&format!("sbatch {line}")), "{line} in {text}");
    }
    assert!(text.trim_end().contains(" 256\n  task 0: "), "{text}");

    let stderr = submit_and_wait(&cfg, &cluster, &["--max-parallel", "2"]);
    assert!(stderr.contains("300 runs as 5 arrays of task ids below 64"), "{stderr}");
    assert!(stderr.contains("ended: 300 completed"), "{stderr}");
    let exp = cluster.join("many");
    let offsets: Vec<u64> = jobs_json(&exp).iter().map(|j| j["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, vec![0, 64, 128, 192, 256]);
    // Every run trained what a local sweep trains, and each task wrote its own log.
    assert_eq!(results_without_clock(&exp), results_without_clock(&local.join("many")));
    assert_eq!(column(&csv_rows(&exp.join("summary.csv")), "status"), vec!["completed"; 300]);
    assert_eq!(fs::read_dir(exp.join("slurm/logs")).unwrap().count(), 300);
    // --max-parallel held across the arrays: never more than two runs at once.
    let spans = intervals(&exp);
    for (start, _) in &spans {
        let at_once = spans.iter().filter(|(s, e)| s <= start && start < e).count();
        assert!(at_once <= 2, "{at_once} runs at once at {start}");
    }

    // Scattered lost runs are resubmitted, each under its task id of the first time (run
    // index modulo 64), and collect follows all of the arrays.
    for name in ["cosine_decay-lr0.1-seed1", "cosine_decay-lr0.01-seed50", "cosine_decay-lr0.05-seed20"] {
        assert!(exp.join(name).is_dir(), "{name}");
        fs::remove_dir_all(exp.join(name)).unwrap();
    }
    let stderr = submit_and_wait(&cfg, &cluster, &[]);
    assert!(stderr.contains("3 runs as ") && stderr.contains("297 finished earlier, kept"), "{stderr}");
    let jobs = jobs_json(&exp);
    let again = &jobs[5..];
    assert_eq!(again.iter().map(|j| j["runs"].as_array().unwrap().len()).sum::<usize>(), 3);
    for job in again {
        let offset = job["offset"].as_u64().unwrap();
        assert!(job["runs"].as_array().unwrap().iter().all(|r| r.as_u64().unwrap() - offset < 64 && offset % 64 == 0));
    }
    runner()
        .arg("collect")
        .arg(&exp)
        .assert()
        .success()
        .stdout(predicate::str::contains("many: 300 runs: 300 completed"));
    assert_eq!(results_without_clock(&exp), results_without_clock(&local.join("many")));
}

/// The pid of the slurmctld that scripts/slurm-local.sh started.
fn local_slurmctld() -> String {
    let state = std::env::var("SLURM_LOCAL_DIR").unwrap_or_else(|_| "/tmp/runner-slurm".into());
    let pid = fs::read_to_string(Path::new(&state).join("slurmctld.pid"))
        .expect("this test pauses the slurmctld that scripts/slurm-local.sh started, and finds none");
    pid.trim().to_string()
}

/// SIGSTOP to a process, SIGCONT again when dropped (a failing test must not leave the
/// controller paused for the tests after it).
struct Paused(String);

impl Paused {
    fn new(pid: String) -> Paused {
        assert!(Process::new("kill").args(["-STOP", &pid]).status().unwrap().success(), "cannot pause {pid}");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = Process::new("kill").args(["-CONT", &self.0]).status();
    }
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm-local.sh up"]
fn wait_survives_a_paused_controller_and_the_runs_finish() {
    require_slurm();
    let pid = local_slurmctld();
    let dir = TempDir::new().unwrap();
    // Runs long enough (some seconds each, two at a time) that the sweep is still being
    // followed when the controller stops: 400 steps ended within the 2 s before the pause
    // on a fast machine.
    let cfg = config(dir.path(), "four", &FOUR.replace("steps = 40", "steps = 8000"));
    let out = dir.path().join("out");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["sweep", "--backend", "slurm", "--wait", "--poll", "1", "--retry-for", "120"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.join("four/slurm/jobs.json").exists() {
        assert!(Instant::now() < deadline, "the sweep was not submitted");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    {
        // squeue gives up after 20 s against a stopped controller: one failed poll at least.
        let _paused = Paused::new(pid);
        std::thread::sleep(Duration::from_secs(30));
    }
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(stderr.contains("Slurm's controller does not answer"), "{stderr}");
    assert!(stderr.contains("Slurm answers again"), "{stderr}");
    assert!(stderr.contains("ended: 4 completed"), "{stderr}");
    assert!(done.status.success(), "{stderr}");
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm-local.sh up"]
fn wait_stops_on_a_job_that_can_never_start() {
    require_slurm();
    let cpus = std::thread::available_parallelism().unwrap().get() + 1;
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let out = runner()
        .args(["sweep", "--backend", "slurm", "--wait", "--poll", "0.5", "--cpus-per-task", &cpus.to_string()])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("out"))
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let job = first_job(&dir.path().join("out/four"));
    let _ = Process::new("scancel").arg(&job).status();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("of job {job} can never start: pending with reason PartitionConfig")), "{stderr}");
    assert!(stderr.contains(&format!("scancel {job}")), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    wait_until_slurm_forgets(&job);
}

/// Fake Slurm commands in `dir`: sbatch accepts (job 4242), squeue runs `squeue` (a shell
/// script body; `$CALLS` is a file it may count its calls in), sacct and scontrol know
/// nothing. Returns the PATH that finds them first.
fn fake_slurm_with(dir: &Path, squeue: &str) -> String {
    fake_slurm_commands(
        dir,
        &[("sbatch", "echo 4242\n"), ("squeue", squeue), ("sacct", "exit 1\n"), ("scontrol", "exit 1\n")],
    )
}

/// Fake Slurm commands in `dir/fake-slurm`, each a shell script body (`$CALLS` names a
/// file the command may count its calls in, `$BIN` the directory); returns the PATH that
/// finds them first.
fn fake_slurm_commands(dir: &Path, commands: &[(&str, &str)]) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fake-slurm");
    fs::create_dir_all(&bin).unwrap();
    for (name, body) in commands {
        let path = bin.join(name);
        let calls = bin.join(format!("{name}.calls"));
        fs::write(&path, format!("#!/bin/sh\nCALLS={}\nBIN={}\n{body}", calls.display(), bin.display())).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn a_sweep_refused_half_way_cancels_the_arrays_it_submitted() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    // MaxArraySize 2: two arrays; sbatch takes the first and refuses the second.
    let path = fake_slurm_commands(
        dir.path(),
        &[
            (
                "sbatch",
                "n=$(cat $CALLS 2>/dev/null || echo 0)\necho $((n + 1)) > $CALLS\necho \"$@\" >> $BIN/sbatch.args\n\
                 if [ \"$n\" -eq 0 ]; then echo 4242; exit 0; fi\n\
                 echo 'sbatch: error: QOSMaxSubmitJobPerUserLimit' >&2\nexit 1\n",
            ),
            ("scontrol", "echo 'MaxArraySize            = 2'\n"),
            ("scancel", "echo \"$@\" >> $BIN/scancel.args\n"),
        ],
    );
    let out = runner()
        .env("PATH", path)
        .args(["sweep", "--backend", "slurm"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "Slurm refused job array 2 of 2 (runs 2 to 3); the 1 array submitted before it (4242) was cancelled"
        ),
        "{err}"
    );
    assert!(err.contains("QOSMaxSubmitJobPerUserLimit"), "{err}");
    let bin = dir.path().join("fake-slurm");
    let args = fs::read_to_string(bin.join("sbatch.args")).unwrap();
    let lines: Vec<&str> = args.lines().collect();
    assert!(lines[0].starts_with("--parsable --array=0-1 ") && lines[0].ends_with("sweep.sbatch 0"), "{args}");
    assert!(lines[1].starts_with("--parsable --array=0-1 ") && lines[1].ends_with("sweep.sbatch 2"), "{args}");
    assert_eq!(fs::read_to_string(bin.join("scancel.args")).unwrap().trim(), "4242");
}

/// squeue failing as a busy controller does (`Socket timed out`) for its first `failures`
/// calls (all of them when `None`), then listing task 0 running once, then nothing (the
/// job ended).
fn fake_slurm(dir: &Path, failures: Option<u32>) -> String {
    let limit = failures.map_or("1000000".to_string(), |f| f.to_string());
    fake_slurm_with(
        dir,
        &format!(
            "n=$(cat $CALLS 2>/dev/null || echo 0)\necho $((n + 1)) > $CALLS\n\
             if [ \"$n\" -lt {limit} ]; then echo 'squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation' >&2; exit 1; fi\n\
             if [ \"$n\" -eq {limit} ]; then echo '4242_0|RUNNING'; fi\nexit 0\n"
        ),
    )
}

/// squeue listing tasks 0 and 1 pending with `reason` for two polls, then nothing.
fn fake_pending_slurm(dir: &Path, reason: &str) -> String {
    fake_slurm_with(
        dir,
        &format!(
            "case \"$*\" in *states=PENDING*) echo '4242_0|{reason}'; echo '4242_1|{reason}'; exit 0;; esac\n\
             n=$(cat $CALLS 2>/dev/null || echo 0)\necho $((n + 1)) > $CALLS\n\
             if [ \"$n\" -lt 2 ]; then echo '4242_0|PENDING'; echo '4242_1|PENDING'; fi\nexit 0\n"
        ),
    )
}

/// `runner sweep CFG --backend slurm --wait` with `path` (fake Slurm commands first).
fn wait_on_fake_slurm(dir: &Path, cfg: &Path, path: String, extra: &[&str]) -> std::process::Output {
    runner()
        .env("PATH", path)
        .args(["sweep", "--backend", "slurm", "--wait", "--poll", "0.1"])
        .args(extra)
        .arg(cfg)
        .arg("--out")
        .arg(dir.join("out"))
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap()
}

#[test]
fn wait_survives_a_controller_that_does_not_answer_for_a_while() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let out = wait_on_fake_slurm(dir.path(), &cfg, fake_slurm(dir.path(), Some(2)), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Slurm's controller does not answer (squeue failed"), "{err}");
    assert!(err.contains("Socket timed out"), "{err}");
    assert!(err.contains("Slurm answers again"), "{err}");
    assert!(err.contains("1 running"), "it followed the job after the errors: {err}");
    // Tasks 1 to 3 left the queue without a result: counted while waiting, not missed.
    assert!(err.contains("1 running, 0 pending, 3 ended without a result"), "{err}");
    // The fake job trained nothing: every run is reported as never started, not failed.
    assert!(err.contains("never started"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
}

#[test]
fn wait_stops_with_a_clear_message_when_the_controller_stays_silent() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let started = Instant::now();
    let out = wait_on_fake_slurm(dir.path(), &cfg, fake_slurm(dir.path(), None), &["--retry-for", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stopped waiting: Slurm's controller has not answered for 2 s"), "{err}");
    assert!(err.contains("job 4242 goes on") && err.contains("runner collect"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // A bad value is refused before anything is submitted.
    runner()
        .args(["sweep", "--backend", "slurm", "--wait", "--retry-for=-1"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a number of seconds"));
}

#[test]
fn wait_shows_why_tasks_are_pending_and_stops_on_tasks_that_can_never_start() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let out = wait_on_fake_slurm(dir.path(), &cfg, fake_pending_slurm(dir.path(), "Resources"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 running, 2 pending (2 Resources)"), "{err}");

    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let out = wait_on_fake_slurm(dir.path(), &cfg, fake_pending_slurm(dir.path(), "PartitionConfig"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Slurm says tasks 4242_0, 4242_1 of job 4242 can never start: pending with reason PartitionConfig"
        ),
        "{err}"
    );
    assert!(err.contains("scancel 4242") && err.contains("--cpus-per-task"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
}

/// Fake Slurm for job 4242: `sbatch` and `squeue` as given, no accounting (sacct fails),
/// and scontrol showing the array's tasks `cancelled` (a range) as CANCELLED.
fn fake_ended_job(dir: &Path, sbatch: &str, squeue: &str, cancelled: &str) -> String {
    let scontrol = format!(
        "case \"$*\" in *config*) echo 'MaxArraySize = 1001';; \
         *) echo 'JobId=4242 ArrayJobId=4242 ArrayTaskId={cancelled} JobState=CANCELLED Reason=None';; esac\n"
    );
    fake_slurm_commands(dir, &[("sbatch", sbatch), ("squeue", squeue), ("sacct", "exit 1\n"), ("scontrol", &scontrol)])
}

#[test]
fn collect_after_a_job_that_ended_reports_never_started_runs_as_a_failure() {
    // The job ended (squeue lists nothing) with its tasks cancelled before they started,
    // scontrol showing them as one range (`ArrayTaskId=0-3%1 JobState=CANCELLED`): collect
    // named each as "no longer listed" and exited 0 over runs that will never start; now it
    // reads the range and exits 1, as --wait does.
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let path = fake_ended_job(dir.path(), "echo 4242\n", "exit 0\n", "0-3%1");
    let exp = dir.path().join("out/four");
    let submitted = runner()
        .env("PATH", &path)
        .args(["sweep", "--backend", "slurm"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(submitted.status.success(), "{}", String::from_utf8_lossy(&submitted.stderr));
    let out = runner().env("PATH", &path).arg("collect").arg(&exp).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("4 runs never started (pending again)"), "{err}");
    assert!(err.contains("Slurm ended its task 4242_0 as CANCELLED before it started"), "{err}");
    assert!(!err.contains("no longer lists"), "{err}");
    assert!(err.contains("4 of 4 runs did not finish"), "{err}");
}

#[test]
fn wait_counts_a_finished_runs_lingering_task_as_finished_not_running() {
    // Run 0 finished (its task still listed RUNNING while its process exits): --wait said
    // "1/1 finished (1 completed), 1 running". The fake sbatch trains run 0 at once.
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "four", FOUR);
    let exp = dir.path().join("out/four");
    let path = fake_ended_job(
        dir.path(),
        "\"$RUNNER_BIN\" run-one \"$EXP\" --index 0 --quiet >/dev/null 2>&1\necho 4242\n",
        "case \"$*\" in *states=PENDING*) exit 0;; esac\n\
         n=$(cat $CALLS 2>/dev/null || echo 0)\necho $((n + 1)) > $CALLS\n\
         if [ \"$n\" -lt 2 ]; then echo '4242_0|RUNNING'; fi\nexit 0\n",
        "1-3",
    );
    let out = runner()
        .env("PATH", &path)
        .env("RUNNER_BIN", assert_cmd::cargo::cargo_bin("runner"))
        .env("EXP", &exp)
        .args(["sweep", "--backend", "slurm", "--wait", "--poll", "0.1"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("out"))
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1/4 finished (1 completed), 0 running"), "{err}");
    assert!(!err.contains("finished (1 completed), 1 running"), "{err}");
    assert!(err.contains("never started"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The same wait with stdout and stderr closed by their readers: the same exit code and
    // the same summary.csv.
    let summary = fs::read_to_string(exp.join("summary.csv")).unwrap();
    fs::remove_file(exp.join("summary.csv")).unwrap();
    let status = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .env("PATH", &path)
        .env("RUNNER_BIN", assert_cmd::cargo::cargo_bin("runner"))
        .env("EXP", &exp)
        .args(["sweep", "--backend", "slurm", "--wait", "--poll", "0.1", "--force"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("out"))
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(fs::read_to_string(exp.join("summary.csv")).unwrap().lines().count(), summary.lines().count());
}

/// Five warmup-stable-decay cool-downs (the last tenth to half of 450 steps) and a
/// constant rate with the same warmup, one thread each.
fn cooldowns(dir: &Path) -> PathBuf {
    let mut text = String::from(
        "name = \"wsd\"\n[train]\nepochs = 10\nthreads = 1\n[[sweep.schedule]]\nname = \"constant\"\nkind = \"constant\"\n\
         learning_rate = 0.1\nwarmup_steps = 20\n",
    );
    for d in 1..=5 {
        text.push_str(&format!(
            "[[sweep.schedule]]\nname = \"wsd{d}\"\nkind = \"warmup_stable_decay\"\nlearning_rate = 0.1\n\
             warmup_steps = 20\ndecay_steps = \"{d} epochs\"\n"
        ));
    }
    config(dir, "wsd", &text)
}

fn summary_of(run: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm-local.sh up"]
fn on_slurm_cool_downs_wait_for_the_task_that_trains_their_shared_steps_and_end_as_they_would_alone() {
    require_slurm();
    let dir = TempDir::new().unwrap();
    let cfg = cooldowns(dir.path());
    let (alone, cluster) = (dir.path().join("alone"), dir.path().join("cluster"));
    runner().args(["run", "--no-share", "-q"]).arg(&cfg).arg("--out").arg(&alone).assert().success();
    // 45 steps an epoch: the constant run trains all 450, cool-down d from where its rate
    // parts from the constant's, step 451 - 45 d.
    let expected = 450 + (1..=5).map(|d| 45 * d - 1).sum::<u64>();
    let cost = format!(
        "6 runs, 450 steps each: {} steps to train instead of 2,700",
        runner::sweep::share::thousands(expected)
    );

    let dry = runner().args(["sweep", "--backend", "slurm", "--dry-run"]).arg(&cfg).arg("--out").arg(&cluster).output();
    let dry = String::from_utf8(dry.unwrap().stdout).unwrap();
    assert!(dry.contains("sbatch --array=1-5 --dependency=afterany:<array 1>_0 ") && dry.contains(&cost), "{dry}");
    let plain = runner()
        .args(["sweep", "--backend", "slurm", "--dry-run", "--no-share"])
        .arg(&cfg)
        .arg("--out")
        .arg(&cluster)
        .output();
    let plain = String::from_utf8(plain.unwrap().stdout).unwrap();
    assert!(plain.contains("6 runs to submit as one Slurm job array") && !plain.contains("dependency"), "{plain}");

    let stderr = submit_and_wait(&cfg, &cluster, &["--cpus-per-task", "1"]);
    assert!(
        stderr.contains(&format!("1 of them waiting for the task that trains their runs' shared first steps ({cost}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "trained {} of the 2,700 steps its runs take",
            runner::sweep::share::thousands(expected)
        )),
        "{stderr}"
    );
    let exp = cluster.join("wsd");
    assert_eq!(results_without_clock(&exp), results_without_clock(&alone.join("wsd")));
    let constant = summary_of(&exp.join("constant"));
    let constant_end = constant["started_at"].as_f64().unwrap() + constant["wall_seconds"].as_f64().unwrap();
    for d in 1..=5 {
        let run = exp.join(format!("wsd{d}"));
        assert_eq!(
            fs::read(run.join("model.safetensors")).unwrap(),
            fs::read(alone.join(format!("wsd/wsd{d}/model.safetensors"))).unwrap()
        );
        let s = summary_of(&run);
        assert_eq!(
            (s["shared_from"].as_str(), s["began_at_step"].as_u64()),
            (Some("constant"), Some(451 - 45 * d)),
            "wsd{d}"
        );
        // Its task waited for the constant run's (afterany), which wrote the fork.
        assert!(
            s["started_at"].as_f64().unwrap() >= constant_end - 1.0,
            "wsd{d} started before the run it forks from ended"
        );
    }
    assert!(!exp.join(".forks").exists(), "the forks are removed once every run has finished");

    // A lost cool-down submitted again trains from step 0 (its fork is gone) to the same end.
    fs::remove_dir_all(exp.join("wsd3")).unwrap();
    let stderr = submit_and_wait(&cfg, &cluster, &["--cpus-per-task", "1"]);
    assert!(stderr.contains("1 run as array tasks 3") && !stderr.contains("trained "), "{stderr}");
    assert_eq!(results_without_clock(&exp), results_without_clock(&alone.join("wsd")));
    assert!(summary_of(&exp.join("wsd3")).get("shared_from").is_none());
}
