//! Evidence checks, end to end with the real `gate request`: a `promotion` from a
//! staging approval that was used, and an `http` check answered by a small server in
//! the test (approve, deny, abstain, and one that never answers within the timeout).
//! Every result is an audit event; the deciding ones are in the signed record.

use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::{AUDITOR, COMMIT, Db, TestApp, backends, outcome, token};

const ARTIFACT: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const SECRET: &str = "check-s3cret";

fn predicate(path: &Path) -> Value {
    let env: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["predicate"].clone()
}

/// The `check` audit events of request `id`.
async fn check_events(s: &TestApp, id: &str) -> Vec<Value> {
    let export = s
        .http()
        .get("/api/v1/audit/export")
        .bearer(&token(AUDITOR))
        .send()
        .await
        .text()
        .await;
    export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["request_id"] == id && e["kind"] == "check")
        .collect()
}

/// Waits (long-poll, no sleeping) until request `id` moves past version 1, as recording
/// its checks does, and returns it then.
async fn after_checks(s: &TestApp, id: &str) -> jitgate::core::api::RequestView {
    let v = s.client("alice").wait(id, Some(1), 60).await.unwrap();
    assert!(v.version > 1, "the checks of {id} were not recorded in time: {v:?}");
    v
}

async fn promotion_on(db: Db) {
    let rule = "    require: [{ group: sre, count: 1 }]
    auto_approve_if:
      - promotion: { from: staging, within: 7d }";
    let s = TestApp::builder().backend(db).rule(rule).spawn().await;
    let prod = [
        "--environment",
        "production",
        "--repository",
        "acme/app",
        "--commit",
        COMMIT,
        "--actor",
        "dave",
        "--artifact",
        ARTIFACT,
    ];

    // Nothing went through staging: the check abstains, the people of `require` decide.
    let w = s.open(&prod).await;
    assert_eq!(w.opened["status"], "pending", "{}", w.opened);
    let v = after_checks(&s, &w.id).await;
    assert_eq!(v.status.as_str(), "pending");
    // The result is on the request object, and `gate show` prints it.
    assert_eq!(v.checks.len(), 1, "{v:?}");
    assert_eq!(v.checks[0].answer.as_str(), "abstain");
    assert_eq!(v.checks[0].check, "promotion from staging within 7d");
    let show = s.run("alice", &["show", &w.id]).await;
    assert!(
        show.stdout
            .contains("check       auto_approve_if[0] promotion from staging within 7d: abstain ("),
        "{}",
        show.stdout
    );
    // And the request page, as a table row.
    let page = crate::ui::request_page(&s.http(), "alice", &w.id).await;
    let table = &page[page.find("id=\"checks\"").expect("a checks table on the page")..];
    let table = &table[..table.find("</table>").unwrap()];
    for want in [
        "auto_approve_if[0]",
        "promotion from staging within 7d",
        "<td class=\"check-answer\">abstain</td>",
    ] {
        assert!(table.contains(want), "{want}: {table}");
    }
    let ev = check_events(&s, &w.id).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["data"]["answer"], "abstain", "{ev:?}");
    assert_eq!(ev[0]["data"]["kind"], "promotion");
    assert!(ev[0]["data"]["reason"].as_str().unwrap().contains(ARTIFACT), "{ev:?}");
    s.client("bob").approve(&w.id, None).await.unwrap();
    let (code, events, stderr) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {stderr}");

    // Staging approves it (its rule decides) and the gate uses the approval.
    let staging = [
        "--environment",
        "staging",
        "--repository",
        "acme/app",
        "--commit",
        COMMIT,
        "--actor",
        "dave",
        "--artifact",
        ARTIFACT,
    ];
    let w = s.open(&staging).await;
    let staging_id = w.id.clone();
    let (code, events, stderr) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {stderr}");

    // Now production is approved by the policy, with the staging request as evidence.
    let w = s.open(&prod).await;
    let id = w.id.clone();
    let record = w.record_path().to_path_buf();
    let (code, events, stderr) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {stderr}");
    let last = outcome(&events);
    assert!(last["decided_by"].as_str().unwrap_or("").contains("(checks)"), "{last}");
    let p = predicate(&record);
    let check = &p["checks"][0];
    assert_eq!(check["answer"], "approve", "{p}");
    let promoted = &check["evidence"]["promoted"][0];
    assert_eq!(promoted["request"], json!(staging_id), "{p}");
    assert_eq!(promoted["subject"], ARTIFACT, "{p}");
    assert!(
        promoted["record_sha256"].as_str().unwrap().starts_with("sha256:"),
        "{p}"
    );
    let votes = p["votes"].as_array().unwrap();
    assert_eq!(votes.len(), 1, "{p}");
    assert_eq!(votes[0]["via"], "check", "{p}");
    assert_eq!(check_events(&s, &id).await.len(), 1);
    // A person's count: none; and the record verifies.
    let keys = format!("{}/api/v1/keys", s.url);
    let verify = s
        .run(
            "ci",
            &[
                "verify",
                record.to_str().unwrap(),
                "--key",
                &keys,
                "--artifact",
                ARTIFACT,
            ],
        )
        .await;
    assert_eq!(verify.code, 0, "{verify:?}");
    let verify = s
        .run(
            "ci",
            &[
                "verify",
                record.to_str().unwrap(),
                "--key",
                &keys,
                "--min-approvals",
                "1",
            ],
        )
        .await;
    assert_ne!(verify.code, 0, "{verify:?}");

    // Another artifact has no staging approval: the people decide.
    let other = "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
    let mut prod2 = prod.to_vec();
    let last = prod2.len() - 1;
    prod2[last] = other;
    let w = s.open(&prod2).await;
    let v = after_checks(&s, &w.id).await;
    assert_eq!(v.status.as_str(), "pending");
    s.run("ci", &["cancel", &w.id]).await;
    let (code, _, _) = w.finish().await;
    assert_eq!(code, 1);
    let out = s.run(AUDITOR, &["audit", "verify"]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test]
async fn a_promotion_from_a_used_staging_approval_approves_production() {
    for db in backends() {
        promotion_on(db).await;
    }
}

/// What the fake check service saw: each body and whether its signature held.
#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<(Value, bool)>>,
    /// Released by the test: the `hang` answer holds the connection until then.
    release: Notify,
    /// Told when a `release 1.2.3` request arrives (the restart test).
    arrived: Notify,
}

/// A check service on port 0 that answers according to the request's summary.
async fn fake_service() -> (String, Arc<Seen>) {
    use axum::http::{HeaderMap, StatusCode};
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/check",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = state.clone();
            async move {
                let sig = headers
                    .get("x-jitgate-signature")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                let ok = jitgate::core::crypto::verify_sha256_header(SECRET.as_bytes(), &body, sig);
                let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
                seen.bodies.lock().unwrap().push((doc.clone(), ok));
                let answer = match doc["summary"].as_str().unwrap_or("") {
                    "approve" => json!({"decision": "approve", "reason": "CHG-7 is approved in the CAB"}),
                    "deny" => json!({"decision": "deny", "reason": "CHG-7 was rejected by the CAB"}),
                    "abstain" => json!({"decision": "abstain"}),
                    "garbage" => json!({"decision": "yes"}),
                    "unavailable" => {
                        let body = json!({"error": "the CAB is down for maintenance"});
                        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body));
                    }
                    // The first one hangs (the server is killed meanwhile), later ones approve.
                    "release 1.2.3" => {
                        let first = seen
                            .bodies
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|(b, _)| b["id"] == doc["id"])
                            .count()
                            == 1;
                        if first {
                            seen.arrived.notify_one();
                            seen.release.notified().await;
                        }
                        json!({"decision": "approve", "reason": "asked again after the restart"})
                    }
                    _ => {
                        seen.release.notified().await;
                        json!({"decision": "approve", "reason": "too late"})
                    }
                };
                (StatusCode::OK, axum::Json(answer))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/check", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn an_http_check_approves_denies_abstains_and_times_out() {
    let (url, seen) = fake_service().await;
    let policy = format!(
        "version: 1
groups:
  sre: [alice, bob, carol]
rules:
  - name: cab approves
    match: {{ environment: production, labels: {{ list: approve }} }}
    require: [{{ group: sre, count: 1 }}]
    auto_approve_if:
      - http: {{ url: \"{url}\", timeout: 2s, secret_env: CHECK_SECRET }}
  - name: cab denies
    match: {{ environment: production, labels: {{ list: deny }} }}
    require: [{{ group: sre, count: 1 }}]
    auto_deny_if:
      - http: {{ url: \"{url}\", timeout: 2s, secret_env: CHECK_SECRET }}
  - name: everything else
    decision: deny
"
    );
    let s = TestApp::builder()
        .policy(policy)
        .env("CHECK_SECRET", SECRET)
        .spawn()
        .await;
    let open = |list: &'static str, summary: &'static str| {
        let args = vec![
            "--environment".to_string(),
            "production".into(),
            "--commit".into(),
            COMMIT.into(),
            "--actor".into(),
            "dave".into(),
            "--label".into(),
            format!("list={list}"),
            "--summary".into(),
            summary.into(),
        ];
        let s = &s;
        async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            s.open(&a).await
        }
    };

    // Approve: the policy approves, the gate exits 0, the record holds the evidence.
    let w = open("approve", "approve").await;
    let record = w.record_path().to_path_buf();
    let (code, events, stderr) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {stderr}");
    let p = predicate(&record);
    let check = &p["checks"][0];
    assert_eq!(
        (check["answer"].as_str(), check["kind"].as_str()),
        (Some("approve"), Some("http")),
        "{p}"
    );
    assert_eq!(check["reason"], "CHG-7 is approved in the CAB");
    assert_eq!(check["evidence"]["status"], 200);
    assert!(
        check["evidence"]["response_sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    {
        let bodies = seen.bodies.lock().unwrap();
        let (body, signed) = bodies.last().unwrap();
        assert!(*signed, "the signature must verify: {body}");
        assert_eq!(body["rule"], "cab approves");
        assert_eq!(body["context"]["commit"], COMMIT);
        assert_eq!(body["check"], json!({"list": "auto_approve_if", "index": 0}));
        assert!(body["id"].as_str().unwrap().starts_with("req_"), "{body}");
    }

    // Deny (a deny-check): denied with the service's reason, the gate exits 1.
    let w = open("deny", "deny").await;
    let id = w.id.clone();
    let (code, events, stderr) = w.finish().await;
    assert_eq!(code, 1, "{events:?} {stderr}");
    let last = outcome(&events);
    assert_eq!(last["status"], "denied", "{last}");
    let v = s.client("alice").get(&id).await.unwrap();
    assert!(
        v.reason
            .as_deref()
            .unwrap_or("")
            .contains("CHG-7 was rejected by the CAB"),
        "{v:?}"
    );

    // Abstain, a non-2xx (an abstention) and an answer that is no decision (an error):
    // the people decide.
    for (summary, want, reason) in [
        ("abstain", "abstain", "answered abstain"),
        ("unavailable", "abstain", "answered HTTP 503"),
        (
            "garbage",
            "error",
            "`decision` must be approve, deny or abstain, not \"yes\"",
        ),
    ] {
        let w = open("approve", summary).await;
        let v = after_checks(&s, &w.id).await;
        assert_eq!(v.status.as_str(), "pending", "{summary}");
        let ev = check_events(&s, &w.id).await;
        assert_eq!(ev[0]["data"]["answer"], want, "{ev:?}");
        assert_eq!(ev[0]["data"]["reason"], reason, "{ev:?}");
        s.client("bob").approve(&w.id, None).await.unwrap();
        let (code, events, stderr) = w.finish().await;
        assert_eq!(code, 0, "{events:?} {stderr}");
    }

    // The service accepts and never answers within the timeout: an abstention, never an
    // approval; the people decide.
    let w = open("approve", "hang").await;
    let v = after_checks(&s, &w.id).await;
    assert_eq!(v.status.as_str(), "pending");
    let ev = check_events(&s, &w.id).await;
    assert_eq!(ev[0]["data"]["answer"], "abstain", "{ev:?}");
    assert_eq!(ev[0]["data"]["reason"], "timed out after 2s", "{ev:?}");
    assert_eq!(ev[0]["data"]["evidence"]["timeout"], "2s", "{ev:?}");
    seen.release.notify_waiters();
    s.client("carol").deny(&w.id, Some("not today".into())).await.unwrap();
    let (code, events, stderr) = w.finish().await;
    assert_eq!(code, 1, "{events:?} {stderr}");

    assert!(seen.bodies.lock().unwrap().iter().all(|(_, ok)| *ok));
    let out = s.run(AUDITOR, &["audit", "verify"]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

async fn restart_on(db: Db) {
    let (url, seen) = fake_service().await;
    let rule = format!(
        "    require: [{{ group: sre, count: 1 }}]
    auto_approve_if:
      - http: {{ url: \"{url}\", timeout: 30s, secret_env: CHECK_SECRET }}"
    );
    let mut s = TestApp::builder()
        .backend(db)
        .rule(&rule)
        .env("CHECK_SECRET", SECRET)
        .spawn()
        .await;
    let v = s.open_via_api("dave").await;
    // The check is in flight when the server dies: nothing of it is recorded.
    seen.arrived.notified().await;
    s.kill().await;
    s.respawn().await;
    // The new process's timer finds the request unchecked and runs its checks again.
    let v = s.client("alice").wait(&v.id, Some(1), 60).await.unwrap();
    assert_eq!(v.status.as_str(), "approved", "{v:?}");
    let ev = check_events(&s, &v.id).await;
    assert_eq!(ev.len(), 1, "recorded once: {ev:?}");
    assert_eq!(ev[0]["data"]["reason"], "asked again after the restart");
    seen.release.notify_waiters();
    let calls = seen
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|(b, _)| b["id"] == json!(v.id))
        .count();
    assert_eq!(calls, 2);
    let out = s.run(AUDITOR, &["audit", "verify"]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test]
async fn checks_interrupted_by_a_restart_run_again_and_are_recorded_once() {
    for db in backends() {
        restart_on(db).await;
    }
}

#[tokio::test]
async fn policy_explain_and_check_name_the_checks() {
    let rule = "    require: [{ group: sre, count: 1 }]
    auto_approve_if:
      - promotion: { from: staging, within: 7d }";
    let s = TestApp::builder().rule(rule).spawn().await;
    let ctx = s.dir.path().join("ctx.json");
    std::fs::write(&ctx, r#"{"environment": "production", "actor": "dave"}"#).unwrap();
    let policy = s.policy.to_str().unwrap().to_string();
    let out = s
        .run(
            "ci",
            &["policy", "explain", &policy, "--request", ctx.to_str().unwrap()],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("auto_approve_if: promotion from staging within 7d (run once the request is open)"),
        "{out:?}"
    );
    // A check that cannot be used is refused at its line.
    let bad = s.dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        "promotion: { from: staging, within: 7d }",
        "http: { url: \"http://cab.example\", secret_env: CAB }",
    );
    std::fs::write(&bad, text).unwrap();
    let out = s.run("ci", &["policy", "check", bad.to_str().unwrap()]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("bad.yaml:")
            && out
                .stderr
                .contains("auto_approve_if[0]: `http.url`: `http://cab.example` must be https://"),
        "{out:?}"
    );
}

#[tokio::test]
async fn policy_explain_json_has_the_stages_checks_and_break_glass() {
    let policy = "version: 1
groups:
  sre: [alice, bob, carol]
  security: [erin]
  oncall: [dave]
rules:
  - name: staged
    match: { environment: staging }
    stages:
      - { name: security, require: [{ group: security, count: 1 }] }
      - { name: release, require: [{ group: sre, count: 1 }] }
  - name: production
    match: { environment: production }
    require: [{ group: sre, count: 1 }]
    auto_approve_if:
      - promotion: { from: staging, within: 7d }
    auto_deny_if:
      - http: { url: \"https://127.0.0.1:9/opa\", timeout: 3s, secret_env: OPA_SECRET }
    break_glass: { groups: [oncall], ttl: 30m, review: { group: sre, count: 1, within: 24h } }
";
    let s = TestApp::builder().policy(policy).spawn().await;
    let file = s.policy.to_str().unwrap().to_string();
    let explain = |env: &str| {
        let ctx = s.dir.path().join(format!("{env}.json"));
        std::fs::write(&ctx, json!({"environment": env, "actor": "dave"}).to_string()).unwrap();
        let file = file.clone();
        let s = &s;
        async move {
            let args = [
                "--output",
                "json",
                "policy",
                "explain",
                &file,
                "--request",
                ctx.to_str().unwrap(),
            ];
            let out = s.run("ci", &args).await;
            assert_eq!(out.code, 0, "{out:?}");
            serde_json::from_str::<Value>(&out.stdout).unwrap()
        }
    };
    let v = explain("production").await;
    assert_eq!(v["matched"], "production", "{v}");
    assert_eq!(
        v["auto_approve_if"],
        json!([{"promotion": {"from": "staging", "within": "7d"}}]),
        "{v}"
    );
    assert_eq!(v["auto_deny_if"][0]["http"]["url"], "https://127.0.0.1:9/opa", "{v}");
    assert_eq!(v["auto_deny_if"][0]["http"]["secret_env"], "OPA_SECRET", "{v}");
    assert_eq!(v["break_glass"]["groups"], json!(["oncall"]), "{v}");
    assert_eq!(v["break_glass"]["review"]["group"], "sre", "{v}");
    assert!(v.get("stages").is_none(), "{v}");

    let v = explain("staging").await;
    assert_eq!(v["matched"], "staged", "{v}");
    assert_eq!(v["stages"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["stages"][0]["name"], "security", "{v}");
    assert_eq!(v["stages"][1]["name"], "release", "{v}");
    assert_eq!(v["stages"][0]["require"][0]["group"], "security", "{v}");
    for key in ["auto_approve_if", "auto_deny_if", "break_glass"] {
        assert!(v.get(key).is_none(), "{key}: {v}");
    }
}
