//! People and groups from the identity provider: who a SCIM user is, whether a person
//! the provider deactivated may still call, and the members of `{ scim_group: NAME }`
//! and `{ idp_group: NAME }` policy groups (see `forge_groups` for how requirements use
//! them, and docs/scim.md).
//!
//! - A SCIM user whose `userName` or email is a `users:` entry's name, email or forge
//!   login (compared in their normal form) is that person; any other is the person named
//!   by their `userName`'s normal form, who signs in by SSO.
//! - Once the provider manages a person, an inactive or deleted SCIM user refuses every
//!   call they make with a configured token or a web session: read from the database at
//!   each call, so a deactivation on one replica stops the person on all of them.
//! - An `idp_group` counts a voter only through the groups their web session saw at
//!   sign-in, no older than `sso.max_group_age`.

use super::Engine;
use super::error::{AppError, ErrorCode, Result};
use super::forge_groups::Live;
use super::request::Doc;
use crate::auth::Principal;
use crate::core::api::VoteMeta;
use crate::core::identity::Identity;
use crate::core::policy::GroupSource;
use crate::store::{ScimUserRow, SessionRow, Standing};

/// A group name as compared: caseless, trimmed.
pub fn group_key(name: &str) -> String {
    name.trim().to_lowercase()
}

impl Engine {
    /// The normal forms a person may appear under at the identity provider: a `users:`
    /// entry's name, email and logins, or the name itself for a person only SCIM knows.
    fn person_keys(&self, name: &str) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        let config = self.config();
        let raw: Vec<&str> = match config.user(name) {
            Some(u) => std::iter::once(u.name.as_str())
                .chain(u.email.as_deref())
                .chain(u.github.as_deref())
                .chain(u.gitlab.as_deref())
                .collect(),
            None => vec![name],
        };
        for r in raw {
            if let Ok(i) = Identity::parse(r)
                && !keys.contains(&i.to_string())
            {
                keys.push(i.to_string());
            }
        }
        keys
    }

    /// Refuses a person the identity provider deactivated or deleted (401), on every
    /// authenticated call. Pipelines are not people; without `scim:` nothing is checked.
    pub async fn check_active(&self, who: &Principal) -> Result<()> {
        let Principal::Approver(name) = who else { return Ok(()) };
        if self.config().scim.is_none() {
            return Ok(());
        }
        match self.store.scim_standing(&self.person_keys(name)).await? {
            Standing::Unmanaged | Standing::Active => Ok(()),
            Standing::Refused => Err(AppError::Unauthorized(format!(
                "`{name}` is deactivated at the identity provider (SCIM): their tokens and sessions no longer work"
            ))),
        }
    }

    /// The session, if its person may still sign in (see [`Engine::check_active`]).
    pub async fn active_session(&self, row: Option<SessionRow>) -> Result<Option<SessionRow>> {
        match row {
            Some(r) => match self.check_active(&Principal::Approver(r.user_name.clone())).await {
                Ok(()) => Ok(Some(r)),
                Err(AppError::Unauthorized(_)) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// The person a SCIM user is.
    pub fn scim_person(&self, u: &ScimUserRow) -> String {
        for key in std::iter::once(&u.user_key).chain(u.email_key.as_ref()) {
            if let Ok(id) = Identity::parse(key)
                && let [one] = self.config().users_for_login(&id).as_slice()
            {
                return one.clone();
            }
        }
        u.user_key.clone()
    }

    /// The person an SSO identity is through SCIM alone (no `users:` entry): an active
    /// SCIM user with that `userName` or email.
    pub async fn sso_person(&self, identity: &Identity) -> Result<Option<String>> {
        if self.config().scim.is_none() {
            return Ok(None);
        }
        let users = self.store.scim_users().await?;
        Ok(users
            .iter()
            .find(|u| {
                u.active && (u.user_key == identity.as_str() || u.email_key.as_deref() == Some(identity.as_str()))
            })
            .map(|u| self.scim_person(u)))
    }

    /// The members of an identity-provider group now: a SCIM group's active members as
    /// people; nobody for an `idp_group` (a voter's session says, see [`Engine::idp_live`]).
    pub(super) async fn directory_members(&self, src: &GroupSource) -> Result<Vec<String>> {
        let GroupSource::ScimGroup { name } = src else {
            return Ok(vec![]);
        };
        let Some(g) = self.store.scim_group_named(&group_key(name)).await? else {
            tracing::warn!(group = %name, "policy names a SCIM group the identity provider has not pushed");
            return Ok(vec![]);
        };
        let mut out: Vec<String> = Vec::new();
        for u in self.store.scim_members(&g.id).await?.iter().filter(|u| u.active) {
            let p = self.scim_person(u);
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Fills the `idp_group` slots of a vote's live members: the voter is a member when
    /// their session's groups name the group. Refuses (403 `sign_in_again`) a vote that
    /// would count by groups older than `sso.max_group_age`.
    /// The session's identity provider groups (normal forms) while younger than
    /// `sso.max_group_age`; none otherwise.
    pub(super) fn fresh_idp_groups(&self, meta: &VoteMeta, now: i64) -> Vec<String> {
        let max_age = self.config().sso.as_ref().map_or(
            crate::auth::config::DEFAULT_MAX_GROUP_AGE_MS,
            crate::auth::config::Sso::max_group_age_ms,
        );
        let seen = meta.groups_seen_at.unwrap_or(i64::MIN);
        if now.saturating_sub(seen) > max_age {
            return vec![];
        }
        meta.idp_groups.iter().flatten().map(|g| group_key(g)).collect()
    }

    /// Whether a web session whose votes carry `meta` is in the group of one of
    /// `row`'s `idp_group` requirements now (its groups fresh).
    pub fn in_idp_group(&self, row: &crate::store::RequestRow, meta: &VoteMeta, now: i64) -> Result<bool> {
        let groups = self.fresh_idp_groups(meta, now);
        Ok(super::doc_of(row)?.requirements.iter().any(|r| {
            matches!(
                r.source.as_deref().and_then(GroupSource::parse),
                Some(GroupSource::IdpGroup { name }) if groups.contains(&group_key(&name))
            )
        }))
    }

    pub(super) fn idp_live(&self, doc: &Doc, live: &mut Live, voter: &str, meta: &VoteMeta, now: i64) -> Result<()> {
        let groups: Vec<String> = meta.idp_groups.iter().flatten().map(|g| group_key(g)).collect();
        for (r, l) in doc.requirements.iter().zip(live.iter_mut()) {
            let Some(GroupSource::IdpGroup { name }) = r.source.as_deref().and_then(GroupSource::parse) else {
                continue;
            };
            if !groups.contains(&group_key(&name)) {
                continue;
            }
            let max_age = self.config().sso.as_ref().map_or(
                crate::auth::config::DEFAULT_MAX_GROUP_AGE_MS,
                crate::auth::config::Sso::max_group_age_ms,
            );
            let seen = meta.groups_seen_at.unwrap_or(i64::MIN);
            if now.saturating_sub(seen) > max_age {
                return Err(AppError::Forbidden(
                    ErrorCode::SignInAgain,
                    format!(
                        "your groups were read when you signed in, more than {} ago; sign in again so group `{name}` is checked with the identity provider",
                        crate::core::duration::Dur(max_age)
                    ),
                ));
            }
            *l = Some(vec![voter.to_string()]);
        }
        Ok(())
    }
}
