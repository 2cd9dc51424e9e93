//! Required change fields: a rule's `fields` refuse a request without them (the real
//! `gate request`, one line naming the field, its pattern and what was given), and a
//! request with them keeps them in the API's view, `gate show`, the web page and the
//! signed record `gate verify` accepts.

use std::path::Path;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{COMMIT, Db, TestApp, backends, token};

const RULE: &str = "    require: [{ group: sre, count: 1 }]
    fields:
      ticket: { pattern: \"^CHG-[0-9]+$\" }
      rollback: {}";

const PROD: [&str; 6] = ["--environment", "production", "--commit", COMMIT, "--actor", "dave"];

fn predicate(path: &Path) -> Value {
    let env: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["predicate"].clone()
}

/// The one stderr line that mentions `needle`.
fn line_with<'a>(stderr: &'a str, needle: &str) -> &'a str {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0]
}

async fn pending_count(s: &TestApp) -> usize {
    let (status, list) = s
        .http()
        .api("GET", "/requests?status=pending", &token("alice"), None)
        .await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().len()
}

async fn fields_on(db: Db) {
    let s = TestApp::builder().backend(db).rule(RULE).spawn().await;

    // Missing: refused before anything opens, exit 1, one line naming field and pattern.
    let mut args = PROD.to_vec();
    args.extend(["--field", "rollback=redeploy 1.2.3"]);
    let mut cmd = s.gate("ci");
    cmd.arg("request").args(&args);
    let out = crate::helpers::Out::of(cmd).await;
    assert_eq!(out.code, 1, "{out:?}");
    let line = line_with(&out.stderr, "ticket");
    assert!(
        line.contains("field `ticket` is required by rule `production` (pattern ^CHG-[0-9]+$)")
            && line.contains("missing_field"),
        "{line}"
    );
    // Blank is missing too, from the variable.
    let mut cmd = s.gate("ci");
    cmd.env("GATE_FIELD_TICKET", "CHG-1").env("GATE_FIELD_ROLLBACK", "  ");
    cmd.arg("request").args(PROD);
    let out = crate::helpers::Out::of(cmd).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        line_with(&out.stderr, "rollback").contains("field `rollback` is required by rule `production`"),
        "{out:?}"
    );

    // Not matching: the field, the pattern and what was given.
    let mut cmd = s.gate("ci");
    cmd.arg("request")
        .args(PROD)
        .args(["--field", "ticket=chg-12", "--field", "rollback=redeploy"]);
    let out = crate::helpers::Out::of(cmd).await;
    assert_eq!(out.code, 1, "{out:?}");
    let line = line_with(&out.stderr, "ticket");
    assert!(
        line.contains("\"chg-12\"") && line.contains("^CHG-[0-9]+$") && line.contains("invalid_field"),
        "{line}"
    );
    assert_eq!(pending_count(&s).await, 0);

    // The API says the same, with the codes.
    let body = |fields: Value| {
        json!({"context": {"environment": "production", "actor": "dave"}, "fields": fields,
               "idempotency_key": uuid::Uuid::new_v4().to_string()})
    };
    let (st, e) = s
        .http()
        .api("POST", "/requests", &token("ci"), Some(body(json!({"rollback": "r"}))))
        .await;
    assert_eq!((st, e["error"]["code"].as_str()), (422, Some("missing_field")), "{e}");
    assert_eq!(
        e["error"]["message"],
        "field `ticket` is required by rule `production` (pattern ^CHG-[0-9]+$)"
    );
    let (st, e) = s
        .http()
        .api(
            "POST",
            "/requests",
            &token("ci"),
            Some(body(json!({"ticket": "CHG-1", "rollback": "r", "Bad-Name": "x"}))),
        )
        .await;
    assert_eq!((st, e["error"]["code"].as_str()), (422, Some("invalid_field")), "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`Bad-Name` is not a field name"),
        "{e}"
    );
    let (st, e) = s
        .http()
        .api(
            "POST",
            "/requests",
            &token("ci"),
            Some(body(json!({"ticket": "CHG-1", "rollback": "a\u{1b}[31m"}))),
        )
        .await;
    assert_eq!((st, e["error"]["code"].as_str()), (422, Some("invalid_field")), "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().starts_with("fields.rollback: "),
        "{e}"
    );
    assert_eq!(pending_count(&s).await, 0);

    // A good one, from variables and flags (the flag wins); an undeclared field is kept.
    let mut cmd = s.gate("ci");
    cmd.env("GATE_FIELD_TICKET", "CHG-1")
        .env("GATE_FIELD_ROLLBACK", "redeploy 1.2.3");
    let mut args = PROD.to_vec();
    args.extend(["--field", "ticket=CHG-42", "--field", "impact=web only"]);
    let w = s.open_with(cmd, &args).await;
    assert_eq!(w.opened["status"], "pending", "{}", w.opened);
    let id = w.id.clone();
    let want = json!({"ticket": "CHG-42", "rollback": "redeploy 1.2.3", "impact": "web only"});

    let v = s.client("alice").get(&id).await.unwrap();
    assert_eq!(serde_json::to_value(&v.fields).unwrap(), want);
    let (_, raw) = s
        .http()
        .api("GET", &format!("/requests/{id}"), &token("alice"), None)
        .await;
    assert_eq!(raw["fields"], want, "{raw}");

    let show = s.run("alice", &["show", &id]).await;
    assert_eq!(show.code, 0, "{show:?}");
    for l in [
        "field       ticket: CHG-42",
        "field       rollback: redeploy 1.2.3",
        "field       impact: web only",
    ] {
        assert!(show.stdout.contains(l), "{l}: {}", show.stdout);
    }

    let page = crate::ui::request_page(&s.http(), "alice", &id).await;
    let section = &page[page.find("id=\"fields\"").expect("a fields list on the page")..];
    let section = &section[..section.find("</dl>").unwrap()];
    for want in [
        "<dt>ticket</dt>",
        "CHG-42",
        "<dt>rollback</dt>",
        "redeploy 1.2.3",
        "<dt>impact</dt>",
    ] {
        assert!(section.contains(want), "{want}: {section}");
    }

    s.client("bob").approve(&id, Some("ok".into())).await.unwrap();
    let record = w.record_path().to_path_buf();
    let (code, events, stderr) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_eq!(predicate(&record)["request"]["fields"], want);
    let keys = format!("{}/api/v1/keys", s.url);
    let verify = s
        .run(
            "ci",
            &["verify", record.to_str().unwrap(), "--key", &keys, "--commit", COMMIT],
        )
        .await;
    assert_eq!(verify.code, 0, "{verify:?}");

    // A request without fields (staging needs none) has none in its view or record.
    let w = s.open(&["--environment", "staging", "--actor", "dave"]).await;
    assert_eq!(w.opened["status"], "approved");
    let record = w.record_path().to_path_buf();
    let (_, raw) = s
        .http()
        .api("GET", &format!("/requests/{}", w.id), &token("alice"), None)
        .await;
    assert!(raw.get("fields").is_none(), "{raw}");
    let (code, events, stderr) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {stderr}");
    let p = predicate(&record);
    assert!(p["request"].get("fields").is_none(), "{p}");
    assert!(p["request"].get("context").is_some(), "{p}");
}

#[tokio::test]
async fn required_fields_refuse_then_travel_with_the_request() {
    for db in backends() {
        fields_on(db).await;
    }
}

#[tokio::test]
async fn policy_explain_lists_the_required_fields() {
    let s = TestApp::builder().rule(RULE).spawn().await;
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
            .contains("requires fields: rollback, ticket (pattern ^CHG-[0-9]+$)"),
        "{}",
        out.stdout
    );
    // A policy whose pattern is no regular expression is refused, located.
    let bad = s.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&s.policy).unwrap().replace("[0-9]+$", "[0-9+$"),
    )
    .unwrap();
    let out = s.run("ci", &["policy", "check", bad.to_str().unwrap()]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("rule `production` field `ticket`: `^CHG-[0-9+$` is not a regular expression"),
        "{out:?}"
    );
    let rule_at = std::fs::read_to_string(&s.policy)
        .unwrap()
        .lines()
        .position(|l| l.contains("ticket:"))
        .unwrap();
    assert!(out.stderr.contains(&format!("bad.yaml:{}:", rule_at + 1)), "{out:?}");
}
