//! One policy test through the policy and the decision machine, as the server would take
//! it: the first matching rule, its requirements (forge groups filled from the test's
//! `members`), an automatic decision, then each vote at its time after any escalation
//! due and the timeout, refused or counted exactly as `POST …/approve|deny` would.

use serde::Serialize;

use super::{CannedChecks, EPOCH_MS, Expect, Outcome, RefusalCode, Refused, TestCase};
use crate::core::api::{RequirementView, needs_text};
use crate::core::decide::checks::{CheckResult, List, decision};
use crate::core::decide::{Refusal, State, Status, Vote};
use crate::core::identity::Identity;
use crate::core::policy::{AutoDecision, FieldRefusal, Policy, Rule};

/// What the policy made of a test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Got {
    /// The matched rule's name; `None` when no rule matches.
    pub rule: Option<String>,
    pub outcome: Outcome,
    /// The server's "still needed" text at the test's `now`.
    pub still_needed: String,
    /// The decision's reason, or why the request was refused at open; empty when none.
    pub reason: String,
    pub refused: Vec<Refused>,
}

/// One field where a test's expectation and the result differ, both as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub field: &'static str,
    pub expected: String,
    pub got: String,
}

/// Runs `t` against `policy`. An error is a fixture that cannot be run (a requester that
/// is no identity, `members` for a group that is not a forge, SCIM or IdP group of the
/// policy), not a failing test.
pub fn run(policy: &Policy, t: &TestCase) -> Result<Got, String> {
    for g in t.members.keys() {
        if !policy.forge_groups.contains_key(g) {
            return Err(if policy.groups.contains_key(g) {
                format!("members: `{g}` is a group of users in the policy; its members are the policy's")
            } else {
                format!("members: the policy has no forge, SCIM or IdP group `{g}`")
            });
        }
    }
    let mut ctx = t.context.clone();
    let mut requesters: Vec<String> = Vec::new();
    for (field, slot) in [
        ("actor", &mut ctx.actor),
        ("triggering_actor", &mut ctx.triggering_actor),
        ("commit_author", &mut ctx.commit_author),
    ] {
        if slot.is_empty() {
            continue;
        }
        let id = Identity::parse(slot).map_err(|e| format!("context.{field}: {e}"))?;
        *slot = id.as_str().to_string();
        if !requesters.contains(slot) {
            requesters.push(slot.clone());
        }
    }
    if requesters.is_empty() {
        return Err(
            "context names no requester (actor, triggering_actor, commit_author): the server refuses such a request (requester_unknown)"
                .into(),
        );
    }
    for r in &t.requesters {
        let id = Identity::parse(r).map_err(|e| format!("requesters: {e}"))?;
        if !requesters.iter().any(|x| x == id.as_str()) {
            requesters.push(id.as_str().to_string());
        }
    }
    let Some(rule) = policy.evaluate(&ctx) else {
        return Ok(Got {
            rule: None,
            outcome: Outcome::NoMatchingRule,
            still_needed: String::new(),
            reason: String::new(),
            refused: vec![],
        });
    };
    if let Err(e) = rule.check_fields(&t.fields) {
        return Ok(Got {
            rule: Some(rule.name.clone()),
            outcome: match e {
                FieldRefusal::Missing { .. } => Outcome::MissingField,
                FieldRefusal::NoMatch { .. } => Outcome::InvalidField,
            },
            still_needed: String::new(),
            reason: e.to_string(),
            refused: vec![],
        });
    }
    let results = canned_results(rule, t.checks.as_ref())?;
    let opened = t.at.unwrap_or(EPOCH_MS);
    let mut requirements = policy.requirements(rule);
    for r in &mut requirements {
        if r.source.is_some() {
            r.members = t.members.get(&r.group).cloned().unwrap_or_default();
        }
    }
    let mut st = State {
        status: Status::Pending,
        requesters,
        requirements: requirements.clone(),
        votes: vec![],
        expires_at: opened.saturating_add(rule.timeout().millis()),
        approval_ttl_ms: rule.approval_ttl().millis(),
        approval_expires_at: None,
        extra_voters: vec![],
        next_escalation: None,
        window_open: true,
    };
    match rule.decision {
        Some(AutoDecision::Approve) => {
            st.status = Status::Approved;
            st.approval_expires_at = Some(opened.saturating_add(st.approval_ttl_ms));
        }
        Some(AutoDecision::Deny) => st.status = Status::Denied,
        None => {}
    }
    // The check worker answers as soon as the request is open, before anyone votes.
    let mut reason = String::new();
    if let Some((approve, why)) = decision(&results, rule.auto_approve_if.len(), rule.auto_deny_if.len())
        && let Ok(next) = st.decide_by_policy(approve, opened)
    {
        st.status = next.status;
        st.approval_expires_at = next.approval_expires_at;
        reason = why;
    }
    let mut done: Vec<usize> = Vec::new();
    let mut advance = |st: &mut State, now: i64| policy.advance(rule, st, opened, &mut done, now);
    let mut voted: Vec<String> = Vec::new();
    let mut refused = Vec::new();
    let mut last = opened;
    for v in &t.votes {
        let now = v.at.unwrap_or(opened);
        last = now;
        if st.tick(now).is_some() {
            // The server records the expiry first, then refuses the vote that found it.
            advance(&mut st, now);
            refused.push(Refused {
                who: v.who.clone(),
                code: RefusalCode::Expired,
            });
            continue;
        }
        advance(&mut st, now);
        match st.vote(&v.who, v.approve, v.reason.as_deref(), now) {
            Ok(next) => {
                st.votes.push(Vote {
                    voter: v.who.clone(),
                    approve: v.approve,
                    reason: v.reason.clone(),
                    at: now,
                    by: None,
                });
                st.status = next.status;
                st.approval_expires_at = next.approval_expires_at;
                if st.status == Status::Denied {
                    reason = v.reason.clone().unwrap_or_default().trim().to_string();
                }
                voted.push(v.who.clone());
            }
            Err(r) => refused.push(Refused {
                who: v.who.clone(),
                code: code(&r),
            }),
        }
    }
    advance(&mut st, t.now.unwrap_or(last));
    let voted: Vec<&str> = voted.iter().map(String::as_str).collect();
    let views = RequirementView::of(&st, &requirements, &voted);
    Ok(Got {
        rule: Some(rule.name.clone()),
        outcome: match st.status {
            Status::Pending => Outcome::Pending,
            Status::Approved => Outcome::Approved,
            Status::Denied => Outcome::Denied,
            // Neither is reached without a cancel or a consume, which tests do not make.
            Status::Expired | Status::Canceled | Status::Consumed => Outcome::Expired,
        },
        still_needed: needs_text(&views),
        reason,
        refused,
    })
}

/// The test's canned answers as the results the check worker would record: one per
/// check of the rule, in list order, or an error naming what is missing or extra.
fn canned_results(rule: &Rule, canned: Option<&CannedChecks>) -> Result<Vec<CheckResult>, String> {
    let Some(canned) = canned else {
        if rule.has_checks() {
            return Err(format!(
                "rule `{}` has evidence checks ({}): give their answers under `checks`",
                rule.name,
                described(rule)
            ));
        }
        return Ok(vec![]);
    };
    if !rule.has_checks() {
        return Err(format!(
            "checks: rule `{}` has no auto_approve_if or auto_deny_if checks to answer",
            rule.name
        ));
    }
    for (list, specs, answers) in [
        (List::Approve, &rule.auto_approve_if, &canned.auto_approve_if),
        (List::Deny, &rule.auto_deny_if, &canned.auto_deny_if),
    ] {
        if specs.len() != answers.len() {
            let each: Vec<String> = specs.iter().map(|c| c.describe()).collect();
            return Err(format!(
                "checks.{}: rule `{}` has {} such check(s) [{}], the test gives {} answer(s): one per check, in order",
                list.as_str(),
                rule.name,
                specs.len(),
                each.join("; "),
                answers.len()
            ));
        }
    }
    // The counts agree: each check with its answer, in the rule's order.
    let answers = canned.auto_approve_if.iter().chain(&canned.auto_deny_if);
    Ok(rule
        .checks()
        .zip(answers)
        .map(|((list, index, spec), a)| {
            let reason = a
                .reason
                .clone()
                .unwrap_or_else(|| format!("canned answer {}", a.answer.as_str()));
            spec.result(list, index, a.answer, reason, serde_json::Value::Null)
        })
        .collect())
}

/// `auto_approve_if: …; auto_deny_if: …`, for a message.
fn described(rule: &Rule) -> String {
    let mut parts = Vec::new();
    for (name, specs) in [
        ("auto_approve_if", &rule.auto_approve_if),
        ("auto_deny_if", &rule.auto_deny_if),
    ] {
        if !specs.is_empty() {
            let each: Vec<String> = specs.iter().map(|c| c.describe()).collect();
            parts.push(format!("{name}: {}", each.join("; ")));
        }
    }
    parts.join("; ")
}

/// The API's error code for a refused vote (as `service::refusal` answers it).
fn code(r: &Refusal) -> RefusalCode {
    match r {
        Refusal::Requester => RefusalCode::RequesterCannotVote,
        Refusal::NotEligible | Refusal::NotDelegated(_) => RefusalCode::NotEligible,
        Refusal::AlreadyVoted => RefusalCode::AlreadyVoted,
        Refusal::ReasonRequired => RefusalCode::ReasonRequired,
        Refusal::NotPending(_) => RefusalCode::NotPending,
        Refusal::Expired | Refusal::OutsideWindow => RefusalCode::Expired,
        Refusal::StageNotOpen { .. } => RefusalCode::StageNotOpen,
    }
}

/// Where `got` differs from `expect`, field by field: `rule` and `still_needed` when the
/// test gives them, `outcome` and `refused` always.
pub fn diff(expect: &Expect, got: &Got) -> Vec<Diff> {
    let mut out = Vec::new();
    let rule = |r: &Option<String>| r.clone().unwrap_or_else(|| "(none)".into());
    if let Some(want) = &expect.rule
        && got.rule.as_deref() != Some(want.as_str())
    {
        out.push(Diff {
            field: "rule",
            expected: want.clone(),
            got: rule(&got.rule),
        });
    }
    if expect.outcome != got.outcome {
        out.push(Diff {
            field: "outcome",
            expected: expect.outcome.as_str().into(),
            got: got.outcome.as_str().into(),
        });
    }
    if let Some(want) = &expect.still_needed
        && *want != got.still_needed
    {
        out.push(Diff {
            field: "still_needed",
            expected: format!("{want:?}"),
            got: format!("{:?}", got.still_needed),
        });
    }
    if let Some(want) = &expect.reason
        && *want != got.reason
    {
        out.push(Diff {
            field: "reason",
            expected: format!("{want:?}"),
            got: format!("{:?}", got.reason),
        });
    }
    if expect.refused != got.refused {
        let list = |r: &[Refused]| {
            let items: Vec<String> = r.iter().map(|r| format!("{}: {}", r.who, r.code.as_str())).collect();
            format!("[{}]", items.join(", "))
        };
        out.push(Diff {
            field: "refused",
            expected: list(&expect.refused),
            got: list(&got.refused),
        });
    }
    out
}
