//! [`TestApp`]: a real `gate serve` process on port 0, and its builder.

use std::path::PathBuf;
use std::process::Stdio;

use jitgate::client::Client;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::{Db, GATE, Http, InProcessApp, ONE_SRE, Out, Waiting, database_url, identities_yaml, policy, token};
use crate::support::serve::{ServeFiles, listening};

/// How to start the server under test: `TestApp::builder()…spawn()` for a real process,
/// `…in_process()` for the router called in process.
#[derive(Debug, Clone)]
pub struct TestAppBuilder {
    db: Db,
    policy: String,
    extra: String,
    env: Vec<(String, String)>,
    open_files: Option<u64>,
    database_url: Option<String>,
    roles: Vec<(String, String)>,
}

impl TestAppBuilder {
    /// Gives one of the fixed users `roles:` (YAML flow list, e.g. `[auditor]`).
    pub fn user_roles(mut self, user: &str, roles: &str) -> Self {
        self.roles.push((user.into(), roles.into()));
        self
    }

    /// This database URL instead of a fresh one for the backend (e.g. through a proxy).
    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Starts the server with this soft open-file limit (the hard limit unchanged), as a
    /// service manager's default of 1024 would.
    pub fn open_files(mut self, soft: u64) -> Self {
        self.open_files = Some(soft);
        self
    }

    /// SQLite (the default) or a fresh PostgreSQL database.
    pub fn backend(mut self, db: Db) -> Self {
        self.db = db;
        self
    }

    /// The whole policy file. The default is [`policy`]`(`[`ONE_SRE`]`)`.
    pub fn policy(mut self, policy: impl Into<String>) -> Self {
        self.policy = policy.into();
        self
    }

    /// The usual [`policy`] with this `production` rule (YAML lines).
    pub fn rule(self, production_rule: &str) -> Self {
        self.policy(policy(production_rule))
    }

    /// Top-level YAML (e.g. an `oidc:` list) appended to the generated gate.yaml.
    pub fn config_extra(mut self, yaml: &str) -> Self {
        self.extra.push_str(yaml);
        self
    }

    /// An environment variable for the server process (and its restarts).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Writes the files in a fresh temp dir and makes the database.
    async fn prepare(&self) -> Prepared {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = match &self.database_url {
            Some(url) => url.clone(),
            None => database_url(self.db, dir.path()).await,
        };
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, &self.policy).unwrap();
        let config = dir.path().join("gate.yaml");
        let mut users = identities_yaml();
        for (user, roles) in &self.roles {
            let line = format!("  - name: {user}\n");
            users = users.replacen(&line, &format!("{line}    roles: {roles}\n"), 1);
        }
        std::fs::write(&config, format!("{users}{}", self.extra)).unwrap();
        Prepared {
            dir,
            database_url,
            policy,
            config,
        }
    }

    /// Starts `gate serve` on port 0 and waits until it listens.
    pub async fn spawn(self) -> TestApp {
        let p = self.prepare().await;
        let mut s = TestApp {
            child: None,
            url: String::new(),
            addr: "127.0.0.1:0".into(),
            data_dir: p.dir.path().to_path_buf(),
            dir: p.dir,
            database_url: p.database_url,
            policy: p.policy,
            config: p.config,
            env: self.env,
            open_files: self.open_files,
        };
        s.respawn().await;
        s
    }

    /// The `gate serve` command of this setup, not started (to see a start fail), with
    /// the temp dir that holds its files.
    pub async fn serve_command(self) -> (Command, tempfile::TempDir) {
        let p = self.prepare().await;
        let files = ServeFiles {
            config: p.config,
            policy: p.policy,
            data_dir: p.dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            database_url: Some(p.database_url),
        };
        let mut cmd = files.command(std::path::Path::new(GATE));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        (cmd, p.dir)
    }

    /// The same server, without a process: its router, called in process.
    pub async fn in_process(self) -> InProcessApp {
        assert!(
            self.env.is_empty(),
            "the in-process app shares the test's environment: spawn a process to set variables"
        );
        let p = self.prepare().await;
        InProcessApp::build(p.dir, p.config, p.policy, p.database_url).await
    }
}

struct Prepared {
    dir: tempfile::TempDir,
    database_url: String,
    policy: PathBuf,
    config: PathBuf,
}

/// A real `gate serve` on port 0 in a temp dir. Dropping it kills the process.
pub struct TestApp {
    pub child: Option<tokio::process::Child>,
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
    /// The soft open-file limit the server starts with, if not the test's own.
    pub open_files: Option<u64>,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            db: Db::Sqlite,
            policy: policy(ONE_SRE),
            extra: String::new(),
            env: Vec::new(),
            open_files: None,
            database_url: None,
            roles: Vec::new(),
        }
    }

    /// `TestApp::builder().spawn()`: SQLite, the usual policy with one of sre for production.
    pub async fn spawn() -> TestApp {
        TestApp::builder().spawn().await
    }

    /// Starts the server process on `self.addr` (port 0 the first time, the same port after
    /// [`TestApp::kill`]) and waits for its "listening" line.
    pub async fn respawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let files = ServeFiles {
            config: self.config.clone(),
            policy: self.policy.clone(),
            data_dir: self.data_dir.clone(),
            listen: self.addr.clone(),
            database_url: Some(self.database_url.clone()),
        };
        let mut cmd = files.command(std::path::Path::new(GATE));
        cmd.env("GATE_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stderr(Stdio::from(log));
        if let Some(soft) = self.open_files {
            // SAFETY: only async-signal-safe calls (getrlimit, setrlimit) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let mut lim = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
                    lim.rlim_cur = soft.min(lim.rlim_max);
                    libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn gate serve");
        let url = listening(&mut child)
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", self.log()));
        self.addr = url.trim_start_matches("http://").to_string();
        self.url = url;
        self.child = Some(child);
    }

    /// A second server process on the same database, config, policy and signing key.
    pub async fn replica(&self) -> TestApp {
        let mut r = TestApp {
            child: None,
            url: String::new(),
            addr: "127.0.0.1:0".into(),
            dir: tempfile::tempdir().unwrap(),
            database_url: self.database_url.clone(),
            policy: self.policy.clone(),
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            env: self.env.clone(),
            open_files: self.open_files,
        };
        r.respawn().await;
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
        super::signal(c, libc::SIGTERM);
        let st = c.wait().await.unwrap();
        self.child = None;
        st
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The crate's own API client with `who`'s token.
    pub fn client(&self, who: &str) -> Client {
        Client::new(&self.url, Some(token(who))).unwrap()
    }

    /// Plain HTTP to this server (see [`Http`]).
    pub fn http(&self) -> Http {
        Http::url(&self.url)
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
        let mut c = self.gate(who);
        c.args(args);
        Out::of(c).await
    }

    /// Opens a new production request through the API as the `ci` pipeline on behalf of
    /// `actor` (acme/app at COMMIT, "release 1.2.3"), without a waiting gate.
    pub async fn open_via_api(&self, actor: &str) -> jitgate::core::api::RequestView {
        let body = jitgate::core::api::CreateRequest {
            context: jitgate::core::api::Context {
                repository: "acme/app".into(),
                git_ref: "refs/heads/main".into(),
                commit: super::COMMIT.into(),
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

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}
