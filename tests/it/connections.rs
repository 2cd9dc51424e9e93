//! Connection discipline: idle sockets time out, a full server answers 503 with
//! `Retry-After` while its health routes still answer, and a flood of idle connections
//! past the common 1,024 open-file limit does not take it down.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::helpers::TestApp;

/// Opens `n` TCP connections that never send a byte.
async fn idle(s: &TestApp, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TcpStream::connect(&s.addr).await.unwrap());
    }
    out
}

/// Reads until the server closes the connection; the bound only keeps a broken server
/// from hanging the test.
async fn closed_by_server(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(60), c.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn get(s: &TestApp, path: &str) -> (u16, Option<String>) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", s.url))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    (r.status().as_u16(), retry)
}

#[tokio::test]
async fn a_full_server_says_503_keeps_its_health_and_sheds_idle_sockets() {
    let s = TestApp::builder()
        // The idle sockets are shed after header_read_timeout; it must be long enough
        // that a loaded machine still sends the next request while they are held.
        .config_extra("max_connections: 20\nheader_read_timeout: 5s\n")
        .spawn()
        .await;
    assert_eq!(get(&s, "/api/v1/keys").await.0, 200);
    // Twenty sockets that never send a request take every served slot.
    let mut sockets = idle(&s, 20).await;
    let (status, retry) = get(&s, "/api/v1/keys").await;
    assert_eq!(status, 503, "past max_connections");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(get(&s, "/healthz").await.0, 200, "health still answers when full");
    assert_eq!(get(&s, "/readyz").await.0, 200);
    // None of them sent a request head within header_read_timeout: the server closes
    // each, and serves again.
    for c in &mut sockets {
        assert!(closed_by_server(c).await, "an idle socket was not closed");
    }
    // The server frees a slot just after it closes the socket, so a client that retries
    // a 503 (as Retry-After asks) is served again at once.
    let mut served = false;
    for _ in 0..100 {
        if get(&s, "/api/v1/keys").await.0 == 200 {
            served = true;
            break;
        }
    }
    assert!(served, "the server did not serve again after shedding its idle sockets");
    assert!(s.log().contains("connection limits"), "{}", s.log());
}

#[tokio::test]
async fn fifteen_hundred_idle_connections_do_not_stop_the_server() {
    // A service manager's usual soft limit; the server raises it to the hard limit.
    let s = TestApp::builder().open_files(1024).spawn().await;
    let hard = {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit with a valid pointer.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        lim.rlim_max
    };
    if hard < 2048 {
        eprintln!("hard open-file limit {hard} is below 2048: cannot hold 1500 sockets here; skipped");
        return;
    }
    let sockets = idle(&s, 1500).await;
    let (status, _) = get(&s, "/healthz").await;
    assert_eq!(status, 200);
    // And it still does its work.
    let r = s.open_via_api("erin").await;
    s.client("bob").approve(&r.id, None).await.unwrap();
    drop(sockets);
    let log = s.log();
    assert!(
        log.contains("open_files=") && !log.contains("open_files=1024 "),
        "{log}"
    );
}
