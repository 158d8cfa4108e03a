//! Every schedule kind with its parameters, defaults and description, read from the same
//! code that reads configs (see [`ParamSource`]), for `runner schedules` and the docs.

use super::Horizon;
use super::{KindSpec, Warmup, summaries};
use crate::params::{ParamSource, ReadTable, Rule};

/// One parameter as documented.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParamDoc {
    pub key: &'static str,
    /// "required", or the default value.
    pub default: String,
    /// What values are accepted.
    pub accepts: String,
    pub doc: &'static str,
}

/// One schedule kind as documented.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KindDoc {
    pub kind: &'static str,
    pub summary: &'static str,
    pub params: Vec<ParamDoc>,
}

/// Every kind, in the order of [`super::KINDS`].
pub fn kinds() -> Vec<KindDoc> {
    summaries()
        .into_iter()
        .map(|(kind, summary)| {
            let mut d = Describer::default();
            // A describer never fails, and `kind` comes from the kinds list.
            let _ = KindSpec::read(kind, &mut d);
            KindDoc { kind, summary, params: d.params }
        })
        .collect()
}

/// The warmup keys every kind accepts.
pub fn warmup_params() -> Vec<ParamDoc> {
    let mut d = Describer::default();
    let _ = Warmup::read(&mut d);
    d.params
}

/// The parameters of `kind` (their keys), or `None` for an unknown kind.
pub fn keys_of(kind: &str) -> Option<Vec<&'static str>> {
    let mut d = Describer::default();
    KindSpec::read(kind, &mut d)?.ok()?;
    Some(d.params.iter().map(|p| p.key).collect())
}

/// A [`ParamSource`] that records what is asked for and answers with defaults.
#[derive(Default)]
struct Describer {
    params: Vec<ParamDoc>,
}

/// Never produced: describing cannot fail.
pub enum Never {}

impl Describer {
    fn add(&mut self, key: &'static str, default: String, accepts: impl Into<String>, doc: &'static str) {
        self.params.push(ParamDoc { key, default, accepts: accepts.into(), doc });
    }
}

fn or_required<T: ToString>(default: Option<T>) -> String {
    default.map_or_else(|| "required".to_string(), |d| d.to_string())
}

impl ParamSource for Describer {
    type Error = Never;

    fn number(&mut self, key: &'static str, default: Option<f64>, rule: Rule, doc: &'static str) -> Result<f64, Never> {
        self.add(key, or_required(default), rule.describe(), doc);
        Ok(default.unwrap_or(1.0))
    }

    fn optional_number(
        &mut self,
        key: &'static str,
        rule: Rule,
        default_doc: &'static str,
        doc: &'static str,
    ) -> Result<Option<f64>, Never> {
        self.add(key, format!("({default_doc})"), rule.describe(), doc);
        Ok(Some(1.0))
    }

    fn steps(&mut self, key: &'static str, default: Option<u64>, min: u64, doc: &'static str) -> Result<u64, Never> {
        self.add(key, or_required(default), format!("a whole number >= {min}"), doc);
        Ok(default.unwrap_or(min.max(1)))
    }

    fn optional_steps(
        &mut self,
        key: &'static str,
        min: u64,
        default_doc: &'static str,
        doc: &'static str,
    ) -> Result<Option<u64>, Never> {
        self.add(key, format!("({default_doc})"), format!("a whole number >= {min}"), doc);
        Ok(None)
    }

    fn horizon(
        &mut self,
        key: &'static str,
        default: Option<Horizon>,
        whole: bool,
        doc: &'static str,
    ) -> Result<Horizon, Never> {
        let accepts =
            // The short form of HORIZON_ACCEPTS; the listing explains "run" and "N epochs".
            if whole { "whole steps > 0, \"run\", \"N epochs\"" } else { "steps > 0, \"run\", \"N epochs\"" };
        self.add(key, or_required(default), accepts, doc);
        Ok(default.unwrap_or(Horizon::Run))
    }

    fn optional_flag(&mut self, _key: &'static str) -> Result<Option<bool>, Never> {
        // Not documented: such keys are only read to be refused with a hint.
        Ok(None)
    }

    fn flag(&mut self, key: &'static str, default: bool, doc: &'static str) -> Result<bool, Never> {
        self.add(key, default.to_string(), "true or false", doc);
        Ok(default)
    }

    fn choice(
        &mut self,
        key: &'static str,
        options: &'static [&'static str],
        default: Option<&'static str>,
        doc: &'static str,
    ) -> Result<&'static str, Never> {
        let accepts = options.iter().map(|o| format!("\"{o}\"")).collect::<Vec<_>>().join(", ");
        self.add(key, or_required(default.map(|d| format!("\"{d}\""))), format!("one of {accepts}"), doc);
        Ok(default.unwrap_or(options[0]))
    }

    fn text(&mut self, key: &'static str, doc: &'static str) -> Result<String, Never> {
        self.add(key, "required".into(), "a string", doc);
        Ok("1".into())
    }

    fn optional_text(
        &mut self,
        key: &'static str,
        default_doc: &'static str,
        doc: &'static str,
    ) -> Result<Option<String>, Never> {
        self.add(key, format!("({default_doc})"), "a string", doc);
        Ok(None)
    }

    fn counts(&mut self, key: &'static str, default: &[u64], min: u64, doc: &'static str) -> Result<Vec<u64>, Never> {
        self.add(key, format!("{default:?}"), format!("a list of whole numbers >= {min}"), doc);
        Ok(default.to_vec())
    }

    fn optional_numbers(
        &mut self,
        key: &'static str,
        rule: Rule,
        doc: &'static str,
    ) -> Result<Option<Vec<f64>>, Never> {
        self.add(key, "(not given)".into(), format!("a list, each {}", rule.describe()), doc);
        Ok(None)
    }

    fn numbers(&mut self, key: &'static str, rule: Rule, doc: &'static str) -> Result<Vec<f64>, Never> {
        self.add(key, "required".into(), format!("a list, each {}", rule.describe()), doc);
        Ok(vec![])
    }

    fn pairs(&mut self, key: &'static str, doc: &'static str) -> Result<Vec<(f64, f64)>, Never> {
        self.add(key, "required".into(), "a list of [number, number]", doc);
        Ok(vec![])
    }

    fn kind(&mut self, what: &'static str, kinds: &'static [&'static str]) -> Result<&'static str, Never> {
        self.add("kind", "required".into(), format!("a {what} kind"), "");
        Ok(kinds.first().copied().unwrap_or(""))
    }

    fn tables<T>(
        &mut self,
        key: &'static str,
        item: &'static str,
        doc: &'static str,
        _read: &mut ReadTable<'_, Self, T>,
    ) -> Result<Vec<T>, Never> {
        self.add(key, "required".into(), format!("a list of {item}s"), doc);
        Ok(vec![])
    }

    fn invalid(&mut self, _key: &str, _message: String) -> Never {
        unreachable!("describing checks nothing")
    }

    fn check(&mut self, _ok: bool, _key: &str, _message: impl FnOnce() -> String) -> Result<(), Never> {
        Ok(())
    }
}
