//! Test harness: a real `gate serve` on port 0 in a temp dir (SQLite, or a fresh
//! PostgreSQL database when asked), and the real `gate` binary as a subprocess.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use jitgate::client::Client;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub const GATE: &str = env!("CARGO_BIN_EXE_gate");
pub const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];
pub const COMMIT: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

pub fn token(name: &str) -> String {
    format!("tok-{name}")
}

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
        eprintln!("GATE_TEST_DATABASE_URL is not set: PostgreSQL variant skipped");
    }
    v
}

/// A fresh PostgreSQL database for one test: created on the server named by
/// `GATE_TEST_DATABASE_URL`, so tests never share tables.
pub async fn fresh_pg_database() -> String {
    use sqlx::Connection;
    let base = std::env::var("GATE_TEST_DATABASE_URL").expect("GATE_TEST_DATABASE_URL");
    let name = format!("gate_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to GATE_TEST_DATABASE_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let (head, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{head}/{name}")
}

pub struct Server {
    pub child: Option<Child>,
    pub url: String,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub policy: PathBuf,
    pub config: PathBuf,
    /// Where the signing key lives: a replica shares its primary's.
    pub data_dir: PathBuf,
    /// Extra environment for the server process (e.g. secrets named by gate.yaml).
    pub env: Vec<(String, String)>,
}

impl Server {
    pub async fn start(policy: &str) -> Server {
        Server::start_on(Db::Sqlite, policy).await
    }

    pub async fn start_on(db: Db, policy: &str) -> Server {
        Server::start_with(db, policy, "").await
    }

    /// As `start_on`, with `extra` (top-level YAML, e.g. an `oidc:` list) appended to the
    /// generated gate.yaml.
    pub async fn start_with(db: Db, policy: &str, extra: &str) -> Server {
        Server::start_with_env(db, policy, extra, &[]).await
    }

    /// As `start_with`, with `env` set for the server process (and its restarts).
    pub async fn start_with_env(db: Db, policy: &str, extra: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = match db {
            Db::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("gate.db").display()),
            Db::Postgres => fresh_pg_database().await,
        };
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, policy).unwrap();
        let mut cfg = String::from("users:\n");
        for u in USERS {
            cfg.push_str(&format!(
                "  - name: {u}\n    token_sha256: {}\n    github: {u}-gh\n    gitlab: {u}-gl\n    email: {u}@example.test\n",
                jitgate::auth::hash_token(&token(u))
            ));
        }
        cfg.push_str("pipelines:\n");
        for p in ["ci", "ci2"] {
            cfg.push_str(&format!(
                "  - name: {p}\n    token_sha256: {}\n",
                jitgate::auth::hash_token(&token(p))
            ));
        }
        cfg.push_str(extra);
        let config = dir.path().join("gate.yaml");
        std::fs::write(&config, cfg).unwrap();
        let mut s = Server {
            child: None,
            url: String::new(),
            addr: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            dir,
            database_url,
            policy: policy_path,
            config,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        s.spawn().await;
        s
    }

    /// Starts the server process on `self.addr` and waits for its "listening" line.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let mut child = Command::new(GATE)
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(["--policy"])
            .arg(&self.policy)
            .args(["--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen", &self.addr, "--database-url", &self.database_url])
            .env("GATE_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn gate serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().unwrap_or_else(|| {
            panic!("server exited before listening: {}", self.log());
        });
        let url = first
            .strip_prefix("jitgate listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first}"));
        self.url = url.to_string();
        self.addr = url.trim_start_matches("http://").to_string();
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// A second server process on the same database, config, policy and signing key.
    pub async fn replica(&self) -> Server {
        let mut r = Server {
            child: None,
            url: String::new(),
            addr: "127.0.0.1:0".into(),
            dir: tempfile::tempdir().unwrap(),
            database_url: self.database_url.clone(),
            policy: self.policy.clone(),
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            env: self.env.clone(),
        };
        r.spawn().await;
        r
    }

    /// SIGKILL: no graceful anything.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
            c.wait().await.unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let c = self.child.as_mut().expect("running");
        signal(c, libc::SIGTERM);
        let st = c.wait().await.unwrap();
        self.child = None;
        st
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn client(&self, who: &str) -> Client {
        Client::new(&self.url, Some(token(who))).unwrap()
    }

    /// The real `gate` binary, pointed at this server with `who`'s token, in a clean
    /// environment (no CI variables leak in from the machine running the tests).
    pub fn gate(&self, who: &str) -> Command {
        let mut c = Command::new(GATE);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GATE_SERVER", &self.url)
            .env("GATE_TOKEN", token(who))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Runs a `gate` command to completion.
    pub async fn run(&self, who: &str, args: &[&str]) -> Out {
        let o = self.gate(who).args(args).output().await.unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }

    /// Opens a new production request through the API as the `ci` pipeline on behalf of
    /// `actor` (acme/app at COMMIT, "release 1.2.3"), without a waiting gate.
    pub async fn open_via_api(&self, actor: &str) -> jitgate::core::api::RequestView {
        let body = jitgate::core::api::CreateRequest {
            context: jitgate::core::api::Context {
                repository: "acme/app".into(),
                git_ref: "refs/heads/main".into(),
                commit: COMMIT.into(),
                actor: actor.into(),
                environment: "production".into(),
                action: "deploy".into(),
                ..Default::default()
            },
            summary: "release 1.2.3".into(),
            ..Default::default()
        };
        let (v, new) = self.client("ci").create(&body).await.unwrap();
        assert!(new);
        v
    }

    /// Starts `gate request --output json` as the `ci` pipeline and reads the "opened" line.
    pub async fn open(&self, args: &[&str]) -> Waiting {
        self.open_with(self.gate("ci"), args).await
    }

    pub async fn open_with(&self, mut cmd: Command, args: &[&str]) -> Waiting {
        let record = self
            .dir
            .path()
            .join(format!("record-{}.json", uuid::Uuid::new_v4().simple()));
        let mut child = cmd
            .args(["request", "--output", "json", "--record-file"])
            .arg(&record)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut first = lines.next_line().await.unwrap();
        // GitHub workflow commands (`::add-mask::…`) may come before the JSON lines.
        while first.as_deref().is_some_and(|l| l.starts_with("::")) {
            first = lines.next_line().await.unwrap();
        }
        let Some(first) = first else {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "gate request exited before opening: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let opened: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(opened["event"], "opened", "{first}");
        Waiting {
            id: opened["id"].as_str().unwrap().to_string(),
            opened,
            child,
            lines,
            record,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

pub fn signal(c: &Child, sig: i32) {
    let pid = c.id().expect("child running") as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid, sig);
    }
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
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
