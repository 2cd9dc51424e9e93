//! Break-glass end to end: the real `gate request --break-glass` approved at once with a
//! record that says so, the refusals, the review request and its vote, an overdue review
//! escalating (with metrics and the inbox), and the urgent notification on a webhook.

use std::time::{Duration, Instant};

use crate::helpers::*;
use jitgate::core::api::{Context, CreateRequest, NotificationList, RequestView};
use jitgate::core::break_glass::{BreakGlassAsk, RequestKind};
use jitgate::core::decide::Status;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// carol is on call and in sre; erin is on call only; frank is in neither.
fn bg_policy(within: &str) -> String {
    format!(
        "version: 1
groups:
  oncall: [carol, erin]
  sre: [alice, bob, carol]
  ops: [frank]
rules:
  - name: production
    match: {{ environment: production }}
    require: [{{ group: sre, count: 2 }}]
    escalate:
      - {{ after: 1h, notify: [ops] }}
    break_glass: {{ groups: [oncall], ttl: 30m, review: {{ group: sre, count: 1, within: {within} }} }}
  - name: staging
    match: {{ environment: staging }}
    require: [{{ group: sre, count: 1 }}]
  - name: everything else
    decision: deny
"
    )
}

fn body(env: &str, actor: &str, bg: Option<(&str, &str)>) -> CreateRequest {
    CreateRequest {
        context: Context {
            repository: "acme/app".into(),
            git_ref: "refs/heads/main".into(),
            commit: COMMIT.into(),
            actor: actor.into(),
            environment: env.into(),
            action: "deploy".into(),
            ..Default::default()
        },
        summary: "hotfix".into(),
        break_glass: bg.map(|(reason, incident)| BreakGlassAsk {
            reason: reason.into(),
            incident: incident.into(),
        }),
        ..Default::default()
    }
}

fn predicate(envelope: &str) -> Value {
    let env: Value = serde_json::from_str(envelope).unwrap();
    let payload = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        env["payload"].as_str().unwrap(),
    )
    .unwrap();
    serde_json::from_slice::<Value>(&payload).unwrap()["predicate"].clone()
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
async fn the_gate_breaks_the_glass_and_the_review_group_reviews_it() {
    for db in backends() {
        let s = TestApp::builder().backend(db).policy(bg_policy("24h")).spawn().await;
        let gate = s
            .open(&[
                "--environment",
                "production",
                "--commit",
                COMMIT,
                "--actor",
                "carol",
                "--break-glass",
                "--reason",
                "payments down",
                "--incident",
                "INC-42",
            ])
            .await;
        let id = gate.id.clone();
        let record = gate.record_path().to_path_buf();
        let (code, events, stderr) = gate.finish().await;
        assert_eq!(code, 0, "{events:?} {stderr}");
        let out = outcome(&events);
        assert_eq!(out["decision"], "break_glass", "{out}");
        assert_eq!(out["break_glass"]["by"], "carol", "{out}");
        let review_id = out["review"].as_str().expect("the review id").to_string();
        // The record says break-glass: who, why, which incident, which review.
        let p = predicate(&std::fs::read_to_string(&record).unwrap());
        assert_eq!(p["break_glass"]["by"], "carol");
        assert_eq!(p["break_glass"]["reason"], "payments down");
        assert_eq!(p["break_glass"]["incident"], "INC-42");
        assert_eq!(p["break_glass"]["review_id"], review_id.as_str());
        assert_eq!(p["outcome"]["status"], "consumed");
        // Nobody approved it as a person.
        let key = s.dir.path().join("key.pub");
        let keys = s.http().get("/api/v1/keys").send().await.text().await;
        std::fs::write(&key, keys).unwrap();
        let rec = record.display().to_string();
        let k = key.display().to_string();
        let v = s.run("ci", &["verify", &rec, "--key", &k]).await;
        assert_eq!(v.code, 0, "{v:?}");
        let v = s
            .run("ci", &["verify", &rec, "--key", &k, "--min-approvals", "1"])
            .await;
        assert_ne!(v.code, 0, "{v:?}");

        // Linked both ways.
        let ci = s.client("ci");
        let change = ci.get(&id).await.unwrap();
        assert_eq!(change.links.review.as_deref(), Some(review_id.as_str()));
        let alice = s.client("alice");
        let review = alice.get(&review_id).await.unwrap();
        assert_eq!(review.links.kind, RequestKind::Review);
        assert_eq!(review.links.review_of.as_deref(), Some(id.as_str()));
        assert_eq!(review.status, Status::Pending);
        assert!(!review.links.overdue);
        assert_eq!(review.requirements[0].group, "sre");
        assert!(!review.approvers().contains(&"carol".to_string()), "{review:?}");
        // The one who broke the glass never counts on its review.
        let e = s
            .client("carol")
            .approve(&review_id, Some("fine".into()))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(403), "{e}");
        // A review vote needs a reason, an approve too.
        let e = alice.approve(&review_id, None).await.unwrap_err();
        assert_eq!(e.status(), Some(422), "{e}");
        assert!(e.to_string().contains("reason_required"), "{e}");
        // The pipeline can neither use nor withdraw the review.
        let e = ci.consume(&review_id).await.unwrap_err();
        assert!(e.to_string().contains("not_a_change"), "{e}");
        let e = ci.cancel(&review_id, None).await.unwrap_err();
        assert!(e.to_string().contains("not_a_change"), "{e}");
        let done = alice
            .approve(&review_id, Some("rollback plan was sound".into()))
            .await
            .unwrap();
        assert_eq!(done.status, Status::Approved);
        // Its record is no evidence for a change.
        let rpath = s.dir.path().join("review.json");
        std::fs::write(&rpath, ci.record(&review_id).await.unwrap()).unwrap();
        let r = rpath.display().to_string();
        let v = s.run("ci", &["verify", &r, "--key", &k]).await;
        assert_ne!(v.code, 0, "{v:?}");
        assert!(
            v.stderr.contains("review of break-glass change") || v.stdout.contains("review of break-glass change"),
            "{v:?}"
        );
        // The auditor's report lists the change with its review's state.
        let report = s
            .client(AUDITOR)
            .change_report("2000-01-01", "2100-01-01", None, "json")
            .await
            .unwrap();
        let report: Value = serde_json::from_str(&report).unwrap();
        let bg = &report["summary"]["break_glass"];
        assert_eq!(bg.as_array().map(Vec::len), Some(1), "{report}");
        assert_eq!(bg[0]["request_id"], id.as_str());
        assert_eq!(bg[0]["review"], "approved");
        // The CSV says it in its own columns: the change's break-glass with its review's
        // state, and the review's row the change it reviews.
        let text = s
            .client(AUDITOR)
            .change_report("2000-01-01", "2100-01-01", None, "csv")
            .await
            .unwrap();
        let mut csv = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let head: Vec<String> = csv.headers().unwrap().iter().map(str::to_string).collect();
        let col = |name: &str| {
            head.iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("no {name} in {head:?}"))
        };
        let (rid, glass, of) = (col("request_id"), col("break_glass"), col("review_of"));
        let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
        let change = rows.iter().find(|r| r[rid] == *id).expect("the change's row");
        assert!(change[glass].starts_with("by carol, incident INC-42: "), "{change:?}");
        assert!(
            change[glass].ends_with(&format!("; review {review_id} approved")),
            "{change:?}"
        );
        assert_eq!(&change[of], "");
        let review = rows.iter().find(|r| r[rid] == *review_id).expect("the review's row");
        assert_eq!((&review[glass], &review[of]), ("", id.as_str()), "{review:?}");
        assert_eq!(s.run(AUDITOR, &["audit", "verify"]).await.code, 0);
        // `gate show`, the request pages and the Reports page say so too.
        let o = s.run("alice", &["show", &id]).await;
        assert!(o.stdout.contains("break-glass by carol for incident INC-42"), "{o:?}");
        let o = s.run("alice", &["show", &review_id]).await;
        assert!(
            o.stdout.contains(&format!("review of   break-glass change {id}")),
            "{o:?}"
        );
        let c = s.http();
        let (cookie, _) = crate::ui::sign_in(&c, "alice").await;
        let page = c
            .get(&format!("/requests/{id}"))
            .header("cookie", &cookie)
            .send()
            .await
            .text()
            .await;
        assert!(page.contains("id=\"break-glass\"") && page.contains("INC-42"), "{page}");
        let page = c
            .get(&format!("/requests/{review_id}"))
            .header("cookie", &cookie)
            .send()
            .await
            .text()
            .await;
        assert!(page.contains("id=\"review-of\""), "{page}");
        let (cookie, _) = crate::ui::sign_in(&c, AUDITOR).await;
        let page = c
            .get("/reports?from=2000-01-01&to=2100-01-01")
            .header("cookie", &cookie)
            .send()
            .await
            .text()
            .await;
        assert!(page.contains(&format!("{id}</a> by carol (incident INC-42)")), "{page}");
        assert!(page.contains("review-approved"), "{page}");
    }
}

#[tokio::test]
async fn break_glass_is_refused_where_the_rule_or_the_person_does_not_allow_it() {
    let s = TestApp::builder().policy(bg_policy("24h")).spawn().await;
    const BG: &[&str] = &["--break-glass", "--reason", "payments down", "--incident", "INC-42"];
    let run = |env: &'static str, actor: &'static str, extra: &'static [&'static str]| {
        let mut args = vec!["request", "--environment", env, "--commit", COMMIT, "--actor", actor];
        args.extend_from_slice(extra);
        args
    };
    // A rule without `break_glass`: refused (exit 1), naming the rule.
    let o = s.run("ci", &run("staging", "carol", BG)).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("break_glass_not_allowed") && o.stderr.contains("`staging`"),
        "{o:?}"
    );
    // Someone not on call: refused, naming the groups.
    let o = s.run("ci", &run("production", "frank", BG)).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("not_break_glass") && o.stderr.contains("`oncall`"),
        "{o:?}"
    );
    // No incident, no reason: the gate refuses before asking.
    let o = s
        .run("ci", &run("production", "carol", &["--break-glass", "--reason", "x"]))
        .await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--incident"), "{o:?}");
    let o = s
        .run(
            "ci",
            &run("production", "carol", &["--break-glass", "--incident", "INC-1"]),
        )
        .await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--reason"), "{o:?}");
    // And so does the API.
    let ci = s.client("ci");
    let e = ci
        .create(&body("production", "carol", Some(("x", " "))))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(422), "{e}");
    assert!(e.to_string().contains("break_glass_incomplete"), "{e}");
    // Nothing was opened by any of these.
    assert!(ci.list("pending").await.unwrap().is_empty());
    assert!(ci.list("approved").await.unwrap().is_empty());
}

/// Waits for the next changes of `id` until `done` holds.
async fn until(s: &TestApp, mut v: RequestView, done: impl Fn(&RequestView) -> bool) -> RequestView {
    let ci = s.client("ci");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&v) {
        assert!(Instant::now() < deadline, "gave up waiting: {v:?}\n{}", s.log());
        v = ci.wait(&v.id, Some(v.version), 30).await.unwrap();
    }
    v
}

#[tokio::test]
async fn an_overdue_review_escalates_and_shows_in_metrics_and_the_inbox() {
    for db in backends() {
        let notify = "notify:\n  retry_base: 1s\n  email:\n    host: 127.0.0.1\n    port: 9\n    from: gate@example.test\n    starttls: none\n";
        let s = TestApp::builder()
            .backend(db)
            .policy(bg_policy("1s"))
            .config_extra(notify)
            .spawn()
            .await;
        let ci = s.client("ci");
        let (change, new) = ci
            .create(&body("production", "erin", Some(("db failover", "INC-7"))))
            .await
            .unwrap();
        assert!(new);
        assert_eq!(change.status, Status::Approved);
        // Usable for the rule's `break_glass.ttl` (30m), not its `approval_ttl`.
        let ms = |t: &Option<String>| jitgate::core::report::ms_of(t.as_deref().unwrap()).unwrap();
        assert_eq!(ms(&change.approval_expires_at) - ms(&change.decided_at), 30 * 60_000);
        let review_id = change.links.review.clone().unwrap();
        let review = ci.get(&review_id).await.unwrap();
        // The timer takes the overdue step at `within`: wait for that change.
        let review = until(&s, review, |v| v.links.overdue).await;
        assert_eq!(review.status, Status::Pending, "a review does not expire");
        let m = s.http().get("/metrics").send().await.text().await;
        assert!(m.contains("jitgate_reviews_overdue 1\n"), "{m}");
        // The inbox lists it, marked, for the review group.
        let inbox = s.client("alice").list("pending").await.unwrap();
        let item = inbox
            .iter()
            .find(|v| v.id == review_id)
            .expect("the review in alice's inbox");
        assert!(item.links.overdue);
        let o = s.run("bob", &["pending"]).await;
        assert!(o.stdout.contains("OVERDUE review of"), "{o:?}");
        let c = s.http();
        let (cookie, _) = crate::ui::sign_in(&c, "alice").await;
        let page = c.get("/").header("cookie", &cookie).send().await.text().await;
        assert!(page.contains("Overdue review"), "{page}");
        // Recorded, and told to the review group and the rule's escalation groups.
        let export = s.run(AUDITOR, &["audit", "export"]).await.stdout;
        assert!(kinds(&export, &review_id).contains(&"escalated".to_string()));
        let (_, list) = s
            .http()
            .api(
                "GET",
                &format!("/notifications?request={review_id}"),
                &token(AUDITOR),
                None,
            )
            .await;
        let list: NotificationList = serde_json::from_value(list).unwrap();
        let mut told: Vec<&str> = list
            .notifications
            .iter()
            .filter(|n| n.event == "escalated")
            .map(|n| n.recipient.as_str())
            .collect();
        told.sort();
        assert_eq!(
            told,
            [
                "alice@example.test",
                "bob@example.test",
                "carol@example.test",
                "frank@example.test"
            ]
        );
        // Reviewed late is still reviewed; the gauge drops.
        let v = s
            .client("bob")
            .deny(&review_id, Some("not justified".into()))
            .await
            .unwrap();
        assert_eq!(v.status, Status::Denied);
        let m = s.http().get("/metrics").send().await.text().await;
        assert!(m.contains("jitgate_reviews_overdue 0\n"), "{m}");
    }
}

#[tokio::test]
async fn every_webhook_hears_of_a_break_glass_whatever_it_filters() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mock)
        .await;
    let notify = format!(
        "notify:\n  retry_base: 50ms\n  webhooks:\n    - name: audit\n      url: {}/hook\n      secret_env: JITGATE_TEST_BG_SECRET\n      events: [decided]\n",
        mock.uri()
    );
    let s = TestApp::builder()
        .policy(bg_policy("24h"))
        .config_extra(&notify)
        .env("JITGATE_TEST_BG_SECRET", "whsec-test-0123456789")
        .spawn()
        .await;
    let (change, _) = s
        .client("ci")
        .create(&body("production", "carol", Some(("payments down", "INC-9"))))
        .await
        .unwrap();
    // The notifications API long-polls on the outbox: wait for the delivery.
    let http = s.http();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut version: Option<u64> = None;
    loop {
        let mut route = format!("/notifications?request={}", change.id);
        if let Some(v) = version {
            route.push_str(&format!("&version={v}&wait=5"));
        }
        let (_, list) = http.api("GET", &route, &token(AUDITOR), None).await;
        let list: NotificationList = serde_json::from_value(list).unwrap();
        if list
            .notifications
            .iter()
            .any(|n| n.event == "break_glass" && n.state == "delivered")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no break_glass delivery: {list:?}\n{}",
            s.log()
        );
        version = Some(list.version);
    }
    let got: Vec<Value> = mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect();
    let bg = got
        .iter()
        .find(|d| d["event"] == "break_glass")
        .expect("a break_glass webhook");
    assert_eq!(bg["break_glass"]["by"], "carol");
    assert_eq!(bg["break_glass"]["reason"], "payments down");
    assert_eq!(bg["break_glass"]["incident"], "INC-9");
    assert_eq!(bg["review"], change.links.review.clone().unwrap().as_str());
}

#[tokio::test]
async fn a_newer_deploy_under_supersede_never_cancels_a_review() {
    let policy = bg_policy("24h").replace("    break_glass: {", "    supersede: true\n    break_glass: {");
    let s = TestApp::builder().policy(policy).spawn().await;
    let ci = s.client("ci");
    let (change, _) = ci
        .create(&body("production", "carol", Some(("payments down", "INC-11"))))
        .await
        .unwrap();
    let review_id = change.links.review.clone().unwrap();
    // The next deploy to production supersedes older pending changes, not the review.
    let mut next = body("production", "dave", None);
    next.context.commit = OTHER_COMMIT.into();
    let (newer, _) = ci.create(&next).await.unwrap();
    assert_eq!(newer.status, Status::Pending);
    let review = s.client("alice").get(&review_id).await.unwrap();
    assert_eq!(review.status, Status::Pending, "{review:?}");
    assert_eq!(review.superseded_by, None);
}
