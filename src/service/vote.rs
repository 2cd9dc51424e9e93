//! Approving or denying, as an approver; forge-group membership is read live.

use serde_json::json;

use super::error::{AppError, ErrorCode, Result};
use super::{Engine, doc_of, forge_groups};
use crate::auth::Principal;
use crate::core::api::{RequestView, VoteMeta};
use crate::core::decide::Status;
use crate::core::duration::rfc3339;
use crate::store::{AuditDraft, VoteRow};

impl Engine {
    /// Approve (`approve = true`) or deny, as `who`.
    pub async fn vote(
        &self,
        who: &Principal,
        id: &str,
        approve: bool,
        reason: Option<String>,
        meta: VoteMeta,
        now_fn: fn() -> i64,
    ) -> Result<RequestView> {
        let Principal::Approver(user) = who else {
            return Err(AppError::Forbidden(
                ErrorCode::PipelineCannotVote,
                "pipeline tokens (static or OIDC) cannot vote; use an approver's token".into(),
            ));
        };
        let reason = reason
            .map(|r| r.trim().to_string())
            .filter(|r| !crate::core::text::is_blank(r));
        if let Some(m) = reason
            .as_deref()
            .and_then(|r| crate::core::text::control_message(r, true))
        {
            return Err(AppError::Invalid(ErrorCode::InvalidField, format!("reason: {m}")));
        }
        if reason.as_ref().is_some_and(|r| r.len() > 2000) {
            return Err(AppError::Invalid(
                ErrorCode::ReasonTooLong,
                "reason: at most 2000 characters".into(),
            ));
        }
        let kind = if approve { "approve" } else { "deny" };
        self.refuse_auditor_vote(who)?;
        // An unknown id is a 404, not a refusal; so is one the voter may not read.
        let (row, votes) = self.load(id).await?;
        // Forge groups: membership is read live for every vote on a pending request.
        let doc = doc_of(&row)?;
        // Delegations given to this voter; which are in force is asked at the vote's `now`.
        // A delegate reads what the people who delegated to them read.
        let received = self.store.delegations_to(user, now_fn().saturating_sub(60_000)).await?;
        let asked = meta.on_behalf_of.clone();
        let reach = super::read::Reach {
            stands_for: crate::core::delegation::in_force_for(&received, now_fn()),
            idp_groups: self.fresh_idp_groups(&meta, now_fn()),
        };
        let readable = self.may_read_doc(who, &reach, &row, &doc, &votes)?;
        let has_forge_groups = doc.requirements.iter().any(|r| r.source.is_some());
        if !readable && (row.status != Status::Pending || !has_forge_groups) {
            return Err(super::not_found(id));
        }
        let live = if row.status == Status::Pending {
            self.live_members(&doc).await?
        } else {
            vec![]
        };
        let mut live = live;
        self.idp_live(&doc, &mut live, user, &meta, now_fn())?;
        let forge_groups = forge_groups::live_groups(&doc, &live, user);
        // Someone added to a forge group since the request opened may vote (and so read it).
        if !readable && forge_groups.is_empty() {
            return Err(super::not_found(id));
        }
        super::break_glass::check_review_vote(&doc, reason.as_deref())?;
        self.transition(id, now_fn, user, |state, now| {
            let state = &forge_groups::with_live(state, &live);
            let counted = crate::core::delegation::counts_as(state, user, asked.as_deref(), &received, now)?;
            let next = state.vote_as(user, counted.as_deref(), approve, reason.as_deref(), now)?;
            let forge_groups = forge_groups::live_groups(&doc, &live, counted.as_deref().unwrap_or(user));
            let extra = VoteMeta {
                via: String::new(),
                on_behalf_of: counted.clone(),
                ..meta.clone()
            };
            let vote = VoteRow {
                voter: user.clone(),
                approve,
                reason: reason.clone(),
                at: now,
                via: meta.via.clone(),
                meta: forge_groups::vote_meta_json(&extra, &forge_groups),
            };
            let mut event = AuditDraft {
                at: now,
                request_id: id.to_string(),
                kind: "vote".into(),
                actor: user.clone(),
                data: json!({"decision": kind, "reason": reason, "via": meta.via, "auth_time": meta.auth_time.map(rfc3339), "amr": meta.amr, "source": meta.source, "idp_groups": meta.idp_groups}),
            };
            if !forge_groups.is_empty() {
                event.data["forge_groups"] = json!(forge_groups);
            }
            if let Some(c) = &counted {
                event.data["on_behalf_of"] = json!(c);
            }
            let by = match &counted {
                Some(c) => format!("{user} for {c} ({kind})"),
                None => format!("{user} ({kind})"),
            };
            Ok((next, Some(vote), event, Some(by), reason.clone()))
        })
        .await
        .map_err(|e| self.refusal_error(e, kind))
    }
}
