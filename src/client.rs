//! A typed client of API v1, used by the CLI and the load tool.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::core::api::{
    AuditVerify, CreateDelegation, CreateRequest, DelegationList, DelegationView, ErrorBody, Keys, ReloadView,
    RequestView, VoteBody,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message} (HTTP {status}, {code}){}", hint(*.status, .message))]
    Api {
        status: u16,
        code: String,
        message: String,
        /// The answer's `Retry-After`, in seconds, if it had one.
        retry_after: Option<u64>,
    },
    /// We could not reach the server, or the connection broke.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

/// What to try next, for the errors a newcomer meets first.
fn hint(status: u16, message: &str) -> &'static str {
    if status == 401 && (message.starts_with("unknown token") || message.starts_with("missing")) {
        "; check the token with `printf '%s' \"$GATE_TOKEN\" | gate token hash`: the server's gate.yaml must list that token_sha256"
    } else {
        ""
    }
}

impl ClientError {
    /// Worth retrying: the network, or a server that says it is briefly unable.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Api { status, .. } => matches!(status, 502..=504 | 429),
            ClientError::Decode(_) => false,
        }
    }

    /// How long the server asked us to wait before retrying (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Api { retry_after, .. } => retry_after.map(Duration::from_secs),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// Shared by clones, so a short-lived token can be replaced while calls are under way.
    token: Arc<RwLock<Option<String>>>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Transport(format!(
                "server URL `{base}` must start with http:// or https://"
            )));
        }
        Ok(Client {
            http,
            base,
            token: Arc::new(RwLock::new(token)),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Presents `token` from the next call on (this client and its clones): an OIDC
    /// token that expires is replaced by a fresh one during a long wait.
    pub fn set_token(&self, token: String) {
        if let Ok(mut t) = self.token.write() {
            *t = Some(token);
        }
    }

    fn req(&self, method: reqwest::Method, path: &str, timeout: Duration) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout);
        let token = self.token.read().map(|t| t.clone()).unwrap_or_default();
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<(u16, String)> {
        let resp = rb
            .send()
            .await
            .map_err(|e| ClientError::Transport(crate::core::error_chain(&e)))?;
        Self::read(resp).await
    }

    /// An answer's status and body; a 4xx or 5xx as the error it carries.
    async fn read(resp: reqwest::Response) -> Result<(u16, String)> {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::Transport(crate::core::error_chain(&e)))?;
        if status >= 400 {
            return Err(match serde_json::from_str::<ErrorBody>(&text) {
                Ok(b) => ClientError::Api {
                    status,
                    code: b.error.code,
                    message: b.error.message,
                    retry_after,
                },
                Err(_) => ClientError::Api {
                    status,
                    code: "http".into(),
                    message: text.chars().take(200).collect(),
                    retry_after,
                },
            });
        }
        Ok((status, text))
    }

    async fn json<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T> {
        let (_, text) = self.send(rb).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }

    const SHORT: Duration = Duration::from_secs(30);

    /// Opens a request; `true` when it is new, `false` when the server replayed one.
    pub async fn create(&self, body: &CreateRequest) -> Result<(RequestView, bool)> {
        let (status, text) = self
            .send(
                self.req(reqwest::Method::POST, "/api/v1/requests", Self::SHORT)
                    .json(body),
            )
            .await?;
        let v = serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((v, status == 201))
    }

    pub async fn get(&self, id: &str) -> Result<RequestView> {
        self.json(self.req(reqwest::Method::GET, &format!("/api/v1/requests/{id}"), Self::SHORT))
            .await
    }

    /// Long-wait for a change from `version`.
    pub async fn wait(&self, id: &str, version: Option<i64>, secs: u64) -> Result<RequestView> {
        let mut path = format!("/api/v1/requests/{id}/wait?timeout={secs}");
        if let Some(v) = version {
            path.push_str(&format!("&version={v}"));
        }
        self.json(self.req(reqwest::Method::GET, &path, Duration::from_secs(secs + 15)))
            .await
    }

    async fn act(&self, id: &str, verb: &str, reason: Option<String>) -> Result<RequestView> {
        self.act_body(
            id,
            verb,
            &VoteBody {
                reason,
                ..Default::default()
            },
        )
        .await
    }

    async fn act_body(&self, id: &str, verb: &str, body: &VoteBody) -> Result<RequestView> {
        self.json(
            self.req(
                reqwest::Method::POST,
                &format!("/api/v1/requests/{id}/{verb}"),
                Self::SHORT,
            )
            .json(&body),
        )
        .await
    }

    pub async fn approve(&self, id: &str, reason: Option<String>) -> Result<RequestView> {
        self.act(id, "approve", reason).await
    }
    pub async fn deny(&self, id: &str, reason: Option<String>) -> Result<RequestView> {
        self.act(id, "deny", reason).await
    }
    /// Approves (`approve`) or denies for `for_whom` under their delegation to the caller.
    pub async fn vote_for(
        &self,
        id: &str,
        approve: bool,
        reason: Option<String>,
        for_whom: String,
    ) -> Result<RequestView> {
        let verb = if approve { "approve" } else { "deny" };
        self.act_body(
            id,
            verb,
            &VoteBody {
                reason,
                on_behalf_of: Some(for_whom),
                ..Default::default()
            },
        )
        .await
    }

    pub async fn delegate(&self, body: &CreateDelegation) -> Result<DelegationView> {
        self.json(
            self.req(reqwest::Method::POST, "/api/v1/delegations", Self::SHORT)
                .json(body),
        )
        .await
    }

    pub async fn delegations(&self) -> Result<Vec<DelegationView>> {
        let l: DelegationList = self
            .json(self.req(reqwest::Method::GET, "/api/v1/delegations", Self::SHORT))
            .await?;
        Ok(l.delegations)
    }

    pub async fn revoke_delegation(&self, id: &str) -> Result<DelegationView> {
        self.json(self.req(
            reqwest::Method::DELETE,
            &format!("/api/v1/delegations/{id}"),
            Self::SHORT,
        ))
        .await
    }

    /// `POST /api/v1/admin/reload` (admins only).
    pub async fn reload(&self) -> Result<ReloadView> {
        self.json(self.req(reqwest::Method::POST, "/api/v1/admin/reload", Self::SHORT))
            .await
    }

    pub async fn cancel(&self, id: &str, reason: Option<String>) -> Result<RequestView> {
        self.act(id, "cancel", reason).await
    }
    pub async fn consume(&self, id: &str) -> Result<RequestView> {
        self.act(id, "consume", None).await
    }

    /// Consumes from CI run `run_id` (see [`VoteBody::run_id`]).
    pub async fn consume_from(&self, id: &str, run_id: Option<String>) -> Result<RequestView> {
        let body = VoteBody {
            run_id,
            ..Default::default()
        };
        self.act_body(id, "consume", &body).await
    }

    /// The signed record, as the envelope's JSON text.
    pub async fn record(&self, id: &str) -> Result<String> {
        Ok(self
            .send(self.req(
                reqwest::Method::GET,
                &format!("/api/v1/requests/{id}/record"),
                Self::SHORT,
            ))
            .await?
            .1)
    }

    /// Every request in `status` the caller may act on: follows the server's
    /// `Link: <…>; rel="next"` pages to the end.
    pub async fn list(&self, status: &str) -> Result<Vec<RequestView>> {
        let mut out = Vec::new();
        let mut path = format!("/api/v1/requests?status={status}");
        // A server that kept answering the same link would loop forever; no inbox has a
        // million pages.
        for _ in 0..1_000_000 {
            let resp = self
                .req(reqwest::Method::GET, &path, Self::SHORT)
                .send()
                .await
                .map_err(|e| ClientError::Transport(crate::core::error_chain(&e)))?;
            let next = resp
                .headers()
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            let (_, text) = Self::read(resp).await?;
            let page: Vec<RequestView> = serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))?;
            out.extend(page);
            match next {
                Some(n) if n.starts_with('/') && n != path => path = n,
                _ => break,
            }
        }
        Ok(out)
    }

    pub async fn audit(&self, id: &str) -> Result<Vec<crate::core::api::AuditEvent>> {
        self.json(self.req(
            reqwest::Method::GET,
            &format!("/api/v1/requests/{id}/audit"),
            Self::SHORT,
        ))
        .await
    }

    pub async fn keys(&self) -> Result<Keys> {
        self.json(self.req(reqwest::Method::GET, "/api/v1/keys", Self::SHORT))
            .await
    }

    pub async fn audit_verify(&self) -> Result<AuditVerify> {
        self.json(self.req(reqwest::Method::GET, "/api/v1/audit/verify", Duration::from_secs(600)))
            .await
    }

    pub async fn audit_export(&self, after: i64, limit: i64) -> Result<String> {
        let path = format!("/api/v1/audit/export?after={after}&limit={limit}");
        Ok(self
            .send(self.req(reqwest::Method::GET, &path, Duration::from_secs(600)))
            .await?
            .1)
    }

    /// The log's latest signed checkpoint (`text/plain`, no token needed).
    pub async fn log_checkpoint(&self) -> Result<String> {
        Ok(self
            .send(self.req(reqwest::Method::GET, "/api/v1/log/checkpoint", Self::SHORT))
            .await?
            .1)
    }

    /// The log's verifier key.
    pub async fn log_key(&self) -> Result<String> {
        Ok(self
            .send(self.req(reqwest::Method::GET, "/api/v1/log/key", Self::SHORT))
            .await?
            .1
            .trim()
            .to_string())
    }

    /// The consistency proof between two tree sizes (base64 hashes).
    pub async fn log_consistency(&self, from: u64, to: u64) -> Result<Vec<String>> {
        let path = format!("/api/v1/log/proof/consistency?from={from}&to={to}");
        let v: serde_json::Value = self.json(self.req(reqwest::Method::GET, &path, Self::SHORT)).await?;
        serde_json::from_value(v["hashes"].clone()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The inclusion proof of leaf `index` in the tree of `size` (base64 hashes).
    pub async fn log_inclusion(&self, index: u64, size: u64) -> Result<Vec<String>> {
        let path = format!("/api/v1/log/proof/inclusion?index={index}&size={size}");
        let v: serde_json::Value = self.json(self.req(reqwest::Method::GET, &path, Self::SHORT)).await?;
        serde_json::from_value(v["hashes"].clone()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The change report of `[from, to)` (`GET /api/v1/reports/changes`) in `format`
    /// (`json`, `csv` or `html`), as the server wrote it.
    pub async fn change_report(&self, from: &str, to: &str, environment: Option<&str>, format: &str) -> Result<String> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("from", from)
            .append_pair("to", to)
            .append_pair("format", format);
        if let Some(e) = environment {
            q.append_pair("environment", e);
        }
        let path = format!("/api/v1/reports/changes?{}", q.finish());
        Ok(self
            .send(self.req(reqwest::Method::GET, &path, Duration::from_secs(600)))
            .await?
            .1)
    }

    /// Posts a cosigned checkpoint; returns the witnesses the server kept it for.
    pub async fn log_cosign(&self, note: &str) -> Result<Vec<String>> {
        let v: serde_json::Value = self
            .json(
                self.req(reqwest::Method::POST, "/api/v1/log/cosign", Self::SHORT)
                    .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(note.to_string()),
            )
            .await?;
        serde_json::from_value(v["witnesses"].clone()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// GET of an arbitrary URL (a key published elsewhere), no token sent.
    pub async fn fetch_url(url: &str) -> Result<String> {
        let r = reqwest::Client::new()
            .get(url)
            .timeout(Self::SHORT)
            .send()
            .await
            .map_err(|e| ClientError::Transport(crate::core::error_chain(&e)))?;
        let status = r.status().as_u16();
        let text = r
            .text()
            .await
            .map_err(|e| ClientError::Transport(crate::core::error_chain(&e)))?;
        if status >= 400 {
            return Err(ClientError::Api {
                status,
                code: "http".into(),
                message: format!("GET {url}"),
                retry_after: None,
            });
        }
        Ok(text)
    }
}

/// The target of the `rel="next"` entry of a `Link` header, if any.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then(|| target.to_string())
    })
}
