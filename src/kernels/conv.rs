//! Convolution kernels of the fused step on flat f32 buffers: im2col and its adjoint
//! col2im, the convolution as one matrix product per layer and part of the batch (rows are
//! output channels, columns every output pixel of every sample), its backward products, and
//! 2x2 max-pooling with the index of each maximum kept for the backward pass.
//!
//! Activations between convolutions are held channel-major, (C, n, H, W): a product's rows
//! are channels, so its output is already in that layout and needs no transpose; the input
//! batch is candle's sample-major NCHW. [`Planes`] says which, so im2col reads both.
//! Every kernel is checked against candle's `conv2d`, `max_pool2d` and autograd in the tests
//! below (values and gradients, stride, padding, odd sizes, a batch of one).

use super::matmul;

/// Where value (channel `c`, sample `s`, row `y`, column `x`) of a batch of `h x w` planes
/// lives: `c * channel + s * sample + y * w + x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planes {
    pub channel: usize,
    pub sample: usize,
}

impl Planes {
    /// Samples one after the other, each `(c, h, w)`: candle's NCHW.
    pub fn sample_major(c: usize, h: usize, w: usize) -> Planes {
        Planes { channel: h * w, sample: c * h * w }
    }

    /// Channels one after the other, each holding the `(h, w)` plane of every one of `n`
    /// samples: the layout of the fused step's activations.
    pub fn channel_major(n: usize, h: usize, w: usize) -> Planes {
        Planes { channel: n * h * w, sample: h * w }
    }
}

/// A 2-D convolution: `c_out` filters of `k x k` over `c_in` channels of `h x w` images,
/// zero padding `pad` on every side, stride `stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    /// The shape, or `None` when the kernel does not fit the padded image once.
    pub fn new(
        (c_in, h, w): (usize, usize, usize),
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Option<ConvShape> {
        let fits = k > 0 && stride > 0 && h + 2 * pad >= k && w + 2 * pad >= k && c_in > 0 && c_out > 0;
        fits.then_some(ConvShape { c_in, h, w, c_out, k, stride, pad })
    }

    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Values in one patch: the product's inner dimension.
    pub fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }

    /// For kernel column `kx`, the output columns `lo..hi` whose input column
    /// (`ox * stride + kx - pad`) lies inside the image.
    fn inside_columns(&self, kx: usize) -> (usize, usize) {
        let (ow, st) = (self.out_w(), self.stride);
        // ox * stride + kx - pad >= 0 from lo on, <= w - 1 up to hi - 1.
        let lo = self.pad.saturating_sub(kx).div_ceil(st).min(ow);
        let hi = match (self.w + self.pad).checked_sub(kx + 1) {
            Some(last) => (last / st + 1).min(ow),
            None => 0,
        };
        (lo, hi.max(lo))
    }

    /// The input row read by output row `oy` at kernel row `ky`, if inside the image.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky).checked_sub(self.pad).filter(|&y| y < self.h)
    }
}

/// Unfolds the `n` samples of `input` (laid out as `at` says) into `cols`, a
/// `patch x (n * out_h * out_w)` row-major matrix: row `(c * k + ky) * k + kx`, column
/// `(s * out_h + oy) * out_w + ox` holds input `(c, s, oy*stride + ky - pad, ox*stride + kx - pad)`,
/// 0 outside the image.
pub fn im2col(s: &ConvShape, input: &[f32], at: Planes, n: usize, cols: &mut [f32]) {
    let width = n * s.out_h() * s.out_w();
    assert!(cols.len() >= s.patch() * width, "im2col: the columns buffer is too small");
    super::vectorized(|| im2col_rows(s, input, at, n, cols))
}

#[inline(always)]
fn im2col_rows(s: &ConvShape, input: &[f32], at: Planes, n: usize, cols: &mut [f32]) {
    let (oh, ow, k) = (s.out_h(), s.out_w(), s.k);
    let width = n * oh * ow;
    for c in 0..s.c_in {
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut cols[((c * k + ky) * k + kx) * width..][..width];
                let (lo, hi) = s.inside_columns(kx);
                for smp in 0..n {
                    let plane = &input[c * at.channel + smp * at.sample..][..s.h * s.w];
                    if s.stride == 1 && (oh, ow) == (s.h, s.w) {
                        shifted_plane(
                            plane,
                            (s.h, s.w),
                            (ky, kx, s.pad),
                            (lo, hi),
                            &mut row[smp * oh * ow..][..oh * ow],
                        );
                        continue;
                    }
                    for (oy, dst) in row[smp * oh * ow..][..oh * ow].chunks_exact_mut(ow).enumerate() {
                        let Some(iy) = s.input_row(oy, ky) else {
                            dst.fill(0.0);
                            continue;
                        };
                        let src = &plane[iy * s.w..][..s.w];
                        if s.stride == 1 {
                            dst[..lo].fill(0.0);
                            dst[hi..].fill(0.0);
                            dst[lo..hi].copy_from_slice(&src[lo + kx - s.pad..hi + kx - s.pad]);
                        } else {
                            // Every stride-th input value from the first inside the image.
                            dst[..lo].fill(0.0);
                            dst[hi..].fill(0.0);
                            if lo < hi {
                                let first = lo * s.stride + kx - s.pad;
                                let inside = src[first..].iter().step_by(s.stride);
                                dst[lo..hi].iter_mut().zip(inside).for_each(|(d, &v)| *d = v);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One row of [`im2col`] for one sample of a "same" convolution (stride 1, output as large
/// as the input): the plane shifted by `(ky - pad, kx - pad)`, zero where that reads
/// outside the image. As one copy of the whole plane, then the columns that wrapped
/// round from the neighbouring row (outside `lo..hi`) set to 0: rows of 8 to 32 values
/// made a copy and two fills each, whose calls cost more than the copying.
#[inline(always)]
fn shifted_plane(
    plane: &[f32],
    (h, w): (usize, usize),
    (ky, kx, pad): (usize, usize, usize),
    (lo, hi): (usize, usize),
    dst: &mut [f32],
) {
    let (inside, read) = shifted_span((h, w), (ky, kx, pad));
    dst[..inside.start].fill(0.0);
    dst[inside.end..].fill(0.0);
    dst[inside].copy_from_slice(&plane[read]);
    // An output row outside the image reads only positions before or after the plane, or
    // wrapped columns; the wrapped columns of every row are outside `lo..hi`.
    zero_columns(dst, w, (lo, hi));
}

/// For one row of a "same" convolution's columns (one sample): the positions `inside` whose
/// value is read from inside the plane, and the plane positions `read` they are read from
/// (`plane[read][j]` for `columns[inside][j]`; the plane shifted by `(ky - pad, kx -
/// pad)`, row wrap-round included).
#[inline(always)]
fn shifted_span(
    (h, w): (usize, usize),
    (ky, kx, pad): (usize, usize, usize),
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let len = (h * w) as isize;
    let shift = (ky * w + kx) as isize - (pad * w + pad) as isize;
    let first = (-shift).clamp(0, len);
    let end = (len - shift).clamp(first, len);
    (first as usize..end as usize, (first + shift) as usize..(end + shift) as usize)
}

/// Sets the columns outside `lo..hi` of every row (`w` values) of `m` to 0, a column at a
/// time: a strided pass per column (a padding of one or two) instead of a fill call per row.
#[inline(always)]
pub(super) fn zero_columns(m: &mut [f32], w: usize, (lo, hi): (usize, usize)) {
    for x in (0..lo).chain(hi..w) {
        m[x..].iter_mut().step_by(w).for_each(|v| *v = 0.0);
    }
}

/// The adjoint of [`im2col`]: adds every value of `cols` into the input position it was
/// read from (`grad` laid out as `at` says; positions in the padding are dropped). The
/// values of `cols` at padding positions may be overwritten with 0 (it is the caller's
/// scratch buffer: a "same" convolution adds whole planes at once, see [`add_shifted`]).
pub fn col2im(s: &ConvShape, cols: &mut [f32], n: usize, grad: &mut [f32], at: Planes) {
    let width = n * s.out_h() * s.out_w();
    assert!(cols.len() >= s.patch() * width, "col2im: the columns buffer is too small");
    super::vectorized(|| col2im_rows(s, cols, n, grad, at))
}

#[inline(always)]
fn col2im_rows(s: &ConvShape, cols: &mut [f32], n: usize, grad: &mut [f32], at: Planes) {
    let (oh, ow, k) = (s.out_h(), s.out_w(), s.k);
    let width = n * oh * ow;
    for c in 0..s.c_in {
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut cols[((c * k + ky) * k + kx) * width..][..width];
                let (lo, hi) = s.inside_columns(kx);
                for smp in 0..n {
                    let plane = &mut grad[c * at.channel + smp * at.sample..][..s.h * s.w];
                    if s.stride == 1 && (oh, ow) == (s.h, s.w) {
                        add_shifted(&mut row[smp * oh * ow..][..oh * ow], (s.h, s.w), (ky, kx, s.pad), (lo, hi), plane);
                        continue;
                    }
                    for (oy, src) in row[smp * oh * ow..][..oh * ow].chunks_exact(ow).enumerate() {
                        let Some(iy) = s.input_row(oy, ky) else { continue };
                        let dst = &mut plane[iy * s.w..][..s.w];
                        if s.stride == 1 {
                            let dst = &mut dst[lo + kx - s.pad..hi + kx - s.pad];
                            dst.iter_mut().zip(&src[lo..hi]).for_each(|(d, v)| *d += v);
                        } else {
                            if lo < hi {
                                let first = lo * s.stride + kx - s.pad;
                                let inside = dst[first..].iter_mut().step_by(s.stride);
                                inside.zip(&src[lo..hi]).for_each(|(d, v)| *d += v);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`shifted_plane`]: adds `src` (one row of the columns, one sample) into
/// `plane` shifted back by `(ky - pad, kx - pad)`, dropping what was read from outside the
/// image. The columns that wrap round to the neighbouring row (outside `lo..hi`) are set to
/// 0 in `src` first, so the whole plane is one pass of additions: each value receives the
/// same additions in the same order as row by row (a -0.0 there may become +0.0).
#[inline(always)]
fn add_shifted(
    src: &mut [f32],
    (h, w): (usize, usize),
    (ky, kx, pad): (usize, usize, usize),
    (lo, hi): (usize, usize),
    plane: &mut [f32],
) {
    zero_columns(src, w, (lo, hi));
    let (inside, read) = shifted_span((h, w), (ky, kx, pad));
    plane[read].iter_mut().zip(&src[inside]).for_each(|(d, v)| *d += v);
}

/// `out = w @ cols + b`: `w` is candle's `(c_out, c_in, k, k)` weight read as a
/// `c_out x patch` matrix, `out` is `(c_out, n, out_h, out_w)` channel-major.
pub fn conv_forward(s: &ConvShape, w: &[f32], b: &[f32], cols: &[f32], n: usize, out: &mut [f32]) {
    let width = n * s.out_h() * s.out_w();
    for (row, &bias) in out[..s.c_out * width].chunks_exact_mut(width).zip(b) {
        row.fill(bias);
    }
    let patch = s.patch();
    matmul((s.c_out, width, patch), out, true, w, (patch, 1), cols, (width, 1));
}

/// The gradients of [`conv_forward`] from `dz` (the loss's gradient with respect to its
/// output): `dw = dz @ cols^T`, `db` the row sums of `dz`, and, when asked, the gradient
/// of the columns `dcols = w^T @ dz` (for [`col2im`]).
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    s: &ConvShape,
    w: &[f32],
    cols: &[f32],
    dz: &[f32],
    n: usize,
    dw: &mut [f32],
    db: &mut [f32],
    dcols: Option<&mut [f32]>,
) {
    let width = n * s.out_h() * s.out_w();
    let patch = s.patch();
    for (g, row) in db.iter_mut().zip(dz.chunks_exact(width)) {
        *g = row.iter().sum();
    }
    matmul((s.c_out, patch, width), dw, false, dz, (width, 1), cols, (1, width));
    if let Some(dcols) = dcols {
        matmul((patch, width, s.c_out), dcols, false, w, (1, patch), dz, (width, 1));
    }
}

/// 2x2 max-pooling with stride 2 over `planes` planes of `h x w` stored back to back (odd
/// last rows and columns dropped, as candle and PyTorch do); `arg` receives the index in
/// `input` of each maximum (the first one on ties, as PyTorch).
pub fn max_pool2(input: &[f32], planes: usize, (h, w): (usize, usize), out: &mut [f32], arg: &mut [u32]) {
    let (ph, pw) = (h / 2, w / 2);
    if ph == 0 || pw == 0 {
        return;
    }
    let outs = out[..planes * ph * pw].chunks_exact_mut(pw).zip(arg.chunks_exact_mut(pw));
    for (row, (out, arg)) in outs.enumerate() {
        let (p, py) = (row / ph, row % ph);
        let top = p * h * w + 2 * py * w;
        let (r0, r1) = (&input[top..][..2 * pw], &input[top + w..][..2 * pw]);
        for (px, ((o, g), (a, b))) in
            out.iter_mut().zip(arg.iter_mut()).zip(r0.chunks_exact(2).zip(r1.chunks_exact(2))).enumerate()
        {
            // Branch-free, scanning a0 a1 b0 b1 and keeping the first of equal maxima.
            let i = (top + 2 * px) as u32;
            let (m0, i0) = if a[1] > a[0] { (a[1], i + 1) } else { (a[0], i) };
            let (m1, i1) = if b[1] > b[0] { (b[1], i + w as u32 + 1) } else { (b[0], i + w as u32) };
            (*o, *g) = if m1 > m0 { (m1, i1) } else { (m0, i0) };
        }
    }
}

/// The adjoint of [`max_pool2`]: each output's gradient goes to the input that was its
/// maximum. `grad` must be zeroed by the caller.
pub fn max_pool2_backward(dout: &[f32], arg: &[u32], grad: &mut [f32]) {
    for (&d, &i) in dout.iter().zip(arg) {
        grad[i as usize] += d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};

    fn values(n: usize, seed: usize) -> Vec<f32> {
        // Distinct values in a scrambled order: no ties for max-pooling.
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 10_007) as f32 / 5003.5 - 1.0).collect()
    }

    fn to_vec(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn close(what: &str, a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 + 1e-4 * y.abs(), "{what}[{i}]: {x} vs candle's {y}");
        }
    }

    /// Reorders a channel-major (C, n, H, W) buffer as candle's NCHW.
    fn to_nchw(v: &[f32], (c, n, hw): (usize, usize, usize)) -> Vec<f32> {
        let mut out = vec![0.0; v.len()];
        for ci in 0..c {
            for s in 0..n {
                out[(s * c + ci) * hw..][..hw].copy_from_slice(&v[(ci * n + s) * hw..][..hw]);
            }
        }
        out
    }

    fn upt_nchw(up: &[f32], (n, c, oh, ow): (usize, usize, usize, usize)) -> Tensor {
        Tensor::from_vec(to_nchw(up, (c, n, oh * ow)), (n, c, oh, ow), &Device::Cpu).unwrap()
    }

    /// One convolution through these kernels against candle's conv2d and autograd: the
    /// output, and the gradients of weights, bias and input for a fixed upstream gradient.
    fn check_conv(n: usize, (c_in, h, w): (usize, usize, usize), c_out: usize, k: usize, stride: usize, pad: usize) {
        let s = ConvShape::new((c_in, h, w), c_out, k, stride, pad).unwrap();
        let (oh, ow) = (s.out_h(), s.out_w());
        let x = values(n * c_in * h * w, 1);
        let wv = values(c_out * s.patch(), 2);
        let bv = values(c_out, 3);
        let up = values(n * c_out * oh * ow, 4);

        // candle: NCHW.
        let xv = Var::from_tensor(&Tensor::from_vec(x.clone(), (n, c_in, h, w), &Device::Cpu).unwrap()).unwrap();
        let wt = Var::from_tensor(&Tensor::from_vec(wv.clone(), (c_out, c_in, k, k), &Device::Cpu).unwrap()).unwrap();
        let bt = Var::from_tensor(&Tensor::from_vec(bv.clone(), c_out, &Device::Cpu).unwrap()).unwrap();
        let extra = (h + 2 * pad - k) % stride;
        assert_eq!(extra, (w + 2 * pad - k) % stride, "the test's shapes keep one output padding");
        // Without its gradient where candle's is wrong (below).
        let x_in = if extra == 0 { xv.as_tensor().clone() } else { xv.as_tensor().detach() };
        let y = x_in
            .conv2d(wt.as_tensor(), pad, stride, 1, 1)
            .unwrap()
            .broadcast_add(&bt.as_tensor().reshape((1, c_out, 1, 1)).unwrap())
            .unwrap();
        assert_eq!(y.dims(), &[n, c_out, oh, ow]);
        let upt = Tensor::from_vec(to_nchw(&up, (c_out, n, oh * ow)), y.shape(), &Device::Cpu).unwrap();
        let grads = (y.clone() * upt).unwrap().sum_all().unwrap().backward().unwrap();

        // These kernels.
        let mut cols = vec![f32::NAN; s.patch() * n * oh * ow];
        im2col(&s, &x, Planes::sample_major(c_in, h, w), n, &mut cols);
        let mut out = vec![f32::NAN; c_out * n * oh * ow];
        conv_forward(&s, &wv, &bv, &cols, n, &mut out);
        close("output", &to_nchw(&out, (c_out, n, oh * ow)), &to_vec(&y));
        let (mut dw, mut db, mut dcols) = (vec![0.0; wv.len()], vec![0.0; c_out], vec![0.0; cols.len()]);
        conv_backward(&s, &wv, &cols, &up, n, &mut dw, &mut db, Some(&mut dcols));
        close("dw", &dw, &to_vec(grads.get(&wt).unwrap()));
        close("db", &db, &to_vec(grads.get(&bt).unwrap()));
        let mut dx = vec![0.0; x.len()];
        col2im(&s, &mut dcols, n, &mut dx, Planes::sample_major(c_in, h, w));
        // candle's conv2d backward drops the input's last rows or columns when the stride
        // does not divide (h + 2 pad - k) (it passes no output padding to its transposed
        // convolution): the reference is that transposed convolution with the right one.
        let want = upt_nchw(&up, (n, c_out, oh, ow)).conv_transpose2d(wt.as_tensor(), pad, extra, stride, 1).unwrap();
        close("dx", &dx, &to_vec(&want));
        if extra == 0 {
            close("dx (autograd)", &dx, &to_vec(grads.get(&xv).unwrap()));
        }

        // The same input held channel-major gives the same columns.
        let mut x_cm = vec![0.0; x.len()];
        for s_ in 0..n {
            for c in 0..c_in {
                x_cm[(c * n + s_) * h * w..][..h * w].copy_from_slice(&x[(s_ * c_in + c) * h * w..][..h * w]);
            }
        }
        let mut cols_cm = vec![f32::NAN; cols.len()];
        im2col(&s, &x_cm, Planes::channel_major(n, h, w), n, &mut cols_cm);
        assert_eq!(cols_cm, cols);
    }

    #[test]
    fn convolutions_match_candle() {
        check_conv(3, (1, 8, 8), 4, 3, 1, 1); // the cnn kind's "same" convolution
        check_conv(1, (2, 5, 7), 3, 3, 1, 1); // a batch of one, odd sizes
        check_conv(2, (3, 9, 7), 5, 3, 2, 1); // stride 2, odd size
        check_conv(2, (3, 8, 6), 2, 3, 2, 1); // stride 2 leaving a row and a column
        check_conv(2, (2, 8, 8), 3, 3, 2, 1); // ResNet's downsampling: 8x8 to 4x4
        check_conv(2, (3, 8, 8), 4, 1, 2, 0); // 1x1 projection shortcut
        check_conv(2, (2, 6, 5), 2, 5, 1, 2); // larger kernel
        check_conv(2, (2, 6, 6), 3, 3, 1, 0); // no padding
        check_conv(1, (1, 3, 3), 2, 4, 1, 2); // even kernel: the output grows
        check_conv(2, (2, 7, 7), 3, 3, 3, 1); // stride 3
        check_conv(1, (2, 7, 9), 2, 5, 2, 2); // stride 2 with two columns of padding
        check_conv(2, (1, 5, 8), 2, 2, 3, 0); // stride 3, no padding, a column left over
    }

    #[test]
    fn inside_columns_are_those_that_read_the_image() {
        for (w, k, stride, pad) in [(8, 3, 2, 1), (9, 5, 2, 2), (8, 2, 3, 0), (5, 3, 1, 1), (3, 4, 1, 2), (7, 1, 2, 0)]
        {
            let s = ConvShape::new((1, 4, w), 1, k, stride, pad).unwrap();
            for kx in 0..k {
                let inside: Vec<usize> =
                    (0..s.out_w()).filter(|&ox| (ox * stride + kx).checked_sub(pad).is_some_and(|x| x < w)).collect();
                let (lo, hi) = s.inside_columns(kx);
                assert_eq!((lo..hi).collect::<Vec<_>>(), inside, "w{w} k{k} stride{stride} pad{pad} kx{kx}");
            }
        }
    }

    #[test]
    fn max_pooling_matches_candle() {
        for (n, c, h, w) in [(2, 3, 6, 6), (1, 1, 5, 7), (3, 2, 4, 3)] {
            let x = values(n * c * h * w, 5);
            let xv = Var::from_tensor(&Tensor::from_vec(x.clone(), (n, c, h, w), &Device::Cpu).unwrap()).unwrap();
            // candle's max_pool2d has a wrong gradient (see model::max_pool2); its values
            // are the reference, the gradient is that of a max over each window.
            let y = xv.as_tensor().max_pool2d(2).unwrap();
            assert_eq!(to_vec(&y), to_vec(&crate::kernels::test_values::max_pool2(xv.as_tensor()).unwrap()));
            let y = crate::kernels::test_values::max_pool2(xv.as_tensor()).unwrap();
            let up = values(y.elem_count(), 6);
            let upt = Tensor::from_vec(up.clone(), y.shape(), &Device::Cpu).unwrap();
            let grads = (y.clone() * upt).unwrap().sum_all().unwrap().backward().unwrap();
            // NCHW planes are back to back too: (s, c) planes in place of (c, s).
            let (mut out, mut arg) = (vec![f32::NAN; y.elem_count()], vec![0u32; y.elem_count()]);
            max_pool2(&x, n * c, (h, w), &mut out, &mut arg);
            close("pooled", &out, &to_vec(&y));
            let mut dx = vec![0.0; x.len()];
            max_pool2_backward(&up, &arg, &mut dx);
            close("pool dx", &dx, &to_vec(grads.get(&xv).unwrap()));
        }
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() {
        assert!(ConvShape::new((1, 2, 2), 1, 5, 1, 1).is_none());
        assert!(ConvShape::new((1, 2, 2), 1, 3, 0, 1).is_none());
        let s = ConvShape::new((1, 2, 2), 1, 5, 1, 2).unwrap();
        assert_eq!((s.out_h(), s.out_w()), (2, 2));
    }
}
