//! Which notifications a change queues: the people an event is for, resolved against the
//! configured users, turned into outbox rows in the change's own transaction.

use super::commit::Failure;
use super::{Engine, doc_of};
use crate::notify::{Event, Recipient, drafts};
use crate::store::{RequestRow, Tx, VoteRow};

impl Engine {
    /// Queues, in `tx`, the notifications `event` on request `row` produces (in the state
    /// `row` is about to commit). `opened` goes to everyone who may vote, never to a
    /// requester; `decided` to the requester. Returns whether anything was queued; the
    /// caller wakes the worker (`notify.queued()`) once `tx` committed.
    pub(super) async fn enqueue_notifications(
        &self,
        tx: &mut Tx,
        event: Event,
        row: &RequestRow,
        votes: &[VoteRow],
        now: i64,
    ) -> Result<bool, Failure> {
        let config = self.config();
        let Some(n) = &config.notify else {
            return Ok(false);
        };
        let view = self.view(row, votes)?;
        // An escalation tells the members of its `notify` groups; its deliveries are
        // keyed by how many escalations the request has had, so each step is sent.
        let mut escalation = None;
        let people = match event {
            Event::Opened => view.approvers(),
            Event::Decided => view.requester.clone(),
            Event::Escalated => {
                let doc = doc_of(row)?;
                escalation = Some(doc.escalations.len());
                let mut people: Vec<String> = Vec::new();
                for e in doc.escalations.iter().filter(|e| e.at == now) {
                    for p in &e.notified {
                        if !people.contains(p) {
                            people.push(p.clone());
                        }
                    }
                }
                people
            }
            // Not about a request: queued by the log (`checkpoint_in`).
            Event::Checkpoint | Event::Delegation => return Ok(false),
            // Queued with the stage it is about (`stages.rs`).
            Event::StageOpened => return Ok(false),
            // Queued with its audience by `break_glass.rs`.
            Event::BreakGlass => return Ok(false),
        };
        let recipients: Vec<Recipient> = people
            .iter()
            .filter_map(|p| config.user(p))
            .map(|u| Recipient {
                name: u.name.clone(),
                email: u.email.clone(),
            })
            .collect();
        let mut queued = false;
        for mut d in drafts(n, &self.public_url, event, &view, &recipients, now) {
            if let Some(n) = escalation {
                let (old, new) = (format!("{}:escalated:", view.id), format!("{}:escalated-{n}:", view.id));
                d.payload = d.payload.replace(&old, &new);
                d.key = d.key.replacen(&old, &new, 1);
            }
            queued |= tx.enqueue_notification(&d).await?;
        }
        Ok(queued)
    }
}
