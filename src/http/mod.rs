//! The HTTP layer: the API, the web UI, webhooks, metrics and the OpenAPI document.

pub mod api;
pub mod error;
mod notifications;
mod openapi;
pub mod ui;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use api::router;

use crate::service::Engine;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub shutdown: watch::Receiver<bool>,
    pub max_wait: Duration,
    /// Largest accepted request body, for handlers that read bodies themselves.
    pub body_limit: usize,
    /// Verifies OIDC tokens; `None` when no issuer is configured.
    pub oidc: Option<Arc<crate::auth::oidc::Verifier>>,
    /// The web UI's single sign-on client and cookie settings.
    pub ui: Arc<ui::UiState>,
}

/// The whole HTTP application over `engine`: the API, the web UI, webhooks and
/// operations routes. Long-waits return early once `shutdown` turns true.
pub fn app(engine: Arc<Engine>, shutdown: watch::Receiver<bool>) -> anyhow::Result<axum::Router> {
    let max_wait = Duration::from_secs(engine.config.max_wait_secs.unwrap_or(60).clamp(1, 600));
    let body_limit = engine.config.max_body_bytes.unwrap_or(64 * 1024);
    let oidc = if engine.config.oidc.is_empty() {
        None
    } else {
        Some(Arc::new(
            crate::auth::oidc::Verifier::new(&engine.config.oidc).map_err(anyhow::Error::msg)?,
        ))
    };
    let ui = ui::state(&engine.config, &engine.public_url).map_err(anyhow::Error::msg)?;
    let state = AppState {
        ui,
        engine,
        shutdown,
        max_wait,
        body_limit,
        oidc,
    };
    Ok(router(state, body_limit))
}
