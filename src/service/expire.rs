//! What time alone does to a request: a timeout, a lapsed approval, a due escalation.

use serde_json::json;

use super::error::{AppError, Result};
use super::{Engine, MAX_ATTEMPTS, doc_of};
use crate::core::api::RequestView;
use crate::core::decide::Status;
use crate::store::AuditDraft;

impl Engine {
    /// Applies what time alone does to one request (timeout, lapsed approval).
    pub async fn expire(&self, id: &str, now: i64) -> Result<Option<RequestView>> {
        for _ in 0..MAX_ATTEMPTS {
            let (row, votes) = self.load(id).await?;
            let doc = doc_of(&row)?;
            let state = self.verified_state(&row, &doc, &votes).await?;
            let Some(next) = state.tick(now) else {
                if state.status != Status::Pending {
                    return Ok(None);
                }
                if super::checks::checks_due(&doc) {
                    self.want_checks(id);
                }
                let due = crate::core::decide::due_escalations(
                    &doc.escalation_afters(),
                    &doc.escalations_done(),
                    row.created_at,
                    row.expires_at,
                    now,
                );
                if due.is_empty() {
                    return Ok(None);
                }
                match self.escalate(row, votes, doc, &state, &due, now).await {
                    Ok(v) => return Ok(Some(v)),
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            let why = if state.status == Status::Approved {
                "the approval was not used within its validity window"
            } else {
                "nobody decided before the timeout"
            };
            let event = AuditDraft {
                at: now,
                request_id: id.to_string(),
                kind: "expired".into(),
                actor: "timer".into(),
                data: json!({"reason": why, "was": state.status.as_str()}),
            };
            match self
                .write(
                    row,
                    votes,
                    doc,
                    next,
                    None,
                    event,
                    Some("timer".into()),
                    Some(why.into()),
                    now,
                )
                .await
            {
                Ok(v) => return Ok(Some(v)),
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable("too much contention; retry".into()))
    }
}
