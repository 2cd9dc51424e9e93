//! OIDC workload identity: a pipeline presents a JWT its CI system signed (GitHub Actions,
//! GitLab CI, or any OIDC issuer), and the server trusts its claims instead of the request
//! body. Verification: the header's `alg` must be RS256 or ES256 (never `none`, never
//! HMAC), its `kid` must name a key in the issuer's JWKS, `iss` must be a configured issuer
//! (exactly), `aud` its audience, `exp`/`nbf` hold with 60 s of leeway, and the signature
//! must verify. Keys are never taken from the token itself (`jwk`, `jku`, `x5u` are ignored).
//!
//! Each issuer's JWKS is cached. An unknown `kid` triggers one refetch (at most one per
//! issuer per [`MIN_REFETCH`]), so rotation at the endpoint is followed without letting
//! made-up key ids hammer it; the whole set is refreshed when older than [`MAX_KEY_AGE`],
//! so removed keys stop working.
//!
//! The verified claims become a [`VerifiedIdentity`]: which context fields the token
//! vouches for, and the claims they came from. The engine fills the request context from
//! it and refuses a body that contradicts it ([`VerifiedIdentity::apply`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use super::config::{OidcIssuer, OidcPlatform};
use crate::core::api::Context;
use crate::core::policy::glob_match;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;
/// At most one refetch for an unknown `kid` per issuer in this interval; also the pause
/// after a failed fetch before the next try.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// A cached JWKS older than this is fetched again before use.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(15 * 60);
const MAX_TOKEN_BYTES: usize = 16 * 1024;
const MAX_DOC_BYTES: usize = 1024 * 1024;

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// 401: the token is not valid (signature, time, audience, issuer, algorithm, key).
    #[error("OIDC token refused: {0}")]
    Refused(String),
    /// 403: a valid token from a trusted issuer, for a repository or subject not allowed.
    #[error("{0}")]
    NotAllowed(String),
    /// 503: the issuer's keys cannot be fetched right now.
    #[error("{0}")]
    Unavailable(String),
}

fn refused(m: impl Into<String>) -> OidcError {
    OidcError::Refused(m.into())
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
    pub fn apply(&self, ctx: &mut Context) -> Result<(), String> {
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
                return Err(format!(
                    "context.{field} is `{given}` but the OIDC token from {} says `{value}`",
                    self.issuer
                ));
            }
            *slot = value.clone();
        }
        Ok(())
    }
}

/// Three dot-separated base64url segments whose first decodes to a JSON object: worth
/// verifying as a JWT rather than looking up as a static token.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && !parts[0].is_empty()
        && !parts[1].is_empty()
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        && json_segment(parts[0]).is_some_and(|v| v.is_object())
}

fn json_segment(seg: &str) -> Option<Value> {
    let bytes = B64URL.decode(seg.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The keys of one issuer, as last fetched.
#[derive(Default)]
struct KeyCache {
    /// From the config, or found by discovery.
    jwks_url: Option<String>,
    keys: Vec<Jwk>,
    fetched_at: Option<Instant>,
    /// The last refetch caused by an unknown `kid` (rate-limited).
    last_refetch: Option<Instant>,
    last_failure: Option<(Instant, String)>,
}

impl KeyCache {
    fn find(&self, kid: &str) -> Option<Jwk> {
        self.keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned()
    }

    fn url(&self, cfg: &OidcIssuer) -> String {
        self.jwks_url
            .clone()
            .unwrap_or_else(|| format!("the JWKS of {}", cfg.issuer))
    }
}

struct Issuer {
    cfg: OidcIssuer,
    cache: Mutex<KeyCache>,
}

/// Verifies OIDC tokens against the configured issuers. Shared by every request.
pub struct Verifier {
    issuers: Vec<Issuer>,
    http: reqwest::Client,
}

impl Verifier {
    pub fn new(issuers: &[OidcIssuer]) -> Result<Verifier, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client for OIDC: {e}"))?;
        for i in issuers {
            if i.platform != OidcPlatform::Generic && i.repositories.is_empty() && i.subjects.is_empty() {
                tracing::warn!(
                    issuer = %i.issuer,
                    "OIDC issuer has no `repositories` or `subjects` allow-list: every repository it signs tokens for (with audience `{}`) may open requests",
                    i.audience
                );
            }
        }
        Ok(Verifier {
            issuers: issuers
                .iter()
                .map(|cfg| Issuer {
                    cache: Mutex::new(KeyCache {
                        jwks_url: cfg.jwks_url.clone(),
                        ..KeyCache::default()
                    }),
                    cfg: cfg.clone(),
                })
                .collect(),
            http,
        })
    }

    /// Verifies `token`; returns the pipeline name of its issuer and what it vouches for.
    pub async fn verify(&self, token: &str) -> Result<(String, VerifiedIdentity), OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused(format!("the token is longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(refused("malformed token: a JWT has three dot-separated parts"));
        };
        let header = json_segment(h)
            .filter(Value::is_object)
            .ok_or_else(|| refused("malformed token: the header is not base64url JSON"))?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = match alg_name {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "" => return Err(refused("the token header has no `alg`")),
            a if a.eq_ignore_ascii_case("none") => return Err(refused("alg none is refused")),
            a => return Err(refused(format!("{a} is refused: only RS256 and ES256"))),
        };
        if header.get("crit").is_some() {
            return Err(refused("critical header parameters (`crit`) are not supported"));
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| refused("the token header has no `kid`"))?;
        let unverified = json_segment(p)
            .filter(Value::is_object)
            .ok_or_else(|| refused("malformed token: the payload is not base64url JSON"))?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| refused("the token has no `iss` claim"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.cfg.issuer == iss)
            .ok_or_else(|| refused(format!("issuer `{iss}` is not trusted")))?;
        let cfg = &issuer.cfg;
        let (jwk, url) = issuer.key(kid, &self.http).await?;
        let fits = match (&jwk.algorithm, alg) {
            (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
            (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => ec.curve == EllipticCurve::P256,
            _ => false,
        } && jwk.common.key_algorithm.is_none_or(|a| a.to_string() == alg_name)
            && !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
        if !fits {
            return Err(refused(format!("key `{kid}` at {url} is not a {alg_name} key")));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| refused(format!("key `{kid}` at {url} is unusable: {e}")))?;
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_audience(&[&cfg.audience]);
        v.set_issuer(&[&cfg.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = match jsonwebtoken::decode::<Value>(token, &key, &v) {
            Ok(d) => d.claims,
            Err(e) => return Err(refused(describe(e.kind(), &unverified, cfg))),
        };
        let identity = VerifiedIdentity::from_claims(cfg, alg_name, kid, &claims);
        if !cfg.repositories.is_empty() {
            let repo = identity.fields.get("repository").map(String::as_str).unwrap_or("");
            if !cfg.repositories.iter().any(|g| glob_match(g, repo)) {
                return Err(OidcError::NotAllowed(format!(
                    "repository `{repo}` may not open requests with tokens from {} (allowed: {})",
                    cfg.issuer,
                    cfg.repositories.join(", ")
                )));
            }
        }
        if !cfg.subjects.is_empty() && !cfg.subjects.iter().any(|g| glob_match(g, &identity.subject)) {
            return Err(OidcError::NotAllowed(format!(
                "subject `{}` may not open requests with tokens from {} (allowed: {})",
                identity.subject,
                cfg.issuer,
                cfg.subjects.join(", ")
            )));
        }
        Ok((cfg.pipeline_name(), identity))
    }
}

/// A validation failure in words. `claims` are the token's (unverified, but only read
/// after the signature verified, except for the signature error itself).
fn describe(kind: &ErrorKind, claims: &Value, cfg: &OidcIssuer) -> String {
    let when = |c: &str| {
        claims
            .get(c)
            .and_then(Value::as_i64)
            .map(|s| crate::core::duration::rfc3339(s.saturating_mul(1000)))
            .unwrap_or_else(|| "?".into())
    };
    match kind {
        ErrorKind::InvalidSignature => "signature does not verify".into(),
        ErrorKind::ExpiredSignature => format!("token expired at {}", when("exp")),
        ErrorKind::ImmatureSignature => format!("token not valid before {}", when("nbf")),
        ErrorKind::InvalidAudience => {
            let aud = match claims.get("aud") {
                Some(Value::String(s)) => format!("`{s}`"),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => "``".into(),
            };
            format!("audience {aud} is not `{}`", cfg.audience)
        }
        ErrorKind::InvalidIssuer => format!("issuer is not `{}`", cfg.issuer),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
        ErrorKind::InvalidClaimFormat(c) => format!("the `{c}` claim is malformed"),
        ErrorKind::InvalidAlgorithm => "the key does not fit the token's alg".into(),
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            "malformed token".into()
        }
        other => format!("cannot verify: {other:?}"),
    }
}

impl Issuer {
    /// The key named `kid`, and the URL it was found at.
    async fn key(&self, kid: &str, http: &reqwest::Client) -> Result<(Jwk, String), OidcError> {
        let mut c = self.cache.lock().await;
        let now = Instant::now();
        let stale = c.fetched_at.is_none_or(|t| now.duration_since(t) > MAX_KEY_AGE);
        let failed_lately = c
            .last_failure
            .as_ref()
            .is_some_and(|(t, _)| now.duration_since(*t) < MIN_REFETCH);
        if stale && !failed_lately {
            // A failed refresh of a set we already have keeps using it (and says so in the log).
            let _ = self.fetch(&mut c, http).await;
        }
        if c.fetched_at.is_none() {
            let why = c
                .last_failure
                .as_ref()
                .map(|f| f.1.as_str())
                .unwrap_or("not fetched yet");
            return Err(OidcError::Unavailable(format!(
                "cannot fetch the keys of OIDC issuer {}: {why}",
                self.cfg.issuer
            )));
        }
        if let Some(k) = c.find(kid) {
            return Ok((k, c.url(&self.cfg)));
        }
        // Unknown kid: the issuer may have rotated. Look once, at most every MIN_REFETCH.
        if c.last_refetch.is_none_or(|t| now.duration_since(t) >= MIN_REFETCH) {
            c.last_refetch = Some(now);
            if let Err(e) = self.fetch(&mut c, http).await {
                return Err(OidcError::Unavailable(format!(
                    "key `{kid}` is not in the cached keys of OIDC issuer {} and refetching them failed: {e}",
                    self.cfg.issuer
                )));
            }
            if let Some(k) = c.find(kid) {
                return Ok((k, c.url(&self.cfg)));
            }
        }
        Err(refused(format!("no key `{kid}` at {}", c.url(&self.cfg))))
    }

    /// Fetches the JWKS (discovering its URL first if needed) into `c`.
    async fn fetch(&self, c: &mut KeyCache, http: &reqwest::Client) -> Result<(), String> {
        let r = async {
            let url = match &c.jwks_url {
                Some(u) => u.clone(),
                None => {
                    let u = discover(http, &self.cfg.issuer).await?;
                    c.jwks_url = Some(u.clone());
                    u
                }
            };
            let doc = get_json(http, &url).await?;
            let keys = doc
                .get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("{url} is not a JWKS (no `keys` array)"))?;
            // A key this library cannot read is skipped, not fatal to the others.
            Ok::<_, String>(
                keys.iter()
                    .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
                    .filter(|k| k.common.key_id.is_some())
                    .collect::<Vec<_>>(),
            )
        }
        .await;
        let now = Instant::now();
        match r {
            Ok(keys) => {
                tracing::info!(issuer = %self.cfg.issuer, keys = keys.len(), "fetched OIDC keys");
                c.keys = keys;
                c.fetched_at = Some(now);
                c.last_failure = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %self.cfg.issuer, error = %e, "cannot fetch OIDC keys");
                c.last_failure = Some((now, e.clone()));
                Err(e)
            }
        }
    }
}

/// `jwks_uri` from the issuer's OpenID configuration, which must name the same issuer.
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let doc = get_json(http, &url).await?;
    let said = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    if said != issuer {
        return Err(format!("{url} names issuer `{said}`, not `{issuer}`"));
    }
    let jwks = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{url} has no `jwks_uri`"))?;
    crate::core::url::check_url(jwks).map_err(|m| format!("{url}: jwks_uri {m}"))?;
    Ok(jwks.to_string())
}

/// GETs a JSON document (discovery, JWKS), refusing one over 1 MiB.
pub(crate) async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
    }
    if resp.content_length().is_some_and(|n| n > MAX_DOC_BYTES as u64) {
        return Err(format!("GET {url}: larger than {MAX_DOC_BYTES} bytes"));
    }
    let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
    if body.len() > MAX_DOC_BYTES {
        return Err(format!("GET {url}: larger than {MAX_DOC_BYTES} bytes"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
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
    fn jwt_shape() {
        let h = B64URL.encode(br#"{"alg":"RS256","kid":"k"}"#);
        assert!(looks_like_jwt(&format!("{h}.eyJ4IjoxfQ.c2ln")));
        // alg none tokens have an empty signature: still a JWT, so they get their refusal.
        assert!(looks_like_jwt(&format!("{h}.eyJ4IjoxfQ.")));
        assert!(!looks_like_jwt("tok-ci"));
        assert!(!looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt(&format!("{h}.e30")));
        assert!(!looks_like_jwt(&format!("{h}.e30.c2ln.x")));
        assert!(!looks_like_jwt(&format!("{h}.e3 0.c2ln")));
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
            id.apply(&mut evil).unwrap_err(),
            "context.repository is `evil/x` but the OIDC token from https://issuer.example says `acme/web`"
        );
        let mut label = Context::default();
        label.labels.insert("event_name".into(), "schedule".into());
        assert!(
            id.apply(&mut label)
                .unwrap_err()
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
