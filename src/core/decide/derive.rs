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
mod tests {
    use super::*;
    use serde_json::json;

    fn created() -> Event<'static> {
        Event {
            seq: 1,
            at: 0,
            kind: "created",
            actor: "ci",
            data: json!({
                "requirements": [{"group": "sre", "count": 2, "members": ["alice", "bob", "carol"]}],
                "requester": ["dave"],
                "expires_at": "2026-01-01T00:00:00Z",
            }),
        }
    }

    fn ev(seq: i64, kind: &'static str, actor: &'static str, data: Value) -> Event<'static> {
        Event {
            seq,
            at: seq,
            kind,
            actor,
            data,
        }
    }

    fn approve(seq: i64, who: &'static str) -> Event<'static> {
        ev(seq, "vote", who, json!({"decision": "approve"}))
    }

    #[test]
    fn an_honest_history_derives_its_outcome() {
        let events = vec![
            created(),
            approve(2, "alice"),
            approve(3, "bob"),
            ev(4, "approved", "bob", json!({})),
            ev(5, "consumed", "ci", json!({})),
        ];
        let d = derive(&events).unwrap();
        assert_eq!(d.status, Status::Consumed);
        assert_eq!(d.votes, vec![("alice".into(), true), ("bob".into(), true)]);
        let d = derive(&events[..3]).unwrap();
        assert_eq!(d.status, Status::Pending);
    }

    #[test]
    fn outcomes_the_votes_do_not_allow_are_found() {
        // Approved after one of two approvals.
        let e = derive(&[created(), approve(2, "alice"), ev(3, "approved", "alice", json!({}))]).unwrap_err();
        assert_eq!(e.seq, 3);
        // Approved with no vote at all.
        assert!(derive(&[created(), ev(2, "approved", "x", json!({}))]).is_err());
        // The requester's vote, a stranger's, and a second vote by one person never counted.
        for (who, seq) in [("dave", 2), ("mallory", 2)] {
            let e = derive(&[created(), approve(2, who)]).unwrap_err();
            assert_eq!(e.seq, seq, "{who}");
        }
        let e = derive(&[created(), approve(2, "alice"), approve(3, "alice")]).unwrap_err();
        assert!(e.why.contains("already voted"), "{e}");
        // Consumed without approval; anything after a terminal event.
        assert!(derive(&[created(), ev(2, "consumed", "ci", json!({}))]).is_err());
        assert!(derive(&[created(), ev(2, "canceled", "ci", json!({})), approve(3, "alice"),]).is_err());
        assert!(derive(&[approve(1, "alice")]).is_err());
        assert!(derive(&[]).is_err());
    }

    #[test]
    fn a_break_glass_approval_replays_only_where_created_asked_for_it() {
        let bg_vote = |actor: &'static str, decision: &str| {
            ev(
                2,
                "vote",
                actor,
                json!({"decision": decision, "automatic": true, "via": "break_glass"}),
            )
        };
        let approved = ev(3, "approved", "policy", json!({"automatic": true}));
        let mut bg_created = created();
        bg_created.data["break_glass"] =
            json!({"by": "dave", "reason": "db down", "incident": "INC-1", "review_id": "r2"});
        let d = derive(&[
            bg_created.clone(),
            bg_vote("break-glass:dave", "approve"),
            approved.clone(),
        ])
        .unwrap();
        assert_eq!(d.status, Status::Approved);
        // Forged: the same vote on a request opened without break-glass.
        let e = derive(&[created(), bg_vote("break-glass:dave", "approve"), approved.clone()]).unwrap_err();
        assert_eq!(e.seq, 2);
        assert!(e.why.contains("not opened with break-glass"), "{e}");
        // Forged: someone else's name, or a deny.
        let e = derive(&[bg_created.clone(), bg_vote("break-glass:mallory", "approve"), approved]).unwrap_err();
        assert!(e.why.contains("break-glass:dave"), "{e}");
        assert!(derive(&[bg_created, bg_vote("break-glass:dave", "deny")]).is_err());
        // A review is never canceled or consumed, whatever its row says.
        let mut review = created();
        review.data["review_of"] = json!("r1");
        assert!(derive(&[review.clone(), ev(2, "canceled", "ci", json!({}))]).is_err());
        let approved = [
            review.clone(),
            approve(2, "alice"),
            approve(3, "bob"),
            ev(4, "approved", "bob", json!({})),
        ];
        assert_eq!(derive(&approved).unwrap().status, Status::Approved);
        let mut consumed = approved.to_vec();
        consumed.push(ev(5, "consumed", "ci", json!({})));
        assert!(derive(&consumed).is_err());
    }

    #[test]
    fn policy_decisions_and_escalations_replay() {
        let d = derive(&[
            created(),
            ev(
                2,
                "vote",
                "policy:auto",
                json!({"decision": "approve", "automatic": true}),
            ),
            ev(3, "approved", "policy", json!({"automatic": true})),
        ])
        .unwrap();
        assert_eq!(d.status, Status::Approved);
        // Someone an escalation added may fill a slot.
        let d = derive(&[
            created(),
            approve(2, "alice"),
            ev(3, "escalated", "timer", json!({"added": ["erin"]})),
            approve(4, "erin"),
            ev(5, "approved", "erin", json!({})),
        ])
        .unwrap();
        assert_eq!(d.status, Status::Approved);
    }

    fn with_checks(approve: usize, deny: usize) -> Event<'static> {
        let mut c = created();
        c.data["checks"] = json!({"approve": approve, "deny": deny});
        c
    }

    fn check(seq: i64, list: &str, index: usize, answer: &str) -> Event<'static> {
        ev(
            seq,
            "check",
            "policy:prod",
            json!({"list": list, "index": index, "kind": "http", "check": "http https://x", "answer": answer, "reason": "r", "evidence": {}}),
        )
    }

    fn by_checks(seq: i64, decision: &str) -> Event<'static> {
        ev(
            seq,
            "vote",
            "policy:prod",
            json!({"decision": decision, "automatic": true, "via": "check"}),
        )
    }

    #[test]
    fn decisions_by_checks_replay_only_when_the_results_make_them() {
        let approved = |events: Vec<Event<'static>>| {
            let mut events = events;
            let seq = events.len() as i64 + 1;
            events.push(ev(seq, "approved", "policy", json!({"automatic": true})));
            derive(&events)
        };
        // Every approve-check approved, the deny-check abstained: approved by the policy.
        let d = approved(vec![
            with_checks(2, 1),
            check(2, "auto_approve_if", 0, "approve"),
            check(3, "auto_approve_if", 1, "approve"),
            check(4, "auto_deny_if", 0, "abstain"),
            by_checks(5, "approve"),
        ])
        .unwrap();
        assert_eq!(d.status, Status::Approved);
        // A deny-check's deny denies.
        let d = derive(&[
            with_checks(1, 1),
            check(2, "auto_approve_if", 0, "approve"),
            check(3, "auto_deny_if", 0, "deny"),
            by_checks(4, "deny"),
            ev(5, "denied", "policy", json!({"automatic": true})),
        ])
        .unwrap();
        assert_eq!(d.status, Status::Denied);
        // Results that leave it to people, and then people decide.
        let d = derive(&[
            with_checks(1, 0),
            check(2, "auto_approve_if", 0, "error"),
            approve(3, "alice"),
            approve(4, "bob"),
            ev(5, "approved", "bob", json!({})),
        ])
        .unwrap();
        assert_eq!(d.status, Status::Approved);
        // Forged: an approval by checks that errored, abstained or were never recorded,
        // or one result standing for two checks, or a deny by checks that did not deny.
        for forged in [
            vec![
                with_checks(1, 0),
                check(2, "auto_approve_if", 0, "error"),
                by_checks(3, "approve"),
            ],
            vec![
                with_checks(1, 0),
                check(2, "auto_approve_if", 0, "abstain"),
                by_checks(3, "approve"),
            ],
            vec![
                with_checks(1, 1),
                check(2, "auto_approve_if", 0, "approve"),
                by_checks(3, "approve"),
            ],
            vec![
                with_checks(2, 0),
                check(2, "auto_approve_if", 0, "approve"),
                check(3, "auto_approve_if", 0, "approve"),
                by_checks(4, "approve"),
            ],
            vec![
                with_checks(1, 1),
                check(2, "auto_approve_if", 0, "approve"),
                check(3, "auto_deny_if", 0, "error"),
                by_checks(4, "approve"),
            ],
            vec![
                with_checks(1, 0),
                check(2, "auto_approve_if", 0, "deny"),
                by_checks(3, "deny"),
            ],
            // A rule with checks never decides by `decision`, nor one without by checks.
            vec![
                with_checks(1, 0),
                ev(
                    2,
                    "vote",
                    "policy:prod",
                    json!({"decision": "approve", "automatic": true, "via": "policy"}),
                ),
            ],
            vec![created(), check(2, "auto_approve_if", 0, "approve")],
            vec![created(), by_checks(2, "approve")],
        ] {
            let seq = forged.last().unwrap().seq;
            let e = derive(&forged).unwrap_err();
            assert_eq!(e.seq, seq, "{e}");
        }
    }

    #[test]
    fn an_escalation_approves_exactly_when_the_threshold_is_then_met() {
        // 1 of sre {alice, bob} and 1 of security {carol}: bob's approval counts for
        // nothing (alice fills sre) until an escalation adds him, then fills security.
        let created = Event {
            data: json!({
                "requirements": [
                    {"group": "sre", "count": 1, "members": ["alice", "bob"]},
                    {"group": "security", "count": 1, "members": ["carol"]},
                ],
                "requester": ["dave"],
                "expires_at": "2026-01-01T00:00:00Z",
            }),
            ..created()
        };
        let before = vec![created.clone(), approve(2, "alice"), approve(3, "bob")];
        assert_eq!(derive(&before).unwrap().status, Status::Pending);
        let escalated = |added: Value| ev(4, "escalated", "timer", json!({ "added": added }));
        let approved = ev(5, "approved", "timer", json!({"decided_by": "escalation"}));
        let d = derive(&[before.clone(), vec![escalated(json!(["bob"])), approved.clone()]].concat()).unwrap();
        assert_eq!(d.status, Status::Approved);
        assert_eq!(d.votes.len(), 2, "no vote is invented");
        // Forged: an escalation that adds someone who has not voted meets nothing.
        let e = derive(&[before.clone(), vec![escalated(json!(["erin"])), approved.clone()]].concat()).unwrap_err();
        assert_eq!(e.seq, 5, "{e}");
        // Nor does an approval with no escalation before it, or one after a later vote.
        assert!(derive(&[before.clone(), vec![approved.clone()]].concat()).is_err());
        let e = derive(&[created, approve(2, "alice"), escalated(json!(["bob"])), approved]).unwrap_err();
        assert_eq!(e.seq, 5, "bob has not voted yet: {e}");
    }

    #[test]
    fn a_vote_for_a_stage_not_open_yet_never_counted() {
        let created = Event {
            data: json!({
                "requirements": [
                    {"group": "security", "count": 1, "members": ["sam"], "stage": "security"},
                    {"group": "release", "count": 1, "members": ["rita"], "stage": "release"},
                ],
                "requester": ["dave"],
                "expires_at": "2026-01-01T00:00:00Z",
            }),
            ..created()
        };
        let e = derive(&[created.clone(), approve(2, "rita")]).unwrap_err();
        assert!(e.why.contains("stage `release` is not open yet"), "{e}");
        let d = derive(&[
            created,
            approve(2, "sam"),
            approve(3, "rita"),
            ev(4, "approved", "rita", json!({})),
        ])
        .unwrap();
        assert_eq!(d.status, Status::Approved);
        assert_eq!(d.requirements[1].stage.as_deref(), Some("release"));
    }
}
