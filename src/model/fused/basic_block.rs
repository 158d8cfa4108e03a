//! A ResNet basic block with an identity shortcut, in training, as one candle custom op:
//! `relu(bn2(conv2(relu(bn1(conv1(x))))) + x)` with 3x3 convolutions of stride 1 and
//! padding 1, and batch statistics. Through candle's autograd the block was three nodes
//! (two `conv_bn`s and `add_relu`), and every node whose gradient candle gathers costs a
//! zeroed buffer and an addition of its size (`GradStore::or_insert`), and `x`, read by
//! the first convolution and the shortcut, one addition more: three activation-sized
//! buffers zeroed and four added per block, gone now that the block is one node. The
//! passes are `conv_bn`'s (`conv_op` and `batch_norm`), so values and gradients are the
//! same as the three ops' one after the other (checked below).

use super::conv::ConvShape;
use super::conv_op::{self, Conv2d, error};
use super::{batch_norm, op_input, vectorized};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex, MutexGuard};

/// Each channel's mean and biased variance over the batch.
type Stats = Vec<(f64, f64)>;

/// One convolution + batch norm of the block: weights (c, c, 3, 3), scale and shift.
pub type ConvBnParams<'a> = (&'a Tensor, &'a Tensor, &'a Tensor);

/// What the forward pass keeps for the backward pass.
#[derive(Default)]
struct Saved {
    /// The first convolution's output, its batch norm + ReLU, the second convolution's.
    z1: Vec<f32>,
    y1: Vec<f32>,
    z2: Vec<f32>,
}

struct BasicBlock {
    channels: usize,
    eps: f64,
    saved: Mutex<Saved>,
    /// The two batch norms' statistics, for the backward pass and the caller (the running
    /// statistics).
    stats: Arc<Mutex<(Stats, Stats)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The block on `x` (n, c, h, w) with its two convolutions + batch norms (`eps` inside the
/// roots), and the statistics of each batch norm (the running statistics need them).
/// Gradients for `x` and every parameter.
pub fn basic_block(
    x: &Tensor,
    (w1, gamma1, beta1): ConvBnParams<'_>,
    (w2, gamma2, beta2): ConvBnParams<'_>,
    eps: f64,
) -> candle_core::Result<(Tensor, (Stats, Stats))> {
    let c = x.dims().get(1).copied().unwrap_or(0);
    for w in [w1, w2] {
        if w.dims() != [c, c, 3, 3] {
            return Err(error(format!(
                "basic_block of {:?} takes ({c}, {c}, 3, 3) weights, not {:?}",
                x.dims(),
                w.dims()
            )));
        }
    }
    // All parameters as one tensor: a custom op takes at most three inputs.
    let params = Tensor::cat(&[&w1.flatten_all()?, gamma1, beta1, &w2.flatten_all()?, gamma2, beta2], 0)?;
    let stats = Arc::new(Mutex::new(Default::default()));
    let op = BasicBlock { channels: c, eps, saved: Mutex::default(), stats: stats.clone() };
    let y = x.contiguous()?.apply_op2(&params, op)?;
    let stats = lock(&stats).clone();
    Ok((y, stats))
}

/// The parameters' places in the concatenated tensor: w1, gamma1, beta1, w2, gamma2, beta2.
fn split(params: &[f32], c: usize) -> [&[f32]; 6] {
    let (w1, rest) = params.split_at(c * c * 9);
    let (g1, rest) = rest.split_at(c);
    let (b1, rest) = rest.split_at(c);
    let (w2, rest) = rest.split_at(c * c * 9);
    let (g2, b2) = rest.split_at(c);
    [w1, g1, b1, w2, g2, b2]
}

impl BasicBlock {
    fn shape(&self, x: &[usize]) -> candle_core::Result<ConvShape> {
        Conv2d { stride: 1, pad: 1 }.shape(x, &[self.channels, self.channels, 3, 3])
    }
}

impl CustomOp2 for BasicBlock {
    fn name(&self) -> &'static str {
        "runner-basic-block"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let s = self.shape(l1.dims())?;
        let (x, params) = (op_input(s1, l1, "basic_block")?, op_input(s2, l2, "basic_block")?);
        let (n, c, hw) = (l1.dims()[0], self.channels, s.out_h() * s.out_w());
        if params.len() != 2 * (c * c * 9 + 2 * c) || s.c_out != s.c_in || hw != s.h * s.w {
            return Err(error(format!("basic_block of {c} channels: {} parameter values", params.len())));
        }
        let [w1, g1, b1, w2, g2, b2] = split(params, c);
        let z1 = conv_op::forward(&s, n, x, w1);
        let stats1 = batch_norm::channel_stats(&z1, (n, c, hw));
        let y1 = batch_norm::normalize(&z1, (c, hw), (g1, b1), &stats1, self.eps, true);
        let z2 = conv_op::forward(&s, n, &y1, w2);
        let stats2 = batch_norm::channel_stats(&z2, (n, c, hw));
        let mut out = batch_norm::normalize(&z2, (c, hw), (g2, b2), &stats2, self.eps, false);
        // + the shortcut, through the ReLU (as add_relu: max(a + b, 0)).
        out.par_chunks_mut(c * hw)
            .zip(x.par_chunks(c * hw))
            .for_each(|(o, x)| vectorized(|| o.iter_mut().zip(x).for_each(|(o, &x)| *o = (*o + x).max(0.0))));
        *lock(&self.stats) = (stats1, stats2);
        *lock(&self.saved) = Saved { z1, y1, z2 };
        Ok((CpuStorage::F32(out), Shape::from(l1.dims())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let s = self.shape(x.dims())?;
        let (n, c, hw) = (x.dims()[0], self.channels, s.h * s.w);
        let (saved, stats) = (lock(&self.saved), lock(&self.stats));
        let (Saved { z1, y1, z2 }, (stats1, stats2)) = (&*saved, &*stats);
        if z1.len() != n * c * hw || z2.len() != z1.len() || y1.len() != z1.len() {
            return Err(error("basic_block backward: the forward pass's values are missing".into()));
        }
        let inputs = [x.contiguous()?, params.contiguous()?, out.contiguous()?, grad.contiguous()?];
        let (dx, dparams) = super::with_values_all(&inputs, |v| {
            let (x, params, out, g) = (v[0], v[1], v[2], v[3]);
            let [w1, g1, _, w2, g2, _] = split(params, c);
            // Through the final ReLU: the gradient of the sum, which is the shortcut's.
            let d_sum = super::relu_grad(g, out);
            let dims = (n, c, hw);
            // (Without a ReLU batch norm's backward reads no output: d_sum stands in for it.)
            let (dz2, dg2, db2) = batch_norm::backward((z2, g2, &d_sum, &d_sum), dims, stats2, self.eps, false);
            let (dy1, dw2) = conv_op::backward(&s, n, y1, w2, &dz2);
            drop(dz2);
            let (dz1, dg1, db1) = batch_norm::backward((z1, g1, &dy1, y1), dims, stats1, self.eps, true);
            drop(dy1);
            let (mut dx, dw1) = conv_op::backward(&s, n, x, w1, &dz1);
            dx.par_chunks_mut(c * hw)
                .zip(d_sum.par_chunks(c * hw))
                .for_each(|(d, s)| vectorized(|| d.iter_mut().zip(s).for_each(|(d, &s)| *d += s)));
            let dparams: Vec<f32> = [dw1, dg1, db1, dw2, dg2, db2].concat();
            (dx, dparams)
        })
        .map_err(|e| error(format!("basic_block backward: {e}")))?;
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dparams, params.shape(), params.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::add_relu::add_relu;
    use crate::model::fused::conv_bn::conv_bn;
    use crate::model::fused::test_values::{max_diff, values};
    use candle_core::Var;

    #[test]
    fn values_gradients_and_statistics_match_two_conv_bns_and_add_relu() {
        // Odd sizes, one sample, images wider than high and a plane long enough for the
        // weight gradient's plane-by-plane order (16x17).
        for (n, c, h, w) in [(3, 4, 6, 6), (1, 3, 5, 9), (2, 5, 16, 17)] {
            let what = format!("n{n} c{c} {h}x{w}");
            let var = |shape: &[usize], seed| Var::from_tensor(&values(shape, seed, 1.0)).unwrap();
            let x = var(&[n, c, h, w], 1);
            let scale = |seed| Var::from_tensor(&values(&[c], seed, 0.5).affine(1.0, 1.0).unwrap()).unwrap();
            let (w1, g1, b1) = (var(&[c, c, 3, 3], 2), scale(3), var(&[c], 4));
            let (w2, g2, b2) = (var(&[c, c, 3, 3], 5), scale(6), var(&[c], 7));
            let (y, (s1, s2)) = basic_block(
                x.as_tensor(),
                (w1.as_tensor(), g1.as_tensor(), b1.as_tensor()),
                (w2.as_tensor(), g2.as_tensor(), b2.as_tensor()),
                1e-5,
            )
            .unwrap();
            // The same through the three ops.
            let (h1, want_s1) =
                conv_bn(x.as_tensor(), w1.as_tensor(), (g1.as_tensor(), b1.as_tensor()), (1, 1), 1e-5, true).unwrap();
            let (h2, want_s2) =
                conv_bn(&h1, w2.as_tensor(), (g2.as_tensor(), b2.as_tensor()), (1, 1), 1e-5, false).unwrap();
            let want = add_relu(&h2, x.as_tensor()).unwrap();
            assert_eq!((s1, s2), (want_s1, want_s2), "{what} statistics");
            assert!(max_diff(&y, &want) < 1e-5, "{what} values: {}", max_diff(&y, &want));
            let probe = values(y.dims(), 9, 1.0);
            let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let want_grads = (&want * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("w1", &w1), ("g1", &g1), ("b1", &b1), ("w2", &w2), ("g2", &g2), ("b2", &b2)] {
                let (a, b) = (grads.get(v).unwrap(), want_grads.get(v).unwrap());
                assert!(max_diff(a, b) < 1e-4, "{what} d{name}: {}", max_diff(a, b));
            }
        }
    }

    #[test]
    fn weights_of_another_shape_are_refused() {
        let x = values(&[1, 4, 5, 5], 1, 1.0);
        let (w, g, b) = (values(&[4, 3, 3, 3], 2, 1.0), values(&[4], 3, 1.0), values(&[4], 4, 1.0));
        let err = basic_block(&x, (&w, &g, &b), (&w, &g, &b), 1e-5).unwrap_err().to_string();
        assert!(err.contains("takes (4, 4, 3, 3) weights, not [4, 3, 3, 3]"), "{err}");
    }
}
