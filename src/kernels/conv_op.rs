//! A 2-D convolution (no bias) as a candle custom op with its own backward pass, for
//! models trained through candle's autograd (the ResNet), on the fused step's kernels:
//! 3x3 convolutions with stride 1 and padding 1 on the direct kernels of `direct_conv`,
//! the others by im2col + one matrix product per sample (its output is the sample's NCHW
//! planes, no transpose); samples split into one contiguous part per thread of the run's
//! pool and weight gradients summed in part order, so results do not depend on
//! scheduling.
//! Checked against the definition (direct loops) and candle's `conv2d` below.

use super::conv::{ConvShape, Planes, col2im, im2col};
use super::direct_conv::{self, Packed, Shifted};
use super::op_input;
use super::{Buffers, matmul, matmul_raw, par_written};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// `x (n, c_in, h, w)` convolved with `w (c_out, c_in, k, k)`, zero padding `pad`.
pub struct Conv2d {
    pub stride: usize,
    pub pad: usize,
}

/// `x` convolved with `w` (both f32 on the CPU), with gradients for both.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv2d { stride, pad })
}

pub(crate) fn error(message: String) -> candle_core::Error {
    candle_core::Error::Msg(message)
}

impl Conv2d {
    pub(crate) fn shape(&self, x: &[usize], w: &[usize]) -> candle_core::Result<ConvShape> {
        let ([_, c_in, h, wd], [c_out, c_w, k, k2]) = (x, w) else {
            return Err(error(format!("conv2d takes (n, c, h, w) and (c_out, c, k, k), not {x:?} and {w:?}")));
        };
        if c_in != c_w || k != k2 {
            return Err(error(format!("conv2d: input {x:?} and weight {w:?} do not match")));
        }
        ConvShape::new((*c_in, *h, *wd), *c_out, *k, self.stride, self.pad).ok_or_else(|| {
            error(format!("conv2d: a {k}x{k} kernel does not fit a {h}x{wd} image padded by {}", self.pad))
        })
    }
}

/// Samples per part: one contiguous part per thread of the current pool.
fn part_len(n: usize) -> usize {
    n.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "runner-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let s = self.shape(l1.dims(), l2.dims())?;
        let (x, w) = (op_input(s1, l1, "conv2d")?, op_input(s2, l2, "conv2d")?);
        let n = l1.dims()[0];
        Ok((CpuStorage::F32(forward(&s, n, x, w)), Shape::from((n, s.c_out, s.out_h(), s.out_w()))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let s = self.shape(x.dims(), w.dims())?;
        let n = x.dims()[0];
        let grad = grad.contiguous()?;
        let (dx, dw) =
            super::with_values_all(&[x.contiguous()?, w.contiguous()?, grad], |v| backward(&s, n, v[0], v[1], v[2]))
                .map_err(|e| error(format!("conv2d backward: {e}")))?;
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = Tensor::from_vec(dw, w.shape(), w.device())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// The convolution of `n` samples `x` with `w` (NCHW and (c_out, c_in, k, k) values).
pub(crate) fn forward(s: &ConvShape, n: usize, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (plane, patch) = (s.out_h() * s.out_w(), s.patch());
    let (per_in, per_out) = (s.c_in * s.h * s.w, s.c_out * plane);
    let part = part_len(n);
    // Neither the output nor the columns are zero-filled first: the kernels, the products
    // and im2col write every value.
    if let Some(g) = same3x3(s) {
        let w = Packed::new(s.c_in, s.c_out, w);
        return par_written(n * per_out, part * per_out, |p, out| {
            let mut copies = Buffers::scratch(s.c_in * g.stride());
            for (j, o) in out.chunks_exact_mut(per_out).enumerate() {
                let smp = p * part + j;
                g.shift(&x[smp * per_in..][..per_in], s.c_in, &mut copies);
                // SAFETY: same_conv writes every value of `o` (c_out dense planes).
                let o = unsafe { std::slice::from_raw_parts_mut(o.as_mut_ptr().cast::<f32>(), o.len()) };
                direct_conv::same_conv(g, &w, &copies, o);
            }
            Buffers::give(copies);
        });
    }
    par_written(n * per_out, part * per_out, |p, out| {
        let mut cols = Buffers::scratch(patch * plane);
        for (j, o) in out.chunks_exact_mut(per_out).enumerate() {
            let smp = p * part + j;
            im2col(s, &x[smp * per_in..][..per_in], Planes::sample_major(s.c_in, s.h, s.w), 1, &mut cols);
            // (c_out x patch) @ (patch x pixels): the sample's output, NCHW.
            // SAFETY: `o` holds the c_out x pixels values, borrowed mutably; the product
            // only writes them (no accumulation), so they need no value first.
            unsafe {
                matmul_raw(
                    (s.c_out, plane, patch),
                    (o.as_mut_ptr().cast::<f32>(), plane),
                    false,
                    w,
                    (patch, 1),
                    &cols,
                    (plane, 1),
                )
            };
        }
        Buffers::give(cols);
    })
}

/// The gradients (d x, d w) of [`forward`] given the gradient `g` of its output.
pub(crate) fn backward(s: &ConvShape, n: usize, x: &[f32], w: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (plane, patch) = (s.out_h() * s.out_w(), s.patch());
    let (per_in, per_out) = (s.c_in * s.h * s.w, s.c_out * plane);
    let part = part_len(n);
    let parts = n.div_ceil(part);
    let mut dws = vec![vec![0f32; s.c_out * patch]; parts];
    if let Some(sh) = same3x3(s) {
        let rotated = Packed::new(s.c_out, s.c_in, &direct_conv::rotated(w, s.c_out, s.c_in));
        // Samples whose values the weight gradient reads repeatedly: about 1 MB, inside a
        // core's L2 (3 to 16 ResNet samples).
        let group = ((1 << 20) / direct_conv::weight_grad_bytes(sh, s.c_in, s.c_out)).clamp(1, 16);
        let parts_dw: Vec<std::sync::Mutex<Vec<f32>>> = dws.into_iter().map(std::sync::Mutex::new).collect();
        // d(input) is written in full by the kernel: no zero fill first.
        let dx = par_written(n * per_in, part * per_in, |p, dx| {
            // SAFETY: same_conv writes every value of every sample's d(input).
            let dx = unsafe { std::slice::from_raw_parts_mut(dx.as_mut_ptr().cast::<f32>(), dx.len()) };
            let mut dw = parts_dw[p].lock().unwrap_or_else(|e| e.into_inner());
            let mut dys = Buffers::scratch(s.c_out * sh.stride());
            for (k, dx) in dx.chunks_mut(group * per_in).enumerate() {
                let (first, samples) = (p * part + k * group, dx.len() / per_in);
                for (j, dx) in dx.chunks_exact_mut(per_in).enumerate() {
                    // d(input): the output gradient convolved with the turned weights.
                    sh.shift(&g[(first + j) * per_out..][..per_out], s.c_out, &mut dys);
                    direct_conv::same_conv(sh, &rotated, &dys, dx);
                }
                let (x, dy) = (&x[first * per_in..][..samples * per_in], &g[first * per_out..][..samples * per_out]);
                direct_conv::weight_grad(sh, s.c_in, s.c_out, samples, x, dy, &mut dw);
            }
            Buffers::give(dys);
        });
        let dws = parts_dw.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect();
        return (dx, sum_parts(dws));
    }
    let mut dx = vec![0f32; n * per_in];
    {
        dx.par_chunks_mut(part * per_in).zip(dws.par_iter_mut()).enumerate().for_each(|(p, (dx, dw))| {
            // Written in full by im2col and the product.
            let (mut cols, mut dcols) = (Buffers::scratch(patch * plane), Buffers::scratch(patch * plane));
            for (j, dx) in dx.chunks_exact_mut(per_in).enumerate() {
                let smp = p * part + j;
                let at = Planes::sample_major(s.c_in, s.h, s.w);
                im2col(s, &x[smp * per_in..][..per_in], at, 1, &mut cols);
                let dz = &g[smp * per_out..][..per_out];
                // dw += dz @ cols^T; dcols = w^T @ dz, folded back onto dx.
                matmul((s.c_out, patch, plane), dw, true, dz, (plane, 1), &cols, (1, plane));
                matmul((patch, plane, s.c_out), &mut dcols, false, w, (1, patch), dz, (plane, 1));
                col2im(s, &mut dcols, 1, dx, at);
            }
            Buffers::give(cols);
            Buffers::give(dcols);
        });
    }
    (dx, sum_parts(dws))
}

/// The parts' weight gradients, summed in part order.
fn sum_parts(mut dws: Vec<Vec<f32>>) -> Vec<f32> {
    let mut dw = dws.remove(0);
    for other in &dws {
        dw.iter_mut().zip(other).for_each(|(a, b)| *a += b);
    }
    dw
}

/// The layout of a 3x3 convolution with stride 1 and padding 1, which the direct
/// kernels compute (see `direct_conv`); `None` for other convolutions.
fn same3x3(s: &ConvShape) -> Option<Shifted> {
    (s.k == 3 && s.stride == 1 && s.pad == 1).then_some(Shifted { h: s.h, w: s.w })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut state = seed;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// The convolution, its input gradient and weight gradient for the loss sum(out * probe),
    /// by direct loops: the definition, with no shortcut to share a bug with.
    fn direct(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let [n, c, h, wd] = x.dims().try_into().unwrap();
        let [o, _, k, _] = w.dims().try_into().unwrap();
        let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (wd + 2 * pad - k) / stride + 1);
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ws = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let probe = random(&[n, o, oh, ow], 99).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut out = vec![0f32; n * o * oh * ow];
        let (mut dx, mut dw) = (vec![0f32; xs.len()], vec![0f32; ws.len()]);
        for s in 0..n {
            for f in 0..o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let at = ((s * o + f) * oh + oy) * ow + ox;
                        for ci in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (
                                        (oy * stride + ky) as isize - pad as isize,
                                        (ox * stride + kx) as isize - pad as isize,
                                    );
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((s * c + ci) * h + iy as usize) * wd + ix as usize;
                                    let wi = ((f * c + ci) * k + ky) * k + kx;
                                    out[at] += xs[xi] * ws[wi];
                                    dx[xi] += ws[wi] * probe[at];
                                    dw[wi] += xs[xi] * probe[at];
                                }
                            }
                        }
                    }
                }
            }
        }
        (out, dx, dw)
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn values_and_gradients_match_the_definition_and_candle() {
        for (n, c, h, o, k, stride, pad) in [
            (2, 3, 8, 4, 3, 1, 1),
            (3, 2, 32, 4, 3, 2, 1),
            (1, 4, 7, 2, 1, 2, 0),
            (5, 3, 9, 2, 3, 2, 1),
            (2, 2, 6, 3, 2, 1, 0),
            // "Same" convolutions (stride 1, output as large as the input): im2col's
            // shifted-plane path with two columns of padding and none (the one with one,
            // 3x3, takes the direct kernels).
            (2, 3, 5, 2, 5, 1, 2),
            (1, 2, 3, 3, 3, 1, 1),
            (2, 3, 6, 2, 1, 1, 0),
            // 3x3 convolutions with stride 1 and padding 1 (the direct kernels, on images
            // 3 wider than high): blocks of 4 output channels and one left over, one
            // output channel, a 1x4 image, more samples than a part's weight-gradient
            // group (16 for planes this small), a plane long enough for the weight
            // gradient's plane-by-plane order (16x19, 19 vectors of AVX-512).
            (2, 16, 8, 17, 3, 1, 1),
            (2, 3, 16, 5, 3, 1, 1),
            (1, 3, 7, 1, 3, 1, 1),
            (2, 4, 1, 3, 3, 1, 1),
            (40, 2, 5, 3, 3, 1, 1),
        ] {
            let wd = if (k, stride, pad) == (3, 1, 1) { h + 3 } else { h };
            let what = format!("n{n} c{c} h{h} w{wd} o{o} k{k} stride{stride} pad{pad}");
            let x = Var::from_tensor(&random(&[n, c, h, wd], 1)).unwrap();
            let w = Var::from_tensor(&random(&[o, c, k, k], 2)).unwrap();
            let out = conv2d(x.as_tensor(), w.as_tensor(), stride, pad).unwrap();
            let probe = random(out.dims(), 99);
            let grads = (&out * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (want, want_dx, want_dw) = direct(x.as_tensor(), w.as_tensor(), stride, pad);
            close(&flat(&out), &want, &format!("{what} out"));
            close(&flat(grads.get(&x).unwrap()), &want_dx, &format!("{what} dx"));
            close(&flat(grads.get(&w).unwrap()), &want_dw, &format!("{what} dw"));
            // candle's forward agrees everywhere.
            close(
                &flat(&x.as_tensor().conv2d(w.as_tensor(), pad, stride, 1, 1).unwrap()),
                &want,
                &format!("{what} candle"),
            );
        }
    }
}
