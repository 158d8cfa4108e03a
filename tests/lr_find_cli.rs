//! `runner lr-find` through the real binary, on a problem whose good rate is known: least
//! squares with a linear model on one standardised feature (the `sine` data set). Its loss
//! `mean((w x + b - y)²)` has the Hessian 2·I, so plain SGD converges fastest at rate 0.5
//! and diverges above 1: the suggestion must lie in the stable range, within 1.7 decades
//! of 0.5, and the test must stop only past 1. Also: the files, determinism, bad flags.

mod common;

use common::{column, config, csv_rows, runner};
use std::fs;
use tempfile::TempDir;

const LEAST_SQUARES: &str = "name = \"lin\"\n[dataset]\nkind = \"sine\"\npoints = 2000\nnoise = 0.1\n\
    [model]\nkind = \"linear\"\n[optimizer]\nkind = \"sgd\"\nmomentum = 0.0\n\
    [schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nbatch_size = 64\n";

fn suggestion(said: &str, prefix: &str) -> f64 {
    let line = said.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {said}"));
    line[prefix.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn the_suggestion_lies_where_least_squares_converges() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "lin", LEAST_SQUARES);
    for seed in ["1", "2", "3"] {
        let out = dir.path().join(format!("out{seed}"));
        let o = runner()
            .args(["lr-find"])
            .arg(&cfg)
            .args(["--start", "1e-4", "--end", "100", "--steps", "300", "--set", &format!("train.seed={seed}")])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let said = String::from_utf8(o.stdout).unwrap();
        assert!(o.status.success(), "{said}{}", String::from_utf8_lossy(&o.stderr));
        let steep = suggestion(&said, "suggested peak learning rate: ");
        assert!((0.01..1.0).contains(&steep), "seed {seed}: {said}");
        let min = suggestion(&said, "the rate at the smoothed loss's minimum, divided by 10: ");
        assert!((0.01..0.5).contains(&min), "seed {seed}: {said}");
        assert!(said.contains("(stopped: the smoothed loss passed 4 times its minimum)"), "{said}");
        let rows = csv_rows(&out.join("lin/lr_find/lr_find.csv"));
        assert_eq!(rows[0], ["step", "lr", "loss", "smoothed_loss"]);
        let rates: Vec<f64> = column(&rows, "lr").iter().map(|v| v.parse().unwrap()).collect();
        assert!((rates[0] - 1e-4).abs() < 1e-16);
        assert!(rates.windows(2).all(|w| w[1] > w[0]));
        assert!(*rates.last().unwrap() > 1.0, "it diverged only past the stable range: {rates:?}");
        assert!(rates.len() < 300, "and stopped there");
        let png = out.join("lin/lr_find/lr_find.png");
        let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(&png).unwrap()));
        let info = decoder.read_info().unwrap();
        assert_eq!((info.info().width, info.info().height), (1100, 650));
    }
    // The same seed, the same test.
    let again = dir.path().join("again");
    runner()
        .args(["lr-find"])
        .arg(&cfg)
        .args(["--start", "1e-4", "--end", "100", "--steps", "300", "--set", "train.seed=1", "--out"])
        .arg(&again)
        .assert()
        .success();
    assert_eq!(
        fs::read(again.join("lin/lr_find/lr_find.csv")).unwrap(),
        fs::read(dir.path().join("out1/lin/lr_find/lr_find.csv")).unwrap()
    );
}

#[test]
fn bad_rates_and_sweeps_without_a_run_are_refused() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "lin", LEAST_SQUARES);
    runner()
        .args(["lr-find"])
        .arg(&cfg)
        .args(["--start", "1", "--end", "0.1"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("the rates must rise from a positive start"));
    let sweep = config(
        dir.path(),
        "sw",
        "name = \"sw\"\n[sweep]\nschedules = [\"cosine_decay\", \"exponential_decay\"]\nlearning_rate = 0.1\n",
    );
    runner().args(["lr-find"]).arg(&sweep).assert().code(2).stderr(predicates::str::contains(
        "is a sweep of 2 runs; pick one with --run NAME: cosine_decay, exponential_decay",
    ));
}
