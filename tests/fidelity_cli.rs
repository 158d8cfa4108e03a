//! Fidelity details through the real binary: the plateau preview behind a warmup matches
//! training, PyTorch's threshold_mode and CosineAnnealingLR (values in
//! tests/reference/schedules.json, checked by schedule_reference.rs; here their config
//! rules), pixel scaling for images, result files (val_loss precision, the best evaluation
//! by the monitored metric, an interrupted run's epochs), and terminal output.

mod common;

use common::{column, config, csv_rows, runner};
use std::fs;
use std::path::Path;
use tempfile::TempDir;

fn run(cfg: &Path, out: &Path) {
    let o = runner().arg("run").arg(cfg).args(["--quiet", "--out"]).arg(out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_plateau_preview_behind_a_warmup_shows_the_rates_training_used() {
    let dir = TempDir::new().unwrap();
    let body = "name = \"wp\"\n[schedule]\nkind = \"reduce_on_plateau\"\nlearning_rate = 0.1\nfactor = 0.5\npatience = 1\nwarmup_steps = 100\n[train]\nepochs = 8\nlog_every = 1\n";
    let cfg = config(dir.path(), "wp", body);
    run(&cfg, &dir.path().join("out"));
    let run_dir = dir.path().join("out/wp/reduce_on_plateau");
    let metrics = csv_rows(&run_dir.join("metrics.csv"));
    let losses = column(&metrics, "val_loss");
    fs::write(dir.path().join("m.txt"), losses.join("\n")).unwrap();
    let out = runner().arg("schedule").arg(&cfg).arg("--metrics").arg(dir.path().join("m.txt")).output().unwrap();
    assert!(out.status.success());
    let preview: Vec<f64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    // The rate training used at the step after evaluation i (45 steps an epoch on digits).
    let steps = csv_rows(&run_dir.join("steps.csv"));
    let rates: Vec<f64> = column(&steps, "lr").iter().map(|v| v.parse().unwrap()).collect();
    for (i, want) in preview.iter().enumerate().take(losses.len() - 1) {
        assert_eq!(*want, rates[(i + 1) * 45], "after evaluation {}", i + 1);
    }
    // Inside the warmup after the first evaluation: 0.1 * 45 / 100, not 0.
    assert!((preview[0] - 0.045).abs() < 1e-15, "{preview:?}");
    assert!(preview.iter().any(|&lr| lr < 0.1 - 1e-12), "a plateau reduced the rate: {preview:?}");
}

#[test]
fn torch_threshold_mode_and_cosine_annealing_are_configured_as_documented() {
    let dir = TempDir::new().unwrap();
    let keras_rel = config(
        dir.path(),
        "k",
        "[schedule]\nkind = \"reduce_on_plateau\"\nlearning_rate = 0.1\nthreshold_mode = \"rel\"\n",
    );
    let out = runner().arg("schedule").arg(&keras_rel).args(["--steps", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Keras compares min_delta absolutely; use compat = \"torch\"")
    );
    // Past t_max, PyTorch's annealing rises again; the run is warned, and its last rate is
    // back at the start after a whole period (t_max = 675 in a 1350-step run).
    let annealing =
        config(dir.path(), "a", "[schedule]\nkind = \"cosine_annealing\"\nlearning_rate = 0.1\nt_max = 675\n");
    let out = runner().arg("schedule").arg(&annealing).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`schedule.t_max` = 675 is shorter than the run (1350 steps): after step 675, PyTorch's cosine annealing rises back"), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    let rate = |step: usize| -> f64 { text.lines().nth(step + 1).unwrap().split(',').nth(1).unwrap().parse().unwrap() };
    assert!(rate(675) < 1e-12 && rate(1349) > 0.0999, "{} {}", rate(675), rate(1349));
    let out = runner()
        .arg("schedule")
        .arg(config(dir.path(), "r", "[schedule]\nkind = \"cosine_annealing\"\nlearning_rate = 0.1\nt_max = \"run\"\n"))
        .output()
        .unwrap();
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn images_are_scaled_as_pixels_by_default_and_tables_are_standardised() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    run(
        &config(dir.path(), "img", "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nepochs = 1\n"),
        &out,
    );
    let saved = fs::read_to_string(out.join("img/constant/config.toml")).unwrap();
    assert!(saved.contains("scale = \"pixels\""), "{saved}");
    run(
        &config(
            dir.path(),
            "tab",
            "[dataset]\nkind = \"moons\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nepochs = 1\n",
        ),
        &out,
    );
    assert!(fs::read_to_string(out.join("tab/constant/config.toml")).unwrap().contains("scale = \"standardize\""));
    let refused = |body: &str| {
        let o = runner().arg("schedule").arg(config(dir.path(), "bad", body)).output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        String::from_utf8(o.stderr).unwrap()
    };
    let e = refused("[dataset]\nstandardize = true\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n");
    assert!(e.contains("`dataset.standardize` was replaced by `scale`: write scale = \"standardize\""), "{e}");
    let e = refused(
        "[dataset]\nkind = \"moons\"\nscale = \"pixels\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n",
    );
    assert!(
        e.contains("`dataset.scale` is \"pixels\", which is for image data sets (digits, mnist, cifar10, cifar100)"),
        "{e}"
    );
}

#[test]
fn result_files_keep_f64_losses_and_the_best_evaluation_of_the_monitored_metric() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let body = "name = \"es\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.3\n[train]\nepochs = 12\n[train.early_stopping]\nmonitor = \"val_loss\"\npatience = 20\n";
    run(&config(dir.path(), "es", body), &out);
    let run_dir = out.join("es/constant");
    let rows = csv_rows(&run_dir.join("metrics.csv"));
    let losses: Vec<f64> = column(&rows, "val_loss").iter().map(|v| v.parse().unwrap()).collect();
    // Means in f64, like train_loss: not an f32 widened to f64.
    let widened = losses.iter().filter(|&&v| (v as f32) as f64 == v).count();
    assert!(widened <= 1, "val_loss written at f32 precision: {losses:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["best_by"], "val_loss");
    let best = losses.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(summary["best_metrics"]["val_loss"].as_f64().unwrap(), best);
    // Without a monitored metric: the ranking metric.
    run(
        &config(dir.path(), "plain", "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nepochs = 2\n"),
        &out,
    );
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("plain/constant/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["best_by"], "val_accuracy");
}

#[test]
fn an_interrupted_run_counts_the_epochs_its_metrics_show() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let cfg =
        config(dir.path(), "long", "[schedule]\nkind = \"constant\"\nlearning_rate = 0.05\n[train]\nepochs = 400\n");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(&cfg)
        .args(["--quiet", "--out"])
        .arg(&out)
        .spawn()
        .unwrap();
    let metrics = out.join("long/constant/metrics.csv");
    let started = std::time::Instant::now();
    while fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < 4 {
        assert!(started.elapsed().as_secs() < 60, "the run never evaluated");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("long/constant/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "interrupted");
    let rows = csv_rows(&metrics);
    let last_epoch: u64 = column(&rows, "epoch").last().unwrap().parse().unwrap();
    assert_eq!(summary["epochs"].as_u64().unwrap(), last_epoch);
}

#[test]
fn terminal_listings_stay_aligned_and_plots_keep_their_digits() {
    let out = runner().arg("schedules").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // Every parameter row: the default and accepted-values columns start at the same place
    // (a long default such as one_cycle's used to push its row's columns out of line).
    let column_starts = |l: &str| -> Vec<usize> {
        let b = l.as_bytes();
        (4..b.len()).filter(|&i| b[i] != b' ' && b[i - 1] == b' ' && b[i - 2] == b' ').collect()
    };
    let starts: Vec<(usize, usize)> = text
        .lines()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
        .map(|l| {
            let c = column_starts(l);
            (c[1], c[2])
        })
        .collect();
    assert!(starts.len() > 80);
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "columns misaligned: {starts:?}");
    let plot = runner().args(["schedule", "configs/cosine.toml", "--plot", "--steps", "1000"]).output().unwrap();
    let text = String::from_utf8(plot.stdout).unwrap();
    // The cosine is at 0.0158 by step 999: its label has three significant digits.
    assert!(text.contains("0.0158"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.trim_start().starts_with("0 ") && last.trim_end().ends_with("999"), "{last}");
    assert!(!last.contains(".0"), "{last}");
}
