//! Length parameters that follow the run: `decay_steps`, `first_decay_steps`, `total_steps`,
//! `step_size`, ... may be a number of steps (exact, as TF/PyTorch take it), `"run"` (the
//! steps the schedule itself runs: the run's total less any warmup, what Keras users write
//! as `epochs * steps_per_epoch` and Lightning calls `estimated_stepping_batches`) or
//! `"N epochs"` (N times the run's steps per epoch).

use super::{Context, Horizon, Schedule};

/// Resolving a [`Horizon`] (a plain value of [`crate::params`]) against the run.
impl Horizon {
    /// The number of steps this horizon stands for in the run `ctx` describes (whose
    /// `total_steps` already excludes a warmup). At least 1.
    pub fn resolve(self, ctx: &Context) -> f64 {
        match self {
            Horizon::Steps(n) => n,
            Horizon::Run => ctx.total_steps.max(1) as f64,
            Horizon::Epochs(e) => (e * ctx.steps_per_epoch as f64).max(1.0),
        }
    }

    /// [`Horizon::resolve`] as a whole number of steps (rounded), at least `min`.
    pub fn resolve_steps(self, ctx: &Context, min: u64) -> u64 {
        let x = self.resolve(ctx).round();
        // Saturates for absurd values instead of wrapping.
        (if x >= u64::MAX as f64 { u64::MAX } else { x as u64 }).max(min)
    }
}

/// A kind whose rate depends on one length, given resolved.
pub(crate) trait OneHorizon: Send + Sync + Clone + 'static {
    /// The rate at `step` when the kind's length is `horizon` steps.
    fn rate(&self, step: u64, horizon: f64) -> f64;
}

/// A [`OneHorizon`] kind with its length resolved against the run.
pub(crate) struct Resolved<K> {
    pub kind: K,
    pub horizon: f64,
}

impl<K: OneHorizon> Resolved<K> {
    /// `kind` with `horizon` resolved against `ctx`, as a schedule.
    pub fn boxed(kind: &K, horizon: Horizon, ctx: &Context) -> Box<dyn Schedule> {
        Box::new(Resolved { kind: kind.clone(), horizon: horizon.resolve(ctx) })
    }
}

impl<K: OneHorizon> Schedule for Resolved<K> {
    fn lr(&self, step: u64) -> f64 {
        self.kind.rate(step, self.horizon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(total: u64, per_epoch: u64) -> Context {
        Context { total_steps: total, steps_per_epoch: per_epoch, seed: 0 }
    }

    #[test]
    fn resolves_against_the_run() {
        assert_eq!(Horizon::Steps(2000.0).resolve(&ctx(1350, 45)), 2000.0);
        assert_eq!(Horizon::Run.resolve(&ctx(1350, 45)), 1350.0);
        assert_eq!(Horizon::Run.resolve(&ctx(0, 45)), 1.0);
        assert_eq!(Horizon::Epochs(10.0).resolve(&ctx(1350, 45)), 450.0);
        assert_eq!(Horizon::Epochs(2.5).resolve_steps(&ctx(1350, 45), 1), 113);
        assert_eq!(Horizon::Steps(1e300).resolve_steps(&ctx(1, 1), 1), u64::MAX);
    }

    #[test]
    fn reads_the_word_forms() {
        assert_eq!(Horizon::parse_word("run"), Some(Horizon::Run));
        assert_eq!(Horizon::parse_word("10 epochs"), Some(Horizon::Epochs(10.0)));
        assert_eq!(Horizon::parse_word(" 1 epoch "), Some(Horizon::Epochs(1.0)));
        assert_eq!(Horizon::parse_word("0.5epochs"), Some(Horizon::Epochs(0.5)));
        for bad in ["", "Run", "epochs", "0 epochs", "-1 epochs", "nan epochs", "inf epochs", "10 steps"] {
            assert_eq!(Horizon::parse_word(bad), None, "{bad}");
        }
    }

    #[test]
    fn serialises_as_written() {
        #[derive(serde::Serialize)]
        struct T {
            a: Horizon,
            b: Horizon,
            c: Horizon,
            d: Horizon,
        }
        let t = T { a: Horizon::Steps(2000.0), b: Horizon::Steps(12.5), c: Horizon::Run, d: Horizon::Epochs(3.0) };
        assert_eq!(toml::to_string(&t).unwrap(), "a = 2000\nb = 12.5\nc = \"run\"\nd = \"3 epochs\"\n");
    }
}
