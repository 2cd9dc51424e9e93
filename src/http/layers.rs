//! What wraps every route (see [`super::router`] for the order): body limits, response
//! counting, and the span that carries each request's id.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Span;

use super::error::AppError;
use super::{AppState, WEBHOOK_BODY_LIMIT};

pub(super) async fn count_responses(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    s.engine.metrics.http(resp.status().as_u16());
    resp
}

/// Refuses a body whose declared length is over the limit before reading any of it, so
/// the client gets its 413 instead of a reset connection. Bodies without a length are
/// cut off by `DefaultBodyLimit` as they are read.
pub(super) async fn reject_oversized(State(limit): State<usize>, req: Request, next: Next) -> Response {
    // Forge webhook payloads carry whole issues and repositories: they get more room.
    let limit = if req.uri().path().starts_with("/webhooks/") {
        limit.max(WEBHOOK_BODY_LIMIT)
    } else {
        limit
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return AppError::TooLarge(format!(
            "request body is larger than the {limit} bytes this server accepts"
        ))
        .into_response();
    }
    next.run(req).await
}

/// The span of one request: its `x-request-id`, method and path. Not the query string:
/// the sign-on callback's carries the authorization code and state. No other header
/// either (never `Authorization` or a cookie).
pub(super) fn span(req: &Request) -> Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("http", id, method = %req.method(), path = req.uri().path())
}
