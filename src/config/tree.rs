//! A TOML document as a tree of values that remember where they came from, so every later
//! check can point at the file, line and column.

use std::ops::Range;

/// A value and its byte range in the source (`None` for values made by the program).
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub value: Node,
    pub span: Option<Range<usize>>,
}

/// A TOML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Spanned>),
    Table(Table),
}

impl Node {
    /// The TOML type name, for "expected a number, found a string".
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Str(_) => "a string",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Bool(_) => "a boolean",
            Node::Datetime(_) => "a date-time",
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

/// A table's entries in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub entries: Vec<Entry>,
}

/// One `key = value` of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Option<Range<usize>>,
    pub value: Spanned,
}

impl Table {
    /// The entry for `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// Parses TOML text; on a syntax error returns the message and its byte range.
pub fn parse(source: &str) -> Result<Table, (String, Option<Range<usize>>)> {
    let doc = toml_edit::Document::parse(source).map_err(|e| (e.message().trim().to_string(), e.span()))?;
    Ok(from_table(doc.as_table()))
}

/// Parses one TOML value (`5`, `[1, 2]`, `"x"`, `{ a = 1 }`) whose text starts at byte
/// `at` of a larger source; its spans point into that source.
pub fn parse_value(value: &str, at: usize) -> Result<Spanned, String> {
    const PREFIX: &str = "v = ";
    let doc = toml_edit::Document::parse(format!("{PREFIX}{value}")).map_err(|e| e.message().trim().to_string())?;
    let Some(toml_edit::Item::Value(v)) = doc.as_table().get("v") else {
        return Err("expected a value".into());
    };
    if doc.as_table().len() != 1 {
        return Err("expected one value".into());
    }
    let mut spanned = from_value(v);
    shift(&mut spanned, at as isize - PREFIX.len() as isize);
    Ok(spanned)
}

/// Moves every span of `s` by `by` bytes.
fn shift(s: &mut Spanned, by: isize) {
    let mv = |r: &mut Option<Range<usize>>| {
        if let Some(r) = r {
            *r = (r.start as isize + by).max(0) as usize..(r.end as isize + by).max(0) as usize;
        }
    };
    mv(&mut s.span);
    match &mut s.value {
        Node::Array(items) => items.iter_mut().for_each(|i| shift(i, by)),
        Node::Table(t) => {
            for e in &mut t.entries {
                mv(&mut e.key_span);
                shift(&mut e.value, by);
            }
        }
        _ => {}
    }
}

fn from_table(t: &toml_edit::Table) -> Table {
    let entries = t
        .iter()
        .map(|(key, item)| Entry {
            key: key.to_string(),
            key_span: t.key(key).and_then(|k| k.span()),
            value: from_item(item, t.key(key).and_then(|k| k.span())),
        })
        .collect();
    Table { entries }
}

fn from_item(item: &toml_edit::Item, key_span: Option<Range<usize>>) -> Spanned {
    match item {
        toml_edit::Item::Value(v) => from_value(v),
        toml_edit::Item::Table(t) => Spanned { value: Node::Table(from_table(t)), span: t.span().or(key_span) },
        toml_edit::Item::ArrayOfTables(a) => Spanned {
            value: Node::Array(
                a.iter()
                    .map(|t| Spanned { value: Node::Table(from_table(t)), span: t.span().or(key_span.clone()) })
                    .collect(),
            ),
            span: a.span().or(key_span),
        },
        toml_edit::Item::None => Spanned { value: Node::Table(Table::default()), span: key_span },
    }
}

fn from_value(v: &toml_edit::Value) -> Spanned {
    use toml_edit::Value as V;
    let value = match v {
        V::String(s) => Node::Str(s.value().clone()),
        V::Integer(i) => Node::Int(*i.value()),
        V::Float(f) => Node::Float(*f.value()),
        V::Boolean(b) => Node::Bool(*b.value()),
        V::Datetime(d) => Node::Datetime(d.value().to_string()),
        V::Array(a) => Node::Array(a.iter().map(from_value).collect()),
        V::InlineTable(t) => Node::Table(Table {
            entries: t
                .iter()
                .map(|(key, value)| Entry {
                    key: key.to_string(),
                    key_span: t.key(key).and_then(|k| k.span()),
                    value: from_value(value),
                })
                .collect(),
        }),
    };
    Spanned { value, span: v.span() }
}
