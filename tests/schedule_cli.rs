//! `runner schedule` and `runner schedules` through the real binary: output, charts, and
//! every config error with its message and exit code.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;
use std::fs;
use std::path::PathBuf;
use tempfile::TempDir;

fn runner() -> Command {
    Command::cargo_bin("runner").unwrap()
}

/// Writes `body` to a config file in `dir` and returns its path.
fn config(dir: &TempDir, body: &str) -> PathBuf {
    let path = dir.path().join("exp.toml");
    fs::write(&path, body).unwrap();
    path
}

/// Runs `runner schedule` on `body`, expects exit code 2 and returns stderr.
fn refused(body: &str) -> String {
    let dir = TempDir::new().unwrap();
    let path = config(&dir, body);
    let out = runner().arg("schedule").arg(&path).args(["--steps", "10"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("exp.toml:"), "error names the file: {stderr}");
    assert!(!stderr.contains("panicked"));
    stderr
}

#[test]
fn prints_step_lr_csv_with_round_trip_decimals() {
    runner()
        .args(["schedule", "configs/cosine.toml", "--steps", "3"])
        .assert()
        .success()
        .stdout("step,lr\n0,0.1\n1,0.09999986461454119\n2,0.09999945845889795\n");
}

#[test]
fn every_shipped_config_runs() {
    // CIFAR's configs read their data (not shipped) from files in CIFAR's layout here.
    let cifar = TempDir::new().unwrap();
    common::cifar10(cifar.path(), 4);
    for entry in fs::read_dir("configs").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let mut cmd = runner();
            cmd.arg("schedule").arg(&path).args(["--steps", "2000"]);
            if path.to_string_lossy().contains("cifar") {
                cmd.args(["--set", &format!("dataset.dir={}", cifar.path().display())]);
            }
            if path.to_string_lossy().contains("sweep") {
                cmd.args(["--run", "cosine_decay"]);
            } else if path.to_string_lossy().contains("wsd_vs_cosine") {
                cmd.args(["--run", "cosine-seed1"]);
            } else if path.to_string_lossy().contains("wsd_cooldowns") {
                cmd.args(["--run", "cosine"]);
            }
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2001, "{}", path.display());
        }
    }
}

#[test]
fn a_config_per_seed_decay_ships() {
    for name in [
        "piecewise_constant",
        "exponential",
        "natural_exp",
        "polynomial",
        "inverse_time",
        "cosine",
        "cosine_restarts",
        "linear_cosine",
        "noisy_linear_cosine",
        "reduce_on_plateau",
    ] {
        let text = fs::read_to_string(format!("configs/{name}.toml")).unwrap();
        assert!(text.starts_with('#'), "configs/{name}.toml explains its parameters in comments");
    }
}

#[test]
fn noisy_schedule_repeats_for_a_seed_and_changes_with_it() {
    let run = |seed: &str| {
        runner()
            .args(["schedule", "configs/noisy_linear_cosine.toml", "--steps", "50", "--seed", seed])
            .output()
            .unwrap()
            .stdout
    };
    assert_eq!(run("1"), run("1"));
    assert_ne!(run("1"), run("2"));
}

#[test]
fn plateau_replays_a_metric_history() {
    let dir = TempDir::new().unwrap();
    let path =
        config(&dir, "[schedule]\nkind = \"reduce_on_plateau\"\nlearning_rate = 1.0\nfactor = 0.5\npatience = 2\n");
    let metrics = dir.path().join("m.txt");
    fs::write(&metrics, "1.0\n0.9\n0.95\n0.9\n\n0.92\n").unwrap();
    runner()
        .arg("schedule")
        .arg(&path)
        .args(["--steps", "1", "--metrics"])
        .arg(&metrics)
        .assert()
        .success()
        .stdout("epoch,metric,lr\n1,1,1\n2,0.9,1\n3,0.95,1\n4,0.9,0.5\n5,0.92,0.5\n");
}

#[test]
fn metrics_file_errors_name_the_line() {
    let dir = TempDir::new().unwrap();
    let path = config(&dir, "[schedule]\nkind = \"reduce_on_plateau\"\nlearning_rate = 1.0\n");
    let metrics = dir.path().join("m.txt");
    fs::write(&metrics, "1.0\nabc\n").unwrap();
    runner()
        .arg("schedule")
        .arg(&path)
        .args(["--steps", "1", "--metrics"])
        .arg(&metrics)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("m.txt:2: expected one finite number per line, found \"abc\""));
    runner()
        .args(["schedule", "configs/cosine.toml", "--steps", "1", "--metrics"])
        .arg(&metrics)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--metrics applies to validation-driven schedules"));
}

#[test]
fn writes_png_and_svg_charts_and_a_terminal_plot() {
    let dir = TempDir::new().unwrap();
    let png = dir.path().join("lr.png");
    let svg = dir.path().join("lr.svg");
    for out in [&png, &svg] {
        runner()
            .args(["schedule", "configs/cosine_restarts.toml", "--steps", "1000", "--out"])
            .arg(out)
            .assert()
            .success();
    }
    let bytes = fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, at bytes 16..24.
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 1000);
    assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 600);
    let svg_text = fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("<svg") && svg_text.contains("learning rate"));
    let plot = runner().args(["schedule", "configs/cosine.toml", "--steps", "100", "--plot"]).output().unwrap();
    let text = String::from_utf8(plot.stdout).unwrap();
    assert!(text.contains("learning rate by step") && text.chars().any(|c| ('\u{2800}'..='\u{28FF}').contains(&c)));
    runner()
        .args(["schedule", "configs/cosine.toml", "--steps", "10", "--out"])
        .arg(dir.path().join("lr.jpg"))
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("give a file name ending in .png or .svg"));
}

#[test]
fn schedules_lists_every_kind_and_docs_match() {
    let out = runner().arg("schedules").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for kind in ["cosine_decay_restarts", "reduce_on_plateau", "one_cycle", "warmup_stable_decay", "expression"] {
        assert!(text.contains(kind), "{kind} listed");
    }
    assert!(text.contains("end_learning_rate  0.0001"), "defaults are shown");
    let markdown = runner().args(["schedules", "--markdown"]).output().unwrap().stdout;
    let docs = fs::read_to_string("docs/schedules.md").unwrap();
    assert_eq!(
        String::from_utf8(markdown).unwrap(),
        docs,
        "regenerate docs/schedules.md with `runner schedules --markdown`"
    );
    runner()
        .args(["schedules", "cosine_decy"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean \"cosine_decay\"?"));
}

#[test]
fn unknown_key_gets_a_suggestion_and_the_place() {
    let e = refused("[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 10\nalpah = 0.1\n");
    assert!(e.contains("exp.toml:5:1: `schedule.alpah` unknown key in [schedule]; did you mean `alpha`?"), "{e}");
    assert!(e.contains("Accepted: kind, learning_rate, decay_steps, alpha"), "{e}");
}

#[test]
fn misspelt_required_key_points_at_the_typo() {
    let e = refused("[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_step = 10\n");
    assert!(
        e.contains("exp.toml:4:1: `schedule.decay_step` unknown key in [schedule]; did you mean `decay_steps`?"),
        "{e}"
    );
}

#[test]
fn unknown_kind_gets_a_suggestion() {
    let e = refused("[schedule]\nkind = \"cosine_decy\"\nlearning_rate = 0.1\n");
    assert!(
        e.contains(
            "exp.toml:2:8: `schedule.kind` unknown schedule kind \"cosine_decy\"; did you mean \"cosine_decay\"?"
        ),
        "{e}"
    );
}

#[test]
fn unknown_top_level_key_is_refused() {
    let e = refused("nmae = \"x\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n");
    assert!(e.contains("exp.toml:1:1: `nmae` unknown key at the top level; did you mean `name`?"), "{e}");
}

#[test]
fn wrong_type_says_what_is_accepted() {
    let e = refused("[schedule]\nkind = \"cosine_decay\"\nlearning_rate = \"0.1\"\ndecay_steps = 10\n");
    assert!(
        e.contains("exp.toml:3:17: `schedule.learning_rate` must be a number >= 0, found the string \"0.1\""),
        "{e}"
    );
    let e = refused(
        "[schedule]\nkind = \"exponential_decay\"\nlearning_rate = 0.1\ndecay_steps = 10\ndecay_rate = 0.5\nstaircase = 1\n",
    );
    assert!(e.contains("exp.toml:6:13: `schedule.staircase` must be true or false, found 1"), "{e}");
}

#[test]
fn missing_required_key_is_named() {
    let e = refused("[schedule]\nkind = \"step\"\nlearning_rate = 0.1\n");
    assert!(
        e.contains("`schedule.step_size` is required in [schedule]: a whole number of steps > 0, \"run\" (the run's steps after warmup) or \"N epochs\""),
        "{e}"
    );
    let e = refused("name = \"x\"\n");
    assert!(e.contains("has no [schedule] table"), "{e}");
}

#[test]
fn zero_decay_steps_is_refused() {
    let e = refused("[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 0\n");
    assert!(
        e.contains("exp.toml:4:15: `schedule.decay_steps` must be a number of steps > 0, \"run\" (the run's steps after warmup) or \"N epochs\", found 0"),
        "{e}"
    );
}

#[test]
fn negative_rate_is_refused() {
    let e =
        refused("[schedule]\nkind = \"exponential_decay\"\nlearning_rate = -0.1\ndecay_steps = 10\ndecay_rate = 0.5\n");
    assert!(e.contains("exp.toml:3:17: `schedule.learning_rate` must be a number >= 0, found -0.1"), "{e}");
}

#[test]
fn values_must_be_one_longer_than_boundaries() {
    let e = refused("[schedule]\nkind = \"piecewise_constant\"\nboundaries = [10, 20]\nvalues = [0.1, 0.01]\n");
    assert!(e.contains("exp.toml:4:10: `schedule.values` must hold one more entry than boundaries: 2 boundaries need 3 values, found 2"), "{e}");
}

#[test]
fn boundaries_must_increase() {
    let e = refused("[schedule]\nkind = \"piecewise_constant\"\nboundaries = [20, 10]\nvalues = [0.1, 0.01, 0.001]\n");
    assert!(e.contains("exp.toml:3:14: `schedule.boundaries` must be strictly increasing, but 10 follows 20"), "{e}");
}

#[test]
fn t_mul_must_be_at_least_one() {
    let e = refused(
        "[schedule]\nkind = \"cosine_decay_restarts\"\nlearning_rate = 0.1\nfirst_decay_steps = 10\nt_mul = 0\n",
    );
    assert!(e.contains("exp.toml:5:9: `schedule.t_mul` must be a number >= 1, found 0"), "{e}");
}

/// Restarts whose periods shrink (t_mul < 1) or whose first period is too short to count
/// in (1e-320 steps) once made `runner run` and `runner schedule` spin forever: now both
/// are refused at load, naming the key, before anything is written; both answer at once.
#[test]
fn restarts_that_cannot_be_computed_are_refused_and_end() {
    let e = refused(
        "[schedule]\nkind = \"cosine_decay_restarts\"\nlearning_rate = 0.1\nfirst_decay_steps = 10\nt_mul = 0.9\n",
    );
    assert!(e.contains("exp.toml:5:9: `schedule.t_mul` must be a number >= 1, found 0.9"), "{e}");
    let dir = TempDir::new().unwrap();
    for body in [
        "[schedule]\nkind = \"cosine_decay_restarts\"\nlearning_rate = 0.1\nfirst_decay_steps = 10\nt_mul = 0.5\n",
        "[schedule]\nkind = \"cosine_decay_restarts\"\nlearning_rate = 0.1\nfirst_decay_steps = 1e-320\n",
    ] {
        let path = config(&dir, body);
        let out = dir.path().join("out");
        let o = runner()
            .arg("run")
            .arg(&path)
            .arg("--out")
            .arg(&out)
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{e}");
        // A subnormal first period is refused as such (training would flush it to 0).
        assert!(e.contains("t_mul") || e.contains("`schedule.first_decay_steps` is 1e-320, a subnormal number"), "{e}");
        assert!(!out.exists(), "nothing is written for a refused run");
    }
}

#[test]
fn bad_formulas_are_refused_at_load() {
    let e = refused("[schedule]\nkind = \"expression\"\nformula = \"lr0 * exp(-step / 100\"\nlearning_rate = 0.1\n");
    assert!(e.contains("exp.toml:3:11: `schedule.formula` does not parse"), "{e}");
    let e = refused("[schedule]\nkind = \"expression\"\nformula = \"lr0 * exp(-stp / 100)\"\nlearning_rate = 0.1\n");
    assert!(
        e.contains("names unknown variable `stp` (did you mean `step`?); accepted: step, epoch, total_steps, lr0"),
        "{e}"
    );
    let e = refused("[schedule]\nkind = \"expression\"\nformula = \"lr0 * expp(-step)\"\nlearning_rate = 0.1\n");
    assert!(e.contains("calls unknown function `expp` (did you mean `exp`?)"), "{e}");
    let e = refused("[schedule]\nkind = \"expression\"\nformula = \"lr0 * 0.5\"\n");
    assert!(e.contains("`schedule.learning_rate` is required because the formula uses lr0"), "{e}");
}

#[test]
fn invalid_toml_names_line_and_column() {
    let e = refused("[schedule\nkind = \"constant\"\n");
    assert!(e.contains("exp.toml:1:10: is not valid TOML"), "{e}");
}

#[test]
fn bad_choices_and_phases() {
    let e = refused("[schedule]\nkind = \"one_cycle\"\nmax_lr = 0.1\nanneal = \"cosine\"\n");
    assert!(
        e.contains("`schedule.anneal` must be one of \"cos\", \"linear\", found \"cosine\" (did you mean \"cos\"?)"),
        "{e}"
    );
    let e = refused(
        "[schedule]\nkind = \"sequence\"\n[[schedule.phases]]\nkind = \"constant\"\nlearning_rate = 0.1\n[[schedule.phases]]\nkind = \"constant\"\nlearning_rate = 0.01\n",
    );
    assert!(e.contains("`schedule.phases[0].steps` is required"), "{e}");
}

#[test]
fn steps_default_to_the_runs_length() {
    // digits: 1437 training samples in batches of 32 = 45 steps per epoch, 30 epochs.
    let out = runner().args(["schedule", "configs/cosine.toml"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1 + 45 * 30);
    // A sweep's run, with its derived parameters: cosine over the whole run, ending at 1%.
    let out = runner().args(["schedule", "configs/sweep_all_decays.toml", "--run", "cosine_decay"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().nth(1), Some("0,0.1"));
    let last: f64 = text.lines().last().unwrap().split(',').nth(1).unwrap().parse().unwrap();
    let expected = 0.1 * (0.99 * 0.5 * (1.0 + (std::f64::consts::PI * 1349.0 / 1350.0).cos()) + 0.01);
    assert!((last - expected).abs() < 1e-15, "{last} vs {expected}");
}

#[test]
fn missing_file_and_usage_errors_exit_2() {
    runner()
        .args(["schedule", "no/such.toml", "--steps", "3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no/such.toml: cannot read the config file"));
    runner()
        .args(["schedule", "configs/sweep_all_decays.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is a sweep of 10 runs; pick one with --run NAME: piecewise_constant,"));
    runner()
        .args(["schedule", "configs/sweep_all_decays.toml", "--run", "cosine"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has no run \"cosine\"; its runs: piecewise_constant"));
    runner().args(["schedule", "configs/cosine.toml", "--steps", "0"]).assert().code(2);
    runner().arg("frobnicate").assert().code(2);
}

/// The last rate of `runner schedule FILE` (the run's own length) and its stderr.
fn last_rate(path: &std::path::Path) -> (f64, f64, String) {
    let out = runner().arg("schedule").arg(path).output().unwrap();
    assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let rate = |line: &str| line.split(',').nth(1).unwrap().parse::<f64>().unwrap();
    (rate(text.lines().nth(1).unwrap()), rate(text.lines().last().unwrap()), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn every_example_config_decays_over_its_run() {
    // The end value each file's comments document; the run is 30 epochs of digits (1350 steps).
    let ends = [
        ("cosine", 0.0),
        // The digits as an .npz (tests/arrays_cli.rs), configs/cosine.toml's schedule.
        ("digits_npz", 0.0),
        // The digits as PNG folders and a CNN as a list of layers (tests/sequential_cli.rs).
        ("digits_folder_cnn", 0.0),
        ("cosine_restarts", 0.0),
        ("exponential", 0.001),
        ("expression", 0.001),
        ("inverse_time", 0.01),
        ("linear_cosine", 0.0001),
        ("natural_exp", 0.001),
        ("noisy_linear_cosine", 0.0001),
        ("one_cycle", 0.05 / 25.0 / 1e4),
        ("piecewise_constant", 0.001),
        ("polynomial", 0.0001),
        ("sequence", 0.001),
        ("warmup_cosine", 0.0),
        ("warmup_stable_decay", 0.0),
        // Its 0.002 peak times alpha = 0.05.
        ("shakespeare_char", 0.0001),
    ];
    let mut listed: Vec<String> = ends.iter().map(|(n, _)| n.to_string()).collect();
    // Validation-driven (no horizon) and the sweep (checked run by run below).
    listed.extend(["reduce_on_plateau".into(), "sweep_all_decays".into()]);
    // The language model's sweeps (tests/text_cli.rs checks each schedule's end of the
    // first; the cool-downs' are checked below).
    listed.extend(["shakespeare_wsd_vs_cosine".into(), "wsd_cooldowns".into()]);
    for run in ["wsd_10pct", "wsd_20pct", "wsd_30pct", "wsd_40pct", "wsd_50pct", "cosine"] {
        let out = runner().args(["schedule", "configs/wsd_cooldowns.toml", "--run", run]).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 2001, "{run}: 2,000 steps");
        let last: f64 = text.lines().last().unwrap().split(',').nth(1).unwrap().parse().unwrap();
        // Each decays to 0 over its last steps (the last step's rate is the last before 0).
        assert!(last < 0.002 * 0.01, "{run} ends at {last}");
    }
    // CIFAR's configs need its data (tests/resnet_cli.rs runs them on CIFAR-shaped files).
    listed.extend(
        ["cifar10_resnet20", "cifar10_resnet20_cosine", "cifar10_resnet8_quick", "sweep_cifar_decays"]
            .map(String::from),
    );
    for entry in fs::read_dir("configs").unwrap() {
        let name = entry.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned();
        assert!(listed.contains(&name), "configs/{name}.toml: add its documented end value to this test");
    }
    for (name, end) in ends {
        let (start, last, stderr) = last_rate(std::path::Path::new(&format!("configs/{name}.toml")));
        assert!(!stderr.contains("warning"), "{name}: {stderr}");
        // Within 1% of the way from the end value back to the start (0.1 for most).
        let peak = start.max(0.05);
        assert!((last - end).abs() <= 0.01 * peak, "configs/{name}.toml ends at {last}, documented {end}");
    }
}

#[test]
fn lengths_follow_the_run_when_left_out_or_written_as_run_or_epochs() {
    let dir = TempDir::new().unwrap();
    // digits: 45 steps per epoch; 10 epochs = 450 steps.
    let base = "[train]\nepochs = 10\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\n";
    for (extra, last_expected) in [
        ("", 0.05 * (1.0 + (std::f64::consts::PI * 449.0 / 450.0).cos())),
        ("decay_steps = \"run\"\n", 0.05 * (1.0 + (std::f64::consts::PI * 449.0 / 450.0).cos())),
        ("decay_steps = \"5 epochs\"\n", 0.0),
        ("decay_steps = 450\n", 0.05 * (1.0 + (std::f64::consts::PI * 449.0 / 450.0).cos())),
    ] {
        let (_, last, _) = last_rate(&config(&dir, &format!("{base}{extra}")));
        assert!((last - last_expected).abs() < 1e-15, "{extra}: {last} vs {last_expected}");
    }
    // Behind a warmup, "run" is what follows the warmup: the cosine ends at the run's end.
    let (_, last, stderr) = last_rate(&config(&dir, &format!("{base}warmup_steps = 50\n")));
    assert!((last - 0.05 * (1.0 + (std::f64::consts::PI * 399.0 / 400.0).cos())).abs() < 1e-15, "{last}");
    assert!(stderr.is_empty(), "{stderr}");
    // A batch size that changes the run's length changes the horizon with it.
    let (_, last, _) = last_rate(&config(&dir, &base.replace("epochs = 10", "epochs = 10\nbatch_size = 128")));
    // 1437 / 128 -> 12 steps per epoch, 120 steps.
    assert!((last - 0.05 * (1.0 + (std::f64::consts::PI * 119.0 / 120.0).cos())).abs() < 1e-15, "{last}");
    // The resolved config keeps the word, so it reruns the same way on other data.
    let out = runner().arg("run").arg(config(&dir, base)).arg("--quiet").arg("--out").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let resolved = fs::read_to_string(dir.path().join("exp/cosine_decay/config.toml")).unwrap();
    assert!(resolved.contains("decay_steps = \"run\""), "{resolved}");
    let e = refused("[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = \"whole run\"\n");
    assert!(e.contains("exp.toml:4:15: `schedule.decay_steps` must be a number of steps > 0, \"run\" (the run's steps after warmup) or \"N epochs\", found the string \"whole run\""), "{e}");
    let e = refused("[schedule]\nkind = \"step\"\nlearning_rate = 0.1\nstep_size = 2.5\n");
    assert!(e.contains("`schedule.step_size` must be a whole number of steps > 0"), "{e}");
}

/// `runner schedule` on `body`: its stderr (it must succeed).
fn schedule_stderr(body: &str) -> String {
    let dir = TempDir::new().unwrap();
    let out = runner().arg("schedule").arg(config(&dir, body)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_schedule_that_does_not_fit_its_run_is_warned_about() {
    let head = "[train]\nepochs = 30\n[schedule]\n";
    // Cut off: the quick start's old cosine (2000 steps in a 1350-step run).
    let e = schedule_stderr(&format!("{head}kind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 2000\n"));
    assert!(e.contains("warning: `schedule.decay_steps` = 2000 is longer than the run (1350 steps): the rate ends at 0.0239, 24% of the way from its end value 0.0000 back to its start 0.1000; `decay_steps = \"run\"` spans the run"), "{e}");
    // Over before half the run.
    let e = schedule_stderr(&format!("{head}kind = \"polynomial_decay\"\nlearning_rate = 0.1\ndecay_steps = 300\n"));
    assert!(e.contains("warning: `schedule.decay_steps` = 300: the decay reaches its end value (1.00e-4) at step 300, before half the run (1350 steps) is over, and holds it for the last 78% of the run"), "{e}");
    // A warmup as long as the run.
    let e = schedule_stderr(&format!("{head}kind = \"constant\"\nlearning_rate = 0.1\nwarmup_steps = 2000\n"));
    assert!(e.contains("warning: `schedule.warmup_steps` = 2000 is not shorter than the run (1350 steps)"), "{e}");
    // Boundaries and milestones past the last step.
    let e = schedule_stderr(&format!(
        "{head}kind = \"piecewise_constant\"\nboundaries = [600, 1400]\nvalues = [0.1, 0.01, 0.001]\n"
    ));
    assert!(e.contains("warning: `schedule.boundaries` 1400 is at or past the run's last step (1349): the value after it is never used"), "{e}");
    let e =
        schedule_stderr(&format!("{head}kind = \"multistep\"\nlearning_rate = 0.1\nmilestones = [500, 1350, 2000]\n"));
    assert!(
        e.contains("warning: `schedule.milestones` 1350, 2000 are past the run's last step (1349): never reached"),
        "{e}"
    );
    let e = schedule_stderr(&format!("{head}kind = \"step\"\nlearning_rate = 0.1\nstep_size = 1350\n"));
    assert!(
        e.contains(
            "warning: `schedule.step_size` = 1350 is not shorter than the run (1350 steps): the rate is never reduced"
        ),
        "{e}"
    );
    // TF users hold a rate on purpose: a warning, never an error (exit 0, CSV printed).
    let e = schedule_stderr(&format!("{head}kind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 1350\n"));
    assert!(e.is_empty(), "{e}");
}

/// The noisy schedule's chart keeps its curve inside the frame: a thick polyline's mitred
/// joins on the noise's sharp turns once stuck out as spikes past the top and below 0.
#[test]
fn a_noisy_curve_stays_inside_its_chart_frame() {
    let dir = tempfile::TempDir::new().unwrap();
    let png_path = dir.path().join("noisy.png");
    runner().args(["schedule", "configs/noisy_linear_cosine.toml", "--out"]).arg(&png_path).assert().success();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h, px) = (info.width as usize, info.height as usize, info.color_type.samples());
    let at = |x: usize, y: usize| &buf[(y * w + x) * px..(y * w + x) * px + 3];
    // The frame: the y axis, the column with the longest run of black pixels.
    let longest_run = |x: usize| {
        let (mut best, mut start) = ((0, 0), None);
        for y in 0..=h {
            match (y < h && at(x, y) == [0, 0, 0], start) {
                (true, None) => start = Some(y),
                (false, Some(s)) => {
                    if y - s > best.1 - best.0 {
                        best = (s, y);
                    }
                    start = None;
                }
                _ => {}
            }
        }
        best
    };
    // The axis: the column with the longest black run; its ends: its first and last black
    // rows (the curve, drawn after it, may cover parts of it).
    let axis = (0..w / 3).max_by_key(|&x| longest_run(x).1 - longest_run(x).0).unwrap();
    let black: Vec<usize> = (0..h).filter(|&y| at(axis, y) == [0, 0, 0]).collect();
    let (top, bottom) = (black[0], black[black.len() - 1]);
    assert!(bottom - top > h / 2, "no frame found: axis {axis}, rows {top}-{bottom}");
    // The curve's colour (Tableau's blue, anti-aliased: any saturated pixel; text and grid
    // are grey) nowhere above or below it.
    let blue = |p: &[u8]| p.iter().max().unwrap() - p.iter().min().unwrap() > 25;
    let outside: Vec<(usize, usize)> = (axis + 1..w)
        .flat_map(|x| (0..top).chain(bottom + 1..h).map(move |y| (x, y)))
        .filter(|&(x, y)| blue(at(x, y)))
        .collect();
    assert!(
        outside.is_empty(),
        "curve pixels outside the frame rows {top}-{bottom}: {:?}",
        &outside[..outside.len().min(5)]
    );
}
