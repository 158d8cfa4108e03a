//! Standard output that a closed pipe does not break: `runner collect DIR | head -1` reads
//! what it wants, and the command still does its work and gives its exit code. A leaf.

use std::io::{self, Write};

/// Writes `text` to stdout; a closed stdout (`runner collect DIR | true`) drops it, and the
/// command goes on to do its work and give its exit code, whoever reads (or does not).
pub fn print(text: &str) -> io::Result<()> {
    match write_out(text) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes `text` to stdout, saying when nobody reads it any more (BrokenPipe).
pub fn write_out(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}
