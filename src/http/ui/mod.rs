//! The approver web UI: server-rendered pages (askama templates in `templates/`), one
//! stylesheet and one small script (no inline script or style, so the Content-Security-
//! Policy forbids both), sign-in with an approver token or single sign-on ([`sso`]),
//! server-side sessions ([`session`]) and an anti-forgery token on every form. One module
//! per page.
//!
//! Routes: `/` inbox, `/requests/{id}` detail, `POST /requests/{id}/approve|deny`,
//! `/history`, `/audit`, `/reports` (auditors and admins), `/delegations` (and
//! `POST /delegations`, `POST /delegations/{id}/revoke`), `/login` (GET form, POST token),
//! `POST /logout`, `/auth/sso`,
//! `/auth/callback`, `/ui/events` (the change stream, by session cookie), `/static/…`.

mod audit;
mod delegations;
mod detail;
mod error;
mod events;
mod format;
mod headers;
mod history;
mod inbox;
mod login;
mod page;
mod reports;
pub mod session;
pub mod sso;

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::AppState;
pub use error::UiError;
pub use format::{context_links, human_age};
pub use headers::CSP;
pub use page::Nav;

const APP_CSS: &str = include_str!("../../../templates/static/app.css");
const APP_JS: &str = include_str!("../../../templates/static/app.js");

/// What the UI needs beyond the engine.
pub struct UiState {
    pub sso: Option<sso::Client>,
    /// Cookies get `Secure` when the public URL is https.
    pub secure: bool,
}

impl UiState {
    pub fn new(config: &crate::config::Config, public_url: &str) -> Result<UiState, sso::SsoError> {
        let sso = match &config.sso {
            Some(c) => {
                if c.secret().is_none() {
                    tracing::warn!(
                        "sso: no client secret configured (client_secret or client_secret_env); signing in as a public client"
                    );
                }
                Some(sso::Client::new(c.clone(), public_url)?)
            }
            None => None,
        };
        Ok(UiState {
            sso,
            secure: public_url.starts_with("https://"),
        })
    }
}

/// The UI's routes; every answer carries the security headers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(inbox::inbox))
        .route("/requests/{id}", get(detail::detail))
        .route("/requests/{id}/{verb}", post(detail::vote).get(detail::record))
        .route("/history", get(history::history))
        .route("/audit", get(audit::audit))
        .route("/reports", get(reports::reports))
        .route("/reports/{file}", get(reports::download))
        .route("/delegations", get(delegations::page).post(delegations::create))
        .route("/delegations/{id}/revoke", post(delegations::revoke))
        .route("/login", get(login::login_page).post(login::login_token))
        .route("/logout", post(login::logout))
        .route("/auth/sso", get(login::sso_start))
        .route("/auth/callback", get(login::sso_callback))
        .route("/ui/events", get(events::events))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .layer(middleware::from_fn(headers::security_headers))
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// The UI state for `AppState`.
pub fn state(config: &crate::config::Config, public_url: &str) -> Result<Arc<UiState>, sso::SsoError> {
    UiState::new(config, public_url).map(Arc::new)
}
