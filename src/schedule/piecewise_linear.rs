//! `piecewise_linear`: a rate drawn through `[step, lr]` points, interpolated linearly.

use super::{Context, Kind, ParamSource, Schedule};

/// Linear interpolation between points; the first rate before the first point, the last after the last.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PiecewiseLinear {
    pub points: Vec<(f64, f64)>,
}

impl Kind for PiecewiseLinear {
    const KIND: &'static str = "piecewise_linear";
    const SUMMARY: &'static str = "straight lines through [step, lr] points (optax piecewise_interpolate, linear)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let points = p.pairs("points", "[[step, lr], ...] with strictly increasing steps")?;
        if let Some(i) = (1..points.len()).find(|&i| points[i].0 <= points[i - 1].0) {
            let (a, b) = (points[i - 1].0, points[i].0);
            return Err(p.invalid("points", format!("steps must be strictly increasing, but {b} follows {a}")));
        }
        if let Some(&(s, lr)) = points.iter().find(|(s, lr)| *s < 0.0 || *lr < 0.0) {
            return Err(p.invalid("points", format!("steps and rates must be >= 0, found [{s}, {lr}]")));
        }
        Ok(PiecewiseLinear { points })
    }

    fn build(&self, _: &Context) -> Box<dyn Schedule> {
        Box::new(self.clone())
    }
}

impl Schedule for PiecewiseLinear {
    fn lr(&self, step: u64) -> f64 {
        let x = step as f64;
        let i = self.points.partition_point(|&(s, _)| s <= x);
        if i == 0 {
            return self.points[0].1;
        }
        if i == self.points.len() {
            return self.points[i - 1].1;
        }
        let ((x0, y0), (x1, y1)) = (self.points[i - 1], self.points[i]);
        y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::testing::assert_sequence;

    #[test]
    fn interpolates_and_holds_the_ends() {
        let s = PiecewiseLinear { points: vec![(10.0, 0.0), (20.0, 0.1), (120.0, 0.001)] };
        assert_sequence(&s, &[(0, 0.0), (10, 0.0), (15, 0.05), (20, 0.1), (70, 0.0505), (120, 0.001), (500, 0.001)]);
    }
}
