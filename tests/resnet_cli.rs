//! The CIFAR ResNet through the real binary: the shipped CIFAR configs run as they are
//! (on small files in CIFAR's layout, put in place with --set), a ResNet trains and its
//! weights file holds the batch norms' running statistics, and its config errors.

mod common;

use common::{cifar10, config, runner};
use predicates::prelude::*;
use std::fs;
use tempfile::TempDir;

#[test]
fn the_cifar_configs_run_as_they_are_on_cifar_shaped_data() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("cifar");
    cifar10(&data, 8);
    let set_dir = format!("dataset.dir={}", data.display());
    for name in ["cifar10_resnet20", "cifar10_resnet20_cosine", "cifar10_resnet8_quick", "sweep_cifar_decays"] {
        let cfg = format!("configs/{name}.toml");
        assert!(fs::read_to_string(&cfg).unwrap().starts_with('#'), "{cfg} explains itself in comments");
        // Without the data: an error that says where to get it.
        runner()
            .args(["run", "--dry-run", &cfg])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("https://www.cs.toronto.edu/~kriz/cifar.html"));
        runner().args(["run", "--dry-run", &cfg, "--set", &set_dir]).assert().success();
    }
    // The quick preset trains (two steps of it here), and its model is a ResNet-8.
    let out = dir.path().join("out");
    runner()
        .args(["run", "-q", "configs/cifar10_resnet8_quick.toml", "--set", &set_dir])
        .args(["--set", "train.epochs=1", "--set", "train.batch_size=20", "--out"])
        .arg(&out)
        .assert()
        .success();
    let run = out.join("cifar10_resnet8_quick/cosine_decay");
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(summary["steps"], 2);
    // ResNet-8 on 10 classes: 75,290 trainable values (the reference implementation's count).
    assert_eq!(summary["parameters"], 75_290, "{summary}");
    assert!(summary["final_metrics"]["val_loss"].as_f64().unwrap().is_finite());
    // model.safetensors: 7 convolutions with batch norm (weight, scale, shift), the linear
    // layer's 2, then 7 x 2 running statistics, named as PyTorch's state_dict() names them.
    let weights = fs::read(run.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&weights).unwrap();
    assert_eq!(tensors.len(), 7 * 3 + 2 + 7 * 2);
    let mut names = tensors.names();
    names.sort();
    assert_eq!(names[..3], ["blocks.0.a.bn.bias", "blocks.0.a.bn.running_mean", "blocks.0.a.bn.running_var"]);
    // The linear layer's weight as PyTorch holds it: (out, in).
    assert_eq!(tensors.tensor("fc.weight").unwrap().shape(), &[10, 64]);
    assert_eq!(tensors.tensor("stem.conv.weight").unwrap().shape(), &[16, 3, 3, 3]);
    // The last batch norm's running variance: moved from 1 by training.
    let last = tensors.tensor("blocks.2.b.bn.running_var").unwrap();
    let values: Vec<f32> = last.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(values.len(), 64);
    assert!(values.iter().any(|v| (v - 1.0).abs() > 1e-3), "{values:?}");
    // `runner eval` of the weights reproduces the reported validation loss (running
    // statistics, eval mode).
    let eval = runner().arg("eval").arg(&run).output().unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let text = String::from_utf8_lossy(&eval.stdout);
    let evaluated: f64 =
        text.lines().find_map(|l| l.strip_prefix("val_loss")).map(|v| v.trim().parse().unwrap()).unwrap();
    let reported = summary["final_metrics"]["val_loss"].as_f64().unwrap();
    assert!((evaluated - reported).abs() <= 1e-5 * reported.abs().max(1.0), "{evaluated} vs {reported}");
}

#[test]
fn resnet_settings_are_checked_with_what_is_accepted() {
    let dir = TempDir::new().unwrap();
    let refused = |model: &str, said: &str| {
        let cfg = config(
            dir.path(),
            "r",
            &format!("[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[model]\nkind = \"resnet\"\n{model}"),
        );
        runner()
            .args(["run", "--dry-run"])
            .arg(&cfg)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(said.to_string()));
    };
    refused("depth = 21\n", "must be 6n + 2 for n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), found 21");
    refused("shortcut = \"C\"\n", "\"A\"");
    refused("width = 0\n", "width");
    // Digits are 8x8 images: a ResNet fits; data that are not images do not.
    let cfg = config(
        dir.path(),
        "moons",
        "[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[dataset]\nkind = \"moons\"\n[model]\nkind = \"resnet\"\n",
    );
    runner()
        .args(["run", "--dry-run"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("the resnet model needs image data"));
}
