//! A dense layer `y = x w + b` (`x` (rows, in), `w` (in, out), `b` (out)) as one candle
//! custom op with its own backward pass, for the models on candle's autograd (the
//! transformer). candle builds it as a product and a broadcast add, and its backward pass
//! sums the bias gradient with a strided reduction over the rows and accumulates every
//! gradient into a fresh zero-filled buffer: a third of a small transformer's step. Here
//! the forward is one product per part of the rows, the backward three products (dx by
//! parts of the rows, dw by parts of its rows, which are independent) and the bias
//! gradient's column sums, each part on a thread of the run's pool. Checked against
//! candle's ops below (values and gradients, odd sizes, one row).

use super::{matmul_raw, op_input};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

/// `x w + b` with gradients for all three (`b` may be a constant zero vector for a layer
/// without bias: its gradient is then not kept).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, Linear)
}

struct Linear;

fn error(message: String) -> candle_core::Error {
    candle_core::Error::Msg(message)
}

/// (rows, in, out) of `x (rows, in)` and `w (in, out)` and `b (out)`.
fn dims(x: &[usize], w: &[usize], b: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
    match (x, w, b) {
        ([rows, i], [i2, o], [o2]) if i == i2 && o == o2 => Ok((*rows, *i, *o)),
        _ => Err(error(format!("linear takes x (rows, in), w (in, out) and b (out), not {x:?}, {w:?} and {b:?}"))),
    }
}

/// Parts a dimension of `len` is split into: one per thread of the pool, each at least
/// `min` long.
fn parts(len: usize, min: usize) -> usize {
    rayon::current_num_threads().min(len / min.max(1)).max(1)
}

/// `m x n` products into disjoint row blocks of `dst` (row stride `n`), `m` split into
/// parts: `f(first_row, rows, block)` fills each.
fn by_rows(dst: &mut [f32], m: usize, n: usize, f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    let part = m.div_ceil(parts(m, 16)).max(1);
    dst.par_chunks_mut(part * n).enumerate().for_each(|(p, block)| f(p * part, block.len() / n.max(1), block));
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "runner-linear"
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
        let (rows, i, o) = dims(l1.dims(), l2.dims(), l3.dims())?;
        let (x, w, b) = (op_input(s1, l1, "linear")?, op_input(s2, l2, "linear")?, op_input(s3, l3, "linear")?);
        let mut y = vec![0f32; rows * o];
        if o > 0 {
            by_rows(&mut y, rows, o, |first, m, block| {
                block.chunks_exact_mut(o).for_each(|row| row.copy_from_slice(b));
                // SAFETY: `block` holds the m x o values written.
                unsafe { matmul_raw((m, o, i), (block.as_mut_ptr(), o), true, &x[first * i..], (i, 1), w, (o, 1)) };
            });
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, i, o) = dims(x.dims(), w.dims(), b.dims())?;
        let grad = grad.contiguous()?;
        let (dx, dw, db) = with_slices(&[x, w, &grad], |s| {
            let (x, w, g) = (s[0], s[1], s[2]);
            // dx (rows x in) = g (rows x out) @ wᵀ.
            let mut dx = vec![0f32; rows * i];
            if i > 0 {
                by_rows(&mut dx, rows, i, |first, m, block| unsafe {
                    // SAFETY: `block` holds the m x i values written.
                    matmul_raw((m, i, o), (block.as_mut_ptr(), i), false, &g[first * o..], (o, 1), w, (1, o))
                });
            }
            // dw (in x out) = xᵀ @ g, by blocks of its rows (columns of x).
            let mut dw = vec![0f32; i * o];
            if o > 0 {
                by_rows(&mut dw, i, o, |first, m, block| unsafe {
                    // SAFETY: `block` holds the m x o values written.
                    matmul_raw((m, o, rows), (block.as_mut_ptr(), o), false, &x[first..], (1, i), g, (o, 1))
                });
            }
            // db = the column sums of g.
            let mut db = vec![0f32; o];
            for row in g.chunks_exact(o.max(1)) {
                db.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            (dx, dw, db)
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (rows, i), dev)?),
            Some(Tensor::from_vec(dw, (i, o), dev)?),
            Some(Tensor::from_vec(db, o, dev)?),
        ))
    }
}

/// `f` of the f32 values of contiguous CPU tensors.
pub(crate) fn with_slices<R>(tensors: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> R) -> candle_core::Result<R> {
    let held: Vec<_> = tensors.iter().map(|t| (t.storage_and_layout(), t.elem_count())).collect();
    let mut slices = Vec::with_capacity(held.len());
    for ((storage, layout), n) in &held {
        let Storage::Cpu(cpu) = &**storage else { return Err(error("the fused ops run on the CPU".into())) };
        if !layout.is_contiguous() {
            return Err(error("the fused ops need contiguous tensors".into()));
        }
        slices.push(&cpu.as_slice::<f32>()?[layout.start_offset()..layout.start_offset() + n]);
    }
    Ok(f(&slices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values::{max_diff, values};
    use candle_core::Var;

    #[test]
    fn matches_candle_in_values_and_gradients() {
        // One row, odd sizes, more rows than a part holds, a wide layer.
        for (rows, i, o) in [(1usize, 1usize, 1usize), (3, 5, 7), (97, 33, 17), (64, 128, 512)] {
            let x = Var::from_tensor(&values(&[rows, i], 1, 1.0)).unwrap();
            let w = Var::from_tensor(&values(&[i, o], 2, 1.0)).unwrap();
            let b = Var::from_tensor(&values(&[o], 3, 1.0)).unwrap();
            let weight = values(&[rows, o], 4, 1.0);
            let ours = linear(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
            let theirs = x.as_tensor().matmul(w.as_tensor()).unwrap().broadcast_add(b.as_tensor()).unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-5, "({rows},{i},{o}): values differ by {}", max_diff(&ours, &theirs));
            let a = (ours * &weight).unwrap().sum_all().unwrap().backward().unwrap();
            let c = (theirs * &weight).unwrap().sum_all().unwrap().backward().unwrap();
            for (what, v) in [("x", &x), ("w", &w), ("b", &b)] {
                let (ga, gc) = (a.get(v).unwrap(), c.get(v).unwrap());
                assert!(max_diff(ga, gc) < 1e-4, "({rows},{i},{o}): d{what} differs by {}", max_diff(ga, gc));
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let e =
            linear(&values(&[2, 3], 1, 1.0), &values(&[4, 5], 2, 1.0), &values(&[5], 3, 1.0)).unwrap_err().to_string();
        assert!(e.contains("not [2, 3], [4, 5] and [5]"), "{e}");
    }
}
