//! Opening a request: validation, the idempotent replay of the same run, policy
//! evaluation, and an automatic decision where the rule makes one.

use serde_json::json;

use super::commit::Failure;
use super::error::{AppError, ErrorCode, Result};
use super::validate::{new_id, normalise_requester, require_requester, run_identity, validate_create};
use super::{Doc, Engine, MAX_ATTEMPTS, deadline_of, doc_of};
use crate::auth::Principal;
use crate::auth::oidc::VerifiedIdentity;
use crate::core::api::{CreateRequest, RequestView};
use crate::core::decide::Status;
use crate::core::duration::{Dur, rfc3339};
use crate::core::policy::{AutoDecision, FieldRefusal};
use crate::store::{AuditDraft, RequestRow, VoteRow};

impl Engine {
    /// Opens a request, or returns the one already open for the same run (`false`).
    /// With an OIDC identity, the fields its token verified fill the context, and a body
    /// that contradicts one is refused (401) naming both values.
    pub async fn create(&self, who: &Principal, body: CreateRequest, now: i64) -> Result<(RequestView, bool)> {
        self.create_trusted(who, body, Trusted::default(), now).await
    }

    /// [`Engine::create`] with what the server itself vouches for (a webhook it checked):
    /// a release, and requesters beyond the context's.
    pub(super) async fn create_trusted(
        &self,
        who: &Principal,
        mut body: CreateRequest,
        trusted: Trusted,
        now: i64,
    ) -> Result<(RequestView, bool)> {
        let Principal::Pipeline {
            name: pipeline,
            verified,
        } = who
        else {
            return Err(AppError::Forbidden(
                ErrorCode::ApproverCannotRequest,
                "approver tokens cannot open requests; use a pipeline token".into(),
            ));
        };
        if let Some(v) = verified {
            v.apply(&mut body.context)
                .map_err(|e| AppError::Unauthorized(e.to_string()))?;
        }
        validate_create(&body)?;
        let given = normalise_requester(&mut body.context)?;
        require_requester(&body.context)?;
        self.check_scope(who, &body.context)?;
        let mut fingerprinted = json!({
            "context": body.context, "summary": body.summary, "artifacts": body.artifacts, "timeout": body.timeout,
        });
        // Only when given, so a request without fields keeps the fingerprint it always had.
        if !body.fields.is_empty() {
            fingerprinted["fields"] = json!(body.fields);
        }
        if let Some(b) = &body.break_glass {
            fingerprinted["break_glass"] = json!(b);
        }
        if let Some(r) = &body.release {
            fingerprinted["release"] = json!(r);
        }
        if let Some(r) = &trusted.release {
            fingerprinted["release"] = json!(r);
        }
        let fingerprint = crate::core::policy::digest(&crate::core::audit::canonical_bytes(&fingerprinted));
        // Keys are per opener: for an OIDC identity, its issuer and repository (or subject)
        // too, so two repositories under one issuer never replay each other's requests.
        let owner = match verified {
            None => pipeline.clone(),
            Some(v) => format!("{pipeline}@{}#{}", v.issuer, v.scope()).replace('|', "/"),
        };
        let key = match (&body.idempotency_key, run_identity(&body.context)) {
            (Some(k), _) => stored_key(&owner, k),
            (None, Some(run)) => format!("{owner}|run|{run}"),
            (None, None) => format!("{owner}|once|{}", uuid::Uuid::new_v4()),
        };
        for _ in 0..MAX_ATTEMPTS {
            if let Some(id) = self.store.find_by_key(&key).await? {
                let (row, votes) = self.load(&id).await?;
                let doc = doc_of(&row)?;
                if doc.fingerprint != fingerprint {
                    return Err(AppError::Conflict(
                        ErrorCode::IdempotencyMismatch,
                        format!(
                            "request {id} is already open for this run (key `{}`) with different details; use another idempotency key",
                            key.split('|').nth(2).unwrap_or("")
                        ),
                    ));
                }
                return Ok((self.view(&row, &votes)?, false));
            }
            match self
                .insert_new(
                    pipeline,
                    verified.as_deref(),
                    &body,
                    &trusted,
                    &given,
                    &key,
                    &fingerprint,
                    now,
                )
                .await
            {
                Ok(v) => return Ok((v, true)),
                // A concurrent create with the same key won: loop and replay it.
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(
            "too much contention opening this request; retry".into(),
        ))
    }

    /// `given` holds the requester fields that normalising changed, as sent (the record
    /// keeps them beside their normal form).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn insert_new(
        &self,
        pipeline: &str,
        verified: Option<&VerifiedIdentity>,
        body: &CreateRequest,
        trusted: &Trusted,
        given: &[(&'static str, String)],
        key: &str,
        fingerprint: &str,
        now: i64,
    ) -> Result<RequestView, Failure> {
        let ctx = &body.context;
        // One policy for the whole opening, even if a reload lands meanwhile.
        let policy = self.policy();
        let rule = policy.evaluate(ctx).cloned().ok_or_else(|| {
            AppError::Invalid(
                ErrorCode::NoMatchingRule,
                format!("no policy rule matches this request ({})", earlier_misses(&policy, ctx)),
            )
        })?;
        rule.check_fields(&body.fields).map_err(|e| {
            let code = match e {
                FieldRefusal::Missing { .. } => ErrorCode::MissingField,
                FieldRefusal::NoMatch { .. } => ErrorCode::InvalidField,
            };
            AppError::Invalid(code, e.to_string())
        })?;
        let mut timeout = rule.timeout();
        if let Some(t) = &body.timeout {
            let asked =
                Dur::parse(t).map_err(|e| AppError::Invalid(ErrorCode::InvalidTimeout, format!("timeout: {e}")))?;
            if asked.millis() <= 0 {
                return Err(AppError::Invalid(ErrorCode::InvalidTimeout, "timeout must be positive".into()).into());
            }
            timeout = timeout.min(asked);
        }
        let requesters = self.requesters(ctx, verified, given, &trusted.requesters).await?;
        let id = new_id();
        let mut doc = Doc {
            context: ctx.clone(),
            summary: body.summary.clone(),
            artifacts: body.artifacts.clone(),
            fields: body.fields.clone(),
            requesters: requesters.ids,
            requester_sources: requesters.origins,
            requirements: self.resolve_requirements(policy.requirements(&rule)).await?,
            approval_ttl_ms: rule.approval_ttl().millis(),
            rule,
            policy_digest: policy.digest.clone(),
            fingerprint: fingerprint.to_string(),
            decided_by: None,
            reason: None,
            decision_event: None,
            decision_log: None,
            verified: verified.cloned(),
            escalations: vec![],
            checks: vec![],
            kind: Default::default(),
            break_glass: None,
            review_of: None,
            scope: None,
            covered_by: None,
            superseded_by: None,
            release: match &trusted.release {
                Some(r) => Some(r.clone()),
                None => body
                    .release
                    .as_ref()
                    .map(|a| super::release::release_of(a, ctx, verified, self.config().jenkins.as_ref()))
                    .transpose()?,
            },
        };
        let glass = self
            .break_glass_check(&policy, &doc.rule, body, &doc.requesters)
            .await?;
        if let Some(g) = &glass {
            doc.break_glass = Some(g.info.clone());
            doc.approval_ttl_ms = g.ttl_ms;
        }
        // A break-glass approval is one engineer's, for this gate alone: it neither
        // joins a run's scope nor follows one.
        doc.scope = match glass {
            Some(_) => None,
            None => self.approval_scope_of(&doc.rule, &doc),
        };
        // The gates of one matrix open together: one at a time finds its covering request.
        let held = match doc.scope {
            Some(_) => Some(self.scope_lock.lock().await),
            None => None,
        };
        let cover = self.covering_for(&doc, now).await?;
        doc.covered_by = cover.as_ref().map(|c| c.row.id.clone());
        let mut row = RequestRow {
            id: id.clone(),
            idem_key: key.to_string(),
            status: Status::Pending,
            version: 1,
            created_at: now,
            expires_at: now.saturating_add(timeout.millis()),
            approval_expires_at: None,
            decided_at: None,
            consumed_at: None,
            environment: ctx.environment.clone(),
            repository: ctx.repository.clone(),
            opened_by: pipeline.to_string(),
            doc: String::new(),
        };
        let mut tx = self.store.begin().await?;
        let mut data = json!({
            "context": ctx, "summary": body.summary, "artifacts": body.artifacts,
            "rule": doc.rule.name, "policy_digest": doc.policy_digest,
            "requirements": doc.requirements, "requester": doc.requesters, "requester_sources": doc.requester_sources,
            "expires_at": rfc3339(row.expires_at),
        });
        if !doc.fields.is_empty() {
            data["fields"] = json!(doc.fields);
        }
        if let Some(v) = &doc.verified {
            data["verified_claims"] = json!(v);
        }
        // How many checks will decide, so a replay can tell a decision they made (see derive).
        if doc.rule.has_checks() {
            data["checks"] = json!({"approve": doc.rule.auto_approve_if.len(), "deny": doc.rule.auto_deny_if.len()});
        }
        if let Some(b) = &doc.break_glass {
            data["break_glass"] = json!(b);
        }
        if let Some(scope) = &doc.scope {
            data["scope"] = json!(scope);
        }
        if let Some(c) = &doc.covered_by {
            data["covered_by"] = json!(c);
        }
        if let Some(r) = &doc.release {
            data["release"] = json!(r);
        }
        let created = AuditDraft {
            at: now,
            request_id: id.clone(),
            kind: "created".into(),
            actor: pipeline.to_string(),
            data,
        };
        let mut votes = Vec::new();
        // The row must exist before its votes and record reference it.
        row.doc = serde_json::to_string(&doc)?;
        tx.insert_request(&row, deadline_of(Status::Pending, &row, &doc))
            .await?;
        tx.append_audit(&created).await?;
        if let Some(g) = glass {
            self.break_glass_at_open(&mut tx, &mut row, &mut doc, &mut votes, g, now)
                .await?;
        }
        if let Some(decision) = doc.rule.decision {
            let approve = decision == AutoDecision::Approve;
            let mut reason = format!(
                "policy rule `{}` decides {}",
                doc.rule.name,
                if approve { "approve" } else { "deny" }
            );
            // A catch-all deny says why the rules before it did not take the request, as
            // the no-rule refusal does: otherwise a typo in a `match` looks like policy.
            if !approve {
                let missed = earlier_misses(&policy, ctx);
                if !missed.is_empty() {
                    reason.push_str(&format!("; earlier rules did not match: {missed}"));
                }
            }
            let auto = AutoVote {
                voter: format!("policy:{}", doc.rule.name),
                approve,
                reason,
                via: "policy",
                vote_data: json!({}),
                decided_by: format!("policy rule `{}`", doc.rule.name),
                outcome_data: json!({"rule": doc.rule.name}),
            };
            self.decide_at_open(&mut tx, &mut row, &mut doc, &mut votes, auto, now)
                .await?;
        }
        if let Some(c) = &cover
            && row.status == Status::Pending
        {
            self.cover_at_open(&mut tx, &mut row, &mut doc, &mut votes, c, now)
                .await?;
        }
        if row.status != Status::Pending {
            // Decided at once (policy, break-glass, a covering approval): the held job is
            // released or not now.
            self.queue_release(&mut tx, &row, now).await?;
        }
        // A covered request is not for approvers to act on: its covering one is.
        let event = (row.status == Status::Pending && doc.covered_by.is_none()).then_some(crate::notify::Event::Opened);
        self.commit(tx, &row, &votes, event, now).await?;
        drop(held);
        if doc.rule.supersede {
            self.supersede_older(&row, &doc, now).await;
        }
        self.metrics.opened();
        if row.decided_at.is_some() {
            self.metrics.decided(row.status, 0);
        }
        self.timer_poke.notify_one();
        self.publish(&row);
        Ok(self.view(&row, &votes)?)
    }
}

/// What the server vouches for when it opens a request itself (from a webhook whose
/// signature it checked), never taken from a request body.
#[derive(Debug, Default)]
pub(super) struct Trusted {
    /// The release (a GitHub deployment's is made only here).
    pub release: Option<crate::core::release::Release>,
    /// More requesters: `(identity as given, where it was read)`.
    pub requesters: Vec<(String, String)>,
}

/// A decision made while a request opens, in the transaction that creates it: one vote
/// that is not a person's (`automatic` in its event, so `gate verify --min-approvers`
/// never counts it) and the outcome it implies.
pub(super) struct AutoVote {
    /// Who the vote is recorded as: `policy:RULE`, never a configured user.
    pub voter: String,
    pub approve: bool,
    pub reason: String,
    /// The vote's `via`: `policy` for a rule's own `decision`.
    pub via: &'static str,
    /// Keys added to the vote event beside `decision`, `reason`, `via` and `automatic`.
    pub vote_data: serde_json::Value,
    /// What the request shows as its decider.
    pub decided_by: String,
    /// Keys added to the outcome event beside `automatic` and `reason`.
    pub outcome_data: serde_json::Value,
}

impl Engine {
    /// Records `auto` on the request just inserted in `tx`: its vote, the outcome event
    /// with its log entry, the row's new state and the signed record.
    pub(super) async fn decide_at_open(
        &self,
        tx: &mut crate::store::Tx,
        row: &mut RequestRow,
        doc: &mut Doc,
        votes: &mut Vec<VoteRow>,
        auto: AutoVote,
        now: i64,
    ) -> Result<(), Failure> {
        let AutoVote {
            voter,
            approve,
            reason,
            via,
            vote_data,
            decided_by,
            outcome_data,
        } = auto;
        let vote = VoteRow {
            voter,
            approve,
            reason: Some(reason.clone()),
            at: now,
            via: via.into(),
            meta: None,
        };
        tx.insert_vote(&row.id, &vote).await?;
        let mut data = json!({"decision": if approve { "approve" } else { "deny" }, "reason": reason, "via": via, "automatic": true});
        merge(&mut data, vote_data);
        tx.append_audit(&AuditDraft {
            at: now,
            request_id: row.id.clone(),
            kind: "vote".into(),
            actor: vote.voter.clone(),
            data,
        })
        .await?;
        votes.push(vote);
        let status = if approve { Status::Approved } else { Status::Denied };
        let mut data = json!({"automatic": true, "reason": reason});
        merge(&mut data, outcome_data);
        let ev = tx
            .append_audit(&AuditDraft {
                at: now,
                request_id: row.id.clone(),
                kind: status.as_str().into(),
                actor: "policy".into(),
                data,
            })
            .await?;
        doc.decided_by = Some(decided_by);
        doc.reason = Some(reason);
        doc.decision_log = Some(self.record_log(tx, ev.0, now).await?);
        doc.decision_event = Some(ev);
        row.status = status;
        row.version += 1;
        row.decided_at = Some(now);
        if approve {
            row.approval_expires_at = Some(now.saturating_add(doc.approval_ttl_ms));
        }
        row.doc = serde_json::to_string(&doc)?;
        let deadline = if approve { row.approval_expires_at } else { None };
        tx.update_request(row, deadline).await?;
        self.put_record(tx, row, votes, now).await?;
        Ok(())
    }
}

/// Adds the keys of `extra` (an object) to `into`.
fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

/// Why each rule before the one that matches (or every rule, when none does) did not
/// match `ctx`: `rule: reason, reason; rule: reason`.
fn earlier_misses(policy: &crate::core::policy::Policy, ctx: &crate::core::api::Context) -> String {
    policy
        .explain(ctx)
        .into_iter()
        .filter(|v| !v.matched)
        .map(|v| format!("{}: {}", v.rule, v.mismatches.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The key an opener's `idempotency_key` is stored under: per opener, so that two
/// openers' keys never meet.
pub(super) fn stored_key(owner: &str, key: &str) -> String {
    format!("{owner}|key|{key}")
}
