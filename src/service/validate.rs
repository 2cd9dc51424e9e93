//! Checks on a create body, and the identities a request is known by.

use super::error::{AppError, ErrorCode, Result};
use crate::core::api::{Context, CreateRequest};

pub(super) fn requester_identities(ctx: &Context) -> impl Iterator<Item = &str> {
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
pub(super) fn run_identity(c: &Context) -> Option<String> {
    if c.run_id.is_empty() {
        return None;
    }
    Some(format!(
        "{}:{}:{}:{}:{}:{}:{}",
        c.platform, c.repository, c.run_id, c.run_attempt, c.job, c.environment, c.action
    ))
}

pub(super) fn new_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("req_{}", &u[..20])
}

pub(super) fn validate_create(b: &CreateRequest) -> Result<()> {
    let bad = |field: &str, msg: String| Err(AppError::Invalid(ErrorCode::InvalidField, format!("{field}: {msg}")));
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
