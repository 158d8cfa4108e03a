//! The fused step of a dense network on several threads: every product is split between
//! the threads (the forward products and d(input) by output columns, the weight gradients
//! by their rows, so each thread packs only its share of the larger operand; the first
//! layer's forward product by its inputs, see below), which go
//! through the step's products together and wait for each other (spinning briefly, then
//! yielding) only where one product needs the whole result of the one before.
//!
//! Why not split the batch, as convolutions do (`part`)? A dense layer's weight gradient
//! is as large for 64 rows as for 128: with the batch split, each thread computes a whole
//! gradient for half the rows and the halves are summed afterwards. And why not one rayon
//! `join` per product? Measured on a 128x784 @ 784x256 product (2-core Intel Xeon): one
//! thread 346 us, two threads joined by rayon 238 us, the same two halves on threads that
//! spin at a barrier 198 us. A step has eight such products, so the step enters its team
//! of threads once ([`super::team::broadcast`]: threads that stay awake between steps) and
//! synchronises with [`Barrier`].

use super::Activation;
use super::{Buffers, Layer, Targets, activate, backprop_activation, loss_gradient, matmul_raw};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Participants of a step wait here for each other.
struct Barrier {
    arrived: AtomicUsize,
    team: usize,
}

impl Barrier {
    /// Returns once all `team` participants called it for the `round`-th time (each keeps
    /// its own count): the counter only grows, so no reset can race with a late reader.
    fn wait(&self, round: &mut usize) {
        *round += 1;
        let target = *round * self.team;
        self.arrived.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        while self.arrived.load(Ordering::Acquire) < target {
            // Long enough for the usual wait (a few microseconds of imbalance), short
            // enough that a participant whose core is taken (more threads than cores, other
            // processes) soon lets the late one run.
            if spins < 1 << 10 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A row-major matrix that the participants write, each its own rows or columns.
#[derive(Clone, Copy)]
struct Shared {
    ptr: *mut f32,
    len: usize,
    cols: usize,
}

// SAFETY: participants write disjoint parts (their own columns or rows) between barriers,
// and read other parts only after a barrier (whose Acquire/Release orders the writes).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn new(v: &mut [f32], cols: usize) -> Shared {
        Shared { ptr: v.as_mut_ptr(), len: v.len(), cols }
    }

    /// All of it, for reading after a barrier.
    ///
    /// # Safety
    /// No participant may write it until the next barrier.
    unsafe fn all(&self) -> &[f32] {
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Row `r`, columns `c0..c1`.
    ///
    /// # Safety
    /// Only this participant may touch these values until the next barrier.
    #[allow(clippy::mut_from_ref)]
    unsafe fn block(&self, r: usize, (c0, c1): (usize, usize)) -> &mut [f32] {
        assert!(c0 <= c1 && c1 <= self.cols && (r + 1) * self.cols <= self.len);
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.cols + c0), c1 - c0) }
    }

    /// `lhs @ rhs` into the block rows `r0..r1` x columns `c0..c1` (`lhs` already offset
    /// to row `r0`, `rhs` to column `c0`), added to it with `accumulate`.
    ///
    /// # Safety
    /// As for [`Shared::block`], for the whole block.
    #[allow(clippy::too_many_arguments)]
    unsafe fn matmul(
        &self,
        ((r0, r1), (c0, c1)): ((usize, usize), (usize, usize)),
        k: usize,
        lhs: &[f32],
        lhs_strides: (usize, usize),
        rhs: &[f32],
        rhs_strides: (usize, usize),
        accumulate: bool,
    ) {
        assert!(r0 <= r1 && r1 * self.cols <= self.len && c0 <= c1 && c1 <= self.cols);
        unsafe {
            matmul_raw(
                (r1 - r0, c1 - c0, k),
                (self.ptr.add(r0 * self.cols + c0), self.cols),
                accumulate,
                lhs,
                lhs_strides,
                rhs,
                rhs_strides,
            )
        }
    }
}

/// Participant `me`'s share of `0..len`: a block of columns in multiples of 16 (the
/// product kernels' width; a narrow output falls to the first participants), or of rows.
fn share(len: usize, team: usize, me: usize, align: usize) -> (usize, usize) {
    let width = len.div_ceil(team).div_ceil(align) * align;
    ((me * width).min(len), ((me + 1) * width).min(len))
}

/// The summed loss over the rows `rows` of `data`, with the gradients of `layers` written
/// to `grads` (the address and length of each layer's weight then bias gradient), on as
/// many threads as the current rayon pool has, together (its team). Each value is computed
/// as one thread computes it, except that the first layer's product is summed in one part
/// per thread (then the parts in thread order) and the products' column blocks may be
/// summed in another order by the product kernels: float rounding apart, the same values
/// at every thread count, and the same bits at the same count.
pub(super) fn dense_step(
    layers: &[Layer<'_>],
    activation: Activation,
    (data, rows, features): (&[f32], &[u32], usize),
    targets: Targets<'_>,
    grads: &[(*mut f32, usize)],
) -> f64 {
    let team = rayon::current_num_threads();
    let n = rows.len();
    let last = layers.len() - 1;
    let mut x = Buffers::scratch(if team > 1 { 0 } else { n * features });
    let mut outs: Vec<Vec<f32>> = layers.iter().map(|l| Buffers::scratch(n * l.outputs)).collect();
    // dz[l]: the loss's gradient with respect to layer l's output (the last one's is `last_dz`).
    let mut dz: Vec<Vec<f32>> =
        layers.iter().enumerate().map(|(l, d)| Buffers::scratch(if l == last { 0 } else { n * d.outputs })).collect();
    let losses: Vec<std::sync::Mutex<f64>> = (0..team).map(|_| std::sync::Mutex::new(0.0)).collect();
    let x_s = Shared::new(&mut x, features);
    let out_s: Vec<Shared> = outs.iter_mut().zip(layers).map(|(o, l)| Shared::new(o, l.outputs)).collect();
    let mut last_dz = Buffers::scratch(n * layers[last].outputs);
    let last_dz_s = Shared::new(&mut last_dz, layers[last].outputs);
    let dz_s: Vec<Shared> = dz.iter_mut().zip(layers).map(|(d, l)| Shared::new(d, l.outputs)).collect();
    // Layer l's weight gradient is grads[2 * l], its bias gradient grads[2 * l + 1].
    assert_eq!(grads.len(), 2 * layers.len(), "a weight and a bias gradient per layer");
    let grad_s: Vec<Shared> = grads
        .iter()
        .enumerate()
        .map(|(i, &(ptr, len))| {
            let l = &layers[i / 2];
            assert_eq!(len, if i % 2 == 0 { l.inputs * l.outputs } else { l.outputs }, "gradient sizes");
            Shared { ptr, len, cols: l.outputs }
        })
        .collect();
    // With several participants the first layer goes by its inputs (see below): each
    // one's partial product, n x outputs.
    let split = team > 1;
    let first = &layers[0];
    assert_eq!(first.inputs, features, "the first layer takes the rows' features");
    let mut partials: Vec<Vec<f32>> =
        (0..if split { team } else { 0 }).map(|_| Buffers::scratch(n * first.outputs)).collect();
    let partial_s: Vec<Shared> = partials.iter_mut().map(|p| Shared::new(p, first.outputs)).collect();
    let barrier = Barrier { arrived: AtomicUsize::new(0), team };
    let next_row = AtomicUsize::new(0);
    let scale = 1.0 / n as f32;

    super::team::broadcast(|me| {
        let mut round = 0;
        // SAFETY (every block below): participant `me` writes only its own share of rows or
        // columns between two barriers, and reads whole matrices only after a barrier.
        // Its share of the first layer's inputs (also the rows of that layer's weight
        // gradient it computes, and about the rows of W its optimizer share updates).
        let k = share(features, team, me, 16);
        let kw = k.1 - k.0;
        let mut xk = if split { Buffers::scratch(n * kw) } else { Vec::new() };
        if split {
            // The first layer by its inputs: each participant gathers its own columns of
            // the batch and multiplies them by its own rows of W, both in its own cache
            // (split by outputs, each read all of the batch and of W, half of them from the
            // other core's cache, after the other's gather and optimizer update); then
            // each sums the partial products over its own output columns.
            for (i, &r) in rows.iter().enumerate() {
                xk[i * kw..][..kw].copy_from_slice(&data[r as usize * features + k.0..][..kw]);
            }
            let all = ((0, n), (0, first.outputs));
            if kw == 0 {
                (0..n).for_each(|r| unsafe { partial_s[me].block(r, (0, first.outputs)) }.fill(0.0));
            } else {
                let w = &first.w[k.0 * first.outputs..];
                unsafe { partial_s[me].matmul(all, kw, &xk, (kw, 1), w, (first.outputs, 1), false) };
            }
            barrier.wait(&mut round);
            let cols = share(first.outputs, team, me, 16);
            for r in 0..n {
                let o = unsafe { out_s[0].block(r, cols) };
                o.copy_from_slice(&first.b[cols.0..cols.1]);
                for p in &partial_s {
                    let p = &unsafe { p.all() }[r * first.outputs..][cols.0..cols.1];
                    o.iter_mut().zip(p).for_each(|(o, v)| *o += v);
                }
                if last > 0 {
                    activate(activation, o);
                }
            }
            barrier.wait(&mut round);
        } else {
            // The batch's rows, claimed 8 at a time.
            loop {
                let start = next_row.fetch_add(8, Ordering::Relaxed);
                if start >= n {
                    break;
                }
                for (i, &r) in rows[start..(start + 8).min(n)].iter().enumerate() {
                    unsafe { x_s.block(start + i, (0, features)) }
                        .copy_from_slice(&data[r as usize * features..][..features]);
                }
            }
            barrier.wait(&mut round);
        }
        let (r0, r1) = share(n, team, me, 1);
        for (l, layer) in layers.iter().enumerate().skip(usize::from(split)) {
            let input = if l == 0 { unsafe { x_s.all() } } else { unsafe { out_s[l - 1].all() } };
            let cols = share(layer.outputs, team, me, 16);
            for r in 0..n {
                unsafe { out_s[l].block(r, cols) }.copy_from_slice(&layer.b[cols.0..cols.1]);
            }
            unsafe {
                out_s[l].matmul(
                    ((0, n), cols),
                    layer.inputs,
                    input,
                    (layer.inputs, 1),
                    &layer.w[cols.0..],
                    (layer.outputs, 1),
                    true,
                )
            };
            if l < last {
                (0..n).for_each(|r| activate(activation, unsafe { out_s[l].block(r, cols) }));
            }
            barrier.wait(&mut round);
        }
        // The loss, a share of the rows each.
        let classes = layers[last].outputs;
        let logits = unsafe { out_s[last].all() };
        let mine = unsafe { std::slice::from_raw_parts_mut(last_dz_s.ptr.add(r0 * classes), (r1 - r0) * classes) };
        mine.copy_from_slice(&logits[r0 * classes..r1 * classes]);
        let loss = loss_gradient(mine, classes, targets.rows(r0, r1), scale);
        *losses[me].lock().unwrap_or_else(|e| e.into_inner()) = loss;
        barrier.wait(&mut round);
        for l in (0..layers.len()).rev() {
            let layer = &layers[l];
            let input = if l == 0 { unsafe { x_s.all() } } else { unsafe { out_s[l - 1].all() } };
            let d = if l == last { unsafe { last_dz_s.all() } } else { unsafe { dz_s[l].all() } };
            let cols = share(layer.outputs, team, me, 16);
            let (gw, gb) = (&grad_s[2 * l], &grad_s[2 * l + 1]);
            // dW = input^T @ dz, a block of its rows (inputs) each: each participant reads
            // (and the product kernel packs) its own columns of the input, not all of them.
            let (i0, i1) = share(layer.inputs, team, me, 16);
            let rows = ((i0, i1), (0, layer.outputs));
            if l == 0 && split {
                // The first layer's inputs are the columns this participant gathered.
                if kw > 0 {
                    unsafe { gw.matmul(rows, n, &xk, (1, kw), d, (layer.outputs, 1), false) };
                }
            } else {
                unsafe { gw.matmul(rows, n, &input[i0..], (1, layer.inputs), d, (layer.outputs, 1), false) };
            }
            // db = the column sums of dz, a block of columns each.
            let db = unsafe { gb.block(0, cols) };
            db.fill(0.0);
            for row in d.chunks_exact(layer.outputs) {
                db.iter_mut().zip(&row[cols.0..cols.1]).for_each(|(b, v)| *b += v);
            }
            if l > 0 {
                // d(input) = dz @ W^T through the activation that produced the input.
                let cols = share(layer.inputs, team, me, 16);
                unsafe {
                    dz_s[l - 1].matmul(
                        ((0, n), cols),
                        layer.outputs,
                        d,
                        (layer.outputs, 1),
                        &layer.w[cols.0 * layer.outputs..],
                        (1, layer.outputs),
                        false,
                    )
                };
                let below = unsafe { out_s[l - 1].all() };
                for (r, out) in below.chunks_exact(layer.inputs).enumerate() {
                    backprop_activation(activation, unsafe { dz_s[l - 1].block(r, cols) }, &out[cols.0..cols.1]);
                }
                barrier.wait(&mut round);
            }
        }
        Buffers::give(xk);
    });
    Buffers::give(x);
    partials.into_iter().for_each(Buffers::give);
    Buffers::give(last_dz);
    outs.into_iter().chain(dz).for_each(Buffers::give);
    losses.into_iter().map(|l| l.into_inner().unwrap_or_else(|e| e.into_inner())).sum()
}
