//! What a record must say beyond a good signature: the decision it is evidence of.
//! A record for `staging` approved by policy is a valid record, and no evidence for a
//! production deploy; these checks make the verifier say which decision it accepts.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use crate::core::duration::{Dur, rfc3339};
use crate::core::policy::glob_match;

/// What `gate verify` asserts beyond the signature. `now` is the verifier's clock (ms
/// since the epoch), read by the caller; only `max_age` uses it.
#[derive(Debug, Default, Clone)]
pub struct Expect {
    pub commit: Option<String>,
    pub artifacts: Vec<String>,
    /// The request the record must be for (the gate knows which one it opened).
    pub request_id: Option<String>,
    pub environment: Option<String>,
    pub constraints: Constraints,
    /// Per-environment constraints; the record's environment picks the entry.
    pub policy: Option<Admission>,
    pub now: i64,
    /// Witnesses whose cosignature the record's log checkpoint must carry.
    pub witnesses: Vec<crate::core::log::WitnessVkey>,
}

/// The constraints on a decision, from flags or from one environment of a policy file.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// A glob, as in policy rules (`acme/*`).
    pub repository: Option<String>,
    /// A glob over the full ref name (`refs/heads/release/*`).
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// The name of the policy rule that must have decided.
    pub rule: Option<String>,
    /// Distinct people who approved; policy (automatic) approvals do not count.
    pub min_approvals: Option<u32>,
    /// The longest time since the decision.
    pub max_age: Option<Dur>,
}

/// An admission policy for a deploy tool: constraints per environment. A record for an
/// environment the file does not list is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The file it came from, for messages.
    pub file: String,
    pub environments: BTreeMap<String, Constraints>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdmissionFile {
    environments: BTreeMap<String, Constraints>,
}

/// Why an admission policy file does not parse: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct AdmissionError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Admission {
    /// Parses the YAML `text` of `file`.
    pub fn parse(file: &str, text: &str) -> Result<Admission, AdmissionError> {
        let raw: AdmissionFile = serde_norway::from_str(text).map_err(|e| {
            let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            // serde_norway appends " at line L column C"; the location goes up front instead.
            let msg = e.to_string();
            AdmissionError {
                file: file.into(),
                line,
                column,
                message: msg.split(" at line ").next().unwrap_or(&msg).to_string(),
            }
        })?;
        if raw.environments.is_empty() {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("environments"))
                .map_or(0, |i| i + 1);
            return Err(AdmissionError {
                file: file.into(),
                line,
                column: 1,
                message: "`environments` is empty: every record would be refused".into(),
            });
        }
        Ok(Admission {
            file: file.into(),
            environments: raw.environments,
        })
    }
}

/// A record that says something other than what was expected: the field, what the
/// record says and what was wanted, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Mismatch {
    /// The flag or policy key: `environment`, `repository`, `ref`, `rule`,
    /// `min_approvals`, `max_age`, `request`.
    pub field: &'static str,
    pub message: String,
}

/// The decision a record's predicate describes, as far as these checks read it.
struct Decision<'a> {
    request_id: &'a str,
    environment: &'a str,
    repository: &'a str,
    git_ref: &'a str,
    rule: &'a str,
    /// Distinct people who approved (not the policy).
    approvers: BTreeSet<&'a str>,
    decided_at: Option<&'a str>,
}

impl<'a> Decision<'a> {
    fn of(predicate: &'a Value) -> Decision<'a> {
        let s = |v: &'a Value| v.as_str().unwrap_or("");
        let ctx = &predicate["request"]["context"];
        let votes = predicate["votes"].as_array().map(Vec::as_slice).unwrap_or_default();
        let approvers = votes
            .iter()
            .filter(|v| v["decision"] == "approve" && !is_policy_vote(v))
            .map(|v| s(&v["voter"]))
            .filter(|v| !v.is_empty())
            .collect();
        Decision {
            request_id: s(&predicate["request"]["id"]),
            environment: s(&ctx["environment"]),
            repository: s(&ctx["repository"]),
            git_ref: s(&ctx["ref"]),
            rule: s(&predicate["policy"]["rule"]),
            approvers,
            decided_at: predicate["outcome"]["decided_at"].as_str(),
        }
    }
}

/// A vote the policy cast (an automatic decision), not a person.
fn is_policy_vote(v: &Value) -> bool {
    // `check`: an evidence check of the rule decided (see `core::decide::checks`);
    // `break_glass`: an on-call engineer's emergency approval (see `core::break_glass`);
    // `scope`: a decision of the run's scope covered it (see `core::scope`).
    v["via"] == "policy"
        || v["via"] == "check"
        || v["via"] == "break_glass"
        || v["via"] == crate::core::scope::VIA
        || v["automatic"] == Value::Bool(true)
}

fn mismatch(field: &'static str, message: String) -> Mismatch {
    Mismatch { field, message }
}

/// Checks the predicate of a verified statement against everything `e` expects beyond
/// commit and artifacts; the first mismatch is the answer.
pub fn check(predicate: &Value, e: &Expect) -> Result<(), Mismatch> {
    // A review's approval says a break-glass change was reviewed; it allows no change.
    if predicate["request"]["kind"] == "review" {
        return Err(mismatch(
            "request",
            format!(
                "this record is the review of break-glass change {}, not evidence for a change",
                predicate["request"]["review_of"].as_str().unwrap_or("?")
            ),
        ));
    }
    let d = Decision::of(predicate);
    if let Some(id) = &e.request_id
        && d.request_id != id
    {
        return Err(mismatch(
            "request",
            format!("the record is for {:?}, expected {id:?}", d.request_id),
        ));
    }
    if let Some(env) = &e.environment
        && d.environment != env
    {
        return Err(mismatch(
            "environment",
            format!("the record is for {:?}, expected {env:?}", d.environment),
        ));
    }
    check_constraints(&d, &e.constraints, e.now, "")?;
    if let Some(p) = &e.policy {
        let Some(c) = p.environments.get(d.environment) else {
            return Err(mismatch(
                "environment",
                format!("the record is for {:?}, which {} does not list", d.environment, p.file),
            ));
        };
        let whence = format!(" ({}, environment {:?})", p.file, d.environment);
        check_constraints(&d, c, e.now, &whence)?;
    }
    Ok(())
}

/// `whence` ends each message: empty for flags, the file and environment for a policy.
fn check_constraints(d: &Decision, c: &Constraints, now: i64, whence: &str) -> Result<(), Mismatch> {
    if let Some(p) = &c.repository
        && !glob_match(p, d.repository)
    {
        return Err(mismatch(
            "repository",
            format!("the record is for {:?}, expected {p:?}{whence}", d.repository),
        ));
    }
    if let Some(p) = &c.git_ref
        && !glob_match(p, d.git_ref)
    {
        return Err(mismatch(
            "ref",
            format!("the record is for {:?}, expected {p:?}{whence}", d.git_ref),
        ));
    }
    if let Some(r) = &c.rule
        && d.rule != r
    {
        return Err(mismatch(
            "rule",
            format!("the record was decided by rule {:?}, expected {r:?}{whence}", d.rule),
        ));
    }
    if let Some(n) = c.min_approvals
        && d.approvers.len() < n as usize
    {
        let who = if d.approvers.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.approvers.iter().copied().collect::<Vec<_>>().join(", "))
        };
        return Err(mismatch(
            "min_approvals",
            format!(
                "the record has {} human approval(s){who}, expected at least {n}{whence}",
                d.approvers.len()
            ),
        ));
    }
    if let Some(max) = c.max_age {
        let Some(at) = d.decided_at else {
            return Err(mismatch(
                "max_age",
                format!("the record has no decided_at, expected a decision within {max}{whence}"),
            ));
        };
        let Some(ms) = parse_time(at) else {
            return Err(mismatch(
                "max_age",
                format!("the record's decided_at {at:?} is not an RFC 3339 time{whence}"),
            ));
        };
        let age = now.saturating_sub(ms);
        if age > max.millis() {
            return Err(mismatch(
                "max_age",
                format!(
                    "the record was decided at {}, {} ago, expected within {max}{whence}",
                    rfc3339(ms),
                    Dur(age)
                ),
            ));
        }
    }
    Ok(())
}

fn parse_time(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DECIDED: i64 = 1_700_000_000_000;

    fn predicate(env: &str, votes: Value) -> Value {
        json!({
            "request": {"id": "req_1", "context": {"environment": env, "repository": "acme/web", "ref": "refs/heads/main"}},
            "policy": {"rule": "prod"},
            "votes": votes,
            "outcome": {"status": "approved", "decided_at": rfc3339(DECIDED)},
        })
    }

    fn staging() -> Value {
        predicate(
            "staging",
            json!([{"voter": "policy", "decision": "approve", "via": "policy", "at": rfc3339(DECIDED)}]),
        )
    }

    fn production() -> Value {
        predicate(
            "production",
            json!([
                {"voter": "alice", "decision": "approve", "via": "token"},
                {"voter": "bob", "decision": "approve", "via": "sso"},
                {"voter": "carol", "decision": "deny", "reason": "no", "via": "token"},
            ]),
        )
    }

    fn with(c: Constraints) -> Expect {
        Expect {
            constraints: c,
            now: DECIDED + 60_000,
            ..Default::default()
        }
    }

    fn err(p: &Value, e: &Expect) -> String {
        check(p, e).unwrap_err().to_string()
    }

    #[test]
    fn environment_names_both_values() {
        let e = Expect {
            environment: Some("production".into()),
            ..Default::default()
        };
        assert_eq!(
            err(&staging(), &e),
            r#"environment: the record is for "staging", expected "production""#
        );
        check(&production(), &e).unwrap();
    }

    #[test]
    fn each_constraint_refuses_a_mismatch_and_accepts_a_match() {
        let p = production();
        let cases: Vec<(Constraints, Constraints, &str)> = vec![
            (
                Constraints {
                    repository: Some("acme/*".into()),
                    ..Default::default()
                },
                Constraints {
                    repository: Some("other/*".into()),
                    ..Default::default()
                },
                r#"repository: the record is for "acme/web", expected "other/*""#,
            ),
            (
                Constraints {
                    git_ref: Some("refs/heads/*".into()),
                    ..Default::default()
                },
                Constraints {
                    git_ref: Some("refs/tags/v*".into()),
                    ..Default::default()
                },
                r#"ref: the record is for "refs/heads/main", expected "refs/tags/v*""#,
            ),
            (
                Constraints {
                    rule: Some("prod".into()),
                    ..Default::default()
                },
                Constraints {
                    rule: Some("production".into()),
                    ..Default::default()
                },
                r#"rule: the record was decided by rule "prod", expected "production""#,
            ),
            (
                Constraints {
                    min_approvals: Some(2),
                    ..Default::default()
                },
                Constraints {
                    min_approvals: Some(3),
                    ..Default::default()
                },
                "min_approvals: the record has 2 human approval(s) (alice, bob), expected at least 3",
            ),
            (
                Constraints {
                    max_age: Some(Dur(60_000)),
                    ..Default::default()
                },
                Constraints {
                    max_age: Some(Dur(59_999)),
                    ..Default::default()
                },
                "max_age: the record was decided at 2023-11-14T22:13:20Z, 1m ago, expected within 59s999ms",
            ),
        ];
        for (good, bad, msg) in cases {
            check(&p, &with(good.clone())).unwrap_or_else(|e| panic!("{good:?}: {e}"));
            assert_eq!(err(&p, &with(bad)), msg);
        }
    }

    #[test]
    fn policy_votes_are_not_people() {
        let one = with(Constraints {
            min_approvals: Some(1),
            ..Default::default()
        });
        assert_eq!(
            err(&staging(), &one),
            "min_approvals: the record has 0 human approval(s), expected at least 1"
        );
        let automatic = predicate(
            "x",
            json!([{"voter": "x", "decision": "approve", "via": "token", "automatic": true}]),
        );
        assert!(check(&automatic, &one).is_err());
        // One person voting twice (a renamed row aside) counts once.
        let twice = predicate(
            "x",
            json!([{"voter": "alice", "decision": "approve", "via": "token"},
                   {"voter": "alice", "decision": "approve", "via": "comment"}]),
        );
        let two = with(Constraints {
            min_approvals: Some(2),
            ..Default::default()
        });
        assert!(err(&twice, &two).contains("1 human approval(s) (alice)"));
    }

    #[test]
    fn max_age_refuses_an_old_record_or_one_without_a_time() {
        let e = Expect {
            now: DECIDED + 86_400_000,
            ..with(Constraints {
                max_age: Some(Dur(3_600_000)),
                ..Default::default()
            })
        };
        assert!(err(&production(), &e).contains("1d ago, expected within 1h"));
        let mut p = production();
        p["outcome"]["decided_at"] = Value::Null;
        assert!(err(&p, &e).starts_with("max_age: the record has no decided_at"));
    }

    #[test]
    fn request_id_is_checked() {
        let e = Expect {
            request_id: Some("req_2".into()),
            ..Default::default()
        };
        assert_eq!(
            err(&production(), &e),
            r#"request: the record is for "req_1", expected "req_2""#
        );
    }

    const POLICY: &str = "environments:
  production:
    repository: acme/*
    ref: refs/heads/main
    rule: prod
    min_approvals: 2
    max_age: 1h
  staging: {}
";

    #[test]
    fn a_policy_file_picks_the_records_environment() {
        let a = Admission::parse("admit.yaml", POLICY).unwrap();
        let e = Expect {
            policy: Some(a.clone()),
            now: DECIDED + 60_000,
            ..Default::default()
        };
        check(&production(), &e).unwrap();
        check(&staging(), &e).unwrap();
        let mut dev = production();
        dev["request"]["context"]["environment"] = json!("dev");
        assert_eq!(
            err(&dev, &e),
            r#"environment: the record is for "dev", which admit.yaml does not list"#
        );
        let mut strict = a;
        strict.environments.get_mut("production").unwrap().min_approvals = Some(3);
        let e = Expect {
            policy: Some(strict),
            ..e
        };
        assert_eq!(
            err(&production(), &e),
            r#"min_approvals: the record has 2 human approval(s) (alice, bob), expected at least 3 (admit.yaml, environment "production")"#
        );
    }

    #[test]
    fn a_malformed_policy_file_names_the_place() {
        let e = Admission::parse("admit.yaml", "environments:\n  production:\n    min_aprovals: 2\n").unwrap_err();
        assert_eq!((e.line, e.file.as_str()), (3, "admit.yaml"));
        assert!(e.to_string().starts_with("admit.yaml:3:"), "{e}");
        assert!(e.message.contains("unknown field `min_aprovals`"), "{e}");
        let e = Admission::parse("admit.yaml", "environments:\n  production:\n    max_age: soon\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("invalid duration `soon`"), "{e}");
        let e = Admission::parse("admit.yaml", "environments: {}\n").unwrap_err();
        assert!(e.to_string().contains("`environments` is empty"), "{e}");
        assert!(
            Admission::parse("admit.yaml", "envs: {}\n")
                .unwrap_err()
                .message
                .contains("unknown field `envs`")
        );
    }
}
