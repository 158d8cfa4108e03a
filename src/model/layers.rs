//! Layers shared by the models built on candle's autograd (the ResNet): batch
//! normalisation with running statistics, and PyTorch's initialisations.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Kaiming (He) normal initialisation for ReLU networks, as PyTorch's
/// `kaiming_normal_(w)` (fan in, gain sqrt 2): N(0, 2 / fan_in).
pub fn kaiming_normal(rng: &mut ChaCha8Rng, shape: &[usize], fan_in: usize) -> Result<Var> {
    let normal = Normal::new(0.0f32, (2.0 / fan_in as f32).sqrt())?;
    let values: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| normal.sample(rng)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu)?)?)
}

/// PyTorch's default bias of a layer with `fan_in` inputs: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn uniform_bias(rng: &mut ChaCha8Rng, n: usize, fan_in: usize) -> Result<Var> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(values, n, &Device::Cpu)?)?)
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

const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

impl BatchNorm2d {
    /// Scale 1, shift 0, running mean 0 and variance 1, as PyTorch starts.
    pub fn new(channels: usize) -> Result<BatchNorm2d> {
        let ones = || Var::ones(channels, DType::F32, &Device::Cpu);
        let zeros = || Var::zeros(channels, DType::F32, &Device::Cpu);
        Ok(BatchNorm2d { gamma: ones()?, beta: zeros()?, running_mean: zeros()?, running_var: ones()? })
    }

    /// Normalises `x` (n, c, h, w); `train` uses and updates the batch statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let per_channel = |t: &Tensor| t.reshape((1, c, 1, 1));
        if !train {
            let scale = (self.gamma.as_tensor() / (self.running_var.as_tensor() + EPS)?.sqrt()?)?;
            let shift = (self.beta.as_tensor() - (self.running_mean.as_tensor() * &scale)?)?;
            return Ok(x.broadcast_mul(&per_channel(&scale)?)?.broadcast_add(&per_channel(&shift)?)?);
        }
        let count = n * h * w;
        // (c, n*h*w): each channel's values in one row.
        let rows = x.transpose(0, 1)?.reshape((c, count))?;
        let mean = rows.mean_keepdim(1)?;
        let centred = rows.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(1)?;
        let normed = centred.broadcast_div(&(var.clone() + EPS)?.sqrt()?)?;
        let y = normed
            .broadcast_mul(&self.gamma.as_tensor().reshape((c, 1))?)?
            .broadcast_add(&self.beta.as_tensor().reshape((c, 1))?)?;
        let (mean, var) = (mean.detach().flatten_all()?, var.detach().flatten_all()?);
        let unbiased = if count > 1 { (var * (count as f64 / (count - 1) as f64))? } else { var };
        self.running_mean.set(&((self.running_mean.as_tensor() * (1.0 - MOMENTUM))? + (mean * MOMENTUM)?)?)?;
        self.running_var.set(&((self.running_var.as_tensor() * (1.0 - MOMENTUM))? + (unbiased * MOMENTUM)?)?)?;
        Ok(y.reshape((c, n, h, w))?.transpose(0, 1)?.contiguous()?)
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
        let bn = BatchNorm2d::new(2).unwrap();
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
    fn gradients_flow_through_the_batch_statistics() {
        // The normalised values of a channel sum to zero whatever x, so the gradient of
        // sum(y) with respect to x is zero; that of sum(y * x) is not.
        let x = Var::from_tensor(&Tensor::new(&[[[[1f32, 4.0]], [[2.0, 0.5]]]], &Device::Cpu).unwrap()).unwrap();
        let bn = BatchNorm2d::new(2).unwrap();
        let y = bn.forward(x.as_tensor(), true).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = g.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(dx.iter().all(|v| v.abs() < 1e-5), "{dx:?}");
        let dgamma = g.get(&bn.gamma).unwrap().to_vec1::<f32>().unwrap();
        assert!(dgamma.iter().all(|v| v.abs() < 1e-5), "{dgamma:?}");
        assert_eq!(g.get(&bn.beta).unwrap().to_vec1::<f32>().unwrap(), vec![2.0, 2.0]);
    }
}
