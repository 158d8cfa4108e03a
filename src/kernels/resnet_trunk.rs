//! The trunk of a CIFAR ResNet in training, as one candle custom op: the stem (a
//! convolution, batch norm and ReLU) and then every basic block (identity or option-A
//! shortcuts), up to the global average pooling. As separate ops the trunk was a node per
//! block, and candle's backward pass gives every node whose gradient it gathers a zeroed
//! buffer and an addition of its size (`GradStore::or_insert`, then `add`): ten
//! activation-sized buffers zeroed, added and freed in each ResNet-20 step, on one thread
//! while the other waits. Here each block's input gradient is handed straight to the
//! block before it, and each block's saved values are freed as soon as its backward pass
//! is done. The passes are `conv_bn`'s and `basic_block`'s, so values and gradients are
//! the same as those ops' one after the other (checked below).

use super::basic_block::{self, BlockShape, ConvBnParams, Saved};
use super::conv::ConvShape;
use super::conv_op::{Conv2d, error};
use super::{conv_bn, lock, op_input};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// Each channel's mean and biased variance over the batch.
type Stats = Vec<(f64, f64)>;

/// The values of the stem's weights, scale and shift, and of each block's parameters.
type TrunkValues<'a> = ([&'a [f32]; 3], Vec<&'a [f32]>);

/// A block's two convolutions + batch norms and the first convolution's stride.
pub type BlockParams<'a> = (ConvBnParams<'a>, ConvBnParams<'a>, usize);

/// What the forward pass keeps for the backward pass, and the caller reads (statistics).
#[derive(Default)]
struct TrunkSaved {
    /// The stem's convolution output and batch statistics.
    z0: Vec<f32>,
    stem_stats: Stats,
    /// Each block's input (the stem's output first) and dimensions.
    inputs: Vec<(Vec<f32>, [usize; 4])>,
    blocks: Vec<Saved>,
}

struct ResnetTrunk {
    /// The stem's convolution (3x3, stride 1, padding 1) on `c_image` channels to `c0`.
    c_image: usize,
    c0: usize,
    blocks: Vec<BlockShape>,
    eps: f64,
    saved: Arc<Mutex<TrunkSaved>>,
}

/// The trunk on images `x` (n, c, h, w): the stem's 3x3 convolution + batch norm + ReLU,
/// then each block of `blocks` (see [`basic_block::basic_block`]), with `eps` inside the
/// batch norms' roots. Returns the last block's output and every batch norm's statistics
/// in order (the stem's, then each block's two), each with the count of values per channel
/// it was taken over (the running statistics need both).
/// Gradients for every parameter (and `x`, where it is tracked).
pub fn resnet_trunk(
    x: &Tensor,
    (w0, gamma0, beta0): ConvBnParams<'_>,
    blocks: &[BlockParams<'_>],
    eps: f64,
) -> candle_core::Result<(Tensor, Vec<(Stats, usize)>)> {
    let (c_image, c0) = (x.dims().get(1).copied().unwrap_or(0), w0.dims().first().copied().unwrap_or(0));
    if w0.dims() != [c0, c_image, 3, 3] {
        return Err(error(format!(
            "resnet_trunk of {:?}: a stem of ({c0}, {c_image}, 3, 3), not {:?}",
            x.dims(),
            w0.dims()
        )));
    }
    let mut shapes = Vec::with_capacity(blocks.len());
    let stem = Conv2d { stride: 1, pad: 1 }.shape(x.dims(), w0.dims())?;
    let mut at = [x.dims()[0], c0, stem.out_h(), stem.out_w()];
    let mut params = vec![w0.flatten_all()?, gamma0.clone(), beta0.clone()];
    for ((w1, g1, b1), (w2, g2, b2), stride) in blocks {
        let shape = BlockShape::of(&at, w1.dims(), w2.dims(), *stride)?;
        at = shape.out_dims(&at)?;
        shapes.push(shape);
        params.extend([
            w1.flatten_all()?,
            (*g1).clone(),
            (*b1).clone(),
            w2.flatten_all()?,
            (*g2).clone(),
            (*b2).clone(),
        ]);
    }
    // All parameters as one tensor: a custom op takes three inputs at most.
    let params = Tensor::cat(&params, 0)?;
    let saved = Arc::new(Mutex::new(TrunkSaved::default()));
    let op = ResnetTrunk { c_image, c0, blocks: shapes, eps, saved: saved.clone() };
    let y = x.contiguous()?.apply_op2(&params, op)?;
    let saved = lock(&saved);
    let count = |d: &[usize]| d[0] * d[2] * d[3];
    let mut stats = Vec::with_capacity(1 + 2 * saved.blocks.len());
    // The stem's output is the first block's input; each block's output is the next one's.
    let outputs = saved.inputs.iter().skip(1).map(|(_, d)| d.as_slice()).chain([y.dims()]);
    stats.push((saved.stem_stats.clone(), count(saved.inputs.first().map_or(y.dims(), |(_, d)| d))));
    for (b, out) in saved.blocks.iter().zip(outputs) {
        let (s1, s2) = b.stats();
        stats.extend([(s1.clone(), count(out)), (s2.clone(), count(out))]);
    }
    Ok((y, stats))
}

impl ResnetTrunk {
    fn stem(&self, x: &[usize]) -> candle_core::Result<ConvShape> {
        Conv2d { stride: 1, pad: 1 }.shape(x, &[self.c0, self.c_image, 3, 3])
    }

    /// The stem's weights, scale and shift, and each block's parameters.
    fn split<'a>(&self, params: &'a [f32]) -> candle_core::Result<TrunkValues<'a>> {
        let stem = self.c0 * self.c_image * 9;
        let total = stem + 2 * self.c0 + self.blocks.iter().map(BlockShape::param_len).sum::<usize>();
        if params.len() != total {
            return Err(error(format!("resnet_trunk: {} parameter values, not {total}", params.len())));
        }
        let (w0, rest) = params.split_at(stem);
        let (g0, rest) = rest.split_at(self.c0);
        let (b0, mut rest) = rest.split_at(self.c0);
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let (p, r) = rest.split_at(b.param_len());
            blocks.push(p);
            rest = r;
        }
        Ok(([w0, g0, b0], blocks))
    }
}

impl CustomOp2 for ResnetTrunk {
    fn name(&self) -> &'static str {
        "runner-resnet-trunk"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, params) = (op_input(s1, l1, "resnet_trunk")?, op_input(s2, l2, "resnet_trunk")?);
        let ([w0, g0, b0], block_params) = self.split(params)?;
        let s0 = self.stem(l1.dims())?;
        let n = l1.dims()[0];
        let (mut h, z0, stem_stats) = conv_bn::forward(&s0, n, (x, w0), (g0, b0), self.eps, true);
        let mut dims = [n, self.c0, s0.out_h(), s0.out_w()];
        let (mut inputs, mut blocks) = (Vec::with_capacity(self.blocks.len()), Vec::with_capacity(self.blocks.len()));
        for (b, p) in self.blocks.iter().zip(block_params) {
            let (out, saved) = basic_block::forward(b, &dims, &h, p, self.eps)?;
            inputs.push((std::mem::replace(&mut h, out), dims));
            blocks.push(saved);
            dims = b.out_dims(&dims)?;
        }
        *lock(&self.saved) = TrunkSaved { z0, stem_stats, inputs, blocks };
        Ok((CpuStorage::F32(h), Shape::from(dims.to_vec())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Taken, not borrowed: each block's values are freed once its gradients are out.
        let TrunkSaved { z0, stem_stats, mut inputs, mut blocks } = std::mem::take(&mut *lock(&self.saved));
        let x_dims = x.dims();
        if blocks.len() != self.blocks.len() || inputs.len() != blocks.len() || z0.is_empty() {
            return Err(error("resnet_trunk backward: the forward pass's values are missing".into()));
        }
        let tensors = [x.contiguous()?, params.contiguous()?, out.contiguous()?, grad.contiguous()?];
        let (dx, dparams) = super::with_values_all(&tensors, |v| -> candle_core::Result<_> {
            let (x, params, out, g) = (v[0], v[1], v[2], v[3]);
            let ([w0, g0, _], block_params) = self.split(params)?;
            let s0 = self.stem(x_dims)?;
            // From the last block back: the gradient reaching block i's output (the op's,
            // then each later block's input gradient) and block i's output (the op's, then
            // the input of the block after it).
            let (mut d_out, mut next_input): (Option<Vec<f32>>, Option<Vec<f32>>) = (None, None);
            let mut block_grads = vec![Vec::new(); self.blocks.len()];
            for (i, b) in self.blocks.iter().enumerate().rev() {
                let (x_i, dims) = inputs.pop().expect("one input per block");
                let saved = blocks.pop().expect("saved values per block");
                let (out_i, g_i) = (next_input.as_deref().unwrap_or(out), d_out.as_deref().unwrap_or(g));
                let (dx, dp) = basic_block::backward(b, &dims, &x_i, block_params[i], out_i, g_i, &saved, self.eps)?;
                drop(saved);
                block_grads[i] = dp;
                (d_out, next_input) = (Some(dx), Some(x_i));
            }
            // The stem: its output is the first block's input.
            let (y0, d) = (next_input.as_deref().unwrap_or(out), d_out.as_deref().unwrap_or(g));
            let (dx, dw0, dg0, db0) =
                conv_bn::backward(&s0, x_dims[0], (x, w0, g0), (&z0, &stem_stats), y0, d, self.eps, true);
            // In the parameters' order: the stem's, then each block's.
            let dparams = [dw0, dg0, db0].into_iter().chain(block_grads).collect::<Vec<_>>().concat();
            Ok((dx, dparams))
        })
        .map_err(|e| error(format!("resnet_trunk backward: {e}")))??;
        // The images' gradient only where something asks for it (candle would otherwise
        // zero and add a buffer for it).
        let dx = if x.track_op() { Some(Tensor::from_vec(dx, x.shape(), x.device())?) } else { None };
        Ok((dx, Some(Tensor::from_vec(dparams, params.shape(), params.device())?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::basic_block::basic_block;
    use crate::kernels::conv_bn::conv_bn;
    use crate::kernels::test_values::{max_diff, values};
    use candle_core::Var;

    /// A conv + batch norm's parameters: weights (c_out, c_in, 3, 3), scale and shift.
    fn conv_bn_vars(c_in: usize, c_out: usize, seed: u64) -> [Var; 3] {
        let var = |t: Tensor| Var::from_tensor(&t).unwrap();
        [
            var(values(&[c_out, c_in, 3, 3], seed, 1.0)),
            var(values(&[c_out], seed + 1, 0.5).affine(1.0, 1.0).unwrap()),
            var(values(&[c_out], seed + 2, 1.0)),
        ]
    }

    fn params(v: &[Var; 3]) -> ConvBnParams<'_> {
        (v[0].as_tensor(), v[1].as_tensor(), v[2].as_tensor())
    }

    #[test]
    fn values_statistics_and_gradients_match_the_stem_and_blocks_one_after_the_other() {
        // (n, image, stem channels, blocks as (c_out, stride)): identity and option-A
        // blocks, odd sides, one sample, and a stem alone.
        type Case = (usize, [usize; 3], usize, &'static [(usize, usize)]);
        let cases: [Case; 4] = [
            (2, [3, 8, 8], 4, &[(4, 1), (8, 2), (8, 1)]),
            (1, [3, 7, 9], 2, &[(2, 1), (6, 2), (6, 1), (10, 2)]),
            (3, [2, 6, 6], 3, &[]),
            (2, [3, 16, 17], 4, &[(4, 1), (4, 1)]),
        ];
        for (n, [c, h, w], c0, shapes) in cases {
            let what = format!("n{n} {c}x{h}x{w} stem {c0} blocks {shapes:?}");
            let x = values(&[n, c, h, w], 1, 1.0);
            let stem = conv_bn_vars(c, c0, 10);
            let mut vars = Vec::new();
            let mut c_in = c0;
            for (i, &(c_out, stride)) in shapes.iter().enumerate() {
                let seed = 20 + 10 * i as u64;
                vars.push((conv_bn_vars(c_in, c_out, seed), conv_bn_vars(c_out, c_out, seed + 5), stride));
                c_in = c_out;
            }
            let blocks: Vec<BlockParams<'_>> = vars.iter().map(|(a, b, s)| (params(a), params(b), *s)).collect();
            let (y, stats) = resnet_trunk(&x, params(&stem), &blocks, 1e-5).unwrap();
            let (stats, counts): (Vec<_>, Vec<_>) = stats.into_iter().unzip();
            // The same through conv_bn and basic_block.
            let (mut want, stem_stats) = conv_bn(&x, &stem[0], (&stem[1], &stem[2]), (1, 1), 1e-5, true).unwrap();
            let count = |t: &Tensor| t.dim(0).unwrap() * t.dim(2).unwrap() * t.dim(3).unwrap();
            let (mut want_stats, mut want_counts) = (vec![stem_stats], vec![count(&want)]);
            for &(a, b, stride) in &blocks {
                let (out, (sa, sb)) = basic_block(&want, a, b, stride, 1e-5).unwrap();
                want = out;
                want_stats.extend([sa, sb]);
                want_counts.extend([count(&want); 2]);
            }
            assert_eq!(y.dims(), want.dims(), "{what}");
            assert_eq!(stats, want_stats, "{what} statistics");
            assert_eq!(counts, want_counts, "{what} values per channel");
            assert!(max_diff(&y, &want) < 1e-5, "{what} values: {}", max_diff(&y, &want));
            let probe = values(y.dims(), 9, 1.0);
            let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let want_grads = (&want * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let all = stem.iter().chain(vars.iter().flat_map(|(a, b, _)| a.iter().chain(b)));
            for (i, v) in all.enumerate() {
                let (a, b) = (grads.get(v).unwrap(), want_grads.get(v).unwrap());
                assert!(max_diff(a, b) < 1e-4, "{what} parameter {i}: {}", max_diff(a, b));
            }
        }
    }

    #[test]
    fn an_input_gradient_only_where_the_input_is_tracked() {
        let stem = conv_bn_vars(3, 4, 1);
        let block = (conv_bn_vars(4, 4, 5), conv_bn_vars(4, 4, 9));
        let blocks = [(params(&block.0), params(&block.1), 1)];
        let x = Var::from_tensor(&values(&[2, 3, 5, 5], 1, 1.0)).unwrap();
        let (y, _) = resnet_trunk(x.as_tensor(), params(&stem), &blocks, 1e-5).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let (want, _) = conv_bn(x.as_tensor(), &stem[0], (&stem[1], &stem[2]), (1, 1), 1e-5, true).unwrap();
        let (want, _) = basic_block(&want, blocks[0].0, blocks[0].1, 1, 1e-5).unwrap();
        let want_grads = want.sum_all().unwrap().backward().unwrap();
        let (a, b) = (grads.get(&x).unwrap(), want_grads.get(&x).unwrap());
        assert!(max_diff(a, b) < 1e-4, "dx: {}", max_diff(a, b));
        // Images as a plain tensor: no gradient for them (candle would store one for an
        // input the op returns a gradient for, tracked or not).
        let images = x.as_tensor().detach();
        let (y, _) = resnet_trunk(&images, params(&stem), &blocks, 1e-5).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&images).is_none());
        assert!(grads.get(&stem[0]).is_some());
    }

    #[test]
    fn a_stem_or_block_of_another_shape_is_refused() {
        let x = values(&[1, 3, 5, 5], 1, 1.0);
        let stem = conv_bn_vars(2, 4, 1);
        let err = resnet_trunk(&x, params(&stem), &[], 1e-5).unwrap_err().to_string();
        assert!(err.contains("a stem of (4, 3, 3, 3), not [4, 2, 3, 3]"), "{err}");
        let stem = conv_bn_vars(3, 4, 1);
        let block = (conv_bn_vars(5, 5, 5), conv_bn_vars(5, 5, 9));
        let err =
            resnet_trunk(&x, params(&stem), &[(params(&block.0), params(&block.1), 1)], 1e-5).unwrap_err().to_string();
        assert!(err.contains("takes (5, 4, 3, 3) and (5, 5, 3, 3) weights"), "{err}");
    }
}
