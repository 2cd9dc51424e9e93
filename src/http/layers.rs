//! What wraps every route (see [`super::router`] for the order): body limits, response
//! counting with the access log, and the span that carries each request's id.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Span;

use super::error::AppError;
use super::extract::CallerSlot;
use super::{AppState, WEBHOOK_BODY_LIMIT};

/// Counts the answer and writes the access log: one `jitgate::access` line per request
/// with its id, method, route (the router's pattern, `/api/v1/requests/{id}`, so ids and
/// query strings stay out), status, latency and the authenticated caller's name (never a
/// credential). Inside the request's span, so the line also carries the span's fields.
pub(super) async fn count_responses(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "(no route)".into());
    let method = req.method().clone();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let caller = CallerSlot::default();
    let resp = caller.clone().scope(next.run(req)).await;
    let status = resp.status().as_u16();
    s.engine.metrics.http(status);
    tracing::info!(
        target: "jitgate::access",
        request_id,
        method = %method,
        route,
        status,
        latency_ms = start.elapsed().as_secs_f64() * 1000.0,
        caller = caller.get().unwrap_or("-"),
        "request"
    );
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
