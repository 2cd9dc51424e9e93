//! Forge groups in requests: the engine resolves `github_team` / `gitlab_group`
//! requirements with the forge, so the decision machine stays pure. The identity
//! provider's `scim_group` and `idp_group` take the same path, their members read by
//! `directory` instead of the forge.
//!
//! - Opening a request snapshots each forge group's members (configured users whose
//!   `github:` / `gitlab:` login is in the team or group), reusing a list read within
//!   `forge.cache_ttl`. If the forge cannot be reached, the open is refused with 503 and
//!   the gate retries.
//! - Every vote re-reads the members of the request's forge groups from the forge (never
//!   the cache): someone removed since the request opened is refused, someone added may
//!   vote. If the forge cannot be reached the vote is refused with 503.
//! - An approval counts for a forge group only if the voter was a member when they voted;
//!   the vote keeps which forge groups that was (`forge_groups` in its stored meta), so
//!   later removals do not undo it and the request view shows it.

use serde_json::{Value, json};

use super::error::{AppError, Result};
use super::{Doc, Engine};
use crate::core::api::VoteMeta;
use crate::core::decide::{Requirement, State};
use crate::core::identity::Identity;
use crate::core::policy::GroupSource;
use crate::forge::{self, Read};
use crate::store::VoteRow;

/// Live member lists, one per requirement of a request; `None` for lists of users.
pub type Live = Vec<Option<Vec<String>>>;

impl Engine {
    /// Configured users behind a list of forge logins (unknown logins cannot vote: skipped).
    fn users_for_logins(&self, src: &GroupSource, logins: &[String]) -> Vec<String> {
        let forge = match src {
            GroupSource::GithubTeam { .. } => "github",
            GroupSource::GitlabGroup { .. } => "gitlab",
            GroupSource::ScimGroup { .. } | GroupSource::IdpGroup { .. } => return Vec::new(),
        };
        let mut out: Vec<String> = Vec::new();
        for l in logins.iter().filter_map(|l| Identity::parse(l).ok()) {
            if let Some(u) = self.config().user_for_login(forge, &l)
                && !out.contains(&u.name)
            {
                out.push(u.name.clone());
            }
        }
        out
    }

    /// Fills the members of forge-group requirements for a request being opened.
    pub(super) async fn resolve_requirements(&self, mut reqs: Vec<Requirement>) -> Result<Vec<Requirement>> {
        for r in &mut reqs {
            let Some(src) = r.source.as_deref().and_then(GroupSource::parse) else {
                continue;
            };
            if !src.on_forge() {
                r.members = self.directory_members(&src).await?;
                continue;
            }
            let logins = self
                .forge
                .members(&src, Read::Cached)
                .await
                .map_err(|e| unavailable(&e, "the request was not opened; retry"))?;
            r.members = self.users_for_logins(&src, &logins);
        }
        Ok(reqs)
    }

    /// The members of each forge group of a request, read from the forge now.
    pub(super) async fn live_members(&self, doc: &Doc) -> Result<Live> {
        let mut out = Vec::with_capacity(doc.requirements.len());
        for r in &doc.requirements {
            let Some(src) = r.source.as_deref().and_then(GroupSource::parse) else {
                out.push(None);
                continue;
            };
            if !src.on_forge() {
                out.push(Some(self.directory_members(&src).await?));
                continue;
            }
            let logins = self.forge.members(&src, Read::Live).await.map_err(|e| {
                unavailable(
                    &e,
                    "the vote was not counted (membership is checked with the forge at every vote); try again later",
                )
            })?;
            out.push(Some(self.users_for_logins(&src, &logins)));
        }
        Ok(out)
    }
}

fn unavailable(e: &forge::Error, what: &str) -> AppError {
    tracing::warn!(error = %e, "forge group membership unavailable");
    AppError::Unavailable(format!("{e}; {what}"))
}

/// The forge groups a vote was counted for, from its stored meta.
fn counted_for(v: &VoteRow) -> Vec<String> {
    v.meta
        .as_deref()
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .and_then(|m| serde_json::from_value(m["forge_groups"].clone()).ok())
        .unwrap_or_default()
}

/// Whom a stored vote counted for under a delegation (`VoteMeta::on_behalf_of`).
pub(super) fn on_behalf_of(v: &VoteRow) -> Option<String> {
    v.meta
        .as_deref()
        .and_then(|m| serde_json::from_str::<VoteMeta>(m).ok())
        .and_then(|m| m.on_behalf_of)
}

/// Who a stored vote counts as: the voter, or whom they voted for.
fn counted_as(v: &VoteRow) -> String {
    on_behalf_of(v).unwrap_or_else(|| v.voter.clone())
}

/// Adjusts forge-group requirements of a stored request: its members are the snapshot's
/// members who have not voted, plus the approvers who were members when they voted.
pub(super) fn counted_forge_members(reqs: &mut [Requirement], votes: &[VoteRow]) {
    for r in reqs.iter_mut().filter(|r| r.source.is_some()) {
        r.members.retain(|m| !votes.iter().any(|v| &counted_as(v) == m));
        for v in votes.iter().filter(|v| v.approve && v.via != "policy") {
            let who = counted_as(v);
            if counted_for(v).contains(&r.group) && !r.members.contains(&who) {
                r.members.push(who);
            }
        }
    }
}

/// The machine's view at vote time: forge groups hold their live members, plus earlier
/// approvers who were members when they voted (see `counted_forge_members`).
pub(super) fn with_live(state: &State, live: &Live) -> State {
    let mut st = state.clone();
    for (r, l) in st.requirements.iter_mut().zip(live) {
        let Some(l) = l else { continue };
        let counted: Vec<String> = r
            .members
            .iter()
            .filter(|m| state.votes.iter().any(|v| &v.voter == *m))
            .cloned()
            .collect();
        r.members = l.clone();
        for c in counted {
            if !r.members.contains(&c) {
                r.members.push(c);
            }
        }
    }
    st
}

/// The forge groups `user` is in now, by name.
pub(super) fn live_groups(doc: &Doc, live: &Live, user: &str) -> Vec<String> {
    doc.requirements
        .iter()
        .zip(live)
        .filter(|(_, l)| l.as_ref().is_some_and(|l| l.iter().any(|m| m == user)))
        .map(|(r, _)| r.group.clone())
        .collect()
}

/// The stored meta of a vote: how it was cast, and the forge groups it counts for.
pub(super) fn vote_meta_json(extra: &VoteMeta, forge_groups: &[String]) -> Option<String> {
    if *extra == VoteMeta::default() && forge_groups.is_empty() {
        return None;
    }
    let mut v = serde_json::to_value(extra).unwrap_or_else(|_| json!({}));
    if !forge_groups.is_empty() {
        v["forge_groups"] = json!(forge_groups);
    }
    Some(v.to_string())
}
