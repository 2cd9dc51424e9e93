//! The `promotion` check: what this request ships was approved and used in an earlier
//! environment lately. Each earlier request is checked against its signed events before
//! it counts, so a row edited in the database cannot stand in for an approval.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::{Doc, Engine, doc_of};
use crate::core::decide::Status;
use crate::core::decide::checks::Answer;
use crate::core::duration::rfc3339;
use crate::core::policy::checks::Promotion;

/// How many recent requests of the earlier environment are looked at.
const LOOK_AT: i64 = 500;

impl Engine {
    /// Approve when every artifact digest of the request (its commit when it has none)
    /// was approved and consumed in `p.from` within `p.within` of `now`, in the same
    /// repository; abstain otherwise. The evidence names each request and its record.
    pub(super) async fn promotion(&self, doc: &Doc, p: &Promotion, now: i64) -> (Answer, String, Value) {
        let by_commit = doc.artifacts.is_empty();
        let wanted: Vec<String> = if by_commit {
            if doc.context.commit.is_empty() {
                return (
                    Answer::Abstain,
                    "the request names neither artifacts nor a commit".into(),
                    json!({"from": p.from}),
                );
            }
            vec![doc.context.commit.clone()]
        } else {
            doc.artifacts.clone()
        };
        match self.promoted(doc, p, now, by_commit, &wanted).await {
            Err(e) => (
                Answer::Error,
                format!("cannot read earlier approvals: {e}"),
                json!({"from": p.from}),
            ),
            Ok((found, missing)) => {
                let evidence = json!({"from": p.from, "within": p.within, "promoted": found, "missing": missing});
                if missing.is_empty() {
                    let each: Vec<String> = found
                        .iter()
                        .map(|f| {
                            format!(
                                "{} in {}",
                                f["subject"].as_str().unwrap_or(""),
                                f["request"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    let reason = format!(
                        "approved and used in {} within {}: {}",
                        p.from,
                        p.within,
                        each.join(", ")
                    );
                    (Answer::Approve, reason, evidence)
                } else {
                    let reason = format!(
                        "no approval used in {} within {} for {}",
                        p.from,
                        p.within,
                        missing.join(", ")
                    );
                    (Answer::Abstain, reason, evidence)
                }
            }
        }
    }

    /// For each wanted subject, the newest consumed request of `p.from` that ships it
    /// (`{subject, request, record_sha256, consumed_at}`), and the subjects none ships.
    async fn promoted(
        &self,
        doc: &Doc,
        p: &Promotion,
        now: i64,
        by_commit: bool,
        wanted: &[String],
    ) -> super::super::error::Result<(Vec<Value>, Vec<String>)> {
        let since = now.saturating_sub(p.within.millis());
        let rows = self
            .store
            .consumed_since(&p.from, &doc.context.repository, since, LOOK_AT)
            .await?;
        let mut found = Vec::new();
        let mut missing = Vec::new();
        'subjects: for subject in wanted {
            for row in &rows {
                let Ok(earlier) = doc_of(row) else { continue };
                let ships = if by_commit {
                    earlier.context.commit == *subject
                } else {
                    earlier.artifacts.contains(subject)
                };
                if !ships {
                    continue;
                }
                let votes = self.store.votes(&row.id).await?;
                // A row its signed events do not bear out is not an approval.
                match self.verified_state(row, &earlier, &votes).await {
                    Ok(s) if s.status == Status::Consumed => {}
                    _ => continue,
                }
                let record = self.store.record(&row.id).await?;
                found.push(json!({
                    "subject": subject,
                    "request": row.id,
                    "record_sha256": record.map(|r| format!("sha256:{}", hex::encode(Sha256::digest(r.as_bytes())))),
                    "consumed_at": row.consumed_at.map(rfc3339),
                }));
                continue 'subjects;
            }
            missing.push(subject.clone());
        }
        Ok((found, missing))
    }
}
