//! The write path of every command: read, decide, compare-and-set, retry; one
//! transaction per change with its vote, audit events, record and notifications.

use serde_json::json;

use super::error::{AppError, Result};
use super::{Doc, Engine, MAX_ATTEMPTS, deadline_of, doc_of};
use crate::core::api::RequestView;
use crate::core::decide::{Next, Refusal, State, Status};
use crate::store::{AuditDraft, RequestRow, StoreError, Tx, VoteRow};

impl Engine {
    /// Read, decide, compare-and-set, retry. `decide` returns the next state, the vote
    /// to store, the audit event, and who decided and why if this decides.
    #[allow(clippy::type_complexity)]
    pub(super) async fn transition(
        &self,
        id: &str,
        now_fn: fn() -> i64,
        actor: &str,
        decide: impl Fn(&State, i64) -> Result<(Next, Option<VoteRow>, AuditDraft, Option<String>, Option<String>), Refusal>,
    ) -> Result<RequestView, Rejected> {
        for _ in 0..MAX_ATTEMPTS {
            let now = now_fn();
            let (row, votes) = self.load(id).await?;
            let doc = doc_of(&row)?;
            let state = self.verified_state(&row, &doc, &votes).await?;
            if state.tick(now).is_some() {
                // Due to expire: record that first, then refuse.
                self.expire(id, now).await?;
                let (r, _) = self.load(id).await?;
                return Err(Rejected::Refused(Refusal::Expired, Some(r.status)));
            }
            let escalation_due = state.status == Status::Pending
                && !crate::core::decide::due_escalations(
                    &doc.escalation_afters(),
                    &doc.escalations_done(),
                    row.created_at,
                    row.expires_at,
                    now,
                )
                .is_empty();
            if escalation_due {
                // An escalation is due and the timer has not taken it yet: take it first,
                // so a voter it adds is never refused.
                self.expire(id, now).await?;
                continue;
            }
            match decide(&state, now) {
                Err(refusal) => {
                    self.audit_refusal(id, actor, &refusal, now).await;
                    return Err(Rejected::Refused(refusal, Some(row.status)));
                }
                Ok((next, vote, event, by, reason)) => {
                    let decides = next.status != state.status;
                    let (by, reason) = if decides && next.status != Status::Consumed {
                        (by, reason)
                    } else {
                        (doc.decided_by.clone(), doc.reason.clone())
                    };
                    match self.write(row, votes, doc, next, vote, event, by, reason, now).await {
                        Ok(v) => return Ok(v),
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => return Err(AppError::from(e).into()),
                    }
                }
            }
        }
        Err(AppError::Unavailable("too much contention on this request; retry".into()).into())
    }

    /// One transaction: the new row state (CAS), the vote, the audit events, the record.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write(
        &self,
        mut row: RequestRow,
        mut votes: Vec<VoteRow>,
        mut doc: Doc,
        next: Next,
        vote: Option<VoteRow>,
        event: AuditDraft,
        decided_by: Option<String>,
        reason: Option<String>,
        now: i64,
    ) -> Result<RequestView, Failure> {
        let before = row.status;
        let stages_before = self.stages_before(&row, &doc, &votes)?;
        let mut tx = self.store.begin().await?;
        row.version += 1;
        row.status = next.status;
        row.approval_expires_at = next.approval_expires_at;
        let decides = before != row.status;
        if decides && next.status == Status::Consumed {
            row.consumed_at = Some(now);
        } else if decides {
            row.decided_at = Some(now);
            doc.decided_by = decided_by;
            doc.reason = reason;
        }
        if let Some(v) = &vote {
            tx.insert_vote(&row.id, v).await?;
            votes.push(v.clone());
        }
        let ev = tx.append_audit(&event).await?;
        if decides && matches!(next.status, Status::Approved | Status::Denied) {
            // The vote event decided it; a separate event names the outcome.
            let d = tx
                .append_audit(&AuditDraft {
                    at: now,
                    request_id: row.id.clone(),
                    kind: next.status.as_str().into(),
                    actor: event.actor.clone(),
                    data: json!({"decided_by": doc.decided_by, "reason": doc.reason}),
                })
                .await?;
            doc.decision_event = Some(d);
        } else if decides && next.status != Status::Consumed {
            // Expiry and cancelation are outcomes; using an approval is not a new decision.
            doc.decision_event = Some(ev);
        }
        if decides
            && next.status != Status::Consumed
            && let Some((seq, _)) = doc.decision_event
        {
            doc.decision_log = Some(self.record_log(&mut tx, seq, now).await?);
        }
        row.doc = serde_json::to_string(&doc)?;
        tx.update_request(&row, deadline_of(next.status, &row, &doc)).await?;
        if decides {
            self.put_record(&mut tx, &row, &votes, now).await?;
        }
        if let Some(b) = &stages_before {
            self.queue_stages_opened(&mut tx, b, &row, &doc, &votes, now).await?;
        }
        let event = (decides && before == Status::Pending).then_some(crate::notify::Event::Decided);
        self.commit(tx, &row, &votes, event, now).await?;
        if decides && before == Status::Pending {
            self.metrics.decided(row.status, now - row.created_at);
        }
        if decides {
            self.timer_poke.notify_one();
        }
        self.publish(&row);
        Ok(self.view(&row, &votes)?)
    }

    /// Ends a write: queues the notifications `event` calls for in the same transaction,
    /// announces the change to other replicas (delivered on commit), commits, and wakes
    /// the notification worker if anything was queued.
    pub(super) async fn commit(
        &self,
        mut tx: Tx,
        row: &RequestRow,
        votes: &[VoteRow],
        event: Option<crate::notify::Event>,
        now: i64,
    ) -> Result<(), Failure> {
        if let Some(e) = event {
            self.enqueue_notifications(&mut tx, e, row, votes, now).await?;
        }
        if event == Some(crate::notify::Event::Decided) {
            // The job a platform holds is released (or not) on the outcome.
            self.queue_release(&mut tx, row, now).await?;
        }
        // A checkpoint signed in this transaction may have queued notifications too.
        let queued = tx.queued_notifications();
        tx.notify_change(&row.id, row.status, row.version).await?;
        tx.commit().await?;
        if queued {
            self.notify.queued();
        }
        Ok(())
    }
}

/// Why a transition did not happen: the machine refused it, or something failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum Rejected {
    /// The refusal, and the request's status when it was refused.
    #[error("{0}")]
    Refused(Refusal, Option<Status>),
    #[error(transparent)]
    Failed(#[from] AppError),
}

/// Why a write failed: the store (a lost compare-and-set is retried), the service, or a
/// document that would not serialise.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("request document: {0}")]
    Json(#[from] serde_json::Error),
}

impl Failure {
    /// Whether another writer got there first, so the whole read-decide-write is redone.
    pub(super) fn is_retryable(&self) -> bool {
        matches!(self, Failure::Store(e) if e.is_retryable())
    }
}

impl From<Failure> for AppError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Store(e) => e.into(),
            Failure::App(e) => e,
            Failure::Json(e) => AppError::Internal(e.into()),
        }
    }
}
