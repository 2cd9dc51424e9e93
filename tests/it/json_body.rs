//! The answers the API refuses with (on the router in process): JSON that does not parse
//! is 400 `bad_request`, unknown or mistyped fields 422 `invalid_body`, on create and on
//! votes alike; and every other refusal (405, a query string or path parameter that does
//! not parse, an unknown route, a `limit` out of range) in the same error shape.

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
    assert_eq!(status, 422, "an unknown field is refused on a vote as on create: {v}");
    let (code, message) = code_and_message(&v);
    assert_eq!(code, "invalid_body");
    assert!(message.contains("unknown field `bogus`"), "{v}");
    for verb in ["deny", "cancel"] {
        let (status, v) = http
            .api(
                "POST",
                &format!("/requests/{id}/{verb}"),
                &token("bob"),
                Some(json!({"reason": 7})),
            )
            .await;
        assert_eq!((status, code_and_message(&v).0), (422, "invalid_body"), "{verb}: {v}");
    }

    // JSON that does not parse is a 400 on both.
    for (path, who, body) in [
        ("/api/v1/requests".to_string(), &ci, "{\"context\": "),
        (format!("/api/v1/requests/{id}/approve"), &token("bob"), "{\"reason\": "),
    ] {
        let r = http.post(&path).bearer(who).body("application/json", body).send().await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(code_and_message(&r.json().await).0, "bad_request", "{path}");
    }
}

/// The status and `error.code` of an answer that must be in the error shape.
async fn refusal(r: Resp) -> (u16, String, String) {
    let status = r.status.as_u16();
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "a {status} in the error shape"
    );
    let v = r.json().await;
    let (code, message) = code_and_message(&v);
    (status, code.to_string(), message.to_string())
}

#[tokio::test]
async fn every_kind_of_refusal_is_in_the_error_shape() {
    let app = TestApp::builder().in_process().await;
    let http = app.http();
    let ci = token("ci");

    // A route that exists, with a method it does not take: 405 with `Allow`.
    let r = http
        .request(http::Method::DELETE, "/api/v1/requests")
        .bearer(&ci)
        .send()
        .await;
    let allow = r.headers.get("allow").map(|v| v.to_str().unwrap().to_string());
    let (status, code, message) = refusal(r).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"), "{message}");
    assert!(message.contains("DELETE"), "{message}");
    let allow = allow.expect("a 405 says which methods are allowed");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let r = http.get("/api/v1/requests/req_x/approve").bearer(&ci).send().await;
    assert_eq!(refusal(r).await.1, "method_not_allowed");

    // A query string that does not parse: 400 naming the parameter.
    for path in [
        "/api/v1/requests?limit=many",
        "/api/v1/requests/req_x/wait?timeout=-1",
        "/api/v1/audit/export?after=first",
        "/api/v1/log/proof/inclusion?index=x&size=1",
    ] {
        let r = http.get(path).bearer(&ci).send().await;
        let (status, code, message) = refusal(r).await;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{path}: {message}");
        let param = path.split('?').nth(1).unwrap().split('=').next().unwrap();
        assert!(message.contains(param), "{path}: {message}");
    }

    // A path parameter that does not decode (not UTF-8): 400.
    let r = http.get("/api/v1/requests/%FF%FE").bearer(&ci).send().await;
    assert_eq!(refusal(r).await.0, 400);
    let r = http.get("/api/v1/log/leaves/first").bearer(&ci).send().await;
    assert_eq!(refusal(r).await.0, 400);

    // A request id with a control character, as a query parameter as in a path: 422
    // naming it, before the database sees it (PostgreSQL's text cannot hold NUL: this
    // was a 500 there, found by schemathesis).
    let r = http
        .get("/api/v1/notifications?request=%00")
        .bearer(&token("bob"))
        .send()
        .await;
    let (status, code, message) = refusal(r).await;
    assert_eq!((status, code.as_str()), (422, "invalid_field"), "{message}");
    assert!(message.starts_with("request: "), "{message}");

    // No such route, under the API or anywhere.
    for path in ["/api/v1/nothing", "/api/v2/requests", "/api"] {
        let r = http.get(path).bearer(&ci).send().await;
        assert_eq!(refusal(r).await.1, "not_found", "{path}");
    }

    // A cosignature that is not text: 400 in the shape, not axum's text.
    let r = http
        .post("/api/v1/log/cosign")
        .body("text/plain", vec![0xff, 0xfe])
        .send()
        .await;
    assert_eq!(refusal(r).await.0, 400);
}

#[tokio::test]
async fn a_limit_out_of_range_is_a_400_naming_the_range_on_every_listing() {
    let app = TestApp::builder().in_process().await;
    let http = app.http();
    for (path, range) in [
        ("/api/v1/requests?limit=0", "1 to 5000"),
        ("/api/v1/requests?limit=5001", "1 to 5000"),
        ("/api/v1/notifications?limit=0", "1 to 5000"),
        ("/api/v1/notifications?limit=5001&wait=30&version=0", "1 to 5000"),
        ("/api/v1/audit/export?limit=0", "1 to 100000"),
        ("/api/v1/audit/export?limit=100001", "1 to 100000"),
    ] {
        let r = http.get(path).bearer(&token("bob")).send().await;
        let (status, code, message) = refusal(r).await;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{path}: {message}");
        assert!(message.contains(range), "{path}: {message}");
    }
    for path in [
        "/api/v1/requests?limit=5000",
        "/api/v1/notifications?limit=1",
        "/api/v1/audit/export?limit=100000",
    ] {
        // The whole outbox and the audit log are an auditor's.
        let who = if path.starts_with("/api/v1/requests") {
            "bob"
        } else {
            crate::helpers::AUDITOR
        };
        let r = http.get(path).bearer(&token(who)).send().await;
        assert_eq!(r.status, 200, "{path}");
    }
}
