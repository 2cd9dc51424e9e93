//! Escalation steps taken on a pending request.

use serde_json::json;

use super::commit::Failure;
use super::{Doc, Engine, Escalation, deadline_of};
use crate::core::api::RequestView;
use crate::core::decide::Status;
use crate::store::{AuditDraft, RequestRow, VoteRow};

impl Engine {
    /// Takes the escalation steps `due` on a pending request, in one transaction: the
    /// steps go into its document (so none is taken twice), each gets an `escalated`
    /// audit event, and the members of its `notify` groups an `escalated` notification.
    pub(super) async fn escalate(
        &self,
        mut row: RequestRow,
        votes: Vec<VoteRow>,
        mut doc: Doc,
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
        let mut tx = self.store.begin().await?;
        row.version += 1;
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
            doc.escalations.push(taken);
        }
        row.doc = serde_json::to_string(&doc)?;
        tx.update_request(&row, deadline_of(Status::Pending, &row, &doc))
            .await?;
        self.commit(tx, &row, &votes, Some(crate::notify::Event::Escalated), now)
            .await?;
        self.timer_poke.notify_one();
        self.publish(&row);
        Ok(self.view(&row, &votes)?)
    }
}
