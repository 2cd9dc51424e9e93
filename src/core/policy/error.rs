//! Errors that say where in the policy file they are.

/// A policy that cannot be used, with where it is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The policy text being read, to point errors at lines in it.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at a 1-based `(line, column)`.
    pub fn err(&self, (line, column): (usize, usize), message: String) -> PolicyError {
        PolicyError {
            file: self.file.to_string(),
            line,
            column,
            message,
        }
    }

    /// Where the first `needle` is at or after line `from`.
    pub fn at(&self, needle: &str, from: usize) -> (usize, usize) {
        locate(self.text, needle, from)
    }
}

/// 1-based line and column of the first `needle` at or after line `from` (1-based; 0 = start).
pub(super) fn locate(text: &str, needle: &str, from: usize) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        if i + 1 < from {
            continue;
        }
        if let Some(c) = line.find(needle) {
            return (i + 1, c + 1);
        }
    }
    (from.max(1), 1)
}
