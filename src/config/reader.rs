//! Reads typed values out of a [`Table`], refusing wrong types, out-of-range values and
//! unknown keys with errors that name the file, line, column and key.

use super::error::ConfigError;
use super::tree::{Entry, Node, Spanned, Table};
use crate::params::{HORIZON_ACCEPTS, Horizon, ParamSource, ReadTable, Rule};
use crate::suggest::did_you_mean;
use std::ops::Range;
use std::path::Path;

/// Where a value sits in the file, when it came from the file.
pub type Span = Option<Range<usize>>;

/// The text of a config file and its name.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

/// A table being read: remembers which keys were asked for, so that the rest are unknown.
pub struct TableReader<'a> {
    table: &'a Table,
    span: Option<Range<usize>>,
    /// Dotted path of the table (`schedule`, `schedule.phases[1]`); empty for the top level.
    path: String,
    src: Source<'a>,
    asked: Vec<&'static str>,
}

impl<'a> TableReader<'a> {
    pub fn new(table: &'a Table, span: Option<Range<usize>>, path: impl Into<String>, src: Source<'a>) -> Self {
        TableReader { table, span, path: path.into(), src, asked: Vec::new() }
    }

    /// The dotted path of `key` in this table.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    /// An error at `span` about `key`.
    pub fn error_at(&self, span: Option<Range<usize>>, key: &str, message: String) -> ConfigError {
        ConfigError::at(self.src.file, self.src.text, span.or(self.span.clone()), Some(self.key_path(key)), message)
    }

    /// Marks `key` as known and returns its entry, if present.
    pub fn entry(&mut self, key: &'static str) -> Option<&'a Entry> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        self.table.get(key)
    }

    fn wrong_type(&self, key: &str, v: &Spanned, expected: &str) -> ConfigError {
        let found = match &v.value {
            Node::Str(s) => format!("the string \"{s}\""),
            Node::Int(i) => format!("{i}"),
            Node::Float(f) => format!("{f}"),
            Node::Bool(b) => format!("{b}"),
            other => other.type_name().to_string(),
        };
        self.error_at(v.span.clone(), key, format!("must be {expected}, found {found}"))
    }

    fn missing(&self, key: &str, expected: &str, doc: &str) -> ConfigError {
        let table = if self.path.is_empty() { "the file".to_string() } else { format!("[{}]", self.path) };
        // A missing key is most often a misspelt one: point at the likely typo.
        let typo = self.table.entries.iter().find(|e| e.key != key && did_you_mean(&e.key, [key]).is_some());
        if let Some(t) = typo {
            let message =
                format!("unknown key in {table}; did you mean `{key}`? ({key} is required: {expected}, {doc})");
            return self.error_at(t.key_span.clone(), &t.key, message);
        }
        let mut e = self.error_at(None, key, format!("is required in {table}: {expected} ({doc})"));
        // Point at the table header rather than the first line of the file.
        if self.span.is_none() {
            e.position = None;
            e.source_line = None;
        }
        e
    }

    fn as_number(&self, key: &str, v: &Spanned, rule: Rule) -> Result<f64, ConfigError> {
        let x = match v.value {
            Node::Int(i) => i as f64,
            Node::Float(f) => f,
            _ => return Err(self.wrong_type(key, v, rule.describe())),
        };
        if x.is_subnormal() {
            return Err(self.error_at(v.span.clone(), key, format!("is {x:e}, {}", crate::params::SUBNORMAL)));
        }
        if rule.accepts(x) { Ok(x) } else { Err(self.wrong_type(key, v, rule.describe())) }
    }

    fn as_steps(&self, key: &str, v: &Spanned, min: u64) -> Result<u64, ConfigError> {
        let expected = format!("a whole number of steps >= {min}");
        let n = match v.value {
            Node::Int(i) if i >= 0 => i as u64,
            // 1e3 is a fine way to write a thousand steps.
            Node::Float(f) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => f as u64,
            _ => return Err(self.wrong_type(key, v, &expected)),
        };
        if n >= min { Ok(n) } else { Err(self.wrong_type(key, v, &expected)) }
    }

    /// A string value (required when `required`).
    pub fn string(
        &mut self,
        key: &'static str,
        expected: &str,
        doc: &str,
    ) -> Result<Option<(String, Span)>, ConfigError> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry { value: v @ Spanned { value: Node::Str(s), .. }, .. }) => Ok(Some((s.clone(), v.span.clone()))),
            Some(e) => Err(self.wrong_type(key, &e.value, &format!("{expected} ({doc})"))),
        }
    }

    /// A sub-table (`[schedule]` or an inline table); `None` when absent.
    pub fn table(&mut self, key: &'static str) -> Result<Option<TableReader<'a>>, ConfigError> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry { value: Spanned { value: Node::Table(t), span }, .. }) => {
                Ok(Some(TableReader::new(t, span.clone(), self.key_path(key), self.src)))
            }
            Some(e) => Err(self.wrong_type(key, &e.value, "a table")),
        }
    }

    /// A required, non-empty array's items.
    fn non_empty_array(&mut self, key: &'static str, expected: &str, doc: &str) -> Result<&'a [Spanned], ConfigError> {
        let Some(e) = self.entry(key) else { return Err(self.missing(key, expected, doc)) };
        let Node::Array(items) = &e.value.value else { return Err(self.wrong_type(key, &e.value, expected)) };
        if items.is_empty() {
            return Err(self.error_at(e.value.span.clone(), key, format!("must be {expected}, found an empty list")));
        }
        Ok(items)
    }

    /// Refuses keys nobody asked for, suggesting the closest known key.
    pub fn finish(self) -> Result<(), ConfigError> {
        let Some(unknown) = self.table.entries.iter().find(|e| !self.asked.contains(&e.key.as_str())) else {
            return Ok(());
        };
        let table = if self.path.is_empty() { "at the top level".to_string() } else { format!("in [{}]", self.path) };
        let mut message = format!("unknown key {table}");
        if let Some(s) = did_you_mean(&unknown.key, self.asked.iter().copied()) {
            message.push_str(&format!("; did you mean `{s}`?"));
        }
        message.push_str(&format!(" Accepted: {}", self.asked.join(", ")));
        Err(self.error_at(unknown.key_span.clone(), &unknown.key, message))
    }
}

impl ParamSource for TableReader<'_> {
    type Error = ConfigError;

    fn number(
        &mut self,
        key: &'static str,
        default: Option<f64>,
        rule: Rule,
        doc: &'static str,
    ) -> Result<f64, ConfigError> {
        match (self.entry(key), default) {
            (Some(e), _) => self.as_number(key, &e.value, rule),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(self.missing(key, rule.describe(), doc)),
        }
    }

    fn optional_number(
        &mut self,
        key: &'static str,
        rule: Rule,
        _: &'static str,
        _: &'static str,
    ) -> Result<Option<f64>, ConfigError> {
        self.entry(key).map(|e| self.as_number(key, &e.value, rule)).transpose()
    }

    fn steps(
        &mut self,
        key: &'static str,
        default: Option<u64>,
        min: u64,
        doc: &'static str,
    ) -> Result<u64, ConfigError> {
        match (self.entry(key), default) {
            (Some(e), _) => self.as_steps(key, &e.value, min),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(self.missing(key, &format!("a whole number of steps >= {min}"), doc)),
        }
    }

    fn optional_steps(
        &mut self,
        key: &'static str,
        min: u64,
        _: &'static str,
        _: &'static str,
    ) -> Result<Option<u64>, ConfigError> {
        self.entry(key).map(|e| self.as_steps(key, &e.value, min)).transpose()
    }

    fn horizon(
        &mut self,
        key: &'static str,
        default: Option<Horizon>,
        whole: bool,
        doc: &'static str,
    ) -> Result<Horizon, ConfigError> {
        let expected =
            if whole { HORIZON_ACCEPTS.replace("a number", "a whole number") } else { HORIZON_ACCEPTS.into() };
        let Some(e) = self.entry(key) else {
            return default.ok_or_else(|| self.missing(key, &expected, doc));
        };
        let v = &e.value;
        if let Node::Float(f) = v.value
            && f.is_subnormal()
        {
            return Err(self.error_at(v.span.clone(), key, format!("is {f:e}, {}", crate::params::SUBNORMAL)));
        }
        let h = match &v.value {
            Node::Str(word) => Horizon::parse_word(word),
            Node::Int(i) if *i > 0 => Some(Horizon::Steps(*i as f64)),
            Node::Float(f) if f.is_finite() && *f > 0.0 && (!whole || (f.fract() == 0.0 && *f < 9.0e15)) => {
                Some(Horizon::Steps(*f))
            }
            _ => None,
        };
        h.ok_or_else(|| self.wrong_type(key, v, &expected))
    }

    fn optional_flag(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry { value: Spanned { value: Node::Bool(b), .. }, .. }) => Ok(Some(*b)),
            Some(e) => Err(self.wrong_type(key, &e.value, "true or false")),
        }
    }

    fn flag(&mut self, key: &'static str, default: bool, _: &'static str) -> Result<bool, ConfigError> {
        match self.entry(key) {
            None => Ok(default),
            Some(Entry { value: Spanned { value: Node::Bool(b), .. }, .. }) => Ok(*b),
            Some(e) => Err(self.wrong_type(key, &e.value, "true or false")),
        }
    }

    fn choice(
        &mut self,
        key: &'static str,
        options: &'static [&'static str],
        default: Option<&'static str>,
        doc: &'static str,
    ) -> Result<&'static str, ConfigError> {
        let accepted = options.iter().map(|o| format!("\"{o}\"")).collect::<Vec<_>>().join(", ");
        let expected = format!("one of {accepted}");
        let Some((word, span)) = self.string(key, &expected, doc)? else {
            return default.ok_or_else(|| self.missing(key, &expected, doc));
        };
        if let Some(o) = options.iter().find(|o| **o == word) {
            return Ok(o);
        }
        let hint =
            did_you_mean(&word, options.iter().copied()).map_or(String::new(), |s| format!(" (did you mean \"{s}\"?)"));
        Err(self.error_at(span, key, format!("must be {expected}, found \"{word}\"{hint}")))
    }

    fn text(&mut self, key: &'static str, doc: &'static str) -> Result<String, ConfigError> {
        match self.string(key, "a string", doc)? {
            Some((s, _)) => Ok(s),
            None => Err(self.missing(key, "a string", doc)),
        }
    }

    fn optional_text(
        &mut self,
        key: &'static str,
        _: &'static str,
        doc: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        Ok(self.string(key, "a string", doc)?.map(|(s, _)| s))
    }

    fn counts(
        &mut self,
        key: &'static str,
        default: &[u64],
        min: u64,
        doc: &'static str,
    ) -> Result<Vec<u64>, ConfigError> {
        let expected = format!("a list of whole numbers >= {min} ({doc})");
        let Some(e) = self.entry(key) else { return Ok(default.to_vec()) };
        let Node::Array(items) = &e.value.value else { return Err(self.wrong_type(key, &e.value, &expected)) };
        items.iter().map(|v| self.as_steps(key, v, min)).collect()
    }

    fn optional_numbers(
        &mut self,
        key: &'static str,
        rule: Rule,
        doc: &'static str,
    ) -> Result<Option<Vec<f64>>, ConfigError> {
        if self.entry(key).is_none() {
            return Ok(None);
        }
        self.numbers(key, rule, doc).map(Some)
    }

    fn numbers(&mut self, key: &'static str, rule: Rule, doc: &'static str) -> Result<Vec<f64>, ConfigError> {
        let expected = format!("a non-empty list, each {}", rule.describe());
        let items = self.non_empty_array(key, &expected, doc)?;
        items.iter().map(|v| self.as_number(key, v, rule)).collect()
    }

    fn pairs(&mut self, key: &'static str, doc: &'static str) -> Result<Vec<(f64, f64)>, ConfigError> {
        let expected = "a non-empty list of [step, lr] pairs";
        let items = self.non_empty_array(key, expected, doc)?;
        items
            .iter()
            .map(|item| match &item.value {
                Node::Array(xy) if xy.len() == 2 => {
                    Ok((self.as_number(key, &xy[0], Rule::Any)?, self.as_number(key, &xy[1], Rule::Any)?))
                }
                _ => Err(self.wrong_type(key, item, "a [step, lr] pair")),
            })
            .collect()
    }

    fn kind(&mut self, what: &'static str, kinds: &'static [&'static str]) -> Result<&'static str, ConfigError> {
        let accepted = || kinds.join(", ");
        let Some((kind, span)) = self.string("kind", &format!("a {what} kind"), &format!("see `runner {what}s`"))?
        else {
            return Err(self.missing("kind", &format!("the {what} kind"), &format!("one of {}", accepted())));
        };
        if let Some(k) = kinds.iter().find(|k| **k == kind) {
            return Ok(k);
        }
        let hint =
            did_you_mean(&kind, kinds.iter().copied()).map_or(String::new(), |s| format!("; did you mean \"{s}\"?"));
        Err(self.error_at(span, "kind", format!("unknown {what} kind \"{kind}\"{hint} Accepted: {}", accepted())))
    }

    fn tables<T>(
        &mut self,
        key: &'static str,
        item: &'static str,
        doc: &'static str,
        read: &mut ReadTable<'_, Self, T>,
    ) -> Result<Vec<T>, ConfigError> {
        let expected = format!("a non-empty list of {item}s ([[{}]])", self.key_path(key));
        let items = self.non_empty_array(key, &expected, doc)?;
        let n = items.len();
        let item_expected = format!("a {item}");
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let Node::Table(t) = &item.value else { return Err(self.wrong_type(key, item, &item_expected)) };
                let mut r = TableReader::new(t, item.span.clone(), format!("{}[{i}]", self.key_path(key)), self.src);
                let value = read(&mut r, i, n)?;
                r.finish()?;
                Ok(value)
            })
            .collect()
    }

    fn here(&self) -> Option<String> {
        let e = ConfigError::at(self.src.file, self.src.text, self.span.clone(), None, String::new());
        let (line, col) = e.position?;
        Some(if e.overridden {
            format!("the override `{}`", e.source_line.unwrap_or_default())
        } else {
            format!("{}:{line}:{col}", self.src.file.display())
        })
    }

    fn invalid(&mut self, key: &str, message: String) -> ConfigError {
        let span = self.table.get(key).and_then(|e| e.value.span.clone());
        self.error_at(span, key, message)
    }
}
