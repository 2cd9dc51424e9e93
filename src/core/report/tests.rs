use serde_json::{Value, json};

use super::*;
use crate::core::audit::record::KeyPair;

/// A record as the server signs it, reduced to what the report reads.
fn record(
    id: &str,
    env: &str,
    status: &str,
    opened: &str,
    decided: &str,
    votes: Value,
    reason: Option<&str>,
) -> String {
    let kp = KeyPair::from_seed([3; 32]);
    let st = json!({
        "_type": crate::core::audit::record::STATEMENT_TYPE,
        "subject": [{"name": "git+acme/app", "digest": {"gitCommit": "abc"}},
                    {"name": "sha256:ff", "digest": {"sha256": "ff"}}],
        "predicateType": crate::core::audit::record::PREDICATE_TYPE,
        "predicate": {
            "request": {"id": id, "created_at": opened, "requester": ["dave", "dave-gh"],
                "requester_sources": [{"identity": "dave", "source": "asserted", "from": "context.actor"}],
                "context": {"environment": env, "repository": "acme/app", "ref": "refs/heads/main", "commit": "abc"},
                "verified_claims": null},
            "policy": {"rule": env, "digest": format!("sha256:{env}")},
            "votes": votes,
            "outcome": {"status": status, "decided_at": decided, "decided_by": "someone", "reason": reason},
        }
    });
    serde_json::to_string(&kp.sign(&st)).unwrap()
}

fn vote(who: &str, decision: &str, via: &str) -> Value {
    json!({"voter": who, "decision": decision, "at": "2026-10-02T10:00:00Z", "via": via})
}

fn rows() -> Vec<Row> {
    [
        (
            "r1",
            "production",
            "consumed",
            "2026-10-02T09:00:00Z",
            "2026-10-02T09:00:10Z",
            json!([vote("alice", "approve", "token")]),
            None,
        ),
        (
            "r2",
            "staging",
            "approved",
            "2026-10-03T09:00:00Z",
            "2026-10-03T09:00:00Z",
            json!([vote("policy", "approve", "policy")]),
            Some("rule staging approves"),
        ),
        (
            "r3",
            "production",
            "denied",
            "2026-10-04T09:00:00Z",
            "2026-10-04T09:01:00Z",
            json!([vote("bob", "deny", "sso")]),
            Some("no, \"not\" now"),
        ),
        (
            "r4",
            "production",
            "expired",
            "2026-10-05T09:00:00Z",
            "2026-10-05T10:00:00Z",
            json!([]),
            Some("nobody decided before the timeout"),
        ),
        (
            "r5",
            "production",
            "approved",
            "2026-11-01T09:00:00Z",
            "2026-11-01T09:00:05Z",
            json!([vote("carol", "approve", "ui")]),
            None,
        ),
    ]
    .into_iter()
    .map(|(id, env, status, o, d, v, why)| row_of(id, &record(id, env, status, o, d, v, why)).unwrap())
    .collect()
}

#[test]
fn rows_say_what_the_records_say() {
    let env = record(
        "r1",
        "production",
        "consumed",
        "2026-10-02T09:00:00Z",
        "2026-10-02T09:00:10Z",
        json!([vote("alice", "approve", "token")]),
        None,
    );
    let r = row_of("r1", &env).unwrap();
    assert_eq!(r.request_id, "r1");
    assert_eq!(r.git_ref, "refs/heads/main");
    assert_eq!(r.artifacts, vec!["sha256:ff"]);
    assert_eq!(r.time_to_decision_ms, 10_000);
    assert_eq!(r.decided_how, "human");
    assert_eq!(
        r.requesters[0],
        Requester {
            identity: "dave".into(),
            source: "asserted".into(),
            from: "context.actor".into()
        }
    );
    // A requester listed without a source is still a requester, its source unknown.
    assert_eq!(r.requesters[1].source, "unknown");
    assert_eq!(r.record_digest, hex::encode(Sha256::digest(env.as_bytes())));
    assert!(r.separation_of_duties.held, "{:?}", r.separation_of_duties);
    assert!(matches!(row_of("x", "{}"), Err(ReportError::Malformed(_))));
}

#[test]
fn the_summary_counts_the_period_only() {
    let period = Period::parse("2026-10-01", "2026-10-31").unwrap();
    let rep = build(rows(), &period, None, 0);
    let ids: Vec<&str> = rep.rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2", "r3", "r4"]);
    let s = &rep.summary;
    assert_eq!(s.changes, 4);
    assert_eq!(s.by_outcome["denied"], 1);
    assert_eq!(s.by_environment["production"], 3);
    assert_eq!((s.automatic, s.human, s.undecided), (1, 2, 1));
    // Times 0 s, 10 s, 60 s, 3600 s: nearest-rank median is the 2nd, p90 the 4th.
    assert_eq!(s.median_time_to_decision_ms, Some(10_000));
    assert_eq!(s.p90_time_to_decision_ms, Some(3_600_000));
    assert_eq!(s.denied[0].reason.as_deref(), Some("no, \"not\" now"));
    assert_eq!(s.expired[0].request_id, "r4");
    let digests: Vec<&str> = s.policies.iter().map(|p| p.digest.as_str()).collect();
    assert_eq!(digests, ["sha256:production", "sha256:staging"]);
    assert_eq!(s.policies[0].first_seen, "2026-10-02T09:00:00Z");
    assert_eq!(s.policies[0].last_seen, "2026-10-05T09:00:00Z");
    assert_eq!(s.policies[0].changes, 3);
    let staging = build(rows(), &period, Some("staging"), 0);
    assert_eq!(staging.rows.len(), 1);
    assert_eq!(build(vec![], &period, None, 0).summary.median_time_to_decision_ms, None);
}

#[test]
fn separation_of_duties_is_computed_not_assumed() {
    let req = vec![Requester {
        identity: "Dave".into(),
        source: "asserted".into(),
        from: String::new(),
    }];
    let v = |voter: &str, for_: Option<&str>| Vote {
        voter: voter.into(),
        decision: "approve".into(),
        at: String::new(),
        via: "token".into(),
        on_behalf_of: for_.map(str::to_string),
        reason: None,
    };
    assert!(separation(&req, &[v("alice", None), v("bob", None)]).held);
    let s = separation(&req, &[v("dave", None)]);
    assert!(
        !s.held && s.detail.contains("dave approved but is a requester"),
        "{s:?}"
    );
    let s = separation(&req, &[v("bob", Some("dave"))]);
    assert!(!s.held && s.detail.contains("for dave, a requester"), "{s:?}");
    let s = separation(&req, &[v("bob", Some("carol")), v("carol", None)]);
    assert!(!s.held && s.detail.contains("carol counted twice"), "{s:?}");
    assert_eq!(separation(&req, &[]).detail, "no approvals");
}

#[test]
fn csv_is_rfc4180_and_defused() {
    let period = Period::parse("2026-10-01", "2026-10-31").unwrap();
    let mut rep = build(rows(), &period, None, 0);
    rep.rows[0].reason = Some("=HYPERLINK(\"x\"), and\r\nmore".into());
    let text = render::csv(&rep);
    assert!(text.starts_with("\"request_id\",\"environment\""), "{text}");
    assert!(text.ends_with("\r\n"));
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let head: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(head, render::CSV_COLUMNS);
    let recs: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(recs.len(), 4);
    let reason = head.iter().position(|h| h == "reason").unwrap();
    assert_eq!(&recs[0][reason], "'=HYPERLINK(\"x\"), and\r\nmore");
    assert_eq!(&recs[2][reason], "no, \"not\" now");
    assert_eq!(render::defuse("-1"), "'-1");
    assert_eq!(render::defuse("a=b"), "a=b");
}

#[test]
fn html_escapes_and_prints_on_a4() {
    let period = Period::parse("2026-10-01", "2026-10-31").unwrap();
    let mut rep = build(rows(), &period, None, 0);
    rep.rows[2].reason = Some("<script>alert(1)</script> & co".into());
    let page = render::html(&rep);
    assert!(page.contains("@page { size: A4"), "{page}");
    assert!(!page.contains("<script"), "{page}");
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; co"),
        "{page}"
    );
}
