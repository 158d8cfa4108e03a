//! Shared prefixes through the real binary: a sweep of warmup-stable-decay cool-downs and a
//! constant baseline trains the steps its runs share once (counted from the steps trained),
//! and every run's files are those it writes alone (`--no-share`), at 1 and 2 threads,
//! also when the sweep is killed at arbitrary moments and rerun.

mod common;

use common::{config, results_without_clock, runner};
use runner::store::tensorboard::{HParamKind, HParamsData, SESSION_START_TAG, find, hparams, read, scalar_series};
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Five cool-downs (the last tenth to half of the run) and a constant rate, the same warmup.
fn cooldowns(epochs: u64, threads: u64) -> String {
    let mut text = format!(
        "name = \"wsd\"\n[train]\nepochs = {epochs}\nthreads = {threads}\n[sweep]\njobs = 2\n\
         [[sweep.schedule]]\nname = \"constant\"\nkind = \"constant\"\nlearning_rate = 0.1\nwarmup_steps = 20\n"
    );
    for d in [1, 2, 3, 4, 5] {
        text.push_str(&format!(
            "[[sweep.schedule]]\nname = \"wsd{d}\"\nkind = \"warmup_stable_decay\"\nlearning_rate = 0.1\nwarmup_steps = 20\n\
             decay_steps = \"{} epochs\"\n",
            d * epochs / 10
        ));
    }
    text
}

/// The steps trained, and the steps of the runs, from the line a sweep ends with.
fn steps_trained(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().find(|l| l.contains(" steps its runs take "))?;
    let number = |s: &str| s.replace(',', "").parse::<u64>().unwrap();
    let rest = line.split("trained ").nth(1)?;
    let (trained, rest) = rest.split_once(" of the ")?;
    Some((number(trained), number(rest.split_whitespace().next()?)))
}

fn same_files(shared: &Path, alone: &Path) {
    assert_eq!(results_without_clock(shared), results_without_clock(alone));
    for run in ["constant", "wsd1", "wsd2", "wsd3", "wsd4", "wsd5"] {
        let (a, b) = (shared.join(run), alone.join(run));
        assert_eq!(
            fs::read(a.join("model.safetensors")).unwrap(),
            fs::read(b.join("model.safetensors")).unwrap(),
            "{run}"
        );
        let (ea, eb) = (read(&find(&a).unwrap()).unwrap(), read(&find(&b).unwrap()).unwrap());
        for tag in ["lr", "train_loss", "val_loss", "val_accuracy"] {
            assert_eq!(scalar_series(&ea, tag), scalar_series(&eb, tag), "{run}: {tag}");
        }
        // Its own hyperparameters, not those of the run whose steps it took.
        let Some(HParamsData::SessionStartInfo(start)) = hparams(&ea, SESSION_START_TAG) else { panic!("{run}") };
        assert_eq!(start.hparams["schedule"].kind, Some(HParamKind::Text(run.to_string())));
    }
}

#[test]
fn cool_downs_train_their_shared_steps_once_and_end_as_they_would_alone() {
    let dir = TempDir::new().unwrap();
    for threads in [1, 2] {
        let cfg = config(dir.path(), &format!("wsd{threads}"), &cooldowns(10, threads));
        let (shared, alone) = (dir.path().join(format!("shared{threads}")), dir.path().join(format!("alone{threads}")));
        // 45 steps an epoch, 450 in all; cool-down d starts at 450 - 45 d and its rate parts
        // from the others a step later. Trained: the constant run's 450, and each cool-down
        // from where it parts, 45 d - 1.
        let expected = 450 + (1..=5).map(|d| 45 * d - 1).sum::<u64>();
        let dry = runner().arg("run").arg(&cfg).arg("--dry-run").output().unwrap();
        let listing = String::from_utf8(dry.stdout).unwrap();
        assert!(
            listing.contains(&format!(
                "6 runs, 450 steps each: {} steps to train instead of 2,700",
                format_thousands(expected)
            )),
            "{listing}"
        );
        assert!(
            listing.contains("run from step 406 (constant's)") && listing.contains("steps 0 to 226: constant, wsd1"),
            "{listing}"
        );

        let o = runner().arg("run").arg(&cfg).arg("--out").arg(&shared).output().unwrap();
        let stderr = String::from_utf8(o.stderr).unwrap();
        assert!(o.status.success(), "{stderr}");
        assert_eq!(steps_trained(&stderr), Some((expected, 2700)), "{stderr}");
        assert!(
            stderr.contains("wsd5: steps 0 to 226 shared with constant (trained once), continuing from there"),
            "{stderr}"
        );
        assert!(!shared.join("wsd/.forks").exists(), "the forks are removed once every run has finished");

        let o = runner().arg("run").arg(&cfg).arg("--no-share").arg("--out").arg(&alone).output().unwrap();
        let stderr = String::from_utf8(o.stderr).unwrap();
        assert!(o.status.success() && steps_trained(&stderr).is_none(), "{stderr}");
        same_files(&shared.join("wsd"), &alone.join("wsd"));
    }
}

fn format_thousands(n: u64) -> String {
    runner::sweep::share::thousands(n)
}

/// Killed (SIGKILL) at moments spread over the sweep, then run again until it ends: the
/// same files as the runs trained alone.
#[test]
fn a_sweep_killed_at_any_moment_and_rerun_ends_as_the_runs_alone() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "wsd", &cooldowns(40, 1));
    let (cut, alone) = (dir.path().join("cut"), dir.path().join("alone"));
    runner().arg("run").arg(&cfg).args(["--no-share", "--quiet", "--out"]).arg(&alone).assert().success();
    let bin = assert_cmd::cargo::cargo_bin("runner");
    // Kill after these many milliseconds, again and again, until a run of the sweep ends
    // by itself (then once more to its end).
    let mut kills = 0;
    for wait in [700u64, 1900, 300, 2600, 1300, 900, 3100, 500, 2200, 1600].iter().cycle().take(40) {
        let mut child = std::process::Command::new(&bin)
            .arg("run")
            .arg(&cfg)
            .args(["--quiet", "--out"])
            .arg(&cut)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(*wait) && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let _ = child.kill();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 3, "the sweep was killed {kills} times: too fast to test");
    runner().arg("run").arg(&cfg).args(["--quiet", "--out"]).arg(&cut).assert().success();
    same_files(&cut.join("wsd"), &alone.join("wsd"));
}

/// A finished sweep made longer (`train.epochs` 10 -> 12): each run whose rates up to its
/// latest checkpoint are the longer run's (the constant run; each cool-down, which starts
/// later now) continues from that checkpoint instead of step 0, says so, keeps the shorter
/// run's results in replaced/, and ends with the files of the longer run trained alone.
#[test]
fn a_finished_sweep_made_longer_continues_from_its_checkpoints() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "wsd", &cooldowns(10, 1));
    let (out, alone) = (dir.path().join("out"), dir.path().join("alone"));
    runner().arg("run").arg(&cfg).args(["--quiet", "--out"]).arg(&out).assert().success();
    let longer = ["--set", "train.epochs=12"];
    let dry = runner().arg("run").arg(&cfg).args(longer).arg("--dry-run").arg("--out").arg(&out).output().unwrap();
    let listing = String::from_utf8(dry.stdout).unwrap();
    assert_eq!(listing.matches("continue from step ").count(), 6, "{listing}");
    let o = runner().arg("run").arg(&cfg).args(longer).arg("--out").arg(&out).output().unwrap();
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("continuing its finished run of another config from its checkpoint at step").count(),
        6,
        "{stderr}"
    );
    let (trained, of_runs) = steps_trained(&stderr).unwrap();
    assert!(trained < of_runs / 2 && of_runs == 6 * 540, "{stderr}");
    assert_eq!(fs::read_dir(out.join("wsd/replaced")).unwrap().count(), 6, "the shorter runs are kept");
    runner().arg("run").arg(&cfg).args(longer).args(["--no-share", "--quiet", "--out"]).arg(&alone).assert().success();
    same_files(&out.join("wsd"), &alone.join("wsd"));
}
