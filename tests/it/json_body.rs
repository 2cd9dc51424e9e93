//! The answers to JSON bodies the API refuses, as they are today (on the router in
//! process): unknown or mistyped fields on create are 422 `invalid_body`; on a vote, 400.

use axum::body::Body;
use serde_json::json;
use tower::ServiceExt as _;

use crate::helpers::*;

fn code_and_message(v: &serde_json::Value) -> (&str, &str) {
    (
        v["error"]["code"].as_str().unwrap(),
        v["error"]["message"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn refused_bodies_keep_their_answers() {
    let app = TestApp::builder().in_process().await;
    let http = app.http();
    let ci = token("ci");
    let ctx = json!({"environment": "production", "actor": "erin"});

    let (status, v) = http
        .api("POST", "/requests", &ci, Some(json!({"context": ctx, "bogus": 1})))
        .await;
    assert_eq!(status, 422, "{v}");
    let (code, message) = code_and_message(&v);
    assert_eq!(code, "invalid_body");
    assert!(message.contains("unknown field `bogus`"), "{v}");

    let r = http
        .post("/api/v1/requests")
        .bearer(&ci)
        .body("text/plain", json!({"context": ctx}).to_string())
        .send()
        .await;
    assert_eq!(r.status, 400);
    let v = r.json().await;
    assert_eq!(
        code_and_message(&v),
        ("bad_request", "expected `Content-Type: application/json`")
    );

    // No Content-Length: the body limit cuts the body off as the extractor reads it.
    let big = json!({"context": ctx, "summary": "x".repeat(100 * 1024)}).to_string();
    let req = http::Request::post("/api/v1/requests")
        .header("authorization", format!("Bearer {ci}"))
        .header("content-type", "application/json")
        .body(Body::from(big))
        .unwrap();
    let r = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), 413);
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        code_and_message(&v),
        ("payload_too_large", "request body is larger than the server accepts")
    );

    let (_, v) = http.api("POST", "/requests", &ci, Some(json!({"context": ctx}))).await;
    let id = v["id"].as_str().unwrap().to_string();
    let (status, v) = http
        .api(
            "POST",
            &format!("/requests/{id}/approve"),
            &token("bob"),
            Some(json!({"bogus": 1})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let (code, message) = code_and_message(&v);
    assert_eq!(code, "bad_request");
    assert!(message.starts_with("malformed JSON body: unknown field `bogus`"), "{v}");
}
