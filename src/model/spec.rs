//! The `[model]` table.

use super::resnet::Shortcut;
use super::transformer::{DecayOn, Shape};
use crate::params::{ParamSource, Rule};
use anyhow::Result;
use candle_core::Tensor;

/// Nonlinearity between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
    LeakyRelu,
    Silu,
}

pub const ACTIVATIONS: &[&str] = &["relu", "gelu", "tanh", "sigmoid", "leaky_relu", "silu"];

impl Activation {
    fn from_word(w: &str) -> Self {
        match w {
            "gelu" => Activation::Gelu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "leaky_relu" => Activation::LeakyRelu,
            "silu" => Activation::Silu,
            _ => Activation::Relu,
        }
    }

    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => x.relu()?,
            Activation::Gelu => x.gelu_erf()?,
            Activation::Tanh => x.tanh()?,
            Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
            // PyTorch's default negative slope.
            Activation::LeakyRelu => candle_nn::ops::leaky_relu(x, 0.01)?,
            Activation::Silu => x.silu()?,
        })
    }
}

/// How a model's parameters start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
    Uniform,
    /// Every parameter 0: a start a test can compute from by hand.
    Zeros,
}

/// A validated `[model]` table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSpec {
    Mlp {
        hidden: Vec<u64>,
        activation: Activation,
        dropout: f64,
    },
    Linear {
        init: Init,
    },
    Cnn {
        channels: Vec<u64>,
        kernel_size: u64,
        pool: bool,
        hidden: Vec<u64>,
        activation: Activation,
        dropout: f64,
    },
    /// The CIFAR ResNet (src/model/resnet.rs).
    Resnet {
        depth: u64,
        width: u64,
        shortcut: Shortcut,
        weight_decay_bn: bool,
    },
    /// A GPT-style language model (src/model/transformer.rs).
    Transformer {
        layers: u64,
        heads: u64,
        d_model: u64,
        /// Positions with an embedding; the data set's context when not given.
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<u64>,
        dropout: f64,
        bias: bool,
        weight_decay_on: DecayOn,
    },
}

pub const MODELS: &[&str] = &["mlp", "linear", "cnn", "resnet", "transformer"];

/// The most parameters a model may have: 500 million f32 are 2 GB of weights, and training
/// keeps as much again for gradients and up to twice that for an optimizer's state.
pub const MAX_PARAMETERS: u128 = 500_000_000;

/// Bytes of memory one parameter needs while training, at most: weights, gradients and
/// Adam's two moments, f32 each.
const BYTES_PER_PARAMETER: u128 = 16;

/// `params`, or an error when they are more than [`MAX_PARAMETERS`] (with the memory
/// training them would need, and `what_to_do`).
fn too_many(params: u128, what_to_do: &str) -> Result<u128, String> {
    if params > MAX_PARAMETERS {
        let gb = params.saturating_mul(BYTES_PER_PARAMETER) as f64 / 1e9;
        return Err(format!(
            "this model has {params} parameters, more than the {MAX_PARAMETERS} runner trains; training it would need about {gb:.0} GB of memory. {}{}",
            what_to_do[..1].to_uppercase(),
            &what_to_do[1..]
        ));
    }
    Ok(params)
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec::Mlp { hidden: vec![128, 64], activation: Activation::Relu, dropout: 0.0 }
    }
}

impl ModelSpec {
    /// The parameter count of this model for `features` inputs, `outputs` outputs and the
    /// data's image shape, or why it cannot be built: a cnn on data that are not images,
    /// more pooled convolutions than the image has pixels for, more than
    /// [`MAX_PARAMETERS`] (with the memory that would need). Computes shapes only.
    pub fn check(&self, features: usize, outputs: usize, image: Option<(usize, usize, usize)>) -> Result<u128, String> {
        if let ModelSpec::Transformer { .. } = self {
            let shape = self.transformer_shape(features, outputs).expect("a transformer");
            if shape.context < features {
                return Err(format!(
                    "the model's context = {} is shorter than the data's windows of {features} tokens (dataset.context); \
                     leave model.context out to use the data's",
                    shape.context
                ));
            }
            return too_many(shape.parameters(), "use fewer layers or a smaller d_model");
        }
        if let ModelSpec::Resnet { depth, width, shortcut, .. } = self {
            let Some((c0, h, w)) = image else {
                return Err("the resnet model needs image data (digits, mnist, cifar10, cifar100); use mlp or linear for this data set".into());
            };
            let n = super::resnet::blocks_per_stage(*depth).map_err(|e| format!("`depth` {e}"))? as u128;
            if h % 4 != 0 || w % 4 != 0 {
                return Err(format!(
                    "the resnet halves the {h}x{w} image twice: its sides must be multiples of 4 (CIFAR's 32x32, MNIST's 28x28)"
                ));
            }
            let [a, b, c] = super::resnet::stage_widths(*width).map(|c| c as u128);
            let conv_bn = |c_in: u128, c_out: u128, k: u128| {
                c_in.saturating_mul(c_out).saturating_mul(k * k).saturating_add(2 * c_out)
            };
            let mut params = conv_bn(c0 as u128, a, 3);
            params = params.saturating_add((2 * n).saturating_mul(conv_bn(a, a, 3)));
            for (c_in, planes) in [(a, b), (b, c)] {
                params = params
                    .saturating_add(conv_bn(c_in, planes, 3))
                    .saturating_add((2 * n - 1).saturating_mul(conv_bn(planes, planes, 3)));
                if *shortcut == Shortcut::B {
                    params = params.saturating_add(conv_bn(c_in, planes, 1));
                }
            }
            params = params.saturating_add(c.saturating_mul(outputs as u128)).saturating_add(outputs as u128);
            return too_many(params, "use a smaller depth or width");
        }
        let mut params: u128 = 0;
        let mut width = features as u128;
        if let ModelSpec::Cnn { channels, kernel_size, pool, .. } = self {
            let Some((c, h, w)) = image else {
                return Err(
                    "the cnn model needs image data (digits, mnist, cifar10, cifar100); use mlp or linear for this data set".into()
                );
            };
            let (mut c, mut h, mut w) = (c as u128, h as u128, w as u128);
            let k = *kernel_size as u128;
            for (i, &out) in channels.iter().enumerate() {
                let out = out as u128;
                params = params
                    .saturating_add(out.saturating_mul(c).saturating_mul(k).saturating_mul(k))
                    .saturating_add(out);
                c = out;
                (h, w) = (h + 2 * (k / 2) + 1 - k, w + 2 * (k / 2) + 1 - k);
                if *pool {
                    if h < 2 || w < 2 {
                        return Err(format!(
                            "the {}x{} image is too small for {} pooled convolutions: it is {h}x{w} after {i}; use fewer channels entries or pool = false",
                            image.map_or(0, |i| i.1),
                            image.map_or(0, |i| i.2),
                            channels.len()
                        ));
                    }
                    (h, w) = (h / 2, w / 2);
                }
            }
            width = c.saturating_mul(h).saturating_mul(w);
        }
        let hidden: &[u64] = match self {
            ModelSpec::Mlp { hidden, .. } | ModelSpec::Cnn { hidden, .. } => hidden,
            ModelSpec::Linear { .. } | ModelSpec::Resnet { .. } | ModelSpec::Transformer { .. } => &[],
        };
        for out in hidden.iter().map(|&h| h as u128).chain([outputs as u128]) {
            params = params.saturating_add(width.saturating_mul(out)).saturating_add(out);
            width = out;
        }
        too_many(params, "use smaller hidden layers or fewer channels")
    }

    /// A transformer's shape for windows of `features` tokens and a vocabulary of `outputs`.
    pub fn transformer_shape(&self, features: usize, outputs: usize) -> Option<Shape> {
        let ModelSpec::Transformer { layers, heads, d_model, context, dropout, bias, .. } = self else { return None };
        Some(Shape {
            layers: *layers as usize,
            heads: *heads as usize,
            d_model: *d_model as usize,
            context: context.map_or(features, |c| c as usize),
            vocab: outputs,
            dropout: *dropout,
            bias: *bias,
        })
    }

    /// Reads model `kind`; `None` for an unknown kind.
    pub fn read<P: ParamSource>(kind: &str, p: &mut P) -> Option<Result<Self, P::Error>> {
        let common = |p: &mut P| -> Result<(Activation, f64), P::Error> {
            let a = p.choice("activation", ACTIVATIONS, Some("relu"), "nonlinearity between layers")?;
            let d =
                p.number("dropout", Some(0.0), Rule::UnitInterval, "dropout probability after each hidden layer")?;
            p.check(d < 1.0, "dropout", || "must be below 1 (1 drops everything)".to_string())?;
            Ok((Activation::from_word(a), d))
        };
        Some(match kind {
            "mlp" => (|| {
                let hidden = p.counts("hidden", &[128, 64], 1, "sizes of the hidden layers")?;
                let (activation, dropout) = common(p)?;
                Ok(ModelSpec::Mlp { hidden, activation, dropout })
            })(),
            "linear" => (|| {
                let init = p.choice(
                    "init",
                    &["uniform", "zeros"],
                    Some("uniform"),
                    "initial weights: PyTorch's U(-1/sqrt(in), 1/sqrt(in)), or all zeros (a known start, for checks)",
                )?;
                Ok(ModelSpec::Linear { init: if init == "zeros" { Init::Zeros } else { Init::Uniform } })
            })(),
            "cnn" => (|| {
                let channels = p.counts("channels", &[16, 32], 1, "output channels of each convolution")?;
                let kernel_size = p.steps("kernel_size", Some(3), 1, "convolution kernel size (odd keeps the size)")?;
                let pool = p.flag("pool", true, "2x2 max-pooling after each convolution")?;
                let hidden = p.counts("hidden", &[64], 1, "sizes of the dense layers after the convolutions")?;
                let (activation, dropout) = common(p)?;
                Ok(ModelSpec::Cnn { channels, kernel_size, pool, hidden, activation, dropout })
            })(),
            "resnet" => (|| {
                let depth = p.steps("depth", Some(20), 8, "6n + 2 layers: 20, 32, 44, 56, 110 (8 for a quick try)")?;
                if let Err(why) = super::resnet::blocks_per_stage(depth) {
                    return Err(p.invalid("depth", why));
                }
                let width = p.steps("width", Some(1), 1, "channel multiplier of the 16/32/64 stages (wide ResNets)")?;
                let shortcut = match p.choice(
                    "shortcut",
                    &["A", "B"],
                    Some("A"),
                    "where a block changes shape: A pads with zero channels (the paper's CIFAR choice), B projects with a 1x1 convolution",
                )? {
                    "B" => Shortcut::B,
                    _ => Shortcut::A,
                };
                let weight_decay_bn = p.flag(
                    "weight_decay_bn",
                    false,
                    "apply the optimizer's weight decay to batch norm's scale and shift and the biases too",
                )?;
                Ok(ModelSpec::Resnet { depth, width, shortcut, weight_decay_bn })
            })(),
            "transformer" => (|| {
                let layers = p.steps("layers", Some(4), 1, "transformer blocks")?;
                let heads = p.steps("heads", Some(4), 1, "attention heads per block (d_model must be a multiple)")?;
                let d_model = p.steps("d_model", Some(128), 1, "width of the residual stream")?;
                if d_model % heads != 0 {
                    return Err(p.invalid(
                        "d_model",
                        format!("= {d_model} is not a multiple of heads = {heads}: each head gets d_model / heads dimensions"),
                    ));
                }
                let context = p.optional_steps(
                    "context",
                    1,
                    "the data set's context",
                    "positions with an embedding (at least the data's windows)",
                )?;
                let dropout = p.number(
                    "dropout",
                    Some(0.0),
                    Rule::UnitInterval,
                    "dropout on embeddings, attention weights and residual branches while training",
                )?;
                p.check(dropout < 1.0, "dropout", || "must be below 1 (1 drops everything)".to_string())?;
                let bias = p.flag("bias", true, "biases in the linear layers and layer norms (GPT-2 has them)")?;
                let weight_decay_on = match p.choice(
                    "weight_decay_on",
                    &["matrices", "matrices_and_embeddings", "all"],
                    Some("matrices"),
                    "what the optimizer's weight decay applies to: the linear layers' weights; those and the embeddings (nanoGPT); every parameter",
                )? {
                    "all" => DecayOn::All,
                    "matrices_and_embeddings" => DecayOn::MatricesAndEmbeddings,
                    _ => DecayOn::Matrices,
                };
                Ok(ModelSpec::Transformer { layers, heads, d_model, context, dropout, bias, weight_decay_on })
            })(),
            _ => return None,
        })
    }
}
