//! The policy model: a loaded policy, its rules and the groups they name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::break_glass::BreakGlass;
use super::checks::CheckSpec;
use super::fields::FieldSpec;
use super::window;
use crate::core::decide::checks::List;
use crate::core::duration::Dur;

/// Used when a rule names no `timeout`.
pub const DEFAULT_TIMEOUT: Dur = Dur(24 * 3_600_000);
/// Used when a rule names no `approval_ttl`.
pub const DEFAULT_APPROVAL_TTL: Dur = Dur(3_600_000);

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Groups listed as users from `gate.yaml`.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Groups resolved on GitHub or GitLab, or from the identity provider, when a request
    /// opens and at every vote.
    pub forge_groups: BTreeMap<String, GroupSource>,
    pub rules: Vec<Rule>,
    /// `sha256:HEX` of the file's bytes, stored with every request.
    pub digest: String,
    pub source: String,
    /// The file's text, to locate errors found after loading.
    pub(super) text: String,
}

/// A group whose members live elsewhere, resolved by the server: on a forge (see
/// docs/forge-groups.md) or at the identity provider (docs/scim.md, docs/sso.md).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupSource {
    /// `github_team: org/slug`.
    GithubTeam { org: String, slug: String },
    /// `gitlab_group: path/with/subgroups`.
    GitlabGroup { path: String },
    /// `scim_group: NAME`: a group the identity provider pushed over SCIM.
    ScimGroup { name: String },
    /// `idp_group: NAME`: a group named in the SSO groups claim of the voter's session.
    IdpGroup { name: String },
}

impl GroupSource {
    /// Parses the form `Display` prints (`github_team:org/slug`, `gitlab_group:path`).
    pub fn parse(s: &str) -> Option<GroupSource> {
        if let Some(v) = s.strip_prefix("github_team:") {
            let (org, slug) = v.split_once('/')?;
            return Some(GroupSource::GithubTeam {
                org: org.into(),
                slug: slug.into(),
            });
        }
        if let Some(n) = s.strip_prefix("scim_group:") {
            return Some(GroupSource::ScimGroup { name: n.into() });
        }
        if let Some(n) = s.strip_prefix("idp_group:") {
            return Some(GroupSource::IdpGroup { name: n.into() });
        }
        s.strip_prefix("gitlab_group:")
            .map(|p| GroupSource::GitlabGroup { path: p.into() })
    }

    /// Whether a forge holds this group's members (else the identity provider does).
    pub fn on_forge(&self) -> bool {
        matches!(self, GroupSource::GithubTeam { .. } | GroupSource::GitlabGroup { .. })
    }

    /// `GitHub team acme/security`, for messages.
    pub fn describe(&self) -> String {
        match self {
            GroupSource::GithubTeam { org, slug } => format!("GitHub team {org}/{slug}"),
            GroupSource::GitlabGroup { path } => format!("GitLab group {path}"),
            GroupSource::ScimGroup { name } => format!("SCIM group {name}"),
            GroupSource::IdpGroup { name } => format!("identity provider group {name}"),
        }
    }
}

impl std::fmt::Display for GroupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupSource::GithubTeam { org, slug } => write!(f, "github_team:{org}/{slug}"),
            GroupSource::GitlabGroup { path } => write!(f, "gitlab_group:{path}"),
            GroupSource::ScimGroup { name } => write!(f, "scim_group:{name}"),
            GroupSource::IdpGroup { name } => write!(f, "idp_group:{name}"),
        }
    }
}

/// An automatic outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoDecision {
    Approve,
    Deny,
}

/// Which requests a rule is for. Every key given must match; absent keys match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Glob: `*` within one path segment, `**` across segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Glob, as for `repository`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// N approvals from one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Require {
    pub group: String,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// One stage of `stages`: a name and the approvals it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    pub require: Vec<Require>,
}

/// One rule; the first whose `match` fits a request decides how it is handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: Match,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<AutoDecision>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<Require>,
    /// Requirements in stages, instead of `require`: a stage's approvers are asked
    /// only once every stage before it is met (see docs/policy.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_ttl: Option<Dur>,
    /// Steps taken while the request is still pending (see docs/policy.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate: Vec<Escalate>,
    /// When an approval may be used (consumed); absent = any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<Windows>,
    /// Fields a request must carry to open under this rule (a ticket, a rollback plan).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldSpec>,
    /// Checks that approve by policy when every one of them answers approve (see `checks.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_approve_if: Vec<CheckSpec>,
    /// Checks that deny by policy when any one of them answers deny.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_deny_if: Vec<CheckSpec>,
    /// Who may approve their own change at once in an incident, and its review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlass>,
    /// What one approval covers: its own request (the default), or every request of the
    /// same run attempt (see `core::scope`).
    #[serde(default, skip_serializing_if = "ApprovalScope::is_request")]
    pub approval_scope: ApprovalScope,
    /// A new request under this rule cancels the older pending ones of the same
    /// repository and environment (`superseded_by` the new one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub supersede: bool,
}

/// `approval_scope: request|run`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalScope {
    /// One approval for one request.
    #[default]
    Request,
    /// One approval for every gate of one run attempt, commit and artifact set.
    Run,
}

impl ApprovalScope {
    pub fn is_request(&self) -> bool {
        *self == ApprovalScope::Request
    }
}

/// One escalation step: `after` the request opened, if it is still pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalate {
    pub after: Dur,
    /// Groups whose members are told (an `escalated` notification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// Groups whose members may from then on fill any requirement's slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_groups: Vec<String>,
}

/// `windows: { allow: "…" }` or `windows: { allow: ["…", "…"] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Windows {
    #[serde(deserialize_with = "one_or_many")]
    pub allow: Vec<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom(
            "`allow` must be a window string or a list of them, like \"Mon-Fri 08:00-18:00 America/New_York\"",
        )),
    }
}

impl Rule {
    pub fn timeout(&self) -> Dur {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }
    pub fn approval_ttl(&self) -> Dur {
        self.approval_ttl.unwrap_or(DEFAULT_APPROVAL_TTL)
    }
    /// The allowed windows; empty when the rule has none (always open).
    pub fn allowed_windows(&self) -> &[String] {
        self.windows.as_ref().map(|w| w.allow.as_slice()).unwrap_or_default()
    }
    /// The rule's break-glass, when it may be used: a rule that decides by itself never
    /// lets anyone break the glass.
    pub fn break_glass_allowed(&self) -> Option<&BreakGlass> {
        self.break_glass.as_ref().filter(|_| self.decision.is_none())
    }

    /// Every evidence check of the rule with its list and place: `auto_approve_if` first,
    /// then `auto_deny_if`, each in order.
    pub fn checks(&self) -> impl Iterator<Item = (List, usize, &CheckSpec)> {
        let approve = self
            .auto_approve_if
            .iter()
            .enumerate()
            .map(|(i, s)| (List::Approve, i, s));
        let deny = self.auto_deny_if.iter().enumerate().map(|(i, s)| (List::Deny, i, s));
        approve.chain(deny)
    }

    /// Whether the server runs evidence checks on requests under this rule.
    pub fn has_checks(&self) -> bool {
        !self.auto_approve_if.is_empty() || !self.auto_deny_if.is_empty()
    }
    /// Whether an approval under this rule may be used at `now` (Unix ms).
    pub fn window_open(&self, now: i64) -> bool {
        let w = self.allowed_windows();
        w.is_empty() || window::any_open(w, now)
    }
}
