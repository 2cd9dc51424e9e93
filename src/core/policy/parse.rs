//! Parsing `policy.yaml` (read from disk by `config::load_policy`): validate it section by section, each error
//! pointing at the line and column it is about.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use super::error::{PolicyError, Source, locate};
use super::fields::{MAX_FIELDS, compile, name_message};
use super::file::{GroupDef, PolicyFile};
use super::model::{Escalate, GroupSource, Policy, Rule};
use super::window;

mod stages;

impl Policy {
    /// Parses and validates policy text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Policy, PolicyError> {
        let src = Source { file, text };
        let raw = read(src)?;
        check_header(src, &raw)?;
        let groups = Groups::parse(src, &raw.groups)?;
        let mut names = HashSet::new();
        for rule in &raw.rules {
            let r = RuleAt {
                src,
                rule,
                at: src.at(&rule.name, 0),
            };
            r.check_name(&mut names)?;
            r.check_stages()?;
            r.check_decision()?;
            r.check_require(&groups)?;
            r.check_durations()?;
            r.check_windows()?;
            r.check_escalate(&groups)?;
            r.check_fields()?;
            r.check_checks()?;
            r.check_break_glass(&groups)?;
            r.check_scope()?;
        }
        Ok(Policy {
            groups: groups.users,
            forge_groups: groups.forge,
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
}

/// `sha256:HEX` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The YAML, with the parser's own location.
fn read(src: Source) -> Result<PolicyFile, PolicyError> {
    // A second `sre:` must be an error, not a silent replacement of the first.
    crate::core::yaml::strict(src.text).map_err(|e| src.err((e.line, e.column), e.message))
}

/// `version` and a non-empty `rules`.
fn check_header(src: Source, raw: &PolicyFile) -> Result<(), PolicyError> {
    if raw.version != 1 {
        return Err(src.err(
            src.at("version", 0),
            format!("unsupported `version: {}` (this server reads version 1)", raw.version),
        ));
    }
    if raw.rules.is_empty() {
        return Err(src.err(
            src.at("rules", 0),
            "`rules` is empty: every request would be refused".into(),
        ));
    }
    Ok(())
}

/// The `groups` section, validated.
struct Groups {
    /// Groups listing users.
    users: BTreeMap<String, Vec<String>>,
    /// Groups on a forge.
    forge: BTreeMap<String, GroupSource>,
}

impl Groups {
    fn parse(src: Source, defs: &BTreeMap<String, GroupDef>) -> Result<Groups, PolicyError> {
        let mut users = BTreeMap::new();
        let mut forge = BTreeMap::new();
        for (name, def) in defs {
            let at = src.at(&format!("{name}:"), 0);
            let members = match def {
                GroupDef::Users(m) => m,
                GroupDef::Forge(f) => {
                    let source = f.source().map_err(|m| src.err(at, format!("group `{name}`: {m}")))?;
                    forge.insert(name.clone(), source);
                    continue;
                }
            };
            users.insert(name.clone(), members.clone());
            if members.is_empty() {
                return Err(src.err(at, format!("group `{name}` has no members")));
            }
            let mut seen = HashSet::new();
            for m in members {
                if !seen.insert(m) {
                    return Err(src.err(at, format!("group `{name}` lists `{m}` twice")));
                }
            }
        }
        Ok(Groups { users, forge })
    }
}

/// One rule being checked, and where its name is.
struct RuleAt<'a> {
    src: Source<'a>,
    rule: &'a Rule,
    at: (usize, usize),
}

impl RuleAt<'_> {
    /// An error at the first `needle` from the rule's line on (empty: at the rule's name).
    fn err(&self, needle: &str, message: String) -> PolicyError {
        let at = if needle.is_empty() {
            self.at
        } else {
            self.src.at(needle, self.at.0)
        };
        self.src.err(at, message)
    }

    /// A name, unique among the rules.
    fn check_name(&self, names: &mut HashSet<String>) -> Result<(), PolicyError> {
        let rule = self.rule;
        if rule.name.trim().is_empty() {
            return Err(self.err("name", "a rule has an empty `name`".into()));
        }
        if !names.insert(rule.name.clone()) {
            return Err(self.err("", format!("two rules are named `{}`", rule.name)));
        }
        Ok(())
    }

    /// Exactly one of `decision` and `require`.
    fn check_decision(&self) -> Result<(), PolicyError> {
        let rule = self.rule;
        match (rule.decision, rule.require.is_empty() && rule.stages.is_empty()) {
            (Some(_), false) => Err(self.err(
                "require",
                format!("rule `{}` has both `decision` and `require`: choose one", rule.name),
            )),
            (None, true) => Err(self.err(
                "",
                format!(
                    "rule `{}` needs either `decision: approve|deny`, `require` or `stages`",
                    rule.name
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `approval_scope: run` shares a person's approval; a rule that decides by itself
    /// has none to share.
    fn check_scope(&self) -> Result<(), PolicyError> {
        let rule = self.rule;
        if rule.approval_scope == super::model::ApprovalScope::Run && rule.decision.is_some() {
            return Err(self.err(
                "approval_scope",
                format!(
                    "rule `{}` has `approval_scope: run` and `decision`: a rule that decides by itself has no approval to share",
                    rule.name
                ),
            ));
        }
        Ok(())
    }

    /// Each `require` names a defined group and a count it can meet.
    fn check_require(&self, groups: &Groups) -> Result<(), PolicyError> {
        let rule = self.rule;
        let no_members: Vec<String> = Vec::new();
        for r in rule.require.iter().chain(rule.stages.iter().flat_map(|s| &s.require)) {
            let forge = groups.forge.contains_key(&r.group);
            let Some(members) = groups.users.get(&r.group).or(forge.then_some(&no_members)) else {
                return Err(self.err(
                    &r.group,
                    format!(
                        "rule `{}` requires group `{}`, which is not defined under `groups`",
                        rule.name, r.group
                    ),
                ));
            };
            if r.count == 0 {
                return Err(self.err("count", format!("rule `{}`: `count` must be at least 1", rule.name)));
            }
            if !forge && r.count as usize > members.len() {
                return Err(self.err(
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
        Ok(())
    }

    /// `timeout` and `approval_ttl`, when given, are positive.
    fn check_durations(&self) -> Result<(), PolicyError> {
        let rule = self.rule;
        if rule.timeout.is_some_and(|t| t.millis() <= 0) {
            return Err(self.err("timeout", format!("rule `{}`: `timeout` must be positive", rule.name)));
        }
        if rule.approval_ttl.is_some_and(|t| t.millis() <= 0) {
            return Err(self.err(
                "approval_ttl",
                format!("rule `{}`: `approval_ttl` must be positive", rule.name),
            ));
        }
        Ok(())
    }

    /// `windows.allow`, when given, lists at least one window, each of which parses.
    fn check_windows(&self) -> Result<(), PolicyError> {
        let rule = self.rule;
        let Some(w) = &rule.windows else {
            return Ok(());
        };
        if w.allow.is_empty() {
            return Err(self.err(
                "allow",
                format!(
                    "rule `{}`: `windows.allow` is empty: approvals could never be used",
                    rule.name
                ),
            ));
        }
        for spec in &w.allow {
            window::Window::parse(spec).map_err(|m| self.err(spec, format!("rule `{}`: {m}", rule.name)))?;
        }
        Ok(())
    }

    /// `fields`: at most [`MAX_FIELDS`], each a valid name, each `pattern` a regular expression.
    fn check_fields(&self) -> Result<(), PolicyError> {
        let rule = self.rule;
        if rule.fields.is_empty() {
            return Ok(());
        }
        let section = self.src.at("fields", self.at.0);
        if rule.fields.len() > MAX_FIELDS {
            return Err(self.src.err(
                section,
                format!(
                    "rule `{}`: at most {MAX_FIELDS} `fields`, not {}",
                    rule.name,
                    rule.fields.len()
                ),
            ));
        }
        for (name, spec) in &rule.fields {
            let at = self.src.at(name, section.0);
            if let Some(m) = name_message(name) {
                return Err(self.src.err(at, format!("rule `{}` field {m}", rule.name)));
            }
            if let Some(p) = &spec.pattern {
                let at = self.src.at(p, at.0);
                compile(p).map_err(|m| self.src.err(at, format!("rule `{}` field `{name}`: {m}", rule.name)))?;
            }
        }
        Ok(())
    }

    /// `auto_approve_if` and `auto_deny_if`: on a rule with `require` (the people who
    /// decide otherwise), each entry one valid check.
    fn check_checks(&self) -> Result<(), PolicyError> {
        let rule = self.rule;
        for (list, checks) in [
            ("auto_approve_if", &rule.auto_approve_if),
            ("auto_deny_if", &rule.auto_deny_if),
        ] {
            if checks.is_empty() {
                continue;
            }
            let section = self.src.at(list, self.at.0);
            if rule.decision.is_some() {
                return Err(self.src.err(
                    section,
                    format!(
                        "rule `{}` has both `decision` and `{list}`: a rule that decides by itself runs no checks",
                        rule.name
                    ),
                ));
            }
            if checks.len() > super::checks::MAX_CHECKS {
                return Err(self.src.err(
                    section,
                    format!(
                        "rule `{}`: at most {} checks in `{list}`",
                        rule.name,
                        super::checks::MAX_CHECKS
                    ),
                ));
            }
            // Each entry's errors point at its own kind's key, from the entry before it on.
            let mut line = section.0;
            for (i, c) in checks.iter().enumerate() {
                let entry = self.src.at(c.kind(), line);
                if let Some((key, m)) = c.problem(list) {
                    let at = if key == list {
                        section
                    } else {
                        self.src.at(key, entry.0)
                    };
                    return Err(self.src.err(at, format!("rule `{}` {list}[{i}]: {m}", rule.name)));
                }
                line = entry.0 + 1;
            }
        }
        Ok(())
    }

    /// `break_glass`, when given: its groups defined, a positive `ttl`, a review that can happen.
    fn check_break_glass(&self, groups: &Groups) -> Result<(), PolicyError> {
        let Some(bg) = &self.rule.break_glass else {
            return Ok(());
        };
        // Members of a group listing users; `Some(None)` for a forge group (counted later).
        let defined = |g: &str| match groups.users.get(g) {
            Some(m) => Some(Some(m.len())),
            None => groups.forge.contains_key(g).then_some(None),
        };
        super::break_glass::check(self.rule, bg, &defined).map_err(|(key, message)| {
            let section = self.src.at("break_glass", self.at.0);
            let at = if key == "break_glass" {
                section
            } else {
                self.src.at(key, section.0)
            };
            self.src.err(at, message)
        })
    }

    /// `escalate` steps on a rule that waits for people, each one able to happen.
    fn check_escalate(&self, groups: &Groups) -> Result<(), PolicyError> {
        let rule = self.rule;
        if !rule.escalate.is_empty() && rule.decision.is_some() {
            return Err(self.err(
                "escalate",
                format!(
                    "rule `{}` decides automatically: `escalate` would never happen",
                    rule.name
                ),
            ));
        }
        let mut step_line = self.at.0;
        for (i, step) in rule.escalate.iter().enumerate() {
            // Each step's errors point at its own `after`.
            let after = self.src.at("after", step_line);
            step_line = after.0 + 1;
            self.check_step(groups, i, step, after)?;
        }
        Ok(())
    }

    /// Step `i` of `escalate`, whose `after` is at `after`.
    fn check_step(&self, groups: &Groups, i: usize, step: &Escalate, after: (usize, usize)) -> Result<(), PolicyError> {
        let rule = self.rule;
        let err = |needle: &str, message: String| {
            let at = if needle == "after" {
                after
            } else {
                self.src.at(needle, after.0)
            };
            self.src.err(at, message)
        };
        if step.after.millis() <= 0 {
            return Err(err(
                "after",
                format!("rule `{}`: escalate `after` must be positive", rule.name),
            ));
        }
        if step.after >= rule.timeout() {
            return Err(err(
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
            return Err(err(
                "after",
                format!(
                    "rule `{}`: escalation steps must be in increasing `after` order",
                    rule.name
                ),
            ));
        }
        if step.notify.is_empty() && step.add_groups.is_empty() {
            return Err(err(
                "after",
                format!(
                    "rule `{}`: an escalation step needs `notify` or `add_groups`",
                    rule.name
                ),
            ));
        }
        for g in step.notify.iter().chain(&step.add_groups) {
            if groups.forge.contains_key(g) {
                return Err(err(
                    g,
                    format!(
                        "rule `{}`: escalation to forge group `{g}` is not supported; use a group listing users",
                        rule.name
                    ),
                ));
            }
            if !groups.users.contains_key(g) {
                return Err(err(
                    g,
                    format!(
                        "rule `{}` escalates to group `{g}`, which is not defined under `groups`",
                        rule.name
                    ),
                ));
            }
        }
        Ok(())
    }
}
