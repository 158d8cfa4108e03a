//! A ResNet basic block in training as one candle custom op:
//! `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))` with 3x3 convolutions of padding
//! 1, the first of stride 1 or 2, and batch statistics. The shortcut is the identity where
//! the shape stays, else option A of He et al. 2016: `x[:, :, ::stride, ::stride]` with
//! zero channels added on both sides. Through candle's autograd the block was three nodes
//! (two `conv_bn`s and `add_relu`), plus five for option A's subsampling and padding, and
//! every node whose gradient candle gathers costs a zeroed buffer and an addition of its
//! size (`GradStore::or_insert`), and `x`, read by the first convolution and the
//! shortcut, one addition more: gone now that the block is one node. The passes are
//! `conv_bn`'s (`conv_op` and `batch_norm`), so values and gradients are the same as the
//! ops' one after the other (checked below).

use super::conv::ConvShape;
use super::conv_bn;
use super::conv_op::{Conv2d, error};
use super::{lock, op_input, vectorized};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Each channel's mean and biased variance over the batch.
type Stats = Vec<(f64, f64)>;

/// One convolution + batch norm of the block: weights (c_out, c, 3, 3), scale and shift.
pub type ConvBnParams<'a> = (&'a Tensor, &'a Tensor, &'a Tensor);

/// What a block's forward pass keeps for its backward pass.
#[derive(Default)]
pub(crate) struct Saved {
    /// The first convolution's output, its batch norm + ReLU, the second convolution's.
    z1: Vec<f32>,
    y1: Vec<f32>,
    z2: Vec<f32>,
    /// The two batch norms' statistics.
    stats: (Stats, Stats),
}

impl Saved {
    /// The two batch norms' statistics (the running statistics need them).
    pub(crate) fn stats(&self) -> &(Stats, Stats) {
        &self.stats
    }
}

/// A block's channels and the first convolution's stride (also the shortcut's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BlockShape {
    pub c_in: usize,
    pub c_out: usize,
    pub stride: usize,
}

impl BlockShape {
    /// The block of these two convolutions' weights on `x` (n, c_in, h, w), or what is
    /// wrong with them.
    pub(crate) fn of(x: &[usize], w1: &[usize], w2: &[usize], stride: usize) -> candle_core::Result<BlockShape> {
        let c_in = x.get(1).copied().unwrap_or(0);
        let c_out = w1.first().copied().unwrap_or(0);
        if w1 != [c_out, c_in, 3, 3] || w2 != [c_out, c_out, 3, 3] {
            return Err(error(format!(
                "basic_block of {x:?} takes ({c_out}, {c_in}, 3, 3) and ({c_out}, {c_out}, 3, 3) weights, not {w1:?} and {w2:?}"
            )));
        }
        if stride == 0 || c_out < c_in || !(c_out - c_in).is_multiple_of(2) {
            return Err(error(format!(
                "basic_block: the shortcut pads {c_in} channels equally on both sides to {c_out} with a stride of 1 or more, not {stride}"
            )));
        }
        Ok(BlockShape { c_in, c_out, stride })
    }

    /// Values of the block's parameters: w1, gamma1, beta1, w2, gamma2, beta2.
    pub(crate) fn param_len(&self) -> usize {
        let (c_in, c) = (self.c_in, self.c_out);
        c * c_in * 9 + c * c * 9 + 4 * c
    }

    /// The two convolutions' shapes for an input of dimensions `x`.
    fn convs(&self, x: &[usize]) -> candle_core::Result<(ConvShape, ConvShape)> {
        let (c_in, c_out) = (self.c_in, self.c_out);
        let s1 = Conv2d { stride: self.stride, pad: 1 }.shape(x, &[c_out, c_in, 3, 3])?;
        let s2 = Conv2d { stride: 1, pad: 1 }.shape(&[x[0], c_out, s1.out_h(), s1.out_w()], &[c_out, c_out, 3, 3])?;
        Ok((s1, s2))
    }

    /// The output's dimensions for an input of dimensions `x`.
    pub(crate) fn out_dims(&self, x: &[usize]) -> candle_core::Result<[usize; 4]> {
        let (s1, _) = self.convs(x)?;
        Ok([x[0], self.c_out, s1.out_h(), s1.out_w()])
    }

    /// The parameters' places in their concatenation: w1, gamma1, beta1, w2, gamma2, beta2.
    fn split<'a>(&self, params: &'a [f32]) -> [&'a [f32]; 6] {
        let (c_in, c_out) = (self.c_in, self.c_out);
        let (w1, rest) = params.split_at(c_out * c_in * 9);
        let (g1, rest) = rest.split_at(c_out);
        let (b1, rest) = rest.split_at(c_out);
        let (w2, rest) = rest.split_at(c_out * c_out * 9);
        let (g2, b2) = rest.split_at(c_out);
        [w1, g1, b1, w2, g2, b2]
    }

    /// Where the shortcut reads: `None` for the identity (plane for plane, value for
    /// value), else for each output value of a plane its index in the input plane.
    fn subsampled(&self, s: &ConvShape) -> Option<Vec<usize>> {
        if self.stride == 1 && self.c_in == self.c_out {
            return None;
        }
        let (oh, ow) = (s.out_h(), s.out_w());
        Some((0..oh).flat_map(|i| (0..ow).map(move |j| i * self.stride * s.w + j * self.stride)).collect())
    }
}

/// The block's output on `x` (of dimensions `dims`), and what its backward pass needs.
pub(crate) fn forward(
    b: &BlockShape,
    dims: &[usize],
    x: &[f32],
    params: &[f32],
    eps: f64,
) -> candle_core::Result<(Vec<f32>, Saved)> {
    let (sh1, sh2) = b.convs(dims)?;
    let (n, c_in, c) = (dims[0], b.c_in, b.c_out);
    let (hw_in, hw) = (sh1.h * sh1.w, sh1.out_h() * sh1.out_w());
    if params.len() != b.param_len() || x.len() != n * c_in * hw_in {
        return Err(error(format!(
            "basic_block of {c_in} -> {c} channels on {dims:?}: {} parameter values, {} input values",
            params.len(),
            x.len()
        )));
    }
    let [w1, g1, b1, w2, g2, b2] = b.split(params);
    let (y1, z1, stats1) = conv_bn::forward(&sh1, n, (x, w1), (g1, b1), eps, true);
    let (mut out, z2, stats2) = conv_bn::forward(&sh2, n, (&y1, w2), (g2, b2), eps, false);
    // + the shortcut, through the ReLU (as add_relu: max(a + b, 0)).
    let subsampled = b.subsampled(&sh1);
    let pad = (c - c_in) / 2;
    out.par_chunks_mut(c * hw).zip(x.par_chunks(c_in * hw_in)).for_each(|(o, x)| {
        match &subsampled {
            None => vectorized(|| o.iter_mut().zip(x).for_each(|(o, &x)| *o += x)),
            Some(at) => {
                for (o, x) in o[pad * hw..].chunks_exact_mut(hw).zip(x.chunks_exact(hw_in)) {
                    o.iter_mut().zip(at).for_each(|(o, &i)| *o += x[i]);
                }
            }
        }
        vectorized(|| o.iter_mut().for_each(|o| *o = o.max(0.0)));
    });
    Ok((out, Saved { z1, y1, z2, stats: (stats1, stats2) }))
}

/// The gradients (d x, d params) of [`forward`] on `x` (of dimensions `dims`), whose
/// output was `out` and what it kept `saved`, given the gradient `g` of its output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    b: &BlockShape,
    dims: &[usize],
    x: &[f32],
    params: &[f32],
    out: &[f32],
    g: &[f32],
    saved: &Saved,
    eps: f64,
) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
    let (sh1, sh2) = b.convs(dims)?;
    let (n, c_in, c) = (dims[0], b.c_in, b.c_out);
    let (hw_in, hw) = (sh1.h * sh1.w, sh1.out_h() * sh1.out_w());
    let Saved { z1, y1, z2, stats: (stats1, stats2) } = saved;
    if z1.len() != n * c * hw || z2.len() != z1.len() || y1.len() != z1.len() {
        return Err(error("basic_block backward: the forward pass's values are missing".into()));
    }
    let [w1, g1, _, w2, g2, _] = b.split(params);
    // Through the final ReLU: the gradient of the sum, which is the shortcut's.
    let d_sum = super::relu_grad(g, out);
    // (Without a ReLU batch norm's backward reads no output: d_sum stands in for it.)
    let (dy1, dw2, dg2, db2) = conv_bn::backward(&sh2, n, (y1, w2, g2), (z2, stats2), &d_sum, &d_sum, eps, false);
    let (mut dx, dw1, dg1, db1) = conv_bn::backward(&sh1, n, (x, w1, g1), (z1, stats1), y1, &dy1, eps, true);
    drop(dy1);
    let subsampled = b.subsampled(&sh1);
    let pad = (c - c_in) / 2;
    dx.par_chunks_mut(c_in * hw_in).zip(d_sum.par_chunks(c * hw)).for_each(|(d, s)| match &subsampled {
        None => vectorized(|| d.iter_mut().zip(s).for_each(|(d, &s)| *d += s)),
        Some(at) => {
            for (d, s) in d.chunks_exact_mut(hw_in).zip(s[pad * hw..].chunks_exact(hw)) {
                at.iter().zip(s).for_each(|(&i, &s)| d[i] += s);
            }
        }
    });
    Ok((dx, [dw1, dg1, db1, dw2, dg2, db2].concat()))
}

struct BasicBlock {
    shape: BlockShape,
    eps: f64,
    /// From the forward pass, for the backward pass and the caller (the statistics).
    saved: Arc<Mutex<Saved>>,
}

/// The block on `x` (n, c_in, h, w) with its two convolutions + batch norms (`eps` inside
/// the roots), the first of `stride`, and the statistics of each batch norm (the running
/// statistics need them). A block that keeps `x`'s shape (stride 1, as many channels
/// out as in) adds `x`; one that changes it (option A) adds `x` subsampled by `stride`
/// and padded with `(c_out - c_in) / 2` zero channels on each side. Gradients for `x` and
/// every parameter.
pub fn basic_block(
    x: &Tensor,
    (w1, gamma1, beta1): ConvBnParams<'_>,
    (w2, gamma2, beta2): ConvBnParams<'_>,
    stride: usize,
    eps: f64,
) -> candle_core::Result<(Tensor, (Stats, Stats))> {
    let shape = BlockShape::of(x.dims(), w1.dims(), w2.dims(), stride)?;
    // All parameters as one tensor: a custom op takes three inputs at most.
    let params = Tensor::cat(&[&w1.flatten_all()?, gamma1, beta1, &w2.flatten_all()?, gamma2, beta2], 0)?;
    let saved = Arc::new(Mutex::new(Saved::default()));
    let op = BasicBlock { shape, eps, saved: saved.clone() };
    let y = x.contiguous()?.apply_op2(&params, op)?;
    let stats = lock(&saved).stats.clone();
    Ok((y, stats))
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
        let (x, params) = (op_input(s1, l1, "basic_block")?, op_input(s2, l2, "basic_block")?);
        let (out, saved) = forward(&self.shape, l1.dims(), x, params, self.eps)?;
        *lock(&self.saved) = saved;
        Ok((CpuStorage::F32(out), Shape::from(self.shape.out_dims(l1.dims())?.to_vec())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = lock(&self.saved);
        let inputs = [x.contiguous()?, params.contiguous()?, out.contiguous()?, grad.contiguous()?];
        let (dx, dparams) = super::with_values_all(&inputs, |v| {
            backward(&self.shape, x.dims(), v[0], v[1], v[2], v[3], &saved, self.eps)
        })
        .map_err(|e| error(format!("basic_block backward: {e}")))??;
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dparams, params.shape(), params.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::add_relu::add_relu;
    use crate::kernels::conv_bn::conv_bn;
    use crate::kernels::test_values::{max_diff, values};
    use candle_core::Var;

    #[test]
    fn values_gradients_and_statistics_match_two_conv_bns_and_add_relu() {
        // (n, c_in, c_out, h, w, stride). Identity shortcuts: odd sizes, one sample, images
        // wider than high and a plane long enough for the weight gradient's plane-by-plane
        // order (16x17). Option A: stride 2 on even and odd sides, and channels padded at
        // stride 1.
        for (n, c_in, c_out, h, w, stride) in [
            (3, 4, 4, 6, 6, 1),
            (1, 3, 3, 5, 9, 1),
            (2, 5, 5, 16, 17, 1),
            (2, 4, 8, 8, 8, 2),
            (3, 3, 5, 7, 9, 2),
            (1, 2, 6, 16, 18, 2),
            (2, 2, 4, 5, 5, 1),
        ] {
            let what = format!("n{n} c{c_in}->{c_out} {h}x{w} stride {stride}");
            let var = |shape: &[usize], seed| Var::from_tensor(&values(shape, seed, 1.0)).unwrap();
            let x = var(&[n, c_in, h, w], 1);
            let scale = |seed| Var::from_tensor(&values(&[c_out], seed, 0.5).affine(1.0, 1.0).unwrap()).unwrap();
            let (w1, g1, b1) = (var(&[c_out, c_in, 3, 3], 2), scale(3), var(&[c_out], 4));
            let (w2, g2, b2) = (var(&[c_out, c_out, 3, 3], 5), scale(6), var(&[c_out], 7));
            let (y, (s1, s2)) = basic_block(
                x.as_tensor(),
                (w1.as_tensor(), g1.as_tensor(), b1.as_tensor()),
                (w2.as_tensor(), g2.as_tensor(), b2.as_tensor()),
                stride,
                1e-5,
            )
            .unwrap();
            // The same through the separate ops; option A's shortcut through candle's
            // index_select and pad_with_zeros.
            let (h1, want_s1) =
                conv_bn(x.as_tensor(), w1.as_tensor(), (g1.as_tensor(), b1.as_tensor()), (stride, 1), 1e-5, true)
                    .unwrap();
            let (h2, want_s2) =
                conv_bn(&h1, w2.as_tensor(), (g2.as_tensor(), b2.as_tensor()), (1, 1), 1e-5, false).unwrap();
            let every = |len: usize| {
                let at: Vec<u32> = (0..len as u32).step_by(stride).collect();
                Tensor::new(at, x.device()).unwrap()
            };
            let shortcut = x
                .as_tensor()
                .index_select(&every(h), 2)
                .unwrap()
                .index_select(&every(w), 3)
                .unwrap()
                .pad_with_zeros(1, (c_out - c_in) / 2, (c_out - c_in) / 2)
                .unwrap();
            let want = add_relu(&h2, &shortcut).unwrap();
            assert_eq!(y.dims(), want.dims(), "{what}");
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
    fn weights_and_shortcuts_of_another_shape_are_refused() {
        let x = values(&[1, 4, 5, 5], 1, 1.0);
        let (w, g, b) = (values(&[4, 3, 3, 3], 2, 1.0), values(&[4], 3, 1.0), values(&[4], 4, 1.0));
        let err = basic_block(&x, (&w, &g, &b), (&w, &g, &b), 1, 1e-5).unwrap_err().to_string();
        assert!(err.contains("takes (4, 4, 3, 3) and (4, 4, 3, 3) weights, not [4, 3, 3, 3]"), "{err}");
        // 4 channels cannot be padded equally to 7.
        let (w1, w2) = (values(&[7, 4, 3, 3], 2, 1.0), values(&[7, 7, 3, 3], 2, 1.0));
        let (g, b) = (values(&[7], 3, 1.0), values(&[7], 4, 1.0));
        let err = basic_block(&x, (&w1, &g, &b), (&w2, &g, &b), 2, 1e-5).unwrap_err().to_string();
        assert!(err.contains("pads 4 channels equally on both sides to 7"), "{err}");
    }
}
