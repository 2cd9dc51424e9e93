//! The `forge` section of gate.yaml (access to GitHub and GitLab) and the `jenkins`
//! section (the Jenkins whose held `input` steps the server answers).

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
    /// GitHub only: the server acts as this GitHub App to answer deployment protection
    /// rules (docs/github-actions.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<GithubAppConfig>,
}

/// `forge.github.app`: the GitHub App jitgate answers deployment protection rules as.
/// Its private key stays on the server: a file, or an environment variable holding the PEM.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GithubAppConfig {
    /// The App's id (its settings page, "App ID").
    pub app_id: u64,
    /// A PEM file with the App's private key; relative to gate.yaml's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<std::path::PathBuf>,
    /// An environment variable holding the PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_env: Option<String>,
}

/// What is wrong with `forge.<key>.app` as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppConfigError {
    #[error("forge.{0}.app: only GitHub has Apps; remove it from forge.{0}")]
    NotGithub(&'static str),
    #[error("forge.github.app.app_id must be the App's id (a positive number)")]
    AppId,
    #[error("forge.github.app: give `private_key_file` or `private_key_env`, not both")]
    BothKeys,
    #[error("forge.github.app: needs `private_key_file` (or `private_key_env`), the App's private key")]
    NoKey,
}

/// Why the App's private key cannot be had at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppKeyError {
    #[error("private_key_file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("private_key_env names `{0}`, which is not set in the environment")]
    Unset(String),
    #[error(
        "{from}: not an RSA private key in PEM (GitHub's App settings make one: \"Generate a private key\"): {reason}"
    )]
    Parse { from: String, reason: String },
}

impl GithubAppConfig {
    /// Checks the section as written; `at(needle, problem)` locates the problem.
    pub fn validate<E>(&self, key: &'static str, at: &dyn Fn(&str, AppConfigError) -> E) -> Result<(), E> {
        if key != "github" {
            return Err(at("app:", AppConfigError::NotGithub(key)));
        }
        if self.app_id == 0 {
            return Err(at("app_id", AppConfigError::AppId));
        }
        match (&self.private_key_file, &self.private_key_env) {
            (Some(_), Some(_)) => Err(at("private_key_env", AppConfigError::BothKeys)),
            (None, None) => Err(at("app:", AppConfigError::NoKey)),
            _ => Ok(()),
        }
    }

    /// The private key's PEM and where it came from (the file, or `$VAR`), read now.
    pub fn read_key(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, String), AppKeyError> {
        if let Some(var) = &self.private_key_env {
            let pem = env(var)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| AppKeyError::Unset(var.clone()))?;
            return Ok((pem, format!("private_key_env `{var}`")));
        }
        let path = self.private_key_file.clone().unwrap_or_default();
        let shown = path.display().to_string();
        let pem = std::fs::read_to_string(&path).map_err(|e| AppKeyError::File {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Ok((pem, format!("private_key_file {shown}")))
    }
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

impl ForgeConfig {
    /// Makes relative paths (the App's `private_key_file`) relative to `base`, gate.yaml's folder.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        let app = self.github.as_mut().and_then(|g| g.app.as_mut());
        if let Some(k) = app
            .and_then(|a| a.private_key_file.as_mut())
            .filter(|k| k.is_relative())
        {
            *k = base.join(&*k);
        }
    }
}

/// `jenkins:` in gate.yaml: the Jenkins whose builds wait in an `input` step for the
/// server to answer (docs/jenkins.md). The server sends this user's API token to the
/// builds it answers, so it answers only builds under `url`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JenkinsConfig {
    /// The Jenkins root as its builds' `BUILD_URL`s begin (`JENKINS_URL`), e.g.
    /// `https://ci.example.com/` or `https://example.com/jenkins/`.
    pub url: String,
    /// The Jenkins user whose API token answers the inputs (needs Job/Read and the
    /// right to submit them: in `submitter` if the input names one, or Job/Cancel to abort).
    #[serde(deserialize_with = "not_blank")]
    pub user: String,
    /// The environment variable that holds that user's API token.
    #[serde(deserialize_with = "not_blank")]
    pub token_env: String,
}

/// A string that is not blank (refused where it is written, so the error has its place).
fn not_blank<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if crate::core::text::is_blank(&s) {
        return Err(serde::de::Error::custom("must not be blank"));
    }
    Ok(s.trim().to_string())
}

/// What is wrong with `jenkins:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JenkinsConfigError {
    #[error("jenkins.url {0}")]
    Url(String),
}

impl JenkinsConfig {
    /// Checks the section; `at` locates a problem by the text it is about.
    pub fn validate<E>(&self, at: &dyn Fn(&str, JenkinsConfigError) -> E) -> Result<(), E> {
        super::jenkins::root(&self.url)
            .map(|_| ())
            .map_err(|m| at(&self.url, JenkinsConfigError::Url(m)))
    }

    /// The API token, read from the variable `token_env` names.
    pub fn resolve_token(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, SecretError> {
        secret(&None, &Some(self.token_env.clone()), "token", env)?.ok_or(SecretError::NoToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_sections_are_checked_where_written() {
        let at = |needle: &str, e: AppConfigError| format!("{needle}: {e}");
        let app = GithubAppConfig {
            app_id: 7,
            private_key_file: Some("k.pem".into()),
            private_key_env: None,
        };
        assert_eq!(app.validate("github", &at), Ok(()));
        assert_eq!(
            app.validate("gitlab", &at).unwrap_err(),
            "app:: forge.gitlab.app: only GitHub has Apps; remove it from forge.gitlab"
        );
        let both = GithubAppConfig {
            private_key_env: Some("K".into()),
            ..app.clone()
        };
        assert!(
            both.validate("github", &at)
                .unwrap_err()
                .starts_with("private_key_env: ")
        );
        let none = GithubAppConfig {
            private_key_file: None,
            ..app.clone()
        };
        assert!(
            none.validate("github", &at)
                .unwrap_err()
                .contains("needs `private_key_file`")
        );
        let zero = GithubAppConfig { app_id: 0, ..app };
        assert!(zero.validate("github", &at).unwrap_err().starts_with("app_id: "));
    }

    #[test]
    fn keys_are_read_from_the_file_or_the_variable_named() {
        let var = GithubAppConfig {
            app_id: 1,
            private_key_file: None,
            private_key_env: Some("APP_KEY".into()),
        };
        let e = var.read_key(&|_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "private_key_env names `APP_KEY`, which is not set in the environment"
        );
        let (pem, from) = var.read_key(&|_| Some("PEM".into())).unwrap();
        assert_eq!((pem.as_str(), from.as_str()), ("PEM", "private_key_env `APP_KEY`"));
        let file = GithubAppConfig {
            private_key_file: Some("/nonexistent/app.pem".into()),
            private_key_env: None,
            ..var
        };
        let e = file.read_key(&|_| None).unwrap_err().to_string();
        assert!(e.starts_with("private_key_file /nonexistent/app.pem: "), "{e}");
    }

    #[test]
    fn the_jenkins_section() {
        let j: JenkinsConfig =
            crate::core::yaml::strict("url: https://ci.example.com/jenkins\nuser: gate\ntoken_env: JENKINS_T\n")
                .unwrap();
        let at = |n: &str, e: JenkinsConfigError| format!("{n}: {e}");
        j.validate(&at).unwrap();
        let env = |k: &str| (k == "JENKINS_T").then(|| "11abc".to_string());
        assert_eq!(j.resolve_token(&env).unwrap(), "11abc");
        let e = j.resolve_token(&|_| None).unwrap_err().to_string();
        assert_eq!(e, "`token_env` names `JENKINS_T`, which is not set in the environment");

        let e =
            crate::core::yaml::strict::<JenkinsConfig>("url: https://ci/\nuser: \" \"\ntoken_env: T\n").unwrap_err();
        assert!(e.message.contains("must not be blank"), "{}", e.message);
        let bad = JenkinsConfig {
            url: "http://ci.example.com/".into(),
            ..j
        };
        let e = bad.validate(&at).unwrap_err();
        assert!(
            e.starts_with("http://ci.example.com/: jenkins.url `http://ci.example.com/` must be https://"),
            "{e}"
        );
    }
}
