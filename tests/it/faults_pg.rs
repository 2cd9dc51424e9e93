//! Faults between the server and PostgreSQL, under load (requests opened and approved
//! while the fault happens): the connection cut by a proxy, and a private PostgreSQL
//! restarted and stopped. Every vote the server acknowledged is in the database after,
//! no request or vote is doubled by the retries, the server reconnects by itself, and
//! `/readyz` says not-ready while the database is away. The shared PostgreSQL on 5432 is
//! only ever reached through the proxy here: it is never stopped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jitgate::client::Client;

use crate::faults::{DEADLINE, count};
use crate::helpers::*;
use crate::support::proxy::{Proxy, until};

/// Fails (under `GATE_E2E_REQUIRED=1`) or prints why the test is skipped; `true`: skip.
pub fn skip(reason: &str) -> bool {
    skip_or_fail("a PostgreSQL fault test", reason);
    true
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: std::net::SocketAddr) -> String {
    let mut u = reqwest::Url::parse(url).expect("a PostgreSQL URL");
    u.set_ip_host(addr.ip()).unwrap();
    u.set_port(Some(addr.port())).unwrap();
    u.to_string()
}

/// `/readyz`'s status code (0 when it does not answer at all).
pub async fn readyz(url: &str) -> u16 {
    let r = reqwest::Client::new()
        .get(format!("{url}/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    r.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Requests opened and approved by `workers` tasks until stopped, each retrying through
/// failures with the same idempotency key (for opening) or the same vote.
pub struct Load {
    acked: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<Vec<(bool, String)>>>,
    stop: Arc<AtomicBool>,
    keys: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(urls: &[String], workers: usize) -> Load {
        let l = Load {
            acked: Default::default(),
            failures: Default::default(),
            stop: Default::default(),
            keys: Default::default(),
            tasks: Vec::new(),
        };
        let tasks = (0..workers)
            .map(|w| {
                let url = urls[w % urls.len()].clone();
                let (acked, failures, stop, keys) =
                    (l.acked.clone(), l.failures.clone(), l.stop.clone(), l.keys.clone());
                tokio::spawn(async move {
                    let ci = Client::new(&url, Some(token("ci"))).unwrap();
                    let bob = Client::new(&url, Some(token("bob"))).unwrap();
                    let give_up = Instant::now() + DEADLINE * 2;
                    let fail = |what: &str, e: jitgate::client::ClientError| {
                        assert!(Instant::now() < give_up, "the load never got through: {what}: {e}");
                        // A fault must answer 503 or drop the connection, never fail inside.
                        let retryable = e.is_transient() && e.status() != Some(500);
                        failures.lock().unwrap().push((retryable, format!("{what}: {e}")));
                    };
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let body = create_body(&format!("load-{w}-{n}"));
                        n += 1;
                        keys.fetch_add(1, Ordering::SeqCst);
                        let id = loop {
                            match ci.create(&body).await {
                                Ok((v, _)) => break v.id,
                                Err(e) => fail("open", e),
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await; // a retry's pause
                        };
                        loop {
                            match bob.approve(&id, None).await {
                                Ok(_) => {
                                    acked.lock().unwrap().push(id);
                                    break;
                                }
                                // An earlier attempt was committed but its answer was lost.
                                Err(e) if e.status() == Some(409) => break,
                                Err(e) => fail("vote", e),
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await; // a retry's pause
                        }
                    }
                })
            })
            .collect();
        Load { tasks, ..l }
    }

    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub fn failures(&self) -> usize {
        self.failures.lock().unwrap().len()
    }

    /// Waits until `more` further votes were acknowledged.
    pub async fn more_acked(&self, more: usize, what: &str) {
        let target = self.acked() + more;
        until(what, DEADLINE, || async { self.acked() >= target }).await;
    }

    /// Stops the workers; returns the acknowledged request ids, the failures seen and how
    /// many requests were opened.
    pub async fn stop(self) -> (Vec<String>, Vec<(bool, String)>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            tokio::time::timeout(DEADLINE, t)
                .await
                .expect("a load worker stops")
                .unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (acked, failures, self.keys.load(Ordering::SeqCst))
    }
}

/// A production request for dave's run, with this idempotency key.
pub fn create_body(key: &str) -> jitgate::core::api::CreateRequest {
    jitgate::core::api::CreateRequest {
        context: jitgate::core::api::Context {
            repository: "acme/app".into(),
            git_ref: "refs/heads/main".into(),
            commit: COMMIT.into(),
            actor: "dave".into(),
            environment: "production".into(),
            action: "deploy".into(),
            ..Default::default()
        },
        summary: format!("load {key}"),
        idempotency_key: Some(key.into()),
        ..Default::default()
    }
}

/// After the load: every acknowledged vote is in the database, each opened request is
/// there once with at most one vote, every failure the clients saw was a retryable one
/// (503 or a dropped connection, never a 500), and the audit chain still verifies.
async fn check_after(s: &TestApp, db: &str, load: Load) {
    let (acked, failures, opened) = load.stop().await;
    for (retryable, e) in &failures {
        assert!(
            retryable,
            "a fault must answer 503 or drop the connection, not fail inside: {e}\n{}",
            s.log()
        );
    }
    let requests = count(db, "SELECT COUNT(*) FROM gate_requests").await;
    assert_eq!(requests as u64, opened, "one request per idempotency key");
    let doubled = count(
        db,
        "SELECT COUNT(*) FROM (SELECT request_id FROM gate_votes GROUP BY request_id HAVING COUNT(*) > 1) d",
    )
    .await;
    assert_eq!(doubled, 0, "no request has two votes");
    for id in &acked {
        let sql = format!(
            "SELECT COUNT(*) FROM gate_votes v JOIN gate_requests r ON r.id = v.request_id WHERE v.request_id = '{id}' AND v.voter = 'bob' AND r.status = 'approved'"
        );
        assert_eq!(count(db, &sql).await, 1, "acknowledged vote on {id} is in the database");
    }
    let v = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
    assert_eq!(v.code, 0, "{v:?}");
    // And the service works as before: a new request opened and approved.
    let id = s.open_via_api("dave").await.id;
    s.client("bob").approve(&id, None).await.unwrap();
    eprintln!(
        "{} votes acknowledged, {} failed attempts retried",
        acked.len(),
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_under_load_loses_no_acknowledged_vote() {
    if std::env::var("GATE_TEST_DATABASE_URL").is_err() && skip("GATE_TEST_DATABASE_URL is not set") {
        return;
    }
    let db = fresh_pg_database().await;
    let pg: std::net::SocketAddr = {
        let u = reqwest::Url::parse(&db).unwrap();
        let host = u.host_str().unwrap().replace("localhost", "127.0.0.1");
        format!("{host}:{}", u.port().unwrap_or(5432))
            .parse()
            .expect("an IP address in GATE_TEST_DATABASE_URL")
    };
    let proxy = Proxy::start(pg).await.unwrap();
    let s = TestApp::builder().database_url(&via(&db, proxy.addr)).spawn().await;
    assert_eq!(readyz(&s.url).await, 200);
    let load = Load::start(std::slice::from_ref(&s.url), 4);
    load.more_acked(10, "votes before the cut").await;

    proxy.refuse();
    until("/readyz to say not ready", DEADLINE, || async {
        readyz(&s.url).await == 503
    })
    .await;
    let failed = load.failures();
    until("a vote in flight to fail", DEADLINE, || async {
        load.failures() > failed
    })
    .await;

    proxy.resume();
    until("/readyz to say ready again", DEADLINE, || async {
        readyz(&s.url).await == 200
    })
    .await;
    load.more_acked(10, "votes after the database is back").await;
    // The server reconnected through the proxy, and a cut of live connections alone
    // (no refusal) is ridden out too.
    proxy.cut();
    load.more_acked(10, "votes after a second cut").await;
    check_after(&s, &db, load).await;
}

/// A PostgreSQL of the test's own, on a free port, run by the `postgres` user when the
/// test runs as root; stopped (immediately) when dropped, also when the test fails.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    pub port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivatePg {
    fn command(tool: &str) -> std::process::Command {
        let bin = format!("{PG_BIN}/{tool}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &bin]);
            c
        } else {
            std::process::Command::new(bin)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let o = Self::command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(args)
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "pg_ctl {args:?}: {}{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
                std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// initdb and start; `Err` says what is missing.
    pub fn start() -> Result<PrivatePg, String> {
        if !std::path::Path::new(PG_BIN).join("initdb").exists() {
            return Err(format!("{PG_BIN}/initdb is not installed"));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // SAFETY: geteuid has no preconditions; getpwnam reads a NUL-terminated name.
        if unsafe { libc::geteuid() } == 0 {
            let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
            if pw.is_null() {
                return Err("no `postgres` user to run PostgreSQL as".into());
            }
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let pg = PrivatePg { dir, port };
        let o = Self::command("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-A", "trust", "-U", "postgres"])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !o.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&o.stderr)));
        }
        pg.start_again()?;
        Ok(pg)
    }

    pub fn start_again(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.pg_ctl(&["-o", &opts, "-l", log.to_str().unwrap(), "-w", "start"])
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// `pg_ctl restart -m fast`: live sessions are terminated, then it comes back.
    pub async fn restart(&self) -> Result<(), String> {
        let this = (self.data(), self.dir.path().join("log"));
        let cmd = Self::command("pg_ctl");
        tokio::task::spawn_blocking(move || {
            let mut cmd = cmd;
            // `-l` again: without it the new server would log to (and hold open) our pipe.
            let o = cmd
                .arg("-D")
                .arg(&this.0)
                .arg("-l")
                .arg(&this.1)
                .args(["-m", "fast", "-w", "restart"])
                .output()
                .map_err(|e| e.to_string())?;
            o.status
                .success()
                .then_some(())
                .ok_or_else(|| String::from_utf8_lossy(&o.stderr).into_owned())
        })
        .await
        .unwrap()
    }

    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["-m", "fast", "-w", "stop"])
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_no_acknowledged_vote() {
    let pg = match PrivatePg::start() {
        Ok(pg) => pg,
        Err(e) => {
            skip(&format!("cannot start a private PostgreSQL: {e}"));
            return;
        }
    };
    crate::support::pg::create_database(&pg.url("postgres"), "gate")
        .await
        .unwrap();
    let db = pg.url("gate");
    let s = TestApp::builder().database_url(&db).spawn().await;
    let load = Load::start(std::slice::from_ref(&s.url), 4);
    load.more_acked(10, "votes before the restart").await;

    pg.restart().await.unwrap();
    load.more_acked(10, "votes after the restart").await;

    // Down for longer: not ready while it is, ready again after.
    tokio::task::block_in_place(|| pg.stop()).unwrap();
    until("/readyz to say not ready", DEADLINE, || async {
        readyz(&s.url).await == 503
    })
    .await;
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    until("/readyz to say ready again", DEADLINE, || async {
        readyz(&s.url).await == 200
    })
    .await;
    load.more_acked(10, "votes after the database is back").await;
    check_after(&s, &db, load).await;
}
