//! Checkpoints through the real binary: runs stopped by SIGINT, SIGTERM or `kill -9` at
//! random moments (in and between checkpoints), then rerun, end with metrics.csv (less its
//! clock), steps.csv, final metrics and final weights identical to an uninterrupted run's:
//! every model kind (the transformer on text too) and optimizer, reduce_on_plateau, a noisy schedule, dropout, early
//! stopping, augmentation, a ResNet's batch norm statistics, 1 and 2 threads. Also a corrupt latest checkpoint, a config changed between
//! stop and rerun, restore_best_weights and `runner eval`.

mod common;

use common::{config, runner};
use rand::{Rng, SeedableRng};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// metrics.csv without its wall-clock column, steps.csv (and the TensorBoard event
/// file's scalars appended to it), the final metrics and the weights.
fn results(run: &Path) -> (String, String, String, Vec<u8>) {
    let metrics: Vec<String> = fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect();
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let mut last = summary["final_metrics"].clone();
    last.as_object_mut().unwrap().remove("seconds");
    let events = runner::store::tensorboard::read(&runner::store::tensorboard::find(run).unwrap()).unwrap();
    let scalars: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.what {
            Some(runner::store::tensorboard::What::Summary(s)) => Some((e.step, s)),
            _ => None,
        })
        .flat_map(|(step, s)| s.value.iter().map(move |v| format!("{step} {} {:?}", v.tag, v.simple_value)))
        .collect();
    (
        metrics.join("\n"),
        fs::read_to_string(run.join("steps.csv")).unwrap() + &scalars.join("\n"),
        last.to_string(),
        fs::read(run.join("model.safetensors")).unwrap(),
    )
}

fn start(cfg: &Path, out: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(cfg)
        .args(["--quiet", "--out"])
        .arg(out)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(cfg: &Path, out: &Path, extra: &[&str]) -> String {
    let o = runner().arg("run").arg(cfg).arg("--out").arg(out).args(extra).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

/// Trains `body` once without a stop, and once stopped by each of `signals` in turn (at a
/// random moment after it has taken a checkpoint) and rerun; the two must agree exactly.
fn stopped_and_resumed_equals_uninterrupted(body: &str, signals: &[&str], threads: &str, seed: u64) {
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path(), "exp", body);
    let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
    let extra = ["--threads-per-run", threads];
    finish(&cfg, &whole, &extra);
    let run_of = |out: &PathBuf| -> PathBuf {
        let exp = out.join("exp");
        fs::read_dir(&exp).unwrap().map(|e| e.unwrap().path()).find(|p| p.join("config.toml").exists()).unwrap()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut stopped = 0;
    for signal in signals {
        // The checkpoint files there before this attempt: wait for one of its own (so the
        // run is training, its signal handler installed), then a random moment more.
        let files = |out: &PathBuf| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = fs::read_dir(out.join("exp"))
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|e| fs::read_dir(e.path().join("checkpoints")).into_iter().flatten().flatten())
                .map(|e| e.path())
                .collect();
            v.sort();
            v
        };
        let before = files(&cut);
        let mut child = start(&cfg, &cut, &extra);
        let began = Instant::now();
        while files(&cut) == before && began.elapsed() < Duration::from_secs(60) && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        let pid = child.id().to_string();
        Command::new("kill").args([*signal, pid.as_str()]).status().unwrap();
        let status = child.wait().unwrap();
        if status.success() {
            break; // it finished first: nothing left to stop
        }
        stopped += 1;
        if *signal != "-KILL" {
            assert_eq!(status.code(), Some(130), "{signal}");
            let summary = fs::read_to_string(run_of(&cut).join("summary.json")).unwrap();
            assert!(summary.contains("\"status\": \"interrupted\""), "{summary}");
        }
    }
    assert!(stopped > 0, "no stop landed before the run finished; make the run longer");
    if !run_of(&cut).join("model.safetensors").exists() {
        let said = finish(&cfg, &cut, &extra);
        assert!(said.contains("resuming from its checkpoint at step"), "{said}");
    }
    let (a, b) = (results(&run_of(&whole)), results(&run_of(&cut)));
    let first_difference = |x: &str, y: &str| {
        x.lines()
            .zip(y.lines())
            .enumerate()
            .find(|(_, (p, q))| p != q)
            .map(|(i, (p, q))| format!("line {}: {p} vs {q}", i + 1))
    };
    assert!(a.0 == b.0, "metrics.csv differs ({signals:?}, {threads} threads): {:?}", first_difference(&a.0, &b.0));
    assert!(a.1 == b.1, "steps.csv differs: {:?}", first_difference(&a.1, &b.1));
    assert_eq!(a.2, b.2, "final metrics differ");
    assert!(a.3 == b.3, "final weights differ");
}

/// Long enough (several seconds in a debug build) that checkpoints come every few
/// hundred milliseconds once the first, after a second, is written.
const DIGITS: &str = "name = \"exp\"\n[train]\nepochs = 300\nlog_every = 1\n";

#[test]
fn sgd_mlp_stopped_by_sigint_sigterm_and_kill_continues_exactly() {
    let body = format!("{DIGITS}[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\n");
    stopped_and_resumed_equals_uninterrupted(&body, &["-INT", "-TERM", "-KILL"], "1", 1);
}

#[test]
fn two_threads_continue_exactly_too() {
    let body = format!("{DIGITS}[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\n");
    stopped_and_resumed_equals_uninterrupted(&body, &["-KILL", "-INT"], "2", 2);
}

#[test]
fn adam_dropout_plateau_and_early_stopping_continue_exactly() {
    let body = format!(
        "{DIGITS}[schedule]\nkind = \"reduce_on_plateau\"\nlearning_rate = 0.003\nfactor = 0.5\npatience = 2\n\
         [model]\nhidden = [64]\ndropout = 0.2\n[optimizer]\nkind = \"adam\"\n\
         [train.early_stopping]\nmonitor = \"val_loss\"\npatience = 200\n"
    );
    stopped_and_resumed_equals_uninterrupted(&body, &["-TERM", "-KILL"], "1", 3);
}

#[test]
fn cnn_adamw_and_a_noisy_schedule_continue_exactly() {
    let body = "name = \"exp\"\n[train]\nepochs = 60\nlog_every = 1\n[schedule]\nkind = \"noisy_linear_cosine_decay\"\nlearning_rate = 0.01\ninitial_variance = 0.1\n[model]\nkind = \"cnn\"\nchannels = [4]\nhidden = [16]\n[optimizer]\nkind = \"adamw\"\n";
    stopped_and_resumed_equals_uninterrupted(body, &["-KILL", "-INT"], "1", 4);
}

#[test]
fn augmented_batches_continue_exactly() {
    // Crops drawn from the seed and the step: a resumed run draws the same ones.
    let body = "name = \"exp\"\n[train]\nepochs = 60\nlog_every = 1\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.05\n\
                [model]\nkind = \"cnn\"\nchannels = [4]\nhidden = [16]\n[dataset.augment]\ncrop_padding = 1\n";
    stopped_and_resumed_equals_uninterrupted(body, &["-KILL", "-TERM"], "1", 6);
}

#[test]
fn resnet_with_batch_norm_statistics_continues_exactly() {
    // The running statistics are saved with the parameters and restored on resume.
    let body = "name = \"exp\"\n[train]\nepochs = 4\nlog_every = 1\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.05\n\
                [model]\nkind = \"resnet\"\ndepth = 8\n[optimizer]\nkind = \"sgd\"\nmomentum = 0.9\nweight_decay = 0.0005\n";
    stopped_and_resumed_equals_uninterrupted(body, &["-KILL", "-INT"], "1", 7);
}

#[test]
fn transformer_on_text_with_dropout_and_accumulation_continues_exactly() {
    // Windows drawn from the seed, dropout masks, accumulated gradients, AdamW's moments,
    // and on 2 threads the batch split into parts trained at once.
    let body = "name = \"exp\"\n[dataset]\nkind = \"text\"\ncontext = 16\n\
                [model]\nkind = \"transformer\"\nlayers = 1\nheads = 2\nd_model = 16\ndropout = 0.1\n\
                [optimizer]\nkind = \"adamw\"\nweight_decay = 0.1\n\
                [schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.003\ndecay_steps = \"run\"\nwarmup_steps = 10\n\
                [train]\nsteps = 600\nbatch_size = 8\naccumulate = 2\neval_every = 25\neval_batches = 2\n\
                log_every = 1\nclip_grad_norm = 1.0\ncheckpoint_every = 10\n";
    stopped_and_resumed_equals_uninterrupted(body, &["-KILL", "-INT"], "2", 8);
}

#[test]
fn rmsprop_linear_model_continues_exactly() {
    let body = format!(
        "{}[schedule]\nkind = \"linear\"\nlearning_rate = 0.001\nstart_factor = 1.0\nend_factor = 0.1\ntotal_steps = \"run\"\n\
         [model]\nkind = \"linear\"\n[optimizer]\nkind = \"rmsprop\"\nmomentum = 0.5\n",
        // A linear model trains fast: more epochs to be stopped in.
        DIGITS.replace("epochs = 300", "epochs = 1200")
    );
    stopped_and_resumed_equals_uninterrupted(&body, &["-INT"], "1", 5);
}

#[test]
fn a_corrupt_latest_checkpoint_falls_back_to_the_one_before_with_a_warning() {
    let dir = TempDir::new().unwrap();
    let body = format!("{DIGITS}[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\n[train.checkpoint]\n");
    let body = body.replace("[train.checkpoint]\n", "");
    let body = body.replace("log_every = 1\n", "log_every = 1\ncheckpoint_every = 45\nkeep_checkpoints = 3\n");
    let cfg = config(dir.path(), "exp", &body);
    let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
    finish(&cfg, &whole, &[]);
    let run = cut.join("exp/cosine_decay");
    let mut child = start(&cfg, &cut, &[]);
    let began = Instant::now();
    while fs::read_dir(run.join("checkpoints")).map_or(0, |d| d.count()) < 4
        && began.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // Cut the latest checkpoint's tensors in half.
    let mut latest: Vec<PathBuf> = fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    latest.sort();
    let victim = latest.last().unwrap();
    let bytes = fs::read(victim).unwrap();
    fs::write(victim, &bytes[..bytes.len() / 2]).unwrap();
    // --dry-run says the run resumes, and from the step the run then takes up.
    let dry = runner().arg("run").arg(&cfg).arg("--out").arg(&cut).arg("--dry-run").output().unwrap();
    let listing = String::from_utf8_lossy(&dry.stdout).into_owned();
    let from = listing.split("resume from step ").nth(1).unwrap_or_else(|| panic!("{listing}"));
    let step: String = from.chars().take_while(char::is_ascii_digit).collect();
    let said = finish(&cfg, &cut, &[]);
    assert!(said.contains("warning: skipped checkpoint ckpt-"), "{said}");
    assert!(said.contains("do not match their checksum (truncated or corrupt)"), "{said}");
    assert!(said.contains(&format!("resuming from its checkpoint at step {step} ")), "{said}\n{listing}");
    assert_eq!(results(&whole.join("exp/cosine_decay")), results(&run));
}

#[test]
fn a_config_changed_between_stop_and_rerun_starts_over_and_says_so() {
    let dir = TempDir::new().unwrap();
    let body = format!("{DIGITS}[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\n");
    let cfg = config(dir.path(), "exp", &body);
    let out = dir.path().join("out");
    let mut child = start(&cfg, &out, &[]);
    let run = out.join("exp/cosine_decay");
    let began = Instant::now();
    while !run.join("checkpoints").is_dir() && began.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // A single-run file with another config: refused without --force, as before.
    let o = runner().arg("run").arg(&cfg).arg("--out").arg(&out).args(["--set", "train.epochs=121"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds results of an earlier run; pass --force"));
    // In a sweep, the changed run starts over and says why.
    let sweep =
        config(dir.path(), "sw", &format!("{body}[sweep]\nseeds = [42]\n").replace("name = \"exp\"", "name = \"sw\""));
    let mut child = start(&sweep, &out, &[]);
    let run = out.join("sw/cosine_decay");
    let began = Instant::now();
    while !run.join("checkpoints").is_dir() && began.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    let said = finish(&sweep, &out, &["--set", "train.epochs=20"]);
    assert!(said.contains("its config changed since it stopped, so it starts over"), "{said}");
    assert!(!said.contains("resuming"), "{said}");
}

#[test]
fn restore_best_weights_and_eval_reproduce_the_reported_metrics() {
    let dir = TempDir::new().unwrap();
    // A rate that overfits: early stopping on val_loss with Keras' restore_best_weights.
    let body = "name = \"rb\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.3\n[train]\nepochs = 80\n\
                [train.early_stopping]\nmonitor = \"val_loss\"\npatience = 4\nrestore_best_weights = true\n";
    let cfg = config(dir.path(), "rb", body);
    let out = dir.path().join("out");
    finish(&cfg, &out, &["--quiet"]);
    let run = out.join("rb/constant");
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["early_stopped"], true, "the run should stop early");
    assert_eq!(summary["final_metrics"]["val_loss"], summary["best_metrics"]["val_loss"]);
    assert!(run.join("best.safetensors").exists());
    assert_eq!(fs::read(run.join("best.safetensors")).unwrap(), fs::read(run.join("model.safetensors")).unwrap());
    // runner eval: the saved weights on the run's validation data give its final metrics.
    let o = runner().args(["eval"]).arg(&run).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let eval: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["val_loss"], summary["final_metrics"]["val_loss"]);
    assert_eq!(eval["val_accuracy"], summary["final_metrics"]["val_accuracy"]);
    let printed = String::from_utf8(o.stdout).unwrap();
    assert!(printed.contains("val_accuracy"), "{printed}");
}

#[test]
fn one_writer_per_run_directory() {
    let dir = TempDir::new().unwrap();
    let cfg = config(
        dir.path(),
        "one",
        "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[sweep]\nseeds = [1, 2]\n[train]\nepochs = 2\n",
    );
    let out = dir.path().join("out");
    assert!(runner().arg("sweep").arg(&cfg).args(["--plan", "--out"]).arg(&out).output().unwrap().status.success());
    let exp = out.join("one");
    // Another process (this test, "on" testhost) trains run 0.
    let lock_path = exp.join(".runner.run-constant-seed1.lock");
    fs::write(&lock_path, format!("{} testhost\n", std::process::id())).unwrap();
    let held = fs::File::open(&lock_path).unwrap();
    held.lock().unwrap();
    let o = runner().arg("run-one").arg(&exp).args(["--index", "0", "--quiet"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("constant-seed1: run constant-seed1 of")
            && err.contains("is being written by another runner (process"),
        "{err}"
    );
    assert!(err.contains("on testhost)"), "{err}");
    assert!(!exp.join("constant-seed1/summary.json").exists(), "the other writer's directory is not touched");
    // The other run is free.
    let o = runner().arg("run-one").arg(&exp).args(["--index", "1", "--quiet"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(held);
    let o = runner().arg("run-one").arg(&exp).args(["--index", "0", "--quiet"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn eval_takes_another_configs_data_and_refuses_data_the_model_cannot_read() {
    let dir = TempDir::new().unwrap();
    let cfg = config(
        dir.path(),
        "ev",
        "name = \"ev\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nepochs = 3\n",
    );
    let out = dir.path().join("out");
    finish(&cfg, &out, &["--quiet"]);
    let run = out.join("ev/constant");
    // Another split of digits: the same model reads it; its metrics land in eval-other.json.
    let other = config(
        dir.path(),
        "other",
        "[dataset]\nseed = 7\nvalidation_split = 0.5\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n",
    );
    let o = runner().arg("eval").arg(&run).arg("--data").arg(&other).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed = String::from_utf8(o.stdout).unwrap();
    assert!(printed.contains("model.safetensors on the data of") && printed.contains("(901 samples)"), "{printed}");
    let eval: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("eval-other.json")).unwrap()).unwrap();
    assert_eq!(eval["samples"], 901);
    assert!(eval["val_accuracy"].as_f64().unwrap() > 0.8);
    // Moons have 2 features, not 64: refused, naming the mismatch.
    let moons = config(
        dir.path(),
        "moons",
        "[dataset]\nkind = \"moons\"\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n",
    );
    let o = runner().arg("eval").arg(&run).arg("--data").arg(&moons).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("dense.0.weight has shape [128, 64], the model built for moons has [128, 2]")
    );
    // No best weights without a monitored metric; not a run directory.
    let o = runner().arg("eval").arg(&run).args(["--weights", "best"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no best.safetensors"));
    let o = runner().arg("eval").arg(dir.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no config.toml; give a run's directory"));
}

/// A checkpoint that recorded more of metrics.csv than the file now holds (truncated or
/// damaged since) is not resumed from: resuming would pad the file with NUL bytes. With no
/// other checkpoint the run says so and starts over, to the uninterrupted run's results.
#[test]
fn a_checkpoint_recording_more_than_the_files_hold_is_skipped_and_the_run_starts_over() {
    let dir = tempfile::TempDir::new().unwrap();
    let out = dir.path().join("out");
    common::copy_dir(&common::fixture().join("old"), &out.join("old"));
    let cfg = dir.path().join("old.toml");
    fs::copy(common::fixture().join("old.toml"), &cfg).unwrap();
    let run = out.join("old/mlp");
    let metrics = fs::read(run.join("metrics.csv")).unwrap();
    fs::write(run.join("metrics.csv"), &metrics[..150]).unwrap();
    let o = runner().arg("run").arg(&cfg).arg("--out").arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: skipped checkpoint ckpt-000000047665: metrics.csv holds 150 bytes, fewer than the"),
        "{err}"
    );
    assert!(err.contains("none of its checkpoints can be used, so it starts over from step 0"), "{err}");
    let written = fs::read(run.join("metrics.csv")).unwrap();
    assert!(!written.contains(&0), "no NUL bytes");
    let expected = common::fixture().join("expected");
    let rows = |p: &Path| -> Vec<String> {
        fs::read_to_string(p).unwrap().lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect()
    };
    assert_eq!(rows(&run.join("metrics.csv")), rows(&expected.join("metrics.csv")));
    assert_eq!(fs::read(run.join("steps.csv")).unwrap(), fs::read(expected.join("steps.csv")).unwrap());
}
