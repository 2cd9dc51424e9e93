//! Every answer carries an `x-request-id` (the client's, when it sent one), and every log
//! line of a request names it with the method and path, never the query string or a token.

use crate::helpers::*;

/// On the router in process: an id is made, or the client's kept, and answered, on every
/// kind of route (operations, API, UI, the 404 fallback).
#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = TestApp::builder().in_process().await;
    let http = app.http();
    let mut seen = Vec::new();
    for path in ["/healthz", "/api/v1/requests", "/login", "/no/such/route"] {
        let r = http.get(path).send().await;
        let id = r.headers["x-request-id"].to_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{path}: {id}");
        seen.push(id);
    }
    seen.dedup();
    assert_eq!(seen.len(), 4, "one id per request: {seen:?}");
    let r = http
        .get("/api/v1/requests")
        .header("x-request-id", "client-id-42")
        .send()
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["x-request-id"], "client-id-42");
}

/// On a real process: the sign-in's log line carries the id the browser sent.
#[tokio::test]
async fn the_log_lines_of_a_request_carry_its_id() {
    let s = TestApp::spawn().await;
    let c = s.http();
    let r = c.get("/login").send().await;
    let (pre, _) = r.cookie("gate_prelogin").unwrap();
    let html = r.text().await;
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &html[at..at + html[at..].find('"').unwrap()];
    let r = c
        .post("/login?marker=from-the-query")
        .header("x-request-id", "it-sign-in-7")
        .header("cookie", format!("gate_prelogin={pre}"))
        .form(&[("csrf", csrf), ("token", &token("alice")), ("next", "/")])
        .send()
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["x-request-id"], "it-sign-in-7");
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("signed in to the web UI"))
        .unwrap_or_else(|| panic!("no sign-in line: {log}"));
    assert!(
        line.contains(r#"http{id="it-sign-in-7" method=POST path="/login"}"#),
        "{line}"
    );
    assert!(
        !log.contains("from-the-query"),
        "the query string is never logged: {log}"
    );
    assert!(!log.contains(&token("alice")), "a token is never logged: {log}");
}
