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
    bg_created.data["break_glass"] = json!({"by": "dave", "reason": "db down", "incident": "INC-1", "review_id": "r2"});
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

/// `created` for security (sam) first, then release (rita).
fn staged() -> Event<'static> {
    Event {
        data: json!({
            "requirements": [
                {"group": "security", "count": 1, "members": ["sam"], "stage": "security"},
                {"group": "release", "count": 1, "members": ["rita"], "stage": "release"},
            ],
            "requester": ["dave"],
            "expires_at": "2026-01-01T00:00:00Z",
        }),
        ..created()
    }
}

#[test]
fn a_vote_for_a_stage_not_open_yet_never_counted() {
    let created = staged();
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

#[test]
fn a_stage_opens_in_the_log_only_once_the_stages_before_it_are_met() {
    let staged = staged();
    let opened = |seq| ev(seq, "stage_opened", "policy", json!({"stage": "release"}));
    let honest = [
        staged.clone(),
        approve(2, "sam"),
        opened(3),
        approve(4, "rita"),
        ev(5, "approved", "rita", json!({})),
    ];
    assert_eq!(derive(&honest).unwrap().status, Status::Approved);
    // Forged: release "opened" before security approved, or a stage the rule lacks.
    let e = derive(&[staged.clone(), opened(2)]).unwrap_err();
    assert_eq!(e.seq, 2);
    assert!(e.why.contains("stage `release` is not open"), "{e}");
    let e = derive(&[
        staged,
        approve(2, "sam"),
        ev(3, "stage_opened", "policy", json!({"stage": "qa"})),
    ])
    .unwrap_err();
    assert_eq!(e.seq, 3);
}
