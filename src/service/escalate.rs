//! Escalation steps taken on a pending request. The people a step adds may let the
//! approvals already cast meet every requirement: then the step approves the request in
//! its own transaction, as a vote would (`core::decide::State::escalate`).

use serde_json::json;

use super::commit::Failure;
use super::{Doc, Engine, Escalation, deadline_of};
use crate::core::api::RequestView;
use crate::core::decide::{State, Status};
use crate::store::{AuditDraft, RequestRow, VoteRow};

impl Engine {
    /// Takes the escalation steps `due` on a pending request, in one transaction: the
    /// steps go into its document (so none is taken twice), each gets an `escalated`
    /// audit event, and the members of its `notify` groups an `escalated` notification.
    /// `state` is the request's verified state before the steps. When the steps make the
    /// approvals cast meet every requirement, the request is approved here (an `approved`
    /// event decided by the escalation, the record, the requester told) instead.
    pub(super) async fn escalate(
        &self,
        mut row: RequestRow,
        votes: Vec<VoteRow>,
        mut doc: Doc,
        state: &State,
        due: &[usize],
        now: i64,
    ) -> Result<RequestView, Failure> {
        let policy = self.policy();
        let members = |groups: &[String], skip: &[String]| {
            let mut out: Vec<String> = Vec::new();
            for g in groups {
                for m in policy.groups.get(g).into_iter().flatten() {
                    if !out.contains(m) && !skip.contains(m) {
                        out.push(m.clone());
                    }
                }
            }
            out
        };
        let stages_before = self.stages_before(&row, &doc, &votes)?;
        let mut tx = self.store.begin().await?;
        row.version += 1;
        let mut added: Vec<String> = Vec::new();
        for &step in due {
            let Some(e) = doc.rule.escalate.get(step).cloned() else {
                continue;
            };
            let taken = Escalation {
                step,
                at: now,
                added: members(&e.add_groups, &[]),
                notified: members(&e.notify, &doc.requesters),
                add_groups: e.add_groups.clone(),
            };
            tx.append_audit(&AuditDraft {
                at: now,
                request_id: row.id.clone(),
                kind: "escalated".into(),
                actor: "timer".into(),
                data: json!({
                    "step": step, "after": e.after, "add_groups": e.add_groups, "added": taken.added,
                    "notify": e.notify, "notified": taken.notified,
                }),
            })
            .await?;
            added.extend(taken.added.iter().cloned());
            doc.escalations.push(taken);
        }
        let next = state.escalate(&added, now);
        if next.status == Status::Approved {
            return self
                .approve_by_escalation(tx, row, votes, doc, state, &added, next, now)
                .await;
        }
        row.doc = serde_json::to_string(&doc)?;
        tx.update_request(&row, deadline_of(Status::Pending, &row, &doc))
            .await?;
        if let Some(b) = &stages_before {
            self.queue_stages_opened(&mut tx, b, &row, &doc, &votes, now).await?;
        }
        self.commit(tx, &row, &votes, Some(crate::notify::Event::Escalated), now)
            .await?;
        self.timer_poke.notify_one();
        self.publish(&row);
        Ok(self.view(&row, &votes)?)
    }
}

impl Engine {
    /// Ends an escalation whose added voters make the approvals already cast enough: the
    /// `approved` outcome event (decided by the escalation, naming the approvers who count),
    /// its place in the log, the signed record and the requester's `decided` notification,
    /// in the escalation's transaction `tx`.
    #[allow(clippy::too_many_arguments)]
    async fn approve_by_escalation(
        &self,
        mut tx: crate::store::Tx,
        mut row: RequestRow,
        votes: Vec<VoteRow>,
        mut doc: Doc,
        state: &State,
        added: &[String],
        next: crate::core::decide::Next,
        now: i64,
    ) -> Result<RequestView, Failure> {
        let mut after = state.clone();
        after.extra_voters.extend(added.iter().cloned());
        let mut approvers: Vec<String> = after.assign().into_iter().flatten().collect();
        approvers.sort();
        row.status = Status::Approved;
        row.approval_expires_at = next.approval_expires_at;
        row.decided_at = Some(now);
        doc.decided_by = Some(format!("escalation ({})", approvers.join(", ")));
        doc.reason =
            Some("an escalation step added voters who let the approvals already cast meet every requirement".into());
        let d = tx
            .append_audit(&AuditDraft {
                at: now,
                request_id: row.id.clone(),
                kind: "approved".into(),
                actor: "timer".into(),
                data: json!({
                    "decided_by": doc.decided_by, "reason": doc.reason,
                    "via": "escalation", "approvers": approvers,
                }),
            })
            .await?;
        let seq = d.0;
        doc.decision_event = Some(d);
        doc.decision_log = Some(self.record_log(&mut tx, seq, now).await?);
        row.doc = serde_json::to_string(&doc)?;
        tx.update_request(&row, deadline_of(Status::Approved, &row, &doc))
            .await?;
        self.put_record(&mut tx, &row, &votes, now).await?;
        self.commit(tx, &row, &votes, Some(crate::notify::Event::Decided), now)
            .await?;
        self.metrics.decided(row.status, now - row.created_at);
        self.timer_poke.notify_one();
        self.publish(&row);
        Ok(self.view(&row, &votes)?)
    }
}
