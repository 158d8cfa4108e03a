//! Sweeps through the real binary: expansion and names, a failing and a diverging variant
//! beside good ones, interruption by signal and by `kill -9` followed by a resume that
//! gives the same results as an uninterrupted sweep, the lock, `--dry-run`, `--filter`,
//! and `runner report`'s tables and charts.

mod common;

use common::{column, config, csv_rows, results_without_clock, runner};
use predicates::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn sweep(cfg: &Path, out: &Path) -> assert_cmd::Command {
    let mut c = runner();
    c.arg("run").arg(cfg).arg("--out").arg(out);
    c
}

const GRID: &str = r#"
name = "grid"
[schedule]
kind = "cosine_decay"
learning_rate = 0.1
decay_steps = 100
[sweep]
seeds = [1, 2]
"schedule.learning_rate" = [0.1, 0.03]
"train.batch_size" = [64]
[train]
epochs = 2
"#;

#[test]
fn dry_run_lists_grid_times_seeds_with_stable_names_and_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "grid", GRID);
    let out = sweep(&cfg, &dir.path().join("out")).arg("--dry-run").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("grid: 4 runs"), "{text}");
    let names: Vec<&str> = text.lines().skip(2).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "cosine_decay-lr0.1-seed1",
            "cosine_decay-lr0.1-seed2",
            "cosine_decay-lr0.03-seed1",
            "cosine_decay-lr0.03-seed2"
        ]
    );
    // 1437 training samples in batches of 64: 23 steps per epoch, 2 epochs.
    assert!(text.lines().nth(2).unwrap().contains(" 46 "), "{text}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn random_search_is_seeded_and_draws_inside_the_range() {
    let dir = TempDir::new().unwrap();
    let body = "name = \"rs\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[sweep]\nsamples = 6\nsample_seed = 7\n\"schedule.learning_rate\" = { log_uniform = [0.001, 0.5] }\n\"model.activation\" = { choice = [\"relu\", \"tanh\"] }\n";
    let cfg = config(dir.path(), "rs", body);
    let list = || String::from_utf8(sweep(&cfg, dir.path()).arg("--dry-run").output().unwrap().stdout).unwrap();
    let (a, b) = (list(), list());
    assert_eq!(a, b);
    let rows: Vec<Vec<&str>> = a.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        let lr: f64 = row[2].parse().unwrap();
        assert!((0.001..=0.5).contains(&lr), "{row:?}");
        assert!(["relu", "tanh"].contains(&row[3]), "{row:?}");
        assert!(row[0].starts_with("constant-lr") && row[0].contains(&format!("-activation{}", row[3])), "{row:?}");
    }
}

#[test]
fn a_bad_variant_is_reported_with_its_name_and_nothing_runs() {
    let dir = TempDir::new().unwrap();
    let body = "name = \"bad\"\n[schedule]\nkind = \"exponential_decay\"\nlearning_rate = 0.1\ndecay_steps = 100\ndecay_rate = 0.5\n[sweep]\n\"schedule.decay_rate\" = [0.5, -2]\n";
    let cfg = config(dir.path(), "bad", body);
    sweep(&cfg, &dir.path().join("out")).assert().code(2).stderr(
        predicate::str::contains("bad.toml:8:31: `schedule.decay_rate` must be a number >= 0")
            .and(predicate::str::contains("in the sweep's run exponential_decay-decay_rate-2")),
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_failing_and_a_diverging_run_do_not_stop_the_others() {
    let dir = TempDir::new().unwrap();
    // "blocked" fails when it starts: its directory's place is taken by a plain file. The
    // huge rate diverges. The constant one completes.
    let body = r#"
name = "mixed"
[dataset]
kind = "sine"
points = 200
[train]
epochs = 2
[[sweep.schedule]]
name = "good"
kind = "constant"
learning_rate = 0.01
[[sweep.schedule]]
name = "blocked"
kind = "constant"
learning_rate = 0.02
[[sweep.schedule]]
name = "huge"
kind = "constant"
learning_rate = 1e12
"#;
    let cfg = config(dir.path(), "mixed", body);
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("mixed")).unwrap();
    fs::write(out.join("mixed/blocked"), "not a run directory").unwrap();
    // The reason is printed even with --quiet.
    sweep(&cfg, &out)
        .arg("--quiet")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("1 of 3 runs failed:\n  blocked: cannot remove"));
    let rows = csv_rows(&out.join("mixed/summary.csv"));
    assert_eq!(column(&rows, "run"), ["good", "blocked", "huge"]);
    assert_eq!(column(&rows, "status"), ["completed", "failed", "diverged"]);
}

#[test]
fn a_variant_the_config_alone_dooms_stops_the_sweep_before_anything_runs() {
    let dir = TempDir::new().unwrap();
    // The plateau schedule watches val_accuracy, which a regression data set does not have.
    let body = r#"
name = "doomed"
[dataset]
kind = "sine"
points = 200
[[sweep.schedule]]
name = "good"
kind = "constant"
learning_rate = 0.01
[[sweep.schedule]]
name = "watches_accuracy"
kind = "reduce_on_plateau"
learning_rate = 0.01
monitor = "val_accuracy"
"#;
    let cfg = config(dir.path(), "doomed", body);
    let out = dir.path().join("out");
    sweep(&cfg, &out).arg("--quiet").assert().code(2).stderr(predicate::str::contains(
        "watches_accuracy: `schedule.monitor` = \"val_accuracy\", but sine is a regression data set; watch val_loss or val_rmse",
    ));
    assert!(!out.exists());
}

/// Starts a sweep in the background and waits until `ready` holds for its output.
fn start_and_wait(cfg: &Path, out: &Path, ready: impl Fn(&Path) -> bool) -> Child {
    let bin = assert_cmd::cargo::cargo_bin("runner");
    let mut child = std::process::Command::new(bin)
        .arg("run")
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .args(["--jobs", "1", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !ready(out) {
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it could be interrupted");
        assert!(start.elapsed() < Duration::from_secs(120), "the sweep never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

const SLOW: &str = r#"
name = "slow"
[schedule]
kind = "cosine_decay"
learning_rate = 0.05
decay_steps = 500
[sweep]
"schedule.learning_rate" = [0.05, 0.03, 0.02, 0.01]
[model]
hidden = [256, 256]
[train]
# Long enough (about 1.5 s a run in a debug build) that a run is caught part-way, with
# metrics.csv flushed (at most every 0.5 s) before it ends.
epochs = 40
log_every = 5
"#;

/// Writes the slow sweep, runs it once uninterrupted into `whole/`; returns the config,
/// that reference's root and the root for the interrupted attempt.
fn uninterrupted_reference(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let cfg = config(dir, "slow", SLOW);
    let whole = dir.join("whole");
    sweep(&cfg, &whole).args(["--jobs", "1", "--quiet"]).assert().success();
    (cfg, whole, dir.join("cut"))
}

fn finished_runs(exp: &Path) -> usize {
    fs::read_dir(exp).map_or(0, |d| d.filter(|e| e.as_ref().unwrap().path().join("summary.json").exists()).count())
}

#[test]
fn interrupt_then_resume_gives_the_results_of_an_uninterrupted_sweep() {
    let dir = TempDir::new().unwrap();
    let (cfg, whole, cut) = uninterrupted_reference(dir.path());
    let mut child = start_and_wait(&cfg, &cut, |out| finished_runs(&out.join("slow")) >= 1);
    signal(&child, "-INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let exp = cut.join("slow");
    let statuses = column(&csv_rows(&exp.join("summary.csv")), "status");
    assert!(statuses.contains(&"completed".to_string()), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "interrupted" || s == "pending"), "{statuses:?}");
    assert!(!exp.join(".runner.lock").exists());

    let out = sweep(&cfg, &cut).args(["--jobs", "1"]).output().unwrap();
    assert!(out.status.success());
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(said.contains("kept from before"), "{said}");
    assert_eq!(results_without_clock(&exp), results_without_clock(&whole.join("slow")));
}

/// A sweep stopped part-way ends with its best runs; a run that did not finish shows its
/// last evaluation, marked as such, and the count says how many are unfinished.
#[test]
fn the_best_of_line_after_a_stop_marks_partial_results() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "slow", SLOW);
    let out = dir.path().join("cut");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .args(["--jobs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exp = out.join("slow");
    let second = exp.join("cosine_decay-lr0.03").join("metrics.csv");
    let start = Instant::now();
    while !(finished_runs(&exp) >= 1 && fs::read_to_string(&second).is_ok_and(|t| t.lines().count() >= 2)) {
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it could be stopped");
        assert!(start.elapsed() < Duration::from_secs(120), "the sweep never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "-TERM");
    let mut said = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut said).unwrap();
    child.wait().unwrap();
    let line = said.lines().find(|l| l.starts_with("best of 4 by val_accuracy")).unwrap_or_else(|| panic!("{said}"));
    assert!(line.starts_with("best of 4 by val_accuracy (3 unfinished): "), "{line}");
    assert!(line.contains("cosine_decay-lr0.03 ") && line.contains(" (interrupted: its last evaluation)"), "{line}");
    let finished = line.split(": ").nth(1).unwrap().split("; ").find(|p| p.starts_with("cosine_decay-lr0.05 "));
    assert!(finished.is_some_and(|p| !p.contains("interrupted")), "{line}");
}

#[test]
fn kill_9_mid_run_then_resume_reruns_the_half_written_run() {
    let dir = TempDir::new().unwrap();
    let (cfg, whole, cut) = uninterrupted_reference(dir.path());
    // Killed while the second run is part-way: its metrics.csv has rows but no summary.json.
    let second = "cosine_decay-lr0.03";
    let mut child = start_and_wait(&cfg, &cut, |out| {
        fs::read_to_string(out.join("slow").join(second).join("metrics.csv")).is_ok_and(|m| m.lines().count() > 2)
    });
    signal(&child, "-KILL");
    child.wait().unwrap();
    let exp = cut.join("slow");
    assert!(exp.join(".runner.lock").exists(), "a killed process cannot remove its lock");
    assert!(!exp.join(second).join("summary.json").exists());
    runner()
        .arg("report")
        .arg(&exp)
        .arg("--no-plots")
        .assert()
        .success()
        .stdout(predicate::str::contains("incomplete"));

    sweep(&cfg, &cut).args(["--jobs", "1", "--quiet"]).assert().success();
    assert_eq!(results_without_clock(&exp), results_without_clock(&whole.join("slow")));
    assert_eq!(column(&csv_rows(&exp.join("summary.csv")), "status"), ["completed"; 4]);
}

#[test]
fn a_second_sweep_on_the_same_directory_is_refused_while_the_first_lives() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "grid", GRID);
    let exp = dir.path().join("out/grid");
    fs::create_dir_all(&exp).unwrap();
    // A live process (this test) holds the lock: an OS file lock on .runner.lock.
    fs::write(exp.join(".runner.lock"), format!("{} testhost\n", std::process::id())).unwrap();
    let held = fs::File::open(exp.join(".runner.lock")).unwrap();
    held.lock().unwrap();
    sweep(&cfg, &dir.path().join("out")).arg("--quiet").assert().code(2).stderr(predicate::str::contains(format!(
        "is being written by another runner (process {} on testhost)",
        std::process::id()
    )));
    // A lock file whose process died (the kernel released its lock) does not.
    drop(held);
    fs::write(exp.join(".runner.lock"), "4294967 elsewhere\n").unwrap();
    sweep(&cfg, &dir.path().join("out")).arg("--quiet").assert().success();
    assert!(!exp.join(".runner.lock").exists());
}

#[test]
fn two_sweeps_started_at_the_same_instant_never_both_run() {
    let dir = TempDir::new().unwrap();
    // Runs long enough (about a second in all) that the two processes overlap.
    let cfg = config(dir.path(), "grid", &GRID.replace("epochs = 2", "epochs = 10"));
    for attempt in 0..4 {
        let out = dir.path().join(format!("out{attempt}"));
        let spawn = || {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
                .arg("run")
                .arg(&cfg)
                .args(["--quiet", "--out"])
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let mut codes = [a.status.code(), b.status.code()];
        codes.sort();
        assert_eq!(codes, [Some(0), Some(2)], "one runs, the other is refused: {:?} {:?}", a, b);
        let refused = if a.status.code() == Some(2) { &a } else { &b };
        assert!(String::from_utf8_lossy(&refused.stderr).contains("is being written by another runner"));
        // The one that ran finished every run, untouched by the other.
        let rows = csv_rows(&out.join("grid/summary.csv"));
        assert_eq!(column(&rows, "status"), ["completed"; 4]);
    }
}

#[test]
fn filter_runs_only_the_matching_runs() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "grid", GRID);
    let out = dir.path().join("out");
    sweep(&cfg, &out).args(["--filter", "*seed2", "--quiet"]).assert().success();
    let statuses = csv_rows(&out.join("grid/summary.csv"));
    let mut done: Vec<(String, String)> =
        column(&statuses, "run").into_iter().zip(column(&statuses, "status")).collect();
    done.sort();
    assert_eq!(
        done,
        [
            ("cosine_decay-lr0.03-seed1".into(), "pending".into()),
            ("cosine_decay-lr0.03-seed2".into(), "completed".into()),
            ("cosine_decay-lr0.1-seed1".into(), "pending".into()),
            ("cosine_decay-lr0.1-seed2".into(), "completed".into()),
        ]
    );
    sweep(&cfg, &out)
        .args(["--filter", "nothing"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("matches none of the runs"));
}

#[test]
fn a_run_whose_network_collapsed_is_flagged_not_just_ranked_last() {
    // On digits a constant rate of 0.5 kills the ReLUs in the first epochs: accuracy at
    // chance, loss no better than ln(10), for good; 0.05 learns.
    let dir = TempDir::new().unwrap();
    let cfg = config(
        dir.path(),
        "rates",
        "name = \"rates\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.05\n[train]\nepochs = 8\n\
         [sweep]\n\"schedule.learning_rate\" = [0.05, 0.5]\n",
    );
    let out = dir.path().join("out");
    runner().args(["run", "-q"]).arg(&cfg).arg("--out").arg(&out).assert().success();
    let exp = out.join("rates");
    let rows = csv_rows(&exp.join("summary.csv"));
    assert_eq!(column(&rows, "status"), vec!["completed", "collapsed"]);
    let collapsed = exp.join(&column(&rows, "run")[1]);
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(collapsed.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "completed");
    let why = summary["collapsed"].as_str().unwrap();
    assert!(why.starts_with("validation loss at or above the uniform prediction's ln(10) = 2.3026"), "{why}");
    let good = exp.join(&column(&rows, "run")[0]);
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(good.join("summary.json")).unwrap()).unwrap();
    assert!(summary.get("collapsed").is_none(), "{summary}");
    let report = runner().arg("report").arg(&exp).arg("--no-plots").output().unwrap();
    let text = String::from_utf8(report.stdout).unwrap();
    assert!(text.contains("collapsed"), "{text}");
    assert!(
        text.contains(&format!("note: {}: collapsed: validation loss at or above", column(&rows, "run")[1])),
        "{text}"
    );
    // Ranked by another metrics.csv column: the header says which, lower loss first.
    let csv = runner()
        .arg("report")
        .arg(&exp)
        .args(["--no-plots", "--format", "csv", "--metric", "val_loss"])
        .output()
        .unwrap();
    let text = String::from_utf8(csv.stdout).unwrap();
    let header = text.lines().next().unwrap();
    assert!(header.ends_with(",status,final_val_loss,best_val_loss,best_epoch,steps,seconds"), "{header}");
    assert!(!header.contains("final_val_accuracy"), "{header}");
    assert!(text.lines().nth(1).unwrap().contains(&column(&rows, "run")[0]), "{text}");
    // The runs keep their best evaluation by accuracy; ranked by val_loss, the best columns
    // are the best val_loss of each run's metrics.csv, not blank.
    let cells: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    let at = |name: &str| cells[0].iter().position(|c| *c == name).unwrap();
    for row in &cells[1..] {
        let metrics = csv_rows(&exp.join(row[at("run")]).join("metrics.csv"));
        let losses: Vec<f64> = column(&metrics, "val_loss").iter().map(|v| v.parse().unwrap()).collect();
        let (epoch, lowest) =
            losses.iter().enumerate().fold((0, f64::INFINITY), |b, (i, &v)| if v < b.1 { (i, v) } else { b });
        let shown: f64 = row[at("best_val_loss")].parse().unwrap_or_else(|_| panic!("blank best: {text}"));
        assert!((shown - lowest).abs() < 1e-4, "{shown} vs {lowest}: {text}");
        assert_eq!(row[at("best_epoch")], column(&metrics, "epoch")[epoch], "{text}");
    }
    runner()
        .arg("report")
        .arg(&exp)
        .args(["--metric", "accuracy"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("accepted: val_accuracy, val_loss, val_rmse, train_loss"));
    // Collapsed is finished: collect counts it apart and does not fail.
    runner()
        .arg("collect")
        .arg(&exp)
        .assert()
        .success()
        .stdout(predicate::str::contains("rates: 2 runs: 1 completed, 1 collapsed"));
}

#[test]
fn charts_of_a_thousand_runs_stay_readable() {
    // 1,000 variants (rates drawn log-uniformly), one step each.
    let dir = TempDir::new().unwrap();
    let cfg = config(
        dir.path(),
        "many",
        "name = \"many\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nsteps = 1\n\
         [sweep]\nsamples = 1000\n\"schedule.learning_rate\" = { log_uniform = [0.0001, 1.0] }\n",
    );
    let out = dir.path().join("out");
    runner().args(["run", "-q"]).arg(&cfg).arg("--out").arg(&out).assert().success();
    let exp = out.join("many");
    let report = runner().arg("report").arg(&exp).output().unwrap();
    assert!(report.status.success());
    // The table lists every run; the charts draw the best: 100 curves (20 named, the rest
    // grey and counted), 40 bars.
    let table = String::from_utf8(report.stdout).unwrap();
    assert!(table.starts_with("many: 1000 runs"), "{table}");
    assert_eq!(png_size(&exp.join("final.png")), (1100, 120 + 40 * 40));
    assert_eq!(png_size(&exp.join("lr.png")), (1300, 650));
    assert_eq!(png_size(&exp.join("val_loss.png")), (1300, 650));
    let lr = fs::read_to_string(exp.join("lr.svg")).unwrap();
    assert!(lr.contains("best 100 of 1000 runs") && lr.contains("80 more (grey)"), "lr.svg");
    let final_svg = fs::read_to_string(exp.join("final.svg")).unwrap();
    assert!(final_svg.contains("best 40 of 1000 runs"));
    assert!(!exp.join("grid.png").exists(), "one swept key: no heat map");
}

#[test]
fn seeds_are_grouped_and_two_keys_make_a_heat_map() {
    let dir = TempDir::new().unwrap();
    let cfg = config(
        dir.path(),
        "two",
        "name = \"two\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nepochs = 2\n\
         [sweep]\nseeds = [1, 2]\n\"schedule.learning_rate\" = [0.03, 0.1]\n\"train.batch_size\" = [32, 64]\n",
    );
    let out = dir.path().join("out");
    runner().args(["run", "-q"]).arg(&cfg).arg("--out").arg(&out).assert().success();
    let exp = out.join("two");
    runner().arg("report").arg(&exp).assert().success();
    let acc = fs::read_to_string(exp.join("val_accuracy.svg")).unwrap();
    assert!(acc.contains("mean over seeds, band from lowest to highest"));
    // One legend entry per variant, none per seed.
    assert!(acc.contains("constant-lr0.1-bs32") && !acc.contains("seed1"), "val_accuracy.svg");
    assert_eq!(png_size(&exp.join("final.png")), (1100, 120 + 40 * 4));
    let (w, h) = png_size(&exp.join("grid.png"));
    assert!(w >= 700 && h >= 400);
    let grid = fs::read_to_string(exp.join("grid.svg")).unwrap();
    assert!(grid.contains("by schedule.learning_rate and train.batch_size"));
    // Each cell is the mean of its two seeds' final accuracies, to 4 decimals.
    let rows = csv_rows(&exp.join("summary.csv"));
    let acc_of = |name: &str| -> f64 {
        rows.iter().find(|r| r[0] == name).unwrap()[column_index(&rows, "final_val_accuracy")].parse().unwrap()
    };
    let mean = (acc_of("constant-lr0.1-bs64-seed1") + acc_of("constant-lr0.1-bs64-seed2")) / 2.0;
    assert!(grid.contains(&format!("{mean:.4}")), "grid.svg has no cell {mean:.4}");
}

fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    // Not a blank image: the curves and text put several colours in it.
    let mut colours: Vec<&[u8]> = buf[..info.buffer_size()].chunks(3).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 5, "{} looks blank", path.display());
    (info.width, info.height)
}

#[test]
fn all_ten_decays_then_report_ranks_them_and_draws_the_charts() {
    let dir = TempDir::new().unwrap();
    let text = fs::read_to_string("configs/sweep_all_decays.toml").unwrap().replace("epochs = 30", "epochs = 3");
    let cfg = config(dir.path(), "sweep_all_decays", &text);
    let out = dir.path().join("out");
    sweep(&cfg, &out).arg("--quiet").assert().success();
    let exp = out.join("sweep_all_decays");
    let rows = csv_rows(&exp.join("summary.csv"));
    assert_eq!(rows[0][..4], ["run", "schedule", "seed", "status"]);
    let mut kinds = column(&rows, "schedule");
    kinds.sort();
    assert_eq!(kinds.len(), 10);
    assert_eq!(column(&rows, "status"), ["completed"; 10]);
    let acc: Vec<f64> = column(&rows, "final_val_accuracy").iter().map(|v| v.parse().unwrap()).collect();
    assert!(acc.windows(2).all(|w| w[0] >= w[1]), "best first: {acc:?}");

    let out = runner().arg("report").arg(&exp).output().unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("sweep_all_decays: 10 runs, ranked by final val_accuracy"), "{table}");
    let first = table.lines().nth(2).unwrap();
    assert!(first.trim_start().starts_with("1  ") && first.contains(&rows[1][0]), "{table}");
    assert_eq!(png_size(&exp.join("lr.png")), (1300, 650));
    assert_eq!(png_size(&exp.join("val_loss.png")), (1300, 650));
    assert_eq!(png_size(&exp.join("val_accuracy.png")), (1300, 650));
    assert_eq!(png_size(&exp.join("final.png")), (1100, 120 + 40 * 10));
    // The ten decays end at a hundredth of their peak: the rate axis is logarithmic.
    assert!(fs::read_to_string(exp.join("lr.svg")).unwrap().contains("learning rate (log scale)"));
    runner().arg("report").arg(&exp).args(["--lr-scale", "linear"]).assert().success();
    assert!(!fs::read_to_string(exp.join("lr.svg")).unwrap().contains("(log scale)"));

    let json = runner().arg("report").arg(&exp).args(["--format", "json", "--no-plots"]).output().unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 10);
    assert_eq!(parsed[0]["rank"], 1);
    // Single runs against the best: two accuracies on the same 359 validation samples.
    assert_eq!(parsed[0]["vs_best"], "best");
    let accuracy = |run: &serde_json::Value| -> f64 {
        let i = rows.iter().position(|r| r[0] == run.as_str().unwrap()).unwrap();
        rows[i][column_index(&rows, "final_val_accuracy")].parse().unwrap()
    };
    let best = accuracy(&parsed[0]["run"]);
    for row in &parsed.as_array().unwrap()[1..] {
        let p = accuracy(&row["run"]);
        let se = (p * (1.0 - p) / 359.0 + best * (1.0 - best) / 359.0).sqrt();
        let half = (1.959964 * se).max(1.0 / 359.0);
        assert_eq!(row["difference_95"], format!("{:+.4} ± {half:.4}", p - best), "{row}");
        assert_eq!(row["vs_best"], if (p - best).abs() <= half { "tied" } else { "worse" });
    }
    let md = runner().arg("report").arg(&exp).args(["--format", "markdown", "--no-plots"]).output().unwrap();
    assert!(String::from_utf8(md.stdout).unwrap().starts_with("| rank | run | schedule | status |"));
    // A single run's directory.
    runner().arg("report").arg(exp.join("cosine_decay")).args(["--format", "csv"]).assert().success().stdout(
        predicate::str::starts_with("rank,run,schedule,status,final_val_accuracy")
            .and(predicate::str::contains("1,cosine_decay,cosine_decay,completed,")),
    );
    assert!(exp.join("cosine_decay/lr.png").exists());
}

#[test]
fn report_over_seeds_shows_mean_and_spread() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "grid", GRID);
    let out = dir.path().join("out");
    sweep(&cfg, &out).arg("--quiet").assert().success();
    let csv = runner().arg("report").arg(out.join("grid")).args(["--format", "csv", "--no-plots"]).output().unwrap();
    let text = String::from_utf8(csv.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "rank,variant,schedule,schedule.learning_rate,train.batch_size,seeds,mean_final_val_accuracy,std,min,max,mean_final_val_loss,status,vs_best,difference_95"
        )
    );
    let mut means = Vec::new();
    let rows = csv_rows(&out.join("grid/summary.csv"));
    let lines: Vec<&str> = lines.collect();
    assert_eq!(lines.len(), 2, "one row per variant: {text}");
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let accs: Vec<f64> = rows[1..]
            .iter()
            .filter(|r| r[0].starts_with(&format!("{}-", f[1])))
            .map(|r| r[column_index(&rows, "final_val_accuracy")].parse().unwrap())
            .collect();
        assert_eq!(accs.len(), 2, "{line}");
        let mean = (accs[0] + accs[1]) / 2.0;
        let std = ((accs[0] - mean).powi(2) + (accs[1] - mean).powi(2)).sqrt();
        assert_eq!(f[6], format!("{mean:.4}"));
        assert_eq!(f[7], format!("{std:.4}"));
        let losses: Vec<f64> = rows[1..]
            .iter()
            .filter(|r| r[0].starts_with(&format!("{}-", f[1])))
            .map(|r| r[column_index(&rows, "final_val_loss")].parse().unwrap())
            .collect();
        assert_eq!(f[10], format!("{:.4}", (losses[0] + losses[1]) / 2.0));
        assert_eq!(f[11], "2 completed");
        means.push((f[12].to_string(), f[13].to_string(), mean, accs));
    }
    // The best variant, then the other against it: Welch's interval over the two seeds
    // (Welch-Satterthwaite df between 1 and 2 here, so t between 4.30 and 12.71).
    assert_eq!((means[0].0.as_str(), means[0].1.as_str()), ("best", ""));
    let (verdict, interval, mean, accs) = &means[1];
    let (diff, half) = interval.split_once(" ± ").unwrap();
    let (diff, half): (f64, f64) = (diff.parse().unwrap(), half.parse().unwrap());
    assert!((diff - (mean - means[0].2)).abs() < 1e-4, "{interval}");
    let var = |a: &[f64]| {
        let m = (a[0] + a[1]) / 2.0;
        (a[0] - m).powi(2) + (a[1] - m).powi(2)
    };
    let se = (var(accs) / 2.0 + var(&means[0].3) / 2.0).sqrt();
    if se > 0.0 {
        assert!(half >= 4.30 * se - 1e-4 && half <= 12.71 * se + 1e-4, "{interval}, se {se}");
    }
    assert_eq!(verdict, if diff.abs() <= half { "tied" } else { "worse" });
    // The table's notes say what the interval is and how large the validation set is.
    let table = runner().arg("report").arg(out.join("grid")).arg("--no-plots").output().unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("note: every evaluation reads 359 validation samples (one sample is 0.28% of accuracy)"),
        "{table}"
    );
    assert!(table.contains("note: vs_best: Welch's 95% interval over seeds"), "{table}");
}

fn column_index(rows: &[Vec<String>], name: &str) -> usize {
    rows[0].iter().position(|h| h == name).unwrap()
}

/// An interrupted run's partial metrics never outrank a finished run: it is listed after
/// every completed run (marked by its status) in the report and in summary.csv, and its
/// metrics stay out of its variant's mean over seeds.
#[test]
fn interrupted_runs_are_ranked_after_completed_ones_whatever_their_metrics() {
    let dir = TempDir::new().unwrap();
    let body = GRID.replace("seeds = [1, 2]\n", "").replace("name = \"grid\"", "name = \"ranks\"");
    let cfg = config(dir.path(), "ranks", &body);
    let out = dir.path().join("out");
    sweep(&cfg, &out).arg("--quiet").assert().success();
    let exp = out.join("ranks");
    let before = column(&csv_rows(&exp.join("summary.csv")), "run");
    assert_eq!(before.len(), 2);
    // The worse run, marked interrupted with a perfect (partial) accuracy.
    let worse = before[1].clone();
    let path = exp.join(&worse).join("summary.json");
    let mut summary: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    summary["status"] = "interrupted".into();
    summary["final_metrics"]["val_accuracy"] = 1.0.into();
    fs::write(&path, serde_json::to_string_pretty(&summary).unwrap()).unwrap();

    let report = runner().arg("report").arg(&exp).arg("--no-plots").output().unwrap();
    assert!(report.status.success());
    let text = String::from_utf8(report.stdout).unwrap();
    let at = |name: &str| text.find(name).unwrap_or_else(|| panic!("{name} not in the report:\n{text}"));
    assert!(at(&before[0]) < at(&worse), "the interrupted run is ranked first:\n{text}");
    // summary.csv, rebuilt from the run directories by collect, says the same; collect
    // fails (exit 1) while a run did not finish, naming it.
    runner()
        .arg("collect")
        .arg(&exp)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!("1 of 2 runs did not finish: {worse} (interrupted)")));
    let rows = csv_rows(&exp.join("summary.csv"));
    assert_eq!(column(&rows, "run"), before, "summary.csv ranks the interrupted run first");
    assert_eq!(column(&rows, "status"), ["completed", "interrupted"]);
}

#[test]
fn two_experiments_side_by_side_say_which_differences_are_real() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "grid", GRID);
    let out = dir.path().join("out");
    sweep(&cfg, &out).arg("--quiet").assert().success();
    // The same variants trained for 4 epochs instead of 2, as another experiment.
    sweep(&cfg, &out).args(["--quiet", "--set", "name=\"longer\"", "--set", "train.epochs=4"]).assert().success();
    let o = runner()
        .arg("report")
        .arg(out.join("grid"))
        .arg(out.join("longer"))
        .args(["--format", "csv"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "variant,grid: seeds,grid: mean_final_val_accuracy,longer: seeds,longer: mean_final_val_accuracy,difference_95,better"
    );
    let mean = |exp: &str, variant: &str| -> f64 {
        let rows = csv_rows(&out.join(exp).join("summary.csv"));
        let v: Vec<f64> = rows[1..]
            .iter()
            .filter(|r| r[0].starts_with(&format!("{variant}-seed")))
            .map(|r| r[column_index(&rows, "final_val_accuracy")].parse().unwrap())
            .collect();
        assert_eq!(v.len(), 2);
        (v[0] + v[1]) / 2.0
    };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in rows {
        let (a, b) = (mean("grid", row[0]), mean("longer", row[0]));
        assert_eq!((row[1], row[3]), ("2", "2"));
        assert_eq!(row[2], format!("{a:.4}"));
        assert_eq!(row[4], format!("{b:.4}"));
        let (diff, half) = row[5].split_once(" ± ").unwrap();
        let (diff, half): (f64, f64) = (diff.parse().unwrap(), half.parse().unwrap());
        assert!((diff - (b - a)).abs() < 1e-4, "{row:?}");
        let expected = if diff.abs() <= half {
            "tied"
        } else if diff > 0.0 {
            "longer"
        } else {
            "grid"
        };
        assert_eq!(row[6], expected, "{row:?}");
    }
}

/// `--sweep KEY=V1,V2,...` (Hydra's multirun) is a [sweep] grid axis given on the command
/// line: the same runs as the table, bare words as strings, errors that name the flag.
#[test]
fn sweep_axes_from_the_command_line_are_the_table_s() {
    let dir = TempDir::new().unwrap();
    let base = "name = \"grid\"\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 100\n";
    let plain = config(dir.path(), "plain", base);
    let table = config(
        dir.path(),
        "table",
        &format!(
            "{base}[sweep]\n\"schedule.learning_rate\" = [0.03, 0.1]\n\"model.activation\" = [\"relu\", \"tanh\"]\n"
        ),
    );
    let listing = |cfg: &Path, extra: &[&str]| {
        let o = runner().arg("run").arg(cfg).arg("--dry-run").args(extra).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let from_flags =
        listing(&plain, &["--sweep", "schedule.learning_rate=0.03,0.1", "--sweep", "model.activation=relu,tanh"]);
    assert_eq!(from_flags, listing(&table, &[]));
    assert!(from_flags.starts_with("grid: 4 runs"), "{from_flags}");
    assert!(from_flags.contains("cosine_decay-lr0.1-activationtanh"), "{from_flags}");
    runner()
        .arg("run")
        .arg(&plain)
        .args(["--dry-run", "--sweep", "schedule.learning_rate"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`--sweep schedule.learning_rate`: no '=' between the key and its values"));
    runner()
        .arg("run")
        .arg(&plain)
        .args(["--dry-run", "--sweep", "schedule.learning_rate=0.03,fast"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`schedule.learning_rate` must be a number >= 0, found the string \"fast\""));
}

/// Runs launched one after another into one experiment are all kept: runs.json and
/// summary.csv list each (with its own config hash), a later sweep adds its runs and its
/// columns, and `report A B` compares two runs, or two experiments pair by pair.
#[test]
fn runs_launched_one_after_another_into_one_experiment_are_all_listed_and_compared() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let base = "name = \"cmp\"\n[train]\nepochs = 1\n[schedule]\nlearning_rate = 0.1\n";
    let exp_cfg =
        config(dir.path(), "exp", &format!("{base}kind = \"exponential_decay\"\ndecay_steps = 50\ndecay_rate = 0.5\n"));
    let cos_cfg = config(dir.path(), "cos", &format!("{base}kind = \"cosine_decay\"\ndecay_steps = 50\n"));
    sweep(&exp_cfg, &out).arg("--quiet").assert().success();
    sweep(&cos_cfg, &out).arg("--quiet").assert().success();
    let exp = out.join("cmp");
    let plan: serde_json::Value = serde_json::from_str(&fs::read_to_string(exp.join("runs.json")).unwrap()).unwrap();
    let names: Vec<&str> = plan["runs"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    // The latest launch first (a Slurm task trains run OFFSET + T of its launch), then the kept runs.
    assert_eq!(names, ["cosine_decay", "exponential_decay"]);
    let rows = csv_rows(&exp.join("summary.csv"));
    let mut listed = column(&rows, "run");
    listed.sort();
    assert_eq!(listed, ["cosine_decay", "exponential_decay"]);
    let hashes = column(&rows, "config_hash");
    assert!(hashes.iter().all(|h| h.len() == 16) && hashes[0] != hashes[1], "{hashes:?}");
    let report = runner().arg("report").arg(&exp).arg("--no-plots").output().unwrap();
    let text = String::from_utf8(report.stdout).unwrap();
    assert!(text.starts_with("cmp: 2 runs, ranked by final val_accuracy"), "{text}");

    // A sweep into it adds its runs and its swept key; the single runs keep their rows,
    // blank under the key they did not sweep.
    let grid = config(
        dir.path(),
        "grid",
        &format!("{base}kind = \"constant\"\n[sweep]\n\"schedule.learning_rate\" = [0.1, 0.03]\n"),
    );
    sweep(&grid, &out).arg("--quiet").assert().success();
    let plan: serde_json::Value = serde_json::from_str(&fs::read_to_string(exp.join("runs.json")).unwrap()).unwrap();
    assert_eq!(plan["columns"], serde_json::json!(["schedule.learning_rate"]));
    let runs: Vec<(String, serde_json::Value)> = plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["params"].clone()))
        .collect();
    assert_eq!(
        runs,
        [
            ("constant-lr0.1".to_string(), serde_json::json!(["0.1"])),
            ("constant-lr0.03".to_string(), serde_json::json!(["0.03"])),
            ("cosine_decay".to_string(), serde_json::json!([""])),
            ("exponential_decay".to_string(), serde_json::json!([""])),
        ]
    );
    assert_eq!(csv_rows(&exp.join("summary.csv")).len(), 5);

    // A runs.json that lists one run only (as runner wrote before) still shows every run
    // directory of the experiment.
    let one = serde_json::json!({"experiment": "cmp", "columns": [], "runs": [plan["runs"][2].clone()]});
    fs::write(exp.join("runs.json"), one.to_string()).unwrap();
    runner().arg("collect").arg(&exp).arg("--quiet").assert().success();
    assert_eq!(csv_rows(&exp.join("summary.csv")).len(), 5);

    // Two run directories side by side: one pair, named by run.
    let o = runner()
        .arg("report")
        .arg(exp.join("exponential_decay"))
        .arg(exp.join("cosine_decay"))
        .args(["--format", "csv"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "variant,cmp/exponential_decay: seeds,cmp/exponential_decay: mean_final_val_accuracy,cmp/cosine_decay: seeds,\
         cmp/cosine_decay: mean_final_val_accuracy,difference_95,better"
    );
    assert_eq!(lines.len(), 2, "{text}");
    let summary = csv_rows(&exp.join("summary.csv"));
    let accuracy = |run: &str| {
        let i = summary[0].iter().position(|h| h == "final_val_accuracy").unwrap();
        format!("{:.4}", summary.iter().find(|r| r[0] == run).unwrap()[i].parse::<f64>().unwrap())
    };
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(
        row[..5],
        ["exponential_decay vs cosine_decay", "1", &accuracy("exponential_decay"), "1", &accuracy("cosine_decay")]
    );
    assert!(
        row[5].contains(" ± ") && ["tied", "cmp/exponential_decay", "cmp/cosine_decay"].contains(&row[6]),
        "{row:?}"
    );

    // Two experiments whose variants are named differently: --pair.
    let other = config(
        dir.path(),
        "other",
        &format!("{base}kind = \"cosine_decay\"\ndecay_steps = 50\n").replace("cmp", "other"),
    );
    sweep(&other, &out).arg("--quiet").assert().success();
    let o = runner()
        .arg("report")
        .arg(&exp)
        .arg(out.join("other"))
        .args(["--format", "csv", "--pair", "exponential_decay=cosine_decay,constant-lr0.1=cosine_decay"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let labels: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(labels, ["exponential_decay vs cosine_decay", "constant-lr0.1 vs cosine_decay"]);
    runner()
        .arg("report")
        .arg(&exp)
        .arg(out.join("other"))
        .args(["--pair", "exp=cosine_decay"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("has no variant \"exp\"; its variants: ")
                .and(predicate::str::contains("exponential_decay")),
        );
    runner().arg("report").arg(&exp).args(["--pair", "exponential_decay=cosine_decay"]).assert().code(2).stderr(
        predicate::str::contains(
            "--pair compares a variant of one experiment with one of another: give two directories",
        ),
    );
}
