//! The `[optimizer]` table.

use crate::params::{ParamSource, Rule};

/// A validated `[optimizer]` table (PyTorch's names and defaults; SGD's momentum defaults
/// to 0.9 because that is what our users train with).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerSpec {
    Sgd {
        momentum: f64,
        dampening: f64,
        nesterov: bool,
        weight_decay: f64,
    },
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    #[serde(rename = "adamw")]
    AdamW {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    #[serde(rename = "rmsprop")]
    RmsProp {
        alpha: f64,
        eps: f64,
        momentum: f64,
        weight_decay: f64,
    },
}

pub const OPTIMIZERS: &[&str] = &["sgd", "adam", "adamw", "rmsprop"];

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 0.0 }
    }
}

impl OptimizerSpec {
    /// Reads optimizer `kind`; `None` for an unknown kind.
    pub fn read<P: ParamSource>(kind: &str, p: &mut P) -> Option<Result<Self, P::Error>> {
        let adam = |p: &mut P, wd: f64| -> Result<(f64, f64, f64, f64), P::Error> {
            // PyTorch's `betas = [b1, b2]`, or Keras's beta1 and beta2; not both.
            let betas = p.optional_numbers("betas", Rule::UnitInterval, "[beta1, beta2], as PyTorch writes them")?;
            let (beta1, beta2) = match betas {
                Some(b) => {
                    p.check(b.len() == 2, "betas", || {
                        format!("takes two numbers, [beta1, beta2] (e.g. [0.9, 0.99]); found {}", b.len())
                    })?;
                    for key in ["beta1", "beta2"] {
                        if p.optional_number(key, Rule::UnitInterval, "", "")?.is_some() {
                            return Err(p.invalid(key, "is given with betas; write one of the two (betas = [beta1, beta2], or beta1 and beta2)".to_string()));
                        }
                    }
                    (b[0], b[1])
                }
                None => (
                    p.number("beta1", Some(0.9), Rule::UnitInterval, "decay of the first moment")?,
                    p.number("beta2", Some(0.999), Rule::UnitInterval, "decay of the second moment")?,
                ),
            };
            Ok((
                beta1,
                beta2,
                p.number("eps", Some(1e-8), Rule::Positive, "added to the denominator")?,
                p.number("weight_decay", Some(wd), Rule::NonNegative, "weight decay")?,
            ))
        };
        Some(match kind {
            "sgd" => (|| {
                let momentum = p.number("momentum", Some(0.9), Rule::NonNegative, "momentum factor")?;
                let dampening = p.number("dampening", Some(0.0), Rule::UnitInterval, "dampening for momentum")?;
                let nesterov = p.flag("nesterov", false, "Nesterov momentum")?;
                p.check(!nesterov || (momentum > 0.0 && dampening == 0.0), "nesterov", || {
                    "needs momentum > 0 and dampening = 0 (as in PyTorch)".to_string()
                })?;
                let weight_decay = p.number("weight_decay", Some(0.0), Rule::NonNegative, "L2 penalty")?;
                Ok(OptimizerSpec::Sgd { momentum, dampening, nesterov, weight_decay })
            })(),
            "adam" => adam(p, 0.0).map(|(beta1, beta2, eps, weight_decay)| OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }),
            "adamw" => adam(p, 0.01).map(|(beta1, beta2, eps, weight_decay)| OptimizerSpec::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            }),
            "rmsprop" => (|| {
                Ok(OptimizerSpec::RmsProp {
                    alpha: p.number("alpha", Some(0.99), Rule::UnitInterval, "smoothing constant")?,
                    eps: p.number("eps", Some(1e-8), Rule::Positive, "added to the denominator")?,
                    momentum: p.number("momentum", Some(0.0), Rule::NonNegative, "momentum factor")?,
                    weight_decay: p.number("weight_decay", Some(0.0), Rule::NonNegative, "L2 penalty")?,
                })
            })(),
            _ => return None,
        })
    }
}
