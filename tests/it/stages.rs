//! Stages (`stages:` on a rule), end to end: a real server, the real `gate request`
//! waiting and `gate approve`/`gate deny`/`gate pending` as subprocesses, a webhook
//! receiver on wiremock for `stage_opened`; and the escalation that approves with no new
//! vote, its clock injected through `Engine::expire(id, now)` in process.

use crate::helpers::*;
use jitgate::core::api::{NotificationView, RequestView};
use jitgate::core::decide::Status;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET_ENV: &str = "JITGATE_TEST_STAGES_SECRET";

/// security (alice, bob) first, then release (carol, erin, alice); dave asks.
const STAGED: &str = "version: 1
groups:
  security: [alice, bob]
  release: [carol, erin, alice]
rules:
  - name: production
    match: { environment: production }
    stages:
      - name: security
        require: [{ group: security }]
      - name: release
        require: [{ group: release }]
";

async fn start(db: Db, hook: &str) -> TestApp {
    let notify = format!(
        "notify:\n  retry_base: 50ms\n  retry_max: 400ms\n  timeout: 2s\n  webhooks:\n    - name: audit\n      url: {hook}\n      secret_env: {SECRET_ENV}\n"
    );
    TestApp::builder()
        .backend(db)
        .policy(STAGED)
        .config_extra(&notify)
        .env(SECRET_ENV, "whsec-stages-0123456789")
        .spawn()
        .await
}

async fn view(s: &TestApp, id: &str) -> RequestView {
    s.client("ci").get(id).await.unwrap()
}

/// The ids in `who`'s inbox, through the real `gate pending`.
async fn pending(s: &TestApp, who: &str) -> Vec<String> {
    let out = s.run(who, &["pending", "--output", "json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let list: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    list.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

/// Request `id`'s outbox row of `event` once it is delivered.
async fn delivered(s: &TestApp, id: &str, event: &str) -> NotificationView {
    delivered_row(s, id, &format!("{event} delivered"), |n| n.event == event).await
}

/// The bodies the receiver got for `event`.
async fn bodies(mock: &MockServer, event: &str) -> Vec<Value> {
    mock.received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["event"] == event)
        .collect()
}

#[tokio::test]
async fn stages_open_in_order_and_the_gate_exits_0() {
    for db in backends() {
        let mock = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&mock)
            .await;
        let s = start(db, &format!("{}/hook", mock.uri())).await;
        let gate = s.open(&PRODUCTION_BY_DAVE).await;
        let id = gate.id.clone();
        let v = view(&s, &id).await;
        assert_eq!(v.open_stage.as_deref(), Some("security"));
        assert_eq!(v.requirements[1].stage.as_deref(), Some("release"));
        assert!(v.requirements[1].may_vote.is_empty(), "{v:?}");
        assert!(
            v.needs().contains("stage release: release 0/1 (not open yet)"),
            "{}",
            v.needs()
        );

        // The release approver first: refused, by the API and by `gate approve`.
        let (status, body) = s
            .http()
            .api(
                "POST",
                &format!("/requests/{id}/approve"),
                &token("carol"),
                Some(json!({})),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("stage_not_open")),
            "{body}"
        );
        let out = s.run("erin", &["approve", &id]).await;
        assert_ne!(out.code, 0, "{out:?}");
        assert!(
            out.stderr
                .contains("stage `release` is not open yet: it opens once stage `security` is approved"),
            "{out:?}"
        );
        // A deny from a stage not open yet is refused too.
        let out = s.run("carol", &["deny", &id, "--reason", "not yet"]).await;
        assert_ne!(out.code, 0, "{out:?}");
        assert!(
            out.stderr.contains("stage_not_open") || out.stderr.contains("is not open yet"),
            "{out:?}"
        );
        assert_eq!(view(&s, &id).await.status, Status::Pending);
        // Only the open stage's approvers have it in their inbox, in the CLI and the web UI.
        assert!(pending(&s, "bob").await.contains(&id));
        assert!(!pending(&s, "carol").await.contains(&id));
        let web = s.http();
        let (cookie, _) = crate::ui::sign_in(&web, "carol").await;
        let page = |route: String| {
            let (web, cookie) = (web.clone(), cookie.clone());
            async move { web.get(&route).header("cookie", &cookie).send().await.text().await }
        };
        // "Waiting for you" comes before the other pending requests (shown read-only).
        let waiting_for_me = |html: String| {
            html.split("Other pending requests")
                .next()
                .unwrap_or_default()
                .contains(&id)
        };
        assert!(!waiting_for_me(page("/".into()).await));
        let detail = page(format!("/requests/{id}")).await;
        assert!(detail.contains("stage release (not open yet): release"), "{detail}");
        assert!(detail.contains("<dt>Open stage</dt><dd>security</dd>"), "{detail}");
        assert!(
            !detail.contains("id=\"approve\""),
            "no vote form before the stage opens"
        );

        let out = s.run("bob", &["approve", &id]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let v = view(&s, &id).await;
        assert_eq!((v.status, v.open_stage.as_deref()), (Status::Pending, Some("release")));
        assert!(pending(&s, "carol").await.contains(&id));
        assert!(waiting_for_me(page("/".into()).await));
        let detail = page(format!("/requests/{id}")).await;
        assert!(detail.contains("stage release (waiting): release"), "{detail}");
        assert!(detail.contains("id=\"approve\""), "{detail}");
        let show = s.run("carol", &["show", &id]).await;
        assert!(show.stdout.contains("open stage  release"), "{show:?}");
        assert!(
            show.stdout
                .contains("· [release] 1 of release: no approvals yet, may vote: carol, erin, alice"),
            "{show:?}"
        );
        // The release approvers are told, once, naming the stage.
        let n = delivered(&s, &id, "stage_opened").await;
        assert_eq!(n.delivery, format!("{id}:stage_opened-1:webhook:audit"));
        let got = bodies(&mock, "stage_opened").await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["stage"], "release");
        assert_eq!(got[0]["audience"], json!(["carol", "erin", "alice"]));
        let opened = bodies(&mock, "opened").await;
        assert_eq!(
            opened[0]["audience"],
            json!(["alice", "bob"]),
            "only the first stage at opening"
        );
        // And the log says when release opened: right after bob's vote, in its transaction.
        let mut audit = s.client(AUDITOR).audit(&id).await.unwrap();
        audit.retain(|e| e.kind != "refused");
        let kinds: Vec<&str> = audit.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["created", "vote", "stage_opened"], "{audit:?}");
        assert_eq!(
            (audit[2].actor.as_str(), &audit[2].data),
            ("policy", &json!({"stage": "release"}))
        );
        assert_eq!(audit[2].at, audit[1].at);

        let out = s.run("carol", &["approve", &id]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let (code, events, stderr) = gate.finish().await;
        assert_eq!(code, 0, "{events:?} {stderr}");
        assert_eq!(outcome(&events)["decision"], "approved", "{events:?}");
        assert_eq!(s.run(AUDITOR, &["audit", "verify"]).await.code, 0);
    }
}

#[tokio::test]
async fn a_deny_in_the_second_stage_denies() {
    let mock = MockServer::start().await;
    let s = start(Db::Sqlite, &format!("{}/hook", mock.uri())).await;
    let gate = s.open(&PRODUCTION_BY_DAVE).await;
    let id = gate.id.clone();
    assert_eq!(s.run("alice", &["approve", &id]).await.code, 0);
    let out = s.run("erin", &["deny", &id, "--reason", "release freeze"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let (code, events, _) = gate.finish().await;
    assert_eq!(code, 1, "{events:?}");
    assert_eq!(outcome(&events)["status"], "denied");
}

#[tokio::test]
async fn one_person_in_both_stages_counts_once() {
    for db in backends() {
        let mock = MockServer::start().await;
        let s = start(db, &format!("{}/hook", mock.uri())).await;
        let id = s.open_via_api("dave").await.id;
        // alice is in both: her approval meets security and opens release...
        let v = s.client("alice").approve(&id, None).await.unwrap();
        assert_eq!((v.status, v.open_stage.as_deref()), (Status::Pending, Some("release")));
        // ...and she cannot fill release too.
        let e = s.client("alice").approve(&id, None).await.unwrap_err();
        assert_eq!(e.status(), Some(409), "{e}");
        assert!(e.to_string().contains("already voted"), "{e}");
        let v = s.client("erin").approve(&id, None).await.unwrap();
        assert_eq!(v.status, Status::Approved);
        assert_eq!(v.requirements[0].approved_by, ["alice"]);
        assert_eq!(v.requirements[1].approved_by, ["erin"]);
        assert_eq!(v.open_stage, None);
    }
}

/// sre 1 and security 1; dave asks; at 30m sre's members are added as voters. bob and
/// carol approve (carol counts for nothing: only sre's slot fits her); the escalation
/// lets her fill security, and approves the request with no new vote.
#[tokio::test]
async fn an_escalation_that_meets_the_threshold_approves() {
    for db in backends() {
        let app = TestApp::builder()
            .backend(db)
            .rule(
                "    require: [{ group: sre, count: 1 }, { group: security, count: 1 }]\n    timeout: 4h\n    escalate:\n      - { after: 30m, add_groups: [sre] }",
            )
            .in_process()
            .await;
        let http = app.http();
        let body = json!({"context": {"repository": "acme/app", "ref": "refs/heads/main", "commit": COMMIT,
            "actor": "dave", "environment": "production", "action": "deploy"}, "summary": "release"});
        let (status, v) = http.api("POST", "/requests", &token("ci"), Some(body)).await;
        assert_eq!(status, 201, "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        for who in ["bob", "carol"] {
            let (status, v) = http
                .api("POST", &format!("/requests/{id}/approve"), &token(who), Some(json!({})))
                .await;
            assert_eq!((status, v["status"].as_str()), (200, Some("pending")), "{who}: {v}");
        }
        // The timer's clock, 31 minutes on: the step is due.
        let now = jitgate::core::duration::now_ms() + 31 * 60_000;
        let v = app.engine.expire(&id, now).await.unwrap().expect("the escalation ran");
        assert_eq!(v.status, Status::Approved, "{v:?}");
        assert_eq!(v.decided_by.as_deref(), Some("escalation (bob, carol)"));
        assert_eq!(v.votes.len(), 2, "no vote was added");
        // The outcome replays from the signed events: the pipeline can use it.
        let (status, c) = http
            .api(
                "POST",
                &format!("/requests/{id}/consume"),
                &token("ci"),
                Some(json!({})),
            )
            .await;
        assert_eq!((status, c["status"].as_str()), (200, Some("consumed")), "{c}");
        let (_, bad) = app.engine.scan_requests().await.unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        let kinds: Vec<String> = app
            .engine
            .store
            .audit_for(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.kind)
            .collect();
        let pos = |k: &str| kinds.iter().position(|x| x == k).unwrap();
        assert_eq!(pos("escalated") + 1, pos("approved"), "{kinds:?}");
    }
}
