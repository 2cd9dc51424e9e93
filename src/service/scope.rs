//! `approval_scope: run`: the gates of one run attempt share one approval. The first
//! request of a scope is the one approvers vote on; a later one opens `covered_by` it
//! and follows its decision, each in its own transaction with an automatic vote that
//! names the covering request's decision event (which `derive` checks), and is consumed
//! by its own gate. The pure rules are `core::scope`.

use serde_json::json;

use super::commit::Failure;
use super::error::{AppError, Result};
use super::open::AutoVote;
use super::{Doc, Engine, MAX_ATTEMPTS, doc_of};
use crate::core::decide::{Next, Status};
use crate::core::policy::{ApprovalScope, Rule};
use crate::core::scope::{Covering, Follow, VIA, covered_ttl, follow, scope_key};
use crate::store::{AuditDraft, RequestRow, VoteRow};

/// The request a new one of the same scope follows, as found when it opens.
pub(super) struct Cover {
    pub row: RequestRow,
    pub doc: Doc,
}

impl Engine {
    /// The scope of a request opening under `rule` (`None` unless `approval_scope: run`
    /// and the context names a run).
    pub(super) fn approval_scope_of(&self, rule: &Rule, doc: &Doc) -> Option<String> {
        (rule.approval_scope == ApprovalScope::Run)
            .then(|| scope_key(&doc.context, &doc.artifacts, &rule.name))
            .flatten()
    }

    /// The request of `doc`'s scope that a new request follows: an approval still in its
    /// window, else one still pending. Only a request voted on by people (not itself
    /// covered), under the same policy, requirements and requesters, covers: anything
    /// else asks again.
    pub(super) async fn covering_for(&self, doc: &Doc, now: i64) -> Result<Option<Cover>> {
        let Some(scope) = &doc.scope else {
            return Ok(None);
        };
        // No approval outlasts its request's timeout plus its validity window.
        let since = now
            .saturating_sub(doc.rule.timeout().millis())
            .saturating_sub(doc.rule.approval_ttl().millis());
        let rows = self
            .store
            .live_in(
                &doc.context.repository,
                &doc.context.environment,
                &[Status::Pending, Status::Approved, Status::Consumed],
                since,
            )
            .await?;
        let mut pending = None;
        for row in rows {
            let d = doc_of(&row)?;
            if d.scope.as_ref() != Some(scope) || d.covered_by.is_some() || !shares(&d, doc) {
                continue;
            }
            match row.status {
                Status::Pending if pending.is_none() => pending = Some(Cover { row, doc: d }),
                Status::Approved | Status::Consumed if covered_ttl(now, 0, row.approval_expires_at).is_some() => {
                    return Ok(Some(Cover { row, doc: d }));
                }
                _ => {}
            }
        }
        Ok(pending)
    }

    /// At open, in the transaction that creates the request: approved at once when the
    /// covering request already is, its approval ending no later than that one's.
    pub(super) async fn cover_at_open(
        &self,
        tx: &mut crate::store::Tx,
        row: &mut RequestRow,
        doc: &mut Doc,
        votes: &mut Vec<VoteRow>,
        cover: &Cover,
        now: i64,
    ) -> Result<(), Failure> {
        if !matches!(cover.row.status, Status::Approved | Status::Consumed) {
            return Ok(());
        }
        let Some(ttl) = covered_ttl(now, doc.approval_ttl_ms, cover.row.approval_expires_at) else {
            return Ok(());
        };
        let covering = covering_of(cover)?;
        doc.approval_ttl_ms = ttl;
        let auto = AutoVote {
            voter: format!("scope:{}", cover.row.id),
            approve: true,
            reason: reason_for(Follow::Approve, cover),
            via: VIA,
            vote_data: json!({ "covering": covering }),
            decided_by: decided_by(cover),
            outcome_data: json!({"covered_by": cover.row.id}),
        };
        self.decide_at_open(tx, row, doc, votes, auto, now).await
    }

    /// After `decided` (a request voted on by people) changed: every pending request of
    /// its scope follows it. Failures are logged; a covered request's next wait catches up.
    pub(super) async fn follow_scope(&self, decided: &RequestRow, now: i64) {
        if let Err(e) = self.follow_scope_inner(decided, now).await {
            tracing::warn!(request = %decided.id, error = %e, "covered requests not decided yet; their next read catches up");
        }
    }

    async fn follow_scope_inner(&self, decided: &RequestRow, now: i64) -> Result<()> {
        let doc = doc_of(decided)?;
        let (Some(scope), None, Some(how)) = (doc.scope.clone(), &doc.covered_by, follow(decided.status)) else {
            return Ok(());
        };
        // Held while following, as while opening: a request of the scope opening now
        // either sees this decision or is committed before the listing below.
        let _held = self.scope_lock.lock().await;
        let cover = Cover {
            row: decided.clone(),
            doc,
        };
        let rows = self
            .store
            .live_in(&decided.repository, &decided.environment, &[Status::Pending], i64::MIN)
            .await?;
        for row in rows {
            let d = doc_of(&row)?;
            // Its own covered requests, and (two opened at once on two replicas) an
            // uncovered twin of the same scope, which one decision settles too.
            let follows = row.id != decided.id
                && d.scope.as_ref() == Some(&scope)
                && match &d.covered_by {
                    Some(c) => c == &decided.id,
                    None => how != Follow::Cancel && shares(&d, &cover.doc),
                };
            if follows {
                self.follow_one(&row.id, &cover, how, now).await?;
            }
        }
        Ok(())
    }

    /// A covered request whose covering one has ended while nothing followed it (a crash
    /// between the two transactions): follows it now. Called before a gate waits.
    pub(super) async fn catch_up_scope(&self, id: &str, now: i64) -> Result<()> {
        let (row, _) = self.load(id).await?;
        if row.status != Status::Pending {
            return Ok(());
        }
        let Some(cov) = doc_of(&row)?.covered_by else {
            return Ok(());
        };
        let (crow, _) = self.load(&cov).await?;
        if let Some(how) = follow(crow.status) {
            let _held = self.scope_lock.lock().await;
            let cover = Cover {
                doc: doc_of(&crow)?,
                row: crow,
            };
            self.follow_one(id, &cover, how, now).await?;
        }
        Ok(())
    }

    /// One covered request follows `cover`: an automatic vote naming its decision and the
    /// outcome, or a cancelation when it expired or was canceled.
    async fn follow_one(&self, id: &str, cover: &Cover, how: Follow, now: i64) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let (row, votes) = self.load(id).await?;
            let mut doc = doc_of(&row)?;
            let state = self.verified_state(&row, &doc, &votes).await?;
            if state.status != Status::Pending {
                return Ok(());
            }
            let ttl = covered_ttl(now, doc.approval_ttl_ms, cover.row.approval_expires_at);
            // An approval that has lapsed meanwhile covers nothing more.
            let how = if how == Follow::Approve && ttl.is_none() {
                Follow::Cancel
            } else {
                how
            };
            doc.covered_by = Some(cover.row.id.clone());
            let mut reason = reason_for(how, cover);
            // The run's gates go together: superseded with the request that covered them.
            let superseded_by = cover.doc.superseded_by.clone().filter(|_| how == Follow::Cancel);
            if let Some(n) = &superseded_by {
                reason = format!("superseded by {n} ({})", self.request_url(n));
                doc.superseded_by = Some(n.clone());
            }
            let (next, vote, event) = if how == Follow::Cancel {
                let next = state
                    .cancel(now)
                    .map_err(|r| AppError::Internal(anyhow::anyhow!("{r}")))?;
                let event = AuditDraft {
                    at: now,
                    request_id: id.to_string(),
                    kind: "canceled".into(),
                    actor: "scope".into(),
                    data: json!({"reason": reason, "covered_by": cover.row.id, "superseded_by": superseded_by}),
                };
                (next, None, event)
            } else {
                let approve = how == Follow::Approve;
                let covering = covering_of(cover)?;
                let vote = VoteRow {
                    voter: format!("scope:{}", cover.row.id),
                    approve,
                    reason: Some(reason.clone()),
                    at: now,
                    via: VIA.into(),
                    meta: None,
                };
                let event = AuditDraft {
                    at: now,
                    request_id: id.to_string(),
                    kind: "vote".into(),
                    actor: vote.voter.clone(),
                    data: json!({"decision": if approve { "approve" } else { "deny" }, "reason": reason,
                                 "via": VIA, "automatic": true, "covering": covering}),
                };
                let next = Next {
                    status: if approve { Status::Approved } else { Status::Denied },
                    approval_expires_at: ttl.filter(|_| approve).map(|t| now.saturating_add(t)),
                };
                (next, Some(vote), event)
            };
            let by = if how == Follow::Cancel {
                "scope".to_string()
            } else {
                decided_by(cover)
            };
            match self
                .write(row, votes, doc, next, vote, event, Some(by), Some(reason), now)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable("too much contention; retry".into()))
    }

    /// Checks the covering decisions a request's scope votes name against the covering
    /// requests' own signed events.
    pub(super) async fn check_covering(&self, named: &[Covering]) -> std::result::Result<(), String> {
        let keys = self.event_keys();
        for c in named {
            let rows = self.store.audit_for(&c.id).await.map_err(|e| e.to_string())?;
            if rows.iter().any(|r| !r.hash_holds() || !r.signed_by_one_of(&keys)) {
                return Err(format!(
                    "the covering request {}'s events are not as this server signed them",
                    c.id
                ));
            }
            let events: Vec<(i64, &str, &str, serde_json::Value)> = rows
                .iter()
                .map(|r| {
                    let data = serde_json::from_str(&r.data).unwrap_or_default();
                    (r.seq, r.kind.as_str(), r.hash.as_str(), data)
                })
                .collect();
            crate::core::scope::check_covering_events(c, &events)?;
        }
        Ok(())
    }
}

/// What a covered request's vote names: the covering request's scope and decision event.
fn covering_of(cover: &Cover) -> Result<Covering> {
    let (Some(scope), Some((seq, hash))) = (&cover.doc.scope, &cover.doc.decision_event) else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "request {} covers a scope but has no decision event",
            cover.row.id
        )));
    };
    let decision = if cover.row.status == Status::Denied {
        "denied"
    } else {
        "approved"
    };
    Ok(Covering {
        id: cover.row.id.clone(),
        scope: scope.clone(),
        decision: decision.into(),
        event_seq: *seq,
        event_hash: hash.clone(),
    })
}

fn reason_for(how: Follow, cover: &Cover) -> String {
    let id = &cover.row.id;
    match how {
        Follow::Approve => format!("approved with request {id} of the same run (approval_scope: run)"),
        Follow::Deny => format!(
            "denied with request {id} of the same run (approval_scope: run): {}",
            cover.doc.reason.as_deref().unwrap_or("denied")
        ),
        Follow::Cancel => format!(
            "request {id}, which covered this one (approval_scope: run), is {}",
            cover.row.status
        ),
    }
}

fn decided_by(cover: &Cover) -> String {
    match &cover.doc.decided_by {
        Some(b) => format!("{b} on request {}", cover.row.id),
        None => format!("request {}", cover.row.id),
    }
}

/// Whether one approval may stand for both: the same policy, requirements and
/// requesters (so nobody approves for a request they asked for).
fn shares(a: &Doc, b: &Doc) -> bool {
    let same_set = |x: &[String], y: &[String]| x.iter().all(|v| y.contains(v)) && y.iter().all(|v| x.contains(v));
    a.policy_digest == b.policy_digest && a.requirements == b.requirements && same_set(&a.requesters, &b.requesters)
}
