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

/// max(x, 0) with PyTorch's gradient (0 at 0) in plain candle ops: the reference the ReLU
/// kernels are checked against (the models' plain path, `model::layers::relu`, computes
/// the same; kernels know nothing of models).
pub fn relu(x: &Tensor) -> anyhow::Result<Tensor> {
    let positive = x.gt(&x.zeros_like()?)?.to_dtype(x.dtype())?;
    Ok(x.relu()?.mul(&positive)?)
}

/// 2x2 max-pooling with stride 2 in plain candle ops, the gradient to each window's
/// maximum (as `model::max_pool2`).
pub fn max_pool2(x: &Tensor) -> anyhow::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ph, pw) = (h / 2, w / 2);
    let x = x.narrow(2, 0, 2 * ph)?.narrow(3, 0, 2 * pw)?;
    Ok(x.reshape((n, c, ph, 2, pw, 2))?.max(5)?.max(3)?)
}
