//! The request document: what never changes after a request opens, plus the decision's
//! who and why. It holds an OIDC identity and reads the stored row, so it lives here
//! rather than in `core`; its pure parts are `core::request`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{AppError, Result};
use crate::auth::oidc::VerifiedIdentity;
use crate::core::api::{Context, RequesterOrigin};
use crate::core::break_glass::{BreakGlassInfo, RequestKind};
use crate::core::decide::{Requirement, Status};
use crate::core::policy::Rule;
use crate::core::request::Escalation;
use crate::store::RequestRow;

/// What never changes after a request opens, plus the decision's who and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Doc {
    pub context: Context,
    pub summary: String,
    pub artifacts: Vec<String>,
    /// The change fields given at opening; absent for requests opened before there were any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    pub requesters: Vec<String>,
    /// Where each requester identity came from; empty for requests opened before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requester_sources: Vec<RequesterOrigin>,
    pub rule: Rule,
    pub policy_digest: String,
    pub requirements: Vec<Requirement>,
    pub approval_ttl_ms: i64,
    /// SHA-256 of the create body; a replay with another body is refused.
    pub fingerprint: String,
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Sequence number and hash of the audit event that decided.
    #[serde(default)]
    pub decision_event: Option<(i64, String)>,
    /// The decision event's place in the transparency log (the record's `log`), kept so
    /// the record signed again at consumption reuses it. It proves itself: it is checked
    /// before it is signed again (see `record.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_log: Option<serde_json::Value>,
    /// What the opener's OIDC token vouched for; the context already holds those values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifiedIdentity>,
    /// Escalation steps of the rule already taken, so none is taken twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<Escalation>,
    /// The results of the rule's evidence checks, once they ran (see `checks.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::core::decide::checks::CheckResult>,
    /// A change, or the review of a break-glass change (see `service::break_glass`).
    #[serde(default, skip_serializing_if = "RequestKind::is_change")]
    pub kind: RequestKind,
    /// On a change approved by break-glass: who, why, the incident and its review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassInfo>,
    /// On a review: the break-glass change it reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_of: Option<String>,
    /// The job a platform holds for this request, released on its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::core::release::Release>,
}

impl Doc {
    pub(super) fn escalation_afters(&self) -> Vec<i64> {
        self.rule.escalate.iter().map(|e| e.after.millis()).collect()
    }

    pub(super) fn escalations_done(&self) -> Vec<usize> {
        self.escalations.iter().map(|e| e.step).collect()
    }

    /// When the next escalation step of a pending request is due.
    pub fn next_escalation(&self, row: &RequestRow) -> Option<i64> {
        crate::core::decide::next_escalation(
            &self.escalation_afters(),
            &self.escalations_done(),
            row.created_at,
            row.expires_at,
        )
    }

    /// Everyone escalations added as voters.
    pub fn escalated_voters(&self) -> Vec<String> {
        crate::core::request::escalated_voters(&self.escalations)
    }
}

/// The timer's deadline column for a request in `status`: the timeout or the next
/// escalation while pending, the end of the approval's validity once approved.
pub(super) fn deadline_of(status: Status, row: &RequestRow, doc: &Doc) -> Option<i64> {
    match status {
        // Checks not yet run are due at once: the timer hands them to the check worker.
        Status::Pending if super::checks::checks_due(doc) => Some(row.created_at),
        Status::Pending => Some(
            doc.next_escalation(row)
                .map_or(row.expires_at, |e| e.min(row.expires_at)),
        ),
        Status::Approved => row.approval_expires_at,
        _ => None,
    }
}

/// The document of a stored request.
pub fn doc_of(row: &RequestRow) -> Result<Doc> {
    serde_json::from_str(&row.doc).map_err(|e| AppError::Internal(anyhow::anyhow!("request {} document: {e}", row.id)))
}
