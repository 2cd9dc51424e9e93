//! The test harness: [`TestApp`] (a real `gate serve` on port 0 in a temp dir, SQLite or a
//! fresh PostgreSQL database), [`InProcessApp`] (the same router, called in process with
//! `tower::ServiceExt::oneshot`), one HTTP helper for both ([`Http`]), and the real `gate`
//! binary as a subprocess ([`TestApp::run`], [`TestApp::open`]).
#![allow(dead_code)]

mod app;
mod http;
mod in_process;

use std::path::{Path, PathBuf};

use tokio::io::{BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub use self::http::{Http, Resp};
pub use crate::support::tokens::token;
pub use app::{TestApp, TestAppBuilder};
pub use in_process::InProcessApp;

pub const GATE: &str = env!("CARGO_BIN_EXE_gate");
pub const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];
pub const PIPELINES: [&str; 2] = ["ci", "ci2"];
/// A user with `roles: [auditor]`: reads everything, votes on nothing.
pub const AUDITOR: &str = "audrey";
/// A user with `roles: [admin]`, in no policy group.
pub const ADMIN: &str = "adam";
pub const COMMIT: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
/// Another commit, for a second change to the same place.
pub const OTHER_COMMIT: &str = "1111111111111111111111111111111111111111";
/// `gate request` flags for a production deploy of COMMIT triggered by dave.
pub const PRODUCTION_BY_DAVE: [&str; 6] = ["--environment", "production", "--commit", COMMIT, "--actor", "dave"];
/// The production rule most tests use: one of sre.
pub const ONE_SRE: &str = "    require: [{ group: sre, count: 1 }]";

/// Which database the server under test uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The backends to run a test on: SQLite always, PostgreSQL when `GATE_TEST_DATABASE_URL` is set.
pub fn backends() -> Vec<Db> {
    let mut v = vec![Db::Sqlite];
    if std::env::var("GATE_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        v.push(Db::Postgres);
    } else {
        // Once per run: every store test would say it otherwise.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            skip_or_fail(
                "the PostgreSQL variant of every two-backend test",
                "GATE_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)",
            )
        });
    }
    v
}

/// A fresh PostgreSQL database for one test: created on the server named by
/// `GATE_TEST_DATABASE_URL`, so tests never share tables.
pub async fn fresh_pg_database() -> String {
    use crate::support::pg;
    let base = std::env::var("GATE_TEST_DATABASE_URL").expect("GATE_TEST_DATABASE_URL");
    let name = pg::database_name("gate_t_");
    pg::create_database(&base, &name)
        .await
        .expect("create a database on GATE_TEST_DATABASE_URL");
    pg::with_database(&base, &name).expect("GATE_TEST_DATABASE_URL is a postgres:// URL")
}

/// A database URL for `db`: a SQLite file in `dir`, or a fresh PostgreSQL database.
pub async fn database_url(db: Db, dir: &Path) -> String {
    match db {
        Db::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("gate.db").display()),
        Db::Postgres => fresh_pg_database().await,
    }
}

/// A policy with the usual groups and one `production` rule given as YAML lines.
pub fn policy(production_rule: &str) -> String {
    format!(
        "version: 1
groups:
  sre: [alice, bob, carol]
  security: [alice, dave]
  ops: [erin, frank]
rules:
  - name: staging
    match: {{ environment: staging }}
    decision: approve
  - name: production
    match: {{ environment: production }}
{production_rule}
  - name: everything else
    decision: deny
"
    )
}

/// gate.yaml's users (each with a GitHub and GitLab login and an email) and pipelines.
pub fn identities_yaml() -> String {
    use crate::support::tokens::{PipelineEntry, UserEntry, identities_yaml};
    let users: Vec<UserEntry> = USERS
        .iter()
        .map(|u| UserEntry {
            github: Some(format!("{u}-gh")),
            gitlab: Some(format!("{u}-gl")),
            email: Some(format!("{u}@example.test")),
            ..UserEntry::new(u, token(u))
        })
        .collect();
    let pipelines: Vec<PipelineEntry> = PIPELINES
        .iter()
        .map(|p| PipelineEntry {
            name: p.to_string(),
            token: token(p),
        })
        .collect();
    // An auditor and an admin (`roles:`), in no policy group.
    let mut roles = String::new();
    for (name, role) in [(AUDITOR, "auditor"), (ADMIN, "admin")] {
        roles.push_str(&format!(
            "  - name: {name}\n    token_sha256: {}\n    roles: [{role}]\n",
            jitgate::auth::hash_token(&token(name))
        ));
    }
    identities_yaml(&users, &pipelines).replacen("pipelines:\n", &format!("{roles}pipelines:\n"), 1)
}

/// The outbox of request `id` once `cond` holds: long-polls the notifications API,
/// answered at each change of the outbox, for at most a minute overall.
pub async fn outbox_until(
    s: &TestApp,
    id: &str,
    what: &str,
    cond: impl Fn(&[jitgate::core::api::NotificationView]) -> bool,
) -> Vec<jitgate::core::api::NotificationView> {
    let http = s.http();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut version: Option<u64> = None;
    loop {
        let mut route = format!("/notifications?request={id}");
        if let Some(v) = version {
            route.push_str(&format!("&version={v}&wait=5"));
        }
        // The auditor reads every request's rows.
        let (status, list) = http.api("GET", &route, &token(AUDITOR), None).await;
        assert_eq!(status, 200, "{route}: {list}");
        let list: jitgate::core::api::NotificationList = serde_json::from_value(list).unwrap();
        if cond(&list.notifications) {
            return list.notifications;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}\n{}",
            list.notifications,
            s.log()
        );
        version = Some(list.version);
    }
}

/// Request `id`'s first outbox row that `is` picks, once it is delivered.
pub async fn delivered_row(
    s: &TestApp,
    id: &str,
    what: &str,
    is: impl Fn(&jitgate::core::api::NotificationView) -> bool,
) -> jitgate::core::api::NotificationView {
    let done = |n: &jitgate::core::api::NotificationView| is(n) && n.state == "delivered";
    let rows = outbox_until(s, id, what, |rows| rows.iter().any(done)).await;
    rows.into_iter().find(done).unwrap()
}

/// `X-Hub-Signature-256` of `body` under `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(jitgate::core::crypto::hmac_sha256(secret.as_bytes(), body))
    )
}

/// Delivers a GitHub webhook `event` to `/webhooks/github` (signed when `signature` is
/// given); the status and the answer.
pub async fn github_delivery(
    s: &TestApp,
    event: &str,
    delivery: &str,
    body: &[u8],
    signature: Option<String>,
) -> (u16, serde_json::Value) {
    let mut r = s
        .http()
        .post("/webhooks/github")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .body("application/json", body);
    if let Some(sig) = signature {
        r = r.header("x-hub-signature-256", sig);
    }
    let resp = r.send().await;
    (resp.status.as_u16(), resp.json_or_text().await)
}

/// The variables of GitLab job `job` of pipeline 500 of acme/web, started by erin.
pub fn gitlab_vars(job: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GITLAB_CI", "true".into()),
        ("CI", "true".into()),
        ("CI_PROJECT_PATH", "acme/web".into()),
        ("CI_COMMIT_REF_NAME", "main".into()),
        ("CI_COMMIT_SHA", COMMIT.into()),
        ("GITLAB_USER_LOGIN", "erin".into()),
        ("CI_PIPELINE_ID", "500".into()),
        ("CI_JOB_ID", job.into()),
        ("CI_JOB_URL", format!("https://gitlab.example/acme/web/-/jobs/{job}")),
    ]
}

/// The last `outcome` line a gate printed.
pub fn outcome(events: &[serde_json::Value]) -> &serde_json::Value {
    events
        .iter()
        .rev()
        .find(|e| e["event"] == "outcome")
        .expect("an outcome line")
}

pub fn signal(c: &Child, sig: i32) {
    let pid = c.id().expect("child running") as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// What a finished process said.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Runs `cmd` to completion with stdout and stderr captured.
    pub async fn of(mut cmd: Command) -> Out {
        let o = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

/// A `gate request` process that has opened its request.
pub struct Waiting {
    pub id: String,
    pub opened: serde_json::Value,
    pub child: Child,
    pub lines: Lines<BufReader<ChildStdout>>,
    pub record: PathBuf,
}

impl Waiting {
    /// Waits for the gate to exit; returns its code and every JSON line it printed after "opened".
    pub async fn finish(mut self) -> (i32, Vec<serde_json::Value>, String) {
        let mut events = Vec::new();
        while let Some(l) = self.lines.next_line().await.unwrap() {
            events.push(serde_json::from_str(&l).unwrap_or(serde_json::Value::String(l)));
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            e.read_to_string(&mut stderr).await.unwrap();
        }
        let st = self.child.wait().await.unwrap();
        (st.code().unwrap_or(-1), events, stderr)
    }

    pub fn record_path(&self) -> &Path {
        &self.record
    }
}

/// A test that cannot run here because `why` (a tool or service is missing): under
/// `GATE_E2E_REQUIRED=1` (as `.ci/run` sets) that fails the test; otherwise one
/// `SKIPPED` line is printed and the caller returns. The line goes straight to the
/// process's stderr, past the test harness's capture, so a plain `cargo test` shows
/// what it did not run.
pub fn skip_or_fail(test: &str, why: &str) {
    if std::env::var("GATE_E2E_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{test}: {why}, and GATE_E2E_REQUIRED=1 makes that a failure");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why} (`CI=true bash .ci/run` installs every tool and runs everything)"
    );
}

/// Runs SQL as someone who owns the database: on SQLite the triggers are dropped first;
/// on PostgreSQL the superuser sidesteps them with `session_replication_role = replica`.
pub async fn as_dba(s: &TestApp, db: Db, sql: &str) {
    use sqlx::Connection;
    match db {
        Db::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&s.database_url).await.unwrap();
            sqlx::raw_sql(
                "DROP TRIGGER IF EXISTS gate_audit_no_update; DROP TRIGGER IF EXISTS gate_audit_no_delete;
                 DROP TRIGGER IF EXISTS gate_log_hashes_no_update; DROP TRIGGER IF EXISTS gate_log_hashes_no_delete;
                 DROP TRIGGER IF EXISTS gate_checkpoints_no_update; DROP TRIGGER IF EXISTS gate_checkpoints_no_delete;",
            )
            .execute(&mut c)
            .await
            .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut c)
                .await
                .unwrap();
        }
        Db::Postgres => {
            let mut c = sqlx::PgConnection::connect(&s.database_url).await.unwrap();
            let sql = format!("SET session_replication_role = replica; {sql}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
        }
    }
}
