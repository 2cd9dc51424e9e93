//! Policy tests (`gate policy test`): fixture files that say what the policy must decide
//! for a request and a list of votes, run offline through the same policy evaluation and
//! decision machine the server uses. Pure: the text is handed in, the clock is the
//! fixture's.
//!
//! - this module: the fixture format, parsed strictly with errors at `line:column`;
//! - `run`: one test through the policy and the machine, and what it expected, field by
//!   field.

mod run;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::core::api::Context;
use crate::core::decide::checks::Answer;

pub use run::{Diff, Got, diff, run};

/// The clock of a test that names no `at`: 2026-01-01T00:00:00Z.
pub const EPOCH_MS: i64 = 1_767_225_600_000;

/// One fixture file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// The policy file, relative to the fixture file.
    #[serde(default)]
    pub policy: Option<String>,
    pub tests: Vec<TestCase>,
}

/// One test: a request opened at `at` with `context`, the votes cast on it, and what
/// the server must make of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// When the request opens (RFC 3339); [`EPOCH_MS`] when absent.
    #[serde(default, deserialize_with = "time")]
    pub at: Option<i64>,
    /// The request's context, as in the API (`environment`, `repository`, `ref`, `actor`, …).
    pub context: Context,
    /// More identities that are the requester, as the server finds them from the users of
    /// gate.yaml or the forge's commit authors (the context's actor, triggering_actor and
    /// commit_author are requesters already).
    #[serde(default)]
    pub requesters: Vec<String>,
    /// Members of the policy's forge, SCIM and IdP groups, which the file does not list.
    #[serde(default)]
    pub members: BTreeMap<String, Vec<String>>,
    /// The request's change fields (`gate request --field NAME=VALUE`), checked against
    /// the rule's `fields` as the server checks them at open.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// The answers of the rule's evidence checks, as if the server had run them when the
    /// request opened (before any vote). Required when the rule has checks.
    #[serde(default)]
    pub checks: Option<CannedChecks>,
    /// The votes, in order; each at its `at` (default the test's `at`).
    #[serde(default)]
    pub votes: Vec<VoteStep>,
    /// When the outcome is read (RFC 3339); default the last vote's time, or `at`.
    #[serde(default, deserialize_with = "time")]
    pub now: Option<i64>,
    pub expect: Expect,
    /// The 1-based line of the test's `name`, filled in by [`parse`].
    #[serde(skip)]
    pub line: usize,
}

/// One vote as cast.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteStep {
    pub who: String,
    pub approve: bool,
    #[serde(default, deserialize_with = "time")]
    pub at: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The canned answers of a rule's checks, one per check in list order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedChecks {
    #[serde(default)]
    pub auto_approve_if: Vec<Canned>,
    #[serde(default)]
    pub auto_deny_if: Vec<Canned>,
}

/// One check's answer: `approve` alone, or `{answer: deny, reason: "…"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canned {
    pub answer: Answer,
    pub reason: Option<String>,
}

impl<'de> Deserialize<'de> for Canned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            answer: Answer,
            #[serde(default)]
            reason: Option<String>,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Canned;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a check's answer (approve, deny, abstain or error), or {answer: …, reason: …}")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Canned, E> {
                Answer::parse(s)
                    .map(|answer| Canned { answer, reason: None })
                    .ok_or_else(|| {
                        E::custom(format!(
                            "`{s}` is not a check's answer: approve, deny, abstain or error"
                        ))
                    })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Canned, A::Error> {
                let f = Full::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Canned {
                    answer: f.answer,
                    reason: f.reason,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// What the test expects. `outcome` is required; `rule`, `still_needed` and `reason`
/// are compared when given; `refused` always (absent means no vote may be refused).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub rule: Option<String>,
    pub outcome: Outcome,
    #[serde(default)]
    pub still_needed: Option<String>,
    /// The decision's reason: a deny's, the checks' (`auto_deny_if[0] (…) denied: …`), or
    /// why the request was refused at open (a field).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub refused: Vec<Refused>,
}

/// Where the request ends up at the test's `now`, or why the server would refuse to
/// open it: no rule matches, or a required field is missing or does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pending,
    Approved,
    Denied,
    Expired,
    NoMatchingRule,
    MissingField,
    InvalidField,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Approved => "approved",
            Outcome::Denied => "denied",
            Outcome::Expired => "expired",
            Outcome::NoMatchingRule => "no_matching_rule",
            Outcome::MissingField => "missing_field",
            Outcome::InvalidField => "invalid_field",
        }
    }
}

/// A vote the server refuses, with the API's error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    pub who: String,
    pub code: RefusalCode,
}

/// The error code the API answers a refused vote with (docs/api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    RequesterCannotVote,
    NotEligible,
    AlreadyVoted,
    ReasonRequired,
    NotPending,
    Expired,
    StageNotOpen,
}

impl RefusalCode {
    pub const ALL: [RefusalCode; 7] = [
        RefusalCode::RequesterCannotVote,
        RefusalCode::NotEligible,
        RefusalCode::AlreadyVoted,
        RefusalCode::ReasonRequired,
        RefusalCode::NotPending,
        RefusalCode::Expired,
        RefusalCode::StageNotOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::RequesterCannotVote => "requester_cannot_vote",
            RefusalCode::NotEligible => "not_eligible",
            RefusalCode::AlreadyVoted => "already_voted",
            RefusalCode::ReasonRequired => "reason_required",
            RefusalCode::NotPending => "not_pending",
            RefusalCode::Expired => "expired",
            RefusalCode::StageNotOpen => "stage_not_open",
        }
    }
}

/// A fixture that cannot be run, and where (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct FixtureError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// An RFC 3339 time as Unix ms, refused inside the parser's visit so the error is placed
/// at the value itself.
fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 time like 2026-05-04T10:00:00Z")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Option<i64>, E> {
            s.parse::<jiff::Timestamp>()
                .map(|t| Some(t.as_millisecond()))
                .map_err(|e| E::custom(format!("`{s}` is not an RFC 3339 time like 2026-05-04T10:00:00Z: {e}")))
        }
    }
    d.deserialize_str(V)
}

/// Parses a fixture file's text: the YAML strictly (unknown keys, repeated keys and bad
/// values refused where they are), then what the YAML alone cannot say: a test's name
/// given twice, and times that run backwards.
pub fn parse(text: &str) -> Result<Fixture, FixtureError> {
    let mut f: Fixture = crate::core::yaml::strict(text).map_err(|e| FixtureError {
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    if f.tests.is_empty() {
        return Err(FixtureError {
            line: locate(text, "tests", 1).0,
            column: 1,
            message: "`tests` is empty: give at least one test".into(),
        });
    }
    let mut from = 1;
    let mut seen: Vec<&str> = Vec::new();
    for t in &mut f.tests {
        // `name: NAME` as most write it, else the name however it is quoted.
        let named = format!("name: {}", t.name);
        let needle = if text.contains(&named) { &named } else { &t.name };
        let (line, _) = locate(text, needle, from);
        t.line = line;
        from = line + 1;
    }
    for t in &f.tests {
        let err = |key: &str, message: String| -> Result<Fixture, FixtureError> {
            let (line, column) = locate(text, key, t.line);
            Err(FixtureError { line, column, message })
        };
        if t.name.trim().is_empty() {
            return err("name", "a test needs a `name`".into());
        }
        if seen.contains(&t.name.as_str()) {
            return err(
                "name",
                format!("a second test named `{}`: names are unique in a file", t.name),
            );
        }
        seen.push(&t.name);
        let opened = t.at.unwrap_or(EPOCH_MS);
        let mut last = opened;
        for v in &t.votes {
            let at = v.at.unwrap_or(opened);
            if at < last {
                return err(
                    &format!("who: {}", v.who),
                    format!(
                        "test `{}`: the vote of `{}` is at {}, before {} (votes are in time order, none before `at`)",
                        t.name,
                        v.who,
                        crate::core::duration::rfc3339(at),
                        crate::core::duration::rfc3339(last)
                    ),
                );
            }
            last = at;
        }
        if let Some(now) = t.now
            && now < last
        {
            return err(
                "now",
                format!(
                    "test `{}`: `now` is {}, before the request opened or a vote was cast ({})",
                    t.name,
                    crate::core::duration::rfc3339(now),
                    crate::core::duration::rfc3339(last)
                ),
            );
        }
    }
    Ok(f)
}

/// 1-based line and column of the first `needle` at or after line `from`; `(from, 1)`
/// when there is none.
pub fn locate(text: &str, needle: &str, from: usize) -> (usize, usize) {
    for (i, line) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        if let Some(c) = line.find(needle) {
            return (i + 1, c + 1);
        }
    }
    (from.max(1), 1)
}

#[cfg(test)]
mod tests;
