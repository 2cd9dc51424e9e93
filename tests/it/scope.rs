//! `approval_scope: run` and `supersede`, end to end with the real `gate request`: the
//! gates of one matrix run approved by one vote, each consuming its own approval; a
//! re-run and another commit asked again; an older waiting gate superseded by a newer
//! request and exiting 1 naming it; nothing superseded without the key.

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{COMMIT, Db, OTHER_COMMIT, TestApp, Waiting, as_dba, backends, token};

/// The gate as a job of GitHub run `run`, attempt `attempt`, started by erin.
fn job(s: &TestApp, run: &str, attempt: &str, job: &str, commit: &str) -> Command {
    let mut c = s.gate("ci");
    c.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", "acme/web")
        .env("GITHUB_RUN_ID", run)
        .env("GITHUB_RUN_ATTEMPT", attempt)
        .env("GITHUB_JOB", job)
        .env("GITHUB_ACTOR", "erin")
        .env("GITHUB_SHA", commit)
        .env("GITHUB_REF", "refs/heads/main");
    c
}

async fn open(s: &TestApp, run: &str, attempt: &str, name: &str, commit: &str) -> Waiting {
    s.open_with(job(s, run, attempt, name, commit), &["--environment", "production"])
        .await
}

async fn view(s: &TestApp, id: &str) -> Value {
    let (status, v) = s
        .http()
        .api("GET", &format!("/requests/{id}"), &token("alice"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The ids in alice's inbox.
async fn inbox(s: &TestApp) -> Vec<String> {
    let (status, list) = s
        .http()
        .api("GET", "/requests?status=pending", &token("alice"), None)
        .await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

async fn approve(s: &TestApp, id: &str) {
    let out = s.run("alice", &["approve", id]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

async fn matrix_on(db: Db) {
    let s = TestApp::builder()
        .backend(db)
        .rule("    require: [{ group: sre, count: 1 }]\n    approval_scope: run")
        .spawn()
        .await;

    // Three gates of one matrix, one run attempt: the first is the one to approve.
    let mut gates = Vec::new();
    for name in ["deploy-eu", "deploy-us", "deploy-ap"] {
        gates.push(open(&s, "77", "1", name, COMMIT).await);
    }
    let first = gates[0].id.clone();
    for g in &gates[1..] {
        let v = view(&s, &g.id).await;
        assert_eq!(v["status"], "pending", "{v}");
        assert_eq!(v["covered_by"], first.as_str(), "{v}");
    }
    assert!(view(&s, &first).await.get("covered_by").is_none());
    assert_eq!(inbox(&s).await, vec![first.clone()], "approvers see one item");
    // The web page of a covered request sends approvers to the covering one.
    let http = s.http();
    let (cookie, _) = crate::ui::sign_in(&http, "alice").await;
    let page = http
        .get(&format!("/requests/{}", gates[1].id))
        .header("cookie", &cookie)
        .send()
        .await
        .text()
        .await;
    assert!(
        page.contains(&format!("decided with request {first} of the same run")) && !page.contains("approve-reason"),
        "{page}"
    );

    // One approval: all three exit 0, each having consumed its own approval.
    approve(&s, &first).await;
    let mut records = Vec::new();
    for g in gates {
        let id = g.id.clone();
        let record = g.record_path().to_path_buf();
        let (code, events, stderr) = g.finish().await;
        assert_eq!(code, 0, "{id}: {events:?} {stderr}");
        let v = view(&s, &id).await;
        assert_eq!(v["status"], "consumed", "{v}");
        assert!(v["consumed_at"].is_string(), "{v}");
        records.push(std::fs::read_to_string(&record).unwrap());
        if id != first {
            let vote = &v["votes"][0];
            assert_eq!(
                (vote["via"].as_str(), vote["voter"].as_str()),
                (Some("scope"), Some(&*format!("scope:{first}")))
            );
            assert!(v["approval_expires_at"].as_str() <= view(&s, &first).await["approval_expires_at"].as_str());
        }
    }
    records.sort();
    records.dedup();
    assert_eq!(records.len(), 3, "each gate has its own record");

    // A fourth job of the same attempt, after the approval: approved at once.
    let late = open(&s, "77", "1", "deploy-sa", COMMIT).await;
    let id = late.id.clone();
    let (code, events, stderr) = late.finish().await;
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_eq!(view(&s, &id).await["covered_by"], first.as_str());

    // A re-run with the same commit asks again, and waits until someone approves.
    let rerun = open(&s, "77", "2", "deploy-eu", COMMIT).await;
    let v = view(&s, &rerun.id).await;
    assert_eq!(v["status"], "pending", "{v}");
    assert!(v.get("covered_by").is_none(), "{v}");
    assert_eq!(inbox(&s).await, vec![rerun.id.clone()]);
    approve(&s, &rerun.id).await;
    let (code, events, stderr) = rerun.finish().await;
    assert_eq!(code, 0, "{events:?} {stderr}");

    // Another commit in the same run attempt is another scope too.
    let other = s
        .open_with(
            job(&s, "77", "2", "deploy-us", OTHER_COMMIT),
            &["--environment", "production", "--no-wait"],
        )
        .await;
    let v = view(&s, &other.id).await;
    assert_eq!(v["status"], "pending", "{v}");
    assert!(v.get("covered_by").is_none(), "{v}");
    assert_eq!(inbox(&s).await, vec![other.id.clone()]);

    // Every request replays from its signed events, the covered ones included.
    let out = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test]
async fn one_approval_covers_a_matrix_run_and_a_rerun_asks_again() {
    for db in backends() {
        matrix_on(db).await;
    }
}

async fn supersede_on(db: Db) {
    let s = TestApp::builder()
        .backend(db)
        .rule("    require: [{ group: sre, count: 1 }]\n    approval_scope: run\n    supersede: true")
        .spawn()
        .await;
    // Two gates of one run: siblings never supersede each other.
    let a = open(&s, "80", "1", "deploy-eu", COMMIT).await;
    let b = open(&s, "80", "1", "deploy-us", COMMIT).await;
    assert_eq!(view(&s, &a.id).await["status"], "pending");
    // A newer run's request cancels both; it stays pending itself.
    let newer = open(&s, "81", "1", "deploy-eu", OTHER_COMMIT).await;
    let url = format!("{}/requests/{}", s.url, newer.id);
    for old in [a, b] {
        let id = old.id.clone();
        let (code, events, stderr) = old.finish().await;
        assert_eq!(code, 1, "{id}: {events:?} {stderr}");
        let outcome = crate::helpers::outcome(&events);
        assert_eq!(outcome["decision"], "superseded", "{outcome}");
        assert_eq!(outcome["superseded_by"], newer.id.as_str(), "{outcome}");
        let reason = outcome["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("superseded by {} ({url})", newer.id)),
            "{reason}"
        );
        let v = view(&s, &id).await;
        assert_eq!(
            (v["status"].as_str(), v["superseded_by"].as_str()),
            (Some("canceled"), Some(newer.id.as_str()))
        );
    }
    assert_eq!(view(&s, &newer.id).await["status"], "pending");
    assert_eq!(inbox(&s).await, vec![newer.id.clone()]);
    let out = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
    assert_eq!(out.code, 0, "{out:?}");

    // Without `supersede`, a newer request leaves the older one waiting.
    let s = TestApp::builder()
        .backend(db)
        .rule("    require: [{ group: sre, count: 1 }]")
        .spawn()
        .await;
    let older = open(&s, "90", "1", "deploy", COMMIT).await;
    let newer = open(&s, "91", "1", "deploy", OTHER_COMMIT).await;
    let v = view(&s, &older.id).await;
    assert_eq!(v["status"], "pending", "{v}");
    assert!(v.get("superseded_by").is_none(), "{v}");
    assert_eq!(inbox(&s).await, vec![older.id.clone(), newer.id.clone()]);
}

#[tokio::test]
async fn a_newer_request_supersedes_older_waiting_gates() {
    for db in backends() {
        supersede_on(db).await;
    }
}

async fn forged_cover_on(db: Db) {
    let s = TestApp::builder()
        .backend(db)
        .rule("    require: [{ group: sre, count: 1 }]\n    approval_scope: run\n    supersede: true")
        .spawn()
        .await;
    let no_wait = ["--environment", "production", "--no-wait"];
    let first = s.open_with(job(&s, "60", "1", "deploy-eu", COMMIT), &no_wait).await;
    let covered = s.open_with(job(&s, "60", "1", "deploy-us", COMMIT), &no_wait).await;
    approve(&s, &first.id).await;
    assert_eq!(view(&s, &covered.id).await["status"], "approved");
    // The covering approval's evidence edited in the database: the covered approval,
    // which names it, is refused when used.
    as_dba(
        &s,
        db,
        &format!(
            "UPDATE gate_audit SET data = replace(data, 'approve', 'approv3') WHERE request_id = '{}' AND kind = 'approved'",
            first.id
        ),
    )
    .await;
    let e = s.client("ci").consume(&covered.id).await.unwrap_err().to_string();
    assert!(e.contains("tampered") && e.contains(&first.id), "{e}");

    // `gate policy explain` says what the rule does.
    let ctx = s.dir.path().join("ctx.json");
    std::fs::write(&ctx, r#"{"environment": "production"}"#).unwrap();
    let policy = s.policy.to_str().unwrap().to_string();
    let out = s
        .run(
            "ci",
            &["policy", "explain", &policy, "--request", ctx.to_str().unwrap()],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("approval_scope: run (one approval covers"),
        "{out:?}"
    );
    assert!(out.stdout.contains("supersede: cancels older pending"), "{out:?}");
}

#[tokio::test]
async fn a_covered_approval_naming_altered_evidence_is_refused() {
    for db in backends() {
        forged_cover_on(db).await;
    }
}
