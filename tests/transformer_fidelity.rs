//! The transformer language model against PyTorch: runner builds a two-layer GPT, computes
//! on a batch of token windows the logits, the loss and every parameter's gradient, then
//! 50 AdamW steps (betas, eps, decoupled weight decay on the linear layers' matrices only)
//! on 50 different batches; it writes all of it with its initial weights, and
//! `bench/transformer_fidelity.py` rebuilds the same model in PyTorch from those weights,
//! computes the same and compares (see tests/common/fidelity.rs for when it runs and how
//! to look into a disagreement).

mod common;

use candle_core::{Device, Tensor};
use common::fidelity::{check_with_pytorch, torch_python};
use runner::model::transformer::DecayOn;
use runner::model::{Mode, ModelSpec, Network, TransformerSpec, cross_entropy};
use runner::optim::{Optimizer, OptimizerSpec};

const VOCAB: usize = 23;
const CONTEXT: usize = 16;
const BATCH: usize = 6;

fn build() -> Box<dyn Network> {
    let spec = ModelSpec::Transformer(TransformerSpec {
        layers: 2,
        heads: 4,
        d_model: 32,
        context: None,
        dropout: 0.0,
        bias: true,
        weight_decay_on: DecayOn::Matrices,
    });
    runner::model::build(&spec, CONTEXT, VOCAB, None, 7, runner::model::Kernels::Auto, &candle_core::Device::Cpu)
        .unwrap()
}

/// A batch of windows of a token stream with structure (so training lowers the loss):
/// (BATCH, CONTEXT) inputs and the next tokens, flattened.
fn batch(k: u64) -> (Tensor, Tensor) {
    let (x, y) = common::token_windows(BATCH, CONTEXT, VOCAB as u32, 12345 + k);
    (
        Tensor::from_vec(x, (BATCH, CONTEXT), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, BATCH * CONTEXT, &Device::Cpu).unwrap(),
    )
}

#[test]
fn transformer_matches_pytorch_in_logits_gradients_and_50_adamw_steps() {
    let Some(python) = torch_python() else { return };
    let (lr, beta1, beta2, eps, weight_decay, steps) = (3e-3, 0.9, 0.99, 1e-8, 0.1, 50u64);
    let model = build();
    let vars = model.vars();
    let mut out: Vec<(String, Tensor)> = Vec::new();
    for (i, v) in vars.iter().enumerate() {
        out.push((format!("init.{i}"), v.as_tensor().copy().unwrap()));
    }
    let (x, y) = batch(0);
    out.push(("x".into(), x.clone()));
    out.push(("y".into(), y.clone()));
    let logits = model.forward(&x, Mode::Eval).unwrap();
    let loss = cross_entropy(&logits, &y).unwrap();
    let grads = loss.backward().unwrap();
    out.push(("logits".into(), logits.detach()));
    out.push(("loss".into(), loss.detach().reshape(1).unwrap()));
    for (i, v) in vars.iter().enumerate() {
        out.push((format!("grad.{i}"), grads.get(v).expect("every parameter has a gradient").clone()));
    }
    let model = build();
    let spec = OptimizerSpec::AdamW { beta1, beta2, eps, weight_decay };
    let mut optimizer = Optimizer::new(&spec, model.vars()).unwrap().with_decay_mask(model.decay_mask()).unwrap();
    let mut losses = Vec::new();
    for k in 0..steps {
        let (x, y) = batch(k + 1);
        let loss = cross_entropy(&model.forward(&x, Mode::Eval).unwrap(), &y).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        optimizer.step(&loss.backward().unwrap(), lr).unwrap();
        out.push((format!("batch_x.{k}"), x));
        out.push((format!("batch_y.{k}"), y));
    }
    assert!(losses[49] < losses[0] - 0.5, "the model learns the stream: {losses:?}");
    out.push(("losses".into(), Tensor::new(losses.as_slice(), &Device::Cpu).unwrap()));
    let config = serde_json::json!({
        "layers": 2, "heads": 4, "d_model": 32, "context": CONTEXT, "vocab": VOCAB, "bias": true,
        "parameters": model.parameter_count(), "lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps,
        "weight_decay": weight_decay, "steps": steps,
    });
    check_with_pytorch(&python, "transformer_fidelity.py", &out, config);
}
