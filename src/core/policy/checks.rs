//! Evidence checks of a rule: `auto_approve_if` and `auto_deny_if`. Each entry names one
//! kind (`promotion` or `http`); the server runs them once the request is open, and the
//! combination (`core::decide::checks`) approves, denies, or leaves it to `require`.

use serde::{Deserialize, Serialize};

use crate::core::decide::checks::{Answer, CheckResult, List};
use crate::core::duration::Dur;

/// An `http` check waits this long when it names no `timeout`.
pub const DEFAULT_HTTP_TIMEOUT: Dur = Dur(5_000);
/// The longest `timeout` an `http` check may take (the gate is waiting meanwhile).
pub const MAX_HTTP_TIMEOUT: Dur = Dur(60_000);
/// At most this many checks per list.
pub const MAX_CHECKS: usize = 8;

/// One entry of `auto_approve_if` or `auto_deny_if`: exactly one kind is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
}

/// `promotion: {from: staging, within: 7d}`: every artifact of the request (its commit
/// when it has none) was approved and consumed in environment `from` within `within`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    pub from: String,
    pub within: Dur,
}

/// `http: {url, timeout, secret_env}`: the server POSTs the request, signed, and reads
/// `{"decision": "approve"|"deny"|"abstain", "reason": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// The environment variable holding the HMAC-SHA256 key of `X-Jitgate-Signature`.
    pub secret_env: String,
}

impl HttpCheck {
    pub fn timeout(&self) -> Dur {
        self.timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT)
    }
}

/// A check, its kind resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check<'a> {
    Promotion(&'a Promotion),
    Http(&'a HttpCheck),
}

impl CheckSpec {
    /// The one kind given; `None` when none or both are (parsing refuses those).
    pub fn check(&self) -> Option<Check<'_>> {
        match (&self.promotion, &self.http) {
            (Some(p), None) => Some(Check::Promotion(p)),
            (None, Some(h)) => Some(Check::Http(h)),
            _ => None,
        }
    }

    /// `promotion` or `http`.
    pub fn kind(&self) -> &'static str {
        match self.check() {
            Some(Check::Promotion(_)) => "promotion",
            Some(Check::Http(_)) => "http",
            None => "unknown",
        }
    }

    /// `promotion from staging within 7d`, `http https://cab.example/check`: for messages.
    pub fn describe(&self) -> String {
        match self.check() {
            Some(Check::Promotion(p)) => format!("promotion from {} within {}", p.from, p.within),
            Some(Check::Http(h)) => format!("http {}", h.url),
            None => "an invalid check".into(),
        }
    }

    /// The result of this check, the `index`th of `list`, answering `answer`.
    pub fn result(
        &self,
        list: List,
        index: usize,
        answer: Answer,
        reason: String,
        evidence: serde_json::Value,
    ) -> CheckResult {
        CheckResult {
            list,
            index,
            kind: self.kind().into(),
            check: self.describe(),
            answer,
            reason,
            evidence,
        }
    }

    /// Why this entry cannot be used, in the list named `list`; `None` when it can.
    pub fn problem<'a>(&self, list: &'a str) -> Option<(&'a str, String)> {
        let Some(check) = self.check() else {
            return Some((
                list,
                format!("each entry of `{list}` names exactly one check kind: `promotion` or `http`"),
            ));
        };
        match check {
            Check::Promotion(p) => {
                if list == "auto_deny_if" {
                    return Some((
                        "promotion",
                        "a `promotion` check never answers deny: put it under `auto_approve_if`".into(),
                    ));
                }
                if p.from.trim().is_empty() {
                    return Some(("from", "`promotion.from` names no environment".into()));
                }
                if p.within.millis() <= 0 {
                    return Some(("within", "`promotion.within` must be positive".into()));
                }
                None
            }
            Check::Http(h) => {
                if let Err(e) = crate::core::url::check_url(&h.url) {
                    return Some(("url", format!("`http.url`: {e}")));
                }
                if h.timeout.is_some_and(|t| t.millis() <= 0 || t > MAX_HTTP_TIMEOUT) {
                    return Some((
                        "timeout",
                        format!("`http.timeout` must be positive and at most {MAX_HTTP_TIMEOUT}"),
                    ));
                }
                let env_ok =
                    !h.secret_env.is_empty() && h.secret_env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !env_ok {
                    return Some((
                        "secret_env",
                        format!(
                            "`http.secret_env` `{}` is not an environment variable name (letters, digits, `_`)",
                            h.secret_env.escape_debug()
                        ),
                    ));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> CheckSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn each_kind_and_its_problems() {
        let p = spec("promotion: {from: staging, within: 7d}");
        assert_eq!(p.kind(), "promotion");
        assert_eq!(p.describe(), "promotion from staging within 7d");
        assert_eq!(p.problem("auto_approve_if"), None);
        assert_eq!(p.problem("auto_deny_if").unwrap().0, "promotion");
        assert_eq!(
            spec("promotion: {from: ' ', within: 7d}")
                .problem("auto_approve_if")
                .unwrap()
                .0,
            "from"
        );
        assert_eq!(
            spec("promotion: {from: s, within: 0s}")
                .problem("auto_approve_if")
                .unwrap()
                .0,
            "within"
        );
        let h = spec("http: {url: 'https://cab.example/c', secret_env: CAB}");
        assert_eq!(h.kind(), "http");
        assert_eq!(
            h.check()
                .map(|c| matches!(c, Check::Http(h) if h.timeout() == DEFAULT_HTTP_TIMEOUT)),
            Some(true)
        );
        assert_eq!(h.problem("auto_deny_if"), None);
        for (yaml, key) in [
            ("http: {url: 'http://cab.example/c', secret_env: CAB}", "url"),
            ("http: {url: 'ftp://x', secret_env: CAB}", "url"),
            ("http: {url: 'https://x', secret_env: ''}", "secret_env"),
            ("http: {url: 'https://x', secret_env: 'A B'}", "secret_env"),
            ("http: {url: 'https://x', secret_env: A, timeout: 0s}", "timeout"),
            ("http: {url: 'https://x', secret_env: A, timeout: 2m}", "timeout"),
            ("{}", "auto_approve_if"),
            (
                "{http: {url: 'https://x', secret_env: A}, promotion: {from: s, within: 1d}}",
                "auto_approve_if",
            ),
        ] {
            assert_eq!(spec(yaml).problem("auto_approve_if").map(|p| p.0), Some(key), "{yaml}");
        }
        assert_eq!(
            spec("http: {url: 'http://127.0.0.1:9/c', secret_env: A}").problem("x"),
            None
        );
        assert!(serde_norway::from_str::<CheckSpec>("opa: {url: x}").is_err());
        assert!(serde_norway::from_str::<CheckSpec>("http: {url: x, secret_env: A, extra: 1}").is_err());
    }

    /// A production rule with `extra` lines, in a policy file.
    fn policy(extra: &str) -> Result<crate::core::policy::Policy, crate::core::policy::PolicyError> {
        let text = format!(
            "version: 1\ngroups:\n  sre: [alice, bob]\nrules:\n  - name: production\n    match: {{ environment: production }}\n{extra}\n"
        );
        crate::core::policy::Policy::parse("policy.yaml", &text)
    }

    #[test]
    fn rules_with_checks_parse_and_their_mistakes_are_located() {
        let p = policy(
            "    require: [{ group: sre }]\n    auto_approve_if:\n      - promotion: { from: staging, within: 7d }\n      - http: { url: \"https://cab.example/c\", timeout: 3s, secret_env: CAB }\n    auto_deny_if:\n      - http: { url: \"https://opa.example/d\", secret_env: OPA }",
        )
        .unwrap();
        let rule = &p.rules[0];
        assert!(rule.has_checks());
        assert_eq!(rule.auto_approve_if.len(), 2);
        assert_eq!(rule.auto_deny_if[0].describe(), "http https://opa.example/d");
        for (extra, at, says) in [
            (
                "    decision: approve\n    auto_approve_if:\n      - promotion: { from: staging, within: 7d }",
                (8, 5),
                "has both `decision` and `auto_approve_if`",
            ),
            (
                "    require: [{ group: sre }]\n    auto_deny_if:\n      - promotion: { from: staging, within: 7d }",
                (9, 9),
                "auto_deny_if[0]: a `promotion` check never answers deny",
            ),
            (
                "    require: [{ group: sre }]\n    auto_approve_if:\n      - promotion: { from: staging, within: 7d }\n      - http: { url: \"http://cab.example\", secret_env: CAB }",
                (10, 17),
                "auto_approve_if[1]: `http.url`: `http://cab.example` must be https://",
            ),
            (
                "    require: [{ group: sre }]\n    auto_approve_if:\n      - http: { url: \"https://cab.example\", secret_env: \"\" }",
                (9, 45),
                "auto_approve_if[0]: `http.secret_env` `` is not an environment variable name",
            ),
            (
                "    require: [{ group: sre }]\n    auto_approve_if:\n      - {}",
                (8, 5),
                "names exactly one check kind",
            ),
        ] {
            let e = policy(extra).unwrap_err();
            assert_eq!((e.line, e.column), at, "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        // An unknown kind, and a rule with checks but nobody to decide otherwise.
        let e = policy("    require: [{ group: sre }]\n    auto_approve_if:\n      - opa: { url: x }").unwrap_err();
        assert!(e.message.contains("unknown field `opa`"), "{e}");
        assert_eq!(e.line, 9, "{e}");
        let e = policy("    auto_approve_if:\n      - promotion: { from: staging, within: 7d }").unwrap_err();
        assert!(
            e.message
                .contains("needs either `decision: approve|deny`, `require` or `stages`"),
            "{e}"
        );
    }
}
