//! Parameters by name, and the plain candle path, through the real binary: weights and
//! checkpoints are keyed by PyTorch's `state_dict()` names (and load into the PyTorch
//! reference models where torch is installed); a checkpoint and weights written before
//! names (format 1, `param.I`) still resume and evaluate, to the same results; every
//! model kind trains with `train.kernels = "plain"`.

mod common;

use candle_core::{Device, Tensor};
use common::fidelity::{check_with_pytorch, torch_python};
use common::{config, copy_dir, fixture, runner};
use runner::model::transformer::DecayOn;
use runner::model::{Kernels, Mode, ModelSpec, ResnetSpec, Shortcut, TransformerSpec};
use std::fs;
use std::path::Path;
use tempfile::TempDir;

/// metrics.csv without its clock column.
fn metrics(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    text.lines().map(|l| l.rsplit_once(',').unwrap().0).collect::<Vec<_>>().join("\n")
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_checkpoint_written_before_parameters_had_names_resumes_to_the_uninterrupted_results() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    copy_dir(&fixture().join("old"), &out.join("old"));
    let cfg = dir.path().join("old.toml");
    fs::copy(fixture().join("old.toml"), &cfg).unwrap();
    let run = out.join("old/mlp");
    let before: serde_json::Value = summary(&run);
    assert_eq!(before["status"], "interrupted");
    let o = runner().arg("run").arg(&cfg).arg("--out").arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming from its checkpoint at step 47665"), "{err}");
    // The same rows as the old runner's uninterrupted run.
    let expected = fixture().join("expected");
    assert_eq!(metrics(&run.join("metrics.csv")), metrics(&expected.join("metrics.csv")));
    assert_eq!(
        fs::read_to_string(run.join("steps.csv")).unwrap(),
        fs::read_to_string(expected.join("steps.csv")).unwrap()
    );
    let (now, then) = (summary(&run), summary(&expected));
    assert_eq!(now["final_metrics"]["val_loss"], then["final_metrics"]["val_loss"]);
    // Its weights are now written by name, the matrices (out, in) as PyTorch holds them.
    let bytes = fs::read(run.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = tensors.names();
    names.sort();
    assert_eq!(names, ["dense.0.bias", "dense.0.weight", "dense.1.bias", "dense.1.weight"]);
    assert_eq!(tensors.tensor("dense.0.weight").unwrap().shape(), &[16, 64]);
    assert_eq!(tensors.tensor("dense.1.weight").unwrap().shape(), &[10, 16]);
    // The old weights (param.0, ...) are the same values, transposed where PyTorch's layout
    // differs.
    let old = fs::read(expected.join("model.safetensors")).unwrap();
    let old = safetensors::SafeTensors::deserialize(&old).unwrap();
    let floats = |t: safetensors::tensor::TensorView<'_>| -> Vec<f32> {
        t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    };
    assert_eq!(floats(old.tensor("param.1").unwrap()), floats(tensors.tensor("dense.0.bias").unwrap()));
    let (w_old, w_new) = (floats(old.tensor("param.0").unwrap()), floats(tensors.tensor("dense.0.weight").unwrap()));
    assert_eq!(old.tensor("param.0").unwrap().shape(), &[64, 16]);
    for i in 0..64 {
        for o in 0..16 {
            assert_eq!(w_old[i * 16 + o], w_new[o * 64 + i]);
        }
    }
}

#[test]
fn weights_written_before_parameters_had_names_still_evaluate() {
    let dir = TempDir::new().unwrap();
    let run = dir.path().join("mlp");
    fs::create_dir_all(&run).unwrap();
    fs::copy(fixture().join("old/mlp/config.toml"), run.join("config.toml")).unwrap();
    fs::copy(fixture().join("expected/model.safetensors"), run.join("model.safetensors")).unwrap();
    let o = runner().arg("eval").arg(&run).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    let then = summary(&fixture().join("expected"));
    assert_eq!(said["val_loss"], then["final_metrics"]["val_loss"], "{said}");
    // Weights of another model are refused with what is missing.
    let other =
        config(dir.path(), "other", "[model]\nhidden = [8]\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n");
    let o = runner().args(["run", "-q"]).arg(&other).arg("--out").arg(dir.path().join("o")).output().unwrap();
    assert!(o.status.success());
    fs::copy(dir.path().join("o/other/constant/model.safetensors"), run.join("model.safetensors")).unwrap();
    let o = runner().arg("eval").arg(&run).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("dense.0.weight has shape [8, 64], the model built for digits has [16, 64]"), "{err}");
}

#[test]
fn every_model_kind_trains_on_plain_candle_ops_close_to_its_fast_path() {
    let dir = TempDir::new().unwrap();
    let run = |name: &str, body: &str, kernels: &str| -> serde_json::Value {
        let cfg = config(dir.path(), name, body);
        let out = dir.path().join(format!("out-{kernels}"));
        let o = runner()
            .args(["run", "-q"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out)
            .arg(format!("train.kernels={kernels}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{name} {kernels}: {}", String::from_utf8_lossy(&o.stderr));
        let run_dir = fs::read_dir(out.join(name)).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
        let resolved = fs::read_to_string(run_dir.join("config.toml")).unwrap();
        assert_eq!(resolved.contains("kernels = \"plain\""), kernels == "plain", "{resolved}");
        summary(&run_dir)
    };
    let schedule = "[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.05\ndecay_steps = \"run\"\n";
    let cases = [
        ("mlp", format!("[model]\nhidden = [32]\n{schedule}[train]\nsteps = 20\nbatch_size = 16\n")),
        (
            "cnn",
            format!(
                "[model]\nkind = \"cnn\"\nchannels = [4]\nhidden = [16]\n{schedule}[train]\nsteps = 20\nbatch_size = 16\nthreads = 2\n"
            ),
        ),
        (
            "gpt",
            format!(
                "[dataset]\nkind = \"text\"\ncontext = 16\n[model]\nkind = \"transformer\"\nlayers = 1\nheads = 2\nd_model = 16\n\
                 [optimizer]\nkind = \"adamw\"\n{schedule}[train]\nsteps = 20\nbatch_size = 8\neval_batches = 2\n"
            ),
        ),
    ];
    for (name, body) in &cases {
        let (fast, plain) = (run(name, body, "auto"), run(name, body, "plain"));
        for key in ["train_loss", "val_loss"] {
            let (a, b) = (fast["final_metrics"][key].as_f64().unwrap(), plain["final_metrics"][key].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-4 * b.abs(), "{name} {key}: {a} fast, {b} plain");
        }
    }
    // A word that is no choice is refused with the choices.
    let cfg = config(dir.path(), "bad", &format!("{schedule}[train]\nkernels = \"fast\"\n"));
    let o = runner().args(["run", "-q"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("kernels") && err.contains("auto") && err.contains("plain"), "{err}");
}

/// Runner's evaluation logits of `net` on `x`.
fn logits(net: &dyn runner::model::Network, x: &Tensor) -> Tensor {
    net.forward(x, Mode::Eval).unwrap()
}

#[test]
fn model_safetensors_load_into_the_pytorch_reference_models() {
    let Some(python) = torch_python() else { return };
    let dir = TempDir::new().unwrap();
    let mut tensors = Vec::new();
    let mut cases = Vec::new();
    // ResNet-20 (option A) on CIFAR-shaped images, a little trained so batch norm's
    // running statistics are not the initial ones.
    let spec = ModelSpec::Resnet(ResnetSpec { depth: 20, width: 1, shortcut: Shortcut::A, weight_decay_bn: false });
    let net =
        runner::model::build(&spec, 3 * 32 * 32, 10, Some((3, 32, 32)), 3, Kernels::Auto, &candle_core::Device::Cpu)
            .unwrap();
    let x: Vec<f32> = (0..4 * 3 * 32 * 32).map(|i| ((i * 7919 + 13) % 10_007) as f32 / 5003.5 - 1.0).collect();
    let x = Tensor::from_vec(x, (4, 3 * 32 * 32), &Device::Cpu).unwrap();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    net.forward(&x, Mode::Train(&mut rng)).unwrap();
    let file = dir.path().join("resnet.safetensors");
    runner::store::checkpoints::write_model(dir.path(), "resnet", &runner::model::network::state_dict(&*net).unwrap())
        .unwrap();
    tensors.push(("resnet.x".to_string(), x.clone()));
    tensors.push(("resnet.logits".to_string(), logits(&*net, &x)));
    cases.push(serde_json::json!({"name": "resnet", "kind": "resnet", "depth": 20, "classes": 10, "file": file}));
    // The transformer of the fidelity check.
    let shape = (2, 4, 32, 16, 23);
    let spec = ModelSpec::Transformer(TransformerSpec {
        layers: shape.0,
        heads: shape.1,
        d_model: shape.2,
        context: None,
        dropout: 0.0,
        bias: true,
        weight_decay_on: DecayOn::Matrices,
    });
    let net = runner::model::build(&spec, shape.3, shape.4, None, 5, Kernels::Auto, &candle_core::Device::Cpu).unwrap();
    let tokens: Vec<u32> = (0..3 * 16).map(|i| (i * 7 + 3) % 23).collect();
    let x = Tensor::from_vec(tokens, (3, 16), &Device::Cpu).unwrap();
    let file = dir.path().join("gpt.safetensors");
    runner::store::checkpoints::write_model(dir.path(), "gpt", &runner::model::network::state_dict(&*net).unwrap())
        .unwrap();
    tensors.push(("gpt.x".to_string(), x.to_dtype(candle_core::DType::F32).unwrap()));
    tensors.push(("gpt.logits".to_string(), logits(&*net, &x)));
    cases.push(serde_json::json!({
        "name": "gpt", "kind": "gpt", "layers": shape.0, "heads": shape.1, "d_model": shape.2,
        "context": shape.3, "vocab": shape.4, "bias": true, "file": file,
    }));
    check_with_pytorch(&python, "load_state_dict.py", &tensors, serde_json::json!({ "cases": cases }));
}
