//! The request service: opens, votes, cancels, consumes and expires requests. It reads
//! a request, asks the pure state machine (`decide`) what follows, and writes the result
//! with a compare-and-set, retrying when another writer got there first. Every change is
//! an audit event in the same transaction; every outcome gets its signed record there too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};

pub mod error;
mod forge_groups;
pub mod metrics;
mod notify;

use self::error::{AppError, Result};
use self::metrics::Metrics;
use crate::auth::Principal;
use crate::auth::oidc::VerifiedIdentity;
use crate::config::Config;
use crate::core::api::{Context, CreateRequest, RequestView, RequirementView, VoteMeta, VoteView};
use crate::core::audit::record::{KeyPair, PREDICATE_TYPE, STATEMENT_TYPE};
use crate::core::decide::{Next, Refusal, Requirement, State, Status, Vote};
use crate::core::duration::{Dur, rfc3339};
use crate::core::policy::{AutoDecision, Policy, Rule};
use crate::store::{AuditDraft, RequestRow, Store, StoreError, Tx, VoteRow};

/// How often a write is retried after losing a compare-and-set.
const MAX_ATTEMPTS: usize = 50;

/// What never changes after a request opens, plus the decision's who and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Doc {
    pub context: Context,
    pub summary: String,
    pub artifacts: Vec<String>,
    pub requesters: Vec<String>,
    pub rule: Rule,
    pub policy_digest: String,
    pub requirements: Vec<Requirement>,
    pub approval_ttl_ms: i64,
    /// SHA-256 of the create body; a replay with another body is refused.
    pub fingerprint: String,
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Sequence number and hash of the audit event that decided.
    #[serde(default)]
    pub decision_event: Option<(i64, String)>,
    /// What the opener's OIDC token vouched for; the context already holds those values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifiedIdentity>,
    /// Escalation steps of the rule already taken, so none is taken twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<Escalation>,
}

/// One escalation step taken on a pending request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Escalation {
    /// Index into the rule's `escalate` list.
    pub step: usize,
    pub at: i64,
    pub add_groups: Vec<String>,
    /// Who may vote because of it (members of `add_groups` when it was taken).
    pub added: Vec<String>,
    /// Who was told (members of its `notify` groups, never a requester).
    pub notified: Vec<String>,
}

impl Doc {
    fn escalation_afters(&self) -> Vec<i64> {
        self.rule.escalate.iter().map(|e| e.after.millis()).collect()
    }

    fn escalations_done(&self) -> Vec<usize> {
        self.escalations.iter().map(|e| e.step).collect()
    }

    /// When the next escalation step of a pending request is due.
    pub fn next_escalation(&self, row: &RequestRow) -> Option<i64> {
        crate::core::decide::next_escalation(
            &self.escalation_afters(),
            &self.escalations_done(),
            row.created_at,
            row.expires_at,
        )
    }

    /// Everyone escalations added as voters.
    pub fn escalated_voters(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in &self.escalations {
            for m in &e.added {
                if !out.contains(m) {
                    out.push(m.clone());
                }
            }
        }
        out
    }
}

/// The timer's deadline column for a request in `status`: the timeout or the next
/// escalation while pending, the end of the approval's validity once approved.
fn deadline_of(status: Status, row: &RequestRow, doc: &Doc) -> Option<i64> {
    match status {
        Status::Pending => Some(
            doc.next_escalation(row)
                .map_or(row.expires_at, |e| e.min(row.expires_at)),
        ),
        Status::Approved => row.approval_expires_at,
        _ => None,
    }
}

/// A state change broadcast to the UI's event stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub status: String,
    pub version: i64,
}

pub struct Engine {
    pub store: Store,
    pub policy: Policy,
    pub config: Config,
    pub keys: KeyPair,
    pub public_url: String,
    pub metrics: Metrics,
    waiters: Mutex<HashMap<String, watch::Sender<i64>>>,
    pub changes: broadcast::Sender<Change>,
    /// Poked when a new deadline may be earlier than the timer's current sleep.
    pub timer_poke: Notify,
    pub waiting: AtomicI64,
    /// Token digests from the config, decoded once.
    pub tokens: crate::auth::Tokens,
    /// Wakes the notification worker when a transaction queued notifications.
    pub notify: std::sync::Arc<crate::notify::Hub>,
    /// GitHub/GitLab access for forge groups and comment votes (see `forge_groups`).
    pub forge: std::sync::Arc<dyn crate::forge::Forge>,
}

type Loaded = (RequestRow, Vec<VoteRow>);

impl Engine {
    pub fn new(store: Store, policy: Policy, config: Config, keys: KeyPair, public_url: String) -> Engine {
        let tokens = crate::auth::Tokens::new(&config.users, &config.pipelines);
        Engine {
            tokens,
            store,
            policy,
            config,
            keys,
            public_url: public_url.trim_end_matches('/').to_string(),
            metrics: Metrics::default(),
            waiters: Mutex::new(HashMap::new()),
            changes: broadcast::channel(1024).0,
            timer_poke: Notify::new(),
            waiting: AtomicI64::new(0),
            notify: Default::default(),
            forge: std::sync::Arc::new(crate::forge::Forges::default()),
        }
    }

    pub fn request_url(&self, id: &str) -> String {
        format!("{}/requests/{id}", self.public_url)
    }

    // ----- wake-ups -------------------------------------------------------------------

    /// A receiver that changes whenever request `id` does. Subscribe before reading, so
    /// no change can slip between the read and the wait.
    pub fn subscribe(&self, id: &str) -> watch::Receiver<i64> {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        w.entry(id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Drops the channel of `id` once nobody waits on it.
    pub fn unsubscribe(&self, id: &str) {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if w.get(id).is_some_and(|s| s.receiver_count() == 0) {
            w.remove(id);
        }
    }

    fn publish(&self, row: &RequestRow) {
        self.publish_change(Change {
            id: row.id.clone(),
            status: row.status.clone(),
            version: row.version,
        });
    }

    /// Wakes local waiters and the event stream for a change, made here or (through
    /// PostgreSQL LISTEN/NOTIFY) on another replica.
    pub fn publish_change(&self, c: Change) {
        if let Some(s) = self.waiters.lock().unwrap_or_else(|e| e.into_inner()).get(&c.id) {
            s.send_if_modified(|v| {
                let newer = c.version > *v;
                if newer {
                    *v = c.version;
                }
                newer
            });
        }
        let _ = self.changes.send(c);
    }

    // ----- reads ----------------------------------------------------------------------

    pub async fn load(&self, id: &str) -> Result<Loaded> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no request `{id}`")))
    }

    pub fn view(&self, row: &RequestRow, votes: &[VoteRow]) -> Result<RequestView> {
        let doc = doc_of(row)?;
        let state = self.state(row, &doc, votes)?;
        let assigned = state.assign();
        let requirements = doc
            .requirements
            .iter()
            .zip(assigned)
            .map(|(r, approved_by)| RequirementView {
                group: r.group.clone(),
                count: r.count,
                members: r.members.clone(),
                met: approved_by.len() as u32 >= r.count,
                may_vote: if state.status == Status::Pending {
                    let mut may: Vec<String> = r.members.clone();
                    for x in &state.extra_voters {
                        if !may.contains(x) {
                            may.push(x.clone());
                        }
                    }
                    may.iter()
                        .filter(|m| !state.is_requester(m) && !votes.iter().any(|v| &&v.voter == m))
                        .cloned()
                        .collect()
                } else {
                    vec![]
                },
                approved_by,
                source: r.source.clone(),
            })
            .collect();
        Ok(RequestView {
            id: row.id.clone(),
            status: row.status.clone(),
            url: self.request_url(&row.id),
            context: doc.context,
            summary: doc.summary,
            artifacts: doc.artifacts,
            requester: doc.requesters,
            opened_by: row.opened_by.clone(),
            rule: doc.rule.name,
            policy_digest: doc.policy_digest,
            requirements,
            votes: votes.iter().map(vote_view).collect(),
            created_at: rfc3339(row.created_at),
            expires_at: rfc3339(row.expires_at),
            decided_at: row.decided_at.map(rfc3339),
            decided_by: doc.decided_by,
            reason: doc.reason,
            approval_expires_at: row.approval_expires_at.map(rfc3339),
            consumed_at: row.consumed_at.map(rfc3339),
            version: row.version,
            verified_by: doc.verified.as_ref().map(|v| v.issuer.clone()),
            verified_fields: doc
                .verified
                .as_ref()
                .map(|v| v.fields.keys().cloned().collect())
                .unwrap_or_default(),
            holder_token: None,
        })
    }

    /// The machine's view of a request. The requester set is widened with today's user
    /// mapping too, so a login added to the config later still cannot approve its own run.
    fn state(&self, row: &RequestRow, doc: &Doc, votes: &[VoteRow]) -> Result<State> {
        let status = Status::parse(&row.status).ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("request {} has unknown status {}", row.id, row.status))
        })?;
        let mut requesters = doc.requesters.clone();
        for ident in requester_identities(&doc.context) {
            for u in self.config.users_for_identity(ident) {
                if !requesters.contains(&u) {
                    requesters.push(u);
                }
            }
        }
        let mut requirements = doc.requirements.clone();
        forge_groups::counted_forge_members(&mut requirements, votes);
        Ok(State {
            status,
            requesters,
            requirements,
            votes: votes
                .iter()
                .filter(|v| v.via != "policy")
                .map(|v| Vote {
                    voter: v.voter.clone(),
                    approve: v.approve,
                    reason: v.reason.clone(),
                    at: v.at,
                })
                .collect(),
            expires_at: row.expires_at,
            approval_ttl_ms: doc.approval_ttl_ms,
            approval_expires_at: row.approval_expires_at,
            extra_voters: doc.escalated_voters(),
            next_escalation: doc.next_escalation(row),
            window_open: true,
        })
    }

    /// Requests the caller may act on now: for an approver, pending ones where their vote
    /// would count; for a pipeline, the pending ones it opened.
    pub async fn inbox(&self, who: &Principal, status: &str, limit: i64) -> Result<Vec<RequestView>> {
        let all = self.listing(who, status, limit).await?;
        Ok(all.into_iter().filter(|(_, mine)| *mine).map(|(v, _)| v).collect())
    }

    /// Every request in `status` (oldest first, at most `limit`), each with whether it is
    /// in `who`'s inbox. Two queries, whatever the number of requests.
    pub async fn listing(&self, who: &Principal, status: &str, limit: i64) -> Result<Vec<(RequestView, bool)>> {
        let rows = self.store.list(Some(status), limit).await?;
        let mut all_votes = self.store.votes_by_status(status).await?;
        let mut out = Vec::new();
        for row in rows {
            let votes = all_votes.remove(&row.id).unwrap_or_default();
            let doc = doc_of(&row)?;
            let mine = match who {
                Principal::Pipeline { .. } => is_opener(who, &row, &doc),
                Principal::Approver(u) => {
                    status != "pending" || {
                        let st = self.state(&row, &doc, &votes)?;
                        st.is_eligible(u) && !votes.iter().any(|v| &v.voter == u)
                    }
                }
            };
            out.push((self.view(&row, &votes)?, mine));
        }
        Ok(out)
    }

    // ----- open -----------------------------------------------------------------------

    /// Opens a request, or returns the one already open for the same run (`false`).
    /// With an OIDC identity, the fields its token verified fill the context, and a body
    /// that contradicts one is refused (401) naming both values.
    pub async fn create(&self, who: &Principal, mut body: CreateRequest, now: i64) -> Result<(RequestView, bool)> {
        let Principal::Pipeline {
            name: pipeline,
            verified,
        } = who
        else {
            return Err(AppError::Forbidden(
                "approver_cannot_request",
                "approver tokens cannot open requests; use a pipeline token".into(),
            ));
        };
        if let Some(v) = verified {
            v.apply(&mut body.context).map_err(AppError::Unauthorized)?;
        }
        validate_create(&body)?;
        let fingerprint = crate::core::policy::digest(&crate::core::audit::canonical_bytes(&json!({
            "context": body.context, "summary": body.summary, "artifacts": body.artifacts, "timeout": body.timeout,
        })));
        // Keys are per opener: for an OIDC identity, its issuer and repository (or subject)
        // too, so two repositories under one issuer never replay each other's requests.
        let owner = match verified {
            None => pipeline.clone(),
            Some(v) => format!("{pipeline}@{}#{}", v.issuer, v.scope()).replace('|', "/"),
        };
        let key = match (&body.idempotency_key, run_identity(&body.context)) {
            (Some(k), _) => format!("{owner}|key|{k}"),
            (None, Some(run)) => format!("{owner}|run|{run}"),
            (None, None) => format!("{owner}|once|{}", uuid::Uuid::new_v4()),
        };
        for _ in 0..MAX_ATTEMPTS {
            if let Some(id) = self.store.find_by_key(&key).await? {
                let (row, votes) = self.load(&id).await?;
                let doc = doc_of(&row)?;
                if doc.fingerprint != fingerprint {
                    return Err(AppError::Conflict(
                        "idempotency_mismatch",
                        format!(
                            "request {id} is already open for this run (key `{}`) with different details; use another idempotency key",
                            key.split('|').nth(2).unwrap_or("")
                        ),
                    ));
                }
                return Ok((self.view(&row, &votes)?, false));
            }
            match self
                .insert_new(pipeline, verified.as_deref(), &body, &key, &fingerprint, now)
                .await
            {
                Ok(v) => return Ok((v, true)),
                // A concurrent create with the same key won: loop and replay it.
                Err(Failure::Store(e)) if e.is_retryable() => continue,
                Err(Failure::Store(e)) => return Err(e.into()),
                Err(Failure::App(e)) => return Err(e),
            }
        }
        Err(AppError::Unavailable(
            "too much contention opening this request; retry".into(),
        ))
    }

    async fn insert_new(
        &self,
        pipeline: &str,
        verified: Option<&VerifiedIdentity>,
        body: &CreateRequest,
        key: &str,
        fingerprint: &str,
        now: i64,
    ) -> Result<RequestView, Failure> {
        let ctx = &body.context;
        let rule = self.policy.evaluate(ctx).cloned().ok_or_else(|| {
            let why: Vec<String> = self
                .policy
                .explain(ctx)
                .into_iter()
                .map(|v| format!("{}: {}", v.rule, v.mismatches.join(", ")))
                .collect();
            AppError::Invalid(
                "no_matching_rule",
                format!("no policy rule matches this request ({})", why.join("; ")),
            )
        })?;
        let mut timeout = rule.timeout();
        if let Some(t) = &body.timeout {
            let asked = Dur::parse(t).map_err(|e| AppError::Invalid("invalid_timeout", format!("timeout: {e}")))?;
            if asked.millis() <= 0 {
                return Err(AppError::Invalid("invalid_timeout", "timeout must be positive".into()).into());
            }
            timeout = timeout.min(asked);
        }
        let mut requesters: Vec<String> = Vec::new();
        for ident in requester_identities(ctx) {
            for who in std::iter::once(ident.to_string()).chain(self.config.users_for_identity(ident)) {
                if !requesters.contains(&who) {
                    requesters.push(who);
                }
            }
        }
        let id = new_id();
        let mut doc = Doc {
            context: ctx.clone(),
            summary: body.summary.clone(),
            artifacts: body.artifacts.clone(),
            requesters,
            requirements: self.resolve_requirements(self.policy.requirements(&rule)).await?,
            approval_ttl_ms: rule.approval_ttl().millis(),
            rule,
            policy_digest: self.policy.digest.clone(),
            fingerprint: fingerprint.to_string(),
            decided_by: None,
            reason: None,
            decision_event: None,
            verified: verified.cloned(),
            escalations: vec![],
        };
        let mut row = RequestRow {
            id: id.clone(),
            idem_key: key.to_string(),
            status: "pending".into(),
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
            "requirements": doc.requirements, "requester": doc.requesters,
            "expires_at": rfc3339(row.expires_at),
        });
        if let Some(v) = &doc.verified {
            data["verified_claims"] = json!(v);
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
        row.doc = serde_json::to_string(&doc)
            .map_err(anyhow::Error::from)
            .map_err(AppError::from)?;
        tx.insert_request(&row, deadline_of(Status::Pending, &row, &doc))
            .await?;
        tx.append_audit(&created).await?;
        if let Some(decision) = doc.rule.decision {
            let approve = decision == AutoDecision::Approve;
            let reason = format!(
                "policy rule `{}` decides {}",
                doc.rule.name,
                if approve { "approve" } else { "deny" }
            );
            let vote = VoteRow {
                voter: format!("policy:{}", doc.rule.name),
                approve,
                reason: Some(reason.clone()),
                at: now,
                via: "policy".into(),
                meta: None,
            };
            tx.insert_vote(&id, &vote).await?;
            tx.append_audit(&AuditDraft {
                at: now,
                request_id: id.clone(),
                kind: "vote".into(),
                actor: vote.voter.clone(),
                data: json!({"decision": if approve { "approve" } else { "deny" }, "reason": reason, "via": "policy", "automatic": true}),
            })
            .await?;
            votes.push(vote);
            let status = if approve { Status::Approved } else { Status::Denied };
            let ev = tx
                .append_audit(&AuditDraft {
                    at: now,
                    request_id: id.clone(),
                    kind: status.as_str().into(),
                    actor: "policy".into(),
                    data: json!({"automatic": true, "rule": doc.rule.name, "reason": reason}),
                })
                .await?;
            doc.decided_by = Some(format!("policy rule `{}`", doc.rule.name));
            doc.reason = Some(reason);
            doc.decision_event = Some(ev);
            row.status = status.as_str().into();
            row.version = 2;
            row.decided_at = Some(now);
            if approve {
                row.approval_expires_at = Some(now.saturating_add(doc.approval_ttl_ms));
            }
            row.doc = serde_json::to_string(&doc)
                .map_err(anyhow::Error::from)
                .map_err(AppError::from)?;
            let deadline = if approve { row.approval_expires_at } else { None };
            tx.update_request(&row, deadline).await?;
            self.put_record(&mut tx, &row, &votes, now).await?;
        }
        let event = (row.status == "pending").then_some(crate::notify::Event::Opened);
        self.commit(tx, &row, &votes, event, now).await?;
        self.metrics.opened();
        if row.decided_at.is_some() {
            self.metrics.decided(&row.status, 0);
        }
        self.timer_poke.notify_one();
        self.publish(&row);
        Ok(self.view(&row, &votes)?)
    }

    // ----- act ------------------------------------------------------------------------

    /// Approve (`approve = true`) or deny, as `who`.
    pub async fn vote(
        &self,
        who: &Principal,
        id: &str,
        approve: bool,
        reason: Option<String>,
        meta: VoteMeta,
        now_fn: fn() -> i64,
    ) -> Result<RequestView> {
        let Principal::Approver(user) = who else {
            return Err(AppError::Forbidden(
                "pipeline_cannot_vote",
                "pipeline tokens (static or OIDC) cannot vote; use an approver's token".into(),
            ));
        };
        let reason = reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
        if reason.as_ref().is_some_and(|r| r.len() > 2000) {
            return Err(AppError::Invalid(
                "reason_too_long",
                "reason: at most 2000 characters".into(),
            ));
        }
        let kind = if approve { "approve" } else { "deny" };
        // An unknown id is a 404, not a refusal.
        let (row, _) = self.load(id).await?;
        // Forge groups: membership is read live for every vote on a pending request.
        let doc = doc_of(&row)?;
        let live = if row.status == "pending" {
            self.live_members(&doc).await?
        } else {
            vec![]
        };
        let forge_groups = forge_groups::live_groups(&doc, &live, user);
        self.transition(id, now_fn, user, |state, now| {
            let state = &forge_groups::with_live(state, &live);
            let next = state.vote(user, approve, reason.as_deref(), now)?;
            let extra = VoteMeta { via: String::new(), ..meta.clone() };
            let vote = VoteRow {
                voter: user.clone(),
                approve,
                reason: reason.clone(),
                at: now,
                via: meta.via.clone(),
                meta: forge_groups::vote_meta_json(&extra, &forge_groups),
            };
            let event = AuditDraft {
                at: now,
                request_id: id.to_string(),
                kind: "vote".into(),
                actor: user.clone(),
                data: json!({"decision": kind, "reason": reason, "via": meta.via, "auth_time": meta.auth_time.map(rfc3339), "amr": meta.amr, "source": meta.source}),
            };
            let mut event = event;
            if !forge_groups.is_empty() {
                event.data["forge_groups"] = json!(forge_groups);
            }
            let by = format!("{user} ({kind})");
            Ok((next, Some(vote), event, Some(by), reason.clone()))
        })
        .await
        .map_err(|e| self.refusal_error(e, kind))
    }

    /// Withdraws a pending request: the pipeline that opened it, or a requester.
    pub async fn cancel(
        &self,
        who: &Principal,
        id: &str,
        reason: Option<String>,
        now_fn: fn() -> i64,
    ) -> Result<RequestView> {
        let (row, _) = self.load(id).await?;
        let doc = doc_of(&row)?;
        let allowed = match who {
            Principal::Pipeline { .. } => is_opener(who, &row, &doc),
            Principal::Approver(u) => doc.requesters.contains(u),
        };
        if !allowed {
            return Err(AppError::Forbidden(
                "not_yours",
                format!("only the pipeline that opened request {id}, or its requester, may cancel it"),
            ));
        }
        let actor = who.name().to_string();
        let reason = reason
            .filter(|r| !r.trim().is_empty())
            .or_else(|| Some("canceled by the requester".into()));
        self.transition(id, now_fn, &actor, |state, now| {
            let next = state.cancel(now)?;
            let event = AuditDraft {
                at: now,
                request_id: id.to_string(),
                kind: "canceled".into(),
                actor: actor.clone(),
                data: json!({"reason": reason}),
            };
            Ok((next, None, event, Some(actor.clone()), reason.clone()))
        })
        .await
        .map_err(|e| self.refusal_error(e, "cancel"))
    }

    /// Uses an approval, once, by the pipeline that opened the request.
    pub async fn consume(&self, who: &Principal, id: &str, now_fn: fn() -> i64) -> Result<RequestView> {
        let Principal::Pipeline { name, .. } = who else {
            return Err(AppError::Forbidden(
                "approver_cannot_consume",
                "only the pipeline that opened a request can use its approval".into(),
            ));
        };
        let (row, _) = self.load(id).await?;
        if !is_opener(who, &row, &doc_of(&row)?) {
            return Err(AppError::Forbidden(
                "not_yours",
                format!("request {id} was opened by another pipeline"),
            ));
        }
        let actor = name.clone();
        let rule = doc_of(&row)?.rule;
        let refused_at = std::sync::Mutex::new(None);
        self.transition(id, now_fn, &actor, |state, now| {
            let mut state = state.clone();
            state.window_open = rule.window_open(now);
            *refused_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
            let next = state.consume(now)?;
            let event = AuditDraft {
                at: now,
                request_id: id.to_string(),
                kind: "consumed".into(),
                actor: actor.clone(),
                data: json!({}),
            };
            Ok((next, None, event, None, None))
        })
        .await
        .map_err(|e| match e {
            Rejected::Refused(Refusal::OutsideWindow, _) => {
                let now = refused_at.into_inner().ok().flatten().unwrap_or_else(now_fn);
                let next = crate::core::policy::window::next_open(rule.allowed_windows(), now)
                    .map(|t| format!("; it next opens at {}", rfc3339(t)))
                    .unwrap_or_default();
                AppError::Conflict(
                    "outside_window",
                    format!(
                        "cannot consume: rule `{}` allows using an approval only inside {}{next}",
                        rule.name,
                        rule.allowed_windows().join(" or ")
                    ),
                )
            }
            e => self.refusal_error(e, "consume"),
        })
    }

    /// Applies what time alone does to one request (timeout, lapsed approval).
    pub async fn expire(&self, id: &str, now: i64) -> Result<Option<RequestView>> {
        for _ in 0..MAX_ATTEMPTS {
            let (row, votes) = self.load(id).await?;
            let doc = doc_of(&row)?;
            let state = self.state(&row, &doc, &votes)?;
            let Some(next) = state.tick(now) else {
                if state.status != Status::Pending {
                    return Ok(None);
                }
                let due = crate::core::decide::due_escalations(
                    &doc.escalation_afters(),
                    &doc.escalations_done(),
                    row.created_at,
                    row.expires_at,
                    now,
                );
                if due.is_empty() {
                    return Ok(None);
                }
                match self.escalate(row, votes, doc, &due, now).await {
                    Ok(v) => return Ok(Some(v)),
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            let why = if state.status == Status::Approved {
                "the approval was not used within its validity window"
            } else {
                "nobody decided before the timeout"
            };
            let event = AuditDraft {
                at: now,
                request_id: id.to_string(),
                kind: "expired".into(),
                actor: "timer".into(),
                data: json!({"reason": why, "was": state.status.as_str()}),
            };
            match self
                .write(
                    row,
                    votes,
                    doc,
                    next,
                    None,
                    event,
                    Some("timer".into()),
                    Some(why.into()),
                    now,
                )
                .await
            {
                Ok(v) => return Ok(Some(v)),
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable("too much contention; retry".into()))
    }

    /// Takes the escalation steps `due` on a pending request, in one transaction: the
    /// steps go into its document (so none is taken twice), each gets an `escalated`
    /// audit event, and the members of its `notify` groups an `escalated` notification.
    async fn escalate(
        &self,
        mut row: RequestRow,
        votes: Vec<VoteRow>,
        mut doc: Doc,
        due: &[usize],
        now: i64,
    ) -> Result<RequestView, StoreError> {
        let members = |groups: &[String], skip: &[String]| {
            let mut out: Vec<String> = Vec::new();
            for g in groups {
                for m in self.policy.groups.get(g).into_iter().flatten() {
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
        row.doc = serde_json::to_string(&doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.update_request(&row, deadline_of(Status::Pending, &row, &doc))
            .await?;
        self.commit(tx, &row, &votes, Some(crate::notify::Event::Escalated), now)
            .await?;
        self.timer_poke.notify_one();
        self.publish(&row);
        self.view(&row, &votes).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Read, decide, compare-and-set, retry. `decide` returns the next state, the vote
    /// to store, the audit event, and who decided and why if this decides.
    #[allow(clippy::type_complexity)]
    async fn transition(
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
            let state = self.state(&row, &doc, &votes)?;
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
                    return Err(Rejected::Refused(refusal, Some(row.status.clone())));
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
    async fn write(
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
    ) -> Result<RequestView, StoreError> {
        let before = row.status.clone();
        let mut tx = self.store.begin().await?;
        row.version += 1;
        row.status = next.status.as_str().to_string();
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
        row.doc = serde_json::to_string(&doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.update_request(&row, deadline_of(next.status, &row, &doc)).await?;
        if decides {
            self.put_record(&mut tx, &row, &votes, now).await?;
        }
        let event = (decides && before == "pending").then_some(crate::notify::Event::Decided);
        self.commit(tx, &row, &votes, event, now).await?;
        if decides && before == "pending" {
            self.metrics.decided(&row.status, now - row.created_at);
        }
        if decides {
            self.timer_poke.notify_one();
        }
        self.publish(&row);
        self.view(&row, &votes).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Ends a write: queues the notifications `event` calls for in the same transaction,
    /// announces the change to other replicas (delivered on commit), commits, and wakes
    /// the notification worker if anything was queued.
    async fn commit(
        &self,
        mut tx: Tx,
        row: &RequestRow,
        votes: &[VoteRow],
        event: Option<crate::notify::Event>,
        now: i64,
    ) -> Result<(), StoreError> {
        let queued = match event {
            Some(e) => self.enqueue_notifications(&mut tx, e, row, votes, now).await?,
            None => false,
        };
        tx.notify_change(&row.id, &row.status, row.version).await?;
        tx.commit().await?;
        if queued {
            self.notify.queued();
        }
        Ok(())
    }

    async fn put_record(&self, tx: &mut Tx, row: &RequestRow, votes: &[VoteRow], now: i64) -> Result<(), StoreError> {
        let doc: Doc = serde_json::from_str(&row.doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let statement = self.statement(row, &doc, votes, now);
        let env = serde_json::to_string(&self.keys.sign(&statement)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.put_record(&row.id, &env, now).await
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
        json!({
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
            }
        })
    }

    async fn audit_refusal(&self, id: &str, actor: &str, refusal: &Refusal, now: i64) {
        let draft = AuditDraft {
            at: now,
            request_id: id.to_string(),
            kind: "refused".into(),
            actor: actor.to_string(),
            data: json!({"why": refusal.to_string()}),
        };
        for _ in 0..MAX_ATTEMPTS {
            let r = async {
                let mut tx = self.store.begin().await?;
                tx.append_audit(&draft).await?;
                tx.commit().await
            }
            .await;
            match r {
                Ok(()) => return,
                Err(e) if e.is_retryable() => continue,
                Err(e) => {
                    tracing::error!(error = %e, request = id, "could not audit a refused action");
                    return;
                }
            }
        }
    }

    fn refusal_error(&self, rejected: Rejected, what: &str) -> AppError {
        let (refusal, status) = match rejected {
            Rejected::Failed(e) => return e,
            Rejected::Refused(r, s) => (r, s.unwrap_or_default()),
        };
        match refusal {
            Refusal::Requester => AppError::Forbidden("requester_cannot_vote", refusal.to_string()),
            Refusal::NotEligible => AppError::Forbidden("not_eligible", refusal.to_string()),
            Refusal::AlreadyVoted => AppError::Conflict("already_voted", refusal.to_string()),
            Refusal::ReasonRequired => AppError::Invalid("reason_required", refusal.to_string()),
            Refusal::NotPending(s) => AppError::Conflict("not_pending", format!("cannot {what}: the request is {s}")),
            Refusal::OutsideWindow => AppError::Conflict("outside_window", format!("cannot {what}: {refusal}")),
            Refusal::Expired => AppError::Conflict(
                "expired",
                format!(
                    "cannot {what}: the request is {}",
                    if status.is_empty() { "expired".into() } else { status }
                ),
            ),
        }
    }

    /// Long-wait: returns as soon as request `id` is no longer at `since` (its version;
    /// without one, as soon as it is not pending), or when `timeout` passes.
    pub async fn wait(
        &self,
        id: &str,
        since: Option<i64>,
        timeout: std::time::Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<RequestView> {
        // Subscribe before the first read so a change between read and wait still wakes us.
        let mut rx = self.subscribe(id);
        let _guard = Waiting::new(self);
        let result = self.wait_inner(id, since, timeout, shutdown, &mut rx).await;
        drop(rx);
        self.unsubscribe(id);
        result
    }

    async fn wait_inner(
        &self,
        id: &str,
        since: Option<i64>,
        timeout: std::time::Duration,
        shutdown: &mut watch::Receiver<bool>,
        rx: &mut watch::Receiver<i64>,
    ) -> Result<RequestView> {
        let until = tokio::time::Instant::now() + timeout;
        let (mut row, mut votes) = self.load(id).await?;
        let known = since.unwrap_or(row.version);
        loop {
            let status = Status::parse(&row.status).unwrap_or(Status::Pending);
            let news = row.version != known || (since.is_none() && status != Status::Pending);
            if news || status.is_terminal() || *shutdown.borrow() {
                return self.view(&row, &votes);
            }
            let now = crate::core::duration::now_ms();
            let due = match status {
                Status::Pending => Some(row.expires_at),
                _ => row.approval_expires_at,
            };
            if due.is_some_and(|d| now >= d) {
                self.expire(id, now).await?;
            } else {
                let wake = due
                    .map(|d| tokio::time::Instant::now() + std::time::Duration::from_millis((d - now).max(0) as u64))
                    .unwrap_or(until)
                    .min(until);
                tokio::select! {
                    r = rx.changed() => { if r.is_err() { return self.view(&row, &votes); } }
                    _ = tokio::time::sleep_until(wake) => {
                        if wake >= until { return self.view(&row, &votes); }
                    }
                    _ = shutdown.changed() => {}
                }
            }
            (row, votes) = self.load(id).await?;
        }
    }
}

struct Waiting<'a>(&'a Engine);

impl<'a> Waiting<'a> {
    fn new(e: &'a Engine) -> Self {
        e.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(e)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a transition did not happen: the machine refused it, or something failed.
enum Rejected {
    /// The refusal, and the request's status when it was refused.
    Refused(Refusal, Option<String>),
    Failed(AppError),
}

impl From<AppError> for Rejected {
    fn from(e: AppError) -> Self {
        Rejected::Failed(e)
    }
}

enum Failure {
    Store(StoreError),
    App(AppError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        Failure::App(e)
    }
}

pub fn doc_of(row: &RequestRow) -> Result<Doc> {
    serde_json::from_str(&row.doc).map_err(|e| AppError::Internal(anyhow::anyhow!("request {} document: {e}", row.id)))
}

fn vote_view(v: &VoteRow) -> VoteView {
    let meta: VoteMeta = v
        .meta
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    VoteView {
        voter: v.voter.clone(),
        decision: if v.approve { "approve" } else { "deny" }.into(),
        reason: v.reason.clone(),
        at: rfc3339(v.at),
        via: v.via.clone(),
        auth_time: meta.auth_time.map(rfc3339),
        amr: meta.amr,
        source: meta.source,
    }
}

impl Engine {
    /// Gives the opener of request `id` a token for that request alone (see
    /// `RequestView::holder_token`). Only its SHA-256 is stored.
    pub async fn issue_holder(&self, who: &Principal, id: &str, now: i64) -> Result<Option<String>> {
        let (row, _) = self.load(id).await?;
        if !is_opener(who, &row, &doc_of(&row)?) {
            return Ok(None);
        }
        let token = crate::auth::new_token(HOLDER_PREFIX);
        self.store.add_holder(id, &crate::auth::hash_token(&token), now).await?;
        Ok(Some(token))
    }

    /// The opener of request `id`, if `token` is one of its holder tokens.
    pub async fn holder(&self, id: &str, token: &str) -> Result<Option<Principal>> {
        use subtle::ConstantTimeEq;
        let want = crate::auth::hash_token(token);
        let mut found = false;
        for h in self.store.holders(id).await? {
            found |= bool::from(h.as_bytes().ct_eq(want.as_bytes()));
        }
        if !found {
            return Ok(None);
        }
        let (row, _) = self.load(id).await?;
        let doc = doc_of(&row)?;
        Ok(Some(Principal::Pipeline {
            name: row.opened_by,
            verified: doc.verified.map(std::sync::Arc::new),
        }))
    }
}

/// Holder tokens start with this, so the server knows to look them up per request.
pub const HOLDER_PREFIX: &str = "gtr";

/// Whether `who` is the pipeline that opened the request: the same name, and for an OIDC
/// identity the same issuer and repository (or subject) as the token that opened it.
fn is_opener(who: &Principal, row: &RequestRow, doc: &Doc) -> bool {
    let Principal::Pipeline { name, verified } = who else {
        return false;
    };
    row.opened_by == *name
        && match (verified.as_deref(), doc.verified.as_ref()) {
            (None, None) => true,
            (Some(a), Some(b)) => a.issuer == b.issuer && a.scope() == b.scope(),
            _ => false,
        }
}

fn requester_identities(ctx: &Context) -> impl Iterator<Item = &str> {
    [
        ctx.actor.as_str(),
        ctx.triggering_actor.as_str(),
        ctx.commit_author.as_str(),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
}

/// The identity of one run of one job for one environment; a retry of the same job
/// replays the same request, a re-run (new attempt) opens a new one.
fn run_identity(c: &Context) -> Option<String> {
    if c.run_id.is_empty() {
        return None;
    }
    Some(format!(
        "{}:{}:{}:{}:{}:{}:{}",
        c.platform, c.repository, c.run_id, c.run_attempt, c.job, c.environment, c.action
    ))
}

fn new_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("req_{}", &u[..20])
}

fn validate_create(b: &CreateRequest) -> Result<()> {
    let bad = |field: &str, msg: String| Err(AppError::Invalid("invalid_field", format!("{field}: {msg}")));
    let c = &b.context;
    if c.environment.trim().is_empty() {
        return bad("context.environment", "is required".into());
    }
    let fields: [(&str, &str); 12] = [
        ("platform", &c.platform),
        ("repository", &c.repository),
        ("ref", &c.git_ref),
        ("commit", &c.commit),
        ("actor", &c.actor),
        ("triggering_actor", &c.triggering_actor),
        ("commit_author", &c.commit_author),
        ("run_id", &c.run_id),
        ("run_attempt", &c.run_attempt),
        ("job", &c.job),
        ("environment", &c.environment),
        ("action", &c.action),
    ];
    for (name, v) in fields {
        if v.len() > 512 {
            return bad(&format!("context.{name}"), "at most 512 characters".into());
        }
        if v.chars().any(char::is_control) {
            return bad(&format!("context.{name}"), "control characters are not allowed".into());
        }
    }
    if c.run_url.len() > 2048 {
        return bad("context.run_url", "at most 2048 characters".into());
    }
    let commit_ok = (7..=64).contains(&c.commit.len()) && c.commit.bytes().all(|b| b.is_ascii_hexdigit());
    if !c.commit.is_empty() && !commit_ok {
        return bad(
            "context.commit",
            format!("`{}` is not a git commit id (7 to 64 hex digits)", c.commit),
        );
    }
    if c.labels.len() > 64 {
        return bad("context.labels", "at most 64 labels".into());
    }
    for (k, v) in &c.labels {
        if k.is_empty() || k.len() > 128 || v.len() > 512 {
            return bad(
                &format!("context.labels.{k}"),
                "keys 1 to 128 characters, values at most 512".into(),
            );
        }
    }
    if b.summary.len() > 8192 {
        return bad("summary", "at most 8192 characters".into());
    }
    if b.artifacts.len() > 256 {
        return bad("artifacts", "at most 256 digests".into());
    }
    for (i, a) in b.artifacts.iter().enumerate() {
        let ok = a
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|x| x.is_ascii_hexdigit()));
        if !ok {
            return bad(
                &format!("artifacts[{i}]"),
                format!("`{a}` is not sha256:<64 hex digits>"),
            );
        }
    }
    if let Some(k) = &b.idempotency_key
        && (k.is_empty() || k.len() > 256)
    {
        return bad("idempotency_key", "1 to 256 characters".into());
    }
    Ok(())
}
