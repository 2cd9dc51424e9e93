//! Using an approval, once, inside the rule's change windows.

use serde_json::json;

use super::commit::Rejected;
use super::error::{AppError, ErrorCode, Result};
use super::holder::is_opener;
use super::{Engine, doc_of};
use crate::auth::Principal;
use crate::core::api::RequestView;
use crate::core::decide::Refusal;
use crate::core::duration::rfc3339;
use crate::store::AuditDraft;

impl Engine {
    /// Uses an approval, once, by the pipeline that opened the request (and, for a
    /// request that holds a platform's job, from the run that job is in: `run`).
    pub async fn consume(
        &self,
        who: &Principal,
        id: &str,
        run: Option<&str>,
        now_fn: fn() -> i64,
    ) -> Result<RequestView> {
        let Principal::Pipeline { name, .. } = who else {
            return Err(AppError::Forbidden(
                ErrorCode::ApproverCannotConsume,
                "only the pipeline that opened a request can use its approval".into(),
            ));
        };
        let (row, _) = self.load_for(who, id).await?;
        self.refuse_review(&doc_of(&row)?, id, "consumed").await?;
        if !is_opener(who, &row, &doc_of(&row)?) {
            return Err(AppError::Forbidden(
                ErrorCode::NotYours,
                format!("request {id} was opened by another pipeline"),
            ));
        }
        super::release::check_consumer(&doc_of(&row)?, who, run, id)?;
        let actor = name.clone();
        let rule = doc_of(&row)?.rule;
        let refused_at = std::sync::Mutex::new(None);
        self.transition(id, now_fn, &actor, |state, now| {
            let mut state = state.clone();
            state.window_open = rule.window_open(now);
            *refused_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
            let next = state.consume(now)?;
            let event = AuditDraft {
                at: now,
                request_id: id.to_string(),
                kind: "consumed".into(),
                actor: actor.clone(),
                data: json!({}),
            };
            Ok((next, None, event, None, None))
        })
        .await
        .map_err(|e| match e {
            Rejected::Refused(Refusal::OutsideWindow, _) => {
                let now = refused_at.into_inner().ok().flatten().unwrap_or_else(now_fn);
                let next = crate::core::policy::window::next_open(rule.allowed_windows(), now)
                    .map(|t| format!("; it next opens at {}", rfc3339(t)))
                    .unwrap_or_default();
                AppError::Conflict(
                    ErrorCode::OutsideWindow,
                    format!(
                        "cannot consume: rule `{}` allows using an approval only inside {}{next}",
                        rule.name,
                        rule.allowed_windows().join(" or ")
                    ),
                )
            }
            e => self.refusal_error(e, "consume"),
        })
    }
}
