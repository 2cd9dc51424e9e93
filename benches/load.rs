//! `gate-load`: measures a real `gate serve` under load.
//!
//! The tool starts the server itself (the `gate` binary next to its own executable, or
//! `--gate PATH`) in a fresh temporary data dir with generated tokens, on SQLite by default
//! or on PostgreSQL with `--database-url` (a fresh `gate_bench_<random>` database is created
//! on that server for each run and dropped afterwards), and runs one or all of three
//! scenarios, each against its own fresh server:
//!
//! * `latency`: N sequential runs of the real `gate request ... --output json` process.
//!   For each, the tool reads the first stdout line (the request id), approves over HTTP,
//!   and measures the time from the approve call returning to the process exiting 0
//!   (the gate's long-wait wake-up, consume, record fetch, key fetch, verification, exit).
//! * `waiters`: opens N requests and holds N concurrent long-waits (`/wait?timeout=600`)
//!   from in-process tasks, checks `jitgate_waiting_gates` reaches N, reads the server's
//!   VmRSS, then approves all, checks every waiter is released, and samples VmRSS for
//!   `--settle` seconds.
//! * `throughput`: opens M pending requests, then approves them with C concurrent clients
//!   and reports durable decisions per second.
//! * `release` (`load_release.rs`, not in `all`): the runner-seconds an approval wait holds
//!   in step mode and in the no-wait modes (GitLab play, Jenkins input), and the release
//!   latency from an approval to the play or input call reaching a fake platform.
//!
//! Build and run (see docs/performance.md):
//!
//! ```text
//! cargo build --release --bins
//! target/release/gate-load all
//! target/release/gate-load --database-url postgres://postgres@127.0.0.1:5432/test all
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use clap::{Parser, Subcommand};
use jitgate::client::{Client, ClientError};
use jitgate::core::api::{Context, CreateRequest, RequestView};
use jitgate::core::decide::Status;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

// Shared with the integration tests' harness (tests/it/support): tokens and their
// gate.yaml entries, starting `gate serve` on port 0, fresh PostgreSQL databases.
#[path = "../tests/it/support/pg.rs"]
mod pg;
#[path = "../tests/it/support/serve.rs"]
mod serve;
#[path = "../tests/it/support/tokens.rs"]
mod tokens;
// The release scenario, in its own file.
#[path = "load_release.rs"]
mod release;

use tokens::{PipelineEntry, UserEntry, random_token};

const LONG_ABOUT: &str = r"Starts `gate serve` as a subprocess (fresh temp data dir, generated tokens; SQLite by
default, PostgreSQL with --database-url) and runs one or all scenarios, each on a fresh server:

  latency     N (--runs) sequential real `gate request` processes: time from the approve call
              returning to the gate exiting 0 (p50/p90/p99/max)
  waiters     N (--waiters) concurrent long-waits: server VmRSS while they all wait, the time
              to release them all, and VmRSS for --settle seconds after
  throughput  M (--requests) pending requests approved by C (--concurrency) clients: durable
              decisions per second
  all         the three above, in that order
  release     runner-seconds held per approval wait: step mode (the whole wait, with a
              decision after --decision-delay) against the no-wait modes (the gate job and
              the consume step, GitLab play and Jenkins input); and the release latency
              from the approval to the play or input call reaching a fake platform

Examples:
  gate-load all
  gate-load latency --runs 500
  gate-load --database-url postgres://postgres@127.0.0.1:5432/test all
  gate-load --json throughput --requests 5000 --concurrency 32";

#[derive(Debug, Parser)]
#[command(
    name = "gate-load",
    about = "Load and latency measurements of a real jitgate server",
    long_about = LONG_ABOUT
)]
struct Cli {
    /// The `gate` binary to run as the server and as the pipeline step [default: `gate` next to this executable].
    #[arg(long, global = true)]
    gate: Option<PathBuf>,
    /// Use PostgreSQL. A fresh database `gate_bench_<random>` is created on the server this URL
    /// points at (through its `postgres` database) and dropped afterwards; see --use-database-as-is.
    #[arg(long, global = true, env = "GATE_LOAD_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Use the database of --database-url itself instead of creating one per server. It must be
    /// empty (or hold only a jitgate schema you do not mind filling).
    #[arg(long, global = true)]
    use_database_as_is: bool,
    /// Where to make the servers' temp data dirs (SQLite lives there) [default: $TMPDIR or /tmp].
    #[arg(long, global = true)]
    work_dir: Option<PathBuf>,
    /// Keep the temp data dirs (and created databases) for inspection.
    #[arg(long, global = true)]
    keep: bool,
    /// Also print each scenario's results as one JSON line on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// A file of YAML appended to the servers' gate.yaml (e.g. a `notify:` section with a
    /// SIEM channel, or `scim:` to measure the SCIM deactivation check).
    #[arg(long, global = true)]
    config_extra: Option<PathBuf>,
    /// latency: measured runs of `gate request`.
    #[arg(long, global = true, default_value_t = 200)]
    runs: usize,
    /// latency: extra runs first, not measured (page cache, connection set-up).
    #[arg(long, global = true, default_value_t = 3)]
    warmup: usize,
    /// waiters: concurrent long-waits.
    #[arg(long, global = true, default_value_t = 1000)]
    waiters: usize,
    /// waiters: seconds to keep sampling the server's RSS after the waiters are released.
    #[arg(long, global = true, default_value_t = 60)]
    settle: u64,
    /// throughput: pending requests to open and then approve.
    #[arg(long, global = true, default_value_t = 2000)]
    requests: usize,
    /// waiters and throughput: concurrent clients that open and approve requests.
    #[arg(long, global = true, default_value_t = 16)]
    concurrency: usize,
    /// release: measured rounds (each one step-mode wait and one no-wait wait per platform).
    #[arg(long, global = true, default_value_t = 20)]
    release_runs: usize,
    /// release: seconds from the request opening to the approval (the people deciding).
    #[arg(long, global = true, default_value_t = 5.0)]
    decision_delay: f64,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Clone, Copy, Subcommand, PartialEq, Eq)]
enum Scenario {
    /// Release latency of the real `gate request` process after an approval.
    Latency,
    /// Many concurrent long-waits: server memory and release time.
    Waiters,
    /// Durable decisions per second with concurrent approvers.
    Throughput,
    /// latency, waiters and throughput, each on a fresh server.
    All,
    /// Runner-seconds per approval wait, step mode against the no-wait modes, and the
    /// release latency to the platform.
    Release,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("gate-load: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    // Both sides hold one socket per waiter; the server keeps some for itself.
    raise_fd_limit(cli.waiters as u64 + cli.waiters as u64 / 5 + 4096);
    let gate = match &cli.gate {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("no directory for the current executable"))?
            .join("gate"),
    };
    ensure!(
        gate.is_file(),
        "no gate binary at {} (build it with `cargo build --release --bins` or pass --gate PATH)",
        gate.display()
    );
    let scenarios = match cli.scenario {
        Scenario::All => vec![Scenario::Latency, Scenario::Waiters, Scenario::Throughput],
        s => vec![s],
    };
    println!(
        "gate-load: {} on {}, {} cores, kernel {}",
        gate.display(),
        if cli.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    for s in scenarios {
        // Other work on the machine skews every figure: show what was running.
        let load = loadavg();
        println!("\nload average before the scenario: {load}");
        let platform = match s {
            Scenario::Release => Some(release::FakePlatform::start().await?),
            _ => None,
        };
        let setup = platform.as_ref().map(|p| p.setup()).unwrap_or_default();
        let server = Server::start(&cli, &gate, &setup).await?;
        let result = match (s, &platform) {
            (Scenario::Latency, _) => latency(&cli, &gate, &server).await,
            (Scenario::Waiters, _) => waiters(&cli, &server).await,
            (Scenario::Throughput, _) => throughput(&cli, &server).await,
            (Scenario::Release, Some(p)) => release::release(&cli, &gate, &server, p).await,
            _ => unreachable!(),
        };
        if result.is_err() {
            server.print_log_tail();
        }
        let stopped = server.stop(cli.keep).await;
        let mut summary = result?;
        stopped?.report(&mut summary);
        summary["loadavg_before"] = json!(load);
        if cli.json {
            println!("{summary}");
        }
    }
    Ok(())
}

// ----- the server under test ----------------------------------------------------------

/// What a scenario adds to the server: YAML appended to its gate.yaml, and its
/// environment (the secrets that YAML names).
#[derive(Default)]
struct Setup {
    yaml: String,
    env: Vec<(String, String)>,
}

struct Server {
    child: Child,
    pid: u32,
    base: String,
    dir: PathBuf,
    pipeline_token: String,
    approver_token: String,
    backend: &'static str,
    database: Option<PgDatabase>,
}

impl Server {
    async fn start(cli: &Cli, gate: &Path, setup: &Setup) -> Result<Server> {
        let dir = cli
            .work_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("gate-load-{}", hex::encode(rand::random::<[u8; 6]>())));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pipeline_token = random_token("pipe");
        let approver_token = random_token("alice");
        let config = tokens::identities_yaml(
            &[
                UserEntry::new("alice", approver_token.clone()),
                UserEntry::new("bob", random_token("bob")),
            ],
            &[PipelineEntry {
                name: "bench".into(),
                token: pipeline_token.clone(),
            }],
        );
        let policy = "version: 1\ngroups:\n  sre: [alice, bob]\nrules:\n  - name: prod\n    match: { environment: production }\n    require: [{ group: sre, count: 1 }]\n    timeout: 1h\n";
        // Long-waits of up to 10 minutes (the server's ceiling), so the waiters scenario's
        // thousands of waiters do not time out and reconnect while the rest connect.
        let mut config = format!("max_wait_secs: {WAIT_SECS}\n{config}");
        if let Some(extra) = &cli.config_extra {
            config.push_str(&std::fs::read_to_string(extra).with_context(|| format!("reading {}", extra.display()))?);
        }
        config.push_str(&setup.yaml);
        std::fs::write(dir.join("gate.yaml"), config)?;
        std::fs::write(dir.join("policy.yaml"), policy)?;
        let database = match &cli.database_url {
            Some(url) if cli.use_database_as_is => Some(PgDatabase {
                admin_url: None,
                name: String::new(),
                url: url.clone(),
            }),
            Some(url) => Some(PgDatabase::create(url).await?),
            None => None,
        };
        let log = std::fs::File::create(dir.join("server.log"))?;
        let files = serve::ServeFiles {
            config: dir.join("gate.yaml"),
            policy: dir.join("policy.yaml"),
            data_dir: dir.join("data"),
            listen: "127.0.0.1:0".into(),
            database_url: database.as_ref().map(|db| db.url.clone()),
        };
        let mut cmd = files.command(gate);
        clean_env(&mut cmd);
        if let Ok(l) = std::env::var("GATE_LOG") {
            cmd.env("GATE_LOG", l);
        }
        cmd.envs(setup.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", gate.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("the server exited at once"))?;
        let base = tokio::time::timeout(Duration::from_secs(120), serve::listening(&mut child)).await;
        let mut server = Server {
            child,
            pid,
            base: String::new(),
            dir,
            pipeline_token,
            approver_token,
            backend: if database.is_some() { "postgres" } else { "sqlite" },
            database,
        };
        let why = match base {
            Ok(Ok(base)) => {
                server.base = base;
                return Ok(server);
            }
            Ok(Err(e)) => e,
            Err(_) => "no line within 120 s".to_string(),
        };
        server.print_log_tail();
        let _ = server.stop(cli.keep).await;
        bail!("the server did not print `jitgate listening on URL`: {why}");
    }

    fn pipeline(&self) -> Result<Client> {
        Ok(Client::new(&self.base, Some(self.pipeline_token.clone()))?)
    }

    fn approver(&self) -> Result<Client> {
        Ok(Client::new(&self.base, Some(self.approver_token.clone()))?)
    }

    /// The server's socket address, for raw connections.
    fn addr(&self) -> Result<std::net::SocketAddr> {
        let hostport = self.base.trim_start_matches("http://").trim_end_matches('/');
        hostport
            .parse()
            .with_context(|| format!("the server's address `{hostport}`"))
    }

    /// (VmRSS, VmHWM) of the server process, in KiB.
    fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or_else(|| anyhow!("no {name} in /proc/{}/status", self.pid))?;
            Ok(line[name.len()..].trim().trim_end_matches("kB").trim().parse()?)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    async fn metrics(&self) -> Result<String> {
        let r = reqwest::get(format!("{}/metrics", self.base)).await?;
        ensure!(r.status().is_success(), "GET /metrics: HTTP {}", r.status());
        Ok(r.text().await?)
    }

    /// The value of the first metric line that starts with `series` (name plus labels).
    async fn metric(&self, series: &str) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(series).filter(|r| r.starts_with(' ')))
            .map(|v| v.trim().parse::<f64>())
            .transpose()?
            .unwrap_or(0.0))
    }

    fn print_log_tail(&self) {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "--- last lines of the server log ({}):",
            self.dir.join("server.log").display()
        );
        for l in &lines[lines.len().saturating_sub(30)..] {
            eprintln!("{l}");
        }
    }

    /// SIGTERM (graceful), then kill after 15 s; counts what the server logged and, on
    /// PostgreSQL, the database's committed and rolled-back transactions; then drops the
    /// database and the temp dir.
    async fn stop(mut self, keep: bool) -> Result<Stopped> {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("gate-load: the server did not stop within 15 s of SIGTERM; killing it");
            let _ = self.child.kill().await;
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let mut stopped = Stopped {
            log_errors: log.lines().filter(|l| l.contains("ERROR")).count(),
            log_warnings: log.lines().filter(|l| l.contains("WARN")).count(),
            pg_transactions: None,
        };
        if let Some(db) = &self.database {
            stopped.pg_transactions = db.transactions().await?;
        }
        if keep {
            eprintln!("gate-load: kept {}", self.dir.display());
            if let Some(db) = &self.database {
                eprintln!("gate-load: kept database {}", redact(&db.url));
            }
            return Ok(stopped);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(db) = self.database.take() {
            db.drop_database().await?;
        }
        Ok(stopped)
    }
}

/// What a stopped server left behind.
struct Stopped {
    log_errors: usize,
    log_warnings: usize,
    /// PostgreSQL only: (committed, rolled back) transactions in the server's database.
    pg_transactions: Option<(i64, i64)>,
}

impl Stopped {
    fn report(&self, summary: &mut Value) {
        let mut line = format!(
            "server log: {} ERROR and {} WARN lines",
            self.log_errors, self.log_warnings
        );
        summary["server_log_errors"] = json!(self.log_errors);
        summary["server_log_warnings"] = json!(self.log_warnings);
        if let Some((commits, rollbacks)) = self.pg_transactions {
            line.push_str(&format!(
                "; PostgreSQL: {commits} transactions committed, {rollbacks} rolled back"
            ));
            summary["pg_commits"] = json!(commits);
            summary["pg_rollbacks"] = json!(rollbacks);
        }
        println!("{line}");
    }
}

/// A PostgreSQL database made for one server. `admin_url: None` means it was given, not made.
struct PgDatabase {
    admin_url: Option<String>,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create(url: &str) -> Result<PgDatabase> {
        let name = pg::database_name("gate_bench_");
        let admin_url = pg::with_database(url, "postgres").map_err(|e| anyhow!("--database-url: {e}"))?;
        pg::create_database(&admin_url, &name)
            .await
            .with_context(|| format!("CREATE DATABASE {name} on {}", redact(&admin_url)))?;
        Ok(PgDatabase {
            url: pg::with_database(url, &name).map_err(|e| anyhow!("--database-url: {e}"))?,
            admin_url: Some(admin_url),
            name,
        })
    }

    /// (xact_commit, xact_rollback) of the database, once its server has exited (backends
    /// flush their statistics when they end).
    async fn transactions(&self) -> Result<Option<(i64, i64)>> {
        use sqlx::{Connection as _, Row as _};
        let Some(admin) = &self.admin_url else {
            return Ok(None);
        };
        let mut conn = sqlx::postgres::PgConnection::connect(admin).await?;
        let row = sqlx::query("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1")
            .bind(&self.name)
            .fetch_optional(&mut conn)
            .await?;
        conn.close().await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    async fn drop_database(self) -> Result<()> {
        use sqlx::Connection as _;
        let Some(admin) = self.admin_url else {
            return Ok(());
        };
        let mut conn = sqlx::postgres::PgConnection::connect(&admin).await?;
        let forced = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await;
        if forced.is_err() {
            // Before PostgreSQL 13 there is no FORCE; the server has exited by now anyway.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {}", self.name)))
                .execute(&mut conn)
                .await
                .with_context(|| format!("DROP DATABASE {}", self.name))?;
        }
        conn.close().await?;
        Ok(())
    }
}

fn redact(url: &str) -> String {
    jitgate::serve::redact(url)
}

/// `gate request` for production of acme/web by `dev`, as the bench pipeline, printing
/// JSON lines on a piped stdout and writing its record to `record`.
fn gate_request(gate: &Path, server: &Server, record: &Path) -> Command {
    let mut cmd = Command::new(gate);
    clean_env(&mut cmd);
    cmd.args([
        "request",
        "--environment",
        "production",
        "--repository",
        "acme/web",
        "--actor",
        "dev",
    ])
    .args(["--output", "json", "--record-file"])
    .arg(record)
    .env("GATE_SERVER", &server.base)
    .env("GATE_TOKEN", &server.pipeline_token)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .kill_on_drop(true);
    cmd
}

/// Children get a clean environment: no GATE_* or CI variables from the caller's shell.
fn clean_env(cmd: &mut Command) {
    cmd.env_clear();
    for k in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// N long-waits are N sockets on each side, and the server inherits our limit: lift the
/// soft descriptor limit to the hard one, and (as root) the hard one to `want` when it is
/// lower. The server sizes its connection cap from what it gets (`Limits::for_open_files`).
fn raise_fd_limit(want: u64) {
    // SAFETY: plain getrlimit/setrlimit on a stack value.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        if r.rlim_max < want {
            let up = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &up) == 0 {
                return;
            }
        }
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// This process's soft open-file limit (the server started with the same).
fn open_file_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit on a stack value.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    r.rlim_cur
}

// ----- helpers ------------------------------------------------------------------------

/// What went wrong beside the measured path: retried calls, by cause.
#[derive(Default)]
struct Stats {
    /// 503, 429, 502, 504 or a broken connection: the server asked us to come back.
    retries: AtomicU64,
    /// HTTP 500: the server gave up (e.g. "too much contention; retry" in its log).
    http_500: AtomicU64,
    /// The first retried error, to tell what it was.
    first: std::sync::Mutex<Option<String>>,
}

impl Stats {
    fn note(&self, what: &str, e: &ClientError) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| format!("{what}: {e}"));
    }

    fn snapshot(&self) -> (u64, u64) {
        (
            self.retries.load(Ordering::Relaxed),
            self.http_500.load(Ordering::Relaxed),
        )
    }

    fn line(&self) -> String {
        let (r, e) = self.snapshot();
        format!(
            "retried after 503/429/transport errors: {r}; after HTTP 500: {e}{}",
            self.first_note()
        )
    }

    /// " (first: …)" naming the first retried error, or nothing.
    fn first_note(&self) -> String {
        match self.first.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(f) => format!(" (first: {f})"),
            None => String::new(),
        }
    }
}

/// A call that failed for good; `after_500` when an earlier attempt got an HTTP 500.
#[derive(Debug)]
struct Failed {
    what: String,
    err: ClientError,
    after_500: bool,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.err)
    }
}

impl std::error::Error for Failed {}

/// Retries a call for up to two minutes while the server says it is briefly unable (503,
/// 429, …), the connection broke, or the server answered 500 (counted apart: a person
/// running `gate approve` would have seen that error).
async fn retry<T, F, Fut>(stats: &Stats, what: &str, f: F) -> Result<T, Failed>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    let mut after_500 = false;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && start.elapsed() < Duration::from_secs(120) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                stats.note(what, &e);
            }
            Err(e) if e.status() == Some(500) && start.elapsed() < Duration::from_secs(120) => {
                stats.http_500.fetch_add(1, Ordering::Relaxed);
                stats.note(what, &e);
                after_500 = true;
            }
            Err(err) => {
                return Err(Failed {
                    what: what.to_string(),
                    err,
                    after_500,
                });
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Approves `id` as the approver of `c`; checks it is approved.
async fn approve_one(c: &Client, id: &str, stats: &Stats) -> Result<RequestView> {
    let v = match retry(stats, "approve", || c.approve(id, Some("gate-load".into()))).await {
        Ok(v) => v,
        // A 500 after the commit would make the retry a second vote: look instead.
        Err(f) if f.after_500 && f.err.status() == Some(409) => retry(stats, "get", || c.get(id)).await?,
        Err(f) => return Err(f.into()),
    };
    ensure!(v.status == Status::Approved, "{id} is {} after the approval", v.status);
    Ok(v)
}

fn create_body(tag: &str, i: usize) -> CreateRequest {
    CreateRequest {
        context: Context {
            platform: "generic".into(),
            repository: "acme/web".into(),
            actor: "dev".into(),
            environment: "production".into(),
            action: "deploy".into(),
            ..Default::default()
        },
        summary: format!("gate-load {tag} {i}"),
        idempotency_key: Some(format!("gate-load-{tag}-{i}-{}", uuid::Uuid::new_v4().simple())),
        ..Default::default()
    }
}

/// Runs `job(i)` for i in 0..n on `concurrency` workers; returns the results in order.
async fn par_map<T, F, Fut>(n: usize, concurrency: usize, job: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut workers = Vec::new();
    for w in 0..concurrency.max(1) {
        let next = next.clone();
        let job = job.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(out);
                }
                out.push((i, job(w, i).await?));
            }
        }));
    }
    let mut all: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for w in workers {
        for (i, v) in w.await?? {
            all[i] = Some(v);
        }
    }
    Ok(all.into_iter().map(|v| v.expect("every index done")).collect())
}

/// Opens `n` pending requests with `concurrency` clients; returns them and the elapsed time.
async fn open_many(
    server: &Server,
    tag: &'static str,
    n: usize,
    concurrency: usize,
    stats: &Arc<Stats>,
) -> Result<(Vec<RequestView>, Duration)> {
    let clients: Vec<Client> = (0..concurrency.max(1))
        .map(|_| server.pipeline())
        .collect::<Result<_>>()?;
    let clients = Arc::new(clients);
    let stats = stats.clone();
    let start = Instant::now();
    let views = par_map(n, concurrency, move |w, i| {
        let clients = clients.clone();
        let stats = stats.clone();
        async move {
            let body = create_body(tag, i);
            // After a 500 the retry may replay the request (not new): the key makes that safe.
            let (v, _new) = retry(&stats, "open", || clients[w].create(&body)).await?;
            ensure!(v.status == Status::Pending, "request {i} opened as {}", v.status);
            Ok(v)
        }
    })
    .await?;
    Ok((views, start.elapsed()))
}

/// Approves every id with `concurrency` approver clients. Returns, per id, when its approve
/// call returned and how long it took, plus the total elapsed time.
async fn approve_many(
    server: &Server,
    ids: Arc<Vec<String>>,
    concurrency: usize,
    stats: &Arc<Stats>,
) -> Result<(Vec<(Instant, Duration)>, Duration)> {
    let clients: Vec<Client> = (0..concurrency.max(1))
        .map(|_| server.approver())
        .collect::<Result<_>>()?;
    let clients = Arc::new(clients);
    let stats = stats.clone();
    let start = Instant::now();
    let n = ids.len();
    let done = par_map(n, concurrency, move |w, i| {
        let clients = clients.clone();
        let stats = stats.clone();
        let ids = ids.clone();
        async move {
            let t = Instant::now();
            approve_one(&clients[w], &ids[i], &stats).await?;
            let now = Instant::now();
            Ok((now, now - t))
        }
    })
    .await?;
    Ok((done, start.elapsed()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentiles of durations, in ms: p50, p90, p99, max.
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(samples: &[Duration]) -> Percentiles {
        let mut v: Vec<f64> = samples.iter().map(|d| ms(*d)).collect();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let k = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[k.clamp(1, v.len()) - 1]
        };
        Percentiles {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: v.last().copied().unwrap_or(0.0),
        }
    }

    fn line(&self) -> String {
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.p50, self.p90, self.p99, self.max
        )
    }

    fn json(&self) -> Value {
        json!({"p50_ms": round2(self.p50), "p90_ms": round2(self.p90), "p99_ms": round2(self.p99), "max_ms": round2(self.max)})
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ----- scenario 1: release latency of the real gate -----------------------------------

async fn latency(cli: &Cli, gate: &Path, server: &Server) -> Result<Value> {
    println!(
        "== latency ({}): {} sequential `gate request` runs (+{} warm-up)",
        server.backend, cli.runs, cli.warmup
    );
    let approver = server.approver()?;
    let stats = Stats::default();
    let records = server.dir.join("records");
    std::fs::create_dir_all(&records)?;
    let mut release = Vec::new();
    let mut opened = Vec::new();
    let mut approve_call = Vec::new();
    let mut whole = Vec::new();
    let total = cli.warmup + cli.runs;
    for run in 0..total {
        let record_file = records.join(format!("{run}.json"));
        let mut cmd = gate_request(gate, server, &record_file);
        cmd.arg("--idempotency-key")
            .arg(format!("gate-load-latency-{run}-{}", uuid::Uuid::new_v4().simple()))
            .stderr(Stdio::piped());
        let t_spawn = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {}", gate.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut stderr = child.stderr.take().expect("piped stderr");
        let err_task = tokio::spawn(async move {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s).await;
            s
        });
        let first = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
            .await
            .map_err(|_| anyhow!("run {run}: no output from `gate request` within 60 s"))??;
        let t_opened = Instant::now();
        let Some(first) = first else {
            let _ = child.wait().await;
            bail!("run {run}: `gate request` printed nothing; stderr: {}", err_task.await?);
        };
        let ev: Value = serde_json::from_str(&first).with_context(|| format!("run {run}: first line `{first}`"))?;
        ensure!(
            ev["event"] == "opened",
            "run {run}: first event is not `opened`: {first}"
        );
        let id = ev["id"]
            .as_str()
            .ok_or_else(|| anyhow!("run {run}: no id in {first}"))?
            .to_string();
        let out_task = tokio::spawn(async move {
            let mut rest = Vec::new();
            while let Ok(Some(l)) = stdout.next_line().await {
                rest.push(l);
            }
            rest
        });
        approve_one(&approver, &id, &stats)
            .await
            .with_context(|| format!("run {run}"))?;
        let t_approved = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .map_err(|_| anyhow!("run {run}: `gate request` did not exit within 60 s of the approval"))??;
        let t_exit = Instant::now();
        let rest = out_task.await?;
        let err = err_task.await?;
        ensure!(
            status.success(),
            "run {run}: `gate request` exited with {status}; stdout: {rest:?}; stderr: {err}"
        );
        let outcome: Value = serde_json::from_str(rest.last().map(String::as_str).unwrap_or("null"))?;
        ensure!(
            outcome["event"] == "outcome" && outcome["decision"] == "approved",
            "run {run}: last event is not an approved outcome: {rest:?}"
        );
        ensure!(record_file.is_file(), "run {run}: no record written");
        if run >= cli.warmup {
            release.push(t_exit - t_approved);
            opened.push(t_opened - t_spawn);
            approve_call.push(t_approved - t_opened);
            whole.push(t_exit - t_spawn);
        }
    }
    let rel = Percentiles::of(&release);
    let op = Percentiles::of(&opened);
    let ap = Percentiles::of(&approve_call);
    let wh = Percentiles::of(&whole);
    println!("release (approve returned -> gate exited 0): {}", rel.line());
    println!("spawn -> `opened` line:                      {}", op.line());
    println!("approve call:                                {}", ap.line());
    println!("whole run (spawn -> exit):                   {}", wh.line());
    println!(
        "{}; goal p99 < 50 ms: {}",
        stats.line(),
        if rel.p99 < 50.0 { "met" } else { "MISSED" }
    );
    Ok(json!({
        "scenario": "latency", "backend": server.backend, "runs": cli.runs, "warmup": cli.warmup,
        "release": rel.json(), "open": op.json(), "approve_call": ap.json(), "whole_run": wh.json(),
        "retries": stats.snapshot().0, "http_500": stats.snapshot().1, "goal_p99_under_50ms": rel.p99 < 50.0,
    }))
}

// ----- scenario 2: many concurrent long-waits -----------------------------------------

async fn waiters(cli: &Cli, server: &Server) -> Result<Value> {
    let n = cli.waiters;
    println!(
        "== waiters ({}): {n} concurrent long-waits, opened and approved by {} clients",
        server.backend, cli.concurrency
    );
    let files = open_file_limit();
    ensure!(
        files >= n as u64 + n as u64 / 10 + 1024,
        "{n} waiters need about {} open files on each side, and the limit here is {files} \
         (`ulimit -Hn`; raising the hard limit needs root with CAP_SYS_RESOURCE)",
        n as u64 + n as u64 / 10 + 1024
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle, _) = server.memory_kib()?;
    let stats = Arc::new(Stats::default());
    let (views, open_time) = open_many(server, "waiters", n, cli.concurrency, &stats).await?;
    let (rss_opened, _) = server.memory_kib()?;
    println!(
        "opened {n} requests in {:.2} s ({:.0}/s); server RSS idle {:.1} MiB, after opening {:.1} MiB",
        open_time.as_secs_f64(),
        n as f64 / open_time.as_secs_f64(),
        mib(rss_idle),
        mib(rss_opened)
    );

    // One raw HTTP/1.1 connection per long-wait (see `raw_wait`), connected a few hundred
    // at a time so the listen backlog never overflows.
    let addr = server.addr()?;
    let token: Arc<str> = server.pipeline_token.clone().into();
    let connecting = Arc::new(tokio::sync::Semaphore::new(256));
    let rewaits = Arc::new(AtomicU64::new(0));
    let t_wait = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, v) in views.iter().enumerate() {
        let (id, mut version) = (v.id.clone(), v.version);
        let (stats, rewaits, token, connecting) = (stats.clone(), rewaits.clone(), token.clone(), connecting.clone());
        let local = source_address(i);
        tasks.push(tokio::spawn(async move {
            loop {
                let r = retry(&stats, "wait", || {
                    raw_wait(addr, local, &token, &id, version, WAIT_SECS, &connecting)
                })
                .await?;
                if r.status != Status::Pending {
                    return Ok::<_, anyhow::Error>((Instant::now(), r.status));
                }
                // Timed out (or a vote that did not decide): wait again from what we saw.
                rewaits.fetch_add(1, Ordering::Relaxed);
                version = r.version;
            }
        }));
    }
    let mut waiting = 0.0;
    // A few hundred connections a second on a busy machine: give big runs their time.
    let deadline = Duration::from_secs(50).max(Duration::from_millis(n as u64 * 2));
    while t_wait.elapsed() < deadline {
        waiting = server.metric("jitgate_waiting_gates").await?;
        if waiting >= n as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_waiting = t_wait.elapsed();
    ensure!(
        waiting >= n as f64,
        "jitgate_waiting_gates reached only {waiting} of {n} within {} s",
        deadline.as_secs()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_waiting, hwm_waiting) = server.memory_kib()?;
    let per_waiter = (rss_waiting.saturating_sub(rss_opened)) as f64 * 1024.0 / n as f64;
    println!(
        "jitgate_waiting_gates = {waiting} after {:.2} s; server RSS with all waiting {:.1} MiB (peak {:.1} MiB), {:.1} KiB per waiter",
        all_waiting.as_secs_f64(),
        mib(rss_waiting),
        mib(hwm_waiting),
        per_waiter / 1024.0
    );

    let ids: Arc<Vec<String>> = Arc::new(views.iter().map(|v| v.id.clone()).collect());
    let t_approve = Instant::now();
    let (approved, approve_time) = approve_many(server, ids, cli.concurrency, &stats).await?;
    let mut released = Vec::with_capacity(n);
    let mut last = t_approve;
    for (i, t) in tasks.into_iter().enumerate() {
        let (at, status) = t.await??;
        ensure!(
            status == Status::Approved,
            "waiter {i} was released with status {status}"
        );
        last = last.max(at);
        released.push(at.saturating_duration_since(approved[i].0));
    }
    let release_all = last - t_approve;
    let (rss_after, hwm_after) = server.memory_kib()?;
    let still = server.metric("jitgate_waiting_gates").await?;
    let wake = Percentiles::of(&released);
    println!(
        "approved all {n} in {:.2} s ({:.0}/s); every waiter released, the last {:.2} s after the first approve",
        approve_time.as_secs_f64(),
        n as f64 / approve_time.as_secs_f64(),
        release_all.as_secs_f64()
    );
    println!("waiter release after its approve returned: {}", wake.line());
    let (goal, goal_bytes) = rss_goal(n);
    let goal_met = rss_waiting * 1024 < goal_bytes;
    println!(
        "after release: jitgate_waiting_gates = {still}, RSS {:.1} MiB (peak {:.1} MiB); re-waits {}; {}; goal {goal}: {}",
        mib(rss_after),
        mib(hwm_after),
        rewaits.load(Ordering::Relaxed),
        stats.line(),
        if goal_met { "met" } else { "MISSED" }
    );
    ensure!(
        still == 0.0,
        "{still} gates still waiting after every request was approved"
    );

    // Does the memory go back? Sample VmRSS once a second for --settle seconds.
    let near_idle = rss_opened + rss_opened / 10;
    let mut samples = vec![rss_after];
    let mut settled: Option<u64> = (rss_after <= near_idle).then_some(0);
    for s in 1..=cli.settle {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, _) = server.memory_kib()?;
        samples.push(rss);
        if settled.is_none() && rss <= near_idle {
            settled = Some(s);
        }
    }
    let at = |s: u64| samples.get(s as usize).or(samples.last()).copied().unwrap_or(rss_after);
    let at_or_none = |s: u64| (s <= cli.settle).then(|| round2(mib(at(s))));
    println!(
        "RSS after release: {:.1} MiB at once, {:.1} at +10 s, {:.1} at +30 s, {:.1} at +{} s (before the waiters: {:.1}); within 10% of that: {}",
        mib(rss_after),
        mib(at(10)),
        mib(at(30)),
        mib(at(cli.settle)),
        cli.settle,
        mib(rss_opened),
        match settled {
            Some(s) => format!("after {s} s"),
            None => format!("not within {} s", cli.settle),
        }
    );
    Ok(json!({
        "scenario": "waiters", "backend": server.backend, "waiters": n, "concurrency": cli.concurrency,
        "rss_idle_mib": round2(mib(rss_idle)), "rss_opened_mib": round2(mib(rss_opened)),
        "rss_waiting_mib": round2(mib(rss_waiting)), "hwm_waiting_mib": round2(mib(hwm_waiting)),
        "rss_after_mib": round2(mib(rss_after)), "hwm_after_mib": round2(mib(hwm_after)),
        "rss_after_10s_mib": at_or_none(10), "rss_after_30s_mib": at_or_none(30),
        "rss_after_settle_mib": round2(mib(at(cli.settle))), "settle_s": cli.settle,
        "within_10pct_of_opened_after_s": settled,
        "kib_per_waiter": round2(per_waiter / 1024.0),
        "open_s": round2(open_time.as_secs_f64()), "all_waiting_s": round2(all_waiting.as_secs_f64()),
        "approve_all_s": round2(approve_time.as_secs_f64()), "release_all_s": round2(release_all.as_secs_f64()),
        "release_after_approve": wake.json(), "rewaits": rewaits.load(Ordering::Relaxed),
        "retries": stats.snapshot().0, "http_500": stats.snapshot().1, "goal": goal, "goal_met": goal_met,
    }))
}

/// Reads one answer: its head, then `Content-Length` bytes of body (or to the end).
async fn read_answer(sock: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut answer = Vec::with_capacity(4096);
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| answer.len() >= end + 4 + len) {
                return Ok(answer);
            }
        }
        if sock.read_buf(&mut answer).await? == 0 {
            return Ok(answer);
        }
    }
}

/// The issue's memory goal for `n` waiters, and its bound in bytes.
fn rss_goal(n: usize) -> (&'static str, u64) {
    match n {
        0..=1000 => ("up to 1000 waiters < 100 MB", 100_000_000),
        1001..=10_000 => ("up to 10,000 waiters < 256 MB", 256_000_000),
        _ => ("up to 100,000 waiters < 2 GB", 2_000_000_000),
    }
}

/// The seconds each long-wait asks for (and the servers' `max_wait_secs`); a waiter that
/// times out waits again.
const WAIT_SECS: u64 = 600;

/// Loopback source addresses to spread the waiters over: one address has about 28,000
/// ephemeral ports (`net.ipv4.ip_local_port_range`), so waiter `i` connects from
/// 127.0.0.(2 + i / 20000) once there are more than that.
fn source_address(i: usize) -> Option<std::net::IpAddr> {
    let k = i / 20_000;
    (k > 0).then(|| std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1 + k as u8)))
}

/// One long-wait on a connection of its own, in plain HTTP/1.1: a keep-alive request as
/// the `gate` CLI's HTTP client sends it, read up to its `Content-Length`. A few KiB per
/// waiter on this side, so 100,000 fit next to the server.
async fn raw_wait(
    addr: std::net::SocketAddr,
    local: Option<std::net::IpAddr>,
    token: &str,
    id: &str,
    version: i64,
    secs: u64,
    connecting: &tokio::sync::Semaphore,
) -> Result<RequestView, ClientError> {
    use tokio::io::AsyncWriteExt as _;
    let io = |e: std::io::Error| ClientError::Transport(e.to_string());
    let mut sock = {
        let _permit = connecting
            .acquire()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let s = tokio::net::TcpSocket::new_v4().map_err(io)?;
        if let Some(ip) = local {
            s.bind(std::net::SocketAddr::new(ip, 0)).map_err(io)?;
        }
        let mut sock = s.connect(addr).await.map_err(io)?;
        let req = format!(
            "GET /api/v1/requests/{id}/wait?timeout={secs}&version={version} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: */*\r\n\r\n"
        );
        sock.write_all(req.as_bytes()).await.map_err(io)?;
        sock
    };
    let answer = tokio::time::timeout(Duration::from_secs(secs + 15), read_answer(&mut sock))
        .await
        .map_err(|_| ClientError::Transport("no answer in time".into()))?
        .map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Transport("the connection closed before a whole answer".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Decode(format!("no status line: {head:.80}")))?;
    if status != 200 {
        let e: Value = serde_json::from_str(body).unwrap_or_default();
        return Err(ClientError::Api {
            status,
            code: e["error"]["code"].as_str().unwrap_or("-").to_string(),
            message: e["error"]["message"].as_str().unwrap_or(body).to_string(),
            retry_after: None,
        });
    }
    serde_json::from_str(body).map_err(|e| ClientError::Decode(e.to_string()))
}

// ----- scenario 3: decisions per second -----------------------------------------------

async fn throughput(cli: &Cli, server: &Server) -> Result<Value> {
    let (m, c) = (cli.requests, cli.concurrency);
    println!(
        "== throughput ({}): {m} pending requests approved by {c} concurrent clients",
        server.backend
    );
    let stats = Arc::new(Stats::default());
    let (views, open_time) = open_many(server, "throughput", m, c, &stats).await?;
    let open_rate = m as f64 / open_time.as_secs_f64();
    println!(
        "opened {m} requests in {:.2} s: {open_rate:.0} opens/s ({})",
        open_time.as_secs_f64(),
        stats.line()
    );
    let (open_retries, open_500) = stats.snapshot();
    let ids: Arc<Vec<String>> = Arc::new(views.iter().map(|v| v.id.clone()).collect());
    let (done, approve_time) = approve_many(server, ids, c, &stats).await?;
    let rate = m as f64 / approve_time.as_secs_f64();
    let calls: Vec<Duration> = done.iter().map(|(_, d)| *d).collect();
    let p = Percentiles::of(&calls);
    let decided = server.metric("jitgate_decisions_total{outcome=\"approved\"}").await?;
    let (approve_retries, approve_500) = (stats.snapshot().0 - open_retries, stats.snapshot().1 - open_500);
    println!(
        "approved {m} in {:.2} s: {rate:.0} decisions/s (server counted {decided} approved)",
        approve_time.as_secs_f64()
    );
    println!("approve call: {}", p.line());
    println!(
        "while approving, retried after 503/429/transport errors: {approve_retries}; after HTTP 500: {approve_500}{}; goal >= 500 decisions/s on SQLite: {}",
        stats.first_note(),
        match (server.backend, rate >= 500.0) {
            ("sqlite", true) => "met",
            ("sqlite", false) => "MISSED",
            _ => "n/a (PostgreSQL)",
        }
    );
    ensure!(
        decided as usize == m,
        "the server counted {decided} approved decisions, expected {m}"
    );
    Ok(json!({
        "scenario": "throughput", "backend": server.backend, "requests": m, "concurrency": c,
        "open_s": round2(open_time.as_secs_f64()), "opens_per_s": round2(open_rate),
        "approve_s": round2(approve_time.as_secs_f64()), "decisions_per_s": round2(rate),
        "approve_call": p.json(), "open_retries": open_retries, "open_http_500": open_500,
        "approve_retries": approve_retries, "approve_http_500": approve_500,
        "goal_500_per_s": rate >= 500.0,
    }))
}
