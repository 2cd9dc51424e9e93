//! Delegations: creating, listing and revoking them. Each creation and revocation is an
//! audit event in the chain (about no request: its request id is empty) and a
//! `delegation` notification to both people, in the same transaction as the row.

use serde_json::json;

use super::Engine;
use super::error::{AppError, ErrorCode, Result};
use crate::auth::Principal;
use crate::auth::config::Role;
use crate::core::api::{CreateDelegation, DelegationView};
use crate::core::delegation::{self, Delegation};
use crate::core::duration::rfc3339;
use crate::notify::Recipient;
use crate::store::AuditDraft;

/// How a delegation looks on the wire at `now`.
pub fn delegation_view(d: &Delegation, now: i64) -> DelegationView {
    DelegationView {
        id: d.id.clone(),
        delegator: d.delegator.clone(),
        delegate: d.delegate.clone(),
        reason: d.reason.clone(),
        created_at: rfc3339(d.created_at),
        created_by: d.created_by.clone(),
        until: rfc3339(d.until),
        revoked_at: d.revoked_at.map(rfc3339),
        revoked_by: d.revoked_by.clone(),
        in_force: d.in_force(now),
    }
}

fn person(who: &Principal) -> Result<&str> {
    match who {
        Principal::Approver(name) => Ok(name),
        Principal::Pipeline { .. } => Err(AppError::Forbidden(
            ErrorCode::ApproversOnly,
            "delegations are between people: use an approver's token".into(),
        )),
    }
}

impl Engine {
    /// Creates a delegation from the caller (or, for an admin, from `from`) to `to`.
    pub async fn delegate(&self, who: &Principal, body: CreateDelegation, now: i64) -> Result<DelegationView> {
        let me = person(who)?;
        let from = body
            .from
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .unwrap_or(me);
        if from != me && !self.has_role(who, Role::Admin) {
            return Err(AppError::Forbidden(
                ErrorCode::AdminOnly,
                format!("only an admin may delegate for someone else (`from: {from}`)"),
            ));
        }
        let until = body
            .until
            .trim()
            .parse::<jiff::Timestamp>()
            .map_err(|e| {
                AppError::Invalid(
                    ErrorCode::InvalidDelegation,
                    format!("until: `{}` is not an RFC 3339 time ({e})", body.until),
                )
            })?
            .as_millisecond();
        let to = body.to.trim();
        let reason = body.reason.trim();
        if let Some(m) = crate::core::text::control_message(reason, true) {
            return Err(AppError::Invalid(ErrorCode::InvalidField, format!("reason: {m}")));
        }
        if reason.len() > 2000 {
            return Err(AppError::Invalid(
                ErrorCode::ReasonTooLong,
                "reason: at most 2000 characters".into(),
            ));
        }
        let config = self.config();
        delegation::check_new(from, to, until, reason, now, &|n| config.user(n).is_some())
            .map_err(|e| AppError::Invalid(ErrorCode::InvalidDelegation, e.to_string()))?;
        // Auditors never vote, so they have no vote to hand on and may not receive one.
        for (side, name) in [("from", from), ("to", to)] {
            if self.has_role(&Principal::Approver(name.to_string()), Role::Auditor) {
                return Err(AppError::Invalid(
                    ErrorCode::InvalidDelegation,
                    format!("{side}: `{name}` is an auditor, and auditors never vote"),
                ));
            }
        }
        let d = Delegation {
            id: format!("dlg_{}", uuid::Uuid::new_v4().simple()),
            delegator: from.to_string(),
            delegate: to.to_string(),
            reason: reason.to_string(),
            created_at: now,
            created_by: me.to_string(),
            until,
            revoked_at: None,
            revoked_by: None,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_delegation(&d).await?;
        self.delegation_event(&mut tx, &d, "created", me, now).await?;
        self.finish(tx).await?;
        tracing::info!(id = %d.id, delegator = %d.delegator, delegate = %d.delegate, until = %rfc3339(until), "delegation created");
        Ok(delegation_view(&d, now))
    }

    /// The delegations the caller gave or received; an admin (or auditor) sees all.
    pub async fn delegations(&self, who: &Principal, now: i64) -> Result<Vec<DelegationView>> {
        let me = person(who)?;
        let all = self.reads_everything(who);
        let list = self.store.delegations((!all).then_some(me)).await?;
        Ok(list.iter().map(|d| delegation_view(d, now)).collect())
    }

    /// Revokes a delegation: its delegator or an admin may. Votes already cast under it
    /// stay counted; from `now` on, none counts.
    pub async fn revoke_delegation(&self, who: &Principal, id: &str, now: i64) -> Result<DelegationView> {
        let me = person(who)?;
        super::check_id(id)?;
        let mut d = self
            .store
            .delegation(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no delegation `{id}`")))?;
        let admin = self.has_role(who, Role::Admin);
        if d.delegator != me && !admin {
            // Someone else's delegation is as good as unknown, unless it names you.
            if d.delegate != me {
                return Err(AppError::NotFound(format!("no delegation `{id}`")));
            }
            return Err(AppError::Forbidden(
                ErrorCode::AdminOnly,
                format!(
                    "only {} (who gave it) or an admin may revoke delegation {id}",
                    d.delegator
                ),
            ));
        }
        if d.revoked_at.is_some() {
            return Err(AppError::Conflict(
                ErrorCode::AlreadyRevoked,
                format!("delegation {id} was already revoked"),
            ));
        }
        let mut tx = self.store.begin().await?;
        if !tx.revoke_delegation(id, me, now).await? {
            return Err(AppError::Conflict(
                ErrorCode::AlreadyRevoked,
                format!("delegation {id} was already revoked"),
            ));
        }
        d.revoked_at = Some(now);
        d.revoked_by = Some(me.to_string());
        self.delegation_event(&mut tx, &d, "revoked", me, now).await?;
        self.finish(tx).await?;
        tracing::info!(id = %d.id, by = %me, "delegation revoked");
        Ok(delegation_view(&d, now))
    }

    /// The people who delegated to `user` with a delegation in force at `now`.
    pub async fn delegators_of(&self, user: &str, now: i64) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for d in self.store.delegations_to(user, now).await? {
            if d.in_force(now) && !out.contains(&d.delegator) {
                out.push(d.delegator);
            }
        }
        Ok(out)
    }

    /// The audit event (`delegation_created` / `delegation_revoked`) and notifications.
    async fn delegation_event(
        &self,
        tx: &mut crate::store::Tx,
        d: &Delegation,
        what: &str,
        actor: &str,
        now: i64,
    ) -> Result<()> {
        tx.append_audit(&AuditDraft {
            at: now,
            request_id: String::new(),
            kind: format!("delegation_{what}"),
            actor: actor.to_string(),
            data: json!({
                "delegation": d.id, "delegator": d.delegator, "delegate": d.delegate,
                "until": rfc3339(d.until), "reason": d.reason,
            }),
        })
        .await?;
        let config = self.config();
        if let Some(n) = &config.notify {
            let people: Vec<Recipient> = [&d.delegator, &d.delegate]
                .into_iter()
                .filter_map(|p| config.user(p))
                .map(|u| Recipient {
                    name: u.name.clone(),
                    email: u.email.clone(),
                })
                .collect();
            for draft in crate::notify::delegation::drafts(n, &self.public_url, d, what, &people, now) {
                tx.enqueue_notification(&draft).await?;
            }
        }
        Ok(())
    }

    /// Commits a change that is about no request, waking the notification worker.
    async fn finish(&self, tx: crate::store::Tx) -> Result<()> {
        let queued = tx.queued_notifications();
        tx.commit().await?;
        if queued {
            self.notify.queued();
        }
        Ok(())
    }
}
