//! [`InProcessApp`]: the server's router, built from the same files as a [`super::TestApp`]
//! and called in process (`tower::ServiceExt::oneshot`), for tests about the HTTP API alone.
//! No listener, no expiry timer, no notification worker, no LISTEN/NOTIFY: tests that need
//! those, a real process, signals or restarts spawn a `TestApp`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jitgate::server::{AppState, Engine, Settings};
use tokio::sync::watch;

use super::Http;

/// A public URL for links in answers: nothing listens there.
const PUBLIC_URL: &str = "http://gate.in-process.test";

pub struct InProcessApp {
    pub router: axum::Router,
    pub engine: Arc<Engine>,
    pub dir: tempfile::TempDir,
    pub database_url: String,
    /// Keeps the shutdown channel open: long-waits end at their timeout, not at once.
    _stop: watch::Sender<bool>,
}

impl InProcessApp {
    /// What `gate serve` does before it listens (`jitgate::server::build`, then the state
    /// `jitgate::server::serve` gives the router), from these files.
    pub(super) async fn build(
        dir: tempfile::TempDir,
        config: PathBuf,
        policy: PathBuf,
        database_url: String,
    ) -> InProcessApp {
        let config = jitgate::config::Config::load(&config).unwrap();
        let settings = Settings {
            config: config.clone(),
            policy,
            database_url: database_url.clone(),
            data_dir: dir.path().to_path_buf(),
            signing_key: dir.path().join("signing-key"),
            public_url: PUBLIC_URL.into(),
        };
        let engine = jitgate::server::build(&settings).await.unwrap();
        let (stop, shutdown) = watch::channel(false);
        let body_limit = config.max_body_bytes.unwrap_or(64 * 1024);
        let oidc = if config.oidc.is_empty() {
            None
        } else {
            Some(Arc::new(jitgate::auth::oidc::Verifier::new(&config.oidc).unwrap()))
        };
        let state = AppState {
            ui: jitgate::server::ui::state(&config, PUBLIC_URL).unwrap(),
            engine: engine.clone(),
            shutdown,
            max_wait: Duration::from_secs(config.max_wait_secs.unwrap_or(60).clamp(1, 600)),
            body_limit,
            oidc,
        };
        InProcessApp {
            router: jitgate::server::router(state, body_limit),
            engine,
            dir,
            database_url,
            _stop: stop,
        }
    }

    /// HTTP calls to the router, in process.
    pub fn http(&self) -> Http {
        Http::router(self.router.clone())
    }
}
