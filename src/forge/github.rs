//! A check run on the commit, through the GitHub REST API (octocrab):
//! `POST {api}/repos/{owner}/{repo}/check-runs`, completed, with the outcome as its
//! conclusion. The token needs `checks: write`.

use std::time::Duration;

use octocrab::params::checks::{CheckRunConclusion, CheckRunOutput, CheckRunStatus};

use super::{ForgeError, Summary, Verdict};

const FORGE: &str = "GitHub";
const DOING: &str = "creating the check run";

/// The check run's conclusion, from the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
}

impl Conclusion {
    pub fn of(v: Verdict) -> Conclusion {
        match v {
            Verdict::Approved => Conclusion::Success,
            Verdict::Canceled => Conclusion::Cancelled,
            Verdict::Denied | Verdict::Expired | Verdict::NotApproved => Conclusion::Failure,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
        }
    }

    fn octocrab(self) -> CheckRunConclusion {
        match self {
            Conclusion::Success => CheckRunConclusion::Success,
            Conclusion::Failure => CheckRunConclusion::Failure,
            Conclusion::Cancelled => CheckRunConclusion::Cancelled,
        }
    }
}

/// What the check run says.
#[derive(Debug, Clone)]
pub struct CheckRun {
    /// `owner/name`.
    pub repository: String,
    pub head_sha: String,
    /// `jitgate / <environment>`.
    pub name: String,
    pub conclusion: Conclusion,
    /// The request link.
    pub details_url: String,
    /// The request id, to find the check run again.
    pub external_id: String,
    pub title: String,
    /// Markdown.
    pub summary: String,
}

impl CheckRun {
    pub fn new(s: &Summary, repository: &str, head_sha: &str) -> CheckRun {
        CheckRun {
            repository: repository.to_string(),
            head_sha: head_sha.to_string(),
            name: format!("jitgate / {}", s.environment),
            conclusion: Conclusion::of(s.verdict),
            details_url: s.url.clone(),
            external_id: s.id.clone(),
            title: s.title(),
            summary: s.markdown(),
        }
    }
}

/// What GitHub made.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: u64,
    pub html_url: Option<String>,
}

/// Creates the check run. `api` is `https://api.github.com` or a GitHub Enterprise
/// Server's `https://HOST/api/v3` (what `GITHUB_API_URL` holds in a workflow).
pub async fn create_check_run(api: &str, token: &str, run: &CheckRun) -> Result<Created, ForgeError> {
    let (owner, repo) = run
        .repository
        .split_once('/')
        .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        .ok_or_else(|| ForgeError::Usage(format!("repository `{}` is not owner/name", run.repository)))?;
    let crab = octocrab::Octocrab::builder()
        .base_uri(api.trim_end_matches('/'))
        .map_err(|e| ForgeError::Usage(format!("GitHub API URL `{api}`: {e}")))?
        .personal_token(token.to_string())
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(20)))
        .add_header(
            http::header::USER_AGENT,
            concat!("jitgate/", env!("CARGO_PKG_VERSION")).to_string(),
        )
        .build()
        .map_err(|e| ForgeError::Usage(format!("GitHub client: {e}")))?;
    let created = crab
        .checks(owner, repo)
        .create_check_run(run.name.clone(), run.head_sha.clone())
        .status(CheckRunStatus::Completed)
        .conclusion(run.conclusion.octocrab())
        .details_url(run.details_url.clone())
        .external_id(run.external_id.clone())
        .output(CheckRunOutput {
            title: run.title.clone(),
            summary: run.summary.clone(),
            text: None,
            annotations: vec![],
            images: vec![],
        })
        .send()
        .await
        .map_err(|e| error(e, run))?;
    Ok(Created {
        id: created.id.0,
        html_url: created.html_url,
    })
}

fn error(e: octocrab::Error, run: &CheckRun) -> ForgeError {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            // An HTML error page from a proxy says nothing useful: keep the status words.
            let mut message = if source.message.trim_start().starts_with('<') {
                source.status_code.canonical_reason().unwrap_or("error").to_string()
            } else {
                source.message.chars().take(300).collect()
            };
            if let Some(errors) = source.errors.as_ref().filter(|e| !e.is_empty()) {
                let details: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        e.get("message")
                            .and_then(|m| m.as_str())
                            .map_or_else(|| e.to_string(), str::to_string)
                    })
                    .collect();
                message.push_str(&format!(" ({})", details.join("; ")));
            }
            let hint = hint(status, &message, run);
            ForgeError::Api {
                forge: FORGE,
                doing: DOING,
                status,
                message,
                hint,
            }
        }
        octocrab::Error::Serde { source, .. } => ForgeError::Decode {
            forge: FORGE,
            doing: DOING,
            message: source.to_string(),
        },
        octocrab::Error::Json { source, .. } => ForgeError::Decode {
            forge: FORGE,
            doing: DOING,
            message: source.to_string(),
        },
        other => ForgeError::Transport {
            forge: FORGE,
            doing: DOING,
            message: crate::core::error_chain(&other),
        },
    }
}

fn hint(status: u16, message: &str, run: &CheckRun) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    Some(match status {
        401 => "the token was refused: check GITHUB_TOKEN or --github-token".to_string(),
        403 if lower.contains("rate limit") => "the token is rate limited; try again later".to_string(),
        403 => "add `permissions: checks: write` to the job (a pull request from a fork gets a read-only token)"
            .to_string(),
        404 => format!(
            "`{}` is not visible to this token: use the workflow's own GITHUB_TOKEN, or a token with access to the repository",
            run.repository
        ),
        422 => format!("is `{}` a commit of `{}`?", run.head_sha, run.repository),
        _ => return None,
    })
}
