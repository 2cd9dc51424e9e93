//! The GitHub adapter, on octocrab: check runs, team members, pull request comments, and
//! who wrote a commit.
//! `api` is `https://api.github.com` or a GitHub Enterprise Server's `https://HOST/api/v3`
//! (what `GITHUB_API_URL` holds in a workflow). Team members and comments go through
//! octocrab's generic calls: its typed models want more fields than those we read.

use std::str::FromStr;

use octocrab::params::checks::{CheckRunConclusion, CheckRunOutput, CheckRunStatus};
use octocrab::{Octocrab, Page};
use serde::Deserialize;

use super::{CommitPerson, Error, Timeouts, encode, same_origin};

const FORGE: &str = "GitHub";
const CHECK_RUN: &str = "creating the check run";
const TEAM: &str = "listing team members";
const COMMENT: &str = "answering the comment";
const COMMIT: &str = "reading the commit";
const PULLS: &str = "listing the commit's pull requests";
/// At most this many pages (of 100) are read for one team.
const MAX_PAGES: usize = 200;

/// The check run's conclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
}

impl Conclusion {
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

/// A completed check run on a commit.
#[derive(Debug, Clone)]
pub struct CheckRun {
    /// `owner/name`.
    pub repository: String,
    pub head_sha: String,
    pub name: String,
    pub conclusion: Conclusion,
    pub details_url: String,
    /// To find the check run again.
    pub external_id: String,
    pub title: String,
    /// Markdown.
    pub summary: String,
}

/// What GitHub made.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: u64,
    pub html_url: Option<String>,
}

#[derive(Deserialize)]
struct Member {
    login: String,
}

/// `GET /repos/{owner}/{repo}/commits/{ref}`, the fields we read. `author` and
/// `committer` are the GitHub accounts, null when the email is linked to none.
#[derive(Deserialize)]
struct Commit {
    author: Option<Member>,
    committer: Option<Member>,
    commit: GitCommit,
}

#[derive(Deserialize)]
struct GitCommit {
    author: Option<GitPerson>,
    committer: Option<GitPerson>,
}

#[derive(Deserialize)]
struct GitPerson {
    #[serde(default)]
    email: Option<String>,
}

/// One of `GET /repos/{owner}/{repo}/commits/{sha}/pulls`.
#[derive(Deserialize)]
struct Pull {
    number: u64,
    user: Option<Member>,
}

/// One GitHub API with one token.
pub struct GitHub {
    crab: Octocrab,
    api: String,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub").field("api", &self.api).finish_non_exhaustive()
    }
}

impl GitHub {
    /// A client for `api` authenticated with `token` (sent as `Authorization: Bearer`).
    pub fn new(api: &str, token: &str, t: Timeouts) -> Result<GitHub, Error> {
        let api = api.trim_end_matches('/');
        let header = |v: &str| v.to_string();
        let crab = Octocrab::builder()
            .base_uri(api)
            .map_err(|e| Error::Usage(format!("GitHub API URL `{api}`: {e}")))?
            .personal_token(token.to_string())
            .set_connect_timeout(Some(t.connect))
            .set_read_timeout(Some(t.read))
            .add_header(
                http::header::USER_AGENT,
                header(concat!("jitgate/", env!("CARGO_PKG_VERSION"))),
            )
            // octocrab sends `X-GitHub-Api-Version` itself.
            .add_header(http::header::ACCEPT, header("application/vnd.github+json"))
            .build()
            .map_err(|e| Error::Usage(format!("GitHub client: {e}")))?;
        Ok(GitHub {
            crab,
            api: api.to_string(),
        })
    }

    /// Creates `run`, completed (`POST /repos/{owner}/{repo}/check-runs`; the token
    /// needs `checks: write`).
    pub async fn create_check_run(&self, run: &CheckRun) -> Result<Created, Error> {
        let (owner, repo) = owner_name(&run.repository)?;
        let created = self
            .crab
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
            .map_err(|e| match error(e, CHECK_RUN) {
                Error::Api {
                    forge,
                    doing,
                    status,
                    message,
                    ..
                } => Error::Api {
                    hint: check_run_hint(status, &message, run),
                    forge,
                    doing,
                    status,
                    message,
                },
                other => other,
            })?;
        Ok(Created {
            id: created.id.0,
            html_url: created.html_url,
        })
    }

    /// The logins in team `org/slug`, every page (`GET /orgs/{org}/teams/{slug}/members`,
    /// then the `Link: rel="next"` pages).
    pub async fn team_members(&self, org: &str, slug: &str) -> Result<Vec<String>, Error> {
        let route = format!("/orgs/{}/teams/{}/members", encode(org), encode(slug));
        let mut page: Page<Member> = self
            .crab
            .get(route, Some(&[("per_page", "100"), ("page", "1")]))
            .await
            .map_err(|e| error(e, TEAM))?;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            out.extend(page.take_items().into_iter().map(|m| m.login));
            let Some(next) = page.next.take() else {
                return Ok(out);
            };
            let next = self.on_api(&next)?;
            page = match self.crab.get_page(&Some(next)).await {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(out),
                Err(e) => return Err(error(e, TEAM)),
            };
        }
        Err(paging(format!("more than {MAX_PAGES} pages")))
    }

    /// A next-page link made relative, so octocrab sends the token with it; only
    /// once it is known to be on the API's origin.
    fn on_api(&self, next: &http::Uri) -> Result<http::Uri, Error> {
        let text = next.to_string();
        if !same_origin(&text, &self.api) {
            return Err(paging(format!("the next page `{text}` is not on {}", self.api)));
        }
        let relative = next.path_and_query().map_or("/", |p| p.as_str());
        http::Uri::from_str(relative).map_err(|e| paging(format!("the next page `{text}`: {e}")))
    }

    /// Comments on pull request `number` of `repo`
    /// (`POST /repos/{owner}/{repo}/issues/{number}/comments`).
    pub async fn comment(&self, repo: &str, number: u64, body: &str) -> Result<(), Error> {
        let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
        let route = format!("/repos/{}/{}/issues/{number}/comments", encode(owner), encode(name));
        let rsp = self
            .crab
            ._post(route, Some(&serde_json::json!({ "body": body })))
            .await
            .map_err(|e| error(e, COMMENT))?;
        octocrab::map_github_error(rsp)
            .await
            .map(drop)
            .map_err(|e| error(e, COMMENT))
    }

    /// Who wrote `sha` of `repository` (`owner/name`): the commit's author and committer
    /// (accounts and email addresses, `GET /repos/{owner}/{repo}/commits/{sha}`) and the
    /// authors of the pull requests that contain it (`GET …/commits/{sha}/pulls`, the
    /// first 100). The token needs `contents: read` and `pull-requests: read`.
    pub async fn commit_people(&self, repository: &str, sha: &str) -> Result<Vec<CommitPerson>, Error> {
        let (owner, repo) = owner_name(repository)?;
        let base = format!("/repos/{}/{}/commits/{}", encode(owner), encode(repo), encode(sha));
        let c: Commit = self.crab.get(&base, None::<&()>).await.map_err(|e| error(e, COMMIT))?;
        let pulls: Vec<Pull> = self
            .crab
            .get(format!("{base}/pulls"), Some(&[("per_page", "100")]))
            .await
            .map_err(|e| error(e, PULLS))?;
        let mut out = Vec::new();
        let mut add = |identity: Option<String>, from: String| {
            if let Some(identity) = identity.filter(|i| !i.is_empty()) {
                out.push(CommitPerson { identity, from });
            }
        };
        add(c.author.map(|m| m.login), "github commit author.login".into());
        add(c.committer.map(|m| m.login), "github commit committer.login".into());
        add(
            c.commit.author.and_then(|p| p.email),
            "github commit commit.author.email".into(),
        );
        add(
            c.commit.committer.and_then(|p| p.email),
            "github commit commit.committer.email".into(),
        );
        for p in pulls {
            add(
                p.user.map(|m| m.login),
                format!("github pull request #{} user.login", p.number),
            );
        }
        Ok(out)
    }
}

fn owner_name(repository: &str) -> Result<(&str, &str), Error> {
    repository
        .split_once('/')
        .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        .ok_or_else(|| Error::Usage(format!("repository `{repository}` is not owner/name")))
}

fn paging(message: String) -> Error {
    Error::Paging {
        forge: FORGE,
        doing: TEAM,
        message,
    }
}

pub(super) fn error(e: octocrab::Error, doing: &'static str) -> Error {
    match e {
        octocrab::Error::GitHub { source, .. } => {
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
            Error::Api {
                forge: FORGE,
                doing,
                status: source.status_code.as_u16(),
                message,
                hint: None,
            }
        }
        octocrab::Error::Serde { source, .. } => Error::Decode {
            forge: FORGE,
            doing,
            message: source.to_string(),
        },
        octocrab::Error::Json { source, .. } => Error::Decode {
            forge: FORGE,
            doing,
            message: source.to_string(),
        },
        other => Error::Transport {
            forge: FORGE,
            doing,
            message: crate::core::error_chain(&other),
        },
    }
}

fn check_run_hint(status: u16, message: &str, run: &CheckRun) -> Option<String> {
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
