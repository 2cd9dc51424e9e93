//! Break-glass on the wire and its pure checks: what `gate request --break-glass` asks,
//! what an approval made that way says, and the follow-up review's state.

use serde::{Deserialize, Serialize};

use crate::core::decide::{Requirement, Status};

/// The longest break-glass reason or incident id.
pub const MAX_REASON: usize = 2000;
pub const MAX_INCIDENT: usize = 200;

/// `break_glass` of a create body: why, and the incident it is for (both required).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassAsk {
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub incident: String,
}

/// What a break-glass approval says, on the request, its events and its record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassInfo {
    /// The requester identity found in the rule's `break_glass.groups`.
    pub by: String,
    pub reason: String,
    pub incident: String,
    /// The review request it opened.
    pub review_id: String,
}

/// A change (the default) or the review of a break-glass change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    #[default]
    Change,
    Review,
}

impl RequestKind {
    pub fn is_change(&self) -> bool {
        *self == RequestKind::Change
    }
}

/// Why a break-glass ask is incomplete or unusable: the field and what is wrong.
pub fn check_ask(ask: &BreakGlassAsk) -> Result<(), String> {
    for (field, value, max) in [
        ("reason", &ask.reason, MAX_REASON),
        ("incident", &ask.incident, MAX_INCIDENT),
    ] {
        if crate::core::text::is_blank(value) {
            return Err(format!("break_glass.{field} is required: say why, and which incident"));
        }
        if value.chars().count() > max {
            return Err(format!("break_glass.{field}: at most {max} characters"));
        }
        if let Some(m) = crate::core::text::control_message(value, field == "reason") {
            return Err(format!("break_glass.{field}: {m}"));
        }
    }
    Ok(())
}

/// The first requester identity that is a member of one of `groups` (resolved as
/// requirements are), if any: the person breaking the glass.
pub fn breaker(requesters: &[String], groups: &[Requirement]) -> Option<String> {
    requesters
        .iter()
        .find(|r| groups.iter().any(|g| g.members.contains(r)))
        .cloned()
}

/// Where a break-glass change's review stands, for reports and listings: `pending`,
/// `overdue` (pending past `within`: its escalation taken), `approved`, `denied`, or the
/// review's other status.
pub fn review_state(status: Status, overdue: bool) -> &'static str {
    match status {
        Status::Pending if overdue => "overdue",
        s => s.as_str(),
    }
}

/// How a request stands to break-glass: a change approved by it (`break_glass`,
/// `review`), or the review of one (`kind: review`, `review_of`, `overdue`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReviewLinks {
    #[serde(default, skip_serializing_if = "RequestKind::is_change")]
    pub kind: RequestKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassInfo>,
    /// The review request a break-glass approval opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    /// The break-glass change a review is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_of: Option<String>,
    /// When a review becomes overdue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_due_at: Option<String>,
    /// A pending review past `review_due_at` (its escalation was taken).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overdue: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(reason: &str, incident: &str) -> BreakGlassAsk {
        BreakGlassAsk {
            reason: reason.into(),
            incident: incident.into(),
        }
    }

    #[test]
    fn an_ask_needs_both_a_reason_and_an_incident() {
        assert_eq!(check_ask(&ask("db down", "INC-1")), Ok(()));
        assert!(
            check_ask(&ask("", "INC-1"))
                .unwrap_err()
                .contains("break_glass.reason is required")
        );
        assert!(
            check_ask(&ask("x", " \u{200b}"))
                .unwrap_err()
                .contains("break_glass.incident is required")
        );
        assert!(
            check_ask(&ask("x", "INC\n1"))
                .unwrap_err()
                .contains("control character")
        );
        assert!(check_ask(&ask("line 1\nline 2", "INC-1")).is_ok());
        assert!(
            check_ask(&ask(&"x".repeat(2001), "I"))
                .unwrap_err()
                .contains("at most 2000")
        );
    }

    #[test]
    fn the_breaker_is_a_requester_identity_in_a_group() {
        let g = |members: &[&str]| Requirement {
            group: "oncall".into(),
            count: 1,
            members: members.iter().map(|m| m.to_string()).collect(),
            source: None,
            stage: None,
        };
        let req = vec!["carol-gh".to_string(), "carol".to_string()];
        assert_eq!(breaker(&req, &[g(&["bob", "carol"])]), Some("carol".into()));
        assert_eq!(breaker(&req, &[g(&["bob"])]), None);
        assert_eq!(breaker(&[], &[g(&["bob"])]), None);
    }

    #[test]
    fn review_states() {
        assert_eq!(review_state(Status::Pending, false), "pending");
        assert_eq!(review_state(Status::Pending, true), "overdue");
        assert_eq!(review_state(Status::Approved, true), "approved");
        assert_eq!(review_state(Status::Denied, false), "denied");
    }
}
