//! Accepting connections, with the discipline `axum::serve` does not have: a connection
//! that sends no whole request head within `header_read_timeout` (new, or idle between
//! requests) is closed; at most `max_connections` are served at once; the next
//! `overflow` are answered 503 with `Retry-After` (but `/healthz` and `/readyz` still
//! answer, so an orchestrator does not kill a busy server); past those, accepting pauses
//! until a connection closes. So idle sockets cannot take the server down: they time
//! out, and they can never use up the file descriptors the database needs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt as _;

/// How many connections, and how patiently.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections past `max_connections` that still get an answer (503, or health).
    pub overflow: usize,
    pub header_read_timeout: Duration,
}

impl Limits {
    /// The limits for a process allowed `open_files` descriptors: some are kept for the
    /// database pool, the log and the key file; of the rest, nine tenths are served and
    /// one tenth answered 503. `configured` (gate.yaml's `max_connections`) is used when
    /// it fits.
    pub fn for_open_files(open_files: u64, configured: Option<usize>, header_read_timeout: Duration) -> Limits {
        let budget = (open_files.saturating_sub(RESERVED_FILES) as usize).max(16);
        let max_connections = configured.unwrap_or(budget * 9 / 10).clamp(1, budget);
        Limits {
            max_connections,
            overflow: (budget - max_connections).max(8),
            header_read_timeout,
        }
    }
}

/// Descriptors kept for everything but client connections.
const RESERVED_FILES: u64 = 128;

/// Windows has no open-file limit of this kind: the figure sizes the connection caps.
#[cfg(not(unix))]
pub fn raise_open_file_limit() -> u64 {
    16_384
}

/// Raises this process's soft open-file limit to its hard limit, and returns it.
#[cfg(unix)]
pub fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Serves `app` on `listener` until `stop` turns true, then lets the connections in
/// flight finish.
pub async fn run(listener: TcpListener, app: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    let served = Arc::new(Semaphore::new(limits.max_connections));
    let spare = Arc::new(Semaphore::new(limits.overflow));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: every client of ours speaks it, and hyper's header-read timer starts
    // when a connection opens only on HTTP/1 (the automatic HTTP/2 detection would wait
    // for a first byte that an idle socket never sends).
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let slot = tokio::select! {
            s = slot(&served, &spare) => s,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors (or a connection reset before we took it): wait
                    // a little instead of spinning; the header timeout frees sockets.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let _ = sock.set_nodelay(true);
        let app = app.clone();
        let full = matches!(slot, Slot::Spare(_));
        let limit = limits.max_connections;
        let svc = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let path = req.uri().path();
                if full && path != "/healthz" && path != "/readyz" {
                    return Ok::<_, Infallible>(overloaded(limit));
                }
                let req = req.map(Body::new);
                Ok(app.oneshot(req).await.unwrap_or_else(|e| match e {}))
            }
        });
        let conn = builder.serve_connection(TokioIo::new(sock), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A place for one connection: served, or answered 503.
enum Slot {
    Served(#[allow(dead_code)] OwnedSemaphorePermit),
    Spare(#[allow(dead_code)] OwnedSemaphorePermit),
}

/// A served slot when one is free, else a spare one, else waits for either.
async fn slot(served: &Arc<Semaphore>, spare: &Arc<Semaphore>) -> Slot {
    if let Ok(p) = served.clone().try_acquire_owned() {
        return Slot::Served(p);
    }
    if let Ok(p) = spare.clone().try_acquire_owned() {
        return Slot::Spare(p);
    }
    tokio::select! {
        Ok(p) = served.clone().acquire_owned() => Slot::Served(p),
        Ok(p) = spare.clone().acquire_owned() => Slot::Spare(p),
    }
}

fn overloaded(limit: usize) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": "unavailable", "message": format!(
        "the server is serving its limit of {limit} connections; retry shortly"
    )}});
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::RETRY_AFTER, "1")
        .header(header::CONNECTION, "close")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_open_file_limit() {
        let l = Limits::for_open_files(1024, None, Duration::from_secs(10));
        assert_eq!((l.max_connections, l.overflow), (806, 90));
        let l = Limits::for_open_files(1024, Some(5000), Duration::from_secs(10));
        assert_eq!(l.max_connections, 896, "a configured cap never exceeds the descriptors");
        let l = Limits::for_open_files(1024, Some(50), Duration::from_secs(10));
        assert_eq!((l.max_connections, l.overflow), (50, 846));
        let l = Limits::for_open_files(10, None, Duration::from_secs(10));
        assert!(l.max_connections >= 1 && l.overflow >= 8);
    }
}
