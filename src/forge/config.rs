//! The `forge` section of gate.yaml: access to GitHub and GitLab.

use serde::{Deserialize, Serialize};

/// Access to one forge (GitHub or GitLab): its API, a token that can read team or group
/// membership and comment on pull/merge requests, and the secret its webhooks are signed
/// with. Secrets are best given as environment variable names (`token_env`,
/// `webhook_secret_env`); `token` / `webhook_secret` in the file also work.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForgeAccess {
    /// Default `https://api.github.com` or `https://gitlab.com/api/v4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Verifies `POST /webhooks/github|gitlab`; without one the route answers 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_env: Option<String>,
    /// When a request on this forge opens, ask who wrote its commit (author, committer)
    /// and its pull or merge requests (their authors), and count them as requesters; if
    /// the forge cannot answer, the request is not opened. Default `true`; the token then
    /// needs read access to the repository's contents and pull (merge) requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requesters: Option<bool>,
}

/// Why a forge secret cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("give `{0}` or `{0}_env`, not both")]
    Both(&'static str),
    #[error("`{0}` is empty")]
    Empty(&'static str),
    #[error("`{what}_env` names `{var}`, which is not set in the environment")]
    Unset { what: &'static str, var: String },
    #[error("needs `token_env` (or `token`)")]
    NoToken,
}

impl ForgeAccess {
    /// The token, read from the environment when named by `token_env`.
    pub fn resolve_token(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, SecretError> {
        secret(&self.token, &self.token_env, "token", env)?.ok_or(SecretError::NoToken)
    }

    /// The webhook secret, if one is configured.
    pub fn resolve_webhook_secret(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, SecretError> {
        secret(&self.webhook_secret, &self.webhook_secret_env, "webhook_secret", env)
    }
}

fn secret(
    value: &Option<String>,
    var: &Option<String>,
    what: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, SecretError> {
    match (value, var) {
        (Some(_), Some(_)) => Err(SecretError::Both(what)),
        (Some(v), None) if v.trim().is_empty() => Err(SecretError::Empty(what)),
        (Some(v), None) => Ok(Some(v.trim().to_string())),
        (None, Some(name)) => match env(name) {
            Some(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
            _ => Err(SecretError::Unset {
                what,
                var: name.clone(),
            }),
        },
        (None, None) => Ok(None),
    }
}

/// `forge:` in gate.yaml: where team/group membership is read and comment votes come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForgeConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<ForgeAccess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<ForgeAccess>,
    /// How long a resolved member list is reused when a request opens (default 5m).
    /// Votes always re-read membership from the forge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl: Option<crate::core::duration::Dur>,
}
