//! A note on the merge request, through the GitLab REST API: the `gitlab` crate's
//! endpoint (`POST {api}/projects/{id}/merge_requests/{iid}/notes`) over a small client of
//! our own, so that the base is `CI_API_V4_URL` as GitLab gives it (relative URL roots and
//! plain-http test servers included) and no extra call is made to check the token first.
//! Authenticated with `PRIVATE-TOKEN` (a project access token with the `api` scope).

use bytes::Bytes;
use gitlab::api::projects::merge_requests::notes::CreateMergeRequestNote;
use gitlab::api::{ApiError, AsyncClient, AsyncQuery, RestClient};
use serde::Deserialize;
use url::Url;

use super::ForgeError;

const FORGE: &str = "GitLab";
const DOING: &str = "posting the merge request note";

/// What GitLab made.
#[derive(Debug, Clone, Deserialize)]
pub struct Note {
    pub id: u64,
}

/// Posts `body` (Markdown) as a note on merge request `!mr_iid` of `project` (its id, or
/// its path). `api` is `CI_API_V4_URL`, e.g. `https://gitlab.com/api/v4`.
pub async fn create_mr_note(
    api: &str,
    token: &str,
    project: &str,
    mr_iid: u64,
    body: &str,
) -> Result<Note, ForgeError> {
    let client = Api::new(api, token)?;
    let mut builder = CreateMergeRequestNote::builder();
    match project.parse::<u64>() {
        Ok(id) => builder.project(id),
        Err(_) => builder.project(project),
    };
    let endpoint = builder
        .merge_request(mr_iid)
        .body(body)
        .build()
        .map_err(|e| ForgeError::Usage(format!("GitLab note: {e}")))?;
    endpoint
        .query_async(&client)
        .await
        .map_err(|e| error(e, project, mr_iid))
}

/// The transport error of our client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transport(String);

/// `gitlab::api::AsyncClient` over reqwest: joins endpoints onto `CI_API_V4_URL` and
/// sends the token as `PRIVATE-TOKEN`.
struct Api {
    http: reqwest::Client,
    base: Url,
    token: http::HeaderValue,
}

impl Api {
    fn new(api: &str, token: &str) -> Result<Api, ForgeError> {
        // A trailing slash makes `join` append to the path instead of replacing its last part.
        let base = Url::parse(&format!("{}/", api.trim_end_matches('/')))
            .map_err(|e| ForgeError::Usage(format!("CI_API_V4_URL `{api}`: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ForgeError::Usage(format!(
                "CI_API_V4_URL `{api}` is not an http(s) URL"
            )));
        }
        let mut token = http::HeaderValue::from_str(token.trim())
            .map_err(|_| ForgeError::Usage("GATE_GITLAB_TOKEN is not a valid header value".into()))?;
        token.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(20))
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ForgeError::Usage(format!("GitLab client: {e}")))?;
        Ok(Api { http, base, token })
    }
}

impl RestClient for Api {
    type Error = Transport;

    fn rest_endpoint(&self, endpoint: &str) -> Result<Url, ApiError<Self::Error>> {
        Ok(self.base.join(endpoint)?)
    }
}

#[async_trait::async_trait]
impl AsyncClient for Api {
    async fn rest_async(
        &self,
        mut request: http::request::Builder,
        body: Vec<u8>,
    ) -> Result<http::Response<Bytes>, ApiError<Self::Error>> {
        if let Some(h) = request.headers_mut() {
            h.insert("PRIVATE-TOKEN", self.token.clone());
        }
        let request = request
            .body(body)
            .map_err(|e| ApiError::client(Transport(e.to_string())))?;
        let request = reqwest::Request::try_from(request).map_err(|e| ApiError::client(Transport(e.to_string())))?;
        let rsp = self
            .http
            .execute(request)
            .await
            .map_err(|e| ApiError::client(Transport(crate::core::error_chain(&e))))?;
        let mut out = http::Response::builder().status(rsp.status()).version(rsp.version());
        if let Some(h) = out.headers_mut() {
            for (k, v) in rsp.headers() {
                h.insert(k, v.clone());
            }
        }
        let bytes = rsp
            .bytes()
            .await
            .map_err(|e| ApiError::client(Transport(crate::core::error_chain(&e))))?;
        out.body(bytes).map_err(|e| ApiError::client(Transport(e.to_string())))
    }
}

fn error(e: ApiError<Transport>, project: &str, mr_iid: u64) -> ForgeError {
    let api = |status: http::StatusCode, message: String| ForgeError::Api {
        forge: FORGE,
        doing: DOING,
        status: status.as_u16(),
        hint: hint(status.as_u16(), project, mr_iid),
        message,
    };
    match e {
        ApiError::Client { source } => ForgeError::Transport {
            forge: FORGE,
            doing: DOING,
            message: source.0,
        },
        ApiError::GitlabWithStatus { status, msg } => api(status, msg),
        ApiError::GitlabObjectWithStatus { status, obj } | ApiError::GitlabUnrecognizedWithStatus { status, obj } => {
            api(status, obj.to_string())
        }
        ApiError::GitlabService { status, data } => {
            let text = String::from_utf8_lossy(&data);
            let text = text.trim();
            let message = if text.is_empty() || text.starts_with('<') {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text.chars().take(300).collect()
            };
            api(status, message)
        }
        ApiError::GitlabRateLimited { retry_after, .. } => api(
            http::StatusCode::TOO_MANY_REQUESTS,
            format!("rate limited; retry after {}s", retry_after.as_secs()),
        ),
        ApiError::MovedPermanently { location } => api(
            http::StatusCode::MOVED_PERMANENTLY,
            format!("moved to {}", location.unwrap_or_default()),
        ),
        ApiError::Json { source } | ApiError::DataType { source, .. } => ForgeError::Decode {
            forge: FORGE,
            doing: DOING,
            message: source.to_string(),
        },
        other => ForgeError::Usage(format!("GitLab note: {other}")),
    }
}

fn hint(status: u16, project: &str, mr_iid: u64) -> Option<String> {
    Some(match status {
        401 => "GATE_GITLAB_TOKEN was refused (expired or revoked?)".to_string(),
        403 => "the token needs the `api` scope and at least the Reporter role in the project (CI_JOB_TOKEN cannot post notes)"
            .to_string(),
        404 => format!("project {project} or merge request !{mr_iid} is not there, or not visible to the token"),
        _ => return None,
    })
}
