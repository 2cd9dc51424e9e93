//! Three `gate serve` replicas on one PostgreSQL database: gates spread over them (each
//! through a proxy standing in for a load balancer), one replica SIGKILLed mid-run, and
//! replicas whose clocks are two minutes apart (`faketime`).

use std::ffi::OsString;
use std::process::Stdio;

use jitgate::client::Client;
use jitgate::core::decide::Status;

use crate::faults::{DEADLINE, count};
use crate::faults_pg::skip;
use crate::helpers::*;
use crate::support::proxy::Proxy;
use crate::support::serve::{ServeFiles, listening};

/// A replica of `primary`'s server (same database, config, policy and key) run under
/// `faketime -f OFFSET` (e.g. `+2m`): its wall clock is that far off, its monotonic clock
/// is not. Killed when dropped.
struct Skewed {
    url: String,
    _child: tokio::process::Child,
    _log: tempfile::TempDir,
}

async fn skewed(primary: &TestApp, offset: &str) -> Skewed {
    let files = ServeFiles {
        config: primary.config.clone(),
        policy: primary.policy.clone(),
        data_dir: primary.data_dir.clone(),
        listen: "127.0.0.1:0".into(),
        database_url: Some(primary.database_url.clone()),
    };
    let args: Vec<OsString> = files
        .command(std::path::Path::new(GATE))
        .as_std()
        .get_args()
        .map(|a| a.to_owned())
        .collect();
    let log = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("faketime");
    cmd.args(["-f", offset])
        .arg(GATE)
        .args(args)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("GATE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log.path().join("server.log")).unwrap())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn faketime gate serve");
    let url = listening(&mut child).await.unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(log.path().join("server.log")).unwrap_or_default()
        )
    });
    Skewed {
        url,
        _child: child,
        _log: log,
    }
}

fn has_pg() -> bool {
    std::env::var("GATE_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty())
        || !skip("GATE_TEST_DATABASE_URL is not set: the replica tests need PostgreSQL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_release_every_gate_once_through_a_sigkill() {
    if !has_pg() {
        return;
    }
    let primary = TestApp::builder().backend(Db::Postgres).spawn().await;
    let mut replicas = vec![primary.replica().await, primary.replica().await];
    let addr = |s: &TestApp| -> std::net::SocketAddr { s.addr.parse().unwrap() };
    // One "load balancer" per replica; the third one's fails over to the primary.
    let lbs = [
        Proxy::start(addr(&primary)).await.unwrap(),
        Proxy::start(addr(&replicas[0])).await.unwrap(),
        Proxy::start(addr(&replicas[1])).await.unwrap(),
    ];
    let mut gates = Vec::new();
    for i in 0..6 {
        let mut cmd = primary.gate("ci");
        cmd.env("GATE_SERVER", lbs[i % 3].url());
        let key = format!("replicas-run-{i}");
        let args = [
            &PRODUCTION_BY_DAVE[..],
            &["--idempotency-key", &key, "--retry-budget", "60s"],
        ]
        .concat();
        gates.push(primary.open_with(cmd, &args).await);
    }
    // Two decided before the kill, on the replica about to die and on another.
    replicas[1].client("bob").approve(&gates[2].id, None).await.unwrap();
    replicas[0].client("bob").approve(&gates[0].id, None).await.unwrap();

    // SIGKILL the third replica mid-run; its load balancer sends its gates to the primary.
    replicas[1].kill().await;
    let before = lbs[2].accepted();
    lbs[2].redirect(addr(&primary));
    lbs[2].cut();

    // The rest decided on the survivors, while the moved gates reconnect.
    for (i, g) in gates.iter().enumerate().skip(1).filter(|(i, _)| *i != 2) {
        let on = if i % 2 == 0 { &primary } else { &replicas[0] };
        on.client("bob").approve(&g.id, None).await.unwrap();
    }
    let ids: Vec<String> = gates.iter().map(|g| g.id.clone()).collect();
    for g in gates {
        let (code, events, err) = tokio::time::timeout(DEADLINE, g.finish()).await.expect("a gate exits");
        assert_eq!(code, 0, "{events:?} {err}");
        assert_eq!(outcome(&events)["decision"], "approved", "{events:?}");
    }
    assert!(
        lbs[2].accepted() > before,
        "the killed replica's gates went on through the primary"
    );

    let db = &primary.database_url;
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM gate_requests").await,
        6,
        "one request per run"
    );
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM gate_requests WHERE status = 'consumed'").await,
        6
    );
    for id in &ids {
        let one = |sql: &str| sql.replace("ID", id);
        assert_eq!(
            count(
                db,
                &one("SELECT COUNT(*) FROM gate_audit WHERE request_id = 'ID' AND kind = 'consumed'")
            )
            .await,
            1,
            "{id} released once"
        );
        assert_eq!(
            count(db, &one("SELECT COUNT(*) FROM gate_votes WHERE request_id = 'ID'")).await,
            1,
            "{id}: one vote"
        );
        assert_eq!(
            count(db, &one("SELECT COUNT(*) FROM gate_records WHERE request_id = 'ID'")).await,
            1,
            "{id}: one record"
        );
    }
    let v = replicas[0].run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
    assert_eq!(v.code, 0, "{v:?}");
    drop(replicas);
}

/// A request opened on a replica whose clock is two minutes slow, with a three-minute
/// timeout, is not expired by a replica whose clock is two minutes fast (to which it is
/// already a minute past its deadline by the clock alone): votes there still count, and
/// the gate is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_between_replicas_does_not_expire_a_request_early() {
    if !has_pg() {
        return;
    }
    if !std::process::Command::new("faketime")
        .args(["-f", "+0", "true"])
        .status()
        .is_ok_and(|s| s.success())
        && skip("faketime is not installed (apt-get install faketime)")
    {
        return;
    }
    let primary = TestApp::builder().backend(Db::Postgres).spawn().await;
    let slow = skewed(&primary, "-2m").await;
    let fast = skewed(&primary, "+2m").await;

    let mut cmd = primary.gate("ci");
    cmd.env("GATE_SERVER", &slow.url);
    let w = primary
        .open_with(cmd, &[&PRODUCTION_BY_DAVE[..], &["--timeout", "3m"]].concat())
        .await;
    assert_eq!(w.opened["status"], "pending", "{}", w.opened);
    let on_fast = Client::new(&fast.url, Some(token("ci"))).unwrap();
    let seen = on_fast.get(&w.id).await.unwrap();
    assert_eq!(
        seen.status,
        Status::Pending,
        "the fast replica sees it pending: {seen:?}"
    );
    let voted = Client::new(&fast.url, Some(token("bob")))
        .unwrap()
        .approve(&w.id, None)
        .await;
    let voted = voted.expect("a vote on the fast replica counts");
    assert_eq!(voted.status, Status::Approved);
    let (code, events, err) = tokio::time::timeout(DEADLINE, w.finish())
        .await
        .expect("the gate exits");
    assert_eq!(code, 0, "{events:?} {err}");
    assert_eq!(
        count(
            &primary.database_url,
            "SELECT COUNT(*) FROM gate_audit WHERE kind = 'expired'"
        )
        .await,
        0,
        "nothing expired"
    );
}
