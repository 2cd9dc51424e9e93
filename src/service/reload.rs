//! Reloading gate.yaml's `users` and `pipelines` (their tokens with them) and the policy
//! without a restart (`SIGHUP`, `POST /api/v1/admin/reload`). A file that does not load
//! or check is refused with its `file:line:column` and nothing changes. Other sections
//! of gate.yaml are built into the running server (listener, store, channels, sign-in):
//! when they changed, the answer and the log say so and they wait for a restart.
//! Requests already open keep the requirements they snapshotted when they opened.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::Engine;
use super::error::{AppError, ErrorCode, Result};
use crate::config::Config;
use crate::core::api::ReloadView;
use crate::store::AuditDraft;

/// Where the running configuration was read from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// gate.yaml, or `None` when the server started without one (`--demo`): then only
    /// the policy reloads.
    pub config: Option<PathBuf>,
    pub policy: PathBuf,
}

/// The sections a reload puts in force.
const RELOADED: [&str; 2] = ["users", "pipelines"];

impl Engine {
    /// Reads the files again and, if they load and check, puts the new users, pipelines
    /// and policy in force, with a `config_reloaded` audit event naming both policy
    /// digests. `actor` is who asked (`SIGHUP` for the signal).
    pub async fn reload(&self, actor: &str, now: i64) -> Result<ReloadView> {
        let Some(src) = self.sources.get() else {
            return Err(AppError::Conflict(
                ErrorCode::InvalidConfig,
                "this server was not started from files it can read again".into(),
            ));
        };
        // One reload at a time, so two cannot interleave their swaps.
        let _one = self.reload_lock.lock().await;
        let old = self.config();
        let invalid = |m: String| AppError::Invalid(ErrorCode::InvalidConfig, format!("{m}; nothing was reloaded"));
        let new = match &src.config {
            Some(p) => Config::load(p).map_err(|e| invalid(e.to_string()))?,
            None => (*old).clone(),
        };
        let policy = crate::config::load_policy(&src.policy).map_err(|e| invalid(e.to_string()))?;
        policy
            .check_members(&|u| new.user(u).is_some())
            .map_err(|e| invalid(e.to_string()))?;
        for (name, source) in &policy.forge_groups {
            self.forge
                .check_source(source)
                .map_err(|e| invalid(format!("policy group `{name}` is a {}, but {e}", source.describe())))?;
        }
        let not_reloaded = changed_sections(&old, &new);
        let mut merged = (*old).clone();
        merged.users = new.users;
        merged.pipelines = new.pipelines;
        let old_digest = self.policy().digest.clone();
        let view = ReloadView {
            old_policy_digest: old_digest.clone(),
            policy_digest: policy.digest.clone(),
            users: merged.users.len(),
            pipelines: merged.pipelines.len(),
            not_reloaded,
        };
        let mut tx = self.store.begin().await?;
        tx.append_audit(&AuditDraft {
            at: now,
            request_id: String::new(),
            kind: "config_reloaded".into(),
            actor: actor.to_string(),
            data: json!({
                "old_policy_digest": view.old_policy_digest,
                "policy_digest": view.policy_digest,
                "users": view.users,
                "pipelines": view.pipelines,
                "not_reloaded": view.not_reloaded,
            }),
        })
        .await?;
        tx.commit().await?;
        self.tokens
            .store(Arc::new(crate::auth::Tokens::new(&merged.users, &merged.pipelines)));
        self.config.store(Arc::new(merged));
        self.policy.store(Arc::new(policy));
        if view.not_reloaded.is_empty() {
            tracing::info!(by = %actor, old_policy_digest = %view.old_policy_digest, policy_digest = %view.policy_digest, users = view.users, pipelines = view.pipelines, "configuration reloaded");
        } else {
            tracing::warn!(by = %actor, old_policy_digest = %view.old_policy_digest, policy_digest = %view.policy_digest, users = view.users, pipelines = view.pipelines, not_reloaded = %view.not_reloaded.join(", "), "configuration reloaded; changed sections that need a restart were not reloaded");
        }
        Ok(view)
    }
}

/// The top-level sections of gate.yaml that differ between `old` and `new`, other than
/// those a reload puts in force.
fn changed_sections(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (serde_json::to_value(old), serde_json::to_value(new));
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else {
        return vec![];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !RELOADED.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sections_other_than_users_and_pipelines_are_reported() {
        let old = Config::parse("a.yaml", "listen: 127.0.0.1:1\nusers: []\n").unwrap();
        let new = Config::parse(
            "b.yaml",
            "listen: 127.0.0.1:2\nmax_wait_secs: 5\nusers:\n  - { name: zed, token_sha256: \"0000000000000000000000000000000000000000000000000000000000000000\" }\n",
        )
        .unwrap();
        assert_eq!(changed_sections(&old, &new), vec!["listen", "max_wait_secs"]);
        assert!(changed_sections(&old, &old).is_empty());
    }
}
