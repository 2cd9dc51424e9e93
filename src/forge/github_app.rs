//! jitgate as a GitHub App answering deployment protection rules: the App's JWT, the
//! installation token it is exchanged for, and the review posted to the
//! `deployment_callback_url` GitHub sent with the `deployment_protection_rule` event.
//!
//! Authentication as GitHub documents it: a JWT signed RS256 with the App's private key,
//! `iss` the App id, `iat` 60 seconds in the past (clock drift), `exp` 10 minutes after
//! `iat`; sent as `Authorization: Bearer` to `POST /app/installations/{id}/access_tokens`,
//! whose answer is the installation token (about an hour's life) used for the callback.
//! Tokens are kept per installation until a minute before their `expires_at`.
//!
//! The JWT is made here with `jsonwebtoken` rather than by octocrab's App support: that
//! needs octocrab's `jwt` feature, which brings a second `jsonwebtoken` (10, beside our
//! 11) and signs a 9-minute token. The calls themselves go through octocrab's generic
//! calls with the API's base URL (so a test points it at a fake), as `github.rs` does.

use std::collections::HashMap;
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use octocrab::Octocrab;
use serde::{Deserialize, Serialize};

use super::config::{AppKeyError, GithubAppConfig};
use super::{Error, Timeouts, same_origin};

const FORGE: &str = "GitHub";
const EXCHANGE: &str = "exchanging the App's JWT for an installation token";
const REVIEW: &str = "answering the deployment protection rule";
/// A cached installation token is used until this long before it expires.
const EARLY_SECS: i64 = 60;
/// GitHub's limits on a status report's comment.
pub const MAX_COMMENT: usize = 1024;

/// The answer to a deployment protection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Approved,
    Rejected,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Approved => "approved",
            State::Rejected => "rejected",
        }
    }
}

/// One post to a deployment's callback: the decision (`state`), or a status report
/// while it waits (`state` `None`).
#[derive(Debug, Clone)]
pub struct Review<'a> {
    pub installation_id: u64,
    pub callback_url: &'a str,
    pub environment: &'a str,
    pub state: Option<State>,
    pub comment: &'a str,
}

#[derive(Serialize)]
struct Claims {
    iss: String,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
}

/// The App: its id and key, and the installation tokens it holds.
pub struct GithubApp {
    /// Without credentials: each call is given the JWT or the installation token.
    crab: Octocrab,
    api: String,
    app_id: u64,
    key: EncodingKey,
    /// Installation id to (token, expires at in Unix seconds).
    tokens: Mutex<HashMap<u64, (String, i64)>>,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("api", &self.api)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

/// Why the App cannot be set up at start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppSetupError {
    #[error("forge.github.app: {0}")]
    Key(#[from] AppKeyError),
    #[error("forge.github.app: {0}")]
    Client(Error),
}

impl GithubApp {
    /// The App of `forge.github.app`, its key read and parsed now (a bad one stops the
    /// start, naming the file or the variable).
    pub fn from_config(
        api: &str,
        cfg: &GithubAppConfig,
        env: &dyn Fn(&str) -> Option<String>,
        t: Timeouts,
    ) -> Result<GithubApp, AppSetupError> {
        let (pem, from) = cfg.read_key(env)?;
        let bad = |reason: String| AppKeyError::Parse {
            from: from.clone(),
            reason,
        };
        let key = signing_key(&pem).map_err(bad)?;
        let app = GithubApp::new(api, cfg.app_id, key, t).map_err(AppSetupError::Client)?;
        // Signing once now: a key that cannot sign stops the start, not the first callback.
        app.jwt(0).map_err(|e| bad(e.to_string()))?;
        Ok(app)
    }

    pub fn new(api: &str, app_id: u64, key: EncodingKey, t: Timeouts) -> Result<GithubApp, Error> {
        let api = api.trim_end_matches('/');
        let crab = Octocrab::builder()
            .base_uri(api)
            .map_err(|e| Error::Usage(format!("GitHub API URL `{api}`: {e}")))?
            .set_connect_timeout(Some(t.connect))
            .set_read_timeout(Some(t.read))
            .add_header(
                http::header::USER_AGENT,
                concat!("jitgate/", env!("CARGO_PKG_VERSION")).to_string(),
            )
            .add_header(http::header::ACCEPT, "application/vnd.github+json".to_string())
            .build()
            .map_err(|e| Error::Usage(format!("GitHub client: {e}")))?;
        Ok(GithubApp {
            crab,
            api: api.to_string(),
            app_id,
            key,
            tokens: Mutex::default(),
        })
    }

    /// The App's JWT at `now` (Unix seconds).
    pub fn jwt(&self, now: i64) -> Result<String, Error> {
        let iat = now - 60;
        let claims = Claims {
            iss: self.app_id.to_string(),
            iat,
            exp: iat + 600,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| Error::Usage(format!("signing the GitHub App's JWT: {e}")))
    }

    /// A token of installation `id`: the cached one while it has more than a minute
    /// left, else a new one (`POST /app/installations/{id}/access_tokens`).
    pub async fn installation_token(&self, id: u64) -> Result<String, Error> {
        let now = crate::core::duration::now_ms() / 1000;
        if let Some((token, expires)) = self.lock().get(&id)
            && *expires - EARLY_SECS > now
        {
            return Ok(token.clone());
        }
        let jwt = self
            .crab
            .user_access_token(self.jwt(now)?)
            .map_err(|e| error(e, EXCHANGE))?;
        let rsp = jwt
            ._post(format!("/app/installations/{id}/access_tokens"), None::<&()>)
            .await
            .map_err(|e| error(e, EXCHANGE))?;
        let rsp = octocrab::map_github_error(rsp).await.map_err(|e| error(e, EXCHANGE))?;
        let body = jwt.body_to_string(rsp).await.map_err(|e| error(e, EXCHANGE))?;
        let t: AccessToken = serde_json::from_str(&body).map_err(|e| decode(e.to_string()))?;
        let expires = t
            .expires_at
            .parse::<jiff::Timestamp>()
            .map_err(|e| decode(format!("expires_at `{}`: {e}", t.expires_at)))?
            .as_second();
        self.lock().insert(id, (t.token.clone(), expires));
        Ok(t.token)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, i64)>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The callback URL as a path under the API, or why it is not under it: the
    /// installation token goes to the configured GitHub API and nowhere else.
    pub fn callback_path<'u>(&self, url: &'u str) -> Result<&'u str, Error> {
        let outside = || {
            Error::Usage(format!(
                "the deployment callback `{url}` is not under the GitHub API {}; not sent (the App's token goes nowhere else)",
                self.api
            ))
        };
        let rest = url
            .get(..self.api.len())
            .filter(|head| head.eq_ignore_ascii_case(&self.api) && same_origin(url, &self.api))
            .map(|_| &url[self.api.len()..])
            .ok_or_else(outside)?;
        let ok = rest.starts_with("/repos/")
            && !rest.contains("/../")
            && !rest.contains(['?', '#', '@', '\\'])
            && rest.ends_with("/deployment_protection_rule");
        ok.then_some(rest).ok_or_else(outside)
    }

    /// Posts `r` to its callback with the installation's token. GitHub answering 422
    /// ("no pending deployment requests") means the rule was answered already (a retry
    /// after an answer whose reply was lost, or a reviewer who answered on GitHub):
    /// it counts as delivered, so a retry never answers twice.
    pub async fn review(&self, r: &Review<'_>) -> Result<(), Error> {
        let path = self.callback_path(r.callback_url)?;
        let token = self.installation_token(r.installation_id).await?;
        let crab = self.crab.user_access_token(token).map_err(|e| error(e, REVIEW))?;
        let comment: String = r.comment.chars().take(MAX_COMMENT).collect();
        let mut body = serde_json::json!({"environment_name": r.environment, "comment": comment});
        if let Some(s) = r.state {
            body["state"] = s.as_str().into();
        }
        let rsp = crab._post(path, Some(&body)).await.map_err(|e| error(e, REVIEW))?;
        match octocrab::map_github_error(rsp).await {
            Ok(_) => Ok(()),
            Err(e) => match error(e, REVIEW) {
                Error::Api { status: 422, .. } => Ok(()),
                Error::Api { status: 401, .. } => {
                    // A token revoked early: the next attempt asks for a new one.
                    self.lock().remove(&r.installation_id);
                    Err(Error::Api {
                        forge: FORGE,
                        doing: REVIEW,
                        status: 401,
                        message: "the installation token was refused".into(),
                        hint: None,
                    })
                }
                e => Err(e),
            },
        }
    }
}

/// The run id in a callback URL `…/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`,
/// if the URL has that shape and names `repository`.
pub fn run_id_of(callback_url: &str, repository: &str) -> Option<String> {
    let marker = "/repos/";
    let at = callback_url.rfind(marker)? + marker.len();
    let rest = callback_url[at..].strip_suffix("/deployment_protection_rule")?;
    let (repo, run) = rest.split_once("/actions/runs/")?;
    let digits = !run.is_empty() && run.len() <= 20 && run.bytes().all(|b| b.is_ascii_digit());
    (digits && repo.eq_ignore_ascii_case(repository)).then(|| run.to_string())
}

/// The signing key of an RSA private key in PEM: `RSA PRIVATE KEY` (PKCS#1, what GitHub's
/// App settings make) or `PRIVATE KEY` (PKCS#8, e.g. after `openssl pkcs8`), read by
/// jsonwebtoken; anything else is named.
fn signing_key(text: &str) -> std::result::Result<EncodingKey, String> {
    let block = pem::parse(text.trim()).map_err(|e| format!("not a PEM private key ({e})"))?;
    match block.tag() {
        "RSA PRIVATE KEY" | "PRIVATE KEY" => {
            EncodingKey::from_rsa_pem(text.trim().as_bytes()).map_err(|_| match block.tag() {
                "PRIVATE KEY" => "a PKCS#8 key that is not RSA".to_string(),
                _ => "an `RSA PRIVATE KEY` whose content is not one".to_string(),
            })
        }
        "ENCRYPTED PRIVATE KEY" => Err("the key is encrypted; give it unencrypted".into()),
        other => Err(format!("a PEM `{other}`, not a private key")),
    }
}

fn decode(message: String) -> Error {
    Error::Decode {
        forge: FORGE,
        doing: EXCHANGE,
        message,
    }
}

fn error(e: octocrab::Error, doing: &'static str) -> Error {
    super::github::error(e, doing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const T: Timeouts = Timeouts {
        connect: std::time::Duration::from_secs(1),
        read: std::time::Duration::from_secs(1),
    };

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    #[tokio::test]
    async fn the_jwt_is_rs256_from_the_app_for_ten_minutes_from_a_minute_ago() {
        let kp = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
        // rcgen writes PKCS#8; GitHub writes PKCS#1, which in a 2048-bit key's PKCS#8 is
        // the OCTET STRING after a fixed 26-byte header.
        let der = kp.serialize_der();
        assert_eq!(&der[22..24], &[0x04, 0x82], "an OCTET STRING at 22");
        for text in [kp.serialize_pem(), pem("RSA PRIVATE KEY", &der[26..])] {
            let app = GithubApp::new("https://api.github.com", 42, signing_key(&text).unwrap(), T).unwrap();
            let token = app.jwt(1_000_000).unwrap();
            let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
            v.validate_exp = false;
            v.required_spec_claims.clear();
            let got = jsonwebtoken::decode::<serde_json::Value>(
                &token,
                &jsonwebtoken::DecodingKey::from_rsa_der(kp.public_key_raw()),
                &v,
            )
            .unwrap();
            assert_eq!(
                got.claims,
                serde_json::json!({"iss": "42", "iat": 999_940, "exp": 1_000_540})
            );
        }
    }

    #[test]
    fn keys_that_are_not_rsa_private_keys_say_what_they_are() {
        let e = |text: &str| signing_key(text).map(|_| ()).expect_err("refused");
        assert!(e("hello").starts_with("not a PEM private key ("), "{}", e("hello"));
        assert_eq!(e(&pem("PUBLIC KEY", b"x")), "a PEM `PUBLIC KEY`, not a private key");
        assert_eq!(
            e(&pem("ENCRYPTED PRIVATE KEY", b"x")),
            "the key is encrypted; give it unencrypted"
        );
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert_eq!(e(&ec.serialize_pem()), "a PKCS#8 key that is not RSA");
        assert_eq!(
            e(&pem("RSA PRIVATE KEY", b"abc")),
            "an `RSA PRIVATE KEY` whose content is not one"
        );
        let cut = pem("RSA PRIVATE KEY", b"abc").replace("-----END RSA PRIVATE KEY-----\n", "");
        assert!(e(&cut).starts_with("not a PEM private key ("), "{}", e(&cut));
    }

    #[tokio::test]
    async fn callbacks_only_under_the_api() {
        let key = EncodingKey::from_rsa_der(b"unused");
        let app = GithubApp::new("https://ghe.example/api/v3/", 1, key, T).unwrap();
        let ok = "https://ghe.example/api/v3/repos/acme/app/actions/runs/7/deployment_protection_rule";
        assert_eq!(
            app.callback_path(ok).unwrap(),
            "/repos/acme/app/actions/runs/7/deployment_protection_rule"
        );
        for bad in [
            "https://evil.example/api/v3/repos/acme/app/actions/runs/7/deployment_protection_rule",
            "https://ghe.example.evil/api/v3/repos/acme/app/actions/runs/7/deployment_protection_rule",
            "https://ghe.example/api/v3x/repos/acme/app/actions/runs/7/deployment_protection_rule",
            "https://ghe.example/api/v3/repos/acme/../../x/deployment_protection_rule",
            "https://ghe.example/api/v3/user/keys",
            "http://ghe.example/api/v3/repos/acme/app/actions/runs/7/deployment_protection_rule",
        ] {
            let e = app.callback_path(bad).unwrap_err().to_string();
            assert!(
                e.contains("is not under the GitHub API https://ghe.example/api/v3"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn run_ids_come_from_the_callback_of_the_repository() {
        let u = "https://api.github.com/repos/acme/app/actions/runs/4242/deployment_protection_rule";
        assert_eq!(run_id_of(u, "acme/app").as_deref(), Some("4242"));
        assert_eq!(run_id_of(u, "ACME/App").as_deref(), Some("4242"));
        assert_eq!(run_id_of(u, "acme/other"), None);
        assert_eq!(
            run_id_of(
                "https://api.github.com/repos/acme/app/actions/runs/x1/deployment_protection_rule",
                "acme/app"
            ),
            None
        );
        assert_eq!(
            run_id_of("https://api.github.com/repos/acme/app/actions/runs/1", "acme/app"),
            None
        );
    }
}
