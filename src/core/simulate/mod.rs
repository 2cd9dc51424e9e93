//! `gate policy simulate`: the real requests of a period replayed through a new policy.
//! Each request is rebuilt from its audit events (`history.rs`), given the new policy's
//! rule for its context, that rule's requirements and fields check, and its human votes,
//! cancel and consume at their times through the decision machine (`replay.rs`); then
//! compared with what the old policy made of it: rule, required approvers and outcome.
//! Pure: the caller reads the events and the clock.

mod history;
mod replay;

pub use history::{BadEvent, History, HumanVote, Step, histories};
pub use replay::{Replayed, replay};

use serde::Serialize;

use crate::core::decide::{Requirement, Status};
use crate::core::duration::rfc3339;
use crate::core::policy::Policy;

/// Where a request ends up, old or new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The machine's status at the end of the replay.
    Is(Status),
    /// The request would not open: `no_matching_rule`, `missing_field`, `invalid_field`
    /// (the API's error code).
    Refused(&'static str),
}

impl Outcome {
    pub fn text(&self) -> String {
        match self {
            Outcome::Is(s) => s.as_str().to_string(),
            Outcome::Refused(code) => format!("refused ({code})"),
        }
    }
}

/// What changes for one request: each of `rule`, `requirements`, `outcome` that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `rule`, `requirements` or `outcome`.
    pub field: &'static str,
    pub old: String,
    pub new: String,
}

/// One request of the period and what the new policy makes of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Simulated {
    pub id: String,
    pub repository: String,
    pub environment: String,
    /// When it opened (RFC 3339).
    pub opened: String,
    pub changes: Vec<Change>,
    /// Why the new outcome is what it is (refused votes, no rule, a missing field...).
    pub why: Vec<String>,
}

/// The counts over the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub replayed: usize,
    pub unchanged: usize,
    pub changed: usize,
    /// Requests whose rule, requirements or outcome change (one request may count in each).
    pub rule: usize,
    pub requirements: usize,
    pub outcome: usize,
    /// `old → new` outcome transitions and how many requests take each.
    pub outcomes: std::collections::BTreeMap<String, usize>,
}

/// Replays each of `histories` through `policy`, up to `end` (ms), and returns the
/// requests that change (in the order they opened) with the summary.
pub fn simulate(policy: &Policy, histories: &[History], end: i64) -> (Vec<Simulated>, Summary) {
    let mut changed = Vec::new();
    let mut sum = Summary {
        replayed: histories.len(),
        ..Summary::default()
    };
    for h in histories {
        let s = compare(h, &replay(policy, h, end));
        if s.changes.is_empty() {
            sum.unchanged += 1;
            continue;
        }
        sum.changed += 1;
        for c in &s.changes {
            match c.field {
                "rule" => sum.rule += 1,
                "requirements" => sum.requirements += 1,
                _ => {
                    sum.outcome += 1;
                    *sum.outcomes.entry(format!("{} → {}", c.old, c.new)).or_default() += 1;
                }
            }
        }
        changed.push(s);
    }
    (changed, sum)
}

/// `h` under the old policy against `new`, field by field.
pub fn compare(h: &History, new: &Replayed) -> Simulated {
    let mut changes = Vec::new();
    let new_rule = new.rule.clone().unwrap_or_else(|| "(none)".into());
    if new_rule != h.rule {
        changes.push(Change {
            field: "rule",
            old: h.rule.clone(),
            new: new_rule,
        });
    }
    let (old_req, new_req) = (needs(&h.requirements), needs(&new.requirements));
    if new.rule.is_some() && old_req != new_req {
        changes.push(Change {
            field: "requirements",
            old: old_req,
            new: new_req,
        });
    }
    let old = Outcome::Is(h.status);
    if old != new.outcome {
        changes.push(Change {
            field: "outcome",
            old: old.text(),
            new: new.outcome.text(),
        });
    }
    Simulated {
        id: h.id.clone(),
        repository: h.context.repository.clone(),
        environment: h.context.environment.clone(),
        opened: rfc3339(h.opened),
        why: if changes.is_empty() { vec![] } else { new.why.clone() },
        changes,
    }
}

/// Requirements as compared and printed: `2 of sre (alice, bob, carol) AND 1 of security
/// (github_team:acme/security)`; a forge group by its source (its members are read live),
/// `none` for a rule that decides by itself.
pub fn needs(reqs: &[Requirement]) -> String {
    if reqs.is_empty() {
        return "none".into();
    }
    reqs.iter()
        .map(|r| {
            let who = match &r.source {
                Some(s) => s.clone(),
                None => {
                    let mut m = r.members.clone();
                    m.sort();
                    m.join(", ")
                }
            };
            format!("{} of {} ({who})", r.count, r.group)
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_automatic;
