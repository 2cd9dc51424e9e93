//! Hostile input gets a 4xx and a clear message, never a 500 (issue 9): NUL and other
//! control characters in bodies and path ids, reasons nobody can see, huge timeouts, text
//! that would drive the approver's terminal, and a closed stdout under `gate show`.

use serde_json::{Value, json};

use crate::helpers::*;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

async fn control_characters_on(db: Db) {
    let s = TestApp::builder().backend(db).spawn().await;
    let http = s.http();
    let (ci, bob) = (token("ci"), token("bob"));
    let id = s.open_via_api("alice").await.id;

    // A reason nobody can see is no reason: a deny with it needs one.
    for reason in ["\0", "\u{200B}", " \u{200B}\u{FEFF}\0 "] {
        let (st, v) = http
            .api(
                "POST",
                &format!("/requests/{id}/deny"),
                &bob,
                Some(json!({"reason": reason})),
            )
            .await;
        assert_eq!((st, code(&v)), (422, "reason_required"), "{db:?} {reason:?}: {v}");
    }
    // A NUL inside a real reason is refused by name (PostgreSQL's text refuses it).
    let (st, v) = http
        .api(
            "POST",
            &format!("/requests/{id}/approve"),
            &bob,
            Some(json!({"reason": "ok\0then"})),
        )
        .await;
    assert_eq!((st, code(&v)), (422, "invalid_field"), "{db:?}: {v}");
    assert!(
        message(&v).starts_with("reason: contains the control character U+0000 at character 3"),
        "{v}"
    );
    let (st, v) = http
        .api(
            "POST",
            &format!("/requests/{id}/cancel"),
            &ci,
            Some(json!({"reason": "x\u{1b}[2J"})),
        )
        .await;
    assert_eq!((st, code(&v)), (422, "invalid_field"), "{db:?}: {v}");
    assert!(
        message(&v).starts_with("reason: contains the control character U+001B"),
        "{v}"
    );

    // Path ids: every route that takes one.
    for (verb, route, who) in [
        ("GET", "/requests/req_%00x", &bob),
        ("GET", "/requests/req_%00x/wait?timeout=1", &ci),
        ("GET", "/requests/req_%00x/record", &bob),
        ("GET", "/requests/req_%00x/audit", &bob),
        ("POST", "/requests/req_%00x/approve", &bob),
        ("POST", "/requests/req_%00x/cancel", &ci),
    ] {
        let body = (verb == "POST").then(|| json!({}));
        let (st, v) = http.api(verb, route, who, body).await;
        assert_eq!((st, code(&v)), (422, "invalid_field"), "{db:?} {verb} {route}: {v}");
        assert!(
            message(&v).starts_with("id: contains the control character U+0000"),
            "{v}"
        );
    }
    // A holder token for such an id is checked before the database sees it.
    let (st, v) = http.api("GET", "/requests/req_%00x", "gtr_nothing", None).await;
    assert!((400..500).contains(&st), "{db:?}: {st} {v}");

    // Create bodies: each free-text field names itself.
    let ctx = json!({"environment": "production", "actor": "erin", "repository": "acme/app"});
    for (body, field) in [
        (json!({"context": ctx, "summary": "release\0"}), "summary"),
        (json!({"context": ctx, "summary": "a\u{1b}]0;pwned\u{7}"}), "summary"),
        (json!({"context": ctx, "idempotency_key": "k\0"}), "idempotency_key"),
        (json!({"context": ctx, "timeout": "1h\0"}), "timeout"),
        (
            json!({"context": {"environment": "production", "actor": "erin", "run_url": "https://x/\0"}}),
            "context.run_url",
        ),
        (
            json!({"context": {"environment": "production", "actor": "erin", "labels": {"team": "a\0b"}}}),
            "context.labels.team",
        ),
        (
            json!({"context": {"environment": "production\0", "actor": "erin"}}),
            "context.environment",
        ),
    ] {
        let (st, v) = http.api("POST", "/requests", &ci, Some(body.clone())).await;
        assert_eq!((st, code(&v)), (422, "invalid_field"), "{db:?} {body}: {v}");
        assert!(message(&v).starts_with(&format!("{field}: ")), "{field}: {v}");
    }
    // Multi-line free text is still welcome.
    let (st, v) = http
        .api(
            "POST",
            "/requests",
            &ci,
            Some(json!({"context": ctx, "summary": "line 1\nline 2\ttab"})),
        )
        .await;
    assert_eq!(st, 201, "{db:?}: {v}");
    let (st, v) = http
        .api(
            "POST",
            &format!("/requests/{id}/deny"),
            &bob,
            Some(json!({"reason": "no:\n\tthe tests fail"})),
        )
        .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("denied")), "{db:?}: {v}");
    // Listing filters too: a NUL in a query parameter is a 400 naming it, never a 500.
    let (st, v) = http.api("GET", "/notifications?request=r%00x", &bob, None).await;
    assert_eq!((st, code(&v)), (422, "invalid_field"), "{db:?}: {v}");
    assert!(
        message(&v).starts_with("request: contains the control character U+0000"),
        "{v}"
    );
    let (cookie, _) = crate::ui::sign_in(&http, "bob").await;
    for q in ["repository=acme%00app", "environment=prod%1Bx"] {
        let r = http
            .get(&format!("/history?{q}"))
            .header("cookie", &cookie)
            .send()
            .await;
        assert_eq!(r.status.as_u16(), 400, "{db:?} {q}");
        let page = r.text().await;
        assert!(
            page.contains(": contains the control character U+00"),
            "{db:?} {q}: {page}"
        );
    }
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

#[tokio::test]
async fn control_characters_and_invisible_reasons_are_refused_by_name() {
    for db in backends() {
        control_characters_on(db).await;
    }
}

/// A timeout of more seconds than fit in milliseconds is refused, not wrapped round.
#[tokio::test]
async fn a_huge_timeout_is_refused_not_wrapped() {
    let s = TestApp::spawn().await;
    let ctx = json!({"environment": "production", "actor": "erin"});
    let over = (i64::MAX / 1000 + 1).to_string();
    let (st, v) = s
        .http()
        .api(
            "POST",
            "/requests",
            &token("ci"),
            Some(json!({"context": ctx, "timeout": over})),
        )
        .await;
    assert_eq!((st, code(&v)), (422, "invalid_timeout"), "{v}");
    assert!(message(&v).contains("too large"), "{v}");
}

/// `gate show` prints text from the network with its control characters escaped: a
/// summary or reason cannot clear the terminal or fake the header lines.
#[tokio::test]
async fn gate_show_does_not_pass_control_characters_to_the_terminal() {
    let s = TestApp::spawn().await;
    let ctx = json!({"environment": "production", "actor": "alice", "repository": "acme/app"});
    let fake = "release\r\nrequest     req_fake (approved)";
    let (st, v) = s
        .http()
        .api(
            "POST",
            "/requests",
            &token("ci"),
            Some(json!({"context": ctx, "summary": fake})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (st, v) = s
        .http()
        .api(
            "POST",
            &format!("/requests/{id}/deny"),
            &token("bob"),
            Some(json!({"reason": "no\r\ndecided     by nobody"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    let out = s.run("bob", &["show", &id]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains('\r'), "{:?}", out.stdout);
    for line in out.stdout.lines() {
        assert!(
            !line.starts_with("request     req_fake"),
            "a faked header line: {:?}",
            out.stdout
        );
        assert!(
            !line.starts_with("decided     by nobody"),
            "a faked header line: {:?}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .contains("summary     release\\u{d}\\u{a}request     req_fake (approved)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(": no\\u{d}\\u{a}decided     by nobody"),
        "{}",
        out.stdout
    );

    let out = s.run("bob", &["pending"]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

/// `gate show … | head`: a closed stdout ends the command quietly, no panic.
#[tokio::test]
async fn a_closed_stdout_is_no_panic() {
    let s = TestApp::spawn().await;
    let id = s.open_via_api("alice").await.id;
    for args in [vec!["show", id.as_str()], vec!["pending"], vec!["--help"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut c = s.gate("bob");
        c.args(&args).stdout(writer).stderr(std::process::Stdio::piped());
        // Not `output()`: tokio's would replace stdout with a pipe of its own.
        let out = c.spawn().unwrap().wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {:?} {stderr}", out.status);
    }
}

/// `next` after signing in is a path on this server or `/`: `/%09/evil.example` (which a
/// browser reads as `//evil.example`) and a newline (no header value: a 500 after the
/// session was made) both return to `/`.
#[tokio::test]
async fn sign_in_never_redirects_off_site_nor_fails_on_next() {
    let s = TestApp::spawn().await;
    let c = s.http();
    for next in [
        "/\t/evil.example",
        "/x\r\nSet-Cookie: a=b",
        "/%2F/evil.example",
        "/\\evil.example",
    ] {
        let query: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let r = c.get(&format!("/login?next={query}")).send().await;
        assert_eq!(r.status.as_u16(), 200, "{next:?}");
        let (pre, _) = r.cookie("gate_prelogin").unwrap();
        let page = r.text().await;
        assert!(page.contains("name=\"next\" value=\"/\""), "{next:?}: {page}");
        let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
        let csrf = &page[at..at + page[at..].find('"').unwrap()];
        let r = c
            .post("/login")
            .header("cookie", format!("gate_prelogin={pre}"))
            .form(&[("csrf", csrf), ("token", &token("bob")), ("next", next)])
            .send()
            .await;
        assert_eq!(r.status.as_u16(), 303, "{next:?}: {:?}", r.text().await);
        assert_eq!(r.headers["location"], "/", "{next:?}");
    }
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

/// A second `sre:` in a policy is an error at its line and column, not a silent
/// replacement of the group (here it would have let mallory approve production).
#[tokio::test]
async fn a_policy_key_given_twice_is_refused_with_its_place() {
    let s = TestApp::spawn().await;
    let bad = s.dir.path().join("dup.yaml");
    let text = policy(ONE_SRE).replace("  ops: [erin, frank]\n", "  ops: [erin, frank]\n  sre: [mallory]\n");
    std::fs::write(&bad, text).unwrap();
    let r = s.run("ci", &["policy", "check", bad.to_str().unwrap()]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("dup.yaml:6:3:"), "{r:?}");
    assert!(r.stderr.contains("duplicate entry with key \"sre\""), "{r:?}");
}

/// Hostile YAML fails at once with its place, in the policy and in gate.yaml alike:
/// nesting 100,000 deep (17 s to reject before), aliases that expand a small file into
/// gigabytes (a crash on a failed allocation before), and a file too large to read.
#[tokio::test]
async fn hostile_yaml_is_refused_fast_with_its_place() {
    let s = TestApp::spawn().await;
    let deep = format!(
        "version: 1\ngroups:\n  sre: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let mut laughs = String::from("version: 1\nx0: &x0 [");
    laughs.push_str(&vec!["alice"; 4000].join(", "));
    laughs.push_str("]\ngroups:\n  sre: [");
    laughs.push_str(&vec!["*x0"; 2000].join(", "));
    laughs.push_str("]\n");
    let huge = format!("version: 1\n# {}\n", "x".repeat(2 << 20));
    for (name, text, want) in [
        ("deep.yaml", deep, "deep.yaml:3:72: nested deeper than 64 levels"),
        ("laughs.yaml", laughs, "aliases (`*name`) are expanded"),
        ("huge.yaml", huge, "at most 1048576 are read"),
    ] {
        let path = s.dir.path().join(name);
        std::fs::write(&path, &text).unwrap();
        let r = s.run("ci", &["policy", "check", path.to_str().unwrap()]).await;
        assert_eq!(r.code, 1, "{name}: {r:?}");
        assert!(r.stderr.contains(want), "{name}: {}", r.stderr);
        // The same text as gate.yaml stops the server before it serves.
        let cfg = s.dir.path().join(format!("gate-{name}"));
        std::fs::write(&cfg, text.replacen("version: 1\n", "listen: 127.0.0.1:0\n", 1)).unwrap();
        let r = s.run("ci", &["serve", "--config", cfg.to_str().unwrap()]).await;
        assert_ne!(r.code, 0, "{name}: {r:?}");
        let want_cfg = want.replace(name, &format!("gate-{name}"));
        assert!(r.stderr.contains(&want_cfg), "gate-{name}: {}", r.stderr);
    }
}
