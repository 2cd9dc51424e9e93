//! End to end: a real server on port 0 and the real `gate` binary; the HTTP error shapes
//! on the router in process.

use crate::helpers::*;
use jitgate::core::decide::Status;
use serde_json::Value;

#[tokio::test]
async fn automatic_approve_and_deny() {
    let s = TestApp::spawn().await;
    let w = s
        .open(&["--environment", "staging", "--commit", COMMIT, "--actor", "dave"])
        .await;
    assert_eq!(w.opened["status"], "approved");
    assert_eq!(w.opened["rule"], "staging");
    let record = w.record_path().to_path_buf();
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    assert_eq!(outcome(&events)["decision"], "approved");
    // The signing key was made on first start, readable by the server's user only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.dir.path().join("signing-key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let export = s.run(crate::helpers::AUDITOR, &["audit", "export"]).await.stdout;
    assert!(
        export.contains(r#""kind":"vote""#) && export.contains(r#""automatic":true"#),
        "{export}"
    );
    let keys = format!("{}/api/v1/keys", s.url);
    let v = s
        .run(
            "ci",
            &["verify", record.to_str().unwrap(), "--key", &keys, "--commit", COMMIT],
        )
        .await;
    assert_eq!(v.code, 0, "{v:?}");

    let w = s.open(&["--environment", "qa", "--actor", "dave"]).await;
    assert_eq!(w.opened["status"], "denied");
    let record = w.record_path().to_path_buf();
    let (code, events, _) = w.finish().await;
    assert_eq!(code, 1);
    assert_eq!(outcome(&events)["decision"], "denied");
    assert!(outcome(&events)["reason"].as_str().unwrap().contains("everything else"));
    // The denial has a signed record too, and `gate verify` refuses it as an approval.
    let v = s.run("ci", &["verify", record.to_str().unwrap(), "--key", &keys]).await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("`denied`"), "{v:?}");
}

#[tokio::test]
async fn two_of_three_with_the_requester_in_the_group() {
    let s = TestApp::builder()
        .rule("    require: [{ group: sre, count: 2 }]")
        .spawn()
        .await;
    // alice-gh is alice's GitHub login: she is the requester.
    let w = s
        .open(&["--environment", "production", "--actor", "alice-gh", "--commit", COMMIT])
        .await;
    assert_eq!(w.opened["status"], "pending");
    let approvers: Vec<&str> = w.opened["approvers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["bob", "carol"]);

    let e = s.client("alice").approve(&w.id, None).await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert!(e.to_string().contains("separation of duties"), "{e}");
    let cli = s.run("alice", &["approve", &w.id]).await;
    assert_eq!(cli.code, 1, "{cli:?}");

    assert_eq!(s.run("bob", &["approve", &w.id, "--reason", "ok"]).await.code, 0);
    let mid = s.client("ci").get(&w.id).await.unwrap();
    assert_eq!(mid.status, Status::Pending);
    assert_eq!(s.run("carol", &["approve", &w.id]).await.code, 0);
    let record = w.record_path().to_path_buf();
    let id = w.id.clone();
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    let out = outcome(&events);
    assert_eq!(out["approved_by"], serde_json::json!(["bob", "carol"]));
    let rec = std::fs::read_to_string(&record).unwrap();
    assert!(rec.contains("payloadType"));
    let after = s.client("ci").get(&id).await.unwrap();
    assert_eq!(after.status, Status::Consumed);
}

#[tokio::test]
async fn one_person_in_two_required_groups_counts_once() {
    let s = TestApp::builder()
        .rule("    require:\n      - { group: sre, count: 1 }\n      - { group: security, count: 1 }")
        .spawn()
        .await;
    let w = s.open(&["--environment", "production", "--actor", "erin"]).await;
    s.client("alice").approve(&w.id, None).await.unwrap();
    let v = s.client("ci").get(&w.id).await.unwrap();
    assert_eq!(v.status, Status::Pending, "alice is in both groups but counts once");
    assert_eq!(v.requirements.iter().filter(|r| r.met).count(), 1);
    // A second vote by alice is refused: one person counts once.
    let again = s.client("alice").approve(&w.id, None).await.unwrap_err();
    assert_eq!(again.status(), Some(409));
    s.client("bob").approve(&w.id, None).await.unwrap();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn deny_needs_a_reason() {
    let s = TestApp::builder()
        .rule("    require: [{ group: sre, count: 2 }]")
        .spawn()
        .await;
    let w = s.open(&["--environment", "production", "--actor", "erin"]).await;
    let (status, body) = s
        .http()
        .api(
            "POST",
            &format!("/requests/{}/deny", w.id),
            &token("bob"),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "reason_required");
    let blank = s.client("bob").deny(&w.id, Some("  ".into())).await.unwrap_err();
    assert_eq!(blank.status(), Some(422));

    let d = s.run("bob", &["deny", &w.id, "--reason", "no change ticket"]).await;
    assert_eq!(d.code, 0, "{d:?}");
    let (code, events, _) = w.finish().await;
    assert_eq!(code, 1);
    let out = outcome(&events);
    assert_eq!(out["decision"], "denied");
    assert_eq!(out["reason"], "no change ticket");
    assert_eq!(out["decided_by"], "bob (deny)");
}

#[tokio::test]
async fn expiry_by_timeout() {
    let s = TestApp::builder()
        .rule("    require: [{ group: sre, count: 1 }]\n    timeout: 1s")
        .spawn()
        .await;
    let w = s.open(&["--environment", "production", "--actor", "erin"]).await;
    let (code, events, _) = w.finish().await;
    assert_eq!(code, 1);
    assert_eq!(outcome(&events)["decision"], "expired");
    assert_eq!(outcome(&events)["decided_by"], "timer");
}

#[tokio::test]
async fn requested_timeout_never_exceeds_the_policy() {
    let s = TestApp::spawn().await;
    let w = s
        .open(&["--environment", "production", "--actor", "erin", "--timeout", "1s"])
        .await;
    let (code, events, _) = w.finish().await;
    assert_eq!(code, 1);
    assert_eq!(outcome(&events)["decision"], "expired");
}

#[tokio::test]
async fn approval_ttl_expires_an_unused_approval() {
    let s = TestApp::builder()
        .rule("    require: [{ group: sre, count: 1 }]\n    approval_ttl: 1s")
        .spawn()
        .await;
    let w = s
        .open(&["--environment", "production", "--actor", "erin", "--no-wait"])
        .await;
    let (code, _, _) = w.finish().await;
    assert_eq!(code, 0, "--no-wait on an open (pending) request exits 0");
    let ci = s.client("ci");
    let id = ci.list("pending").await.unwrap()[0].id.clone();
    let approved = s.client("bob").approve(&id, None).await.unwrap();
    assert_eq!(approved.status, Status::Approved);
    // Long-wait for the next change: the approval lapsing.
    let mut v = approved;
    while v.status == Status::Approved {
        v = ci.wait(&id, Some(v.version), 30).await.unwrap();
    }
    assert_eq!(v.status, Status::Expired);
    let e = ci.consume(&id).await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    let rec = ci.record(&id).await.unwrap();
    let env: Value = serde_json::from_str(&rec).unwrap();
    assert!(env["payload"].is_string());
}

async fn race_on(db: Db) {
    let s = TestApp::builder().backend(db).spawn().await;
    let ci = s.client("ci");
    for round in 0..8 {
        let body = jitgate::core::api::CreateRequest {
            context: jitgate::core::api::Context {
                environment: "production".into(),
                actor: "erin".into(),
                ..Default::default()
            },
            idempotency_key: Some(format!("race-{round}")),
            ..Default::default()
        };
        let (r, new) = ci.create(&body).await.unwrap();
        assert!(new);
        let (a, b) = (s.client("alice"), s.client("bob"));
        let (x, y) = if round % 2 == 0 {
            // Two approvers at once on a 1-of-N rule.
            tokio::join!(a.approve(&r.id, None), b.approve(&r.id, None))
        } else {
            // Approve racing deny.
            tokio::join!(a.approve(&r.id, None), b.deny(&r.id, Some("no".into())))
        };
        let wins = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "exactly one vote decides ({db:?} round {round}): {x:?} {y:?}");
        let (winner, loser) = match (&x, &y) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            _ => unreachable!("checked above"),
        };
        assert_eq!(loser.status(), Some(409), "{loser}");
        let now = ci.get(&r.id).await.unwrap();
        assert_eq!(now.status, winner.status);
        assert!(now.status == Status::Approved || now.status == Status::Denied);
        assert_eq!(now.votes.len(), 1, "only the deciding vote counts");
    }
    let audit = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
    assert_eq!(audit.code, 0, "{audit:?}");
    let events = s.run(crate::helpers::AUDITOR, &["audit", "export"]).await.stdout;
    // One decision event per request, never two.
    let decided = events
        .lines()
        .filter(|l| l.contains("\"kind\":\"approved\"") || l.contains("\"kind\":\"denied\""))
        .count();
    assert_eq!(decided, 8, "{events}");
}

#[tokio::test]
async fn concurrent_votes_resolve_to_one_outcome_on_every_backend() {
    for db in backends() {
        race_on(db).await;
    }
}

#[tokio::test]
async fn fifty_gates_waiting_at_once_are_all_released() {
    let s = TestApp::spawn().await;
    let mut gates = Vec::new();
    for _ in 0..50 {
        gates.push(s.open(&["--environment", "production", "--actor", "erin"]).await);
    }
    let bob = s.client("bob");
    for g in &gates {
        bob.approve(&g.id, None).await.unwrap();
    }
    for g in gates {
        let (code, _, err) = g.finish().await;
        assert_eq!(code, 0, "{err}");
    }
}

#[tokio::test]
async fn idempotent_replay_returns_the_same_request() {
    let s = TestApp::spawn().await;
    let http = s.http();
    let body =
        serde_json::json!({"context": {"environment": "production", "actor": "erin"}, "idempotency_key": "run-1"});
    let ci = token("ci");
    let post = |b: Value| http.api("POST", "/requests", &ci, Some(b));
    let (status, first) = post(body.clone()).await;
    assert_eq!(status, 201);
    let (status, again) = post(body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(first["id"], again["id"]);
    let mut other = body.clone();
    other["context"]["environment"] = "staging".into();
    let (status, clash) = post(other).await;
    assert_eq!(status, 409);
    assert_eq!(clash["error"]["code"], "idempotency_mismatch");

    // The run identity from GitHub's variables: a retried step replays, a re-run does not.
    let github = |attempt: &str| {
        let mut c = s.gate("ci");
        c.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REPOSITORY", "acme/web")
            .env("GITHUB_RUN_ID", "77")
            .env("GITHUB_RUN_ATTEMPT", attempt)
            .env("GITHUB_JOB", "deploy")
            .env("GITHUB_ACTOR", "erin")
            .env("GITHUB_SHA", COMMIT)
            .env("GITHUB_REF", "refs/heads/main");
        c
    };
    let a = s
        .open_with(github("1"), &["--environment", "production", "--no-wait"])
        .await;
    let b = s
        .open_with(github("1"), &["--environment", "production", "--no-wait"])
        .await;
    let c = s
        .open_with(github("2"), &["--environment", "production", "--no-wait"])
        .await;
    assert_eq!(a.id, b.id);
    assert_eq!(a.opened["new"], true);
    assert_eq!(b.opened["new"], false);
    assert_ne!(a.id, c.id);
    let v = s.client("ci").get(&a.id).await.unwrap();
    assert_eq!(v.context.platform, "github");
    assert_eq!(
        v.context.run_url,
        "https://github.com/acme/web/actions/runs/77/attempts/1"
    );
    assert_eq!(v.requester, ["erin"]);
}

#[tokio::test]
async fn server_killed_and_restarted_while_a_gate_waits() {
    let mut s = TestApp::spawn().await;
    let w = s
        .open(&["--environment", "production", "--actor", "erin", "--commit", COMMIT])
        .await;
    s.kill().await;
    // Same data, same port: the gate reconnects by itself.
    s.respawn().await;
    let v = s.client("ci").get(&w.id).await.unwrap();
    assert_eq!(v.status, Status::Pending, "the request survived the crash");
    s.client("carol")
        .approve(&w.id, Some("after restart".into()))
        .await
        .unwrap();
    let id = w.id.clone();
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    assert_eq!(s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await.code, 0);
    assert_eq!(s.client("ci").get(&id).await.unwrap().status, Status::Consumed);
}

#[tokio::test]
async fn sigterm_to_a_waiting_gate_cancels_its_request() {
    let s = TestApp::spawn().await;
    let w = s.open(&["--environment", "production", "--actor", "erin"]).await;
    signal(&w.child, libc::SIGTERM);
    let id = w.id.clone();
    let (code, events, _) = w.finish().await;
    assert_eq!(code, 1);
    assert_eq!(outcome(&events)["decision"], "canceled");
    assert_eq!(s.client("ci").get(&id).await.unwrap().status, Status::Canceled);
    let late = s.client("bob").approve(&id, None).await.unwrap_err();
    assert_eq!(late.status(), Some(409), "terminal states never change");
}

#[tokio::test]
async fn a_tampered_audit_row_is_found() {
    use sqlx::Connection;
    let s = TestApp::spawn().await;
    let w = s.open(&["--environment", "production", "--actor", "erin"]).await;
    s.client("bob").approve(&w.id, None).await.unwrap();
    assert_eq!(w.finish().await.0, 0);
    assert_eq!(s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await.code, 0);

    let mut db = sqlx::SqliteConnection::connect(&s.database_url).await.unwrap();
    let upd = sqlx::query("UPDATE gate_audit SET actor = 'mallory' WHERE seq = 2")
        .execute(&mut db)
        .await;
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = sqlx::query("DELETE FROM gate_audit WHERE seq = 2")
        .execute(&mut db)
        .await;
    assert!(del.unwrap_err().to_string().contains("append-only"));
    // Someone with the database file drops the trigger and edits history anyway.
    sqlx::raw_sql("DROP TRIGGER gate_audit_no_update; UPDATE gate_audit SET actor = 'mallory' WHERE seq = 2")
        .execute(&mut db)
        .await
        .unwrap();
    let v = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stdout.contains("BROKEN") && v.stdout.contains("event #2 "), "{v:?}");
}

#[tokio::test]
async fn a_tampered_record_is_refused() {
    use base64::Engine;
    let s = TestApp::spawn().await;
    let art = format!("sha256:{}", "ab".repeat(32));
    let w = s
        .open(&[
            "--environment",
            "production",
            "--actor",
            "erin",
            "--commit",
            COMMIT,
            "--artifact",
            &art,
        ])
        .await;
    s.client("bob").approve(&w.id, None).await.unwrap();
    let path = w.record_path().to_path_buf();
    assert_eq!(w.finish().await.0, 0);
    let key = s.dir.path().join("server.pub");
    let keys = s.client("ci").keys().await.unwrap();
    std::fs::write(&key, &keys.keys[0].pem).unwrap();
    let (p, k) = (path.to_str().unwrap(), key.to_str().unwrap());
    assert_eq!(
        s.run("ci", &["verify", p, "--key", k, "--commit", COMMIT, "--artifact", &art])
            .await
            .code,
        0
    );
    let wrong = s.run("ci", &["verify", p, "--key", k, "--commit", "deadbeef"]).await;
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("not deadbeef"), "{wrong:?}");

    let b64 = base64::engine::general_purpose::STANDARD;
    let mut env: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let payload = String::from_utf8(b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    let forged = payload.replace("\"erin\"", "\"someone-else\"");
    assert_ne!(forged, payload);
    env["payload"] = b64.encode(forged).into();
    let tampered = s.dir.path().join("tampered.json");
    std::fs::write(&tampered, env.to_string()).unwrap();
    let r = s.run("ci", &["verify", tampered.to_str().unwrap(), "--key", k]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("signature"), "{r:?}");
}

#[tokio::test]
async fn policy_errors_name_line_and_column() {
    let s = TestApp::spawn().await;
    let bad = s.dir.path().join("bad.yaml");
    std::fs::write(&bad, policy("    require: [{ group: sre, count: 1 }]\n    timout: 1h")).unwrap();
    let r = s.run("ci", &["policy", "check", bad.to_str().unwrap()]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bad.yaml:13:5:"), "{r:?}");
    assert!(r.stderr.contains("unknown field `timout`"), "{r:?}");
    std::fs::write(
        &bad,
        "version: 1\nrules:\n  - name: x\n    match: { environment: [oops\n",
    )
    .unwrap();
    let r = s.run("ci", &["policy", "check", bad.to_str().unwrap()]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bad.yaml:"), "{r:?}");
    let good = s.run("ci", &["policy", "check", s.policy.to_str().unwrap()]).await;
    assert_eq!(good.code, 0, "{good:?}");
    let ctx = s.dir.path().join("ctx.json");
    std::fs::write(&ctx, r#"{"environment": "production", "repository": "acme/web"}"#).unwrap();
    let e = s
        .run(
            "ci",
            &[
                "policy",
                "explain",
                s.policy.to_str().unwrap(),
                "--request",
                ctx.to_str().unwrap(),
            ],
        )
        .await;
    assert_eq!(e.code, 0, "{e:?}");
    assert!(
        e.stdout.contains("skip   staging: environment is `production`"),
        "{e:?}"
    );
    assert!(e.stdout.contains("MATCH  production: 1 of sre"), "{e:?}");
}

fn error_shape(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(!v["error"]["message"].as_str().unwrap().is_empty());
}

/// On the router in process: nothing here needs a socket.
#[tokio::test]
async fn bad_http_input_gets_our_error_shape() {
    let app = TestApp::builder().in_process().await;
    let http = app.http();
    let url = "/api/v1/requests";
    let r = http
        .post(url)
        .bearer(&token("ci"))
        .body("application/json", "{\"context\": ")
        .send()
        .await;
    assert_eq!(r.status, 400);
    error_shape(&r.json().await, "bad_request");
    let (status, v) = http
        .api(
            "POST",
            "/requests",
            &token("ci"),
            Some(serde_json::json!({"context": {"environment": 5}})),
        )
        .await;
    assert_eq!(status, 422);
    error_shape(&v, "invalid_body");
    let (status, v) = http
        .api(
            "POST",
            "/requests",
            &token("ci"),
            Some(serde_json::json!({"context": {"environment": "production", "commit": "zz"}})),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("context.commit"),
        "{v}"
    );
    let r = http.post(url).json(&serde_json::json!({})).send().await;
    assert_eq!(r.status, 401);
    error_shape(&r.json().await, "unauthorized");
    let (status, _) = http.api("POST", "/requests", "nope", Some(serde_json::json!({}))).await;
    assert_eq!(status, 401);
    let body = serde_json::json!({"context": {"environment": "production", "actor": "erin"}});
    let (status, _) = http.api("POST", "/requests", &token("alice"), Some(body.clone())).await;
    assert_eq!(status, 403, "an approver token cannot open requests");
    let (_, v) = http.api("POST", "/requests", &token("ci"), Some(body)).await;
    let id = v["id"].as_str().unwrap().to_string();
    let (status, v) = http
        .api("POST", &format!("/requests/{id}/approve"), &token("ci"), None)
        .await;
    assert_eq!(status, 403, "a pipeline token cannot vote");
    error_shape(&v, "pipeline_cannot_vote");
    let (status, _) = http.api("POST", "/requests/nope/approve", &token("bob"), None).await;
    assert_eq!(status, 404, "a vote on an unknown request is a 404");
    let (status, v) = http.api("GET", "/requests/nope", &token("ci"), None).await;
    assert_eq!(status, 404);
    error_shape(&v, "not_found");
    // Operations endpoints answer without a token.
    assert_eq!(http.get("/healthz").send().await.status, 200);
    assert_eq!(http.get("/readyz").send().await.status, 200);
    let spec = http.get("/api/v1/openapi.json").send().await.json().await;
    assert!(spec["paths"]["/api/v1/requests/{id}/wait"].is_object());
}

/// On a real socket: the answer comes before any of the body is sent, and is counted.
#[tokio::test]
async fn a_body_declared_too_large_is_refused_from_the_headers_alone() {
    let s = TestApp::spawn().await;
    let (status, body) = raw_post_headers_only(&s.addr, 200 * 1024).await;
    assert_eq!(status, 413);
    error_shape(&serde_json::from_str(&body).unwrap(), "payload_too_large");
    let m = s.http().get("/metrics").send().await.text().await;
    assert!(m.contains("jitgate_http_responses_total{status=\"413\"} 1"), "{m}");
    assert!(m.contains("jitgate_waiting_gates 0"), "{m}");
}

#[tokio::test]
async fn graceful_shutdown_exits_zero() {
    let mut s = TestApp::spawn().await;
    let st = s.stop().await;
    assert!(st.success(), "{st:?} {}", s.log());
}

/// Sends only the headers of a POST that declares `len` bytes of body, and returns the
/// status and body of the answer.
async fn raw_post_headers_only(addr: &str, len: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/requests HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n",
        token("ci")
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let want = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= want || n == 0 {
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                return (status, body[..want.min(body.len())].to_string());
            }
        }
        assert!(
            n > 0,
            "connection closed before a full answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
}

#[tokio::test]
async fn the_gate_fails_closed() {
    let s = TestApp::spawn().await;
    // A record signed by another key than the pinned one is no approval.
    let other = s.dir.path().join("other.pem");
    std::fs::write(
        &other,
        jitgate::core::audit::record::KeyPair::from_seed([9; 32]).public().pem,
    )
    .unwrap();
    let w = s
        .open(&[
            "--environment",
            "production",
            "--actor",
            "erin",
            "--key",
            other.to_str().unwrap(),
        ])
        .await;
    s.client("bob").approve(&w.id, None).await.unwrap();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("does not verify"), "{err}");

    // No server within the retry budget: exit 2, never 0.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cmd = s.gate("ci");
    cmd.env("GATE_SERVER", format!("http://{dead}"));
    let out = cmd
        .args(["request", "--environment", "production", "--retry-budget", "1s"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open the request"),
        "{out:?}"
    );

    // Bad usage is exit 2 too.
    let out = s
        .run(
            "ci",
            &["request", "--environment", "production", "--artifact", "md5:00"],
        )
        .await;
    assert_eq!(out.code, 2, "{out:?}");
}

#[tokio::test]
async fn an_approval_is_single_use() {
    let s = TestApp::spawn().await;
    let args = [
        "--environment",
        "production",
        "--actor",
        "erin",
        "--idempotency-key",
        "deploy-42",
    ];
    let w = s.open(&args).await;
    s.client("bob").approve(&w.id, None).await.unwrap();
    let id = w.id.clone();
    assert_eq!(w.finish().await.0, 0);
    // The same run asks again: it finds its request, already used, and does not pass.
    let again = s.open(&args).await;
    assert_eq!(again.id, id);
    let (code, events, _) = again.finish().await;
    assert_eq!(code, 1, "{events:?}");
    assert_eq!(outcome(&events)["decision"], "already-used");
}

#[tokio::test]
async fn a_decision_on_one_replica_releases_a_gate_waiting_on_another() {
    if !backends().contains(&Db::Postgres) {
        return;
    }
    let a = TestApp::builder().backend(Db::Postgres).spawn().await;
    let b = a.replica().await;
    let w = a.open(&["--environment", "production", "--actor", "erin"]).await;
    // Voted on B; the gate long-waits on A and is woken by LISTEN/NOTIFY.
    b.client("bob").approve(&w.id, None).await.unwrap();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn a_request_token_serves_its_own_request_only() {
    let s = TestApp::spawn().await;
    let ci = s.client("ci");
    let open = |key: &str| jitgate::core::api::CreateRequest {
        context: jitgate::core::api::Context {
            environment: "production".into(),
            actor: "erin".into(),
            ..Default::default()
        },
        idempotency_key: Some(key.into()),
        ..Default::default()
    };
    let (mine, _) = ci.create(&open("one")).await.unwrap();
    let (other, _) = ci.create(&open("two")).await.unwrap();
    let holder = mine.holder_token.clone().expect("the opener gets a request token");
    assert!(other.holder_token.is_some());
    assert!(
        ci.get(&mine.id).await.unwrap().holder_token.is_none(),
        "never shown again"
    );
    let h = jitgate::client::Client::new(&s.url, Some(holder)).unwrap();
    assert_eq!(h.get(&mine.id).await.unwrap().id, mine.id);
    assert_eq!(h.get(&other.id).await.unwrap_err().status(), Some(401));
    assert_eq!(h.list("pending").await.unwrap_err().status(), Some(401));
    assert_eq!(
        h.approve(&mine.id, None).await.unwrap_err().status(),
        Some(403),
        "it is a pipeline: no votes"
    );
    s.client("bob").approve(&mine.id, None).await.unwrap();
    assert_eq!(h.consume(&mine.id).await.unwrap().status, Status::Consumed);
    assert!(h.record(&mine.id).await.unwrap().contains("payloadType"));
    // A replay by the same pipeline gets a token of its own; an approver opening gets none.
    let (again, new) = ci.create(&open("one")).await.unwrap();
    assert!(!new);
    assert!(again.holder_token.is_some());
}

/// In front of the server, an HTTP forwarder that answers every record fetch with a 404
/// and passes everything else on: the gate's consume succeeds, its record fetch fails.
async fn without_records(upstream: String) -> String {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, Response};
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            if path.ends_with("/record") {
                return Response::builder().status(404).body(Body::from("{}")).unwrap();
            }
            let mut out = http.request(req.method().clone(), format!("{upstream}{path}"));
            for (k, v) in req.headers() {
                if k != "host" {
                    out = out.header(k, v);
                }
            }
            let body = to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
            let answer = out.body(body).send().await.unwrap();
            let mut back = Response::builder().status(answer.status().as_u16());
            for (k, v) in answer.headers() {
                back = back.header(k, v);
            }
            back.body(Body::from(answer.bytes().await.unwrap_or_default())).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The record is the point of an approval: a gate that consumed it but cannot fetch its
/// signed record exits 1 and says so, never 0.
#[tokio::test]
async fn a_consumed_approval_without_its_record_exits_1() {
    let s = TestApp::spawn().await;
    let w = s
        .open(&["--environment", "production", "--actor", "erin", "--no-wait"])
        .await;
    let id = w.id.clone();
    assert_eq!(w.finish().await.0, 0);
    s.client("bob").approve(&id, None).await.unwrap();
    let mut cmd = s.gate("ci");
    cmd.env("GATE_SERVER", without_records(s.url.clone()).await)
        .args(["consume", &id, "--retry-budget", "5s"]);
    let out = Out::of(cmd).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "request {id} was approved and this gate consumed it, but its signed record could not be fetched"
        )),
        "{out:?}"
    );
    // It was consumed (once, by that call); the record is there for whoever can reach it.
    assert_eq!(s.client("ci").get(&id).await.unwrap().status, Status::Consumed);
    assert!(s.client("ci").record(&id).await.is_ok());
}
