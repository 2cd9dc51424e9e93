//! Operations routes, without a token: `/healthz`, `/readyz` (the database answers),
//! `/metrics` (Prometheus) and the OpenAPI document at `/api/v1/openapi.json`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::AppError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::SPEC).into_response()
}

/// How long `/readyz` waits for the database. The pool itself keeps retrying a refused
/// connection for its 30 s acquire timeout; a probe must answer sooner than that.
const READY_PROBE: std::time::Duration = std::time::Duration::from_secs(3);

async fn readyz(State(s): State<AppState>) -> Response {
    match tokio::time::timeout(READY_PROBE, s.engine.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready");
            AppError::Unavailable("the database is not reachable".into()).into_response()
        }
        Err(_) => {
            tracing::warn!("not ready: the database did not answer within {READY_PROBE:?}");
            AppError::Unavailable("the database is not reachable".into()).into_response()
        }
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let waiting = s.engine.waiting.load(std::sync::atomic::Ordering::Relaxed);
    let mut text = s.engine.metrics.render(waiting);
    // Read from the store at each scrape: every replica reports the same number.
    match s.engine.reviews_overdue().await {
        Ok(n) => text.push_str(&format!(
            "# HELP jitgate_reviews_overdue Break-glass review requests still pending past their `within`.\n# TYPE jitgate_reviews_overdue gauge\njitgate_reviews_overdue {n}\n"
        )),
        Err(e) => tracing::warn!(error = %e, "cannot count overdue reviews for /metrics"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
