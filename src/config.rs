//! The server config (`gate.yaml`): where to listen and store, which policy, who may vote
//! (`users`), which pipelines may open requests (`pipelines` with static tokens, `oidc`
//! with tokens from trusted issuers). Secrets appear only as SHA-256 digests.

use crate::core::url::check_url;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::auth::config::{OidcIssuer, OidcPlatform, Pipeline, Sso, User};
pub use crate::forge::config::{ForgeAccess, ForgeConfig};

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
    /// Where notifications go (webhooks, Slack, email) and how they are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<crate::notify::NotifyConfig>,
    /// GitHub and GitLab access: team/group membership, comment approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<ForgeConfig>,
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
        Ok(cfg)
    }

    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = serde_norway::from_str(text).map_err(|e| {
            let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            let msg = e.to_string();
            ConfigError {
                file: file.into(),
                line,
                column,
                message: msg.split(" at line ").next().unwrap_or(&msg).to_string(),
            }
        })?;
        let fail = |needle: &str, message: String| {
            let (line, column) = text
                .lines()
                .enumerate()
                .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
                .unwrap_or((0, 0));
            ConfigError {
                file: file.into(),
                line,
                column,
                message,
            }
        };
        let mut names = std::collections::HashSet::new();
        for u in &cfg.users {
            if u.name.trim().is_empty() {
                return Err(fail("name:", "a user has an empty `name`".into()));
            }
            if !names.insert(u.name.as_str()) {
                return Err(fail(&u.name, format!("user `{}` is listed twice", u.name)));
            }
            if let Some(h) = &u.token_sha256 {
                check_digest(h).map_err(|m| fail(h, format!("user `{}`: token_sha256 {m}", u.name)))?;
            }
        }
        for p in &cfg.pipelines {
            if !names.insert(p.name.as_str()) {
                return Err(fail(
                    &p.name,
                    format!("`{}` names both a user and a pipeline, or two pipelines", p.name),
                ));
            }
            check_digest(&p.token_sha256)
                .map_err(|m| fail(&p.token_sha256, format!("pipeline `{}`: token_sha256 {m}", p.name)))?;
        }
        let mut issuers = std::collections::HashSet::new();
        for o in &cfg.oidc {
            let at = |m: String| fail(&o.issuer, format!("oidc issuer `{}`: {m}", o.issuer));
            check_url(&o.issuer).map_err(|m| at(format!("issuer {m}")))?;
            if !issuers.insert(o.issuer.as_str()) {
                return Err(at("is listed twice; give one entry all its allow-lists".into()));
            }
            if o.audience.trim().is_empty() {
                return Err(at("`audience` is empty".into()));
            }
            if let Some(u) = &o.jwks_url {
                check_url(u).map_err(|m| fail(u, format!("oidc issuer `{}`: jwks_url {m}", o.issuer)))?;
            }
            let name = o.pipeline_name();
            if name.trim().is_empty() {
                return Err(at("`name` is empty".into()));
            }
            if names.contains(name.as_str()) {
                return Err(at(format!("name `{name}` is already a user or a static pipeline")));
            }
            if !o.repositories.is_empty() && o.platform == OidcPlatform::Generic {
                return Err(at(
                    "`repositories` needs platform github or gitlab (generic tokens carry no repository); use `subjects`".into(),
                ));
            }
        }
        if let Some(sso) = &cfg.sso {
            let at = |m: String| fail("sso:", format!("sso: {m}"));
            check_url(&sso.issuer).map_err(|m| at(format!("issuer {m}")))?;
            if sso.client_id.trim().is_empty() {
                return Err(at("`client_id` is empty".into()));
            }
            if sso.client_secret.is_some() && sso.client_secret_env.is_some() {
                return Err(at("give `client_secret` or `client_secret_env`, not both".into()));
            }
            if let Some(a) = &sso.token_auth
                && !matches!(a.as_str(), "client_secret_basic" | "client_secret_post")
            {
                return Err(at(format!(
                    "token_auth `{a}` is not client_secret_basic or client_secret_post"
                )));
            }
            if sso.user_claim().trim().is_empty() {
                return Err(at("`user_claim` is empty".into()));
            }
        }
        if cfg.session_ttl.is_some_and(|d| d.millis() <= 0) {
            return Err(fail("session_ttl", "session_ttl must be longer than zero".into()));
        }
        if let Some(n) = &cfg.notify {
            n.check(&fail)?;
        }
        if let Some(f) = &cfg.forge {
            for (key, access) in [("github", &f.github), ("gitlab", &f.gitlab)] {
                let Some(a) = access else { continue };
                if a.token.is_some() && a.token_env.is_some() {
                    return Err(fail(
                        "token",
                        format!("forge.{key}: give `token` or `token_env`, not both"),
                    ));
                }
                if a.token.is_none() && a.token_env.is_none() {
                    return Err(fail(
                        &format!("{key}:"),
                        format!("forge.{key}: needs `token_env` (or `token`)"),
                    ));
                }
                if let Some(u) = &a.api_url {
                    check_url(u).map_err(|m| fail(u, format!("forge.{key}.api_url {m}")))?;
                }
                if a.webhook_secret.is_some() && a.webhook_secret_env.is_some() {
                    return Err(fail(
                        "webhook_secret",
                        format!("forge.{key}: give `webhook_secret` or `webhook_secret_env`, not both"),
                    ));
                }
            }
            if f.cache_ttl.is_some_and(|t| t.millis() <= 0) {
                return Err(fail("cache_ttl", "forge.cache_ttl must be positive".into()));
            }
        }
        Ok(cfg)
    }

    /// How long a web UI session lasts (`session_ttl`, default 8 hours), in milliseconds.
    pub fn session_ttl_ms(&self) -> i64 {
        self.session_ttl.map(|d| d.millis()).unwrap_or(8 * 3600 * 1000)
    }

    /// The `users:` entries a sign-in identity (name, email, GitHub or GitLab login) names.
    pub fn users_for_login(&self, ident: &str) -> Vec<String> {
        if ident.trim().is_empty() {
            return vec![];
        }
        self.users
            .iter()
            .filter(|u| {
                std::iter::once(u.name.as_str())
                    .chain(u.email.as_deref())
                    .chain(u.github.as_deref())
                    .chain(u.gitlab.as_deref())
                    .any(|i| i.eq_ignore_ascii_case(ident))
            })
            .map(|u| u.name.clone())
            .collect()
    }

    /// The configured user whose `github` (or `gitlab`) login is `login`, if exactly one.
    pub fn user_for_login(&self, forge: &str, login: &str) -> Option<&User> {
        let mut found = self.users.iter().filter(|u| {
            let l = if forge == "github" { &u.github } else { &u.gitlab };
            l.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(login))
        });
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The configured users that a request identity (actor, login, email) belongs to.
    pub fn users_for_identity(&self, identity: &str) -> Vec<String> {
        if identity.is_empty() {
            return vec![];
        }
        self.users
            .iter()
            .filter(|u| u.identities().any(|i| i.eq_ignore_ascii_case(identity)))
            .map(|u| u.name.clone())
            .collect()
    }
}

fn check_digest(h: &str) -> Result<(), String> {
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err("must be 64 hex characters (run `gate token hash` to make one)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_located() {
        let e = Config::parse("gate.yaml", "listen: x\nusers:\n  - name: a\n    tokn: y\n").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("unknown field `tokn`"), "{e}");
    }

    #[test]
    fn bad_digest_located() {
        let e = Config::parse("gate.yaml", "users:\n  - name: a\n    token_sha256: abc\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("64 hex"));
    }

    #[test]
    fn oidc_issuers_parse_and_are_checked() {
        let ok = "oidc:\n  - issuer: https://token.actions.githubusercontent.com\n    audience: jitgate\n    platform: github\n    repositories: [\"acme/*\"]\n  - issuer: http://127.0.0.1:8080\n    audience: jitgate\n    platform: generic\n    name: jenkins\n";
        let c = Config::parse("gate.yaml", ok).unwrap();
        assert_eq!(c.oidc.len(), 2);
        assert_eq!(c.oidc[0].platform, OidcPlatform::Github);
        assert_eq!(c.oidc[0].pipeline_name(), "oidc:github");
        assert_eq!(c.oidc[1].pipeline_name(), "jenkins");

        let e = Config::parse(
            "gate.yaml",
            "oidc:\n  - issuer: https://gitlab.com\n    audience: jitgate\n    platform: gitlab\n    repos: [x]\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("unknown field `repos`"), "{e}");

        let e = Config::parse(
            "gate.yaml",
            "oidc:\n  - issuer: https://gitlab.com\n    audience: jitgate\n    platform: jenkins\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("unknown variant `jenkins`"), "{e}");

        let e = Config::parse(
            "gate.yaml",
            "users:\n  - name: a\noidc:\n  - issuer: http://gitlab.example\n    audience: jitgate\n    platform: gitlab\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (4, 13), "{e}");
        assert!(e.message.contains("must be https://"), "{e}");

        let twice = "oidc:\n  - issuer: https://gitlab.com\n    audience: a\n    platform: gitlab\n  - issuer: https://gitlab.com\n    audience: b\n    platform: gitlab\n";
        assert!(
            Config::parse("gate.yaml", twice)
                .unwrap_err()
                .message
                .contains("listed twice")
        );
        let clash = "pipelines:\n  - name: ci\n    token_sha256: 0000000000000000000000000000000000000000000000000000000000000000\noidc:\n  - issuer: https://gitlab.com\n    audience: a\n    platform: gitlab\n    name: ci\n";
        assert!(
            Config::parse("gate.yaml", clash)
                .unwrap_err()
                .message
                .contains("already a user")
        );
        let generic =
            "oidc:\n  - issuer: https://ci.example\n    audience: a\n    platform: generic\n    repositories: [x]\n";
        assert!(
            Config::parse("gate.yaml", generic)
                .unwrap_err()
                .message
                .contains("use `subjects`")
        );
    }

    #[test]
    fn sso_and_session_ttl_parse_and_are_checked() {
        let ok = "session_ttl: 30m\nsso:\n  issuer: https://login.example.com\n  client_id: jitgate\n  client_secret_env: SSO_SECRET\n  user_claim: preferred_username\n  allowed_domains: [example.com]\n";
        let c = Config::parse("gate.yaml", ok).unwrap();
        assert_eq!(c.session_ttl_ms(), 30 * 60 * 1000);
        let sso = c.sso.unwrap();
        assert_eq!(sso.user_claim(), "preferred_username");
        assert_eq!(sso.scopes(), ["openid", "email", "profile"]);
        assert!(!format!("{sso:?}").contains("SSO_SECRET=") && Config::default().session_ttl_ms() == 8 * 3600 * 1000);
        let secret = "sso:\n  issuer: https://login.example.com\n  client_id: jitgate\n  client_secret: hunter2\n  scopes: [email]\n";
        let sso = Config::parse("gate.yaml", secret).unwrap().sso.unwrap();
        assert!(!format!("{sso:?}").contains("hunter2"), "the secret is never printed");
        assert_eq!(sso.scopes(), ["openid", "email"]);
        for (bad, why) in [
            ("sso:\n  issuer: http://login.example.com\n  client_id: x\n", "https"),
            (
                "sso:\n  issuer: https://login.example.com\n  client_id: ' '\n",
                "client_id",
            ),
            (
                "sso:\n  issuer: https://l.example\n  client_id: x\n  token_auth: jwt\n",
                "token_auth",
            ),
            (
                "sso:\n  issuer: https://l.example\n  client_id: x\n  client_secret: a\n  client_secret_env: B\n",
                "not both",
            ),
            (
                "sso:\n  issuer: https://l.example\n  client_id: x\n  clientid: y\n",
                "unknown field",
            ),
        ] {
            let e = Config::parse("gate.yaml", bad).unwrap_err();
            assert!(e.message.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn forge_access() {
        let c = Config::parse(
            "gate.yaml",
            "users:\n  - name: alice\n    github: alice-gh\n    gitlab: al\nforge:\n  github:\n    token_env: GH_T\n    webhook_secret: s3\n  gitlab:\n    api_url: https://gitlab.example/api/v4\n    token: glpat-x\n  cache_ttl: 2m\n",
        )
        .unwrap();
        let f = c.forge.as_ref().unwrap();
        assert_eq!(f.cache_ttl.unwrap().millis(), 120_000);
        let gh = f.github.as_ref().unwrap();
        let env = |k: &str| (k == "GH_T").then(|| "ghp_1".to_string());
        assert_eq!(gh.resolve_token(&env).unwrap(), "ghp_1");
        assert_eq!(gh.resolve_webhook_secret(&env).unwrap().as_deref(), Some("s3"));
        let none = |_: &str| None;
        assert!(
            gh.resolve_token(&none)
                .unwrap_err()
                .contains("`GH_T`, which is not set")
        );
        assert_eq!(c.user_for_login("github", "Alice-GH").unwrap().name, "alice");
        assert_eq!(c.user_for_login("gitlab", "al").unwrap().name, "alice");
        assert!(c.user_for_login("gitlab", "alice-gh").is_none());

        let e = Config::parse("gate.yaml", "forge:\n  github:\n    token_env: X\n    tokn: y\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("unknown field `tokn`"), "{e}");
        let e = Config::parse("gate.yaml", "forge:\n  github:\n    api_url: x\n").unwrap_err();
        assert!(e.message.contains("needs `token_env`"), "{e}");
        assert_eq!(e.line, 2, "{e}");
        let e = Config::parse(
            "gate.yaml",
            "forge:\n  gitlab:\n    token: t\n    api_url: http://gitlab.example\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("forge.gitlab.api_url"), "{e}");
    }

    #[test]
    fn identities_map_to_users() {
        let c = Config::parse(
            "gate.yaml",
            "users:\n  - name: alice\n    github: alice-gh\n    email: a@x.io\n  - name: bob\n",
        )
        .unwrap();
        assert_eq!(c.users_for_identity("Alice-GH"), vec!["alice"]);
        assert_eq!(c.users_for_identity("a@x.io"), vec!["alice"]);
        assert_eq!(c.users_for_identity("bob"), vec!["bob"]);
        assert!(c.users_for_identity("").is_empty());
    }

    #[test]
    fn config_is_checked_with_locations() {
        let e = Config::parse(
            "gate.yaml",
            "notify:\n  webhooks:\n    - name: a\n      url: http://example.com/hook\n      secret_env: S\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("must be https://"), "{e}");
        let e = Config::parse(
            "gate.yaml",
            "notify:\n  email:\n    host: h\n    from: gate@x.io\n    starttls: maybe\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("unknown variant `maybe`"), "{e}");
        let e = Config::parse("gate.yaml", "notify:\n  retry_bse: 1s\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = Config::parse(
            "gate.yaml",
            "notify:\n  email:\n    host: h\n    from: not an address\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = Config::parse("gate.yaml", "notify:\n  slack:\n    - name: s\n").unwrap_err();
        assert!(e.message.contains("exactly one of `url` and `url_env`"), "{e}");
        let e = Config::parse("gate.yaml", "notify:\n  retry_base: 10m\n").unwrap_err();
        assert!(e.message.contains("longer than"), "{e}");
        let ok = Config::parse(
            "gate.yaml",
            "notify:\n  retry_base: 100ms\n  email:\n    host: h\n    port: 2525\n    from: jitgate <gate@x.io>\n    starttls: none\n",
        )
        .unwrap();
        assert_eq!(
            ok.notify.unwrap().email.unwrap().starttls,
            crate::notify::config::StartTls::None
        );
    }
}
