//! The device option through the real binary, on a machine without a GPU (what CI has):
//! `[train] device` and `--device` are read and checked, a GPU that cannot be used is
//! refused before anything runs or is written (exit 2) with what to do, `cpu` trains as
//! before and says so in summary.json, and a Slurm sweep on GPUs is refused where it cannot work (the script's
//! `--gpus-per-task` is checked in src/slurm/script.rs). What needs a
//! GPU is in tests/gpu.rs.

mod common;

use common::{config, runner};
use predicates::prelude::*;
use std::fs;

const BODY: &str = "name = \"exp\"\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = \"run\"\n[train]\nepochs = 1\n";

#[test]
fn a_gpu_device_is_refused_before_anything_runs_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "exp", &format!("{BODY}device = \"cuda\"\n"));
    let out = dir.path().join("out");
    // Without the feature: how to build it; with it on a machine without a driver: that.
    let expected = if cfg!(feature = "cuda") { "no NVIDIA driver here" } else { "--features cuda" };
    runner()
        .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("device = \"cuda\"").and(predicate::str::contains(expected)));
    assert!(!out.exists(), "nothing is written");
    // The same from the command line, for a sweep and for eval/sample/lr-find.
    let cpu_cfg = config(dir.path(), "cpu", BODY);
    for args in [
        vec!["sweep", cpu_cfg.to_str().unwrap(), "--device", "cuda:1", "--out", out.to_str().unwrap()],
        vec!["lr-find", cpu_cfg.to_str().unwrap(), "--device", "cuda", "--out", out.to_str().unwrap()],
    ] {
        runner().args(&args).assert().code(2).stderr(predicate::str::contains(expected));
        assert!(!out.exists(), "{args:?} wrote something");
    }
}

#[test]
fn a_device_that_is_no_device_says_what_is_accepted_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "exp", &format!("{BODY}device = \"tpu\"\n"));
    runner()
        .args(["run", cfg.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("exp.toml:8:")
                .and(predicate::str::contains("\"tpu\" is not a device"))
                .and(predicate::str::contains("\"cpu\", \"cuda\" (the first GPU) or \"cuda:N\"")),
        );
    let cfg = config(dir.path(), "cpu", BODY);
    for bad in ["gpu0", "cuda:", "cuda:-1"] {
        runner()
            .args(["run", cfg.to_str().unwrap(), "--device", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!("\"{bad}\" is not a device")));
    }
    // Placement flags on runs that train on the CPU.
    runner()
        .args(["sweep", cfg.to_str().unwrap(), "--gpus", "0,1", "--out", dir.path().join("out").to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--device cuda"));
}

#[test]
fn the_cpu_device_trains_as_before_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "exp", BODY);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    runner().args(["run", "-q", cfg.to_str().unwrap(), "--out", a.to_str().unwrap()]).assert().success();
    runner()
        .args(["run", "-q", cfg.to_str().unwrap(), "--device", "cpu", "--out", b.to_str().unwrap()])
        .assert()
        .success();
    let runs = |out: &std::path::Path| common::results_without_clock(&out.join("exp"));
    assert_eq!(runs(&a), runs(&b));
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(b.join("exp/cosine_decay/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["device"], "cpu");
    // The device is how a run is run, not what it is: the config (and its hash) is the same.
    assert_eq!(
        fs::read_to_string(a.join("exp/cosine_decay/config.toml")).unwrap(),
        fs::read_to_string(b.join("exp/cosine_decay/config.toml")).unwrap()
    );
    // Its weights evaluate on the device asked for.
    runner()
        .args(["eval", b.join("exp/cosine_decay").to_str().unwrap(), "--device", "cpu"])
        .assert()
        .success()
        .stdout(predicate::str::contains("val_accuracy"));
}

#[test]
fn a_slurm_sweep_on_gpus_is_refused_without_gpu_support_or_with_local_placement() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "exp", &format!("{BODY}[sweep]\nseeds = [1, 2]\n"));
    let out = dir.path().join("out");
    let plan = runner()
        .args(["sweep", cfg.to_str().unwrap(), "--backend", "slurm", "--device", "cuda", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    if !cfg!(feature = "cuda") {
        // The nodes run this binary: built without GPUs, it is refused at submission.
        assert_eq!(plan.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&plan.stderr).contains("--features cuda"));
        assert!(!out.exists());
    }
    runner()
        .args(["sweep", cfg.to_str().unwrap(), "--backend", "slurm", "--device", "cuda", "--gpus", "0", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--gpus-per-task"));
}
