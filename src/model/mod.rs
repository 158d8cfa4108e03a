//! Models built with candle, initialised from the run's seed, each behind the one
//! interface of [`network::Network`] (named parameters, forward, a step's loss and
//! gradients) in a file of its own: the stack of convolutions and dense layers
//! (`stack.rs`: the mlp, linear and cnn kinds), the CIFAR ResNet (`resnet.rs`) and the
//! GPT-style transformer (`transformer.rs`). [`build`] is where kinds are registered.
//! Every model runs through plain candle ops; runner's CPU kernels ([`crate::kernels`])
//! are an acceleration a model uses where its tensors are on the CPU.

mod layers;
pub mod network;
mod resnet;
pub mod sampling;
mod spec;
mod stack;
pub mod transformer;

pub use crate::kernels::Targets;
pub use network::{Batch, HostRows, KERNELS, Kernels, Loss, Mode, Named, Network, Step, StepLoss};
pub use resnet::Shortcut;
pub use spec::{Activation, Init, MODELS, ModelSpec};
pub use stack::Stack;

use anyhow::{Result, bail};
use candle_core::{D, DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Builds the model `spec` describes for `features` inputs and `outputs` outputs (an image
/// shape where the data are images), its weights drawn from `seed`, running on `kernels`:
/// one line per kind.
pub fn build(
    spec: &ModelSpec,
    features: usize,
    outputs: usize,
    image: Option<(usize, usize, usize)>,
    seed: u64,
    kernels: Kernels,
    device: &Device,
) -> Result<Box<dyn Network>> {
    spec.check(features, outputs, image).map_err(anyhow::Error::msg)?;
    let mut rng = init_rng(seed);
    Ok(match spec {
        ModelSpec::Mlp { .. } | ModelSpec::Linear { .. } | ModelSpec::Cnn { .. } => {
            Box::new(Stack::new(spec, features, outputs, image, &mut rng, kernels, device)?)
        }
        ModelSpec::Resnet { depth, width, shortcut, weight_decay_bn } => {
            let Some(image) = image else { bail!("the resnet model needs image data") };
            let net =
                resnet::Resnet::new((*depth, *width, *shortcut), (image, outputs), *weight_decay_bn, &mut rng, device)?;
            Box::new(net.with_kernels(kernels))
        }
        ModelSpec::Transformer { weight_decay_on, .. } => {
            let shape = spec.transformer_shape(features, outputs).expect("a transformer spec");
            Box::new(transformer::Transformer::new(shape, *weight_decay_on, &mut rng, device)?.with_kernels(kernels))
        }
    })
}

/// The generator of a model's initial weights for the run's `seed` (apart from the
/// streams of shuffling and dropout drawn from the same seed).
pub(crate) fn init_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x0DE1_u64.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases,
/// drawn on the host (the same values on every device) and placed on `device`.
pub(crate) fn uniform(rng: &mut ChaCha8Rng, shape: &[usize], fan_in: usize, device: &Device) -> Result<Var> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?)
}

/// 2x2 max-pooling with stride 2 (odd last rows and columns dropped), whose gradient goes to
/// each window's maximum as in PyTorch. candle's own `max_pool2d` is not used: its backward
/// pass scales the gradient by (number of maxima) / 4, a quarter of the true gradient for a
/// window with one maximum (candle 0.11 `backprop.rs`, `Op::MaxPool2D`).
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ph, pw) = (h / 2, w / 2);
    let x = x.narrow(2, 0, 2 * ph)?.narrow(3, 0, 2 * pw)?;
    Ok(x.reshape((n, c, ph, 2, pw, 2))?.max(5)?.max(3)?)
}

/// Inverted dropout with a seeded mask (candle's own draws from an unseeded generator).
pub(crate) fn dropout(h: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let keep = 1.0 - p;
    let mask: Vec<f32> =
        (0..h.elem_count()).map(|_| if rng.random::<f64>() < keep { (1.0 / keep) as f32 } else { 0.0 }).collect();
    Ok(h.mul(&Tensor::from_vec(mask, h.shape(), h.device())?)?)
}

/// Softmax cross-entropy of logits (n, classes) against class indices (n,), averaged.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(logits, targets)?)
}

/// Mean squared error, averaged over all elements.
pub fn mse(pred: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(pred.sub(targets)?.sqr()?.mean_all()?)
}

/// Fraction of rows whose largest logit is the target class.
pub fn accuracy(logits: &Tensor, targets: &Tensor) -> Result<f64> {
    let predicted = logits.argmax(D::Minus1)?;
    let correct = predicted.eq(targets)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    Ok(correct as f64 / targets.dim(0)? as f64)
}

#[cfg(test)]
mod plain_tests;
