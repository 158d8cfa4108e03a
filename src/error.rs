//! Error kinds that decide the exit code: bad input (a flag, a data file) is 2, like a bad
//! config ([`crate::config::ConfigError`]); anything else that fails while running is 1.

/// A command or its input used wrongly: a bad flag combination, an unreadable or malformed
/// input file. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Shorthand for an [`InputError`] as an `anyhow::Error`.
pub fn input_error(message: impl Into<String>) -> anyhow::Error {
    InputError(message.into()).into()
}

/// The command stopped because it was interrupted (Ctrl-C, SIGTERM). Exit code 130.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);
