//! Causal attention weights in one pass: `softmax(scores * scale + causal mask)` over the
//! last dimension of (…, t, t) scores, as a candle custom op with its own backward pass.
//! Built from candle's ops it is five passes forward (scale, mask, max, exp, normalise) and
//! as many backward over the largest tensor of a small transformer; here it is one each,
//! rows in parallel. Checked against candle's ops below (values and gradients).

use super::op_input;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Row `r` of a (…, t, t) tensor is query position `r % t`: it sees keys 0..=r % t.
pub struct CausalSoftmax {
    pub scale: f32,
}

/// `softmax(x * scale + mask)` for (…, t, t) scores `x`, where the mask hides every key
/// after the query's position; hidden weights are exactly 0.
pub fn causal_softmax(x: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(CausalSoftmax { scale: scale as f32 })
}

fn error(message: &str) -> candle_core::Error {
    candle_core::Error::Msg(message.to_string())
}

/// The last two dimensions, which must be equal (queries x keys).
fn side(l: &Layout) -> candle_core::Result<usize> {
    match l.dims() {
        [.., a, b] if a == b && *a > 0 => Ok(*a),
        d => Err(candle_core::Error::Msg(format!("causal_softmax takes (…, t, t) scores, not {d:?}"))),
    }
}

/// Rows per rayon task: enough work to beat the task's cost.
const ROWS_PER_TASK: usize = 64;

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "runner-causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let t = side(l)?;
        let x = op_input(s, l, "causal_softmax")?;
        let mut out = vec![0f32; x.len()];
        let scale = self.scale;
        out.par_chunks_mut(t * ROWS_PER_TASK).zip(x.par_chunks(t * ROWS_PER_TASK)).enumerate().for_each(
            |(task, (out, x))| {
                for (i, (o, x)) in out.chunks_exact_mut(t).zip(x.chunks_exact(t)).enumerate() {
                    let q = (task * ROWS_PER_TASK + i) % t;
                    let seen = &x[..=q];
                    let max = seen.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
                    let mut sum = 0f32;
                    for (o, &v) in o[..=q].iter_mut().zip(seen) {
                        *o = (v * scale - max).exp();
                        sum += *o;
                    }
                    let inv = 1.0 / sum;
                    o[..=q].iter_mut().for_each(|o| *o *= inv);
                }
            },
        );
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.contiguous()?.apply_op2(&grad.contiguous()?, CausalSoftmaxGrad { scale: self.scale })?))
    }
}

/// The gradient of [`CausalSoftmax`] from its output `y` and the output's gradient `g`:
/// `scale * y * (g - sum(g * y))` along each row.
struct CausalSoftmaxGrad {
    scale: f32,
}

impl CustomOp2 for CausalSoftmaxGrad {
    fn name(&self) -> &'static str {
        "runner-causal-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let t = side(l1)?;
        if l1.dims() != l2.dims() {
            return Err(error("causal_softmax's gradient has another shape than its output"));
        }
        let (y, g) = (op_input(s1, l1, "causal_softmax")?, op_input(s2, l2, "causal_softmax")?);
        let mut out = vec![0f32; y.len()];
        let scale = self.scale;
        out.par_chunks_mut(t * ROWS_PER_TASK)
            .zip(y.par_chunks(t * ROWS_PER_TASK).zip(g.par_chunks(t * ROWS_PER_TASK)))
            .enumerate()
            .for_each(|(task, (out, (y, g)))| {
                for (i, ((o, y), g)) in
                    out.chunks_exact_mut(t).zip(y.chunks_exact(t)).zip(g.chunks_exact(t)).enumerate()
                {
                    let q = (task * ROWS_PER_TASK + i) % t;
                    let dot: f32 = y[..=q].iter().zip(&g[..=q]).map(|(a, b)| a * b).sum();
                    for k in 0..=q {
                        o[k] = scale * y[k] * (g[k] - dot);
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

    /// candle's own: scale, add the mask, softmax.
    fn reference(x: &Tensor, scale: f64) -> Tensor {
        let t = x.dim(D::Minus1).unwrap();
        let mask: Vec<f32> = (0..t * t).map(|i| if i % t <= i / t { 0.0 } else { f32::NEG_INFINITY }).collect();
        let mask = Tensor::from_vec(mask, (t, t), &Device::Cpu).unwrap();
        candle_nn::ops::softmax(&(x * scale).unwrap().broadcast_add(&mask).unwrap(), D::Minus1).unwrap()
    }

    #[test]
    fn matches_candle_in_values_and_gradients() {
        // Odd sizes, a batch of 1, one position, and more rows than a task holds.
        for (shape, scale) in
            [(vec![1, 1, 1, 1], 1.0), (vec![1, 3, 5, 5], 0.5), (vec![2, 4, 33, 33], 0.125), (vec![7, 7], 2.0)]
        {
            let x = Var::from_tensor(&values(&shape, shape.iter().sum::<usize>() as u64, 4.0)).unwrap();
            let weight = values(&shape, 99, 4.0);
            let ours = causal_softmax(x.as_tensor(), scale).unwrap();
            let theirs = reference(x.as_tensor(), scale);
            assert!(max_diff(&ours, &theirs) < 1e-6, "{shape:?}: values differ by {}", max_diff(&ours, &theirs));
            let g_ours = (ours * &weight).unwrap().sum_all().unwrap().backward().unwrap();
            let g_theirs = (theirs * &weight).unwrap().sum_all().unwrap().backward().unwrap();
            let (a, b) = (g_ours.get(&x).unwrap(), g_theirs.get(&x).unwrap());
            assert!(max_diff(a, b) < 1e-5, "{shape:?}: gradients differ by {}", max_diff(a, b));
        }
    }

    #[test]
    fn later_keys_get_exactly_zero() {
        let y = causal_softmax(&values(&[3, 3], 1, 4.0), 1.0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y[0][0], 1.0);
        assert_eq!((y[0][1], y[0][2], y[1][2]), (0.0, 0.0, 0.0));
        assert!((y[2].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
