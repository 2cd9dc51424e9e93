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
