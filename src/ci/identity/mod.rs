//! Which credential `gate request` presents to the server. Where the job can have an OIDC
//! token (GitHub Actions with `id-token: write`, GitLab `id_tokens:`, a Jenkins credential
//! bound to `GATE_ID_TOKEN`), the gate sends that JWT as its bearer token and the server
//! decides; otherwise it falls back to the static pipeline token (`--token`/`GATE_TOKEN`).
//! The choice is said in one line, with the reason and what to change when it falls back.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use super::Platform;

/// What the gate knows before choosing.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The audience to ask GitHub for, and to expect in a given token.
    pub audience: String,
    /// A token handed in through `--id-token`/`GATE_ID_TOKEN` (GitLab `id_tokens:`, Jenkins).
    pub id_token: Option<String>,
    /// The static pipeline token (`--token`/`GATE_TOKEN`).
    pub static_token: Option<String>,
}

/// Where a fresh token can be had when the current one expires (GitHub Actions only:
/// its tokens live minutes, an approval can take hours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub url: String,
    pub bearer: String,
    pub audience: String,
}

impl Refresh {
    pub async fn fetch(&self) -> Result<String, FetchError> {
        fetch_github(&self.url, &self.bearer, &self.audience).await
    }
}

/// What the platform offered, before the fallback is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// An OIDC token, how to describe it (`GitHub OIDC token (audience jitgate)`), and
    /// where to get the next one.
    Token {
        token: String,
        what: String,
        refresh: Option<Refresh>,
    },
    /// None to be had, and what to change to get one.
    Absent { why: String },
    /// The platform should have given one and failing that is an error worth saying.
    Failed { error: String },
}

/// The chosen credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub token: String,
    /// `true` for an OIDC token, `false` for the static token.
    pub oidc: bool,
    /// The line to print after `jitgate: identity: `.
    pub line: String,
    /// Secrets to mask in the job log, in the order to print them (GitHub only).
    pub masks: Vec<String>,
    /// Said before the identity line (a failed OIDC fetch, an unexpected audience).
    pub warnings: Vec<String>,
    /// How to replace the token before it expires, where that is possible.
    pub refresh: Option<Refresh>,
}

impl Identity {
    /// The token's `exp` claim (Unix seconds), for an OIDC token that has one.
    pub fn expires(&self) -> Option<i64> {
        if self.oidc { jwt_expiry(&self.token) } else { None }
    }
}

/// No credential to present: the OIDC token could not be had and no static token is given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoIdentity {
    /// The platform offers none; `why` says what to change to get one.
    #[error("no identity to present: {why}; no static token either (--token or GATE_TOKEN)")]
    Absent { why: String },
    /// The platform should have given one and failed.
    #[error("no identity to present: {error}, and no static token either (--token or GATE_TOKEN)")]
    Failed { error: String },
}

/// A token that cannot be read as a JWT.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("expected a JWT (three dot-separated parts)")]
    Shape,
    #[error("not base64url: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("header is not JSON: {0}")]
    HeaderJson(serde_json::Error),
    #[error("header is not a JSON object")]
    HeaderNotObject,
    #[error("claims are not JSON: {0}")]
    ClaimsJson(serde_json::Error),
    #[error("claims are not a JSON object")]
    ClaimsNotObject,
}

/// Why the runner's token endpoint gave no token.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {0}")]
    Url(#[from] url::ParseError),
    /// The HTTP client could not be made.
    #[error("{0}")]
    Client(reqwest::Error),
    #[error("the token endpoint is unreachable: {0}")]
    Unreachable(reqwest::Error),
    /// HTTP 5xx or 429: worth retrying.
    #[error("the token endpoint answered HTTP {0}")]
    Busy(u16),
    #[error("the token endpoint answered HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the token endpoint's answer is not {{\"value\": ...}}: {0}")]
    Answer(serde_json::Error),
    #[error("the token endpoint answered without a token")]
    Empty,
}

impl FetchError {
    /// Worth another try: the network, or a server briefly unable.
    fn is_transient(&self) -> bool {
        matches!(self, FetchError::Unreachable(_) | FetchError::Busy(_))
    }
}

/// Asks the platform for a token, then chooses: the OIDC token if any, else the static
/// one, else an error that says what to set. `env` reads the job's variables.
pub async fn select(
    platform: Platform,
    inputs: &Inputs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Identity, NoIdentity> {
    let offer = offer(platform, inputs, env).await;
    choose(platform, inputs, offer)
}

/// What the platform offers. A token given explicitly (`GATE_ID_TOKEN`) wins everywhere;
/// on GitHub the gate asks the runner for one.
pub async fn offer(platform: Platform, inputs: &Inputs, env: &dyn Fn(&str) -> Option<String>) -> Offer {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    let aud = &inputs.audience;
    if let Some(t) = inputs.id_token.as_ref().filter(|t| !t.trim().is_empty()) {
        let t = t.trim().to_string();
        let source = match platform {
            Platform::Github => "ID token from GATE_ID_TOKEN",
            Platform::Gitlab => "GitLab ID token from GATE_ID_TOKEN",
            Platform::Jenkins => "Jenkins OIDC token from GATE_ID_TOKEN",
            Platform::Generic => "OIDC token from GATE_ID_TOKEN",
        };
        return match jwt_audiences(&t) {
            Ok(auds) if auds.is_empty() => Offer::Token {
                token: t,
                what: format!("{source} (no audience claim)"),
                refresh: None,
            },
            Ok(auds) => Offer::Token {
                token: t,
                what: format!("{source} (audience {})", auds.join(", ")),
                refresh: None,
            },
            Err(e) => Offer::Failed {
                error: format!("GATE_ID_TOKEN is not an OIDC token: {e}"),
            },
        };
    }
    match platform {
        Platform::Github => match (
            get("ACTIONS_ID_TOKEN_REQUEST_URL"),
            get("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        ) {
            (Some(url), Some(bearer)) => match fetch_github(&url, &bearer, aud).await {
                Ok(token) => Offer::Token {
                    token,
                    what: format!("GitHub OIDC token (audience {aud})"),
                    refresh: Some(Refresh {
                        url,
                        bearer,
                        audience: aud.clone(),
                    }),
                },
                Err(e) => Offer::Failed {
                    error: format!("could not get a GitHub OIDC token: {e}"),
                },
            },
            _ => Offer::Absent {
                why: "no id-token permission: add \"permissions: id-token: write\" to the job".into(),
            },
        },
        Platform::Gitlab => Offer::Absent {
            why: format!("GATE_ID_TOKEN is empty: add id_tokens: GATE_ID_TOKEN: aud: {aud} to the job"),
        },
        Platform::Jenkins => Offer::Absent {
            why: "GATE_ID_TOKEN is empty: bind an OIDC token credential with \
                  withCredentials([string(credentialsId: 'jitgate-id-token', variable: 'GATE_ID_TOKEN')])"
                .into(),
        },
        Platform::Generic => Offer::Absent {
            why: "not on GitHub Actions, GitLab CI or Jenkins, and GATE_ID_TOKEN is not set".into(),
        },
    }
}

/// Applies the fallback to the static token. Pure: every message is tested.
pub fn choose(platform: Platform, inputs: &Inputs, offer: Offer) -> Result<Identity, NoIdentity> {
    let static_token = inputs
        .static_token
        .as_ref()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let mut masks = Vec::new();
    if platform == Platform::Github {
        masks.extend(static_token.clone());
    }
    let mut warnings = Vec::new();
    let why = match offer {
        Offer::Token { token, what, refresh } => {
            if platform == Platform::Github && !masks.contains(&token) {
                masks.push(token.clone());
            }
            return Ok(Identity {
                token,
                oidc: true,
                line: what,
                masks,
                warnings,
                refresh,
            });
        }
        Offer::Absent { why } => why,
        Offer::Failed { error } => {
            warnings.push(error.clone());
            match platform {
                Platform::Github => "the GitHub OIDC token request failed".to_string(),
                _ => "GATE_ID_TOKEN could not be used".to_string(),
            }
        }
    };
    match static_token {
        Some(token) => Ok(Identity {
            token,
            oidc: false,
            line: format!("static token ({why})"),
            masks,
            warnings,
            refresh: None,
        }),
        None => Err(match warnings.into_iter().next() {
            Some(error) => NoIdentity::Failed { error },
            None => NoIdentity::Absent { why },
        }),
    }
}

/// How long to wait before fetching the next token, for one that expires at `exp`:
/// two minutes ahead, or half its remaining life when that is shorter (at least 1s).
pub fn refresh_delay(exp: i64, now: i64) -> Duration {
    let left = exp - now;
    let secs = if left > 240 { left - 120 } else { (left / 2).max(1) };
    Duration::from_secs(secs as u64)
}

/// Keeps a token fresh: before the one expiring at `exp` does, fetches the next and hands
/// it to `on_token`; a failed fetch goes to `on_error` and is retried in 30s. Returns only
/// when a token has no `exp` (nothing to schedule); run it as a task and abort it.
pub async fn refresh_loop(
    refresh: Refresh,
    exp: i64,
    mut on_token: impl FnMut(String),
    mut on_error: impl FnMut(FetchError),
) {
    let now = || jiff::Timestamp::now().as_second();
    let mut delay = refresh_delay(exp, now());
    loop {
        tokio::time::sleep(delay).await;
        match refresh.fetch().await {
            Ok(token) => {
                let exp = jwt_expiry(&token);
                on_token(token);
                match exp {
                    Some(exp) => delay = refresh_delay(exp, now()),
                    None => return,
                }
            }
            Err(e) => {
                on_error(e);
                delay = Duration::from_secs(30);
            }
        }
    }
}

/// A warning when a token that cannot be refreshed expires before the request can time
/// out: a wait past that point would be refused by the server.
pub fn expiry_warning(identity: &Identity, request_expires_at: &str) -> Option<String> {
    if identity.refresh.is_some() {
        return None;
    }
    let exp = identity.expires()?;
    let until = request_expires_at.parse::<jiff::Timestamp>().ok()?;
    // Whole seconds, rounded down.
    let until = until.as_second() - i64::from(until.subsec_nanosecond() < 0);
    (exp < until).then(|| {
        let epoch = jiff::civil::date(1970, 1, 1).at(0, 0, 0, 0);
        let at = epoch
            .checked_add(jiff::SignedDuration::from_secs(exp))
            .ok()
            .filter(|t| t.year() >= 0)
            .map_or_else(|| exp.to_string(), |t| format!("{t}Z"));
        format!(
            "the OIDC token expires at {at}, before this request times out ({request_expires_at}): \
             a wait past then is refused; give the token a longer lifetime"
        )
    })
}

/// The `exp` claim of a JWT (Unix seconds), unchecked.
pub fn jwt_expiry(token: &str) -> Option<i64> {
    jwt_claims(token).ok()?["exp"].as_i64()
}

/// The `aud` claim of a JWT, read without checking the signature (the server checks it):
/// only to say which audience the token is for.
pub fn jwt_audiences(token: &str) -> Result<Vec<String>, JwtError> {
    let claims = jwt_claims(token)?;
    Ok(match &claims["aud"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    })
}

fn jwt_claims(token: &str) -> Result<serde_json::Value, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(JwtError::Shape);
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode = |p: &str| b64.decode(p.trim_end_matches('='));
    let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])?).map_err(JwtError::HeaderJson)?;
    if !header.is_object() {
        return Err(JwtError::HeaderNotObject);
    }
    let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])?).map_err(JwtError::ClaimsJson)?;
    if !claims.is_object() {
        return Err(JwtError::ClaimsNotObject);
    }
    Ok(claims)
}

#[derive(Deserialize)]
struct GithubTokenAnswer {
    #[serde(default)]
    value: String,
}

/// The runner's token endpoint: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
/// `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answering `{"value": JWT}`.
/// Retries a few times through network trouble and 5xx, as the official toolkit does.
pub async fn fetch_github(url: &str, bearer: &str, audience: &str) -> Result<String, FetchError> {
    let mut u = reqwest::Url::parse(url)?;
    if !audience.is_empty() {
        u.query_pairs_mut().append_pair("audience", audience);
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(FetchError::Client)?;
    let mut attempt = 0u32;
    loop {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
        }
        match ask_github(&http, &u, bearer).await {
            Err(e) if e.is_transient() && attempt < 2 => attempt += 1,
            r => return r,
        }
    }
}

/// One call of the runner's token endpoint.
async fn ask_github(http: &reqwest::Client, u: &reqwest::Url, bearer: &str) -> Result<String, FetchError> {
    let resp = http
        .get(u.clone())
        .header("Authorization", format!("bearer {bearer}"))
        .header("Accept", "application/json; api-version=2.0")
        .send()
        .await
        .map_err(FetchError::Unreachable)?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(FetchError::Busy(status.as_u16()));
    }
    if !status.is_success() {
        return Err(FetchError::Refused {
            status: status.as_u16(),
            body: body.chars().take(200).collect(),
        });
    }
    let answer: GithubTokenAnswer = serde_json::from_str(&body).map_err(FetchError::Answer)?;
    if answer.value.is_empty() {
        return Err(FetchError::Empty);
    }
    Ok(answer.value)
}

#[cfg(test)]
mod tests;
