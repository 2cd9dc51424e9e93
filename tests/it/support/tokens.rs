//! Tokens and the `users:`/`pipelines:` part of a gate.yaml for them.
//!
//! Shared by the integration tests (`tests/it`) and `gate-load` (`benches/load.rs`, which
//! includes this file with `#[path]`): only the crate's own dependencies here.
#![allow(dead_code)]

/// The fixed token the tests give `name` (a user or a pipeline).
pub fn token(name: &str) -> String {
    format!("tok-{name}")
}

/// A fresh random token, `PREFIX_<48 hex digits>`.
pub fn random_token(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 24]>()))
}

/// An approver in gate.yaml: a name, its token and the optional identities.
#[derive(Debug, Clone, Default)]
pub struct UserEntry {
    pub name: String,
    pub token: String,
    pub github: Option<String>,
    pub gitlab: Option<String>,
    pub email: Option<String>,
}

impl UserEntry {
    pub fn new(name: &str, token: String) -> UserEntry {
        UserEntry {
            name: name.into(),
            token,
            ..Default::default()
        }
    }
}

/// A pipeline in gate.yaml: a name and its token.
#[derive(Debug, Clone)]
pub struct PipelineEntry {
    pub name: String,
    pub token: String,
}

/// The `users:` and `pipelines:` sections for these entries; only token digests are written.
pub fn identities_yaml(users: &[UserEntry], pipelines: &[PipelineEntry]) -> String {
    let mut cfg = String::from("users:\n");
    for u in users {
        cfg.push_str(&format!(
            "  - name: {}\n    token_sha256: {}\n",
            u.name,
            jitgate::auth::hash_token(&u.token)
        ));
        for (key, value) in [("github", &u.github), ("gitlab", &u.gitlab), ("email", &u.email)] {
            if let Some(v) = value {
                cfg.push_str(&format!("    {key}: {v}\n"));
            }
        }
    }
    cfg.push_str("pipelines:\n");
    for p in pipelines {
        cfg.push_str(&format!(
            "  - name: {}\n    token_sha256: {}\n",
            p.name,
            jitgate::auth::hash_token(&p.token)
        ));
    }
    cfg
}
