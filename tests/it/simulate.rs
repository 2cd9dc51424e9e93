//! `gate policy simulate`, the real binaries: requests opened by `gate request` and decided
//! by `gate approve`, then a new policy replayed over them from the server's export (an
//! auditor's token) and from a file `gate audit export` wrote. Exactly the changed
//! requests are printed, nothing is written, an approver is refused by the server, and a
//! bad policy or export is placed at its line.

use serde_json::Value;

use crate::helpers::{ADMIN, AUDITOR, COMMIT, Db, TestApp, backends};

const OLD: &str = "version: 1
groups:
  sre: [alice, bob, carol]
  security: [alice, erin]
rules:
  - name: staging
    match: { environment: staging }
    decision: approve
  - name: production
    match: { environment: production }
    require: [{ group: sre, count: 1 }]
  - name: qa
    match: { environment: qa }
    require: [{ group: security, count: 1 }]
";

/// Production needs two of sre; the staging rule is gone; qa is as it was.
const NEW: &str = "version: 1
groups:
  sre: [alice, bob, carol]
  security: [alice, erin]
rules:
  - name: production
    match: { environment: production }
    require: [{ group: sre, count: 2 }]
  - name: qa
    match: { environment: qa }
    require: [{ group: security, count: 1 }]
";

/// Opens a request for `env` by dave with a gate that does not wait; returns its id.
async fn open(app: &TestApp, env: &str) -> String {
    let w = app
        .open(&[
            "--environment",
            env,
            "--actor",
            "dave",
            "--repository",
            "acme/app",
            "--commit",
            COMMIT,
            "--no-wait",
        ])
        .await;
    let id = w.id.clone();
    w.finish().await;
    id
}

async fn approve(app: &TestApp, who: &str, id: &str) {
    let out = app.run(who, &["approve", id]).await;
    assert_eq!(out.code, 0, "{out:?}");
}

/// The number of lines `gate audit export` prints, and the text.
async fn export(app: &TestApp) -> (usize, String) {
    let out = app.run(AUDITOR, &["audit", "export"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    (out.stdout.lines().count(), out.stdout)
}

#[tokio::test]
async fn a_new_policy_replays_the_period_and_prints_what_changes() {
    for db in backends() {
        scenario(db).await;
    }
}

async fn scenario(db: Db) {
    let app = TestApp::builder().backend(db).policy(OLD).spawn().await;
    let prod = open(&app, "production").await;
    approve(&app, "alice", &prod).await;
    let staging = open(&app, "staging").await;
    let qa = open(&app, "qa").await;
    approve(&app, "erin", &qa).await;
    let dir = app.dir.path();
    std::fs::write(dir.join("new.yaml"), NEW).unwrap();
    let (before, exported) = export(&app).await;

    // Online, as the auditor.
    let out = app
        .run(AUDITOR, &["policy", "simulate", "new.yaml", "--since", "30d"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let text = &out.stdout;
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks.len(), 3, "two requests, then the summary: {text}");
    assert!(
        blocks[0].starts_with(&format!("{prod}  acme/app  production  opened ")),
        "{text}"
    );
    assert!(
        blocks[0].contains("  requirements  1 of sre (alice, bob, carol) → 2 of sre (alice, bob, carol)\n"),
        "{text}"
    );
    assert!(blocks[0].contains("  outcome       approved → pending\n"), "{text}");
    assert!(
        blocks[0].contains("  why           the approvals given meet only 1 of 2 sre"),
        "{text}"
    );
    assert!(!blocks[0].contains("  rule "), "the rule is the same: {text}");
    assert!(
        blocks[1].starts_with(&format!("{staging}  acme/app  staging  opened ")),
        "{text}"
    );
    assert!(blocks[1].contains("  rule          staging → (none)\n"), "{text}");
    assert!(blocks[1].contains(" → refused (no_matching_rule)\n"), "{text}");
    assert!(!text.contains(&qa), "the unchanged qa request is not printed: {text}");
    assert!(
        blocks[2].starts_with("3 requests replayed (opened ")
            && blocks[2].contains(": 1 unchanged, 2 changed (rule 1, requirements 1, outcome 2)"),
        "{text}"
    );
    assert!(text.ends_with("nothing is written\n"), "{text}");

    // JSON, as the admin.
    let out = app
        .run(ADMIN, &["policy", "simulate", "new.yaml", "--format", "json"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [prod.as_str(), staging.as_str()]);
    assert_eq!(
        v["changed"][0]["changes"][1],
        serde_json::json!({"field": "outcome", "old": "approved", "new": "pending"})
    );
    assert_eq!(
        (v["summary"]["replayed"].as_u64(), v["summary"]["unchanged"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(v["summary"]["outcomes"]["approved → pending"], 1);
    assert_eq!(v["written"], false);

    // Offline, from the export: the same requests, with no token at all.
    std::fs::write(dir.join("events.jsonl"), &exported).unwrap();
    let mut cmd = app.gate(AUDITOR);
    cmd.env_remove("GATE_TOKEN").env("GATE_SERVER", "http://127.0.0.1:9");
    cmd.args([
        "policy",
        "simulate",
        "new.yaml",
        "--from-export",
        "events.jsonl",
        "--output",
        "json",
    ]);
    let offline = crate::helpers::Out::of(cmd).await;
    assert_eq!(offline.code, 0, "{offline:?}");
    let w: Value = serde_json::from_str(&offline.stdout).unwrap();
    assert_eq!(w["changed"], v["changed"]);
    assert_eq!(w["summary"], v["summary"]);

    // An approver may not read the audit log: the server's 403, said plainly.
    let out = app.run("alice", &["policy", "simulate", "new.yaml"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("HTTP 403, role_required"), "{out:?}");
    assert!(out.stderr.contains("is for auditors and admins"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // A bad policy is placed at its line and column; nothing is read from the server.
    std::fs::write(
        dir.join("bad.yaml"),
        NEW.replace(
            "    require: [{ group: sre, count: 2 }]",
            "    requires: [{ group: sre, count: 2 }]",
        ),
    )
    .unwrap();
    let out = app.run(AUDITOR, &["policy", "simulate", "bad.yaml"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("gate: bad.yaml:8:5: "), "{out:?}");
    assert!(out.stderr.contains("requires"), "{out:?}");

    // With --config, a member the server's users do not have is refused, placed.
    std::fs::write(
        dir.join("zoe.yaml"),
        NEW.replace("sre: [alice, bob, carol]", "sre: [alice, bob, zoe]"),
    )
    .unwrap();
    let config = app.config.display().to_string();
    let out = app
        .run(AUDITOR, &["policy", "simulate", "zoe.yaml", "--config", &config])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("gate: zoe.yaml:3:"), "{out:?}");
    assert!(
        out.stderr.contains("`zoe` is not a user in the server config"),
        "{out:?}"
    );
    let out = app
        .run(AUDITOR, &["policy", "simulate", "new.yaml", "--config", &config])
        .await;
    assert_eq!(out.code, 0, "{out:?}");

    // A broken export line is placed too.
    let mut broken: Vec<&str> = exported.lines().collect();
    broken.insert(2, "{\"seq\": \"three\"}");
    std::fs::write(dir.join("broken.jsonl"), broken.join("\n")).unwrap();
    let out = app
        .run(
            AUDITOR,
            &["policy", "simulate", "new.yaml", "--from-export", "broken.jsonl"],
        )
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.starts_with("gate: broken.jsonl:3: not an audit event"),
        "{out:?}"
    );

    // Nothing was written: the audit log is as long as before.
    assert_eq!(export(&app).await.0, before);
}
