//! `gate migrate-data`: a real SQLite deployment (a server that did real work through the
//! API, the `gate` binary and the web UI) copied into a fresh PostgreSQL database by the
//! real binary; then a server on PostgreSQL with the same signing key serves the same
//! requests, verifies the same chain, and goes on appending to it. And the refusals.

use std::collections::BTreeMap;

use crate::helpers::*;
use jitgate::core::decide::Status;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Every table the migrations create, but `gate_schema` (each database records its own).
const TABLES: [&str; 12] = [
    "gate_requests",
    "gate_votes",
    "gate_audit",
    "gate_records",
    "gate_holders",
    "gate_sessions",
    "gate_sso_logins",
    "gate_outbox",
    "gate_webhook_deliveries",
    "gate_log_hashes",
    "gate_checkpoints",
    "gate_cosignatures",
];

const HOOK_SECRET: &str = "whsec-migrate-0123456789";
const HOOK_ENV: &str = "JITGATE_TEST_MIGRATE_HOOK";
const GH_SECRET: &str = "gh-webhook-secret";

/// True (and a skip line) when there is no PostgreSQL to migrate to; a failure under
/// `GATE_E2E_REQUIRED=1`.
fn no_postgres() -> bool {
    if std::env::var("GATE_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        return false;
    }
    crate::faults_pg::skip("GATE_TEST_DATABASE_URL is not set: no PostgreSQL to migrate to")
}

/// Posts GitHub delivery `delivery-1` (a push: recorded and ignored); its status.
async fn push_delivery(s: &TestApp) -> u16 {
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let sig = format!(
        "sha256={}",
        hex::encode(jitgate::core::crypto::hmac_sha256(GH_SECRET.as_bytes(), &body))
    );
    let r = s
        .http()
        .post("/webhooks/github")
        .header("x-github-event", "push")
        .header("x-github-delivery", "delivery-1")
        .header("x-hub-signature-256", sig)
        .body("application/json", body)
        .send()
        .await;
    r.status.as_u16()
}

/// The rows of each table, read straight from the database (not through jitgate).
async fn counts(url: &str) -> BTreeMap<&'static str, i64> {
    let mut out = BTreeMap::new();
    for t in TABLES {
        out.insert(t, crate::faults::count(url, &format!("SELECT COUNT(*) FROM {t}")).await);
    }
    out
}

/// Runs `gate migrate-data` with these arguments.
async fn migrate(args: &[&str]) -> Out {
    let mut c = tokio::process::Command::new(GATE);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("migrate-data")
        .args(args)
        .stdin(std::process::Stdio::null());
    Out::of(c).await
}

/// What the SQLite deployment did, to look for after the move.
struct Work {
    approved: String,
    denied: String,
    pending: String,
    session: String,
    export: String,
    keys: std::path::PathBuf,
}

/// A SQLite server with notifications (to a wiremock receiver) and GitHub webhooks on,
/// and real work done on it; stopped on return.
async fn deployment(hook: &MockServer) -> (TestApp, Work) {
    let mut s = TestApp::builder()
        .config_extra(&format!(
            "notify:\n  webhooks:\n    - name: audit\n      url: {}/hook\n      secret_env: {HOOK_ENV}\n\
             forge:\n  github:\n    api_url: {}\n    token: ghp_test\n    webhook_secret: {GH_SECRET}\n",
            hook.uri(),
            hook.uri()
        ))
        .env(HOOK_ENV, HOOK_SECRET)
        .spawn()
        .await;
    // Approved by bob with the real `gate approve`; the waiting gate consumed it.
    let w = s.open(&PRODUCTION_BY_DAVE).await;
    let approved = w.id.clone();
    let v = s.run("bob", &["approve", &approved, "--reason", "ship it"]).await;
    assert_eq!(v.code, 0, "{v:?}");
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    // Denied by alice; one left pending.
    let denied = s.open_via_api("dave").await.id;
    let v = s.run("alice", &["deny", &denied, "--reason", "not today"]).await;
    assert_eq!(v.code, 0, "{v:?}");
    let pending = s.open_via_api("dave").await.id;
    // A web session.
    let (session, _) = crate::ui::sign_in(&s.http(), "carol").await;
    // A forge delivery (a push event: recorded and ignored).
    assert_eq!(push_delivery(&s).await, 200);
    let v = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
    assert_eq!(v.code, 0, "{v:?}");
    let export = s.run(crate::helpers::AUDITOR, &["audit", "export"]).await.stdout;
    let keys = s.dir.path().join("keys.json");
    let text = reqwest::get(format!("{}/api/v1/keys", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(&keys, text).unwrap();
    assert_eq!(s.stop().await.code(), Some(0));
    (
        s,
        Work {
            approved,
            denied,
            pending,
            session,
            export,
            keys,
        },
    )
}

#[tokio::test]
async fn sqlite_deployment_moves_to_postgres_and_carries_on() {
    if no_postgres() {
        return;
    }
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    // The GitHub API the server asks who wrote the commit: dave, in no pull request.
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/acme/app/commits/[0-9a-f]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "author": {"login": "dave-gh", "id": 4, "type": "User"},
            "committer": null,
            "commit": {"author": null, "committer": null},
        })))
        .mount(&hook)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"/pulls$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .mount(&hook)
        .await;
    let (mut s, work) = deployment(&hook).await;
    let sqlite = s.database_url.clone();
    let before = counts(&sqlite).await;
    for t in [
        "gate_requests",
        "gate_votes",
        "gate_audit",
        "gate_records",
        "gate_holders",
    ] {
        assert!(before[t] > 0, "{t} is empty: {before:?}");
    }
    for t in [
        "gate_sessions",
        "gate_outbox",
        "gate_webhook_deliveries",
        "gate_log_hashes",
        "gate_checkpoints",
    ] {
        assert!(before[t] > 0, "{t} is empty: {before:?}");
    }

    let pg = fresh_pg_database().await;
    let out = migrate(&["--from", &sqlite, "--to", &pg]).await;
    assert_eq!(out.code, 0, "{out:?}");
    // One line per table with its count, and the summary.
    for t in TABLES {
        let line = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(t))
            .unwrap_or_else(|| panic!("no line for {t}: {}", out.stdout));
        assert_eq!(
            line.split_whitespace().nth(1),
            Some(before[t].to_string().as_str()),
            "{line}"
        );
    }
    assert!(out.stdout.contains("in one transaction"), "{}", out.stdout);
    assert_eq!(counts(&pg).await, before);
    // No sequence to advance: nothing on PostgreSQL draws ids from one.
    let seqs = crate::faults::count(
        &pg,
        "SELECT COUNT(*) FROM information_schema.sequences WHERE sequence_schema = current_schema()",
    )
    .await;
    assert_eq!(seqs, 0);

    // The same data dir (so the same signing key) and port, on PostgreSQL.
    s.database_url = pg.clone();
    s.respawn().await;
    let keys = work.keys.to_str().unwrap();
    let v = s
        .run(crate::helpers::AUDITOR, &["audit", "verify", "--key", keys])
        .await;
    assert_eq!(v.code, 0, "{v:?}");
    assert!(v.stdout.contains("audit log intact"), "{v:?}");
    assert_eq!(
        s.run(crate::helpers::AUDITOR, &["audit", "export"]).await.stdout,
        work.export
    );
    let c = s.client("alice");
    assert_eq!(c.get(&work.approved).await.unwrap().status, Status::Consumed);
    assert_eq!(c.get(&work.denied).await.unwrap().status, Status::Denied);
    assert_eq!(c.get(&work.pending).await.unwrap().status, Status::Pending);
    let record = s.dir.path().join("approved.json");
    std::fs::write(&record, c.record(&work.approved).await.unwrap()).unwrap();
    let v = s
        .run(
            "ci",
            &["verify", record.to_str().unwrap(), "--key", keys, "--commit", COMMIT],
        )
        .await;
    assert_eq!(v.code, 0, "{v:?}");
    // Carol is still signed in.
    let page = s.http().get("/").header("cookie", &work.session).send().await;
    assert_eq!(page.status.as_u16(), 200);
    // The delivery is remembered: a replay is refused.
    assert_eq!(push_delivery(&s).await, 409);

    // New work appends to the moved chain, which still verifies.
    let v = s.run("bob", &["approve", &work.pending]).await;
    assert_eq!(v.code, 0, "{v:?}");
    assert_eq!(c.get(&work.pending).await.unwrap().status, Status::Approved);
    let v = s
        .run(crate::helpers::AUDITOR, &["audit", "verify", "--key", keys])
        .await;
    assert_eq!(v.code, 0, "{v:?}");
    let after = counts(&pg).await;
    assert!(after["gate_audit"] > before["gate_audit"], "{after:?}");
    assert!(
        s.run(crate::helpers::AUDITOR, &["audit", "export"])
            .await
            .stdout
            .starts_with(&work.export)
    );
    assert_eq!(s.stop().await.code(), Some(0));

    // And back: PostgreSQL into a new SQLite file, by the same code.
    let back = format!("sqlite://{}", s.dir.path().join("back.db").display());
    let out = migrate(&["--from", &pg, "--to", &back]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(counts(&back).await, after);
    s.database_url = back;
    s.respawn().await;
    let v = s
        .run(crate::helpers::AUDITOR, &["audit", "verify", "--key", keys])
        .await;
    assert_eq!(v.code, 0, "{v:?}");
}

#[tokio::test]
async fn a_target_that_holds_data_is_refused_and_left_as_it_was() {
    if no_postgres() {
        return;
    }
    let mut s = TestApp::spawn().await;
    s.open_via_api("dave").await;
    s.stop().await;
    let pg = fresh_pg_database().await;
    let out = migrate(&["--from", &s.database_url, "--to", &pg]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let before = counts(&pg).await;
    // A second deployment into the same target.
    let mut other = TestApp::spawn().await;
    other.open_via_api("dave").await;
    other.open_via_api("dave").await;
    other.stop().await;
    let out = migrate(&["--from", &other.database_url, "--to", &pg]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("the target is not empty: gate_requests holds 1 rows"),
        "{out:?}"
    );
    assert_eq!(counts(&pg).await, before);
}

#[tokio::test]
async fn the_password_of_an_unreachable_database_is_never_printed() {
    let s = TestApp::spawn().await;
    let out = migrate(&[
        "--from",
        &s.database_url,
        "--to",
        "postgres://jitgate:s3cret-pw@127.0.0.1:1/jitgate",
    ])
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        !out.stderr.contains("s3cret-pw") && !out.stdout.contains("s3cret-pw"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("--to postgres://jitgate:***@127.0.0.1:1/jitgate: cannot connect"),
        "{out:?}"
    );
}

#[tokio::test]
async fn bad_urls_and_schemas_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.db");
    let to = format!("sqlite://{}", target.display());
    // No source file: refused, and no target made.
    let missing = format!("sqlite://{}", dir.path().join("missing.db").display());
    let out = migrate(&["--from", &missing, "--to", &to]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("there is no SQLite database at"), "{out:?}");
    assert!(!target.exists());
    // An unknown scheme.
    let out = migrate(&["--from", &missing, "--to", "mysql://db/jitgate"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--to mysql://db/jitgate: unknown scheme `mysql`"),
        "{out:?}"
    );

    // The same file, spelled two ways.
    let source = dir.path().join("gate.db");
    let url = format!("sqlite://{}?mode=rwc", source.display());
    let same = format!("sqlite://{}/./gate.db", dir.path().display());
    make_schema(&url, &(1..=CURRENT).collect::<Vec<_>>()).await;
    let out = migrate(&["--from", &url, "--to", &same]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("are the same database"), "{out:?}");

    // A schema older than this gate's: say what to do.
    let old = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    make_schema(&old, &(1..CURRENT).collect::<Vec<_>>()).await;
    let out = migrate(&["--from", &old, "--to", &to]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("the source's schema is at version {}, this gate's is {CURRENT}: start this version's `gate serve` on the source once", CURRENT - 1)),
        "{out:?}"
    );
    // Newer than this gate's.
    let new = format!("sqlite://{}?mode=rwc", dir.path().join("new.db").display());
    make_schema(&new, &(1..=CURRENT + 1).collect::<Vec<_>>()).await;
    let out = migrate(&["--from", &new, "--to", &to]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("version {}, newer than this gate's {CURRENT}", CURRENT + 1)),
        "{out:?}"
    );
    // Not a jitgate database at all.
    let empty = format!("sqlite://{}?mode=rwc", dir.path().join("empty.db").display());
    make_schema(&empty, &[]).await;
    let out = migrate(&["--from", &empty, "--to", &to]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("holds no jitgate schema"), "{out:?}");
}

/// A SQLite file whose `gate_schema` lists these versions (and nothing else; an empty
/// list: a database with one unrelated table).
/// The schema version of this build (its last migration's, `store::migrate`).
const CURRENT: i64 = 11;

async fn make_schema(url: &str, versions: &[i64]) {
    use sqlx::Connection as _;
    let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
    if versions.is_empty() {
        sqlx::raw_sql("CREATE TABLE other (x INTEGER)")
            .execute(&mut c)
            .await
            .unwrap();
    } else {
        sqlx::raw_sql(
            "CREATE TABLE gate_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut c)
        .await
        .unwrap();
    }
    for v in versions {
        sqlx::query("INSERT INTO gate_schema (version, name, applied_at) VALUES ($1, 'm', 0)")
            .bind(v)
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_copy_that_does_not_match_is_rolled_back_whole() {
    let mut s = TestApp::spawn().await;
    let id = s.open_via_api("dave").await.id;
    s.client("bob").approve(&id, None).await.unwrap();
    s.stop().await;
    // A migrated, empty target whose gate_votes loses every row written to it.
    let mut t = TestApp::spawn().await;
    t.stop().await;
    {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect(&t.database_url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TRIGGER lose_votes AFTER INSERT ON gate_votes BEGIN DELETE FROM gate_votes WHERE rowid = NEW.rowid; END",
        )
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    }
    let out = migrate(&["--from", &s.database_url, "--to", &t.database_url]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("gate_votes: 1 rows in the source, 1 copied, 0 in the target; nothing was committed"),
        "{out:?}"
    );
    // gate_requests was copied before gate_votes, and rolled back with it.
    assert!(counts(&t.database_url).await.values().all(|n| *n == 0));
}
