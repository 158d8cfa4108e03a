//! CIFAR data through the real binary: small files written in exactly the binary layout
//! (label byte(s) + 3x32x32 channel-major pixels), read as they are, gzipped, unpacked or
//! straight from the archive; their errors (missing files, a size that is not a whole
//! number of records, labels out of range); and train-time augmentation (reproducible
//! from the seed, different for another seed, never applied to evaluation).

mod common;

use common::{cifar10, config, records, runner};
use predicates::prelude::*;
use std::fs;
use std::io::Write;
use std::path::Path;
use tempfile::TempDir;

fn body(kind: &str, dir: &Path, extra: &str) -> String {
    format!(
        "name = \"c\"\n[dataset]\nkind = \"{kind}\"\ndir = \"{}\"\n{extra}\n[model]\nhidden = [32]\n\
         [schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.05\n[train]\nepochs = 2\nbatch_size = 10\nlog_every = 1\n",
        dir.display()
    )
}

fn run_ok(cfg: &Path, out: &Path) -> String {
    let o = runner().args(["run", "-q"]).arg(cfg).arg("--out").arg(out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn cifar10_trains_from_its_six_files_and_validates_on_the_test_batch() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    cifar10(&data, 20);
    let cfg = config(dir.path(), "c", &body("cifar10", &data, ""));
    run_ok(&cfg, &dir.path().join("out"));
    let run = dir.path().join("out/c/cosine_decay");
    // 100 training images in batches of 10, two epochs; 20 test images.
    let steps = fs::read_to_string(run.join("steps.csv")).unwrap();
    assert_eq!(steps.lines().count(), 1 + 20);
    let s = summary(&run);
    assert_eq!(s["final_metrics"]["epoch"], 2);
    let acc = s["final_metrics"]["val_accuracy"].as_f64().unwrap();
    // Accuracy on 20 images is a multiple of 1/20.
    assert!(((acc * 20.0).round() - acc * 20.0).abs() < 1e-9, "{acc}");
    // The resolved config says what was read, and reads back.
    let resolved = fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("kind = \"cifar10\"") && resolved.contains("scale = \"channels\""), "{resolved}");
    assert!(resolved.contains("test_as_validation = true"), "{resolved}");
    runner().args(["run", "--dry-run"]).arg(run.join("config.toml")).assert().success();
}

#[test]
fn gzipped_unpacked_and_archived_files_give_the_same_run() {
    let dir = TempDir::new().unwrap();
    let plain = dir.path().join("plain");
    cifar10(&plain, 10);
    let names: Vec<String> =
        (1..=5).map(|k| format!("data_batch_{k}.bin")).chain(["test_batch.bin".to_string()]).collect();
    // Gzipped, in the folder the archive unpacks to.
    let unpacked = dir.path().join("gz/cifar-10-batches-bin");
    fs::create_dir_all(&unpacked).unwrap();
    for name in &names {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&fs::read(plain.join(name)).unwrap()).unwrap();
        fs::write(unpacked.join(format!("{name}.gz")), gz.finish().unwrap()).unwrap();
    }
    // The archive as downloaded.
    let archived = dir.path().join("tar");
    fs::create_dir_all(&archived).unwrap();
    let gz = flate2::write::GzEncoder::new(
        fs::File::create(archived.join("cifar-10-binary.tar.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for name in names.iter().chain(["batches.meta.txt".to_string()].iter()) {
        let bytes = if name.ends_with(".txt") { b"airplane\n".to_vec() } else { fs::read(plain.join(name)).unwrap() };
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("cifar-10-batches-bin/{name}"), bytes.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();

    let mut results = Vec::new();
    for (what, data) in [("plain", plain), ("gz", dir.path().join("gz")), ("tar", archived)] {
        let cfg = config(
            dir.path(),
            what,
            &body("cifar10", &data, "").replace("name = \"c\"", &format!("name = \"{what}\"")),
        );
        run_ok(&cfg, &dir.path().join("out"));
        results.push(fs::read_to_string(dir.path().join(format!("out/{what}/cosine_decay/steps.csv"))).unwrap());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

#[test]
fn cifar100_reads_fine_or_coarse_labels() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("train.bin"), records(200, 0, true)).unwrap();
    fs::write(data.join("test.bin"), records(100, 200, true)).unwrap();
    for (label, classes) in [("fine", 100), ("coarse", 20)] {
        let cfg = config(
            dir.path(),
            label,
            &body("cifar100", &data, &format!("label = \"{label}\""))
                .replace("name = \"c\"", &format!("name = \"{label}\"")),
        );
        run_ok(&cfg, &dir.path().join("out"));
        // The model has one output per class: the output layer's bias has that many values.
        let weights = fs::read(dir.path().join(format!("out/{label}/cosine_decay/model.safetensors"))).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&weights).unwrap();
        let last = tensors.names().into_iter().filter(|n| n.ends_with(".bias")).max().unwrap();
        assert_eq!(tensors.tensor(last).unwrap().shape(), &[classes], "{label}");
    }
}

#[test]
fn bad_cifar_files_are_refused_with_what_is_wrong() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    cifar10(&data, 3);
    let cfg = config(dir.path(), "c", &body("cifar10", &data, ""));
    let refused = |what: &str| {
        runner()
            .args(["run", "--dry-run"])
            .arg(&cfg)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(what.to_string()))
    };
    // A file cut short.
    let mut bytes = fs::read(data.join("data_batch_2.bin")).unwrap();
    bytes.truncate(bytes.len() - 100);
    fs::write(data.join("data_batch_2.bin"), &bytes).unwrap();
    refused(
        "data_batch_2.bin: 9119 bytes is not a whole number of CIFAR-10 records (3073 bytes each: 1 label byte and 3x32x32 pixels); 2 whole records and 2973 bytes over",
    );
    // A label CIFAR-10 does not have (a CIFAR-100 file, say).
    fs::write(data.join("data_batch_2.bin"), records(3, 0, true)).unwrap();
    refused(
        "data_batch_2.bin: 9222 bytes is not a whole number of CIFAR-10 records (3073 bytes each: 1 label byte and 3x32x32 pixels); 3 whole records and 3 bytes over",
    );
    let mut bytes = records(3, 0, false);
    bytes[3073] = 12;
    fs::write(data.join("data_batch_2.bin"), &bytes).unwrap();
    refused(
        "data_batch_2.bin: record 1 (byte 3073) has label 12; CIFAR-10 labels are 0 to 9: is this a CIFAR-10 file?",
    );
    // A missing file: what was looked for, and where the data come from.
    fs::remove_file(data.join("data_batch_2.bin")).unwrap();
    refused("no data_batch_2.bin (looked for each as it is, gzipped as .gz, and in cifar-10-batches-bin/), and no cifar-10-binary.tar.gz")
        .stderr(predicate::str::contains("https://www.cs.toronto.edu/~kriz/cifar.html"));
    // Keys that do not belong.
    let cfg = config(dir.path(), "label", &body("cifar10", &data, "label = \"coarse\""));
    runner().args(["run", "--dry-run"]).arg(&cfg).assert().code(2).stderr(predicate::str::contains("label"));
    // Augmentation where it does not apply.
    for (kind, augment, said) in [
        ("digits", "flip = true", "use crop_padding alone"),
        ("moons", "crop_padding = 2", "the moons data set's samples are not images"),
    ] {
        let text = body(kind, &data, "")
            .replace(&format!("dir = \"{}\"\n", data.display()), &format!("[dataset.augment]\n{augment}\n"));
        let cfg = config(dir.path(), kind, &text);
        runner().args(["run", "--dry-run"]).arg(&cfg).assert().code(2).stderr(predicate::str::contains(said));
    }
}

#[test]
fn augmentation_is_reproducible_from_the_seed_and_never_touches_evaluation() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    cifar10(&data, 20);
    let augment = "[dataset.augment]\ncrop_padding = 4\nflip = true\n";
    let steps = |name: &str, extra: &str, seed: u64| {
        let text = body("cifar10", &data, extra)
            .replace("name = \"c\"", &format!("name = \"{name}\""))
            .replace("log_every = 1\n", &format!("log_every = 1\nseed = {seed}\n"));
        let cfg = config(dir.path(), name, &text);
        run_ok(&cfg, &dir.path().join("out"));
        fs::read_to_string(dir.path().join(format!("out/{name}/cosine_decay/steps.csv"))).unwrap()
    };
    let a = steps("a", augment, 1);
    assert_eq!(a, steps("a_again", augment, 1), "the same seed draws the same crops");
    assert_ne!(a, steps("plain", "", 1), "augmentation changes the batches");
    // Evaluation sees the test images as they are: `runner eval` of the augmented run's
    // weights reproduces its reported validation metrics.
    let run = dir.path().join("out/a/cosine_decay");
    let reported = summary(&run)["final_metrics"]["val_loss"].as_f64().unwrap();
    let eval = runner().arg("eval").arg(&run).output().unwrap();
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let evaluated: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("val_loss"))
        .map(|v| v.trim().parse().unwrap())
        .expect("eval prints val_loss");
    assert!((evaluated - reported).abs() <= 1e-6 * reported.abs().max(1.0), "eval {evaluated} vs reported {reported}");
}

/// scripts/cifar-sample.py writes files of CIFAR's binary format that runner trains on (to
/// try the CIFAR configs without the download), and refuses to overwrite files.
#[test]
fn the_sample_script_writes_files_runner_reads() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("cifar");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cifar-sample.py");
    let write = |extra: &[&str]| {
        std::process::Command::new("python3")
            .arg(script)
            .arg(&data)
            .args(["--images", "52", "--test-images", "9"])
            .args(extra)
            .output()
            .expect("python3 runs (this machine kind has Python 3.11)")
    };
    let o = write(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sizes: Vec<u64> = ["data_batch_1.bin", "data_batch_5.bin", "test_batch.bin"]
        .iter()
        .map(|f| fs::metadata(data.join(f)).unwrap().len())
        .collect();
    assert_eq!(sizes, vec![11 * 3073, 10 * 3073, 9 * 3073]);
    let test = fs::read(data.join("test_batch.bin")).unwrap();
    assert!(test.chunks(3073).all(|r| r[0] < 10), "labels of CIFAR-10 are below 10");
    assert!(fs::read_to_string(data.join("SAMPLE.txt")).unwrap().contains("not CIFAR"));
    // Files there are kept.
    let again = write(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds data_batch_1.bin"));
    let cfg = config(dir.path(), "c", &body("cifar10", &data, ""));
    run_ok(&cfg, &dir.path().join("out"));
    let s = summary(&dir.path().join("out/c/cosine_decay"));
    assert_eq!(s["status"], "completed", "{s}");
}
