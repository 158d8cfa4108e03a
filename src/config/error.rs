//! Config errors that point at the place in the file.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where the command-line overrides start in a config's text (see `overrides.rs`): a span
/// past it is in an override, one line each. A NUL cannot be in a TOML file, so the mark
/// never occurs in one.
pub const OVERRIDES_MARK: &str = "\n\u{0}overrides\n";

/// A config file refused: where, which key, what was wrong and what is accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file (u32 keeps the
    /// error small; a config file has fewer than 4 billion lines).
    pub position: Option<(u32, u32)>,
    /// The offending line of the file, for the caret display.
    pub source_line: Option<String>,
    /// Dotted key path, e.g. `schedule.decay_steps`.
    pub key: Option<String>,
    pub message: String,
    /// Whether the problem is in a command-line override rather than the file:
    /// `source_line` is then the override as given (`--set train.epochs=abc`) and
    /// `position` points into it.
    pub overridden: bool,
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error at byte range `span` of `source` (the text of `file`).
    pub fn at(file: &Path, source: &str, span: Option<Range<usize>>, key: Option<String>, message: String) -> Self {
        if let (Some(mark), Some(span)) = (source.find(OVERRIDES_MARK), &span) {
            let start = mark + OVERRIDES_MARK.len();
            if span.start >= start {
                let mut e =
                    ConfigError::at(file, &source[start..], Some(span.start - start..span.end - start), key, message);
                e.overridden = true;
                return e;
            }
        }
        let (position, source_line) = match span {
            Some(span) => {
                let start = span.start.min(source.len());
                let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
                let line_end = source[start..].find('\n').map_or(source.len(), |i| start + i);
                let line = source[..start].matches('\n').count() + 1;
                let col = source[line_start..start].chars().count() + 1;
                (Some((line as u32, col as u32)), Some(source[line_start..line_end].trim_end_matches('\r').to_string()))
            }
            None => (None, None),
        };
        ConfigError { file: file.to_path_buf(), position, source_line, key, message, overridden: false }
    }

    /// An error about the file as a whole (unreadable, empty).
    pub fn whole_file(file: &Path, message: String) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            position: None,
            source_line: None,
            key: None,
            message,
            overridden: false,
        }
    }
}

/// The widest source line shown under an error, in characters.
const SHOWN_WIDTH: usize = 100;

/// At most [`SHOWN_WIDTH`] characters of `line` around column `col` (1-based), with `...`
/// where it is cut, and the column within what is shown.
fn window(line: &str, col: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= SHOWN_WIDTH {
        return (line.to_string(), col);
    }
    let start = col.saturating_sub(SHOWN_WIDTH / 2).min(chars.len().saturating_sub(SHOWN_WIDTH));
    let end = (start + SHOWN_WIDTH).min(chars.len());
    let mut shown: String = chars[start..end].iter().collect();
    let mut col = col - start;
    if start > 0 {
        shown.insert_str(0, "...");
        col += 3;
    }
    if end < chars.len() {
        shown.push_str("...");
    }
    (shown, col)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (true, Some(arg)) = (self.overridden, &self.source_line) {
            // The problem is on the command line, not in the file.
            write!(f, "{}: in the override `{arg}`: ", self.file.display())?;
            if let Some(key) = &self.key {
                write!(f, "`{key}` ")?;
            }
            write!(f, "{}", self.message)?;
            if let Some((_, col)) = self.position {
                let col = col as usize;
                write!(f, "\n   |\n   | {arg}\n   | {:>col$}", "^")?;
            }
            return Ok(());
        }
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}` ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some((line, col)), Some(text)) = (self.position, &self.source_line) {
            let (text, col) = window(text, col as usize);
            let gutter = line.to_string().len();
            write!(f, "\n {:gutter$} |\n {line} | {text}\n {:gutter$} | {:>col$}", "", "", "^")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_file_line_column_and_caret() {
        let src = "name = \"x\"\n[schedule]\ndecay_steps = 0\n";
        let start = src.find('0').unwrap();
        let e = ConfigError::at(
            Path::new("c.toml"),
            src,
            Some(start..start + 1),
            Some("schedule.decay_steps".into()),
            "must be > 0".into(),
        );
        assert_eq!(e.position, Some((3, 15)));
        assert_eq!(
            e.to_string(),
            "c.toml:3:15: `schedule.decay_steps` must be > 0\n   |\n 3 | decay_steps = 0\n   |               ^"
        );
    }
}
