//! Break-glass: a change approved at once by someone on call, in the transaction that
//! opens it, with the review request the review group must decide afterwards.
//!
//! The approval is an automatic vote (`via: break_glass`, voter `break-glass:WHO`) that
//! `core::decide::derive` accepts only because the signed `created` event says who broke
//! the glass. The review is an ordinary request held to `policy::break_glass::review_rule`:
//! the review group's approval, no timeout to speak of, one escalation step at `within`
//! (which is what "overdue" means), never consumed or canceled.

use serde_json::json;

use super::commit::Failure;
use super::error::{AppError, ErrorCode, Result};
use super::open::AutoVote;
use super::{Doc, Engine, deadline_of, doc_of};
use crate::core::api::CreateRequest;
use crate::core::break_glass::ReviewLinks;
use crate::core::break_glass::{BreakGlassInfo, RequestKind, breaker, check_ask};
use crate::core::decide::{Requirement, Status};
use crate::core::duration::rfc3339;
use crate::core::policy::break_glass::{REVIEW_TIMEOUT, review_rule};
use crate::core::policy::{Policy, Rule};
use crate::notify::{Event, Recipient};
use crate::store::{AuditDraft, Position, RequestRow, Tx, VoteRow};

/// A break-glass ask that passed its checks: what the approval says, how long it may be
/// used, and the review's requirement with its members resolved.
pub(super) struct Glass {
    pub info: BreakGlassInfo,
    pub ttl_ms: i64,
    pub review: Vec<Requirement>,
}

impl Engine {
    /// Checks a create body's `break_glass` against the matched rule: complete (422
    /// `break_glass_incomplete`), allowed by the rule (422 `break_glass_not_allowed`), and
    /// asked by a requester in the rule's `break_glass.groups` (403 `not_break_glass`).
    pub(super) async fn break_glass_check(
        &self,
        policy: &Policy,
        rule: &Rule,
        body: &CreateRequest,
        requesters: &[String],
    ) -> Result<Option<Glass>> {
        let Some(ask) = &body.break_glass else {
            return Ok(None);
        };
        check_ask(ask).map_err(|m| AppError::Invalid(ErrorCode::BreakGlassIncomplete, m))?;
        let Some(bg) = rule.break_glass_allowed() else {
            return Err(AppError::Invalid(
                ErrorCode::BreakGlassNotAllowed,
                format!(
                    "rule `{}` does not allow break-glass (it has no `break_glass`); ask for approval without --break-glass",
                    rule.name
                ),
            ));
        };
        let group = |g: &str, count: u32| Requirement {
            group: g.to_string(),
            count,
            members: policy.groups.get(g).cloned().unwrap_or_default(),
            source: policy.forge_groups.get(g).map(|s| s.to_string()),
            stage: None,
        };
        let groups = self
            .resolve_requirements(bg.groups.iter().map(|g| group(g, 1)).collect())
            .await?;
        let Some(by) = breaker(requesters, &groups) else {
            return Err(AppError::Forbidden(
                ErrorCode::NotBreakGlass,
                format!(
                    "break-glass under rule `{}` is only for members of {}; none of the requester's identities ({}) is one",
                    rule.name,
                    bg.groups
                        .iter()
                        .map(|g| format!("`{g}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    requesters.join(", ")
                ),
            ));
        };
        let review = self
            .resolve_requirements(vec![group(&bg.review.group, bg.review.count)])
            .await?;
        Ok(Some(Glass {
            info: BreakGlassInfo {
                by,
                reason: ask.reason.trim().to_string(),
                incident: ask.incident.trim().to_string(),
                review_id: super::validate::new_id(),
            },
            ttl_ms: bg.ttl.millis(),
            review,
        }))
    }

    /// In the transaction that created the change `row` (its `created` event naming the
    /// break-glass): the review request with its own `created` event, the break-glass
    /// approval with its record, and the notifications (`break_glass` on every channel,
    /// `opened` to the review group).
    pub(super) async fn break_glass_at_open(
        &self,
        tx: &mut Tx,
        row: &mut RequestRow,
        doc: &mut Doc,
        votes: &mut Vec<VoteRow>,
        glass: Glass,
        now: i64,
    ) -> Result<(), Failure> {
        let Some(bg) = doc.rule.break_glass.clone() else {
            return Err(AppError::Internal(anyhow::anyhow!("break-glass on a rule without it")).into());
        };
        let info = glass.info;
        let mut rdoc = doc.clone();
        rdoc.rule = review_rule(&doc.rule, &bg);
        rdoc.requirements = glass.review;
        rdoc.approval_ttl_ms = rdoc.rule.approval_ttl().millis();
        rdoc.kind = RequestKind::Review;
        rdoc.review_of = Some(row.id.clone());
        rdoc.break_glass = None;
        // The job is released by the change, never by its review.
        rdoc.release = None;
        rdoc.summary = format!(
            "Review of break-glass change {} by {} (incident {}): {}",
            row.id, info.by, info.incident, info.reason
        );
        let review = RequestRow {
            id: info.review_id.clone(),
            idem_key: format!("review|{}", row.id),
            status: Status::Pending,
            version: 1,
            created_at: now,
            expires_at: now.saturating_add(REVIEW_TIMEOUT.millis()),
            approval_expires_at: None,
            decided_at: None,
            consumed_at: None,
            environment: row.environment.clone(),
            repository: row.repository.clone(),
            opened_by: row.opened_by.clone(),
            doc: serde_json::to_string(&rdoc)?,
        };
        tx.insert_request(&review, deadline_of(Status::Pending, &review, &rdoc))
            .await?;
        tx.append_audit(&AuditDraft {
            at: now,
            request_id: review.id.clone(),
            kind: "created".into(),
            actor: row.opened_by.clone(),
            data: json!({
                "context": rdoc.context, "summary": rdoc.summary, "artifacts": rdoc.artifacts,
                "rule": rdoc.rule.name, "policy_digest": rdoc.policy_digest,
                "requirements": rdoc.requirements, "requester": rdoc.requesters, "requester_sources": rdoc.requester_sources,
                "expires_at": rfc3339(review.expires_at),
                "kind": "review", "review_of": row.id, "review_due_at": rfc3339(now.saturating_add(bg.review.within.millis())),
            }),
        })
        .await?;
        let reason = format!(
            "break-glass by {}: {} (incident {})",
            info.by, info.reason, info.incident
        );
        let auto = AutoVote {
            voter: format!("break-glass:{}", info.by),
            approve: true,
            reason,
            via: "break_glass",
            vote_data: json!({"break_glass": info}),
            decided_by: format!("break-glass by {}", info.by),
            outcome_data: json!({"rule": doc.rule.name, "break_glass": info}),
        };
        self.decide_at_open(tx, row, doc, votes, auto, now).await?;
        // Everyone who must review hears of it at once, whatever the channels' filters.
        let people: Vec<String> = rdoc.requirements.iter().flat_map(|r| r.members.clone()).collect();
        self.enqueue_break_glass(tx, row, votes, &people, &rdoc.requesters, now)
            .await?;
        self.enqueue_notifications(tx, Event::Opened, &review, &[], now).await?;
        Ok(())
    }

    /// Queues the `break_glass` notification: every webhook and Slack channel, and email to
    /// `people` (the review group) who are not requesters.
    async fn enqueue_break_glass(
        &self,
        tx: &mut Tx,
        row: &RequestRow,
        votes: &[VoteRow],
        people: &[String],
        requesters: &[String],
        now: i64,
    ) -> Result<(), Failure> {
        let config = self.config();
        let Some(n) = &config.notify else {
            return Ok(());
        };
        let view = self.view(row, votes)?;
        let mut recipients: Vec<Recipient> = Vec::new();
        for p in people.iter().filter(|p| !requesters.contains(p)) {
            if let Some(u) = config.user(p)
                && !recipients.iter().any(|r| r.name == u.name)
            {
                recipients.push(Recipient {
                    name: u.name.clone(),
                    email: u.email.clone(),
                });
            }
        }
        for d in crate::notify::drafts(n, &self.public_url, Event::BreakGlass, &view, &recipients, now) {
            tx.enqueue_notification(&d).await?;
        }
        Ok(())
    }

    /// Pending review requests past their `within` (their overdue escalation taken), for
    /// `/metrics` (`jitgate_reviews_overdue`).
    pub async fn reviews_overdue(&self) -> Result<i64> {
        const BATCH: i64 = 500;
        let mut n = 0;
        let mut after: Option<Position> = None;
        loop {
            let rows = self
                .store
                .list_after(Some(Status::Pending), after.as_ref(), BATCH)
                .await?;
            for r in &rows {
                let d = doc_of(r)?;
                if d.kind == RequestKind::Review && !d.escalations.is_empty() {
                    n += 1;
                }
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == BATCH => {
                    after = Some(Position {
                        created_at: last.created_at,
                        id: last.id.clone(),
                    })
                }
                _ => return Ok(n),
            }
        }
    }
}

impl Engine {
    /// A review is decided by its review group only: consuming or canceling it is
    /// refused. The signed `created` event decides, not only the row's document, which
    /// anyone who can write the database could edit.
    pub(super) async fn refuse_review(&self, doc: &Doc, id: &str, what: &str) -> Result<()> {
        let of = match doc.kind {
            RequestKind::Review => doc.review_of.clone().or(Some("?".into())),
            RequestKind::Change => self
                .store
                .audit_for(id)
                .await?
                .first()
                .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.data).ok())
                .and_then(|d| d["review_of"].as_str().map(str::to_string)),
        };
        match of {
            Some(of) => Err(AppError::Conflict(
                ErrorCode::NotAChange,
                format!(
                    "request {id} is the review of break-glass change {of}: the review group approves or denies it; it cannot be {what}"
                ),
            )),
            None => Ok(()),
        }
    }
}

/// A vote on a review needs a reason, an approval as much as a deny: the review is the
/// record of why an unreviewed change was acceptable.
pub(super) fn check_review_vote(doc: &Doc, reason: Option<&str>) -> Result<()> {
    if doc.kind == RequestKind::Review && reason.is_none() {
        return Err(AppError::Invalid(
            ErrorCode::ReasonRequired,
            "a vote on a break-glass review needs a reason, for an approve as for a deny".into(),
        ));
    }
    Ok(())
}

/// The break-glass keys of a request's view.
pub(super) fn links(
    row: &RequestRow,
    kind: RequestKind,
    break_glass: Option<BreakGlassInfo>,
    review_of: Option<String>,
    due_after: Option<i64>,
    escalated: bool,
) -> ReviewLinks {
    let review = kind == RequestKind::Review;
    ReviewLinks {
        kind,
        review: break_glass.as_ref().map(|b| b.review_id.clone()),
        break_glass,
        review_of,
        review_due_at: due_after
            .filter(|_| review)
            .map(|a| rfc3339(row.created_at.saturating_add(a))),
        overdue: review && escalated && row.status == Status::Pending,
    }
}
