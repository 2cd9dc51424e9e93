//! Single sign-on for the web UI: the OpenID Connect authorization-code flow with PKCE
//! (S256), against any provider. The provider's endpoints come from
//! `{issuer}/.well-known/openid-configuration`, which must name the same issuer. The ID
//! token must be signed (RS/PS/ES, never `none` or HMAC) by a key from the provider's
//! JWKS, be issued by the issuer for our client id, be unexpired, and carry the nonce
//! this login sent. The `state` is bound to the browser by a cookie and used once.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::auth::oidc::{Discovery, FetchError, KeyError, KeySet, LEEWAY_SECS, MAX_KEY_AGE};
use crate::config::Sso;
use crate::core::identity::{Identity, IdentityError};

/// Why single sign-on failed. The causes are in the messages, not a `source` chain, so
/// a log line or page shows each once.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("HTTP client for single sign-on: {0}")]
    HttpClient(reqwest::Error),
    /// Discovery or the provider's JWKS could not be fetched or used.
    #[error("{0}")]
    Provider(FetchError),
    #[error("{0}")]
    Key(Box<KeyError>),
    #[error("{url}: the provider does not support PKCE with S256")]
    NoPkce { url: String },
    #[error("token endpoint: {0}")]
    TokenEndpoint(reqwest::Error),
    #[error("token endpoint answered HTTP {status}: {error} {description}")]
    TokenRefused {
        status: u16,
        error: String,
        description: String,
    },
    #[error("the token endpoint returned no id_token (is the `openid` scope allowed?)")]
    NoIdToken,
    #[error("malformed ID token: {0}")]
    MalformedIdToken(jsonwebtoken::errors::Error),
    #[error("ID token algorithm {0:?} is refused")]
    Algorithm(Algorithm),
    #[error("the ID token's key is an encryption key")]
    EncryptionKey,
    #[error("unusable provider key: {0}")]
    UnusableKey(jsonwebtoken::errors::Error),
    #[error("ID token refused: {0}")]
    Refused(jsonwebtoken::errors::Error),
    #[error("ID token refused: its nonce is not this login's")]
    Nonce,
    #[error("ID token refused: several audiences and `azp` is not this client")]
    Azp,
    #[error("the ID token has no `{0}` claim (check `user_claim` and `scopes`)")]
    NoClaim(String),
    #[error("the ID token's `{claim}` claim {problem}")]
    BadClaim { claim: String, problem: IdentityError },
}

/// What discovery tells us.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub jwks: String,
}

/// Who signed in, from a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The value of the configured `user_claim`, in its normal form.
    pub identity: Identity,
    pub email: Option<String>,
    /// False when the provider says the email is not verified.
    pub email_verified: bool,
    /// Unix ms: `auth_time`, else `iat`.
    pub auth_time: i64,
    pub amr: Vec<String>,
    /// The `groups_claim` values (`None` when no claim is configured; a token without
    /// the claim is in no group).
    pub groups: Option<Vec<String>>,
}

pub struct Client {
    pub cfg: Sso,
    pub redirect_uri: String,
    http: reqwest::Client,
    /// Discovery, fetched again when older than [`MAX_KEY_AGE`].
    endpoints: Mutex<Option<(Endpoints, Instant)>>,
    keys: KeySet,
}

/// A PKCE pair: the verifier kept server-side, the S256 challenge sent to the provider.
pub fn pkce_challenge(verifier: &str) -> String {
    B64URL.encode(Sha256::digest(verifier.as_bytes()))
}

impl Client {
    pub fn new(cfg: Sso, public_url: &str) -> Result<Client, SsoError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(SsoError::HttpClient)?;
        Ok(Client {
            redirect_uri: format!("{}/auth/callback", public_url.trim_end_matches('/')),
            http,
            endpoints: Mutex::new(None),
            keys: KeySet::new(&cfg.issuer, None),
            cfg,
        })
    }

    pub fn display_name(&self) -> String {
        self.cfg.display_name.clone().unwrap_or_else(|| "single sign-on".into())
    }

    async fn endpoints(&self) -> Result<Endpoints, SsoError> {
        let mut cached = self.endpoints.lock().await;
        if let Some((e, at)) = &*cached
            && at.elapsed() < MAX_KEY_AGE
        {
            return Ok(e.clone());
        }
        let d = Discovery::fetch(&self.http, &self.cfg.issuer)
            .await
            .map_err(SsoError::Provider)?;
        let field = |k: &str| d.endpoint(k).map_err(SsoError::Provider);
        let e = Endpoints {
            authorization: field("authorization_endpoint")?,
            token: field("token_endpoint")?,
            jwks: field("jwks_uri")?,
        };
        if let Some(methods) = d.doc.get("code_challenge_methods_supported").and_then(Value::as_array)
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(SsoError::NoPkce { url: d.url });
        }
        *cached = Some((e.clone(), Instant::now()));
        Ok(e)
    }

    /// The provider URL the browser is sent to.
    pub async fn authorize_url(&self, state: &str, nonce: &str, verifier: &str) -> Result<String, SsoError> {
        let e = self.endpoints().await?;
        let scope = self.cfg.scopes().join(" ");
        let challenge = pkce_challenge(verifier);
        let q = form_encode(&[
            ("response_type", "code"),
            ("client_id", &self.cfg.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &scope),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let sep = if e.authorization.contains('?') { '&' } else { '?' };
        Ok(format!("{}{sep}{q}", e.authorization))
    }

    /// Redeems the code and verifies the ID token.
    pub async fn finish(&self, code: &str, verifier: &str, nonce: &str) -> Result<SignedIn, SsoError> {
        let e = self.endpoints().await?;
        let secret = self.cfg.secret();
        let basic = self.cfg.token_auth.as_deref() != Some("client_secret_post");
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        if !basic || secret.is_none() {
            form.push(("client_id", self.cfg.client_id.as_str()));
            if let Some(s) = &secret {
                form.push(("client_secret", s.as_str()));
            }
        }
        let mut req = self
            .http
            .post(&e.token)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form_encode(&form));
        if basic && let Some(s) = &secret {
            // RFC 6749 2.3.1: both parts form-encoded before base64.
            let cred = format!("{}:{}", url_encode(&self.cfg.client_id), url_encode(s));
            req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {}", B64.encode(cred)));
        }
        let resp = req.send().await.map_err(SsoError::TokenEndpoint)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(SsoError::TokenEndpoint)?;
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let err = doc.get("error").and_then(Value::as_str).unwrap_or("");
            let desc = doc.get("error_description").and_then(Value::as_str).unwrap_or("");
            return Err(SsoError::TokenRefused {
                status: status.as_u16(),
                error: err.into(),
                description: desc.into(),
            });
        }
        let id_token = doc.get("id_token").and_then(Value::as_str).ok_or(SsoError::NoIdToken)?;
        self.verify_id_token(id_token, nonce).await
    }

    async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<SignedIn, SsoError> {
        let header = jsonwebtoken::decode_header(token).map_err(SsoError::MalformedIdToken)?;
        let alg = header.alg;
        if !matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
        ) {
            return Err(SsoError::Algorithm(alg));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(SsoError::EncryptionKey);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(SsoError::UnusableKey)?;
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        v.set_audience(&[&self.cfg.client_id]);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(SsoError::Refused)?
            .claims;
        let got_nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !super::session::same_secret(got_nonce, nonce) {
            return Err(SsoError::Nonce);
        }
        if let Some(Value::Array(aud)) = claims.get("aud")
            && aud.len() > 1
            && claims.get("azp").and_then(Value::as_str) != Some(self.cfg.client_id.as_str())
        {
            return Err(SsoError::Azp);
        }
        let claim = self.cfg.user_claim();
        let identity = claims
            .get(claim)
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| SsoError::NoClaim(claim.to_string()))?;
        let identity = Identity::parse(&identity).map_err(|problem| SsoError::BadClaim {
            claim: claim.to_string(),
            problem,
        })?;
        let secs = |k: &str| claims.get(k).and_then(Value::as_i64);
        let auth_time = secs("auth_time")
            .or_else(|| secs("iat"))
            .unwrap_or(0)
            .saturating_mul(1000);
        Ok(SignedIn {
            identity,
            email: claims.get("email").and_then(Value::as_str).map(str::to_string),
            email_verified: claims.get("email_verified") != Some(&Value::Bool(false))
                && claims.get("email_verified") != Some(&Value::String("false".into())),
            auth_time,
            amr: claims
                .get("amr")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            groups: self.cfg.groups_claim.as_deref().map(|c| groups_of(claims.get(c))),
        })
    }

    /// The provider key named `kid` (or its only signing key when the token names none).
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, SsoError> {
        let e = self.endpoints().await?;
        match self.keys.key_at(&self.http, &e.jwks, kid).await {
            Ok((k, _)) => Ok(k),
            // The provider's own failure, without the wording meant for CI token issuers.
            Err(KeyError::Unavailable { why, .. } | KeyError::RefetchFailed { why, .. }) => {
                Err(SsoError::Provider(why))
            }
            Err(no_key) => Err(SsoError::Key(Box::new(no_key))),
        }
    }
}

/// A groups claim: a list of names (or one name); anything else, or a name with control
/// characters, is no group. At most 1,000 are kept.
fn groups_of(v: Option<&Value>) -> Vec<String> {
    let names: Vec<&Value> = match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one @ Value::String(_)) => vec![one],
        _ => vec![],
    };
    names
        .into_iter()
        .filter_map(Value::as_str)
        .map(str::trim)
        .filter(|g| !g.is_empty() && g.len() <= 256 && !g.chars().any(char::is_control))
        .take(1000)
        .map(str::to_string)
        .collect()
}

/// `application/x-www-form-urlencoded` of the pairs.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub use crate::core::url::percent_encode as url_encode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn groups_claims_are_lists_of_names() {
        use serde_json::json;
        assert_eq!(groups_of(Some(&json!(["a", " b ", 3, "", "c\u{0}"]))), ["a", "b"]);
        assert_eq!(groups_of(Some(&json!("solo"))), ["solo"]);
        assert!(groups_of(Some(&json!({"a": 1}))).is_empty());
        assert!(groups_of(None).is_empty());
    }

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode(&[("a b", "x&y=z/é")]), "a%20b=x%26y%3Dz%2F%C3%A9");
    }
}
