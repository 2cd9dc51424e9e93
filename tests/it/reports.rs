//! The auditor's change report and evidence bundle, end to end: requests opened and
//! decided on a real server (people, the policy, a deny with an awkward reason, a
//! timeout; two environments; one before the period), then `gate audit report` in each
//! format checked against what the test did, the role check, the web UI's page and
//! downloads, and `gate audit bundle` verified offline by `gate verify --bundle`, which
//! must refuse a changed and a removed record, and, against the log, a request dropped
//! with its record and an event taken out of the bundled run. SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::io::Read as _;

use jitgate::core::api::{Context, CreateRequest, RequestView};
use jitgate::core::decide::Status;
use jitgate::core::report::Report;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::{COMMIT, Db, TestApp, backends, token};

const POLICY: &str = "version: 1
groups:
  sre: [alice, bob, carol]
rules:
  - name: staging
    match: { environment: staging }
    decision: approve
  - name: production
    match: { environment: production }
    require: [{ group: sre, count: 1 }]
";

/// A reason with everything CSV must quote and HTML must escape, and a leading `=`
/// a spreadsheet would run.
const REASON: &str = "=HYPERLINK(\"x\"), not now: <b>freeze</b> & \"CHG-7\"\nsee the change board";

async fn open(app: &TestApp, env: &str, actor: &str, timeout: Option<&str>) -> RequestView {
    let body = CreateRequest {
        context: Context {
            repository: "acme/app".into(),
            git_ref: "refs/heads/main".into(),
            commit: COMMIT.into(),
            actor: actor.into(),
            environment: env.into(),
            action: "deploy".into(),
            ..Default::default()
        },
        summary: format!("release to {env}"),
        artifacts: vec![format!("sha256:{}", "ab".repeat(32))],
        timeout: timeout.map(str::to_string),
        ..Default::default()
    };
    app.client("ci").create(&body).await.unwrap().0
}

/// Waits (long-polls, no sleeps) until the request is no longer pending.
async fn decided(app: &TestApp, v: RequestView) -> RequestView {
    let mut v = v;
    for _ in 0..20 {
        if v.status != Status::Pending {
            return v;
        }
        v = app.client("alice").wait(&v.id, Some(v.version), 30).await.unwrap();
    }
    panic!("request {} still pending", v.id);
}

struct Made {
    /// Decided before the period.
    outside: RequestView,
    expired: RequestView,
    approved: RequestView,
    auto: RequestView,
    denied: RequestView,
}

async fn make(app: &TestApp) -> Made {
    let outside = open(app, "production", "dave", None).await;
    let outside = app.client("alice").approve(&outside.id, None).await.unwrap();
    // Opened after `outside` was decided, and expiring a second later: the period that
    // starts at its expiry holds everything below and not `outside`.
    let expired = open(app, "production", "dave", Some("1s")).await;
    let expired = decided(app, expired).await;
    assert_eq!(expired.status, Status::Expired);
    let approved = open(app, "production", "dave", None).await;
    let out = app
        .run("alice", &["approve", &approved.id, "--reason", "reviewed"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let approved = app.client("alice").get(&approved.id).await.unwrap();
    let auto = open(app, "staging", "dave", None).await;
    assert_eq!(auto.status, Status::Approved);
    let denied = open(app, "production", "erin", None).await;
    let denied = app.client("bob").deny(&denied.id, Some(REASON.into())).await.unwrap();
    Made {
        outside,
        expired,
        approved,
        auto,
        denied,
    }
}

fn ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// The row of `v` says what the test did and what the server recorded.
async fn check_row(app: &TestApp, row: &Value, v: &RequestView, outcome: &str, how: &str) {
    let id = &v.id;
    assert_eq!(row["request_id"], id.as_str());
    assert_eq!(row["environment"], v.context.environment.as_str(), "{row}");
    assert_eq!(row["repository"], "acme/app");
    assert_eq!(row["ref"], "refs/heads/main");
    assert_eq!(row["commit"], COMMIT);
    assert_eq!(
        row["artifacts"],
        serde_json::json!([format!("sha256:{}", "ab".repeat(32))])
    );
    assert_eq!(row["outcome"], outcome, "{row}");
    assert_eq!(row["decided_how"], how, "{row}");
    assert_eq!(row["rule"], v.rule.as_str());
    assert_eq!(row["policy_digest"], v.policy_digest.as_str());
    assert_eq!(row["opened_at"], v.created_at.as_str());
    let decided_at = v.decided_at.as_deref().unwrap();
    assert_eq!(row["decided_at"], decided_at);
    assert_eq!(row["time_to_decision_ms"], ms(decided_at) - ms(&v.created_at));
    assert_eq!(row["reason"].as_str(), v.reason.as_deref(), "{row}");
    // The requester came from the pipeline's word (a static token), not a verified token.
    let actor = v.context.actor.as_str();
    assert!(
        row["requesters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["identity"] == actor && r["source"] == "asserted" && r["from"] == "context.actor"),
        "{row}"
    );
    assert_eq!(row["verified_by"], Value::Null);
    let votes: Vec<(String, String, String)> = v
        .votes
        .iter()
        .map(|x| (x.voter.clone(), x.decision.clone(), x.via.clone()))
        .collect();
    let got: Vec<(String, String, String)> = row["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["voter"].as_str().unwrap().into(),
                x["decision"].as_str().unwrap().into(),
                x["via"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(got, votes, "{row}");
    assert_eq!(row["separation_of_duties"]["held"], true, "{row}");
    let record = app.client("frank").record(id).await.unwrap();
    assert_eq!(row["record_digest"], hex::encode(Sha256::digest(record.as_bytes())));
}

#[tokio::test]
async fn the_report_and_the_bundle_say_what_happened() {
    for db in backends() {
        scenario(db).await;
    }
}

async fn scenario(db: Db) {
    let mut app = TestApp::builder()
        .backend(db)
        .policy(POLICY)
        .user_roles("frank", "[auditor]")
        .spawn()
        .await;
    let m = make(&app).await;
    let from = m.expired.decided_at.clone().unwrap();
    let to = "2999-12-31";
    assert!(ms(m.outside.decided_at.as_deref().unwrap()) < ms(&from));

    // JSON: the rows, in decision order, against what the test did.
    let out = app
        .run(
            "frank",
            &["audit", "report", "--from", &from, "--to", to, "--format", "json"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [&m.expired.id, &m.approved.id, &m.auto.id, &m.denied.id].map(String::as_str),
        "the request decided before the period is not a row: {}",
        m.outside.id
    );
    check_row(&app, &rows[0], &m.expired, "expired", "timer").await;
    check_row(&app, &rows[1], &m.approved, "approved", "human").await;
    check_row(&app, &rows[2], &m.auto, "approved", "automatic").await;
    check_row(&app, &rows[3], &m.denied, "denied", "human").await;
    assert_eq!(rows[3]["reason"], REASON.trim());
    assert_eq!(rows[1]["votes"][0]["reason"], "reviewed");
    let sod = rows[1]["separation_of_duties"]["detail"].as_str().unwrap();
    assert!(
        sod.contains("alice") && sod.contains("none of the requesters (dave"),
        "{sod}"
    );

    // The summary's figures.
    let s = &json["summary"];
    assert_eq!(s["changes"], 4);
    assert_eq!(
        s["by_outcome"],
        serde_json::json!({"approved": 2, "denied": 1, "expired": 1})
    );
    assert_eq!(s["by_environment"], serde_json::json!({"production": 3, "staging": 1}));
    assert_eq!(
        (s["automatic"].as_i64(), s["human"].as_i64(), s["undecided"].as_i64()),
        (Some(1), Some(2), Some(1))
    );
    let mut times: Vec<i64> = rows
        .iter()
        .map(|r| r["time_to_decision_ms"].as_i64().unwrap())
        .collect();
    times.sort();
    assert_eq!(s["median_time_to_decision_ms"], times[1], "nearest rank of 4: the 2nd");
    assert_eq!(s["p90_time_to_decision_ms"], times[3]);
    assert_eq!(s["expired"][0]["request_id"], m.expired.id.as_str());
    assert_eq!(s["expired"][0]["reason"], "nobody decided before the timeout");
    assert_eq!(s["denied"][0]["reason"], REASON.trim());
    assert_eq!(s["separation_violations"], serde_json::json!([]));
    assert_eq!(s["policies"].as_array().unwrap().len(), 1);
    assert_eq!(s["policies"][0]["digest"], m.approved.policy_digest.as_str());
    assert_eq!(s["policies"][0]["first_seen"], m.expired.created_at.as_str());

    // One environment.
    let out = app
        .run(
            "frank",
            &[
                "audit",
                "report",
                "--from",
                &from,
                "--to",
                to,
                "--environment",
                "staging",
            ],
        )
        .await;
    let staging: Report = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(staging.rows.len(), 1);
    assert_eq!(staging.rows[0].request_id, m.auto.id);

    // CSV: parsed back, the awkward reason survives, defused against formulas.
    let out = app
        .run(
            "frank",
            &["audit", "report", "--from", &from, "--to", to, "--format", "csv"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("\r\n") && out.stdout.starts_with("\"request_id\","));
    let mut r = csv::Reader::from_reader(out.stdout.as_bytes());
    let head: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    let recs: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 4);
    assert_eq!(&recs[3][col("request_id")], m.denied.id);
    assert_eq!(&recs[3][col("reason")], format!("'{}", REASON.trim()));
    assert_eq!(&recs[3][col("outcome")], "denied");
    assert_eq!(
        &recs[1][col("votes")],
        format!("alice approve at {} via token", m.approved.votes[0].at)
    );
    assert!(recs[1][col("separation_of_duties")].starts_with("held: "));

    // HTML: printable, no script, the reason escaped.
    let out = app
        .run(
            "frank",
            &["audit", "report", "--from", &from, "--to", to, "--format", "html"],
        )
        .await;
    assert!(out.stdout.contains("@page { size: A4"));
    assert!(
        !out.stdout.contains("<script") && !out.stdout.contains("<b>freeze"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("&#60;b&#62;freeze&#60;/b&#62; &#38;"),
        "{}",
        out.stdout
    );

    // Only auditors and admins: an approver's command fails naming the role, and a
    // pipeline gets 403 role_required.
    let out = app
        .run("alice", &["audit", "report", "--from", &from, "--to", to])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("`auditor` or `admin`"), "{out:?}");
    let q = format!("/reports/changes?from={}&to={to}", from.replace(':', "%3A"));
    let (status, body) = app.http().api("GET", &q, &token("ci"), None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "role_required");
    let (status, body) = app.http().api("GET", &q, &token("frank"), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .http()
        .api(
            "GET",
            "/reports/changes?from=October&to=2026-10-31",
            &token("frank"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`October`"),
        "{body}"
    );

    // The web UI's page and downloads, for the auditor only.
    let http = app.http();
    let (cookie, _) = crate::ui::sign_in(&http, "frank").await;
    let page = http
        .get(&format!("/reports?{}", &q[17..]))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(page.status, 200);
    let page = page.text().await;
    assert!(page.contains("4 change(s) decided"), "{page}");
    assert!(page.contains("/reports/changes.csv?from="), "{page}");
    let dl = http
        .get(&format!("/reports/changes.csv?{}", &q[17..]))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(dl.status, 200);
    assert!(
        dl.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert!(dl.text().await.contains(&m.denied.id));
    let (alice, _) = crate::ui::sign_in(&http, "alice").await;
    let denied = http.get("/reports").header("cookie", &alice).send().await;
    assert_eq!(denied.status, 403);
    // The nav link: shown to the auditor, not to an approver.
    let inbox = |c: String| {
        let http = app.http();
        async move { http.get("/").header("cookie", &c).send().await.text().await }
    };
    let frank_inbox = inbox(cookie.clone()).await;
    assert!(frank_inbox.contains("href=\"/reports\""), "{frank_inbox}");
    assert!(frank_inbox.contains("href=\"/audit\""), "{frank_inbox}");
    let alice_inbox = inbox(alice.clone()).await;
    assert!(alice_inbox.contains("href=\"/history\""), "{alice_inbox}");
    assert!(!alice_inbox.contains("href=\"/reports\""), "{alice_inbox}");
    assert!(!alice_inbox.contains("href=\"/audit\""), "{alice_inbox}");

    // The bundle, checked offline (the server stopped first).
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("evidence.tar.gz");
    let bundle_s = bundle.to_str().unwrap();
    let out = app
        .run(
            "frank",
            &["audit", "bundle", "--from", &from, "--to", to, "-o", bundle_s],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    app.stop().await;
    let files = unpack(&bundle);
    for f in [
        "README.md",
        "report.json",
        "report.csv",
        "report.html",
        "keys.json",
        "log/checkpoint",
        "log/key",
        "log/proofs.json",
        "log/leaves",
        "log/events.jsonl",
        "log/context.jsonl",
    ] {
        assert!(files.contains_key(f), "{f} in {:?}", files.keys());
    }
    for id in [&m.expired.id, &m.approved.id, &m.auto.id, &m.denied.id] {
        assert!(files.contains_key(&format!("records/{id}.json")));
    }
    assert!(!files.contains_key(&format!("records/{}.json", m.outside.id)));
    assert!(String::from_utf8_lossy(&files["README.md"]).contains("gate verify --bundle evidence.tar.gz"));
    let out = app.run("frank", &["verify", "--bundle", bundle_s]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("bundle intact: 4 signed record(s)"), "{out:?}");
    assert!(
        out.stdout
            .contains("complete: the log's 4 decision(s) of the period are its rows"),
        "{out:?}"
    );

    // A request's row AND its record dropped, the report's summary and renderings made
    // again to match: the records agree, but the log shows the decision.
    let mut dropped = files.clone();
    dropped.remove(&format!("records/{}.json", m.approved.id));
    let mut report: Report = serde_json::from_slice(&dropped["report.json"]).unwrap();
    report.rows.retain(|r| r.request_id != m.approved.id);
    report.summary = jitgate::core::report::summarise(&report.rows);
    dropped.insert("report.json".into(), serde_json::to_vec_pretty(&report).unwrap());
    dropped.insert(
        "report.csv".into(),
        jitgate::core::report::render::csv(&report).into_bytes(),
    );
    dropped.insert(
        "report.html".into(),
        jitgate::core::report::render::html(&report).into_bytes(),
    );
    let tampered = dir.path().join("dropped.tar.gz");
    pack(&tampered, &dropped);
    let out = app
        .run("frank", &["verify", "--bundle", tampered.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "(approved on {}) decided a request in the period, but report.json has no row for it",
            m.approved.id
        )),
        "{out:?}"
    );
    assert_eq!(out.stdout.matches("no row for it").count(), 1, "{out:?}");

    // The same, and the decision's event taken out of the run too: the run has a hole.
    let events = String::from_utf8(dropped["log/events.jsonl"].clone()).unwrap();
    let kept: String = events
        .lines()
        .filter(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            !(e["request_id"] == m.approved.id.as_str() && e["kind"] == "approved")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(kept.lines().count() + 1, events.lines().count());
    dropped.insert("log/events.jsonl".into(), kept.into_bytes());
    let tampered = dir.path().join("hole.tar.gz");
    pack(&tampered, &dropped);
    let out = app
        .run("frank", &["verify", "--bundle", tampered.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("the run is not contiguous (an event is missing)"),
        "{out:?}"
    );

    // The run cut short before the period's end: later decisions could hide there.
    let mut short = files.clone();
    let events = String::from_utf8(short["log/events.jsonl"].clone()).unwrap();
    let n = events.lines().count();
    let cut: String = events.lines().take(n - 1).map(|l| format!("{l}\n")).collect();
    short.insert("log/events.jsonl".into(), cut.into_bytes());
    let tampered = dir.path().join("short.tar.gz");
    pack(&tampered, &short);
    let out = app
        .run("frank", &["verify", "--bundle", tampered.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("later events of the period may be missing"),
        "{out:?}"
    );

    // A changed record: its signature no longer holds.
    let mut changed = files.clone();
    let name = format!("records/{}.json", m.approved.id);
    let text = String::from_utf8(changed[&name].clone()).unwrap();
    let mut env: Value = serde_json::from_str(&text).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = String::from_utf8(b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    env["payload"] = Value::String(b64.encode(payload.replace("\"alice\"", "\"mallory\"")));
    changed.insert(name.clone(), serde_json::to_vec(&env).unwrap());
    let tampered = dir.path().join("changed.tar.gz");
    pack(&tampered, &changed);
    let out = app
        .run("frank", &["verify", "--bundle", tampered.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(&format!("{name}: signature does not verify")),
        "{out:?}"
    );

    // A removed record: the report names it missing.
    let mut removed = files.clone();
    let name = format!("records/{}.json", m.denied.id);
    removed.remove(&name);
    let tampered = dir.path().join("removed.tar.gz");
    pack(&tampered, &removed);
    let out = app
        .run("frank", &["verify", "--bundle", tampered.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains(&format!("{name} is missing")), "{out:?}");

    // A row changed in the report (a reason rewritten): the records say otherwise.
    let mut edited = files.clone();
    let report = String::from_utf8(edited["report.json"].clone()).unwrap();
    edited.insert(
        "report.json".into(),
        report
            .replace("nobody decided before the timeout", "approved by phone")
            .into_bytes(),
    );
    let tampered = dir.path().join("edited.tar.gz");
    pack(&tampered, &edited);
    let out = app
        .run("frank", &["verify", "--bundle", tampered.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "report.json: row {}: reason is \"approved by phone\"",
            m.expired.id
        )),
        "{out:?}"
    );
}

fn unpack(path: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()));
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().to_string();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        out.insert(name, bytes);
    }
    out
}

fn pack(path: &std::path::Path, files: &BTreeMap<String, Vec<u8>>) {
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        t.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap();
}
