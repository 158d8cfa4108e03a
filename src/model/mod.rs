//! Models built with candle, initialised from the run's seed: a stack of convolutions and
//! dense layers (the MLP, the linear model and the small CNN, trained by the fused step of
//! `fused/`) and the CIFAR ResNet (`resnet.rs`, on candle's autograd with the layers of
//! `layers.rs`). Parameters are candle `Var`s owned by the model; the optimizer updates them.

pub mod fused;
mod layers;
mod resnet;
pub mod sampling;
mod spec;
pub mod transformer;

pub use fused::team;
pub use fused::{Targets, gather, update_in_place, vectorized, with_values, with_values_all, with_values_mut};
pub use spec::{Activation, Init, MODELS, ModelSpec, Shortcut};

use anyhow::{Result, bail};
use candle_core::{D, DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A dense layer: `x @ w + b` with `w` stored (in, out).
struct Dense {
    w: Var,
    b: Var,
}

/// A convolution with `out` filters of `k x k` over `in` channels, "same" padding.
struct Conv {
    w: Var,
    b: Var,
    pad: usize,
}

/// A built network.
pub enum Model {
    /// Convolutions (perhaps none) then dense layers.
    Stack(Stack),
    /// A ResNet; `decay_bn`: weight decay on batch norm and biases too.
    Resnet { net: resnet::Resnet, decay_bn: bool },
    /// A transformer language model; `decay_on`: what weight decay applies to.
    Transformer { net: transformer::Transformer, decay_on: transformer::DecayOn },
}

impl Model {
    /// Builds `spec` for `features` inputs and `outputs` outputs, weights from `seed`.
    pub fn new(
        spec: &ModelSpec,
        features: usize,
        outputs: usize,
        image: Option<(usize, usize, usize)>,
        seed: u64,
    ) -> Result<Model> {
        match spec {
            ModelSpec::Resnet { depth, width, shortcut, weight_decay_bn } => {
                spec.check(features, outputs, image).map_err(anyhow::Error::msg)?;
                let Some(image) = image else { bail!("the resnet model needs image data") };
                let mut rng = init_rng(seed);
                let net = resnet::Resnet::new(*depth, *width, *shortcut, image, outputs, &mut rng)?;
                Ok(Model::Resnet { net, decay_bn: *weight_decay_bn })
            }
            ModelSpec::Transformer { weight_decay_on, .. } => {
                spec.check(features, outputs, image).map_err(anyhow::Error::msg)?;
                let shape = spec.transformer_shape(features, outputs).expect("a transformer spec");
                let mut rng = init_rng(seed);
                Ok(Model::Transformer {
                    net: transformer::Transformer::new(shape, &mut rng)?,
                    decay_on: *weight_decay_on,
                })
            }
            _ => Ok(Model::Stack(Stack::new(spec, features, outputs, image, seed)?)),
        }
    }

    /// Every parameter (and for a ResNet, then its batch norms' running statistics), in a
    /// fixed order: what checkpoints and model.safetensors hold.
    pub fn vars(&self) -> Vec<Var> {
        match self {
            Model::Stack(s) => s.vars(),
            Model::Resnet { net, .. } => net.vars(),
            Model::Transformer { net, .. } => net.vars(),
        }
    }

    /// Which of [`Model::vars`] the optimizer's weight decay applies to.
    pub fn decay_mask(&self) -> Vec<bool> {
        match self {
            Model::Stack(s) => vec![true; s.vars().len()],
            Model::Resnet { net, decay_bn } => net.decay_mask(*decay_bn),
            Model::Transformer { net, decay_on } => net.decay_mask(*decay_on),
        }
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        match self {
            Model::Stack(s) => s.parameter_count(),
            Model::Resnet { net, .. } => net.parameter_count(),
            Model::Transformer { net, .. } => net.parameter_count(),
        }
    }

    /// The network's output for a batch `x` of shape (n, features) (a transformer: token
    /// windows (n, t) of u32, giving logits (n * t, vocab)). With `dropout_rng`
    /// (training), dropout masks are drawn from it and batch norms use and update batch
    /// statistics; without (evaluation), dropout is off and batch norms use running ones.
    pub fn forward(&self, x: &Tensor, dropout_rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        match self {
            Model::Stack(s) => s.forward(x, dropout_rng),
            Model::Resnet { net, .. } => net.forward(x, dropout_rng.is_some()),
            Model::Transformer { net, .. } => net.forward(x, dropout_rng),
        }
    }

    /// Whether a batch may be split into parts trained at once on several threads, their
    /// gradients summed: models without batch statistics on candle's autograd (the
    /// transformer).
    pub fn splits_batches(&self) -> bool {
        matches!(self, Model::Transformer { .. })
    }

    /// Whether the fused step trains this model (see [`Stack::fusable`]).
    pub fn fusable(&self) -> bool {
        matches!(self, Model::Stack(s) if s.fusable())
    }

    /// The fused step's stack, for a model that [`Model::fusable`] says it trains.
    fn stack(&self) -> Result<&Stack> {
        match self {
            Model::Stack(s) => Ok(s),
            Model::Resnet { .. } | Model::Transformer { .. } => {
                bail!("the fused step trains stacks of convolutions and dense layers only")
            }
        }
    }

    /// [`Stack::fused_loss_and_grads`].
    pub fn fused_loss_and_grads(
        &self,
        data: &[f32],
        rows: &[u32],
        features: usize,
        targets: Targets<'_>,
        parts: usize,
        grads: &mut candle_core::backprop::GradStore,
    ) -> Result<f64> {
        self.stack()?.fused_loss_and_grads(data, rows, features, targets, parts, grads)
    }

    /// [`Stack::fused_outputs`].
    pub fn fused_outputs(&self, x: &[f32], features: usize) -> Result<Vec<f32>> {
        self.stack()?.fused_outputs(x, features)
    }
}

/// Convolutions then dense layers: the mlp, linear and cnn kinds.
pub struct Stack {
    convs: Vec<Conv>,
    /// (channels, height, width) the convolutions read.
    image: Option<(usize, usize, usize)>,
    pool: bool,
    dense: Vec<Dense>,
    activation: Activation,
    dropout: f64,
}

/// The generator of a model's initial weights for the run's `seed` (apart from the
/// streams of shuffling and dropout drawn from the same seed).
fn init_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x0DE1_u64.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
fn uniform(rng: &mut ChaCha8Rng, shape: &[usize], fan_in: usize) -> Result<Var> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu)?)?)
}

impl Stack {
    /// Builds `spec` for `features` inputs and `outputs` outputs, weights from `seed`.
    pub fn new(
        spec: &ModelSpec,
        features: usize,
        outputs: usize,
        image: Option<(usize, usize, usize)>,
        seed: u64,
    ) -> Result<Stack> {
        spec.check(features, outputs, image).map_err(anyhow::Error::msg)?;
        let mut rng = init_rng(seed);
        let (mut convs, mut width, mut conv_image) = (Vec::new(), features, None);
        if let ModelSpec::Cnn { channels, kernel_size, pool, .. } = spec {
            let Some((mut c, mut h, mut w)) = image else {
                bail!(
                    "the cnn model needs image data (digits, mnist, cifar10, cifar100); use mlp or linear for this data set"
                )
            };
            conv_image = image;
            let k = *kernel_size as usize;
            for &out in channels {
                let out = out as usize;
                let fan_in = c * k * k;
                convs.push(Conv {
                    w: uniform(&mut rng, &[out, c, k, k], fan_in)?,
                    b: uniform(&mut rng, &[out], fan_in)?,
                    pad: k / 2,
                });
                c = out;
                // "Same" padding k / 2: an even kernel makes the image one pixel larger.
                (h, w) = (h + 2 * (k / 2) + 1 - k, w + 2 * (k / 2) + 1 - k);
                if *pool {
                    if h < 2 || w < 2 {
                        bail!(
                            "the image is too small for {} pooled convolutions; use fewer channels entries or pool = false",
                            channels.len()
                        );
                    }
                    (h, w) = (h / 2, w / 2);
                }
            }
            width = c * h * w;
        }
        let hidden: Vec<usize> = match spec {
            ModelSpec::Mlp { hidden, .. } | ModelSpec::Cnn { hidden, .. } => {
                hidden.iter().map(|&h| h as usize).collect()
            }
            ModelSpec::Linear { .. } | ModelSpec::Resnet { .. } | ModelSpec::Transformer { .. } => Vec::new(),
        };
        let mut dense = Vec::new();
        let zeros = matches!(spec, ModelSpec::Linear { init: Init::Zeros });
        for out in hidden.into_iter().chain([outputs]) {
            dense.push(if zeros {
                let zero = |shape: &[usize]| Var::zeros(shape, DType::F32, &Device::Cpu);
                Dense { w: zero(&[width, out])?, b: zero(&[out])? }
            } else {
                Dense { w: uniform(&mut rng, &[width, out], width)?, b: uniform(&mut rng, &[out], width)? }
            });
            width = out;
        }
        let (activation, dropout, pool) = match spec {
            ModelSpec::Mlp { activation, dropout, .. } => (*activation, *dropout, false),
            ModelSpec::Cnn { activation, dropout, pool, .. } => (*activation, *dropout, *pool),
            ModelSpec::Linear { .. } | ModelSpec::Resnet { .. } | ModelSpec::Transformer { .. } => {
                (Activation::Relu, 0.0, false)
            }
        };
        Ok(Stack { convs, image: conv_image, pool, dense, activation, dropout })
    }

    /// Every parameter, in a fixed order.
    pub fn vars(&self) -> Vec<Var> {
        let convs = self.convs.iter().flat_map(|c| [c.w.clone(), c.b.clone()]);
        convs.chain(self.dense.iter().flat_map(|d| [d.w.clone(), d.b.clone()])).collect()
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    /// The network's output for a batch `x` of shape (n, features). With `dropout_rng`
    /// (training), dropout masks are drawn from it; without (evaluation), dropout is off.
    pub fn forward(&self, x: &Tensor, dropout_rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let mut h = x.clone();
        if let Some((c, hh, ww)) = self.image {
            h = h.reshape((x.dim(0)?, c, hh, ww))?;
            for conv in &self.convs {
                h = h.conv2d(conv.w.as_tensor(), conv.pad, 1, 1, 1)?;
                h = h.broadcast_add(&conv.b.as_tensor().reshape((1, (), 1, 1))?)?;
                h = self.activation.apply(&h)?;
                if self.pool {
                    h = max_pool2(&h)?;
                }
            }
            h = h.flatten_from(1)?;
        }
        let mut rng = dropout_rng;
        let last = self.dense.len() - 1;
        for (i, d) in self.dense.iter().enumerate() {
            h = h.matmul(d.w.as_tensor())?.broadcast_add(d.b.as_tensor())?;
            if i < last {
                h = self.activation.apply(&h)?;
                if let (Some(r), true) = (rng.as_deref_mut(), self.dropout > 0.0) {
                    h = dropout(&h, self.dropout, r)?;
                }
            }
        }
        Ok(h)
    }
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
fn dropout(h: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> Result<Tensor> {
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
