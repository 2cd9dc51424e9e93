//! The `users`, `pipelines`, `oidc` and `sso` sections of gate.yaml: who may vote, which
//! pipelines may open requests, which token issuers are trusted, how the web UI signs in.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::core::identity::{Identity, IdentityError};
use crate::core::policy::glob_match;
use crate::core::url::check_url;

/// An approver.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// SHA-256 (hex) of the user's bearer token; `gate token hash` prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// GitHub login: a request whose actor is this login is this user's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<String>,
    /// GitLab username, as for `github`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<String>,
    /// Jenkins user id, as for `github`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jenkins: Option<String>,
    /// Roles beyond voting where the policy names this user (see docs/security.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
}

/// What a person may do beyond voting where a policy group names them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything (requests, records, the audit log, reports); never votes or opens.
    Auditor,
    /// Reloads configuration, manages others' delegations, reads everything; votes only
    /// as an approver where the policy names them.
    Admin,
}

impl User {
    /// Every identity under which this user can appear as a requester.
    pub fn identities(&self) -> impl Iterator<Item = &str> {
        self.identity_fields().map(|(_, v)| v)
    }

    /// The identities with the key each is written under.
    pub fn identity_fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        std::iter::once(("name", self.name.as_str()))
            .chain(self.email.as_deref().map(|v| ("email", v)))
            .chain(self.github.as_deref().map(|v| ("github", v)))
            .chain(self.gitlab.as_deref().map(|v| ("gitlab", v)))
            .chain(self.jenkins.as_deref().map(|v| ("jenkins", v)))
    }
}

/// A pipeline that may open requests with a static token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub name: String,
    pub token_sha256: String,
    /// What this token may open requests for; absent allows any repository and environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Allow>,
}

/// The scope of a pipeline credential (`allow:` on a `pipelines:` entry or an `oidc:`
/// issuer): a token handed to one repository cannot open requests for another. An empty
/// list allows any value; globs are the policy's (`*` within a segment, `**` across).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
}

impl Allow {
    /// What is outside this scope in a request for `repository` and `environment`, in
    /// words naming what was asked and what is allowed; `None` when it is inside.
    pub fn refusal(&self, repository: &str, environment: &str) -> Option<String> {
        let outside = |globs: &[String], value: &str, what: &str| {
            (!globs.is_empty() && !globs.iter().any(|g| glob_match(g, value))).then(|| {
                format!(
                    "{what} `{value}` is not among the {what} this credential allows ({})",
                    globs.join(", ")
                )
            })
        };
        let problems: Vec<String> = [
            outside(&self.repositories, repository, "repository"),
            outside(&self.environments, environment, "environment"),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// Checks every glob; the first bad one and why.
    fn check(&self) -> Result<(), (String, GlobProblem)> {
        for g in self.repositories.iter().chain(&self.environments) {
            check_glob(g).map_err(|p| (g.clone(), p))?;
        }
        Ok(())
    }
}

/// A glob of `allow:` that cannot be what was meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobProblem {
    #[error("is empty")]
    Empty,
    #[error("has a control character or white space")]
    Control,
    #[error("has `***`; use `*` (one segment) or `**` (any number)")]
    TripleStar,
}

fn check_glob(g: &str) -> Result<(), GlobProblem> {
    if g.trim().is_empty() {
        Err(GlobProblem::Empty)
    } else if g.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Err(GlobProblem::Control)
    } else if g.contains("***") {
        Err(GlobProblem::TripleStar)
    } else {
        Ok(())
    }
}

/// Which CI system an OIDC issuer speaks for: it decides how claims map to the context.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OidcPlatform {
    Github,
    Gitlab,
    #[default]
    Generic,
}

impl OidcPlatform {
    pub fn as_str(self) -> &'static str {
        match self {
            OidcPlatform::Github => "github",
            OidcPlatform::Gitlab => "gitlab",
            OidcPlatform::Generic => "generic",
        }
    }
}

/// A trusted OIDC issuer: pipelines holding a token it signed for `audience` may open
/// requests, and the token's claims become the request context (see docs/oidc.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuer {
    /// Compared exactly with the token's `iss`, e.g. `https://token.actions.githubusercontent.com`.
    pub issuer: String,
    /// The token's `aud` must be (or contain) this, e.g. `jitgate`.
    pub audience: String,
    pub platform: OidcPlatform,
    /// Where the issuer's keys are; default: `jwks_uri` from `{issuer}/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The pipeline name requests are opened by (default `oidc:<platform>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Globs the verified repository must match (GitHub `repository`, GitLab `project_path`);
    /// empty allows any. A token whose repository is not allowed gets 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Globs the token's `sub` must match; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// What this issuer's tokens may open requests for, on top of the checks above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Allow>,
}

impl OidcIssuer {
    /// The pipeline name requests opened with this issuer's tokens carry.
    pub fn pipeline_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("oidc:{}", self.platform.as_str()))
    }
}

/// How the web UI's "Sign in with SSO" talks to the OpenID provider.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Sso {
    /// Compared exactly with the discovery document's and the ID token's `iss`.
    pub issuer: String,
    pub client_id: String,
    /// The client secret in clear; prefer `client_secret_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The name of an environment variable holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// How the secret is sent to the token endpoint: `client_secret_basic` (default) or
    /// `client_secret_post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_auth: Option<String>,
    /// Default `[openid, email, profile]`; `openid` is always asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Which ID token claim names the person (default `email`), matched against the
    /// `name`, `email`, `github` and `gitlab` of `users:` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_claim: Option<String>,
    /// When set, only people whose verified `email` is in one of these domains may sign in;
    /// those who match no `users:` entry get a read-only session (they cannot vote).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_domains: Vec<String>,
    /// A name shown on the sign-in button (default "single sign-on").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The ID token claim listing the person's groups (e.g. `groups`), kept with the
    /// session for `{ idp_group: NAME }` policy groups; unset, sessions carry no groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    /// How old a sign-in's groups may be for a vote that counts by them (default 8h);
    /// an older session is asked to sign in again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_group_age: Option<crate::core::duration::Dur>,
}

/// `scim:`: the identity provider's SCIM client (docs/scim.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Scim {
    /// SHA-256 (hex) of the bearer token the provider sends; `gate token hash` prints it.
    pub token_sha256: String,
}

/// Used when `sso.max_group_age` is not set.
pub const DEFAULT_MAX_GROUP_AGE_MS: i64 = 8 * 3_600_000;

impl std::fmt::Debug for Sso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("client_secret_env", &self.client_secret_env)
            .field("scopes", &self.scopes)
            .field("user_claim", &self.user_claim)
            .field("allowed_domains", &self.allowed_domains)
            .field("groups_claim", &self.groups_claim)
            .field("max_group_age", &self.max_group_age)
            .finish()
    }
}

impl Sso {
    pub fn user_claim(&self) -> &str {
        self.user_claim.as_deref().unwrap_or("email")
    }

    /// `max_group_age` in milliseconds.
    pub fn max_group_age_ms(&self) -> i64 {
        self.max_group_age.map_or(DEFAULT_MAX_GROUP_AGE_MS, |d| d.millis())
    }

    pub fn scopes(&self) -> Vec<String> {
        let mut s: Vec<String> = if self.scopes.is_empty() {
            vec!["openid".into(), "email".into(), "profile".into()]
        } else {
            self.scopes.clone()
        };
        if !s.iter().any(|x| x == "openid") {
            s.insert(0, "openid".into());
        }
        s
    }

    /// The client secret, from the config or the named environment variable.
    pub fn secret(&self) -> Option<String> {
        self.client_secret.clone().or_else(|| {
            self.client_secret_env
                .as_deref()
                .and_then(|v| std::env::var(v).ok())
                .filter(|v| !v.is_empty())
        })
    }
}

/// What is wrong with `users`, `pipelines`, `oidc` or `sso`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error("a user has an empty `name`")]
    EmptyUserName,
    #[error("user `{0}` is listed twice")]
    UserTwice(String),
    /// A name or login that is no identity (invisible characters, mixed scripts, …).
    #[error("user `{}`: `{field}` {problem}", user.escape_debug())]
    UserIdentity {
        user: String,
        field: &'static str,
        problem: IdentityError,
    },
    #[error("user `{user}`: token_sha256 {problem}")]
    UserDigest { user: String, problem: NotADigest },
    #[error("`{0}` names both a user and a pipeline, or two pipelines")]
    NameTaken(String),
    #[error("pipeline `{pipeline}`: token_sha256 {problem}")]
    PipelineDigest { pipeline: String, problem: NotADigest },
    #[error("pipeline `{pipeline}`: allow: glob `{}` {problem}", glob.escape_debug())]
    PipelineGlob {
        pipeline: String,
        glob: String,
        problem: GlobProblem,
    },
    #[error("oidc issuer `{issuer}`: {problem}")]
    Oidc { issuer: String, problem: OidcProblem },
    #[error("sso: {0}")]
    Sso(SsoProblem),
    #[error("scim: token_sha256 {0}")]
    ScimDigest(NotADigest),
}

/// A `token_sha256` that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 64 hex characters (run `gate token hash` to make one)")]
pub struct NotADigest;

/// What is wrong with one `oidc:` issuer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcProblem {
    #[error("issuer {0}")]
    Issuer(String),
    #[error("is listed twice; give one entry all its allow-lists")]
    Twice,
    #[error("`audience` is empty")]
    EmptyAudience,
    #[error("jwks_url {0}")]
    JwksUrl(String),
    #[error("`name` is empty")]
    EmptyName,
    #[error("name `{0}` is already a user or a static pipeline")]
    NameTaken(String),
    #[error("`repositories` needs platform github or gitlab (generic tokens carry no repository); use `subjects`")]
    RepositoriesNeedPlatform,
    #[error("allow: glob `{glob}` {problem}", glob = .0.escape_debug(), problem = .1)]
    Glob(String, GlobProblem),
}

/// What is wrong with `sso:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsoProblem {
    #[error("issuer {0}")]
    Issuer(String),
    #[error("`client_id` is empty")]
    EmptyClientId,
    #[error("give `client_secret` or `client_secret_env`, not both")]
    BothSecrets,
    #[error("token_auth `{0}` is not client_secret_basic or client_secret_post")]
    TokenAuth(String),
    #[error("`user_claim` is empty")]
    EmptyUserClaim,
    #[error("`groups_claim` is empty")]
    EmptyGroupsClaim,
    #[error("`max_group_age` must be longer than zero")]
    MaxGroupAge,
}

/// Checks `users` and `pipelines` (names unique across both, digests well formed) and
/// returns their names; `at(needle, error)` locates an error in the file.
pub fn validate_principals<'a, E>(
    users: &'a [User],
    pipelines: &'a [Pipeline],
    at: &dyn Fn(&str, AuthConfigError) -> E,
) -> Result<HashSet<&'a str>, E> {
    use AuthConfigError as Bad;
    let mut names = HashSet::new();
    for u in users {
        if u.name.trim().is_empty() {
            return Err(at("name:", Bad::EmptyUserName));
        }
        if !names.insert(u.name.as_str()) {
            return Err(at(&u.name, Bad::UserTwice(u.name.clone())));
        }
        // Requester checks compare normal forms; one that cannot be made would let a
        // look-alike through, so the server does not start.
        for (field, value) in u.identity_fields() {
            Identity::parse(value).map_err(|problem| {
                at(
                    value,
                    Bad::UserIdentity {
                        user: u.name.clone(),
                        field,
                        problem,
                    },
                )
            })?;
        }
        if let Some(h) = &u.token_sha256 {
            check_digest(h).map_err(|problem| {
                at(
                    h,
                    Bad::UserDigest {
                        user: u.name.clone(),
                        problem,
                    },
                )
            })?;
        }
    }
    for p in pipelines {
        if !names.insert(p.name.as_str()) {
            return Err(at(&p.name, Bad::NameTaken(p.name.clone())));
        }
        check_digest(&p.token_sha256).map_err(|problem| {
            at(
                &p.token_sha256,
                Bad::PipelineDigest {
                    pipeline: p.name.clone(),
                    problem,
                },
            )
        })?;
        if let Some(Err((glob, problem))) = p.allow.as_ref().map(Allow::check) {
            let needle = glob_needle(&glob);
            return Err(at(
                &needle,
                Bad::PipelineGlob {
                    pipeline: p.name.clone(),
                    glob,
                    problem,
                },
            ));
        }
    }
    Ok(names)
}

/// Checks the `oidc:` issuers; `taken` are the user and pipeline names, which an issuer's
/// pipeline name must not reuse.
pub fn validate_oidc<E>(
    issuers: &[OidcIssuer],
    taken: &HashSet<&str>,
    at: &dyn Fn(&str, AuthConfigError) -> E,
) -> Result<(), E> {
    let mut seen = HashSet::new();
    for o in issuers {
        let bad = |problem| AuthConfigError::Oidc {
            issuer: o.issuer.clone(),
            problem,
        };
        let here = |problem| at(&o.issuer, bad(problem));
        check_url(&o.issuer).map_err(|m| here(OidcProblem::Issuer(m.to_string())))?;
        if !seen.insert(o.issuer.as_str()) {
            return Err(here(OidcProblem::Twice));
        }
        if o.audience.trim().is_empty() {
            return Err(here(OidcProblem::EmptyAudience));
        }
        if let Some(u) = &o.jwks_url {
            check_url(u).map_err(|m| at(u, bad(OidcProblem::JwksUrl(m.to_string()))))?;
        }
        let name = o.pipeline_name();
        if name.trim().is_empty() {
            return Err(here(OidcProblem::EmptyName));
        }
        if taken.contains(name.as_str()) {
            return Err(here(OidcProblem::NameTaken(name)));
        }
        if !o.repositories.is_empty() && o.platform == OidcPlatform::Generic {
            return Err(here(OidcProblem::RepositoriesNeedPlatform));
        }
        if let Some(Err((glob, problem))) = o.allow.as_ref().map(Allow::check) {
            return Err(at(&glob_needle(&glob), bad(OidcProblem::Glob(glob, problem))));
        }
    }
    Ok(())
}

/// Checks `sso:`.
pub fn validate_sso<E>(sso: &Sso, at: &dyn Fn(&str, AuthConfigError) -> E) -> Result<(), E> {
    let here = |problem| at("sso:", AuthConfigError::Sso(problem));
    check_url(&sso.issuer).map_err(|m| here(SsoProblem::Issuer(m.to_string())))?;
    if sso.client_id.trim().is_empty() {
        return Err(here(SsoProblem::EmptyClientId));
    }
    if sso.client_secret.is_some() && sso.client_secret_env.is_some() {
        return Err(here(SsoProblem::BothSecrets));
    }
    if let Some(a) = &sso.token_auth
        && !matches!(a.as_str(), "client_secret_basic" | "client_secret_post")
    {
        return Err(here(SsoProblem::TokenAuth(a.clone())));
    }
    if sso.user_claim().trim().is_empty() {
        return Err(here(SsoProblem::EmptyUserClaim));
    }
    if sso.groups_claim.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err(at("groups_claim", AuthConfigError::Sso(SsoProblem::EmptyGroupsClaim)));
    }
    if sso.max_group_age.is_some_and(|d| d.millis() <= 0) {
        return Err(at("max_group_age", AuthConfigError::Sso(SsoProblem::MaxGroupAge)));
    }
    Ok(())
}

/// What to look for in the file to locate a bad glob: the glob itself, or for an empty
/// one the quotes it is written as.
fn glob_needle(glob: &str) -> String {
    if glob.trim().is_empty() {
        format!("\"{glob}\"")
    } else {
        glob.to_string()
    }
}

/// Checks `scim:`.
pub fn validate_scim<E>(scim: &Scim, at: &dyn Fn(&str, AuthConfigError) -> E) -> Result<(), E> {
    check_digest(&scim.token_sha256).map_err(|p| at("scim:", AuthConfigError::ScimDigest(p)))
}

fn check_digest(h: &str) -> Result<(), NotADigest> {
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(NotADigest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_names_what_was_asked_and_what_is_allowed() {
        let a = Allow {
            repositories: vec!["acme/web".into(), "acme/web-*".into()],
            environments: vec!["prod*".into()],
        };
        assert_eq!(a.refusal("acme/web", "production"), None);
        assert_eq!(a.refusal("acme/web-api", "prod-eu"), None);
        let r = a.refusal("acme/payments", "staging").unwrap();
        assert!(
            r.contains("repository `acme/payments`") && r.contains("(acme/web, acme/web-*)"),
            "{r}"
        );
        assert!(r.contains("environment `staging`") && r.contains("(prod*)"), "{r}");
        // `*` stays within a segment: a nested repository is not `acme/web-*`.
        assert!(a.refusal("acme/web-x/y", "production").is_some());
        // An empty list allows any value.
        assert_eq!(Allow::default().refusal("any/thing", "anywhere"), None);
    }

    #[test]
    fn bad_globs_are_named() {
        for (g, p) in [
            ("", GlobProblem::Empty),
            ("acme/ web", GlobProblem::Control),
            ("acme/***", GlobProblem::TripleStar),
        ] {
            assert_eq!(check_glob(g), Err(p), "{g:?}");
        }
        assert_eq!(check_glob("acme/**"), Ok(()));
    }
}
