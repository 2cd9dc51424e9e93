use super::*;
use crate::core::policy::{ApprovalScope, Policy};

fn run(job: &str, attempt: &str) -> Context {
    Context {
        platform: "github".into(),
        repository: "acme/web".into(),
        run_id: "77".into(),
        run_attempt: attempt.into(),
        job: job.into(),
        environment: "production".into(),
        commit: "a".repeat(40),
        ..Default::default()
    }
}

#[test]
fn the_scope_is_the_run_attempt_never_the_job() {
    let arts = vec!["sha256:1".to_string(), "sha256:2".to_string()];
    let k = scope_key(&run("deploy-eu", "1"), &arts, "production").unwrap();
    // Another job of the same run, artifacts in another order or repeated: the same scope.
    let swapped = vec!["sha256:2".to_string(), "sha256:1".to_string(), "sha256:1".to_string()];
    assert_eq!(scope_key(&run("deploy-us", "1"), &swapped, "production").unwrap(), k);
    // A re-run, another commit, another artifact set, environment or rule: another scope.
    assert_ne!(scope_key(&run("deploy-eu", "2"), &arts, "production").unwrap(), k);
    let mut c = run("deploy-eu", "1");
    c.commit = "b".repeat(40);
    assert_ne!(scope_key(&c, &arts, "production").unwrap(), k);
    assert_ne!(scope_key(&run("deploy-eu", "1"), &arts[..1], "production").unwrap(), k);
    assert_ne!(scope_key(&run("deploy-eu", "1"), &arts, "other").unwrap(), k);
    let mut c = run("deploy-eu", "1");
    c.environment = "staging".into();
    assert_ne!(scope_key(&c, &arts, "production").unwrap(), k);
    let mut c = run("deploy-eu", "1");
    c.repository = "acme/api".into();
    assert_ne!(scope_key(&c, &arts, "production").unwrap(), k);
    // No run id, no run to share.
    let mut c = run("deploy-eu", "1");
    c.run_id.clear();
    assert_eq!(scope_key(&c, &arts, "production"), None);
}

#[test]
fn covered_requests_follow_and_never_outlast_the_covering_approval() {
    assert_eq!(follow(Status::Pending), None);
    assert_eq!(follow(Status::Approved), Some(Follow::Approve));
    assert_eq!(follow(Status::Consumed), Some(Follow::Approve));
    assert_eq!(follow(Status::Denied), Some(Follow::Deny));
    assert_eq!(follow(Status::Expired), Some(Follow::Cancel));
    assert_eq!(follow(Status::Canceled), Some(Follow::Cancel));
    assert_eq!(covered_ttl(100, 1_000, Some(400)), Some(300));
    assert_eq!(covered_ttl(100, 50, Some(400)), Some(50));
    assert_eq!(covered_ttl(400, 1_000, Some(400)), None);
    assert_eq!(covered_ttl(100, 1_000, None), None);
}

fn covering(decision: &str) -> Covering {
    Covering {
        id: "req_a".into(),
        scope: "sha256:s".into(),
        decision: decision.into(),
        event_seq: 7,
        event_hash: "h7".into(),
    }
}

#[test]
fn a_scope_vote_must_name_a_decision_of_its_scope() {
    let created = json!({"scope": "sha256:s"});
    let vote = json!({"covering": covering("approved")});
    assert_eq!(check_vote(&created, &vote, true).unwrap(), covering("approved"));
    // Forged: no covering request, another scope, the other decision, an unscoped request.
    assert!(check_vote(&created, &json!({}), true).is_err());
    let mut other = covering("approved");
    other.scope = "sha256:t".into();
    assert!(check_vote(&created, &json!({ "covering": other }), true).is_err());
    assert!(check_vote(&created, &vote, false).is_err());
    assert!(check_vote(&json!({}), &vote, true).is_err());

    let events = vec![
        (5, "created", "h5", json!({"scope": "sha256:s"})),
        (6, "vote", "h6", json!({})),
        (7, "approved", "h7", json!({})),
    ];
    check_covering_events(&covering("approved"), &events).unwrap();
    // The named event is a vote, not a decision; the hash differs; the scope differs.
    let mut c = covering("approved");
    c.event_seq = 6;
    c.event_hash = "h6".into();
    assert!(check_covering_events(&c, &events).is_err());
    let mut c = covering("approved");
    c.event_hash = "h8".into();
    assert!(check_covering_events(&c, &events).is_err());
    let mut ev = events.clone();
    ev[0].3 = json!({"scope": "sha256:t"});
    assert!(check_covering_events(&covering("approved"), &ev).is_err());
    assert!(check_covering_events(&covering("denied"), &events).is_err());
}

#[test]
fn a_new_request_supersedes_older_pending_ones_but_not_its_run() {
    let new = Candidate {
        id: "req_n",
        created_at: 10,
        status: Status::Pending,
        repository: "acme/web",
        environment: "production",
        scope: Some("s2"),
    };
    let old = Candidate {
        id: "req_o",
        created_at: 5,
        scope: Some("s1"),
        ..new
    };
    assert!(supersedes(&new, &old));
    assert!(supersedes(&new, &Candidate { scope: None, ..old }));
    assert!(!supersedes(&new, &new), "itself");
    assert!(
        !supersedes(
            &new,
            &Candidate {
                scope: Some("s2"),
                ..old
            }
        ),
        "its own run"
    );
    assert!(!supersedes(&new, &Candidate { created_at: 11, ..old }), "newer");
    assert!(
        !supersedes(
            &new,
            &Candidate {
                status: Status::Approved,
                ..old
            }
        ),
        "decided"
    );
    assert!(!supersedes(
        &new,
        &Candidate {
            repository: "acme/api",
            ..old
        }
    ));
    assert!(!supersedes(
        &new,
        &Candidate {
            environment: "staging",
            ..old
        }
    ));
    // Opened in the same millisecond: the id orders them, so exactly one supersedes.
    let twin = Candidate { created_at: 10, ..old };
    assert!(supersedes(&twin, &new) != supersedes(&new, &twin));
}

#[test]
fn the_rule_keys_parse_and_are_checked() {
    let policy = |rule: &str| {
        format!(
            "version: 1\ngroups:\n  sre: [alice, bob]\nrules:\n  - name: production\n    match: {{ environment: production }}\n{rule}\n"
        )
    };
    let p = Policy::parse(
        "p.yaml",
        &policy("    require: [{ group: sre }]\n    approval_scope: run\n    supersede: true"),
    )
    .unwrap();
    assert_eq!(p.rules[0].approval_scope, ApprovalScope::Run);
    assert!(p.rules[0].supersede);
    let p = Policy::parse("p.yaml", &policy("    require: [{ group: sre }]")).unwrap();
    assert_eq!(p.rules[0].approval_scope, ApprovalScope::Request);
    assert!(!p.rules[0].supersede);
    // Stored rules of old requests read back, and the defaults are not written.
    let text = serde_json::to_string(&p.rules[0]).unwrap();
    assert!(
        !text.contains("approval_scope") && !text.contains("supersede"),
        "{text}"
    );

    let e = Policy::parse(
        "p.yaml",
        &policy("    require: [{ group: sre }]\n    approval_scope: job"),
    )
    .unwrap_err();
    assert_eq!((e.line, e.file.as_str()), (8, "p.yaml"), "{e}");
    assert!(e.message.contains("job"), "{e}");
    let e = Policy::parse(
        "p.yaml",
        &policy("    require: [{ group: sre }]\n    supersede: sometimes"),
    )
    .unwrap_err();
    assert_eq!(e.line, 8, "{e}");
    let e = Policy::parse("p.yaml", &policy("    decision: approve\n    approval_scope: run")).unwrap_err();
    assert_eq!((e.line, e.column), (8, 5), "{e}");
    assert!(e.message.contains("no approval to share"), "{e}");
}
