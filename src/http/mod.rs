//! The HTTP layer: the API, the web UI, webhooks, and the operations routes (health,
//! metrics, the OpenAPI document). Each area has its `router()`; [`router`] merges them
//! and wraps them in the layers every request goes through.

pub mod api;
pub mod error;
pub mod extract;
mod layers;
pub mod listen;
mod openapi;
mod ops;
mod scim;
pub mod throttle;
pub mod ui;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::service::Engine;
use error::AppError;

/// Largest accepted webhook payload.
const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

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
    /// `429`s: failed authentications, refused actions, long-waits per caller.
    pub throttle: Arc<throttle::Throttle>,
}

/// The whole HTTP application over `engine`: the API, the web UI, webhooks and
/// operations routes. Long-waits return early once `shutdown` turns true.
pub fn app(engine: Arc<Engine>, shutdown: watch::Receiver<bool>) -> anyhow::Result<axum::Router> {
    let max_wait = Duration::from_secs(engine.config().max_wait_secs.unwrap_or(60).clamp(1, 600));
    let body_limit = engine.config().max_body_bytes.unwrap_or(64 * 1024);
    let oidc = if engine.config().oidc.is_empty() {
        None
    } else {
        Some(Arc::new(
            crate::auth::oidc::Verifier::new(&engine.config().oidc).map_err(anyhow::Error::msg)?,
        ))
    };
    let ui = ui::state(&engine.config(), &engine.public_url).map_err(anyhow::Error::msg)?;
    let throttle = Arc::new(throttle::Throttle::new(&engine.config()));
    let state = AppState {
        ui,
        throttle,
        engine,
        shutdown,
        max_wait,
        body_limit,
        oidc,
    };
    Ok(router(state))
}

/// Every route, in the layers every request goes through, outermost first: a request id
/// (`x-request-id`, the client's if it sent one, answered in the response), the tracing
/// span that carries it, the body limit for extractors that read bodies, response
/// counting, then the 413 from a declared `Content-Length` alone.
pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .merge(api::router())
        .merge(ops::router())
        .merge(ui::router())
        .merge(webhooks::router())
        .merge(scim::router())
        .fallback(|| async { AppError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|req: axum::extract::Request| async move {
            AppError::MethodNotAllowed(format!("{} is not allowed on {}", req.method(), req.uri().path()))
        })
        .layer(middleware::from_fn_with_state(body_limit, layers::reject_oversized))
        .layer(middleware::from_fn_with_state(state.clone(), layers::count_responses))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(layers::span)
                        // A 5xx is logged where it happens, with its cause.
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}
