//! Evaluation: which rule a request falls under, why the others do not fit, and what
//! the chosen rule requires; and, for the offline replays, what time alone does.

use serde::Serialize;

use super::glob::glob_match;
use super::model::{Match, Policy, Rule};
use crate::core::api::Context;
use crate::core::decide::{Requirement, State, Status, due_escalations};

/// How one rule compared with a request, for `gate policy explain`.
#[derive(Debug, Clone, Serialize)]
pub struct RuleVerdict {
    pub rule: String,
    pub matched: bool,
    /// Why it did not match, one reason per mismatching key.
    pub mismatches: Vec<String>,
}

impl Policy {
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
    /// A rule with `stages` yields each stage's requirements in order, named by stage.
    pub fn requirements(&self, rule: &Rule) -> Vec<Requirement> {
        let plain = rule.require.iter().map(|r| (r, None));
        let staged = rule
            .stages
            .iter()
            .flat_map(|s| s.require.iter().map(move |r| (r, Some(s.name.clone()))));
        plain
            .chain(staged)
            .map(|(r, stage)| Requirement {
                group: r.group.clone(),
                count: r.count,
                members: self.groups.get(&r.group).cloned().unwrap_or_default(),
                source: self.forge_groups.get(&r.group).map(|s| s.to_string()),
                stage,
            })
            .collect()
    }
}

/// Why `m` does not fit `ctx`, one reason per key; empty when it fits.
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

impl Policy {
    /// What time alone does to `st` (opened at `opened` under `rule`) by `now`, as the
    /// server's timer would have done it: each escalation step due and not in `done`, at
    /// its own time (its `add_groups` may then vote, and a step whose voters make the
    /// approvals already cast enough approves), then the timeout or the approval's lapse.
    /// For the offline replays (`gate policy test`, `gate policy simulate`).
    pub fn advance(&self, rule: &Rule, st: &mut State, opened: i64, done: &mut Vec<usize>, now: i64) {
        if st.status == Status::Pending {
            let afters: Vec<i64> = rule.escalate.iter().map(|e| e.after.millis()).collect();
            for step in due_escalations(&afters, done, opened, st.expires_at, now) {
                let mut added: Vec<String> = Vec::new();
                for g in &rule.escalate[step].add_groups {
                    added.extend(self.groups.get(g).into_iter().flatten().cloned());
                }
                let next = st.escalate(&added, opened.saturating_add(afters[step]));
                for m in added {
                    if !st.extra_voters.contains(&m) {
                        st.extra_voters.push(m);
                    }
                }
                st.status = next.status;
                st.approval_expires_at = next.approval_expires_at;
                done.push(step);
            }
        }
        if let Some(next) = st.tick(now) {
            st.status = next.status;
        }
    }
}
