//! The character-level language model through the real binary: text data sets (char and
//! byte tokens, validation by position, seeded windows, their errors), the transformer's
//! pairing with them, step-based training with its evaluation cadence, gradient
//! accumulation, the LM metrics in metrics.csv and summary.json, and `runner sample`.

mod common;

use common::{column, config, csv_rows, runner};
use predicates::prelude::*;
use std::fs;
use std::path::Path;
use tempfile::TempDir;

/// A text with structure a tiny model learns quickly: a repeated verse.
fn verse() -> String {
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n".repeat(40)
}

/// A tiny transformer on `text.txt` in `dir`; `extra` is appended (more keys or tables).
fn body(extra: &str) -> String {
    format!(
        "name = \"lm\"\n[dataset]\nkind = \"text\"\npath = \"text.txt\"\ncontext = 16\n\
         [model]\nkind = \"transformer\"\nlayers = 1\nheads = 2\nd_model = 16\n\
         [optimizer]\nkind = \"adamw\"\nweight_decay = 0.1\n\
         [schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.01\ndecay_steps = \"run\"\nwarmup_steps = 5\n\
         [train]\nsteps = 30\nbatch_size = 8\neval_every = 10\neval_batches = 2\nlog_every = 1\n{extra}"
    )
}

/// The width and height of a PNG file.
fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    (reader.info().width, reader.info().height)
}

fn setup(extra: &str) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new().unwrap();
    fs::write(dir.path().join("text.txt"), verse()).unwrap();
    let cfg = config(dir.path(), "lm", &body(extra));
    (dir, cfg)
}

fn train(cfg: &Path, out: &Path) {
    runner().arg("run").arg(cfg).arg("--quiet").arg("--out").arg(out).assert().success();
}

fn run_dir(out: &Path) -> std::path::PathBuf {
    out.join("lm/cosine_decay")
}

#[test]
fn steps_and_eval_every_set_the_cadence_and_the_lm_metrics_are_written() {
    let (dir, cfg) = setup("");
    let out = dir.path().join("out");
    train(&cfg, &out);
    let run = run_dir(&out);
    let rows = csv_rows(&run.join("metrics.csv"));
    assert_eq!(column(&rows, "step"), vec!["10", "20", "30"]);
    for ((loss, bits), ppl) in
        column(&rows, "val_loss").iter().zip(column(&rows, "val_bits_per_char")).zip(column(&rows, "val_perplexity"))
    {
        let loss: f64 = loss.parse().unwrap();
        assert!((bits.parse::<f64>().unwrap() - loss / std::f64::consts::LN_2).abs() < 1e-9);
        assert!((ppl.parse::<f64>().unwrap() - loss.exp()).abs() < 1e-9 * loss.exp());
    }
    assert!(column(&rows, "val_bits_per_byte").iter().all(|v| v.is_empty()));
    // The verse has 23 distinct characters: the untrained model is near ln 23 = 3.14, and it learns.
    let losses: Vec<f64> = column(&rows, "val_loss").iter().map(|v| v.parse().unwrap()).collect();
    assert!(losses[2] < 2.8, "{losses:?}");
    assert_eq!(fs::read_to_string(run.join("steps.csv")).unwrap().lines().count(), 31);
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 30);
    assert_eq!(summary["best_by"], "val_loss", "a language model's best is its lowest loss");
    let last = &summary["final_metrics"];
    assert!((last["val_bits_per_char"].as_f64().unwrap() - losses[2] / std::f64::consts::LN_2).abs() < 1e-9);
    let vocab: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("vocab.json")).unwrap()).unwrap();
    assert_eq!(vocab["tokens"], "char");
    assert_eq!(vocab["chars"].as_array().unwrap().len(), 23);
    assert_eq!(vocab["chars"][0], "\n");
    // The report ranks language models by val_loss and shows bits per char.
    runner()
        .arg("report")
        .arg(out.join("lm"))
        .assert()
        .success()
        .stdout(predicate::str::contains("val_loss").and(predicate::str::contains("bits_per_char")));
    let chart = out.join("lm/val_bits_per_char.png");
    let (w, h) = png_size(&chart);
    assert!(w > 100 && h > 100, "{w}x{h}");
    assert!(!out.join("lm/val_accuracy.png").exists(), "a language model's chart is bits per char, not token accuracy");
}

#[test]
fn byte_tokens_have_256_and_report_bits_per_byte() {
    let (dir, cfg) = setup("");
    let text = fs::read_to_string(&cfg).unwrap().replace("context = 16", "context = 16\ntokens = \"byte\"");
    fs::write(&cfg, text).unwrap();
    fs::write(dir.path().join("text.txt"), verse().replace("question", "quéstion")).unwrap();
    let out = dir.path().join("out");
    train(&cfg, &out);
    let run = run_dir(&out);
    let rows = csv_rows(&run.join("metrics.csv"));
    assert!(column(&rows, "val_bits_per_byte").iter().all(|v| !v.is_empty()));
    assert!(column(&rows, "val_bits_per_char").iter().all(|v| v.is_empty()));
    let vocab = fs::read_to_string(run.join("vocab.json")).unwrap();
    assert_eq!(vocab.trim(), "{\n  \"tokens\": \"byte\"\n}");
    let summary = fs::read_to_string(run.join("summary.json")).unwrap();
    assert!(summary.contains("\"parameters\": ") && summary.contains("val_bits_per_byte"), "{summary}");
    // 256 tokens x 16 + 16 positions x 16 + one block + the final norm.
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let (d, v, t) = (16u64, 256u64, 16u64);
    let block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d);
    assert_eq!(s["parameters"], v * d + t * d + block + 2 * d);
    // A character of several bytes comes back whole.
    runner()
        .args(["sample"])
        .arg(&run)
        .args(["--prompt", "qué", "--tokens", "5", "--temperature", "0"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("qué"));
}

#[test]
fn same_seed_same_windows_other_seed_other_windows() {
    let (dir, cfg) = setup("");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train(&cfg, &a);
    train(&cfg, &b);
    let steps = |out: &Path| fs::read_to_string(run_dir(out).join("steps.csv")).unwrap();
    assert_eq!(steps(&a), steps(&b));
    let c = dir.path().join("c");
    runner().arg("run").arg(&cfg).args(["--quiet", "--set", "train.seed=7", "--out"]).arg(&c).assert().success();
    let other = fs::read_to_string(c.join("lm/cosine_decay/steps.csv")).unwrap();
    assert_ne!(steps(&a), other, "another seed draws other windows and weights");
}

#[test]
fn validation_is_the_end_of_the_text_by_position() {
    // Training text of one repeated line, validation text of another: a model that learned
    // only the first does badly on the second, which it would not if lines were shuffled.
    let dir = TempDir::new().unwrap();
    let text = format!("{}{}", "abcabcabc\n".repeat(90), "zyxzyxzyx\n".repeat(10));
    fs::write(dir.path().join("text.txt"), text).unwrap();
    let cfg =
        config(dir.path(), "lm", &body("").replace("context = 16", "context = 8").replace("steps = 30", "steps = 100"));
    let out = dir.path().join("out");
    train(&cfg, &out);
    let rows = csv_rows(&run_dir(&out).join("metrics.csv"));
    let (train_loss, val_loss): (f64, f64) =
        (column(&rows, "train_loss")[9].parse().unwrap(), column(&rows, "val_loss")[9].parse().unwrap());
    assert!(val_loss > train_loss + 1.0, "train {train_loss}, validation {val_loss}");
}

#[test]
fn gradient_accumulation_and_two_threads_equal_the_one_batch() {
    let (dir, cfg) = setup("");
    let big = dir.path().join("big");
    train(&cfg, &big);
    let small = dir.path().join("small");
    runner()
        .arg("run")
        .arg(&cfg)
        .args([
            "--quiet",
            "--set",
            "train.batch_size=4",
            "--set",
            "train.accumulate=2",
            "--set",
            "train.eval_batches=4",
        ])
        .arg("--out")
        .arg(&small)
        .assert()
        .success();
    let losses = |out: &Path| -> Vec<f64> {
        column(&csv_rows(&run_dir(out).join("steps.csv")), "loss").iter().map(|v| v.parse().unwrap()).collect()
    };
    let (a, b) = (losses(&big), losses(&small));
    assert_eq!(a.len(), b.len());
    // The same windows (8 a step) and the same mean gradient, up to float32 rounding.
    assert!((a[0] - b[0]).abs() < 1e-5, "{} vs {}", a[0], b[0]);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 2e-3 * x.abs(), "{a:?}\n{b:?}");
    }
    let val = |out: &Path| column(&csv_rows(&run_dir(out).join("metrics.csv")), "val_loss");
    let (va, vb): (f64, f64) = (val(&big)[2].parse().unwrap(), val(&small)[2].parse().unwrap());
    assert!((va - vb).abs() < 2e-3 * va, "{va} vs {vb}");
    // Two threads split each batch in two parts trained at once: the same mean gradient.
    let two = dir.path().join("two");
    runner().arg("run").arg(&cfg).args(["--quiet", "--set", "train.threads=2", "--out"]).arg(&two).assert().success();
    let c = losses(&two);
    assert!((a[0] - c[0]).abs() < 1e-5, "{} vs {}", a[0], c[0]);
    for (x, y) in a.iter().zip(&c) {
        assert!((x - y).abs() < 2e-3 * x.abs(), "{a:?}\n{c:?}");
    }
}

#[test]
fn sampling_is_deterministic_with_a_seed_and_starts_with_the_prompt() {
    let (dir, cfg) = setup("");
    let out = dir.path().join("out");
    train(&cfg, &out);
    let run = run_dir(&out);
    let sample = |seed: &str| -> String {
        let o = runner()
            .arg("sample")
            .arg(&run)
            .args(["--prompt", "To be", "--tokens", "60", "--top-k", "5", "--seed", seed])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let (a, b, c) = (sample("1"), sample("1"), sample("2"));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.starts_with("To be"));
    assert_eq!(a.trim_end_matches('\n').chars().count(), 5 + 60);
    // A character the model never saw is refused, by name.
    runner().arg("sample").arg(&run).args(["--prompt", "Zebra"]).assert().code(2).stderr(predicate::str::contains(
        "--prompt: the character 'Z' (U+005A) is not in the vocabulary of 23 characters",
    ));
    // A run that is not a language model.
    let mlp = dir.path().join("mlp");
    let digits = config(dir.path(), "digits", &format!("name = \"d\"\n[train]\nepochs = 1\n{SCHEDULE}"));
    runner().arg("run").arg(&digits).arg("--quiet").arg("--out").arg(&mlp).assert().success();
    let d = fs::read_dir(mlp.join("d")).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
    runner().arg("sample").arg(&d).assert().code(2).stderr(predicate::str::contains("is not a language model run"));
}

/// `runner run CFG --out OUT` exits 2 with stderr as `said` says.
fn refused(cfg: &Path, out: &Path, said: impl predicates::Predicate<str>) {
    runner().arg("run").arg(cfg).arg("--out").arg(out).assert().code(2).stderr(said);
}

const SCHEDULE: &str = "[schedule]\nkind = \"constant\"\nlearning_rate = 0.01\n";

#[test]
fn text_errors_name_the_problem() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    fs::write(dir.path().join("text.txt"), "").unwrap();
    let cfg = config(dir.path(), "lm", &body(""));
    refused(&cfg, &out, predicate::str::contains("text.txt is empty"));
    fs::write(dir.path().join("text.txt"), "a short text").unwrap();
    refused(
        &cfg,
        &out,
        predicate::str::contains("has 12 chars").and(predicate::str::contains("not more than context = 16")),
    );
    fs::write(dir.path().join("text.txt"), [b'a', 0xff, 0xfe, b'b']).unwrap();
    refused(&cfg, &out, predicate::str::contains("is not UTF-8 text: the bytes at offset 1"));
    fs::remove_file(dir.path().join("text.txt")).unwrap();
    refused(
        &cfg,
        &out,
        predicate::str::contains("cannot read the text file").and(predicate::str::contains("text.txt")),
    );
    // The transformer needs text, text needs the transformer, eval_batches is for text.
    let wrong = config(
        dir.path(),
        "t_on_digits",
        &format!("name = \"x\"\n[model]\nkind = \"transformer\"\n[train]\nsteps = 2\n{SCHEDULE}"),
    );
    refused(&wrong, &out, predicate::str::contains("it needs a text data set"));
    let wrong = config(
        dir.path(),
        "mlp_on_text",
        &format!("name = \"x\"\n[dataset]\nkind = \"text\"\n[train]\nsteps = 2\n{SCHEDULE}"),
    );
    refused(&wrong, &out, predicate::str::contains("it trains the transformer model"));
    let wrong =
        config(dir.path(), "eval_batches", &format!("name = \"x\"\n[train]\nsteps = 2\neval_batches = 3\n{SCHEDULE}"));
    refused(&wrong, &out, predicate::str::contains("`train.eval_batches` is for text data sets"));
    let wrong = config(
        dir.path(),
        "heads",
        &format!(
            "name = \"x\"\n[dataset]\nkind = \"text\"\n[model]\nkind = \"transformer\"\nd_model = 30\nheads = 4\n{SCHEDULE}"
        ),
    );
    runner().arg("run").arg(&wrong).arg("--out").arg(&out).assert().code(2).stderr(
        predicate::str::contains("heads.toml:").and(predicate::str::contains("= 30 is not a multiple of heads = 4")),
    );
    assert!(!out.join("x").exists() || fs::read_dir(out.join("x")).unwrap().count() == 0);
}

#[test]
fn plateau_and_early_stopping_work_on_step_evaluations() {
    // A rate far too high for AdamW: val_loss stops improving, the plateau schedule halves
    // the rate after each 2 evaluations without improvement, and early stopping ends the run.
    let extra = "[train.early_stopping]\nmonitor = \"val_loss\"\npatience = 4\n";
    let (dir, cfg) = setup(extra);
    let text = fs::read_to_string(&cfg).unwrap().replace(
        "[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.01\ndecay_steps = \"run\"\nwarmup_steps = 5\n",
        "[schedule]\nkind = \"reduce_on_plateau\"\nlearning_rate = 0.5\nfactor = 0.5\npatience = 2\nmonitor = \"val_loss\"\n",
    );
    let text = text.replace("steps = 30", "steps = 400").replace("eval_every = 10", "eval_every = 5");
    fs::write(&cfg, text).unwrap();
    let out = dir.path().join("out");
    runner().arg("run").arg(&cfg).arg("--quiet").arg("--out").arg(&out).assert().success();
    let run = out.join("lm/reduce_on_plateau");
    let rows = csv_rows(&run.join("metrics.csv"));
    let steps: Vec<u64> = column(&rows, "step").iter().map(|v| v.parse().unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[1] - w[0] == 5), "an evaluation every 5 steps: {steps:?}");
    let rates: Vec<f64> = column(&rows, "lr").iter().map(|v| v.parse().unwrap()).collect();
    assert!(rates.iter().any(|&r| r < 0.5), "the plateau schedule lowered the rate: {rates:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["early_stopped"], true, "{summary}");
    assert!(summary["steps"].as_u64().unwrap() < 400);
    assert!(run.join("best.safetensors").exists(), "a monitored run keeps its best weights");
}

#[test]
fn the_shipped_configs_are_valid_and_the_sweeps_schedules_end_as_documented() {
    for name in ["shakespeare_char", "shakespeare_wsd_vs_cosine"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("configs/{name}.toml"));
        runner().arg("run").arg(&path).arg("--dry-run").assert().success();
    }
    // Each with the same 100-step warmup to the same 0.002 peak; WSD holds it to step 1600.
    let sweep = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/shakespeare_wsd_vs_cosine.toml");
    for (run, at_1600, end) in [
        ("wsd_linear-seed1", 0.002, 0.000005),
        ("wsd_sqrt-seed1", 0.002, 0.0000025),
        ("cosine-seed1", 0.000211, 0.0),
        ("constant-seed1", 0.002, 0.002),
    ] {
        let o = runner().arg("schedule").arg(&sweep).args(["--run", run]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rows: Vec<(u64, f64)> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let (s, v) = l.split_once(',').unwrap();
                (s.parse().unwrap(), v.parse().unwrap())
            })
            .collect();
        assert_eq!(rows.len(), 2000, "{run}");
        assert_eq!(rows[100].1, 0.002, "{run}: the peak after the warmup");
        assert!((rows[1600].1 - at_1600).abs() < 1e-6, "{run}: {} at step 1600", rows[1600].1);
        assert!((rows[1999].1 - end).abs() < 1e-6, "{run}: ends at {}", rows[1999].1);
    }
}

#[test]
fn samples_stream_are_bounded_and_stop_when_nobody_reads() {
    let (dir, cfg) = setup("");
    let out = dir.path().join("out");
    train(&cfg, &out);
    let run = run_dir(&out);
    // More than a million tokens is refused before anything is drawn.
    runner()
        .arg("sample")
        .arg(&run)
        .args(["--tokens", "1000001"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("1000001 is not in 0..=1000000"));
    // A million tokens: the text comes as it is drawn, and closing the pipe after the first
    // bytes ends it (exit 0) long before a million would be done.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("sample")
        .arg(&run)
        .args(["--tokens", "1000000", "--prompt", "To be"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 40];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    assert!(first.starts_with(b"To be"), "{}", String::from_utf8_lossy(&first));
    drop(child.stdout.take());
    let began = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(began.elapsed().as_secs() < 60, "sampling went on after its reader left");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
