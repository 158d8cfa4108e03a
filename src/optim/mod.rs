//! Optimizers with PyTorch's update rules, over candle `Var`s: SGD (momentum, dampening,
//! nesterov, weight decay), Adam, RMSprop and AdamW (candle-nn's AdamW, op for op, with its
//! moments in the open so a checkpoint can keep them). The trainer sets the rate from the
//! schedule before every step. On the CPU, SGD and AdamW update the tensors in place (one
//! pass over each tensor); elsewhere (a GPU) the same rules run as candle's tensor ops.

mod spec;

pub use spec::{OPTIMIZERS, OptimizerSpec};

use crate::kernels::{vectorized, with_values_all, with_values_mut};
use anyhow::{Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use std::collections::HashMap;

/// An optimizer bound to a model's parameters; `decay[i]` says whether the weight decay
/// applies to `vars[i]` (all by default).
pub enum Optimizer {
    Sgd { spec: OptimizerSpec, vars: Vec<Var>, decay: Vec<bool>, buffers: Vec<Option<Tensor>> },
    Adam { spec: OptimizerSpec, vars: Vec<Var>, decay: Vec<bool>, m: Vec<Tensor>, v: Vec<Tensor>, t: i32 },
    RmsProp { spec: OptimizerSpec, vars: Vec<Var>, decay: Vec<bool>, square: Vec<Tensor>, buffers: Vec<Tensor> },
    AdamW { spec: OptimizerSpec, vars: Vec<Var>, decay: Vec<bool>, m: Vec<Tensor>, v: Vec<Tensor>, t: i32 },
}

impl Optimizer {
    pub fn new(spec: &OptimizerSpec, vars: Vec<Var>) -> Result<Self> {
        let zeros = |vars: &[Var]| vars.iter().map(|v| v.zeros_like()).collect::<candle_core::Result<Vec<_>>>();
        let decay = vec![true; vars.len()];
        Ok(match spec {
            OptimizerSpec::Sgd { .. } => {
                Optimizer::Sgd { spec: spec.clone(), buffers: vec![None; vars.len()], vars, decay }
            }
            OptimizerSpec::Adam { .. } => {
                Optimizer::Adam { spec: spec.clone(), m: zeros(&vars)?, v: zeros(&vars)?, vars, decay, t: 0 }
            }
            OptimizerSpec::RmsProp { .. } => {
                Optimizer::RmsProp { spec: spec.clone(), square: zeros(&vars)?, buffers: zeros(&vars)?, vars, decay }
            }
            OptimizerSpec::AdamW { .. } => {
                Optimizer::AdamW { spec: spec.clone(), m: zeros(&vars)?, v: zeros(&vars)?, vars, decay, t: 0 }
            }
        })
    }

    /// Applies the weight decay only to the parameters `mask` marks (a ResNet's batch norm
    /// and biases are left out by default).
    pub fn with_decay_mask(mut self, mask: Vec<bool>) -> Result<Self> {
        let (Optimizer::Sgd { vars, decay, .. }
        | Optimizer::Adam { vars, decay, .. }
        | Optimizer::RmsProp { vars, decay, .. }
        | Optimizer::AdamW { vars, decay, .. }) = &mut self;
        if mask.len() != vars.len() {
            bail!("a decay mask of {} entries for {} parameters", mask.len(), vars.len());
        }
        *decay = mask;
        Ok(self)
    }

    /// The optimizer's state as named tensors (momentum buffers, moments) and its step count,
    /// for a checkpoint.
    pub fn state(&self) -> (Vec<(String, Tensor)>, i64) {
        let named = |prefix: &str, ts: &[Tensor]| -> Vec<(String, Tensor)> {
            ts.iter().enumerate().map(|(i, t)| (format!("optim.{prefix}.{i}"), t.clone())).collect()
        };
        match self {
            Optimizer::Sgd { buffers, .. } => (
                buffers
                    .iter()
                    .enumerate()
                    .filter_map(|(i, b)| b.as_ref().map(|b| (format!("optim.buf.{i}"), b.clone())))
                    .collect(),
                0,
            ),
            Optimizer::Adam { m, v, t, .. } | Optimizer::AdamW { m, v, t, .. } => {
                ([named("m", m), named("v", v)].concat(), *t as i64)
            }
            Optimizer::RmsProp { square, buffers, .. } => {
                ([named("square", square), named("buf", buffers)].concat(), 0)
            }
        }
    }

    /// Restores what [`Optimizer::state`] gave (read from a file onto the CPU: each tensor
    /// goes to its parameter's device).
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, t_saved: i64) -> Result<()> {
        let (Optimizer::Sgd { vars, .. }
        | Optimizer::Adam { vars, .. }
        | Optimizer::RmsProp { vars, .. }
        | Optimizer::AdamW { vars, .. }) = &*self;
        let device = vars.first().map_or(candle_core::Device::Cpu, |v| v.device().clone());
        let tensors: HashMap<&String, Tensor> = tensors
            .iter()
            .filter(|(k, _)| k.starts_with("optim."))
            .map(|(k, t)| Ok((k, t.to_device(&device)?)))
            .collect::<Result<_>>()?;
        let get = |name: String| -> Result<Tensor> {
            match tensors.get(&name) {
                Some(t) => Ok(t.clone()),
                None => bail!("the checkpoint has no {name}"),
            }
        };
        match self {
            Optimizer::Sgd { buffers, .. } => {
                for (i, b) in buffers.iter_mut().enumerate() {
                    *b = tensors.get(&format!("optim.buf.{i}")).cloned();
                }
            }
            Optimizer::Adam { m, v, t, .. } | Optimizer::AdamW { m, v, t, .. } => {
                for i in 0..m.len() {
                    (m[i], v[i]) = (get(format!("optim.m.{i}"))?, get(format!("optim.v.{i}"))?);
                }
                *t = t_saved as i32;
            }
            Optimizer::RmsProp { square, buffers, .. } => {
                for i in 0..square.len() {
                    (square[i], buffers[i]) = (get(format!("optim.square.{i}"))?, get(format!("optim.buf.{i}"))?);
                }
            }
        }
        Ok(())
    }

    /// Whether the parameters are on the CPU (the in-place updates' home).
    fn on_cpu(&self) -> bool {
        let (Optimizer::Sgd { vars, .. }
        | Optimizer::Adam { vars, .. }
        | Optimizer::RmsProp { vars, .. }
        | Optimizer::AdamW { vars, .. }) = self;
        vars.first().is_none_or(|v| v.device().is_cpu())
    }

    /// [`Optimizer::step`] as candle's tensor ops, on any device: the rule of the in-place
    /// CPU updates op for op (so the same values, bit for bit, on the CPU).
    pub fn step_ops(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        match self {
            Optimizer::Sgd {
                spec: OptimizerSpec::Sgd { momentum, dampening, nesterov, weight_decay },
                vars,
                decay,
                buffers,
            } => {
                // PyTorch's rule as tensor ops on the device.
                for ((var, buf), &decays) in vars.iter().zip(buffers.iter_mut()).zip(decay.iter()) {
                    let Some(g) = grads.get(var) else { continue };
                    let w = var.as_tensor();
                    let g = if *weight_decay != 0.0 && decays { (g + (w * *weight_decay)?)? } else { g.clone() };
                    let step = if *momentum != 0.0 {
                        let b = match buf.take() {
                            None => g.copy()?,
                            Some(b) => ((b * *momentum)? + (&g * (1.0 - *dampening))?)?,
                        };
                        let step = if *nesterov { (&g + (&b * *momentum)?)? } else { b.clone() };
                        *buf = Some(b.detach());
                        step
                    } else {
                        g
                    };
                    var.set(&(w - (step * lr)?)?)?;
                }
            }
            Optimizer::AdamW {
                spec: OptimizerSpec::AdamW { beta1, beta2, eps, weight_decay },
                vars,
                decay,
                m,
                v,
                t,
            } => {
                // candle-nn's AdamW::step, op for op, on the device.
                *t += 1;
                let scale_m = 1f64 / (1f64 - beta1.powi(*t));
                let scale_v = 1f64 / (1f64 - beta2.powi(*t));
                for (((var, m), v), &decays) in vars.iter().zip(m.iter_mut()).zip(v.iter_mut()).zip(decay.iter()) {
                    let Some(g) = grads.get(var) else { continue };
                    let wd = if decays { *weight_decay } else { 0.0 };
                    *m = ((&*m * *beta1)? + (g * (1.0 - *beta1))?)?.detach();
                    *v = ((&*v * *beta2)? + (g.sqr()? * (1.0 - *beta2))?)?.detach();
                    let adjusted = ((&*m * scale_m)? / ((&*v * scale_v)?.sqrt()? + *eps)?)?;
                    let w = ((var.as_tensor() * (1.0 - lr * wd))? - (adjusted * lr)?)?;
                    var.set(&w)?;
                }
            }
            Optimizer::Adam { .. } | Optimizer::RmsProp { .. } => return self.step(grads, lr),
            _ => unreachable!("each optimizer holds its own kind of spec"),
        }
        Ok(())
    }

    /// One update with rate `lr` from the gradients in `grads`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        // Adam and RMSprop are tensor ops everywhere; SGD and AdamW update in place on the CPU.
        if !self.on_cpu() && matches!(self, Optimizer::Sgd { .. } | Optimizer::AdamW { .. }) {
            return self.step_ops(grads, lr);
        }
        match self {
            Optimizer::Sgd {
                spec: OptimizerSpec::Sgd { momentum, dampening, nesterov, weight_decay },
                vars,
                decay,
                buffers,
            } => {
                // PyTorch's rule as candle's ops compute it (`t * s` is `t * s + 0` in f32),
                // in place, every tensor's weights and momentum in one pass, all tensors in
                // one parallel region: the same values as candle's ops, bit for bit.
                let (wd, m, keep, lr) = (*weight_decay as f32, *momentum as f32, (1.0 - *dampening) as f32, lr as f32);
                let nesterov = *nesterov;
                let decayed = |g: f32, w: f32, wd: f32| if wd != 0.0 { g + (w * wd + 0.0) } else { g };
                // (tensors written: weights, then the momentum buffer), gradient, fresh
                // buffer, the tensor's weight decay
                let mut written = Vec::new();
                let mut read = Vec::new();
                let mut fresh = Vec::new();
                let mut wds = Vec::new();
                for ((var, buf), &decays) in vars.iter().zip(buffers.iter_mut()).zip(decay.iter()) {
                    let Some(g) = grads.get(var) else { continue };
                    let w = var.as_tensor();
                    let wd = if decays { wd } else { 0.0 };
                    written.push(w.clone());
                    read.push(g.clone());
                    wds.push(wd);
                    if m != 0.0 {
                        // The first step's buffer is the (decayed) gradient itself.
                        fresh.push(buf.is_none());
                        if buf.is_none() {
                            let first = with_values_all(&[g.clone(), w.clone()], |v| {
                                v[0].iter().zip(v[1]).map(|(&g, &w)| decayed(g, w, wd)).collect::<Vec<f32>>()
                            })?;
                            *buf = Some(Tensor::from_vec(first, w.shape(), w.device())?);
                        }
                        written.push(buf.clone().expect("set above"));
                    }
                }
                let per = if m != 0.0 { 2 } else { 1 };
                in_place(&read, &written, per, |i, g, out| {
                    let wd = wds[i];
                    let [w, rest @ ..] = out else { return };
                    if m == 0.0 {
                        vectorized(|| {
                            for (w, &g) in w.iter_mut().zip(g) {
                                *w -= decayed(g, *w, wd) * lr + 0.0;
                            }
                        });
                        return;
                    }
                    let [b] = rest else { return };
                    let fresh = fresh[i];
                    vectorized(|| {
                        for ((w, b), &g) in w.iter_mut().zip(b.iter_mut()).zip(g) {
                            let g = decayed(g, *w, wd);
                            if !fresh {
                                *b = (*b * m + 0.0) + (g * keep + 0.0);
                            }
                            let step = if nesterov { g + (*b * m + 0.0) } else { *b };
                            *w -= step * lr + 0.0;
                        }
                    })
                })?;
            }
            Optimizer::Adam { spec: OptimizerSpec::Adam { beta1, beta2, eps, weight_decay }, vars, decay, m, v, t } => {
                *t += 1;
                let (c1, c2) = (1.0 - beta1.powi(*t), 1.0 - beta2.powi(*t));
                for (((var, m), v), &decays) in vars.iter().zip(m.iter_mut()).zip(v.iter_mut()).zip(decay.iter()) {
                    let Some(g) = grads.get(var) else { continue };
                    let g = if *weight_decay != 0.0 && decays {
                        (g + (var.as_tensor() * *weight_decay)?)?
                    } else {
                        g.clone()
                    };
                    *m = ((&*m * *beta1)? + (&g * (1.0 - *beta1))?)?.detach();
                    *v = ((&*v * *beta2)? + (g.sqr()? * (1.0 - *beta2))?)?.detach();
                    let denom = ((&*v / c2)?.sqrt()? + *eps)?;
                    let update = ((&*m / c1)? / denom)?;
                    var.set(&(var.as_tensor() - (update * lr)?)?)?;
                }
            }
            Optimizer::RmsProp {
                spec: OptimizerSpec::RmsProp { alpha, eps, momentum, weight_decay },
                vars,
                decay,
                square,
                buffers,
            } => {
                for (((var, sq), buf), &decays) in
                    vars.iter().zip(square.iter_mut()).zip(buffers.iter_mut()).zip(decay.iter())
                {
                    let Some(g) = grads.get(var) else { continue };
                    let g = if *weight_decay != 0.0 && decays {
                        (g + (var.as_tensor() * *weight_decay)?)?
                    } else {
                        g.clone()
                    };
                    *sq = ((&*sq * *alpha)? + (g.sqr()? * (1.0 - *alpha))?)?.detach();
                    let scaled = (g / (sq.sqrt()? + *eps)?)?;
                    let update = if *momentum > 0.0 {
                        *buf = ((&*buf * *momentum)? + scaled)?.detach();
                        buf.clone()
                    } else {
                        scaled
                    };
                    var.set(&(var.as_tensor() - (update * lr)?)?)?;
                }
            }
            Optimizer::AdamW {
                spec: OptimizerSpec::AdamW { beta1, beta2, eps, weight_decay },
                vars,
                decay,
                m,
                v,
                t,
            } => {
                // candle-nn's AdamW::step as candle's ops compute it (decoupled weight decay,
                // PyTorch's rule; `t * s` is `t * s + 0` and `t + s` is `t * 1 + s` in f32),
                // in place: every tensor's weights and moments in one pass, all tensors in
                // one parallel region, the same values as the ops bit for bit.
                *t += 1;
                let (beta1, beta2) = (*beta1, *beta2);
                let scale_m = (1f64 / (1f64 - beta1.powi(*t))) as f32;
                let scale_v = (1f64 / (1f64 - beta2.powi(*t))) as f32;
                let (b1, keep1, b2, keep2) = (beta1 as f32, (1.0 - beta1) as f32, beta2 as f32, (1.0 - beta2) as f32);
                let (eps, lr32) = (*eps as f32, lr as f32);
                let (mut read, mut written, mut shrink) = (Vec::new(), Vec::new(), Vec::new());
                for (((var, m), v), &decays) in vars.iter().zip(m.iter()).zip(v.iter()).zip(decay.iter()) {
                    let Some(g) = grads.get(var) else { continue };
                    read.push(g.clone());
                    written.extend([var.as_tensor().clone(), m.clone(), v.clone()]);
                    shrink.push((1f64 - lr * if decays { *weight_decay } else { 0.0 }) as f32);
                }
                in_place(&read, &written, 3, |i, g, out| {
                    let [w, m, v] = out else { return };
                    let shrink = shrink[i];
                    vectorized(|| {
                        for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                            *m = (*m * b1 + 0.0) + (g * keep1 + 0.0);
                            *v = (*v * b2 + 0.0) + ((g * g) * keep2 + 0.0);
                            let (m_hat, v_hat) = (*m * scale_m + 0.0, *v * scale_v + 0.0);
                            let adjusted = m_hat / (v_hat.sqrt() * 1.0 + eps);
                            *w = (*w * shrink + 0.0) - (adjusted * lr32 + 0.0);
                        }
                    })
                })?;
            }
            _ => unreachable!("each optimizer holds its own kind of spec"),
        }
        Ok(())
    }
}

/// Runs `update(i, g, out)` over pieces of every gradient `read[i]` and the same piece of
/// the `per` tensors `written[per * i..per * (i + 1)]` it updates in place (weights, then
/// the optimizer's buffers), pieces of all tensors in one parallel region.
fn in_place(
    read: &[Tensor],
    written: &[Tensor],
    per: usize,
    update: impl Fn(usize, &[f32], &mut [&mut [f32]]) + Sync,
) -> Result<()> {
    with_values_all(read, |g| {
        with_values_mut(written, |ptrs| {
            let addresses: Vec<(usize, usize)> = ptrs.iter().map(|&(p, len)| (p as usize, len)).collect();
            // Values `at..end` of gradient `i` and of the tensors it updates.
            let run = |i: usize, (at, end): (usize, usize)| {
                let g = &g[i][at..end];
                let mut out: Vec<&mut [f32]> = (0..per)
                    .map(|k| {
                        let (base, len) = addresses[per * i + k];
                        assert!(end <= len, "a gradient larger than its parameter");
                        // SAFETY: `with_values_mut` holds every tensor for writing; each
                        // participant updates a distinct range of each tensor.
                        unsafe { std::slice::from_raw_parts_mut((base as *mut f32).add(at), g.len()) }
                    })
                    .collect();
                update(i, g, &mut out);
            };
            let team = rayon::current_num_threads();
            let total: usize = g.iter().map(|g| g.len()).sum();
            if team == 1 || total < 1 << 14 {
                (0..g.len()).for_each(|i| run(i, (0, g[i].len())));
                return;
            }
            // One contiguous share of every tensor per thread, in whole cache lines (16
            // values): the threads enter once (a broadcast, not a task per piece) and each
            // updates about the rows of a weight gradient the lockstep dense step had it
            // compute (lockstep.rs splits them by rows in blocks of 16), still in its cache.
            crate::kernels::team::broadcast(|me| {
                for (i, g) in g.iter().enumerate() {
                    let width = g.len().div_ceil(team).div_ceil(16) * 16;
                    let (at, end) = ((me * width).min(g.len()), ((me + 1) * width).min(g.len()));
                    if at < end {
                        run(i, (at, end));
                    }
                }
            });
        })
    })??;
    Ok(())
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`); returns the norm before clipping (on a GPU, `None`: the norm and
/// the scale stay on the device, as PyTorch's, so the step does not wait for them).
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<Option<f64>> {
    if vars.first().is_some_and(|v| !v.device().is_cpu()) {
        clip_grad_norm_ops(grads, vars, max_norm)?;
        return Ok(None);
    }
    let mut total = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var) {
            total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = total.sqrt();
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        for var in vars {
            if let Some(g) = grads.remove(var) {
                grads.insert(var, (g * scale)?);
            }
        }
    }
    Ok(Some(norm))
}

/// [`clip_grad_norm`] as tensor ops, reading nothing back (what a GPU runs).
fn clip_grad_norm_ops(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<()> {
    let squares: Vec<Tensor> =
        vars.iter().filter_map(|v| grads.get(v)).map(|g| g.sqr()?.sum_all()).collect::<candle_core::Result<_>>()?;
    if squares.is_empty() {
        return Ok(());
    }
    let norm = Tensor::stack(&squares, 0)?.sum_all()?.sqrt()?;
    // min(1, max_norm / (norm + 1e-6)), PyTorch's clamped coefficient, as 1 - relu(1 - c):
    // affine ops take their constants as kernel arguments, where clamp would send
    // scalar tensors over (a copy to the GPU waits for the queued work).
    let coefficient = ((norm + 1e-6)?.recip()? * max_norm)?;
    let scale = coefficient.affine(-1.0, 1.0)?.relu()?.affine(-1.0, 1.0)?;
    for var in vars {
        if let Some(g) = grads.remove(var) {
            grads.insert(var, g.broadcast_mul(&scale)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// One parameter [1, 2] with loss = sum(w * [0.5, -1]) has gradient [0.5, -1].
    fn first_two_updates(spec: OptimizerSpec) -> (Vec<f32>, Vec<f32>) {
        let w = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let c = Tensor::new(&[0.5f32, -1.0], &Device::Cpu).unwrap();
        let mut opt = Optimizer::new(&spec, vec![w.clone()]).unwrap();
        let mut out = Vec::new();
        for _ in 0..2 {
            let grads = w.as_tensor().mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
            opt.step(&grads, 0.1).unwrap();
            out.push(w.as_tensor().to_vec1::<f32>().unwrap());
        }
        (out[0].clone(), out[1].clone())
    }

    #[test]
    fn adamw_in_place_equals_candle_nns_ops_bit_for_bit() {
        // Two tensors (one decayed, one not, the larger spanning several pieces), 4 steps
        // with changing gradients and rates, against candle-nn's AdamW step written with
        // candle's ops.
        let (beta1, beta2, eps, wd) = (0.9, 0.99, 1e-8, 0.1);
        let values =
            |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| ((i * 7919 % 1009) as f32 / 500.0 - 1.0) * k).collect() };
        let shapes = [100_000usize, 7];
        let vars: Vec<Var> = shapes.iter().map(|&n| Var::new(values(n, 1.0), &Device::Cpu).unwrap()).collect();
        let spec = OptimizerSpec::AdamW { beta1, beta2, eps, weight_decay: wd };
        let mut opt = Optimizer::new(&spec, vars.clone()).unwrap().with_decay_mask(vec![true, false]).unwrap();
        let mut w: Vec<Tensor> = shapes.iter().map(|&n| Tensor::new(values(n, 1.0), &Device::Cpu).unwrap()).collect();
        let mut m: Vec<Tensor> = w.iter().map(|t| t.zeros_like().unwrap()).collect();
        let mut v = m.clone();
        for step in 1..=4i32 {
            let lr = 0.01 / step as f64;
            let mut grads = GradStore::default();
            let gs: Vec<Tensor> =
                shapes.iter().map(|&n| Tensor::new(values(n, step as f32 * 0.3), &Device::Cpu).unwrap()).collect();
            for (var, g) in vars.iter().zip(&gs) {
                grads.insert(var, g.clone());
            }
            opt.step(&grads, lr).unwrap();
            let (scale_m, scale_v) = (1.0 / (1.0 - beta1.powi(step)), 1.0 / (1.0 - beta2.powi(step)));
            for i in 0..2 {
                let decay = if i == 0 { wd } else { 0.0 };
                let g = &gs[i];
                m[i] = ((&m[i] * beta1).unwrap() + (g * (1.0 - beta1)).unwrap()).unwrap();
                v[i] = ((&v[i] * beta2).unwrap() + (g.sqr().unwrap() * (1.0 - beta2)).unwrap()).unwrap();
                let adjusted =
                    ((&m[i] * scale_m).unwrap() / ((&v[i] * scale_v).unwrap().sqrt().unwrap() + eps).unwrap()).unwrap();
                w[i] = ((&w[i] * (1.0 - lr * decay)).unwrap() - (adjusted * lr).unwrap()).unwrap();
                let (ours, theirs) = (vars[i].as_tensor().to_vec1::<f32>().unwrap(), w[i].to_vec1::<f32>().unwrap());
                assert!(ours == theirs, "tensor {i} differs at step {step}");
            }
        }
    }

    #[test]
    fn tensor_ops_equal_the_in_place_updates_bit_for_bit() {
        // What a GPU runs (step_ops) against the CPU's in-place updates, on the CPU: two
        // tensors (one decayed, one not; the larger spans several pieces), 4 steps.
        let values =
            |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| ((i * 7919 % 1009) as f32 / 500.0 - 1.0) * k).collect() };
        let shapes = [70_000usize, 9];
        let specs = [
            OptimizerSpec::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 5e-4 },
            OptimizerSpec::Sgd { momentum: 0.9, dampening: 0.1, nesterov: true, weight_decay: 1e-3 },
            OptimizerSpec::Sgd { momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 1e-2 },
            OptimizerSpec::AdamW { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.1 },
        ];
        for spec in specs {
            let vars = |_: ()| -> Vec<Var> {
                shapes.iter().map(|&n| Var::new(values(n, 1.0), &Device::Cpu).unwrap()).collect()
            };
            let (a, b) = (vars(()), vars(()));
            let mut in_place = Optimizer::new(&spec, a.clone()).unwrap().with_decay_mask(vec![true, false]).unwrap();
            let mut ops = Optimizer::new(&spec, b.clone()).unwrap().with_decay_mask(vec![true, false]).unwrap();
            for step in 1..=4 {
                let lr = 0.05 / step as f64;
                let (mut ga, mut gb) = (GradStore::default(), GradStore::default());
                for (i, &n) in shapes.iter().enumerate() {
                    let g = Tensor::new(values(n, 0.3 * step as f32 + i as f32), &Device::Cpu).unwrap();
                    ga.insert(&a[i], g.clone());
                    gb.insert(&b[i], g);
                }
                in_place.step(&ga, lr).unwrap();
                ops.step_ops(&gb, lr).unwrap();
                for i in 0..2 {
                    let (x, y) =
                        (a[i].as_tensor().to_vec1::<f32>().unwrap(), b[i].as_tensor().to_vec1::<f32>().unwrap());
                    assert!(x == y, "{spec:?}: tensor {i} differs at step {step}");
                }
            }
        }
    }

    #[test]
    fn clipping_by_tensor_ops_scales_as_the_host_does() {
        // Norm 13 (5 and 12): clipped to 6.5 and to 1, and not clipped at 20.
        for max_norm in [6.5, 1.0, 20.0] {
            let vars = [Var::new(&[3f32, 4.0], &Device::Cpu).unwrap(), Var::new(&[12f32], &Device::Cpu).unwrap()];
            let store = || {
                let mut g = GradStore::default();
                g.insert(&vars[0], Tensor::new(&[3f32, 4.0], &Device::Cpu).unwrap());
                g.insert(&vars[1], Tensor::new(&[12f32], &Device::Cpu).unwrap());
                g
            };
            let (mut host, mut ops) = (store(), store());
            assert_eq!(clip_grad_norm(&mut host, &vars, max_norm).unwrap(), Some(13.0));
            clip_grad_norm_ops(&mut ops, &vars, max_norm).unwrap();
            for v in &vars {
                let (a, b) =
                    (host.get(v).unwrap().to_vec1::<f32>().unwrap(), ops.get(v).unwrap().to_vec1::<f32>().unwrap());
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "max_norm {max_norm}: {a:?} vs {b:?}");
                }
            }
            let scaled = ops.get(&vars[1]).unwrap().to_vec1::<f32>().unwrap()[0];
            let want = if max_norm < 13.0 { 12.0 * max_norm as f32 / 13.0 } else { 12.0 };
            assert!((scaled - want).abs() < 1e-5, "{scaled} vs {want}");
        }
    }

    fn close(a: &[f32], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sgd_momentum_and_weight_decay_follow_pytorch() {
        // g = grad + wd*w = [0.5 + 0.01, -1 + 0.02]; buf = g; w = w - 0.1*buf.
        let spec = OptimizerSpec::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 0.01 };
        let (a, b) = first_two_updates(spec);
        let g1 = [0.51, -0.98];
        let w1 = [1.0 - 0.1 * g1[0], 2.0 - 0.1 * g1[1]];
        close(&a, &w1);
        let g2 = [0.5 + 0.01 * w1[0], -1.0 + 0.01 * w1[1]];
        let buf2 = [0.9 * g1[0] + g2[0], 0.9 * g1[1] + g2[1]];
        close(&b, &[w1[0] - 0.1 * buf2[0], w1[1] - 0.1 * buf2[1]]);
        // Nesterov: step with g + momentum * buf; first buf = g, so 1.9 * g.
        let (a, _) =
            first_two_updates(OptimizerSpec::Sgd { momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay: 0.0 });
        close(&a, &[1.0 - 0.1 * 1.9 * 0.5, 2.0 + 0.1 * 1.9]);
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        // Bias-corrected m/sqrt(v) = sign(g) on step 1, so w -= 0.1 * g/|g| (eps aside).
        let (a, b) = first_two_updates(OptimizerSpec::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 });
        close(&a, &[0.9, 2.1]);
        close(&b, &[0.8, 2.2]);
    }

    #[test]
    fn adamw_decays_weights_before_the_adam_step() {
        let (a, _) = first_two_updates(OptimizerSpec::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 });
        // w * (1 - lr * wd) - lr * sign(g).
        close(&a, &[1.0 * 0.99 - 0.1, 2.0 * 0.99 + 0.1]);
    }

    #[test]
    fn rmsprop_first_step() {
        // v = (1 - 0.99) g^2; w -= 0.1 * g / (sqrt(v) + eps) = 0.1 * sign(g) / sqrt(0.01) = sign(g).
        let (a, _) =
            first_two_updates(OptimizerSpec::RmsProp { alpha: 0.99, eps: 1e-8, momentum: 0.0, weight_decay: 0.0 });
        close(&a, &[0.0, 3.0]);
    }
}
