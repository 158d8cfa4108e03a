//! A decoder-only transformer language model in the shape of GPT-2 (and nanoGPT): token
//! and learned positional embeddings, `layers` pre-layer-norm blocks of causal
//! multi-head self-attention and a 4x GELU MLP, a final layer norm, and output logits
//! from the token embedding (tied). Initialised as GPT-2: N(0, 0.02) for embeddings and
//! linear weights, the residual projections' N(0, 0.02 / sqrt(2 * layers)), biases 0,
//! layer norms at scale 1 and shift 0. Linear weights are stored (in, out). Parameter
//! names are those of the PyTorch module in bench/transformer_fidelity.py (`wte.weight`,
//! `blocks.0.attn.weight`, `ln_f.bias`), matrices saved (out, in) as PyTorch holds them.

use super::layers::layer_norm;
use super::network::{Batch, Kernels, Mode, Named, Network, Step, StepLoss, autograd_loss_and_grads};
use super::spec::too_many;
use super::{DataShape, Kind};
use crate::kernels::attention::causal_softmax;
use crate::kernels::gelu::gelu;
use crate::kernels::linear::linear;
use crate::kernels::self_attention::causal_self_attention;
use crate::params::{ParamSource, Rule};
use anyhow::{Result, bail};
use candle_core::backprop::GradStore;
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

/// `kind = "transformer"`: a GPT-style language model over windows of tokens.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TransformerSpec {
    pub layers: u64,
    pub heads: u64,
    pub d_model: u64,
    /// Positions with an embedding; the data set's context when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<u64>,
    pub dropout: f64,
    pub bias: bool,
    pub weight_decay_on: DecayOn,
}

impl TransformerSpec {
    /// The shape for windows of `features` tokens and a vocabulary of `outputs`.
    pub fn shape(&self, features: usize, outputs: usize) -> Shape {
        Shape {
            layers: self.layers as usize,
            heads: self.heads as usize,
            d_model: self.d_model as usize,
            context: self.context.map_or(features, |c| c as usize),
            vocab: outputs,
            dropout: self.dropout,
            bias: self.bias,
        }
    }
}

impl Kind for TransformerSpec {
    const KIND: &'static str = "transformer";
    const READS_TOKENS: bool = true;

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
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
        Ok(TransformerSpec { layers, heads, d_model, context, dropout, bias, weight_decay_on })
    }

    fn check(&self, data: DataShape) -> Result<u128, String> {
        let shape = self.shape(data.features, data.outputs);
        if shape.context < data.features {
            return Err(format!(
                "the model's context = {} is shorter than the data's windows of {} tokens (dataset.context); \
                 leave model.context out to use the data's",
                shape.context, data.features
            ));
        }
        too_many(shape.parameters(), "use fewer layers or a smaller d_model")
    }

    fn build(
        &self,
        data: DataShape,
        rng: &mut ChaCha8Rng,
        kernels: Kernels,
        device: &Device,
    ) -> Result<Box<dyn Network>> {
        let shape = self.shape(data.features, data.outputs);
        Ok(Box::new(Transformer::new(shape, self.weight_decay_on, rng, device)?.with_kernels(kernels)))
    }
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
    /// `x` (rows, in) to (rows, out); `plain`: candle's product and add.
    fn forward(&self, x: &Tensor, plain: bool) -> Result<Tensor> {
        Ok(match &self.b {
            Some(b) if plain => x.matmul(self.w.as_tensor())?.broadcast_add(b.as_tensor())?,
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
    decay_on: DecayOn,
    /// Plain candle ops only (no CPU kernels).
    plain: bool,
    /// The plain path's causal mask for windows of the length it was made for, kept on the
    /// model's device (made once, not sent over every step).
    mask: std::sync::Mutex<Option<Tensor>>,
}

const STD: f32 = 0.02;

fn normal(rng: &mut ChaCha8Rng, shape: &[usize], std: f32, dev: &Device) -> Result<Var> {
    let normal = Normal::new(0.0f32, std)?;
    let values: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| normal.sample(rng)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(values, shape, dev)?)?)
}

impl Transformer {
    pub fn new(shape: Shape, decay_on: DecayOn, rng: &mut ChaCha8Rng, dev: &Device) -> Result<Transformer> {
        let Shape { layers, heads, d_model: d, context, vocab, bias, .. } = shape;
        if heads == 0 || d % heads != 0 {
            bail!("d_model = {d} is not a multiple of heads = {heads}");
        }
        let zeros =
            |n: usize| -> Result<Option<Var>> { Ok(if bias { Some(Var::zeros(n, DType::F32, dev)?) } else { None }) };
        let norm = || -> Result<Norm> { Ok(Norm { gamma: Var::ones(d, DType::F32, dev)?, beta: zeros(d)? }) };
        let residual_std = STD / (2.0 * layers as f32).sqrt();
        let wte = normal(rng, &[vocab, d], STD, dev)?;
        let wpe = normal(rng, &[context, d], STD, dev)?;
        let mut blocks = Vec::with_capacity(layers);
        for _ in 0..layers {
            blocks.push(Block {
                ln1: norm()?,
                attn: Linear { w: normal(rng, &[d, 3 * d], STD, dev)?, b: zeros(3 * d)? },
                attn_proj: Linear { w: normal(rng, &[d, d], residual_std, dev)?, b: zeros(d)? },
                ln2: norm()?,
                fc: Linear { w: normal(rng, &[d, 4 * d], STD, dev)?, b: zeros(4 * d)? },
                mlp_proj: Linear { w: normal(rng, &[4 * d, d], residual_std, dev)?, b: zeros(d)? },
            });
        }
        Ok(Transformer { shape, wte, wpe, blocks, ln_f: norm()?, decay_on, plain: false, mask: Default::default() })
    }

    /// Every parameter with its name and what it is (embedding, matrix or other: biases
    /// and norms), in a fixed order: the embeddings, each block's (ln1, attention, its
    /// projection, ln2, the MLP's two layers; each weight then its bias), ln_f.
    fn roles(&self) -> Vec<(String, &Var, Role)> {
        let mut out = vec![
            ("wte.weight".to_string(), &self.wte, Role::Embedding),
            ("wpe.weight".to_string(), &self.wpe, Role::Embedding),
        ];
        fn norm(p: String, n: &Norm) -> Vec<(String, &Var, Role)> {
            let mut v = vec![(format!("{p}.weight"), &n.gamma, Role::Other)];
            v.extend(n.beta.iter().map(|b| (format!("{p}.bias"), b, Role::Other)));
            v
        }
        fn linear(p: String, l: &Linear) -> Vec<(String, &Var, Role)> {
            let mut v = vec![(format!("{p}.weight"), &l.w, Role::Matrix)];
            v.extend(l.b.iter().map(|b| (format!("{p}.bias"), b, Role::Other)));
            v
        }
        for (i, b) in self.blocks.iter().enumerate() {
            out.extend(norm(format!("blocks.{i}.ln1"), &b.ln1));
            out.extend(linear(format!("blocks.{i}.attn"), &b.attn));
            out.extend(linear(format!("blocks.{i}.attn_proj"), &b.attn_proj));
            out.extend(norm(format!("blocks.{i}.ln2"), &b.ln2));
            out.extend(linear(format!("blocks.{i}.fc"), &b.fc));
            out.extend(linear(format!("blocks.{i}.mlp_proj"), &b.mlp_proj));
        }
        out.extend(norm("ln_f".to_string(), &self.ln_f));
        out
    }

    /// Logits (n * t, vocab) for token windows `x` (n, t) of u32, position by position;
    /// dropout (attention weights, embeddings and residual branches) with `dropout_rng`.
    fn run(&self, x: &Tensor, dropout_rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
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
        let plain = self.plain || !x.device().is_cpu();
        let normalise = |x: &Tensor, n: &Norm| if plain { norm_plain(x, n) } else { norm(x, n) };
        // Plain attention masks the future with -inf before candle's softmax.
        let mask = if plain {
            let mut kept = self.mask.lock().unwrap_or_else(|p| p.into_inner());
            match &*kept {
                Some(m) if m.dims() == [t, t] && m.device().same_device(x.device()) => Some(m.clone()),
                _ => {
                    let future: Vec<f32> =
                        (0..t * t).map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 }).collect();
                    let m = Tensor::from_vec(future, (t, t), x.device())?;
                    *kept = Some(m.clone());
                    Some(m)
                }
            }
        } else {
            None
        };
        for b in &self.blocks {
            let qkv = b.attn.forward(&normalise(&h, &b.ln1)?, plain)?;
            let y = if plain || dropping {
                // The attention weights as a tensor: for dropout on them, or for candle's
                // masked softmax.
                let split = |i: usize| -> Result<Tensor> {
                    Ok(qkv.narrow(1, i * d, d)?.reshape((n, t, heads, hd))?.transpose(1, 2)?.contiguous()?)
                };
                let (q, k, v) = (split(0)?, split(1)?, split(2)?);
                let scores = q.matmul(&k.t()?)?;
                let weights = match &mask {
                    Some(mask) => {
                        candle_nn::ops::softmax(&(scores * scale)?.broadcast_add(mask)?, candle_core::D::Minus1)?
                    }
                    None => causal_softmax(&scores, scale)?,
                };
                drop(weights)?.matmul(&v)?.transpose(1, 2)?.reshape((n * t, d))?
            } else {
                causal_self_attention(&qkv, n, heads)?
            };
            h = (h + drop(b.attn_proj.forward(&y, plain)?)?)?;
            let z = b.fc.forward(&normalise(&h, &b.ln2)?, plain)?;
            let m = if plain { z.gelu_erf()? } else { gelu(&z)? };
            h = (h + drop(b.mlp_proj.forward(&m, plain)?)?)?;
        }
        Ok(normalise(&h, &self.ln_f)?.matmul(&self.wte.as_tensor().t()?)?)
    }
}

impl Transformer {
    /// The same network on `kernels` (plain: candle's ops only).
    pub fn with_kernels(self, kernels: Kernels) -> Transformer {
        Transformer { plain: kernels == super::network::Kernels::Plain, ..self }
    }
}

impl Network for Transformer {
    /// Weight decay as `weight_decay_on` says: matrices; matrices and embeddings; all.
    fn named(&self) -> Vec<Named> {
        self.roles()
            .into_iter()
            .map(|(name, var, role)| {
                let decay = match self.decay_on {
                    DecayOn::All => true,
                    DecayOn::MatricesAndEmbeddings => role != Role::Other,
                    DecayOn::Matrices => role == Role::Matrix,
                };
                if role == Role::Matrix { Named::matrix(name, var, decay) } else { Named::param(name, var, decay) }
            })
            .collect()
    }

    /// Logits (n * t, vocab) for token windows `x` (n, t) of u32, position by position;
    /// dropout (attention weights, embeddings and residual branches) in training.
    fn forward(&self, x: &Tensor, mut mode: Mode<'_>) -> Result<Tensor> {
        self.run(x, mode.rng())
    }

    /// No batch statistics: a batch's parts may train at once on several threads.
    fn loss_and_grads(&self, batch: &dyn Batch, step: &mut Step<'_>, grads: &mut GradStore) -> Result<StepLoss> {
        autograd_loss_and_grads(self, batch, step, grads, true)
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

/// Layer normalisation as candle ops (PyTorch's: eps 1e-5, biased variance).
fn norm_plain(x: &Tensor, n: &Norm) -> Result<Tensor> {
    let mean = x.mean_keepdim(1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(1)?;
    let y = centered.broadcast_div(&(var + super::layers::EPS)?.sqrt()?)?.broadcast_mul(n.gamma.as_tensor())?;
    Ok(match &n.beta {
        Some(b) => y.broadcast_add(b.as_tensor())?,
        None => y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn shape() -> Shape {
        Shape { layers: 2, heads: 2, d_model: 8, context: 6, vocab: 11, dropout: 0.0, bias: true }
    }

    fn build(s: Shape) -> Transformer {
        build_with(s, DecayOn::Matrices)
    }

    fn build_with(s: Shape, on: DecayOn) -> Transformer {
        Transformer::new(s, on, &mut ChaCha8Rng::seed_from_u64(3), &Device::Cpu).unwrap()
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
        let a = net.run(&x, None).unwrap().to_vec2::<f32>().unwrap();
        let b = net.run(&changed, None).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a.len(), 6);
        assert_eq!(a[..3], b[..3], "positions 0-2 do not see the later tokens");
        assert_ne!(a[3], b[3]);
    }

    #[test]
    fn decay_masks_pick_matrices_embeddings_or_all() {
        let mask = |on| build_with(shape(), on).decay_mask();
        let m = mask(DecayOn::Matrices);
        assert_eq!(m.len(), build(shape()).vars().len());
        // Four matrices a block.
        assert_eq!(m.iter().filter(|x| **x).count(), 8);
        assert_eq!(mask(DecayOn::MatricesAndEmbeddings).iter().filter(|x| **x).count(), 10);
        assert!(mask(DecayOn::All).iter().all(|x| *x));
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
            let loss = candle_nn::loss::cross_entropy(&net.run(&x, Some(&mut rng)).unwrap(), &y).unwrap();
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
        let e = net.run(&x, None).unwrap_err().to_string();
        assert!(e.contains("7 tokens is longer than the model's context of 6"), "{e}");
    }
}
