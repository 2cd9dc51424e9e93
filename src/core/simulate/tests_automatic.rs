//! What decides by itself, replayed: break-glass and its review, the evidence checks'
//! recorded answers, an escalation that approves, and a run's covering approval. The same
//! policy changes none of them; a policy that takes the mechanism away says why.

use serde_json::json;

use super::tests::{HOUR, Log, MIN, OLD, T0, field, one, policy};

/// The production rule with break-glass for on-call (erin) and a review by sre.
const GLASS: &str = "    require: [{ group: sre, count: 1 }]
    break_glass: { groups: [ops], ttl: 30m, review: { group: sre, within: 24h } }
";

fn with(lines: &str) -> crate::core::policy::Policy {
    policy(&OLD.replace("    require: [{ group: sre, count: 1 }]\n", lines))
}

/// erin's break-glass change c1, consumed at once, and its review v1 approved by alice.
fn break_glass() -> (Log, Log) {
    let info = json!({"by": "erin", "reason": "outage", "incident": "INC-1", "review_id": "v1"});
    let mut change = Log::new();
    change.open("c1", "production", "production", 1, T0);
    change.events[0].data["requester"] = json!(["erin"]);
    change.events[0].data["context"]["actor"] = json!("erin");
    change.events[0].data["break_glass"] = info.clone();
    change
        .push(
            T0,
            "vote",
            "break-glass:erin",
            json!({"decision": "approve", "automatic": true, "via": "break_glass", "break_glass": info}),
        )
        .push(T0, "approved", "policy", json!({"automatic": true}))
        .push(T0 + MIN, "consumed", "ci", json!({}));
    let mut review = Log::new();
    review.open("v1", "production", "production", 1, T0);
    review.events[0].data["requester"] = json!(["erin"]);
    review.events[0].data["context"]["actor"] = json!("erin");
    review.events[0].data["kind"] = json!("review");
    review.events[0].data["review_of"] = json!("c1");
    review
        .vote(T0 + 2 * HOUR, "alice", true)
        .push(T0 + 2 * HOUR, "approved", "alice", json!({}));
    (change, review)
}

#[test]
fn a_break_glass_change_and_its_review_replay_unchanged() {
    let p = with(GLASS);
    let (change, review) = break_glass();
    for log in [&change, &review] {
        let s = one(&p, log, T0 + 3 * HOUR);
        assert!(s.changes.is_empty(), "{s:?}");
    }
}

#[test]
fn a_rule_without_break_glass_refuses_the_change_and_its_review() {
    let p = with("    require: [{ group: sre, count: 1 }]\n");
    let (change, review) = break_glass();
    let s = one(&p, &change, T0 + 3 * HOUR);
    assert_eq!(
        field(&s, "outcome"),
        Some(("consumed", "refused (break_glass_not_allowed)"))
    );
    assert_eq!(
        s.why,
        vec!["break-glass by erin (incident INC-1): rule `production` does not allow break-glass"]
    );
    let s = one(&p, &review, T0 + 3 * HOUR);
    assert_eq!(
        field(&s, "outcome"),
        Some(("approved", "refused (break_glass_not_allowed)"))
    );
    assert!(s.why[0].contains("it reviews the break-glass change c1"), "{:?}", s.why);
    // Break-glass for another group only: erin is not in it.
    let p = with(&GLASS.replace("groups: [ops]", "groups: [security]"));
    let s = one(&p, &change, T0 + 3 * HOUR);
    assert_eq!(field(&s, "outcome"), Some(("consumed", "refused (not_break_glass)")));
    assert_eq!(
        s.why,
        vec!["break-glass by erin: rule `production` allows it only to `security`"]
    );
}

#[test]
fn a_review_group_the_reviewer_left_leaves_the_review_pending() {
    // The review now needs security (alice, dave): alice still counts, with 2 it waits.
    let p = with(&GLASS.replace("review: { group: sre,", "review: { group: security, count: 2,"));
    let (_, review) = break_glass();
    let s = one(&p, &review, T0 + 3 * HOUR);
    assert_eq!(field(&s, "outcome"), Some(("approved", "pending")));
    assert_eq!(
        field(&s, "requirements"),
        Some(("1 of sre (alice, bob, carol)", "2 of security (alice, dave)"))
    );
}

/// r1 under checks: the promotion check approved, the OPA deny-check abstained, and the
/// policy approved by them; consumed later.
fn checked() -> Log {
    let mut l = Log::new();
    l.open("r1", "production", "production", 1, T0);
    l.events[0].data["checks"] = json!({"approve": 1, "deny": 1});
    l.push(
        T0 + 1000,
        "check",
        "policy:production",
        json!({"list": "auto_approve_if", "index": 0, "kind": "promotion",
        "check": "promotion from staging within 7d", "answer": "approve", "reason": "promoted", "evidence": {}}),
    )
    .push(
        T0 + 1000,
        "check",
        "policy:production",
        json!({"list": "auto_deny_if", "index": 0, "kind": "http",
        "check": "http https://opa.example.com/v1", "answer": "abstain", "reason": "no opinion", "evidence": {}}),
    )
    .push(
        T0 + 1000,
        "vote",
        "policy:production",
        json!({"decision": "approve", "automatic": true, "via": "check"}),
    )
    .push(T0 + 1000, "approved", "policy", json!({"automatic": true}))
    .push(T0 + 5 * MIN, "consumed", "ci", json!({}));
    l
}

const CHECKS: &str = "    require: [{ group: sre, count: 1 }]
    auto_approve_if:
      - promotion: { from: staging, within: 7d }
    auto_deny_if:
      - http: { url: \"https://opa.example.com/v1\", secret_env: OPA }
";

#[test]
fn recorded_check_answers_decide_again_under_the_same_checks() {
    let s = one(&with(CHECKS), &checked(), T0 + HOUR);
    assert!(s.changes.is_empty(), "{s:?}");
}

#[test]
fn a_check_that_never_ran_abstains_and_people_decide() {
    // A second approve-check the request never saw: it abstains, so nobody approved it.
    let more = CHECKS.replace(
        "      - promotion: { from: staging, within: 7d }\n",
        "      - promotion: { from: staging, within: 7d }\n      - http: { url: \"https://cab.example.com\", secret_env: CAB }\n",
    );
    let s = one(&with(&more), &checked(), T0 + HOUR);
    assert_eq!(field(&s, "outcome"), Some(("consumed", "pending")));
    assert!(
        s.why
            .iter()
            .any(|w| w
                == "auto_approve_if[1] (http https://cab.example.com) never ran on this request: taken as abstain"),
        "{:?}",
        s.why
    );
    // Without the checks, the same request waits for sre.
    let s = one(
        &with("    require: [{ group: sre, count: 1 }]\n"),
        &checked(),
        T0 + HOUR,
    );
    assert_eq!(field(&s, "outcome"), Some(("consumed", "pending")));
    // The deny-check moved to the approve list: it abstained, so it does not pass.
    let moved = "    require: [{ group: sre, count: 1 }]\n    auto_approve_if:\n      - http: { url: \"https://opa.example.com/v1\", secret_env: OPA }\n";
    let s = one(&with(moved), &checked(), T0 + HOUR);
    assert_eq!(field(&s, "outcome"), Some(("consumed", "pending")));
}

#[test]
fn an_escalation_that_makes_a_cast_approval_count_approves() {
    // 1 of sre AND 1 of security: bob and carol approved, carol counting for nothing until
    // the escalation at 30 minutes lets sre fill any slot; then the request was approved.
    let mut l = Log::new();
    l.open_with(
        "r1",
        "production",
        "production",
        json!([{"group": "sre", "count": 1, "members": ["alice", "bob", "carol"]},
               {"group": "security", "count": 1, "members": ["alice", "dave"]}]),
        json!({}),
        T0,
    );
    l.vote(T0 + MIN, "bob", true)
        .vote(T0 + 2 * MIN, "carol", true)
        .push(
            T0 + 30 * MIN,
            "escalated",
            "timer",
            json!({"step": 0, "added": ["alice", "bob", "carol"]}),
        )
        .push(T0 + 30 * MIN, "approved", "timer", json!({}));
    let rule = "    require: [{ group: sre, count: 1 }, { group: security, count: 1 }]\n";
    let s = one(
        &with(&format!("{rule}    escalate: [{{ after: 30m, add_groups: [sre] }}]\n")),
        &l,
        T0 + HOUR,
    );
    assert!(s.changes.is_empty(), "{s:?}");
    // Without the escalation, carol never counts.
    let s = one(&with(rule), &l, T0 + HOUR);
    assert_eq!(field(&s, "outcome"), Some(("approved", "pending")));
}

#[test]
fn a_run_s_covering_approval_replays_only_under_approval_scope_run() {
    let mut l = Log::new();
    l.open("r2", "production", "production", 1, T0);
    l.push(
        T0 + MIN,
        "vote",
        "scope:r1",
        json!({"decision": "approve", "automatic": true, "via": "scope"}),
    )
    .push(T0 + MIN, "approved", "policy", json!({"automatic": true}));
    let scoped = with("    require: [{ group: sre, count: 1 }]\n    approval_scope: run\n");
    let s = one(&scoped, &l, T0 + HOUR);
    assert!(s.changes.is_empty(), "{s:?}");
    let s = one(&with("    require: [{ group: sre, count: 1 }]\n"), &l, T0 + HOUR);
    assert_eq!(field(&s, "outcome"), Some(("approved", "pending")));
    assert!(s.why[0].contains("approval_scope: request"), "{:?}", s.why);
}
