//! The seam between a component's parameters and wherever they come from.
//!
//! Schedules, data sets, models, optimizers and the training loop read their parameters
//! through [`ParamSource`]: the config loader implements it over a TOML table (so errors
//! point at a file, line and key), and the catalog implements it to list every parameter
//! with its default. Components therefore know nothing of TOML, and the documented defaults
//! are the ones actually used.
//!
//! A leaf: it imports nothing of the crate. [`Horizon`] lives here because it is a value a
//! parameter may take; [`crate::schedule`] resolves it against a run.

/// The values a number parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Any finite number.
    Any,
    /// A finite number > 0.
    Positive,
    /// A finite number >= 0.
    NonNegative,
    /// A number in [0, 1].
    UnitInterval,
    /// A number in (0, 1).
    OpenUnitInterval,
    /// A finite number >= 1.
    AtLeastOne,
}

impl Rule {
    /// Whether `x` satisfies the rule. Subnormal numbers (nonzero, below
    /// [`f64::MIN_POSITIVE`], about 2.2e-308) satisfy none: training flushes them to 0
    /// (`[train] flush_denormals`), so a schedule would compute with another value than
    /// `runner schedule` shows (see [`SUBNORMAL`]).
    pub fn accepts(self, x: f64) -> bool {
        x.is_finite()
            && !x.is_subnormal()
            && match self {
                Rule::Any => true,
                Rule::Positive => x > 0.0,
                Rule::NonNegative => x >= 0.0,
                Rule::UnitInterval => (0.0..=1.0).contains(&x),
                Rule::OpenUnitInterval => x > 0.0 && x < 1.0,
                Rule::AtLeastOne => x >= 1.0,
            }
    }

    /// What the rule accepts, in words ("a number > 0").
    pub fn describe(self) -> &'static str {
        match self {
            Rule::Any => "a finite number",
            Rule::Positive => "a number > 0",
            Rule::NonNegative => "a number >= 0",
            Rule::UnitInterval => "a number in [0, 1]",
            Rule::OpenUnitInterval => "a number in (0, 1)",
            Rule::AtLeastOne => "a number >= 1",
        }
    }
}

/// Why a subnormal number is refused, after "is X, ".
pub const SUBNORMAL: &str = "a subnormal number (nonzero and below 2.2e-308), which training flushes to 0 \
                             (`train.flush_denormals`): give a normal number, at least 2.2e-308 (or 0 where 0 is accepted)";

/// How [`ParamSource::tables`] reads one table of a list: from its own source, given its
/// index and the list's length.
pub type ReadTable<'f, S, T> = dyn FnMut(&mut S, usize, usize) -> Result<T, <S as ParamSource>::Error> + 'f;

/// Where a component's parameters come from. `doc` texts are what the catalog shows.
pub trait ParamSource {
    type Error;

    /// A number; `default: None` makes it required.
    fn number(
        &mut self,
        key: &'static str,
        default: Option<f64>,
        rule: Rule,
        doc: &'static str,
    ) -> Result<f64, Self::Error>;

    /// A number that may be left out; `default_doc` says what happens then.
    fn optional_number(
        &mut self,
        key: &'static str,
        rule: Rule,
        default_doc: &'static str,
        doc: &'static str,
    ) -> Result<Option<f64>, Self::Error>;

    /// A whole number of steps, at least `min`; `default: None` makes it required.
    fn steps(
        &mut self,
        key: &'static str,
        default: Option<u64>,
        min: u64,
        doc: &'static str,
    ) -> Result<u64, Self::Error>;

    /// A whole number of steps that may be left out; `default_doc` says what happens then.
    fn optional_steps(
        &mut self,
        key: &'static str,
        min: u64,
        default_doc: &'static str,
        doc: &'static str,
    ) -> Result<Option<u64>, Self::Error>;

    /// A schedule length: a number of steps (> 0; whole when `whole`), `"run"` or
    /// `"N epochs"` (see [`Horizon`]); `default: None` makes it required.
    fn horizon(
        &mut self,
        key: &'static str,
        default: Option<Horizon>,
        whole: bool,
        doc: &'static str,
    ) -> Result<Horizon, Self::Error>;

    /// A true/false switch that may be left out (`None`), e.g. a key kept only to say
    /// what replaced it.
    fn optional_flag(&mut self, key: &'static str) -> Result<Option<bool>, Self::Error>;

    /// A true/false switch.
    fn flag(&mut self, key: &'static str, default: bool, doc: &'static str) -> Result<bool, Self::Error>;

    /// One of a fixed set of words.
    fn choice(
        &mut self,
        key: &'static str,
        options: &'static [&'static str],
        default: Option<&'static str>,
        doc: &'static str,
    ) -> Result<&'static str, Self::Error>;

    /// A required string.
    fn text(&mut self, key: &'static str, doc: &'static str) -> Result<String, Self::Error>;

    /// A string that may be left out; `default_doc` says what happens then.
    fn optional_text(
        &mut self,
        key: &'static str,
        default_doc: &'static str,
        doc: &'static str,
    ) -> Result<Option<String>, Self::Error>;

    /// A list of whole numbers, each at least `min` (may be empty); `default` when absent.
    fn counts(
        &mut self,
        key: &'static str,
        default: &[u64],
        min: u64,
        doc: &'static str,
    ) -> Result<Vec<u64>, Self::Error>;

    /// A required, non-empty list of numbers, each satisfying `rule`.
    fn numbers(&mut self, key: &'static str, rule: Rule, doc: &'static str) -> Result<Vec<f64>, Self::Error>;

    /// [`ParamSource::numbers`] that may be left out (`None`).
    fn optional_numbers(
        &mut self,
        key: &'static str,
        rule: Rule,
        doc: &'static str,
    ) -> Result<Option<Vec<f64>>, Self::Error>;

    /// A required, non-empty list of `[x, y]` pairs.
    fn pairs(&mut self, key: &'static str, doc: &'static str) -> Result<Vec<(f64, f64)>, Self::Error>;

    /// The `kind` of a table of `what` (`"schedule"`): one of `kinds`, required.
    fn kind(&mut self, what: &'static str, kinds: &'static [&'static str]) -> Result<&'static str, Self::Error>;

    /// A required, non-empty list of tables (`[[key]]`, each an `item`: "schedule table"),
    /// each read by `read` from a source of its own, given its index and the list's length. A
    /// key of a table that `read` does not ask for is refused. A source that only describes
    /// parameters (the catalog) reads none.
    fn tables<T>(
        &mut self,
        key: &'static str,
        item: &'static str,
        doc: &'static str,
        read: &mut ReadTable<'_, Self, T>,
    ) -> Result<Vec<T>, Self::Error>
    where
        Self: Sized;

    /// Where this table was written (`file:line:column`), for messages about it after
    /// reading (a layer whose shape does not fit); `None` where it has no place.
    fn here(&self) -> Option<String> {
        None
    }

    /// An error about `key` (its value, or the table when the key is absent).
    fn invalid(&mut self, key: &str, message: String) -> Self::Error;

    /// Refuses with `message` about `key` unless `ok`.
    fn check(&mut self, ok: bool, key: &str, message: impl FnOnce() -> String) -> Result<(), Self::Error> {
        if ok { Ok(()) } else { Err(self.invalid(key, message())) }
    }
}

/// A schedule length, resolved against the run when the schedule is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Horizon {
    /// Exactly this many steps.
    Steps(f64),
    /// The steps the schedule runs for (the run's total steps after warmup).
    Run,
    /// This many epochs of the run.
    Epochs(f64),
}

/// What a horizon accepts, in words (for errors and `runner schedules`).
pub const HORIZON_ACCEPTS: &str = "a number of steps > 0, \"run\" (the run's steps after warmup) or \"N epochs\"";

impl Horizon {
    /// Reads the word forms: `"run"`, `"N epochs"` (or `"N epoch"`).
    pub fn parse_word(word: &str) -> Option<Horizon> {
        let w = word.trim();
        if w == "run" {
            return Some(Horizon::Run);
        }
        let n = w.strip_suffix("epochs").or_else(|| w.strip_suffix("epoch"))?.trim();
        let e: f64 = n.parse().ok()?;
        (e.is_finite() && e > 0.0 && !e.is_subnormal()).then_some(Horizon::Epochs(e))
    }
}

impl std::fmt::Display for Horizon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Horizon::Steps(n) => write!(f, "{n}"),
            Horizon::Run => write!(f, "\"run\""),
            Horizon::Epochs(e) if *e == 1.0 => write!(f, "\"1 epoch\""),
            Horizon::Epochs(e) => write!(f, "\"{e} epochs\""),
        }
    }
}

impl serde::Serialize for Horizon {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            // Whole step counts read best (and read back) as integers.
            Horizon::Steps(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => s.serialize_i64(n as i64),
            Horizon::Steps(n) => s.serialize_f64(n),
            Horizon::Run => s.serialize_str("run"),
            Horizon::Epochs(1.0) => s.serialize_str("1 epoch"),
            Horizon::Epochs(e) => s.serialize_str(&format!("{e} epochs")),
        }
    }
}
