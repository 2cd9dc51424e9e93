//! Withdrawing a pending request.

use serde_json::json;

use super::error::{AppError, ErrorCode, Result};
use super::holder::is_opener;
use super::{Engine, doc_of};
use crate::auth::Principal;
use crate::core::api::RequestView;
use crate::store::AuditDraft;

impl Engine {
    /// Withdraws a pending request: the pipeline that opened it, or a requester.
    pub async fn cancel(
        &self,
        who: &Principal,
        id: &str,
        reason: Option<String>,
        now_fn: fn() -> i64,
    ) -> Result<RequestView> {
        let (row, _) = self.load_for(who, id).await?;
        let doc = doc_of(&row)?;
        self.refuse_review(&doc, id, "canceled").await?;
        let allowed = match who {
            Principal::Pipeline { .. } => is_opener(who, &row, &doc),
            Principal::Approver(u) => doc.requesters.contains(u),
        };
        if !allowed {
            return Err(AppError::Forbidden(
                ErrorCode::NotYours,
                format!("only the pipeline that opened request {id}, or its requester, may cancel it"),
            ));
        }
        let actor = who.name().to_string();
        let reason = reason.filter(|r| !crate::core::text::is_blank(r));
        if let Some(m) = reason
            .as_deref()
            .and_then(|r| crate::core::text::control_message(r, true))
        {
            return Err(AppError::Invalid(ErrorCode::InvalidField, format!("reason: {m}")));
        }
        let reason = reason.or_else(|| Some("canceled by the requester".into()));
        self.transition(id, now_fn, &actor, |state, now| {
            let next = state.cancel(now)?;
            let event = AuditDraft {
                at: now,
                request_id: id.to_string(),
                kind: "canceled".into(),
                actor: actor.clone(),
                data: json!({"reason": reason}),
            };
            Ok((next, None, event, Some(actor.clone()), reason.clone()))
        })
        .await
        .map_err(|e| self.refusal_error(e, "cancel"))
    }
}
