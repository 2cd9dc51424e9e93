//! The approval policy (`policy.yaml`): who must approve what. Loaded with errors
//! that name file, line, column and key; evaluated without I/O.

mod glob;
pub mod window;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::api::Context;
use crate::core::duration::Dur;
pub use glob::glob_match;

/// Used when a rule names no `timeout`.
pub const DEFAULT_TIMEOUT: Dur = Dur(24 * 3_600_000);
/// Used when a rule names no `approval_ttl`.
pub const DEFAULT_APPROVAL_TTL: Dur = Dur(3_600_000);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    #[serde(default)]
    groups: BTreeMap<String, GroupDef>,
    rules: Vec<Rule>,
}

/// A group as written: a list of users, or a team/group on a forge.
#[derive(Debug, Clone)]
enum GroupDef {
    Users(Vec<String>),
    Forge(ForgeGroupDef),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgeGroupDef {
    #[serde(default)]
    github_team: Option<String>,
    #[serde(default)]
    gitlab_group: Option<String>,
}

impl<'de> Deserialize<'de> for GroupDef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = GroupDef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of user names, `{ github_team: org/slug }` or `{ gitlab_group: path }`")
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

/// A group whose members live on a forge, resolved by the server (see docs/forge-groups.md).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupSource {
    /// `github_team: org/slug`.
    GithubTeam { org: String, slug: String },
    /// `gitlab_group: path/with/subgroups`.
    GitlabGroup { path: String },
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
        s.strip_prefix("gitlab_group:")
            .map(|p| GroupSource::GitlabGroup { path: p.into() })
    }

    /// `GitHub team acme/security`, for messages.
    pub fn describe(&self) -> String {
        match self {
            GroupSource::GithubTeam { org, slug } => format!("GitHub team {org}/{slug}"),
            GroupSource::GitlabGroup { path } => format!("GitLab group {path}"),
        }
    }
}

impl std::fmt::Display for GroupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupSource::GithubTeam { org, slug } => write!(f, "github_team:{org}/{slug}"),
            GroupSource::GitlabGroup { path } => write!(f, "gitlab_group:{path}"),
        }
    }
}

fn forge_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ForgeGroupDef {
    fn source(&self) -> Result<GroupSource, String> {
        match (&self.github_team, &self.gitlab_group) {
            (Some(t), None) => {
                let t = t.trim();
                match t.split_once('/') {
                    Some((org, slug)) if forge_name_ok(org) && forge_name_ok(slug) => Ok(GroupSource::GithubTeam {
                        org: org.into(),
                        slug: slug.into(),
                    }),
                    _ => Err(format!("`github_team: {t}` is not `org/team-slug`")),
                }
            }
            (None, Some(g)) => {
                let g = g.trim().trim_matches('/');
                if g.split('/').all(forge_name_ok) {
                    Ok(GroupSource::GitlabGroup { path: g.into() })
                } else {
                    Err(format!(
                        "`gitlab_group: {g}` is not a group path like `acme/release-managers`"
                    ))
                }
            }
            (Some(_), Some(_)) => Err("give either `github_team` or `gitlab_group`, not both".into()),
            (None, None) => Err("needs `github_team: org/slug` or `gitlab_group: path` (or a list of users)".into()),
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
    /// Whether an approval under this rule may be used at `now` (Unix ms).
    pub fn window_open(&self, now: i64) -> bool {
        let w = self.allowed_windows();
        w.is_empty() || window::any_open(w, now)
    }
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Groups listed as users from `gate.yaml`.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Groups resolved on GitHub or GitLab when a request opens and at every vote.
    pub forge_groups: BTreeMap<String, GroupSource>,
    pub rules: Vec<Rule>,
    /// `sha256:HEX` of the file's bytes, stored with every request.
    pub digest: String,
    pub source: String,
    text: String,
}

/// A policy that cannot be used, with where it is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// How one rule compared with a request, for `gate policy explain`.
#[derive(Debug, Clone, Serialize)]
pub struct RuleVerdict {
    pub rule: String,
    pub matched: bool,
    /// Why it did not match, one reason per mismatching key.
    pub mismatches: Vec<String>,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read the policy: {e}"),
        })?;
        Policy::parse(&file, &text)
    }

    /// Parses and validates policy text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Policy, PolicyError> {
        let err = |line: usize, column: usize, message: String| PolicyError {
            file: file.to_string(),
            line,
            column,
            message,
        };
        let raw: PolicyFile = serde_norway::from_str(text).map_err(|e| {
            let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            // serde_norway appends " at line L column C"; we print the location up front instead.
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            err(line, column, msg)
        })?;
        let at = |needle: &str, from: usize| locate(text, needle, from);
        if raw.version != 1 {
            let (l, c) = at("version", 0);
            return Err(err(
                l,
                c,
                format!("unsupported `version: {}` (this server reads version 1)", raw.version),
            ));
        }
        if raw.rules.is_empty() {
            let (l, c) = at("rules", 0);
            return Err(err(l, c, "`rules` is empty: every request would be refused".into()));
        }
        let mut groups = BTreeMap::new();
        let mut forge_groups = BTreeMap::new();
        for (name, def) in &raw.groups {
            let (l, c) = at(&format!("{name}:"), 0);
            let members = match def {
                GroupDef::Users(m) => m,
                GroupDef::Forge(f) => {
                    let src = f.source().map_err(|m| err(l, c, format!("group `{name}`: {m}")))?;
                    forge_groups.insert(name.clone(), src);
                    continue;
                }
            };
            groups.insert(name.clone(), members.clone());
            if members.is_empty() {
                return Err(err(l, c, format!("group `{name}` has no members")));
            }
            let mut seen = std::collections::HashSet::new();
            for m in members {
                if !seen.insert(m) {
                    return Err(err(l, c, format!("group `{name}` lists `{m}` twice")));
                }
            }
        }
        let no_members: Vec<String> = Vec::new();
        let mut names = std::collections::HashSet::new();
        for rule in &raw.rules {
            let (rl, rc) = at(&rule.name, 0);
            let rule_err = |needle: &str, message: String| {
                let (l, c) = if needle.is_empty() { (rl, rc) } else { at(needle, rl) };
                err(l, c, message)
            };
            if rule.name.trim().is_empty() {
                return Err(rule_err("name", "a rule has an empty `name`".into()));
            }
            if !names.insert(rule.name.clone()) {
                return Err(rule_err("", format!("two rules are named `{}`", rule.name)));
            }
            match (rule.decision, rule.require.is_empty()) {
                (Some(_), false) => {
                    return Err(rule_err(
                        "require",
                        format!("rule `{}` has both `decision` and `require`: choose one", rule.name),
                    ));
                }
                (None, true) => {
                    return Err(rule_err(
                        "",
                        format!(
                            "rule `{}` needs either `decision: approve|deny` or `require`",
                            rule.name
                        ),
                    ));
                }
                _ => {}
            }
            for r in &rule.require {
                let forge = forge_groups.contains_key(&r.group);
                let Some(members) = groups.get(&r.group).or(forge.then_some(&no_members)) else {
                    return Err(rule_err(
                        &r.group,
                        format!(
                            "rule `{}` requires group `{}`, which is not defined under `groups`",
                            rule.name, r.group
                        ),
                    ));
                };
                if r.count == 0 {
                    return Err(rule_err(
                        "count",
                        format!("rule `{}`: `count` must be at least 1", rule.name),
                    ));
                }
                if !forge && r.count as usize > members.len() {
                    return Err(rule_err(
                        "count",
                        format!(
                            "rule `{}` requires {} of group `{}`, which has only {} members",
                            rule.name,
                            r.count,
                            r.group,
                            members.len()
                        ),
                    ));
                }
            }
            if rule.timeout.is_some_and(|t| t.millis() <= 0) {
                return Err(rule_err(
                    "timeout",
                    format!("rule `{}`: `timeout` must be positive", rule.name),
                ));
            }
            if rule.approval_ttl.is_some_and(|t| t.millis() <= 0) {
                return Err(rule_err(
                    "approval_ttl",
                    format!("rule `{}`: `approval_ttl` must be positive", rule.name),
                ));
            }
            if let Some(w) = &rule.windows {
                if w.allow.is_empty() {
                    return Err(rule_err(
                        "allow",
                        format!(
                            "rule `{}`: `windows.allow` is empty: approvals could never be used",
                            rule.name
                        ),
                    ));
                }
                for spec in &w.allow {
                    window::Window::parse(spec).map_err(|m| rule_err(spec, format!("rule `{}`: {m}", rule.name)))?;
                }
            }
            if !rule.escalate.is_empty() && rule.decision.is_some() {
                return Err(rule_err(
                    "escalate",
                    format!(
                        "rule `{}` decides automatically: `escalate` would never happen",
                        rule.name
                    ),
                ));
            }
            let mut step_line = rl;
            for (i, step) in rule.escalate.iter().enumerate() {
                // Each step's errors point at its own `after`.
                let (sl, sc) = at("after", step_line);
                step_line = sl + 1;
                let rule_err = |needle: &str, message: String| {
                    let (l, c) = if needle == "after" { (sl, sc) } else { at(needle, sl) };
                    err(l, c, message)
                };
                if step.after.millis() <= 0 {
                    return Err(rule_err(
                        "after",
                        format!("rule `{}`: escalate `after` must be positive", rule.name),
                    ));
                }
                if step.after >= rule.timeout() {
                    return Err(rule_err(
                        "after",
                        format!(
                            "rule `{}`: escalate after {} is not before the timeout ({}): it would never happen",
                            rule.name,
                            step.after,
                            rule.timeout()
                        ),
                    ));
                }
                if i > 0 && step.after <= rule.escalate[i - 1].after {
                    return Err(rule_err(
                        "after",
                        format!(
                            "rule `{}`: escalation steps must be in increasing `after` order",
                            rule.name
                        ),
                    ));
                }
                if step.notify.is_empty() && step.add_groups.is_empty() {
                    return Err(rule_err(
                        "after",
                        format!(
                            "rule `{}`: an escalation step needs `notify` or `add_groups`",
                            rule.name
                        ),
                    ));
                }
                for g in step.notify.iter().chain(&step.add_groups) {
                    if forge_groups.contains_key(g) {
                        return Err(rule_err(
                            g,
                            format!(
                                "rule `{}`: escalation to forge group `{g}` is not supported; use a group listing users",
                                rule.name
                            ),
                        ));
                    }
                    if !groups.contains_key(g) {
                        return Err(rule_err(
                            g,
                            format!(
                                "rule `{}` escalates to group `{g}`, which is not defined under `groups`",
                                rule.name
                            ),
                        ));
                    }
                }
            }
        }
        Ok(Policy {
            groups,
            forge_groups,
            rules: raw.rules,
            digest: digest(text.as_bytes()),
            source: file.to_string(),
            text: text.to_string(),
        })
    }

    /// Checks that every group member is a user the server knows.
    pub fn check_members(&self, known: &dyn Fn(&str) -> bool) -> Result<(), PolicyError> {
        for (name, members) in &self.groups {
            for m in members {
                if !known(m) {
                    let (line, column) = locate(&self.text, m, locate(&self.text, &format!("{name}:"), 0).0);
                    return Err(PolicyError {
                        file: self.source.clone(),
                        line,
                        column,
                        message: format!("group `{name}` member `{m}` is not a user in the server config (`users:`)"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The first rule that matches, or `None` (then the request is refused).
    pub fn evaluate(&self, ctx: &Context) -> Option<&Rule> {
        self.rules.iter().find(|r| mismatches(&r.matcher, ctx).is_empty())
    }

    /// Every rule up to and including the first that matches, with the reasons the others did not.
    pub fn explain(&self, ctx: &Context) -> Vec<RuleVerdict> {
        let mut out = Vec::new();
        for r in &self.rules {
            let why = mismatches(&r.matcher, ctx);
            let matched = why.is_empty();
            out.push(RuleVerdict {
                rule: r.name.clone(),
                matched,
                mismatches: why,
            });
            if matched {
                break;
            }
        }
        out
    }

    /// The requirements of a rule with each group's members, as a request snapshots them.
    /// Forge groups come with no members and their `source`: the server resolves them.
    pub fn requirements(&self, rule: &Rule) -> Vec<crate::core::decide::Requirement> {
        rule.require
            .iter()
            .map(|r| crate::core::decide::Requirement {
                group: r.group.clone(),
                count: r.count,
                members: self.groups.get(&r.group).cloned().unwrap_or_default(),
                source: self.forge_groups.get(&r.group).map(|s| s.to_string()),
            })
            .collect()
    }
}

/// `sha256:HEX` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn mismatches(m: &Match, ctx: &Context) -> Vec<String> {
    let mut why = Vec::new();
    let mut exact = |key: &str, want: &Option<String>, got: &str| {
        if let Some(w) = want
            && w != got
        {
            why.push(format!("{key} is `{got}`, the rule wants `{w}`"));
        }
    };
    exact("platform", &m.platform, &ctx.platform);
    exact("environment", &m.environment, &ctx.environment);
    exact("action", &m.action, &ctx.action);
    exact("actor", &m.actor, &ctx.actor);
    if let Some(p) = &m.repository
        && !glob_match(p, &ctx.repository)
    {
        why.push(format!("repository `{}` does not match `{p}`", ctx.repository));
    }
    if let Some(p) = &m.git_ref
        && !glob_match(p, &ctx.git_ref)
    {
        why.push(format!("ref `{}` does not match `{p}`", ctx.git_ref));
    }
    for (k, v) in &m.labels {
        match ctx.labels.get(k) {
            Some(got) if got == v => {}
            Some(got) => why.push(format!("label {k} is `{got}`, the rule wants `{v}`")),
            None => why.push(format!("label {k} is not set, the rule wants `{v}`")),
        }
    }
    why
}

/// 1-based line and column of the first `needle` at or after line `from` (1-based; 0 = start).
fn locate(text: &str, needle: &str, from: usize) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        if i + 1 < from {
            continue;
        }
        if let Some(c) = line.find(needle) {
            return (i + 1, c + 1);
        }
    }
    (from.max(1), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"version: 1
groups:
  sre: [alice, bob, carol]
  security: [alice, dave]
rules:
  - name: staging
    match: { environment: staging }
    decision: approve
  - name: production
    match: { environment: production, repository: "acme/*", ref: refs/heads/main }
    require:
      - { group: sre, count: 2 }
      - { group: security }
    timeout: 4h
    approval_ttl: 15m
  - name: everything else
    match: {}
    decision: deny
"#;

    fn ctx(env: &str, repo: &str, r: &str) -> Context {
        Context {
            environment: env.into(),
            repository: repo.into(),
            git_ref: r.into(),
            ..Default::default()
        }
    }

    #[test]
    fn first_match_wins() {
        let p = Policy::parse("p.yaml", GOOD).unwrap();
        assert_eq!(p.evaluate(&ctx("staging", "x/y", "main")).unwrap().name, "staging");
        let prod = p.evaluate(&ctx("production", "acme/web", "refs/heads/main")).unwrap();
        assert_eq!(prod.name, "production");
        assert_eq!(prod.timeout(), Dur::parse("4h").unwrap());
        assert_eq!(prod.require[1].count, 1);
        let other = p.evaluate(&ctx("production", "evil/web", "refs/heads/main")).unwrap();
        assert_eq!(other.name, "everything else");
        let ex = p.explain(&ctx("production", "evil/web", "refs/heads/main"));
        assert_eq!(ex.len(), 3);
        assert!(ex[1].mismatches[0].contains("repository `evil/web` does not match `acme/*`"));
        assert!(p.digest.starts_with("sha256:"));
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let bad = GOOD.replace("    timeout: 4h", "    timout: 4h");
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert_eq!(e.line, 14, "{e}");
        assert!(e.message.contains("unknown field `timout`"), "{e}");
        assert!(e.to_string().starts_with("p.yaml:14:"), "{e}");
    }

    #[test]
    fn malformed_yaml_names_line() {
        let e = Policy::parse("p.yaml", "version: 1\nrules:\n  - name: [unclosed\n").unwrap_err();
        assert!(e.line >= 3, "{e}");
    }

    #[test]
    fn semantic_errors_located() {
        let bad = GOOD.replace("{ group: security }", "{ group: secops }");
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains("group `secops`"), "{e}");
        assert_eq!(e.line, 13);
        let bad = GOOD.replace("count: 2", "count: 5");
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains("only 3 members"), "{e}");
        assert_eq!(e.line, 12);
        let bad = GOOD.replace("    decision: deny\n", "");
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains("needs either"), "{e}");
        let bad = GOOD.replace("timeout: 4h", "timeout: 4y");
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains("unknown unit `y`"), "{e}");
        assert_eq!(e.line, 14);
    }

    #[test]
    fn forge_groups_parse_and_are_checked() {
        let text = "version: 1\ngroups:\n  sre: [alice, bob]\n  security: { github_team: acme/security }\n  release: { gitlab_group: acme/release-managers }\nrules:\n  - name: prod\n    require:\n      - { group: security, count: 3 }\n      - { group: release }\n      - { group: sre }\n";
        let p = Policy::parse("p.yaml", text).unwrap();
        assert_eq!(p.groups.len(), 1);
        assert_eq!(
            p.forge_groups["security"],
            GroupSource::GithubTeam {
                org: "acme".into(),
                slug: "security".into()
            }
        );
        let reqs = p.requirements(&p.rules[0]);
        assert_eq!(reqs[0].source.as_deref(), Some("github_team:acme/security"));
        assert!(reqs[0].members.is_empty());
        assert_eq!(reqs[1].source.as_deref(), Some("gitlab_group:acme/release-managers"));
        assert_eq!(reqs[2].source, None);
        for s in ["github_team:acme/security", "gitlab_group:acme/release-managers"] {
            assert_eq!(GroupSource::parse(s).unwrap().to_string(), s);
        }
        // Members of forge groups are not users in the config: nothing to check at load.
        assert!(p.check_members(&|u| u == "alice" || u == "bob").is_ok());

        let bad = text.replace("github_team: acme/security", "github_tem: acme/security");
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains("unknown field `github_tem`"), "{e}");
        assert_eq!(e.line, 4, "{e}");
        let bad = text.replace("acme/security", "acme");
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains("not `org/team-slug`"), "{e}");
        assert_eq!((e.line, e.column), (4, 3), "{e}");
        let bad = text.replace(
            "{ github_team: acme/security }",
            "{ github_team: a/b, gitlab_group: c }",
        );
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        let bad = text.replace("{ github_team: acme/security }", "{}");
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains("needs `github_team"), "{e}");
        let bad = text.replace("{ github_team: acme/security }", "acme/security");
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains("a list of user names"), "{e}");
        assert_eq!(e.line, 4, "{e}");
    }

    #[test]
    fn labels_and_members() {
        let p = Policy::parse(
            "p.yaml",
            "version: 1\ngroups:\n  g: [ann]\nrules:\n  - name: r\n    match: { labels: { tier: gold } }\n    require: [{ group: g }]\n  - name: rest\n    decision: deny\n",
        )
        .unwrap();
        let mut c = Context::default();
        assert_eq!(p.evaluate(&c).unwrap().name, "rest");
        c.labels.insert("tier".into(), "gold".into());
        assert_eq!(p.evaluate(&c).unwrap().name, "r");
        let e = p.check_members(&|u| u == "bob").unwrap_err();
        assert_eq!((e.line, e.column), (3, 7));
        assert!(p.check_members(&|u| u == "ann").is_ok());
    }

    const TIMED: &str = r#"version: 1
groups:
  sre: [alice, bob]
  release: [rita, rob]
  security: { github_team: acme/security }
rules:
  - name: prod
    require: [{ group: sre, count: 2 }]
    timeout: 4h
    escalate:
      - { after: 30m, notify: [release], add_groups: [release] }
      - { after: 2h, notify: [sre] }
    windows:
      allow: "Mon-Fri 08:00-18:00 America/New_York"
  - name: hotfix
    decision: approve
    windows: { allow: ["Sat 10:00-12:00 UTC", "Sun 22:00-02:00 Europe/Zurich"] }
"#;

    #[test]
    fn escalate_and_windows_parse() {
        let p = Policy::parse("p.yaml", TIMED).unwrap();
        let prod = &p.rules[0];
        assert_eq!(prod.escalate.len(), 2);
        assert_eq!(prod.escalate[0].after, Dur::parse("30m").unwrap());
        assert_eq!(prod.escalate[0].add_groups, vec!["release".to_string()]);
        assert!(prod.escalate[1].add_groups.is_empty());
        assert_eq!(prod.allowed_windows(), ["Mon-Fri 08:00-18:00 America/New_York"]);
        assert_eq!(p.rules[1].allowed_windows().len(), 2);
        // 2026-06-06 is a Saturday: closed in New York all day, open 10-12 UTC for hotfixes.
        let sat = |h: i64| 1_780_704_000_000 + h * 3_600_000;
        assert!(!prod.window_open(sat(15)));
        assert!(p.rules[1].window_open(sat(11)));
        assert!(!p.rules[1].window_open(sat(12)));
        // A rule without windows is always open; the rule round-trips through a request's document.
        assert!(Policy::parse("p.yaml", GOOD).unwrap().rules[1].window_open(sat(15)));
        let back: Rule = serde_json::from_str(&serde_json::to_string(prod).unwrap()).unwrap();
        assert_eq!(&back, prod);
    }

    #[test]
    fn escalate_and_windows_errors_are_located() {
        let check = |from: &str, to: &str, want: &str, line: usize| {
            let bad = TIMED.replace(from, to);
            let e = Policy::parse("p.yaml", &bad).unwrap_err();
            assert!(e.message.contains(want), "{e}");
            assert_eq!(e.line, line, "{e}");
            e
        };
        let e = check("Mon-Fri 08:00", "Mon-Fry 08:00", "`Fry` is not a day", 14);
        assert_eq!(e.column, 15, "{e}");
        check(
            "America/New_York",
            "America/Gotham",
            "`America/Gotham` is not a time zone",
            14,
        );
        check("Sun 22:00-02:00", "Sun 22:00-22:00", "is empty", 17);
        check("allow: \"Mon", "alow: \"Mon", "unknown field `alow`", 14);
        check(
            "allow: \"Mon-Fri 08:00-18:00 America/New_York\"",
            "allow: 5",
            "must be a window string",
            14,
        );
        check(
            "allow: \"Mon-Fri 08:00-18:00 America/New_York\"",
            "allow: []",
            "is empty",
            14,
        );
        check(
            "add_groups: [release]",
            "add_groups: [relase]",
            "group `relase`, which is not defined",
            11,
        );
        check(
            "add_groups: [release]",
            "add_groups: [security]",
            "forge group `security` is not supported",
            11,
        );
        check("notify: [sre]", "notify: [security]", "forge group `security`", 12);
        check("after: 2h", "after: 5h", "not before the timeout", 12);
        check("after: 2h", "after: 10m", "increasing", 12);
        check(
            "after: 2h, notify: [sre]",
            "after: 2h",
            "needs `notify` or `add_groups`",
            12,
        );
        check("{ after: 30m,", "{ aftr: 30m,", "unknown field `aftr`", 11);
        check(
            "    decision: approve\n",
            "    decision: approve\n    escalate: [{ after: 1m, notify: [sre] }]\n",
            "decides automatically",
            17,
        );
    }
}
