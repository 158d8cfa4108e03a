//! `reduce_on_plateau`: the validation-driven schedule, Keras `ReduceLROnPlateau` by
//! default, PyTorch `ReduceLROnPlateau` with `compat = "torch"`.

use super::{Context, Kind, ParamSource, Rule, Schedule};

/// Metrics a validation-driven schedule can watch.
pub const MONITORS: &[&str] = &["val_loss", "val_accuracy", "val_rmse", "train_loss"];

/// Whether larger values of `monitor` are better (accuracies), as Keras' "auto" mode decides.
pub fn larger_is_better(monitor: &str) -> bool {
    monitor.contains("acc")
}

/// Multiplies the rate by `factor` when the monitored metric has stopped improving.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReduceOnPlateau {
    pub learning_rate: f64,
    pub monitor: String,
    pub mode: String,
    pub factor: f64,
    pub patience: u64,
    pub min_delta: f64,
    pub cooldown: u64,
    pub min_lr: f64,
    pub compat: String,
    /// PyTorch's `threshold_mode`: how `min_delta` (torch's `threshold`) compares, "rel" or
    /// "abs"; Keras compares absolutely, always.
    pub threshold_mode: String,
}

impl Kind for ReduceOnPlateau {
    const KIND: &'static str = "reduce_on_plateau";
    const SUMMARY: &'static str = "validation-driven: multiply the rate by factor after patience evaluations without improvement (Keras ReduceLROnPlateau)";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(ReduceOnPlateau {
            learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the initial rate")?,
            monitor: p.choice("monitor", MONITORS, Some("val_loss"), "the metric to watch")?.to_string(),
            mode: p
                .choice("mode", &["auto", "min", "max"], Some("auto"), "auto: max for accuracy, min otherwise")?
                .to_string(),
            factor: p.number("factor", Some(0.1), Rule::OpenUnitInterval, "multiplies the rate on a plateau")?,
            patience: p.steps("patience", Some(10), 0, "evaluations without improvement before reducing")?,
            min_delta: p.number("min_delta", Some(1e-4), Rule::NonNegative, "smallest change that counts as improvement")?,
            cooldown: p.steps("cooldown", Some(0), 0, "evaluations to wait after a reduction")?,
            min_lr: p.number("min_lr", Some(0.0), Rule::NonNegative, "the rate is never reduced below this")?,
            compat: p
                .choice(
                    "compat",
                    &["keras", "torch"],
                    Some("keras"),
                    "keras: absolute min_delta, reduce after patience bad evaluations; torch: min_delta is torch's threshold, after patience + 1",
                )?
                .to_string(),
            threshold_mode: String::new(),
        })
        .and_then(|mut s: ReduceOnPlateau| {
            let default = if s.compat == "torch" { "rel" } else { "abs" };
            s.threshold_mode = p
                .choice(
                    "threshold_mode",
                    &["rel", "abs"],
                    Some(default),
                    "torch: rel (best * (1 -/+ min_delta), torch's default) or abs (best -/+ min_delta); keras: abs only (default: rel for torch, abs for keras)",
                )?
                .to_string();
            let (compat, mode) = (s.compat.clone(), s.threshold_mode.clone());
            p.check(compat == "torch" || mode == "abs", "threshold_mode", || {
                "is \"rel\", but Keras compares min_delta absolutely; use compat = \"torch\" for PyTorch's relative threshold".into()
            })?;
            Ok(s)
        })
    }

    fn build(&self, _: &Context) -> Box<dyn Schedule> {
        Box::new(Plateau { spec: self.clone(), lr: self.learning_rate, best: None, wait: 0, cooldown_counter: 0 })
    }
}

impl ReduceOnPlateau {
    /// Whether larger values of the monitored metric are better.
    fn maximize(&self) -> bool {
        match self.mode.as_str() {
            "max" => true,
            "min" => false,
            _ => larger_is_better(&self.monitor),
        }
    }
}

/// The running state of a plateau schedule.
struct Plateau {
    spec: ReduceOnPlateau,
    lr: f64,
    best: Option<f64>,
    wait: u64,
    cooldown_counter: u64,
}

impl Plateau {
    fn improved(&self, m: f64) -> bool {
        let Some(best) = self.best else { return true };
        let d = self.spec.min_delta;
        // PyTorch's _is_better: rel min a < best * (1 - t), rel max a > best * (t + 1),
        // abs min a < best - t, abs max a > best + t. Keras: m + d < best, m - d > best.
        match (self.spec.compat.as_str(), self.spec.threshold_mode.as_str(), self.spec.maximize()) {
            ("torch", "rel", false) => m < best * (1.0 - d),
            ("torch", "rel", true) => m > best * (d + 1.0),
            ("torch", _, false) => m < best - d,
            ("torch", _, true) => m > best + d,
            (_, _, false) => m + d < best,
            (_, _, true) => m - d > best,
        }
    }

    /// Keras 3 `ReduceLROnPlateau.on_epoch_end`: the cooldown counter is decremented before
    /// the check, so `cooldown = N` pauses N - 1 evaluations, exactly as Keras does.
    fn observe_keras(&mut self, m: f64) {
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        if self.improved(m) {
            self.best = Some(m);
            self.wait = 0;
        } else if self.cooldown_counter == 0 {
            self.wait += 1;
            if self.wait >= self.spec.patience && self.lr > self.spec.min_lr {
                self.lr = (self.lr * self.spec.factor).max(self.spec.min_lr);
                self.cooldown_counter = self.spec.cooldown;
                self.wait = 0;
            }
        }
    }

    /// PyTorch `ReduceLROnPlateau.step` (eps 1e-8).
    fn observe_torch(&mut self, m: f64) {
        if self.improved(m) {
            self.best = Some(m);
            self.wait = 0;
        } else {
            self.wait += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        if self.wait > self.spec.patience {
            let new = (self.lr * self.spec.factor).max(self.spec.min_lr);
            if self.lr - new > 1e-8 {
                self.lr = new;
            }
            self.cooldown_counter = self.spec.cooldown;
            self.wait = 0;
        }
    }
}

impl Schedule for Plateau {
    fn lr(&self, _step: u64) -> f64 {
        self.lr
    }

    fn observe(&mut self, metric: f64) {
        if self.spec.compat == "torch" { self.observe_torch(metric) } else { self.observe_keras(metric) }
    }

    fn monitor(&self) -> Option<&str> {
        Some(&self.spec.monitor)
    }

    /// `[lr, best (NaN when none yet), wait, cooldown counter]`.
    fn state(&self) -> Vec<f64> {
        vec![self.lr, self.best.unwrap_or(f64::NAN), self.wait as f64, self.cooldown_counter as f64]
    }

    fn restore(&mut self, state: &[f64]) -> usize {
        if let [lr, best, wait, cooldown, ..] = *state {
            self.lr = lr;
            self.best = (!best.is_nan()).then_some(best);
            (self.wait, self.cooldown_counter) = (wait as u64, cooldown as u64);
        }
        4
    }
}
