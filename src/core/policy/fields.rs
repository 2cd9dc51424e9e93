//! Required change fields: a rule's `fields` (a ticket, a rollback plan, …) that a
//! request must carry before it opens, each optionally with a `pattern`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::Rule;

/// At most this many fields per rule, and per request.
pub const MAX_FIELDS: usize = 32;
/// A field's name is at most this long.
pub const MAX_NAME_BYTES: usize = 64;
/// A field's value is at most this long.
pub const MAX_VALUE_BYTES: usize = 2048;
/// A `pattern` is at most this long.
const MAX_PATTERN_BYTES: usize = 1024;
/// The compiled size a pattern may take (the regex crate's own limit is 10 MiB).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// One field a rule requires: `{}` (any non-blank value) or `{ pattern: REGEX }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// A regular expression (the `regex` crate's syntax) the value must match
    /// somewhere: anchor it with `^` and `$` to match the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// Whether `name` is a field name: `[a-z][a-z0-9_]*`, at most [`MAX_NAME_BYTES`].
pub fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    name.len() <= MAX_NAME_BYTES
        && b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Why a field's name is refused, for a message naming it.
pub fn name_message(name: &str) -> Option<String> {
    (!valid_name(name)).then(|| {
        format!(
            "`{}` is not a field name: lowercase letters, digits and `_`, starting with a letter, at most {MAX_NAME_BYTES} bytes",
            name.escape_debug()
        )
    })
}

/// Why a field's value is refused: too long, or a control character other than newline and tab.
pub fn value_message(value: &str) -> Option<String> {
    if value.len() > MAX_VALUE_BYTES {
        return Some(format!("at most {MAX_VALUE_BYTES} bytes"));
    }
    value
        .chars()
        .enumerate()
        .find(|&(_, c)| c.is_control() && !matches!(c, '\n' | '\t'))
        .map(|(i, c)| {
            format!(
                "contains the control character U+{:04X} at character {}; only newlines and tabs are allowed",
                c as u32,
                i + 1
            )
        })
}

/// Compiles a pattern, with its size bounded.
pub fn compile(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!("a pattern is at most {MAX_PATTERN_BYTES} bytes"));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            // The crate's message spans lines (the pattern, a caret); keep it on one.
            let msg = e.to_string();
            let last = msg.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            format!(
                "`{pattern}` is not a regular expression ({})",
                last.trim_start_matches("error: ")
            )
        })
}

/// Why a request's fields do not satisfy its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldRefusal {
    /// Missing, or only blanks.
    #[error("field `{field}` is required by rule `{rule}`{}", pattern.as_ref().map(|p| format!(" (pattern {p})")).unwrap_or_default())]
    Missing {
        field: String,
        rule: String,
        pattern: Option<String>,
    },
    /// Given, but not matching the rule's pattern.
    #[error("field `{field}` is \"{}\", which does not match the pattern {pattern} of rule `{rule}`", value.escape_debug())]
    NoMatch {
        field: String,
        rule: String,
        pattern: String,
        value: String,
    },
}

impl Rule {
    /// Checks a request's fields against the rule's: each required one present, not
    /// blank and matching its pattern. Fields the rule does not name are not checked here.
    pub fn check_fields(&self, given: &BTreeMap<String, String>) -> Result<(), FieldRefusal> {
        for (name, spec) in &self.fields {
            let value = given.get(name).map(String::as_str).unwrap_or("");
            if value.trim().is_empty() {
                return Err(FieldRefusal::Missing {
                    field: name.clone(),
                    rule: self.name.clone(),
                    pattern: spec.pattern.clone(),
                });
            }
            if let Some(p) = &spec.pattern {
                // Patterns were compiled when the policy loaded; one that no longer
                // compiles matches nothing.
                let ok = compile(p).map(|re| re.is_match(value)).unwrap_or(false);
                if !ok {
                    return Err(FieldRefusal::NoMatch {
                        field: name.clone(),
                        rule: self.name.clone(),
                        pattern: p.clone(),
                        value: value.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The rule's required fields in words, for `gate policy explain`:
    /// "ticket (pattern ^CHG-[0-9]+$), rollback".
    pub fn fields_described(&self) -> String {
        self.fields
            .iter()
            .map(|(n, s)| match &s.pattern {
                Some(p) => format!("{n} (pattern {p})"),
                None => n.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}
