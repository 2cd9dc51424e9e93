//! OIDC workload identity: a pipeline presents a JWT its CI system signed (GitHub Actions,
//! GitLab CI, or any OIDC issuer), and the server trusts its claims instead of the request
//! body. Verification: the header's `alg` must be RS256 or ES256 (never `none`, never
//! HMAC), its `kid` must name a key in the issuer's JWKS ([`jwks`]), `iss` must be a
//! configured issuer (exactly), `aud` its audience, `exp`/`nbf` hold with 60 s of leeway,
//! and the signature must verify. Keys are never taken from the token itself (`jwk`,
//! `jku`, `x5u` are ignored). The verified claims become a [`VerifiedIdentity`] ([`claims`]).

pub mod claims;
pub mod jwks;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

pub use self::claims::{ContextMismatch, VerifiedIdentity, claim_map};
pub use self::jwks::{Discovery, FetchError, KeyError, KeySet, MAX_KEY_AGE, MIN_REFETCH, get_json};
use crate::auth::config::{OidcIssuer, OidcPlatform};
use crate::core::policy::glob_match;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;
const MAX_TOKEN_BYTES: usize = 16 * 1024;

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

impl From<KeyError> for OidcError {
    fn from(e: KeyError) -> OidcError {
        match e {
            KeyError::NoKey { .. } => refused(e.to_string()),
            KeyError::Unavailable { .. } | KeyError::RefetchFailed { .. } => OidcError::Unavailable(e.to_string()),
        }
    }
}

/// The verifier could not be built.
#[derive(Debug, thiserror::Error)]
#[error("HTTP client for OIDC: {0}")]
pub struct SetupError(#[source] reqwest::Error);

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

/// A trusted issuer and its keys.
struct Issuer {
    cfg: OidcIssuer,
    keys: KeySet,
}

/// Verifies OIDC tokens against the configured issuers. Shared by every request.
pub struct Verifier {
    issuers: Vec<Issuer>,
    http: reqwest::Client,
}

impl Verifier {
    pub fn new(issuers: &[OidcIssuer]) -> Result<Verifier, SetupError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(SetupError)?;
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
                    keys: KeySet::new(&cfg.issuer, cfg.jwks_url.clone()),
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
        let (jwk, url) = issuer.keys.key(&self.http, Some(kid)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
