//! `[model] kind = "sequential"` through the real binary: lists written to equal the cnn
//! and mlp defaults train to the built-in kinds' very files from the same seed; any other
//! list (batch norm, a residual block, pooling, layer norm, dropout) trains on candle's
//! autograd with PyTorch's parameter names; shapes that do not fit name the layer's place
//! in the file and the shapes on both sides; `--dry-run` prints the layer table.

mod common;

use common::{config, results_without_clock, runner};
use std::fs;
use std::path::Path;
use tempfile::TempDir;

const SCHEDULE: &str = "[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.05\ndecay_steps = \"run\"\n";

/// `layers` as `[[model.layers]]` tables.
fn sequential(layers: &[&str]) -> String {
    let mut text = String::from("[model]\nkind = \"sequential\"\n");
    for l in layers {
        text.push_str(&format!("[[model.layers]]\n{}\n", l.replace("; ", "\n")));
    }
    text
}

/// The cnn kind's defaults as a list: two "same" 3x3 convolutions of 16 and 32 filters,
/// each with a ReLU and a 2x2 max-pool, a flatten, a dense layer of 64 with a ReLU.
fn cnn_as_list() -> String {
    sequential(&[
        "type = \"conv2d\"; filters = 16; activation = \"relu\"",
        "type = \"max_pool\"",
        "type = \"conv2d\"; filters = 32; kernel = 3; padding = \"same\"",
        "type = \"relu\"",
        "type = \"max_pool\"; size = 2",
        "type = \"flatten\"",
        "type = \"dense\"; units = 64; activation = \"relu\"",
        "type = \"dense\"",
    ])
}

fn run_both(dir: &Path, builtin: &str, list: &str, train: &str) {
    for (name, model) in [("builtin", builtin), ("list", list)] {
        let cfg = config(dir, name, &format!("name = \"{name}\"\nrun = \"r\"\n{model}{SCHEDULE}{train}"));
        runner().arg("run").arg(&cfg).args(["--quiet", "--out"]).arg(dir.join("out")).assert().success();
    }
    assert_eq!(results_without_clock(&dir.join("out/builtin")), results_without_clock(&dir.join("out/list")), "{list}");
}

#[test]
fn lists_equal_to_the_cnn_and_mlp_defaults_train_to_the_built_in_kinds_files() {
    for threads in [1, 2] {
        let dir = TempDir::new().unwrap();
        let train = format!("[train]\nepochs = 3\nthreads = {threads}\n");
        run_both(dir.path(), "[model]\nkind = \"cnn\"\n", &cnn_as_list(), &train);
        let dir = TempDir::new().unwrap();
        let mlp = sequential(&[
            "type = \"dense\"; units = 128; activation = \"relu\"",
            "type = \"dense\"; units = 64",
            "type = \"relu\"",
            "type = \"dense\"",
        ]);
        run_both(dir.path(), "[model]\nkind = \"mlp\"\n", &mlp, &train);
    }
    // With dropout after each hidden layer (the mlp kind's `dropout`).
    let dir = TempDir::new().unwrap();
    let mlp = sequential(&[
        "type = \"dense\"; units = 32; activation = \"tanh\"",
        "type = \"dropout\"; rate = 0.2",
        "type = \"dense\"",
    ]);
    run_both(
        dir.path(),
        "[model]\nkind = \"mlp\"\nhidden = [32]\nactivation = \"tanh\"\ndropout = 0.2\n",
        &mlp,
        "[train]\nepochs = 2\n",
    );
}

#[test]
fn any_other_list_trains_with_pytorch_names_and_prints_its_layers() {
    let dir = TempDir::new().unwrap();
    let model = sequential(&[
        "type = \"conv2d\"; filters = 8",
        "type = \"batch_norm\"",
        "type = \"relu\"",
        "type = \"residual\"; layers = [{ type = \"conv2d\", filters = 8, activation = \"relu\" }, { type = \"conv2d\", filters = 8 }, { type = \"batch_norm\" }]",
        "type = \"avg_pool\"",
        "type = \"global_avg_pool\"",
        "type = \"dropout\"; rate = 0.1",
        "type = \"layer_norm\"",
        "type = \"dense\"",
    ]);
    let cfg = config(dir.path(), "net", &format!("name = \"net\"\n{model}{SCHEDULE}[train]\nepochs = 4\n"));
    let dry = runner().arg("run").arg(&cfg).arg("--dry-run").output().unwrap();
    let listing = String::from_utf8(dry.stdout).unwrap();
    // 80 + 16 + 584 + 584 + 16 + 16 + 90.
    assert!(listing.contains("cosine_decay (sequential, 1386 parameters, on digits):"), "{listing}");
    for row in [
        "0      conv2d            8x8x8          80",
        "  3.1  conv2d            8x8x8         584",
        "4      avg_pool          8x4x4",
        "8      dense                10          90",
    ] {
        assert!(listing.contains(row), "{row:?} in\n{listing}");
    }
    // The Slurm dry run shows the same table.
    let dry = runner().args(["sweep", "--backend", "slurm", "--dry-run"]).arg(&cfg).output().unwrap();
    let slurm = String::from_utf8(dry.stdout).unwrap();
    assert!(
        slurm.contains("cosine_decay (sequential, 1386 parameters, on digits):") && slurm.contains("  3.1  conv2d"),
        "{slurm}"
    );
    runner().arg("run").arg(&cfg).args(["--quiet", "--out"]).arg(dir.path().join("out")).assert().success();
    let run = dir.path().join("out/net/cosine_decay");
    let s: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert!(s["final_metrics"]["val_accuracy"].as_f64().unwrap() > 0.5, "{s}");
    let bytes = fs::read(run.join("model.safetensors")).unwrap();
    let names: Vec<String> =
        safetensors::SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(String::from).collect();
    for name in ["layers.1.running_var", "layers.3.layers.0.weight", "layers.3.layers.2.running_mean", "layers.8.bias"]
    {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    // The resolved config reads back as the same network.
    runner().arg("run").arg(run.join("config.toml")).args(["--quiet", "--dry-run"]).assert().success();
}

#[test]
fn layers_that_do_not_fit_name_their_place_and_both_shapes() {
    let dir = TempDir::new().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "type = \"conv2d\"; filters = 32",
                "type = \"max_pool\"",
                "type = \"flatten\"",
                "type = \"dense\"; inputs = 2048; units = 64",
                "type = \"dense\"",
            ],
            "layer 3 (dense, NET:11:1) expects 2048 inputs, gets 512 from layer 2 (flatten) of a 32x4x4 volume",
        ),
        (
            &["type = \"conv2d\"; filters = 4", "type = \"dense\""],
            "layer 1 (dense, NET:7:1) reads features, and gets a 4x8x8 volume from layer 0 (conv2d): put a flatten",
        ),
        (
            &["type = \"flatten\"", "type = \"relu\""],
            "the last layer (relu, NET:6:1) is no dense layer; a sequential network ends with a dense layer to the data's 10 outputs",
        ),
        (
            &["type = \"dense\"; units = 12"],
            "the last layer (dense, NET:4:1) has 12 units, and the data have 10 outputs",
        ),
        (
            &["type = \"flatten\"", "type = \"conv2d\"; filters = 4", "type = \"dense\""],
            "layer 1 (conv2d, NET:6:1) convolves a volume (channels x height x width), and gets 64 features",
        ),
        (
            &[
                "type = \"residual\"; layers = [{ type = \"conv2d\", filters = 4 }]",
                "type = \"flatten\"",
                "type = \"dense\"",
            ],
            "layer 0 (residual, NET:4:1) ends in a 4x8x8 volume, and its input is a 1x8x8 volume",
        ),
        (
            &[
                "type = \"conv2d\"; filters = 4; kernel = 11; padding = \"valid\"",
                "type = \"flatten\"",
                "type = \"dense\"",
            ],
            "has a 11x11 kernel, larger than the 8x8",
        ),
    ];
    for (layers, expected) in cases {
        let cfg = config(dir.path(), "net", &format!("name = \"net\"\n{}{SCHEDULE}", sequential(layers)));
        let o = runner().arg("run").arg(&cfg).arg("--quiet").arg("--out").arg(dir.path().join("out")).output().unwrap();
        let stderr = String::from_utf8(o.stderr).unwrap();
        let expected = expected.replace("NET", &cfg.display().to_string());
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&expected), "expected {expected:?} in {stderr}");
        assert!(!dir.path().join("out").exists());
    }
    // A layer type that does not exist, where it is written.
    let cfg = config(dir.path(), "net", &format!("name = \"net\"\n{}{SCHEDULE}", sequential(&["type = \"dens\""])));
    let o = runner().arg("run").arg(&cfg).output().unwrap();
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(stderr.contains(":5:8: `model.layers[0].type`") && stderr.contains("did you mean \"dense\""), "{stderr}");
}
