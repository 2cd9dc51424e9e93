//! `approval_scope: run` and `supersede`, the pure parts: which requests one approval
//! covers, what a covered request does when the request covering it is decided, the
//! check that a covered request's automatic vote names a real decision, and which older
//! requests a new one supersedes.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::core::api::Context;
use crate::core::decide::Status;

/// The `via` of a covered request's automatic vote.
pub const VIA: &str = "scope";

/// The scope of a request under `approval_scope: run`: platform, repository, run id and
/// attempt, environment, commit, the set of artifact digests and the rule, never the
/// job, so the gates of one matrix share it and a re-run, another commit or another
/// artifact set does not. `None` without a run id: then there is no run to share.
pub fn scope_key(ctx: &Context, artifacts: &[String], rule: &str) -> Option<String> {
    if ctx.run_id.is_empty() {
        return None;
    }
    let mut set: Vec<&str> = artifacts.iter().map(String::as_str).collect();
    set.sort_unstable();
    set.dedup();
    let parts = json!([
        ctx.platform,
        ctx.repository,
        ctx.run_id,
        ctx.run_attempt,
        ctx.environment,
        ctx.commit,
        set,
        rule
    ]);
    Some(crate::core::policy::digest(parts.to_string().as_bytes()))
}

/// What a covered request's automatic vote names (its `covering` key): the request that
/// was decided, the scope they share, and that request's decision event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covering {
    pub id: String,
    pub scope: String,
    /// `approved` or `denied`.
    pub decision: String,
    pub event_seq: i64,
    pub event_hash: String,
}

/// What a covered, still pending request does once the request covering it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    Approve,
    Deny,
    /// The covering request expired or was canceled: nobody will decide it for this one.
    Cancel,
}

/// How a covered request follows its covering request's `status`; `None` while that is
/// still pending.
pub fn follow(status: Status) -> Option<Follow> {
    match status {
        Status::Pending => None,
        Status::Approved | Status::Consumed => Some(Follow::Approve),
        Status::Denied => Some(Follow::Deny),
        Status::Expired | Status::Canceled => Some(Follow::Cancel),
    }
}

/// The approval window of a request covered by an approval that lapses at `covering_until`:
/// its own `ttl_ms`, cut to end no later than the covering one; `None` once that has lapsed.
pub fn covered_ttl(now: i64, ttl_ms: i64, covering_until: Option<i64>) -> Option<i64> {
    let until = covering_until?;
    (until > now).then(|| ttl_ms.min(until - now))
}

/// Checks a covered request's automatic vote against its own `created` event: it must
/// name a `covering` request of the same scope whose decision is the vote's. What the
/// covering request's own events say is checked by [`check_covering_events`].
pub fn check_vote(created: &serde_json::Value, vote: &serde_json::Value, approve: bool) -> Result<Covering, String> {
    let Some(scope) = created["scope"].as_str() else {
        return Err("a scope vote on a request opened without `approval_scope: run`".into());
    };
    let c: Covering = serde_json::from_value(vote["covering"].clone())
        .map_err(|e| format!("a scope vote must name its covering request: {e}"))?;
    if c.scope != scope {
        return Err(format!("the covering request {} is of another scope", c.id));
    }
    let want = if approve { "approved" } else { "denied" };
    if c.decision != want {
        return Err(format!(
            "the vote says {} but names the covering decision `{}`",
            if approve { "approve" } else { "deny" },
            c.decision
        ));
    }
    Ok(c)
}

/// Checks `c` against the covering request's events, as `(seq, kind, hash, data)`: its
/// `created` event has the same scope, and the named event is its decision.
pub fn check_covering_events(c: &Covering, events: &[(i64, &str, &str, serde_json::Value)]) -> Result<(), String> {
    let Some((_, _, _, created)) = events.iter().find(|e| e.1 == "created") else {
        return Err(format!("the covering request {} has no events", c.id));
    };
    if created["scope"].as_str() != Some(c.scope.as_str()) {
        return Err(format!("the covering request {} is of another scope", c.id));
    }
    match events.iter().find(|e| e.0 == c.event_seq) {
        Some((_, kind, hash, _)) if *kind == c.decision && *hash == c.event_hash => Ok(()),
        _ => Err(format!(
            "the covering request {} has no `{}` event #{} with that hash",
            c.id, c.decision, c.event_seq
        )),
    }
}

/// A request as [`supersedes`] compares it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub created_at: i64,
    pub status: Status,
    pub repository: &'a str,
    pub environment: &'a str,
    pub scope: Option<&'a str>,
}

/// Whether a new request (under a rule with `supersede`) cancels `old`: a pending one
/// of the same repository and environment opened before it, of any rule, unless both
/// share an approval scope (the gates of one run never supersede each other).
pub fn supersedes(new: &Candidate<'_>, old: &Candidate<'_>) -> bool {
    old.status == Status::Pending
        && old.id != new.id
        && old.repository == new.repository
        && old.environment == new.environment
        && (old.created_at, old.id) < (new.created_at, new.id)
        && !(old.scope.is_some() && old.scope == new.scope)
}

#[cfg(test)]
mod tests;
