//! Batch normalisation in training mode over NCHW activations, optionally followed by a
//! ReLU, as one candle custom op with its own backward pass. Built from candle's ops it
//! is a transpose, a dozen passes over the activations forward (statistics, centring,
//! scaling, shift, the ReLU's mask) and more backward, each into a fresh buffer; here the
//! caller computes each channel's statistics once ([`channel_stats`]: it needs them for
//! the running statistics too) and the op carries them: one pass forward (normalise,
//! scale, shift and ReLU) and two backward (the channel sums, the input gradient; a third
//! for the ReLU's mask), over samples or channels in parallel. The ReLU's gradient is 0
//! where its output is 0, as PyTorch's. Checked against candle's ops below (values and
//! gradients, odd sizes, one sample, one pixel).

use super::linear::with_slices;
use super::{op_input, par_written, vectorized};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// `x` (n, c, h, w) normalised per channel with `stats`, its [`channel_stats`] (the batch's
/// mean and biased variance; `eps` inside the root), scaled by `gamma`, shifted by `beta`,
/// then through a ReLU when `relu`; with gradients for all three.
pub fn batch_norm_with_stats(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
    stats: Vec<(f64, f64)>,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, BatchNorm { eps, relu, stats })
}

struct BatchNorm {
    eps: f64,
    relu: bool,
    /// Each channel's mean and biased variance over the batch.
    stats: Vec<(f64, f64)>,
}

/// (n, c, pixels per channel) of an NCHW layout.
fn dims(d: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
    match d {
        [n, c, h, w] if *n > 0 && *c > 0 => Ok((*n, *c, h * w)),
        _ => Err(candle_core::Error::Msg(format!("batch_norm takes (n, c, h, w) activations, not {d:?}"))),
    }
}

/// Lanes of the f32 partial sums below: independent accumulators the compiler keeps in
/// one vector register.
const LANES: usize = 8;

/// (sum of `a`, sum of `a * b`) over a row, in f32 lanes then f64: a row is at most a
/// channel's pixels of one sample (1,024 for CIFAR), the rows are added in f64.
fn row_sums(a: &[f32], b: &[f32]) -> (f64, f64) {
    vectorized(|| row_sums_lanes(a, b))
}

#[inline(always)]
fn row_sums_lanes(a: &[f32], b: &[f32]) -> (f64, f64) {
    let (mut s, mut p) = ([0f32; LANES], [0f32; LANES]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            s[i] += x[i];
            p[i] += x[i] * y[i];
        }
    }
    let mut sum = s.iter().map(|&v| v as f64).sum::<f64>();
    let mut product = p.iter().map(|&v| v as f64).sum::<f64>();
    for (&x, &y) in ra.iter().zip(rb) {
        sum += x as f64;
        product += x as f64 * y as f64;
    }
    (sum, product)
}

/// Each channel's mean and biased variance over samples and pixels.
pub fn channel_stats(x: &[f32], (n, c, hw): (usize, usize, usize)) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut sum, mut sq) = (0f64, 0f64);
            for s in 0..n {
                let row = &x[(s * c + ch) * hw..][..hw];
                let (a, b) = row_sums(row, row);
                sum += a;
                sq += b;
            }
            let count = (n * hw) as f64;
            let mean = sum / count;
            (mean, (sq / count - mean * mean).max(0.0))
        })
        .collect()
}

impl CustomOp3 for BatchNorm {
    fn name(&self) -> &'static str {
        "runner-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, hw) = dims(l1.dims())?;
        let (x, gamma, beta) =
            (op_input(s1, l1, "batch_norm")?, op_input(s2, l2, "batch_norm")?, op_input(s3, l3, "batch_norm")?);
        if gamma.len() != c || beta.len() != c {
            return Err(candle_core::Error::Msg(format!("batch_norm of {c} channels takes {c} scales and shifts")));
        }
        // y = x * scale + shift per channel.
        if self.stats.len() != c {
            return Err(candle_core::Error::Msg(format!(
                "batch_norm of {c} channels given {} statistics",
                self.stats.len()
            )));
        }
        let affine: Vec<(f32, f32)> = self
            .stats
            .iter()
            .zip(gamma.iter().zip(beta))
            .map(|(&(mean, var), (&g, &b))| {
                let inv = 1.0 / (var + self.eps).sqrt();
                let scale = g as f64 * inv;
                (scale as f32, (b as f64 - mean * scale) as f32)
            })
            .collect();
        let relu = self.relu;
        let out = par_written(x.len(), c * hw, |smp, o| {
            let x = &x[smp * c * hw..][..c * hw];
            vectorized(|| {
                for ((o, x), &(scale, shift)) in o.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).zip(&affine) {
                    for (o, &v) in o.iter_mut().zip(x) {
                        let y = v * scale + shift;
                        o.write(if relu { y.max(0.0) } else { y });
                    }
                }
            })
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, hw) = dims(x.dims())?;
        let (grad, y) = (grad.contiguous()?, y.contiguous()?);
        let (eps, relu) = (self.eps, self.relu);
        let (dx, dgamma, dbeta) = with_slices(&[x, gamma, &grad, &y], |s| {
            let (x, gamma, g, y) = (s[0], s[1], s[2], s[3]);
            let stats = &self.stats;
            // The gradient reaching the normalisation: through the ReLU where it passed.
            let masked: Vec<f32>;
            let g: &[f32] = if relu {
                masked = super::relu_grad(g, y);
                &masked
            } else {
                g
            };
            // Per channel: sum of g and of g * x̂ = inv * (sum g x - mean * sum g).
            let sums: Vec<(f64, f64)> = (0..c)
                .into_par_iter()
                .map(|ch| {
                    let (mean, var) = stats[ch];
                    let inv = 1.0 / (var + eps).sqrt();
                    let (mut sg, mut sgx) = (0f64, 0f64);
                    for smp in 0..n {
                        let at = (smp * c + ch) * hw;
                        let (a, b) = row_sums(&g[at..at + hw], &x[at..at + hw]);
                        sg += a;
                        sgx += b;
                    }
                    (sg, inv * (sgx - mean * sg))
                })
                .collect();
            let count = (n * hw) as f64;
            // dx = gamma * inv / count * (count * g - sum g - x̂ * sum(g x̂)), affine in g
            // and x: a * g + b * x + d per channel.
            let coef: Vec<(f32, f32, f32)> = (0..c)
                .map(|ch| {
                    let (mean, var) = stats[ch];
                    let inv = 1.0 / (var + eps).sqrt();
                    let k = gamma[ch] as f64 * inv / count;
                    let (sg, sgxhat) = sums[ch];
                    let b = -k * sgxhat * inv;
                    ((k * count) as f32, b as f32, (-k * sg - b * mean) as f32)
                })
                .collect();
            let dx = par_written(x.len(), c * hw, |smp, d| {
                vectorized(|| {
                    for (ch, d) in d.chunks_exact_mut(hw).enumerate() {
                        let (a, b, k) = coef[ch];
                        let at = (smp * c + ch) * hw;
                        for ((d, &gv), &xv) in d.iter_mut().zip(&g[at..at + hw]).zip(&x[at..at + hw]) {
                            d.write(a * gv + b * xv + k);
                        }
                    }
                })
            });
            let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
            let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
            (dx, dgamma, dbeta)
        })?;
        super::affine_grads(x, dx, dgamma, dbeta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::test_values::{max_diff, values};
    use candle_core::Var;

    /// The op on `x` with the statistics computed from it, as the ResNet's layer calls it.
    fn batch_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, relu: bool) -> candle_core::Result<Tensor> {
        let x = x.contiguous()?;
        let stats =
            crate::model::fused::with_values(&x, |v: &[f32]| channel_stats(v, dims(x.dims()).unwrap())).unwrap();
        batch_norm_with_stats(&x, gamma, beta, eps, relu, stats)
    }

    /// candle's ops, as the ResNet's batch norm computed it before this op.
    fn reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, relu: bool) -> Tensor {
        let (n, c, h, w) = x.dims4().unwrap();
        let rows = x.transpose(0, 1).unwrap().reshape((c, n * h * w)).unwrap();
        let mean = rows.mean_keepdim(1).unwrap();
        let centred = rows.broadcast_sub(&mean).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim(1).unwrap();
        let normed = centred.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap()).unwrap();
        let y = normed
            .broadcast_mul(&gamma.reshape((c, 1)).unwrap())
            .unwrap()
            .broadcast_add(&beta.reshape((c, 1)).unwrap())
            .unwrap();
        let y = y.reshape((c, n, h, w)).unwrap().transpose(0, 1).unwrap().contiguous().unwrap();
        if relu { crate::model::layers::relu(&y).unwrap() } else { y }
    }

    #[test]
    fn matches_candle_in_values_and_gradients() {
        // One sample, one pixel, odd sizes, the ResNet's shapes.
        for (shape, relu) in [([1, 3, 2, 2], false), ([4, 2, 1, 1], true), ([3, 5, 7, 3], true), ([8, 16, 8, 8], true)]
        {
            let x = Var::from_tensor(&values(&shape, 1, 3.0)).unwrap();
            let gamma = Var::from_tensor(&(values(&[shape[1]], 2, 0.5) + 1.0).unwrap()).unwrap();
            let beta = Var::from_tensor(&values(&[shape[1]], 3, 0.5)).unwrap();
            let w = values(&shape, 4, 1.0);
            let ours = batch_norm(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5, relu).unwrap();
            let theirs = reference(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), relu);
            assert!(max_diff(&ours, &theirs) < 1e-5, "{shape:?}: values differ by {}", max_diff(&ours, &theirs));
            let a = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let b = (theirs * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for (what, v) in [("x", &x), ("gamma", &gamma), ("beta", &beta)] {
                let (ga, gb) = (a.get(v).unwrap(), b.get(v).unwrap());
                assert!(max_diff(ga, gb) < 1e-4, "{shape:?}: d{what} differs by {}", max_diff(ga, gb));
            }
        }
    }
}
