//! A convolution (no bias) followed by batch normalisation in training mode (and a ReLU),
//! as one candle custom op: the convolution's output is kept by the op for its backward
//! pass instead of being a tensor of the graph. Each graph node's gradient costs candle
//! a zeroed buffer and an addition the size of the node (`GradStore::or_insert`); the
//! ResNet's convolution outputs were half of its large nodes. The passes are those of
//! `conv_op` and `batch_norm`, so values and gradients are the same as theirs one after
//! the other (checked below).

use super::batch_norm;
use super::conv::ConvShape;
use super::conv_op::{self, Conv2d, error};
use super::{lock, op_input};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// Each channel's mean and biased variance over the batch.
type Stats = Vec<(f64, f64)>;

struct ConvBn {
    conv: Conv2d,
    eps: f64,
    relu: bool,
    /// The convolution's output, from the forward pass for the backward pass.
    z: Mutex<Vec<f32>>,
    /// The batch statistics of `z`, also read by the caller (the running statistics).
    stats: Arc<Mutex<Stats>>,
}

/// `x` (n, c_in, h, w) convolved with `w` (c_out, c_in, k, k) (stride, zero padding
/// `pad`), normalised per channel with the batch's statistics (`eps` inside the root),
/// scaled by `gamma`, shifted by `beta`, then through a ReLU when `relu`; with the
/// statistics (the running statistics need them). Gradients for `x`, `w`, `gamma` and
/// `beta`.
pub fn conv_bn(
    x: &Tensor,
    w: &Tensor,
    (gamma, beta): (&Tensor, &Tensor),
    (stride, pad): (usize, usize),
    eps: f64,
    relu: bool,
) -> candle_core::Result<(Tensor, Stats)> {
    // Scale and shift as one tensor: a custom op takes at most three.
    let affine = Tensor::cat(&[gamma, beta], 0)?;
    let stats = Arc::new(Mutex::new(Vec::new()));
    let op = ConvBn { conv: Conv2d { stride, pad }, eps, relu, z: Mutex::new(Vec::new()), stats: stats.clone() };
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &affine, op)?;
    let stats = lock(&stats).clone();
    Ok((y, stats))
}

/// The forward pass on `n` samples `x` of shape `s` with weights `w`: the output, and the
/// convolution's output and its batch statistics, which the backward pass needs.
pub(crate) fn forward(
    s: &ConvShape,
    n: usize,
    (x, w): (&[f32], &[f32]),
    affine: (&[f32], &[f32]),
    eps: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Stats) {
    let (c, hw) = (s.c_out, s.out_h() * s.out_w());
    let z = conv_op::forward(s, n, x, w);
    let stats = batch_norm::channel_stats(&z, (n, c, hw));
    let y = batch_norm::normalize(&z, (c, hw), affine, &stats, eps, relu);
    (y, z, stats)
}

/// The gradients (d x, d w, d gamma, d beta) of [`forward`], given what it kept (`z`,
/// `stats`), its output `y` (read only through the ReLU) and the output's gradient `g`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    s: &ConvShape,
    n: usize,
    (x, w, gamma): (&[f32], &[f32], &[f32]),
    (z, stats): (&[f32], &[(f64, f64)]),
    y: &[f32],
    g: &[f32],
    eps: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let dims = (n, s.c_out, s.out_h() * s.out_w());
    let (dz, dgamma, dbeta) = batch_norm::backward((z, gamma, g, y), dims, stats, eps, relu);
    let (dx, dw) = conv_op::backward(s, n, x, w, &dz);
    (dx, dw, dgamma, dbeta)
}

impl CustomOp3 for ConvBn {
    fn name(&self) -> &'static str {
        "runner-conv-batch-norm"
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
        let s = self.conv.shape(l1.dims(), l2.dims())?;
        let (x, w, affine) = (op_input(s1, l1, "conv_bn")?, op_input(s2, l2, "conv_bn")?, op_input(s3, l3, "conv_bn")?);
        let (n, c) = (l1.dims()[0], s.c_out);
        if affine.len() != 2 * c {
            return Err(error(format!("conv_bn of {c} channels takes {c} scales and {c} shifts")));
        }
        let (y, z, stats) = forward(&s, n, (x, w), affine.split_at(c), self.eps, self.relu);
        *lock(&self.z) = z;
        *lock(&self.stats) = stats;
        Ok((CpuStorage::F32(y), Shape::from((n, c, s.out_h(), s.out_w()))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        affine: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let s = self.conv.shape(x.dims(), w.dims())?;
        let (n, c, hw) = (x.dims()[0], s.c_out, s.out_h() * s.out_w());
        let (z, stats) = (lock(&self.z), lock(&self.stats));
        if z.len() != n * c * hw || stats.len() != c {
            return Err(error("conv_bn backward: the forward pass's values are missing".into()));
        }
        let inputs = [x.contiguous()?, w.contiguous()?, affine.contiguous()?, y.contiguous()?, grad.contiguous()?];
        let (dx, dw, daffine) = super::with_values_all(&inputs, |v| {
            let (x, w, gamma, y, g) = (v[0], v[1], &v[2][..c], v[3], v[4]);
            let (dx, dw, mut dgamma, dbeta) = backward(&s, n, (x, w, gamma), (&z, &stats), y, g, self.eps, self.relu);
            dgamma.extend(dbeta);
            (dx, dw, dgamma)
        })
        .map_err(|e| error(format!("conv_bn backward: {e}")))?;
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dw, w.shape(), w.device())?),
            Some(Tensor::from_vec(daffine, 2 * c, x.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values::{max_diff, values};
    use candle_core::Var;

    #[test]
    fn values_gradients_and_statistics_match_the_convolution_then_batch_norm() {
        // Direct kernels (3x3, stride 1, pad 1) and im2col (stride 2; a 1x1 projection),
        // with and without the ReLU, odd sizes, one sample.
        for (n, c_in, h, c_out, k, stride, pad, relu) in [
            (3, 4, 6, 5, 3, 1, 1, true),
            (2, 3, 7, 4, 3, 2, 1, false),
            (1, 2, 5, 3, 1, 2, 0, true),
            (4, 16, 8, 9, 3, 1, 1, false),
        ] {
            let what = format!("n{n} c{c_in} h{h} o{c_out} k{k} s{stride} p{pad} relu {relu}");
            let var = |shape: &[usize], seed| Var::from_tensor(&values(shape, seed, 1.0)).unwrap();
            let (x, w) = (var(&[n, c_in, h, h], 1), var(&[c_out, c_in, k, k], 2));
            let gamma = Var::from_tensor(&(values(&[c_out], 3, 0.5).affine(1.0, 1.0).unwrap())).unwrap();
            let beta = var(&[c_out], 4);
            let (y, stats) =
                conv_bn(x.as_tensor(), w.as_tensor(), (gamma.as_tensor(), beta.as_tensor()), (stride, pad), 1e-5, relu)
                    .unwrap();
            // The same through the two ops.
            let z = conv_op::conv2d(x.as_tensor(), w.as_tensor(), stride, pad).unwrap();
            let (zn, zc, zh, zw) = z.dims4().unwrap();
            let want_stats =
                super::super::with_values(&z, |v: &[f32]| batch_norm::channel_stats(v, (zn, zc, zh * zw))).unwrap();
            let want = batch_norm::batch_norm_with_stats(
                &z,
                gamma.as_tensor(),
                beta.as_tensor(),
                1e-5,
                relu,
                want_stats.clone(),
            )
            .unwrap();
            assert_eq!(stats, want_stats, "{what} statistics");
            assert!(max_diff(&y, &want) < 1e-5, "{what} values");
            let probe = values(y.dims(), 9, 1.0);
            let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let want_grads = (&want * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("w", &w), ("gamma", &gamma), ("beta", &beta)] {
                let (a, b) = (grads.get(v).unwrap(), want_grads.get(v).unwrap());
                assert!(max_diff(a, b) < 1e-4, "{what} d{name}: {}", max_diff(a, b));
            }
        }
    }
}
