//! The GitLab adapter: the `gitlab` crate's endpoints (merge request notes, group members,
//! a commit and its merge requests)
//! over one `AsyncClient` of our own on reqwest, so that the base is the configured API URL
//! as given (`CI_API_V4_URL`, a self-managed instance under a relative root, a plain-http
//! mock) and no extra call is made to check the token first. Authenticated with
//! `PRIVATE-TOKEN`.

use bytes::Bytes;
use gitlab::api::common::NameOrId;
use gitlab::api::groups::members::AllGroupMembers;
use gitlab::api::projects::jobs::{JobScope, PlayJob};
use gitlab::api::projects::merge_requests::notes::CreateMergeRequestNote;
use gitlab::api::projects::pipelines::PipelineJobs;
use gitlab::api::projects::repository::commits::{Commit, MergeRequests};
use gitlab::api::{ApiError, AsyncClient, AsyncQuery, Endpoint, Pagination, RestClient};
use serde::Deserialize;
use url::Url;

use super::{CommitPerson, Error, Timeouts, same_origin};

const FORGE: &str = "GitLab";
const NOTE: &str = "posting the merge request note";
const MEMBERS: &str = "listing group members";
const COMMIT: &str = "reading the commit";
const COMMIT_MRS: &str = "listing the commit's merge requests";
const JOBS: &str = "listing the pipeline's jobs";
const PLAY: &str = "playing the manual job";
/// At most this many pages (of 100) are read for one group.
const MAX_PAGES: usize = 200;

/// What GitLab made.
#[derive(Debug, Clone, Deserialize)]
pub struct Note {
    pub id: u64,
}

/// A member of a group, as listed.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub username: String,
    /// `active`, `blocked`, `awaiting`…
    #[serde(default)]
    pub state: Option<String>,
}

/// One of `GET /projects/:id/pipelines/:pipeline_id/jobs`, the fields we read.
#[derive(Debug, Clone, Deserialize)]
struct PipelineJob {
    id: u64,
    name: String,
    /// `manual`, `pending`, `running`, `success`, …
    status: String,
}

/// `GET /projects/:id/repository/commits/:sha`, the fields we read.
#[derive(Debug, Clone, Deserialize)]
struct CommitAnswer {
    #[serde(default)]
    author_email: Option<String>,
    #[serde(default)]
    committer_email: Option<String>,
}

/// One of `GET /projects/:id/repository/commits/:sha/merge_requests`.
#[derive(Debug, Clone, Deserialize)]
struct CommitMr {
    iid: u64,
    author: Option<MrAuthor>,
}

#[derive(Debug, Clone, Deserialize)]
struct MrAuthor {
    username: String,
}

/// The transport error of our client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transport(String);

/// One GitLab API with one token: `gitlab::api::AsyncClient` over reqwest.
#[derive(Clone)]
pub struct GitLab {
    http: reqwest::Client,
    base: Url,
    token: http::HeaderValue,
}

impl std::fmt::Debug for GitLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLab")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl GitLab {
    /// A client for `api` (e.g. `https://gitlab.com/api/v4`).
    pub fn new(api: &str, token: &str, t: Timeouts) -> Result<GitLab, Error> {
        // A trailing slash makes `join` append to the path instead of replacing its last part.
        let base = Url::parse(&format!("{}/", api.trim_end_matches('/')))
            .map_err(|e| Error::Usage(format!("CI_API_V4_URL `{api}`: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Usage(format!("CI_API_V4_URL `{api}` is not an http(s) URL")));
        }
        let mut token = http::HeaderValue::from_str(token.trim())
            .map_err(|_| Error::Usage("GATE_GITLAB_TOKEN is not a valid header value".into()))?;
        token.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(t.connect)
            .timeout(t.read)
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Usage(format!("GitLab client: {e}")))?;
        Ok(GitLab { http, base, token })
    }

    /// Posts `body` (Markdown) as a note on merge request `!mr_iid` of `project` (its id,
    /// or its path): `POST /projects/{id}/merge_requests/{iid}/notes`.
    pub async fn create_mr_note(&self, project: &str, mr_iid: u64, body: &str) -> Result<Note, Error> {
        let endpoint = CreateMergeRequestNote::builder()
            .project(name_or_id(project))
            .merge_request(mr_iid)
            .body(body)
            .build()
            .map_err(|e| Error::Usage(format!("GitLab note: {e}")))?;
        endpoint
            .query_async(self)
            .await
            .map_err(|e| with_hint(error(e, NOTE), project, mr_iid))
    }

    /// Who wrote `sha` of `project` (its id, or its path): the commit's author and
    /// committer email addresses (`GET /projects/:id/repository/commits/:sha`) and the
    /// authors of the merge requests that contain it (`…/commits/:sha/merge_requests`,
    /// the first 100). The token needs `read_api`.
    pub async fn commit_people(&self, project: &str, sha: &str) -> Result<Vec<CommitPerson>, Error> {
        let id = || name_or_id(project);
        let c: CommitAnswer = Commit::builder()
            .project(id())
            .commit(sha)
            .build()
            .map_err(|e| Error::Usage(format!("GitLab commit: {e}")))?
            .query_async(self)
            .await
            .map_err(|e| error(e, COMMIT))?;
        let mrs_endpoint = MergeRequests::builder()
            .project(id())
            .sha(sha)
            .build()
            .map_err(|e| Error::Usage(format!("GitLab commit merge requests: {e}")))?;
        let mrs: Vec<CommitMr> = gitlab::api::paged(mrs_endpoint, Pagination::Limit(100))
            .query_async(self)
            .await
            .map_err(|e| error(e, COMMIT_MRS))?;
        let mut out = Vec::new();
        let mut add = |identity: Option<String>, from: String| {
            if let Some(identity) = identity.filter(|i| !i.is_empty()) {
                out.push(CommitPerson { identity, from });
            }
        };
        add(c.author_email, "gitlab commit author_email".into());
        add(c.committer_email, "gitlab commit committer_email".into());
        for mr in mrs {
            add(
                mr.author.map(|a| a.username),
                format!("gitlab merge request !{} author.username", mr.iid),
            );
        }
        Ok(out)
    }

    /// Everyone in a group, inherited members included (`GET /groups/{path}/members/all`),
    /// every page.
    pub async fn group_members(&self, group: &str) -> Result<Vec<Member>, Error> {
        let endpoint = AllGroupMembers::builder()
            .group(group)
            .build()
            .map_err(|e| Error::Usage(format!("GitLab group members: {e}")))?;
        self.all_pages(&endpoint, MEMBERS).await
    }

    /// Starts manual job `job` (its name) of pipeline `pipeline` of `project` (its id, or
    /// its path): finds it among the pipeline's manual jobs (`GET
    /// /projects/:id/pipelines/:pipeline_id/jobs?scope[]=manual`, every page) and plays it
    /// (`POST /projects/:id/jobs/:job_id/play`). The token needs `api` and the right to
    /// run the job (Developer, or what the protected branch or environment asks).
    ///
    /// A job of that name that is no longer manual was played already (by an earlier
    /// attempt whose answer was lost, or by someone pressing play): that counts as done,
    /// so a retried delivery never starts the job twice. GitLab answers a play of a job
    /// that stopped being manual meanwhile with 400 (`Unplayable Job`); that is checked
    /// the same way.
    pub async fn play_job(&self, project: &str, pipeline: &str, job: &str) -> Result<(), Error> {
        let pipeline_id: u64 = pipeline
            .parse()
            .map_err(|_| Error::Usage(format!("GitLab pipeline id `{pipeline}` is not a number")))?;
        let jobs = |manual: bool| {
            let mut b = PipelineJobs::builder();
            b.project(name_or_id(project)).pipeline(pipeline_id);
            if manual {
                b.scope(JobScope::Manual);
            }
            b.build()
                .map_err(|e| Error::Usage(format!("GitLab pipeline jobs: {e}")))
        };
        let manual: Vec<PipelineJob> = self.all_pages(&jobs(true)?, JOBS).await?;
        if let Some(found) = manual.iter().find(|j| j.name == job) {
            let play = PlayJob::builder()
                .project(name_or_id(project))
                .job(found.id)
                .build()
                .map_err(|e| Error::Usage(format!("GitLab play: {e}")))?;
            match gitlab::api::ignore(play)
                .query_async(self)
                .await
                .map_err(|e| error(e, PLAY))
            {
                Ok(()) => return Ok(()),
                Err(e) if e.status() == Some(400) => {}
                Err(e) => return Err(e),
            }
        }
        let all: Vec<PipelineJob> = self.all_pages(&jobs(false)?, JOBS).await?;
        match all.iter().find(|j| j.name == job) {
            Some(j) if j.status != "manual" => Ok(()),
            Some(_) => Err(Error::Api {
                forge: FORGE,
                doing: PLAY,
                status: 400,
                message: format!("job `{job}` of pipeline {pipeline} is manual but cannot be played"),
                hint: Some("the token needs the right to run it (protected branch or environment?)".into()),
            }),
            None => Err(Error::Usage(format!(
                "pipeline {pipeline} of GitLab project {project} has no job named `{job}`"
            ))),
        }
    }

    /// Every page of a list endpoint: the crate's own paging stops at the first short
    /// page, so pages are followed here, from `Link: rel="next"` or `x-next-page`, and
    /// only on this API's origin.
    async fn all_pages<E: Endpoint + Sync, T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &E,
        doing: &'static str,
    ) -> Result<Vec<T>, Error> {
        let mut url = endpoint
            .url_base()
            .endpoint_for(self, &endpoint.endpoint())
            .map_err(|e| error(e, doing))?;
        endpoint.parameters().add_to_url(&mut url);
        url.query_pairs_mut()
            .append_pair("per_page", "100")
            .append_pair("page", "1");
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let request = http::Request::builder().method(endpoint.method()).uri(url.as_str());
            let rsp = self
                .rest_async(request, Vec::new())
                .await
                .map_err(|e| error(e, doing))?;
            if !rsp.status().is_success() {
                return Err(api(rsp.status(), service_message(rsp.status(), rsp.body()), doing));
            }
            let page: Vec<T> = serde_json::from_slice(rsp.body()).map_err(|e| Error::Decode {
                forge: FORGE,
                doing,
                message: e.to_string(),
            })?;
            out.extend(page);
            match next_page(rsp.headers(), &url) {
                Some(next) if same_origin(next.as_str(), self.base.as_str()) => url = next,
                Some(next) => {
                    return Err(paging(
                        doing,
                        format!(
                            "the next page `{next}` is not on {}",
                            self.base.as_str().trim_end_matches('/')
                        ),
                    ));
                }
                None => return Ok(out),
            }
        }
        Err(paging(doing, format!("more than {MAX_PAGES} pages")))
    }
}

/// A project id (all digits) or path, as the crate's endpoints take it.
fn name_or_id(project: &str) -> NameOrId<'_> {
    match project.parse::<u64>() {
        Ok(n) => n.into(),
        Err(_) => project.into(),
    }
}

impl RestClient for GitLab {
    type Error = Transport;

    fn rest_endpoint(&self, endpoint: &str) -> Result<Url, ApiError<Self::Error>> {
        Ok(self.base.join(endpoint)?)
    }
}

#[async_trait::async_trait]
impl AsyncClient for GitLab {
    async fn rest_async(
        &self,
        mut request: http::request::Builder,
        body: Vec<u8>,
    ) -> Result<http::Response<Bytes>, ApiError<Self::Error>> {
        let fail = |m: String| ApiError::client(Transport(m));
        if let Some(h) = request.headers_mut() {
            h.insert("PRIVATE-TOKEN", self.token.clone());
        }
        let request = request.body(body).map_err(|e| fail(e.to_string()))?;
        let request = reqwest::Request::try_from(request).map_err(|e| fail(e.to_string()))?;
        let rsp = self
            .http
            .execute(request)
            .await
            .map_err(|e| fail(crate::core::error_chain(&e)))?;
        let mut out = http::Response::builder().status(rsp.status()).version(rsp.version());
        if let Some(h) = out.headers_mut() {
            for (k, v) in rsp.headers() {
                h.insert(k, v.clone());
            }
        }
        let bytes = rsp.bytes().await.map_err(|e| fail(crate::core::error_chain(&e)))?;
        out.body(bytes).map_err(|e| fail(e.to_string()))
    }
}

/// The next page: `Link: <…>; rel="next"`, else `x-next-page` put into `page=`.
fn next_page(h: &http::HeaderMap, current: &Url) -> Option<Url> {
    if let Some(link) = h.get("link").and_then(|v| v.to_str().ok()) {
        for part in link.split(',') {
            let mut bits = part.split(';');
            let target = bits.next()?.trim();
            if bits.any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
                && let Some(u) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>'))
            {
                return Url::parse(u).ok();
            }
        }
        return None;
    }
    let n = h.get("x-next-page").and_then(|v| v.to_str().ok()).map(str::trim)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut next = current.clone();
    let kept: Vec<(String, String)> = current
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    next.query_pairs_mut().clear().extend_pairs(kept).append_pair("page", n);
    Some(next)
}

fn paging(doing: &'static str, message: String) -> Error {
    Error::Paging {
        forge: FORGE,
        doing,
        message,
    }
}

fn api(status: http::StatusCode, message: String, doing: &'static str) -> Error {
    Error::Api {
        forge: FORGE,
        doing,
        status: status.as_u16(),
        message,
        hint: None,
    }
}

/// A non-JSON error body: its text, unless empty or an HTML page.
fn service_message(status: http::StatusCode, data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.chars().take(300).collect()
    }
}

fn error(e: ApiError<Transport>, doing: &'static str) -> Error {
    match e {
        ApiError::Client { source } => Error::Transport {
            forge: FORGE,
            doing,
            message: source.0,
        },
        ApiError::GitlabWithStatus { status, msg } => api(status, msg, doing),
        ApiError::GitlabObjectWithStatus { status, obj } | ApiError::GitlabUnrecognizedWithStatus { status, obj } => {
            api(status, obj.to_string(), doing)
        }
        ApiError::GitlabService { status, data } => api(status, service_message(status, &data), doing),
        ApiError::GitlabRateLimited { retry_after, .. } => api(
            http::StatusCode::TOO_MANY_REQUESTS,
            format!("rate limited; retry after {}s", retry_after.as_secs()),
            doing,
        ),
        ApiError::MovedPermanently { location } => api(
            http::StatusCode::MOVED_PERMANENTLY,
            format!("moved to {}", location.unwrap_or_default()),
            doing,
        ),
        ApiError::Json { source } | ApiError::DataType { source, .. } => Error::Decode {
            forge: FORGE,
            doing,
            message: source.to_string(),
        },
        other => Error::Usage(format!("GitLab {doing}: {other}")),
    }
}

/// What to fix when the note is refused.
fn with_hint(e: Error, project: &str, mr_iid: u64) -> Error {
    let Error::Api {
        forge,
        doing,
        status,
        message,
        ..
    } = e
    else {
        return e;
    };
    let hint = match status {
        401 => Some("GATE_GITLAB_TOKEN was refused (expired or revoked?)".to_string()),
        403 => Some(
            "the token needs the `api` scope and at least the Reporter role in the project (CI_JOB_TOKEN cannot post notes)"
                .to_string(),
        ),
        404 => Some(format!(
            "project {project} or merge request !{mr_iid} is not there, or not visible to the token"
        )),
        _ => None,
    };
    Error::Api {
        forge,
        doing,
        status,
        message,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn pagination_headers() {
        let here = Url::parse("http://h/api/v4/groups/a%2Fb/members/all?per_page=100&page=2").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                "<http://h/api/v4/x?page=3>; rel=\"next\", <http://h/api/v4/x?page=9>; rel=\"last\"",
            ),
        );
        assert_eq!(next_page(&h, &here).unwrap().as_str(), "http://h/api/v4/x?page=3");
        h.insert("link", HeaderValue::from_static("<http://h/x?page=1>; rel=\"prev\""));
        assert_eq!(next_page(&h, &here), None);
        let mut g = HeaderMap::new();
        g.insert("x-next-page", HeaderValue::from_static("3"));
        assert_eq!(
            next_page(&g, &here).unwrap().as_str(),
            "http://h/api/v4/groups/a%2Fb/members/all?per_page=100&page=3"
        );
        g.insert("x-next-page", HeaderValue::from_static(""));
        assert_eq!(next_page(&g, &here), None);
    }
}
