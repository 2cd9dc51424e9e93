//! The signed record of an outcome: an in-toto Statement, signed in the transaction
//! that decides.

use serde_json::{Value, json};

use super::commit::Failure;
use super::view::vote_view;
use super::{Doc, Engine};
use crate::core::audit::record::{PREDICATE_TYPE, STATEMENT_TYPE};
use crate::core::duration::rfc3339;
use crate::store::{RequestRow, Tx, VoteRow};

impl Engine {
    pub(super) async fn put_record(
        &self,
        tx: &mut Tx,
        row: &RequestRow,
        votes: &[VoteRow],
        now: i64,
    ) -> Result<(), Failure> {
        let doc: Doc = serde_json::from_str(&row.doc)?;
        let mut statement = self.statement(row, &doc, votes, now);
        if let Some((seq, _)) = &doc.decision_event {
            // The decision's entry, kept in the request (a consumption reuses it), if it
            // still proves what it says: it came back from the database, which is not trusted.
            let kept = doc.decision_log.clone().filter(|log| {
                statement["predicate"]["log"] = log.clone();
                let held = crate::core::log::entry::check(&statement["predicate"], &self.keys.verifying_key(), &[]);
                if let Err(e) = &held {
                    tracing::warn!(request = %row.id, error = %e, "the kept log entry does not hold; proving the decision again");
                }
                held.is_ok()
            });
            statement["predicate"]["log"] = match kept {
                Some(log) => log,
                None => self.record_log(tx, *seq, now).await?,
            };
        }
        let env = serde_json::to_string(&self.keys.sign(&statement))?;
        Ok(tx.put_record(&row.id, &env, now).await?)
    }

    /// The in-toto Statement of a request's outcome.
    pub fn statement(&self, row: &RequestRow, doc: &Doc, votes: &[VoteRow], now: i64) -> Value {
        let mut subject = Vec::new();
        if !doc.context.commit.is_empty() {
            subject.push(json!({
                "name": format!("git+{}", if doc.context.repository.is_empty() { "unknown" } else { &doc.context.repository }),
                "digest": {"gitCommit": doc.context.commit},
            }));
        }
        for a in &doc.artifacts {
            let hexd = a.strip_prefix("sha256:").unwrap_or(a);
            subject.push(json!({"name": a, "digest": {"sha256": hexd}}));
        }
        let mut statement = json!({
            "_type": STATEMENT_TYPE,
            "subject": subject,
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "request": {
                    "id": row.id,
                    "url": self.request_url(&row.id),
                    "opened_by": row.opened_by,
                    "context": doc.context,
                    "summary": doc.summary,
                    "requester": doc.requesters,
                    "requester_sources": doc.requester_sources,
                    "verified_claims": doc.verified,
                    "created_at": rfc3339(row.created_at),
                },
                "policy": {
                    "rule": doc.rule.name,
                    "digest": doc.policy_digest,
                    "requirements": doc.requirements,
                },
                "votes": votes.iter().map(vote_view).collect::<Vec<_>>(),
                "escalations": doc.escalations.iter().map(|e| json!({
                    "step": e.step, "at": rfc3339(e.at), "add_groups": e.add_groups, "added": e.added, "notified": e.notified,
                })).collect::<Vec<_>>(),
                "outcome": {
                    "status": row.status,
                    "decided_at": row.decided_at.map(rfc3339),
                    "decided_by": doc.decided_by,
                    "reason": doc.reason,
                    "consumed_at": row.consumed_at.map(rfc3339),
                },
                "validity": {
                    "expires_at": rfc3339(row.expires_at),
                    "approval_expires_at": row.approval_expires_at.map(rfc3339),
                },
                "audit": doc.decision_event.as_ref().map(|(seq, hash)| json!({"seq": seq, "hash": hash})),
                "issued_at": rfc3339(now),
                "server": self.public_url,
                "signed_by": self.keys.keyid,
            }
        });
        // Break-glass and review records say so; other records stay as they were.
        if let Some(b) = &doc.break_glass {
            statement["predicate"]["break_glass"] = json!(b);
        }
        if let Some(of) = &doc.review_of {
            statement["predicate"]["request"]["kind"] = json!(doc.kind);
            statement["predicate"]["request"]["review_of"] = json!(of);
        }
        // Only when there are some: records of requests without fields stay as they were.
        if !doc.fields.is_empty() {
            statement["predicate"]["request"]["fields"] = json!(doc.fields);
        }
        // The evidence checks' results, when the rule had checks.
        if !doc.checks.is_empty() {
            statement["predicate"]["checks"] = json!(doc.checks);
        }
        if let Some(c) = &doc.covered_by {
            statement["predicate"]["request"]["covered_by"] = json!(c);
        }
        if let Some(n) = &doc.superseded_by {
            statement["predicate"]["outcome"]["superseded_by"] = json!(n);
        }
        statement
    }
}
