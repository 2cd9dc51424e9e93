//! The server config (`gate.yaml`): where to listen and store, which policy, and the
//! adapters' sections (`users`, `pipelines`, `oidc`, `sso`, `scim` from auth; `notify`; `forge`).
//! Each section checks itself and says what is wrong; this module locates that in the
//! file. Secrets appear only as SHA-256 digests or environment variable names.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::policy::{Policy, PolicyError};

pub use self::limits::ThrottleConfig;
pub use self::log::{CheckpointEvery, LogConfig, WitnessEntry};
use crate::auth::config as auth;
pub use crate::auth::config::{OidcIssuer, OidcPlatform, Pipeline, Sso, User};
use crate::core::identity::Identity;
use crate::core::url::check_url;
pub use crate::forge::config::{ForgeAccess, ForgeConfig, JenkinsConfig};

pub mod limits;
mod log;

/// `gate.yaml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The address people use to reach this server; approval links are built on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Ed25519 signing key file (made in the data dir on first start when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// Largest accepted request body in bytes (default 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Longest a single `/wait` call may hold (seconds, default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_secs: Option<u64>,
    /// Most connections served at once; past it, new ones get 503 (default: from the
    /// open-file limit, see docs/operations.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// A connection that has not sent a whole request head this long after it opened,
    /// or after its last answer, is closed (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_read_timeout: Option<crate::core::duration::Dur>,
    /// Concurrent long-waits one caller may hold; past it, `429` (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_waits_per_caller: Option<usize>,
    /// Rate limits on failed authentications and refused actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleConfig>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub pipelines: Vec<Pipeline>,
    /// Trusted OIDC issuers (GitHub Actions, GitLab CI, others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oidc: Vec<OidcIssuer>,
    /// How long a web UI sign-in lasts (default `8h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_ttl: Option<crate::core::duration::Dur>,
    /// Single sign-on for the web UI through an OpenID Connect provider (docs/sso.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<Sso>,
    /// SCIM 2.0 provisioning at `/scim/v2`: the identity provider's token (docs/scim.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim: Option<auth::Scim>,
    /// Where notifications go (webhooks, Slack, email) and how they are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<crate::notify::NotifyConfig>,
    /// GitHub and GitLab access: team/group membership, comment approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<ForgeConfig>,
    /// The Jenkins whose builds wait in an `input` step for this server (docs/jenkins.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jenkins: Option<JenkinsConfig>,
    /// The transparency log over the audit events: its name, how often it signs a
    /// checkpoint, and the witnesses whose cosignatures it accepts (docs/audit.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogConfig>,
}

/// A config that cannot be used, with where it is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Config {
    /// Reads and validates `gate.yaml`; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read the config: {e}"),
        })?;
        let mut cfg = Config::parse(&file, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.policy, &mut cfg.data_dir, &mut cfg.signing_key]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(f) = cfg.forge.as_mut() {
            f.resolve_paths(base);
        }
        Ok(cfg)
    }

    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = crate::core::yaml::strict(text).map_err(|e| ConfigError {
            file: file.into(),
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
        let fail = |needle: &str, problem: &dyn std::fmt::Display| {
            let (line, column) = text
                .lines()
                .enumerate()
                .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
                .unwrap_or((0, 0));
            ConfigError {
                file: file.into(),
                line,
                column,
                message: problem.to_string(),
            }
        };
        let names = auth::validate_principals(&cfg.users, &cfg.pipelines, &|n, e| fail(n, &e))?;
        auth::validate_oidc(&cfg.oidc, &names, &|n, e| fail(n, &e))?;
        if let Some(sso) = &cfg.sso {
            auth::validate_sso(sso, &|n, e| fail(n, &e))?;
        }
        if let Some(scim) = &cfg.scim {
            auth::validate_scim(scim, &|n, e| fail(n, &e))?;
        }
        if cfg.max_connections == Some(0) {
            return Err(fail("max_connections", &Invalid::MaxConnections));
        }
        if cfg.header_read_timeout.is_some_and(|d| d.millis() <= 0) {
            return Err(fail("header_read_timeout", &Invalid::HeaderReadTimeout));
        }
        limits::validate(cfg.throttle.as_ref(), cfg.max_waits_per_caller, &|n, e| fail(n, &e))?;
        if cfg.session_ttl.is_some_and(|d| d.millis() <= 0) {
            return Err(fail("session_ttl", &Invalid::SessionTtl));
        }
        if let Some(n) = &cfg.notify {
            n.validate(&|n, e| fail(n, &e))?;
        }
        if let Some(f) = &cfg.forge {
            validate_forge(f, &|n, e| fail(n, &e))?;
        }
        if let Some(j) = &cfg.jenkins {
            j.validate(&|n, e| fail(n, &e))?;
        }
        if let Some(l) = &cfg.log {
            log::validate(l, &|n, e| fail(n, &e))?;
        }
        Ok(cfg)
    }

    /// How long a web UI session lasts (`session_ttl`, default 8 hours), in milliseconds.
    pub fn session_ttl_ms(&self) -> i64 {
        self.session_ttl.map(|d| d.millis()).unwrap_or(8 * 3600 * 1000)
    }

    /// The `users:` entries a sign-in identity (name, email, GitHub or GitLab login) names.
    pub fn users_for_login(&self, ident: &Identity) -> Vec<String> {
        self.users
            .iter()
            .filter(|u| {
                std::iter::once(u.name.as_str())
                    .chain(u.email.as_deref())
                    .chain(u.github.as_deref())
                    .chain(u.gitlab.as_deref())
                    .any(|i| ident.is(i))
            })
            .map(|u| u.name.clone())
            .collect()
    }

    /// The configured user whose `github` (or `gitlab`) login is `login`, if exactly one.
    pub fn user_for_login(&self, forge: &str, login: &Identity) -> Option<&User> {
        let mut found = self.users.iter().filter(|u| {
            let l = if forge == "github" { &u.github } else { &u.gitlab };
            l.as_deref().is_some_and(|l| login.is(l))
        });
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The configured users that a request identity (actor, login, email) belongs to:
    /// those with a name or login of the same normal form (checked when the config
    /// loaded, so each has one).
    pub fn users_for_identity(&self, identity: &Identity) -> Vec<String> {
        self.users
            .iter()
            .filter(|u| u.identities().any(|i| identity.is(i)))
            .map(|u| u.name.clone())
            .collect()
    }
}

/// What is wrong with the config outside the adapters' sections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Invalid {
    #[error("log.origin `{0}` is not a valid log name: no spaces, no `+`, not empty")]
    LogOrigin(String),
    #[error("log.checkpoint_every: `events` and `interval` must be more than zero")]
    LogEvery,
    #[error("log.witnesses: the key of witness `{name}` is named `{key}`; the names must match")]
    WitnessName { name: String, key: String },
    #[error("log.witnesses: witness `{0}`: {1}")]
    WitnessVkey(String, String),
    #[error("session_ttl must be longer than zero")]
    SessionTtl,
    #[error("max_connections must be at least 1")]
    MaxConnections,
    #[error("header_read_timeout must be longer than zero")]
    HeaderReadTimeout,
    #[error("max_waits_per_caller must be at least 1")]
    MaxWaits,
    #[error("{0}")]
    Throttle(String),
    #[error("forge.{0}: give `token` or `token_env`, not both")]
    ForgeBothTokens(&'static str),
    #[error("forge.{0}: needs `token_env` (or `token`)")]
    ForgeNoToken(&'static str),
    #[error("forge.{key}.api_url {reason}")]
    ForgeApiUrl { key: &'static str, reason: String },
    #[error("forge.{0}: give `webhook_secret` or `webhook_secret_env`, not both")]
    ForgeBothWebhookSecrets(&'static str),
    #[error("forge.cache_ttl must be positive")]
    ForgeCacheTtl,
    #[error("{0}")]
    ForgeApp(crate::forge::config::AppConfigError),
}

/// Checks `forge:`.
fn validate_forge(f: &ForgeConfig, at: &dyn Fn(&str, Invalid) -> ConfigError) -> Result<(), ConfigError> {
    for (key, access) in [("github", &f.github), ("gitlab", &f.gitlab)] {
        let Some(a) = access else { continue };
        if a.token.is_some() && a.token_env.is_some() {
            return Err(at("token", Invalid::ForgeBothTokens(key)));
        }
        if a.token.is_none() && a.token_env.is_none() {
            return Err(at(&format!("{key}:"), Invalid::ForgeNoToken(key)));
        }
        if let Some(u) = &a.api_url {
            check_url(u).map_err(|m| {
                at(
                    u,
                    Invalid::ForgeApiUrl {
                        key,
                        reason: m.to_string(),
                    },
                )
            })?;
        }
        if a.webhook_secret.is_some() && a.webhook_secret_env.is_some() {
            return Err(at("webhook_secret", Invalid::ForgeBothWebhookSecrets(key)));
        }
        if let Some(app) = &a.app {
            app.validate(key, &|n, e| at(n, Invalid::ForgeApp(e)))?;
        }
    }
    if f.cache_ttl.is_some_and(|t| t.millis() <= 0) {
        return Err(at("cache_ttl", Invalid::ForgeCacheTtl));
    }
    Ok(())
}

/// Reads and parses the policy file; errors name the file (and the line and column).
/// Here rather than in `core::policy`, which does no I/O.
pub fn load_policy(path: &Path) -> Result<Policy, PolicyError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
        file: file.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read the policy: {e}"),
    })?;
    Policy::parse(&file, &text)
}

#[cfg(test)]
mod tests;
