//! Layers shared by the models built on candle's autograd (the ResNet, the transformer):
//! batch normalisation with running statistics, layer normalisation, and PyTorch's
//! initialisations.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Kaiming (He) normal initialisation for ReLU networks, as PyTorch's
/// `kaiming_normal_(w)` (fan in, gain sqrt 2): N(0, 2 / fan_in).
pub fn kaiming_normal(rng: &mut ChaCha8Rng, shape: &[usize], fan_in: usize, device: &Device) -> Result<Var> {
    let normal = Normal::new(0.0f32, (2.0 / fan_in as f32).sqrt())?;
    let values: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| normal.sample(rng)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?)
}

/// PyTorch's default bias of a layer with `fan_in` inputs: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn uniform_bias(rng: &mut ChaCha8Rng, n: usize, fan_in: usize, device: &Device) -> Result<Var> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(values, n, device)?)?)
}

/// max(x, 0) with PyTorch's gradient: 1 where x > 0 and 0 elsewhere, at 0 too. candle's
/// own `relu` passes the gradient at exactly 0 (its backward pass masks with x >= 0), and
/// a ResNet meets exact zeros (a block adding a ReLU'd input to a sum that cancels): its
/// gradients then drift from PyTorch's by percents (tests/resnet_fidelity.rs).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let positive = x.gt(&x.zeros_like()?)?.to_dtype(x.dtype())?;
    Ok(x.relu()?.mul(&positive)?)
}

/// Batch normalisation over the channels of NCHW activations, as PyTorch's `BatchNorm2d`
/// (eps 1e-5, momentum 0.1): in training, each channel is normalised with the batch's
/// mean and (biased) variance, and the running mean and (unbiased) variance move towards
/// them; in evaluation, the running statistics are used.
pub struct BatchNorm2d {
    pub gamma: Var,
    pub beta: Var,
    pub running_mean: Var,
    pub running_var: Var,
}

/// The epsilon inside the root of batch and layer normalisation (PyTorch's).
pub const EPS: f64 = 1e-5;

/// Layer normalisation over the last dimension, as PyTorch's `LayerNorm` (eps 1e-5,
/// biased variance), with a scale and an optional shift: the fused ops of
/// `kernels/layer_norm.rs` (candle-nn's fused `layer_norm` has no backward).
pub fn layer_norm(x: &Tensor, gamma: &Var, beta: Option<&Var>) -> Result<Tensor> {
    Ok(match beta {
        Some(b) => crate::kernels::layer_norm::layer_norm(x, gamma.as_tensor(), b.as_tensor(), EPS)?,
        None => crate::kernels::layer_norm::normalize(x, EPS)?.broadcast_mul(gamma.as_tensor())?,
    })
}

const MOMENTUM: f64 = 0.1;

impl BatchNorm2d {
    /// Scale 1, shift 0, running mean 0 and variance 1, as PyTorch starts.
    pub fn new(channels: usize, device: &Device) -> Result<BatchNorm2d> {
        let ones = || Var::ones(channels, DType::F32, device);
        let zeros = || Var::zeros(channels, DType::F32, device);
        Ok(BatchNorm2d { gamma: ones()?, beta: zeros()?, running_mean: zeros()?, running_var: ones()? })
    }

    /// Normalises `x` (n, c, h, w); `train` uses and updates the batch statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_with(x, train, false)
    }

    /// [`BatchNorm2d::forward`] then a ReLU (PyTorch's gradient: 0 where the output is 0),
    /// fused in training.
    pub fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_with(x, train, true)
    }

    fn forward_with(&self, x: &Tensor, train: bool, then_relu: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if !train {
            let per_channel = |t: &Tensor| t.reshape((1, c, 1, 1));
            let scale = (self.gamma.as_tensor() / (self.running_var.as_tensor() + EPS)?.sqrt()?)?;
            let shift = (self.beta.as_tensor() - (self.running_mean.as_tensor() * &scale)?)?;
            let y = x.broadcast_mul(&per_channel(&scale)?)?.broadcast_add(&per_channel(&shift)?)?;
            return if then_relu { relu(&y) } else { Ok(y) };
        }
        let x = x.contiguous()?;
        let stats =
            crate::kernels::with_values(&x, |v: &[f32]| crate::kernels::batch_norm::channel_stats(v, (n, c, h * w)))?;
        self.update_running(&stats, n * h * w)?;
        let (gamma, beta) = (self.gamma.as_tensor(), self.beta.as_tensor());
        Ok(crate::kernels::batch_norm::batch_norm_with_stats(&x, gamma, beta, EPS, then_relu, stats)?)
    }

    /// [`BatchNorm2d::forward`] (then a ReLU with `then_relu`) as plain candle ops, on any
    /// device: the batch's mean and biased variance per channel, the running statistics
    /// moved towards them (the variance unbiased) by tensor ops on the device.
    pub fn forward_plain(&self, x: &Tensor, train: bool, then_relu: bool) -> Result<Tensor> {
        if !train {
            return self.forward_with(x, false, then_relu);
        }
        let (n, c, h, w) = x.dims4()?;
        let mean = x.mean_keepdim((0, 2, 3))?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
        let xhat = centered.broadcast_div(&(&var + EPS)?.sqrt()?)?;
        let per_channel = |t: &Tensor| t.reshape((1, c, 1, 1));
        let y = xhat
            .broadcast_mul(&per_channel(self.gamma.as_tensor())?)?
            .broadcast_add(&per_channel(self.beta.as_tensor())?)?;
        let count = n * h * w;
        let unbias = if count > 1 { count as f64 / (count - 1) as f64 } else { 1.0 };
        let moved = |running: &Var, batch: &Tensor, scale: f64| -> Result<Tensor> {
            let batch = (batch.detach().flatten_all()? * (MOMENTUM * scale))?;
            Ok(((running.as_tensor() * (1.0 - MOMENTUM))? + batch)?)
        };
        let (new_mean, new_var) = (moved(&self.running_mean, &mean, 1.0)?, moved(&self.running_var, &var, unbias)?);
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)?;
        if then_relu { relu(&y) } else { Ok(y) }
    }

    /// Moves the running statistics towards a training batch's `stats` (each channel's
    /// mean and biased variance over `count` values), the variance unbiased, as PyTorch.
    pub fn update_running(&self, stats: &[(f64, f64)], count: usize) -> Result<()> {
        let c = stats.len();
        let unbias = if count > 1 { count as f64 / (count - 1) as f64 } else { 1.0 };
        let old_mean = self.running_mean.as_tensor().to_vec1::<f32>()?;
        let old_var = self.running_var.as_tensor().to_vec1::<f32>()?;
        let mean: Vec<f32> =
            stats.iter().zip(&old_mean).map(|(s, &o)| ((1.0 - MOMENTUM) * o as f64 + MOMENTUM * s.0) as f32).collect();
        let var: Vec<f32> = stats
            .iter()
            .zip(&old_var)
            .map(|(s, &o)| ((1.0 - MOMENTUM) * o as f64 + MOMENTUM * s.1 * unbias) as f32)
            .collect();
        let device = self.running_mean.device();
        self.running_mean.set(&Tensor::from_vec(mean, c, device)?)?;
        self.running_var.set(&Tensor::from_vec(var, c, device)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_normalises_with_the_batch_and_moves_the_running_statistics() {
        // Channel 0 holds 1, 3, 5, 7 (mean 4, biased variance 5, unbiased 20/3), channel 1
        // holds 2 everywhere.
        let x = Tensor::from_vec(vec![1f32, 3.0, 2.0, 2.0, 5.0, 7.0, 2.0, 2.0], (2, 2, 1, 2), &Device::Cpu).unwrap();
        let bn = BatchNorm2d::new(2, &Device::Cpu).unwrap();
        bn.gamma.set(&Tensor::new(&[2f32, 1.0], &Device::Cpu).unwrap()).unwrap();
        bn.beta.set(&Tensor::new(&[0.5f32, -1.0], &Device::Cpu).unwrap()).unwrap();
        let y = bn.forward(&x, true).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let s = (5.0f32 + 1e-5).sqrt();
        let want =
            [2.0 * -3.0 / s + 0.5, -2.0 / s + 0.5, -1.0, -1.0, 2.0 * 1.0 / s + 0.5, 2.0 * 3.0 / s + 0.5, -1.0, -1.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{y:?} vs {want:?}");
        }
        let rm = bn.running_mean.as_tensor().to_vec1::<f32>().unwrap();
        let rv = bn.running_var.as_tensor().to_vec1::<f32>().unwrap();
        assert!((rm[0] - 0.4).abs() < 1e-6 && (rm[1] - 0.2).abs() < 1e-6, "{rm:?}");
        assert!((rv[0] - (0.9 + 0.1 * 20.0 / 3.0)).abs() < 1e-5 && (rv[1] - 0.9).abs() < 1e-6, "{rv:?}");
        // Evaluation uses the running statistics and changes nothing.
        let e = bn.forward(&x, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let first = 2.0 * (1.0 - rm[0]) / (rv[0] + 1e-5).sqrt() + 0.5;
        assert!((e[0] - first).abs() < 1e-5, "{e:?}");
        assert_eq!(bn.running_mean.as_tensor().to_vec1::<f32>().unwrap(), rm);
    }

    #[test]
    fn layer_norm_matches_candle_nn_and_passes_gradients() {
        let x = Var::from_tensor(&Tensor::new(&[[1f32, 2.0, 4.0, 9.0], [-3.0, 0.5, 0.5, 2.0]], &Device::Cpu).unwrap())
            .unwrap();
        let gamma = Var::from_tensor(&Tensor::new(&[1f32, 2.0, 0.5, -1.0], &Device::Cpu).unwrap()).unwrap();
        let beta = Var::from_tensor(&Tensor::new(&[0f32, 0.1, 0.2, 0.3], &Device::Cpu).unwrap()).unwrap();
        let ours = layer_norm(x.as_tensor(), &gamma, Some(&beta)).unwrap();
        let theirs = candle_nn::ops::layer_norm(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5).unwrap();
        let diff = (ours.clone() - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "{diff}");
        // Row 0: mean 4, biased variance 9.5; d(sum y)/d beta = rows, d/d x sums to 0 per row.
        let g = ours.sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(&beta).unwrap().to_vec1::<f32>().unwrap(), vec![2.0; 4]);
        let dx = g.get(&x).unwrap().to_vec2::<f32>().unwrap();
        assert!(dx.iter().all(|row| row.iter().sum::<f32>().abs() < 1e-5), "{dx:?}");
        let dgamma = g.get(&gamma).unwrap().to_vec1::<f32>().unwrap();
        let s = (9.5f32 + 1e-5).sqrt();
        // Row 1: mean 0, biased variance 3.375; d/d gamma is the column's normalised values.
        let s1 = (3.375f32 + 1e-5).sqrt();
        assert!((dgamma[0] - (-3.0 / s - 3.0 / s1)).abs() < 1e-5, "{dgamma:?}");
        let ours0 = layer_norm(x.as_tensor(), &gamma, None).unwrap().to_vec2::<f32>().unwrap();
        assert!((ours0[0][0] - (-3.0 / s)).abs() < 1e-6, "{ours0:?}");
    }

    #[test]
    fn relu_passes_no_gradient_at_zero_as_pytorch() {
        let x = Var::from_tensor(&Tensor::new(&[-1f32, 0.0, 2.0], &Device::Cpu).unwrap()).unwrap();
        let y = relu(x.as_tensor()).unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![0.0, 0.0, 2.0]);
        assert!(y.to_vec1::<f32>().unwrap().iter().all(|v| v.is_sign_positive()));
        let g = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec1::<f32>().unwrap(), vec![0.0, 0.0, 1.0]);
        // candle's own: 1 at 0.
        let g = x.as_tensor().relu().unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec1::<f32>().unwrap(), vec![0.0, 1.0, 1.0]);
    }

    #[test]
    fn gradients_flow_through_the_batch_statistics() {
        // The normalised values of a channel sum to zero whatever x, so the gradient of
        // sum(y) with respect to x is zero; that of sum(y * x) is not.
        let x = Var::from_tensor(&Tensor::new(&[[[[1f32, 4.0]], [[2.0, 0.5]]]], &Device::Cpu).unwrap()).unwrap();
        let bn = BatchNorm2d::new(2, &Device::Cpu).unwrap();
        let y = bn.forward(x.as_tensor(), true).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = g.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(dx.iter().all(|v| v.abs() < 1e-5), "{dx:?}");
        let dgamma = g.get(&bn.gamma).unwrap().to_vec1::<f32>().unwrap();
        assert!(dgamma.iter().all(|v| v.abs() < 1e-5), "{dgamma:?}");
        assert_eq!(g.get(&bn.beta).unwrap().to_vec1::<f32>().unwrap(), vec![2.0, 2.0]);
    }

    #[test]
    fn batch_norm_gradients_follow_the_closed_form() {
        let (n, c, h, w) = (16, 64, 8, 8);
        let mut state = 7u64;
        let mut draw = |k: usize| -> Vec<f32> {
            (0..k)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 1.0
                })
                .collect()
        };
        let xv = draw(n * c * h * w);
        let dyv = draw(n * c * h * w);
        let x = Var::from_tensor(&Tensor::from_vec(xv.clone(), (n, c, h, w), &Device::Cpu).unwrap()).unwrap();
        let dy = Tensor::from_vec(dyv.clone(), (n, c, h, w), &Device::Cpu).unwrap();
        let bn = BatchNorm2d::new(c, &Device::Cpu).unwrap();
        let y = bn.forward(x.as_tensor(), true).unwrap();
        let g = (y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
        let dx = g.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let dbeta = g.get(&bn.beta).unwrap().to_vec1::<f32>().unwrap();
        let dgamma = g.get(&bn.gamma).unwrap().to_vec1::<f32>().unwrap();
        let count = (n * h * w) as f64;
        let at = |s: usize, ch: usize, p: usize| (s * c + ch) * h * w + p;
        for ch in 0..c {
            let vals: Vec<(f64, f64)> = (0..n)
                .flat_map(|s| (0..h * w).map(move |p| (s, p)))
                .map(|(s, p)| (xv[at(s, ch, p)] as f64, dyv[at(s, ch, p)] as f64))
                .collect();
            let mean = vals.iter().map(|v| v.0).sum::<f64>() / count;
            let var = vals.iter().map(|v| (v.0 - mean).powi(2)).sum::<f64>() / count;
            let std = (var + 1e-5).sqrt();
            let sum_dy: f64 = vals.iter().map(|v| v.1).sum();
            let sum_dy_xhat: f64 = vals.iter().map(|v| v.1 * (v.0 - mean) / std).sum();
            assert!(
                (dbeta[ch] as f64 - sum_dy).abs() < 1e-3 * (1.0 + sum_dy.abs()),
                "dbeta[{ch}] {} vs {sum_dy}",
                dbeta[ch]
            );
            assert!((dgamma[ch] as f64 - sum_dy_xhat).abs() < 1e-3 * (1.0 + sum_dy_xhat.abs()), "dgamma[{ch}]");
            for s in [0, n - 1] {
                let (xi, dyi) = (xv[at(s, ch, 5)] as f64, dyv[at(s, ch, 5)] as f64);
                let xhat = (xi - mean) / std;
                let want = (dyi - sum_dy / count - xhat * sum_dy_xhat / count) / std;
                let got = dx[at(s, ch, 5)] as f64;
                assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "dx[{s},{ch}] {got} vs {want}");
            }
        }
    }
}
