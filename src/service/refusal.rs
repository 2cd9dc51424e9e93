//! A refused action: its audit event, and the error the caller sees.

use serde_json::json;

use super::commit::Rejected;
use super::error::{AppError, ErrorCode};
use super::{Engine, MAX_ATTEMPTS};
use crate::core::decide::Refusal;
use crate::core::decide::Status;
use crate::store::AuditDraft;

impl Engine {
    pub(super) async fn audit_refusal(&self, id: &str, actor: &str, refusal: &Refusal, now: i64) {
        let draft = AuditDraft {
            at: now,
            request_id: id.to_string(),
            kind: "refused".into(),
            actor: actor.to_string(),
            data: json!({"why": refusal.to_string()}),
        };
        for _ in 0..MAX_ATTEMPTS {
            let r = async {
                let mut tx = self.store.begin().await?;
                tx.append_audit(&draft).await?;
                tx.commit().await
            }
            .await;
            match r {
                Ok(()) => return,
                Err(e) if e.is_retryable() => continue,
                Err(e) => {
                    tracing::error!(error = %e, request = id, "could not audit a refused action");
                    return;
                }
            }
        }
    }

    pub(super) fn refusal_error(&self, rejected: Rejected, what: &str) -> AppError {
        let (refusal, status) = match rejected {
            Rejected::Failed(e) => return e,
            Rejected::Refused(r, s) => (r, s.unwrap_or(Status::Expired)),
        };
        match refusal {
            Refusal::Requester => AppError::Forbidden(ErrorCode::RequesterCannotVote, refusal.to_string()),
            Refusal::NotEligible => AppError::Forbidden(ErrorCode::NotEligible, refusal.to_string()),
            Refusal::NotDelegated(_) => AppError::Forbidden(ErrorCode::NotDelegated, refusal.to_string()),
            Refusal::AlreadyVoted => AppError::Conflict(ErrorCode::AlreadyVoted, refusal.to_string()),
            Refusal::ReasonRequired => AppError::Invalid(ErrorCode::ReasonRequired, refusal.to_string()),
            Refusal::NotPending(s) => {
                AppError::Conflict(ErrorCode::NotPending, format!("cannot {what}: the request is {s}"))
            }
            Refusal::OutsideWindow => AppError::Conflict(ErrorCode::OutsideWindow, format!("cannot {what}: {refusal}")),
            Refusal::StageNotOpen { .. } => {
                AppError::Conflict(ErrorCode::StageNotOpen, format!("cannot {what}: {refusal}"))
            }
            Refusal::Expired => {
                AppError::Conflict(ErrorCode::Expired, format!("cannot {what}: the request is {status}"))
            }
        }
    }
}
