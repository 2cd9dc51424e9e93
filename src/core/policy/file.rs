//! `policy.yaml` as written, before validation.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::{GroupSource, Rule};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    pub version: u32,
    #[serde(default)]
    pub groups: BTreeMap<String, GroupDef>,
    pub rules: Vec<Rule>,
}

/// A group as written: a list of users, or a team/group on a forge.
#[derive(Debug, Clone)]
pub(super) enum GroupDef {
    Users(Vec<String>),
    Forge(ForgeGroupDef),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForgeGroupDef {
    #[serde(default)]
    github_team: Option<String>,
    #[serde(default)]
    gitlab_group: Option<String>,
    #[serde(default)]
    scim_group: Option<String>,
    #[serde(default)]
    idp_group: Option<String>,
}

impl<'de> Deserialize<'de> for GroupDef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = GroupDef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a list of user names, `{ github_team: org/slug }`, `{ gitlab_group: path }`, `{ scim_group: NAME }` or `{ idp_group: NAME }`",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<GroupDef, A::Error> {
                Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(a)).map(GroupDef::Users)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<GroupDef, A::Error> {
                Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(a)).map(GroupDef::Forge)
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a forge group as written names no team or group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ForgeGroupError {
    #[error("`github_team: {0}` is not `org/team-slug`")]
    NotATeam(String),
    #[error("`gitlab_group: {0}` is not a group path like `acme/release-managers`")]
    NotAGroupPath(String),
    #[error("give one of `github_team`, `gitlab_group`, `scim_group` and `idp_group`, not several")]
    Both,
    #[error(
        "needs `github_team: org/slug`, `gitlab_group: path`, `scim_group: NAME` or `idp_group: NAME` (or a list of users)"
    )]
    Neither,
    #[error("`{0}` names no group: give the group's display name at the identity provider")]
    EmptyName(&'static str),
}

fn forge_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ForgeGroupDef {
    pub(super) fn source(&self) -> Result<GroupSource, ForgeGroupError> {
        let given = [&self.github_team, &self.gitlab_group, &self.scim_group, &self.idp_group];
        if given.iter().filter(|g| g.is_some()).count() > 1 {
            return Err(ForgeGroupError::Both);
        }
        let named = |key: &'static str, n: &str| {
            let n = n.trim();
            if n.is_empty() || n.chars().any(char::is_control) {
                Err(ForgeGroupError::EmptyName(key))
            } else {
                Ok(n.to_string())
            }
        };
        if let Some(n) = &self.scim_group {
            return Ok(GroupSource::ScimGroup {
                name: named("scim_group", n)?,
            });
        }
        if let Some(n) = &self.idp_group {
            return Ok(GroupSource::IdpGroup {
                name: named("idp_group", n)?,
            });
        }
        match (&self.github_team, &self.gitlab_group) {
            (Some(t), None) => {
                let t = t.trim();
                match t.split_once('/') {
                    Some((org, slug)) if forge_name_ok(org) && forge_name_ok(slug) => Ok(GroupSource::GithubTeam {
                        org: org.into(),
                        slug: slug.into(),
                    }),
                    _ => Err(ForgeGroupError::NotATeam(t.into())),
                }
            }
            (None, Some(g)) => {
                let g = g.trim().trim_matches('/');
                if g.split('/').all(forge_name_ok) {
                    Ok(GroupSource::GitlabGroup { path: g.into() })
                } else {
                    Err(ForgeGroupError::NotAGroupPath(g.into()))
                }
            }
            (Some(_), Some(_)) => Err(ForgeGroupError::Both),
            (None, None) => Err(ForgeGroupError::Neither),
        }
    }
}
