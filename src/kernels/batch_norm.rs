//! Batch normalisation in training mode over NCHW activations, optionally followed by a
//! ReLU, as one candle custom op with its own backward pass. Built from candle's ops it
//! is a transpose, a dozen passes over the activations forward (statistics, centring,
//! scaling, shift, the ReLU's mask) and more backward, each into a fresh buffer; here the
//! caller computes each channel's statistics once ([`channel_stats`]: it needs them for
//! the running statistics too) and the op carries them: one pass forward (normalise,
//! scale, shift and ReLU) and two backward (the channel sums, the input gradient; the
//! ReLU's mask applied as the gradient is read), over samples in parallel. The ReLU's gradient is 0
//! where its output is 0, as PyTorch's. Checked against candle's ops below (values and
//! gradients, odd sizes, one sample, one pixel).

use super::linear::with_slices;
use super::{op_input, par_written, vectorized};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use pulp::{Simd, WithSimd};
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

/// (sum of `a`, sum of `a * b`) over a row, in f32 vector lanes (two vectors each, two
/// chains of additions) then f64: a row is at most a channel's pixels of one sample
/// (1,024 for CIFAR), the rows are added in f64. With `mask`, `a` counts only where
/// `mask` > 0 (the gradient through a ReLU whose output is `mask`).
#[inline(always)]
fn row_sums<S: Simd>(simd: S, a: &[f32], b: &[f32], mask: Option<&[f32]>) -> (f64, f64) {
    let lanes = S::F32_LANES;
    assert!(b.len() == a.len() && mask.is_none_or(|m| m.len() == a.len()));
    let zero = simd.splat_f32s(0.0);
    let (mut s, mut p) = ([zero; 2], [zero; 2]);
    let load = |v: &[f32], at: usize| -> S::f32s {
        // SAFETY: at + lanes <= len (the loop below) and every slice is len long.
        unsafe { v.as_ptr().add(at).cast::<S::f32s>().read_unaligned() }
    };
    let len = a.len() / (2 * lanes) * (2 * lanes);
    let mut at = 0;
    while at < len {
        for k in 0..2 {
            let i = at + k * lanes;
            let x = match mask {
                None => load(a, i),
                Some(m) => simd.select_f32s(simd.greater_than_f32s(load(m, i), zero), load(a, i), zero),
            };
            s[k] = simd.add_f32s(s[k], x);
            p[k] = simd.mul_add_e_f32s(x, load(b, i), p[k]);
        }
        at += 2 * lanes;
    }
    let mut sum = simd.reduce_sum_f32s(simd.add_f32s(s[0], s[1])) as f64;
    let mut product = simd.reduce_sum_f32s(simd.add_f32s(p[0], p[1])) as f64;
    for i in len..a.len() {
        let x = if mask.is_none_or(|m| m[i] > 0.0) { a[i] } else { 0.0 };
        sum += x as f64;
        product += x as f64 * b[i] as f64;
    }
    (sum, product)
}

/// A row of [`per_channel`]: (a, b, mask) for [`row_sums`].
type Row<'a> = (&'a [f32], &'a [f32], Option<&'a [f32]>);

/// Per channel, the [`row_sums`] of `row(sample, channel)` summed over the samples. The
/// activations are read in memory order (each sample's channels one after the other: a
/// channel's rows are far apart, and reading them channel by channel starts a new stream
/// every row), samples in one contiguous part per thread, the parts' sums added in part
/// order.
fn per_channel<'a>(n: usize, c: usize, row: impl Fn(usize, usize) -> Row<'a> + Sync) -> Vec<(f64, f64)> {
    struct Part<'r, F> {
        samples: std::ops::Range<usize>,
        c: usize,
        row: &'r F,
    }
    impl<'a, F: Fn(usize, usize) -> Row<'a>> WithSimd for Part<'_, F> {
        type Output = Vec<(f64, f64)>;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> Self::Output {
            let mut acc = vec![(0f64, 0f64); self.c];
            for smp in self.samples {
                for (ch, a) in acc.iter_mut().enumerate() {
                    let (x, y, mask) = (self.row)(smp, ch);
                    let (sx, sy) = row_sums(simd, x, y, mask);
                    (a.0, a.1) = (a.0 + sx, a.1 + sy);
                }
            }
            acc
        }
    }
    let part = n.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let partials: Vec<Vec<(f64, f64)>> = (0..n.div_ceil(part))
        .into_par_iter()
        .map(|p| pulp::Arch::new().dispatch(Part { samples: p * part..((p + 1) * part).min(n), c, row: &row }))
        .collect();
    let mut sums = vec![(0f64, 0f64); c];
    for partial in partials {
        sums.iter_mut().zip(partial).for_each(|(s, p)| (s.0, s.1) = (s.0 + p.0, s.1 + p.1));
    }
    sums
}

/// Each channel's mean and biased variance over samples and pixels.
pub fn channel_stats(x: &[f32], (n, c, hw): (usize, usize, usize)) -> Vec<(f64, f64)> {
    let sums = per_channel(n, c, |smp, ch| {
        let row = &x[(smp * c + ch) * hw..][..hw];
        (row, row, None)
    });
    let count = (n * hw) as f64;
    sums.iter()
        .map(|&(sum, sq)| {
            let mean = sum / count;
            (mean, (sq / count - mean * mean).max(0.0))
        })
        .collect()
}

/// `x` (samples of `c` channels of `hw` values) normalised with `stats` (each channel's
/// mean and biased variance), scaled by `gamma`, shifted by `beta`, then through a ReLU
/// when `relu`: one pass, samples in parallel.
pub(crate) fn normalize(
    x: &[f32],
    (c, hw): (usize, usize),
    (gamma, beta): (&[f32], &[f32]),
    stats: &[(f64, f64)],
    eps: f64,
    relu: bool,
) -> Vec<f32> {
    // y = x * scale + shift per channel.
    let affine: Vec<(f32, f32)> = stats
        .iter()
        .zip(gamma.iter().zip(beta))
        .map(|(&(mean, var), (&g, &b))| {
            let inv = 1.0 / (var + eps).sqrt();
            let scale = g as f64 * inv;
            (scale as f32, (b as f64 - mean * scale) as f32)
        })
        .collect();
    par_written(x.len(), c * hw, |smp, o| {
        let x = &x[smp * c * hw..][..c * hw];
        vectorized(|| {
            for ((o, x), &(scale, shift)) in o.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).zip(&affine) {
                for (o, &v) in o.iter_mut().zip(x) {
                    let y = v * scale + shift;
                    o.write(if relu { y.max(0.0) } else { y });
                }
            }
        })
    })
}

/// The gradients of [`normalize`] for `x` (n samples of `c` channels of `hw` values):
/// (d x, d gamma, d beta), given the gradient `g` of its output `y`.
pub(crate) fn backward(
    (x, gamma, g, y): (&[f32], &[f32], &[f32], &[f32]),
    (n, c, hw): (usize, usize, usize),
    stats: &[(f64, f64)],
    eps: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    // The gradient reaching the normalisation: through the ReLU where it passed
    // (where y > 0), applied as the values are read.
    let mask = relu.then_some(y);
    // Per channel: sum of g and of g * x̂ = inv * (sum g x - mean * sum g).
    let raw = per_channel(n, c, |smp, ch| {
        let at = (smp * c + ch) * hw;
        (&g[at..at + hw], &x[at..at + hw], mask.map(|m| &m[at..at + hw]))
    });
    let sums: Vec<(f64, f64)> =
        raw.iter().zip(stats).map(|(&(sg, sgx), &(mean, var))| (sg, (sgx - mean * sg) / (var + eps).sqrt())).collect();
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
                let (g, x) = (&g[at..at + hw], &x[at..at + hw]);
                match mask {
                    None => {
                        for ((d, &gv), &xv) in d.iter_mut().zip(g).zip(x) {
                            d.write(a * gv + b * xv + k);
                        }
                    }
                    Some(m) => {
                        for (((d, &gv), &xv), &yv) in d.iter_mut().zip(g).zip(x).zip(&m[at..at + hw]) {
                            let gv = if yv > 0.0 { gv } else { 0.0 };
                            d.write(a * gv + b * xv + k);
                        }
                    }
                }
            }
        })
    });
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    (dx, dgamma, dbeta)
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
        if self.stats.len() != c {
            return Err(candle_core::Error::Msg(format!(
                "batch_norm of {c} channels given {} statistics",
                self.stats.len()
            )));
        }
        let out = normalize(x, (c, hw), (gamma, beta), &self.stats, self.eps, self.relu);
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
        let (dx, dgamma, dbeta) = with_slices(&[x, gamma, &grad, &y], |s| {
            backward((s[0], s[1], s[2], s[3]), (n, c, hw), &self.stats, self.eps, self.relu)
        })?;
        super::affine_grads(x, dx, dgamma, dbeta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values::{max_diff, values};
    use candle_core::Var;

    /// The op on `x` with the statistics computed from it, as the ResNet's layer calls it.
    fn batch_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, relu: bool) -> candle_core::Result<Tensor> {
        let x = x.contiguous()?;
        let stats = crate::kernels::with_values(&x, |v: &[f32]| channel_stats(v, dims(x.dims()).unwrap())).unwrap();
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
        if relu { crate::kernels::test_values::relu(&y).unwrap() } else { y }
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
