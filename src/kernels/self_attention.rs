//! Causal multi-head self-attention as one candle custom op with its own backward pass,
//! from the packed query/key/value projections to the heads' concatenated outputs:
//! `qkv` (n * t, 3 d) → `y` (n * t, d), where for each sample and head
//! `y_h = softmax(q_h k_hᵀ * scale + causal mask) v_h`.
//!
//! Built from candle's ops it is a dozen tensors of the batch's size forward (the three
//! slices, their transposes to heads, the scores, the weights, the transpose back) and as
//! many again backward, each with candle's zero-filled gradient buffer and an add. Here
//! every (sample, head) pair is a few `gemm` products on strided views of `qkv`, pairs in
//! parallel; the backward pass recomputes the attention weights from q and k (as
//! FlashAttention does) instead of keeping them. Without attention dropout only (the
//! transformer builds the graph from candle's ops and [`super::attention`] for dropout).
//! Checked against candle's ops below (values and gradients, odd sizes, one position).

use super::{matmul, op_input};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The shape: `n` windows of `t` positions, `heads` heads of `d / heads` values.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n: usize,
    t: usize,
    d: usize,
    heads: usize,
}

impl Dims {
    fn of(l: &Layout, n: usize, heads: usize) -> candle_core::Result<Dims> {
        match l.dims() {
            [rows, w] if n > 0 && rows % n == 0 && w % 3 == 0 && heads > 0 && (w / 3) % heads == 0 => {
                Ok(Dims { n, t: rows / n, d: w / 3, heads })
            }
            d => Err(candle_core::Error::Msg(format!(
                "self_attention takes (n * t, 3 d) projections for {n} windows and {heads} heads, not {d:?}"
            ))),
        }
    }

    fn hd(&self) -> usize {
        self.d / self.heads
    }
}

/// Causal self-attention of the projections `qkv` (n * t, 3 d): queries, keys and values
/// side by side, each `heads` blocks of d / heads columns; gives (n * t, d).
pub fn causal_self_attention(qkv: &Tensor, n: usize, heads: usize) -> candle_core::Result<Tensor> {
    qkv.contiguous()?.apply_op1(SelfAttention { n, heads })
}

struct SelfAttention {
    n: usize,
    heads: usize,
}

/// The attention weights of one (sample, head): `p` (t x t) = causal softmax of
/// `q kᵀ * scale`, with `q` and `k` at `qkv` offsets `q0` and `k0`, row stride `3 d`.
fn weights(qkv: &[f32], (q0, k0): (usize, usize), g: Dims, scale: f32, p: &mut [f32]) {
    let (t, hd, rs) = (g.t, g.hd(), 3 * g.d);
    matmul((t, t, hd), p, false, &qkv[q0..], (rs, 1), &qkv[k0..], (1, rs));
    pulp::Arch::new().dispatch(CausalSoftmax { p, t, scale });
}

/// Each row `q` of the t x t scores `p`: the softmax of its first q + 1 entries (times
/// `scale`), zeros after; compiled for the CPU's widest vectors (see gelu.rs's `Forward`).
struct CausalSoftmax<'a> {
    p: &'a mut [f32],
    t: usize,
    scale: f32,
}

impl pulp::WithSimd for CausalSoftmax<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let scale = self.scale;
        for (q, row) in self.p.chunks_exact_mut(self.t).enumerate() {
            let max = row[..=q].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            for v in &mut row[..=q] {
                *v = super::fast_math::exp((*v - max) * scale);
            }
            let sum: f32 = row[..=q].iter().sum();
            let inv = 1.0 / sum;
            row[..=q].iter_mut().for_each(|v| *v *= inv);
            row[q + 1..].iter_mut().for_each(|v| *v = 0.0);
        }
    }
}

/// Offsets in `qkv` of (sample `s`, head `h`)'s queries, keys and values.
fn offsets(g: Dims, s: usize, h: usize) -> (usize, usize, usize) {
    let base = s * g.t * 3 * g.d + h * g.hd();
    (base, base + g.d, base + 2 * g.d)
}

impl CustomOp1 for SelfAttention {
    fn name(&self) -> &'static str {
        "runner-causal-self-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Dims::of(l, self.n, self.heads)?;
        let qkv = op_input(s, l, "self_attention")?;
        let (t, d, hd) = (g.t, g.d, g.hd());
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = vec![0f32; g.n * t * d];
        // Each sample's rows of the output; its heads in turn (their columns interleave).
        out.par_chunks_mut(t * d).enumerate().for_each(|(smp, y)| {
            let mut p = vec![0f32; t * t];
            for h in 0..g.heads {
                let (q0, k0, v0) = offsets(g, smp, h);
                weights(qkv, (q0, k0), g, scale, &mut p);
                // y_h (t x hd, row stride d) = p (t x t) @ v_h (t x hd, row stride 3 d).
                // SAFETY: this task owns the sample's rows of `out`; the head's columns
                // h*hd..(h+1)*hd of each row are in bounds.
                unsafe {
                    super::matmul_raw(
                        (t, hd, t),
                        (y.as_mut_ptr().add(h * hd), d),
                        false,
                        &p,
                        (t, 1),
                        &qkv[v0..],
                        (3 * d, 1),
                    )
                };
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((g.n * t, d))))
    }

    fn bwd(&self, qkv: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(qkv.contiguous()?.apply_op2(&grad.contiguous()?, SelfAttentionGrad { n: self.n, heads: self.heads })?))
    }
}

/// The gradient of [`SelfAttention`] with respect to `qkv`, from `qkv` and the output's
/// gradient `dy` (n * t, d).
struct SelfAttentionGrad {
    n: usize,
    heads: usize,
}

impl CustomOp2 for SelfAttentionGrad {
    fn name(&self) -> &'static str {
        "runner-causal-self-attention-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Dims::of(l1, self.n, self.heads)?;
        let (qkv, dy) = (op_input(s1, l1, "self_attention")?, op_input(s2, l2, "self_attention")?);
        let (t, d, hd) = (g.t, g.d, g.hd());
        if dy.len() != g.n * t * d {
            return Err(candle_core::Error::Msg("self_attention's gradient has another shape than its output".into()));
        }
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = vec![0f32; g.n * t * 3 * d];
        out.par_chunks_mut(t * 3 * d).enumerate().for_each(|(smp, dqkv)| {
            let (mut p, mut dp) = (vec![0f32; t * t], vec![0f32; t * t]);
            let dy = &dy[smp * t * d..][..t * d];
            for h in 0..g.heads {
                let (q0, k0, v0) = offsets(g, smp, h);
                weights(qkv, (q0, k0), g, scale, &mut p);
                let dy_h = &dy[h * hd..];
                // dp (t x t) = dy_h (t x hd, row stride d) @ v_hᵀ.
                matmul((t, t, hd), &mut dp, false, dy_h, (d, 1), &qkv[v0..], (1, 3 * d));
                // ds = p * (dp - rowsum(dp * p)) * scale, in place of dp.
                for (row_p, row_dp) in p.chunks_exact(t).zip(dp.chunks_exact_mut(t)) {
                    let dot: f32 = row_p.iter().zip(row_dp.iter()).map(|(a, b)| a * b).sum();
                    for (a, b) in row_p.iter().zip(row_dp.iter_mut()) {
                        *b = a * (*b - dot) * scale;
                    }
                }
                let (lq, lk, lv) = (h * hd, d + h * hd, 2 * d + h * hd);
                // SAFETY: this task owns the sample's rows of `out`; each product writes one
                // head's columns of the query, key or value block of every row.
                unsafe {
                    let dst = dqkv.as_mut_ptr();
                    // dv_h = pᵀ @ dy_h; dq_h = ds @ k_h; dk_h = dsᵀ @ q_h.
                    super::matmul_raw((t, hd, t), (dst.add(lv), 3 * d), false, &p, (1, t), dy_h, (d, 1));
                    super::matmul_raw((t, hd, t), (dst.add(lq), 3 * d), false, &dp, (t, 1), &qkv[k0..], (3 * d, 1));
                    super::matmul_raw((t, hd, t), (dst.add(lk), 3 * d), false, &dp, (1, t), &qkv[q0..], (3 * d, 1));
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values::{max_diff, values};
    use candle_core::{D, Device, Var};

    /// candle's own ops, as the transformer builds them with attention dropout.
    fn reference(qkv: &Tensor, n: usize, heads: usize) -> Tensor {
        let (rows, w) = qkv.dims2().unwrap();
        let (t, d) = (rows / n, w / 3);
        let hd = d / heads;
        let split = |i: usize| {
            qkv.narrow(1, i * d, d)
                .unwrap()
                .reshape((n, t, heads, hd))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let mask: Vec<f32> = (0..t * t).map(|i| if i % t <= i / t { 0.0 } else { f32::NEG_INFINITY }).collect();
        let mask = Tensor::from_vec(mask, (t, t), &Device::Cpu).unwrap();
        let att =
            (q.matmul(&k.t().unwrap()).unwrap() * (1.0 / (hd as f64).sqrt())).unwrap().broadcast_add(&mask).unwrap();
        let att = candle_nn::ops::softmax(&att, D::Minus1).unwrap();
        att.matmul(&v).unwrap().transpose(1, 2).unwrap().reshape((n * t, d)).unwrap()
    }

    #[test]
    fn matches_candle_in_values_and_gradients() {
        // (windows, positions, width, heads): one position, a batch of 1, odd sizes.
        for (n, t, d, heads) in [(1, 1, 4, 2), (1, 5, 6, 3), (3, 7, 12, 4), (2, 16, 32, 4)] {
            let qkv = Var::from_tensor(&values(&[n * t, 3 * d], (n * t * d) as u64, 2.0)).unwrap();
            let w = values(&[n * t, d], 5, 2.0);
            let ours = causal_self_attention(qkv.as_tensor(), n, heads).unwrap();
            let theirs = reference(qkv.as_tensor(), n, heads);
            assert!(
                max_diff(&ours, &theirs) < 1e-5,
                "({n},{t},{d},{heads}): values differ by {}",
                max_diff(&ours, &theirs)
            );
            let a = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let b = (theirs * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let (ga, gb) = (a.get(&qkv).unwrap(), b.get(&qkv).unwrap());
            assert!(max_diff(ga, gb) < 1e-5, "({n},{t},{d},{heads}): gradients differ by {}", max_diff(ga, gb));
        }
    }

    #[test]
    fn shapes_that_do_not_split_are_refused() {
        let x = Tensor::zeros((6, 9), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = causal_self_attention(&x, 4, 3).unwrap_err().to_string();
        assert!(e.contains("for 4 windows and 3 heads, not [6, 9]"), "{e}");
    }
}
