//! Models built with candle, initialised from the run's seed, each behind the one
//! interface of [`network::Network`] (named parameters, forward, a step's loss and
//! gradients) in a file of its own: the stack of convolutions and dense layers
//! (`stack.rs`: the mlp, linear and cnn kinds), the CIFAR ResNet (`resnet.rs`) and the
//! GPT-style transformer (`transformer.rs`). `models!` below is where kinds are registered.
//! Every model runs through plain candle ops; runner's CPU kernels ([`crate::kernels`])
//! are an acceleration a model uses where its tensors are on the CPU.

mod layers;
pub mod network;
mod resnet;
pub mod sampling;
pub mod sequential;
mod spec;
mod stack;
pub mod transformer;

pub use crate::kernels::Targets;
pub use network::{Batch, HostRows, InMemory, KERNELS, Kernels, Loss, Mode, Named, Network, Step, StepLoss};
pub use resnet::{ResnetSpec, Shortcut};
pub use sequential::SequentialSpec;
pub use spec::{Activation, Init, MAX_PARAMETERS};
pub use stack::{CnnSpec, LinearSpec, MlpSpec, Stack};
pub use transformer::TransformerSpec;

use crate::params::ParamSource;
use anyhow::Result;
use candle_core::{D, DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a model is built for: the data's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    /// Inputs of a sample (a text data set: tokens of a window).
    pub features: usize,
    /// Outputs: classes, 1 for a regression, the vocabulary of a text data set.
    pub outputs: usize,
    /// (channels, height, width) where the samples are images.
    pub image: Option<(usize, usize, usize)>,
}

/// One model kind: its `kind` word in configs, how it reads its `[model]` options, its
/// size for the data, and how it builds. A new architecture is a file with a type that
/// implements this (and a network that implements [`Network`]), and one line in
/// `models!` below.
pub trait Kind: Sized {
    /// The `kind = "..."` word.
    const KIND: &'static str;
    /// Whether it reads windows of tokens (a text data set) rather than features.
    const READS_TOKENS: bool = false;
    /// Reads (and validates) the options.
    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error>;
    /// The parameter count for `data`, or why it cannot be built for it (shapes only).
    fn check(&self, data: DataShape) -> Result<u128, String>;
    /// The model for `data` (checked), its weights drawn from `rng`, on `device`.
    fn build(
        &self,
        data: DataShape,
        rng: &mut ChaCha8Rng,
        kernels: Kernels,
        device: &Device,
    ) -> Result<Box<dyn Network>>;
}

macro_rules! models {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A validated `[model]` table: one of the kinds with its options.
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum ModelSpec {
            $(#[doc = concat!("`", stringify!($variant), "`")] $variant($ty),)*
        }

        /// Every `kind` word.
        pub const MODELS: &[&str] = &[$(<$ty as Kind>::KIND),*];

        impl ModelSpec {
            /// Reads model `kind`; `None` for an unknown kind.
            pub fn read<P: ParamSource>(kind: &str, p: &mut P) -> Option<Result<Self, P::Error>> {
                match kind {
                    $(<$ty as Kind>::KIND => Some(<$ty as Kind>::read(p).map(ModelSpec::$variant)),)*
                    _ => None,
                }
            }

            /// The `kind` word.
            pub fn kind(&self) -> &'static str {
                match self { $(ModelSpec::$variant(_) => <$ty as Kind>::KIND,)* }
            }

            /// Whether the model reads windows of tokens (a text data set).
            pub fn reads_tokens(&self) -> bool {
                match self { $(ModelSpec::$variant(_) => <$ty as Kind>::READS_TOKENS,)* }
            }

            /// The parameter count of this model for `features` inputs, `outputs` outputs
            /// and the data's image shape, or why it cannot be built (a cnn on data that
            /// are not images, more than [`MAX_PARAMETERS`] with the memory that would
            /// need, ...). Computes shapes only.
            pub fn check(&self, features: usize, outputs: usize, image: Option<(usize, usize, usize)>) -> Result<u128, String> {
                let data = DataShape { features, outputs, image };
                match self { $(ModelSpec::$variant(k) => k.check(data),)* }
            }

            fn build_kind(&self, data: DataShape, rng: &mut ChaCha8Rng, kernels: Kernels, device: &Device) -> Result<Box<dyn Network>> {
                match self { $(ModelSpec::$variant(k) => k.build(data, rng, kernels, device),)* }
            }
        }
    };
}

models! {
    Mlp(MlpSpec),
    Linear(LinearSpec),
    Cnn(CnnSpec),
    Resnet(ResnetSpec),
    Transformer(TransformerSpec),
    Sequential(SequentialSpec),
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec::Mlp(MlpSpec { hidden: vec![128, 64], activation: Activation::Relu, dropout: 0.0 })
    }
}

/// Builds the model `spec` describes for `features` inputs and `outputs` outputs (an image
/// shape where the data are images), its weights drawn from `seed`, running on `kernels`.
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
    spec.build_kind(DataShape { features, outputs, image }, &mut rng, kernels, device)
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
