//! What a verified OIDC token vouches for: its claims mapped, per platform (GitHub,
//! GitLab, generic), to request context fields. The engine fills the request context from
//! it and refuses a body that contradicts it ([`VerifiedIdentity::apply`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::config::{OidcIssuer, OidcPlatform};
use crate::core::api::Context;

/// A request body's context field that says otherwise than the verified token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("context.{field} is `{given}` but the OIDC token from {issuer} says `{verified}`")]
pub struct ContextMismatch {
    pub field: String,
    pub given: String,
    pub verified: String,
    pub issuer: String,
}

/// What a verified token vouches for. Stored with the request and shown in its record as
/// `predicate.request.verified_claims`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedIdentity {
    /// The issuer, as configured and as in the token's `iss`.
    pub issuer: String,
    /// `github`, `gitlab` or `generic` (from the issuer's config).
    pub platform: String,
    /// The token's `sub`.
    pub subject: String,
    /// The audience the token was checked against.
    pub audience: String,
    pub algorithm: String,
    pub key_id: String,
    /// The token's `jti`, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Context fields the token verified, with their values: `repository`, `ref`, `commit`,
    /// `actor`, `run_id`, `run_attempt`, `job`, `environment`, `platform`, and labels as
    /// `labels.<key>`.
    pub fields: BTreeMap<String, String>,
    /// The claims those fields came from, plus identifying claims kept for the audit
    /// (`sub`, numeric ids), as the token has them.
    pub claims: BTreeMap<String, Value>,
}

/// Claim → context field, per platform.
const GITHUB: &[(&str, &str)] = &[
    ("repository", "repository"),
    ("ref", "ref"),
    ("sha", "commit"),
    ("actor", "actor"),
    ("run_id", "run_id"),
    ("run_attempt", "run_attempt"),
    ("environment", "environment"),
    ("workflow_ref", "labels.workflow_ref"),
    ("event_name", "labels.event_name"),
];
const GITLAB: &[(&str, &str)] = &[
    ("project_path", "repository"),
    ("ref", "ref"),
    ("sha", "commit"),
    ("user_login", "actor"),
    ("pipeline_id", "run_id"),
    ("job_id", "job"),
    ("environment", "environment"),
];
const GENERIC: &[(&str, &str)] = &[("sub", "actor")];

/// Claims not mapped to the context but kept in the record: they pin identities that
/// names alone do not (a renamed or re-created repository keeps no id).
const GITHUB_KEPT: &[&str] = &[
    "sub",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "actor_id",
    "ref_type",
    "job_workflow_ref",
    "runner_environment",
];
const GITLAB_KEPT: &[&str] = &[
    "sub",
    "project_id",
    "namespace_path",
    "namespace_id",
    "user_id",
    "ref_type",
    "ref_protected",
    "pipeline_source",
    "runner_environment",
];
const GENERIC_KEPT: &[&str] = &["sub"];

/// How a platform's claims map to context fields: `(claim, field)`.
pub fn claim_map(p: OidcPlatform) -> &'static [(&'static str, &'static str)] {
    match p {
        OidcPlatform::Github => GITHUB,
        OidcPlatform::Gitlab => GITLAB,
        OidcPlatform::Generic => GENERIC,
    }
}

fn kept_claims(p: OidcPlatform) -> &'static [&'static str] {
    match p {
        OidcPlatform::Github => GITHUB_KEPT,
        OidcPlatform::Gitlab => GITLAB_KEPT,
        OidcPlatform::Generic => GENERIC_KEPT,
    }
}

/// A claim as a context value: a non-empty string, or a number written out.
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl VerifiedIdentity {
    /// Maps verified claims to context fields for `cfg`'s platform.
    pub fn from_claims(cfg: &OidcIssuer, algorithm: &str, key_id: &str, claims: &Value) -> VerifiedIdentity {
        let mut fields = BTreeMap::new();
        let mut kept = BTreeMap::new();
        for (claim, field) in claim_map(cfg.platform) {
            if let Some(v) = claims.get(*claim).and_then(claim_text) {
                fields.insert(field.to_string(), v);
                kept.insert(claim.to_string(), claims[*claim].clone());
            }
        }
        for claim in kept_claims(cfg.platform) {
            if let Some(v) = claims.get(*claim).filter(|v| !v.is_null()) {
                kept.insert(claim.to_string(), v.clone());
            }
        }
        if cfg.platform != OidcPlatform::Generic {
            fields.insert("platform".into(), cfg.platform.as_str().into());
        }
        // GitLab names the ref bare (`main`) with a `ref_type`; make it a full ref, as
        // GitHub's is and as the gate sends it, so one policy pattern fits both.
        if let (Some(r), Some(kind)) = (
            fields.get("ref").cloned(),
            claims.get("ref_type").and_then(Value::as_str),
        ) {
            fields.insert("ref".into(), crate::core::context::full_ref(&r, kind));
        }
        VerifiedIdentity {
            issuer: cfg.issuer.clone(),
            platform: cfg.platform.as_str().into(),
            subject: claims.get("sub").and_then(Value::as_str).unwrap_or_default().into(),
            audience: cfg.audience.clone(),
            algorithm: algorithm.into(),
            key_id: key_id.into(),
            token_id: claims.get("jti").and_then(Value::as_str).map(str::to_string),
            fields,
            claims: kept,
        }
    }

    /// What requests opened with this identity belong to: its repository where the token
    /// names one, else its subject. Only the same issuer and scope may cancel or consume them.
    pub fn scope(&self) -> &str {
        self.fields.get("repository").unwrap_or(&self.subject)
    }

    /// Puts the verified fields into `ctx`. A field the body left empty is filled; one it
    /// gives with another value is refused, naming both. Two leniencies: a body platform of
    /// `generic` (the gate did not recognise where it runs) is filled, and a body commit
    /// that is an abbreviation (7+ hex digits) of the verified one is widened to it.
    pub fn apply(&self, ctx: &mut Context) -> Result<(), ContextMismatch> {
        for (field, value) in &self.fields {
            let slot = match field.as_str() {
                "platform" => &mut ctx.platform,
                "repository" => &mut ctx.repository,
                "ref" => &mut ctx.git_ref,
                "commit" => &mut ctx.commit,
                "actor" => &mut ctx.actor,
                "run_id" => &mut ctx.run_id,
                "run_attempt" => &mut ctx.run_attempt,
                "job" => &mut ctx.job,
                "environment" => &mut ctx.environment,
                other => match other.strip_prefix("labels.") {
                    Some(k) => ctx.labels.entry(k.to_string()).or_default(),
                    None => continue,
                },
            };
            let given = slot.as_str();
            let agrees = given.is_empty()
                || given == value
                || field == "platform" && given == "generic"
                || field == "commit"
                    && given.len() >= 7
                    && value.len() > given.len()
                    && value[..given.len()].eq_ignore_ascii_case(given);
            if !agrees {
                return Err(ContextMismatch {
                    field: field.clone(),
                    given: given.into(),
                    verified: value.clone(),
                    issuer: self.issuer.clone(),
                });
            }
            *slot = value.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issuer(platform: OidcPlatform) -> OidcIssuer {
        OidcIssuer {
            issuer: "https://issuer.example".into(),
            audience: "jitgate".into(),
            platform,
            ..Default::default()
        }
    }

    #[test]
    fn github_claims_map_to_the_context() {
        let claims = json!({
            "sub": "repo:acme/web:environment:production", "repository": "acme/web",
            "repository_id": "123", "ref": "refs/heads/main", "sha": "a".repeat(40), "actor": "octo",
            "run_id": "42", "run_attempt": "2", "workflow_ref": "acme/web/.github/workflows/d.yml@refs/heads/main",
            "environment": "production", "event_name": "push", "jti": "t-1", "iss": "x", "aud": "jitgate",
        });
        let id = VerifiedIdentity::from_claims(&issuer(OidcPlatform::Github), "RS256", "k1", &claims);
        assert_eq!(id.fields["repository"], "acme/web");
        assert_eq!(id.fields["commit"], "a".repeat(40));
        assert_eq!(
            id.fields["labels.workflow_ref"],
            "acme/web/.github/workflows/d.yml@refs/heads/main"
        );
        assert_eq!(id.fields["platform"], "github");
        assert_eq!(id.claims["repository_id"], "123");
        assert!(!id.claims.contains_key("aud"));
        assert_eq!(id.token_id.as_deref(), Some("t-1"));
        assert_eq!(id.scope(), "acme/web");

        let mut ctx = Context {
            platform: "generic".into(),
            environment: "production".into(),
            commit: "A".repeat(7),
            triggering_actor: "rerunner".into(),
            ..Default::default()
        };
        id.apply(&mut ctx).unwrap();
        assert_eq!((ctx.platform.as_str(), ctx.actor.as_str()), ("github", "octo"));
        assert_eq!(ctx.commit, "a".repeat(40));
        assert_eq!(ctx.labels["event_name"], "push");
        assert_eq!(ctx.triggering_actor, "rerunner", "unverified fields are kept");

        let mut evil = Context {
            repository: "evil/x".into(),
            ..Default::default()
        };
        assert_eq!(
            id.apply(&mut evil).unwrap_err().to_string(),
            "context.repository is `evil/x` but the OIDC token from https://issuer.example says `acme/web`"
        );
        let mut label = Context::default();
        label.labels.insert("event_name".into(), "schedule".into());
        assert!(
            id.apply(&mut label)
                .unwrap_err()
                .to_string()
                .starts_with("context.labels.event_name is `schedule`")
        );
        let mut jenkins = Context {
            platform: "jenkins".into(),
            ..Default::default()
        };
        assert!(id.apply(&mut jenkins).is_err());
    }

    #[test]
    fn gitlab_and_generic_claims() {
        let claims = json!({
            "sub": "project_path:g/p:ref_type:branch:ref:main", "project_path": "g/p", "project_id": "7",
            "ref": "main", "sha": "b".repeat(40), "user_login": "dev", "user_email": "dev@x.io",
            "pipeline_id": "1001", "job_id": 555, "environment": "staging",
        });
        let id = VerifiedIdentity::from_claims(&issuer(OidcPlatform::Gitlab), "ES256", "k", &claims);
        assert_eq!(id.fields["repository"], "g/p");
        assert_eq!(id.fields["run_id"], "1001");
        assert_eq!(id.fields["job"], "555", "numbers become text");
        assert_eq!(id.fields["actor"], "dev");
        assert!(!id.claims.contains_key("user_email"));

        let id = VerifiedIdentity::from_claims(
            &issuer(OidcPlatform::Generic),
            "RS256",
            "k",
            &json!({"sub": "svc-deployer"}),
        );
        assert_eq!(id.fields.len(), 1);
        assert_eq!(id.fields["actor"], "svc-deployer");
        assert_eq!(id.scope(), "svc-deployer");
        let mut ctx = Context {
            platform: "jenkins".into(),
            ..Default::default()
        };
        id.apply(&mut ctx).unwrap();
        assert_eq!((ctx.platform.as_str(), ctx.actor.as_str()), ("jenkins", "svc-deployer"));
    }
}
