//! The Jenkins adapter: answers a build's `input` step the way Jenkins' own links do
//! (Pipeline: Input Step): `POST {BUILD_URL}input/{ID}/proceedEmpty` to proceed,
//! `POST {BUILD_URL}input/{ID}/abort` to abort, with basic authentication by a user's API
//! token. A Jenkins that asks for a CSRF crumb (a 403 saying "No valid crumb") gets one
//! from `crumbIssuer/api/json`, sent back in the header that answer names, with the
//! session cookie it came with (crumbs are tied to their web session). No crate: it is
//! two calls on reqwest.
//!
//! The token goes only to builds under the configured root ([`build_url_under`]): the
//! build URL comes from the pipeline, which must not be able to send it elsewhere.

use serde::Deserialize;
use url::Url;

use super::{Error, Timeouts, encode};

const FORGE: &str = "Jenkins";
const ANSWER: &str = "answering the input";
const CRUMB: &str = "asking for a crumb";
const BUILD: &str = "reading the build";

/// What the server tells an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `proceedEmpty`: the input step returns and the pipeline goes on.
    Proceed,
    /// `abort`: the input step fails with ABORTED.
    Abort,
}

impl Answer {
    fn action(self) -> &'static str {
        match self {
            Answer::Proceed => "proceedEmpty",
            Answer::Abort => "abort",
        }
    }
}

/// How an answer was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Jenkins took it now.
    Now,
    /// The input was no longer waiting and the build has finished (answered already, by
    /// an earlier attempt of ours whose reply was lost or by someone in Jenkins, or the
    /// build was aborted): nothing is left to release.
    Gone,
}

/// `crumbIssuer/api/json`: `{"_class": …, "crumb": "…", "crumbRequestField": "Jenkins-Crumb"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Crumb {
    crumb: String,
    crumb_request_field: String,
}

/// `{BUILD_URL}api/json?tree=building`.
#[derive(Debug, Deserialize)]
struct Build {
    #[serde(default)]
    building: bool,
}

/// The configured root as the base every build URL must lie under: http(s), no
/// credentials, query or fragment, ending in `/`.
pub fn root(url: &str) -> Result<Url, String> {
    crate::core::url::check_url(url).map_err(|e| e.to_string())?;
    let mut u = Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "`{url}` must not carry a user or password (give `user` and `token_env`)"
        ));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("`{url}` must not have a query or fragment"));
    }
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}

/// `build_url` (a build's `BUILD_URL`) if it lies under `root`: the same scheme, host
/// and port, a path below the root's (after `.`/`..` and their encodings are resolved),
/// and nothing else (no credentials, query or fragment). Ends in `/`.
pub fn build_url_under(root: &Url, build_url: &str) -> Result<Url, String> {
    let refuse = |why: &str| {
        Err(format!(
            "the build URL `{build_url}` {why}; this server answers only builds under jenkins.url `{root}`"
        ))
    };
    let Ok(mut u) = Url::parse(build_url.trim()) else {
        return refuse("is not a URL");
    };
    if !u.username().is_empty() || u.password().is_some() || u.query().is_some() || u.fragment().is_some() {
        return refuse("carries a user, password, query or fragment");
    }
    if u.scheme() != root.scheme()
        || u.host() != root.host()
        || u.port_or_known_default() != root.port_or_known_default()
    {
        return refuse("is on another server");
    }
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    if !u.path().starts_with(root.path()) || u.path() == root.path() {
        return refuse("is not a build under that path");
    }
    Ok(u)
}

/// The id as Jenkins keeps it: `input id: 'approve'` is `Approve` (a lower-case first
/// letter is reserved for the input action's own pages), and that is its URL.
pub fn input_id(id: &str) -> String {
    let mut c = id.chars();
    match c.next() {
        Some(f) if f.is_ascii_lowercase() => f.to_ascii_uppercase().to_string() + c.as_str(),
        _ => id.to_string(),
    }
}

/// One Jenkins and the user that answers its inputs.
pub struct Jenkins {
    http: reqwest::Client,
    root: Url,
    user: String,
    token: String,
}

impl std::fmt::Debug for Jenkins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jenkins")
            .field("root", &self.root.as_str())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Jenkins {
    /// A client for the Jenkins at `url` (jenkins.url), as `user` with its API `token`.
    pub fn new(url: &str, user: &str, token: &str, t: Timeouts) -> Result<Jenkins, Error> {
        let root = root(url).map_err(|e| Error::Usage(format!("jenkins.url {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(t.connect)
            .timeout(t.read)
            // An answer's redirect (to the build page) is not followed: the status says it.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Usage(format!("Jenkins client: {e}")))?;
        Ok(Jenkins {
            http,
            root,
            user: user.to_string(),
            token: token.trim().to_string(),
        })
    }

    /// The root every build URL must lie under.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Tells input `input` of the build at `build_url` to proceed or abort.
    pub async fn answer(&self, build_url: &str, input: &str, answer: Answer) -> Result<Answered, Error> {
        let build = build_url_under(&self.root, build_url).map_err(Error::Usage)?;
        let url = build
            .join(&format!("input/{}/{}", encode(&input_id(input)), answer.action()))
            .map_err(|e| Error::Usage(format!("input `{input}`: {e}")))?;
        let (mut status, mut body) = self.post(&url, None).await?;
        if status == 403 && body.contains("No valid crumb") {
            let crumb = self.crumb().await?;
            (status, body) = self.post(&url, Some(&crumb)).await?;
        }
        if (200..400).contains(&status) {
            return Ok(Answered::Now);
        }
        // Answered already (a race with someone in Jenkins, or our own earlier attempt):
        // the input is still listed but settled. Nothing to do again.
        if body.contains("This input has been already given") {
            return Ok(Answered::Gone);
        }
        if status == 404 {
            // The input is not waiting. Once the build is over that is final: it was
            // answered (perhaps by an attempt of ours whose reply was lost), or the build
            // was aborted, and answering again would do nothing, so it counts as delivered.
            // While the build runs it may not have reached its `input` step yet (the gate
            // step exits as soon as the request is open, and an approval at open is queued
            // at once): an error, so the worker retries with backoff.
            return if self.building(&build).await? {
                Err(api(
                    status,
                    ANSWER,
                    &body,
                    Some(format!(
                        "build {build} is running but has no input `{}` waiting (yet); retried",
                        input_id(input)
                    )),
                ))
            } else {
                Ok(Answered::Gone)
            };
        }
        Err(api(status, ANSWER, &body, self.hint(status)))
    }

    async fn post(&self, url: &Url, crumb: Option<&(Crumb, Option<String>)>) -> Result<(u16, String), Error> {
        let mut req = self.http.post(url.clone()).basic_auth(&self.user, Some(&self.token));
        if let Some((c, cookie)) = crumb {
            req = req.header(c.crumb_request_field.as_str(), c.crumb.as_str());
            if let Some(cookie) = cookie {
                req = req.header(reqwest::header::COOKIE, cookie);
            }
        }
        let resp = req.send().await.map_err(|e| transport(ANSWER, &e))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.unwrap_or_default()))
    }

    /// An authenticated GET of `rel` under `base`.
    async fn get(&self, base: &Url, rel: &str, doing: &'static str) -> Result<reqwest::Response, Error> {
        let url = base.join(rel).map_err(|e| Error::Usage(e.to_string()))?;
        self.http
            .get(url)
            .basic_auth(&self.user, Some(&self.token))
            .send()
            .await
            .map_err(|e| transport(doing, &e))
    }

    /// A crumb and the session cookie it belongs to.
    async fn crumb(&self) -> Result<(Crumb, Option<String>), Error> {
        let resp = self.get(&self.root, "crumbIssuer/api/json", CRUMB).await?;
        let status = resp.status().as_u16();
        let cookies: Vec<String> = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(|v| v.trim().to_string())
            .collect();
        let body = resp.text().await.unwrap_or_default();
        if status != 200 {
            return Err(api(status, CRUMB, &body, self.hint(status)));
        }
        let crumb: Crumb = serde_json::from_str(&body).map_err(|e| Error::Decode {
            forge: FORGE,
            doing: CRUMB,
            message: e.to_string(),
        })?;
        Ok((crumb, (!cookies.is_empty()).then(|| cookies.join("; "))))
    }

    /// Whether the build is still running; a build Jenkins no longer has is not.
    async fn building(&self, build: &Url) -> Result<bool, Error> {
        let resp = self.get(build, "api/json?tree=building", BUILD).await?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        match status {
            200 => serde_json::from_str::<Build>(&body)
                .map(|b| b.building)
                .map_err(|e| Error::Decode {
                    forge: FORGE,
                    doing: BUILD,
                    message: e.to_string(),
                }),
            404 => Ok(false),
            _ => Err(api(status, BUILD, &body, self.hint(status))),
        }
    }

    fn hint(&self, status: u16) -> Option<String> {
        match status {
            401 => Some(format!(
                "check jenkins.user `{}` and the API token in jenkins.token_env",
                self.user
            )),
            403 => Some(format!(
                "user `{}` needs Job/Read on the job and may answer the input only if it is in the input's `submitter` (or has Job/Cancel, to abort)",
                self.user
            )),
            _ => None,
        }
    }
}

fn api(status: u16, doing: &'static str, body: &str, hint: Option<String>) -> Error {
    let text = crate::core::text::for_terminal(&body.split_whitespace().collect::<Vec<_>>().join(" "), false);
    Error::Api {
        forge: FORGE,
        doing,
        status,
        message: text.chars().take(200).collect(),
        hint,
    }
}

fn transport(doing: &'static str, e: &reqwest::Error) -> Error {
    Error::Transport {
        forge: FORGE,
        doing,
        message: crate::core::error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_urls_must_lie_under_the_root() {
        let r = root("https://ci.example.com/jenkins").unwrap();
        assert_eq!(r.as_str(), "https://ci.example.com/jenkins/");
        let ok = build_url_under(&r, "https://ci.example.com/jenkins/job/web/job/main/12").unwrap();
        assert_eq!(ok.as_str(), "https://ci.example.com/jenkins/job/web/job/main/12/");
        assert!(build_url_under(&r, "https://CI.example.com:443/jenkins/job/a/1/").is_ok());
        for bad in [
            "https://evil.example/jenkins/job/a/1/",
            "http://ci.example.com/jenkins/job/a/1/",
            "https://ci.example.com:8443/jenkins/job/a/1/",
            "https://ci.example.com/jenkinsx/job/a/1/",
            "https://ci.example.com/jenkins/",
            "https://ci.example.com/jenkins/../other/job/a/1/",
            "https://ci.example.com/jenkins/%2e%2e/other/job/a/1/",
            "https://u:p@ci.example.com/jenkins/job/a/1/",
            "https://ci.example.com/jenkins/job/a/1/?x=1",
            "https://ci.example.com.evil.example/jenkins/job/a/1/",
            "not a url",
        ] {
            let e = build_url_under(&r, bad).unwrap_err();
            assert!(
                e.contains("jenkins.url `https://ci.example.com/jenkins/`"),
                "{bad}: {e}"
            );
        }
        assert!(root("http://jenkins.internal:8080/").unwrap_err().contains("https://"));
        assert!(root("https://u:p@ci.example.com/").is_err());
    }

    #[test]
    fn ids_are_capitalised_as_jenkins_does() {
        assert_eq!(input_id("approve"), "Approve");
        assert_eq!(input_id("Approve"), "Approve");
        assert_eq!(input_id("1st"), "1st");
        assert_eq!(input_id("ärger"), "ärger");
    }
}
