//! GELU (the exact one, `x * Φ(x)` with the normal distribution's CDF, PyTorch's default
//! `nn.GELU()`) as a candle custom op with its own backward pass: one pass each way over
//! the transformer's widest activations, where candle's `gelu_erf` backward takes ten
//! (and rounds 1/sqrt(2π) to six digits). Checked against candle's ops below.

use super::fast_math::{erf, exp};
use super::op_input;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Values per rayon task.
const CHUNK: usize = 16 * 1024;

/// `x * Φ(x)` elementwise, with gradients.
pub fn gelu(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

struct Gelu;

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "runner-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = op_input(s, l, "gelu")?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(out, x)| pulp::Arch::new().dispatch(Forward { x, out }));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.contiguous()?.apply_op3(&y.contiguous()?, &grad.contiguous()?, GeluGrad)?))
    }
}

/// `g * (Φ(x) + x φ(x))` from the input `x`, the output `y` and the output's gradient
/// `g`; Φ(x) is `y / x` where that is exact to a rounding or two (erf is the op's
/// costliest part).
struct GeluGrad;

impl CustomOp3 for GeluGrad {
    fn name(&self) -> &'static str {
        "runner-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, y, g) = (op_input(s1, l1, "gelu")?, op_input(s2, l2, "gelu")?, op_input(s3, l3, "gelu")?);
        if x.len() != g.len() || x.len() != y.len() {
            return Err(candle_core::Error::Msg("gelu's gradient has another shape than its input".into()));
        }
        let mut out = vec![0f32; x.len()];
        let inputs = x.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)).zip(g.par_chunks(CHUNK));
        out.par_chunks_mut(CHUNK)
            .zip(inputs)
            .for_each(|(out, ((x, y), g))| pulp::Arch::new().dispatch(Backward { x, y, g, out }));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// GELU over a piece, compiled for the CPU's widest vectors (pulp inlines `with_simd` into
/// a function built for them, and the loop, calls and all, vectorises).
struct Forward<'a> {
    x: &'a [f32],
    out: &'a mut [f32],
}

impl pulp::WithSimd for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (o, &v) in self.out.iter_mut().zip(self.x) {
            *o = 0.5 * v * (1.0 + erf(v * FRAC_1_SQRT_2));
        }
    }
}

/// GELU's gradient over a piece, as [`Forward`].
struct Backward<'a> {
    x: &'a [f32],
    y: &'a [f32],
    g: &'a [f32],
    out: &'a mut [f32],
}

impl pulp::WithSimd for Backward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (((o, &v), &y), &g) in self.out.iter_mut().zip(self.x).zip(self.y).zip(self.g) {
            let pdf = INV_SQRT_2PI * exp(-0.5 * v * v);
            *o = g * (y / v + v * pdf);
        }
        // Near 0 (where y / x loses digits) and in the far tail (where y underflows), Φ(x)
        // from erf instead: few values, done again apart so the loop above stays cheap.
        for ((o, &v), &g) in self.out.iter_mut().zip(self.x).zip(self.g) {
            if !(v.abs() >= 1e-3 && v.abs() < 10.0) {
                let pdf = INV_SQRT_2PI * exp(-0.5 * v * v);
                *o = g * (0.5 * (1.0 + erf(v * FRAC_1_SQRT_2)) + v * pdf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_in_values_and_gradients() {
        // Odd sizes, one value, more values than a task holds.
        for n in [1usize, 7, 3 * CHUNK + 5] {
            let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 1001) as f32 / 100.0) - 5.0).collect();
            let x = Var::from_tensor(&Tensor::from_vec(v, n, &Device::Cpu).unwrap()).unwrap();
            let w =
                Tensor::from_vec((0..n).map(|i| (i % 13) as f32 - 6.0).collect::<Vec<_>>(), n, &Device::Cpu).unwrap();
            let ours = gelu(x.as_tensor()).unwrap();
            let theirs = x.as_tensor().gelu_erf().unwrap();
            let d = (&ours - &theirs).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-6, "values differ by {d}");
            let a = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let b = (theirs * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let (ga, gb) = (a.get(&x).unwrap(), b.get(&x).unwrap());
            // candle's backward rounds 1/sqrt(2π) to 0.398942: a few 1e-6 of the gradient.
            let d = (ga - gb).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 3e-5, "gradients differ by {d}");
        }
    }

    #[test]
    fn the_gradient_is_the_derivative() {
        // d/dx x Φ(x) at 0 is 1/2; at 1 it is Φ(1) + φ(1) = 0.841345 + 0.241971.
        let x = Var::from_tensor(&Tensor::new(&[0f32, 1.0], &Device::Cpu).unwrap()).unwrap();
        let g = gelu(x.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let g = g.get(&x).unwrap().to_vec1::<f32>().unwrap();
        assert!((g[0] - 0.5).abs() < 1e-7 && (g[1] - 1.083316).abs() < 1e-5, "{g:?}");
    }
}
