//! Checks that need an NVIDIA GPU and a runner built with `--features cuda`. CI has no GPU:
//! each test is `#[ignore]`d and named `gpu_...`, so `cargo test` lists them as ignored.
//! `scripts/gpu-check.sh build` builds them (here, no GPU needed) and `scripts/gpu-check.sh
//! run` runs them on a GPU machine; or there, with Rust: `cargo test --release --features
//! cuda --test gpu -- --ignored --test-threads=1`. `RUNNER_BIN` and `RUNNER_ROOT` point
//! at the binary and the repository when the tests run away from where they were built.
//! `RUNNER_GPU_TESTS_DEVICE=cpu` runs them with the CPU in the GPU's place: a check of the
//! checks themselves on a machine without a GPU (what they compare is then trivially equal).

use candle_core::{Device, Tensor};
use runner::model::{Kernels, Mode, ModelSpec, Network, ResnetSpec, Shortcut, TransformerSpec, cross_entropy};
use runner::optim::{Optimizer, OptimizerSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn runner_bin() -> String {
    std::env::var("RUNNER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_runner").to_string())
}

fn root() -> PathBuf {
    std::env::var_os("RUNNER_ROOT").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn runner(args: &[&str]) -> Output {
    Command::new(runner_bin()).args(args).current_dir(root()).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = runner(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "runner {args:?}: {err}");
    String::from_utf8_lossy(&o.stdout).into_owned() + &err
}

/// "cuda", or "cpu" with RUNNER_GPU_TESTS_DEVICE=cpu.
fn dev() -> &'static str {
    if std::env::var("RUNNER_GPU_TESTS_DEVICE").as_deref() == Ok("cpu") { "cpu" } else { "cuda" }
}

fn gpu() -> Device {
    if dev() == "cpu" {
        return Device::Cpu;
    }
    Device::new_cuda(0).expect("a CUDA device (this test needs an NVIDIA GPU and --features cuda)")
}

/// The losses of 20 SGD steps (momentum 0.9) of `net` on `batches`, forward, loss and
/// backward through candle's autograd, the update as tensor ops.
fn losses(net: &dyn Network, batches: &[(Tensor, Tensor)], lr: f64) -> Vec<f64> {
    let spec = OptimizerSpec::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 1e-4 };
    let mut opt = Optimizer::new(&spec, net.vars()).unwrap().with_decay_mask(net.decay_mask()).unwrap();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    batches
        .iter()
        .map(|(x, y)| {
            let loss = cross_entropy(&net.forward(x, Mode::Train(&mut rng)).unwrap(), y).unwrap();
            let value = loss.to_scalar::<f32>().unwrap() as f64;
            opt.step_ops(&loss.backward().unwrap(), lr).unwrap();
            value
        })
        .collect()
}

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

fn follows(what: &str, cpu: &[f64], gpu: &[f64]) {
    println!("{what}: cpu {cpu:?}\n{what}: gpu {gpu:?}");
    for (i, (a, b)) in cpu.iter().zip(gpu).enumerate() {
        let rel = (a - b).abs() / a.abs().max(1e-12);
        assert!(rel < 1e-4, "{what}: step {i}: cpu {a} gpu {b} (relative {rel:.2e})");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU and --features cuda"]
fn gpu_resnet20_and_transformer_follow_the_cpu() {
    let device = gpu();
    // ResNet-20, option A, batches of 32 random images.
    let spec = ModelSpec::Resnet(ResnetSpec { depth: 20, width: 1, shortcut: Shortcut::A, weight_decay_bn: false });
    let build =
        |d: &Device| runner::model::build(&spec, 3 * 32 * 32, 10, Some((3, 32, 32)), 7, Kernels::Plain, d).unwrap();
    let batches = |d: &Device| -> Vec<(Tensor, Tensor)> {
        (0..20u64)
            .map(|b| {
                let x = Tensor::from_vec(values(32 * 3072, b + 1, 2.0), (32, 3072), d).unwrap();
                let y = Tensor::from_vec((0..32u32).map(|i| (i * 7 + b as u32) % 10).collect::<Vec<_>>(), 32, d);
                (x, y.unwrap())
            })
            .collect()
    };
    let (on_cpu, on_gpu) = (build(&Device::Cpu), build(&device));
    follows("resnet20", &losses(&*on_cpu, &batches(&Device::Cpu), 0.05), &losses(&*on_gpu, &batches(&device), 0.05));

    // The Shakespeare transformer's shape (4 layers, 4 heads, 128 wide, windows of 64).
    let spec = ModelSpec::Transformer(TransformerSpec {
        layers: 4,
        heads: 4,
        d_model: 128,
        context: None,
        dropout: 0.0,
        bias: true,
        weight_decay_on: runner::model::transformer::DecayOn::Matrices,
    });
    let (context, vocab) = (64usize, 65usize);
    let build = |d: &Device| runner::model::build(&spec, context, vocab, None, 7, Kernels::Plain, d).unwrap();
    let batches = |d: &Device| -> Vec<(Tensor, Tensor)> {
        (0..20u64)
            .map(|b| {
                let tokens: Vec<u32> =
                    values(16 * (context + 1), b + 9, 1.0).iter().map(|v| ((v + 1.0) * 32.4) as u32 % 65).collect();
                let x: Vec<u32> = (0..16).flat_map(|r| tokens[r * 65..r * 65 + 64].to_vec()).collect();
                let y: Vec<u32> = (0..16).flat_map(|r| tokens[r * 65 + 1..r * 65 + 65].to_vec()).collect();
                (Tensor::from_vec(x, (16, context), d).unwrap(), Tensor::from_vec(y, 16 * context, d).unwrap())
            })
            .collect()
    };
    let (on_cpu, on_gpu) = (build(&Device::Cpu), build(&device));
    follows("transformer", &losses(&*on_cpu, &batches(&Device::Cpu), 0.1), &losses(&*on_gpu, &batches(&device), 0.1));
}

/// A sequential list that is no stack (batch norm, a residual block, average pooling,
/// layer norm, dropout 0 in these batches' place) trains on the GPU as on the CPU: plain
/// candle ops on both.
#[test]
#[ignore = "needs an NVIDIA GPU and --features cuda"]
fn gpu_sequential_layers_follow_the_cpu() {
    use runner::model::Activation;
    use runner::model::sequential::{LayerSpec, Padding, Place, SequentialSpec};
    let device = gpu();
    let at = Place::default;
    let conv = |activation| LayerSpec::Conv2d {
        filters: 16,
        kernel: 3,
        stride: 1,
        padding: Padding::Same,
        activation,
        at: at(),
    };
    let spec = ModelSpec::Sequential(SequentialSpec {
        layers: vec![
            conv(None),
            LayerSpec::BatchNorm { at: at() },
            LayerSpec::Activation { function: Activation::Relu, at: at() },
            LayerSpec::Residual {
                layers: vec![conv(Some(Activation::Relu)), conv(None), LayerSpec::BatchNorm { at: at() }],
                at: at(),
            },
            LayerSpec::AvgPool { size: 2, at: at() },
            LayerSpec::GlobalAvgPool { at: at() },
            LayerSpec::LayerNorm { at: at() },
            LayerSpec::Dense { units: None, inputs: None, activation: None, at: at() },
        ],
    });
    let build =
        |d: &Device| runner::model::build(&spec, 3 * 16 * 16, 10, Some((3, 16, 16)), 7, Kernels::Plain, d).unwrap();
    let batches = |d: &Device| -> Vec<(Tensor, Tensor)> {
        (0..20u64)
            .map(|b| {
                let x = Tensor::from_vec(values(32 * 768, b + 1, 2.0), (32, 768), d).unwrap();
                let y = Tensor::from_vec((0..32u32).map(|i| (i * 7 + b as u32) % 10).collect::<Vec<_>>(), 32, d);
                (x, y.unwrap())
            })
            .collect()
    };
    let (on_cpu, on_gpu) = (build(&Device::Cpu), build(&device));
    follows("sequential", &losses(&*on_cpu, &batches(&Device::Cpu), 0.05), &losses(&*on_gpu, &batches(&device), 0.05));
}

/// (metrics.csv without its seconds column, steps.csv) of the run directory `run`.
fn results(run: &Path) -> (String, String) {
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let header = metrics.lines().next().unwrap();
    let seconds = header.split(',').position(|c| c == "seconds").unwrap();
    let metrics = metrics
        .lines()
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != seconds).map(|(_, v)| v).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join("\n");
    (metrics, std::fs::read_to_string(run.join("steps.csv")).unwrap())
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

/// Starts `runner ARGS`, stops it with SIGINT once `checkpoints` holds a file, and checks
/// that it stopped (exit 130) rather than finished.
fn stop_after_first_checkpoint(args: &[&str], checkpoints: &Path) {
    let mut child = Command::new(runner_bin()).args(args).current_dir(root()).spawn().unwrap();
    let began = Instant::now();
    while std::fs::read_dir(checkpoints).map_or(true, |mut d| d.next().is_none())
        && began.elapsed() < Duration::from_secs(120)
        && child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "the run was not stopped (finished first? make it longer)");
}

#[test]
#[ignore = "needs an NVIDIA GPU and --features cuda"]
fn gpu_run_resumes_exactly_and_evaluates_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("exp.toml");
    let body = std::fs::read_to_string(root().join("configs/cosine.toml")).unwrap();
    std::fs::write(&cfg, body.replace("name = \"cosine\"", "name = \"exp\"")).unwrap();
    let cfg = cfg.to_str().unwrap();
    let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
    let set = ["--set", "train.epochs=60", "--set", "train.checkpoint_every=100", "--device", dev()];
    let mut args = vec!["run", cfg, "--out", whole.to_str().unwrap()];
    args.extend(set);
    ok(&args);
    let run = whole.join("exp/cosine_decay");
    let s = summary(&run);
    assert!(s["device"].as_str().unwrap().starts_with(if dev() == "cpu" { "cpu" } else { "cuda:0" }), "{s}");

    // Stopped by SIGINT after its first checkpoint, then resumed on the GPU.
    let mut args = vec!["run", cfg, "--out", cut.to_str().unwrap()];
    args.extend(set);
    stop_after_first_checkpoint(&args, &cut.join("exp/cosine_decay/checkpoints"));
    let said = ok(&args);
    assert!(said.contains("resuming from its checkpoint at step"), "{said}");
    assert_eq!(results(&run), results(&cut.join("exp/cosine_decay")), "the resumed GPU run differs");

    // Its weights on the CPU: the final metrics to float tolerance.
    let out = ok(&["eval", run.to_str().unwrap(), "--device", "cpu"]);
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    let fin = &s["final_metrics"];
    for key in ["val_loss", "val_accuracy"] {
        let (a, b) = (eval[key].as_f64().unwrap(), fin[key].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{key}: cpu {a} gpu {b}\n{out}");
    }

    // A GPU run stopped and resumed on the CPU completes there.
    let other = dir.path().join("other");
    let mut args = vec!["run", cfg, "--out", other.to_str().unwrap()];
    args.extend(set);
    stop_after_first_checkpoint(&args, &other.join("exp/cosine_decay/checkpoints"));
    let mut args = vec!["run", cfg, "--out", other.to_str().unwrap()];
    args.extend(["--set", "train.epochs=60", "--set", "train.checkpoint_every=100", "--device", "cpu"]);
    let said = ok(&args);
    assert!(said.contains("resuming from its checkpoint at step"), "{said}");
    let s = summary(&other.join("exp/cosine_decay"));
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["device"], "cpu", "{s}");
}

#[test]
#[ignore = "needs an NVIDIA GPU and --features cuda"]
fn gpu_ten_decay_sweep_ranks_as_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let (cpu, gpu) = (dir.path().join("cpu"), dir.path().join("gpu"));
    let cfg = root().join("configs/sweep_all_decays.toml");
    let cfg = cfg.to_str().unwrap();
    ok(&["sweep", cfg, "--quiet", "--out", cpu.to_str().unwrap()]);
    let placed: &[&str] = if dev() == "cpu" { &[] } else { &["--runs-per-gpu", "5"] };
    let mut args = vec!["sweep", cfg, "--quiet", "--out", gpu.to_str().unwrap(), "--device", dev()];
    args.extend(placed);
    ok(&args);
    let accuracy = |out: &Path| -> Vec<(String, f64)> {
        let exp = out.join("sweep_all_decays");
        let mut v: Vec<(String, f64)> = std::fs::read_dir(&exp)
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("summary.json").exists())
            .map(|e| {
                let s = summary(&e.path());
                (e.file_name().to_string_lossy().into_owned(), s["final_metrics"]["val_accuracy"].as_f64().unwrap())
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (a, b) = (accuracy(&cpu), accuracy(&gpu));
    assert_eq!(a.len(), 10);
    println!("cpu {a:?}\ngpu {b:?}");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 0.02, "{name}: cpu {x} gpu {y}");
    }
    // The same order, up to runs within the noise (0.02) of each other.
    for (i, (ni, xi)) in a.iter().enumerate() {
        for (j, (nj, xj)) in a.iter().enumerate() {
            if xi - xj > 0.02 {
                assert!(b[i].1 > b[j].1, "{ni} beats {nj} on the CPU ({xi} vs {xj}), not on the GPU");
            }
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU and --features cuda"]
fn gpu_errors_say_what_to_do() {
    let o = runner(&["run", "configs/cosine.toml", "--device", "cuda:99", "--out", "/nonexistent/never"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let expected = if dev() == "cpu" { "device = \"cuda" } else { "there is no GPU 99" };
    assert!(err.contains(expected), "{err}");
    assert!(!Path::new("/nonexistent/never").exists());
}
