//! An issuer's signing keys (its JWKS), shared by OIDC workload identity and the web UI's
//! single sign-on: fetched from a known URL or found by OpenID discovery, cached, and
//! fetched again when older than [`MAX_KEY_AGE`]. An unknown `kid` triggers one refetch
//! (at most one per [`MIN_REFETCH`]), so rotation at the endpoint is followed without
//! letting made-up key ids hammer it; a failed refresh keeps the set already held.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use serde_json::Value;
use tokio::sync::Mutex;

/// At most one refetch for an unknown `kid` per key set in this interval; also the pause
/// after a failed fetch before the next try.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// A cached key set older than this is fetched again before use.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(15 * 60);
/// The largest discovery document or key set accepted.
pub const MAX_DOC_BYTES: usize = 1024 * 1024;

/// Why a discovery document or key set could not be had. Clone: the last failure is kept
/// and reported again until the next try.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {source}")]
    Transport { url: String, source: Arc<reqwest::Error> },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: larger than {MAX_DOC_BYTES} bytes")]
    TooLarge { url: String },
    #[error("GET {url}: not JSON: {source}")]
    NotJson {
        url: String,
        source: Arc<serde_json::Error>,
    },
    #[error("{url} names issuer `{said}`, not `{issuer}`")]
    WrongIssuer { url: String, said: String, issuer: String },
    #[error("{url} has no `{field}`")]
    MissingField { url: String, field: String },
    #[error("{url}: {field} {reason}")]
    BadUrl { url: String, field: String, reason: String },
    #[error("{url} is not a JWKS (no `keys` array)")]
    NotJwks { url: String },
}

/// Why no key was found.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    /// No key set has been fetched yet, and the last try failed.
    #[error("cannot fetch the keys of OIDC issuer {issuer}: {why}")]
    Unavailable { issuer: String, why: FetchError },
    /// The key is not in the cached set and fetching it again failed.
    #[error("key `{kid}` is not in the cached keys of OIDC issuer {issuer} and refetching them failed: {why}")]
    RefetchFailed {
        issuer: String,
        kid: String,
        why: FetchError,
    },
    /// The set (fetched lately enough) has no such key.
    #[error("no key `{}` at {url}", kid.as_deref().unwrap_or("(none named)"))]
    NoKey { kid: Option<String>, url: String },
}

/// GETs a JSON document (discovery, JWKS), refusing one over [`MAX_DOC_BYTES`].
pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, FetchError> {
    let transport = |e| FetchError::Transport {
        url: url.into(),
        source: Arc::new(e),
    };
    let too_large = || FetchError::TooLarge { url: url.into() };
    let resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url.into(),
            status: resp.status().as_u16(),
        });
    }
    if resp.content_length().is_some_and(|n| n > MAX_DOC_BYTES as u64) {
        return Err(too_large());
    }
    let body = resp.bytes().await.map_err(transport)?;
    if body.len() > MAX_DOC_BYTES {
        return Err(too_large());
    }
    serde_json::from_slice(&body).map_err(|e| FetchError::NotJson {
        url: url.into(),
        source: Arc::new(e),
    })
}

/// An issuer's OpenID configuration (`{issuer}/.well-known/openid-configuration`), which
/// names that same issuer.
pub struct Discovery {
    /// Where it was fetched from.
    pub url: String,
    pub doc: Value,
}

impl Discovery {
    pub async fn fetch(http: &reqwest::Client, issuer: &str) -> Result<Discovery, FetchError> {
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let doc = get_json(http, &url).await?;
        let said = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        if said != issuer {
            return Err(FetchError::WrongIssuer {
                said: said.into(),
                issuer: issuer.into(),
                url,
            });
        }
        Ok(Discovery { url, doc })
    }

    /// An endpoint it names (`jwks_uri`, `token_endpoint`, ...), which must be https.
    pub fn endpoint(&self, field: &str) -> Result<String, FetchError> {
        let v = self
            .doc
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| FetchError::MissingField {
                url: self.url.clone(),
                field: field.into(),
            })?;
        crate::core::url::check_url(v).map_err(|m| FetchError::BadUrl {
            url: self.url.clone(),
            field: field.into(),
            reason: m.to_string(),
        })?;
        Ok(v.to_string())
    }
}

/// The keys of one issuer, as last fetched.
#[derive(Default)]
struct Cached {
    /// Known up front, given by the caller, or found by discovery.
    url: Option<String>,
    keys: Vec<Jwk>,
    fetched_at: Option<Instant>,
    /// The last refetch caused by an unknown `kid` (rate-limited).
    last_refetch: Option<Instant>,
    last_failure: Option<(Instant, FetchError)>,
}

impl Cached {
    /// The key `kid` names; when it names none, the only key not meant for encryption.
    fn find(&self, kid: Option<&str>) -> Option<Jwk> {
        match kid {
            Some(k) => self
                .keys
                .iter()
                .find(|j| j.common.key_id.as_deref() == Some(k))
                .cloned(),
            None => {
                let mut signing = self
                    .keys
                    .iter()
                    .filter(|j| !matches!(j.common.public_key_use, Some(PublicKeyUse::Encryption)));
                match (signing.next(), signing.next()) {
                    (Some(only), None) => Some(only.clone()),
                    _ => None,
                }
            }
        }
    }

    fn url_or_issuer(&self, issuer: &str) -> String {
        self.url.clone().unwrap_or_else(|| format!("the JWKS of {issuer}"))
    }
}

/// One issuer's key set, shared by every verification against it.
pub struct KeySet {
    issuer: String,
    cache: Mutex<Cached>,
}

impl KeySet {
    /// The keys of `issuer`, at `url`, or where its discovery document says when `None`.
    pub fn new(issuer: &str, url: Option<String>) -> KeySet {
        KeySet {
            issuer: issuer.into(),
            cache: Mutex::new(Cached {
                url,
                ..Cached::default()
            }),
        }
    }

    /// The key `kid` names (the only signing key when `None`), and the URL of its set.
    pub async fn key(&self, http: &reqwest::Client, kid: Option<&str>) -> Result<(Jwk, String), KeyError> {
        self.lookup(http, None, kid).await
    }

    /// As [`KeySet::key`], with the set at `url` (found by the caller's own discovery).
    pub async fn key_at(
        &self,
        http: &reqwest::Client,
        url: &str,
        kid: Option<&str>,
    ) -> Result<(Jwk, String), KeyError> {
        self.lookup(http, Some(url), kid).await
    }

    async fn lookup(
        &self,
        http: &reqwest::Client,
        url: Option<&str>,
        kid: Option<&str>,
    ) -> Result<(Jwk, String), KeyError> {
        let mut c = self.cache.lock().await;
        if let Some(u) = url {
            c.url = Some(u.into());
        }
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
        if c.fetched_at.is_none()
            && let Some((_, why)) = &c.last_failure
        {
            return Err(KeyError::Unavailable {
                issuer: self.issuer.clone(),
                why: why.clone(),
            });
        }
        if let Some(k) = c.find(kid) {
            return Ok((k, c.url_or_issuer(&self.issuer)));
        }
        // Unknown kid: the issuer may have rotated. Look once, at most every MIN_REFETCH.
        if c.last_refetch.is_none_or(|t| now.duration_since(t) >= MIN_REFETCH) {
            c.last_refetch = Some(now);
            if let Err(why) = self.fetch(&mut c, http).await {
                return Err(KeyError::RefetchFailed {
                    issuer: self.issuer.clone(),
                    kid: kid.unwrap_or("(none named)").into(),
                    why,
                });
            }
            if let Some(k) = c.find(kid) {
                return Ok((k, c.url_or_issuer(&self.issuer)));
            }
        }
        Err(KeyError::NoKey {
            kid: kid.map(str::to_string),
            url: c.url_or_issuer(&self.issuer),
        })
    }

    /// Fetches the set (discovering its URL first if needed) into `c`.
    async fn fetch(&self, c: &mut Cached, http: &reqwest::Client) -> Result<(), FetchError> {
        let r = async {
            let url = match &c.url {
                Some(u) => u.clone(),
                None => {
                    let u = Discovery::fetch(http, &self.issuer).await?.endpoint("jwks_uri")?;
                    c.url = Some(u.clone());
                    u
                }
            };
            let doc = get_json(http, &url).await?;
            let keys = doc
                .get("keys")
                .and_then(Value::as_array)
                .ok_or(FetchError::NotJwks { url })?;
            // A key this library cannot read is skipped, not fatal to the others.
            Ok::<_, FetchError>(
                keys.iter()
                    .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
                    .collect::<Vec<_>>(),
            )
        }
        .await;
        let now = Instant::now();
        match r {
            Ok(keys) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), "fetched OIDC keys");
                c.keys = keys;
                c.fetched_at = Some(now);
                c.last_failure = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "cannot fetch OIDC keys");
                c.last_failure = Some((now, e.clone()));
                Err(e)
            }
        }
    }
}
