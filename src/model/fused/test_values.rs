//! Inputs and comparisons shared by the fused ops' tests.

use candle_core::{Device, Tensor};

/// A tensor of `shape` with values spread over [-half, half), from `seed`.
pub fn values(shape: &[usize], seed: u64, half: f32) -> Tensor {
    let mut state = seed;
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 * half - half
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}
