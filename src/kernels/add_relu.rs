//! `relu(a + b)` as one candle custom op with its own backward pass: the end of a residual
//! block (its branch plus its shortcut). candle's ops take an add and, for PyTorch's ReLU
//! gradient (0 where the output is 0), three more passes forward and as many backward;
//! here one pass each way. Checked against candle's ops below.

use super::op_input;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Values per rayon task.
const CHUNK: usize = 16 * 1024;

/// `max(a + b, 0)` elementwise (same shapes), the gradient passing to both where the
/// output is above 0.
pub fn add_relu(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if a.dims() != b.dims() {
        return Err(candle_core::Error::Msg(format!(
            "add_relu of {:?} and {:?}: the shapes differ",
            a.dims(),
            b.dims()
        )));
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "runner-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = (op_input(s1, l1, "add_relu")?, op_input(s2, l2, "add_relu")?);
        // Collected in place: no zero-filled buffer first.
        let out = a.par_iter().with_min_len(CHUNK).zip(b).map(|(&x, &y)| (x + y).max(0.0)).collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?.apply_op2(&y.contiguous()?, ReluGrad)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// The gradient through a ReLU, `grad` where its output `y` is above 0, else 0 (PyTorch's
/// rule): one parallel pass instead of candle's comparison, conversion and product.
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "runner-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, y) = (op_input(s1, l1, "relu gradient")?, op_input(s2, l2, "relu gradient")?);
        Ok((CpuStorage::F32(super::relu_grad(g, y)), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values::{max_diff, values};
    use candle_core::Var;

    #[test]
    fn matches_candle_in_values_and_gradients() {
        for shape in [vec![1usize], vec![3, 5], vec![4, 16, 8, 8]] {
            let a = Var::from_tensor(&values(&shape, 1, 2.0)).unwrap();
            let b = Var::from_tensor(&values(&shape, 2, 2.0)).unwrap();
            let w = values(&shape, 3, 1.0);
            let ours = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
            let theirs = crate::kernels::test_values::relu(&(a.as_tensor() + b.as_tensor()).unwrap()).unwrap();
            assert_eq!(max_diff(&ours, &theirs), 0.0);
            let ga = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (theirs * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&a, &b] {
                assert_eq!(max_diff(ga.get(v).unwrap(), gb.get(v).unwrap()), 0.0, "{shape:?}");
            }
        }
        // Exactly 0 passes no gradient (PyTorch's ReLU).
        let a = Var::from_tensor(&Tensor::new(&[1f32, -1.0], &candle_core::Device::Cpu).unwrap()).unwrap();
        let b = Tensor::new(&[-1f32, 2.0], &candle_core::Device::Cpu).unwrap();
        let g = add_relu(a.as_tensor(), &b).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(&a).unwrap().to_vec1::<f32>().unwrap(), vec![0.0, 1.0]);
    }
}
