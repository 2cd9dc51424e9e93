//! What wraps every route (see [`super::router`] for the order): body limits and
//! response counting.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
