//! Time in the policy, end to end with a real server: escalation steps and change windows.

use crate::helpers::*;
use jitgate::core::api::NotificationView;
use jitgate::core::decide::Status;
use serde_json::Value;

async fn open(s: &TestApp, actor: &str) -> jitgate::core::api::RequestView {
    s.open_via_api(actor).await
}

fn kinds(export: &str, id: &str) -> Vec<String> {
    export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["request_id"] == id)
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn escalation_adds_voters_notifies_and_survives_a_restart() {
    // Email to a port nobody listens on: the outbox rows exist; delivery is not the point here.
    let notify = "notify:\n  retry_base: 1s\n  email:\n    host: 127.0.0.1\n    port: 9\n    from: gate@example.test\n    starttls: none\n";
    let mut s = TestApp::builder()
        .rule("    require: [{ group: security, count: 1 }]\n    timeout: 10m\n    escalate:\n      - { after: 1s, notify: [ops], add_groups: [ops] }")
        .config_extra(notify)
        .spawn()
        .await;
    let ci = s.client("ci");
    let v = open(&s, "carol").await;
    let id = v.id.clone();
    // Before the escalation ops may not vote (nor read it: it is unknown to them).
    let e = s.client("erin").approve(&id, None).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    // Long-wait for the next change: the timer escalating.
    let mut v = v;
    while !v.requirements[0].may_vote.contains(&"erin".to_string()) {
        assert_eq!(v.status, Status::Pending);
        v = ci.wait(&id, Some(v.version), 30).await.unwrap();
    }
    assert!(v.requirements[0].may_vote.contains(&"frank".to_string()));
    // A restart must not escalate again.
    s.kill().await;
    s.respawn().await;
    let v = s.client("erin").approve(&id, None).await.unwrap();
    assert_eq!(v.status, Status::Approved);
    assert_eq!(v.requirements[0].approved_by, vec!["erin".to_string()]);
    let export = s.run(crate::helpers::AUDITOR, &["audit", "export"]).await.stdout;
    let k = kinds(&export, &id);
    assert_eq!(k.iter().filter(|k| *k == "escalated").count(), 1, "{k:?}");
    let pos = |x: &str| k.iter().position(|k| k == x).unwrap();
    assert!(
        pos("created") < pos("escalated") && pos("escalated") < pos("approved"),
        "{k:?}"
    );
    assert_eq!(s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await.code, 0);
    // The escalation told ops (not the requester, not the original approvers).
    let (_, list) = s
        .http()
        .api("GET", &format!("/notifications?request={id}"), &token("alice"), None)
        .await;
    let rows: Vec<NotificationView> = serde_json::from_value(list["notifications"].clone()).unwrap();
    let mut esc: Vec<&str> = rows
        .iter()
        .filter(|r| r.event == "escalated")
        .map(|r| r.recipient.as_str())
        .collect();
    esc.sort();
    assert_eq!(esc, ["erin@example.test", "frank@example.test"], "{rows:#?}");
    // The signed record lists the escalation.
    let rec: Value = serde_json::from_str(&ci.record(&id).await.unwrap()).unwrap();
    let stmt: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            rec["payload"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let escs = &stmt["predicate"]["escalations"];
    assert_eq!(escs.as_array().unwrap().len(), 1, "{escs}");
    assert_eq!(escs[0]["added"], serde_json::json!(["erin", "frank"]));
}

/// A one-minute daily window twelve hours from now (UTC): certainly closed during the test.
fn closed_window() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = ((secs / 60) % 1440 + 720) % 1440;
    let end = start + 1;
    format!(
        "daily {:02}:{:02}-{:02}:{:02} UTC",
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

#[tokio::test]
async fn a_closed_window_refuses_to_use_an_approval() {
    let w = closed_window();
    let s = TestApp::builder()
        .rule(&format!(
            "    require: [{{ group: sre, count: 1 }}]\n    windows: {{ allow: \"{w}\" }}"
        ))
        .spawn()
        .await;
    let gate = s.open(&["--environment", "production", "--actor", "erin"]).await;
    let id = gate.id.clone();
    // Votes are taken while the window is closed; the request becomes approved.
    let v = s.client("bob").approve(&id, None).await.unwrap();
    assert_eq!(v.status, Status::Approved);
    // The gate cannot use it: it fails, saying why, and the request stays approved.
    let (code, events, stderr) = gate.finish().await;
    assert_ne!(code, 0, "{events:?} {stderr}");
    let all = format!("{events:?} {stderr}");
    assert!(all.contains("only inside") && all.contains(&w), "{all}");
    let ci = s.client("ci");
    let e = ci.consume(&id).await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(
        e.to_string().contains("outside_window") || e.to_string().contains("next opens at"),
        "{e}"
    );
    assert_eq!(ci.get(&id).await.unwrap().status, Status::Approved);
    let export = s.run(crate::helpers::AUDITOR, &["audit", "export"]).await.stdout;
    let k = kinds(&export, &id);
    assert!(!k.contains(&"consumed".to_string()), "{k:?}");
    assert!(k.contains(&"refused".to_string()), "{k:?}");
}
