//! One request's history through the new policy, as the server would have taken it: the
//! first matching rule (for a break-glass review, the review rule of the change's), its
//! fields check, its requirements, what decides by itself (the rule's `decision`, a
//! break-glass the rule allows, the evidence checks' recorded answers, the covering
//! approval of a run the rule scopes), then each human vote, cancel and consume at its
//! time after the escalations due and the timeout, refused or counted exactly as the API
//! would, and finally time up to the end.

use super::Outcome;
use super::history::{History, Step};
use crate::core::decide::checks::{Answer, CheckResult, decision};
use crate::core::decide::{Refusal, Requirement, State, Status, Vote};
use crate::core::duration::rfc3339;
use crate::core::policy::break_glass::review_rule;
use crate::core::policy::{ApprovalScope, AutoDecision, FieldRefusal, Policy, Rule};

/// What the new policy makes of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The matched rule's name; `None` when no rule matches.
    pub rule: Option<String>,
    pub requirements: Vec<Requirement>,
    pub outcome: Outcome,
    /// What in the replay made the outcome: refusals, a missing field, no matching rule.
    pub why: Vec<String>,
}

/// Replays `h` through `policy` up to `end` (ms).
///
/// The timeout is the shorter of the new rule's and the time the request had: votes that
/// came after the old deadline were never cast, so a longer timeout cannot add any. The
/// members of a forge, SCIM or IdP group are those the request saw: at opening, and each
/// voter counted in a group of the same source when they voted.
pub fn replay(policy: &Policy, h: &History, end: i64) -> Replayed {
    let refused = |rule: Option<String>, code: &'static str, why: String| Replayed {
        rule,
        requirements: vec![],
        outcome: Outcome::Refused(code),
        why: vec![why],
    };
    let Some(rule) = policy.evaluate(&h.context) else {
        let misses: Vec<String> = policy
            .explain(&h.context)
            .into_iter()
            .map(|v| format!("{}: {}", v.rule, v.mismatches.join(", ")))
            .collect();
        let why = if misses.is_empty() {
            "no rule matches: the policy has no rules".to_string()
        } else {
            format!("no rule matches ({})", misses.join("; "))
        };
        return refused(None, "no_matching_rule", why);
    };
    // A review is held to the review rule of the change's rule, which must still allow
    // break-glass for the review to exist at all.
    let review: Rule;
    let rule = match &h.review_of {
        Some(change) => {
            let Some(bg) = rule.break_glass_allowed() else {
                return refused(
                    Some(rule.name.clone()),
                    "break_glass_not_allowed",
                    format!(
                        "it reviews the break-glass change {change}, which rule `{}` would refuse: it does not allow break-glass",
                        rule.name
                    ),
                );
            };
            review = review_rule(rule, bg);
            &review
        }
        None => rule,
    };
    if let Err(e) = rule.check_fields(&h.fields) {
        let code = match e {
            FieldRefusal::Missing { .. } => "missing_field",
            FieldRefusal::NoMatch { .. } => "invalid_field",
        };
        return refused(
            Some(rule.name.clone()),
            code,
            format!("{e}: the request did not carry it"),
        );
    }
    let mut requirements = policy.requirements(rule);
    for r in &mut requirements {
        if let Some(src) = &r.source {
            r.members = seen_members(h, src);
        }
    }
    let mut why = Vec::new();
    // What decides by itself, and when: (at, approve, why).
    let mut auto: Option<(i64, bool, String)> = None;
    let mut approval_ttl_ms = rule.approval_ttl().millis();
    if let Some(info) = &h.break_glass {
        let Some(bg) = rule.break_glass_allowed() else {
            return refused(
                Some(rule.name.clone()),
                "break_glass_not_allowed",
                format!(
                    "break-glass by {} (incident {}): rule `{}` does not allow break-glass",
                    info.by, info.incident, rule.name
                ),
            );
        };
        // A forge, SCIM or IdP group's members then are not known: the engineer is
        // taken to have been in it, as the server found them to be in one of the old.
        let member = bg
            .groups
            .iter()
            .any(|g| policy.forge_groups.contains_key(g) || policy.groups.get(g).is_some_and(|m| m.contains(&info.by)));
        if !member {
            return refused(
                Some(rule.name.clone()),
                "not_break_glass",
                format!(
                    "break-glass by {}: rule `{}` allows it only to {}",
                    info.by,
                    rule.name,
                    bg.groups
                        .iter()
                        .map(|g| format!("`{g}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        approval_ttl_ms = bg.ttl.millis();
        auto = Some((
            h.opened,
            true,
            format!(
                "break-glass by {} (incident {}) approves at once under rule `{}`",
                info.by, info.incident, rule.name
            ),
        ));
    } else if rule.has_checks() {
        let results = new_checks(rule, h, &mut why);
        if let Some((approve, reason)) = decision(&results, rule.auto_approve_if.len(), rule.auto_deny_if.len()) {
            auto = Some((
                h.checks_at.unwrap_or(h.opened),
                approve,
                format!("the checks decide: {reason}"),
            ));
        }
    } else if h.automatic.as_deref() == Some(crate::core::scope::VIA) && h.review_of.is_none() {
        match (rule.approval_scope, h.decided_at) {
            (ApprovalScope::Run, Some(at)) => {
                auto = Some((
                    at,
                    true,
                    "an approval of its run covers it (approval_scope: run)".to_string(),
                ));
            }
            _ => why.push(format!(
                "its approval came from another gate of its run, which rule `{}` does not let cover it (approval_scope: request)",
                rule.name
            )),
        }
    }
    let timeout = rule.timeout().millis().min(h.expires_at.saturating_sub(h.opened));
    let mut st = State {
        status: Status::Pending,
        requesters: h.requesters.clone(),
        requirements: requirements.clone(),
        votes: vec![],
        expires_at: h.opened.saturating_add(timeout),
        approval_ttl_ms,
        approval_expires_at: None,
        extra_voters: vec![],
        next_escalation: None,
        window_open: true,
    };
    match rule.decision {
        Some(AutoDecision::Approve) => {
            st.status = Status::Approved;
            st.approval_expires_at = Some(h.opened.saturating_add(st.approval_ttl_ms));
            why.push(format!("rule `{}` approves by itself", rule.name));
        }
        Some(AutoDecision::Deny) => {
            st.status = Status::Denied;
            why.push(format!("rule `{}` denies by itself", rule.name));
        }
        None => {}
    }
    let mut done: Vec<usize> = Vec::new();
    let mut advance = |st: &mut State, now: i64| policy.advance(rule, st, h.opened, &mut done, now);
    for step in &h.steps {
        let at = match step {
            Step::Vote(v) => v.at,
            Step::Cancel(t) | Step::Consume(t) => *t,
        };
        if auto.as_ref().is_some_and(|a| a.0 <= at) {
            decide_auto(auto.take(), &mut st, &mut why, &mut advance);
        }
        match step {
            Step::Vote(v) => {
                let what = if v.approve { "approval" } else { "deny" };
                let who = match &v.for_whom {
                    Some(f) => format!("{} for {f}", v.by),
                    None => v.by.clone(),
                };
                // The server records the expiry first, then refuses the vote that found it.
                let late = st.status == Status::Pending && st.tick(v.at).is_some();
                advance(&mut st, v.at);
                if late {
                    why.push(format!(
                        "the {what} by {who} at {} would be refused: the new rule's timeout has passed",
                        rfc3339(v.at)
                    ));
                    continue;
                }
                match st.vote_as(&v.by, v.for_whom.as_deref(), v.approve, v.reason.as_deref(), v.at) {
                    Ok(next) => {
                        st.votes.push(Vote {
                            voter: v.counted().to_string(),
                            approve: v.approve,
                            reason: v.reason.clone(),
                            at: v.at,
                            by: v.for_whom.as_ref().map(|_| v.by.clone()),
                        });
                        st.status = next.status;
                        st.approval_expires_at = next.approval_expires_at;
                    }
                    Err(r) => why.push(format!(
                        "the {what} by {who} at {} would be refused: {}",
                        rfc3339(v.at),
                        refusal(&r)
                    )),
                }
            }
            Step::Cancel(at) => {
                advance(&mut st, *at);
                match st.cancel(*at) {
                    Ok(next) => st.status = next.status,
                    Err(r) => why.push(format!(
                        "the cancel at {} would be refused: {}",
                        rfc3339(*at),
                        refusal(&r)
                    )),
                }
            }
            Step::Consume(at) => {
                let lapsed = st.status == Status::Approved && st.tick(*at).is_some();
                advance(&mut st, *at);
                if lapsed {
                    why.push(format!(
                        "the approval could not be used at {}: the new rule's approval_ttl ({}) has passed",
                        rfc3339(*at),
                        rule.approval_ttl()
                    ));
                    continue;
                }
                st.window_open = rule.window_open(*at);
                match st.consume(*at) {
                    Ok(next) => st.status = next.status,
                    Err(r) => why.push(format!(
                        "the approval could not be used at {}: {}",
                        rfc3339(*at),
                        match r {
                            Refusal::NotPending(s) => format!("the request is {s}, not approved"),
                            r => refusal(&r),
                        }
                    )),
                }
            }
        }
    }
    decide_auto(auto.take(), &mut st, &mut why, &mut advance);
    advance(&mut st, end);
    if st.status == Status::Pending {
        let got = st.assign();
        let short: Vec<String> = requirements
            .iter()
            .zip(&got)
            .filter(|(r, g)| (g.len() as u32) < r.count)
            .map(|(r, g)| format!("{} of {} {}", g.len(), r.count, r.group))
            .collect();
        if !short.is_empty() {
            why.push(format!("the approvals given meet only {}", short.join(", ")));
        }
    } else if st.status == Status::Expired && h.status != Status::Expired {
        why.push(format!("rule `{}` times out at {}", rule.name, rfc3339(st.expires_at)));
    }
    Replayed {
        rule: Some(rule.name.clone()),
        requirements,
        outcome: Outcome::Is(st.status),
        why,
    }
}

/// The automatic decision `auto` (at, approve, why) at its time, unless the request was
/// decided or timed out first.
fn decide_auto(
    auto: Option<(i64, bool, String)>,
    st: &mut State,
    why: &mut Vec<String>,
    advance: &mut impl FnMut(&mut State, i64),
) {
    if let Some((at, approve, reason)) = auto {
        advance(st, at);
        if let Ok(next) = st.decide_by_policy(approve, at) {
            st.status = next.status;
            st.approval_expires_at = next.approval_expires_at;
            why.push(reason);
        }
    }
}

/// The new rule's checks with the answers the request's checks gave: a check the old rule
/// also had (the same list and description) answers as it did; one that never ran on the
/// request is taken as an abstention, which never decides, and said so in `why`.
fn new_checks(rule: &Rule, h: &History, why: &mut Vec<String>) -> Vec<CheckResult> {
    rule.checks()
        .map(|(list, index, spec)| {
            let check = spec.describe();
            let seen = h.checks.iter().find(|r| r.list == list && r.check == check);
            let (answer, reason) = match seen {
                Some(r) => (r.answer, r.reason.clone()),
                None => {
                    why.push(format!(
                        "{}[{index}] ({check}) never ran on this request: taken as abstain",
                        list.as_str()
                    ));
                    (Answer::Abstain, "never ran".into())
                }
            };
            spec.result(list, index, answer, reason, serde_json::Value::Null)
        })
        .collect()
}

/// The members of groups from `source` the request saw: the snapshot at opening, and
/// every voter whose vote counted in a group of that source.
fn seen_members(h: &History, source: &str) -> Vec<String> {
    let groups: Vec<&Requirement> = h
        .requirements
        .iter()
        .filter(|r| r.source.as_deref() == Some(source))
        .collect();
    let mut out: Vec<String> = groups.iter().flat_map(|r| r.members.iter().cloned()).collect();
    for step in &h.steps {
        if let Step::Vote(v) = step
            && v.forge_groups.iter().any(|g| groups.iter().any(|r| &r.group == g))
            && !out.iter().any(|m| m == v.counted())
        {
            out.push(v.counted().to_string());
        }
    }
    out
}

/// A refusal as the replay explains it.
fn refusal(r: &Refusal) -> String {
    match r {
        Refusal::Expired => "the new rule's timeout has passed".into(),
        Refusal::OutsideWindow => "the new rule's change window is closed".into(),
        other => other.to_string(),
    }
}
