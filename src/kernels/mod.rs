//! runner's CPU kernels: candle custom ops and the passes behind them (convolution, batch
//! and layer norm, attention, GELU, a ResNet's blocks and trunk, linear layers), the fused
//! training step of dense and convolutional networks ([`Net`]), and their runtime: a
//! thread team ([`team`]), a pool of working buffers, the `gemm` calls, vector-width
//! dispatch, denormal flushing ([`denormals`]), huge pages and heap settings ([`heap`]),
//! candle's own thread settings ([`candle_threads`]). A leaf: it knows nothing of models,
//! the trainer or configs. Models use these ops where their tensors are on the CPU; each
//! op is tested against plain candle ops.
//!
//! The fused step: forward and backward of every layer as calls to the `gemm` crate on
//! flat buffers, with the bias, the activation and pooling fused into the passes over each
//! layer's output. Convolutions are im2col + one product per layer ([`conv`]) with the
//! batch split into one part per thread (the parts' gradients summed in part order); dense
//! networks on several threads split every product between the threads instead
//! (`lockstep.rs`). candle still owns the parameters (read in place), receives the
//! gradients (tensors rewritten in place step after step, so the optimizers and gradient
//! clipping are unchanged). Working buffers come from a pool shared by all threads
//! ([`Buffers`]) and go back to it, so a step allocates nothing that grows the heap.
//! Measured with `cargo bench --bench throughput` (README, Speed).

pub mod add_relu;
pub mod attention;
pub mod basic_block;
pub mod batch_norm;
pub mod candle_threads;
pub mod conv;
pub mod conv_bn;
pub mod conv_op;
pub mod denormals;
pub mod direct_conv;
pub mod fast_math;
pub mod gelu;
pub mod heap;
pub mod layer_norm;
pub mod linear;
mod lockstep;
pub mod resnet_trunk;
pub mod self_attention;
pub mod team;
#[cfg(test)]
pub(crate) mod test_values;

use anyhow::{Result, bail};
use candle_core::{Storage, Tensor, WithDType};
use conv::{ConvShape, Planes};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;
use std::sync::Mutex;

/// A custom op's saved values, also after a panic elsewhere poisoned their lock (they
/// are replaced whole, never left half written).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The f32 values of a custom op's contiguous input (the ops of this directory ask for
/// contiguous tensors); `op` names the op in the error.
pub(crate) fn op_input<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let (start, end) =
        l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{op} needs contiguous tensors")))?;
    Ok(&s.as_slice::<f32>()?[start..end])
}

/// The gradients of an op with an input shaped like `x` and a per-feature scale and shift
/// (batch norm, layer norm), as candle's `CustomOp3::bwd` returns them.
pub(crate) type AffineGrads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

pub(crate) fn affine_grads(
    x: &Tensor,
    dx: Vec<f32>,
    dscale: Vec<f32>,
    dshift: Vec<f32>,
) -> candle_core::Result<AffineGrads> {
    let (dev, n) = (x.device(), dscale.len());
    Ok((
        Some(Tensor::from_vec(dx, x.shape(), dev)?),
        Some(Tensor::from_vec(dscale, n, dev)?),
        Some(Tensor::from_vec(dshift, n, dev)?),
    ))
}

/// What the loss compares the network's outputs with.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// Class indices: softmax cross-entropy, averaged over the batch.
    Classes(&'a [u32]),
    /// One value per row: mean squared error.
    Values(&'a [f32]),
}

impl Targets<'_> {
    fn rows(&self, start: usize, end: usize) -> Targets<'_> {
        match self {
            Targets::Classes(t) => Targets::Classes(&t[start..end]),
            Targets::Values(t) => Targets::Values(&t[start..end]),
        }
    }
}

/// A dense layer's parameters, read in place: `w` is (inputs x outputs), row-major.
pub struct Layer<'a> {
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub inputs: usize,
    pub outputs: usize,
}

/// A convolution's parameters, read in place, and its shape.
pub struct ConvLayer<'a> {
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub shape: ConvShape,
}

/// The activations whose derivative follows from their output (what the fused step
/// trains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    LeakyRelu,
    Tanh,
    Sigmoid,
}

/// A network of convolutions (each followed by the activation and, with `pool`, 2x2
/// max-pooling) then dense layers (the activation between them), its parameters read in
/// place: what the fused step trains.
pub struct Net<'a> {
    pub convs: Vec<ConvLayer<'a>>,
    /// 2x2 max-pooling after each convolution.
    pub pool: bool,
    pub dense: Vec<Layer<'a>>,
    pub activation: Activation,
}

impl Net<'_> {
    /// The mean loss over the batch made of rows `rows` of `data` (a data set's samples,
    /// `features` values each; `targets` are the batch's), the gradient of every parameter
    /// (each convolution's weight and bias, then each dense layer's) written into `grads`,
    /// contiguous f32 CPU tensors of the parameters' sizes, in place. The batch is split
    /// into `parts` parts computed in parallel on the current rayon pool (each part gathers
    /// its own rows); their gradients are summed in part order, so the result does not
    /// depend on which part finished first.
    pub fn loss_and_grads(
        &self,
        data: &[f32],
        rows: &[u32],
        features: usize,
        targets: Targets<'_>,
        parts: usize,
        grads: &[Tensor],
    ) -> Result<f64> {
        let n = rows.len();
        if let Some(&r) = rows.iter().find(|&&r| (r as usize + 1) * features > data.len()) {
            bail!("row {r} is past the data's {} rows", data.len() / features);
        }
        let parts = parts.clamp(1, n.max(1));
        let bounds: Vec<(usize, usize)> = (0..parts).map(|p| (p * n / parts, (p + 1) * n / parts)).collect();
        // Dense networks on several threads split each product's columns (lockstep.rs);
        // convolutions split the batch into one part per thread.
        // The choice depends on the config alone (never on the machine's load), so a run
        // stopped and resumed gives exactly the uninterrupted run's numbers.
        let lockstep = self.convs.is_empty() && parts > 1 && rayon::current_num_threads() > 1;
        if lockstep {
            // The gradients are written straight into the kept tensors.
            let loss_sum = with_values_mut(grads, |ptrs| {
                lockstep::dense_step(&self.dense, self.activation, (data, rows, features), targets, ptrs)
            })?;
            return Ok(loss_sum / n as f64);
        }
        let run = |&(start, end): &(usize, usize)| {
            let mut x = Buffers::scratch((end - start) * features);
            for (dst, &r) in x.chunks_exact_mut(features).zip(&rows[start..end]) {
                dst.copy_from_slice(&data[r as usize * features..][..features]);
            }
            let part = part(self, &x, targets.rows(start, end), n);
            Buffers::give(x);
            part
        };
        let results: Vec<Part> =
            if parts == 1 { bounds.iter().map(run).collect() } else { bounds.par_iter().map(run).collect() };
        for (i, dst) in grads.iter().enumerate() {
            update_in_place(dst, |chunk, at| {
                let len = chunk.len();
                chunk.copy_from_slice(&results[0].grads[i][at..][..len]);
                for other in &results[1..] {
                    chunk.iter_mut().zip(&other.grads[i][at..][..len]).for_each(|(a, b)| *a += b);
                }
            })?;
        }
        let loss_sum: f64 = results.iter().map(|p| p.loss_sum).sum();
        for part in results {
            part.grads.into_iter().for_each(Buffers::give);
        }
        Ok(loss_sum / n as f64)
    }

    /// The network's outputs for the rows `x` (`features` values each; no dropout:
    /// evaluation), row after row, computed in pieces of at most 128 rows spread over the
    /// current rayon pool.
    pub fn outputs(&self, x: &[f32], features: usize) -> Vec<f32> {
        const PIECE: usize = 128;
        let outputs = self.dense.last().map_or(0, |d| d.outputs);
        let mut out = vec![0f32; x.len() / features.max(1) * outputs];
        x.par_chunks(PIECE * features).zip(out.par_chunks_mut(PIECE * outputs)).for_each(|(x, out)| {
            let mut pass = forward(self, x);
            let logits = pass.outs.pop().expect("the network has a last layer");
            out.copy_from_slice(&logits);
            Buffers::give(logits);
            pass.give_back();
        });
        out
    }
}

/// One part of the batch: its summed loss and the gradient of every parameter (in
/// [`Stack::vars`] order), already divided by the whole batch's size.
struct Part {
    loss_sum: f64,
    grads: Vec<Vec<f32>>,
}

/// Copies rows `rows` of the CPU tensor `t` (a batch of a data set) into `out`.
pub fn gather<T: WithDType>(t: &Tensor, rows: &[u32], out: &mut Vec<T>) -> Result<()> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { bail!("the fused step runs on the CPU") };
    if !layout.is_contiguous() || t.rank() == 0 {
        bail!("the fused step needs contiguous data");
    }
    let values = &cpu.as_slice::<T>()?[layout.start_offset()..layout.start_offset() + t.elem_count()];
    let width = t.elem_count() / t.dims()[0];
    out.clear();
    for &r in rows {
        let r = r as usize * width;
        out.extend_from_slice(&values[r..r + width]);
    }
    Ok(())
}

/// Calls `f` with the values of the contiguous CPU tensor `t`, read in place.
pub fn with_values<T: WithDType, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { bail!("the fused step runs on the CPU") };
    if !layout.is_contiguous() {
        bail!("the fused step needs contiguous data");
    }
    Ok(f(&cpu.as_slice::<T>()?[layout.start_offset()..layout.start_offset() + t.elem_count()]))
}

/// Applies `f(chunk, offset)` to the values of the contiguous f32 CPU tensor `t` in place
/// (candle's in-place custom op: no copy, no allocation), in one even piece per thread of
/// the current rayon pool when the tensor is large.
pub fn update_in_place(t: &Tensor, f: impl Fn(&mut [f32], usize) + Sync) -> Result<()> {
    with_values_mut(std::slice::from_ref(t), |held| {
        let (ptr, len) = held[0];
        // SAFETY: `with_values_mut` holds the tensor for writing meanwhile.
        let values = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        let threads = rayon::current_num_threads();
        if values.len() < 1 << 14 || threads == 1 {
            f(values, 0);
        } else {
            let piece = values.len().div_ceil(threads);
            values.par_chunks_mut(piece).enumerate().for_each(|(i, chunk)| f(chunk, i * piece));
        }
    })
}

/// Calls `f` with the values of every contiguous f32 CPU tensor of `ts`, read in place.
pub fn with_values_all<R>(ts: &[Tensor], f: impl FnOnce(&[&[f32]]) -> R) -> Result<R> {
    let guards: Vec<_> = ts.iter().map(|t| (t.storage_and_layout(), t.elem_count())).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for ((storage, layout), len) in &guards {
        let Storage::Cpu(cpu) = &**storage else { bail!("the fused step runs on the CPU") };
        if !layout.is_contiguous() {
            bail!("the fused step needs contiguous values");
        }
        slices.push(&cpu.as_slice::<f32>()?[layout.start_offset()..layout.start_offset() + len]);
    }
    Ok(f(&slices))
}

/// Calls `f` with the address and length of every tensor's values, each tensor held for
/// writing (candle's in-place op, nested) until `f` returns. The tensors must be distinct,
/// contiguous f32 CPU tensors.
pub fn with_values_mut<R>(ts: &[Tensor], f: impl FnOnce(&[(*mut f32, usize)]) -> R) -> Result<R> {
    use std::cell::RefCell;
    type Then<'a> = RefCell<Option<Box<dyn FnOnce(&[(*mut f32, usize)]) + 'a>>>;
    struct Hold<'a, 'b> {
        rest: &'b [Tensor],
        held: &'b RefCell<Vec<(*mut f32, usize)>>,
        then: &'b Then<'a>,
        failed: &'b RefCell<Option<anyhow::Error>>,
    }
    impl candle_core::InplaceOp1 for Hold<'_, '_> {
        fn name(&self) -> &'static str {
            "runner-hold-for-writing"
        }
        fn cpu_fwd(
            &self,
            storage: &mut candle_core::CpuStorage,
            layout: &candle_core::Layout,
        ) -> candle_core::Result<()> {
            let candle_core::CpuStorage::F32(values) = storage else { candle_core::bail!("f32 values only") };
            let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("contiguous values only") };
            self.held.borrow_mut().push((values[start..end].as_mut_ptr(), end - start));
            if let Err(e) = hold(self.rest, self.held, self.then, self.failed) {
                *self.failed.borrow_mut() = Some(e);
            }
            Ok(())
        }
    }
    fn hold<'a>(
        ts: &[Tensor],
        held: &RefCell<Vec<(*mut f32, usize)>>,
        then: &Then<'a>,
        failed: &RefCell<Option<anyhow::Error>>,
    ) -> Result<()> {
        match ts.split_first() {
            None => {
                if let Some(f) = then.borrow_mut().take() {
                    f(&held.borrow());
                }
                Ok(())
            }
            Some((first, rest)) => Ok(first.inplace_op1(&Hold { rest, held, then, failed })?),
        }
    }
    let mut result = None;
    {
        let then: Then<'_> = RefCell::new(Some(Box::new(|ptrs: &[(*mut f32, usize)]| result = Some(f(ptrs)))));
        let (held, failed) = (RefCell::new(Vec::new()), RefCell::new(None));
        hold(ts, &held, &then, &failed)?;
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
    }
    result.ok_or_else(|| anyhow::anyhow!("the tensors could not be held for writing"))
}

/// A pool of working buffers shared by all threads: a part takes what it needs and gives
/// it back (from whichever thread), so after the first steps buffers are reused rather
/// than allocated, and the kernel does not zero fresh pages every step.
struct Buffers;

static F32_POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
static U32_POOL: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());

fn pool<T>(p: &Mutex<Vec<Vec<T>>>) -> std::sync::MutexGuard<'_, Vec<Vec<T>>> {
    // The pool holds plain buffers: one a panicking thread left behind is still whole.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Buffers {
    /// A buffer of `len` zeros.
    fn zeros(len: usize) -> Vec<f32> {
        let mut v = Self::scratch(len);
        v.fill(0.0);
        v
    }

    /// A buffer of `len` values left as they were: for outputs written in full.
    fn scratch(len: usize) -> Vec<f32> {
        take(&F32_POOL, len)
    }

    /// Like [`Buffers::scratch`], for indices.
    fn indices(len: usize) -> Vec<u32> {
        take(&U32_POOL, len)
    }

    fn give(v: Vec<f32>) {
        pool(&F32_POOL).push(v);
    }

    fn give_indices(v: Vec<u32>) {
        pool(&U32_POOL).push(v);
    }
}

/// The smallest pooled buffer that holds `len` values, at length `len`, else a new one.
///
/// Every pooled buffer has its whole capacity initialised: each is made by `vec![0; n]`
/// (capacity n) and never grown in place (nothing pushes to a buffer taken from the pool),
/// so one is handed out at any length up to its capacity without being filled again (a
/// refill was a tenth of a convolutional step).
fn take<T: Copy + Default>(from: &Mutex<Vec<Vec<T>>>, len: usize) -> Vec<T> {
    let mut pooled = pool(from);
    let fits = (0..pooled.len()).filter(|&i| pooled[i].capacity() >= len).min_by_key(|&i| pooled[i].capacity());
    match fits {
        Some(i) => {
            let mut v = pooled.swap_remove(i);
            // SAFETY: `len` is within the capacity, all of which is initialised (above),
            // and T: Copy has nothing to drop.
            unsafe { v.set_len(len) };
            v
        }
        None => vec![T::default(); len],
    }
}

/// `dst (m x n) = [dst +] lhs (m x k) @ rhs (k x n)` on one core; each operand given by
/// its row and column strides.
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(dst.len() >= m * n);
    // SAFETY: `dst` holds the m x n values and is borrowed mutably, so nothing else
    // touches them; matmul_raw checks the operands.
    unsafe { matmul_raw((m, n, k), (dst.as_mut_ptr(), n), accumulate, lhs, (lhs_rs, lhs_cs), rhs, (rhs_rs, rhs_cs)) }
}

/// [`matmul`] into the `m x n` values at `dst` with row stride `dst_rs` (a block of
/// columns of a larger matrix).
///
/// # Safety
/// `dst` must be valid for writes at every `i * dst_rs + j` (`i < m`, `j < n`), and no
/// other thread may touch those values meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_raw(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts keep every operand index inside the slices; the caller vouches
    // for `dst`.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// A vector of `len` values written in parallel, chunk by chunk, without the zero fill of
/// `vec![0.0; len]` first (a pass over the whole buffer, on the calling thread): `fill(i,
/// out)` must write every value of chunk `i` (`chunk` values, the last one shorter).
pub(crate) fn par_written(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len].par_chunks_mut(chunk.max(1)).enumerate().for_each(|(i, c)| fill(i, c));
    // SAFETY: every chunk of the first `len` values was written by `fill` (its contract).
    unsafe { v.set_len(len) };
    v
}

/// Runs `f` compiled for the widest vectors this CPU has (AVX-512, else AVX2, else SSE2,
/// chosen at run time; plain builds target SSE2 only): the loops over f32 slices in `f`
/// vectorise to that width. The values do not change (Rust never contracts `a * b + c`
/// into a fused multiply-add).
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

fn activate(a: Activation, z: &mut [f32]) {
    vectorized(|| match a {
        Activation::Relu => z.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::LeakyRelu => z.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { 0.01 * *v }),
        Activation::Tanh => z.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Sigmoid => z.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
    })
}

/// `grad *= f'(z)`, from the activation's output `out = f(z)`.
fn backprop_activation(a: Activation, grad: &mut [f32], out: &[f32]) {
    let pairs = grad.iter_mut().zip(out);
    vectorized(|| match a {
        Activation::Relu => pairs.for_each(|(g, o)| *g = if *o > 0.0 { *g } else { 0.0 }),
        Activation::LeakyRelu => pairs.for_each(|(g, o)| *g = if *o > 0.0 { *g } else { 0.01 * *g }),
        Activation::Tanh => pairs.for_each(|(g, o)| *g *= 1.0 - o * o),
        Activation::Sigmoid => pairs.for_each(|(g, o)| *g *= o * (1.0 - o)),
    })
}

/// PyTorch's ReLU gradient as a new buffer: `grad` where the ReLU's output `out` is above
/// 0, else 0, in parallel (the custom ops' backward passes; [`backprop_activation`] is the
/// in-place form).
pub(crate) fn relu_grad(grad: &[f32], out: &[f32]) -> Vec<f32> {
    grad.par_iter().with_min_len(1 << 14).zip(out).map(|(&g, &y)| if y > 0.0 { g } else { 0.0 }).collect()
}

/// What the forward pass of a convolution keeps for the backward pass.
struct ConvSaved {
    cols: Vec<f32>,
    /// The output after pooling and the activation, channel-major.
    out: Vec<f32>,
    /// Where each pooled value came from (empty without pooling).
    arg: Vec<u32>,
}

/// A forward pass over some rows, with what the backward pass needs.
struct Forward {
    /// Per convolution, first to last.
    convs: Vec<ConvSaved>,
    /// The last convolution's output flattened into rows for the dense layers.
    flat: Option<Vec<f32>>,
    /// Each dense layer's output, after its activation (the last one's are the outputs).
    outs: Vec<Vec<f32>>,
}

impl Forward {
    /// Returns every buffer to the thread's pool.
    fn give_back(self) {
        for c in self.convs {
            Buffers::give(c.cols);
            Buffers::give(c.out);
            Buffers::give_indices(c.arg);
        }
        self.flat.into_iter().chain(self.outs).for_each(Buffers::give);
    }
}

/// The forward pass of `net` over the rows `x`.
fn forward(net: &Net<'_>, x: &[f32]) -> Forward {
    let features = net.convs.first().map_or_else(|| net.dense[0].inputs, |c| c.shape.c_in * c.shape.h * c.shape.w);
    let n = x.len() / features;
    let activation = net.activation;

    // Convolutions: each one's output (pooled, activated) is the next one's input.
    let mut saved: Vec<ConvSaved> = Vec::with_capacity(net.convs.len());
    for (i, layer) in net.convs.iter().enumerate() {
        let s = &layer.shape;
        let (oh, ow) = (s.out_h(), s.out_w());
        let mut cols = Buffers::scratch(s.patch() * n * oh * ow);
        match i {
            0 => conv::im2col(s, x, Planes::sample_major(s.c_in, s.h, s.w), n, &mut cols),
            _ => conv::im2col(s, &saved[i - 1].out, Planes::channel_major(n, s.h, s.w), n, &mut cols),
        }
        let mut z = Buffers::scratch(s.c_out * n * oh * ow);
        conv::conv_forward(s, layer.w, layer.b, &cols, n, &mut z);
        // Pooling before the activation gives the same values (the activations are
        // monotonic) on a quarter of the elements.
        let (mut out, arg) = if net.pool {
            let len = s.c_out * n * (oh / 2) * (ow / 2);
            let (mut out, mut arg) = (Buffers::scratch(len), Buffers::indices(len));
            conv::max_pool2(&z, s.c_out * n, (oh, ow), &mut out, &mut arg);
            Buffers::give(z);
            (out, arg)
        } else {
            (z, Vec::new())
        };
        activate(activation, &mut out);
        saved.push(ConvSaved { cols, out, arg });
    }
    // The flatten into the dense layers: channel-major (C, n, P) to n rows of (C, P), as
    // candle's NCHW flatten orders them.
    let flat: Option<Vec<f32>> = saved.last().zip(net.convs.last()).map(|(last, conv)| {
        let width = net.dense[0].inputs;
        let planes = width / conv.shape.c_out;
        let mut flat = Buffers::scratch(n * width);
        for (ci, channel) in last.out.chunks_exact(n * planes).enumerate() {
            for (s, plane) in channel.chunks_exact(planes).enumerate() {
                flat[s * width + ci * planes..][..planes].copy_from_slice(plane);
            }
        }
        flat
    });
    let dense_in: &[f32] = flat.as_deref().unwrap_or(x);

    let last = net.dense.len() - 1;
    let mut outs: Vec<Vec<f32>> = Vec::with_capacity(net.dense.len());
    for (l, layer) in net.dense.iter().enumerate() {
        let input: &[f32] = if l == 0 { dense_in } else { &outs[l - 1] };
        let mut z = Buffers::scratch(n * layer.outputs);
        for row in z.chunks_exact_mut(layer.outputs) {
            row.copy_from_slice(layer.b);
        }
        matmul((n, layer.outputs, layer.inputs), &mut z, true, input, (layer.inputs, 1), layer.w, (layer.outputs, 1));
        if l < last {
            activate(activation, &mut z);
        }
        outs.push(z);
    }
    Forward { convs: saved, flat, outs }
}

/// Turns `dz`, rows of the last layer's outputs, into the loss's gradient with respect to
/// them (`scale` is 1 / the whole batch's rows) and returns the rows' summed loss.
fn loss_gradient(dz: &mut [f32], classes: usize, targets: Targets<'_>, scale: f32) -> f64 {
    let mut loss_sum = 0f64;
    match targets {
        Targets::Classes(t) => {
            for (row, &target) in dz.chunks_exact_mut(classes).zip(t) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let target = target as usize;
                let shifted_target = row[target] - max;
                let mut sum = 0f32;
                for v in row.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                loss_sum += (sum.ln() - shifted_target) as f64;
                for v in row.iter_mut() {
                    *v *= scale / sum;
                }
                row[target] -= scale;
            }
        }
        Targets::Values(t) => {
            for (d, &y) in dz.iter_mut().zip(t) {
                let diff = *d - y;
                loss_sum += (diff * diff) as f64;
                *d = 2.0 * diff * scale;
            }
        }
    }
    loss_sum
}

/// Forward and backward of rows `x` (the whole batch has `batch` rows).
fn part(net: &Net<'_>, x: &[f32], targets: Targets<'_>, batch: usize) -> Part {
    let Forward { convs: mut saved, flat, outs } = forward(net, x);
    let n = outs[0].len() / net.dense[0].outputs;
    let activation = net.activation;
    let last = net.dense.len() - 1;
    let dense_in: &[f32] = flat.as_deref().unwrap_or(x);
    // The loss and its gradient with respect to the last layer's output.
    let classes = net.dense[last].outputs;
    let scale = 1.0 / batch as f32;
    let mut dz = Buffers::scratch(outs[last].len());
    dz.copy_from_slice(&outs[last]);
    let loss_sum = loss_gradient(&mut dz, classes, targets, scale);
    // Gradients, last layer first; reversed into parameter order at the end.
    let mut grads: Vec<Vec<f32>> = Vec::with_capacity(2 * (net.dense.len() + net.convs.len()));
    for l in (0..net.dense.len()).rev() {
        let layer = &net.dense[l];
        let input: &[f32] = if l == 0 { dense_in } else { &outs[l - 1] };
        let mut g = Buffers::scratch(layer.inputs * layer.outputs);
        // dW = input^T @ dz.
        matmul((layer.inputs, layer.outputs, n), &mut g, false, input, (1, layer.inputs), &dz, (layer.outputs, 1));
        let mut gb = Buffers::zeros(layer.outputs);
        for row in dz.chunks_exact(layer.outputs) {
            gb.iter_mut().zip(row).for_each(|(b, v)| *b += v);
        }
        grads.push(gb);
        grads.push(g);
        if l > 0 || !saved.is_empty() {
            // d(input) = dz @ W^T, then (between dense layers) through the activation that
            // produced the input.
            let mut dh = Buffers::scratch(n * layer.inputs);
            matmul(
                (n, layer.inputs, layer.outputs),
                &mut dh,
                false,
                &dz,
                (layer.outputs, 1),
                layer.w,
                (1, layer.outputs),
            );
            if l > 0 {
                backprop_activation(activation, &mut dh, &outs[l - 1]);
            }
            Buffers::give(std::mem::replace(&mut dz, dh));
        }
    }
    outs.into_iter().for_each(Buffers::give);
    if let Some(flat) = flat {
        // dz is the gradient of the flattened input: back to channel-major.
        let width = net.dense[0].inputs;
        let planes = width / net.convs.last().expect("flattened from a convolution").shape.c_out;
        let mut d_out = Buffers::scratch(n * width);
        for (ci, channel) in d_out.chunks_exact_mut(n * planes).enumerate() {
            for (s, plane) in channel.chunks_exact_mut(planes).enumerate() {
                plane.copy_from_slice(&dz[s * width + ci * planes..][..planes]);
            }
        }
        Buffers::give(std::mem::replace(&mut dz, d_out));
        Buffers::give(flat);
    }
    // Convolutions, last first: dz is the gradient of the layer's (pooled, activated) output.
    for (i, layer) in net.convs.iter().enumerate().rev() {
        let s = &layer.shape;
        let (oh, ow) = (s.out_h(), s.out_w());
        let ConvSaved { cols, out, arg } = saved.pop().expect("saved in the forward pass");
        backprop_activation(activation, &mut dz, &out);
        if net.pool {
            let mut unpooled = Buffers::zeros(s.c_out * n * oh * ow);
            conv::max_pool2_backward(&dz, &arg, &mut unpooled);
            Buffers::give(std::mem::replace(&mut dz, unpooled));
            Buffers::give_indices(arg);
        }
        Buffers::give(out);
        let (mut dw, mut db) = (Buffers::scratch(s.c_out * s.patch()), Buffers::scratch(s.c_out));
        if i > 0 {
            let mut dcols = Buffers::scratch(cols.len());
            conv::conv_backward(s, layer.w, &cols, &dz, n, &mut dw, &mut db, Some(&mut dcols));
            let mut dx = Buffers::zeros(s.c_in * n * s.h * s.w);
            conv::col2im(s, &mut dcols, n, &mut dx, Planes::channel_major(n, s.h, s.w));
            Buffers::give(dcols);
            Buffers::give(std::mem::replace(&mut dz, dx));
        } else {
            conv::conv_backward(s, layer.w, &cols, &dz, n, &mut dw, &mut db, None);
        }
        Buffers::give(cols);
        grads.push(db);
        grads.push(dw);
    }
    Buffers::give(dz);
    grads.reverse();
    Part { loss_sum, grads }
}
