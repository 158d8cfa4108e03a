//! Direct 3x3 "same" convolutions (stride 1, padding 1: every 3x3 convolution of the
//! ResNet but the two that downsample), without im2col: the vector kernels read the input
//! where it lies and keep a block of outputs in registers.
//!
//! The kernels read an input plane as three copies ([`Shifted`]), for the three columns
//! of a tap: the plane shifted right by one column, as it is, and shifted left by one,
//! each with a zero row above and below and zeros where the shift brought in a value
//! from the row beside. Output position q = y * w + x (the dense plane's order) reads,
//! for tap (ky, kx), copy kx at q + ky * w: a run of consecutive outputs reads a run of
//! consecutive inputs for every tap, one unaligned vector load shared by a block of
//! output channels (each a broadcast weight and a fused multiply-add), and the outputs
//! are stored where they belong, with nothing computed that is not kept.
//!
//! - forward: `out = conv(x, w)`, [`same_conv`];
//! - d(input): the same kernel on the output gradient's copies, with the weights
//!   transposed and each kernel turned by 180 degrees ([`rotated`]);
//! - d(weight): [`weight_grad`], each tap's products summed over the positions and
//!   samples in vector lanes, then across the lanes, reading the input's copies too (made
//!   on cache-line boundaries, as is the output gradient it reads).
//!
//! Sums run in another order than im2col + gemm (and with fused multiply-adds where the
//! CPU has them): results agree with candle's convolution to float32 rounding.

use super::Buffers;
use super::conv::zero_columns;
use pulp::{Simd, WithSimd};

/// The three shifted copies of an h x w plane (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shifted {
    pub h: usize,
    pub w: usize,
}

impl Shifted {
    /// Output positions per plane.
    pub fn positions(&self) -> usize {
        self.h * self.w
    }

    /// Values of one copy: h + 2 rows, then a vector (16 values) of zeros that the last
    /// vector of positions may read past the plane's end; a multiple of 16.
    pub fn copy_len(&self) -> usize {
        ((self.h + 2) * self.w + 16).next_multiple_of(16)
    }

    /// Values per input plane: its three copies.
    pub fn stride(&self) -> usize {
        3 * self.copy_len()
    }

    /// Writes the copies of the `planes` dense h x w planes of `dense` into `out`
    /// (`planes * stride` values): three whole-plane copies and a column of zeros each.
    pub fn shift(&self, dense: &[f32], planes: usize, out: &mut [f32]) {
        let (h, w, len, hw) = (self.h, self.w, self.copy_len(), self.positions());
        assert!(dense.len() >= planes * hw && out.len() >= planes * self.stride());
        for (src, dst) in dense.chunks_exact(hw).zip(out.chunks_exact_mut(self.stride())).take(planes) {
            for (kx, copy) in dst.chunks_exact_mut(len).enumerate() {
                // Copy kx holds x[y][c + kx - 1] at (y + 1) * w + c: the plane starts at
                // w + 1 - kx.
                let at = w + 1 - kx;
                copy[..at].fill(0.0);
                copy[at..at + hw].copy_from_slice(src);
                copy[at + hw..].fill(0.0);
                // Where the shift wrapped a value around from the row beside (the first
                // column of copy 0, the last of copy 2, over all h + 2 rows).
                let rows = &mut copy[..(h + 2) * w];
                match kx {
                    0 => zero_columns(rows, w, (1, w)),
                    2 => zero_columns(rows, w, (0, w - 1)),
                    _ => {}
                }
            }
        }
    }
}

/// The weights (c_out, c_in, 3, 3) of the convolution whose input gradient is the
/// convolution of the output gradient with them: (c_in, c_out, 3, 3), each kernel
/// turned by 180 degrees.
pub fn rotated(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    assert_eq!(w.len(), c_out * c_in * 9);
    let mut r = vec![0f32; w.len()];
    for co in 0..c_out {
        for ci in 0..c_in {
            for t in 0..9 {
                r[(ci * c_out + co) * 9 + 8 - t] = w[(co * c_in + ci) * 9 + t];
            }
        }
    }
    r
}

/// Vectors of positions per block of the forward kernel.
const PX: usize = 4;

/// A convolution's weights (c_out, c_in, 3, 3) packed for [`same_conv`]: blocks of
/// output channels (as many as the kernel keeps in registers), within a block tap by tap
/// with the block's channels side by side; the channels left over one by one.
pub struct Packed {
    c_in: usize,
    c_out: usize,
    /// Output channels per block.
    block: usize,
    values: Vec<f32>,
}

impl Packed {
    /// Packs `w` (c_out, c_in, 3, 3).
    pub fn new(c_in: usize, c_out: usize, w: &[f32]) -> Packed {
        assert_eq!(w.len(), c_out * c_in * 9);
        // A block of `block` output channels x PX vectors of positions stays in registers,
        // with the PX loaded inputs and a broadcast weight: 4 x 4 of AVX-512's 32
        // registers, 2 x 4 of AVX2's 16.
        let block = if lanes() >= 16 { 4 } else { 2 };
        let mut values = Vec::with_capacity(w.len());
        let blocked = c_out / block * block;
        for co in (0..blocked).step_by(block) {
            for ci in 0..c_in {
                for t in 0..9 {
                    values.extend((0..block).map(|b| w[((co + b) * c_in + ci) * 9 + t]));
                }
            }
        }
        values.extend_from_slice(&w[blocked * c_in * 9..]);
        Packed { c_in, c_out, block, values }
    }
}

/// The f32 lanes of the vectors the kernels run on here (16 with AVX-512, 8 with AVX2).
fn lanes() -> usize {
    struct Lanes;
    impl WithSimd for Lanes {
        type Output = usize;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> usize {
            S::F32_LANES
        }
    }
    pulp::Arch::new().dispatch(Lanes)
}

/// `out = conv(x, w)` for one sample: `x` holds the [`Shifted`] copies of its `c_in`
/// planes, `out` the `c_out` dense output planes.
pub fn same_conv(g: Shifted, w: &Packed, x: &[f32], out: &mut [f32]) {
    pulp::Arch::new().dispatch(ConvOp::new(g, w, x, out));
}

/// [`same_conv`] as pulp's operation (run at the width pulp picks, or a given one).
struct ConvOp<'a> {
    g: Shifted,
    w: &'a Packed,
    x: &'a [f32],
    out: &'a mut [f32],
}

impl<'a> ConvOp<'a> {
    fn new(g: Shifted, w: &'a Packed, x: &'a [f32], out: &'a mut [f32]) -> ConvOp<'a> {
        assert!(x.len() >= w.c_in * g.stride() && out.len() == w.c_out * g.positions());
        ConvOp { g, w, x, out }
    }
}

impl WithSimd for ConvOp<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Self::Output {
        let ConvOp { g, w, x, out } = self;
        let (c_in, hw, block) = (w.c_in, g.positions(), w.block);
        let blocked = w.c_out / block * block;
        for co in (0..blocked).step_by(block) {
            let taps = &w.values[co * c_in * 9..(co + block) * c_in * 9];
            let dst = &mut out[co * hw..(co + block) * hw];
            if block == 4 {
                conv_block::<S, 4>(simd, g, c_in, x, taps, dst);
            } else {
                conv_block::<S, 2>(simd, g, c_in, x, taps, dst);
            }
        }
        for co in blocked..w.c_out {
            let taps = &w.values[co * c_in * 9..][..c_in * 9];
            conv_block::<S, 1>(simd, g, c_in, x, taps, &mut out[co * hw..(co + 1) * hw]);
        }
    }
}

/// Loads a vector from `v` at `at`.
///
/// # Safety
/// `at + S::F32_LANES <= v.len()`.
#[inline(always)]
unsafe fn load<S: Simd>(v: &[f32], at: usize) -> S::f32s {
    debug_assert!(at + S::F32_LANES <= v.len());
    unsafe { v.as_ptr().add(at).cast::<S::f32s>().read_unaligned() }
}

/// `CB` output channels of one sample (`w` packed as (c_in, 9, CB), `out` `CB` dense
/// planes): PX vectors of positions at a time, then single vectors, then the positions
/// that do not fill a vector (stored partially).
#[inline(always)]
fn conv_block<S: Simd, const CB: usize>(simd: S, g: Shifted, c_in: usize, x: &[f32], w: &[f32], out: &mut [f32]) {
    let (lanes, hw) = (S::F32_LANES, g.positions());
    assert!(x.len() >= c_in * g.stride() && w.len() >= c_in * 9 * CB && out.len() >= CB * hw);
    let mut q = 0;
    while q + PX * lanes <= hw {
        let acc = accumulate::<S, CB, PX>(simd, g, c_in, x, w, q);
        for (b, a) in acc.iter().enumerate() {
            let plane = &mut out[b * hw..(b + 1) * hw];
            for (p, &v) in a.iter().enumerate() {
                // SAFETY: q + PX * lanes <= hw (the loop's condition).
                unsafe { plane.as_mut_ptr().add(q + p * lanes).cast::<S::f32s>().write_unaligned(v) };
            }
        }
        q += PX * lanes;
    }
    while q < hw {
        let acc = accumulate::<S, CB, 1>(simd, g, c_in, x, w, q);
        for (b, [v]) in acc.iter().enumerate() {
            let end = (q + lanes).min(hw);
            simd.partial_store_f32s(&mut out[b * hw + q..b * hw + end], *v);
        }
        q += lanes;
    }
}

/// The sums of `CB` output channels at PX vectors of positions from `q`.
#[inline(always)]
fn accumulate<S: Simd, const CB: usize, const PX: usize>(
    simd: S,
    g: Shifted,
    c_in: usize,
    x: &[f32],
    w: &[f32],
    q: usize,
) -> [[S::f32s; PX]; CB] {
    let (lanes, width, len, stride) = (S::F32_LANES, g.w, g.copy_len(), g.stride());
    // The furthest value read is q + PX * lanes - 1 + 2 * w in a copy (a last partial
    // vector reads past hw, into the copy's 16 zeros).
    assert!(q + PX * lanes + 2 * width <= len && x.len() >= c_in * stride);
    let offsets = tap_offsets(g);
    let mut acc = [[simd.splat_f32s(0.0); PX]; CB];
    for ci in 0..c_in {
        let taps = &w[ci * 9 * CB..(ci + 1) * 9 * CB];
        let copies = &x[ci * stride..(ci + 1) * stride];
        for (t, &off) in offsets.iter().enumerate() {
            let at = q + off;
            // SAFETY: at + PX * lanes <= 2 * len + q + 2 * w + PX * lanes <= stride (above).
            let xs: [S::f32s; PX] = std::array::from_fn(|p| unsafe { load::<S>(copies, at + p * lanes) });
            let tap = &taps[t * CB..][..CB];
            for (a, &wv) in acc.iter_mut().zip(tap) {
                let wv = simd.splat_f32s(wv);
                for (a, &xv) in a.iter_mut().zip(&xs) {
                    *a = simd.mul_add_e_f32s(xv, wv, *a);
                }
            }
        }
    }
    acc
}

/// Where tap t = ky * 3 + kx of output position q reads an input plane's copies:
/// q + offsets[t] (copy kx, row ky below).
#[inline(always)]
fn tap_offsets(g: Shifted) -> [usize; 9] {
    std::array::from_fn(|t| (t % 3) * g.copy_len() + (t / 3) * g.w)
}

/// A subslice of `len` values of `buf` that starts on a 64-byte boundary (a cache line,
/// an AVX-512 vector): vector loads from it at multiples of 16 values never straddle two
/// lines. `buf` must hold [`with_slack`]`(len)` values.
fn aligned(buf: &mut [f32], len: usize) -> &mut [f32] {
    let skip = (64 - buf.as_ptr() as usize % 64) % 64 / std::mem::size_of::<f32>();
    &mut buf[skip..skip + len]
}

/// Values to allocate for an [`aligned`] subslice of `len` values.
const fn with_slack(len: usize) -> usize {
    len + 64 / std::mem::size_of::<f32>() - 1
}

/// Output gradient planes at least this many vectors long are summed one input plane at a
/// time ([`WeightGradOp`]); shorter ones sample after sample with the sums in registers.
const LONG: usize = 16;

/// Bytes per sample that [`weight_grad`] reads repeatedly and should find in a core's L2
/// cache (the caller sizes its groups of samples by it): the output gradient, and for
/// short planes the input's copies too.
pub fn weight_grad_bytes(g: Shifted, c_in: usize, c_out: usize) -> usize {
    let dy = c_out * g.positions();
    let x = if g.positions() >= LONG * lanes() { 0 } else { c_in * g.stride() };
    (dy + x) * std::mem::size_of::<f32>()
}

/// Adds to `dw` (c_out, c_in, 3, 3) the weight gradient of `samples` samples: `x` holds
/// their dense input planes (samples, c_in, h, w), `dy` their dense output gradient planes
/// (samples, c_out, h, w).
///
/// Each (output channel, input channel, tap) is summed in vector lanes over the positions
/// and samples, then across the lanes. The input is read as [`Shifted`] copies, so every
/// tap of a run of positions is one vector load with no edge masks; the copies and the
/// output gradient are put on cache-line boundaries first (unaligned, 6 of 9 loads
/// straddled two lines: 65-77 GFLOP/s on one core here, 85-110 with both aligned).
pub fn weight_grad(g: Shifted, c_in: usize, c_out: usize, samples: usize, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let hw = g.positions();
    assert!(x.len() >= samples * c_in * hw && dy.len() >= samples * c_out * hw && dw.len() == c_out * c_in * 9);
    let long = hw >= LONG * lanes();
    let mut dy_buf = Buffers::scratch(with_slack(samples * c_out * hw));
    let dy = {
        let dy_a = aligned(&mut dy_buf, samples * c_out * hw);
        dy_a.copy_from_slice(&dy[..samples * c_out * hw]);
        &*dy_a
    };
    let mut x_buf = Buffers::scratch(with_slack(if long { g.stride() } else { samples * c_in * g.stride() }));
    pulp::Arch::new().dispatch(WeightGradOp { g, c_in, c_out, samples, long, x, dy, x_buf: &mut x_buf, dw });
    Buffers::give(dy_buf);
    Buffers::give(x_buf);
}

/// [`weight_grad`] as pulp's operation (`dy` aligned, `x` dense).
struct WeightGradOp<'a> {
    g: Shifted,
    c_in: usize,
    c_out: usize,
    samples: usize,
    /// Whether the planes are long (see [`LONG`]; decided with the vector width this
    /// dispatch runs at).
    long: bool,
    x: &'a [f32],
    dy: &'a [f32],
    /// For the input's copies.
    x_buf: &'a mut [f32],
    dw: &'a mut [f32],
}

impl WithSimd for WeightGradOp<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Self::Output {
        let WeightGradOp { g, c_in, c_out, samples, long, x, dy, x_buf, dw } = self;
        let (hw, stride) = (g.positions(), g.stride());
        let offsets = tap_offsets(g);
        // The furthest value a (partial) last vector's tap reads: inside the copies.
        assert!(hw.next_multiple_of(S::F32_LANES) + offsets[8] <= stride);
        // CO output channels x 9 taps of accumulators: 18 of AVX-512's 32 registers (27
        // spilled, measured); AVX2's 16 registers hold one channel's 9.
        let pair = S::F32_LANES >= 16;
        let zero = simd.splat_f32s(0.0);
        if long {
            // Long planes: input channel by input channel, each sample's plane copied once
            // (into L1) and read for every output channel, the accumulators kept in memory
            // between planes (loaded and stored once per run of >= 16 vectors).
            let plane = aligned(x_buf, stride);
            let mut accs = vec![[zero; 9]; c_out];
            for ci in 0..c_in {
                accs.fill([zero; 9]);
                for s in 0..samples {
                    g.shift(&x[(s * c_in + ci) * hw..][..hw], 1, plane);
                    let grads = |co: usize| &dy[(s * c_out + co) * hw..][..hw];
                    let mut co = 0;
                    while co < c_out {
                        if pair && co + 2 <= c_out {
                            let acc = [accs[co], accs[co + 1]];
                            let acc = grad_run::<S, 2>(simd, plane, &offsets, [grads(co), grads(co + 1)], acc);
                            accs[co..co + 2].copy_from_slice(&acc);
                            co += 2;
                        } else {
                            accs[co] = grad_run::<S, 1>(simd, plane, &offsets, [grads(co)], [accs[co]])[0];
                            co += 1;
                        }
                    }
                }
                for (co, a) in accs.iter().enumerate() {
                    for (t, &v) in a.iter().enumerate() {
                        dw[(co * c_in + ci) * 9 + t] += simd.reduce_sum_f32s(v);
                    }
                }
            }
        } else {
            // Short planes: the accumulators stay in registers over every sample, reading
            // all the samples' copies (made first) once per block of output channels.
            let copies = aligned(x_buf, samples * c_in * stride);
            g.shift(x, samples * c_in, copies);
            let copies = &*copies;
            let mut co = 0;
            while co < c_out {
                if pair && co + 2 <= c_out {
                    short_block::<S, 2>(simd, g, (c_in, c_out, samples), co, copies, dy, dw);
                    co += 2;
                } else {
                    short_block::<S, 1>(simd, g, (c_in, c_out, samples), co, copies, dy, dw);
                    co += 1;
                }
            }
        }
    }
}

/// The short planes' weight gradient of output channels `co..co + CO` against every input
/// channel, from all the samples' copies.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn short_block<S: Simd, const CO: usize>(
    simd: S,
    g: Shifted,
    (c_in, c_out, samples): (usize, usize, usize),
    co: usize,
    copies: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) {
    let (hw, stride, offsets) = (g.positions(), g.stride(), tap_offsets(g));
    for ci in 0..c_in {
        let mut acc = [[simd.splat_f32s(0.0); 9]; CO];
        for s in 0..samples {
            let plane = &copies[(s * c_in + ci) * stride..][..stride];
            let grads = std::array::from_fn(|o| &dy[(s * c_out + co + o) * hw..][..hw]);
            acc = grad_run::<S, CO>(simd, plane, &offsets, grads, acc);
        }
        for (o, a) in acc.iter().enumerate() {
            for (t, &v) in a.iter().enumerate() {
                dw[((co + o) * c_in + ci) * 9 + t] += simd.reduce_sum_f32s(v);
            }
        }
    }
}

/// `acc` plus, for every tap, the products of the tap's input vectors (`plane`'s copies
/// at q + offsets[t]) and the output gradient vectors of `CO` channels over one plane's
/// positions (the last vector partial, zeros past the plane).
#[inline(always)]
fn grad_run<S: Simd, const CO: usize>(
    simd: S,
    plane: &[f32],
    offsets: &[usize; 9],
    grads: [&[f32]; CO],
    mut acc: [[S::f32s; 9]; CO],
) -> [[S::f32s; 9]; CO] {
    let (lanes, hw) = (S::F32_LANES, grads[0].len());
    let full = hw / lanes * lanes;
    assert!(hw.next_multiple_of(lanes) + offsets[8] <= plane.len() && grads.iter().all(|d| d.len() == hw));
    let mut q = 0;
    while q < hw {
        let d: [S::f32s; CO] = std::array::from_fn(|o| {
            if q < full {
                // SAFETY: q + lanes <= full <= hw.
                unsafe { load::<S>(grads[o], q) }
            } else {
                simd.partial_load_f32s(&grads[o][q..])
            }
        });
        for (t, &off) in offsets.iter().enumerate() {
            // SAFETY: q + off + lanes <= hw rounded up to lanes + offsets[8] <= plane.len().
            let xv = unsafe { load::<S>(plane, q + off) };
            for (a, &dv) in acc.iter_mut().zip(&d) {
                a[t] = simd.mul_add_e_f32s(xv, dv, a[t]);
            }
        }
        q += lanes;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_copies_hold_each_tap_column_inside_a_zero_border() {
        for (h, w) in [(2, 3), (1, 1), (3, 2), (4, 16), (2, 33)] {
            let g = Shifted { h, w };
            let dense: Vec<f32> = (1..=2 * h * w).map(|v| v as f32).collect();
            let mut out = vec![f32::NAN; 2 * g.stride()];
            g.shift(&dense, 2, &mut out);
            for p in 0..2 {
                for kx in 0..3 {
                    let copy = &out[p * g.stride() + kx * g.copy_len()..][..g.copy_len()];
                    for (i, &v) in copy.iter().enumerate() {
                        let (r, c) = (i / w, i % w);
                        let (y, x) = (r as isize - 1, c as isize + kx as isize - 1);
                        let want = if r < h + 2 && y >= 0 && y < h as isize && x >= 0 && x < w as isize {
                            dense[p * h * w + y as usize * w + x as usize]
                        } else {
                            0.0
                        };
                        assert_eq!(v, want, "{h}x{w} plane {p} copy {kx} at {i}");
                    }
                }
            }
        }
    }

    /// The kernels at each vector width this CPU runs (AVX-512, AVX2, one lane) give the
    /// same values as at the width pulp picks, up to rounding: blocks of positions and
    /// channels, the single vectors after them and the partial last vector all differ by
    /// width. (The values against candle's convolution: `conv_op`'s tests.)
    #[test]
    fn every_vector_width_computes_the_same_convolution() {
        let (g, c_in, c_out, samples) = (Shifted { h: 7, w: 9 }, 3, 6, 2);
        let v = |n: usize, seed: u32| -> Vec<f32> {
            (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
        };
        let dense = v(samples * c_in * g.positions(), 1);
        let w = v(c_out * c_in * 9, 2);
        let dy = v(samples * c_out * g.positions(), 3);
        let mut copies = vec![0f32; c_in * g.stride()];
        g.shift(&dense[..c_in * g.positions()], c_in, &mut copies);
        let packed = Packed::new(c_in, c_out, &w);
        let mut want = vec![0f32; c_out * g.positions()];
        same_conv(g, &packed, &copies, &mut want);
        let mut want_dw = vec![0f32; c_out * c_in * 9];
        weight_grad(g, c_in, c_out, samples, &dense, &dy, &mut want_dw);
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
            }
        };
        let check = |name: &str, run_conv: &dyn Fn(ConvOp), run_grad: &dyn Fn(WeightGradOp)| {
            let mut out = vec![f32::NAN; c_out * g.positions()];
            run_conv(ConvOp::new(g, &packed, &copies, &mut out));
            close(&out, &want, &format!("{name} conv"));
            // Both orders of the weight gradient's loops, whichever this plane gets.
            for long in [false, true] {
                let mut x_buf = vec![f32::NAN; with_slack(samples * c_in * g.stride())];
                let mut dw = vec![0f32; c_out * c_in * 9];
                run_grad(WeightGradOp {
                    g,
                    c_in,
                    c_out,
                    samples,
                    long,
                    x: &dense,
                    dy: &dy,
                    x_buf: &mut x_buf,
                    dw: &mut dw,
                });
                close(&dw, &want_dw, &format!("{name} weight gradient (long planes: {long})"));
            }
        };
        check("one lane", &|op| Simd::vectorize(pulp::Scalar::new(), op), &|op| {
            Simd::vectorize(pulp::Scalar::new(), op)
        });
        if let Some(simd) = pulp::x86::V3::try_new() {
            check("AVX2", &|op| Simd::vectorize(simd, op), &|op| Simd::vectorize(simd, op));
        }
        if let Some(simd) = pulp::x86::V4::try_new() {
            check("AVX-512", &|op| Simd::vectorize(simd, op), &|op| Simd::vectorize(simd, op));
        }
    }

    #[test]
    fn rotated_weights_swap_the_channels_and_turn_each_kernel() {
        // (c_out 2, c_in 1): kernels 0..9 and 10..19.
        let w: Vec<f32> = (0..18).map(|v| v as f32).collect();
        let r = rotated(&w, 2, 1);
        assert_eq!(&r[..9], &[8., 7., 6., 5., 4., 3., 2., 1., 0.]);
        assert_eq!(&r[9..], &[17., 16., 15., 14., 13., 12., 11., 10., 9.]);
    }
}
