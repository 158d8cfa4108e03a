//! Fair comparisons through the real binary: warnings when a schedule does not fit its run
//! (stderr once per variant, summary.json, report), the config hash that identifies a run
//! (summary.json, runs.json, summary.csv), the refusals that keep results of different
//! configs apart (report, rerun, collect, --plan), and overrides from the command line.

mod common;

use common::{column, config, csv_rows, runner};
use sha2::Digest;
use std::fs;
use std::path::Path;
use tempfile::TempDir;

/// A cosine cut off by its run (decay_steps 2000 in a 90-step run), two seeds.
const CUT_OFF: &str = r#"
name = "cut"
[schedule]
kind = "cosine_decay"
learning_rate = 0.1
decay_steps = 2000
[sweep]
seeds = [1, 2]
[train]
epochs = 2
"#;

#[test]
fn a_warning_shared_by_many_variants_is_one_note_naming_a_few_and_counting_the_rest() {
    let dir = TempDir::new().unwrap();
    let body = CUT_OFF
        .replace("seeds = [1, 2]", "seeds = [1]\n\"optimizer.momentum\" = [0.0, 0.5, 0.8, 0.9, 0.95]")
        .replace("epochs = 2", "epochs = 1");
    let cfg = config(dir.path(), "cut", &body);
    let out = dir.path().join("out");
    assert!(run(&cfg, &out, &["--quiet"]).status.success());
    let report = runner().arg("report").arg(out.join("cut")).arg("--no-plots").output().unwrap();
    let text = String::from_utf8(report.stdout).unwrap();
    let notes: Vec<&str> = text.lines().filter(|l| l.contains("warning: `schedule.decay_steps` = 2000")).collect();
    assert_eq!(notes.len(), 1, "{text}");
    assert!(notes[0].starts_with("note: cosine_decay-"), "{text}");
    assert!(notes[0].contains(" and 2 more variants: warning: "), "{text}");
}

fn run(cfg: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    runner().arg("run").arg(cfg).arg("--out").arg(out).args(extra).output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sha16(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_cut_off_schedule_is_warned_about_once_per_variant_and_recorded() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "cut", CUT_OFF);
    let out = dir.path().join("out");
    let warning = "`schedule.decay_steps` = 2000 is longer than the run (90 steps): the rate ends at";
    let dry = run(&cfg, &out, &["--dry-run"]);
    assert!(dry.status.success());
    assert_eq!(stderr(&dry).matches(warning).count(), 1, "{}", stderr(&dry));
    let o = run(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.matches(warning).count(), 1, "once for the variant, not per seed: {e}");
    assert!(e.starts_with("warning: cosine_decay: "), "{e}");
    for seed in [1, 2] {
        let summary: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(out.join(format!("cut/cosine_decay-seed{seed}/summary.json"))).unwrap(),
        )
        .unwrap();
        let warnings = summary["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].as_str().unwrap().starts_with(warning), "{warnings:?}");
    }
    let report = runner().arg("report").arg(out.join("cut")).arg("--no-plots").output().unwrap();
    let text = String::from_utf8(report.stdout).unwrap();
    assert_eq!(text.matches("note: cosine_decay: warning: `schedule.decay_steps` = 2000").count(), 1, "{text}");
    // A run that fits says nothing, and its summary holds an empty list.
    let fits = config(
        dir.path(),
        "fits",
        &CUT_OFF.replace("decay_steps = 2000", "").replace("name = \"cut\"", "name = \"fits\""),
    );
    let o = run(&fits, &out, &["--quiet"]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
    let summary = fs::read_to_string(out.join("fits/cosine_decay-seed1/summary.json")).unwrap();
    assert!(summary.contains("\"warnings\": []"), "{summary}");
}

#[test]
fn every_run_records_the_hash_of_its_resolved_config() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "cut", CUT_OFF);
    let out = dir.path().join("out");
    assert!(run(&cfg, &out, &["--quiet"]).status.success());
    let exp = out.join("cut");
    let plan: serde_json::Value = serde_json::from_str(&fs::read_to_string(exp.join("runs.json")).unwrap()).unwrap();
    let rows = csv_rows(&exp.join("summary.csv"));
    for (i, name) in ["cosine_decay-seed1", "cosine_decay-seed2"].iter().enumerate() {
        let expected = sha16(&fs::read_to_string(exp.join(name).join("config.toml")).unwrap());
        let summary: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(exp.join(name).join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["config_hash"], expected.as_str());
        assert_eq!(plan["runs"][i]["config_hash"], expected.as_str());
        let csv_names = column(&rows, "run");
        let at = csv_names.iter().position(|n| n == name).unwrap();
        assert_eq!(column(&rows, "config_hash")[at], expected);
    }
    // Seeds differ in config, not in variant.
    let hashes: Vec<serde_json::Value> = ["cosine_decay-seed1", "cosine_decay-seed2"]
        .iter()
        .map(|n| serde_json::from_str(&fs::read_to_string(exp.join(n).join("summary.json")).unwrap()).unwrap())
        .collect::<Vec<serde_json::Value>>();
    assert_ne!(hashes[0]["config_hash"], hashes[1]["config_hash"]);
    assert_eq!(hashes[0]["variant_hash"], hashes[1]["variant_hash"]);
}

#[test]
fn a_rerun_with_a_changed_config_says_what_it_replaces_and_keeps_the_old_results() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "cut", CUT_OFF);
    let out = dir.path().join("out");
    assert!(run(&cfg, &out, &["--quiet"]).status.success());
    let exp = out.join("cut");
    let old_config = fs::read_to_string(exp.join("cosine_decay-seed2/config.toml")).unwrap();
    let old_metrics = fs::read_to_string(exp.join("cosine_decay-seed2/metrics.csv")).unwrap();
    // The dry run says which runs would be replaced and why.
    let dry = run(&cfg, &out, &["--dry-run", "--filter", "seed2", "--set", "train.epochs=3"]);
    let text = String::from_utf8(dry.stdout).unwrap();
    assert!(text.contains("replace (train.epochs 2 -> 3)"), "{text}");
    let o = run(&cfg, &out, &["--filter", "seed2", "--set", "train.epochs=3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("1 finished run of another config will be replaced"), "{e}");
    assert!(e.contains("  cosine_decay-seed2: train.epochs 2 -> 3"), "{e}");
    // The old results are kept, under replaced/<run>-<its config hash>.
    let kept = exp.join("replaced").join(format!("cosine_decay-seed2-{}", sha16(&old_config)));
    assert_eq!(fs::read_to_string(kept.join("metrics.csv")).unwrap(), old_metrics);
    assert!(fs::read_to_string(exp.join("cosine_decay-seed2/config.toml")).unwrap().contains("epochs = 3"));
    // The report does not average 2 and 3 epochs as one variant: it reports them apart.
    let report = runner().arg("report").arg(&exp).arg("--no-plots").output().unwrap();
    let text = String::from_utf8(report.stdout).unwrap();
    let rows = text.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()));
    assert_eq!(rows.filter(|l| l.contains("cosine_decay [config ")).count(), 2, "{text}");
    assert!(
        text.contains("note: cosine_decay: its runs trained different configs, so they are reported apart"),
        "{text}"
    );
}

#[test]
fn collect_never_merges_a_run_of_another_config() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "cut", CUT_OFF);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    assert!(
        runner()
            .args(["sweep"])
            .arg(&cfg)
            .args(["--shard", "0/2", "--quiet", "--out"])
            .arg(&a)
            .output()
            .unwrap()
            .status
            .success()
    );
    // The other shard ran an edited config (3 epochs).
    let o = runner()
        .args(["sweep"])
        .arg(&cfg)
        .args(["--shard", "1/2", "--quiet", "--set", "train.epochs=3", "--out"])
        .arg(&b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let c = runner().arg("collect").arg(a.join("cut")).arg(b.join("cut")).output().unwrap();
    assert_eq!(c.status.code(), Some(1), "{}", stderr(&c));
    let e = stderr(&c);
    assert!(e.contains("not merged: ") && e.contains("cosine_decay-seed2: trained config "), "{e}");
    assert!(e.contains("1 run not merged: its config differs from this experiment's plan"), "{e}");
    assert!(!a.join("cut/cosine_decay-seed2/summary.json").exists());
    // The same shard with the planned config merges.
    let o = runner()
        .args(["sweep"])
        .arg(&cfg)
        .args(["--shard", "1/2", "--quiet", "--force", "--out"])
        .arg(&b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let c = runner().arg("collect").arg(a.join("cut")).arg(b.join("cut")).output().unwrap();
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(a.join("cut/cosine_decay-seed2/summary.json").exists());
}

#[test]
fn plan_is_not_rewritten_while_a_job_of_it_is_queued() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "cut", CUT_OFF);
    let out = dir.path().join("out");
    let exp = out.join("cut");
    assert!(runner().arg("sweep").arg(&cfg).args(["--plan", "--out"]).arg(&out).output().unwrap().status.success());
    // A job of this plan is recorded, and a stand-in squeue lists one of its tasks pending.
    fs::create_dir_all(exp.join("slurm")).unwrap();
    fs::write(exp.join("slurm/jobs.json"), r#"[{"job_id": "77", "runs": [0, 1], "submitted_at": 0.0}]"#).unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let squeue = bin.join("squeue");
    fs::write(&squeue, "#!/bin/sh\necho '77_1|PENDING'\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&squeue, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let before = fs::read_to_string(exp.join("plan/cosine_decay-seed1.toml")).unwrap();
    let plan_again = || {
        runner()
            .arg("sweep")
            .arg(&cfg)
            .args(["--plan", "--set", "train.epochs=5", "--out"])
            .arg(&out)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let o = plan_again();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Slurm job 77 of this experiment still has 1 task queued or running"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read_to_string(exp.join("plan/cosine_decay-seed1.toml")).unwrap(), before);
    // Once the job has ended (squeue lists nothing), planning again is fine.
    fs::write(&squeue, "#!/bin/sh\nexit 0\n").unwrap();
    let o = plan_again();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(fs::read_to_string(exp.join("plan/cosine_decay-seed1.toml")).unwrap().contains("epochs = 5"));
}

#[test]
fn overrides_set_keys_and_are_checked_like_the_file() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let cosine = Path::new("configs/cosine.toml");
    // --set and bare key=value, recorded in the resolved config.
    let o = run(cosine, &out, &["--quiet", "--set", "train.epochs=2", "schedule.alpha=0.01"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let resolved = fs::read_to_string(out.join("cosine/cosine_decay/config.toml")).unwrap();
    assert!(resolved.contains("epochs = 2") && resolved.contains("alpha = 0.01"), "{resolved}");
    let rows = csv_rows(&out.join("cosine/cosine_decay/metrics.csv"));
    assert_eq!(column(&rows, "epoch"), ["1", "2"]);
    // Each error names the override, not a line of the file, and nothing runs (exit 2).
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "train.epochs=abc"],
            "configs/cosine.toml: in the override `--set train.epochs=abc`: `train.epochs` must be a whole number of steps >= 1, found the string \"abc\"\n   |\n   | --set train.epochs=abc\n   |                    ^",
        ),
        (
            &["train.epoch=3"],
            "in the override `train.epoch=3`: `train.epoch` unknown key in [train]; did you mean `epochs`?",
        ),
        (
            &["--set", "schedule.alpha=2"],
            "in the override `--set schedule.alpha=2`: `schedule.alpha` must be a number in [0, 1], found 2",
        ),
        (
            &["--set", "train.epochs=[1,"],
            "in the override `--set train.epochs=[1,`: `train.epochs` is not a TOML value",
        ),
        (&["train.epochs"], "`train.epochs` is not an override: write KEY=VALUE"),
        (
            &["--set", "schedule.kind=cosine_decy"],
            "unknown schedule kind \"cosine_decy\"; did you mean \"cosine_decay\"?",
        ),
        (&["--set", "name.x=1"], "`name.x` cannot set a key inside `name`: it is a string, not a table"),
    ];
    for (args, expected) in cases {
        let o = run(cosine, &dir.path().join("never"), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        let names_a_line = e.split("cosine.toml:").skip(1).any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        assert!(!names_a_line, "names the override, not a line of the file: {e}");
        assert!(!dir.path().join("never").exists());
    }
    // schedule and sweep take them too; a sweep's own keys can be overridden.
    let o = runner().args(["schedule", "configs/cosine.toml", "--set", "train.epochs=1"]).output().unwrap();
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 1 + 45);
    let o =
        runner().args(["sweep", "configs/sweep_all_decays.toml", "sweep.seeds=[1, 2]", "--dry-run"]).output().unwrap();
    assert!(String::from_utf8(o.stdout).unwrap().starts_with("sweep_all_decays: 20 runs"));
    let o = runner().args(["schedule", "configs/cosine.toml", "--set", "train.epochs=x"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn run_one_takes_overrides_over_the_planned_config() {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "cut", CUT_OFF);
    let out = dir.path().join("out");
    assert!(runner().arg("sweep").arg(&cfg).args(["--plan", "--out"]).arg(&out).output().unwrap().status.success());
    let exp = out.join("cut");
    let o = runner().arg("run-one").arg(&exp).args(["--index", "0", "--quiet", "train.epochs=1"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = csv_rows(&exp.join("cosine_decay-seed1/metrics.csv"));
    assert_eq!(column(&rows, "epoch"), ["1"]);
    let o = runner().arg("run-one").arg(&exp).args(["--index", "1", "--set", "train.epochs=-1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("in the override `--set train.epochs=-1`"), "{}", stderr(&o));
}
