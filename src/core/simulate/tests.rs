//! Histories rebuilt from events and replayed through new policies: every kind of change
//! the simulator reports, and the requests it must leave alone.

use serde_json::{Value, json};

use super::*;
use crate::core::api::AuditEvent;

/// 2026-01-01T00:00:00Z, a Thursday.
pub(super) const T0: i64 = 1_767_225_600_000;
pub(super) const MIN: i64 = 60_000;
pub(super) const HOUR: i64 = 60 * MIN;

pub(super) const OLD: &str = "version: 1
groups:
  sre: [alice, bob, carol]
  security: [alice, dave]
  ops: [erin, frank]
rules:
  - name: staging
    match: { environment: staging }
    decision: approve
  - name: production
    match: { environment: production }
    require: [{ group: sre, count: 1 }]
  - name: everything else
    decision: deny
";

pub(super) fn policy(text: &str) -> Policy {
    Policy::parse("new.yaml", text).unwrap_or_else(|e| panic!("{e}"))
}

/// The old policy with the production rule's lines replaced.
fn with_production(lines: &str) -> Policy {
    policy(&OLD.replace("    require: [{ group: sre, count: 1 }]\n", lines))
}

/// Builds one request's events: `created` first, then whatever is pushed.
pub(super) struct Log {
    pub(super) events: Vec<AuditEvent>,
    id: String,
}

impl Log {
    pub(super) fn new() -> Log {
        Log {
            events: vec![],
            id: String::new(),
        }
    }

    pub(super) fn push(&mut self, at: i64, kind: &str, actor: &str, data: Value) -> &mut Log {
        self.events.push(AuditEvent {
            seq: self.events.len() as i64 + 1,
            at: rfc3339(at),
            request_id: self.id.clone(),
            kind: kind.into(),
            actor: actor.into(),
            data,
            prev_hash: String::new(),
            hash: String::new(),
            at_ms: at,
            sig: None,
        });
        self
    }

    /// A request `id` for `env` by dave, under `rule` needing `count` of sre.
    pub(super) fn open(&mut self, id: &str, env: &str, rule: &str, count: u32, at: i64) -> &mut Log {
        let reqs = if count == 0 {
            json!([])
        } else {
            json!([{"group": "sre", "count": count, "members": ["alice", "bob", "carol"]}])
        };
        self.open_with(id, env, rule, reqs, json!({}), at)
    }

    pub(super) fn open_with(
        &mut self,
        id: &str,
        env: &str,
        rule: &str,
        reqs: Value,
        fields: Value,
        at: i64,
    ) -> &mut Log {
        self.id = id.into();
        let mut data = json!({
            "context": {"repository": "acme/app", "ref": "refs/heads/main", "commit": "abc", "actor": "dave",
                        "environment": env, "action": "deploy", "platform": "generic"},
            "summary": "release", "artifacts": [], "rule": rule, "policy_digest": "sha256:00",
            "requirements": reqs, "requester": ["dave"], "requester_sources": [],
            "expires_at": rfc3339(at + 24 * HOUR),
        });
        if fields != json!({}) {
            data["fields"] = fields;
        }
        self.push(at, "created", "ci", data)
    }

    pub(super) fn vote(&mut self, at: i64, who: &str, approve: bool) -> &mut Log {
        let decision = if approve { "approve" } else { "deny" };
        self.push(
            at,
            "vote",
            who,
            json!({"decision": decision, "reason": if approve { Value::Null } else { json!("no") }, "via": "cli"}),
        )
    }

    pub(super) fn auto(&mut self, at: i64, approve: bool) -> &mut Log {
        let (d, k) = if approve {
            ("approve", "approved")
        } else {
            ("deny", "denied")
        };
        self.push(
            at,
            "vote",
            "policy:x",
            json!({"decision": d, "automatic": true, "via": "policy"}),
        )
        .push(at, k, "policy", json!({"automatic": true}))
    }

    pub(super) fn histories(&self) -> Vec<History> {
        histories(&self.events, 0).unwrap()
    }
}

pub(super) fn one(p: &Policy, log: &Log, end: i64) -> Simulated {
    let h = log.histories();
    assert_eq!(h.len(), 1);
    compare(&h[0], &replay(p, &h[0], end))
}

pub(super) fn field<'a>(s: &'a Simulated, name: &str) -> Option<(&'a str, &'a str)> {
    s.changes
        .iter()
        .find(|c| c.field == name)
        .map(|c| (c.old.as_str(), c.new.as_str()))
}

/// An approval of production by alice, as the old policy (1 of sre) approved it.
fn approved_by_alice() -> Log {
    let mut l = Log::new();
    l.open("r1", "production", "production", 1, T0)
        .vote(T0 + MIN, "alice", true)
        .push(T0 + MIN, "approved", "alice", json!({}));
    l
}

#[test]
fn the_same_policy_changes_nothing() {
    let p = policy(OLD);
    let mut staging = Log::new();
    staging.open("s1", "staging", "staging", 0, T0).auto(T0, true);
    let mut dev = Log::new();
    dev.open("d1", "dev", "everything else", 0, T0).auto(T0, false);
    let mut denied = Log::new();
    denied
        .open("r2", "production", "production", 1, T0)
        .vote(T0 + MIN, "bob", false)
        .push(T0 + MIN, "denied", "bob", json!({}));
    for log in [&approved_by_alice(), &staging, &dev, &denied] {
        let s = one(&p, log, T0 + 10 * MIN);
        assert!(s.changes.is_empty(), "{s:?}");
        assert!(s.why.is_empty(), "{s:?}");
    }
}

#[test]
fn a_stricter_count_leaves_an_approved_request_pending() {
    let s = one(
        &with_production("    require: [{ group: sre, count: 2 }]\n"),
        &approved_by_alice(),
        T0 + 10 * MIN,
    );
    assert_eq!(field(&s, "rule"), None);
    assert_eq!(
        field(&s, "requirements"),
        Some(("1 of sre (alice, bob, carol)", "2 of sre (alice, bob, carol)"))
    );
    assert_eq!(field(&s, "outcome"), Some(("approved", "pending")));
    assert_eq!(s.why, vec!["the approvals given meet only 1 of 2 sre"]);
    assert_eq!(
        (s.id.as_str(), s.environment.as_str(), s.repository.as_str()),
        ("r1", "production", "acme/app")
    );
    assert_eq!(s.opened, "2026-01-01T00:00:00Z");
}

#[test]
fn a_removed_rule_refuses() {
    let p = policy(
        "version: 1
groups:
  sre: [alice, bob, carol]
rules:
  - name: production
    match: { environment: production }
    require: [{ group: sre, count: 1 }]
",
    );
    let mut staging = Log::new();
    staging.open("s1", "staging", "staging", 0, T0).auto(T0, true);
    let s = one(&p, &staging, T0);
    assert_eq!(field(&s, "rule"), Some(("staging", "(none)")));
    assert_eq!(field(&s, "outcome"), Some(("approved", "refused (no_matching_rule)")));
    // No rule: no requirements to compare.
    assert_eq!(field(&s, "requirements"), None);
    assert_eq!(
        s.why,
        vec!["no rule matches (production: environment is `staging`, the rule wants `production`)"]
    );
}

#[test]
fn an_automatic_deny_the_new_policy_approves_or_asks_people_for() {
    let mut dev = Log::new();
    dev.open("d1", "dev", "everything else", 0, T0).auto(T0, false);
    let approve = policy(
        &OLD.replace(
            "  - name: everything else\n",
            "  - name: everything else\n    decision: approve\n",
        )
        .replace("    decision: deny\n", ""),
    );
    let s = one(&approve, &dev, T0);
    assert_eq!(field(&s, "outcome"), Some(("denied", "approved")));
    assert_eq!(s.why, vec!["rule `everything else` approves by itself"]);
    assert_eq!(field(&s, "rule"), None);
    assert_eq!(field(&s, "requirements"), None, "both `none`");
    let ask = policy(&OLD.replace("    decision: deny\n", "    require: [{ group: ops, count: 1 }]\n"));
    let s = one(&ask, &dev, T0 + HOUR);
    assert_eq!(field(&s, "outcome"), Some(("denied", "pending")));
    assert_eq!(field(&s, "requirements"), Some(("none", "1 of ops (erin, frank)")));
}

#[test]
fn a_voter_no_longer_eligible_leaves_it_pending() {
    let p = policy(&OLD.replace("sre: [alice, bob, carol]", "sre: [bob, carol]"));
    let s = one(&p, &approved_by_alice(), T0 + 10 * MIN);
    assert_eq!(field(&s, "outcome"), Some(("approved", "pending")));
    assert_eq!(
        field(&s, "requirements"),
        Some(("1 of sre (alice, bob, carol)", "1 of sre (bob, carol)"))
    );
    assert!(
        s.why[0]
            .starts_with("the approval by alice at 2026-01-01T00:01:00Z would be refused: you are not in any group"),
        "{:?}",
        s.why
    );
}

#[test]
fn a_required_field_the_request_lacks_or_breaks_refuses_it() {
    let p = with_production(
        "    require: [{ group: sre, count: 1 }]\n    fields:\n      ticket: { pattern: \"^CHG-[0-9]+$\" }\n",
    );
    let s = one(&p, &approved_by_alice(), T0 + 10 * MIN);
    assert_eq!(field(&s, "outcome"), Some(("approved", "refused (missing_field)")));
    assert_eq!(field(&s, "rule"), None, "the rule matched; the field refused");
    assert!(
        s.why[0].contains("field `ticket` is required by rule `production`"),
        "{:?}",
        s.why
    );
    let mut bad = Log::new();
    bad.open_with(
        "r9",
        "production",
        "production",
        json!([{"group": "sre", "count": 1, "members": ["alice", "bob", "carol"]}]),
        json!({"ticket": "JIRA-1"}),
        T0,
    )
    .vote(T0 + MIN, "alice", true)
    .push(T0 + MIN, "approved", "alice", json!({}));
    let s = one(&p, &bad, T0 + 10 * MIN);
    assert_eq!(field(&s, "outcome"), Some(("approved", "refused (invalid_field)")));
    let mut good = bad.events.clone();
    good[0].data["fields"]["ticket"] = json!("CHG-7");
    let h = histories(&good, 0).unwrap();
    assert!(compare(&h[0], &replay(&p, &h[0], T0 + 10 * MIN)).changes.is_empty());
}

#[test]
fn a_shorter_timeout_expires_it_before_the_vote() {
    let mut late = Log::new();
    late.open("r1", "production", "production", 1, T0)
        .vote(T0 + 2 * HOUR, "alice", true)
        .push(T0 + 2 * HOUR, "approved", "alice", json!({}));
    let p = with_production("    require: [{ group: sre, count: 1 }]\n    timeout: 1h\n");
    let s = one(&p, &late, T0 + 3 * HOUR);
    assert_eq!(field(&s, "outcome"), Some(("approved", "expired")));
    assert!(
        s.why[0].contains("would be refused: the new rule's timeout has passed"),
        "{:?}",
        s.why
    );
    assert!(
        s.why
            .iter()
            .any(|w| w == "rule `production` times out at 2026-01-01T01:00:00Z"),
        "{:?}",
        s.why
    );
}

#[test]
fn a_longer_timeout_adds_no_votes_nobody_cast() {
    let mut expired = Log::new();
    expired.open("r1", "production", "production", 1, T0).push(
        T0 + 24 * HOUR,
        "expired",
        "timer",
        json!({"was": "pending"}),
    );
    let p = with_production("    require: [{ group: sre, count: 1 }]\n    timeout: 48h\n");
    let s = one(&p, &expired, T0 + 30 * HOUR);
    assert!(s.changes.is_empty(), "{s:?}");
}

#[test]
fn a_consume_outside_the_new_window_is_refused() {
    // Saturday 2026-01-03 12:00 UTC.
    let sat = T0 + 2 * 24 * HOUR + 12 * HOUR;
    let mut used = Log::new();
    used.open("r1", "production", "production", 1, sat)
        .vote(sat + MIN, "alice", true)
        .push(sat + MIN, "approved", "alice", json!({}))
        .push(sat + 2 * MIN, "consumed", "ci", json!({}));
    let p = with_production(
        "    require: [{ group: sre, count: 1 }]\n    windows: { allow: \"Mon-Fri 08:00-18:00 UTC\" }\n",
    );
    let s = one(&p, &used, sat + 3 * MIN);
    assert_eq!(field(&s, "outcome"), Some(("consumed", "approved")));
    assert!(
        s.why[0].contains("the new rule's change window is closed"),
        "{:?}",
        s.why
    );
    // Past the approval's validity, the unused approval has expired.
    let s = one(&p, &used, sat + 2 * HOUR);
    assert_eq!(field(&s, "outcome"), Some(("consumed", "expired")));
    // A shorter approval_ttl: the consume comes too late.
    let p = with_production("    require: [{ group: sre, count: 1 }]\n    approval_ttl: 30s\n");
    let s = one(&p, &used, sat + 3 * MIN);
    assert_eq!(field(&s, "outcome"), Some(("consumed", "expired")));
    assert!(s.why[0].contains("approval_ttl (30s) has passed"), "{:?}", s.why);
}

#[test]
fn a_cancel_replays_and_is_refused_once_the_new_rule_decided() {
    let mut canceled = Log::new();
    canceled.open("r1", "production", "production", 1, T0).push(
        T0 + 5 * MIN,
        "canceled",
        "ci",
        json!({"reason": "gave up"}),
    );
    let s = one(&policy(OLD), &canceled, T0 + HOUR);
    assert!(s.changes.is_empty(), "{s:?}");
    let p = with_production("    decision: approve\n");
    let s = one(&p, &canceled, T0 + 10 * MIN);
    assert_eq!(field(&s, "outcome"), Some(("canceled", "approved")));
    assert_eq!(
        field(&s, "requirements"),
        Some(("1 of sre (alice, bob, carol)", "none"))
    );
    assert!(
        s.why
            .iter()
            .any(|w| w.contains("the cancel at 2026-01-01T00:05:00Z would be refused")),
        "{:?}",
        s.why
    );
}

#[test]
fn an_escalation_of_the_new_rule_lets_a_later_vote_count() {
    let mut erin = Log::new();
    erin.open_with(
        "r1",
        "production",
        "production",
        json!([{"group": "ops", "count": 1, "members": ["erin", "frank"]}]),
        json!({}),
        T0,
    )
    .vote(T0 + 40 * MIN, "erin", true)
    .push(T0 + 40 * MIN, "approved", "erin", json!({}));
    let p =
        with_production("    require: [{ group: sre, count: 1 }]\n    escalate: [{ after: 30m, add_groups: [ops] }]\n");
    let s = one(&p, &erin, T0 + HOUR);
    assert_eq!(field(&s, "outcome"), None, "{s:?}");
    assert_eq!(
        field(&s, "requirements"),
        Some(("1 of ops (erin, frank)", "1 of sre (alice, bob, carol)"))
    );
    // Before the step is due, erin is nobody the rule asks.
    let p =
        with_production("    require: [{ group: sre, count: 1 }]\n    escalate: [{ after: 50m, add_groups: [ops] }]\n");
    let s = one(&p, &erin, T0 + HOUR);
    assert_eq!(field(&s, "outcome"), Some(("approved", "pending")));
}

#[test]
fn forge_group_members_are_those_the_request_saw() {
    let mut l = Log::new();
    l.open_with(
        "r1",
        "production",
        "production",
        json!([{"group": "security", "count": 1, "members": [], "source": "github_team:acme/sec"}]),
        json!({}),
        T0,
    )
    .push(
        T0 + MIN,
        "vote",
        "carol",
        json!({"decision": "approve", "forge_groups": ["security"]}),
    )
    .push(T0 + MIN, "approved", "carol", json!({}));
    // The same team under another name: carol still counts; the requirement names it.
    let p = policy(
        &OLD.replace(
            "  ops: [erin, frank]\n",
            "  ops: [erin, frank]\n  sec: { github_team: acme/sec }\n",
        )
        .replace(
            "    require: [{ group: sre, count: 1 }]\n",
            "    require: [{ group: sec, count: 1 }]\n",
        ),
    );
    let s = one(&p, &l, T0 + HOUR);
    assert_eq!(field(&s, "outcome"), None, "{s:?}");
    assert_eq!(
        field(&s, "requirements"),
        Some((
            "1 of security (github_team:acme/sec)",
            "1 of sec (github_team:acme/sec)"
        ))
    );
}

#[test]
fn a_delegated_vote_counts_as_the_delegator() {
    let mut l = Log::new();
    l.open("r1", "production", "production", 1, T0)
        .push(
            T0 + MIN,
            "vote",
            "erin",
            json!({"decision": "approve", "on_behalf_of": "alice"}),
        )
        .push(T0 + MIN, "approved", "erin", json!({}));
    assert!(one(&policy(OLD), &l, T0 + 2 * MIN).changes.is_empty());
    let p = policy(&OLD.replace("sre: [alice, bob, carol]", "sre: [bob, carol]"));
    let s = one(&p, &l, T0 + 2 * MIN);
    assert!(s.why[0].starts_with("the approval by erin for alice at"), "{:?}", s.why);
}

#[test]
fn histories_take_the_period_and_their_own_events() {
    let mut l = Log::new();
    l.open("old", "production", "production", 1, T0 - HOUR)
        .vote(T0 - HOUR + MIN, "alice", true);
    l.id = String::new();
    l.push(T0, "delegation_created", "alice", json!({"to": "erin"}));
    l.open("new", "production", "production", 1, T0)
        .vote(T0 + MIN, "bob", true);
    l.id = "old".into();
    l.push(T0 + 2 * MIN, "approved", "alice", json!({}));
    let h = histories(&l.events, T0).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].id, "new");
    assert_eq!(h[0].status, Status::Pending);
    assert_eq!(h[0].steps.len(), 1);
    assert_eq!(histories(&l.events, 0).unwrap().len(), 2);
    // Out of order in the input: sorted by seq.
    let mut rev = l.events.clone();
    rev.reverse();
    assert_eq!(histories(&rev, 0).unwrap()[0].id, "old");
}

#[test]
fn a_malformed_history_names_its_event() {
    let mut l = approved_by_alice();
    l.events[0].data["requirements"] = json!("two");
    let e = histories(&l.events, 0).unwrap_err();
    assert_eq!((e.seq, e.kind.as_str()), (1, "created"));
    assert!(e.why.contains("`requirements` does not parse"), "{e}");
    let mut l = approved_by_alice();
    l.events[0].data["expires_at"] = json!("tomorrow");
    assert!(histories(&l.events, 0).unwrap_err().why.contains("expires_at"));
    let mut l = approved_by_alice();
    l.events[1].data["decision"] = json!("maybe");
    let e = histories(&l.events, 0).unwrap_err();
    assert_eq!(e.seq, 2);
    assert!(e.to_string().starts_with("event #2 (vote): unknown decision"), "{e}");
    let mut l = approved_by_alice();
    let again = l.events[0].clone();
    l.events.push(AuditEvent { seq: 9, ..again });
    assert!(histories(&l.events, 0).unwrap_err().why.contains("created twice"));
}

#[test]
fn the_summary_counts_each_kind() {
    let p = with_production("    require: [{ group: sre, count: 2 }]\n");
    let mut all = approved_by_alice().events;
    let mut staging = Log::new();
    staging.open("s1", "staging", "staging", 0, T0).auto(T0, true);
    for mut e in staging.events {
        e.seq += 100;
        all.push(e);
    }
    let h = histories(&all, 0).unwrap();
    // Within the approvals' validity: the staging approval still stands.
    let (changed, sum) = simulate(&p, &h, T0 + 10 * MIN);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].id, "r1");
    assert_eq!((sum.replayed, sum.unchanged, sum.changed), (2, 1, 1));
    assert_eq!((sum.rule, sum.requirements, sum.outcome), (0, 1, 1));
    assert_eq!(sum.outcomes.get("approved → pending"), Some(&1));
}

#[test]
fn needs_prints_users_sorted_and_forge_groups_by_source() {
    let r = |g: &str, n: u32, m: &[&str], s: Option<&str>| Requirement {
        group: g.into(),
        count: n,
        members: m.iter().map(|x| x.to_string()).collect(),
        source: s.map(str::to_string),
        stage: None,
    };
    assert_eq!(needs(&[]), "none");
    assert_eq!(
        needs(&[
            r("sre", 2, &["carol", "alice"], None),
            r("sec", 1, &["x"], Some("github_team:a/b"))
        ]),
        "2 of sre (alice, carol) AND 1 of sec (github_team:a/b)"
    );
}
