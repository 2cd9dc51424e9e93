//! The server's [`Forge`]: the adapters configured from `forge:` in gate.yaml, and the
//! member lists read when requests open, reused for `forge.cache_ttl` (votes always read
//! the forge again).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::{ForgeAccess, ForgeConfig, SecretError};
use super::github::GitHub;
use super::gitlab::GitLab;
use super::{CommitPerson, Error, Forge, Kind, Read, Thread, Timeouts};
use crate::core::policy::GroupSource;

/// The default `forge.cache_ttl`.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    read: Duration::from_secs(10),
};

/// Why `forge.<key>` cannot be set up. Not a `source` chain: the cause is in the
/// message already, and a chain would print it twice.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SetupError {
    #[error("forge.{key}: {reason}")]
    Secret { key: &'static str, reason: SecretError },
    #[error("forge.{key}: {reason}")]
    Client { key: &'static str, reason: Error },
}

/// One configured forge: its adapter, the secret its webhooks are signed with, and
/// whether requests on it have their commit's people looked up.
struct Access<A> {
    api: A,
    webhook_secret: Option<String>,
    requesters: bool,
}

/// GitHub and GitLab as configured, shared by every request.
pub struct Forges {
    github: Option<Access<GitHub>>,
    gitlab: Option<Access<GitLab>>,
    ttl: Duration,
    /// Logins per group, with when they were read.
    cache: Mutex<HashMap<GroupSource, (Instant, Vec<String>)>>,
}

impl Default for Forges {
    /// Neither forge configured.
    fn default() -> Forges {
        Forges {
            github: None,
            gitlab: None,
            ttl: DEFAULT_CACHE_TTL,
            cache: Mutex::default(),
        }
    }
}

impl Forges {
    /// From `forge:` in the config; secrets named by `*_env` are read from `env`.
    pub fn from_config(cfg: Option<&ForgeConfig>, env: &dyn Fn(&str) -> Option<String>) -> Result<Forges, SetupError> {
        let Some(f) = cfg else {
            return Ok(Forges::default());
        };
        fn access<A>(
            key: &'static str,
            a: &ForgeAccess,
            default: &str,
            env: &dyn Fn(&str) -> Option<String>,
            new: fn(&str, &str, Timeouts) -> Result<A, Error>,
        ) -> Result<Access<A>, SetupError> {
            let secret = |reason| SetupError::Secret { key, reason };
            let token = a.resolve_token(env).map_err(secret)?;
            let url = a.api_url.as_deref().unwrap_or(default).trim_end_matches('/');
            Ok(Access {
                api: new(url, &token, TIMEOUTS).map_err(|reason| SetupError::Client { key, reason })?,
                webhook_secret: a.resolve_webhook_secret(env).map_err(secret)?,
                requesters: a.requesters.unwrap_or(true),
            })
        }
        let github = f
            .github
            .as_ref()
            .map(|a| access("github", a, "https://api.github.com", env, GitHub::new))
            .transpose()?;
        let gitlab = f
            .gitlab
            .as_ref()
            .map(|a| access("gitlab", a, "https://gitlab.com/api/v4", env, GitLab::new))
            .transpose()?;
        Ok(Forges {
            github,
            gitlab,
            ttl: f.cache_ttl.map(|d| d.as_std()).unwrap_or(DEFAULT_CACHE_TTL),
            cache: Mutex::default(),
        })
    }

    /// Whether the forge a group lives on is configured.
    pub fn check_source(&self, s: &GroupSource) -> Result<(), Error> {
        match s {
            GroupSource::GithubTeam { .. } => self.github().map(drop),
            GroupSource::GitlabGroup { .. } => self.gitlab().map(drop),
            // The identity provider's groups need no forge.
            GroupSource::ScimGroup { .. } | GroupSource::IdpGroup { .. } => Ok(()),
        }
    }

    /// The GitLab client, for what the server does there besides reading (playing the
    /// manual jobs it releases).
    pub fn gitlab_api(&self) -> Option<GitLab> {
        self.gitlab.as_ref().map(|a| a.api.clone())
    }

    fn github(&self) -> Result<&GitHub, Error> {
        self.github
            .as_ref()
            .map(|a| &a.api)
            .ok_or(Error::NotConfigured("GitHub", "github"))
    }

    fn gitlab(&self) -> Result<&GitLab, Error> {
        self.gitlab
            .as_ref()
            .map(|a| &a.api)
            .ok_or(Error::NotConfigured("GitLab", "gitlab"))
    }

    /// Asks the forge who is in a team or group.
    async fn read(&self, s: &GroupSource) -> Result<Vec<String>, Error> {
        let unreachable = |e: Error| Error::Unreachable {
            what: s.describe(),
            detail: match e.status() {
                Some(401) => "the API token was refused (HTTP 401)".to_string(),
                Some(n @ (403 | 404)) => format!(
                    "HTTP {n} (the {} does not exist, or the token cannot read its members)",
                    if matches!(s, GroupSource::GithubTeam { .. }) {
                        "team"
                    } else {
                        "group"
                    }
                ),
                Some(n) => format!("HTTP {n}"),
                None => detail(e),
            },
        };
        match s {
            GroupSource::GithubTeam { org, slug } => self.github()?.team_members(org, slug).await.map_err(unreachable),
            GroupSource::GitlabGroup { path } => Ok(self
                .gitlab()?
                .group_members(path)
                .await
                .map_err(unreachable)?
                .into_iter()
                // Blocked and pending members are listed too; they are not members yet.
                .filter(|m| m.state.as_deref().is_none_or(|st| st == "active"))
                .map(|m| m.username)
                .collect()),
            // The engine reads these from the store and the session, never from a forge.
            GroupSource::ScimGroup { .. } | GroupSource::IdpGroup { .. } => Ok(vec![]),
        }
    }
}

/// What went wrong, without the forge and the call (the server's message names them).
fn detail(e: Error) -> String {
    match e {
        Error::Transport { message, .. } | Error::Paging { message, .. } => message,
        Error::Decode { message, .. } => format!("unexpected answer: {message}"),
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl Forge for Forges {
    fn check_source(&self, s: &GroupSource) -> Result<(), Error> {
        Forges::check_source(self, s)
    }
    fn webhook_secret(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Github => self.github.as_ref()?.webhook_secret.as_deref(),
            Kind::Gitlab => self.gitlab.as_ref()?.webhook_secret.as_deref(),
        }
    }

    async fn members(&self, s: &GroupSource, read: Read) -> Result<Vec<String>, Error> {
        if read == Read::Cached {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, logins)) = cache.get(s)
                && at.elapsed() < self.ttl
            {
                return Ok(logins.clone());
            }
        }
        let logins = self.read(s).await?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(s.clone(), (Instant::now(), logins.clone()));
        Ok(logins)
    }

    fn looks_up_requesters(&self, kind: Kind) -> bool {
        match kind {
            Kind::Github => self.github.as_ref().is_some_and(|a| a.requesters),
            Kind::Gitlab => self.gitlab.as_ref().is_some_and(|a| a.requesters),
        }
    }

    /// A forge that answered that it knows no such commit keeps its `Api` error (the
    /// request names a commit the forge cannot show: the caller's to fix); anything else
    /// is `Unreachable`.
    async fn commit_people(&self, kind: Kind, repository: &str, commit: &str) -> Result<Vec<CommitPerson>, Error> {
        let (what, got) = match kind {
            Kind::Github => ("GitHub", self.github()?.commit_people(repository, commit).await),
            Kind::Gitlab => ("GitLab", self.gitlab()?.commit_people(repository, commit).await),
        };
        got.map_err(|e| match e.status() {
            Some(404 | 422) => e,
            status => Error::Unreachable {
                what: format!("{what} to ask who wrote commit {commit} of {repository}"),
                detail: match status {
                    Some(401) => "the API token was refused (HTTP 401)".to_string(),
                    Some(403) => {
                        "HTTP 403 (rate limited, or the token cannot read the repository's contents and pull requests)"
                            .to_string()
                    }
                    Some(n) => format!("HTTP {n}"),
                    None => detail(e),
                },
            },
        })
    }

    async fn reply(&self, to: Thread<'_>, body: &str) -> Result<(), Error> {
        let (what, sent) = match to {
            Thread::PullRequest { repo, number } => ("GitHub", self.github()?.comment(repo, number, body).await),
            Thread::MergeRequest { project, iid } => (
                "GitLab",
                self.gitlab()?.create_mr_note(project, iid, body).await.map(drop),
            ),
        };
        sent.map_err(|e| Error::Unreachable {
            what: what.into(),
            detail: match e.status() {
                Some(n) => format!("HTTP {n} answering the comment"),
                None => detail(e),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unconfigured_forges_say_what_to_configure() {
        let f: std::sync::Arc<dyn Forge> = std::sync::Arc::new(Forges::default());
        let team = GroupSource::GithubTeam {
            org: "acme".into(),
            slug: "security".into(),
        };
        let e = f.members(&team, Read::Live).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "GitHub is not configured on this server (`forge.github` in gate.yaml)"
        );
        let to = Thread::MergeRequest { project: "42", iid: 3 };
        let e = f.reply(to, "hi").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "GitLab is not configured on this server (`forge.gitlab` in gate.yaml)"
        );
        assert_eq!(f.webhook_secret(Kind::Github), None);
    }
}
