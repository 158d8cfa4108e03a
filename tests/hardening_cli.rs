//! Hostile and careless input through the real binary: each test is named after what it
//! protects. No hang, no panic, no abort, no write outside --out; exit 2 with a located
//! message when the config (or its data) alone decides, 1 for failures while running.

mod common;

use common::{closed_pipe, config, runner};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Runs `runner ARGS` with a time limit; returns (exit code, stderr).
fn run_limited(args: &[&str], dir: &Path, limit: Duration) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr as it comes, so a long message cannot fill the pipe and stall the child.
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut err).unwrap();
        err
    });
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), reader.join().unwrap());
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("runner {args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `runner run FILE --out DIR/out` with a 60 s limit, in `dir`.
fn run_file(dir: &Path, name: &str, body: &str) -> (Option<i32>, String) {
    config(dir, name, body);
    run_limited(&["run", &format!("{name}.toml"), "--out", "out", "--quiet"], dir, Duration::from_secs(60))
}

const CONSTANT: &str = "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n";

/// Writes MNIST-format IDX files (`n` images of `rows` x `cols`) into `dir`.
fn write_idx(dir: &Path, n: u32, rows: u32, cols: u32) {
    let mut images = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        images.extend(d.to_be_bytes());
    }
    images.extend(std::iter::repeat_n(7u8, (n * rows * cols) as usize));
    fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
    let mut labels = vec![0, 0, 8, 1];
    labels.extend(n.to_be_bytes());
    labels.extend((0..n).map(|i| (i % 2) as u8));
    fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
}

#[test]
fn an_empty_training_part_is_refused_instead_of_hanging() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let cases = [
        ("[dataset]\nkind = \"moons\"\npoints = 2\nvalidation_split = 0.9\n", "training part is empty"),
        ("[dataset]\nkind = \"spirals\"\nclasses = 2\npoints_per_class = 1\n", "validation part is empty"),
    ];
    for (data, expected) in cases {
        let (code, err) = run_file(d, "tiny", &format!("{data}{CONSTANT}"));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(expected), "{err}");
    }
    fs::write(d.join("two.csv"), "x,y\n1,0\n2,1\n").unwrap();
    let (code, err) = run_file(
        d,
        "csv",
        &format!("[dataset]\nkind = \"csv\"\npath = \"two.csv\"\nvalidation_split = 0.9\n{CONSTANT}"),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("part is empty"), "{err}");
    let idx = d.join("idx");
    fs::create_dir_all(&idx).unwrap();
    write_idx(&idx, 0, 28, 28);
    let (code, err) = run_file(d, "idx", &format!("[dataset]\nkind = \"mnist\"\ndir = \"idx\"\n{CONSTANT}"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("the mnist data set holds no samples"), "{err}");
    assert!(!d.join("out").exists(), "nothing is written for a refused run");
}

#[test]
fn idx_images_of_no_pixels_are_refused_not_a_panic() {
    let dir = TempDir::new().unwrap();
    let idx = dir.path().join("idx");
    fs::create_dir_all(&idx).unwrap();
    write_idx(&idx, 10, 0, 0);
    let (code, err) = run_file(dir.path(), "idx", &format!("[dataset]\nkind = \"mnist\"\ndir = \"idx\"\n{CONSTANT}"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("images of 0x0 pixels hold nothing to learn from"), "{err}");
}

#[test]
fn a_gzip_bomb_is_not_inflated_past_its_header() {
    let dir = TempDir::new().unwrap();
    let idx = dir.path().join("idx");
    fs::create_dir_all(&idx).unwrap();
    write_idx(&idx, 10, 4, 4);
    // 2 GB of zeros behind a header that promises 160 bytes, gzipped to a few MB.
    let mut header = vec![0, 0, 8, 3];
    for d in [10u32, 4, 4] {
        header.extend(d.to_be_bytes());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..2048 {
        gz.write_all(&zeros).unwrap();
    }
    fs::write(idx.join("train-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    fs::remove_file(idx.join("train-images-idx3-ubyte")).unwrap();
    config(dir.path(), "bomb", &format!("[dataset]\nkind = \"mnist\"\ndir = \"idx\"\n{CONSTANT}"));
    // Under 1 GB of address space: the data past the header is never inflated.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1000000; exec \"$0\" schedule bomb.toml --steps 2")
        .arg(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("header promises 160 bytes of data, file holds more"), "{err}");
}

#[test]
fn nothing_is_written_outside_out_whatever_the_file_is_called() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("parent/constant")).unwrap();
    fs::write(d.join("parent/constant/important.txt"), "keep me").unwrap();
    fs::create_dir_all(d.join("parent/out")).unwrap();
    for file in ["...toml", "..toml"] {
        fs::write(d.join(file), CONSTANT).unwrap();
        for extra in [&[][..], &["--force"][..]] {
            let mut args = vec!["run", file, "--out", "parent/out", "--quiet"];
            args.extend(extra);
            let (code, err) = run_limited(&args, d, Duration::from_secs(60));
            assert_eq!(code, Some(2), "{file}: {err}");
            assert!(err.contains("the experiment is named after the file"), "{err}");
            assert!(err.contains("add e.g. name = \"my_experiment\""), "{err}");
        }
    }
    assert_eq!(fs::read_to_string(d.join("parent/constant/important.txt")).unwrap(), "keep me");
    assert!(!d.join("parent/runs.json").exists() && !d.join("parent/summary.csv").exists());
    let long = "n".repeat(300);
    let (code, err) = run_file(d, "long", &format!("name = \"{long}\"\n{CONSTANT}"));
    assert_eq!(code, Some(2));
    assert!(err.contains("long.toml:1:8: `name` must be at most 100 characters"), "{err}");
}

#[test]
fn sizes_that_would_exhaust_memory_are_refused_with_the_limit() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    config(d, "cos", "[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\n");
    let (code, err) = run_limited(&["schedule", "cos.toml", "--steps", "10000000000"], d, Duration::from_secs(30));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("10000000000 is not in 1..=10000000"), "{err}");
    let (code, err) = run_file(
        d,
        "draws",
        &format!(
            "[sweep]\nsamples = 100000000\n\"schedule.learning_rate\" = {{ log_uniform = [0.001, 0.1] }}\n{CONSTANT}"
        ),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("[sweep] expands to 100000000 runs (100000000 samples), more than the 100000 one sweep may hold"),
        "{err}"
    );
    // A 12-key grid of 10 values each: 10^12 runs, refused before any is built.
    let keys = [
        "train.batch_size",
        "train.log_every",
        "train.seed",
        "train.epochs",
        "dataset.seed",
        "model.hidden",
        "schedule.learning_rate",
        "model.dropout",
        "optimizer.momentum",
        "optimizer.weight_decay",
        "train.clip_grad_norm",
        "dataset.validation_split",
    ];
    let mut many = String::from("[sweep]\n");
    for key in keys {
        let values: Vec<String> = (1..=10)
            .map(|v| match key {
                "model.hidden" => format!("[{v}]"),
                k if k.starts_with("train.") || k == "dataset.seed" => v.to_string(),
                _ => format!("0.{v:02}"),
            })
            .collect();
        many.push_str(&format!("\"{key}\" = [{}]\n", values.join(", ")));
    }
    let (code, err) = run_file(d, "grid", &format!("{many}{CONSTANT}"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("more than the 100000 one sweep may hold"), "{err}");
    for label in ["1e10", "1000000"] {
        fs::write(d.join("labels.csv"), format!("x,y\n1,0\n2,1\n3,{label}\n4,0\n5,1\n")).unwrap();
        let (code, err) =
            run_file(d, "labels", &format!("[dataset]\nkind = \"csv\"\npath = \"labels.csv\"\n{CONSTANT}"));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("labels are class indices 0 to 9999"), "{err}");
    }
    let (code, err) = run_file(d, "huge", &format!("[model]\nhidden = [100000, 100000]\n{CONSTANT}"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "10007600010 parameters, more than the 500000000 runner trains; training it would need about 160 GB"
        ),
        "{err}"
    );
    let deep = "(".repeat(100) + "0.1" + &")".repeat(100);
    let (code, err) = run_file(d, "deep", &format!("[schedule]\nkind = \"expression\"\nformula = \"{deep}\"\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("deep.toml:3:11: `schedule.formula` nests parentheses 100 deep; a formula may nest at most 32"),
        "{err}"
    );
    let unary = "-".repeat(100_000) + "0.1";
    let (code, err) = run_file(d, "unary", &format!("[schedule]\nkind = \"expression\"\nformula = \"{unary}\"\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is 100003 characters long; a formula may have at most 1000"), "{err}");
}

#[test]
fn nonsense_is_refused_or_documented_not_reported_as_a_result() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    // One class.
    fs::write(d.join("one.csv"), "x,y\n1,3\n2,3\n3,3\n4,3\n5,3\n").unwrap();
    let (code, err) = run_file(d, "one", &format!("[dataset]\nkind = \"csv\"\npath = \"one.csv\"\n{CONSTANT}"));
    assert_eq!(code, Some(2));
    assert!(err.contains("holds only one class (3); a classifier needs at least two"), "{err}");
    // Formulas: a non-finite rate is refused where it is known (step 0: at load) and at its
    // first step otherwise; a negative one is held at 0 with a warning, like TF's noisy decay.
    let (code, err) = run_file(d, "nan", "[schedule]\nkind = \"expression\"\nformula = \"0/0\"\n");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("nan.toml:3:11: `schedule.formula` gives NaN at step 0; a learning rate must be a finite number"),
        "{err}"
    );
    let (code, err) = run_file(d, "inf", "[schedule]\nkind = \"expression\"\nformula = \"1 / (step - 5)\"\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("the schedule gives lr = inf at step 5"), "{err}");
    let out = runner()
        .args(["schedule"])
        .arg(config(d, "inf2", "[schedule]\nkind = \"expression\"\nformula = \"1 / (step - 5)\"\n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the schedule gives lr = inf at step 5"));
    let out = runner()
        .args(["schedule", "--steps", "4"])
        .arg(config(d, "neg", "[schedule]\nkind = \"expression\"\nformula = \"0.1 - step * 0.05\"\n"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "step,lr\n0,0.1\n1,0.05\n2,0\n3,0\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "`schedule` goes below 0 at 1347 steps of the run, first at step 3 (lr = -0.0500); the rate is held at 0 there"
    ));
    // Both epochs and steps.
    let (code, err) = run_file(d, "both", &format!("[train]\nepochs = 2\nsteps = 10\n{CONSTANT}"));
    assert_eq!(code, Some(2));
    assert!(err.contains("both.toml:3:9: `train.steps` is given with epochs"), "{err}");
    // With steps alone, the saved config says steps only, and reruns as it is.
    let (code, err) = run_file(d, "steps", &format!("[train]\nsteps = 10\n{CONSTANT}"));
    assert_eq!(code, Some(0), "{err}");
    let saved = fs::read_to_string(d.join("out/steps/constant/config.toml")).unwrap();
    assert!(saved.contains("\nsteps = 10") && !saved.contains("\nepochs ="), "{saved}");
    // An epoch count whose steps overflow: schedule and run refuse it alike.
    let huge = format!("[train]\nepochs = 9223372036854775807\n{CONSTANT}");
    let (code, err) = run_file(d, "wrap", &huge);
    assert_eq!(code, Some(2));
    assert!(
        err.contains(
            "`train.epochs` = 9223372036854775807 of 45 steps each is more than the 10000000000 steps a run may take"
        ),
        "{err}"
    );
    let out = runner().arg("schedule").arg(d.join("wrap.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is more than the 10000000000 steps"));
    // Duplicate seeds and grid values.
    let (code, err) = run_file(d, "seeds", &format!("[sweep]\nseeds = [1, 2, 1]\n{CONSTANT}"));
    assert_eq!(code, Some(2));
    assert!(err.contains("seeds.toml:2:9: `sweep.seeds` lists seed 1 twice"), "{err}");
    let (code, err) = run_file(d, "values", &format!("[sweep]\n\"train.batch_size\" = [32, 64, 32]\n{CONSTANT}"));
    assert_eq!(code, Some(2));
    assert!(err.contains("values.toml:2:31: `sweep.\"train.batch_size\"` lists 32 twice"), "{err}");
}

#[test]
fn what_the_config_alone_decides_exits_2_before_anything_runs_also_quiet() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let cases = [
        (
            "[train.early_stopping]\nmonitor = \"val_rmse\"\n".to_string(),
            "`train.early_stopping.monitor` = \"val_rmse\", but digits is a classification data set",
        ),
        ("[dataset]\nkind = \"moons\"\n[model]\nkind = \"cnn\"\n".to_string(), "the cnn model needs image data"),
        (
            "[model]\nkind = \"cnn\"\nchannels = [4, 4, 4, 4]\n".to_string(),
            "the 8x8 image is too small for 4 pooled convolutions: it is 1x1 after 3",
        ),
    ];
    for (i, (body, expected)) in cases.iter().enumerate() {
        let (code, err) = run_file(d, &format!("case{i}"), &format!("{body}{CONSTANT}"));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(expected), "--quiet still says why: {err}");
        assert!(!d.join("out").exists());
    }
    config(d, "cos", CONSTANT);
    let (code, err) = run_limited(&["schedule", "cos.toml", "--out", "lr.jpg"], d, Duration::from_secs(30));
    assert_eq!(code, Some(2));
    assert!(err.contains("--out lr.jpg: a chart is written as PNG or SVG"), "{err}");
}

#[test]
fn a_config_that_is_not_utf8_is_refused_at_its_line_and_column() {
    let dir = TempDir::new().unwrap();
    fs::write(dir.path().join("bad.toml"), b"name = \"x\"\n[schedule]\nkind = \"const\xffant\"\n").unwrap();
    let (code, err) = run_limited(&["schedule", "bad.toml"], dir.path(), Duration::from_secs(30));
    assert_eq!(code, Some(2));
    assert!(err.contains("bad.toml:3:14: is not valid UTF-8: byte 0xff at offset 35"), "{err}");
}

#[test]
fn report_says_when_a_metrics_file_is_truncated_or_garbage() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let (code, err) = run_file(d, "short", &format!("[train]\nepochs = 3\n{CONSTANT}"));
    assert_eq!(code, Some(0), "{err}");
    let metrics = d.join("out/short/constant/metrics.csv");
    let mut text = fs::read_to_string(&metrics).unwrap();
    text.push_str("4,180,0.1,0.0");
    fs::write(&metrics, text).unwrap();
    let out = runner().arg("report").arg(d.join("out/short")).arg("--no-plots").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("note: constant: metrics.csv: row 5 is not a valid row"), "{text}");
    assert!(text.contains("only the 3 rows before it are read"), "{text}");
}

#[test]
fn a_full_disk_leaves_no_temp_files_and_no_stale_summary() {
    // The disk fills at a different file for each size: the plan, a run's lock, its CSVs,
    // its weights, the summary.
    for size in ["4k", "32k", "120k", "400k"] {
        full_disk_at(size);
    }
}

fn full_disk_at(size: &str) {
    let dir = TempDir::new().unwrap();
    let mnt = dir.path().join("small");
    fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root and mount rights)");
        return;
    }
    let result = std::panic::catch_unwind(|| {
        let out =
            runner().args(["run", "configs/sweep_all_decays.toml", "--quiet", "--out"]).arg(&mnt).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{size}: {err}");
        assert!(err.contains("No space left on device"), "{size}: {err}");
        // Every failure names the file it could not write.
        for line in err.lines().filter(|l| l.contains("No space left")) {
            assert!(line.contains("cannot write /"), "{size}: {line}");
        }
        let mut tmp = Vec::new();
        for e in walk(&mnt) {
            if e.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".tmp")) {
                tmp.push(e);
            }
        }
        assert!(tmp.is_empty(), "{size}: temporary files left: {tmp:?}");
        // summary.csv is either current or gone, never stale.
        let summary = mnt.join("sweep_all_decays/summary.csv");
        if summary.exists() {
            let text = fs::read_to_string(&summary).unwrap();
            assert!(!text.contains(",running,") && !text.contains(",pending,"), "{size}: {text}");
        } else if mnt.join("sweep_all_decays/runs.json").exists() {
            assert!(err.contains("summary.csv is not up to date, so the old one was removed"), "{size}: {err}");
        }
    });
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `runner ... | head -1`: a reader that stops reading is the reader's choice. Every
/// listing command exits 0 without a panic when its stdout is closed before it writes.
#[test]
fn listings_into_a_closed_pipe_exit_quietly() {
    let tmp = TempDir::new().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sweep = repo.join("configs/sweep_all_decays.toml");
    let out = tmp.path().join("out");
    let (sweep, out) = (sweep.to_str().unwrap(), out.to_str().unwrap());
    for args in [
        vec!["sweep", sweep, "--dry-run", "--out", out],
        vec!["run", sweep, "--dry-run", "--out", out],
        vec!["schedules"],
        vec!["schedule", repo.join("configs/cosine.toml").to_str().unwrap()],
    ] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
            .args(&args)
            .current_dir(tmp.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the command writes a byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "runner {args:?} panicked on a closed pipe: {err}");
        assert_eq!(out.status.code(), Some(0), "runner {args:?}: {err}");
    }
}

/// A run named after something runner keeps beside the runs (`replaced/`, where archived
/// results live and which a run of that name would delete; runs.json; a chart; a lock) is
/// refused at load with the key, and nothing is written.
#[test]
fn runs_named_like_runners_own_files_are_refused_at_load() {
    let dir = TempDir::new().unwrap();
    let schedule = "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[train]\nepochs = 1\n";
    for name in ["replaced", "runs.json", "summary.csv", "slurm", "plan", "lr.png", "final.svg", ".runner.lock"] {
        let (code, err) = run_file(dir.path(), "single", &format!("run = \"{name}\"\n{schedule}"));
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains("single.toml:1:7: `run`"), "{name}: {err}");
        assert!(err.contains("is a name runner uses beside the runs") && err.contains("reserved: replaced"), "{err}");
        let sweep = format!(
            "[[sweep.schedule]]\nname = \"{name}\"\nkind = \"constant\"\nlearning_rate = 0.1\n\
             [[sweep.schedule]]\nkind = \"constant\"\nlearning_rate = 0.2\n[train]\nepochs = 1\n"
        );
        let (code, err) = run_file(dir.path(), "swept", &sweep);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains("swept.toml:2:8: `sweep.schedule.name`") && err.contains("reserved:"), "{name}: {err}");
    }
    assert!(!dir.path().join("out").exists(), "nothing is written");
    // Names that merely contain them are fine.
    let (code, err) = run_file(dir.path(), "fine", &format!("run = \"replaced-2\"\n{schedule}"));
    assert_eq!(code, Some(0), "{err}");
}

/// `runner ... 2>&1 | head -1`: stderr closed by its reader. Messages are dropped; the
/// work and the exit code are what they would be (they were a panic's 101).
#[test]
fn a_closed_stderr_changes_neither_the_work_nor_the_exit_code() {
    let dir = TempDir::new().unwrap();
    let ok = config(dir.path(), "ok", &format!("{CONSTANT}[train]\nepochs = 2\n"));
    let bad = config(dir.path(), "bad", "[schedule]\nkind = \"constant\"\n");
    let sweep =
        config(dir.path(), "sweep", &format!("[sweep]\nseeds = [1, 2]\n{CONSTANT}[train]\nepochs = 2\nthreads = 1\n"));
    for (cfg, want) in [(&ok, 0), (&bad, 2), (&sweep, 0)] {
        let out = dir.path().join("out");
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg("run")
            .arg(cfg)
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(closed_pipe())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(want), "{}", cfg.display());
    }
    assert!(dir.path().join("out/ok/constant/summary.json").exists());
    assert!(dir.path().join("out/sweep/summary.csv").exists());
    // A refused schedule printed to a closed stderr still exits 2.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["schedule"])
        .arg(&bad)
        .stdout(std::process::Stdio::null())
        .stderr(closed_pipe())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

/// A thread count far above the machine's cores (a typo: 100000) is refused before any
/// thread is spawned, from the file and from --threads-per-run.
#[test]
fn absurd_thread_counts_are_refused_before_anything_runs() {
    let dir = TempDir::new().unwrap();
    let (code, err) = run_file(dir.path(), "many", &format!("{CONSTANT}[train]\nthreads = 100000\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`train.threads` (or --threads-per-run) = 100000 is more than 4 x the"), "{err}");
    assert!(err.contains("give at most"), "{err}");
    config(dir.path(), "few", CONSTANT);
    let (code, err) = run_limited(
        &["run", "few.toml", "--out", "out", "--quiet", "--threads-per-run", "50000"],
        dir.path(),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("= 50000 is more than"), "{err}");
    assert!(!dir.path().join("out").exists(), "nothing is written");
}

#[test]
fn schedules_that_cannot_be_computed_are_refused_alike_by_schedule_and_run() {
    // A subnormal decay_steps (training flushes it to 0: NaN at step 0 in the run, while
    // `runner schedule` printed 0.1), and values whose arithmetic overflows (a cosine of
    // 2 pi x 1e308 periods): refused at load by both commands, exit 2, the key named, and
    // the run writes nothing.
    let dir = TempDir::new().unwrap();
    let cases = [
        (
            "subnormal",
            "[schedule]\nkind = \"inverse_time_decay\"\nlearning_rate = 0.1\ndecay_steps = 1e-320\ndecay_rate = 0.5\n",
            "`schedule.decay_steps` is 1e-320, a subnormal number",
        ),
        (
            "overflow",
            "[schedule]\nkind = \"linear_cosine_decay\"\nlearning_rate = 0.1\nnum_periods = 1e308\n",
            "num_periods = 1e308",
        ),
    ];
    for (name, body, says) in cases {
        let body = format!("name = \"{name}\"\n[train]\nepochs = 2\n{body}");
        let (code, err) = run_file(dir.path(), name, &body);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(!dir.path().join("out").join(name).exists(), "{name}: the run wrote its directory");
        let (code, err) =
            run_limited(&["schedule", &format!("{name}.toml"), "--steps", "5"], dir.path(), Duration::from_secs(60));
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
    }
}

#[test]
fn names_read_back_from_a_plan_are_checked_as_a_configs() {
    // A runs.json edited (or forged) to name a run `../../X` made run-one delete and write
    // outside the experiment; every name read back is now refused as a config's would be.
    let dir = TempDir::new().unwrap();
    config(dir.path(), "p", &format!("name = \"p\"\n[train]\nepochs = 1\n{CONSTANT}[sweep]\nseeds = [1, 2]\n"));
    let (code, err) = run_limited(&["sweep", "p.toml", "--plan", "--out", "out"], dir.path(), Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    let plan_path = dir.path().join("out/p/runs.json");
    let plan = fs::read_to_string(&plan_path).unwrap();
    let victim = dir.path().join("victim");
    fs::create_dir_all(victim.join("keep")).unwrap();
    for forged in ["../../victim", "replaced", ".runner.lock"] {
        fs::write(&plan_path, plan.replacen("\"constant-seed1\"", &format!("\"{forged}\""), 1)).unwrap();
        for args in [&["run-one", "out/p", "--index", "0"][..], &["collect", "out/p"][..], &["report", "out/p"][..]] {
            let (code, err) = run_limited(args, dir.path(), Duration::from_secs(60));
            assert_eq!(code, Some(2), "{forged} {args:?}: {err}");
            assert!(err.contains("runs.json names the run") && err.contains("not written by runner"), "{err}");
        }
        assert!(victim.join("keep").is_dir(), "{forged}: outside the experiment was touched");
    }
}

#[test]
fn text_larger_than_the_limit_is_refused_plain_or_inflated() {
    // A sparse 300 MiB file, and a gzip of 300 MiB of spaces (a few hundred kilobytes):
    // refused with the limit, exit 2, where both used to be read whole (a gzip bomb
    // aborted with `memory allocation of N bytes failed`).
    let dir = TempDir::new().unwrap();
    let big = fs::File::create(dir.path().join("big.txt")).unwrap();
    big.set_len(300 << 20).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        fs::File::create(dir.path().join("bomb.txt.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..300 {
        gz.write_all(&spaces).unwrap();
    }
    gz.finish().unwrap();
    for (file, says) in
        [("big.txt", "big.txt is larger than the 256 MiB"), ("bomb.txt.gz", "bomb.txt.gz, inflated, is larger")]
    {
        let body = format!(
            "name = \"t\"\n[dataset]\nkind = \"text\"\npath = \"{file}\"\ncontext = 8\n[model]\nkind = \"transformer\"\n\
             layers = 1\nheads = 1\nd_model = 8\n[train]\nsteps = 2\n{CONSTANT}"
        );
        let (code, err) = run_file(dir.path(), "t", &body);
        assert_eq!(code, Some(2), "{file}: {err}");
        assert!(err.contains(says), "{file}: {err}");
    }
}

/// `runner collect DIR | true`, `runner report DIR | head -1`: stdout closed by its
/// reader. The exit code and the files written are what they are with a reader (collect
/// exited 0 over failed runs; report skipped its charts).
#[test]
fn a_closed_stdout_changes_neither_the_exit_code_nor_the_files() {
    let dir = TempDir::new().unwrap();
    let sweep =
        config(dir.path(), "sweep", &format!("[sweep]\nseeds = [1, 2]\n{CONSTANT}[train]\nepochs = 2\nthreads = 1\n"));
    let out = dir.path().join("out");
    let with = |args: &[&std::ffi::OsStr], stdout: std::process::Stdio| {
        std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(args)
            .stdout(stdout)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .code()
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let run = [os("run"), sweep.clone().into_os_string(), os("--out"), out.clone().into_os_string()];
    let run: Vec<&std::ffi::OsStr> = run.iter().map(|s| s.as_os_str()).collect();
    assert_eq!(with(&run, closed_pipe()), Some(0));
    let exp = out.join("sweep");
    assert!(exp.join("summary.csv").exists());
    // One run recorded as failed: collect exits 1, read or not.
    let summary = exp.join("constant-seed2/summary.json");
    let text = fs::read_to_string(&summary).unwrap();
    fs::write(&summary, text.replace("\"status\": \"completed\"", "\"status\": \"failed\"")).unwrap();
    let collect = [os("collect"), exp.clone().into_os_string()];
    let collect: Vec<&std::ffi::OsStr> = collect.iter().map(|s| s.as_os_str()).collect();
    assert_eq!(with(&collect, std::process::Stdio::null()), Some(1));
    assert_eq!(with(&collect, closed_pipe()), Some(1));
    // report writes its charts whether or not its table is read.
    let charts = |exp: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(exp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".png"))
            .collect();
        v.sort();
        v
    };
    let report = [os("report"), exp.clone().into_os_string()];
    let report: Vec<&std::ffi::OsStr> = report.iter().map(|s| s.as_os_str()).collect();
    assert_eq!(with(&report, std::process::Stdio::null()), Some(0));
    let drawn = charts(&exp);
    assert!(!drawn.is_empty());
    for c in &drawn {
        fs::remove_file(exp.join(c)).unwrap();
    }
    assert_eq!(with(&report, closed_pipe()), Some(0));
    assert_eq!(charts(&exp), drawn);
    // schedule's rows into a closed pipe: exit 0, as with a reader.
    // A local sweep with both streams closed: its runs and exit code as with readers.
    let swept = dir.path().join("swept");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("sweep")
        .arg(&sweep)
        .arg("--out")
        .arg(&swept)
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(swept.join("sweep/summary.csv").exists());
    let single = config(dir.path(), "single", &format!("{CONSTANT}[train]\nepochs = 2\n"));
    let schedule = [os("schedule"), single.into_os_string()];
    let schedule: Vec<&std::ffi::OsStr> = schedule.iter().map(|s| s.as_os_str()).collect();
    assert_eq!(with(&schedule, closed_pipe()), Some(0));
}

#[test]
fn an_output_place_that_cannot_hold_the_runs_is_named_before_anything_runs() {
    // A file where a run's directory goes said only "Not a directory (os error 20)"; a
    // dangling symbolic link as --out said "File exists". Each now names the path, exit 2.
    let dir = TempDir::new().unwrap();
    config(dir.path(), "e", &format!("name = \"e\"\n[train]\nepochs = 1\n{CONSTANT}"));
    fs::create_dir_all(dir.path().join("out/e")).unwrap();
    fs::write(dir.path().join("out/e/constant"), "").unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", dir.path().join("dangling")).unwrap();
    fs::write(dir.path().join("a-file"), "").unwrap();
    for (out, says) in [
        ("out", "out/e/constant is a file where the run's directory goes"),
        ("dangling", "--out dangling is a symbolic link to /nonexistent/target, which does not exist"),
        ("a-file", "a-file is a file where the output directory (--out) goes"),
    ] {
        let (code, err) = run_limited(&["run", "e.toml", "--out", out, "--quiet"], dir.path(), Duration::from_secs(60));
        assert_eq!(code, Some(2), "{out}: {err}");
        assert!(err.contains(says), "{out}: {err}");
    }
    assert!(!dir.path().join("out/e/runs.json").exists(), "nothing is written");
}

#[test]
fn long_grids_are_counted_before_they_are_checked() {
    // A grid of 1.5 million values was checked pairwise for repeats for minutes before the
    // run count refused it; the repeats of a long valid grid too, and the check of each
    // variant's schedule. Now: counted first, repeats found by hashing.
    let dir = TempDir::new().unwrap();
    let values = |n: usize| (0..n).map(|i| format!("{}", 0.001 + i as f64 * 1e-7)).collect::<Vec<_>>().join(", ");
    let body = |n: usize| {
        format!("name = \"g\"\n[train]\nepochs = 1\n{CONSTANT}[sweep]\n\"schedule.learning_rate\" = [{}]\n", values(n))
    };
    config(dir.path(), "huge", &body(1_500_000));
    let (code, err) = run_limited(&["run", "huge.toml", "--dry-run"], dir.path(), Duration::from_secs(60));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("lists 1500000 values, more than the 100000 runs one sweep may hold"), "{err}");
    let seeds = (0..1_500_000).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    config(dir.path(), "seeds", &format!("name = \"s\"\n{CONSTANT}[sweep]\nseeds = [{seeds}]\n"));
    let (code, err) = run_limited(&["run", "seeds.toml", "--dry-run"], dir.path(), Duration::from_secs(60));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("lists 1500000 seeds"), "{err}");
    // 30,000 variants: planned (a dry run) within the limit; a repeat among them is named.
    config(dir.path(), "long", &body(30_000));
    let (code, err) = run_limited(&["run", "long.toml", "--dry-run"], dir.path(), Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    let repeated = body(30_000).replacen("[0.001, ", "[0.001, 0.0010001, ", 1);
    config(dir.path(), "repeat", &repeated);
    let (code, err) = run_limited(&["run", "repeat.toml", "--dry-run"], dir.path(), Duration::from_secs(60));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("lists 0.0010001 twice"), "{err}");
}

#[test]
fn shards_and_whole_experiment_writers_exclude_each_other() {
    // `runner sweep A --shard 0/1` and `runner run B` with the same name into one --out
    // both ran, and runs.json ended up listing one of them. Now one lock discipline: a
    // writer of the whole experiment excludes shards and the other way round; shards of one
    // sweep share it; a shard of another sweep with the same name is refused.
    let dir = TempDir::new().unwrap();
    let long = "[train]\nepochs = 400\n";
    config(dir.path(), "a", &format!("name = \"same\"\n{CONSTANT}{long}[sweep]\nseeds = [1, 2]\n"));
    config(dir.path(), "b", &format!("name = \"same\"\n{CONSTANT}{long}"));
    config(dir.path(), "c", &format!("name = \"same\"\n{CONSTANT}{long}[sweep]\nseeds = [3, 4]\n"));
    let spawn = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let exp = dir.path().join("out/same");
    let wait_for = |file: &str| {
        let began = Instant::now();
        while !exp.join(file).exists() {
            assert!(began.elapsed() < Duration::from_secs(60), "{file} never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // A shard runs: the whole-experiment writer and a shard of another sweep are refused,
    // the other shard of the same sweep is not.
    let mut shard = spawn(&["sweep", "a.toml", "--shard", "0/2", "--out", "out", "--quiet"]);
    wait_for("runs.json");
    let (code, err) = run_limited(&["run", "b.toml", "--out", "out", "--quiet"], dir.path(), Duration::from_secs(60));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is being written by another runner") && err.contains("a shard of a sweep"), "{err}");
    let (code, err) = run_limited(
        &["sweep", "c.toml", "--shard", "1/2", "--out", "out", "--quiet"],
        dir.path(),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is being written by shards of another sweep named same"), "{err}");
    let mut other = spawn(&["sweep", "a.toml", "--shard", "1/2", "--out", "out", "--quiet"]);
    let began = Instant::now();
    while !exp.join(".runner.shard-1-of-2.lock").exists() && other.try_wait().unwrap().is_none() {
        assert!(began.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(other.try_wait().unwrap().is_none(), "the other shard of the same sweep was refused");
    for c in [&mut shard, &mut other] {
        let _ = c.kill();
        let _ = c.wait();
    }
    // The whole experiment being written: a shard is refused.
    let mut whole = spawn(&["run", "b.toml", "--out", "out", "--quiet", "--force"]);
    // The shards left the shared lock's file (empty) behind: wait for the holder's id in it.
    let began = Instant::now();
    while fs::read_to_string(exp.join(".runner.lock")).unwrap_or_default().trim().is_empty() {
        assert!(began.elapsed() < Duration::from_secs(60), "runner run never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, err) = run_limited(
        &["sweep", "a.toml", "--shard", "0/2", "--out", "out", "--quiet"],
        dir.path(),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is being written by another runner"), "{err}");
    let _ = whole.kill();
    let _ = whole.wait();
}

#[test]
fn a_warning_about_half_a_million_values_stays_short() {
    // A piecewise schedule with 500,000 boundaries past the run printed a 3.9 MB warning;
    // now five values and how many more.
    let dir = TempDir::new().unwrap();
    let n = 500_000;
    let boundaries: Vec<String> = (0..n).map(|i| (10_000 + i).to_string()).collect();
    let values: Vec<String> = (0..=n).map(|i| format!("{}", 0.1 / (1.0 + i as f64))).collect();
    config(
        dir.path(),
        "pw",
        &format!(
            "name = \"pw\"\n[train]\nepochs = 1\n[schedule]\nkind = \"piecewise_constant\"\nboundaries = [{}]\nvalues = [{}]\n",
            boundaries.join(", "),
            values.join(", ")
        ),
    );
    let (code, err) = run_limited(&["run", "pw.toml", "--dry-run"], dir.path(), Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", &err[..err.len().min(2000)]);
    assert!(
        err.contains("10000, 10001, 10002, 10003, 10004, ... and 499995 more (the last 509999)"),
        "{}",
        &err[..err.len().min(2000)]
    );
    assert!(err.len() < 10_000, "{} bytes of messages", err.len());
}

#[test]
fn a_run_counts_as_running_only_while_its_own_lock_is_held() {
    // Two runs that wrote metrics and no summary (killed, or still training); a live
    // process holds the lock of one of them. collect said both were running (any lock of
    // the experiment made every unfinished run "running"); now the other is incomplete.
    let dir = TempDir::new().unwrap();
    config(dir.path(), "s", &format!("name = \"s\"\n{CONSTANT}[train]\nepochs = 2\n[sweep]\nseeds = [1, 2]\n"));
    let (code, err) = run_limited(&["run", "s.toml", "--out", "out", "--quiet"], dir.path(), Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    let exp = dir.path().join("out/s");
    for run in ["constant-seed1", "constant-seed2"] {
        fs::remove_file(exp.join(run).join("summary.json")).unwrap();
    }
    let lock = fs::File::create(exp.join(".runner.run-constant-seed1.lock")).unwrap();
    lock.lock().unwrap();
    // (collect exits 1 over the incomplete run.)
    let (code, err) = run_limited(&["collect", "out/s"], dir.path(), Duration::from_secs(60));
    assert_eq!(code, Some(1), "{err}");
    let rows = common::csv_rows(&exp.join("summary.csv"));
    let mut status = common::column(&rows, "status");
    status.sort();
    assert_eq!(status, ["incomplete", "running"], "{err}");
    drop(lock);
}
