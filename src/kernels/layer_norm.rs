//! Layer normalisation over the last dimension as PyTorch's `LayerNorm` computes it
//! (biased variance): its normalising step `(x - mean) / sqrt(var + eps)` alone
//! ([`normalize`]), and with the scale and shift ([`layer_norm`]), as candle custom ops
//! with their own backward passes: one pass each way over the rows (in parallel, the scale
//! and shift gradients summed per part of the rows in part order) where candle's ops take
//! eight forward and a dozen backward, two of them strided reductions over the rows.
//! Checked against candle's ops below.

use super::linear::with_slices;
use super::op_input;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Rows per rayon task.
const ROWS: usize = 64;

/// Each row of `x` (…, d) at mean 0 and variance 1, with gradients.
pub fn normalize(x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Normalize { eps: eps as f32 })
}

struct Normalize {
    eps: f32,
}

/// The mean and 1 / sqrt(var + eps) of a row, in f64 sums.
fn stats(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
}

fn width(l: &Layout) -> candle_core::Result<usize> {
    match l.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => Err(candle_core::Error::Msg(format!("layer norm takes (…, d) values, not {:?}", l.dims()))),
    }
}

impl CustomOp1 for Normalize {
    fn name(&self) -> &'static str {
        "runner-layer-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, d) = (op_input(s, l, "layer norm")?, width(l)?);
        let mut out = vec![0f32; x.len()];
        let eps = self.eps;
        out.par_chunks_mut(d * ROWS).zip(x.par_chunks(d * ROWS)).for_each(|(o, x)| {
            for (o, x) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                let (mean, inv) = stats(x, eps);
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = (v - mean) * inv;
                }
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.contiguous()?.apply_op2(&grad.contiguous()?, NormalizeGrad { eps: self.eps })?))
    }
}

/// `(g - mean(g) - x̂ mean(g x̂)) / sqrt(var + eps)` per row, from `x` and the output's
/// gradient `g`.
struct NormalizeGrad {
    eps: f32,
}

impl CustomOp2 for NormalizeGrad {
    fn name(&self) -> &'static str {
        "runner-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, g, d) = (op_input(s1, l1, "layer norm")?, op_input(s2, l2, "layer norm")?, width(l1)?);
        if x.len() != g.len() {
            return Err(candle_core::Error::Msg("layer norm's gradient has another shape than its input".into()));
        }
        let mut out = vec![0f32; x.len()];
        let eps = self.eps;
        out.par_chunks_mut(d * ROWS).zip(x.par_chunks(d * ROWS).zip(g.par_chunks(d * ROWS))).for_each(|(o, (x, g))| {
            for ((o, x), g) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(g.chunks_exact(d)) {
                let (mean, inv) = stats(x, eps);
                let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                for (&v, &g) in x.iter().zip(g) {
                    sum_g += g;
                    sum_gx += g * (v - mean) * inv;
                }
                let (mean_g, mean_gx) = (sum_g / d as f32, sum_gx / d as f32);
                for ((o, &v), &g) in o.iter_mut().zip(x).zip(g) {
                    *o = inv * (g - mean_g - (v - mean) * inv * mean_gx);
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `normalize(x) * gamma + beta` over the last dimension of `x`, with gradients for all
/// three (`beta` may be a constant zero vector for a layer norm without shift).
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, Affine { eps: eps as f32 })
}

struct Affine {
    eps: f32,
}

impl CustomOp3 for Affine {
    fn name(&self) -> &'static str {
        "runner-layer-norm-affine"
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
        let d = width(l1)?;
        let (x, gamma, beta) =
            (op_input(s1, l1, "layer norm")?, op_input(s2, l2, "layer norm")?, op_input(s3, l3, "layer norm")?);
        if gamma.len() != d || beta.len() != d {
            return Err(candle_core::Error::Msg(format!(
                "layer norm of {d} values per row takes a scale and a shift of {d}, not {} and {}",
                gamma.len(),
                beta.len()
            )));
        }
        let mut out = vec![0f32; x.len()];
        let eps = self.eps;
        out.par_chunks_mut(d * ROWS).zip(x.par_chunks(d * ROWS)).for_each(|(o, x)| {
            for (o, x) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                let (mean, inv) = stats(x, eps);
                for (((o, &v), &g), &b) in o.iter_mut().zip(x).zip(gamma).zip(beta) {
                    *o = (v - mean) * inv * g + b;
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = *x.dims().last().unwrap_or(&0);
        let grad = grad.contiguous()?;
        let eps = self.eps;
        let (dx, dgamma, dbeta) = with_slices(&[x, gamma, &grad], |s| {
            let (x, gamma, g) = (s[0], s[1], s[2]);
            let rows = x.len() / d.max(1);
            let part = rows.div_ceil(rayon::current_num_threads().max(1)).max(1);
            let mut dx = vec![0f32; x.len()];
            // Each part's rows: dx, and its sums for the scale's and shift's gradients.
            let sums: Vec<(Vec<f32>, Vec<f32>)> = dx
                .par_chunks_mut(part * d)
                .zip(x.par_chunks(part * d).zip(g.par_chunks(part * d)))
                .map(|(dx, (x, g))| {
                    let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
                    let mut dxhat = vec![0f32; d];
                    for ((dx, x), g) in dx.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(g.chunks_exact(d)) {
                        let (mean, inv) = stats(x, eps);
                        let (mut sum, mut sum_xhat) = (0f32, 0f32);
                        for j in 0..d {
                            let xhat = (x[j] - mean) * inv;
                            dgamma[j] += g[j] * xhat;
                            dbeta[j] += g[j];
                            dxhat[j] = g[j] * gamma[j];
                            sum += dxhat[j];
                            sum_xhat += dxhat[j] * xhat;
                        }
                        let (mean_g, mean_gx) = (sum / d as f32, sum_xhat / d as f32);
                        for j in 0..d {
                            dx[j] = inv * (dxhat[j] - mean_g - (x[j] - mean) * inv * mean_gx);
                        }
                    }
                    (dgamma, dbeta)
                })
                .collect();
            let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
            for (pg, pb) in &sums {
                dgamma.iter_mut().zip(pg).for_each(|(s, v)| *s += v);
                dbeta.iter_mut().zip(pb).for_each(|(s, v)| *s += v);
            }
            (dx, dgamma, dbeta)
        })?;
        super::affine_grads(x, dx, dgamma, dbeta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};

    /// candle's own ops.
    fn reference(x: &Tensor) -> Tensor {
        let mean = x.mean_keepdim(D::Minus1).unwrap();
        let c = x.broadcast_sub(&mean).unwrap();
        let var = c.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        c.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap()).unwrap()
    }

    #[test]
    fn the_affine_op_matches_candle_in_values_and_gradients() {
        for (rows, d) in [(1usize, 1usize), (3, 5), (2 * ROWS + 3, 33), (97, 128)] {
            let v: Vec<f32> = (0..rows * d).map(|i| ((i * 7919 % 997) as f32 / 50.0) - 7.0).collect();
            let x = Var::from_tensor(&Tensor::from_vec(v, (rows, d), &Device::Cpu).unwrap()).unwrap();
            let gamma = Var::from_tensor(
                &Tensor::from_vec((0..d).map(|j| 0.5 + (j % 7) as f32 / 3.0).collect::<Vec<_>>(), d, &Device::Cpu)
                    .unwrap(),
            )
            .unwrap();
            let beta = Var::from_tensor(
                &Tensor::from_vec((0..d).map(|j| (j % 5) as f32 - 2.0).collect::<Vec<_>>(), d, &Device::Cpu).unwrap(),
            )
            .unwrap();
            let w: Vec<f32> = (0..rows * d).map(|i| (i % 11) as f32 - 5.0).collect();
            let w = Tensor::from_vec(w, (rows, d), &Device::Cpu).unwrap();
            let ours = layer_norm(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5).unwrap();
            let theirs = reference(x.as_tensor())
                .broadcast_mul(gamma.as_tensor())
                .unwrap()
                .broadcast_add(beta.as_tensor())
                .unwrap();
            let diff = |a: &Tensor, b: &Tensor| {
                (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
            };
            assert!(diff(&ours, &theirs) < 5e-5, "({rows}, {d}): values differ by {}", diff(&ours, &theirs));
            let a = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let b = (theirs * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for (what, v) in [("x", &x), ("gamma", &gamma), ("beta", &beta)] {
                let (ga, gb) = (a.get(v).unwrap(), b.get(v).unwrap());
                let scale =
                    gb.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
                assert!(diff(ga, gb) < 1e-5 * scale, "({rows}, {d}): d{what} differs by {}", diff(ga, gb));
            }
        }
    }

    #[test]
    fn matches_candle_in_values_and_gradients() {
        // A row of one, odd widths, more rows than a task holds, values far from 0.
        for (rows, d) in [(1usize, 1usize), (3, 5), (2 * ROWS + 3, 33), (4, 128)] {
            let v: Vec<f32> = (0..rows * d).map(|i| ((i * 7919 % 997) as f32 / 50.0) + 3.0).collect();
            let x = Var::from_tensor(&Tensor::from_vec(v, (rows, d), &Device::Cpu).unwrap()).unwrap();
            let w: Vec<f32> = (0..rows * d).map(|i| (i % 11) as f32 - 5.0).collect();
            let w = Tensor::from_vec(w, (rows, d), &Device::Cpu).unwrap();
            let ours = normalize(x.as_tensor(), 1e-5).unwrap();
            let theirs = reference(x.as_tensor());
            let diff = |a: &Tensor, b: &Tensor| {
                (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
            };
            assert!(diff(&ours, &theirs) < 2e-5, "({rows}, {d}): values differ by {}", diff(&ours, &theirs));
            let a = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let b = (theirs * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let (ga, gb) = (a.get(&x).unwrap(), b.get(&x).unwrap());
            assert!(diff(ga, gb) < 1e-4, "({rows}, {d}): gradients differ by {}", diff(ga, gb));
        }
    }
}
