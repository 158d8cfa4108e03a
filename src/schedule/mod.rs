//! Learning-rate schedules: the ten TensorFlow decays, the PyTorch/Keras/optax families,
//! warmup, composition and custom formulas. Pure f64 arithmetic; nothing here knows of
//! candle or TOML.
//!
//! A [`ScheduleSpec`] is the validated, plain-data description of a schedule (what a config
//! file holds); [`ScheduleSpec::build`] turns it into a [`Schedule`] that answers `lr(step)`.

pub mod catalog;

mod constant;
mod cosine;
mod cosine_annealing;
mod cosine_restarts;
mod cyclic;
mod exponential;
mod expression;
mod fair;
mod fit;
mod horizon;
mod inverse_time;
mod linear;
mod linear_cosine;
mod natural_exp;
mod noise;
mod one_cycle;
mod piecewise_constant;
mod piecewise_linear;
mod polynomial;
mod reduce_on_plateau;
mod sequence;
mod step;
mod warmup;
mod warmup_stable_decay;

pub use crate::params::{HORIZON_ACCEPTS, Horizon};
pub use crate::params::{ParamSource, Rule};
pub use constant::Constant;
pub use cosine::CosineDecay;
pub use cosine_annealing::CosineAnnealing;
pub use cosine_restarts::CosineDecayRestarts;
pub use cyclic::Cyclic;
pub use exponential::ExponentialDecay;
pub use expression::Expression;
pub use fair::{FairValue, fair_params, fair_rule};
pub use fit::fit_warnings;
pub(crate) use horizon::{OneHorizon, Resolved};
pub use inverse_time::InverseTimeDecay;
pub use linear::Linear;
pub use linear_cosine::{LinearCosineDecay, NoisyLinearCosineDecay};
pub use natural_exp::NaturalExpDecay;
pub use one_cycle::OneCycle;
pub use piecewise_constant::PiecewiseConstant;
pub use piecewise_linear::PiecewiseLinear;
pub use polynomial::PolynomialDecay;
pub use reduce_on_plateau::{MONITORS, ReduceOnPlateau, larger_is_better};
pub use sequence::{Phase, Sequence};
pub use step::{MultiStep, Step};
pub use warmup::Warmup;
pub use warmup_stable_decay::WarmupStableDecay;

/// A learning rate as a function of the optimizer step (0 for the first update).
pub trait Schedule: Send {
    /// The rate for `step`.
    fn lr(&self, step: u64) -> f64;

    /// Tells a validation-driven schedule the monitored metric after an evaluation.
    fn observe(&mut self, _metric: f64) {}

    /// The metric a validation-driven schedule wants (e.g. "val_loss"); `None` for step-driven ones.
    fn monitor(&self) -> Option<&str> {
        None
    }

    /// What a checkpoint must keep of the schedule to continue it exactly: the running
    /// state of validation-driven schedules (a plateau's rate, best, wait, cooldown), empty
    /// for schedules that are a function of the step.
    fn state(&self) -> Vec<f64> {
        Vec::new()
    }

    /// Restores what [`Schedule::state`] gave, from the front of `state`; returns how many
    /// values it took.
    fn restore(&mut self, _state: &[f64]) -> usize {
        0
    }
}

/// The first of steps `0..steps` whose rate is not a finite number (a formula that divides
/// by zero), with that rate.
pub fn first_bad_rate(s: &dyn Schedule, steps: u64) -> Option<(u64, f64)> {
    (0..steps).map(|step| (step, s.lr(step))).find(|(_, lr)| !lr.is_finite())
}

/// The first of the steps 0, 1, 10, 100, ... and the last of a run of `total` steps (and
/// 64 steps spread evenly over it) where `s` gives a rate that is not a finite number: a
/// check cheap enough for every run of a sweep at load.
pub fn first_bad_probe(s: &dyn Schedule, total: u64) -> Option<(u64, f64)> {
    let mut steps = vec![0, 1];
    let mut k = 10u64;
    while k < total {
        steps.push(k);
        k = k.saturating_mul(10);
    }
    steps.extend((1..=64).map(|i| (total.saturating_sub(1) as u128 * i / 64) as u64));
    steps.sort_unstable();
    steps.dedup();
    steps.into_iter().filter(|&s| s < total.max(1)).map(|step| (step, s.lr(step))).find(|(_, lr)| !lr.is_finite())
}

/// What a schedule may depend on besides its own parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Context {
    /// Steps the run will take (the horizon for schedules whose default is "the whole run").
    pub total_steps: u64,
    /// Optimizer steps per epoch (for `epoch` in expressions).
    pub steps_per_epoch: u64,
    /// Seed for schedules with randomness (noisy linear cosine).
    pub seed: u64,
}

/// One schedule kind: its name in configs, a one-line description, how to read its
/// parameters and how to build it.
pub trait Kind: Sized {
    /// The `kind = "..."` word.
    const KIND: &'static str;
    /// One line for `runner schedules` and the docs.
    const SUMMARY: &'static str;
    /// Reads (and validates) the parameters.
    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error>;
    /// The schedule these parameters describe.
    fn build(&self, ctx: &Context) -> Box<dyn Schedule>;
}

macro_rules! kinds {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// Every schedule kind with its parameters.
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum KindSpec {
            $(#[doc = concat!("`", stringify!($variant), "`")] $variant($ty),)*
        }

        /// Every `kind` word, in the order `runner schedules` lists them.
        pub const KINDS: &[&str] = &[$(<$ty as Kind>::KIND),*];

        impl KindSpec {
            /// Reads the parameters of `kind`; `None` when no such kind exists.
            pub fn read<P: ParamSource>(kind: &str, p: &mut P) -> Option<Result<Self, P::Error>> {
                match kind {
                    $(<$ty as Kind>::KIND => Some(<$ty as Kind>::read(p).map(KindSpec::$variant)),)*
                    _ => None,
                }
            }

            /// The `kind` word.
            pub fn kind(&self) -> &'static str {
                match self { $(KindSpec::$variant(_) => <$ty as Kind>::KIND,)* }
            }

            fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
                match self { $(KindSpec::$variant(k) => k.build(ctx),)* }
            }
        }

        /// `(kind, summary)` for every kind.
        pub fn summaries() -> Vec<(&'static str, &'static str)> {
            vec![$((<$ty as Kind>::KIND, <$ty as Kind>::SUMMARY)),*]
        }
    };
}

kinds! {
    PiecewiseConstant(PiecewiseConstant),
    ExponentialDecay(ExponentialDecay),
    NaturalExpDecay(NaturalExpDecay),
    PolynomialDecay(PolynomialDecay),
    InverseTimeDecay(InverseTimeDecay),
    CosineDecay(CosineDecay),
    CosineDecayRestarts(CosineDecayRestarts),
    LinearCosineDecay(LinearCosineDecay),
    NoisyLinearCosineDecay(NoisyLinearCosineDecay),
    ReduceOnPlateau(ReduceOnPlateau),
    Constant(Constant),
    Step(Step),
    Multistep(MultiStep),
    CosineAnnealing(CosineAnnealing),
    Linear(Linear),
    OneCycle(OneCycle),
    Cyclic(Cyclic),
    WarmupStableDecay(WarmupStableDecay),
    Sequence(Sequence),
    PiecewiseLinear(PiecewiseLinear),
    Expression(Expression),
}

/// The ten TensorFlow decays our users compare (the seed set of a sweep over "all").
pub const SEED_DECAYS: &[&str] = &[
    "piecewise_constant",
    "exponential_decay",
    "natural_exp_decay",
    "polynomial_decay",
    "inverse_time_decay",
    "cosine_decay",
    "cosine_decay_restarts",
    "linear_cosine_decay",
    "noisy_linear_cosine_decay",
    "reduce_on_plateau",
];

/// A validated schedule: a kind with its parameters, optionally behind a warmup.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScheduleSpec {
    #[serde(flatten)]
    pub kind: KindSpec,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Warmup>,
}

impl ScheduleSpec {
    /// Reads a schedule of `kind` (its own keys, then the shared warmup keys);
    /// `None` when no such kind exists.
    pub fn read<P: ParamSource>(kind: &str, p: &mut P) -> Option<Result<Self, P::Error>> {
        let kind = match KindSpec::read(kind, p)? {
            Ok(kind) => kind,
            Err(e) => return Some(Err(e)),
        };
        Some(Warmup::read(p).map(|warmup| ScheduleSpec { kind, warmup }))
    }

    /// Reads a schedule table: its `kind`, then that kind's parameters and the warmup keys.
    pub fn read_table<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let kind = p.kind("schedule", KINDS)?;
        match ScheduleSpec::read(kind, p) {
            Some(spec) => spec,
            // KINDS and the readers come from the same list.
            None => Err(p.invalid("kind", format!("has no reader for \"{kind}\""))),
        }
    }

    /// Builds the schedule for a run described by `ctx`. A rate below zero (TF's noisy
    /// linear cosine with its default noise, a formula) is held at 0: a negative rate would
    /// be gradient ascent. [`fit_warnings`] says where that happens; NaN and infinities
    /// pass through for the callers to refuse.
    pub fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        Box::new(NonNegative(self.build_unclamped(ctx)))
    }

    /// [`ScheduleSpec::build`] without holding negative rates at 0.
    pub fn build_unclamped(&self, ctx: &Context) -> Box<dyn Schedule> {
        match &self.warmup {
            None => self.kind.build(ctx),
            Some(w) => {
                let inner_ctx = Context { total_steps: ctx.total_steps.saturating_sub(w.warmup_steps), ..*ctx };
                Box::new(w.wrap(self.kind.build(&inner_ctx)))
            }
        }
    }
}

/// A schedule whose negative rates are held at 0.
struct NonNegative(Box<dyn Schedule>);

impl Schedule for NonNegative {
    fn lr(&self, step: u64) -> f64 {
        let lr = self.0.lr(step);
        if lr < 0.0 { 0.0 } else { lr }
    }

    fn observe(&mut self, metric: f64) {
        self.0.observe(metric)
    }

    fn monitor(&self) -> Option<&str> {
        self.0.monitor()
    }

    fn state(&self) -> Vec<f64> {
        self.0.state()
    }

    fn restore(&mut self, state: &[f64]) -> usize {
        self.0.restore(state)
    }
}

/// Shared test helpers: relative comparison against reference numbers.
#[cfg(test)]
pub(crate) mod testing {
    /// Asserts `actual` equals `expected` to 1e-12 relative (absolute near zero).
    #[track_caller]
    pub fn assert_close(actual: f64, expected: f64) {
        let scale = expected.abs().max(1e-300);
        let ok = if expected == 0.0 { actual.abs() < 1e-15 } else { ((actual - expected) / scale).abs() <= 1e-12 };
        assert!(ok, "expected {expected:e}, got {actual:e} (rel err {:e})", ((actual - expected) / scale).abs());
    }

    /// Checks `lr(step)` for each `(step, expected)`.
    #[track_caller]
    pub fn assert_sequence(s: &dyn super::Schedule, cases: &[(u64, f64)]) {
        for &(step, expected) in cases {
            let got = s.lr(step);
            let scale = expected.abs().max(1e-300);
            let ok = if expected == 0.0 { got.abs() < 1e-15 } else { ((got - expected) / scale).abs() <= 1e-12 };
            assert!(ok, "step {step}: expected {expected:e}, got {got:e}");
        }
    }
}
