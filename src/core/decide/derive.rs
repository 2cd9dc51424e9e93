//! Decisions derived from the signed audit events, never read from the request row.
//!
//! The row (status, votes, document) is what the server acts on quickly, and anyone who
//! can write the database can edit it. The request's events are signed with a key the
//! database never holds, so before the server uses an approval or signs a record it
//! replays them through the same machine that made them: the `created` event's
//! requirements and requesters, each vote checked as it was cast, each outcome checked
//! against what the votes before it allow. A row that disagrees is refused.

use serde_json::Value;

use super::{Requirement, State, Status, Vote};

/// One audit event of a request, as replayed.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub seq: i64,
    pub at: i64,
    pub kind: &'a str,
    pub actor: &'a str,
    pub data: Value,
}

/// What the events say about a request.
#[derive(Debug, Clone)]
pub struct Derived {
    pub status: Status,
    /// The requester set and requirements as the server snapshotted them at opening.
    pub requesters: Vec<String>,
    pub requirements: Vec<Requirement>,
    /// Every vote, policy votes included, in order: `(voter, approve)`.
    pub votes: Vec<(String, bool)>,
    /// The machine's state after the events (status, human votes, escalations).
    pub state: State,
    /// `expires_at` of the `created` event (RFC 3339), to compare with the row.
    pub expires_at: String,
    /// The covering decisions that `approval_scope: run` votes name, which the caller
    /// checks against the covering requests' own events (`core::scope`).
    pub covering: Vec<crate::core::scope::Covering>,
}

/// Why a request's events do not add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event #{seq} ({kind}): {why}")]
pub struct Inconsistent {
    pub seq: i64,
    pub kind: String,
    pub why: String,
}

/// Replays a request's events, in order, through the decision machine.
pub fn derive(events: &[Event<'_>]) -> Result<Derived, Inconsistent> {
    let bad = |e: &Event<'_>, why: String| Inconsistent {
        seq: e.seq,
        kind: e.kind.to_string(),
        why,
    };
    let Some(first) = events.first() else {
        return Err(Inconsistent {
            seq: 0,
            kind: "created".into(),
            why: "the request has no audit events".into(),
        });
    };
    if first.kind != "created" {
        return Err(bad(first, "the first event of a request must be `created`".into()));
    }
    let requirements: Vec<Requirement> = serde_json::from_value(first.data["requirements"].clone())
        .map_err(|e| bad(first, format!("requirements do not parse: {e}")))?;
    let requesters: Vec<String> = serde_json::from_value(first.data["requester"].clone())
        .map_err(|e| bad(first, format!("requester does not parse: {e}")))?;
    let expires_at = first.data["expires_at"].as_str().unwrap_or_default().to_string();
    // How many evidence checks the rule had (`auto_approve_if`, `auto_deny_if`); absent
    // when it had none, and then no check may decide.
    let declared = first.data.get("checks").map(|c| {
        let n = |k: &str| c[k].as_u64().unwrap_or(0) as usize;
        (n("approve"), n("deny"))
    });
    let mut check_results: Vec<super::checks::CheckResult> = Vec::new();
    // A break-glass review ends only by its review group's vote.
    let review = first.data["review_of"].is_string();
    let mut st = State {
        status: Status::Pending,
        requesters: requesters.clone(),
        requirements: requirements.clone(),
        votes: vec![],
        // Votes were checked against the timeout when cast; replaying them, only their
        // order matters.
        expires_at: i64::MAX,
        approval_ttl_ms: 0,
        approval_expires_at: None,
        extra_voters: vec![],
        next_escalation: None,
        window_open: true,
    };
    let mut votes = Vec::new();
    let mut covering = Vec::new();
    // What the last vote made of the request: the outcome event that follows must match.
    let mut allowed: Option<Status> = None;
    for e in &events[1..] {
        match e.kind {
            "refused" => continue,
            "created" => return Err(bad(e, "a request is created once".into())),
            _ if st.status.is_terminal() => {
                return Err(bad(e, format!("the request was already {}", st.status)));
            }
            "vote" => {
                let approve = match e.data["decision"].as_str() {
                    Some("approve") => true,
                    Some("deny") => false,
                    other => return Err(bad(e, format!("unknown decision {other:?}"))),
                };
                if st.status != Status::Pending {
                    return Err(bad(e, format!("a vote on a request that is {}", st.status)));
                }
                if e.data["automatic"] == Value::Bool(true) {
                    check_decision(e, declared, &check_results, approve).map_err(|why| bad(e, why))?;
                    // A break-glass approval only where the signed `created` asked for one.
                    if e.data["via"] == "break_glass" {
                        check_break_glass(&first.data, e, approve).map_err(|why| bad(e, why))?;
                    }
                    // A covered request follows a decision of its scope, which it must name.
                    if e.data["via"] == crate::core::scope::VIA {
                        let c = crate::core::scope::check_vote(&first.data, &e.data, approve).map_err(|w| bad(e, w))?;
                        covering.push(c);
                    }
                    // The rule decides by itself, in the same transaction as `created`.
                    votes.push((e.actor.to_string(), approve));
                    allowed = Some(if approve { Status::Approved } else { Status::Denied });
                    continue;
                }
                // A vote under a delegation counts as the delegator ("bob for alice").
                let for_whom = e.data["on_behalf_of"].as_str();
                let counted = for_whom.unwrap_or(e.actor);
                if let Some(groups) = e.data["forge_groups"].as_array() {
                    // Membership of a forge group was read live when the vote was cast.
                    for r in st.requirements.iter_mut() {
                        if groups.iter().any(|g| g.as_str() == Some(r.group.as_str()))
                            && !r.members.iter().any(|m| m == counted)
                        {
                            r.members.push(counted.to_string());
                        }
                    }
                }
                let reason = e.data["reason"].as_str();
                let next = st
                    .vote_as(e.actor, for_whom, approve, reason, e.at)
                    .map_err(|r| bad(e, format!("the vote by `{}` could not have counted: {r}", e.actor)))?;
                st.votes.push(Vote {
                    voter: counted.to_string(),
                    approve,
                    reason: reason.map(str::to_string),
                    at: e.at,
                    by: for_whom.map(|_| e.actor.to_string()),
                });
                votes.push((e.actor.to_string(), approve));
                allowed = (next.status != Status::Pending).then_some(next.status);
            }
            "check" => {
                if declared.is_none() {
                    return Err(bad(e, "a check result on a request whose rule has no checks".into()));
                }
                let r: super::checks::CheckResult = serde_json::from_value(e.data.clone())
                    .map_err(|err| bad(e, format!("the check result does not parse: {err}")))?;
                check_results.push(r);
            }
            "escalated" => {
                let added: Vec<String> = serde_json::from_value(e.data["added"].clone()).unwrap_or_default();
                // The people it adds may let the approvals already cast meet every
                // requirement: then the escalation approves, and only then.
                let next = st.escalate(&added, e.at);
                for a in added {
                    if !st.extra_voters.contains(&a) {
                        st.extra_voters.push(a);
                    }
                }
                allowed = (next.status == Status::Approved).then_some(Status::Approved);
            }
            "stage_opened" => {
                // Only a stage the events before it opened: its stages ahead are met.
                let stage = e.data["stage"].as_str().unwrap_or_default();
                if !st.open_stages().iter().any(|s| s == stage) {
                    return Err(bad(
                        e,
                        format!("stage `{stage}` is not open after the events before it"),
                    ));
                }
            }
            "approved" | "denied" => {
                let s = if e.kind == "approved" {
                    Status::Approved
                } else {
                    Status::Denied
                };
                if st.status != Status::Pending || allowed != Some(s) {
                    return Err(bad(
                        e,
                        format!(
                            "no vote before it decides the request {s} (the votes so far leave it {})",
                            allowed.unwrap_or(st.status)
                        ),
                    ));
                }
                st.status = s;
            }
            "expired" => st.status = Status::Expired,
            "canceled" | "consumed" if review => {
                return Err(bad(e, "a break-glass review is never canceled or consumed".into()));
            }
            "canceled" => {
                if st.status != Status::Pending {
                    return Err(bad(
                        e,
                        format!("only a pending request is canceled, this one was {}", st.status),
                    ));
                }
                st.status = Status::Canceled;
            }
            "consumed" => {
                if st.status != Status::Approved {
                    return Err(bad(
                        e,
                        format!("only an approved request is consumed, this one was {}", st.status),
                    ));
                }
                st.status = Status::Consumed;
            }
            other => return Err(bad(e, format!("unknown event kind `{other}`"))),
        }
    }
    Ok(Derived {
        status: st.status,
        requesters,
        requirements,
        votes,
        state: st,
        expires_at,
        covering,
    })
}

/// An automatic vote is legitimate: a rule's own `decision` on a rule without checks, or
/// (`via: check`) exactly what the recorded check results combine to.
fn check_decision(
    e: &Event<'_>,
    declared: Option<(usize, usize)>,
    results: &[super::checks::CheckResult],
    approve: bool,
) -> Result<(), String> {
    use super::checks::{Combined, answers, combine};
    let by_checks = e.data["via"] == "check";
    let Some((approve_n, deny_n)) = declared else {
        return match by_checks {
            true => Err("a decision by checks on a request whose rule has no checks".into()),
            false => Ok(()),
        };
    };
    // Other automatic mechanisms (not `policy`, not `check`) are judged by their own arms.
    if e.data["via"] == "policy" {
        return Err("a rule with checks decides automatically only by them, not by `decision`".into());
    }
    if !by_checks {
        return Ok(());
    }
    let Some((a, d)) = answers(results, approve_n, deny_n) else {
        return Err(format!(
            "a decision by checks without one recorded result for each of its {approve_n} approve- and {deny_n} deny-checks"
        ));
    };
    match (combine(&a, &d), approve) {
        (Combined::Approve, true) | (Combined::Deny(_), false) => Ok(()),
        (c, _) => Err(format!(
            "the recorded check results ({a:?}, {d:?}) decide {c:?}, not {}",
            if approve { "approve" } else { "deny" }
        )),
    }
}

/// A break-glass vote is legitimate only as an approval by `break-glass:BY`, where the
/// request's `created` event names BY as the one who broke the glass.
fn check_break_glass(created: &Value, vote: &Event<'_>, approve: bool) -> Result<(), String> {
    let Some(by) = created["break_glass"]["by"].as_str().filter(|b| !b.is_empty()) else {
        return Err("a break-glass approval on a request that was not opened with break-glass".into());
    };
    if !approve || vote.actor != format!("break-glass:{by}") {
        return Err(format!(
            "a break-glass vote must be an approval by `break-glass:{by}`, not a {} by `{}`",
            if approve { "approval" } else { "deny" },
            vote.actor
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
