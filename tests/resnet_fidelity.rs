//! ResNet-20 against PyTorch: runner builds a ResNet-20 (option A), computes on a fixed
//! batch the evaluation-mode logits, the training-mode logits, loss, every parameter's
//! gradient and the updated batch-norm statistics, then 50 SGD steps (momentum 0.9,
//! weight decay on convolution and linear weights only) on that batch; it writes all of it
//! with its initial weights, and `bench/resnet_fidelity.py` rebuilds the same network in
//! PyTorch from those weights, computes the same and compares. Runs where `python3` (or
//! `$PYTHON`) imports torch; elsewhere it says so and checks nothing. To look into a
//! disagreement: `FIDELITY_KEEP=DIR` keeps the files, `FIDELITY_STEPS=1` prints each
//! step's loss (runner, PyTorch float32, PyTorch float64).

mod common;

use candle_core::{Device, Tensor};
use common::fidelity::{check_with_pytorch, torch_python};
use runner::model::{Mode, ModelSpec, Network, ResnetSpec, Shortcut, cross_entropy};
use runner::optim::{Optimizer, OptimizerSpec};

fn build() -> Box<dyn Network> {
    let spec = ModelSpec::Resnet(ResnetSpec { depth: 20, width: 1, shortcut: Shortcut::A, weight_decay_bn: false });
    runner::model::build(
        &spec,
        3 * 32 * 32,
        10,
        Some((3, 32, 32)),
        7,
        runner::model::Kernels::Auto,
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

#[test]
fn resnet20_matches_pytorch_in_forward_gradients_and_50_sgd_steps() {
    let Some(python) = torch_python() else { return };
    let (n, lr, momentum, weight_decay, steps) = (8usize, 0.02, 0.9, 5e-4, 50);
    // A fixed batch: values in [-2, 2), labels 0..9.
    let mut state = 12345u64;
    let x: Vec<f32> = (0..n * 3072)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    let x = Tensor::from_vec(x, (n, 3072), &Device::Cpu).unwrap();
    let y = Tensor::from_vec((0..n as u32).map(|i| (i * 7) % 10).collect::<Vec<u32>>(), n, &Device::Cpu).unwrap();

    let model = build();
    let vars = model.vars();
    let mut out: Vec<(String, Tensor)> = Vec::new();
    for (i, v) in vars.iter().enumerate() {
        out.push((format!("init.{i}"), v.as_tensor().copy().unwrap()));
    }
    out.push(("x".into(), x.clone()));
    out.push(("y".into(), y.to_dtype(candle_core::DType::F32).unwrap()));
    // Evaluation mode at the start (running statistics 0 and 1).
    out.push(("eval_logits".into(), model.forward(&x, Mode::Eval).unwrap()));
    // Training mode: batch statistics, gradients, then the moved running statistics.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let logits = model.forward(&x, Mode::Train(&mut rng)).unwrap();
    let loss = cross_entropy(&logits, &y).unwrap();
    let grads = loss.backward().unwrap();
    out.push(("train_logits".into(), logits.detach()));
    out.push(("loss".into(), loss.detach().reshape(1).unwrap()));
    let parameters = model.parameter_count();
    let mut trainable = 0;
    for (i, v) in vars.iter().enumerate() {
        if let Some(g) = grads.get(v) {
            out.push((format!("grad.{i}"), g.clone()));
            trainable += 1;
        } else {
            out.push((format!("after.{i}"), v.as_tensor().copy().unwrap()));
        }
    }
    // 50 SGD steps on the batch from the same start, the loss before each.
    let model = build();
    let spec = OptimizerSpec::Sgd { momentum, dampening: 0.0, nesterov: false, weight_decay };
    let mut optimizer = Optimizer::new(&spec, model.vars()).unwrap().with_decay_mask(model.decay_mask()).unwrap();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let loss = cross_entropy(&model.forward(&x, Mode::Train(&mut rng)).unwrap(), &y).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        optimizer.step(&loss.backward().unwrap(), lr).unwrap();
    }
    out.push(("losses".into(), Tensor::new(losses.as_slice(), &Device::Cpu).unwrap()));
    let config = serde_json::json!({
        "depth": 20, "classes": 10, "parameters": parameters, "trainable_tensors": trainable,
        "lr": lr, "momentum": momentum, "weight_decay": weight_decay, "steps": steps,
    });
    check_with_pytorch(&python, "resnet_fidelity.py", &out, config);
}
