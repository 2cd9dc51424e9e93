//! A TCP proxy for fault tests: it passes bytes through to an upstream address until the
//! test tells it to refuse new connections, cut the live ones, or resume.
//!
//! "Refusing" accepts and closes at once (the listener stays bound, so no other process
//! can take the port while the proxy is down): to a client it looks like a server that
//! resets every connection. Only tokio, so `gate-load` could include it too.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The proxy's shared state, read by its tasks and set by the test.
struct Shared {
    upstream: std::sync::Mutex<SocketAddr>,
    refusing: AtomicBool,
    /// Bumped by [`Proxy::cut`]: every live connection closes when it changes.
    cuts: watch::Sender<u64>,
    accepted: AtomicU64,
    refused: AtomicU64,
    live: AtomicU64,
}

/// A running proxy on `127.0.0.1:<free port>`. Dropping it stops accepting and cuts every
/// live connection.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts passing connections to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: std::sync::Mutex::new(upstream),
            refusing: AtomicBool::new(false),
            cuts: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            live: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if s.refusing.load(Ordering::SeqCst) {
                    s.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                s.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(pass(s.clone(), client));
            }
        });
        Ok(Proxy { addr, shared, accept })
    }

    /// `http://ADDR`, for a proxy in front of an HTTP server.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every live connection (both sides); new ones still pass unless refusing.
    pub fn cut(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    /// Refuses new connections and cuts the live ones: the upstream is "down".
    pub fn refuse(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// Passes new connections again.
    pub fn resume(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
    }

    /// Sends new connections to `upstream` from now on (a load balancer failing over);
    /// live ones stay where they are until cut.
    pub fn redirect(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    /// Connections passed through so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused so far (while down).
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Connections open through the proxy now.
    pub fn live(&self) -> u64 {
        self.shared.live.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
        self.accept.abort();
        self.cut();
    }
}

/// One connection: copy both ways until either side closes or the test cuts it.
async fn pass(s: Arc<Shared>, mut client: TcpStream) {
    let mut cuts = s.cuts.subscribe();
    cuts.mark_unchanged();
    let to = *s.upstream.lock().unwrap();
    let Ok(mut upstream) = TcpStream::connect(to).await else {
        return;
    };
    s.live.fetch_add(1, Ordering::SeqCst);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = cuts.changed() => {}
    }
    s.live.fetch_sub(1, Ordering::SeqCst);
    // Dropping both streams closes them: the client and the upstream see the cut.
}

/// Waits until `cond` holds, checking every 20 ms, or panics naming `what` after `within`.
/// A condition with a generous deadline, not a sleep standing in for one.
pub async fn until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
