//! GitHub and GitLab: who is in a team or group (paginated, cached for opening
//! requests, read live for votes), replies to pull/merge request comments, and the
//! checks on their webhooks. Plain `reqwest` against the REST APIs: the calls are few,
//! pagination is followed from the headers, and any API base URL works (GitHub
//! Enterprise, self-managed GitLab, a mock in tests).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::config::{ForgeAccess, ForgeConfig};
use crate::core::policy::GroupSource;

/// The default `forge.cache_ttl`.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// At most this many pages (of 100) are read for one team or group.
const MAX_PAGES: usize = 200;

/// One configured forge API.
#[derive(Clone)]
pub struct Endpoint {
    pub api_url: String,
    token: String,
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

/// Why the forge could not answer. Every one of these refuses the vote (fail closed).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForgeError {
    #[error("{0} is not configured on this server (`forge.{1}` in gate.yaml)")]
    NotConfigured(&'static str, &'static str),
    #[error("could not reach {what}: {detail}")]
    Unreachable { what: String, detail: String },
}

/// Team/group resolution and replies, shared by every request.
pub struct Forge {
    http: reqwest::Client,
    pub github: Option<Endpoint>,
    pub gitlab: Option<Endpoint>,
    ttl: Duration,
    /// Logins per group, with when they were read.
    cache: Mutex<HashMap<GroupSource, (Instant, Vec<String>)>>,
}

impl Default for Forge {
    fn default() -> Self {
        Forge::with(None, None, DEFAULT_CACHE_TTL)
    }
}

impl Forge {
    fn with(github: Option<Endpoint>, gitlab: Option<Endpoint>, ttl: Duration) -> Forge {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Forge {
            http,
            github,
            gitlab,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// From `forge:` in the config; secrets named by `*_env` are read from `env`.
    pub fn from_config(cfg: Option<&ForgeConfig>, env: &dyn Fn(&str) -> Option<String>) -> Result<Forge, String> {
        let Some(f) = cfg else {
            return Ok(Forge::default());
        };
        let endpoint = |key: &str, a: &ForgeAccess, default: &str| -> Result<Endpoint, String> {
            Ok(Endpoint {
                api_url: a
                    .api_url
                    .as_deref()
                    .unwrap_or(default)
                    .trim_end_matches('/')
                    .to_string(),
                token: a.resolve_token(env).map_err(|m| format!("forge.{key}: {m}"))?,
                webhook_secret: a.resolve_webhook_secret(env).map_err(|m| format!("forge.{key}: {m}"))?,
            })
        };
        let github = f
            .github
            .as_ref()
            .map(|a| endpoint("github", a, "https://api.github.com"))
            .transpose()?;
        let gitlab = f
            .gitlab
            .as_ref()
            .map(|a| endpoint("gitlab", a, "https://gitlab.com/api/v4"))
            .transpose()?;
        let ttl = f.cache_ttl.map(|d| d.as_std()).unwrap_or(DEFAULT_CACHE_TTL);
        Ok(Forge::with(github, gitlab, ttl))
    }

    /// Whether the forge a group lives on is configured.
    pub fn check_source(&self, s: &GroupSource) -> Result<(), ForgeError> {
        self.endpoint_for(s).map(|_| ())
    }

    fn endpoint_for(&self, s: &GroupSource) -> Result<&Endpoint, ForgeError> {
        match s {
            GroupSource::GithubTeam { .. } => self
                .github
                .as_ref()
                .ok_or(ForgeError::NotConfigured("GitHub", "github")),
            GroupSource::GitlabGroup { .. } => self
                .gitlab
                .as_ref()
                .ok_or(ForgeError::NotConfigured("GitLab", "gitlab")),
        }
    }

    /// The logins in a team or group. With `max_age`, a list read within it is reused;
    /// without, the forge is asked now (and the cache refreshed).
    pub async fn logins(&self, s: &GroupSource, max_age: Option<Duration>) -> Result<Vec<String>, ForgeError> {
        if let Some(age) = max_age {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, logins)) = cache.get(s)
                && at.elapsed() < age
            {
                return Ok(logins.clone());
            }
        }
        let ep = self.endpoint_for(s)?;
        let logins: Vec<String> = match s {
            GroupSource::GithubTeam { org, slug } => {
                let url = format!(
                    "{}/orgs/{}/teams/{}/members?per_page=100&page=1",
                    ep.api_url,
                    encode(org),
                    encode(slug)
                );
                self.pages::<GithubMember>(ep, url, s)
                    .await?
                    .into_iter()
                    .map(|m| m.login)
                    .collect()
            }
            GroupSource::GitlabGroup { path } => {
                let url = format!("{}/groups/{}/members/all?per_page=100&page=1", ep.api_url, encode(path));
                self.pages::<GitlabMember>(ep, url, s)
                    .await?
                    .into_iter()
                    // Blocked and pending members are listed too; they are not members yet.
                    .filter(|m| m.state.as_deref().is_none_or(|st| st == "active"))
                    .map(|m| m.username)
                    .collect()
            }
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(s.clone(), (Instant::now(), logins.clone()));
        Ok(logins)
    }

    /// The logins of a group for a request being opened: cached up to `cache_ttl`.
    pub async fn logins_cached(&self, s: &GroupSource) -> Result<Vec<String>, ForgeError> {
        self.logins(s, Some(self.ttl)).await
    }

    /// Reads every page, following `Link: rel="next"` (GitHub, GitLab) or `x-next-page`
    /// (GitLab). Next links must stay on the API's origin, so the token goes nowhere else.
    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        ep: &Endpoint,
        first: String,
        s: &GroupSource,
    ) -> Result<Vec<T>, ForgeError> {
        let fail = |detail: String| ForgeError::Unreachable {
            what: s.describe(),
            detail,
        };
        let mut out = Vec::new();
        let mut url = first;
        for _ in 0..MAX_PAGES {
            let resp = self
                .auth(self.http.get(&url), ep, s)
                .send()
                .await
                .map_err(|e| fail(format!("{e}")))?;
            let status = resp.status();
            if !status.is_success() {
                let why = match status.as_u16() {
                    401 => "the API token was refused (HTTP 401)".to_string(),
                    403 | 404 => format!(
                        "HTTP {} (the {} does not exist, or the token cannot read its members)",
                        status.as_u16(),
                        if matches!(s, GroupSource::GithubTeam { .. }) {
                            "team"
                        } else {
                            "group"
                        }
                    ),
                    n => format!("HTTP {n}"),
                };
                return Err(fail(why));
            }
            let next = next_page(resp.headers(), &url);
            let page: Vec<T> = resp.json().await.map_err(|e| fail(format!("unexpected answer: {e}")))?;
            out.extend(page);
            match next {
                Some(n) if same_origin(&n, &ep.api_url) => url = n,
                Some(n) => return Err(fail(format!("the next page `{n}` is not on {}", ep.api_url))),
                None => return Ok(out),
            }
        }
        Err(fail(format!("more than {MAX_PAGES} pages")))
    }

    fn auth(&self, b: reqwest::RequestBuilder, ep: &Endpoint, s: &GroupSource) -> reqwest::RequestBuilder {
        match s {
            GroupSource::GithubTeam { .. } => b
                .bearer_auth(&ep.token)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28"),
            GroupSource::GitlabGroup { .. } => b.header("PRIVATE-TOKEN", &ep.token),
        }
    }

    /// Answers on a pull request (`POST /repos/{owner}/{repo}/issues/{n}/comments`).
    pub async fn github_comment(&self, repo: &str, number: u64, body: &str) -> Result<(), ForgeError> {
        let ep = self
            .github
            .as_ref()
            .ok_or(ForgeError::NotConfigured("GitHub", "github"))?;
        let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
        let url = format!(
            "{}/repos/{}/{}/issues/{number}/comments",
            ep.api_url,
            encode(owner),
            encode(name)
        );
        let req = self
            .http
            .post(url)
            .bearer_auth(&ep.token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .json(&serde_json::json!({ "body": body }));
        send_reply(req, "GitHub").await
    }

    /// Answers on a merge request (`POST /projects/{id}/merge_requests/{iid}/notes`).
    pub async fn gitlab_note(&self, project: &str, iid: u64, body: &str) -> Result<(), ForgeError> {
        let ep = self
            .gitlab
            .as_ref()
            .ok_or(ForgeError::NotConfigured("GitLab", "gitlab"))?;
        let url = format!("{}/projects/{}/merge_requests/{iid}/notes", ep.api_url, encode(project));
        let req = self
            .http
            .post(url)
            .header("PRIVATE-TOKEN", &ep.token)
            .json(&serde_json::json!({ "body": body }));
        send_reply(req, "GitLab").await
    }
}

async fn send_reply(req: reqwest::RequestBuilder, what: &str) -> Result<(), ForgeError> {
    let fail = |detail: String| ForgeError::Unreachable {
        what: what.into(),
        detail,
    };
    let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(fail(format!("HTTP {} answering the comment", resp.status().as_u16())))
    }
}

#[derive(Deserialize)]
struct GithubMember {
    login: String,
}

#[derive(Deserialize)]
struct GitlabMember {
    username: String,
    #[serde(default)]
    state: Option<String>,
}

/// Percent-encodes one path segment (`/` included, as GitLab wants for group paths).
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The next page's URL: `Link: <…>; rel="next"`, else GitLab's `x-next-page` number
/// substituted into the current URL's `page=`.
fn next_page(h: &reqwest::header::HeaderMap, current: &str) -> Option<String> {
    if let Some(link) = h.get("link").and_then(|v| v.to_str().ok()) {
        for part in link.split(',') {
            let mut bits = part.split(';');
            let target = bits.next()?.trim();
            if bits.any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
                && let Some(u) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>'))
            {
                return Some(u.to_string());
            }
        }
        return None;
    }
    let n = h.get("x-next-page").and_then(|v| v.to_str().ok()).map(str::trim)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (base, query) = current.split_once('?').unwrap_or((current, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page="))
        .map(str::to_string)
        .collect();
    params.push(format!("page={n}"));
    Some(format!("{base}?{}", params.join("&")))
}

fn origin(u: &str) -> &str {
    let after = u.find("://").map(|i| i + 3).unwrap_or(0);
    let end = u[after..].find('/').map(|i| after + i).unwrap_or(u.len());
    &u[..end]
}

fn same_origin(a: &str, b: &str) -> bool {
    origin(a).eq_ignore_ascii_case(origin(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn pagination_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                "<https://api.github.com/organizations/1/team/2/members?per_page=100&page=2>; rel=\"next\", <https://api.github.com/organizations/1/team/2/members?per_page=100&page=3>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_page(&h, "x").as_deref(),
            Some("https://api.github.com/organizations/1/team/2/members?per_page=100&page=2")
        );
        h.insert("link", HeaderValue::from_static("<https://a/x?page=1>; rel=\"prev\""));
        assert_eq!(next_page(&h, "x"), None);
        let mut g = HeaderMap::new();
        g.insert("x-next-page", HeaderValue::from_static("3"));
        assert_eq!(
            next_page(&g, "http://h/api/v4/groups/a%2Fb/members/all?per_page=100&page=2").as_deref(),
            Some("http://h/api/v4/groups/a%2Fb/members/all?per_page=100&page=3")
        );
        g.insert("x-next-page", HeaderValue::from_static(""));
        assert_eq!(next_page(&g, "http://h/x?page=2"), None);
        assert!(same_origin("https://API.github.com/a", "https://api.github.com"));
        assert!(!same_origin("https://evil.example/a", "https://api.github.com"));
        assert_eq!(encode("acme/release-managers"), "acme%2Frelease-managers");
    }
}
