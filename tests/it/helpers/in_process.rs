//! [`InProcessApp`]: the server's router, built from the same files as a [`super::TestApp`]
//! and called in process (`tower::ServiceExt::oneshot`), for tests about the HTTP API alone.
//! No listener, no expiry timer, no notification worker, no LISTEN/NOTIFY: tests that need
//! those, a real process, signals or restarts spawn a `TestApp`.

use std::path::PathBuf;
use std::sync::Arc;

use jitgate::serve::Settings;
use jitgate::service::Engine;
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
    /// What `gate serve` does before it listens (`jitgate::serve::build`, then
    /// `jitgate::http::app`, as `jitgate::serve::serve` does), from these files.
    pub(super) async fn build(
        dir: tempfile::TempDir,
        config: PathBuf,
        policy: PathBuf,
        database_url: String,
    ) -> InProcessApp {
        let config_path = config;
        let config = jitgate::config::Config::load(&config_path).unwrap();
        let settings = Settings {
            config: config.clone(),
            config_path: Some(config_path),
            policy,
            database_url: database_url.clone(),
            data_dir: dir.path().to_path_buf(),
            signing_key: dir.path().join("signing-key"),
            public_url: PUBLIC_URL.into(),
        };
        let engine = jitgate::serve::build(&settings).await.unwrap().engine;
        let (stop, shutdown) = watch::channel(false);
        InProcessApp {
            router: jitgate::http::app(engine.clone(), shutdown).unwrap(),
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
