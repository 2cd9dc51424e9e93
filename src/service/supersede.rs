//! `supersede: true`: a new request cancels the older pending ones of the same
//! repository and environment, each `canceled` with `superseded_by` the new one, so a
//! waiting run stops holding its concurrency group and its gate exits 1 saying so.

use serde_json::json;

use super::error::{AppError, Result};
use super::{Doc, Engine, MAX_ATTEMPTS, doc_of};
use crate::core::decide::Status;
use crate::core::scope::{Candidate, supersedes};
use crate::store::{AuditDraft, RequestRow};

impl Engine {
    /// Right after `new` opened under a rule with `supersede`. Failures are logged: the
    /// new request is open either way, and an older one left pending still times out.
    pub(super) async fn supersede_older(&self, new: &RequestRow, doc: &Doc, now: i64) {
        if let Err(e) = self.supersede_inner(new, doc, now).await {
            tracing::warn!(request = %new.id, error = %e, "older requests not superseded");
        }
    }

    async fn supersede_inner(&self, new: &RequestRow, doc: &Doc, now: i64) -> Result<()> {
        let rows = self
            .store
            .live_in(&new.repository, &new.environment, &[Status::Pending], i64::MIN)
            .await?;
        let me = candidate(new, doc);
        for old in rows {
            let old_doc = doc_of(&old)?;
            // A break-glass review shares its change's repository and environment, but a
            // newer deploy does not make it pointless: the review is owed regardless.
            if !old_doc.kind.is_change() {
                continue;
            }
            if supersedes(&me, &candidate(&old, &old_doc)) {
                self.supersede_one(&old.id, new, now).await?;
            }
        }
        Ok(())
    }

    async fn supersede_one(&self, id: &str, new: &RequestRow, now: i64) -> Result<()> {
        let reason = format!("superseded by {} ({})", new.id, self.request_url(&new.id));
        for _ in 0..MAX_ATTEMPTS {
            let (row, votes) = self.load(id).await?;
            let mut doc = doc_of(&row)?;
            let state = self.verified_state(&row, &doc, &votes).await?;
            let Ok(next) = state.cancel(now) else {
                // Decided or due to expire meanwhile: nothing to supersede.
                return Ok(());
            };
            doc.superseded_by = Some(new.id.clone());
            let event = AuditDraft {
                at: now,
                request_id: id.to_string(),
                kind: "canceled".into(),
                actor: new.opened_by.clone(),
                data: json!({"reason": reason, "superseded_by": new.id}),
            };
            let by = format!("request {}", new.id);
            match self
                .write(row, votes, doc, next, None, event, Some(by), Some(reason.clone()), now)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable("too much contention; retry".into()))
    }
}

fn candidate<'a>(row: &'a RequestRow, doc: &'a Doc) -> Candidate<'a> {
    Candidate {
        id: &row.id,
        created_at: row.created_at,
        status: row.status,
        repository: &row.repository,
        environment: &row.environment,
        scope: doc.scope.as_deref(),
    }
}
