//! A decoder-only transformer language model in the shape of GPT-2 (and nanoGPT): token
//! and learned positional embeddings, `layers` pre-layer-norm blocks of causal
//! multi-head self-attention and a 4x GELU MLP, a final layer norm, and output logits
//! from the token embedding (tied). Initialised as GPT-2: N(0, 0.02) for embeddings and
//! linear weights, the residual projections' N(0, 0.02 / sqrt(2 * layers)), biases 0,
//! layer norms at scale 1 and shift 0. Linear weights are stored (in, out).

use super::fused::attention::causal_softmax;
use super::fused::gelu::gelu;
use super::fused::linear::linear;
use super::fused::self_attention::causal_self_attention;
use super::layers::layer_norm;
use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Which parameters weight decay applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayOn {
    /// The linear layers' weight matrices only (GPT-2 and nanoGPT practice less embeddings).
    Matrices,
    /// The matrices and the token and position embeddings (nanoGPT's choice).
    MatricesAndEmbeddings,
    /// Every parameter, biases and layer norms too (PyTorch's AdamW on model.parameters()).
    All,
}

/// The shape of a transformer, as the `[model]` table gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub layers: usize,
    pub heads: usize,
    pub d_model: usize,
    /// Positions the model has embeddings for.
    pub context: usize,
    pub vocab: usize,
    pub dropout: f64,
    pub bias: bool,
}

impl Shape {
    /// Trainable values of this shape.
    pub fn parameters(&self) -> u128 {
        let (d, l) = (self.d_model as u128, self.layers as u128);
        let bias = u128::from(self.bias);
        let norm = d + bias * d;
        let per_block = 2 * norm
            + (d * 3 * d + bias * 3 * d)
            + (d * d + bias * d)
            + (d * 4 * d + bias * 4 * d)
            + (4 * d * d + bias * d);
        (self.vocab as u128 + self.context as u128) * d + l * per_block + norm
    }
}

/// Layer normalisation's scale and, with bias, shift.
struct Norm {
    gamma: Var,
    beta: Option<Var>,
}

/// `x @ w (+ b)` with `w` stored (in, out).
struct Linear {
    w: Var,
    b: Option<Var>,
}

impl Linear {
    /// `x` (rows, in) to (rows, out).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match &self.b {
            Some(b) => linear(x, self.w.as_tensor(), b.as_tensor())?,
            None => x.matmul(self.w.as_tensor())?,
        })
    }
}

struct Block {
    ln1: Norm,
    attn: Linear,
    attn_proj: Linear,
    ln2: Norm,
    fc: Linear,
    mlp_proj: Linear,
}

/// A built transformer.
pub struct Transformer {
    shape: Shape,
    wte: Var,
    wpe: Var,
    blocks: Vec<Block>,
    ln_f: Norm,
}

const STD: f32 = 0.02;

fn normal(rng: &mut ChaCha8Rng, shape: &[usize], std: f32) -> Result<Var> {
    let normal = Normal::new(0.0f32, std)?;
    let values: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| normal.sample(rng)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu)?)?)
}

impl Transformer {
    pub fn new(shape: Shape, rng: &mut ChaCha8Rng) -> Result<Transformer> {
        let Shape { layers, heads, d_model: d, context, vocab, bias, .. } = shape;
        if heads == 0 || d % heads != 0 {
            bail!("d_model = {d} is not a multiple of heads = {heads}");
        }
        let zeros = |n: usize| -> Result<Option<Var>> {
            Ok(if bias { Some(Var::zeros(n, DType::F32, &Device::Cpu)?) } else { None })
        };
        let norm = || -> Result<Norm> { Ok(Norm { gamma: Var::ones(d, DType::F32, &Device::Cpu)?, beta: zeros(d)? }) };
        let residual_std = STD / (2.0 * layers as f32).sqrt();
        let wte = normal(rng, &[vocab, d], STD)?;
        let wpe = normal(rng, &[context, d], STD)?;
        let mut blocks = Vec::with_capacity(layers);
        for _ in 0..layers {
            blocks.push(Block {
                ln1: norm()?,
                attn: Linear { w: normal(rng, &[d, 3 * d], STD)?, b: zeros(3 * d)? },
                attn_proj: Linear { w: normal(rng, &[d, d], residual_std)?, b: zeros(d)? },
                ln2: norm()?,
                fc: Linear { w: normal(rng, &[d, 4 * d], STD)?, b: zeros(4 * d)? },
                mlp_proj: Linear { w: normal(rng, &[4 * d, d], residual_std)?, b: zeros(d)? },
            });
        }
        Ok(Transformer { shape, wte, wpe, blocks, ln_f: norm()? })
    }

    /// Every parameter, in a fixed order: the embeddings, each block's (ln1, attention,
    /// its projection, ln2, the MLP's two layers; each weight then its bias), ln_f.
    pub fn vars(&self) -> Vec<Var> {
        self.named().into_iter().map(|(v, _)| v).collect()
    }

    /// The parameters with what they are: embedding, matrix or other (biases and norms).
    fn named(&self) -> Vec<(Var, Role)> {
        let mut out = vec![(self.wte.clone(), Role::Embedding), (self.wpe.clone(), Role::Embedding)];
        let norm = |n: &Norm, out: &mut Vec<(Var, Role)>| {
            out.push((n.gamma.clone(), Role::Other));
            out.extend(n.beta.iter().map(|b| (b.clone(), Role::Other)));
        };
        let linear = |l: &Linear, out: &mut Vec<(Var, Role)>| {
            out.push((l.w.clone(), Role::Matrix));
            out.extend(l.b.iter().map(|b| (b.clone(), Role::Other)));
        };
        for b in &self.blocks {
            norm(&b.ln1, &mut out);
            linear(&b.attn, &mut out);
            linear(&b.attn_proj, &mut out);
            norm(&b.ln2, &mut out);
            linear(&b.fc, &mut out);
            linear(&b.mlp_proj, &mut out);
        }
        norm(&self.ln_f, &mut out);
        out
    }

    /// Which of [`Transformer::vars`] weight decay applies to.
    pub fn decay_mask(&self, on: DecayOn) -> Vec<bool> {
        self.named()
            .iter()
            .map(|(_, role)| match on {
                DecayOn::All => true,
                DecayOn::MatricesAndEmbeddings => *role != Role::Other,
                DecayOn::Matrices => *role == Role::Matrix,
            })
            .collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Logits (n * t, vocab) for token windows `x` (n, t) of u32, position by position;
    /// dropout (attention weights, embeddings and residual branches) with `dropout_rng`.
    pub fn forward(&self, x: &Tensor, dropout_rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let (n, t) = x.dims2()?;
        let Shape { heads, d_model: d, context, dropout, .. } = self.shape;
        if t > context {
            bail!("a window of {t} tokens is longer than the model's context of {context}");
        }
        let mut rng = dropout_rng.filter(|_| dropout > 0.0);
        let dropping = rng.is_some();
        let mut drop = |h: Tensor| -> Result<Tensor> {
            match rng.as_deref_mut() {
                Some(r) => super::dropout(&h, dropout, r),
                None => Ok(h),
            }
        };
        let tokens = self.wte.as_tensor().embedding(&x.flatten_all()?)?;
        let positions = self.wpe.as_tensor().narrow(0, 0, t)?;
        // (n, t, d) flattened to rows (n * t, d) between the attention's reshapes.
        let mut h = drop(tokens.reshape((n, t, d))?.broadcast_add(&positions)?.reshape((n * t, d))?)?;
        let hd = d / heads;
        let scale = 1.0 / (hd as f64).sqrt();
        for b in &self.blocks {
            let qkv = b.attn.forward(&norm(&h, &b.ln1)?)?;
            let y = if dropping {
                // Dropout on the attention weights needs them as a tensor.
                let split = |i: usize| -> Result<Tensor> {
                    Ok(qkv.narrow(1, i * d, d)?.reshape((n, t, heads, hd))?.transpose(1, 2)?.contiguous()?)
                };
                let (q, k, v) = (split(0)?, split(1)?, split(2)?);
                let att = drop(causal_softmax(&q.matmul(&k.t()?)?, scale)?)?;
                att.matmul(&v)?.transpose(1, 2)?.reshape((n * t, d))?
            } else {
                causal_self_attention(&qkv, n, heads)?
            };
            h = (h + drop(b.attn_proj.forward(&y)?)?)?;
            let m = gelu(&b.fc.forward(&norm(&h, &b.ln2)?)?)?;
            h = (h + drop(b.mlp_proj.forward(&m)?)?)?;
        }
        Ok(norm(&h, &self.ln_f)?.matmul(&self.wte.as_tensor().t()?)?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Embedding,
    Matrix,
    Other,
}

fn norm(x: &Tensor, n: &Norm) -> Result<Tensor> {
    layer_norm(x, &n.gamma, n.beta.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn shape() -> Shape {
        Shape { layers: 2, heads: 2, d_model: 8, context: 6, vocab: 11, dropout: 0.0, bias: true }
    }

    fn build(s: Shape) -> Transformer {
        Transformer::new(s, &mut ChaCha8Rng::seed_from_u64(3)).unwrap()
    }

    #[test]
    fn parameter_count_matches_the_built_model() {
        for bias in [true, false] {
            let s = Shape { bias, ..shape() };
            assert_eq!(build(s).parameter_count() as u128, s.parameters());
        }
        // GPT-2 small (124M: 50257 tokens, 1024 positions, 12 layers of 768).
        let gpt2 = Shape { layers: 12, heads: 12, d_model: 768, context: 1024, vocab: 50257, dropout: 0.0, bias: true };
        assert_eq!(gpt2.parameters(), 124_439_808);
    }

    #[test]
    fn a_token_sees_only_itself_and_earlier_tokens() {
        let net = build(shape());
        let x = Tensor::new(&[[1u32, 2, 3, 4, 5, 6]], &Device::Cpu).unwrap();
        let changed = Tensor::new(&[[1u32, 2, 3, 9, 0, 10]], &Device::Cpu).unwrap();
        let a = net.forward(&x, None).unwrap().to_vec2::<f32>().unwrap();
        let b = net.forward(&changed, None).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a.len(), 6);
        assert_eq!(a[..3], b[..3], "positions 0-2 do not see the later tokens");
        assert_ne!(a[3], b[3]);
    }

    #[test]
    fn decay_masks_pick_matrices_embeddings_or_all() {
        let net = build(shape());
        let m = net.decay_mask(DecayOn::Matrices);
        assert_eq!(m.len(), net.vars().len());
        // Four matrices a block.
        assert_eq!(m.iter().filter(|x| **x).count(), 8);
        assert_eq!(net.decay_mask(DecayOn::MatricesAndEmbeddings).iter().filter(|x| **x).count(), 10);
        assert!(net.decay_mask(DecayOn::All).iter().all(|x| *x));
    }

    #[test]
    fn gradients_reach_every_parameter_and_a_fixed_batch_is_learned() {
        let net = build(Shape { dropout: 0.1, ..shape() });
        let x = Tensor::new(&[[1u32, 4, 1, 5, 9, 2], [6, 5, 3, 5, 8, 9]], &Device::Cpu).unwrap();
        let y = Tensor::new(&[4u32, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7], &Device::Cpu).unwrap();
        let vars = net.vars();
        let spec = crate::optim::OptimizerSpec::AdamW { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.0 };
        let mut opt = crate::optim::Optimizer::new(&spec, vars.clone()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut losses = Vec::new();
        for step in 0..60 {
            let loss = candle_nn::loss::cross_entropy(&net.forward(&x, Some(&mut rng)).unwrap(), &y).unwrap();
            losses.push(loss.to_scalar::<f32>().unwrap());
            let grads = loss.backward().unwrap();
            if step == 0 {
                for (i, v) in vars.iter().enumerate() {
                    let g = grads.get(v).unwrap_or_else(|| panic!("no gradient for parameter {i}"));
                    let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                    assert!(norm > 0.0, "parameter {i} has a zero gradient");
                }
            }
            opt.step(&grads, 0.01).unwrap();
        }
        // ln 11 = 2.40 at the start; mostly memorised after 60 steps (dropout adds noise).
        assert!((losses[0] - 11f32.ln()).abs() < 0.1, "{losses:?}");
        assert!(losses[59] < 0.5, "{losses:?}");
    }

    #[test]
    fn windows_longer_than_the_context_are_refused() {
        let net = build(shape());
        let x = Tensor::zeros((1, 7), DType::U32, &Device::Cpu).unwrap();
        let e = net.forward(&x, None).unwrap_err().to_string();
        assert!(e.contains("7 tokens is longer than the model's context of 6"), "{e}");
    }
}
