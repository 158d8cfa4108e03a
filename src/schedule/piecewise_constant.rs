//! `piecewise_constant`: TensorFlow's `piecewise_constant` / Keras `PiecewiseConstantDecay`.

use super::{Context, Kind, ParamSource, Rule, Schedule};

/// `values[0]` while step <= boundaries[0], `values[i]` while boundaries[i-1] < step <= boundaries[i],
/// the last value after the last boundary (the change happens at boundary + 1, as in TF).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PiecewiseConstant {
    pub boundaries: Vec<f64>,
    pub values: Vec<f64>,
}

impl Kind for PiecewiseConstant {
    const KIND: &'static str = "piecewise_constant";
    const SUMMARY: &'static str =
        "a fixed rate per interval of steps; switches at boundary + 1 (TF piecewise_constant)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let boundaries =
            p.numbers("boundaries", Rule::NonNegative, "steps where the rate changes, strictly increasing")?;
        let values = p.numbers("values", Rule::NonNegative, "the rates, one more than boundaries")?;
        if let Some(i) = (1..boundaries.len()).find(|&i| boundaries[i] <= boundaries[i - 1]) {
            let (a, b) = (boundaries[i - 1], boundaries[i]);
            return Err(p.invalid("boundaries", format!("must be strictly increasing, but {b} follows {a}")));
        }
        let (nb, nv) = (boundaries.len(), values.len());
        p.check(nv == nb + 1, "values", || {
            format!("must hold one more entry than boundaries: {nb} boundaries need {} values, found {nv}", nb + 1)
        })?;
        Ok(PiecewiseConstant { boundaries, values })
    }

    fn build(&self, _: &Context) -> Box<dyn Schedule> {
        Box::new(self.clone())
    }
}

impl Schedule for PiecewiseConstant {
    fn lr(&self, step: u64) -> f64 {
        let x = step as f64;
        let i = self.boundaries.partition_point(|&b| b < x);
        self.values[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::testing::assert_sequence;

    #[test]
    fn switches_one_step_after_each_boundary() {
        // TF: x <= b[0] -> v[0]; b[i-1] < x <= b[i] -> v[i]; x > b[-1] -> v[-1]
        // (tf.compat.v1.train.piecewise_constant with boundaries [100, 200], values [1.0, 0.5, 0.1]).
        let s = PiecewiseConstant { boundaries: vec![100.0, 200.0], values: vec![1.0, 0.5, 0.1] };
        assert_sequence(&s, &[(0, 1.0), (99, 1.0), (100, 1.0), (101, 0.5), (200, 0.5), (201, 0.1), (10_000, 0.1)]);
    }
}
