//! Stages on the write path: a change that opens a stage of a rule with `stages` (its
//! stages before are now met) tells that stage's approvers, in the change's transaction.

use super::commit::Failure;
use super::error::Result;
use super::{Doc, Engine};
use crate::core::decide::{State, Status, newly_opened};
use crate::notify::{Event, Recipient, drafts};
use crate::store::{AuditDraft, RequestRow, Tx, VoteRow};

impl Engine {
    /// The machine's state before a change, kept to see which stages the change opens;
    /// `None` for a request without stages (nothing to compare).
    pub(super) fn stages_before(&self, row: &RequestRow, doc: &Doc, votes: &[VoteRow]) -> Result<Option<State>> {
        if row.status != Status::Pending || doc.requirements.iter().all(|r| r.stage.is_none()) {
            return Ok(None);
        }
        Ok(Some(self.state(row, doc, votes)?))
    }

    /// Records, in `tx`, one `stage_opened` audit event and queues one `stage_opened`
    /// notification per stage open in `row` (as it is about to commit, with `votes`) that
    /// was not open in `before`, to the people who may vote for that stage (never a
    /// requester, nobody who voted). Its deliveries are keyed by the stage's position, so
    /// each stage is sent once.
    pub(super) async fn queue_stages_opened(
        &self,
        tx: &mut Tx,
        before: &State,
        row: &RequestRow,
        doc: &Doc,
        votes: &[VoteRow],
        now: i64,
    ) -> Result<(), Failure> {
        if row.status != Status::Pending {
            return Ok(());
        }
        let after = self.state(row, doc, votes)?;
        let opened = newly_opened(before, &after);
        for stage in &opened {
            // In the log too: when each stage's approvers were first asked is part of the
            // evidence that the chain ran in order.
            tx.append_audit(&AuditDraft {
                at: now,
                request_id: row.id.clone(),
                kind: "stage_opened".into(),
                actor: "policy".into(),
                data: serde_json::json!({"stage": stage}),
            })
            .await?;
            let text = format!("stage `{stage}` is open and waits for its approvers");
            self.report_status(tx, row, doc, &format!("stage_opened-{stage}"), &text, now)
                .await?;
        }
        let config = self.config();
        let Some(n) = &config.notify else {
            return Ok(());
        };
        if opened.is_empty() {
            return Ok(());
        }
        let view = self.view(row, votes)?;
        let stages: Vec<Option<String>> = after.stages().into_iter().map(|s| s.name).collect();
        for stage in opened {
            let mut people: Vec<&String> = Vec::new();
            for r in view.requirements.iter().filter(|r| r.stage.as_ref() == Some(&stage)) {
                for m in &r.may_vote {
                    if !people.contains(&m) {
                        people.push(m);
                    }
                }
            }
            let recipients: Vec<Recipient> = people
                .iter()
                .filter_map(|p| config.user(p))
                .map(|u| Recipient {
                    name: u.name.clone(),
                    email: u.email.clone(),
                })
                .collect();
            let index = stages
                .iter()
                .position(|s| s.as_ref() == Some(&stage))
                .unwrap_or_default();
            let (old, new) = (
                format!("{}:stage_opened:", view.id),
                format!("{}:stage_opened-{index}:", view.id),
            );
            for mut d in drafts(n, &self.public_url, Event::StageOpened, &view, &recipients, now) {
                d.key = d.key.replacen(&old, &new, 1);
                let mut payload: serde_json::Value = serde_json::from_str(&d.payload)?;
                payload["delivery"] = serde_json::json!(d.key);
                payload["stage"] = serde_json::json!(stage);
                d.payload = payload.to_string();
                tx.enqueue_notification(&d).await?;
            }
        }
        Ok(())
    }
}
