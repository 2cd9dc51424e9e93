//! Faults between the gate and the server: a TCP proxy ([`crate::support::proxy`]) sits
//! between the real `gate request` and a real `gate serve`, and the test cuts it while
//! the gate waits. The other fault modules: `faults_pg` (the server and PostgreSQL),
//! `faults_disk` (SQLite on a full disk), `faults_replicas` (replicas, a SIGKILL, skew).

use std::time::Duration;

use crate::helpers::*;
use crate::support::proxy::{Proxy, until};

/// A generous deadline for anything the tests wait on.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// One number from the server's database (e.g. `SELECT COUNT(*) FROM gate_requests`).
pub async fn count(database_url: &str, sql: &str) -> i64 {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(database_url)
        .await
        .expect("connect to the test database");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut c)
        .await
        .expect(sql);
    let _ = c.close().await;
    n
}

/// The server's address (`127.0.0.1:PORT`) as a socket address for the proxy.
fn upstream(s: &TestApp) -> std::net::SocketAddr {
    s.addr.parse().expect("the server's address")
}

/// A gate through the proxy, with this retry budget, waiting on a production request.
async fn gate_through(s: &TestApp, proxy: &Proxy, budget: &str) -> Waiting {
    let mut cmd = s.gate("ci");
    cmd.env("GATE_SERVER", proxy.url()).env("GATE_LOG", "info");
    let w = s
        .open_with(cmd, &[&PRODUCTION_BY_DAVE[..], &["--retry-budget", budget]].concat())
        .await;
    assert_eq!(w.opened["status"], "pending", "{}", w.opened);
    w
}

/// Cut shorter than the retry budget: the gate reconnects, sees the approval made while
/// it was cut off, uses it and exits 0; the run opened exactly one request.
#[tokio::test]
async fn gate_rides_out_a_cut_shorter_than_its_budget() {
    let s = TestApp::spawn().await;
    let proxy = Proxy::start(upstream(&s)).await.unwrap();
    let w = gate_through(&s, &proxy, "60s").await;
    until("the gate's long poll", DEADLINE, || async { proxy.live() >= 1 }).await;

    // A cut of the live long poll alone: the gate opens a new one at once.
    let before = proxy.accepted();
    proxy.cut();
    until("the gate to poll again after the cut", DEADLINE, || async {
        proxy.accepted() > before
    })
    .await;

    // Then the server is "down" for a while: the gate retries (and is refused) ...
    proxy.refuse();
    until("the gate to retry three times", DEADLINE, || async {
        proxy.refused() >= 3
    })
    .await;
    // ... the approval happens while it cannot see the server ...
    s.client("bob").approve(&w.id, None).await.unwrap();
    // ... and it picks the approval up when the server is back.
    proxy.resume();
    let record = w.record_path().to_path_buf();
    let id = w.id.clone();
    let (code, events, err) = tokio::time::timeout(DEADLINE, w.finish())
        .await
        .expect("the gate exits");
    assert_eq!(code, 0, "{events:?} {err}");
    assert_eq!(outcome(&events)["decision"], "approved", "{events:?}");
    assert!(record.exists(), "the record is written");
    assert_eq!(
        count(&s.database_url, "SELECT COUNT(*) FROM gate_requests").await,
        1,
        "one request for the run"
    );
    assert_eq!(
        s.client("ci").get(&id).await.unwrap().status,
        jitgate::core::decide::Status::Consumed
    );
}

/// Cut longer than the retry budget: the gate gives up with exit 2 as documented, says
/// the request is still open, and never opened a second one.
#[tokio::test]
async fn gate_gives_up_after_its_budget_with_exit_2() {
    let s = TestApp::spawn().await;
    let proxy = Proxy::start(upstream(&s)).await.unwrap();
    let w = gate_through(&s, &proxy, "2s").await;
    until("the gate's long poll", DEADLINE, || async { proxy.live() >= 1 }).await;
    proxy.refuse();
    let id = w.id.clone();
    let (code, events, err) = tokio::time::timeout(DEADLINE, w.finish())
        .await
        .expect("the gate exits");
    assert_eq!(code, 2, "{events:?} {err}");
    assert!(
        err.contains("unreachable") && err.contains(&id) && err.contains("still open"),
        "{err}"
    );
    assert!(proxy.refused() >= 1, "the gate retried before giving up");
    assert_eq!(
        count(&s.database_url, "SELECT COUNT(*) FROM gate_requests").await,
        1,
        "one request for the run"
    );
    assert_eq!(
        s.client("ci").get(&id).await.unwrap().status,
        jitgate::core::decide::Status::Pending
    );
}
