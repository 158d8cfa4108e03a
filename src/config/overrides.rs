//! Overrides from the command line: `--set train.epochs=5` or a bare `train.epochs=5` after
//! the file (as Hydra users type them). Each is written into the file's tree before it is
//! read, so it is checked exactly like the file (unknown key with did-you-mean, type,
//! range), and the resolved config records the result.
//!
//! An override's value has no place in the file. Its text is appended after the file's, past
//! [`OVERRIDES_MARK`], so every span into it still works and [`ConfigError`] names the
//! override (`in --set train.epochs=abc`) instead of a line of the file.

use super::error::{ConfigError, OVERRIDES_MARK};
use super::tree::{self, Entry, Node, Spanned, Table};
use std::ops::Range;
use std::path::Path;

/// One `KEY=VALUE` override as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted key: `train.epochs`, `schedule.alpha`, `sweep.seeds`.
    pub key: String,
    /// The value as typed: TOML (`5`, `0.01`, `[1, 2]`, `"x"`), or a bare word taken as a string.
    pub value: String,
    /// How it was given: `--set train.epochs=5` or `train.epochs=5`.
    pub origin: String,
    /// Byte offsets of the key and of the value in `origin`.
    key_at: usize,
    value_at: usize,
}

impl Override {
    /// Reads `KEY=VALUE`; `flag` is how it was given (`--set`, or empty for a bare argument).
    /// `--sweep KEY=V1,V2,...`: a grid axis over the values, as Hydra's multirun writes it,
    /// read as the override `sweep.KEY=[V1, V2, ...]` (so a file without `[sweep]` becomes a
    /// sweep, and one with it gains an axis). Each value is TOML, a bare word a string;
    /// commas inside brackets or quotes do not split.
    pub fn sweep(arg: &str) -> Result<Override, String> {
        let bad = |why: &str| {
            format!("`--sweep {arg}`: {why}; write KEY=V1,V2,... e.g. --sweep schedule.learning_rate=0.03,0.1,0.3")
        };
        let Some((key, values)) = arg.split_once('=') else { return Err(bad("no '=' between the key and its values")) };
        let (mut items, mut depth, mut quote, mut start) = (Vec::new(), 0i32, None, 0);
        for (i, c) in values.char_indices() {
            match (c, quote) {
                ('"' | '\'', None) => quote = Some(c),
                (q, Some(open)) if q == open => quote = None,
                ('[' | '{', None) => depth += 1,
                (']' | '}', None) => depth -= 1,
                (',', None) if depth == 0 => {
                    items.push(&values[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&values[start..]);
        if items.iter().any(|v| v.trim().is_empty()) {
            return Err(bad("an empty value"));
        }
        let toml_item = |v: &str| {
            let v = v.trim();
            if format!("v = {v}").parse::<toml::Table>().is_ok() {
                v.to_string()
            } else {
                toml::Value::from(v).to_string()
            }
        };
        let array = items.iter().map(|v| toml_item(v)).collect::<Vec<_>>().join(", ");
        Override::parse(&format!("sweep.{}=[{array}]", key.trim()), &format!("--sweep {arg}, read as"))
    }

    pub fn parse(arg: &str, flag: &str) -> Result<Override, String> {
        let origin = if flag.is_empty() { arg.to_string() } else { format!("{flag} {arg}") };
        let Some((raw_key, raw_value)) = arg.split_once('=') else {
            return Err(format!(
                "`{origin}` is not an override: write KEY=VALUE with a dotted key, e.g. train.epochs=5 or schedule.alpha=0.01"
            ));
        };
        if arg.contains(['\n', '\r']) {
            return Err(format!("`{origin}`: write the override on one line"));
        }
        let key = raw_key.trim();
        let valid = !key.is_empty()
            && key
                .split('.')
                .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        if !valid {
            return Err(format!(
                "`{origin}`: \"{key}\" is not a dotted key (names of letters, digits, '_' or '-' joined by '.', e.g. train.epochs)"
            ));
        }
        let arg_at = origin.len() - arg.len();
        let key_at = arg_at + raw_key.find(key).unwrap_or(0);
        let value_at = arg_at + raw_key.len() + 1 + (raw_value.len() - raw_value.trim_start().len());
        Ok(Override { key: key.to_string(), value: raw_value.trim().to_string(), origin, key_at, value_at })
    }
}

/// Writes `overrides` into `table` (the tree of `text`); returns the text every span of the
/// result points into: the file's, then the overrides'.
pub fn apply(path: &Path, text: &str, table: &mut Table, overrides: &[Override]) -> Result<String, ConfigError> {
    if overrides.is_empty() {
        return Ok(text.to_string());
    }
    let mut combined = format!("{text}{OVERRIDES_MARK}");
    let mut starts = Vec::with_capacity(overrides.len());
    for o in overrides {
        starts.push(combined.len());
        combined.push_str(&o.origin);
        combined.push('\n');
    }
    for (o, line_start) in overrides.iter().zip(starts) {
        let key_span = line_start + o.key_at..line_start + o.key_at + o.key.len();
        let value_start = line_start + o.value_at;
        let value = read_value(&o.value, value_start).map_err(|why| {
            ConfigError::at(path, &combined, Some(value_start..value_start + 1), Some(o.key.clone()), why)
        })?;
        let segments: Vec<&str> = o.key.split('.').collect();
        set(table, &segments, value, key_span.clone())
            .map_err(|why| ConfigError::at(path, &combined, Some(key_span), Some(o.key.clone()), why))?;
        // A run's length is one of the two: setting one replaces the other.
        let other = match o.key.as_str() {
            "train.steps" => Some("epochs"),
            "train.epochs" => Some("steps"),
            _ => None,
        };
        if let (Some(other), Some(Entry { value: Spanned { value: Node::Table(train), .. }, .. })) =
            (other, table.entries.iter_mut().find(|e| e.key == "train"))
        {
            train.entries.retain(|e| e.key != other);
        }
    }
    Ok(combined)
}

/// A value as TOML, or a bare word as a string (`schedule.kind=cosine_decay`).
fn read_value(value: &str, at: usize) -> Result<Spanned, String> {
    match tree::parse_value(value, at) {
        Ok(v) => Ok(v),
        Err(message) => {
            let looks_structured = value.starts_with(['"', '\'', '[', '{']) || value.contains('\n');
            if looks_structured {
                Err(format!("is not a TOML value: {message}"))
            } else {
                Ok(Spanned { value: Node::Str(value.to_string()), span: Some(at..at + value.len().max(1)) })
            }
        }
    }
}

/// Sets the dotted key `segments` in `table` to `value`, creating tables on the way.
fn set(table: &mut Table, segments: &[&str], value: Spanned, key_span: Range<usize>) -> Result<(), String> {
    let (first, rest) = segments.split_first().expect("a key has at least one segment");
    let index = table.entries.iter().position(|e| e.key == *first);
    if rest.is_empty() {
        let entry = Entry { key: first.to_string(), key_span: Some(key_span), value };
        match index {
            Some(i) => table.entries[i] = entry,
            None => table.entries.push(entry),
        }
        return Ok(());
    }
    let i = match index {
        Some(i) => i,
        None => {
            table.entries.push(Entry {
                key: first.to_string(),
                key_span: Some(key_span.clone()),
                value: Spanned { value: Node::Table(Table::default()), span: Some(key_span.clone()) },
            });
            table.entries.len() - 1
        }
    };
    match &mut table.entries[i].value.value {
        Node::Table(t) => set(t, rest, value, key_span),
        Node::Array(_) => Err(format!(
            "cannot set a key inside `{first}`, a list of tables; change it in the file (or sweep over it in [sweep])"
        )),
        other => Err(format!("cannot set a key inside `{first}`: it is {}, not a table", other.type_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(file: &str, args: &[&str]) -> Result<(String, Table), ConfigError> {
        let mut table = tree::parse(file).unwrap();
        let overrides: Vec<Override> = args.iter().map(|a| Override::parse(a, "--set").unwrap()).collect();
        let text = apply(Path::new("c.toml"), file, &mut table, &overrides)?;
        Ok((text, table))
    }

    fn get<'a>(t: &'a Table, path: &[&str]) -> &'a Node {
        let e = t.get(path[0]).unwrap();
        if path.len() == 1 {
            return &e.value.value;
        }
        let Node::Table(inner) = &e.value.value else { panic!("not a table") };
        get(inner, &path[1..])
    }

    #[test]
    fn sweep_axes_split_at_top_level_commas_and_quote_bare_words() {
        let o = Override::sweep("model.hidden=[64, 32],[128],x").unwrap();
        assert_eq!((o.key.as_str(), o.value.as_str()), ("sweep.model.hidden", "[[64, 32], [128], \"x\"]"));
        let o = Override::sweep("run= \"a,b\" ,c").unwrap();
        assert_eq!(o.value, "[\"a,b\", \"c\"]");
        assert!(Override::sweep("train.epochs=1,,2").unwrap_err().contains("an empty value"));
        assert!(Override::sweep("train.epochs").unwrap_err().contains("no '='"));
    }

    #[test]
    fn sets_replaces_and_creates_keys() {
        let file = "[schedule]\nkind = \"cosine_decay\"\nalpha = 0.0\n";
        let (_, t) =
            applied(file, &["schedule.alpha=0.01", "train.epochs=5", "schedule.kind=polynomial_decay", "name=\"x\""])
                .unwrap();
        assert_eq!(get(&t, &["schedule", "alpha"]), &Node::Float(0.01));
        assert_eq!(get(&t, &["train", "epochs"]), &Node::Int(5));
        assert_eq!(get(&t, &["schedule", "kind"]), &Node::Str("polynomial_decay".into()));
        assert_eq!(get(&t, &["name"]), &Node::Str("x".into()));
        let (_, t) = applied(file, &["sweep.seeds=[1, 2]"]).unwrap();
        let Node::Array(items) = get(&t, &["sweep", "seeds"]) else { panic!() };
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn spans_point_at_the_override() {
        let file = "[schedule]\nkind = \"cosine_decay\"\n";
        let (text, t) = applied(file, &["train.epochs=abc"]).unwrap();
        let Node::Table(train) = &t.get("train").unwrap().value.value else { panic!() };
        let e = train.get("epochs").unwrap();
        assert_eq!(&text[e.value.span.clone().unwrap()], "abc");
        assert_eq!(&text[e.key_span.clone().unwrap()], "train.epochs");
    }

    #[test]
    fn refuses_what_is_not_an_override() {
        assert!(Override::parse("train.epochs", "--set").unwrap_err().contains("write KEY=VALUE"));
        assert!(Override::parse("train..epochs=1", "").unwrap_err().contains("is not a dotted key"));
        assert!(Override::parse("=1", "").is_err());
        let e = applied("name = \"x\"\n[schedule]\nkind = \"constant\"\n", &["name.x=1"]).unwrap_err();
        assert!(e.message.contains("cannot set a key inside `name`: it is a string, not a table"), "{e}");
        let e = applied("[schedule]\nkind = \"constant\"\n", &["train.epochs=[1,"]).unwrap_err();
        assert!(e.message.starts_with("is not a TOML value"), "{e}");
        assert!(e.overridden);
        assert_eq!(e.source_line.as_deref(), Some("--set train.epochs=[1,"));
    }
}
