//! `runner run` through the real binary: the files it writes, their values, determinism,
//! divergence, refusal to overwrite, every data source, model and optimizer, and the
//! errors for bad data files.

use assert_cmd::Command;
use predicates::prelude::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

fn runner() -> Command {
    Command::cargo_bin("runner").unwrap()
}

/// Writes a config into `dir` and runs it with results under `dir/out`; returns the run dir.
fn run_config(dir: &Path, body: &str) -> PathBuf {
    let cfg = dir.join("exp.toml");
    fs::write(&cfg, body).unwrap();
    let out = runner().arg("run").arg(&cfg).arg("--out").arg(dir.join("out")).arg("--quiet").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exp = dir.join("out").join("exp");
    // The experiment directory holds runs.json and summary.csv beside the run's directory.
    fs::read_dir(&exp).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap()
}

/// Runs `dir/exp.toml` again over its earlier results.
fn rerun(dir: &Path) -> assert_cmd::assert::Assert {
    runner().arg("run").arg(dir.join("exp.toml")).args(["--quiet", "--force", "--out"]).arg(dir.join("out")).assert()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

const SMALL_TRAIN: &str = "[train]\nepochs = 3\nbatch_size = 16\nlog_every = 1\n";

#[test]
fn cosine_config_trains_digits_to_95_percent_and_writes_the_run_directory() {
    let dir = TempDir::new().unwrap();
    runner().args(["run", "configs/cosine.toml", "--quiet", "--out"]).arg(dir.path()).assert().success();
    let run = dir.path().join("cosine").join("cosine_decay");
    for f in ["config.toml", "metrics.csv", "steps.csv", "summary.json"] {
        assert!(run.join(f).is_file(), "{f} written");
    }
    let s = summary(&run);
    assert_eq!(s["status"], "completed");
    assert_eq!(s["runner_version"], env!("CARGO_PKG_VERSION"));
    let acc = s["final_metrics"]["val_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "val_accuracy {acc}");
    let metrics = fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(metrics.starts_with("epoch,step,lr,train_loss,val_loss,val_accuracy,val_rmse,val_bits_per_char,val_bits_per_byte,val_perplexity,seconds\n"));
    assert_eq!(metrics.lines().count(), 31, "one row per epoch");
    // The resolved config reruns as it is.
    runner()
        .arg("run")
        .arg(run.join("config.toml"))
        .arg("--quiet")
        .arg("--out")
        .arg(dir.path().join("again"))
        .assert()
        .success();
    // A second run does not mix with the first.
    runner()
        .args(["run", "configs/cosine.toml", "--quiet", "--out"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already holds results of an earlier run; pass --force"));
    runner().args(["run", "configs/cosine.toml", "--quiet", "--force", "--out"]).arg(dir.path()).assert().success();
}

#[test]
fn lr_column_follows_the_schedule_exactly() {
    let dir = TempDir::new().unwrap();
    let body = format!(
        "name = \"exp\"\n[schedule]\nkind = \"cosine_decay_restarts\"\nlearning_rate = 0.05\nfirst_decay_steps = 20\n{SMALL_TRAIN}"
    );
    let run = run_config(dir.path(), &body);
    let steps = fs::read_to_string(run.join("steps.csv")).unwrap();
    let n = steps.lines().count() - 1;
    let expected =
        runner().arg("schedule").arg(dir.path().join("exp.toml")).args(["--steps", &n.to_string()]).output().unwrap();
    let expected: Vec<String> =
        String::from_utf8(expected.stdout).unwrap().lines().skip(1).map(str::to_string).collect();
    for (row, want) in steps.lines().skip(1).zip(&expected) {
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(format!("{},{}", fields[0], fields[1]), *want);
    }
}

#[test]
fn same_seed_gives_identical_files_apart_from_wall_clock() {
    let dir = TempDir::new().unwrap();
    let body = format!(
        "name = \"exp\"\n[schedule]\nkind = \"noisy_linear_cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 200\n[model]\ndropout = 0.2\n{SMALL_TRAIN}"
    );
    let a = run_config(&dir.path().join("a"), &{
        fs::create_dir_all(dir.path().join("a")).unwrap();
        body.clone()
    });
    fs::create_dir_all(dir.path().join("b")).unwrap();
    let b = run_config(&dir.path().join("b"), &body);
    let strip = |p: &Path| -> Vec<String> {
        fs::read_to_string(p.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(fs::read(a.join("steps.csv")).unwrap(), fs::read(b.join("steps.csv")).unwrap());
    fs::create_dir_all(dir.path().join("c")).unwrap();
    let c = run_config(&dir.path().join("c"), &body.replace("log_every = 1", "log_every = 1\nseed = 7"));
    assert_ne!(fs::read(a.join("steps.csv")).unwrap(), fs::read(c.join("steps.csv")).unwrap());
}

#[test]
fn a_huge_rate_diverges_and_keeps_its_files() {
    let dir = TempDir::new().unwrap();
    let run = run_config(
        dir.path(),
        &format!("name = \"exp\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 1e6\n{SMALL_TRAIN}"),
    );
    let s = summary(&run);
    assert_eq!(s["status"], "diverged");
    let at = s["diverged_at_step"].as_u64().unwrap();
    let steps = fs::read_to_string(run.join("steps.csv")).unwrap();
    let last = steps.lines().last().unwrap();
    assert!(last.starts_with(&format!("{at},")) && (last.ends_with("NaN") || last.ends_with("inf")), "{last}");
}

#[test]
fn every_model_and_optimizer_trains() {
    for (model, optimizer) in [
        ("[model]\nkind = \"linear\"", "[optimizer]\nkind = \"adam\""),
        ("[model]\nkind = \"cnn\"\nchannels = [4]\nhidden = [16]", "[optimizer]\nkind = \"adamw\""),
        (
            "[model]\nkind = \"mlp\"\nhidden = [32]\nactivation = \"gelu\"\ndropout = 0.1",
            "[optimizer]\nkind = \"rmsprop\"",
        ),
        ("[model]\nkind = \"mlp\"\nactivation = \"tanh\"", "[train.optimizer]\nkind = \"sgd\"\nnesterov = true"),
    ] {
        let dir = TempDir::new().unwrap();
        let lr = if optimizer.contains("sgd") { "0.05" } else { "0.01" };
        let body = format!(
            "name = \"exp\"\n[schedule]\nkind = \"constant\"\nlearning_rate = {lr}\n{model}\n{SMALL_TRAIN}{optimizer}\n"
        );
        let s = summary(&run_config(dir.path(), &body));
        let acc = s["final_metrics"]["val_accuracy"].as_f64().unwrap();
        assert!(acc > 0.8, "{model} / {optimizer}: val_accuracy {acc}");
    }
}

#[test]
fn synthetic_sources_train_and_regression_reports_rmse() {
    for source in
        ["kind = \"spirals\"\npoints_per_class = 100", "kind = \"moons\"\npoints = 300", "kind = \"blobs\"\ndims = 4"]
    {
        let dir = TempDir::new().unwrap();
        let body = format!(
            "name = \"exp\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.05\n[dataset]\n{source}\n{SMALL_TRAIN}"
        );
        let s = summary(&run_config(dir.path(), &body));
        assert_eq!(s["status"], "completed", "{source}");
        assert!(s["final_metrics"]["val_accuracy"].as_f64().unwrap() > 0.5, "{source}");
    }
    let dir = TempDir::new().unwrap();
    let body = format!(
        "name = \"exp\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.01\n[dataset]\nkind = \"sine\"\npoints = 400\n{SMALL_TRAIN}"
    );
    let run = run_config(dir.path(), &body);
    let metrics = fs::read_to_string(run.join("metrics.csv")).unwrap();
    let last: Vec<&str> = metrics.lines().last().unwrap().split(',').collect();
    assert_eq!(last[5], "", "no accuracy for regression");
    let (loss, rmse): (f64, f64) = (last[4].parse().unwrap(), last[6].parse().unwrap());
    assert!((rmse - loss.sqrt()).abs() < 1e-9);
}

#[test]
fn csv_source_reads_named_target_and_refuses_bad_cells() {
    let dir = TempDir::new().unwrap();
    let mut text = String::from("a,b,label\n");
    for i in 0..60 {
        text.push_str(&format!("{},{},{}\n", i % 7, (i * 3) % 5, i % 2));
    }
    fs::write(dir.path().join("d.csv"), &text).unwrap();
    let body = format!(
        "name = \"exp\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.05\n[dataset]\nkind = \"csv\"\npath = \"d.csv\"\ntarget = \"label\"\n{SMALL_TRAIN}"
    );
    assert_eq!(summary(&run_config(dir.path(), &body))["status"], "completed");
    let bad = |content: &str, message: &str| {
        fs::write(dir.path().join("d.csv"), content).unwrap();
        rerun(dir.path()).code(2).stderr(predicate::str::contains(message));
    };
    bad("a,b,label\n1,2,0\n1,x,1\n", "d.csv: row 3, column 2: \"x\" is not a number");
    bad("a,b,label\n1,2,0\n1,1\n", "d.csv: row 3 has 2 fields, but the header has 3");
    fs::remove_file(dir.path().join("d.csv")).unwrap();
    rerun(dir.path())
        .code(2)
        .stderr(predicate::str::contains("cannot read the data file").and(predicate::str::contains("d.csv")));
}

/// Writes an IDX file of unsigned bytes.
fn idx(path: &Path, dims: &[u32], data: &[u8], gz: bool) {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    if gz {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&bytes).unwrap();
        bytes = e.finish().unwrap();
    }
    fs::write(path, bytes).unwrap();
}

#[test]
fn mnist_idx_files_plain_and_gzipped() {
    let dir = TempDir::new().unwrap();
    let mnist = dir.path().join("mnist");
    fs::create_dir_all(&mnist).unwrap();
    // 40 tiny 4x4 images: class 1 is bright on the left half, class 0 on the right.
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for i in 0..40u8 {
        let class = i % 2;
        labels.push(class);
        for _r in 0..4 {
            for c in 0..4 {
                pixels.push(if (c < 2) == (class == 1) { 200 + i } else { i });
            }
        }
    }
    idx(&mnist.join("train-images-idx3-ubyte.gz"), &[40, 4, 4], &pixels, true);
    idx(&mnist.join("train-labels-idx1-ubyte"), &[40], &labels, false);
    let body = "name = \"exp\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.05\n[dataset]\nkind = \"mnist\"\ndir = \"mnist\"\n[model]\nkind = \"cnn\"\nchannels = [2]\nhidden = [8]\n[train]\nepochs = 30\nbatch_size = 8\n".to_string();
    let s = summary(&run_config(dir.path(), &body));
    let acc = s["final_metrics"]["val_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.875, "val_accuracy {acc} on a trivially separable set");
    idx(&mnist.join("train-labels-idx1-ubyte"), &[39], &labels[..39], false);
    rerun(dir.path())
        .code(2)
        .stderr(predicate::str::contains("holds 39 labels but").and(predicate::str::contains("holds 40 images")));
}

#[test]
fn config_errors_in_new_tables_are_located() {
    let dir = TempDir::new().unwrap();
    let cfg = dir.path().join("exp.toml");
    fs::write(&cfg, "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[model]\nkind = \"mpl\"\n").unwrap();
    runner().arg("run").arg(&cfg).assert().code(2).stderr(predicate::str::contains(
        "exp.toml:5:8: `model.kind` unknown model kind \"mpl\"; did you mean \"mlp\"?",
    ));
    fs::write(&cfg, "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nbatch_sise = 3\n").unwrap();
    runner().arg("run").arg(&cfg).assert().code(2).stderr(predicate::str::contains("did you mean `batch_size`?"));
}

/// Each optimizer's first update, seen through the loss after it: a linear model that
/// starts at zero on four points, full batch, no standardisation, so the gradient and the
/// update rules can be computed here by hand (PyTorch's rules).
#[test]
fn each_optimizers_first_update_matches_the_hand_computed_one() {
    let (x, y) = ([1.0f64, 2.0, 3.0, 4.0], [2.0f64, 1.0, 4.0, 3.0]);
    let n = x.len() as f64;
    let loss = |w: f64, b: f64| x.iter().zip(&y).map(|(x, y)| (w * x + b - y).powi(2)).sum::<f64>() / n;
    // d/dw and d/db of the mean squared error at w = b = 0.
    let gw = -2.0 / n * x.iter().zip(&y).map(|(x, y)| x * y).sum::<f64>();
    let gb = -2.0 / n * y.iter().sum::<f64>();
    let lr = 0.01;
    let sign_step = |g: f64| -lr * g / (g.abs() + 1e-8);
    let cases: [(&str, f64, f64); 7] = [
        // SGD with momentum: the first buffer is the gradient itself.
        ("kind = \"sgd\"\nmomentum = 0.9", -lr * gw, -lr * gb),
        // Dampening does not touch the first buffer (PyTorch).
        ("kind = \"sgd\"\nmomentum = 0.9\ndampening = 0.5", -lr * gw, -lr * gb),
        // Nesterov: g + momentum * buffer.
        ("kind = \"sgd\"\nmomentum = 0.9\nnesterov = true", -lr * 1.9 * gw, -lr * 1.9 * gb),
        // Adam's first step: m / sqrt(v) with both bias-corrected is the gradient's sign.
        ("kind = \"adam\"", sign_step(gw), sign_step(gb)),
        // AdamW decays the weights first: zero stays zero.
        ("kind = \"adamw\"\nweight_decay = 0.1", sign_step(gw), sign_step(gb)),
        // RMSprop: square average (1 - alpha) g^2.
        (
            "kind = \"rmsprop\"",
            -lr * gw / ((0.01 * gw * gw).sqrt() + 1e-8),
            -lr * gb / ((0.01 * gb * gb).sqrt() + 1e-8),
        ),
        // Weight decay adds wd * w to the gradient: nothing at zero.
        ("kind = \"sgd\"\nweight_decay = 0.5", -lr * gw, -lr * gb),
    ];
    for (optimizer, w1, b1) in cases {
        let dir = TempDir::new().unwrap();
        let rows: String = x.iter().zip(&y).map(|(x, y)| format!("{x},{y}\n")).collect();
        fs::write(dir.path().join("train.csv"), format!("x,y\n{rows}")).unwrap();
        fs::write(dir.path().join("val.csv"), format!("x,y\n{rows}")).unwrap();
        let run = run_config(
            dir.path(),
            &format!(
                "name = \"exp\"\n[schedule]\nkind = \"constant\"\nlearning_rate = {lr}\n\
                 [dataset]\nkind = \"csv\"\npath = \"train.csv\"\nvalidation_path = \"val.csv\"\ntarget = \"y\"\n\
                 task = \"regression\"\nscale = \"none\"\n[model]\nkind = \"linear\"\ninit = \"zeros\"\n\
                 [optimizer]\n{optimizer}\n[train]\nsteps = 2\nbatch_size = 4\nshuffle = false\nlog_every = 1\n"
            ),
        );
        let steps = fs::read_to_string(run.join("steps.csv")).unwrap();
        let losses: Vec<f64> = steps.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse().unwrap()).collect();
        assert_eq!(losses.len(), 2, "{steps}");
        assert!((losses[0] - loss(0.0, 0.0)).abs() < 1e-6, "{optimizer}: start {}", losses[0]);
        let want = loss(w1, b1);
        assert!(
            (losses[1] - want).abs() < 1e-5 * want,
            "{optimizer}: loss after the first update {} but by hand {want} (w {w1}, b {b1})",
            losses[1]
        );
    }
}

#[test]
fn progress_lines_show_the_last_evaluation_readable_losses_and_a_sweep_ends_with_its_best() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    // Digits learnt to a tiny training loss: it prints as 3 significant digits, not 0.0000.
    let cfg = dir.path().join("p.toml");
    fs::write(&cfg, "name = \"p\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nepochs = 40\n")
        .unwrap();
    let o = runner().arg("run").arg(&cfg).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    let last = err.lines().rfind(|l| l.contains(": step ")).unwrap();
    assert!(last.contains(" val_acc 0.9"), "{err}");
    let loss = last.split(" loss ").nth(1).unwrap().split(' ').next().unwrap();
    assert!(loss.contains("e-") && loss != "0.0000", "{last}");
    // No line for the last step, which would show the evaluation before the final one: the
    // outcome line says the final metrics.
    assert!(last.contains("step 1350/1800"), "{err}");
    assert!(err.contains("constant: completed: val_accuracy 0.9"), "{err}");
    // A sweep's last line names its best variants.
    let sweep = dir.path().join("s.toml");
    fs::write(
        &sweep,
        "name = \"s\"\n[sweep]\nschedules = [\"cosine_decay\", \"exponential_decay\"]\nlearning_rate = 0.1\n[train]\nepochs = 2\n",
    )
    .unwrap();
    let o = runner().arg("run").arg(&sweep).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("best of 2 by val_accuracy: "), "{err}");
    assert!(last.contains("cosine_decay") && last.contains("exponential_decay"), "{last}");
}

/// Under a terminal 80 columns wide (`script` gives the run a pseudo-terminal), no bar is
/// wider than the terminal: a wrapped bar line would stay behind as a stale frame when the
/// bars redraw. Skipped where `script` (util-linux) is missing.
#[test]
fn bars_fit_the_terminal_so_nothing_is_left_behind() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` command to give the run a terminal");
        return;
    }
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let log = dir.path().join("tty.log");
    let command = format!(
        "stty cols 80 rows 20; {} run {}/configs/sweep_all_decays.toml --set train.epochs=3 --out {}",
        env!("CARGO_BIN_EXE_runner"),
        env!("CARGO_MANIFEST_DIR"),
        out.display()
    );
    // The terminal's output goes to the log only, not into the test's own output.
    let status = std::process::Command::new("script")
        .args(["-qfc", &command])
        .arg(&log)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let raw = fs::read_to_string(&log).unwrap();
    // Without the escape sequences (cursor moves, clears), each redraw of a bar.
    let mut plain = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                while let Some(&n) = chars.peek() {
                    chars.next();
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            plain.push('\n');
        } else {
            plain.push(c);
        }
    }
    // indicatif writes the bars of a frame one after the other, each padded to the
    // terminal's width (the terminal wraps them), then moves up one row per bar to
    // redraw: each bar must take exactly one row of 80 columns.
    let frames: Vec<&str> = plain.split(['\r', '\n']).filter(|l| l.contains(" ETA ")).collect();
    assert!(frames.len() > 10, "the sweep drew its bars: {plain}");
    for frame in frames {
        let chars: Vec<char> = frame.chars().collect();
        assert_eq!(chars.len() % 80, 0, "rows of 80 columns: {frame:?}");
        for row in chars.chunks(80).map(|r| r.iter().collect::<String>()) {
            if row.contains(" [") && row.contains("] ") {
                assert!(row.contains(" ETA "), "a bar that runs on into the next row: {frame:?}");
            }
        }
    }
}

#[test]
fn adam_takes_pytorchs_betas_or_keras_beta1_and_beta2_not_both() {
    let dir = TempDir::new().unwrap();
    let body = |optimizer: &str| {
        format!(
            "name = \"b\"\n[optimizer]\nkind = \"adamw\"\n{optimizer}\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.001\n[train]\nepochs = 1\n"
        )
    };
    let cfg = dir.path().join("b.toml");
    fs::write(&cfg, body("betas = [0.9, 0.95]")).unwrap();
    let out = dir.path().join("out");
    runner().arg("run").arg(&cfg).arg("--quiet").arg("--out").arg(&out).assert().success();
    let resolved = fs::read_to_string(out.join("b/constant/config.toml")).unwrap();
    assert!(resolved.contains("beta1 = 0.9\nbeta2 = 0.95\n"), "{resolved}");
    fs::write(&cfg, body("betas = [0.9, 0.95]\nbeta2 = 0.9")).unwrap();
    runner()
        .arg("run")
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("b.toml:5:9: `optimizer.beta2` is given with betas"));
    fs::write(&cfg, body("betas = [0.9, 0.95, 0.9]")).unwrap();
    runner().arg("run").arg(&cfg).assert().code(2).stderr(predicate::str::contains(
        "`optimizer.betas` takes two numbers, [beta1, beta2] (e.g. [0.9, 0.99]); found 3",
    ));
}

/// steps.csv is written while a run trains (with each evaluation and every few seconds
/// between), not held in a buffer until the run ends: `tail -f`, pandas and TensorBoard
/// follow a run live. The transformer on the bundled text logs every step and evaluates
/// only at the end: a buffer of 8 KiB would hold its first hundreds of rows back.
#[test]
fn steps_csv_fills_while_the_run_trains() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/shakespeare_char.toml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["run", config, "--quiet", "--out"])
        .arg(&out)
        .args([
            "train.steps=100000",
            "train.log_every=1",
            "train.eval_every=100000",
            "train.checkpoint_every=100000",
            "train.checkpoint_minutes=1000",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let steps = out.join("shakespeare_char").join("cosine_decay").join("steps.csv");
    let started = std::time::Instant::now();
    let first = loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the run ended ({status}) before steps.csv was written: {err}");
        }
        let len = fs::metadata(&steps).map_or(0, |m| m.len());
        if len > 0 {
            break len;
        }
        assert!(started.elapsed().as_secs() < 600, "steps.csv still empty after 10 minutes of training");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let text = fs::read_to_string(&steps).unwrap();
    assert!(text.starts_with("step,lr,loss\n"), "{text}");
    assert!(first < 8192, "steps.csv appeared only when a full buffer of {first} bytes was written");
}
