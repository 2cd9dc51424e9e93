//! GitHub and GitLab: one adapter each ([`github`] on octocrab, [`gitlab`] on the `gitlab`
//! crate's endpoints), the Jenkins that answers held `input` steps ([`jenkins`]), one error type, and the [`Forge`] trait the server reaches them
//! through (team and group members, replies to comments, who wrote a commit),
//! implemented by [`Forges`].
//!
//! Layer rule: imports only `core`. The CLI's check run and merge request note are
//! decided in `ci::report`; the webhooks are read in `http::webhooks`.

pub mod config;
pub mod github;
pub mod github_app;
pub mod gitlab;
pub mod jenkins;
mod server;

use std::time::Duration;

pub use server::{DEFAULT_CACHE_TTL, Forges, SetupError};

use crate::core::policy::GroupSource;

/// Why a forge call failed. The message says what to fix where we can tell.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The forge answered with an error status.
    #[error("{forge} answered {status} {doing}: {message}{}", hint.as_ref().map(|h| format!(" — {h}")).unwrap_or_default())]
    Api {
        forge: &'static str,
        doing: &'static str,
        status: u16,
        message: String,
        hint: Option<String>,
    },
    /// No answer: the network, TLS, a timeout.
    #[error("cannot reach {forge} {doing}: {message}")]
    Transport {
        forge: &'static str,
        doing: &'static str,
        message: String,
    },
    /// The call was made but its answer could not be read.
    #[error("{forge} gave an unexpected answer {doing}: {message}")]
    Decode {
        forge: &'static str,
        doing: &'static str,
        message: String,
    },
    /// Pagination that cannot be followed (a next page elsewhere, too many pages).
    #[error("{forge} {doing}: {message}")]
    Paging {
        forge: &'static str,
        doing: &'static str,
        message: String,
    },
    /// Bad input before any call (a URL that does not parse, a repository that is not owner/name).
    #[error("{0}")]
    Usage(String),
    /// The server has no `forge.<key>` for this forge.
    #[error("{0} is not configured on this server (`forge.{1}` in gate.yaml)")]
    NotConfigured(&'static str, &'static str),
    /// What the server says when a forge could not answer: every one refuses the vote
    /// or the open (fail closed).
    #[error("could not reach {what}: {detail}")]
    Unreachable { what: String, detail: String },
}

impl Error {
    /// The HTTP status the forge answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How long the adapters wait: to connect, and for the whole answer.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

/// A forge the server is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Github,
    Gitlab,
}

/// How fresh a member list must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A list read within `forge.cache_ttl` will do (opening a request).
    Cached,
    /// Ask the forge now (a vote).
    Live,
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy)]
pub enum Thread<'a> {
    /// Pull request `number` of `repo` (`owner/name`).
    PullRequest { repo: &'a str, number: u64 },
    /// Merge request `iid` of `project` (its id, or its path).
    MergeRequest { project: &'a str, iid: u64 },
}

/// Someone the forge says had a hand in a commit, and which field of which answer said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPerson {
    /// A login or an email address, as the forge gave it.
    pub identity: String,
    /// `github commit author.login`, `github pull request #12 user.login`,
    /// `gitlab commit author_email`, `gitlab merge request !7 author.username`, …
    pub from: String,
}

/// What the server needs of the forges; a trait so tests can stand in a fake.
#[async_trait::async_trait]
pub trait Forge: Send + Sync {
    /// The secret that `kind`'s webhooks are signed with, if configured.
    fn webhook_secret(&self, kind: Kind) -> Option<&str>;
    /// The logins in a team or group.
    async fn members(&self, group: &GroupSource, read: Read) -> Result<Vec<String>, Error>;
    /// Answers a comment on a pull or merge request.
    async fn reply(&self, to: Thread<'_>, body: &str) -> Result<(), Error>;
    /// Whether a policy group of this source can be resolved (its forge is configured);
    /// asked when a policy is loaded or reloaded.
    fn check_source(&self, _source: &GroupSource) -> Result<(), Error> {
        Ok(())
    }
    /// Whether requests on `kind` have their commit's people looked up when they open.
    fn looks_up_requesters(&self, _kind: Kind) -> bool {
        false
    }
    /// Who wrote `commit` of `repository` (`owner/name`, a GitLab path or id): its author
    /// and committer, and the authors of the pull or merge requests that contain it.
    async fn commit_people(&self, kind: Kind, _repository: &str, _commit: &str) -> Result<Vec<CommitPerson>, Error> {
        Err(match kind {
            Kind::Github => Error::NotConfigured("GitHub", "github"),
            Kind::Gitlab => Error::NotConfigured("GitLab", "gitlab"),
        })
    }
}

/// Percent-encodes one path segment (`/` included).
pub(crate) use crate::core::url::percent_encode as encode;

fn origin(u: &str) -> &str {
    let after = u.find("://").map(|i| i + 3).unwrap_or(0);
    let end = u[after..].find('/').map(|i| after + i).unwrap_or(u.len());
    &u[..end]
}

/// Whether two URLs share scheme, host and port: next-page links must stay on the API's
/// origin, so the token goes nowhere else.
pub(crate) fn same_origin(a: &str, b: &str) -> bool {
    origin(a).eq_ignore_ascii_case(origin(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_segments() {
        assert!(same_origin("https://API.github.com/a", "https://api.github.com"));
        assert!(!same_origin("https://evil.example/a", "https://api.github.com"));
        assert_eq!(encode("acme/release-managers"), "acme%2Frelease-managers");
    }
}
