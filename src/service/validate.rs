//! Checks on a create body, and the identities a request is known by.

use super::Doc;
use super::error::{AppError, ErrorCode, Result};
use crate::core::api::{Context, CreateRequest, RequesterSource};
use crate::core::identity::Identity;
use crate::core::policy::{MAX_FIELDS, name_message, value_message};
use crate::core::text::control_message;

/// The request context's fields that name the requester, with their keys.
pub(super) fn requester_fields(ctx: &Context) -> [(&'static str, &str); 3] {
    [
        ("actor", ctx.actor.as_str()),
        ("triggering_actor", ctx.triggering_actor.as_str()),
        ("commit_author", ctx.commit_author.as_str()),
    ]
}

/// Every identity a stored request is known by: its context's requester fields and the
/// identities the forge named when it opened, in their normal form. (Users mapped from
/// them are looked up again by the caller, with today's config.)
pub(super) fn requester_identities(doc: &Doc) -> Vec<Identity> {
    let from_context = requester_fields(&doc.context).into_iter().map(|(_, v)| v);
    let from_forge = doc
        .requester_sources
        .iter()
        .filter(|o| o.source == RequesterSource::ForgeApi)
        .map(|o| o.identity.as_str());
    let mut out: Vec<Identity> = Vec::new();
    for i in from_context.chain(from_forge).filter(|v| !v.is_empty()) {
        if let Ok(i) = Identity::parse(i)
            && !out.contains(&i)
        {
            out.push(i);
        }
    }
    out
}

/// Puts the context's requester fields in their normal form, refusing one that is no
/// identity (422 naming it). Returns the fields normalising changed, as given.
pub(super) fn normalise_requester(ctx: &mut Context) -> Result<Vec<(&'static str, String)>> {
    let mut changed = Vec::new();
    for (name, slot) in [
        ("actor", &mut ctx.actor),
        ("triggering_actor", &mut ctx.triggering_actor),
        ("commit_author", &mut ctx.commit_author),
    ] {
        if slot.is_empty() {
            continue;
        }
        let id = Identity::parse(slot)
            .map_err(|e| AppError::Invalid(ErrorCode::InvalidField, format!("context.{name}: {e}")))?;
        if id.as_str() != slot.as_str() {
            changed.push((name, std::mem::replace(slot, id.into())));
        }
    }
    Ok(changed)
}

/// Refuses a request that names nobody as its requester: it would exclude no one from
/// approving it.
pub(super) fn require_requester(ctx: &Context) -> Result<()> {
    if requester_fields(ctx).iter().any(|(_, v)| !v.is_empty()) {
        return Ok(());
    }
    Err(AppError::Invalid(
        ErrorCode::RequesterUnknown,
        "the request names no requester (context.actor, triggering_actor and commit_author are empty), so \
         separation of duties could exclude no one: pass `--actor NAME` (GATE_ACTOR) to `gate request`, run it \
         where the platform's variables name the actor (GITHUB_ACTOR, GITLAB_USER_LOGIN, BUILD_USER_ID), or \
         open with an OIDC token whose claims name it"
            .into(),
    ))
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
    if let Some(m) = control_message(&c.run_url, false) {
        return bad("context.run_url", m);
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
        if let Some(m) = control_message(k, false).or_else(|| control_message(v, false)) {
            return bad(&format!("context.labels.{}", k.escape_debug()), m);
        }
    }
    if b.summary.len() > 8192 {
        return bad("summary", "at most 8192 characters".into());
    }
    if let Some(m) = control_message(&b.summary, true) {
        return bad("summary", m);
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
    if let Some(m) = b.idempotency_key.as_deref().and_then(|k| control_message(k, false)) {
        return bad("idempotency_key", m);
    }
    if let Some(m) = b.timeout.as_deref().and_then(|t| control_message(t, false)) {
        return bad("timeout", m);
    }
    if b.fields.len() > MAX_FIELDS {
        return bad("fields", format!("at most {MAX_FIELDS} fields"));
    }
    for (name, value) in &b.fields {
        if let Some(m) = name_message(name) {
            return bad("fields", m);
        }
        if let Some(m) = value_message(value) {
            return bad(&format!("fields.{name}"), m);
        }
    }
    Ok(())
}
