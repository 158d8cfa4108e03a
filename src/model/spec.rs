//! What the model kinds' `[model]` options share: activations, initialisation, the common
//! `activation` and `dropout` keys, and the bound on a model's size. Each kind's own options
//! are in its file (`stack.rs`, `resnet.rs`, `transformer.rs`).

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
    pub(crate) fn from_word(w: &str) -> Self {
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

/// The most parameters a model may have: 500 million f32 are 2 GB of weights, and training
/// keeps as much again for gradients and up to twice that for an optimizer's state.
pub const MAX_PARAMETERS: u128 = 500_000_000;

/// Bytes of memory one parameter needs while training, at most: weights, gradients and
/// Adam's two moments, f32 each.
const BYTES_PER_PARAMETER: u128 = 16;

/// `params`, or an error when they are more than [`MAX_PARAMETERS`] (with the memory
/// training them would need, and `what_to_do`).
pub(crate) fn too_many(params: u128, what_to_do: &str) -> Result<u128, String> {
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

/// The `activation` and `dropout` keys of the mlp and cnn kinds.
pub(crate) fn activation_and_dropout<P: ParamSource>(p: &mut P) -> Result<(Activation, f64), P::Error> {
    let a = p.choice("activation", ACTIVATIONS, Some("relu"), "nonlinearity between layers")?;
    let d = p.number("dropout", Some(0.0), Rule::UnitInterval, "dropout probability after each hidden layer")?;
    p.check(d < 1.0, "dropout", || "must be below 1 (1 drops everything)".to_string())?;
    Ok((Activation::from_word(a), d))
}
