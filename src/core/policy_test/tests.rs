use super::*;
use crate::core::policy::Policy;

const POLICY: &str = "version: 1
groups:
  sre: [alice, bob]
  oncall: [erin]
  team: { github_team: acme/sec }
rules:
  - name: prod
    match: { environment: production }
    require: [{ group: sre, count: 2 }]
    timeout: 1h
    approval_ttl: 10m
    escalate:
      - { after: 30m, add_groups: [oncall] }
  - name: team
    match: { environment: team }
    require: [{ group: team }]
";

fn policy() -> Policy {
    Policy::parse("policy.yaml", POLICY).unwrap()
}

fn one(yaml: &str) -> TestCase {
    let text = format!("tests:\n  - name: t\n    context: {{environment: production, actor: dave}}\n{yaml}");
    parse(&text).unwrap().tests.remove(0)
}

#[test]
fn unknown_keys_and_bad_values_are_refused_where_they_are() {
    let e = parse("tests:\n  - name: a\n    context: {}\n    expect: {outcome: approved}\n    vots: []\n").unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("unknown field `vots`"), "{e}");
    let e =
        parse("tests:\n  - name: a\n    at: tomorrow\n    context: {}\n    expect: {outcome: approved}\n").unwrap_err();
    assert_eq!(e.line, 3, "{e}");
    assert!(e.message.contains("`tomorrow` is not an RFC 3339 time"), "{e}");
    let e = parse("tests:\n  - name: a\n    context: {}\n    expect: {outcome: maybe}\n").unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("unknown variant `maybe`"), "{e}");
}

#[test]
fn repeated_names_and_backward_times_are_refused_with_their_line() {
    let two = "tests:\n  - name: a\n    context: {}\n    expect: {outcome: pending}\n  - name: a\n    context: {}\n    expect: {outcome: pending}\n";
    let e = parse(two).unwrap_err();
    assert_eq!(
        (e.line, e.message.contains("a second test named `a`")),
        (5, true),
        "{e}"
    );
    let back = "tests:\n  - name: a\n    at: 2026-05-04T10:00:00Z\n    context: {}\n    votes:\n      - {who: bob, approve: true, at: 2026-05-04T09:00:00Z}\n    expect: {outcome: pending}\n";
    let e = parse(back).unwrap_err();
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.contains("before 2026-05-04T10:00:00Z"), "{e}");
}

#[test]
fn votes_count_and_refusals_are_named_as_the_api_names_them() {
    let t = one(
        "    votes:\n      - {who: dave, approve: true}\n      - {who: alice, approve: true}\n    expect: {outcome: pending}\n",
    );
    let got = run(&policy(), &t).unwrap();
    assert_eq!(got.rule.as_deref(), Some("prod"));
    assert_eq!(got.outcome, Outcome::Pending);
    assert_eq!(got.still_needed, "sre 1/2 (may vote: bob)");
    assert_eq!(
        got.refused,
        vec![Refused {
            who: "dave".into(),
            code: RefusalCode::RequesterCannotVote
        }]
    );
    let d = diff(&t.expect, &got);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].field, d[0].expected.as_str(), d[0].got.as_str()),
        ("refused", "[]", "[dave: requester_cannot_vote]")
    );
}

#[test]
fn time_escalates_expires_and_lapses() {
    // Before the escalation erin is no one; after it she counts.
    let t = one(
        "    votes:\n      - {who: erin, approve: true, at: 2026-01-01T00:10:00Z}\n      - {who: erin, approve: true, at: 2026-01-01T00:31:00Z}\n      - {who: bob, approve: true, at: 2026-01-01T00:32:00Z}\n    expect: {outcome: approved}\n",
    );
    let got = run(&policy(), &t).unwrap();
    assert_eq!(got.outcome, Outcome::Approved, "{got:?}");
    assert_eq!(got.refused.len(), 1);
    assert_eq!(got.refused[0].code, RefusalCode::NotEligible);
    // The approval lapses 10 minutes later.
    let mut lapsed = t.clone();
    lapsed.now = Some(EPOCH_MS + 42 * 60_000);
    assert_eq!(run(&policy(), &lapsed).unwrap().outcome, Outcome::Expired);
    // A vote at the timeout finds it expired.
    let late = one(
        "    votes:\n      - {who: bob, approve: true, at: 2026-01-01T01:00:00Z}\n    expect: {outcome: expired}\n",
    );
    let got = run(&policy(), &late).unwrap();
    assert_eq!(
        (got.outcome, got.refused[0].code),
        (Outcome::Expired, RefusalCode::Expired)
    );
}

#[test]
fn forge_group_members_come_from_the_test_and_only_for_forge_groups() {
    let text = "tests:\n  - name: t\n    context: {environment: team, actor: dave}\n    members: {team: [sam]}\n    votes: [{who: sam, approve: true}]\n    expect: {outcome: approved}\n";
    let t = parse(text).unwrap().tests.remove(0);
    assert_eq!(run(&policy(), &t).unwrap().outcome, Outcome::Approved);
    let mut wrong = t.clone();
    wrong.members = [("sre".to_string(), vec!["sam".to_string()])].into();
    let e = run(&policy(), &wrong).unwrap_err();
    assert!(e.contains("`sre` is a group of users"), "{e}");
    let mut none = t;
    none.context.environment = "qa".into();
    let got = run(&policy(), &none).unwrap();
    assert_eq!((got.outcome, got.rule), (Outcome::NoMatchingRule, None));
}

const CHECKED: &str = "version: 1
groups:
  sre: [alice, bob]
rules:
  - name: prod
    match: { environment: production }
    require: [{ group: sre }]
    fields:
      ticket: { pattern: \"^CHG-[0-9]+$\" }
    auto_approve_if:
      - promotion: { from: staging, within: 7d }
    auto_deny_if:
      - http: { url: \"https://opa.example.com/v1\", secret_env: OPA }
";

fn checked(yaml: &str) -> Result<Got, String> {
    let p = Policy::parse("policy.yaml", CHECKED).unwrap();
    let text = format!(
        "tests:\n  - name: t\n    context: {{environment: production, actor: dave}}\n    fields: {{ticket: CHG-1}}\n{yaml}    expect: {{outcome: pending}}\n"
    );
    run(&p, &parse(&text).unwrap().tests[0])
}

#[test]
fn canned_answers_decide_as_the_check_worker_would() {
    let got = checked("    checks: {auto_approve_if: [approve], auto_deny_if: [abstain]}\n").unwrap();
    assert_eq!(got.outcome, Outcome::Approved);
    assert_eq!(
        got.reason,
        "every auto_approve_if check approved: promotion from staging within 7d: canned answer approve"
    );
    // A deny-check denying wins; a vote after it is refused.
    let got = checked(
        "    checks:\n      auto_approve_if: [approve]\n      auto_deny_if: [{answer: deny, reason: freeze}]\n    votes: [{who: alice, approve: true}]\n",
    )
    .unwrap();
    assert_eq!(got.outcome, Outcome::Denied);
    assert_eq!(
        got.reason,
        "auto_deny_if[0] (http https://opa.example.com/v1) denied: freeze"
    );
    assert_eq!(
        got.refused,
        vec![Refused {
            who: "alice".into(),
            code: RefusalCode::NotPending
        }]
    );
    // An error never approves: the people decide.
    for answers in [
        "[error], auto_deny_if: [approve]",
        "[approve], auto_deny_if: [error]",
        "[abstain], auto_deny_if: [abstain]",
    ] {
        let got = checked(&format!("    checks: {{auto_approve_if: {answers}}}\n")).unwrap();
        assert_eq!(got.outcome, Outcome::Pending, "{answers}");
        assert_eq!(got.still_needed, "sre 0/1 (may vote: alice, bob)", "{answers}");
    }
}

#[test]
fn canned_answers_must_be_one_per_check() {
    let e = checked("").unwrap_err();
    assert!(e.contains("rule `prod` has evidence checks (auto_approve_if: promotion from staging within 7d; auto_deny_if: http https://opa.example.com/v1): give their answers under `checks`"), "{e}");
    let e = checked("    checks: {auto_approve_if: [approve, approve], auto_deny_if: [abstain]}\n").unwrap_err();
    assert!(
        e.contains("checks.auto_approve_if: rule `prod` has 1 such check(s)"),
        "{e}"
    );
    assert!(e.contains("the test gives 2 answer(s)"), "{e}");
    let e = checked("    checks: {auto_approve_if: [approve]}\n").unwrap_err();
    assert!(e.contains("checks.auto_deny_if"), "{e}");
    // A rule without checks refuses canned answers.
    let t = one("    checks: {auto_approve_if: [approve]}\n    expect: {outcome: pending}\n");
    let e = run(&policy(), &t).unwrap_err();
    assert!(
        e.contains("rule `prod` has no auto_approve_if or auto_deny_if checks"),
        "{e}"
    );
}

#[test]
fn a_bad_canned_answer_is_refused_where_it_is() {
    let e = parse("tests:\n  - name: a\n    context: {}\n    checks:\n      auto_approve_if: [maybe]\n    expect: {outcome: pending}\n").unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("`maybe` is not a check's answer"), "{e}");
    let e = parse("tests:\n  - name: a\n    context: {}\n    checks:\n      auto_deny_if:\n        - {answer: deny, why: x}\n    expect: {outcome: pending}\n").unwrap_err();
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.contains("unknown field `why`"), "{e}");
}

#[test]
fn fields_are_checked_before_anything_else() {
    let p = Policy::parse("policy.yaml", CHECKED).unwrap();
    let text = "tests:\n  - name: t\n    context: {environment: production, actor: dave}\n    fields: {ticket: JIRA-1}\n    expect: {outcome: pending}\n  - name: u\n    context: {environment: production, actor: dave}\n    expect: {outcome: pending}\n";
    let f = parse(text).unwrap();
    let got = run(&p, &f.tests[0]).unwrap();
    assert_eq!(got.outcome, Outcome::InvalidField);
    assert!(
        got.reason
            .contains("\"JIRA-1\", which does not match the pattern ^CHG-[0-9]+$"),
        "{}",
        got.reason
    );
    let got = run(&p, &f.tests[1]).unwrap();
    assert_eq!(got.outcome, Outcome::MissingField);
    assert_eq!(
        got.reason,
        "field `ticket` is required by rule `prod` (pattern ^CHG-[0-9]+$)"
    );
}
