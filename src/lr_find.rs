//! The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's and
//! Lightning's `lr_find`): train a run's model from its start while the rate rises
//! exponentially from `start` to `end`, one step at each rate, record the loss and its
//! exponentially smoothed, bias-corrected value, stop once the smoothed loss exceeds
//! `diverge` times its minimum (or is not finite), and suggest a peak rate.
//!
//! The suggestion is the lower of two rules: where the smoothed loss falls fastest against
//! log(rate) (steepest descent, Lightning's rule) and the rate of its minimum divided by 10
//! (fastai's older rule). Each alone fails on one of the shipped examples: steepest descent
//! lands on the cliff's edge for SGD on digits (0.20 to 0.24 over seeds, where 0.3 already
//! trains unstably and 0.29 ended at 79% against 98% at 0.1), and the minimum / 10 sits
//! at the high end of the good range for AdamW on Shakespeare; the lower one was within a
//! point of accuracy (digits) and 0.4% of loss (Shakespeare) of the best rate of a grid
//! (README, "Choosing the peak rate"). fastai's current `valley` rule gave rates 10 to 20
//! times below the best on both, so it is not used.
use crate::data::Dataset;
use crate::schedule::{ExponentialDecay, Horizon, KindSpec, ScheduleSpec};
use crate::train::{self, EvalRow, Recorder, RunSpec, StepRow};
use anyhow::{Result, bail};
use std::sync::atomic::{AtomicBool, Ordering};

/// How the rates sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeTest {
    pub start: f64,
    pub end: f64,
    /// Steps from `start` to `end` (the most the test trains).
    pub steps: u64,
    /// Weight of the past in the smoothed loss (fastai: 0.98).
    pub smoothing: f64,
    /// Stop when the smoothed loss exceeds this many times its minimum (fastai: 4).
    pub diverge: f64,
}

impl Default for RangeTest {
    fn default() -> Self {
        RangeTest { start: 1e-7, end: 10.0, steps: 100, smoothing: 0.98, diverge: 4.0 }
    }
}

/// One step of the test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    pub step: u64,
    pub lr: f64,
    pub loss: f64,
    pub smoothed_loss: f64,
}

/// What the test found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub points: Vec<Point>,
    /// Whether the loss diverged before the last rate.
    pub stopped_early: bool,
    /// The curve's features and the rate suggested from them.
    pub suggestion: Suggestion,
}

/// The features of a range test's curve and the peak rate they suggest.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Suggestion {
    /// Where the smoothed loss falls fastest against log10(rate): (rate, slope per decade).
    pub steepest: Option<(f64, f64)>,
    /// The smoothed loss's minimum: (rate, smoothed loss).
    pub minimum: Option<(f64, f64)>,
    /// The suggested peak rate: the lower of the steepest descent's rate and the
    /// minimum's rate / 10.
    pub peak: Option<f64>,
    /// Which rule gave `peak`.
    pub rule: Rule,
}

/// The rule a suggestion came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rule {
    #[default]
    None,
    Steepest,
    MinimumOver10,
}

impl Suggestion {
    /// Why `peak` was chosen, in words for the terminal.
    pub fn reason(&self) -> String {
        match (self.rule, self.steepest, self.minimum) {
            (Rule::Steepest, _, Some((m, _))) => {
                format!("the steepest descent's rate; the minimum's rate / 10, {:.3e}, is higher", m / 10.0)
            }
            (Rule::Steepest, _, None) => "the steepest descent's rate".into(),
            (Rule::MinimumOver10, Some((s, _)), _) => {
                format!("the minimum's rate / 10; the steepest descent's rate, {s:.3e}, is higher")
            }
            (Rule::MinimumOver10, None, _) => "the minimum's rate / 10".into(),
            (Rule::None, _, _) => String::new(),
        }
    }
}

/// Collects the steps and stops the run when the loss diverges.
struct Watch<'a> {
    test: RangeTest,
    points: Vec<Point>,
    average: f64,
    best: f64,
    stop: &'a AtomicBool,
    diverged: bool,
}

impl Recorder for Watch<'_> {
    fn on_step(&mut self, row: &StepRow, _epoch: u64, _logged: bool) -> Result<()> {
        let beta = self.test.smoothing;
        let n = self.points.len() as i32 + 1;
        self.average = beta * self.average + (1.0 - beta) * row.loss;
        let smoothed = self.average / (1.0 - beta.powi(n));
        self.points.push(Point { step: row.step, lr: row.lr, loss: row.loss, smoothed_loss: smoothed });
        if !smoothed.is_finite() || (n > 1 && smoothed > self.test.diverge * self.best) {
            self.diverged = true;
            self.stop.store(true, Ordering::SeqCst);
        }
        self.best = self.best.min(smoothed);
        Ok(())
    }

    fn on_eval(&mut self, _row: &EvalRow) -> Result<()> {
        Ok(())
    }
}

/// The rate schedule of the test: `start * (end / start) ^ (step / (steps - 1))`, TF's
/// exponential decay with a rate above 1.
pub fn ramp(test: &RangeTest) -> ScheduleSpec {
    ScheduleSpec {
        kind: KindSpec::ExponentialDecay(ExponentialDecay {
            learning_rate: test.start,
            decay_steps: Horizon::Steps(test.steps.saturating_sub(1).max(1) as f64),
            decay_rate: test.end / test.start,
            staircase: false,
        }),
        warmup: None,
    }
}

/// Runs the range test on the model, optimizer and data of `spec` (its schedule, length,
/// evaluations, early stopping and checkpoints replaced by the test's).
pub fn find(spec: &RunSpec, data: &std::sync::Arc<Dataset>, test: &RangeTest) -> Result<Finding> {
    if !(test.start > 0.0 && test.end > test.start && test.end.is_finite()) {
        bail!("the rates must rise: --start {} --end {} (0 < start < end)", test.start, test.end);
    }
    if test.steps < 2 {
        bail!("--steps {}: the test needs at least 2 steps", test.steps);
    }
    let mut spec = spec.clone();
    spec.schedule = ramp(test);
    spec.train.steps = Some(test.steps);
    spec.train.epochs = None;
    spec.train.eval_every = Some(u64::MAX);
    spec.train.early_stopping = None;
    spec.train.log_every = 1;
    spec.train.checkpoint_every = Horizon::Steps(1e18);
    spec.train.checkpoint_minutes = 1e12;
    let stop = AtomicBool::new(false);
    let mut watch =
        Watch { test: *test, points: Vec::new(), average: 0.0, best: f64::INFINITY, stop: &stop, diverged: false };
    train::train(&spec, data, &mut watch, &stop)?;
    let points = watch.points;
    let suggestion = suggest(&points);
    Ok(Finding { stopped_early: watch.diverged, points, suggestion })
}

/// Points left out of the steepest-descent search at the start (where the smoothed loss
/// is an average of a few losses and jumps with their noise) and at the end (the
/// divergence), as Lightning's `suggestion(skip_begin=10, skip_end=1)`.
pub const SKIP_BEGIN: usize = 10;
pub const SKIP_END: usize = 1;

/// The curve's steepest descent and minimum (of the smoothed losses against log10(rate),
/// over the points before the divergence; the slope over a twentieth of them each way),
/// and the suggestion: the lower of the steepest descent's rate and the minimum's / 10.
pub fn suggest(points: &[Point]) -> Suggestion {
    let usable: Vec<&Point> = points.iter().take_while(|p| p.smoothed_loss.is_finite()).collect();
    let minimum =
        usable.iter().min_by(|a, b| a.smoothed_loss.total_cmp(&b.smoothed_loss)).map(|p| (p.lr, p.smoothed_loss));
    let end = usable.len().saturating_sub(SKIP_END);
    let searched = &usable[SKIP_BEGIN.min(end)..end];
    // Central differences of the smoothed loss against log10(rate), over a twentieth of the
    // points each way: between neighbours the rate moves by a hair and the slope is the
    // loss's noise over it.
    let half = (searched.len() / 20).max(1);
    let mut steepest: Option<(f64, f64)> = None;
    for w in searched.windows(2 * half + 1) {
        let (a, mid, b) = (w[0], w[half], w[2 * half]);
        let dx = b.lr.log10() - a.lr.log10();
        if dx <= 0.0 {
            continue;
        }
        let slope = (b.smoothed_loss - a.smoothed_loss) / dx;
        if steepest.is_none_or(|(_, s)| slope < s) {
            steepest = Some((mid.lr, slope));
        }
    }
    // A curve that never falls has no steepest descent to speak of.
    let steepest = steepest.filter(|(_, slope)| *slope < 0.0);
    let (peak, rule) = match (steepest, minimum) {
        (Some((s, _)), Some((m, _))) if s <= m / 10.0 => (Some(s), Rule::Steepest),
        (Some(_), Some((m, _))) => (Some(m / 10.0), Rule::MinimumOver10),
        (Some((s, _)), None) => (Some(s), Rule::Steepest),
        // Without a descent the minimum is the first points' noise: no suggestion.
        (None, _) => (None, Rule::None),
    };
    Suggestion { steepest, minimum, peak, rule }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: u64, lr: f64, smoothed_loss: f64) -> Point {
        Point { step, lr, loss: smoothed_loss, smoothed_loss }
    }

    #[test]
    fn the_ramp_goes_from_start_to_end() {
        let test = RangeTest { start: 1e-4, end: 1.0, steps: 5, ..RangeTest::default() };
        let s = ramp(&test).build(&crate::schedule::Context { total_steps: 5, steps_per_epoch: 5, seed: 1 });
        let rates: Vec<f64> = (0..5).map(|i| s.lr(i)).collect();
        for (r, want) in rates.iter().zip([1e-4, 1e-3, 1e-2, 1e-1, 1.0]) {
            assert!((r / want - 1.0).abs() < 1e-12, "{rates:?}");
        }
    }

    #[test]
    fn suggestions_by_hand() {
        // Ten noisy points first (skipped), then flat, falling fastest between 1e-2 and
        // 1e-1, a minimum at 1, up, and the divergence (skipped).
        let mut pts: Vec<Point> =
            (0..SKIP_BEGIN as u64).map(|i| point(i, 1e-6 * (i + 1) as f64, 9.0 - 0.5 * i as f64)).collect();
        let rest = [
            point(0, 1e-4, 2.0),
            point(1, 1e-3, 1.98),
            point(2, 1e-2, 1.8),
            point(3, 1e-1, 1.0),
            point(4, 1.0, 0.7),
            point(5, 10.0, 3.0),
            point(6, 100.0, 30.0),
        ];
        pts.extend(rest);
        let skipped = suggest(&pts[SKIP_BEGIN..]);
        assert_eq!(skipped.steepest, None, "the first ten points are not searched");
        assert_eq!((skipped.peak, skipped.rule), (None, Rule::None));
        let all = suggest(&pts);
        assert_eq!(skipped.minimum, all.minimum);
        // Slopes at 1e-3: -0.1, 1e-2: -0.49, 1e-1: -0.55, 1: +1.0 (per decade).
        let (rate, slope) = all.steepest.unwrap();
        assert_eq!(rate, 1e-1);
        assert!((slope + 0.55).abs() < 1e-9, "{slope}");
        assert_eq!(all.minimum, Some((1.0, 0.7)));
        // Steepest 0.1, minimum / 10 = 0.1: equal, so the steepest descent's.
        assert_eq!((all.peak, all.rule), (Some(1e-1), Rule::Steepest));
        // The minimum further left (at 0.3): its tenth, 0.03, is the lower.
        let mut left = pts.clone();
        left[SKIP_BEGIN + 4] = point(4, 0.3, 0.7);
        left[SKIP_BEGIN + 5] = point(5, 1.0, 3.0);
        let s = suggest(&left);
        assert_eq!(s.minimum.map(|m| m.0), Some(0.3));
        assert!((s.peak.unwrap() - 0.03).abs() < 1e-15 && s.rule == Rule::MinimumOver10, "{s:?}");
        assert_eq!(s.reason(), "the minimum's rate / 10; the steepest descent's rate, 1.000e-1, is higher");
        let one = suggest(&pts[..1]);
        assert_eq!((one.minimum, one.peak), (Some((1e-6, 9.0)), None));
    }
}
