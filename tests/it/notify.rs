//! Notifications end to end: a real server, webhook and Slack receivers on wiremock, an
//! SMTP server from aiosmtpd. Waits are on observable outcomes: the notifications API
//! long-polls on the outbox version, bounded by an overall deadline.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::helpers::*;
use hmac::{Hmac, Mac};
use jitgate::core::api::{Context, CreateRequest, NotificationView};
use jitgate::core::decide::Status;
use serde_json::Value;
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "whsec-test-0123456789";
const SECRET_ENV: &str = "JITGATE_TEST_WEBHOOK_SECRET";

/// `notify:` with fast retries, and the extra lines given.
fn notify_yaml(channels: &str) -> String {
    format!("notify:\n  retry_base: 50ms\n  retry_max: 400ms\n  timeout: 2s\n{channels}")
}

fn webhook_yaml(url: &str, events: &str) -> String {
    format!("  webhooks:\n    - name: audit\n      url: {url}\n      secret_env: {SECRET_ENV}\n{events}")
}

async fn start(db: Db, channels: &str) -> TestApp {
    TestApp::builder()
        .backend(db)
        .config_extra(&notify_yaml(channels))
        .env(SECRET_ENV, SECRET)
        .spawn()
        .await
}

/// Opens a production request as the `ci` pipeline on behalf of `actor`.
async fn open(s: &TestApp, actor: &str) -> String {
    s.open_via_api(actor).await.id
}

fn all_delivered(n: usize) -> impl Fn(&[NotificationView]) -> bool {
    move |rows| rows.len() == n && rows.iter().all(|r| r.state == "delivered")
}

fn header<'a>(r: &'a wiremock::Request, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn hmac_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn received(mock: &MockServer, at: &str) -> Vec<wiremock::Request> {
    mock.received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .collect()
}

#[tokio::test]
async fn webhook_and_slack_tell_approvers_then_the_requester() {
    for db in backends() {
        let mock = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&mock)
            .await;
        Mock::given(method("POST"))
            .and(path("/slack"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(&mock)
            .await;
        let channels = format!(
            "{}  slack:\n    - name: releases\n      url: {}/slack\n",
            webhook_yaml(&format!("{}/hook", mock.uri()), ""),
            mock.uri()
        );
        let s = start(db, &channels).await;

        // alice-gh is alice: she asks, bob and carol may approve.
        let id = open(&s, "alice-gh").await;
        let rows = outbox_until(&s, &id, "opened deliveries", all_delivered(2)).await;
        let keys: BTreeSet<&str> = rows.iter().map(|r| r.delivery.as_str()).collect();
        let hook_key = format!("{id}:opened:webhook:audit");
        assert_eq!(
            keys,
            BTreeSet::from([hook_key.as_str(), &format!("{id}:opened:slack:releases")])
        );
        assert!(
            rows.iter().all(|r| r.attempts == 1 && r.last_error.is_none()),
            "{rows:#?}"
        );

        s.client("bob")
            .deny(&id, Some("no change ticket".into()))
            .await
            .unwrap();
        outbox_until(&s, &id, "decided deliveries", all_delivered(4)).await;

        let hooks = received(&mock, "/hook").await;
        assert_eq!(hooks.len(), 2, "{db:?}");
        for (r, event) in hooks.iter().zip(["opened", "decided"]) {
            assert_eq!(r.method.as_str(), "POST");
            assert_eq!(header(r, "content-type"), "application/json");
            assert_eq!(header(r, "x-jitgate-event"), event);
            assert_eq!(header(r, "x-jitgate-delivery"), format!("{id}:{event}:webhook:audit"));
            assert!(header(r, "x-jitgate-timestamp").parse::<i64>().unwrap() > 1_600_000_000);
            // The signature is over the raw body, with the configured secret.
            assert_eq!(
                header(r, "x-jitgate-signature"),
                format!("sha256={}", hmac_hex(&r.body))
            );
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["event"], event);
            assert_eq!(body["delivery"], header(r, "x-jitgate-delivery"));
            assert_eq!(body["request_id"], id.as_str());
            assert_eq!(body["url"], format!("{}/requests/{id}", s.url));
            assert_eq!(body["context"]["environment"], "production");
            assert_eq!(body["context"]["repository"], "acme/app");
            assert_eq!(body["rule"], "production");
            assert_eq!(body["summary"], "release 1.2.3");
            assert!(body["requester"].as_array().unwrap().contains(&"alice".into()));
        }
        let opened: Value = serde_json::from_slice(&hooks[0].body).unwrap();
        assert_eq!(opened["status"], "pending");
        assert_eq!(opened["approvers"], serde_json::json!(["bob", "carol"]));
        assert_eq!(opened["audience"], serde_json::json!(["bob", "carol"]));
        assert_eq!(opened["needs"], "sre 0/1 (may vote: bob, carol)");
        let decided: Value = serde_json::from_slice(&hooks[1].body).unwrap();
        assert_eq!(decided["status"], "denied");
        assert_eq!(decided["decided_by"], "bob (deny)");
        assert_eq!(decided["reason"], "no change ticket");
        assert_eq!(decided["votes"][0]["voter"], "bob");
        assert_eq!(decided["audience"], serde_json::json!(["alice"]));

        let slack = received(&mock, "/slack").await;
        assert_eq!(slack.len(), 2);
        let m: Value = serde_json::from_slice(&slack[0].body).unwrap();
        assert_eq!(m["blocks"][0]["type"], "header");
        assert_eq!(
            m["blocks"][0]["text"]["text"],
            "Approval needed: production of acme/app"
        );
        let fields = m["blocks"][1]["fields"].to_string();
        assert!(fields.contains("*Repository*\\nacme/app"), "{fields}");
        assert!(
            m["blocks"][2]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("may vote: bob, carol")
        );
        assert_eq!(m["blocks"][3]["type"], "actions");
        assert_eq!(m["blocks"][3]["elements"][0]["url"], format!("{}/requests/{id}", s.url));
        assert!(m["text"].as_str().unwrap().contains(&id));
        let m: Value = serde_json::from_slice(&slack[1].body).unwrap();
        assert_eq!(m["blocks"][0]["text"]["text"], "Denied: production of acme/app");
        let detail = m["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(
            detail.contains("bob (deny)") && detail.contains("no change ticket"),
            "{detail}"
        );

        // A request the policy decides by itself asks nobody and tells nobody.
        let (auto, _) = s
            .client("ci")
            .create(&CreateRequest {
                context: Context {
                    environment: "staging".into(),
                    actor: "dave".into(),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(auto.status, Status::Approved);
        let none = outbox_until(&s, &auto.id, "nothing", |_| true).await;
        assert!(none.is_empty(), "{none:#?}");

        // The outbox is for approvers: a pipeline token is refused.
        let (status, _) = s
            .http()
            .api("GET", &format!("/notifications?request={id}"), &token("ci"), None)
            .await;
        assert_eq!(status, 403);
    }
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_each_notification_once() {
    let mock = MockServer::start().await;
    // Down for the first three deliveries, then up.
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(500).set_body_string("receiver is down"))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .expect(2)
        .mount(&mock)
        .await;
    let s = start(Db::Sqlite, &webhook_yaml(&format!("{}/hook", mock.uri()), "")).await;
    let id = open(&s, "erin").await;
    // While it is down, the failure is recorded and the row stays pending.
    let rows = outbox_until(&s, &id, "a recorded failure", |rows| {
        rows.iter()
            .any(|r| r.state == "pending" && r.last_error.as_deref().is_some_and(|e| e.contains("HTTP 500")))
    })
    .await;
    assert!(
        rows[0].last_error.as_deref().unwrap().contains("receiver is down"),
        "{rows:#?}"
    );
    let rows = outbox_until(&s, &id, "the opened delivery", all_delivered(1)).await;
    assert_eq!(rows[0].attempts, 4, "{rows:#?}");
    assert!(rows[0].last_error.is_none());

    s.client("ci").cancel(&id, None).await.unwrap();
    let rows = outbox_until(&s, &id, "the decided delivery", all_delivered(2)).await;
    assert_eq!(rows[1].event, "decided");
    assert_eq!(rows[1].attempts, 1);
    assert_eq!(rows[1].payload["status"], "canceled");

    let hooks = received(&mock, "/hook").await;
    assert_eq!(hooks.len(), 5, "4 attempts for opened, 1 for decided");
    // Every attempt of one notification carries the same delivery id and the same body.
    let opened: Vec<_> = hooks
        .iter()
        .filter(|r| header(r, "x-jitgate-event") == "opened")
        .collect();
    assert_eq!(opened.len(), 4);
    assert!(
        opened.iter().all(
            |r| r.body == opened[0].body && header(r, "x-jitgate-delivery") == format!("{id}:opened:webhook:audit")
        )
    );
    // Exactly one successful delivery of each.
    mock.verify().await;
}

#[tokio::test]
async fn a_failing_delivery_survives_kill_and_restart() {
    for db in backends() {
        let mock = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&mock)
            .await;
        let events = "      events: [opened]\n";
        let mut s = start(db, &webhook_yaml(&format!("{}/hook", mock.uri()), events)).await;
        let id = open(&s, "erin").await;
        let rows = outbox_until(&s, &id, "two failed attempts", |rows| {
            rows.len() == 1 && rows[0].attempts >= 2 && rows[0].last_error.is_some()
        })
        .await;
        assert_eq!(rows[0].state, "pending");

        s.kill().await;
        mock.reset().await;
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .mount(&mock)
            .await;
        s.respawn().await;
        let rows = outbox_until(&s, &id, "delivery after the restart", all_delivered(1)).await;
        assert!(rows[0].attempts >= 3, "{rows:#?}");
        let hooks = received(&mock, "/hook").await;
        assert_eq!(hooks.len(), 1, "{db:?}");
        assert_eq!(
            header(&hooks[0], "x-jitgate-delivery"),
            format!("{id}:opened:webhook:audit")
        );
        mock.verify().await;
    }
}

/// Two workers (here: two stores on one database, as two replicas would be) claiming at
/// once never get the same row; a rolled-back transaction queues nothing.
#[tokio::test]
async fn claims_never_overlap_and_rollback_queues_nothing() {
    use jitgate::store::{NotificationDraft, Store};
    for db in backends() {
        let dir = tempfile::tempdir().unwrap();
        let url = database_url(db, dir.path()).await;
        let a = Store::connect(&url).await.unwrap();
        let b = Store::connect(&url).await.unwrap();
        let draft = |i: usize| NotificationDraft {
            key: format!("req_{i}:opened:webhook:audit"),
            request_id: format!("req_{i}"),
            event: "opened".into(),
            channel: "webhook".into(),
            recipient: "audit".into(),
            payload: "{}".into(),
            created_at: 1,
        };
        let mut tx = a.begin().await.unwrap();
        assert!(tx.enqueue_notification(&draft(999)).await.unwrap());
        drop(tx);
        assert!(a.notifications(Some("req_999"), None, 10).await.unwrap().is_empty());

        let mut tx = a.begin().await.unwrap();
        for i in 0..120 {
            assert!(tx.enqueue_notification(&draft(i)).await.unwrap());
        }
        // Queuing a key twice queues it once.
        assert!(!tx.enqueue_notification(&draft(0)).await.unwrap());
        tx.commit().await.unwrap();

        let mut tasks = Vec::new();
        for (n, store) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let rows = store
                        .claim_notifications(&format!("w{n}"), 10, i64::MAX, 7)
                        .await
                        .unwrap();
                    if rows.is_empty() {
                        return got;
                    }
                    got.extend(rows.into_iter().map(|r| r.id));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let unique: BTreeSet<&String> = all.iter().collect();
        assert_eq!(all.len(), 120, "{db:?}: every row claimed once");
        assert_eq!(unique.len(), 120, "{db:?}: no row claimed twice");
        a.close().await;
        b.close().await;
    }
}

/// The SMTP server from PyPI's aiosmtpd, or `None` (and a printed skip) when it is not
/// installed; with `GATE_E2E_REQUIRED=1` a missing aiosmtpd fails the test.
async fn smtp_sink(dir: &std::path::Path) -> Option<(tokio::process::Child, u16)> {
    use tokio::io::AsyncBufReadExt;
    let have = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        skip_or_fail("the email test", "aiosmtpd is not installed (pip install aiosmtpd)");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_sink.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("smtp sink starts")
        .unwrap()
        .expect("smtp sink prints its port");
    let port = first.strip_prefix("listening ").unwrap().parse().unwrap();
    Some((child, port))
}

#[tokio::test]
async fn email_goes_to_approvers_then_to_the_requester() {
    let mail_dir = tempfile::tempdir().unwrap();
    let Some((_sink, port)) = smtp_sink(mail_dir.path()).await else {
        return;
    };
    let channels = format!(
        "  email:\n    host: 127.0.0.1\n    port: {port}\n    from: jitgate <gate@example.test>\n    starttls: opportunistic\n"
    );
    let s = start(Db::Sqlite, &channels).await;
    let id = open(&s, "alice-gh").await;
    let rows = outbox_until(&s, &id, "approver emails", all_delivered(2)).await;
    let to: BTreeSet<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
    assert_eq!(to, BTreeSet::from(["bob@example.test", "carol@example.test"]));
    s.client("carol").approve(&id, Some("looks good".into())).await.unwrap();
    let rows = outbox_until(&s, &id, "the requester's email", all_delivered(3)).await;
    assert_eq!(rows[2].recipient, "alice@example.test");
    assert_eq!(rows[2].event, "decided");

    // Delivered means the SMTP server accepted it, so the files are there.
    let mut mails: Vec<Value> = std::fs::read_dir(mail_dir.path())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "json").then(|| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        })
        .collect();
    assert_eq!(mails.len(), 3, "{mails:#?}");
    mails.sort_by_key(|m| m["rcpt_tos"][0].as_str().unwrap().to_string());
    let rcpts: Vec<&str> = mails.iter().map(|m| m["rcpt_tos"][0].as_str().unwrap()).collect();
    assert_eq!(rcpts, ["alice@example.test", "bob@example.test", "carol@example.test"]);
    assert!(mails.iter().all(|m| m["rcpt_tos"].as_array().unwrap().len() == 1));
    assert!(mails.iter().all(|m| m["mail_from"] == "gate@example.test"));
    for m in &mails {
        // Unfold header lines (RFC 5322: a line break before white space continues the line).
        let data = m["data"].as_str().unwrap().replace("\r\n", "\n").replace("\n ", " ");
        let requester = m["rcpt_tos"][0] == "alice@example.test";
        let subject = if requester {
            format!("Subject: [jitgate] Approved: production of acme/app ({id})")
        } else {
            format!("Subject: [jitgate] Approval needed: production of acme/app ({id})")
        };
        assert!(data.contains(&subject), "{data}");
        assert!(data.contains("multipart/alternative"), "{data}");
        assert!(data.contains("Content-Type: text/plain"), "{data}");
        assert!(data.contains("Content-Type: text/html"), "{data}");
        assert!(data.contains(&format!("Request: {id}")), "{data}");
        assert!(data.contains("Message-ID: <"), "{data}");
        if requester {
            assert!(data.contains("Decided by: carol (approve)"), "{data}");
            assert!(data.contains("Why: looks good"), "{data}");
        } else {
            assert!(data.contains(&format!("gate approve {id}")), "{data}");
            assert!(data.contains("Still needed: sre 0/1"), "{data}");
        }
    }
}

#[tokio::test]
async fn a_missing_secret_stops_the_server_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "version: 1\nrules:\n  - name: all\n    decision: deny\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gate.yaml"),
        "notify:\n  webhooks:\n    - name: audit\n      url: https://hooks.example.com/x\n      secret_env: JITGATE_TEST_SURELY_UNSET_SECRET\n",
    )
    .unwrap();
    let files = crate::support::serve::ServeFiles {
        config: dir.path().join("gate.yaml"),
        policy: dir.path().join("policy.yaml"),
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        database_url: None,
    };
    let out = files
        .command(std::path::Path::new(GATE))
        .env_remove("JITGATE_TEST_SURELY_UNSET_SECRET")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "it never listened");
    assert!(
        err.contains("webhook `audit` secret_env: environment variable `JITGATE_TEST_SURELY_UNSET_SECRET` is not set"),
        "{err}"
    );
}

#[tokio::test]
async fn checkpoints_go_to_a_webhook_that_asks_for_them() {
    for db in backends() {
        let hook = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/siem"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&hook)
            .await;
        let s = start(
            db,
            &webhook_yaml(&format!("{}/siem", hook.uri()), "      events: [checkpoint]\n"),
        )
        .await;
        // Staging is approved by the policy at once: its record signs a checkpoint.
        let body = CreateRequest {
            context: Context {
                repository: "acme/app".into(),
                environment: "staging".into(),
                actor: "erin".into(),
                ..Default::default()
            },
            summary: "staging deploy".into(),
            ..Default::default()
        };
        let (v, _) = s.client("ci").create(&body).await.unwrap();
        assert_eq!(v.status, Status::Approved);
        let rows = outbox_until(&s, "", "the checkpoint delivered", all_delivered(1)).await;
        assert_eq!(rows[0].event, "checkpoint", "{db:?}");
        // Only the checkpoint went there: the webhook did not ask for request events.
        assert!(
            outbox_until(&s, &v.id, "the request's outbox", |_| true)
                .await
                .is_empty()
        );
        let got = hook.received_requests().await.unwrap();
        assert_eq!(got.len(), 1, "{db:?}");
        let doc: Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(doc["event"], "checkpoint");
        let note = doc["checkpoint"].as_str().unwrap();
        let key = s.http().get("/api/v1/log/key").send().await.text().await;
        let cp = jitgate::core::log::verify_checkpoint(note, key.trim(), &[]).unwrap();
        assert_eq!(doc["tree_size"], cp.size, "{db:?}");
        assert!(cp.size >= 3, "created, the policy's vote and the decision: {cp:?}");
    }
}
