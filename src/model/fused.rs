//! The training step of a dense network below candle's per-op layer: forward and backward
//! of every layer as calls to the `gemm` crate on flat buffers, with the bias and the
//! activation fused into the passes over each layer's output, and the batch split into one
//! part per thread (each part's products run on one core; the parts' gradients are summed).
//! candle still owns the parameters (read in place from its `Var`s), receives the
//! gradients (a `GradStore`, so the optimizers and gradient clipping are unchanged), and
//! runs every other model (convolutions, dropout, GELU/SiLU) and the evaluations.
//!
//! Measured with `cargo bench --bench mlp_throughput` (README, Speed): candle's own path
//! spends a third of a step outside the matrix products (allocation, copies, one pass per
//! elementwise op) and scales poorly to two threads on these small products.

use super::{Activation, Model};
use anyhow::{Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{Device, Storage, Tensor, WithDType};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

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
struct Layer<'a> {
    w: &'a [f32],
    b: &'a [f32],
    inputs: usize,
    outputs: usize,
}

/// One part of the batch: its summed loss and its gradients (already divided by the
/// whole batch's size), layer by layer.
struct Part {
    loss_sum: f64,
    dw: Vec<Vec<f32>>,
    db: Vec<Vec<f32>>,
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

impl Model {
    /// Whether [`Model::fused_loss_and_grads`] can train this model: dense layers only, no
    /// dropout, and an activation whose derivative follows from its output.
    pub fn fusable(&self) -> bool {
        self.convs.is_empty()
            && self.dropout == 0.0
            && matches!(
                self.activation,
                Activation::Relu | Activation::Tanh | Activation::Sigmoid | Activation::LeakyRelu
            )
    }

    /// The mean loss over the batch `x` (rows of `features` values) and the gradient of
    /// every parameter, the batch split into `parts` parts computed in parallel on the
    /// current rayon pool.
    pub fn fused_loss_and_grads(
        &self,
        x: &[f32],
        features: usize,
        targets: Targets<'_>,
        parts: usize,
    ) -> Result<(f64, GradStore)> {
        let n = x.len() / features;
        // Read guards on every parameter for the length of the step.
        let guards: Vec<_> = self
            .dense
            .iter()
            .flat_map(|d| [d.w.as_tensor().storage_and_layout(), d.b.as_tensor().storage_and_layout()])
            .collect();
        let mut slices = Vec::with_capacity(guards.len());
        for (storage, layout) in &guards {
            let Storage::Cpu(cpu) = &**storage else { bail!("the fused step runs on the CPU") };
            if !layout.is_contiguous() {
                bail!("the fused step needs contiguous parameters");
            }
            let values = cpu.as_slice::<f32>()?;
            slices.push(&values[layout.start_offset()..]);
        }
        let layers: Vec<Layer<'_>> = self
            .dense
            .iter()
            .zip(slices.chunks(2))
            .map(|(d, s)| {
                let (inputs, outputs) = (d.w.dims()[0], d.w.dims()[1]);
                Layer { w: &s[0][..inputs * outputs], b: &s[1][..outputs], inputs, outputs }
            })
            .collect();
        if layers.first().is_none_or(|l| l.inputs != features) {
            bail!("the batch has {features} features, the network takes {:?}", layers.first().map(|l| l.inputs));
        }
        let parts = parts.clamp(1, n.max(1));
        let bounds: Vec<(usize, usize)> = (0..parts).map(|p| (p * n / parts, (p + 1) * n / parts)).collect();
        let run = |&(start, end): &(usize, usize)| {
            part(&layers, self.activation, &x[start * features..end * features], targets.rows(start, end), n)
        };
        let mut results: Vec<Part> =
            if parts == 1 { bounds.iter().map(run).collect() } else { bounds.par_iter().map(run).collect() };
        let mut total = results.remove(0);
        for other in results {
            total.loss_sum += other.loss_sum;
            for (a, b) in total.dw.iter_mut().zip(&other.dw).chain(total.db.iter_mut().zip(&other.db)) {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            }
        }
        drop(layers);
        drop(slices);
        drop(guards);
        let mut grads = GradStore::default();
        for ((d, dw), db) in self.dense.iter().zip(total.dw).zip(total.db) {
            let (inputs, outputs) = (d.w.dims()[0], d.w.dims()[1]);
            grads.insert(d.w.as_tensor(), Tensor::from_vec(dw, (inputs, outputs), &Device::Cpu)?);
            grads.insert(d.b.as_tensor(), Tensor::from_vec(db, outputs, &Device::Cpu)?);
        }
        Ok((total.loss_sum / n as f64, grads))
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
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above keep every index the strides reach inside the slices, and
    // `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
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

fn activate(a: Activation, z: &mut [f32]) {
    match a {
        Activation::Relu => z.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::LeakyRelu => z.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { 0.01 * *v }),
        Activation::Tanh => z.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Sigmoid => z.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        Activation::Gelu | Activation::Silu => unreachable!("not fusable"),
    }
}

/// `grad *= f'(z)`, from the activation's output `out = f(z)`.
fn backprop_activation(a: Activation, grad: &mut [f32], out: &[f32]) {
    let pairs = grad.iter_mut().zip(out);
    match a {
        Activation::Relu => pairs.for_each(|(g, o)| *g = if *o > 0.0 { *g } else { 0.0 }),
        Activation::LeakyRelu => pairs.for_each(|(g, o)| *g = if *o > 0.0 { *g } else { 0.01 * *g }),
        Activation::Tanh => pairs.for_each(|(g, o)| *g *= 1.0 - o * o),
        Activation::Sigmoid => pairs.for_each(|(g, o)| *g *= o * (1.0 - o)),
        Activation::Gelu | Activation::Silu => unreachable!("not fusable"),
    }
}

/// Forward and backward of rows `x` (the whole batch has `batch` rows).
fn part(layers: &[Layer<'_>], activation: Activation, x: &[f32], targets: Targets<'_>, batch: usize) -> Part {
    let last = layers.len() - 1;
    let n = x.len() / layers[0].inputs;
    // Each layer's output, after its activation (the last one's are the logits).
    let mut outs: Vec<Vec<f32>> = Vec::with_capacity(layers.len());
    for (l, layer) in layers.iter().enumerate() {
        let input: &[f32] = if l == 0 { x } else { &outs[l - 1] };
        let mut z: Vec<f32> = Vec::with_capacity(n * layer.outputs);
        for _ in 0..n {
            z.extend_from_slice(layer.b);
        }
        matmul((n, layer.outputs, layer.inputs), &mut z, true, input, (layer.inputs, 1), layer.w, (layer.outputs, 1));
        if l < last {
            activate(activation, &mut z);
        }
        outs.push(z);
    }
    // The loss and its gradient with respect to the last layer's output.
    let classes = layers[last].outputs;
    let scale = 1.0 / batch as f32;
    let mut loss_sum = 0f64;
    let mut dz = outs[last].clone();
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
    let mut dw = Vec::with_capacity(layers.len());
    let mut db = Vec::with_capacity(layers.len());
    for l in (0..layers.len()).rev() {
        let layer = &layers[l];
        let input: &[f32] = if l == 0 { x } else { &outs[l - 1] };
        let mut g = vec![0f32; layer.inputs * layer.outputs];
        // dW = input^T @ dz.
        matmul((layer.inputs, layer.outputs, n), &mut g, false, input, (1, layer.inputs), &dz, (layer.outputs, 1));
        let mut gb = vec![0f32; layer.outputs];
        for row in dz.chunks_exact(layer.outputs) {
            gb.iter_mut().zip(row).for_each(|(b, v)| *b += v);
        }
        dw.push(g);
        db.push(gb);
        if l > 0 {
            // d(input) = dz @ W^T, then through the activation that produced the input.
            let mut dh = vec![0f32; n * layer.inputs];
            matmul(
                (n, layer.inputs, layer.outputs),
                &mut dh,
                false,
                &dz,
                (layer.outputs, 1),
                layer.w,
                (1, layer.outputs),
            );
            backprop_activation(activation, &mut dh, &outs[l - 1]);
            dz = dh;
        }
    }
    dw.reverse();
    db.reverse();
    Part { loss_sum, dw, db }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelSpec, cross_entropy, mse};

    /// The fused gradients against candle's autograd on the same model and batch.
    fn compare(activation: Activation, classification: bool, parts: usize) {
        let spec = ModelSpec::Mlp { hidden: vec![7, 5], activation, dropout: 0.0 };
        let (features, outputs, n) = (6, if classification { 4 } else { 1 }, 9);
        let model = Model::new(&spec, features, outputs, None, 3).unwrap();
        assert!(model.fusable());
        let x: Vec<f32> = (0..n * features).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        let classes: Vec<u32> = (0..n as u32).map(|i| i * 3 % outputs as u32).collect();
        let values: Vec<f32> = (0..n).map(|i| i as f32 / 4.0 - 1.0).collect();
        let xt = Tensor::from_vec(x.clone(), (n, features), &Device::Cpu).unwrap();
        let out = model.forward(&xt, None).unwrap();
        let loss = if classification {
            cross_entropy(&out, &Tensor::from_vec(classes.clone(), n, &Device::Cpu).unwrap()).unwrap()
        } else {
            mse(&out, &Tensor::from_vec(values.clone(), (n, 1), &Device::Cpu).unwrap()).unwrap()
        };
        let expected = loss.backward().unwrap();
        let targets = if classification { Targets::Classes(&classes) } else { Targets::Values(&values) };
        let (fused_loss, grads) = model.fused_loss_and_grads(&x, features, targets, parts).unwrap();
        let want = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((fused_loss - want).abs() < 1e-5 * want.abs().max(1.0), "loss {fused_loss} vs {want}");
        for var in model.vars() {
            let a: Vec<f32> = grads.get(&var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = expected.get(&var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            for (a, b) in a.iter().zip(&b) {
                assert!((a - b).abs() < 1e-5 + 1e-4 * b.abs(), "{activation:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn fused_gradients_match_candles_autograd() {
        for activation in [Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::LeakyRelu] {
            for classification in [true, false] {
                for parts in [1, 2, 4] {
                    compare(activation, classification, parts);
                }
            }
        }
    }
}
