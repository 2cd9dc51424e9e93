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
            "escalated" => {
                let added: Vec<String> = serde_json::from_value(e.data["added"].clone()).unwrap_or_default();
                for a in added {
                    if !st.extra_voters.contains(&a) {
                        st.extra_voters.push(a);
                    }
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

    #[test]
    fn a_scope_approval_replays_only_naming_its_covering_decision() {
        let mut opened = created();
        opened.data["scope"] = json!("sha256:s");
        let covering =
            json!({"id": "req_a", "scope": "sha256:s", "decision": "approved", "event_seq": 9, "event_hash": "h"});
        let scope_vote = |data: Value| {
            let mut d = json!({"decision": "approve", "automatic": true, "via": "scope"});
            d.as_object_mut().unwrap().extend(data.as_object().unwrap().clone());
            ev(2, "vote", "scope:req_a", d)
        };
        let approved = ev(3, "approved", "policy", json!({"automatic": true}));
        let d = derive(&[
            opened.clone(),
            scope_vote(json!({"covering": covering})),
            approved.clone(),
        ])
        .unwrap();
        assert_eq!(d.status, Status::Approved);
        assert_eq!(d.covering.len(), 1);
        assert_eq!(d.covering[0].id, "req_a");
        // Forged: no covering decision named, another scope, or a request opened unscoped.
        let e = derive(&[opened.clone(), scope_vote(json!({})), approved.clone()]).unwrap_err();
        assert_eq!(e.seq, 2, "{e}");
        let mut other = covering.clone();
        other["scope"] = json!("sha256:t");
        assert!(derive(&[opened.clone(), scope_vote(json!({"covering": other})), approved.clone()]).is_err());
        assert!(derive(&[created(), scope_vote(json!({"covering": covering})), approved]).is_err());
    }
}
