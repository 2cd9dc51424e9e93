//! Back-pressure per client (issue 9): `429` with `Retry-After` for an address that keeps
//! failing authentication, for a caller whose actions keep being refused (and no audit
//! event per refusal past the burst), and for a caller holding too many long-waits.

use crate::helpers::*;
use jitgate::core::api::{Context, CreateRequest};
use reqwest::StatusCode;
use serde_json::Value;

async fn open(s: &TestApp, n: usize, actor: &str) -> jitgate::core::api::RequestView {
    let body = CreateRequest {
        context: Context {
            repository: format!("acme/app{n}"),
            git_ref: "refs/heads/main".into(),
            commit: COMMIT.into(),
            actor: actor.into(),
            environment: "production".into(),
            action: "deploy".into(),
            ..Default::default()
        },
        summary: format!("release {n}"),
        ..Default::default()
    };
    s.client("ci").create(&body).await.unwrap().0
}

/// A 429 in our error shape, with a `Retry-After` of at least a second.
fn assert_throttled(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &Value) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    let after: u64 = headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after >= 1, "Retry-After: {after}");
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = client.get(url).bearer_auth(token).send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_address_that_keeps_failing_authentication_gets_429_but_static_tokens_still_work() {
    let s = TestApp::builder()
        .config_extra("throttle:\n  failed_auth: {burst: 3, per_minute: 1}\n")
        .spawn()
        .await;
    let opened = open(&s, 1, "dave").await;
    let held = opened.holder_token.expect("a holder token");
    let from_one = reqwest::Client::new();
    let list = format!("{}/api/v1/requests", s.url);
    for _ in 0..3 {
        let (status, _, body) = get(&from_one, &list, "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, headers, body) = get(&from_one, &list, "guess").await;
    assert_throttled(status, &headers, &body);
    // A missing header counts as a failure too, and is throttled the same way.
    let r = from_one.get(&list).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // A configured token still works from the throttled address ...
    let (status, _, body) = get(&from_one, &list, &token("alice")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ... but a request's holder token, which costs a lookup, waits its turn.
    let show = format!("{list}/{}", opened.id);
    let (status, headers, body) = get(&from_one, &show, &held).await;
    assert_throttled(status, &headers, &body);

    // Another address is not affected.
    let from_two = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let (status, _, body) = get(&from_two, &list, "guess").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = get(&from_two, &show, &held).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn refused_actions_are_throttled_per_caller_and_stop_writing_audit_events() {
    for db in backends() {
        let s = TestApp::builder()
            .backend(db)
            .config_extra("throttle:\n  refused: {burst: 2, per_minute: 1}\n")
            .spawn()
            .await;
        // alice triggered the deploy: she may not approve it.
        let id = open(&s, 1, "alice").await.id;
        let http = s.http();
        let approve = format!("/requests/{id}/approve");
        for _ in 0..2 {
            let (status, body) = http.api("POST", &approve, &token("alice"), None).await;
            assert_eq!(status, 403, "{db:?}: {body}");
            assert_eq!(body["error"]["code"], "requester_cannot_vote");
        }
        for _ in 0..5 {
            let r = http
                .post(&format!("/api/v1{approve}"))
                .bearer(&token("alice"))
                .send()
                .await;
            let (status, headers) = (r.status, r.headers.clone());
            let body = r.json().await;
            assert_throttled(status, &headers, &body);
        }
        let events = s.client("ci").audit(&id).await.unwrap();
        let refused = events.iter().filter(|e| e.kind == "refused").count();
        assert_eq!(
            refused, 2,
            "{db:?}: one audit event per refusal within the burst, none after"
        );

        // Another caller is not affected, and the request's history is intact.
        let (status, body) = http.api("POST", &approve, &token("bob"), None).await;
        assert_eq!(status, 200, "{db:?}: {body}");
        assert_eq!(body["status"], "approved");
        let v = s.client(crate::helpers::AUDITOR).audit_verify().await.unwrap();
        assert!(v.ok, "{db:?}: {v:?}");
    }
}

/// Waits (no sleep) until the server reports `n` gates in a long-wait.
async fn until_waiting(s: &TestApp, n: usize) {
    let want = format!("jitgate_waiting_gates {n}\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = s.http().get("/metrics").send().await.text().await;
        if m.contains(&want) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never {n} waiting: {m}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_caller_holding_too_many_long_waits_gets_429_until_one_ends() {
    let s = TestApp::builder()
        .config_extra("max_waits_per_caller: 2\n")
        .spawn()
        .await;
    let a = open(&s, 1, "dave").await;
    let b = open(&s, 2, "dave").await;
    let c = open(&s, 3, "dave").await;
    let waits: Vec<_> = [&a, &b]
        .into_iter()
        .map(|r| {
            let (client, id) = (s.client("ci"), r.id.clone());
            tokio::spawn(async move { client.wait(&id, Some(1), 60).await })
        })
        .collect();
    until_waiting(&s, 2).await;

    // A third wait by the same pipeline is refused before it starts, even one that would
    // answer at once (version 0 is already past).
    let third = format!("{}/api/v1/requests/{}/wait?version=0", s.url, c.id);
    let plain = reqwest::Client::new();
    let (status, headers, body) = get(&plain, &third, &token("ci")).await;
    assert_throttled(status, &headers, &body);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_waits_per_caller"),
        "{body}"
    );
    // Another pipeline has its own allowance: it is not throttled, and gets the answer
    // for a request it may not read (404, after the allowance is checked).
    let (status, _, body) = get(&plain, &third, &token("ci2")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // When a wait ends, its place is free again.
    s.client("bob").approve(&a.id, None).await.unwrap();
    let mut waits = waits.into_iter();
    let done = waits.next().unwrap().await.unwrap().unwrap();
    assert_eq!(done.status.as_str(), "approved");
    until_waiting(&s, 1).await;
    let (status, _, body) = get(&plain, &third, &token("ci")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    s.client("bob").approve(&b.id, None).await.unwrap();
    waits.next().unwrap().await.unwrap().unwrap();
}

async fn replay(s: &TestApp) -> jitgate::core::api::RequestView {
    let body = CreateRequest {
        context: Context {
            repository: "acme/app".into(),
            actor: "dave".into(),
            environment: "production".into(),
            ..Default::default()
        },
        idempotency_key: Some("deploy-42".into()),
        ..Default::default()
    };
    s.client("ci").create(&body).await.unwrap().0
}

/// Each replay of a create gives the opener a new holder token (the gate that lost the
/// first answer needs one), but only the newest eight work: replays cannot pile them up.
#[tokio::test]
async fn replayed_creates_keep_only_the_newest_holder_tokens() {
    for db in backends() {
        let s = TestApp::builder().backend(db).spawn().await;
        let mut tokens = Vec::new();
        let mut id = String::new();
        for _ in 0..12 {
            let v = replay(&s).await;
            assert!(id.is_empty() || id == v.id, "a replay opens no second request");
            id = v.id;
            tokens.push(v.holder_token.expect("a holder token on every replay"));
        }
        let http = s.http();
        let mut working = Vec::new();
        for t in &tokens {
            let (status, body) = http.api("GET", &format!("/requests/{id}"), t, None).await;
            assert!(status == 200 || status == 401, "{db:?}: {status} {body}");
            working.push(status == 200);
        }
        assert_eq!(working.iter().filter(|w| **w).count(), 8, "{db:?}: {working:?}");
        assert!(working[11], "{db:?}: the newest token works");
    }
}
