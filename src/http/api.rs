//! HTTP routes of API v1 and operations. Thin: parse, authenticate, call the engine.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;
use super::error::{AppError, ErrorCode, Result};
use crate::auth::Principal;
use crate::core::api::{AuditVerify, CreateRequest, Keys, RequestView, VoteBody, VoteMeta};
use crate::core::duration::now_ms;

/// Largest accepted webhook payload.
const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState, body_limit: usize) -> Router {
    let api = Router::new()
        .route("/requests", post(create).get(list))
        .route("/requests/{id}", get(show))
        .route("/requests/{id}/wait", get(wait))
        .route("/requests/{id}/{action}", post(act))
        .route("/requests/{id}/record", get(record))
        .route("/requests/{id}/audit", get(request_audit))
        .route("/keys", get(keys))
        .route("/audit/verify", get(audit_verify))
        .route("/audit/export", get(audit_export))
        .route("/events", get(events))
        .route("/notifications", get(super::notifications::list))
        .route("/openapi.json", get(openapi));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(super::ui::router())
        .route(
            "/webhooks/github",
            post(super::webhooks::github).layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)),
        )
        .route(
            "/webhooks/gitlab",
            post(super::webhooks::gitlab).layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)),
        )
        .fallback(|| async { AppError::NotFound("no such route".into()) })
        .layer(middleware::from_fn_with_state(body_limit, reject_oversized))
        .layer(middleware::from_fn_with_state(state.clone(), count_responses))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn count_responses(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    s.engine.metrics.http(resp.status().as_u16());
    resp
}

/// Refuses a body whose declared length is over the limit before reading any of it, so
/// the client gets its 413 instead of a reset connection. Bodies without a length are
/// cut off by `DefaultBodyLimit` as they are read.
async fn reject_oversized(State(limit): State<usize>, req: Request, next: Next) -> Response {
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

/// A JSON body whose rejection answers in our error shape.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> AppError {
    let status = r.status();
    let text = r.body_text();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::TooLarge("request body is larger than the server accepts".into());
    }
    match r {
        JsonRejection::JsonDataError(_) => AppError::Invalid(ErrorCode::InvalidBody, text),
        JsonRejection::MissingJsonContentType(_) => {
            AppError::BadRequest("expected `Content-Type: application/json`".into())
        }
        _ => AppError::BadRequest(text),
    }
}

/// The authenticated caller, from `Authorization: Bearer …`: a static token (approver or
/// pipeline), else, if it has the shape of a JWT and OIDC issuers are configured, an OIDC
/// token verified against them (a pipeline carrying its verified claims).
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| AppError::Unauthorized("missing `Authorization: Bearer <token>`".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AppError::Unauthorized("the Authorization header is not `Bearer <token>`".into()))?;
        if let Some(p) = s.engine.tokens.authenticate(token) {
            return Ok(Caller(p));
        }
        if token.starts_with(&format!("{}_", crate::service::HOLDER_PREFIX)) {
            // A holder token is good for its own request's routes only.
            // Nested under /api/v1, the router sees the path without that prefix.
            let path = parts.uri.path();
            let id = path
                .strip_prefix("/api/v1/requests/")
                .or_else(|| path.strip_prefix("/requests/"))
                .and_then(|rest| rest.split('/').next())
                .filter(|id| !id.is_empty());
            let Some(id) = id else {
                return Err(AppError::Unauthorized(
                    "a request token only works on its own request".into(),
                ));
            };
            return match s.engine.holder(id, token).await {
                Ok(Some(p)) => Ok(Caller(p)),
                Ok(None) | Err(AppError::NotFound(_)) => Err(AppError::Unauthorized(
                    "this request token is not valid for this request".into(),
                )),
                Err(e) => Err(e),
            };
        }
        if !crate::auth::oidc::looks_like_jwt(token) {
            return Err(AppError::Unauthorized("unknown token".into()));
        }
        let Some(verifier) = &s.oidc else {
            return Err(AppError::Unauthorized(
                "unknown token: it looks like an OIDC token, but this server trusts no OIDC issuer (`oidc:` in gate.yaml)"
                    .into(),
            ));
        };
        match verifier.verify(token).await {
            Ok((name, identity)) => Ok(Caller(Principal::Pipeline {
                name,
                verified: Some(Arc::new(identity)),
            })),
            Err(e) => {
                tracing::info!(error = %e, "OIDC token not accepted");
                Err(e.into())
            }
        }
    }
}

async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<CreateRequest>,
) -> Result<Response> {
    let (mut view, new) = s.engine.create(&who, body, now_ms()).await?;
    view.holder_token = s.engine.issue_holder(&who, &view.id, now_ms()).await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        [(header::LOCATION, format!("/api/v1/requests/{}", view.id))],
        Json(view),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<RequestView>>> {
    let status = q.status.unwrap_or_else(|| "pending".into());
    if crate::core::decide::Status::parse(&status).is_none() {
        return Err(AppError::BadRequest(format!(
            "status: `{status}` is not one of pending, approved, denied, expired, canceled, consumed"
        )));
    }
    Ok(Json(
        s.engine
            .inbox(&who, &status, q.limit.unwrap_or(500).clamp(1, 5000))
            .await?,
    ))
}

async fn show(State(s): State<AppState>, _c: Caller, Path(id): Path<String>) -> Result<Json<RequestView>> {
    let (row, votes) = s.engine.load(&id).await?;
    Ok(Json(s.engine.view(&row, &votes)?))
}

#[derive(Deserialize)]
struct WaitQuery {
    timeout: Option<u64>,
    version: Option<i64>,
}

async fn wait(
    State(s): State<AppState>,
    _c: Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<RequestView>> {
    let timeout = Duration::from_secs(q.timeout.unwrap_or(30)).min(s.max_wait);
    let mut stop = s.shutdown.clone();
    Ok(Json(s.engine.wait(&id, q.version, timeout, &mut stop).await?))
}

/// Bodies are optional on votes; an empty body is no reason.
async fn optional_body(req: Request, limit: usize) -> Result<VoteBody> {
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| AppError::TooLarge("request body is larger than the server accepts".into()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(VoteBody::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| AppError::BadRequest(format!("malformed JSON body: {e}")))
}

/// `POST /requests/{id}/approve|deny|cancel|consume`.
async fn act(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path((id, verb)): Path<(String, String)>,
    req: Request,
) -> Result<Json<RequestView>> {
    let reason = optional_body(req, s.body_limit).await?.reason;
    let e = &s.engine;
    let view = match verb.as_str() {
        "approve" => e.vote(&who, &id, true, reason, VoteMeta::token(), now_ms).await?,
        "deny" => e.vote(&who, &id, false, reason, VoteMeta::token(), now_ms).await?,
        "cancel" => e.cancel(&who, &id, reason, now_ms).await?,
        "consume" => e.consume(&who, &id, now_ms).await?,
        other => {
            return Err(AppError::NotFound(format!(
                "no action `{other}`: use approve, deny, cancel or consume"
            )));
        }
    };
    Ok(Json(view))
}

async fn record(State(s): State<AppState>, _c: Caller, Path(id): Path<String>) -> Result<Response> {
    s.engine.load(&id).await?;
    let env = s.engine.store.record(&id).await?.ok_or_else(|| {
        AppError::Conflict(
            ErrorCode::NoRecordYet,
            format!("request {id} is still pending: records are issued on the outcome"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], env).into_response())
}

async fn request_audit(
    State(s): State<AppState>,
    _c: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::core::api::AuditEvent>>> {
    s.engine.load(&id).await?;
    let rows = s.engine.store.audit_for(&id).await?;
    Ok(Json(rows.iter().map(|r| r.to_event()).collect()))
}

async fn keys(State(s): State<AppState>) -> Json<Keys> {
    Json(Keys {
        keys: vec![s.engine.keys.public()],
    })
}

async fn audit_verify(State(s): State<AppState>, _c: Caller) -> Result<Json<AuditVerify>> {
    let check = s.engine.store.verify_chain().await?;
    Ok(Json(AuditVerify {
        ok: check.broken.is_none(),
        events: check.count(),
        head: Some(check.head().to_string()),
        first_broken: check.broken.as_ref().map(|b| b.0),
        problem: check.broken.map(|b| b.1),
    }))
}

#[derive(Deserialize)]
struct ExportQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// JSON lines, one event each, from `after` (exclusive).
async fn audit_export(State(s): State<AppState>, _c: Caller, Query(q): Query<ExportQuery>) -> Result<Response> {
    let rows = s
        .engine
        .store
        .audit_page(q.after.unwrap_or(0), q.limit.unwrap_or(10_000).clamp(1, 100_000))
        .await?;
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(&r.to_event()).unwrap_or_default());
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

/// Server-sent events: one `change` event per state change of any request. A task
/// forwards the broadcast until the client goes or the server stops.
async fn events(State(s): State<AppState>, _c: Caller) -> impl IntoResponse {
    event_stream(&s)
}

/// The change stream, for whoever the route has authenticated (bearer token or UI session).
pub(crate) fn event_stream(s: &AppState) -> impl IntoResponse + use<> {
    let mut rx = s.engine.changes.subscribe();
    let mut stop = s.shutdown.clone();
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                m = rx.recv() => match m {
                    Ok(c) => Event::default().event("change").json_data(&c).unwrap_or_else(|_| Event::default().comment("skipped")),
                    Err(broadcast::error::RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = stop.changed() => return,
            };
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(out)).keep_alive(KeepAlive::default())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::SPEC).into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.engine.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            AppError::Unavailable("the database is not reachable".into()).into_response()
        }
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let waiting = s.engine.waiting.load(std::sync::atomic::Ordering::Relaxed);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.engine.metrics.render(waiting),
    )
        .into_response()
}
