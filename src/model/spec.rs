//! The `[model]` table.

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
    Mlp { hidden: Vec<u64>, activation: Activation, dropout: f64 },
    Linear { init: Init },
    Cnn { channels: Vec<u64>, kernel_size: u64, pool: bool, hidden: Vec<u64>, activation: Activation, dropout: f64 },
}

pub const MODELS: &[&str] = &["mlp", "linear", "cnn"];

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec::Mlp { hidden: vec![128, 64], activation: Activation::Relu, dropout: 0.0 }
    }
}

impl ModelSpec {
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
            _ => return None,
        })
    }
}
